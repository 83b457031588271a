"""Per-upstream caps (`[[upstream]] rpm / tpm / max_in_flight`): each upstream account's own quota,
enforced inside the library's limits step so that a full upstream is skipped by the router (the
next upstream takes the call, docs/routing-and-limits.md) rather than queued for.

The library's `[limits]` table gives every upstream the same caps; these differ per upstream. The
client's `LimitStep` gets a backend (`UpstreamCaps`) that reads the upstream's name from the
step's per-endpoint scope and takes a lease on that upstream's own backend (in-process, or Redis
when the gateway's state is on Redis, so every worker shares one count per upstream), then on the
`[limits]` backend (the one the step built) when that table is set. A full upstream raises the library's
`QueueTimeoutError` at once, which the router treats as "try another endpoint".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deepseek_kit._steps.limits.base import LimiterBackend, Limits, LimitState
from deepseek_kit._steps.limits.local import LocalLimiter
from deepseek_kit._transport.request import Response

from .config import Upstream

__all__ = ["UpstreamCaps", "carrier_limits", "has_caps"]


def has_caps(u: Upstream) -> bool:
    return bool(u.rpm or u.tpm or u.max_in_flight)


def carrier_limits(base: Limits | None) -> Limits:
    """The `Limits` the client is built with when some upstream has caps: `[limits]` itself, made
    per endpoint, or (without that table) a pass-through quota that keeps the step active and the
    token estimate computed (its own caps are never enforced: `UpstreamCaps` replaces the backend)."""
    if base is not None and base.active:
        per = base.per if base.per is not None else ("endpoint",)
        if "endpoint" not in per:
            per = ("endpoint", *per)
        return Limits(**{**{f: getattr(base, f) for f in _FIELDS}, "per": per})
    return Limits(rpm=None, tpm=1e15, max_in_flight=None, max_queue_wait=0.0, adaptive=None,
                  per=("endpoint",), name="dsk-gw-upstream")


_FIELDS = ("rpm", "tpm", "max_in_flight", "max_queue_wait", "burst", "adaptive", "name", "per",
           "default_max_tokens", "redis_url", "lease_ttl", "failover_wait")


class _Both:
    """Two leases finished together."""

    def __init__(self, a: Any, b: Any) -> None:
        self.a, self.b = a, b
        self.tokens = getattr(a, "tokens", 0)

    def finish(self, used: int | None, outcome: int) -> None:
        self.a.finish(used, outcome)
        if self.b is not None:
            self.b.finish(used, outcome)

    def __call__(self, resp: Response) -> None:
        self.a(resp)
        if self.b is not None:
            self.b(resp)


class UpstreamCaps:
    """A `LimiterBackend` for the client's `LimitStep`: the upstream's own caps, then `[limits]`."""

    def __init__(self, upstreams: Sequence[Upstream], base: LimiterBackend | None,
                 redis_url: str | None) -> None:
        self._own: dict[str, LimiterBackend] = {}
        for u in upstreams:
            if not has_caps(u):
                continue
            lim = Limits(rpm=u.rpm, tpm=u.tpm, max_in_flight=u.max_in_flight, max_queue_wait=0.0,
                         burst=60.0, adaptive=None, redis_url=redis_url, name="dsk-gw-upstream")
            if redis_url:
                from deepseek_kit._steps.limits.redis import RedisLimiter

                self._own[u.name] = RedisLimiter(lim)
            else:
                self._own[u.name] = LocalLimiter(lim)
        self._base = base  # the `[limits]` table's backend, as the library's step built it

    async def acquire(self, scope: str, tokens: int, budget: float | None) -> Any:
        parts = scope.split("|")
        name = parts[1] if len(parts) > 1 else ""
        own = self._own.get(name)
        first = None
        if own is not None:
            first = await own.acquire(name, tokens, 0.0)  # QueueTimeoutError: the router moves on
        if self._base is None:
            return first if first is not None else _Both(_Nothing(tokens), None)
        try:
            second = await self._base.acquire(scope, tokens, budget)
        except BaseException:
            if first is not None:
                first.finish(0, 0)
            raise
        return _Both(second, first)

    async def state(self, scope: str) -> LimitState:
        if self._base is not None:
            return await self._base.state(scope)
        return LimitState(factor=1.0, in_flight=0, max_in_flight=None, waiting=0)

    async def aclose(self) -> None:
        for b in self._own.values():
            await b.aclose()
        if self._base is not None:
            await self._base.aclose()


class _Nothing:
    def __init__(self, tokens: int) -> None:
        self.tokens = tokens

    def finish(self, used: int | None, outcome: int) -> None:
        pass

    def __call__(self, resp: Response) -> None:
        pass
