"""What the dashboard's stats endpoint reports: spend aggregated per key, model and Beijing day
from the state's usage rows (SQLite or Redis alike, through `GatewayState.usage`), the upstreams'
health and breaker state from the router, and the DeepSeek balances the gateway last polled."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..keys import GatewayState

if TYPE_CHECKING:
    from deepseek_kit._steps.router import EndpointHealth

__all__ = ["Totals", "beijing_day", "health_view", "usage_view"]

_BEIJING = timezone(timedelta(hours=8))


def beijing_day(now: datetime) -> date:
    """The Beijing calendar day of `now`: DeepSeek's day, and the day the usage rows are kept by."""
    return now.astimezone(_BEIJING).date()


@dataclass
class Totals:
    requests: int = 0
    cost: Decimal = field(default_factory=Decimal)

    def add(self, requests: int, cost: Decimal) -> None:
        self.requests += requests
        self.cost += cost

    def view(self) -> dict[str, Any]:
        return {"requests": self.requests, "cost": str(self.cost)}


async def usage_view(state: GatewayState, now: datetime, days: int) -> dict[str, Any]:
    """Spend of the last `days` Beijing days (today included), per key, per model, per day (every
    day present, zero or not, so the chart's axis has no gaps) and in total."""
    first = beijing_day(now) - timedelta(days=days - 1)
    by_key: list[dict[str, Any]] = []
    by_model: dict[str, Totals] = {}
    by_day = {(first + timedelta(days=i)).isoformat(): Totals() for i in range(days)}
    total = Totals()
    for rec in await state.list_keys():
        mine = Totals()
        for row in await state.usage(rec.key.id, first):
            mine.add(row.requests, row.cost)
            by_model.setdefault(row.model, Totals()).add(row.requests, row.cost)
            by_day.setdefault(row.day, Totals()).add(row.requests, row.cost)
        total.add(mine.requests, mine.cost)
        by_key.append({"id": rec.key.id, "name": rec.key.name, "prefix": rec.key.prefix,
                       "revoked": rec.revoked_at is not None, **mine.view()})
    return {
        "since": first.isoformat(), "days": days, "total": total.view(), "by_key": by_key,
        "by_model": [{"model": m, **t.view()} for m, t in sorted(by_model.items())],
        "by_day": [{"day": d, **t.view()} for d, t in sorted(by_day.items())],
    }


def health_view(endpoints: Iterable[EndpointHealth], balances: Mapping[str, Mapping[str, float]],
                blocked: Iterable[str], watched: Iterable[str]) -> list[dict[str, Any]]:
    """One entry per upstream: breaker state, traffic counters, TTFT, and its account balance when
    the gateway polls one (DeepSeek upstreams with a key)."""
    blocked, watched = set(blocked), set(watched)
    return [{
        "name": h.name, "base_url": h.base_url, "state": h.state, "in_flight": h.in_flight,
        "consecutive_failures": h.consecutive_failures, "requests": h.requests, "failures": h.failures,
        "p95_ttft": h.p95_ttft, "reopens_in": h.reopens_in,
        "balance": dict(balances.get(h.name, {})) if h.name in watched else None,
        "out_of_balance": h.name in blocked,
    } for h in endpoints]
