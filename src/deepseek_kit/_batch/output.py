"""Where batch results go: `ResultSink` appends result lines to the output file, in completion
order or through a bounded reorder buffer (input order), and group-commits them to the journal;
`write_failures` exports the failed ids and input problems to the failures file.

Group commit (see `_batch/journal.py` for why this order makes every id appear exactly once): lines go
into the file's buffer as results arrive; `commit()` - every `commit_interval` seconds, after
`commit_every` lines, and at the end - flushes the buffer to the file, fsyncs it when durable,
then commits the journal transaction that marks those ids done with the new file size. One fsync
and one SQLite commit per group instead of per line keeps the cost per result at microseconds.

Input order (`ordered=True`): each dispatched item holds one slot of a window of `window` slots,
taken by the reader before the item is queued and given back once the item's line is written (or
the item ended without one). Results that finish early wait in a dict keyed by dispatch number
until everything before them is resolved. So at most `window` results are ever held, whatever
the input size; the price is that one slow item (retrying with backoff) stalls dispatch once the
window is full, which is why the default window is several times the concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from decimal import Decimal
from pathlib import Path

import msgspec

from .journal import Journal

__all__ = ["ResultSink", "write_failures"]

_encode = msgspec.json.Encoder(decimal_format="string").encode


class _Pending(msgspec.Struct, array_like=True, gc=False):
    key: str
    data: bytes
    cost: Decimal
    prompt_tokens: int
    completion_tokens: int


class ResultSink:
    """Appends result lines after `offset` (where `Journal.recover()` left the file)."""

    def __init__(self, journal: Journal, output: Path, offset: int, *, ordered: bool = False,
                 window: int = 256, durable: bool = True, commit_every: int = 2000) -> None:
        self.journal = journal
        self.offset = offset
        self.durable = durable
        self.commit_every = commit_every
        self.ordered = ordered
        self.window: asyncio.Semaphore | None = asyncio.Semaphore(window) if ordered else None
        self.written = 0  # lines appended by this run
        self._committed_offset = offset
        self._uncommitted = 0
        self._held: dict[int, _Pending | None] = {}
        self._next = 0
        self.path = output
        self._file = open(output, "ab", buffering=1 << 16)  # noqa: SIM115 - closed in close()

    def result(self, seq: int, key: str, data: bytes, cost: Decimal, prompt_tokens: int,
               completion_tokens: int) -> None:
        """A finished item's result line (`data` ends with a newline)."""
        pending = _Pending(key, data, cost, prompt_tokens, completion_tokens)
        if self.ordered:
            self._held[seq] = pending
            self._drain()
        else:
            self._write(pending)

    def nothing(self, seq: int) -> None:
        """An item ended without a result line (failed, or never started)."""
        if self.ordered:
            self._held[seq] = None
            self._drain()

    def _drain(self) -> None:
        assert self.window is not None
        while self._next in self._held:
            pending = self._held.pop(self._next)
            self._next += 1
            if pending is not None:
                self._write(pending)
            self.window.release()

    def _io_error(self, exc: OSError) -> OSError:
        """The error with the output's path (a buffered write error names no file)."""
        if exc.filename is None:
            return OSError(exc.errno, exc.strerror or str(exc), str(self.path))
        return exc

    def _write(self, p: _Pending) -> None:
        try:
            self._file.write(p.data)
        except OSError as exc:
            raise self._io_error(exc) from None
        self.offset += len(p.data)
        self.written += 1
        self.journal.done(p.key, self.offset, p.cost, p.prompt_tokens, p.completion_tokens)
        self._uncommitted += 1
        if self._uncommitted >= self.commit_every:
            self.commit()

    def commit(self) -> None:
        """Flush (and fsync) the output, then commit the journal: never the other way round."""
        if self.offset != self._committed_offset:
            try:
                self._file.flush()
                if self.durable:
                    os.fsync(self._file.fileno())
                if os.fstat(self._file.fileno()).st_nlink == 0:
                    # Deleted (or replaced by a rename) under the run: answers written now would
                    # be paid for and lost. Stop; a rerun asks the lost ones again.
                    raise OSError(errno.ENOENT, "the output file was deleted during the run")
            except OSError as exc:
                raise self._io_error(exc) from None
        self.journal.commit(self.offset)
        self._committed_offset = self.offset
        self._uncommitted = 0

    async def commit_every_interval(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.commit()

    def close(self) -> None:
        """Final commit and close. Lines still in the reorder buffer are dropped uncommitted:
        their ids stay pending and run again on resume."""
        try:
            self.commit()
        except BaseException:
            # Closing flushes the buffer again: on a full disk that raises a second ENOSPC that
            # names no file and would replace the first (which names the output). Keep the first.
            with contextlib.suppress(OSError):
                self._file.close()
            raise
        try:
            self._file.close()
        except OSError as exc:
            raise self._io_error(exc) from None


def encode_line(record: dict[str, object]) -> bytes:
    return _encode(record) + b"\n"


def write_failures(journal: Journal, path: Path) -> int:
    """Write the journal's failed ids and this run's input problems to `path` (JSONL, input
    order), atomically; remove a stale file when there are none. Returns the count."""
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    try:
        with open(tmp, "wb") as f:
            for rec in journal.failures():
                f.write(_encode(rec) + b"\n")
                count += 1
    except OSError as exc:  # a full disk: name the file (a buffered write error names none)
        with contextlib.suppress(OSError):
            tmp.unlink()
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(tmp)) from None
        raise
    if count:
        os.replace(tmp, path)
    else:
        tmp.unlink()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return count
