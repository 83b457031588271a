"""SQLite helpers shared by the stores that keep state on disk (cache, logs, batch journal)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

__all__ = ["enable_wal", "private_db_file"]


def private_db_file(path: Path) -> None:
    """Make `path` ready for SQLite as a private file: its directory created 0700 when missing (so
    a fresh DSK_HOME is 0700) and the file created 0600 before SQLite opens it (SQLite gives the
    -wal and -shm files the database file's mode). Files and a DSK_HOME left readable by others
    (older versions made cache.sqlite3 0644 in a 0755 DSK_HOME, docs/attack-round-2026-12.md, S4) are
    tightened. Answers, prompts and logs are private even on a shared machine."""
    from ._settings import home_dir

    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    elif parent.resolve() == home_dir().expanduser().resolve():
        _tighten(parent, 0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        _tighten(p, 0o600)


def _tighten(path: Path, mode: int) -> None:
    with contextlib.suppress(OSError):  # missing, or not ours to change: leave it
        st = path.stat()
        if st.st_mode & 0o077:
            path.chmod(mode)


def enable_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Switch a database to WAL (readers never block the writer; safe for several processes).
    Two processes creating the file at once can both get "database is locked" here: SQLite does
    not run the busy handler for this switch, so retry until `busy_timeout` seconds have passed."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
