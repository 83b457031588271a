"""Client-side limits: requests per minute, tokens per minute and requests in flight.

`Limits` is the value object, `LimitStep` the pipeline step. The step sits inside retry (docs/design-notes.md
"Layers"), so every attempt takes a token. Per attempt it:

1. estimates the tokens (prompt characters at DeepSeek's ratios, 1 English char ~ 0.3 token and
   1 Chinese char ~ 0.6 token, https://api-docs.deepseek.com/quick_start/token_usage, plus `max_tokens` or
   `default_max_tokens`);
2. waits, first in first out, for an in-flight slot and then for its turn under rpm/tpm; a wait
   longer than `max_queue_wait` (or past the call's total deadline) raises `QueueTimeoutError`.
   When the router says another endpoint can take the call (`options["failover"]`), it waits at
   most `failover_wait` (default 0: a full endpoint is skipped, not queued for). With endpoints,
   quotas are per endpoint unless `per` says otherwise (docs/routing-and-limits.md);
3. sends, and holds the in-flight slot until the response is complete: at once for a plain
   response, at the end of the stream for a stream (`Response.add_done_callback`), because
   DeepSeek counts a request "from the time it is sent until the model response is complete" (§6.3);
4. corrects the token estimate with the returned `usage`, and adapts: a 429 (DeepSeek's "rate or
   concurrency" limit, §6.1, §6.3) shrinks the allowed rate and concurrency, successes grow them
   back (additive increase, multiplicative decrease).

The rates use GCRA (a token bucket kept as one timestamp) with reservations: a waiter learns its
start time when it joins, so nothing polls and order is first come, first served. Two backends keep
the same semantics: in-process (`_steps/limits/local.py`) and Redis (`_steps/limits/redis.py`, for many
processes and hosts sharing one account). Both are hand-written: the rate-limit libraries available
(aiolimiter, limits, pyrate-limiter) have no in-flight leases that outlive a dead process, no
usage correction after the fact and no adaptive factor, and none is FIFO across processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from deepseek_kit._transport.request import Request, Response
from deepseek_kit._wire.errors import APIStatusError, DeepSeekError, RateLimitError, UsageError
from deepseek_kit._wire.types import SafeDecoder

__all__ = [
    "Adaptive",
    "LimitBackendError",
    "LimitState",
    "LimitStep",
    "Limits",
    "QueueTimeoutError",
    "estimate_tokens",
]

CallNext = Callable[[Request], Awaitable[Response]]

# Outcomes reported when a lease ends: they drive the adaptive factor.
OK, NEUTRAL, RATE_LIMITED = 1, 0, -1

_SCOPES = frozenset({"endpoint", "key", "model"})


class QueueTimeoutError(DeepSeekError, TimeoutError):
    """A request waited (or would have to wait) longer than `Limits.max_queue_wait`, or past the
    call's total timeout, for its turn. `limit` names what it waited for ("in_flight", "rpm" or
    "tpm"), `waited` the seconds spent. Not retried: the queue is full, so sending again would only
    queue again. Raise `max_queue_wait`, lower the caller's concurrency, or raise the limit.

    With endpoints, `endpoint` names the endpoint whose own quota it waited for (None when the
    quota is shared by several); the router then tries the next endpoint."""

    def __init__(self, message: str, *, limit: str, waited: float, max_wait: float | None) -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit
        self.waited = waited
        self.max_wait = max_wait
        self.endpoint: str | None = None


class LimitBackendError(DeepSeekError):
    """The shared limit store (Redis) could not be reached or answered an error. The request was
    not sent: sending without the shared quota could overrun the account."""


@dataclass(frozen=True)
class Adaptive:
    """AIMD on 429s: a 429 multiplies the allowed rate and concurrency by `decrease` (at most once
    per `cooldown` seconds, so that one overload seen by many requests at once shrinks once), never
    below `floor` of the configured limits; each success adds `increase` back, up to 1."""

    decrease: float = 0.5
    increase: float = 0.05
    floor: float = 0.1
    cooldown: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.decrease <= 1:
            raise UsageError(f"Adaptive.decrease must be in (0, 1], got {self.decrease!r}")
        if not 0 <= self.increase <= 1:
            raise UsageError(f"Adaptive.increase must be in [0, 1], got {self.increase!r}")
        if not 0 < self.floor <= 1:
            raise UsageError(f"Adaptive.floor must be in (0, 1], got {self.floor!r}")
        if self.cooldown < 0:
            raise UsageError("Adaptive.cooldown must be >= 0 seconds")


@dataclass(frozen=True)
class Limits:
    """Limits for one client, or for every process that shares `name` on one Redis.

    rpm, tpm: requests and tokens per minute (None: unlimited). max_in_flight: requests sent and
    not yet complete (DeepSeek: 2500 for deepseek-flash, 500 for deepseek-v4-pro per account, §6.3).
    max_queue_wait: seconds a request may wait for its turn before `QueueTimeoutError` (None: no
    bound but the call's total timeout). burst: seconds' worth of rate that may go at once after a
    quiet spell (at least one request). adaptive: `Adaptive(...)`, or None to keep limits fixed.
    name: the quota's name; processes using the same name and Redis share it. per: split the quota
    by "endpoint", "key" (a hash of the API key, never the key) and/or "model"; None (the default)
    means per endpoint when the client has `endpoints` (each upstream account has its own quota,
    so a hung endpoint's calls never hold the slots another endpoint needs) and one quota
    otherwise; `per=()` forces one quota for all endpoints. failover_wait: with endpoints, the
    seconds a call waits for its turn on one endpoint when another endpoint could take it, before
    moving on (0: at once; None: up to max_queue_wait like any call). default_max_tokens:
    the output estimate when a request has no max_tokens. redis_url: share through Redis
    ("redis://host:port/db"), else in-process. lease_ttl: seconds after which the in-flight slot of
    a process that died is freed (live processes renew theirs every lease_ttl/3).
    """

    rpm: float | None = None
    tpm: float | None = None
    max_in_flight: int | None = None
    max_queue_wait: float | None = 60.0
    burst: float = 1.0
    adaptive: Adaptive | None = field(default_factory=Adaptive)
    name: str = "default"
    per: tuple[str, ...] | None = None
    default_max_tokens: int = 4096
    redis_url: str | None = None
    lease_ttl: float = 30.0
    failover_wait: float | None = 0.0

    def __post_init__(self) -> None:
        for what in ("rpm", "tpm"):
            v = getattr(self, what)
            if v is not None and not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                raise UsageError(f"Limits.{what} must be a positive number or None, got {v!r}")
        m = self.max_in_flight
        if m is not None and (not isinstance(m, int) or isinstance(m, bool) or m < 1):
            raise UsageError(f"Limits.max_in_flight must be an integer >= 1 or None, got {m!r}")
        if self.max_queue_wait is not None and self.max_queue_wait < 0:
            raise UsageError("Limits.max_queue_wait must be >= 0 seconds or None")
        if not self.burst > 0:
            raise UsageError("Limits.burst must be > 0 seconds")
        ad: Any = self.adaptive  # a config file gives a table or true/false
        if ad is True:
            object.__setattr__(self, "adaptive", Adaptive())
        elif ad is False:
            object.__setattr__(self, "adaptive", None)
        elif isinstance(ad, Mapping):
            object.__setattr__(self, "adaptive", Adaptive(**ad))
        elif ad is not None and not isinstance(ad, Adaptive):
            raise UsageError(f"Limits.adaptive must be Adaptive(...), a mapping, a bool or None, got {ad!r}")
        if self.per is not None:
            per = (self.per,) if isinstance(self.per, str) else tuple(self.per)
            bad = sorted(set(per) - _SCOPES)
            if bad:
                raise UsageError(f"Limits.per accepts 'endpoint', 'key' and 'model', not {bad}")
            object.__setattr__(self, "per", tuple(sorted(set(per))))
        fw = self.failover_wait
        if fw is not None and not (isinstance(fw, (int, float)) and 0 <= fw < math.inf):
            raise UsageError(f"Limits.failover_wait must be a number of seconds >= 0 or None, got {fw!r}")
        if not self.name or any(c in self.name for c in "{}"):
            raise UsageError("Limits.name must be a non-empty string without braces")
        if self.default_max_tokens < 0:
            raise UsageError("Limits.default_max_tokens must be >= 0")
        if not self.lease_ttl > 0:
            raise UsageError("Limits.lease_ttl must be > 0 seconds")
        r = self.redis_url
        if r is not None and (type(r) is not str or not r.startswith(("redis://", "rediss://", "unix://"))):
            got = "an empty string" if r == "" else type(r).__name__
            raise UsageError("Limits.redis_url must be a redis://, rediss:// or unix:// URL, or None "
                             f"for in-process limits; got {got}")

    @property
    def active(self) -> bool:
        return self.rpm is not None or self.tpm is not None or self.max_in_flight is not None

    def burst_units(self, per_minute: float) -> float:
        """How many units (requests or tokens) may go at once after a quiet spell."""
        return max(1.0, per_minute * self.burst / 60.0)


@dataclass(frozen=True)
class LimitState:
    """A snapshot of one quota: the adaptive `factor` (1 = configured limits), the in-flight cap in
    force, requests holding a slot and requests waiting for one."""

    factor: float
    in_flight: int
    max_in_flight: int | None
    waiting: int


class Lease(Protocol):
    """One attempt's hold on a quota. `finish` ends it once (used tokens or None to keep the
    estimate); calling it with the complete response does the same from the response's usage."""

    tokens: int

    def finish(self, used: int | None, outcome: int) -> None: ...

    def __call__(self, resp: Response) -> None: ...


class LimiterBackend(Protocol):
    async def acquire(self, scope: str, tokens: int, budget: float | None) -> Lease: ...

    async def state(self, scope: str) -> LimitState: ...

    async def aclose(self) -> None: ...


# -- token estimate (https://api-docs.deepseek.com/quick_start/token_usage) ---------------------


class _Head(msgspec.Struct):
    model: str = ""
    max_tokens: int | None = None


class _UsageTotal(msgspec.Struct):
    total_tokens: int = 0


class _Tail(msgspec.Struct):
    usage: _UsageTotal | None = None


_head_decoder = msgspec.json.Decoder(_Head)
_tail_decoder: SafeDecoder[_Tail] = SafeDecoder(_Tail)  # a response body: nesting-guarded
_HIGH = bytes(range(0x80, 0x100))  # bytes of non-ASCII characters
_LEAD = bytes(range(0xC0, 0x100))  # first byte of each non-ASCII character


def _read_head(body: bytes | None) -> _Head | None:
    if not body:
        return None
    try:
        return _head_decoder.decode(body)
    except msgspec.DecodeError:
        return None


def estimate_tokens(body: bytes | None, default_max_tokens: int = 4096) -> int:
    """Tokens a request may use: its JSON body's characters at DeepSeek's ratios (ASCII 0.3,
    other characters 0.6 - the JSON syntax stands in for the chat template) plus `max_tokens`
    (or `default_max_tokens`). Corrected by the returned usage once the response is complete."""
    head = _read_head(body)
    return _estimate(body, head, default_max_tokens)


def _estimate(body: bytes | None, head: _Head | None, default_max_tokens: int) -> int:
    if not body:
        return 0
    n = len(body)
    if body.isascii():
        prompt = n * 0.3
    else:
        high = n - len(body.translate(None, _HIGH))
        chars = n - len(body.translate(None, _LEAD))
        prompt = (n - high) * 0.3 + chars * 0.6
    out = default_max_tokens if head is None or head.max_tokens is None else max(head.max_tokens, 0)
    return math.ceil(prompt) + out


#: No single call can use more: DeepSeek's context is 1M tokens with at most 384K of output. A
#: usage beyond it (or below 0) is a broken or hostile server's, and must neither lock a tpm
#: limit for days nor refill it: the estimate stands instead (issue 8, second round).
MAX_PLAUSIBLE_TOKENS = 2_000_000


def used_tokens(resp: Response) -> int | None:
    """`usage.total_tokens` of a complete response: the stream layer fills `resp.usage`; a plain
    response still has it only in its body (the completion hook runs before decoding). None when
    absent or implausible (see MAX_PLAUSIBLE_TOKENS)."""
    u = resp.usage
    used: int | None = None
    if u is not None:
        used = int(u.total_tokens)
    elif resp.events is None and resp.body:
        try:
            tail = _tail_decoder.decode(resp.body)
        except msgspec.DecodeError:
            return None
        if tail.usage is not None:
            used = tail.usage.total_tokens
    if used is None or not 0 <= used <= MAX_PLAUSIBLE_TOKENS:
        return None
    return used


# -- the step ------------------------------------------------------------------------------------


class LimitStep:
    """Pipeline step enforcing `Limits`; goes in `inner_steps` (once per attempt, inside retry).

    `api_key` is the client's key, used only for `per=("key",)` scopes (hashed): the auth step
    below this one has not added the header yet. `backend` replaces the one `limits` implies.
    `routed`: the client has endpoints, so `per=None` means per endpoint."""

    def __init__(self, limits: Limits, *, api_key: str | None = None,
                 backend: LimiterBackend | None = None, routed: bool = False) -> None:
        self.limits = limits
        self._per: tuple[str, ...] = limits.per if limits.per is not None else (
            ("endpoint",) if routed else ())
        self._api_key = api_key
        self._key_hashes: dict[str, str] = {}
        self._active = limits.active
        self._need_tokens = limits.tpm is not None
        self._need_head = self._need_tokens or "model" in self._per
        if backend is None:
            if limits.redis_url is not None:
                from .redis import RedisLimiter

                backend = RedisLimiter(limits)
            else:
                from .local import LocalLimiter

                backend = LocalLimiter(limits)
        self.backend = backend

    def scope(self, request: Request, model: str | None = None) -> str:
        """The quota a request counts against: the name, then the `per` parts."""
        per = self._per
        if not per:
            return self.limits.name
        parts = [self.limits.name]
        for p in per:
            if p == "endpoint":
                ep = request.endpoint
                parts.append(str(getattr(ep, "name", None) or request.origin))
            elif p == "key":
                parts.append(self._key_hash(request))
            else:
                if model is None:
                    head = _read_head(request.body)
                    model = head.model if head is not None else ""
                parts.append(model or "-")
        return "|".join(parts).replace("{", "(").replace("}", ")")

    def _key_hash(self, request: Request) -> str:
        key = getattr(request.endpoint, "api_key", None)
        if not key:
            auth = request.headers.get("Authorization", "")
            key = auth[7:] if auth.startswith("Bearer ") else self._api_key
        if not key:
            return "nokey"
        h = self._key_hashes.get(key)
        if h is None:
            h = self._key_hashes[key] = hashlib.sha256(key.encode()).hexdigest()[:16]
        return h

    async def handle(self, request: Request, call_next: CallNext) -> Response:
        if not self._active:
            return await call_next(request)
        lim = self.limits
        tokens = 0
        model = None
        if self._need_head:
            head = _read_head(request.body)
            model = head.model if head is not None else ""
            if self._need_tokens:
                tokens = _estimate(request.body, head, lim.default_max_tokens)
        budget = lim.max_queue_wait
        opts = request.options
        if opts.get("failover") and lim.failover_wait is not None:
            # Another endpoint can take this call: do not queue behind this one (a hung endpoint
            # keeps its slots until its calls time out), let the router move on.
            budget = lim.failover_wait if budget is None else min(budget, lim.failover_wait)
        deadline = opts.get("deadline")
        if deadline is not None:
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            budget = left if budget is None else min(budget, left)
        scope = self.scope(request, model)
        try:
            lease = await self.backend.acquire(scope, tokens, budget)
        except QueueTimeoutError as exc:
            if "endpoint" in self._per and request.endpoint is not None:
                exc.endpoint = getattr(request.endpoint, "name", None)
            raise
        try:
            resp = await call_next(request)
        except RateLimitError:
            lease.finish(0, RATE_LIMITED if lim.adaptive is not None else NEUTRAL)
            raise
        except APIStatusError:
            lease.finish(0, NEUTRAL)  # an error answer used no tokens
            raise
        except BaseException:
            lease.finish(None, NEUTRAL)  # it may have reached the server: keep the estimate
            raise
        resp.add_done_callback(lease)  # frees the slot when the response is complete
        return resp

    async def state(self, request: Request | None = None, *, scope: str | None = None) -> LimitState:
        """The current state of the quota `request` (or `scope`, default the plain name) counts
        against."""
        if scope is None:
            scope = self.scope(request) if request is not None else self.limits.name
        return await self.backend.state(scope)

    async def aclose(self) -> None:
        """Let pending releases reach the shared store and close its connections."""
        await self.backend.aclose()


def describe(limit: str, limits: Limits, cap: int | None = None) -> str:
    """Words for a QueueTimeoutError message: which limit was in the way."""
    if limit == "in_flight":
        return f"an in-flight slot (cap {cap if cap is not None else limits.max_in_flight} reached)"
    if limit == "rpm":
        return f"its turn under rpm={limits.rpm:g}"
    if limit == "tpm":
        return f"its turn under tpm={limits.tpm:g}"
    return f"its turn under rpm={limits.rpm} / tpm={limits.tpm}"


def queue_timeout(limits: Limits, limit: str, waited: float, budget: float | None,
                  cap: int | None = None, *, would_wait: float | None = None) -> QueueTimeoutError:
    what = describe(limit, limits, cap)
    if would_wait is not None:
        head = (f"Request would wait {would_wait:.2f}s for {what} on limits {limits.name!r}, "
                f"more than the {budget or 0:.2f}s left")
    else:
        head = f"Request waited {waited:.2f}s for {what} on limits {limits.name!r} and gave up"
    msg = (f"{head} (max_queue_wait={limits.max_queue_wait}, or the call's total timeout). "
           "Raise Limits.max_queue_wait, send fewer requests at once, or raise the limit.")
    return QueueTimeoutError(msg, limit=limit, waited=waited, max_wait=budget)
