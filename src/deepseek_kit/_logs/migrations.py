"""Schema migrations of the logs database (`$DSK_HOME/logs.sqlite3`): named, ordered, applied once.

Each `Migration` has a name that sorts in order ("0001_requests", "0002_conversations", ...) and
either SQL statements or a function of the connection. `migrate(conn)` applies the ones missing
from the `schema_migrations` table, in order, recorded in the same transaction as their changes,
so a crash never leaves a half-applied migration recorded as done.

Several processes may open the file at once (two `dsk` commands, a service with workers): the
check-and-apply runs under `BEGIN IMMEDIATE`, SQLite's write lock, so the second process waits for
the first (busy timeout), then sees every migration already recorded and applies nothing. A quick
unlocked read first makes the common case (schema up to date) cost one SELECT and no write lock.

A database written by a newer deepseek-kit may have migrations this version does not know: they
are left alone (migrations only ever add tables, columns and indexes, so older code keeps working).

Rules for new migrations: append, never edit or reorder a released one; give it the next number.
Hand-written rather than a migration library (alembic, yoyo): those target SQLAlchemy or DB-API
URLs and a project directory of scripts; this is a few dozen lines over `sqlite3`, with the
locking SQLite needs and no dependency.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["MIGRATIONS", "Migration", "applied", "migrate"]


@dataclass(frozen=True)
class Migration:
    """One schema change: `sql` statements, or `apply(conn)` for what SQL alone cannot decide."""

    name: str
    sql: tuple[str, ...] = ()
    apply: Callable[[sqlite3.Connection], None] | None = None


def _fts5_available(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("CREATE VIRTUAL TABLE temp._dsk_fts5_probe USING fts5(x)")
    except sqlite3.OperationalError:
        return False
    conn.execute("DROP TABLE temp._dsk_fts5_probe")
    return True


def _search_index(conn: sqlite3.Connection) -> None:
    """Full-text index over the prompt, answer and reasoning of every request (FTS5, external
    content: the text is stored once, in `requests`). Without FTS5 in this SQLite build, nothing
    is created and search falls back to LIKE (`_logs/query.py` checks which).

    Rows are indexed after they are written, not by an insert trigger: tokenizing costs about four
    times the insert itself, and logging must stay cheap. `requests_fts_state.upto` is the last
    indexed id (ids only grow, in commit order: they are assigned under SQLite's write lock); the
    writer indexes when idle and search catches up first (`_logstore.index_pending`), so rows
    logged before this migration (an upgraded database) become searchable too. Deleting an indexed
    row removes it from the index (the trigger); an unindexed one has nothing to remove."""
    if not _fts5_available(conn):
        return
    for stmt in (
        "CREATE VIRTUAL TABLE requests_fts USING fts5(prompt, answer, reasoning, "
        "content='requests', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
        "CREATE TABLE requests_fts_state (upto INTEGER NOT NULL)",
        "INSERT INTO requests_fts_state VALUES (0)",
        "CREATE TRIGGER requests_fts_ad AFTER DELETE ON requests "
        "WHEN old.id <= (SELECT upto FROM requests_fts_state) BEGIN "
        "INSERT INTO requests_fts(requests_fts, rowid, prompt, answer, reasoning) "
        "VALUES ('delete', old.id, old.prompt, old.answer, old.reasoning); END",
    ):
        conn.execute(stmt)


MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_requests", (
        """CREATE TABLE requests (
            id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so `dsk logs show ID` stays true
            ts REAL NOT NULL,                      -- wall-clock start, epoch seconds
            model TEXT, endpoint TEXT, path TEXT, stream INTEGER NOT NULL DEFAULT 0,
            status INTEGER, outcome TEXT NOT NULL, error TEXT, error_message TEXT,
            attempts INTEGER NOT NULL DEFAULT 1, latency REAL, ttft REAL, finish_reason TEXT,
            prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0, cache_hit_tokens INTEGER NOT NULL DEFAULT 0,
            cache_miss_tokens INTEGER NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0, currency TEXT,
            cache_hit INTEGER NOT NULL DEFAULT 0, trace_id TEXT, response_id TEXT,
            prompt TEXT, messages TEXT, params TEXT, answer TEXT, reasoning TEXT, tool_calls TEXT
        )""",
        "CREATE INDEX requests_ts ON requests(ts)",
        "CREATE INDEX requests_model_ts ON requests(model, ts)",
    )),
    Migration("0002_conversations", (
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY, title TEXT, created REAL NOT NULL, updated REAL NOT NULL,
            model TEXT, system TEXT, messages TEXT NOT NULL, meta TEXT
        )""",
        "CREATE INDEX conversations_updated ON conversations(updated)",
    )),
    Migration("0003_requests_search", apply=_search_index),
    # Calls the emulator answered (its marker header or fingerprint, or dsk's --mock / fallback):
    # shown as such by `dsk logs` and kept out of `dsk stats` unless
    # asked (docs/emulator.md#nothing-it-makes-passes-for-deepseek). Rows
    # logged before this migration by dsk's emulator carry the endpoint label "emulator".
    Migration("0004_requests_synthetic", (
        "ALTER TABLE requests ADD COLUMN synthetic INTEGER NOT NULL DEFAULT 0",
        "UPDATE requests SET synthetic = 1 WHERE endpoint = 'emulator'",
    )),
)

_TABLE = "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"


def applied(conn: sqlite3.Connection) -> list[str]:
    """Names recorded in `schema_migrations`, in the order they were applied ([] for a new file)."""
    try:
        rows = conn.execute("SELECT name FROM schema_migrations ORDER BY rowid").fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    return [r[0] for r in rows]


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
    """Apply the missing migrations in order; returns the names applied now. `conn` must be in
    autocommit mode (`isolation_level=None`): the transactions here are explicit."""
    names = [m.name for m in migrations]
    if names != sorted(names) or len(set(names)) != len(names):
        raise ValueError(f"migration names must be unique and sorted: {names}")
    if set(names) <= set(applied(conn)):
        return []  # up to date: no write lock taken
    done: list[str] = []
    conn.execute("BEGIN IMMEDIATE")  # another process migrating now makes us wait here
    try:
        conn.execute(_TABLE)
        have = set(applied(conn))
        for m in migrations:
            if m.name in have:
                continue
            for stmt in m.sql:
                conn.execute(stmt)
            if m.apply is not None:
                m.apply(conn)
            conn.execute("INSERT INTO schema_migrations(name, applied_at) VALUES (?, ?)",
                         (m.name, time.time()))
            done.append(m.name)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return done
