"""Operations metrics read off the request path: each budgeted key's remaining budget (refreshed
in the background for the keys that made requests), the request-log rows the log writer dropped
(its queue was full), and the budget settlements waiting to be written.

`metrics.py` counts per request; this module's figures come from a background task (budgets: one
store read per active key every `BUDGET_REFRESH` seconds, never on the request path) and from a
collector read at scrape time. Labels carry the key's id, never the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .keys import VirtualKey

__all__ = ["BUDGET_REFRESH", "BudgetRefresher", "QueueCollector"]

log = logging.getLogger("deepseek_kit.gateway")
BUDGET_REFRESH = 5.0


class BudgetRefresher:
    """Keeps `gauge{key,currency}` at the remaining budget of every budgeted key seen lately."""

    def __init__(self, remaining: Callable[[VirtualKey], Any], gauge: Any, currency: str,
                 interval: float = BUDGET_REFRESH) -> None:
        self.remaining = remaining
        self.gauge = gauge
        self.currency = currency
        self.interval = interval
        self._seen: dict[str, VirtualKey] = {}
        self._task: asyncio.Task[None] | None = None

    def seen(self, key: VirtualKey | None) -> None:
        """A request of `key` (cheap: a dict write; the read happens in the background)."""
        if key is not None and (key.budget_daily is not None or key.budget_monthly is not None):
            self._seen[key.id] = key
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._run())

    async def refresh(self) -> None:
        keys, self._seen = self._seen, {}
        for key in keys.values():
            try:
                left = await self.remaining(key)
            except Exception as exc:  # the store is down: the gauge keeps its last value
                log.warning("gateway: budget gauge of %s not refreshed (%s)", key.id, type(exc).__name__)
                continue
            if left is not None:
                self.gauge.labels(key.id, self.currency).set(float(left))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.refresh()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class QueueCollector(Collector):
    """`dsk_gateway_log_rows_dropped_total` and `dsk_gateway_settle_queue`, read at scrape time."""

    def __init__(self, client: Callable[[], Any], state: Callable[[], Any]) -> None:
        self.client = client
        self.state = state

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        dropped = CounterMetricFamily("dsk_gateway_log_rows_dropped", "Request-log rows dropped because "
                                      "the log writer's queue was full")
        logs = getattr(self.client(), "logs", None)
        store = getattr(logs, "store", None)
        dropped.add_metric([], float(getattr(store, "dropped", 0)))
        yield dropped
        queue = GaugeMetricFamily("dsk_gateway_settle_queue", "Budget settlements waiting to be written "
                                  "to the state store")
        queue.add_metric([], float(len(getattr(self.state(), "_settles", ()))))
        yield queue
