"""The batch runner: `run_batch(client, inputs, output)` sends every input item through an
`AsyncClient` with bounded concurrency and writes one JSON result line per id, resumably.

    async with AsyncClient(limits=Limits(rpm=600)) as client:
        result = await run_batch(client, "prompts.jsonl", "results.jsonl", concurrency=32,
                                 model="deepseek-flash", max_cost=Decimal("5"))

The client brings the production stack (retries, rpm/tpm limits, cache, metrics), so the runner
only schedules: a reader task streams the input (`_batch/inputs.py`) into a queue of `concurrency`
slots, `concurrency` workers each run one request at a time, and results go to the output as they
complete (or in input order through a bounded reorder buffer, `_batch/output.py`). Memory is
bounded by the concurrency (and the reorder window), never by the input size: the input is never
loaded, and the journal (`_batch/journal.py`, SQLite on disk) is what remembers ids.

Result line: `{"id": ..., "line": N, "response": <ChatCompletion>, "cost": "0.000123"}` (plus
`"metadata"` when the input carried it). Failed ids are not in the output: they go to the
failures file (`{"id", "line", "error", "status", "message"}`) with the malformed lines and
duplicate ids, and are run again with `retry_failed=True`. A killed run resumes from its journal:
ids done are skipped, everything else runs again, and the output never holds an id twice.

Changed input: the journal keeps a hash of each id's request (`request_hash`: messages, model,
parameters, defaults and system prompt as sent; not `timeout`/`max_retries`). Rerunning into the
same output first compares the input with it; if an answered id's request changed, the run
stops before any request with a `ChangedInputError` (how many, the first few) - unless
`redo_changed=True`, which takes exactly those lines out of the output and asks those ids
again (see `_batch/journal.py` for how that stays crash-safe and exactly-once). `line` in a result line
is always the line of the input of the run that wrote it. Answers from deepseek-kit's emulator
carry `"synthetic": true`.

Errors: an API error of one item (a 400, retries exhausted on 429/5xx, a timeout) fails that item
and the run goes on. 401 and 402 stop the run (every request would fail alike;
docs/deepseek-api-notes.md#errors-and-status-codes: 402 must never be
retried): no new requests, the item stays pending, `BatchResult.fatal`
holds the error. `max_cost` stops the run the same way once the summed cost of the job (earlier
runs included) reaches it; requests already in flight finish and are written, so the overshoot
is at most `concurrency - 1` answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek_kit._wire import pricing as _pricing
from deepseek_kit._wire.errors import (
    APIStatusError,
    AuthenticationError,
    InsufficientBalanceError,
    UsageError,
)

from .changes import ChangedInputError, check_changed, request_hash, request_params
from .inputs import MAX_RECORD_BYTES, BatchItem, InputProblem, count_records, iter_items
from .journal import Journal, JournalTotals
from .output import ResultSink, encode_line, write_failures
from .results import BatchProgress, BatchResult

if TYPE_CHECKING:
    from deepseek_kit._client.client import AsyncClient
    from deepseek_kit._wire.types import ChatCompletion

__all__ = [
    "MAX_CONCURRENCY",
    "BatchProgress",
    "BatchResult",
    "ChangedInputError",
    "default_paths",
    "request_hash",
    "run_batch",
]

_FATAL = (AuthenticationError, InsufficientBalanceError)

#: Most requests a run keeps in flight: DeepSeek's own concurrency limit per account is 2,500
#: (docs/deepseek-api-notes.md#rate-limits-and-concurrency); 10,000
#: leaves room for other servers while keeping a typo such as
#: `-c 1000000000` from exhausting memory (each worker is a task and a connection slot).
MAX_CONCURRENCY = 10_000


def default_paths(output: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(journal, failures) next to the output: out.jsonl -> out.journal.sqlite, out.failures.jsonl."""
    out = Path(output)
    return out.with_suffix(".journal.sqlite"), out.with_suffix(".failures.jsonl")


@dataclass
class _State:
    before: JournalTotals
    total: int | None = None
    done_now: int = 0
    failed_now: int = 0
    invalid: int = 0
    skipped: int = 0
    in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_now: Decimal = Decimal(0)
    stopping: str | None = None
    fatal: BaseException | None = None
    started: float = field(default_factory=time.monotonic)
    to_run: int | None = None  # ids this run is expected to resolve (for the ETA)
    retrying: bool = False


class _Runner:
    def __init__(self, client: AsyncClient, sink: ResultSink, journal: Journal, state: _State, *,
                 defaults: dict[str, Any], system: str | None, max_cost: Decimal | None,
                 currency: str) -> None:
        self.client = client
        self.sink = sink
        self.journal = journal
        self.state = state
        self.defaults = defaults
        self.system = system
        self.max_cost = max_cost
        self.currency = currency
        # The client's pricing clock and calendar (the config's [pricing] table, DSK_FAKE_NOW).
        self.clock = getattr(client, "clock", None) or _pricing.default_clock()
        self.holidays = getattr(client, "holidays", None) or _pricing.DEFAULT_CALENDAR
        # The one price cache (peak state per minute, each model's price): pricing an answer is
        # then integer arithmetic, no calendar check.
        self.prices = _pricing.PriceBook(currency, self.holidays)
        self.idle = 0  # workers waiting for an item

    def cost_total(self) -> Decimal:
        return self.state.before.cost + self.state.cost_now

    def params(self, item: BatchItem) -> dict[str, Any]:
        return request_params(item, self.defaults, self.system)

    async def work(self, queue: asyncio.Queue[tuple[int, BatchItem] | None]) -> None:
        st = self.state
        while True:
            self.idle += 1
            try:
                job = await queue.get()
            finally:
                self.idle -= 1
            if job is None:
                return
            seq, item = job
            if st.stopping is not None:  # no new requests; the id stays pending for a resume
                self.sink.nothing(seq)
                continue
            st.in_flight += 1
            try:
                resp: ChatCompletion = await self.client.chat.completions.create(**self.params(item))
            except asyncio.CancelledError:
                raise
            except _FATAL as exc:
                if st.fatal is None:
                    st.fatal, st.stopping = exc, "fatal"
                self.sink.nothing(seq)
            except Exception as exc:  # one item's failure never stops the run
                code = exc.status_code if isinstance(exc, APIStatusError) else None
                self.journal.failed(item.key, type(exc).__name__, str(exc) or type(exc).__name__, code)
                st.failed_now += 1
                self.sink.nothing(seq)
            else:
                self.finish(seq, item, resp)
            finally:
                st.in_flight -= 1

    def finish(self, seq: int, item: BatchItem, resp: ChatCompletion) -> None:
        st = self.state
        usage = resp.usage
        model = resp.model or str(item.params.get("model") or self.defaults.get("model") or "")
        cost = self.prices.cost(model, usage, self.clock()) if usage is not None else Decimal(0)
        record: dict[str, Any] = {"id": item.id, "line": item.line, "response": resp, "cost": cost}
        if item.metadata is not None:
            record["metadata"] = item.metadata
        # made by deepseek-kit's emulator, not by a model
        # (docs/emulator.md#nothing-it-makes-passes-for-deepseek)
        if resp.synthetic:
            record["synthetic"] = True
        ptok = usage.prompt_tokens if usage else 0
        ctok = usage.completion_tokens if usage else 0
        st.done_now += 1
        st.prompt_tokens += ptok
        st.completion_tokens += ctok
        st.cost_now += cost
        self.sink.result(seq, item.key, encode_line(record), cost, ptok, ctok)
        if self.max_cost is not None and st.stopping is None and self.cost_total() >= self.max_cost:
            st.stopping = "max_cost"

    async def read(self, records: Iterable[BatchItem | InputProblem],
                   queue: asyncio.Queue[tuple[int, BatchItem] | None], *, retry_failed: bool,
                   on_problem: Callable[[InputProblem], object] | None,
                   spawn: Callable[[], None]) -> None:
        st, journal, window = self.state, self.journal, self.sink.window
        seq = 0
        for n, rec in enumerate(records):
            if n % 512 == 511:
                await asyncio.sleep(0)  # resumed runs skip long stretches without awaiting
            if st.stopping is not None:
                break
            if isinstance(rec, InputProblem):
                self.problem(rec, on_problem)
                continue
            state, first = journal.claim(rec.key, rec.id, rec.line, request_hash(self.params(rec)))
            if state == "duplicate":
                self.problem(InputProblem(rec.line, f"duplicate id {rec.id!r} (first on line {first})",
                                          rec.id, "duplicate"), on_problem)
                continue
            if state == "changed":  # only for an iterable input: a file is checked beforehand
                self.problem(InputProblem(rec.line, f"id {rec.id!r} changed since its answer was "
                                          "written: not asked again (write to a new output)",
                                          rec.id, "changed"), on_problem)
                continue
            run = state == "failed" if retry_failed else state in ("new", "pending")
            if not run:
                st.skipped += 1
                continue
            if window is not None:
                await window.acquire()
            spawn()
            await queue.put((seq, rec))
            seq += 1

    def problem(self, p: InputProblem, on_problem: Callable[[InputProblem], object] | None) -> None:
        self.state.invalid += 1
        kind = {"duplicate": "DuplicateId", "changed": "ChangedInput"}.get(p.kind, "InputError")
        self.journal.problem(p.line, p.id, kind, p.message)
        if on_problem is not None:
            on_problem(p)

    def progress(self) -> BatchProgress:
        st, before = self.state, self.state.before
        elapsed = time.monotonic() - st.started
        rate = st.done_now / elapsed if elapsed > 0 else 0.0
        eta = None
        if st.to_run is not None and rate > 0:
            left = st.to_run - st.done_now - st.failed_now - (0 if st.retrying else st.invalid)
            eta = max(left, 0) / rate
        # Retrying, an id leaves the failed count when it succeeds and stays when it fails again.
        failed = before.failed - st.done_now if st.retrying else before.failed + st.failed_now
        return BatchProgress(
            st.total, before.done + st.done_now, failed, st.invalid, st.in_flight, st.done_now,
            st.failed_now, before.prompt_tokens + st.prompt_tokens,
            before.completion_tokens + st.completion_tokens, self.cost_total(), elapsed, rate, eta,
            st.stopping)


async def _count(path: str | os.PathLike[str], fmt: str | None, state: _State, before: JournalTotals,
                 max_record_bytes: int) -> None:
    total = await asyncio.to_thread(count_records, path, fmt, max_record_bytes=max_record_bytes)
    state.total = total
    state.to_run = max(total - before.done - before.failed, 0)


async def _tick(runner: _Runner, cb: Callable[[BatchProgress], object], interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        cb(runner.progress())


async def run_batch(
    client: AsyncClient,
    inputs: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
    output: str | os.PathLike[str],
    *,
    model: str | None = None,
    defaults: Mapping[str, Any] | None = None,
    system: str | None = None,
    concurrency: int = 16,
    ordered: bool = False,
    reorder_window: int | None = None,
    max_cost: Decimal | float | str | None = None,
    currency: str = "CNY",
    retry_failed: bool = False,
    journal: str | os.PathLike[str] | None = None,
    failures: str | os.PathLike[str] | None = None,
    input_format: str | None = None,
    overwrite: bool = False,
    durable: bool = True,
    commit_interval: float = 0.2,
    on_progress: Callable[[BatchProgress], object] | None = None,
    progress_interval: float = 0.5,
    on_problem: Callable[[InputProblem], object] | None = None,
    max_record_bytes: int = MAX_RECORD_BYTES,
    redo_changed: bool = False,
) -> BatchResult:
    """Run every item of `inputs` (a JSONL/CSV path, or an iterable of records) through `client`
    and append one result line per id to `output`; see the module docstring.

    `model`, `defaults` (any `create()` arguments) and `system` (a system prompt for items that
    have none) apply where an item does not say otherwise. `journal`/`failures` default to files
    next to the output (`default_paths`). An output file that exists without a journal is
    refused unless `overwrite=True`. `on_progress` is called every `progress_interval` seconds,
    `on_problem` for each malformed line or duplicate id as it is read. `concurrency` is at
    most `MAX_CONCURRENCY`; records longer than `max_record_bytes` are input problems.
    Rerunning a file input whose answered requests changed raises `ChangedInputError` before
    any request, unless `redo_changed` (see the module docstring).

    `ordered=True` writes results in input order (at most `reorder_window` finished results wait
    for an earlier one; default 4 x concurrency, at least 64). `max_cost` (in `currency`, "CNY" or
    "USD") stops the run cleanly once the job's summed cost reaches it (`BatchResult.stopped`).
    `retry_failed=True` runs only the ids that failed before. `input_format` is "jsonl" or "csv"
    (default: by the file's extension). `durable=False` skips the fsync of the output before each
    journal commit (faster; a power loss may then lose answers the journal counts); commits
    happen every `commit_interval` seconds.

    Returns a `BatchResult` (counts, tokens and cost of the whole job and of this run). Raises
    `UsageError` for bad arguments or input files that cannot be used.

    A write error on the output, the journal or the failures file (a full disk) stops the run:
    it is raised as an `OSError` naming the file, what was committed stays, and the same call
    again resumes with exactly one line per id.
    """
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"concurrency must be between 1 and at most {MAX_CONCURRENCY:,}, "
                         f"got {concurrency:,}")
    ceiling = None if max_cost is None else Decimal(str(max_cost))
    if ceiling is not None and not ceiling > 0:
        raise UsageError(f"max_cost must be a positive amount, got {max_cost!r}")
    out = Path(output)
    jpath, fpath = default_paths(out)
    jpath, fpath = Path(journal) if journal else jpath, Path(failures) if failures else fpath
    is_path = isinstance(inputs, (str, os.PathLike))
    if redo_changed and retry_failed:
        # A retry runs failed ids only: the redone ones would be left pending, without a line.
        raise UsageError("--redo-changed and --retry-failed cannot be combined: redo the changed "
                         "ids first, then retry the failed ones")
    if redo_changed and not is_path:
        raise UsageError("redo_changed needs a file input (it is read twice: once to compare)")
    dflt = dict(defaults or {})
    if model is not None:
        dflt.setdefault("model", model)
    try:
        jr = _open_journal(inputs if is_path else None, out, jpath, fpath,  # type: ignore[arg-type]
                           retry_failed=retry_failed, overwrite=overwrite, durable=durable)
    except sqlite3.Error as exc:  # e.g. the disk is full before the first commit
        raise _fatal_io(exc, jpath) from None
    try:
        recovery = jr.recover()
        redone = 0
        if is_path and jr.totals().done:
            redone = check_changed(jr, out, inputs, input_format, dflt, system, max_record_bytes,
                                   redo_changed)
        before = jr.totals()
        state = _State(before)
        if retry_failed:
            state.to_run, state.retrying = before.failed, True
        window = reorder_window or max(4 * concurrency, 64)
        sink = ResultSink(jr, out, jr.committed_offset, ordered=ordered, window=window,
                          durable=durable)
        runner = _Runner(client, sink, jr, state, defaults=dflt, system=system, max_cost=ceiling,
                         currency=currency)
        if ceiling is not None and runner.cost_total() >= ceiling:
            state.stopping = "max_cost"
        try:
            await _run(runner, inputs, input_format, is_path, retry_failed, concurrency,
                       commit_interval, on_progress, progress_interval, on_problem,
                       max_record_bytes)
        except BaseException:
            # Interrupted, or stopped by a write/journal error: commit what completed and keep
            # the failures file current, but a second error of the same cause (the disk is
            # still full) must not hide the first.
            with contextlib.suppress(OSError, sqlite3.Error):
                sink.close()
            with contextlib.suppress(OSError, sqlite3.Error):
                write_failures(jr, fpath)
            raise
        sink.close()
        nfail = write_failures(jr, fpath)
        after = jr.totals()
        if on_progress is not None:
            on_progress(runner.progress())
    except sqlite3.Error as exc:
        raise _fatal_io(exc, jpath) from None
    finally:
        jr.close()
    return BatchResult(
        out, jpath, fpath if nfail else None, after.done, after.failed, state.invalid, after.pending,
        state.done_now, state.failed_now, state.skipped, after.cost, state.cost_now,
        after.prompt_tokens, after.completion_tokens, time.monotonic() - state.started,
        state.stopping, state.fatal, recovery.truncated_bytes, state.total, recovery.lost_results,
        redone)


def _resolve(p: Path) -> Path:
    try:
        return p.resolve()
    except (RuntimeError, OSError) as exc:  # Python < 3.13 raises RuntimeError on a loop
        raise UsageError(f"{p}: cannot resolve the path ({exc}): a symlink loop?") from None


def _same_file(a: Path, b: Path) -> bool:
    """Two names for one file: the same resolved path, or (both existing) the same inode, which
    also catches hard links (docs/attack-round-2026-12.md, K2)."""
    if _resolve(a) == _resolve(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet: then they are different files
        return False


def _open_journal(source: str | os.PathLike[str] | None, out: Path, jpath: Path, fpath: Path, *,
                  retry_failed: bool, overwrite: bool, durable: bool) -> Journal:
    if source is not None and not Path(source).is_file():
        raise UsageError(f"{source}: no such input file")
    named = [("the output", out), ("the journal", jpath), ("the failures file", fpath),
             *([("the input", Path(source))] if source is not None else [])]
    for i, (what, p) in enumerate(named):
        for other, q in named[i + 1:]:
            if _same_file(p, q):
                raise UsageError(f"{what} and {other} are the same file ({p}, {q}): the input, "
                                 "the output, the journal and the failures file must be "
                                 "different files")
        if what != "the input" and p.exists() and not p.is_file():
            raise UsageError(f"{p}: not a regular file ({what} is appended to, truncated and "
                             "resumed: give a file path)")
    # The failures file is written at the end: find a read-only place now, before paying for
    # any record (docs/attack-round-2026-12.md, K9). Its temporary twin is what gets written, then renamed.
    probe = fpath.with_name(fpath.name + ".tmp")
    with open(probe, "ab"):
        pass
    probe.unlink()
    if retry_failed and (not jpath.exists() or jpath.stat().st_size == 0):
        raise UsageError(f"nothing to retry: there is no journal at {jpath}")
    return Journal(jpath, output=out, source=None if source is None else str(source),
                   durable=durable, overwrite=overwrite)


def _fatal_io(exc: BaseException, jpath: Path) -> OSError:
    """A journal error (full disk, I/O error) as the OSError of the journal's path, so that it is
    reported like an output write error: `<path>: No space left on device`."""
    import errno

    if isinstance(exc, sqlite3.Error):
        text = str(exc)
        if "full" in text:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(jpath))
        return OSError(errno.EIO, f"batch journal error ({text})", str(jpath))
    assert isinstance(exc, OSError)
    return exc


async def _run(runner: _Runner, inputs: Any, fmt: str | None, is_path: bool, retry_failed: bool,
               concurrency: int, commit_interval: float,
               on_progress: Callable[[BatchProgress], object] | None, progress_interval: float,
               on_problem: Callable[[InputProblem], object] | None, max_record_bytes: int) -> None:
    """Read, dispatch and write until the input is done. Every task is supervised: the first
    exception in any of them (a full disk while writing, a journal error) stops the whole run
    and is raised here; nothing waits forever on a task that died."""
    queue: asyncio.Queue[tuple[int, BatchItem] | None] = asyncio.Queue(maxsize=concurrency)
    loop = asyncio.get_running_loop()
    crashed: asyncio.Future[None] = loop.create_future()

    def supervise(task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is not None and not crashed.done():
            crashed.set_exception(task.exception())  # type: ignore[arg-type]

    def start(coro: Any) -> asyncio.Future[Any]:
        task: asyncio.Future[Any] = asyncio.ensure_future(coro)
        task.add_done_callback(supervise)
        return task

    helpers = [start(runner.sink.commit_every_interval(commit_interval))]
    counting = None
    if is_path and not retry_failed:
        counting = asyncio.ensure_future(
            _count(inputs, fmt, runner.state, runner.state.before, max_record_bytes))
        helpers.append(counting)  # not supervised: the count only feeds the progress display
    if on_progress is not None:
        helpers.append(start(_tick(runner, on_progress, progress_interval)))
    workers: list[asyncio.Future[Any]] = []

    def spawn() -> None:
        # Workers start with the records, never ahead of them: `-c 10000` on a 3-line input
        # makes 3 tasks (docs/attack-round-2026-12.md, K1).
        if runner.idle == 0 and len(workers) < concurrency:
            workers.append(start(runner.work(queue)))

    async def main() -> None:
        await runner.read(iter_items(inputs, fmt, max_record_bytes=max_record_bytes), queue,
                          retry_failed=retry_failed, on_problem=on_problem, spawn=spawn)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)

    reader = start(main())
    try:
        await asyncio.wait((reader, crashed), return_when=asyncio.FIRST_COMPLETED)
        if crashed.done():
            crashed.result()  # raises the first task's exception
        reader.result()
        if counting is not None:  # the summary says how many records were left (a byte scan)
            with contextlib.suppress(Exception):
                await counting
    finally:
        for task in (reader, *workers, *helpers):
            task.cancel()
        for task in (reader, *workers, *helpers):
            with contextlib.suppress(BaseException):
                await task
        if not crashed.done():
            crashed.cancel()
