"""The logs database (`$DSK_HOME/logs.sqlite3`): its settings, opening it, saved conversations.

- `LogConfig`: whether and where calls are logged (`AsyncClient(logs=...)`, `DSK_NO_LOGS=1`, the
  config file's `logs = false` or `[logs]` table), retention, and whether prompts and answers are
  stored or only the numbers.
- `connect(path)`: a connection to the file, created if needed and migrated (`_logs/migrations.py`).
  The background writer of logged calls is `_logwriter.LogStore`; reading is `_logquery.Logs`.
- `save_conversation` / `load_conversation` / `list_conversations` / `delete_conversation`:
  conversations saved and resumed by id (the chat REPL, `Conversation`). They are explicit user
  actions, so they work whether request logging is on or off.

Safe with several processes: WAL journal (readers never block the writer), a busy timeout (writers
queue on SQLite's lock instead of failing), migrations under the write lock (`_logs/migrations.py`).
The file is created private to the user (0600): it holds prompts and answers. Nothing here ever
sees an API key or a request header (the step stores bodies, never headers).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any

import msgspec

from deepseek_kit._settings import home_dir
from deepseek_kit._sqlite import enable_wal, private_db_file
from deepseek_kit._wire.errors import UsageError
from deepseek_kit._wire.holidays import DEFAULT_CALENDAR, HolidayCalendar
from deepseek_kit._wire.pricing import calendar_of, default_clock

from .migrations import migrate

__all__ = [
    "REQUEST_COLUMNS",
    "ConversationInfo",
    "LogConfig",
    "connect",
    "db_error_advice",
    "delete_conversation",
    "index_pending",
    "like_escape",
    "list_conversations",
    "load_conversation",
    "save_conversation",
]

#: The `requests` columns a row tuple fills, in order (see `_steps/logs.py`).
REQUEST_COLUMNS = (
    "ts", "model", "endpoint", "path", "stream", "status", "outcome", "error", "error_message",
    "attempts", "latency", "ttft", "finish_reason", "prompt_tokens", "completion_tokens",
    "reasoning_tokens", "cache_hit_tokens", "cache_miss_tokens", "cost", "currency", "cache_hit",
    "trace_id", "response_id", "prompt", "messages", "params", "answer", "reasoning", "tool_calls",
    "synthetic",
)
_TRUE = ("1", "true", "yes", "on")
_NOT_IN_FILE = {"holidays", "clock"}  # holidays come from the [pricing] table; a clock is code


@dataclass(frozen=True)
class LogConfig:
    """How calls are logged.

    - enabled: False turns logging off.
    - path: the database file (default `$DSK_HOME/logs.sqlite3`).
    - retention_days: delete logged calls older than this (checked when the writer starts and
      hourly); None keeps everything. Saved conversations are never pruned.
    - content: False stores only the numbers (model, tokens, cost, timings, status), not the
      messages, answers, reasoning or tool calls.
    - currency: "CNY" or "USD" for the cost column (DeepSeek's price table, `_wire/pricing.py`).
    - max_queue: rows waiting for the writer at most; beyond it rows are dropped and counted
      (`LogStore.dropped`) rather than slowing the client.
    - batch_delay: seconds the writer waits after the first row of a batch to collect more.
    - holidays: the `HolidayCalendar` that decides peak or off-peak for the cost column (default:
      the built-in one; the client passes the config file's `[pricing]` table).
    - clock: wall clock in epoch seconds for each row's time and price (default honours
      DSK_FAKE_NOW, see `_pricing.default_clock`; tests pin it).
    """

    enabled: bool = True
    path: str | Path | None = None
    retention_days: float | None = None
    content: bool = True
    currency: str = "CNY"
    max_queue: int = 10_000
    batch_delay: float = 0.05
    holidays: HolidayCalendar | Iterable[date] = DEFAULT_CALENDAR
    clock: Callable[[], float] = field(default_factory=default_clock, compare=False)

    def __post_init__(self) -> None:
        # Values come from the config file too: a wrong type is a UsageError, never a TypeError.
        for name, types in (("enabled", bool), ("content", bool), ("currency", str),
                            ("path", (str, Path, type(None))),
                            ("retention_days", (int, float, type(None))), ("batch_delay", (int, float))):
            value = getattr(self, name)
            if not isinstance(value, types) or (isinstance(value, bool) and types is not bool):
                raise UsageError(f"LogConfig.{name} (config file [logs] {name}) has the wrong type: "
                                 f"{value!r}")
        if self.retention_days is not None and not self.retention_days > 0:
            raise UsageError(f"LogConfig.retention_days must be > 0 days or None, "
                             f"got {self.retention_days!r}")
        if not isinstance(self.max_queue, int) or isinstance(self.max_queue, bool) or self.max_queue < 1:
            raise UsageError(f"LogConfig.max_queue must be an integer >= 1, got {self.max_queue!r}")
        if not self.batch_delay >= 0:
            raise UsageError(f"LogConfig.batch_delay must be >= 0 seconds, got {self.batch_delay!r}")
        object.__setattr__(self, "currency", str(self.currency).upper())
        object.__setattr__(self, "holidays", calendar_of(self.holidays, "LogConfig.holidays"))
        if not callable(self.clock):
            raise UsageError(f"LogConfig.clock must be a callable returning epoch seconds, "
                             f"got {self.clock!r}")

    def db_path(self) -> Path:
        """The SQLite file the rows go to: `path`, else $DSK_HOME/logs.sqlite3."""
        return Path(self.path).expanduser() if self.path else home_dir() / "logs.sqlite3"

    @classmethod
    def resolve(cls, value: LogConfig | bool | None, cfg: Mapping[str, Any] | None = None, *,
                default: bool = False) -> LogConfig | None:
        """The config in effect, or None for "off". `DSK_NO_LOGS=1` turns logging off whatever
        else says (the user's switch); then the argument (`True`/`False`/a config); then the
        config file's `logs` (a bool or a table of these fields); then `default` (off in the
        library, on in `dsk`). A config built here prices with the config's `[pricing]`
        holidays (`HolidayCalendar.from_config`)."""
        if os.environ.get("DSK_NO_LOGS", "").strip().lower() in _TRUE:
            return None
        if isinstance(value, LogConfig):
            return value if value.enabled else None
        got = cls._resolve(value, cfg, default=default)
        if got is not None and cfg and cfg.get("pricing") is not None:
            got = dataclasses.replace(got, holidays=HolidayCalendar.from_config(cfg["pricing"]))
        return got

    @classmethod
    def _resolve(cls, value: bool | None, cfg: Mapping[str, Any] | None, *,
                 default: bool) -> LogConfig | None:
        file_value = (cfg or {}).get("logs")
        if value is False:
            return None
        if value is None:
            if file_value is None:
                return cls() if default else None
            if isinstance(file_value, bool):
                return cls() if file_value else None
        if isinstance(file_value, Mapping):
            known = {f.name for f in fields(cls)} - _NOT_IN_FILE
            unknown = sorted(set(file_value) - known)
            if unknown:
                raise UsageError(f"config file [logs]: unknown keys {unknown} (known: {sorted(known)})")
            got = cls(**file_value)
            if value is True and not got.enabled:
                return dataclasses.replace(got, enabled=True)  # the argument beats the file
            return got if got.enabled else None
        if file_value is not None and not isinstance(file_value, bool):
            raise UsageError(f"config file: logs must be true, false or a [logs] table, got {file_value!r}")
        return cls()


# -- connections -----------------------------------------------------------------------------------


def connect(path: str | Path | None = None, *, busy_timeout: float = 10.0) -> sqlite3.Connection:
    """Open (creating if needed) the logs database, migrated to the current schema. Autocommit
    mode: callers write with explicit transactions."""
    p = Path(path).expanduser() if path else LogConfig().db_path()
    try:
        private_db_file(p)  # private from the first byte, in a 0700 DSK_HOME
        conn = sqlite3.connect(p, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise UsageError(f"cannot open the logs database {p}: {exc}") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        enable_wal(conn, busy_timeout)
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a crash of ours loses nothing
        migrate(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise UsageError(f"cannot use the logs database {p}: {exc}{db_error_advice(exc)}") from None
    return conn


def db_error_advice(exc: sqlite3.Error) -> str:
    """What to do about a SQLite error, as a " (...)" suffix: only a damaged file is worth moving
    aside; a full disk, a read-only file system or a lock from another process is not the file's
    fault (moving it would lose the logs and saved conversations for nothing)."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    text = str(exc).lower()
    damaged = "malformed" in text or "not a database" in text
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or damaged:
        return " (the file is damaged or not a logs database: move it aside to start a new one)"
    if name.startswith(("SQLITE_FULL", "SQLITE_IOERR")) or "disk" in text:
        return " (is the disk full? free some space, or set DSK_HOME or [logs] path elsewhere)"
    if name.startswith("SQLITE_READONLY") or "readonly" in text or "read-only" in text:
        return " (the file or its directory is read-only: set DSK_HOME or [logs] path elsewhere)"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return " (another process holds it locked: try again)"
    return ""


def index_pending(conn: sqlite3.Connection, limit: int | None = None) -> int:
    """Add up to `limit` rows logged since the last call (all when None) to the search index;
    returns how many. A no-op without FTS5 (`_migrations._search_index`)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'requests_fts_state'").fetchone() is None:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        upto = conn.execute("SELECT upto FROM requests_fts_state").fetchone()[0]
        if limit is None:
            end = conn.execute("SELECT max(id) FROM requests").fetchone()[0]
        else:
            end = conn.execute("SELECT max(id) FROM (SELECT id FROM requests WHERE id > ? "
                               "ORDER BY id LIMIT ?)", (upto, limit)).fetchone()[0]
        n = 0
        if end is not None and end > upto:
            n = conn.execute("INSERT INTO requests_fts(rowid, prompt, answer, reasoning) SELECT id, prompt, "
                             "answer, reasoning FROM requests WHERE id > ? AND id <= ?", (upto, end)).rowcount
            conn.execute("UPDATE requests_fts_state SET upto = ?", (end,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return n


@contextlib.contextmanager
def _connection(path: str | Path | None) -> Iterator[sqlite3.Connection]:
    conn = connect(path)
    try:
        yield conn
    finally:
        conn.close()


# -- conversations ---------------------------------------------------------------------------------


class ConversationInfo(msgspec.Struct, frozen=True):
    """A saved conversation, as `list_conversations()` shows it (times are epoch seconds).

    Attributes:
        id: The conversation's id, to load or resume it (`dsk chat --resume ID`).
        title: Its title: the one given when saved, else the start of the first user message
            (80 characters); None when there is neither.
        created: When it was created, in epoch seconds.
        updated: When it last changed, in epoch seconds.
        model: The model it talks to, or None when unset.
        system: Its system prompt, or None.
        messages: How many messages its history holds."""

    id: str
    title: str | None
    created: float
    updated: float
    model: str | None
    system: str | None
    messages: int


def _plain(m: Any) -> Any:
    """A message as the JSON the API takes: answers (`ChatCompletionMessage`) through `to_param()`,
    which keeps reasoning_content and tool calls verbatim (docs/deepseek-api-notes.md#thinking-mode)."""
    to_param = getattr(m, "to_param", None)
    if callable(to_param):
        return to_param()
    if isinstance(m, msgspec.Struct):
        return msgspec.to_builtins(m)
    return dict(m) if isinstance(m, Mapping) else m


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def _first(messages: Sequence[Any], role: str) -> str | None:
    for m in messages:
        if isinstance(m, Mapping) and m.get("role") == role:
            return _text(m.get("content")) or None
    return None


def save_conversation(conversation_id: str | None, messages: Sequence[Any],
                      meta: Mapping[str, Any] | None = None, *, path: str | Path | None = None) -> str:
    """Save (or update) a conversation; returns its id (a new one when `conversation_id` is None).

    `messages`: dicts or structs as sent to the API (answers keep their reasoning_content). `meta`:
    `title` (default: the start of the first user message; an update keeps the old title unless
    given), `model`, `system` (default: the first system message) and any other JSON values.
    `path`: the database (default `$DSK_HOME/logs.sqlite3`), as for the other conversation
    functions."""
    msgs = [_plain(m) for m in messages]
    extra = dict(meta or {})
    title = extra.pop("title", None)
    model = extra.pop("model", None)
    system = extra.pop("system", None) or _first(msgs, "system")
    derived = title or " ".join((_first(msgs, "user") or "").split())[:80] or None
    try:
        body = msgspec.json.encode(msgs).decode()
        extra_json = msgspec.json.encode(extra).decode() if extra else None
    except (TypeError, msgspec.EncodeError) as exc:
        raise UsageError(f"conversation is not JSON-serialisable: {exc}") from None
    now = time.time()
    with _connection(path) as conn:
        try:
            if conversation_id:
                conn.execute(
                    "INSERT INTO conversations (id, title, created, updated, model, system, messages, meta) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                    "title = COALESCE(?, conversations.title), updated = excluded.updated, "
                    "model = COALESCE(excluded.model, conversations.model), system = excluded.system, "
                    "messages = excluded.messages, meta = excluded.meta",
                    (conversation_id, derived, now, now, model, system, body, extra_json, title))
                return conversation_id
            for _ in range(8):  # 48-bit random ids: a clash is all but impossible, but never overwrite
                cid = secrets.token_hex(6)
                cur = conn.execute(
                    "INSERT INTO conversations (id, title, created, updated, model, system, messages, meta) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING",
                    (cid, derived, now, now, model, system, body, extra_json))
                if cur.rowcount == 1:
                    return cid
        except sqlite3.Error as exc:
            raise UsageError(f"cannot save the conversation: {exc}{db_error_advice(exc)}") from None
    raise UsageError("cannot save the conversation: no free id found")  # pragma: no cover


def like_escape(text: str) -> str:
    """`text` for a LIKE pattern with ESCAPE '\\': its %, _ and \\ match themselves."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _resolve_id(conn: sqlite3.Connection, conversation_id: str) -> str:
    """An exact id, or a unique prefix of one (as `git` takes commit prefixes)."""
    if not conversation_id:
        raise UsageError("no conversation id given (list_conversations() shows the saved ones)")
    if conn.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone():
        return conversation_id
    pattern = like_escape(conversation_id) + "%"
    rows = conn.execute("SELECT id FROM conversations WHERE id LIKE ? ESCAPE '\\' LIMIT 3",
                        (pattern,)).fetchall()
    if not rows:
        raise UsageError(f"no saved conversation {conversation_id!r} (`dsk chat` /load lists them)")
    if len(rows) > 1:
        raise UsageError(f"conversation id {conversation_id!r} is ambiguous: give more characters")
    return str(rows[0][0])


def load_conversation(conversation_id: str, *, path: str | Path | None = None
                      ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(messages, meta) of a saved conversation; `meta` has id, title, created, updated, model,
    system and the extra keys given when saving. `conversation_id` may be a unique id prefix;
    `path` is the database (default `$DSK_HOME/logs.sqlite3`). Raises `UsageError` when no
    conversation, or more than one, matches."""
    with _connection(path) as conn:
        cid = _resolve_id(conn, conversation_id)
        row = conn.execute("SELECT id, title, created, updated, model, system, messages, meta "
                           "FROM conversations WHERE id = ?", (cid,)).fetchone()
    meta: dict[str, Any] = msgspec.json.decode(row[7]) if row[7] else {}
    meta.update(id=row[0], title=row[1], created=row[2], updated=row[3], model=row[4], system=row[5])
    messages: list[dict[str, Any]] = msgspec.json.decode(row[6])
    return messages, meta


def list_conversations(limit: int | None = 50, *, path: str | Path | None = None) -> list[ConversationInfo]:
    """Saved conversations, most recently updated first: at most `limit` (None: all) from the
    database at `path` (default `$DSK_HOME/logs.sqlite3`)."""
    with _connection(path) as conn:
        rows = conn.execute(
            "SELECT id, title, created, updated, model, system, json_array_length(messages) "
            "FROM conversations ORDER BY updated DESC LIMIT ?", (-1 if limit is None else limit,)).fetchall()
    return [ConversationInfo(*r) for r in rows]


def delete_conversation(conversation_id: str, *, path: str | Path | None = None) -> bool:
    """Delete a saved conversation; `conversation_id` is its id or a unique prefix, `path` the
    database (default `$DSK_HOME/logs.sqlite3`). Returns False when there is none."""
    with _connection(path) as conn:
        try:
            cid = _resolve_id(conn, conversation_id)
        except UsageError:
            return False
        conn.execute("DELETE FROM conversations WHERE id = ?", (cid,))
    return True
