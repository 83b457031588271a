"""China's statutory holiday calendar, as DeepSeek's peak/off-peak billing needs it (docs/pricing.md).

DeepSeek bills peak prices on Beijing-time Monday-Friday 09:00-12:00 and 14:00-18:00, "excluding
Chinese statutory holidays" (docs/deepseek-api-notes.md#pricing-and-off-peak-hours,
the pricing page's footnote). Which days are
holidays is set each year by the State Council's notice on the next year's holiday arrangements
(国务院办公厅关于<year>年部分节假日安排的通知, usually published in Oct-Dec), so the calendar is data:

* `BUILTIN_HOLIDAYS`: the days off of every year whose notice was published when this release was
  made (today 2026 only: the 2027 notice had not been published, see docs/pricing.md). Never guessed.
* `HolidayCalendar`: the built-in days plus your own (`holidays`), with your corrections
  (`workdays`: days billed as working days, e.g. a built-in day that turns out wrong, or adjusted
  working weekend days if DeepSeek were to bill those as peak). The config file's `[pricing]`
  table builds one (`HolidayCalendar.from_config`).
* Adjusted working days (调休, a Saturday or Sunday declared a working day to bridge a holiday) are
  NOT peak by default: DeepSeek's rule says Monday-Friday, and says nothing of them.
* Pricing a weekday in a year the calendar does not cover warns once per process and year
  (`HolidayCalendarWarning`), then bills it as an ordinary working day.

A leaf: imports only the standard library and `_errors`.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from .errors import UsageError

__all__ = [
    "BUILTIN_HOLIDAYS",
    "BUILTIN_SOURCES",
    "DEFAULT_CALENDAR",
    "HolidayCalendar",
    "HolidayCalendarWarning",
]


def _days(start: date, n: int) -> list[date]:
    return [start + timedelta(days=i) for i in range(n)]


#: Days off per year, from the State Council's notices (the source of each is in BUILTIN_SOURCES).
BUILTIN_HOLIDAYS: Mapping[int, frozenset[date]] = {
    2026: frozenset(
        _days(date(2026, 1, 1), 3)      # 元旦 1-3 Jan
        + _days(date(2026, 2, 15), 9)   # 春节 15-23 Feb
        + _days(date(2026, 4, 4), 3)    # 清明节 4-6 Apr
        + _days(date(2026, 5, 1), 5)    # 劳动节 1-5 May
        + _days(date(2026, 6, 19), 3)   # 端午节 19-21 Jun
        + _days(date(2026, 9, 25), 3)   # 中秋节 25-27 Sep
        + _days(date(2026, 10, 1), 7)   # 国庆节 1-7 Oct
    ),
}

#: Where each built-in year comes from (国务院办公厅关于2026年部分节假日安排的通知, 2025-11-04).
BUILTIN_SOURCES: Mapping[int, str] = {
    2026: "https://www.gov.cn/zhengce/content/202511/content_7047090.htm",
}

_ALL_BUILTIN: frozenset[date] = frozenset().union(*BUILTIN_HOLIDAYS.values())

# Peak billing started on 2026-08-16
# (docs/deepseek-api-notes.md#pricing-and-off-peak-hours): earlier years need no calendar.
_FIRST_BILLED_YEAR = 2026


class HolidayCalendarWarning(UserWarning):
    """A price was computed for a weekday in a year the holiday calendar does not cover, so a
    holiday may have been billed at the peak price. Add that year's holidays (`[pricing]
    holidays = [...]` in the config file, or `HolidayCalendar(holidays=...)`), or upgrade."""


_warned: set[int] = set()
_warned_lock = threading.Lock()


def _warn_uncovered(year: int) -> None:
    """Once per process and year (not per call: a batch prices thousands of answers)."""
    with _warned_lock:
        if year in _warned:
            return
        _warned.add(year)
    warnings.warn(
        f"deepseek-kit has no Chinese holiday calendar for {year}: weekdays of {year} are priced "
        f"as working days (peak hours at the peak price), holidays included. Add {year}'s "
        f"holidays to the config file ([pricing] holidays = [\"{year}-01-01\", ...]) or pass "
        f"HolidayCalendar(holidays=...), or upgrade deepseek-kit once the State Council has "
        f"published the {year} schedule.",
        HolidayCalendarWarning, stacklevel=_caller_level())


def _caller_level() -> int:
    """The stacklevel of the first frame outside deepseek_kit: the warning points at the user's
    line whatever path (cost, metrics, logs, batch) led here."""
    frame = sys._getframe(2)  # the caller of _warn_uncovered: stacklevel 2
    level = 2
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("deepseek_kit"):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _as_date(value: Any, where: str) -> date:
    if isinstance(value, datetime):  # a datetime is a date subclass: refuse, the time is meaningless
        raise UsageError(f"{where}: {value!r} is a date and time; give a date such as \"2027-01-01\"")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise UsageError(f"{where}: {value!r} is not a date; give dates as \"YYYY-MM-DD\" strings "
                     f"(or TOML dates), e.g. \"2027-01-01\"")


def _as_dates(values: Any, where: str) -> frozenset[date]:
    if isinstance(values, (str, bytes, date)) or not isinstance(values, Iterable):
        raise UsageError(f"{where} must be a list of dates (\"YYYY-MM-DD\"), got {values!r}")
    return frozenset(_as_date(v, where) for v in values)


@dataclass(frozen=True)
class HolidayCalendar:
    """Which Beijing dates are days off (always off-peak) for DeepSeek's billing.

    - holidays: days off in addition to the built-in calendar (dates, or "YYYY-MM-DD" strings).
    - workdays: days billed as working days (peak hours apply) even when they are a weekend or
      a built-in holiday: corrections, or adjusted working weekend days (调休) if you find DeepSeek
      bills those as peak (by default it does not: its rule says Monday-Friday).
    - builtin: False ignores the built-in calendar (then `holidays` is the whole list).

    A year counts as covered when the built-in calendar has it or you give a holiday or workday
    in it; pricing a weekday of an uncovered year warns once (`HolidayCalendarWarning`).
    """

    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()
    builtin: bool = True
    _off: frozenset[date] = field(init=False, repr=False, compare=False)
    _years: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.builtin, bool):
            raise UsageError(f"HolidayCalendar.builtin must be true or false, got {self.builtin!r}")
        set_(self, "holidays", _as_dates(self.holidays, "holidays"))
        set_(self, "workdays", _as_dates(self.workdays, "workdays"))
        both = self.holidays & self.workdays
        if both:
            raise UsageError(f"{sorted(d.isoformat() for d in both)[:3]} listed both as holidays and as "
                             f"workdays: keep each date in one list")
        base = _ALL_BUILTIN if self.builtin else frozenset()
        set_(self, "_off", (base | self.holidays) - self.workdays)
        years = {d.year for d in self.holidays | self.workdays}
        if self.builtin:
            years |= set(BUILTIN_HOLIDAYS)
        set_(self, "_years", frozenset(years))

    @property
    def years(self) -> frozenset[int]:
        """The years this calendar covers."""
        return self._years

    def is_day_off(self, day: date) -> bool:
        """True for a weekend (unless listed in `workdays`) or a holiday. A weekday of a year
        the calendar does not cover is a working day, with a warning once per year."""
        if day in self.workdays:
            return False
        if day.weekday() >= 5 or day in self._off:
            return True
        if day.year not in self._years and day.year >= _FIRST_BILLED_YEAR:
            _warn_uncovered(day.year)
        return False

    @classmethod
    def from_config(cls, table: Any) -> HolidayCalendar:
        """From the config file's `[pricing]` table: `holidays = ["2027-01-01", ...]`,
        `workdays = [...]`, `builtin_holidays = true`. None (no table) gives the default."""
        if table is None:
            return DEFAULT_CALENDAR
        if not isinstance(table, Mapping):
            raise UsageError(f"config file: pricing must be a [pricing] table, got {table!r}")
        known = {"holidays", "workdays", "builtin_holidays"}
        unknown = sorted(set(table) - known)
        if unknown:
            raise UsageError(f"config file [pricing]: unknown keys {unknown} (known: {sorted(known)})")
        builtin = table.get("builtin_holidays", True)
        if not isinstance(builtin, bool):
            raise UsageError(f"config file [pricing]: builtin_holidays must be true or false, "
                             f"got {builtin!r}")
        holidays = _as_dates(table.get("holidays", ()), "config file [pricing] holidays")
        workdays = _as_dates(table.get("workdays", ()), "config file [pricing] workdays")
        try:
            return cls(holidays=holidays, workdays=workdays, builtin=builtin)
        except UsageError as exc:
            raise UsageError(f"config file [pricing]: {exc}") from None


#: The built-in calendar alone.
DEFAULT_CALENDAR = HolidayCalendar()


def coerce(value: HolidayCalendar | Iterable[date] | None, where: str = "holidays") -> HolidayCalendar:
    """A calendar from an argument: a `HolidayCalendar` as is, None for the default, or an
    iterable of dates, taken as the complete list of holidays (the built-in one is not added;
    no year is then "uncovered", so nothing warns: you gave the list)."""
    if value is None:
        return DEFAULT_CALENDAR
    if isinstance(value, HolidayCalendar):
        return value
    days = _as_dates(value, where)
    cal = HolidayCalendar(holidays=days, builtin=False)
    object.__setattr__(cal, "_years", frozenset(range(_FIRST_BILLED_YEAR, 10000)))
    return cal
