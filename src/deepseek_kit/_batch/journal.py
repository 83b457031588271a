"""The batch journal: a SQLite file (WAL) that records, for every input id, whether it is pending,
done (with where its result line ends in the output file) or failed (with the error), so that a
run killed at any moment - SIGKILL mid-write included - resumes where it stopped and every id gets
exactly one result line.

How the output file and the journal stay consistent. Result lines are only ever appended to the
output, and the journal commits in groups: the runner appends lines, then flushes them to the
file (and fsyncs it when durable), and only then commits the transaction that marks those ids
done together with `committed_offset`, the output size that the commit covers. Commits happen in
write order, so the journaled results are always exactly the first `committed_offset` bytes of
the file. A crash can leave only lines *after* that offset (written, not yet committed: their ids
are still pending in the journal) and at worst a torn last line; on resume `recover()` truncates
the file back to `committed_offset` and those ids run again. Nothing committed is ever
rewritten, and nothing uncommitted survives, hence exactly one line per id.

Why not write the answers into SQLite and export the output at the end: the output would
exist only once the whole run is over, every answer would be written twice, and the journal
would grow with the answers. Truncate-to-the-journal keeps the output streaming (usable while
the run goes on) and the journal small (a key, a few integers and an error text per id).

Durability: with `durable=True` (the default of the runner) the output is fsynced before each
commit and SQLite runs `synchronous=FULL`, so committed results also survive a power loss; with
`durable=False` (`synchronous=NORMAL`, no fsync) they survive the process being killed but a
power loss may lose the last commits - then `recover()` finds the output shorter than the
journal says and puts the lost ids back to pending instead of failing.

Changed requests. Each id's row keeps `req_hash`, a hash of the request that produced (or will
produce) its answer. A rerun compares the input's requests with it (`mark_changed`): an answered
id whose request changed is reported, or - asked to redo - `drop_changed` takes its line out
of the output and puts it back to pending, so it is asked again and appended, still exactly once.
Taking lines out rewrites the output: the kept lines are copied (in output order, which is
`end_offset` order) to a temporary file that is fsynced; one journal commit then records the new
offsets, the ids to redo and the temporary file's name ("replacing"); the file is renamed over
the output and the mark cleared. A crash before that commit leaves the old output and journal as
they were; after it, `recover()` finishes the rename. Journals of schema 1 (before hashes) are
migrated in place: their answered ids have no hash, which means "unknown" - never "changed".

One connection, used from one thread (the runner's event loop); a write transaction is always
open and `commit()` closes it and opens the next. Input problems (malformed lines, duplicate ids)
belong to the current run: they are re-found each time the input is read again.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from deepseek_kit._wire.errors import UsageError

__all__ = ["PICO", "Journal", "JournalTotals", "Recovery"]

#: Costs are stored as integers in units of 1e-12 of the currency: DeepSeek's prices have at most
#: 3 decimals per 1M tokens (halved off-peak), so every cost is exact there and SQL sums are exact.
PICO = Decimal(10) ** 12

PENDING, DONE, FAILED = 0, 1, 2
_STATUS = {PENDING: "pending", DONE: "done", FAILED: "failed"}
_SCHEMA_VERSION = 2
_CHANGED = "new_hash IS NOT NULL AND new_hash != req_hash"  # marked by mark_changed

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY,
    ident,
    line INTEGER NOT NULL,
    status INTEGER NOT NULL,
    run INTEGER NOT NULL,
    end_offset INTEGER,
    cost_pico INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    error_class TEXT,
    status_code INTEGER,
    message TEXT,
    req_hash TEXT,
    new_hash TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS problems (line INTEGER NOT NULL, ident, kind TEXT NOT NULL, message TEXT NOT NULL);
"""


def _copy(src: Any, dst: Any, size: int) -> None:
    while size > 0:
        chunk = src.read(min(size, 1 << 20))
        if not chunk:
            raise UsageError(f"{src.name} is shorter than its journal says: it was changed outside "
                             "dsk batch; restore it, or delete the journal to start over")
        dst.write(chunk)
        size -= len(chunk)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@dataclass(frozen=True)
class JournalTotals:
    """What earlier runs achieved: ids done and failed, and what the done ones cost."""

    done: int = 0
    failed: int = 0
    pending: int = 0
    cost: Decimal = Decimal(0)
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Recovery:
    """The result of `Journal.recover()`: where to append, and what the output had to lose."""

    offset: int
    truncated_bytes: int = 0
    lost_results: int = 0


class Journal:
    """`Journal(path, output=OUT)`: opens (or creates) the journal of one output file."""

    def __init__(self, path: str | os.PathLike[str], *, output: str | os.PathLike[str],
                 source: str | None = None, durable: bool = True, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.output = Path(output)
        self.existed = self.path.exists() and self.path.stat().st_size > 0
        self._done: list[tuple[int, int, int, int, str]] = []
        self._lost: OSError | None = None  # set once SQLite dropped the open transaction
        for d in {self.path.parent, self.output.parent}:
            if not d.is_dir():
                raise UsageError(f"{d}: no such directory")
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=0.5)
        except sqlite3.Error as exc:
            raise UsageError(f"{self.path}: cannot open the batch journal ({exc})") from None
        try:
            # One run per output at a time: the lock is taken at the first write and held until
            # close, so a second `dsk batch` on the same output fails at once instead of
            # appending to the same file.
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            # SQLite's page cache is the journal's only memory and grows to its limit (2 MB by
            # default) as the run touches more of the table; 512 KiB keeps a run's memory flat
            # early on, and the OS page cache holds the file anyway.
            self._db.execute("PRAGMA cache_size=-512")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise self._error(exc) from None
        try:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise self._error(exc) from None
            self._check_meta(source, overwrite)
            run = int(self._meta("runs") or 0) + 1
            self._set_meta("runs", run)
            self._db.execute("DELETE FROM problems")
            self._commit()
        except BaseException:
            self.close()
            raise
        self.run = run

    def _error(self, exc: sqlite3.DatabaseError) -> UsageError:
        if "locked" in str(exc):
            return UsageError(f"{self.path} is in use by another dsk batch run (one run per output "
                              "at a time)")
        return UsageError(f"{self.path}: not a usable batch journal ({exc}); delete it or pass "
                          "another --journal")

    # -- meta ----------------------------------------------------------------------------------

    def _meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _check_meta(self, source: str | None, overwrite: bool) -> None:
        out = str(self.output.resolve())
        version, recorded = self._meta("version"), self._meta("output")
        if version is not None:
            try:
                number = int(version)
            except (TypeError, ValueError):
                number = -1
            if number > _SCHEMA_VERSION:
                raise UsageError(f"{self.path} was written by a newer dsk (journal version "
                                 f"{version}, this dsk knows {_SCHEMA_VERSION}): upgrade dsk, or "
                                 "delete the journal to start over")
            if number < 1:
                raise UsageError(f"{self.path}: not a usable batch journal (version {version!r}); "
                                 "delete it or pass another --journal")
            if number == 1:  # schema 1 had no request hashes: add the columns, leave them unknown
                self._db.execute("ALTER TABLE items ADD COLUMN req_hash TEXT")
                self._db.execute("ALTER TABLE items ADD COLUMN new_hash TEXT")
                self._set_meta("version", _SCHEMA_VERSION)
        if recorded is not None and recorded != out:
            raise UsageError(f"{self.path} is the journal of {recorded}, not of {out}: pass that "
                             "output with -o, or another --journal")
        if recorded is None and not overwrite and _size(self.output):
            # A new journal (or an empty or schema-less file, as a crash while creating one or a
            # full disk leaves) beside a non-empty output knows nothing of that output: resuming
            # would cut it to nothing (docs/attack-round-2026-12.md, K5).
            raise UsageError(f"{self.output} exists and has no journal ({self.path} is empty or "
                             "not a batch journal): pick another output, or overwrite it "
                             "(--overwrite)")
        if recorded is None:
            self._set_meta("version", _SCHEMA_VERSION)
            self._set_meta("output", out)
            self._set_meta("source", source)
            self._set_meta("committed_offset", 0)

    # -- reading -------------------------------------------------------------------------------

    @property
    def committed_offset(self) -> int:
        return int(self._meta("committed_offset") or 0)

    def totals(self) -> JournalTotals:
        counts = {PENDING: 0, DONE: 0, FAILED: 0}
        cost = ptok = ctok = 0
        for status, n, c, p, q in self._db.execute(
                "SELECT status, COUNT(*), SUM(cost_pico), SUM(prompt_tokens), SUM(completion_tokens)"
                " FROM items GROUP BY status"):
            counts[status] = n
            cost += c or 0
            ptok += p or 0
            ctok += q or 0
        return JournalTotals(counts[DONE], counts[FAILED], counts[PENDING], Decimal(cost) / PICO, ptok, ctok)

    def status(self, key: str) -> str | None:
        row = self._db.execute("SELECT status FROM items WHERE key=?", (key,)).fetchone()
        return None if row is None else _STATUS[row[0]]

    def failures(self) -> Iterator[dict[str, Any]]:
        """Failed ids and this run's input problems, in input order (a SQL sort, not a list)."""
        rows = self._db.execute(
            "SELECT line, ident, error_class, status_code, message FROM items WHERE status=2 "
            "UNION ALL SELECT line, ident, kind, NULL, message FROM problems ORDER BY 1")
        for line, ident, error, code, message in rows:
            rec: dict[str, Any] = {"id": ident, "line": line, "error": error, "message": message}
            if code is not None:
                rec["status"] = code
            yield rec

    # -- the runner's calls --------------------------------------------------------------------

    def recover(self) -> Recovery:
        """Make the output file agree with the journal before appending (see the module
        docstring): cut what was written after the last commit; if the file is shorter than the
        journal says (a power loss without fsync, or the file was changed), put the results it
        lost back to pending. Returns the size to append at."""
        self._finish_replace()  # a --redo-changed rewrite interrupted after its commit
        with contextlib.suppress(FileNotFoundError):  # ... or before it: the old output stands
            self.output.with_name(self.output.name + ".redo.tmp").unlink()
        offset = self.committed_offset
        try:
            size = self.output.stat().st_size
        except FileNotFoundError:
            size = 0
        lost = 0
        if size < offset:
            lost = self._db.execute(
                "UPDATE items SET status=0, end_offset=NULL, cost_pico=0, prompt_tokens=0, "
                "completion_tokens=0 WHERE status=1 AND end_offset>?", (size,)).rowcount
            row = self._db.execute("SELECT MAX(end_offset) FROM items WHERE status=1").fetchone()
            offset = int(row[0] or 0)
            self._set_meta("committed_offset", offset)
            self._commit()
        if size == 0 and offset == 0:
            return Recovery(0, 0, lost)
        with open(self.output, "r+b") as f:
            if offset:
                f.seek(offset - 1)
                if f.read(1) != b"\n":
                    raise UsageError(f"{self.output} does not match its journal {self.path} (no line "
                                     f"end at byte {offset}): it was changed outside dsk batch; "
                                     "restore it, or delete the journal to start over")
            if size > offset:
                f.truncate(offset)
                f.flush()
                os.fsync(f.fileno())
        return Recovery(offset, max(size - offset, 0), lost)

    def claim(self, key: str, ident: str | int, line: int,
              req_hash: str | None = None) -> tuple[str, int]:
        """Register an input id for this run. Returns its state - "new", "pending" (seen by a run
        that did not finish it), "done", "failed", "changed" (done, but its request differs from
        the one answered), or "duplicate" (already seen in this run's input) - and the line where
        this run first saw it. The hash of an id without an answer follows the input."""
        # Insert first: for a fresh input (the common case) that is the only statement.
        if self._db.execute("INSERT INTO items(key, ident, line, status, run, req_hash) "
                            "VALUES (?,?,?,0,?,?) ON CONFLICT(key) DO NOTHING",
                            (key, ident, line, self.run, req_hash)).rowcount:
            return "new", line
        status, run, first, old = self._db.execute(
            "SELECT status, run, line, req_hash FROM items WHERE key=?", (key,)).fetchone()
        if run == self.run:
            return "duplicate", first
        if status == DONE:
            self._db.execute("UPDATE items SET run=?, line=? WHERE key=?", (self.run, line, key))
            changed = old is not None and req_hash is not None and old != req_hash
            return ("changed" if changed else "done"), line
        self._db.execute("UPDATE items SET run=?, line=?, req_hash=? WHERE key=?",
                         (self.run, line, req_hash, key))
        return _STATUS[status], line

    # -- changed requests (see the module docstring) -------------------------------------------

    def mark_changed(self, requests: Iterable[tuple[str, str]]) -> tuple[int, list[str]]:
        """Compare (key, request hash) pairs of the input with the answered ids. Returns how many
        answered ids changed and the first few of them (input order); they stay marked for
        `drop_changed` until `clear_changed`. Only the first occurrence of a key counts (a later
        one is a duplicate). The pairs go through a temporary table in batches and one join
        compares them: no per-id statement, no set of ids in memory."""
        self._db.execute("CREATE TEMP TABLE IF NOT EXISTS scan (key TEXT PRIMARY KEY, "
                         "hash TEXT NOT NULL) WITHOUT ROWID")
        self._db.execute("DELETE FROM scan")
        it = iter(requests)
        while batch := list(itertools.islice(it, 10_000)):
            self._db.executemany("INSERT OR IGNORE INTO scan VALUES (?, ?)", batch)
        # Answered ids with a known hash (schema-1 ids have none: unknown is not changed).
        self._db.execute("UPDATE items SET new_hash = scan.hash FROM scan WHERE items.key = scan.key"
                         " AND items.status = 1 AND items.req_hash IS NOT NULL"
                         " AND items.req_hash != scan.hash")
        self._db.execute("DELETE FROM scan")
        count = self._db.execute(f"SELECT COUNT(*) FROM items WHERE {_CHANGED}").fetchone()[0]
        first = [str(r[0]) for r in self._db.execute(
            f"SELECT ident FROM items WHERE {_CHANGED} ORDER BY line LIMIT 5")] if count else []
        return count, first

    def clear_changed(self) -> None:
        self._db.execute("UPDATE items SET new_hash=NULL WHERE new_hash IS NOT NULL")
        self._commit()

    def drop_changed(self) -> int:
        """Take the lines of the ids marked by `mark_changed` out of the output (crash-safely,
        see the module docstring) and put those ids back to pending with their new request
        hash. Returns how many. Call after `recover()`, before appending."""
        where = _CHANGED
        tmp = self.output.with_name(self.output.name + ".redo.tmp")
        self._db.execute("CREATE TEMP TABLE IF NOT EXISTS moves (key TEXT PRIMARY KEY, end_offset "
                         "INTEGER) WITHOUT ROWID")
        self._db.execute("DELETE FROM moves")
        pos = kept = dropped = 0
        try:
            with open(self.output, "rb") as src, open(tmp, "wb") as dst:
                rows = self._db.execute(f"SELECT key, end_offset, {where} FROM items WHERE status=1 "
                                        "ORDER BY end_offset")
                for key, end, changed in rows:
                    size = end - pos
                    src.seek(end - 1)
                    if size < 1 or src.read(1) != b"\n":  # every journaled line ends where it says
                        raise self._mismatch(end)
                    src.seek(pos)
                    if changed:
                        dropped += 1
                    else:
                        _copy(src, dst, size)
                        kept += size
                        self._db.execute("INSERT INTO moves VALUES (?, ?)", (key, kept))
                    pos = end
                if pos != self.committed_offset:
                    raise self._mismatch(pos)
                dst.flush()
                os.fsync(dst.fileno())
        except BaseException as exc:
            with contextlib.suppress(OSError):  # nothing was committed: the old output stands
                tmp.unlink()
            if isinstance(exc, OSError) and exc.filename is None:  # a full disk: name the file
                raise OSError(exc.errno, exc.strerror, str(tmp)) from None
            raise
        self._db.execute("UPDATE items SET end_offset = moves.end_offset FROM moves "
                         "WHERE items.key = moves.key")
        self._db.execute(
            f"UPDATE items SET status=0, end_offset=NULL, cost_pico=0, prompt_tokens=0, "
            f"completion_tokens=0, req_hash=new_hash, new_hash=NULL WHERE {where}")
        self._db.execute("UPDATE items SET new_hash=NULL WHERE new_hash IS NOT NULL")
        self._db.execute("DELETE FROM moves")
        self._set_meta("committed_offset", kept)
        self._set_meta("replacing", str(tmp))
        self._commit()
        self._finish_replace()
        return dropped

    def _mismatch(self, offset: int) -> UsageError:
        return UsageError(f"{self.output} does not match its journal {self.path} (no line end at "
                          f"byte {offset}): it was changed outside dsk batch; restore it, or "
                          "delete the journal to start over")

    def _finish_replace(self) -> None:
        """Rename the rewritten output over the old one, if a committed rewrite is pending."""
        tmp = self._meta("replacing")
        if tmp is None:
            return
        if os.path.exists(tmp):
            os.replace(tmp, self.output)
            _fsync_dir(self.output.parent)
        self._db.execute("DELETE FROM meta WHERE key='replacing'")
        self._commit()

    def done(self, key: str, end_offset: int, cost: Decimal, prompt_tokens: int,
             completion_tokens: int) -> None:
        """Mark an id done; takes effect at the next `commit()`, which must come after its line
        reached the file. Kept in a list and written with one executemany at the commit."""
        self._done.append((end_offset, int(cost * PICO), prompt_tokens, completion_tokens, key))

    def failed(self, key: str, error_class: str, message: str, status_code: int | None) -> None:
        self._db.execute("UPDATE items SET status=2, error_class=?, status_code=?, message=? WHERE key=?",
                         (error_class, status_code, message, key))

    def problem(self, line: int, ident: str | int | None, kind: str, message: str) -> None:
        self._db.execute("INSERT INTO problems(line, ident, kind, message) VALUES (?,?,?,?)",
                         (line, ident, kind, message))

    def commit(self, committed_offset: int) -> None:
        """Commit everything recorded since the last commit, with the output size it covers.
        The caller has already flushed (and fsynced) the output up to `committed_offset`."""
        self._check_open()
        if self._done:
            self._db.executemany(
                "UPDATE items SET status=1, end_offset=?, cost_pico=?, prompt_tokens=?, "
                "completion_tokens=?, error_class=NULL, status_code=NULL, message=NULL WHERE key=?",
                self._done)
            self._done.clear()
        self._set_meta("committed_offset", committed_offset)
        self._commit()

    def _commit(self) -> None:
        self._check_open()
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")

    def _check_open(self) -> None:
        """Refuse to commit once SQLite has rolled the open transaction back by itself, as it may
        after SQLITE_FULL, SQLITE_IOERR or SQLITE_NOMEM (https://www.sqlite.org/lang_transaction.html,
        "Response To Errors Within A Transaction"): the claims and done marks since the last commit
        are gone, and a commit now would record `committed_offset` over result lines whose ids the
        journal no longer has as done. A rerun would then answer those ids again, a second line
        each (seen on a full disk, where the output's ENOSPC is followed by the final commit).
        Refused, the run stops; the rerun's recover() cuts the file back to the last commit."""
        if self._lost is None and not self._db.in_transaction:
            self._lost = OSError(errno.EIO, "the batch journal lost its uncommitted results (SQLite "
                                 "rolled them back after an error, a full disk or an I/O error); "
                                 "free space and rerun: the run resumes from its last commit",
                                 str(self.path))
        if self._lost is not None:
            raise self._lost

    def close(self) -> None:
        """Roll back what was not committed (its lines, if any, are cut on the next recover())."""
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        finally:
            self._db.close()
