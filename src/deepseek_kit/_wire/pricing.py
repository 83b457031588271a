"""DeepSeek's price table and the cost of one request (docs/deepseek-api-notes.md#pricing-and-off-peak-hours).

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

Holidays come from `_holidays.HolidayCalendar` (the built-in calendar plus the user's days). Time
comes from the caller: `at=`, or a clock (`Clock`, epoch seconds) on each config that prices calls
(`MetricsConfig`, `LogConfig`, `EmulatorConfig`). Every default clock is `default_clock()`: the
system clock, unless the environment variable `DSK_FAKE_NOW` holds an ISO 8601 time; then the
clock starts at that instant when read and runs on from there. It exists so that tests and demos
(and `dsk` subprocesses) price calls at a chosen peak or off-peak time (docs/pricing.md).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from .errors import UsageError
from .holidays import BUILTIN_HOLIDAYS, DEFAULT_CALENDAR, HolidayCalendar
from .holidays import coerce as calendar_of
from .usage import TokenSplit, split_usage

__all__ = [
    "BEIJING",
    "CN_HOLIDAYS",
    "DEFAULT_CALENDAR",
    "FAKE_NOW_ENV",
    "PRICES",
    "Clock",
    "HolidayCalendar",
    "Holidays",
    "ModelPrice",
    "PriceBook",
    "calendar_of",
    "canonical_model",
    "charge",
    "cost",
    "default_clock",
    "is_peak",
    "now",
    "price_for",
    "scaled_price",
]

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
_MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class ModelPrice:
    """Peak prices per 1M tokens in one currency; off-peak is exactly
    half (docs/deepseek-api-notes.md#pricing-and-off-peak-hours)."""

    cache_hit: Decimal
    cache_miss: Decimal
    output: Decimal

    def at(self, peak: bool) -> ModelPrice:
        """These prices at peak time (`peak=True`: unchanged) or off-peak (all three halved)."""
        if peak:
            return self
        half = Decimal("0.5")
        return ModelPrice(self.cache_hit * half, self.cache_miss * half, self.output * half)


def _p(hit: str, miss: str, out: str) -> ModelPrice:
    return ModelPrice(Decimal(hit), Decimal(miss), Decimal(out))


#: Peak prices per currency and canonical model
#: (docs/deepseek-api-notes.md#pricing-and-off-peak-hours). Off-peak = half.
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

# Accepted legacy names are served and billed as Flash
# (docs/deepseek-api-notes.md#models-and-aliases, your_first_api_call.md).
_ALIASES = {
    "deepseek-flash": "deepseek-flash",
    "deepseek-v4-flash": "deepseek-flash",
    "deepseek-v4-flash-vision-exp": "deepseek-flash",
    "deepseek-v4-pro": "deepseek-v4-pro",
}

# When peak billing started (2026-08-16 16:00 Beijing time).
_PEAK_BILLING_START = datetime(2026, 8, 16, 16, 0, tzinfo=BEIJING)


#: The built-in holidays of every covered year (see `_holidays.BUILTIN_HOLIDAYS`): always off-peak.
CN_HOLIDAYS: frozenset[date] = frozenset().union(*BUILTIN_HOLIDAYS.values())

#: A wall clock in epoch seconds (like `time.time`).
Clock = Callable[[], float]

#: The environment variable that pins every default clock (`default_clock`).
FAKE_NOW_ENV = "DSK_FAKE_NOW"


@functools.lru_cache(maxsize=8)
def _fake_epoch(text: str) -> float:
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{FAKE_NOW_ENV} must be an ISO 8601 time such as 2026-12-07T10:00:00+08:00, "
                         f"got {text!r}") from None
    if at.tzinfo is None:
        raise UsageError(f"{FAKE_NOW_ENV} needs a UTC offset (e.g. +08:00 for Beijing time or Z), "
                         f"got {text!r}")
    return at.timestamp()


def default_clock() -> Clock:
    """The clock configs use unless given one: `time.time`, or, when `DSK_FAKE_NOW` is set, a
    clock that reads that instant now and runs on at the real pace (monotonic) from there."""
    text = os.environ.get(FAKE_NOW_ENV)
    if not text:
        return time.time
    start, t0 = _fake_epoch(text), time.monotonic()
    return lambda: start + (time.monotonic() - t0)


def now() -> datetime:
    """The current time by `default_clock()` (UTC): what `cost()` prices at when no `at` is given."""
    return datetime.fromtimestamp(default_clock()(), timezone.utc)


def canonical_model(model: str) -> str | None:
    """The billing model for a requested name, or None when DeepSeek has no price for it."""
    return _ALIASES.get(model)


Holidays = HolidayCalendar | Iterable[date]


def is_peak(at: datetime | None = None, holidays: Holidays = DEFAULT_CALENDAR) -> bool:
    """True when `at` falls in DeepSeek's peak window (Beijing Mon-Fri 09:00-12:00 and
    14:00-18:00, not a holiday), when prices are double the off-peak ones. `at` defaults to now
    (`now()`, which honours DSK_FAKE_NOW). A naive datetime is taken as UTC. `holidays`: a
    `HolidayCalendar` (default: the built-in one, which warns once for an uncovered year), or a
    set of dates taken as the complete list of holidays."""
    if at is None:
        at = now()
    elif at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    bj = at.astimezone(BEIJING)
    if bj < _PEAK_BILLING_START:
        return False
    if not (9 <= bj.hour < 12 or 14 <= bj.hour < 18):
        return False  # outside the windows the calendar does not matter (and cannot warn)
    if isinstance(holidays, HolidayCalendar):
        return not holidays.is_day_off(bj.date())
    days = holidays if isinstance(holidays, (set, frozenset)) else set(holidays)
    return bj.weekday() < 5 and bj.date() not in days


@functools.lru_cache(maxsize=64)
def _price(canon: str, currency: str, peak: bool) -> ModelPrice:
    return PRICES[currency][canon].at(peak)


def price_for(
    model: str, at: datetime, currency: str = "CNY", holidays: Holidays = DEFAULT_CALENDAR,
    *, peak: bool | None = None,
) -> ModelPrice | None:
    """The per-1M prices that apply to `model` at `at` (or in the given `peak` state), or None for
    a model without a price."""
    canon = _ALIASES.get(model)
    currency = currency.upper()
    if canon is None or currency not in PRICES:
        return None
    return _price(canon, currency, is_peak(at, holidays) if peak is None else peak)


def charge(price: ModelPrice, hit: int, miss: int, output: int) -> Decimal:
    """hit x hit-price + miss x miss-price + output x output-price, per 1M tokens: the arithmetic
    of one bill, for callers that resolve the price themselves."""
    return (hit * price.cache_hit + miss * price.cache_miss + output * price.output) / _MILLION


def scaled_price(price: ModelPrice) -> tuple[int, int, int, int]:
    """(hit, miss, output, exponent): the per-1M prices as integers x 10^s, and the exponent that
    turns `hit*a + miss*b + out*c` into the amount, exactly what `charge` computes."""
    parts = (price.cache_hit, price.cache_miss, price.output)
    s = max(0, *(-int(p.as_tuple().exponent) for p in parts))
    f = 10**s
    a, b, c = (int(p * f) for p in parts)
    return a, b, c, -(s + 6)


_ZERO = Decimal(0)


class PriceBook:
    """The one price cache: the peak state per Beijing minute and each model's price per peak
    state, for one currency, holiday calendar and set of overrides. Everything that prices calls
    holds one (the metrics and logs steps, conversations, batch runs); the table itself is
    `PRICES`.

    `overrides` maps a model to its (peak, off-peak) prices and wins over the table (models in
    neither cost 0). Prices are kept as scaled integers (`scaled_price`), so a call's cost is
    integer arithmetic and one Decimal. Safe to share between threads: each cached value is
    written in one assignment (a race computes it twice, never wrongly)."""

    __slots__ = ("_minute_peak", "_scaled", "currency", "holidays", "overrides")

    def __init__(self, currency: str = "CNY", holidays: Holidays = DEFAULT_CALENDAR,
                 overrides: Mapping[str, tuple[ModelPrice, ModelPrice]] | None = None) -> None:
        self.currency = currency.upper()
        self.holidays = holidays
        self.overrides = dict(overrides or {})
        self._scaled: dict[tuple[str, bool], tuple[int, int, int, int] | None] = {}
        self._minute_peak = (-1, False)

    def is_peak(self, wall: float) -> bool:
        """DeepSeek's peak state at `wall` (epoch seconds). Peak windows start and end on whole
        Beijing hours: one calendar check per minute."""
        minute = int(wall // 60)
        cached = self._minute_peak
        if cached[0] == minute:
            return cached[1]
        peak = is_peak(datetime.fromtimestamp(wall, timezone.utc), self.holidays)
        self._minute_peak = (minute, peak)
        return peak

    def scaled(self, model: str, peak: bool) -> tuple[int, int, int, int] | None:
        """`scaled_price` of the price `model` has in that peak state, or None without a price."""
        key = (model, peak)
        try:
            return self._scaled[key]
        except KeyError:
            pass
        override = self.overrides.get(model)
        price: ModelPrice | None
        if override is not None:
            price = override[0 if peak else 1]
        else:
            canon = _ALIASES.get(model)
            table = PRICES.get(self.currency, {})
            price = table[canon].at(peak) if canon in table else None
        scaled = self._scaled[key] = None if price is None else scaled_price(price)
        return scaled

    def charge(self, model: str | None, tokens: TokenSplit, peak: bool) -> Decimal:
        """The cost of `tokens` on `model` in that peak state (0 without a model or a price)."""
        if model is None or not tokens.billable:
            return _ZERO
        p = self.scaled(model, peak)
        if p is None:
            return _ZERO
        # integer prices x 10^s: one Decimal at the end instead of six operations on them
        amount = tokens.cache_hit * p[0] + tokens.cache_miss * p[1] + tokens.completion * p[2]
        return Decimal(amount).scaleb(p[3])

    def cost(self, model: str | None, usage: Any, wall: float) -> Decimal:
        """What DeepSeek charges for one answer's `usage` (split by `split_usage`) at `wall`."""
        tokens = split_usage(usage)
        if model is None or not tokens.billable:
            return _ZERO
        return self.charge(model, tokens, self.is_peak(wall))


def cost(
    model: str,
    usage: Any,
    at: datetime | None = None,
    currency: str = "CNY",
    holidays: Holidays = DEFAULT_CALENDAR,
    *,
    peak: bool | None = None,
) -> Decimal:
    """What DeepSeek charges for one request: hit x hit-price + miss x miss-price + completion x
    output-price, per 1M tokens. `usage` may be a `Usage` struct, any object with the same
    attributes, or a mapping, read by `split_usage` (the hit/miss split, or OpenAI-style cached
    tokens, else all prompt tokens as misses). Unknown models cost 0. `at` defaults to now
    (`now()`, which honours DSK_FAKE_NOW); `peak`, when given, skips the calendar check. Callers
    that bill many requests hold a `PriceBook` instead."""
    price = price_for(model, at or now(), currency, holidays, peak=peak)
    if price is None:
        return Decimal(0)
    t = split_usage(usage)
    return charge(price, t.cache_hit, t.cache_miss, t.completion)
