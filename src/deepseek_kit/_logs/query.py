"""Reading the logs database: recent calls, one call, full-text search, and statistics.

`Logs(path=None)` opens `$DSK_HOME/logs.sqlite3` (or `path`) for reading; a database that does not
exist yet reads as empty (nothing is created). `dsk logs` and `dsk stats` are thin shells over it.

Search uses the FTS5 index (`_logs/migrations.py` 0003) when this SQLite has FTS5: every word must
appear in the prompt, the answer or the reasoning (words are quoted, so FTS5 query syntax in the
text is taken literally); otherwise, and for text with CJK characters (which the tokenizer does
not split into words), a LIKE scan with the same meaning.

Statistics leave out calls the emulator answered (`synthetic`, `_logs/migrations.py` 0004) unless
`include_synthetic=True`: synthetic tokens and costs are not what the account spent.

Statistics are computed in Python over the matching rows (SQLite has no percentile function):
latency percentiles over successful calls, TTFT over calls that got a first token, tokens per
second as completion tokens over the generation time (after the first token for streams).
"""

from __future__ import annotations

import re
import sqlite3
import statistics
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from deepseek_kit._wire.errors import UsageError

from .store import REQUEST_COLUMNS, LogConfig, connect, index_pending, like_escape

__all__ = ["LogEntry", "LogStats", "Logs"]


class LogEntry(msgspec.Struct, frozen=True):
    """One logged call (a row of `requests`). Text fields are None when `content=False` logged it;
    `messages`, `params` and `tool_calls` are JSON text (see `message_list()`).

    Attributes:
        id: The row's number in the log (`dsk logs show ID`).
        ts: When the call started, in epoch seconds.
        model: The model asked for, or None (models list, balance).
        endpoint: The router's endpoint name, else the server's host:port.
        path: The API path, such as "/chat/completions".
        stream: 1 for a streamed call, 0 otherwise.
        status: The last HTTP status, or None when no answer came (a connection error).
        outcome: "ok"; "closed" (the caller left a stream early, not an error); "broken" (a
            stream cut); "timeout"; "error"; or "cancelled".
        error: The error's class name ("RateLimitError", "StreamError"...), None when it went well.
        error_message: The error's message, secrets masked.
        attempts: Requests sent for the call, retries included.
        latency: Seconds from the call to its end (the whole stream for a stream).
        ttft: Seconds to the first stream event (time to first token); None for a non-stream call.
        finish_reason: The answer's finish_reason ("stop", "length", "tool_calls"...).
        prompt_tokens: Input tokens, cache hits and misses together.
        completion_tokens: Output tokens, reasoning included.
        reasoning_tokens: The part of `completion_tokens` spent thinking.
        cache_hit_tokens: Input tokens served from DeepSeek's context cache.
        cache_miss_tokens: Input tokens not in that cache.
        cost: The call's cost in `currency`, priced at the time it ran (peak or off-peak).
        currency: "CNY" or "USD".
        cache_hit: 1 when the client's own answer cache answered (no request sent), else 0.
        trace_id: DeepSeek's `x-ds-trace-id`, to quote when reporting a problem.
        response_id: The answer's `id`.
        prompt: The last user message as text, or a FIM call's prompt (what `dsk logs` shows).
        messages: The request's messages, as JSON text.
        params: The request's other parameters (temperature, max_tokens...), as JSON text.
        answer: The answer's text.
        reasoning: The answer's reasoning_content (thinking mode).
        tool_calls: The answer's tool calls, as JSON text.
        synthetic: 1 when deepseek-kit's emulator answered, else 0.
        snippet: In search results, the matching text with the matches in [brackets]; else None."""

    id: int
    ts: float
    model: str | None
    endpoint: str | None
    path: str | None
    stream: int
    status: int | None
    outcome: str
    error: str | None
    error_message: str | None
    attempts: int
    latency: float | None
    ttft: float | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cache_hit_tokens: int
    cache_miss_tokens: int
    cost: float
    currency: str | None
    cache_hit: int
    trace_id: str | None
    response_id: str | None
    prompt: str | None
    messages: str | None
    params: str | None
    answer: str | None
    reasoning: str | None
    tool_calls: str | None
    synthetic: int = 0  # 1: the emulator answered (synthetic), see _migrations 0004
    snippet: str | None = None  # search results: the matching text, matches in [brackets]

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens of this call."""
        return self.prompt_tokens + self.completion_tokens

    def message_list(self) -> list[Any]:
        """The messages as sent; [] when none were stored, or when the stored text is not a JSON
        list (a file edited or damaged by hand: shown as far as it goes, never a crash)."""
        got = _json(self.messages) if self.messages else []
        return got if isinstance(got, list) else []

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with messages, params and tool calls decoded (kept as text when the stored
        text is not JSON)."""
        d: dict[str, Any] = msgspec.structs.asdict(self)
        for k in ("messages", "params", "tool_calls"):
            if d[k]:
                d[k] = _json(d[k])
        if d["snippet"] is None:
            del d["snippet"]
        return d


def _json(text: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text


class LogStats(msgspec.Struct):
    """Totals and percentiles over a set of logged calls (`group`: the model or endpoint, or None
    for all). Seconds for latencies; `cost` per currency.

    Attributes:
        group: The model or endpoint these calls share, or None for all calls.
        requests: Calls counted.
        ok: Calls that went well (a stream the caller left early counts as ok).
        errors: Calls that failed.
        errors_by_class: Failed calls by error class ("RateLimitError": 3...), most frequent first.
        latency_p50: Median latency of the calls that went well.
        latency_p95: 95th-percentile latency of the calls that went well.
        ttft_p50: Median time to the first stream event.
        ttft_p95: 95th-percentile time to the first stream event.
        tokens_per_s_p50: Median output speed: completion tokens per second of generation (after
            the first event, for a stream).
        prompt_tokens: Input tokens, cache hits and misses together.
        completion_tokens: Output tokens, reasoning included.
        reasoning_tokens: The part of `completion_tokens` spent thinking.
        cache_hit_tokens: Input tokens served from DeepSeek's context cache.
        cache_miss_tokens: Input tokens not in that cache.
        client_cache_hits: Calls the client's own answer cache answered.
        cost: Summed cost per currency ({"CNY": 0.42}).
        first_ts: When the first counted call started, in epoch seconds (None: no calls).
        last_ts: When the last counted call started, in epoch seconds."""

    group: str | None
    requests: int = 0
    ok: int = 0
    errors: int = 0
    errors_by_class: dict[str, int] = msgspec.field(default_factory=dict)
    latency_p50: float | None = None
    latency_p95: float | None = None
    ttft_p50: float | None = None
    ttft_p95: float | None = None
    tokens_per_s_p50: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cache_hit_tokens: int = 0
    cache_miss_tokens: int = 0
    client_cache_hits: int = 0
    cost: dict[str, float] = msgspec.field(default_factory=dict)
    first_ts: float | None = None
    last_ts: float | None = None

    @property
    def cache_hit_ratio(self) -> float | None:
        """DeepSeek's prompt-cache hits over all prompt tokens with a known split."""
        known = self.cache_hit_tokens + self.cache_miss_tokens
        return self.cache_hit_tokens / known if known else None


#: Distinct words a search may hold (each is one condition of the query).
MAX_SEARCH_WORDS = 64
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_SELECT = "SELECT id, " + ", ".join(REQUEST_COLUMNS) + " FROM requests"
_GROUPS = {"model": "model", "endpoint": "endpoint", None: "NULL"}


def _pct(values: list[float], q: int) -> float | None:
    """The q-th percentile (inclusive method: p50 of [a, b] is their mean, p95 of one value is it)."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


class Logs:
    """Read access to the logs database. Use as a context manager or call `close()`.
    `path`: the database (default: $DSK_HOME/logs.sqlite3, where `dsk` and `LogConfig()` write)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path else LogConfig().db_path()
        self._conn: sqlite3.Connection | None = None

    @property
    def exists(self) -> bool:
        """True when the database file exists; a directory or a device there is a UsageError (it
        is not a logs database: saying "nothing logged yet" would hide the wrong path)."""
        if self.path.is_file():
            return True
        if self.path.exists():
            raise UsageError(f"{self.path} is not a logs database (it is a directory or a device): "
                             "give the database file's path")
        return False

    def _db(self) -> sqlite3.Connection | None:
        if self._conn is None and self.exists:
            self._conn = connect(self.path)
        return self._conn

    def close(self) -> None:
        """Close the database connection (reopened on the next query); `with Logs() as logs:` calls it."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Logs:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[LogEntry]:
        db = self._db()
        if db is None:
            return []
        return [LogEntry(*r) for r in db.execute(sql, args)]

    @staticmethod
    def _where(since: float | None, model: str | None, errors: bool,
               synthetic: bool | None = None) -> tuple[str, tuple[Any, ...]]:
        cond: list[str] = []
        args: list[Any] = []
        if synthetic is not None:
            cond.append("synthetic = ?")
            args.append(int(synthetic))
        if since is not None:
            cond.append("ts >= ?")
            args.append(since)
        if model is not None:
            cond.append("model = ?")
            args.append(model)
        if errors:
            cond.append("outcome NOT IN ('ok', 'closed')")
        return (" WHERE " + " AND ".join(cond) if cond else ""), tuple(args)

    def recent(self, limit: int = 20, *, since: float | None = None, model: str | None = None,
               errors: bool = False) -> list[LogEntry]:
        """The latest calls, newest first; `errors=True` keeps only failed ones."""
        where, args = self._where(since, model, errors)
        return self._rows(f"{_SELECT}{where} ORDER BY id DESC LIMIT ?", (*args, limit))

    def get(self, entry_id: int) -> LogEntry | None:
        """The logged call with id `entry_id` (as `dsk logs show ID`), or None."""
        rows = self._rows(f"{_SELECT} WHERE id = ?", (entry_id,))
        return rows[0] if rows else None

    def count(self) -> int:
        """How many calls the log holds (0 when the database does not exist yet)."""
        db = self._db()
        return 0 if db is None else int(db.execute("SELECT count(*) FROM requests").fetchone()[0])

    @property
    def full_text(self) -> bool:
        """True when search uses the FTS5 index (else a LIKE scan)."""
        db = self._db()
        return db is not None and db.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'requests_fts'").fetchone() is not None

    def search(self, text: str, limit: int = 20) -> list[LogEntry]:
        """Calls whose prompt, answer or reasoning contain every word of `text` (at most
        MAX_SEARCH_WORDS distinct words), newest first."""
        words = list(dict.fromkeys(text.split()))
        if not words:
            return []
        if len(words) > MAX_SEARCH_WORDS:
            # SQLite caps an expression's depth at 1000: the LIKE scan would fail past it.
            raise UsageError(f"search takes at most {MAX_SEARCH_WORDS} distinct words, got {len(words)}")
        # FTS5's unicode61 tokenizer splits on spaces and punctuation, so a run of Chinese or
        # Japanese text is one token and a word inside it cannot be matched: scan for those.
        if self.full_text and not _CJK.search(text):
            db = self._db()
            assert db is not None
            try:
                index_pending(db)  # rows the writers have not indexed yet
            except sqlite3.OperationalError as exc:  # e.g. a read-only file: search what is indexed
                if "readonly" not in str(exc) and "locked" not in str(exc):
                    raise
            query = " ".join('"' + w.replace('"', '""') + '"' for w in words)
            cols = ", ".join(f"r.{c}" for c in ("id", *REQUEST_COLUMNS))
            return self._rows(
                f"SELECT {cols}, snippet(requests_fts, -1, '[', ']', '...', 12) FROM requests_fts "
                "JOIN requests r ON r.id = requests_fts.rowid WHERE requests_fts MATCH ? "
                "ORDER BY r.id DESC LIMIT ?", (query, limit))
        cond = " AND ".join(["(coalesce(prompt, '') || ' ' || coalesce(answer, '') || ' ' || "
                             "coalesce(reasoning, '')) LIKE ? ESCAPE '\\'"] * len(words))
        pats = tuple("%" + like_escape(w) + "%" for w in words)
        return self._rows(f"{_SELECT} WHERE {cond} ORDER BY id DESC LIMIT ?", (*pats, limit))

    def synthetic_count(self, *, since: float | None = None, model: str | None = None) -> int:
        """How many model calls the emulator answered (those `stats()` leaves out by default)."""
        db = self._db()
        if db is None:
            return 0
        where, args = self._where(since, model, False, synthetic=True)
        return int(db.execute(f"SELECT count(*) FROM requests{where} AND path LIKE '%completions'",
                              args).fetchone()[0])

    def stats(self, *, since: float | None = None, model: str | None = None,
              by: str | None = None, include_synthetic: bool = False) -> list[LogStats]:
        """One `LogStats` for all matching model calls (`by=None`), or one per model / endpoint
        (`by="model"` / `"endpoint"`), busiest first. Model calls: chat and FIM completions
        (`models.list()` and `user.balance()` calls are logged but not counted here). Calls the
        emulator answered count only with `include_synthetic=True`."""
        if by not in _GROUPS:
            raise ValueError(f"by must be None, 'model' or 'endpoint', got {by!r}")
        db = self._db()
        if db is None:
            return [] if by else [LogStats(None)]
        where, args = self._where(since, model, False, synthetic=None if include_synthetic else False)
        where = (where + " AND " if where else " WHERE ") + "path LIKE '%completions'"
        sql = (f"SELECT {_GROUPS[by]}, ts, outcome, error, latency, ttft, stream, prompt_tokens, "
               "completion_tokens, reasoning_tokens, cache_hit_tokens, cache_miss_tokens, cache_hit, "
               f"cost, currency FROM requests{where}")
        acc: dict[Any, _Acc] = {}
        for row in db.execute(sql, args):
            a = acc.get(row[0])
            if a is None:
                a = acc[row[0]] = _Acc(row[0])
            a.add(row)
        out = [a.result() for a in acc.values()]
        if not out and by is None:
            out = [LogStats(None)]
        out.sort(key=lambda s: (-s.requests, s.group or ""))
        return out

    def prune(self, older_than: float) -> int:
        """Delete calls logged before `older_than` (epoch seconds); returns how many."""
        db = self._db()
        if db is None:
            return 0
        cur = db.execute("DELETE FROM requests WHERE ts < ?", (older_than,))
        return cur.rowcount


class _Acc:
    __slots__ = ("errors", "latencies", "s", "tps", "ttfts")

    def __init__(self, group: Any) -> None:
        self.s = LogStats(None if group is None else str(group))
        self.latencies: list[float] = []
        self.ttfts: list[float] = []
        self.tps: list[float] = []
        self.errors: Counter[str] = Counter()

    def add(self, row: tuple[Any, ...]) -> None:
        (_, ts, outcome, error, latency, ttft, stream, prompt, completion, reasoning, hit, miss,
         cache_hit, cost, currency) = row
        s = self.s
        s.requests += 1
        s.first_ts = ts if s.first_ts is None else min(s.first_ts, ts)
        s.last_ts = ts if s.last_ts is None else max(s.last_ts, ts)
        if outcome in ("ok", "closed"):  # a caller leaving a stream early is not an error
            s.ok += 1
            if latency is not None:
                self.latencies.append(latency)
            gen = (latency - ttft) if (stream and ttft is not None and latency is not None) else latency
            if completion and gen and gen > 0:
                self.tps.append(completion / gen)
        else:
            s.errors += 1
            self.errors[error or outcome] += 1
        if ttft is not None:
            self.ttfts.append(ttft)
        s.prompt_tokens += prompt
        s.completion_tokens += completion
        s.reasoning_tokens += reasoning
        s.cache_hit_tokens += hit
        s.cache_miss_tokens += miss
        s.client_cache_hits += cache_hit
        if cost:
            cur = currency or "CNY"
            s.cost[cur] = s.cost.get(cur, 0.0) + cost

    def result(self) -> LogStats:
        s = self.s
        self.latencies.sort()
        self.ttfts.sort()
        self.tps.sort()
        s.latency_p50, s.latency_p95 = _pct(self.latencies, 50), _pct(self.latencies, 95)
        s.ttft_p50, s.ttft_p95 = _pct(self.ttfts, 50), _pct(self.ttfts, 95)
        s.tokens_per_s_p50 = _pct(self.tps, 50)
        s.errors_by_class = dict(self.errors.most_common())
        return s
