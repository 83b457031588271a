"""Answer cache: a pipeline step that serves repeated requests without calling the API again.

Which requests are cached (`CachePolicy.when`)
    A cached answer is only right if asking again would give the same answer. DeepSeek's thinking
    mode is on by default and *ignores* `temperature` (docs/deepseek-api-notes.md#thinking-mode), so
    temperature 0 alone does not make a request reproducible. The default rule, `"reproducible"`, caches a
    request only when both hold:

    * it is non-thinking: `thinking: {"type": "disabled"}` on a chat request, or a FIM request
      (`/beta/completions` is non-thinking only, docs/deepseek-api-notes.md#fim-beta); and
    * it asks for greedy decoding: `temperature` explicitly 0 (the default is 1).

    Opt-ins: `"non_thinking"` caches every non-thinking request whatever its temperature (a sampled
    answer is then frozen and replayed); `"always"` caches thinking requests too (fixtures,
    evaluations, replaying a recorded run); `"never"` caches only requests that ask for it.
    Even a greedy answer is not bit-for-bit guaranteed by the API; "reproducible" means "what a
    second call would most likely return".

Per-request override
    Header `X-DSK-Cache: force | skip | refresh` (or `request.options["cache"]`, same words or a
    bool). The step removes the header before anything is sent. `force` caches a request the rule
    would not; `skip` bypasses the cache (no lookup, no store, no sharing); `refresh` ignores a
    stored answer, calls the API and stores the new answer.

The key (`fingerprint`)
    SHA-256 of: a format version, `CachePolicy.namespace`, the endpoint path (and /beta), the values
    of `CachePolicy.vary_headers` (the emulator's `X-DSK-Emulate` by default) and the canonical JSON
    of the decoded body: keys sorted at every level, `stream`/`stream_options` dropped (they change
    the framing, not the answer), and, top-level only, defaults made explicit where the API
    documents them (docs/deepseek-api-notes.md#request-fields): a null
    parameter is the same as an omitted one; `thinking` omitted is
    `{"type": "enabled"}`; `temperature` 1, `top_p` 1, penalties 0, `logprobs` false,
    `response_format` `{"type": "text"}` and the default `tool_choice` (none without tools, auto
    with) are dropped; integral floats are integers (0.0 == 0). `reasoning_effort` is kept as sent:
    its default is not a constant (agent requests may be raised to
    max, docs/deepseek-api-notes.md#thinking-mode). Everything else
    counts, including unknown `extra_body` fields and the history's `reasoning_content`.

What is stored
    Only complete, successful answers: every choice finished with stop, length or tool_calls
    (never a broken or abandoned stream, an error, `content_filter` or the partial
    `insufficient_system_resource`). Entries are the answer JSON; a stream hit is re-chunked in
    DeepSeek's shape (`_steps/cache/replay.py`) and marked `response.cache_hit = True`.

Single-flight
    Identical cacheable requests in flight at once share one upstream call. Followers wait for the
    leader's *finished* answer and get it replayed (as a stream if they asked for one); they do not
    share a live stream, so a streaming follower's first token arrives when the leader's answer is
    complete. A leader's error is raised to its followers too. If the leader ends without a
    complete answer (cancelled, stream broken or abandoned by its caller), one follower becomes the
    new leader. Followers wait at most their own `timeout.total`. Complete but unstorable answers
    (content_filter...) are still shared with the followers that were waiting for them.
    Single-flight is per process; across processes the shared backend turns later duplicates into hits.

Counters (`CacheStep.stats`)
    hits (served from the store), coalesced (served by sharing an in-flight call), misses (upstream
    calls made), bypassed (not cacheable or skipped), stores, errors (backend failures: the request
    then proceeds as a miss, the cache never fails a call), saved_tokens and saved_cost: what the
    cached usage would cost at today's price (`_pricing.cost`, in `CachePolicy.currency`) - an upper
    bound, as a repeat would partly hit DeepSeek's own prefix cache.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import msgspec

from deepseek_kit._steps.base import CallNext
from deepseek_kit._transport.request import Request, Response
from deepseek_kit._wire import pricing as _pricing
from deepseek_kit._wire.errors import APITimeoutError, UsageError, redact
from deepseek_kit._wire.types import ChatCompletion, Completion, SafeDecoder, Usage

from .backends import CacheBackend, open_backend
from .key import allows, canonical_body, fingerprint, is_reproducible, rule_fields_decoder
from .replay import Recorder, assemble_chat, assemble_fim, replay

__all__ = ["CACHE_HEADER", "CachePolicy", "CacheStats", "CacheStep", "canonical_body", "fingerprint",
           "is_reproducible"]  # the last three live in _steps/cache/key.py

log = logging.getLogger("deepseek_kit.cache")

CACHE_HEADER = "X-DSK-Cache"
_CACHE_HEADER_LOW = CACHE_HEADER.lower()
_WHEN = ("reproducible", "non_thinking", "always", "never")
_MODES = ("force", "skip", "refresh")
_STORABLE = frozenset({"stop", "length", "tool_calls"})
_CHAT_PATH = "/chat/completions"
_FIM_PATH = "/completions"  # under /beta only


@dataclass(frozen=True)
class CachePolicy:
    """How the cache behaves. `backend`: "memory" (default), "sqlite" (`$DSK_HOME/cache.sqlite3`),
    "sqlite:///path", "redis://host:port/db", or a `CacheBackend` object to share one store.
    `when`: which requests are cached (see the module docstring). `ttl`: seconds an entry lives
    (None = until evicted). `max_bytes`: the memory and SQLite budget (Redis: the server's
    maxmemory). `namespace`: part of every key, to keep apps or deployments apart in a shared
    store. `vary_headers`: request headers whose values are part of the key. `single_flight`:
    share one upstream call among identical concurrent requests. `currency` of `saved_cost`."""

    backend: str | CacheBackend = "memory"
    when: str = "reproducible"
    ttl: float | None = 24 * 3600.0
    max_bytes: int = 64 << 20
    namespace: str = ""
    vary_headers: tuple[str, ...] = ("x-dsk-emulate",)
    single_flight: bool = True
    currency: str = "CNY"

    def __post_init__(self) -> None:
        if self.when not in _WHEN:
            raise UsageError(f"CachePolicy.when must be one of {', '.join(_WHEN)}, got {self.when!r}")
        if self.ttl is not None and not (isinstance(self.ttl, (int, float)) and self.ttl > 0):
            raise UsageError(f"CachePolicy.ttl must be a positive number of seconds or None, "
                             f"got {self.ttl!r}")
        if not isinstance(self.max_bytes, int) or self.max_bytes <= 0:
            raise UsageError(f"CachePolicy.max_bytes must be a positive integer, got {self.max_bytes!r}")
        if self.currency.upper() not in _pricing.PRICES:
            raise UsageError(f"CachePolicy.currency must be one of {', '.join(_pricing.PRICES)}")
        if isinstance(self.vary_headers, str):  # type: ignore[unreachable]  # caller input
            raise UsageError("CachePolicy.vary_headers must be a tuple of header names, not a string")


@dataclass
class CacheStats:
    """Counters of one CacheStep (this process). `snapshot()` gives a copy.

    `hits` answered from the store, `coalesced` served by an identical call in flight, `misses`
    upstream calls made, `bypassed` requests not cacheable (or `skip`), `stores` answers written,
    `errors` backend failures (each treated as a miss), `saved_tokens` and `saved_cost` what the
    hits would have cost (DeepSeek's prices at the time of the hit, in `CachePolicy.currency`)."""

    hits: int = 0
    coalesced: int = 0
    misses: int = 0
    bypassed: int = 0
    stores: int = 0
    errors: int = 0
    saved_tokens: int = 0
    saved_cost: Decimal = field(default_factory=Decimal)

    @property
    def hit_ratio(self) -> float:
        """Share of lookups served without a call of their own (hits and coalesced), 0.0 to 1.0."""
        served = self.hits + self.coalesced
        total = served + self.misses
        return served / total if total else 0.0

    def snapshot(self) -> CacheStats:
        """A copy of the counters now (the live object keeps counting)."""
        return replace(self)


# -- the step --------------------------------------------------------------------------------------


class _Meta(msgspec.Struct):
    """The two fields the counters need from an entry (msgspec skips the rest without building it)."""

    model: str = ""
    usage: Usage | None = None


_meta_decoder = msgspec.json.Decoder(_Meta)
# nesting-guarded (docs/attack-round-2026-12.md, C2)
_chat_decoder: SafeDecoder[ChatCompletion] = SafeDecoder(ChatCompletion)
_fim_decoder: SafeDecoder[Completion] = SafeDecoder(Completion)

# What a flight ends with: the answer's bytes, the leader's error, or None (no complete answer).
_Outcome = bytes | Exception | None


def _override(value: Any) -> str | None:
    if value is None:
        return None
    if value is True:
        return "force"
    if value is False:
        return "skip"
    mode = str(value).strip().lower()
    if mode not in _MODES:
        raise UsageError(f"{CACHE_HEADER} must be one of {', '.join(_MODES)}, got {value!r}")
    return mode


class CacheStep:
    """Pipeline step (position: `_client/pipeline.py`): lookup, single-flight, store, replay.
    `AsyncClient(cache=True)` or `cache=CachePolicy(...)` builds one; pass a `CacheStep(policy)`
    yourself to share its backend and `stats` between clients."""

    def __init__(self, policy: CachePolicy | None = None) -> None:
        self.policy = policy = policy or CachePolicy()
        self.backend: CacheBackend = open_backend(policy.backend, policy.max_bytes)
        self.stats = CacheStats()
        self._vary = frozenset(h.lower() for h in policy.vary_headers)
        self._currency = policy.currency.upper()
        self._prices = _pricing.PriceBook(self._currency)  # today's prices, per minute
        self._clock = _pricing.default_clock()
        self._flights: dict[str, asyncio.Future[_Outcome]] = {}
        self._pending: set[asyncio.Task[None]] = set()

    async def handle(self, request: Request, call_next: CallNext) -> Response:
        """Serve the call from the cache when the policy allows and an answer is stored, join an
        identical call already in flight, or pass it on and store its answer once it completes."""
        headers = request.headers
        raw_mode = request.options.get("cache")
        vary: list[str] = []
        for name in list(headers):
            low = name.lower()
            if low == _CACHE_HEADER_LOW:
                value = headers.pop(name)  # ours only: never sent upstream
                if raw_mode is None:
                    raw_mode = value
            elif low in self._vary:
                vary.append(f"{low}:{headers[name]}")
        mode = _override(raw_mode)
        fim = request.beta and request.path == _FIM_PATH
        if (mode == "skip" or request.method != "POST" or not request.body
                or not (fim or request.path == _CHAT_PATH)):
            return await self._bypass(request, call_next)
        when = self.policy.when
        try:
            if mode is None and when != "always":
                if not fim and b'"disabled"' not in request.body:
                    # Thinking is on (or the body spells it with escapes: then not cached, which
                    # is the safe side). A byte search is far cheaper than parsing a long history.
                    return await self._bypass(request, call_next)
                fields = rule_fields_decoder.decode(request.body)
                if not allows(fields.thinking, fields.temperature, when, fim):
                    return await self._bypass(request, call_next)
            body = msgspec.json.decode(request.body)
        except msgspec.DecodeError:  # not a JSON object: not ours to judge, let the API answer it
            return await self._bypass(request, call_next)
        if not isinstance(body, dict):
            return await self._bypass(request, call_next)
        canon = canonical_body(body, fim=fim)
        key = fingerprint(canon, path=request.path, beta=request.beta, namespace=self.policy.namespace,
                          vary="\n".join(sorted(vary)))
        request.options["cache_key"] = key
        opts = body.get("stream_options")
        include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        serve = functools.partial(replay, stream=request.stream, fim=fim, include_usage=include_usage)

        if mode != "refresh":
            entry = await self._get(key)
            if entry is not None:
                self.stats.hits += 1
                self._count_saved(entry)
                return serve(entry)
        flight: asyncio.Future[_Outcome] | None = None
        if self.policy.single_flight:
            while (leader := self._flights.get(key)) is not None:
                outcome = await self._follow(leader, request)
                if isinstance(outcome, Exception):
                    raise outcome
                if outcome is not None:
                    self.stats.coalesced += 1
                    self._count_saved(outcome)
                    return serve(outcome)
            flight = self._flights[key] = asyncio.get_running_loop().create_future()

        self.stats.misses += 1
        try:
            resp = await call_next(request)
        except Exception as exc:
            self._settle(key, flight, exc)
            raise
        except BaseException:
            self._settle(key, flight, None)
            raise
        if resp.events is None:
            entry, storable = self._from_body(resp.body, fim)
            self._settle(key, flight, entry)
            if entry is not None and storable:
                await self._put(key, entry)
            return resp
        rec = Recorder(resp.events)
        resp.events = rec
        resp.add_done_callback(functools.partial(self._stream_done, key, flight, rec, fim))
        return resp

    async def _bypass(self, request: Request, call_next: CallNext) -> Response:
        self.stats.bypassed += 1
        return await call_next(request)

    async def _follow(self, leader: asyncio.Future[_Outcome], request: Request) -> _Outcome:
        # shield: a follower that gives up must not cancel the flight the others wait on.
        total = request.timeout.total
        try:
            return await asyncio.wait_for(asyncio.shield(leader), total)
        except asyncio.TimeoutError:
            raise APITimeoutError("total", total or 0.0) from None

    def _settle(self, key: str, flight: asyncio.Future[_Outcome] | None, outcome: _Outcome) -> None:
        if flight is None:
            return
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.done():
            flight.set_result(outcome)

    def _stream_done(self, key: str, flight: asyncio.Future[_Outcome] | None, rec: Recorder, fim: bool,
                     resp: Response) -> None:
        """A leader's stream ended. "closed" counts when the caller left after the finish chunk."""
        answer: ChatCompletion | Completion | None = None
        if resp.outcome in ("ok", "closed"):
            answer = assemble_fim(rec.payloads) if fim else assemble_chat(rec.payloads)
        entry = msgspec.json.encode(answer) if answer is not None else None
        self._settle(key, flight, entry)
        if entry is not None and answer is not None and _storable(answer):
            task = asyncio.get_running_loop().create_task(self._put(key, entry))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    @staticmethod
    def _from_body(body: bytes, fim: bool) -> tuple[bytes | None, bool]:
        """(entry, storable) of a non-stream answer; entry None when it is not a complete answer."""
        try:
            answer = (_fim_decoder if fim else _chat_decoder).decode(body)
        except msgspec.DecodeError:
            return None, False
        if not answer.choices or any(c.finish_reason is None for c in answer.choices):
            return None, False
        return body, _storable(answer)

    def _count_saved(self, entry: bytes) -> None:
        try:
            meta = _meta_decoder.decode(entry)
        except msgspec.DecodeError:
            return
        if meta.usage is not None:
            self.stats.saved_tokens += meta.usage.total_tokens
            self.stats.saved_cost += self._prices.cost(meta.model, meta.usage, self._clock())

    async def _get(self, key: str) -> bytes | None:
        try:
            return await self.backend.get(key)
        except Exception as exc:  # the cache must never fail a call: proceed as a miss
            self._backend_error("read", exc)
            return None

    async def _put(self, key: str, entry: bytes) -> None:
        try:
            await self.backend.set(key, entry, self.policy.ttl)
        except Exception as exc:
            self._backend_error("write", exc)
            return
        self.stats.stores += 1

    def _backend_error(self, what: str, exc: Exception) -> None:
        self.stats.errors += 1
        log.warning("cache %s failed (%s): %s", what, type(exc).__name__, redact(str(exc)))

    async def join(self) -> None:
        """Wait for stores still in progress (streams store when they end, in the background)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def clear(self) -> None:
        """Remove every stored answer of this cache (the counters stay)."""
        await self.backend.clear()

    async def aclose(self) -> None:
        """Finish pending stores and close the backend (call from the client's close)."""
        await self.join()
        await self.backend.aclose()


def _storable(answer: ChatCompletion | Completion) -> bool:
    return bool(answer.choices) and all(c.finish_reason in _STORABLE for c in answer.choices)
