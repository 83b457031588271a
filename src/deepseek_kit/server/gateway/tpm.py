"""Tokens per minute counted as a stream delivers them, not only when it ends.

A stream is admitted against its key's and the gateway's tpm with its input estimate only; while
it streams, a ticker (every `TICK` seconds, off the request path: one pass over the streams in
flight, not a call per chunk) charges the chunks relayed since the last pass, at one token per
chunk (DeepSeek streams about a token per chunk), to the stream's leases (`Lease.charge`, the
library's limit backends: in-process or Redis, so every worker sees them within a tick). When the
stream ends its lease is finished with the usage the upstream reported, which corrects the
count. A non-stream answer arrives at once: it is admitted with its input estimate plus
`max_tokens` and corrected at the end. Per-upstream tpm (the library's limits step) is counted at
the end only.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .relay import Call

__all__ = ["TICK", "StreamMeter"]

TICK = 0.25


class _Metered:
    __slots__ = ("call", "charged", "leases")

    def __init__(self, call: Call, leases: list[Any]) -> None:
        self.call = call
        self.leases = leases
        self.charged = 0


class StreamMeter:
    """The streams whose tokens are charged as they arrive; `add` on admission, `remove` at the end."""

    def __init__(self, tick: float = TICK) -> None:
        self.tick = tick
        self._streams: set[_Metered] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, call: Call, *leases: Any) -> _Metered | None:
        live = [lease for lease in leases if lease is not None and hasattr(lease, "charge")]
        if not live:
            return None
        m = _Metered(call, live)
        self._streams.add(m)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return m

    def remove(self, m: _Metered | None) -> None:
        if m is not None:
            self.charge(m)
            self._streams.discard(m)

    @staticmethod
    def charge(m: _Metered) -> None:
        n = m.call.chunks - m.charged
        if n > 0:
            m.charged += n
            for lease in m.leases:
                lease.charge(n)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            for m in list(self._streams):
                self.charge(m)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
