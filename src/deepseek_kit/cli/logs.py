"""`dsk logs`: the calls recorded in $DSK_HOME/logs.sqlite3 — list the recent ones, show one in
full, search them; also the table and value formatting `dsk stats` shares.

    dsk logs [--limit N] [--since 1h] [--model M] [--errors] [--json]
    dsk logs show ID [--json]
    dsk logs search WORDS... [--limit N] [--json]
    dsk logs prune --older-than 30d

Plain text columns rather than a rich Table: the output must stay the same in a pipe, a file and a
test (rich wraps and truncates to the terminal width); `--json` prints JSON Lines for scripts.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import common

if TYPE_CHECKING:
    from deepseek_kit import LogEntry, Logs

__all__ = ["add_parser", "fmt_cost", "fmt_secs", "fmt_time", "open_logs", "parse_since", "table"]

HELP = "list, show and search the calls dsk has made (stored in $DSK_HOME/logs.sqlite3)"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SYMBOLS = {"CNY": "¥", "USD": "$"}


# -- formatting ------------------------------------------------------------------------------------


def parse_since(text: str) -> float:
    """"30m", "2h", "7d", "2w" (ago), or a local date / date-time ("2026-11-25", "2026-11-25T14:00")."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        return time.time() - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration like 30m, 2h, 7d, 2w or a date like 2026-11-25, got {text!r}") from None
    try:
        return when.timestamp()
    except (ValueError, OverflowError, OSError):  # year 1: before the epoch in local time
        return 0.0 if when.year < 1970 else float("inf")


def fmt_time(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def fmt_secs(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1000:.0f}ms" if s < 1 else f"{s:.2f}s"


def fmt_cost(cost: float, currency: str | None) -> str:
    sym = _SYMBOLS.get(currency or "CNY", "")
    return f"{sym}{cost:.6f}" if sym else f"{cost:.6f} {currency}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[int] = (),
          width: int | None = None) -> str:
    """Aligned columns; on a terminal the last column is cut to fit its width (in a pipe or a
    file, nothing is cut: `dsk logs | grep` sees whole prompts)."""
    cols = len(headers)
    tty = sys.stdout.isatty()
    if tty:  # logged prompts and answers, model ids: a server's text must not drive the terminal
        rows = [[common.terminal_safe(str(c)) for c in r] for r in rows]
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(cols)]
    if width is None and tty:
        width = shutil.get_terminal_size((120, 24)).columns
    if width is not None:
        used = sum(widths[:-1]) + 2 * (cols - 1)
        widths[-1] = max(min(widths[-1], width - used), 10)
    out = []
    for r in [headers, *rows]:
        cells = []
        for i, cell in enumerate(r):
            text = str(cell)
            if i == cols - 1 and len(text) > widths[i]:
                text = text[: widths[i] - 3] + "..."
            cells.append(text.rjust(widths[i]) if i in right else text.ljust(widths[i]))
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def _status(e: LogEntry) -> str:
    if e.outcome == "ok":
        text = "ok (cache)" if e.cache_hit else "ok"
    else:
        name = e.error or e.outcome
        text = f"{e.status} {name}" if e.status and e.status >= 400 else name
    return text + " (synthetic)" if e.synthetic else text


def _first_words(text: str | None) -> str:
    return " ".join((text or "").split())


def _entries_table(entries: Sequence[LogEntry], *, snippets: bool = False) -> str:
    rows = [[str(e.id), fmt_time(e.ts), e.model or "-", f"{e.prompt_tokens}/{e.completion_tokens}",
             fmt_cost(e.cost, e.currency), fmt_secs(e.latency), _status(e),
             _first_words(e.snippet if snippets and e.snippet else e.prompt) or f"({e.path})"]
            for e in entries]
    last = "MATCH" if snippets else "PROMPT"
    return table(["ID", "TIME", "MODEL", "TOKENS IN/OUT", "COST", "LATENCY", "STATUS", last], rows,
                 right=(0, 3, 4, 5))


# -- commands --------------------------------------------------------------------------------------


def open_logs(args: argparse.Namespace) -> Logs:
    from deepseek_kit import Logs

    return Logs(args.db)


def _no_logs(logs: Logs) -> None:
    print(f"dsk: no calls logged yet in {logs.path} (dsk ask/chat record every call; "
          "DSK_NO_LOGS=1 or --no-log turn it off)", file=sys.stderr)


def _json_lines(entries: Sequence[LogEntry]) -> None:
    for e in entries:
        sys.stdout.write(json.dumps(e.to_dict(), ensure_ascii=False) + "\n")


def run_list(args: argparse.Namespace) -> int:
    with open_logs(args) as logs:
        if not logs.exists:
            _no_logs(logs)
            return 0
        entries = logs.recent(args.limit, since=args.since, model=args.model, errors=args.errors)
    if args.json:
        _json_lines(entries)
    elif entries:
        print(_entries_table(entries))
    return 0


def run_search(args: argparse.Namespace) -> int:
    text = " ".join(args.words)
    with open_logs(args) as logs:
        if not logs.exists:
            _no_logs(logs)
            return 0
        entries = logs.search(text, args.limit)
    if args.json:
        _json_lines(entries)
    elif entries:
        print(_entries_table(entries, snippets=True))
    else:
        print(f"dsk: no logged call contains {text!r}", file=sys.stderr)
    return 0


def run_show(args: argparse.Namespace) -> int:
    with open_logs(args) as logs:
        entry = logs.get(args.id) if logs.exists else None
        path = logs.path
    if entry is None:
        raise common.CLIError(f"no logged call with id {args.id} in {path} (dsk logs lists them)")
    if args.json:
        sys.stdout.write(json.dumps(entry.to_dict(), ensure_ascii=False, indent=2) + "\n")
        return 0
    print(common.for_stream(_show(entry), sys.stdout))
    return 0


def _show(e: LogEntry) -> str:
    kind = "stream" if e.stream else "non-stream"
    lines = [f"#{e.id}  {fmt_time(e.ts)}  {e.model or '-'}  {e.endpoint or '-'}  {e.path}  {kind}",
             f"status: {_status(e)}" + (f" ({e.status})" if e.status and e.outcome == "ok" else "")
             + f"  finish: {e.finish_reason or '-'}  attempts: {e.attempts}  latency: {fmt_secs(e.latency)}"
             f"  ttft: {fmt_secs(e.ttft)}" + (f"  trace: {e.trace_id}" if e.trace_id else ""),
             f"tokens: prompt {e.prompt_tokens} (cache hit {e.cache_hit_tokens}, miss {e.cache_miss_tokens})"
             f"  completion {e.completion_tokens} (reasoning {e.reasoning_tokens})"
             f"  cost: {fmt_cost(e.cost, e.currency)}"]
    if e.synthetic:
        lines.append("synthetic: answered by deepseek-kit's emulator, not by a model "
                     "(not counted by dsk stats unless --include-synthetic)")
    if e.error_message:
        lines.append(f"error: {e.error_message}")
    if e.params:
        lines.append(f"params: {e.params}")
    messages = e.message_list()
    if messages:
        lines.append("\n--- messages ---")
        for m in messages:
            lines.append(_message(m))
    elif e.prompt:
        lines += ["\n--- prompt ---", e.prompt]
    if e.reasoning:
        lines += ["\n--- reasoning ---", e.reasoning]
    if e.answer is not None:
        lines += ["\n--- answer ---", e.answer]
    if e.tool_calls:
        lines.append("\n--- tool calls ---")
        calls = e.to_dict()["tool_calls"]
        for call in calls if isinstance(calls, list) else [calls]:
            if not isinstance(call, dict):  # not what dsk stored (a file edited by hand)
                lines.append(str(call))
                continue
            fn = call.get("function") or {}
            lines.append(f"{call.get('id', '')} {fn.get('name', '')}({fn.get('arguments', '')})")
    if e.messages is None and e.answer is None and e.prompt is None:
        lines.append("\n(content not stored: logged with LogConfig(content=False))")
    return "\n".join(lines)


def _message(m: Any) -> str:
    if not isinstance(m, dict):
        return str(m)
    content = m.get("content")
    if isinstance(content, list):
        content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    head = f"[{m.get('role', '?')}]"
    if m.get("tool_call_id"):
        head += f" ({m['tool_call_id']})"
    parts = [f"{head} {content or ''}".rstrip()]
    if m.get("reasoning_content"):
        parts.append(f"  (reasoning: {_first_words(m['reasoning_content'])[:200]})")
    for call in m.get("tool_calls") or ():
        fn = call.get("function") or {}
        parts.append(f"  -> {fn.get('name', '')}({fn.get('arguments', '')})")
    return "\n".join(parts)


def run_prune(args: argparse.Namespace) -> int:
    with open_logs(args) as logs:
        n = logs.prune(args.older_than) if logs.exists else 0
    print(f"deleted {n} logged call(s) from before {fmt_time(args.older_than)}")
    return 0


# -- parser ----------------------------------------------------------------------------------------


_positive_int = common.positive_int
_MAX_ID = 2**63 - 1  # SQLite's largest integer: a bigger id cannot exist (and would overflow)


def _row_id(text: str) -> int:
    v = common.positive_int(text)
    if v > _MAX_ID:
        raise argparse.ArgumentTypeError(f"no call has an id that large: {text!r}")
    return v


def _limit(text: str) -> int:
    """A row count: anything past SQLite's largest integer means "all" (it would overflow)."""
    return min(common.positive_int(text), _MAX_ID)


def add_db_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="PATH", help="the logs database (default: $DSK_HOME/logs.sqlite3)")


def _list_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--limit", type=_limit, help="how many calls (default 20)")
    p.add_argument("--json", action="store_true", help="one JSON object per call (JSON Lines)")
    add_db_option(p)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "logs", help=HELP, description=HELP + ". Without a subcommand: the most recent calls.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  dsk logs\n  dsk logs --errors --since 1d\n  dsk logs show 42\n"
               "  dsk logs search timeout retry\n  dsk logs prune --older-than 30d")
    _list_options(p)
    p.set_defaults(limit=20, json=False, db=None)
    p.add_argument("--since", type=parse_since, metavar="WHEN",
                   help="only calls since: 30m, 2h, 7d, 2026-11-25")
    p.add_argument("-m", "--model", help="only calls to this model")
    p.add_argument("--errors", action="store_true", help="only failed calls")
    p.set_defaults(func=run_list)
    s = p.add_subparsers(dest="logs_command", metavar="SUBCOMMAND")
    # Sub-options default to nothing, so `dsk logs --json show 3` and `dsk logs show 3 --json` agree.
    quiet = argparse.SUPPRESS
    show = s.add_parser("show", help="one call in full: messages, reasoning, answer, tool calls, usage",
                        argument_default=quiet)
    show.add_argument("id", type=_row_id, help="the call's ID (first column of `dsk logs`)")
    show.add_argument("--json", action="store_true", help="as one JSON object")
    add_db_option(show)
    show.set_defaults(func=run_show)
    search = s.add_parser("search", help="calls whose prompt, answer or reasoning contain every word",
                          argument_default=quiet)
    search.add_argument("words", nargs="+", help="words to find (all must appear)")
    _list_options(search)
    search.set_defaults(func=run_search)
    prune = s.add_parser("prune", help="delete old calls (saved conversations are kept)",
                         argument_default=quiet)
    prune.add_argument("--older-than", type=parse_since, required=True, metavar="AGE",
                       help="delete calls from before this: 30d, 12h, or a date")
    add_db_option(prune)
    prune.set_defaults(func=run_prune)
    return p
