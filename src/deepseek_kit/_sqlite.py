"""SQLite helpers shared by the stores that keep state on disk (cache, logs, batch journal)."""

from __future__ import annotations

import sqlite3
import time

__all__ = ["enable_wal"]


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
