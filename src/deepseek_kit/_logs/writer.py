"""The background writer of the logs database: `LogStore`, one thread per database file per process.

Callers hand it `make_row` callables (`put`, from any thread, never blocks: when the bounded queue
is full the row is dropped and counted), so decoding bodies and pricing happen on the writer
thread, not the event loop. The thread inserts rows in batches, one transaction per batch; it waits
`batch_delay` after the first row of a batch, so a busy client wakes it once per batch rather than
once per call (each wake-up costs the event loop a GIL hand-off). On an event loop, rows are
held on the loop's side and handed over together `batch_delay` after the first, from a timer: a
hand-off wakes the writer thread, and a wake-up in the middle of a call (between the upstream's
answer and the caller's) delays that call (docs/gateway.md, Performance). `flush()` waits for
everything queued before it; `close()` writes what is queued and stops. At exit, every store is closed (rows
queued by a finishing `dsk` command are written); after `fork()`, the child starts afresh.

Search indexing (FTS5) is not on the insert path: when the queue is empty after a batch, the
writer indexes what it wrote, 500 rows per transaction, stopping as soon as new rows arrive
(`_migrations._search_index` says why; `Logs.search` indexes any rest itself).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import os
import queue
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepseek_kit._wire.errors import UsageError

from .store import REQUEST_COLUMNS, LogConfig, connect, index_pending

__all__ = ["LogStore"]

log = logging.getLogger("deepseek_kit.logs")

_ROW = "(" + ", ".join("?" * len(REQUEST_COLUMNS)) + ")"
_INSERT_HEAD = f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) VALUES "
# SQLite >= 3.32 takes 32766 parameters per statement, older ones 999.
_MAX_ROWS = (32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999) // len(REQUEST_COLUMNS)
_SIZES = [n for n in (512, 256, 128, 64, 32, 16, 8, 4, 2, 1) if n <= _MAX_ROWS]


@functools.lru_cache(maxsize=16)
def _insert_sql(n: int) -> str:
    return _INSERT_HEAD + ", ".join([_ROW] * n)


def _insert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Many rows per statement: `executemany` releases and retakes the GIL around every row's step,
    and each retake waits on the event loop's thread (a convoy that cost the client more than the
    insert itself). Statement sizes are powers of two, so a handful of statements are ever prepared."""
    i = 0
    for size in _SIZES:
        while len(rows) - i >= size:
            chunk = rows[i:i + size]
            conn.execute(_insert_sql(size), [v for row in chunk for v in row])
            i += size

MakeRow = Callable[[], "tuple[Any, ...] | None"]
_STOP = object()
_INDEX_CHUNK = 500


class _Marker(threading.Event):
    """Queued by `flush()`: set once everything before it is written (and indexed, if asked)."""

    def __init__(self, index: bool) -> None:
        super().__init__()
        self.index = index


_MAX_BATCH = 1000
_PRUNE_EVERY = 3600.0


class LogStore:
    """The background writer of one database file. Use `LogStore.shared(config)`: one per file per
    process, shared by every client that logs there."""

    _registry: dict[Path, LogStore] = {}
    _registry_lock = threading.Lock()
    _all: weakref.WeakSet[LogStore] = weakref.WeakSet()

    def __init__(self, config: LogConfig | None = None) -> None:
        cfg = config or LogConfig()
        self.path = cfg.db_path()
        self.retention_days = cfg.retention_days
        self._max = cfg.max_queue
        self._delay = cfg.batch_delay
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Rows put on an event loop, waiting for that loop's hand-off timer (a deque: appends and
        # pops are atomic, and flush/close may drain it from another thread).
        self._held: deque[MakeRow] = deque()
        self._timer_loop: asyncio.AbstractEventLoop | None = None  # the loop a hand-off waits on
        # Rows given to the writer (counted under the lock: putters may be on several threads)
        # and taken by it (only the writer thread counts those): the queue's bound counts rows,
        # and a hand-off is one queue item for many.
        self._given = 0
        self._taken = 0
        self._count_lock = threading.Lock()
        self._urgent = threading.Event()  # set by flush/close: stop waiting for a batch to fill
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pruned_at = 0.0
        self._warned: set[str] = set()
        self.written = 0
        self.dropped = 0
        self.errors = 0
        LogStore._all.add(self)

    @classmethod
    def shared(cls, config: LogConfig | None = None) -> LogStore:
        cfg = config or LogConfig()
        key = cfg.db_path().resolve()
        with cls._registry_lock:
            store = cls._registry.get(key)
            if store is None:
                store = cls._registry[key] = cls(cfg)
            elif cfg.retention_days is not None:
                store.retention_days = cfg.retention_days
            return store

    def put(self, make_row: MakeRow) -> bool:
        """Queue one row (built on the writer thread). Never blocks: False when the queue is full."""
        if self._thread is None:
            self._start()
        # SimpleQueue (C, lock-free put) rather than queue.Queue(maxsize), whose put takes two
        # Python-level locks on the event loop's thread; the bound is checked here instead.
        if self._given - self._taken + len(self._held) >= self._max:
            self.dropped += 1
            self._warn("full", "logs: the writer is behind, dropping rows (LogStore.dropped counts them)")
            return False
        if self._delay:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._held.append(make_row)
                if self._timer_loop is not loop:
                    self._timer_loop = loop
                    loop.call_later(self._delay, self._hand_over, loop)
                return True
        self._hand_over(None)  # rows held on a loop first: the order of rows is kept
        with self._count_lock:
            self._given += 1
        self._q.put(make_row)
        return True

    def _hand_over(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Move the rows held on event loops to the writer's queue, as one batch (one wake-up)."""
        if loop is not None and self._timer_loop is loop:
            self._timer_loop = None
        held = self._held
        batch: list[MakeRow] = []
        with contextlib.suppress(IndexError):  # another thread drained it meanwhile
            while held:
                batch.append(held.popleft())
        if batch:
            with self._count_lock:
                self._given += len(batch)
            self._q.put(batch)

    def flush(self, timeout: float | None = None, *, index: bool = False) -> bool:
        """Wait until every row queued before this call is written (or dropped); with `index`, also
        added to the search index. False on timeout."""
        if self._thread is None:
            return True
        self._hand_over(None)
        done = _Marker(index)
        self._q.put(done)
        self._urgent.set()
        return done.wait(timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Write what is queued, then stop the thread and close the connection."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self._hand_over(None)
        self._q.put(_STOP)
        self._urgent.set()
        thread.join(timeout)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                t = threading.Thread(target=self._run, name="dsk-logs-writer", daemon=True)
                t.start()
                self._thread = t

    def _run(self) -> None:
        q = self._q
        while True:
            first = q.get()
            items = [first]
            if self._delay and callable(first):  # one row put off a loop (a hand-off is a list)
                self._urgent.wait(self._delay)  # let a batch gather: one wake-up per batch
            self._urgent.clear()
            with contextlib.suppress(queue.Empty):
                while len(items) < _MAX_BATCH:
                    items.append(q.get_nowait())
            items = [one for it in items for one in (it if isinstance(it, list) else (it,))]
            rows: list[tuple[Any, ...]] = []
            markers: list[_Marker] = []
            stop = False
            for it in items:
                if it is _STOP:
                    stop = True
                elif isinstance(it, _Marker):
                    markers.append(it)
                else:
                    self._taken += 1
                    try:
                        row = it()
                    except Exception:  # a bug in row building must not stop the writer
                        self.errors += 1
                        self._warn("row", "logs: could not build a log row", exc_info=True)
                        continue
                    if row is not None:
                        rows.append(row)
            if rows:
                self._write(rows)
            if any(m.index for m in markers):
                self._index(None)
            for m in markers:
                m.set()
            if not stop:
                # Idle: make what was written searchable, a chunk at a time, yielding to new rows.
                while q.empty() and self._index(_INDEX_CHUNK):
                    pass
            if stop:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                self._thread = None
                return

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        try:
            conn = self._conn
            if conn is None:
                conn = self._conn = connect(self.path)
            conn.execute("BEGIN IMMEDIATE")
            try:
                _insert(conn, rows)
                self._maybe_prune(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except (sqlite3.Error, UsageError, OSError) as exc:
            self.errors += len(rows)
            self._warn("write", f"logs: could not write {len(rows)} row(s) to {self.path}: {exc}")
            return
        except ValueError as exc:
            # After UsageError (a ValueError too): one row sqlite cannot store (a lone surrogate
            # from a header with invalid UTF-8), not the database. It must not stop the writer.
            if len(rows) > 1:  # keep the others: write them one at a time
                for row in rows:
                    self._write([row])
                return
            self.errors += 1
            self._warn("row", f"logs: could not store a log row: {exc}")
            return
        self.written += len(rows)

    def _index(self, limit: int | None) -> int:
        if self._conn is None:
            return 0
        try:
            return index_pending(self._conn, limit)
        except sqlite3.Error as exc:
            self._warn("index", f"logs: could not update the search index of {self.path}: {exc}")
            return 0

    def _maybe_prune(self, conn: sqlite3.Connection) -> None:
        now = time.time()
        if self.retention_days is None or now - self._pruned_at < _PRUNE_EVERY:
            return
        self._pruned_at = now
        conn.execute("DELETE FROM requests WHERE ts < ?", (now - self.retention_days * 86400,))

    def _warn(self, kind: str, msg: str, **kw: Any) -> None:
        # One warning per kind per store; repeats go to DEBUG (a full disk fails every batch).
        if kind in self._warned:
            log.debug(msg, **kw)
        else:
            self._warned.add(kind)
            log.warning(msg + " (further ones at DEBUG level)", **kw)

    def _after_fork(self) -> None:
        # The writer thread does not exist in a child process, and a SQLite connection must not
        # cross a fork: start afresh (the parent's queued rows are the parent's to write).
        self._q = queue.SimpleQueue()
        self._held = deque()
        self._timer_loop = None
        self._given = self._taken = 0
        self._count_lock = threading.Lock()
        self._urgent = threading.Event()
        self._thread = None
        self._start_lock = threading.Lock()
        self._conn = None


def _close_all() -> None:
    for store in list(LogStore._all):
        store.close(timeout=5.0)


def _reset_after_fork() -> None:
    LogStore._registry_lock = threading.Lock()
    for store in list(LogStore._all):
        store._after_fork()


atexit.register(_close_all)  # daemon writer threads still run while atexit handlers do
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
