"""DeepSeek's price table and the cost of one request (deepseek-api.md §2.1).

Shared by the emulator (balance deduction) and the client (cost metrics), so it knows nothing of
either: give it a model name, a usage object (a wire `Usage` struct, anything with the same
attributes, or a plain mapping) and a time, get back a `Decimal` amount in CNY or USD.

Billing facts encoded here (current table, `?check=20261115`):

* Prices are per 1M tokens, separate for cache-hit input, cache-miss input and output (reasoning
  tokens are output tokens).
* Peak = Beijing time Monday-Friday 09:00-12:00 and 14:00-18:00, excluding Chinese statutory
  holidays; everything else is off-peak at half price (introduced 2026-08-16 16:00 Beijing time;
  earlier timestamps are billed at the off-peak level, which equals the old flat price only
  approximately - we do not model historical tables).
* Legacy names `deepseek-v4-flash` and `deepseek-v4-flash-vision-exp` are billed at Flash prices.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

__all__ = [
    "BEIJING",
    "CN_HOLIDAYS",
    "PRICES",
    "ModelPrice",
    "canonical_model",
    "charge",
    "cost",
    "is_peak",
    "price_for",
]

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
_MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class ModelPrice:
    """Peak prices per 1M tokens in one currency; off-peak is exactly half (§2.1 footnote)."""

    cache_hit: Decimal
    cache_miss: Decimal
    output: Decimal

    def at(self, peak: bool) -> ModelPrice:
        if peak:
            return self
        half = Decimal("0.5")
        return ModelPrice(self.cache_hit * half, self.cache_miss * half, self.output * half)


def _p(hit: str, miss: str, out: str) -> ModelPrice:
    return ModelPrice(Decimal(hit), Decimal(miss), Decimal(out))


#: Peak prices per currency and canonical model (§2.1). Off-peak = half.
PRICES: dict[str, dict[str, ModelPrice]] = {
    "CNY": {
        "deepseek-flash": _p("0.04", "2", "8"),
        "deepseek-v4-pro": _p("0.30", "9", "27"),
    },
    "USD": {
        "deepseek-flash": _p("0.006", "0.30", "1.20"),
        "deepseek-v4-pro": _p("0.044", "1.32", "3.96"),
    },
}

# Accepted legacy names are served and billed as Flash (§2.1, your_first_api_call.md).
_ALIASES = {
    "deepseek-flash": "deepseek-flash",
    "deepseek-v4-flash": "deepseek-flash",
    "deepseek-v4-flash-vision-exp": "deepseek-flash",
    "deepseek-v4-pro": "deepseek-v4-pro",
}

# When peak billing started (2026-08-16 16:00 Beijing time).
_PEAK_BILLING_START = datetime(2026, 8, 16, 16, 0, tzinfo=BEIJING)


def _days(start: date, n: int) -> list[date]:
    return [start + timedelta(days=i) for i in range(n)]


#: Chinese statutory holidays (days off) from the State Council's 2026 schedule; always off-peak.
#: Best effort: pass your own set to `is_peak`/`cost` for other years or corrections.
CN_HOLIDAYS: frozenset[date] = frozenset(
    _days(date(2026, 1, 1), 3)
    + _days(date(2026, 2, 15), 9)
    + _days(date(2026, 4, 4), 3)
    + _days(date(2026, 5, 1), 5)
    + _days(date(2026, 6, 19), 3)
    + _days(date(2026, 9, 25), 3)
    + _days(date(2026, 10, 1), 7)
)


def canonical_model(model: str) -> str | None:
    """The billing model for a requested name, or None when DeepSeek has no price for it."""
    return _ALIASES.get(model)


def is_peak(at: datetime, holidays: Iterable[date] = CN_HOLIDAYS) -> bool:
    """True when `at` falls in DeepSeek's peak window (Beijing Mon-Fri 09-12 and 14-18, not a
    holiday). A naive datetime is taken as UTC."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    bj = at.astimezone(BEIJING)
    if bj < _PEAK_BILLING_START or bj.weekday() >= 5:
        return False
    if bj.date() in (holidays if isinstance(holidays, (set, frozenset)) else set(holidays)):
        return False
    return 9 <= bj.hour < 12 or 14 <= bj.hour < 18


@functools.lru_cache(maxsize=64)
def _price(canon: str, currency: str, peak: bool) -> ModelPrice:
    return PRICES[currency][canon].at(peak)


def price_for(
    model: str, at: datetime, currency: str = "CNY", holidays: Iterable[date] = CN_HOLIDAYS,
    *, peak: bool | None = None,
) -> ModelPrice | None:
    """The per-1M prices that apply to `model` at `at` (or in the given `peak` state), or None for
    a model without a price."""
    canon = _ALIASES.get(model)
    currency = currency.upper()
    if canon is None or currency not in PRICES:
        return None
    return _price(canon, currency, is_peak(at, holidays) if peak is None else peak)


def _get(usage: Any, name: str) -> int:
    value = usage.get(name) if isinstance(usage, Mapping) else getattr(usage, name, None)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def charge(price: ModelPrice, hit: int, miss: int, output: int) -> Decimal:
    """hit x hit-price + miss x miss-price + output x output-price, per 1M tokens: the arithmetic
    of one bill, for callers that resolve the price themselves (the client's metrics cache it per
    model and minute, and accept user overrides)."""
    return (hit * price.cache_hit + miss * price.cache_miss + output * price.output) / _MILLION


def cost(
    model: str,
    usage: Any,
    at: datetime | None = None,
    currency: str = "CNY",
    holidays: Iterable[date] = CN_HOLIDAYS,
    *,
    peak: bool | None = None,
) -> Decimal:
    """What DeepSeek charges for one request: hit x hit-price + miss x miss-price + completion x
    output-price, per 1M tokens. `usage` may be a `Usage` struct, any object with the same
    attributes, or a mapping. When the hit/miss split is missing (private deployments), all
    prompt tokens count as misses. Unknown models cost 0. `at` defaults to now; `peak`, when
    given, skips the calendar check (callers that bill many requests cache it)."""
    price = price_for(model, at or datetime.now(timezone.utc), currency, holidays, peak=peak)
    if price is None:
        return Decimal(0)
    prompt = _get(usage, "prompt_tokens")
    hit = _get(usage, "prompt_cache_hit_tokens")
    miss = _get(usage, "prompt_cache_miss_tokens")
    if hit + miss == 0 and prompt:
        miss = prompt
    return charge(price, hit, miss, _get(usage, "completion_tokens"))
