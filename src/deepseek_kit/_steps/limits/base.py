"""The limits vocabulary: the `Limits` value and its `Adaptive` policy, the errors
(`QueueTimeoutError`, `LimitBackendError`), the backend contract (`LimiterBackend`, `Lease`,
`LimitState`, the lease outcomes OK / NEUTRAL / RATE_LIMITED) and the helpers both backends share
(`used_tokens`, `queue_timeout`).

The family's base: `step.py` (the `LimitStep`) imports this module and the two backends,
`local.py` and `redis.py`; the backends import only this one, so no module of the family imports
another in a circle. How the limits work is told in `step.py`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from deepseek_kit._transport.request import Response
from deepseek_kit._wire.errors import DeepSeekError, UsageError
from deepseek_kit._wire.types import SafeDecoder

__all__ = [
    "MAX_PLAUSIBLE_TOKENS",
    "NEUTRAL",
    "OK",
    "RATE_LIMITED",
    "Adaptive",
    "Lease",
    "LimitBackendError",
    "LimitState",
    "LimiterBackend",
    "Limits",
    "QueueTimeoutError",
    "describe",
    "queue_timeout",
    "used_tokens",
]

# Outcomes reported when a lease ends: they drive the adaptive factor.
OK, NEUTRAL, RATE_LIMITED = 1, 0, -1

_SCOPES = frozenset({"endpoint", "key", "model"})


class QueueTimeoutError(DeepSeekError, TimeoutError):
    """A request waited (or would have to wait) longer than `Limits.max_queue_wait`, or past the
    call's total timeout, for its turn. `limit` names what it waited for ("in_flight", "rpm" or
    "tpm"), `waited` the seconds spent. Not retried: the queue is full, so sending again would only
    queue again. Raise `max_queue_wait`, lower the caller's concurrency, or raise the limit.

    With endpoints, `endpoint` names the endpoint whose own quota it waited for (None when the
    quota is shared by several); the router then tries the next endpoint. `message` says what to
    change; `max_wait` is the wait that was allowed (None: no bound but the call's deadline)."""

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
    not yet complete (DeepSeek: 2500 for deepseek-flash, 500 for deepseek-v4-pro
    per account, docs/deepseek-api-notes.md#rate-limits-and-concurrency).
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
            per = (self.per,) if isinstance(self.per, str) else tuple(self.per)  # type: ignore[unreachable]  # a caller may pass one str
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
        """True when any limit is set (rpm, tpm or max_in_flight); with none, the limits step passes
        calls straight on."""
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
    estimate); calling it with the complete response does the same from the response's usage.
    The two backends' leases also have `charge(tokens)`: count tokens against tpm as a stream
    delivers them, before `finish` (the gateway does, server/gateway/tpm.py)."""

    tokens: int

    def finish(self, used: int | None, outcome: int) -> None: ...

    def __call__(self, resp: Response) -> None: ...


class LimiterBackend(Protocol):
    async def acquire(self, scope: str, tokens: int, budget: float | None) -> Lease: ...

    async def state(self, scope: str) -> LimitState: ...

    async def aclose(self) -> None: ...


# -- the usage a response reports --------------------------------------------------------------


class _UsageTotal(msgspec.Struct):
    total_tokens: int = 0


class _BodyUsage(msgspec.Struct):
    """What `used_tokens` reads from a plain response body: its usage total, nothing else."""

    usage: _UsageTotal | None = None


_body_usage_decoder: SafeDecoder[_BodyUsage] = SafeDecoder(_BodyUsage)  # a response body: nesting-guarded


#: No single call can use more: DeepSeek's context is 1M tokens with at most 384K of output. A
#: usage beyond it (or below 0) is a broken or hostile server's, and must neither lock a tpm
#: limit for days nor refill it: the estimate stands instead (docs/attack-round-2026-12.md, round 2).
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
            got = _body_usage_decoder.decode(resp.body)
        except msgspec.DecodeError:
            return None
        if got.usage is not None:
            used = got.usage.total_tokens
    if used is None or not 0 <= used <= MAX_PLAUSIBLE_TOKENS:
        return None
    return used


# -- messages ------------------------------------------------------------------------------------


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
