"""`dsk batch IN -o OUT`: run every prompt of a JSONL or CSV file, resumably (`_batch/run.py`).

The run is journaled next to OUT: run the same command again after a crash, a kill or Ctrl-C and
it goes on where it stopped, with exactly one result line per id in OUT. Failed ids are written
with their reasons to the failures file and are run again with `--retry-failed`. Progress goes to
stderr: a live line (rich) on a terminal, a plain line every `--progress-interval` seconds
otherwise; malformed input lines are reported there with their line numbers as they are read.

A rerun into the same OUT compares the input with what was answered: if the request of an
answered id changed (prompt, parameters, --model, --system), it stops before any request and
names them; `--redo-changed` asks exactly those again and replaces their lines. The personal log
gets only the numbers of each call unless --log-content.

Exit status: 0 every id has a result; 1 some ids failed or lines were malformed (see the failures
file), or an API error stopped the run (401/402); 2 bad arguments; 3 stopped by --max-cost
(resumable with a higher ceiling); 130 Ctrl-C and 143 SIGTERM (resumable).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, TextIO

from . import common

if TYPE_CHECKING:
    from deepseek_kit import BatchProgress, BatchResult, InputProblem

__all__ = ["add_parser", "run"]

HELP = "run a JSONL/CSV file of prompts; resumable, one result line per id"
EXIT_COST = 3
EXIT_TERM = 143
BATCH_RETRIES = 4  # the library default: a batch can afford patience, a person waiting cannot
MAX_PROBLEM_LINES = 20  # malformed lines echoed to stderr; all of them go to the failures file
_SYMBOL = {"CNY": "¥", "USD": "$"}


_positive_int = common.positive_int


def _positive_number(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def _amount(text: str) -> Decimal:
    try:
        v = Decimal(text.strip().lstrip("¥$"))
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"expected an amount such as 2.50, got {text!r}") from None
    if not v.is_finite() or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive amount, got {text!r}")
    return v


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "batch", help=HELP, description=HELP + ". Each input record is {id, prompt | messages, "
        "create() parameters...}; CSV files need 'id' and 'prompt' columns. Result lines are "
        '{"id", "line", "response", "cost"}.',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  dsk batch prompts.jsonl -o results.jsonl --concurrency 32 --rpm 600\n"
               "  dsk batch prompts.jsonl -o results.jsonl            # again: resumes\n"
               "  dsk batch prompts.jsonl -o results.jsonl --retry-failed\n"
               "exit status: 0 all done, 1 failures or API error, 2 bad arguments or a changed input, "
               "3 --max-cost reached, 130/143 interrupted (run again to resume)")
    p.add_argument("input", metavar="IN", help="JSONL file (or .csv) of requests")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="JSONL file of results")
    p.add_argument("--format", choices=("jsonl", "csv"), help="input format (default: by extension)")
    p.add_argument("-c", "--concurrency", type=_positive_int, default=16, metavar="N",
                   help="requests in flight at once (default 16)")
    p.add_argument("--rpm", type=_positive_number, metavar="N", help="requests per minute at most")
    p.add_argument("--tpm", type=_positive_number, metavar="N",
                   help="tokens per minute at most (input estimate + max_tokens)")
    p.add_argument("--ordered", action="store_true",
                   help="write results in input order (a bounded reorder buffer holds early ones; "
                        "ids that succeed on --retry-failed are appended after)")
    p.add_argument("--reorder-window", type=_positive_int, metavar="N",
                   help="with --ordered: results that may wait for an earlier one (default 4 x "
                        "concurrency, at least 64)")
    p.add_argument("--max-cost", type=_amount, metavar="AMOUNT",
                   help="stop cleanly once the job's summed cost reaches AMOUNT (in --currency); "
                        "requests in flight finish and are written")
    p.add_argument("--currency", choices=("CNY", "USD"), default="CNY",
                   help="currency of costs and --max-cost (default CNY)")
    p.add_argument("--retry-failed", action="store_true", help="run again only the ids that failed")
    p.add_argument("--redo-changed", action="store_true",
                   help="ids whose request changed since their answer was written: ask them again "
                        "and replace their lines (without it, a changed input stops the rerun)")
    p.add_argument("--log-content", action="store_true",
                   help="log every prompt and answer in $DSK_HOME/logs.sqlite3 (default: only the "
                        "numbers of each call - tokens, cost, latency, status)")
    p.add_argument("--failures", metavar="FILE",
                   help="failed ids and malformed lines, with reasons (default OUT.failures.jsonl)")
    p.add_argument("--max-record-bytes", type=_positive_int, metavar="N",
                   help="longest input record; longer ones are reported and skipped without being "
                        "read whole (default 64 MiB)")
    p.add_argument("--journal", metavar="PATH", help="resume journal (default OUT.journal.sqlite)")
    p.add_argument("--overwrite", action="store_true", help="replace an OUT that has no journal")
    p.add_argument("--no-fsync", action="store_true",
                   help="do not fsync the output before each journal commit (faster; results "
                        "survive a killed process but maybe not a power loss)")
    p.add_argument("--progress-interval", type=_positive_number, metavar="SECONDS",
                   help="seconds between progress lines when stderr is not a terminal (default 10)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, only problems and the summary")
    common.add_client_options(p)
    for action in p._actions:  # the shared options, adjusted for unattended runs
        if action.dest == "max_retries":
            action.default = BATCH_RETRIES
            action.help = f"retries per request on connection errors, 429 and 5xx (default {BATCH_RETRIES})"
        elif action.dest == "show_reasoning":
            action.help = argparse.SUPPRESS
        elif action.dest == "system":
            action.help = "system prompt for requests that have none"
    p.set_defaults(func=run)
    return p


# ---------------------------------------------------------------------------------------------
# Progress


def _money(amount: Decimal, currency: str) -> str:
    sym = _SYMBOL.get(currency, "")
    return f"{sym}{amount:.4f}" if amount < 100 else f"{sym}{amount:,.2f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds + 0.5)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _line(pr: BatchProgress, currency: str) -> str:
    total = "?" if pr.total is None else f"{pr.total:,}"
    pct = f" ({100 * (pr.done + pr.failed + pr.invalid) / pr.total:.1f}%)" if pr.total else ""
    return (f"{pr.done:,}/{total} done{pct}, {pr.rate:,.1f}/s, tokens {pr.prompt_tokens:,} in / "
            f"{pr.completion_tokens:,} out, cost {_money(pr.cost, currency)}, ETA {_duration(pr.eta)}, "
            f"{pr.failed:,} failed, {pr.invalid:,} invalid")


class _ProgressLines:
    """A line every `interval` seconds (logs, CI, pipes)."""

    def __init__(self, out: TextIO, currency: str, interval: float) -> None:
        self.out, self.currency, self.interval = out, currency, interval
        self.last = -1.0

    def __call__(self, pr: BatchProgress) -> None:
        if pr.elapsed - self.last >= self.interval * 0.99:
            self.last = pr.elapsed
            print(f"dsk: batch {_line(pr, self.currency)}", file=self.out, flush=True)

    def stop(self) -> None:
        pass


class _ProgressBar:
    """rich's progress bar with the batch's own fields, redrawn in place on a terminal."""

    def __init__(self, out: TextIO, currency: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self.currency = currency
        self.progress = Progress(TextColumn("[bold]batch"), BarColumn(),
                                 TextColumn("{task.fields[info]}"),
                                 console=Console(file=out), transient=False, auto_refresh=False)
        self.task = self.progress.add_task("batch", total=None, info="starting")
        self.progress.start()

    def __call__(self, pr: BatchProgress) -> None:
        self.progress.update(self.task, total=pr.total, completed=pr.done + pr.failed + pr.invalid,
                             info=_line(pr, self.currency) + ("" if not pr.stopping else
                                                             f" - stopping ({pr.stopping})"))
        self.progress.refresh()

    def stop(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()


class _Problems:
    def __init__(self, source: str, out: TextIO) -> None:
        self.source, self.out, self.count = source, out, 0

    def __call__(self, p: InputProblem) -> None:
        self.count += 1
        if self.count <= MAX_PROBLEM_LINES:
            print(f"dsk: {self.source}:{p.line}: {p.message} - skipped", file=self.out, flush=True)
        elif self.count == MAX_PROBLEM_LINES + 1:
            print("dsk: more problems: see the failures file at the end", file=self.out, flush=True)


# ---------------------------------------------------------------------------------------------
# Running


def _summary(r: BatchResult, currency: str) -> str:
    rate = r.done_now / r.elapsed if r.elapsed > 0 else 0.0
    text = (f"dsk: batch: {r.done:,} done ({r.done_now:,} this run, {rate:,.1f}/s, "
            f"{_duration(r.elapsed)}), {r.failed:,} failed, {r.invalid:,} invalid; tokens "
            f"{r.prompt_tokens:,} in / {r.completion_tokens:,} out; cost {_money(r.cost, currency)}"
            f" -> {r.output}")
    if r.recovered_bytes:
        text += f" (resumed: cut {r.recovered_bytes:,} uncommitted bytes)"
    if r.lost:
        text += (f"\ndsk: {r.output} was shorter than its journal: {r.lost:,} answers it had lost "
                 "were asked again")
    if r.redone:
        text += f"\ndsk: {r.redone:,} changed ids were asked again (--redo-changed)"
    if r.failures is not None:
        text += f"\ndsk: failures: {r.failures}" + (" (run again with --retry-failed)" if r.failed else "")
    return text


def _left(r: BatchResult) -> str:
    n = r.not_run
    return "" if n is None else f" with {n:,} records not run"


def run(args: argparse.Namespace) -> int:
    if args.reorder_window and not args.ordered:
        raise common.CLIError("--reorder-window needs --ordered")
    try:
        with common.backend(args) as b:
            return common.run_async(lambda: _batch(args, b))
    except OSError as exc:  # unreadable input, unwritable output or journal
        where = f"{exc.filename}: " if exc.filename else ""
        raise common.CLIError(f"{where}{exc.strerror or exc}", common.EXIT_USAGE) from None


def _log_step(b: common.Backend, args: argparse.Namespace) -> Any:
    """The personal log gets the numbers of each batch call (tokens, cost, latency), not every
    prompt and answer - a batch would copy its whole input and output into it - unless
    --log-content asks for them."""
    return common.log_step(b, args, content=bool(args.log_content))


async def _batch(args: argparse.Namespace, b: common.Backend) -> int:
    from deepseek_kit import Limits, run_batch

    err = sys.stderr
    # No bound on the wait for a turn (wait_for_limits, whatever the limits' source: --rpm/--tpm
    # or the config file): the workers are the only waiters, so the queue never grows past
    # --concurrency, and a low rate must slow the run down, not fail its items.
    limits = Limits(rpm=args.rpm, tpm=args.tpm) if args.rpm or args.tpm else None
    display: _ProgressLines | _ProgressBar | None = None
    if not args.quiet:
        if common._is_tty(err) and args.progress_interval is None:
            display = _ProgressBar(err, args.currency)
        else:
            display = _ProgressLines(err, args.currency, args.progress_interval or 10.0)
    defaults: dict[str, Any] = common.request_kwargs(b, args)
    terminated = False
    task = asyncio.current_task()

    def terminate() -> None:
        nonlocal terminated
        terminated = True
        if task is not None:
            task.cancel()

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        async with common.make_client(b, args, limits=limits, wait_for_limits=True,
                                      max_connections=max(args.concurrency, 100),
                                      logs=_log_step(b, args)) as client:
            result = await run_batch(
                client, args.input, args.output, defaults=defaults, system=args.system,
                concurrency=args.concurrency, ordered=args.ordered, reorder_window=args.reorder_window,
                max_cost=args.max_cost, currency=args.currency, retry_failed=args.retry_failed,
                journal=args.journal, failures=args.failures, input_format=args.format,
                overwrite=args.overwrite, durable=not args.no_fsync, on_progress=display,
                progress_interval=(0.2 if isinstance(display, _ProgressBar)
                                   else (args.progress_interval or 10.0)),
                on_problem=_Problems(args.input, err), redo_changed=args.redo_changed,
                **({"max_record_bytes": args.max_record_bytes} if args.max_record_bytes else {}))
    except asyncio.CancelledError:
        if display is not None:
            display.stop()
        print(f"dsk: batch interrupted; results so far are in {args.output} - run the same command "
              "again to resume", file=err, flush=True)
        if terminated:
            return EXIT_TERM
        raise
    finally:
        if display is not None:
            display.stop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
    print(_summary(result, args.currency), file=err, flush=True)
    if result.fatal is not None:
        print(common.error_line(result.fatal), file=err)
        print(f"dsk: batch stopped{_left(result)}; fix the cause and run the same command again "
              "to resume", file=err, flush=True)
        return common.EXIT_API
    if result.stopped == "max_cost":
        print(f"dsk: batch stopped: the cost reached --max-cost {_money(args.max_cost, args.currency)}"
              f"{_left(result)}; run again with a higher --max-cost to go on",
              file=err, flush=True)
        return EXIT_COST
    return 0 if result.failed == 0 and result.invalid == 0 else common.EXIT_API
