"""The balance of each DeepSeek upstream account: polled (rate-limited) as a Prometheus gauge, and
the upstreams out of balance kept out of the routing until their balance is back.

DeepSeek answers 402 "Insufficient Balance" when the account behind the gateway's upstream key is
empty (docs/deepseek-api-notes.md, errors). Each worker polls `GET {base_url}/user/balance` of every
`kind = "deepseek"` upstream with a key: every `[gateway] balance_poll` seconds (default 60; 0 turns
polling off; the first poll one period after the start, so a restart loop does not hammer the
balance endpoint), and every `balance_recheck` seconds (default 10) while the upstream is out of
balance.
A 402 from an upstream takes it out of the routing at once (`blocked`, read by the relay) and
schedules a poll (never sooner than `balance_recheck` after the last one); the poll that sees
`is_available` with a positive balance puts it back. Other kinds (vLLM, Ollama, ...) have no
balance: they are neither polled nor blocked. The key is sent only to its own upstream and never
appears in a metric or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
import msgspec
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .config import Upstream

__all__ = ["BalanceCollector", "BalanceWatch"]

log = logging.getLogger("deepseek_kit.gateway")
_POLL_TIMEOUT = 10.0  # seconds one balance request may take


class _Info(msgspec.Struct):
    currency: str = ""
    total_balance: str = "0"


class _Balance(msgspec.Struct):
    is_available: bool = False
    balance_infos: list[_Info] = []


_decode = msgspec.json.Decoder(_Balance).decode


class BalanceWatch:
    """Polls the balances and keeps `blocked`, the names of the upstreams out of balance."""

    def __init__(self, upstreams: Sequence[Upstream], poll: float, recheck: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.poll = poll
        self.recheck = recheck
        self.clock = clock
        self.blocked: set[str] = set()
        #: name -> {currency: total balance} as last polled
        self.balances: dict[str, dict[str, float]] = {}
        self.polls = 0
        self.errors = 0
        self._targets = {u.name: u for u in upstreams if u.kind == "deepseek" and u.api_key}
        self._last: dict[str, float] = {}
        self._started = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def watched(self, name: str) -> bool:
        return name in self._targets

    def start(self) -> None:
        if self._targets and self.poll > 0 and self._task is None:
            self._started = self.clock()
            self._task = asyncio.get_running_loop().create_task(self._run())

    def update(self, upstreams: Sequence[Upstream]) -> None:
        """A config reload: watch the new upstreams (a blocked one that is gone is forgotten)."""
        self._targets = {u.name: u for u in upstreams if u.kind == "deepseek" and u.api_key}
        self.blocked &= set(self._targets)
        for name in list(self.balances):
            if name not in self._targets:
                del self.balances[name]
        self._wake.set()

    def refused(self, name: str, status: int) -> None:
        """The relay saw `status` from upstream `name`: a 402 takes it out of the routing."""
        if status == 402 and name in self._targets and name not in self.blocked:
            log.warning("gateway: upstream %s answered 402 (insufficient balance): no traffic to it until "
                        "its balance is back", name)
            self.blocked.add(name)
            self._wake.set()

    def _due(self, name: str) -> float:
        last = self._last.get(name)
        if last is None:  # never polled: one period after the start, or a recheck after a 402
            return self._started + (self.recheck if name in self.blocked else self.poll)
        return last + (self.recheck if name in self.blocked else self.poll)

    async def _run(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_POLL_TIMEOUT))
        try:
            while True:
                now = self.clock()
                for name in [n for n in self._targets if self._due(n) <= now]:
                    await self.check(name)
                now = self.clock()
                nxt = min((self._due(n) for n in self._targets), default=now + self.poll)
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.05, nxt - now))
        finally:
            await self._session.close()

    async def check(self, name: str) -> None:
        """Poll one upstream's balance now and block or unblock it."""
        u = self._targets.get(name)
        if u is None:
            return
        self._last[name] = self.clock()
        self.polls += 1
        session = self._session
        own = session is None
        if session is None:
            session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_POLL_TIMEOUT))
        try:
            async with session.get(u.base_url.rstrip("/") + "/user/balance",
                                   headers={"Authorization": f"Bearer {u.api_key}"}) as r:
                body = await r.read()
                if r.status != 200:
                    raise ValueError(f"HTTP {r.status}")
            doc = _decode(body)
            totals: dict[str, float] = {}
            for info in doc.balance_infos:
                try:
                    totals[info.currency or "-"] = float(Decimal(info.total_balance))
                except InvalidOperation:
                    continue
        except (aiohttp.ClientError, asyncio.TimeoutError, msgspec.DecodeError, ValueError) as exc:
            self.errors += 1  # the state stays as it was: a failed poll proves nothing
            log.warning("gateway: balance poll of upstream %s failed (%s)", name, type(exc).__name__)
            return
        finally:
            if own:
                await session.close()
        self.balances[name] = totals
        available = doc.is_available and any(v > 0 for v in totals.values())
        if available and name in self.blocked:
            log.warning("gateway: upstream %s has balance again: back in the routing", name)
            self.blocked.discard(name)
        elif not available and name not in self.blocked:
            log.warning("gateway: upstream %s reports no available balance: out of the routing", name)
            self.blocked.add(name)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class BalanceCollector(Collector):
    """`dsk_gateway_upstream_balance{upstream,currency}` and `dsk_gateway_upstream_out_of_balance
    {upstream}`, read from the watch at scrape time."""

    def __init__(self, watch: Callable[[], BalanceWatch | None]) -> None:
        self.watch = watch

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        w = self.watch()
        bal = GaugeMetricFamily("dsk_gateway_upstream_balance", "Balance of the upstream's account as "
                                "last polled", labels=["upstream", "currency"])
        out = GaugeMetricFamily("dsk_gateway_upstream_out_of_balance", "1 while the upstream is kept out "
                                "of the routing for want of balance", labels=["upstream"])
        polls = GaugeMetricFamily("dsk_gateway_balance_polls", "Balance polls made (errors: failed)",
                                  labels=["result"])
        if w is not None:
            for name, totals in w.balances.items():
                for cur, v in totals.items():
                    bal.add_metric([name, cur], v)
            for name in w._targets:
                out.add_metric([name], 1.0 if name in w.blocked else 0.0)
            polls.add_metric(["ok"], float(w.polls - w.errors))
            polls.add_metric(["error"], float(w.errors))
        yield bal
        yield out
        yield polls
