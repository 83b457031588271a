"""Per-key rpm, tpm and in-flight caps (`VirtualKey.rpm`, `.tpm`, `.max_in_flight`), on the library's
limit backends: in-process, or Redis when the gateway's state is on Redis, so every worker and host
shares one count per key (docs/routing-and-limits.md for the algorithms).

A request over its key's cap is refused at once with a 429 and a `Retry-After` (never queued: the
caller decides whether to wait). rpm and tpm may burst up to a minute's worth, so "60 rpm" admits 60
requests at once after a quiet minute, then one a second. tpm counts the request's estimate at
admission (input plus max_tokens) and is corrected with the usage the upstream reports.
"""

from __future__ import annotations

from typing import Any

from deepseek_kit._steps.limits.base import NEUTRAL, OK, LimiterBackend, Limits, QueueTimeoutError
from deepseek_kit._steps.limits.local import LocalLimiter

from .errors import GatewayError
from .keys import VirtualKey

__all__ = ["KeyLimits"]


class KeyLimits:
    def __init__(self, redis_url: str | None = None) -> None:
        self.redis_url = redis_url
        # one backend per distinct (rpm, tpm, in-flight) triple; the key's id is the scope in it
        self._backends: dict[tuple[int | None, int | None, int | None], LimiterBackend] = {}

    def _backend(self, key: VirtualKey) -> LimiterBackend:
        shape = (key.rpm, key.tpm, key.max_in_flight)
        backend = self._backends.get(shape)
        if backend is None:
            limits = Limits(rpm=key.rpm, tpm=key.tpm, max_in_flight=key.max_in_flight, max_queue_wait=0.0,
                            burst=60.0, adaptive=None, redis_url=self.redis_url,
                            name=f"dsk-gw-key-{key.rpm}-{key.tpm}-{key.max_in_flight}")
            if self.redis_url:
                from deepseek_kit._steps.limits.redis import RedisLimiter

                backend = RedisLimiter(limits)
            else:
                backend = LocalLimiter(limits)
            self._backends[shape] = backend
        return backend

    async def admit(self, key: VirtualKey | None, tokens: int) -> Any:
        """The key's lease (finish it with `done`), None when the key has no caps; GatewayError 429."""
        if key is None or not (key.rpm or key.tpm or key.max_in_flight):
            return None
        try:
            return await self._backend(key).acquire(key.id, tokens if key.tpm else 0, 0.0)
        except QueueTimeoutError as exc:
            if exc.limit == "rpm" and key.rpm:
                after = 60.0 / key.rpm
            elif exc.limit == "tpm" and key.tpm:
                after = min(60.0, 60.0 * tokens / key.tpm)
            else:
                after = 1.0
            raise GatewayError(429, f"Rate Limit Reached: this key's {exc.limit} limit is reached; "
                               f"retry after {after:.0f} s", code="rate_limit_exceeded",
                               retry_after=after) from None

    @staticmethod
    def done(lease: Any, used: int | None, ok: bool) -> None:
        if lease is not None:
            lease.finish(used, OK if ok else NEUTRAL)

    async def aclose(self) -> None:
        for backend in self._backends.values():
            await backend.aclose()
        self._backends.clear()
