"""`dsk stats`: what the logged calls add up to — calls and errors by class, p50/p95 latency and
time to first token, output tokens per second, tokens with DeepSeek's prompt-cache hit rate, client
cache hits, and cost — overall or per model / endpoint, since a time.

Calls the emulator answered (`dsk --mock`, the no-key fallback, any server sending the emulator's
marker) are left out unless `--include-synthetic`; a line on stderr says how many.

Latency percentiles cover successful calls (a fast 400 is not a fast answer); TTFT covers every
call that got a first token; tokens/s is the median over calls of completion tokens divided by the
time after the first token (streams) or the whole call (non-stream). Numbers come from
`_logquery.Logs.stats`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from .logs import add_db_option, fmt_cost, fmt_secs, fmt_time, open_logs, parse_since, table

if TYPE_CHECKING:
    from deepseek_kit import LogStats

__all__ = ["add_parser", "run"]

HELP = "latency, TTFT, tokens/s, errors, cost and cache hits of the logged calls"


def _cost(s: LogStats) -> str:
    if not s.cost:
        return fmt_cost(0.0, "CNY")
    return " + ".join(fmt_cost(v, k) for k, v in sorted(s.cost.items()))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _tps(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _summary(s: LogStats) -> str:
    lines = [
        f"calls         {s.requests} ({s.ok} ok, {s.errors} failed)"
        + (f"  from {fmt_time(s.first_ts)} to {fmt_time(s.last_ts)}" if s.requests else ""),
    ]
    if s.errors_by_class:
        lines.append("errors        " + ", ".join(f"{k} {v}" for k, v in s.errors_by_class.items()))
    lines += [
        f"latency       p50 {fmt_secs(s.latency_p50)}  p95 {fmt_secs(s.latency_p95)}",
        f"TTFT          p50 {fmt_secs(s.ttft_p50)}  p95 {fmt_secs(s.ttft_p95)}",
        f"tokens/s      p50 {_tps(s.tokens_per_s_p50)}",
        f"tokens        prompt {s.prompt_tokens:,} (DeepSeek cache hits {_pct(s.cache_hit_ratio)})"
        f"  completion {s.completion_tokens:,} (reasoning {s.reasoning_tokens:,})",
        f"client cache  {s.client_cache_hits} answer(s)",
        f"cost          {_cost(s)}",
    ]
    return "\n".join(lines)


def _table(groups: list[LogStats], by: str) -> str:
    rows = [[g.group or "-", str(g.requests), str(g.errors), fmt_secs(g.latency_p50), fmt_secs(g.latency_p95),
             fmt_secs(g.ttft_p50), fmt_secs(g.ttft_p95), _tps(g.tokens_per_s_p50),
             f"{g.prompt_tokens:,}", _pct(g.cache_hit_ratio), f"{g.completion_tokens:,}",
             str(g.client_cache_hits), _cost(g)] for g in groups]
    return table([by.upper(), "CALLS", "FAILED", "LAT P50", "LAT P95", "TTFT P50", "TTFT P95", "TOK/S",
                  "PROMPT TOK", "CACHE HIT", "OUT TOK", "CLIENT CACHE", "COST"], rows,
                 right=tuple(range(1, 12)))


def _as_dict(s: LogStats) -> dict[str, Any]:
    import msgspec

    d: dict[str, Any] = msgspec.structs.asdict(s)
    d["cache_hit_ratio"] = s.cache_hit_ratio
    return d


def run(args: argparse.Namespace) -> int:
    with open_logs(args) as logs:
        if not logs.exists:
            print(f"dsk: no calls logged yet in {logs.path}", file=sys.stderr)
        groups = logs.stats(since=args.since, model=args.model, by=args.by,
                            include_synthetic=args.include_synthetic)
        left_out = 0 if args.include_synthetic else logs.synthetic_count(since=args.since, model=args.model)
    if left_out:
        print(f"dsk: {left_out} call(s) answered by the emulator (synthetic) not counted; "
              "--include-synthetic counts them", file=sys.stderr)
    if args.json:
        for g in groups:
            sys.stdout.write(json.dumps(_as_dict(g)) + "\n")
    elif args.by:
        if groups:
            print(_table(groups, args.by))
    else:
        print(_summary(groups[0]))
    return 0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "stats", help=HELP, description=HELP + " (from $DSK_HOME/logs.sqlite3).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  dsk stats\n  dsk stats --since 1d --by model")
    p.add_argument("--since", type=parse_since, metavar="WHEN",
                   help="only calls since: 30m, 2h, 7d, 2026-11-25")
    p.add_argument("-m", "--model", help="only calls to this model")
    p.add_argument("--by", choices=("model", "endpoint"), help="one row per model or endpoint")
    p.add_argument("--json", action="store_true", help="JSON (one object per group)")
    p.add_argument("--include-synthetic", action="store_true",
                   help="also count calls the built-in emulator answered (--mock, no key); left out "
                        "by default: their tokens and cost were never spent")
    add_db_option(p)
    p.set_defaults(func=run)
    return p
