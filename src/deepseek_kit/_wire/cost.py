"""`cost(usage, model, at=None)`: the public answer to "what did this call cost?".

A thin, checked front of `_wire/pricing.py` (which the emulator, metrics and gateway share with
their own argument order, `pricing.cost(model, usage, at, ...)`): usage first, because it is what
the caller holds (`completion.usage`, `run.usage`), and typed arguments that fail loudly where
the internal one is lenient (an unknown currency is an error here, not a zero).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from . import pricing as _pricing
from .errors import UsageError
from .types import Usage

__all__ = ["cost"]


def cost(
    usage: Usage | Mapping[str, Any] | None,
    model: str,
    at: datetime | None = None,
    *,
    currency: Literal["CNY", "USD"] | str = "CNY",
    holidays: _pricing.Holidays | None = None,
) -> Decimal:
    """What DeepSeek bills for one request's `usage` on `model`, as an exact `Decimal`.

    - usage: a response's `usage` (`completion.usage`, a stream's final completion's, the summed
      `ToolRun.usage`), or a mapping with the same keys. None (a response without usage) costs 0.
      Cache-hit input, cache-miss input and output tokens (reasoning included) are priced
      separately, per 1M tokens (docs/deepseek-api-notes.md#pricing-and-off-peak-hours).
    - model: the model the request used; legacy names are billed as Flash. A model DeepSeek has
      no price for (a private deployment's) costs 0.
    - at: when the request ran. DeepSeek bills peak hours (Beijing time, Monday to Friday
      09:00-12:00 and 14:00-18:00, except Chinese public holidays) at the full price and every
      other hour at half of it, so the same usage costs twice as much at peak. None = now (the
      system clock, or the `DSK_FAKE_NOW` environment variable when set). A naive datetime is UTC.
    - currency: "CNY" (yuan, the default) or "USD" (dollars): DeepSeek's two price lists.
    - holidays: a `HolidayCalendar` or a set of dates for the peak rule (default: the built-in
      calendar, docs/pricing.md).

    Raises `UsageError` for an unknown currency.

        >>> from datetime import datetime, timezone
        >>> from deepseek_kit import cost
        >>> usage = {"prompt_tokens": 1_000_000, "completion_tokens": 0,
        ...          "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": 1_000_000}
        >>> cost(usage, "deepseek-flash", datetime(2026, 12, 3, 3, 0, tzinfo=timezone.utc))  # Thu, peak
        Decimal('2.00')
        >>> cost(usage, "deepseek-flash", datetime(2026, 12, 5, 3, 0, tzinfo=timezone.utc))  # Saturday
        Decimal('1.000')
    """
    cur = currency.upper() if isinstance(currency, str) else currency
    if cur not in _pricing.PRICES:
        raise UsageError(f"currency must be one of {', '.join(_pricing.PRICES)}, not {currency!r}")
    if usage is None:
        return Decimal(0)
    if not isinstance(model, str):
        raise UsageError(f"model must be a model name such as 'deepseek-flash', not {model!r}")
    cal = _pricing.DEFAULT_CALENDAR if holidays is None else holidays
    return _pricing.cost(model, usage, at, cur, cal)
