"""What a batch run reports: `BatchProgress` snapshots while it runs (for progress displays) and
the `BatchResult` it returns (`_batch/run.py` fills both)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

__all__ = ["BatchProgress", "BatchResult"]


@dataclass(frozen=True)
class BatchProgress:
    """A snapshot for progress displays. `done`/`failed` count the whole job (earlier runs
    included); `done_now`, `rate` (results per second) and `eta` (seconds) this run; `invalid`
    the malformed lines and duplicate ids seen so far; `total` the input's records (None while
    still being counted, or for an iterable input).

    Attributes:
        total: Records in the input; None while they are being counted, or for an iterable input.
        done: Ids answered, over the whole job.
        failed: Ids that failed, over the whole job.
        invalid: Malformed lines and duplicate ids seen so far.
        in_flight: Requests running now.
        done_now: Ids answered by this run.
        failed_now: Ids that failed in this run.
        prompt_tokens: Input tokens of the whole job's answers.
        completion_tokens: Output tokens of the whole job's answers.
        cost: What the whole job has cost so far (`Decimal`, in the run's currency).
        elapsed: Seconds since this run started.
        rate: Answers per second in this run.
        eta: Seconds until this run is done at `rate`; None until it can be estimated.
        stopping: None while the run goes on; "max_cost" or "fatal" once it stops taking new
            requests (those in flight finish)."""

    total: int | None
    done: int
    failed: int
    invalid: int
    in_flight: int
    done_now: int
    failed_now: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    elapsed: float
    rate: float
    eta: float | None
    stopping: str | None


@dataclass(frozen=True)
class BatchResult:
    """How a run ended. `stopped`: None (input exhausted), "max_cost", "fatal" (see `fatal`).
    `complete` is True when every valid id of the input has a result line.

    Attributes:
        output: The results file (JSON lines).
        journal: The SQLite journal a rerun resumes from.
        failures: The failures file (failed ids, malformed lines, duplicate ids); None when
            this run wrote none.
        done: Ids answered, over the whole job (earlier runs included).
        failed: Ids that failed, over the whole job.
        invalid: Malformed lines and duplicate ids this run met.
        pending: Ids started but without an outcome (a stopped run); a rerun asks them again.
        done_now: Ids answered by this run.
        failed_now: Ids that failed in this run.
        skipped: Records this run did not ask: answered by an earlier run (or, with
            `retry_failed`, not failed).
        cost: The whole job's cost (`Decimal`, in the run's currency).
        cost_now: This run's cost.
        prompt_tokens: Input tokens of the whole job's answers.
        completion_tokens: Output tokens of the whole job's answers.
        elapsed: Seconds this run took.
        stopped: None when the input was run to its end, else "max_cost" or "fatal".
        fatal: The error that stopped the run (a 401 or 402), when `stopped` is "fatal".
        recovered_bytes: Bytes of a torn last line cut from the output before this run appended.
        total: Records in the input; None for an iterable input.
        lost: Answers the journal had but the output no longer held, asked again this run.
        redone: Answered ids whose request changed, asked again (`redo_changed=True`)."""

    output: Path
    journal: Path
    failures: Path | None
    done: int
    failed: int
    invalid: int
    pending: int
    done_now: int
    failed_now: int
    skipped: int
    cost: Decimal
    cost_now: Decimal
    prompt_tokens: int
    completion_tokens: int
    elapsed: float
    stopped: str | None = None
    fatal: BaseException | None = None
    recovered_bytes: int = 0
    total: int | None = None
    #: Answers the journal had but the output no longer held (the file was cut short outside
    #: dsk batch, or a power loss without fsync): asked again this run.
    lost: int = 0
    #: Answered ids whose request changed, taken out and asked again (`redo_changed`).
    redone: int = 0

    @property
    def not_run(self) -> int | None:
        """Records of the input with no outcome yet (None when the total is unknown)."""
        if self.total is None:
            return None
        return max(self.total - self.done - self.failed - self.invalid, 0)

    @property
    def complete(self) -> bool:
        """True when every record has its answer in the output: not stopped, nothing failed, nothing
        left pending (invalid records, reported apart, do not count)."""
        return self.stopped is None and self.failed == 0 and self.pending == 0
