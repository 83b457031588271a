"""`deepseek_kit.cost(usage, model, at)`: the public price of one request, peak and off-peak."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from deepseek_kit import Usage, UsageError, cost

PEAK = datetime(2026, 12, 3, 3, 0, tzinfo=timezone.utc)      # Thursday 11:00 in Beijing
OFF_PEAK = datetime(2026, 12, 5, 3, 0, tzinfo=timezone.utc)  # Saturday
MILLION_MISSES = {"prompt_tokens": 1_000_000, "completion_tokens": 0,
                  "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": 1_000_000}


def test_peak_hours_cost_twice_off_peak_in_both_currencies():
    assert cost(MILLION_MISSES, "deepseek-flash", PEAK) == Decimal("2")
    assert cost(MILLION_MISSES, "deepseek-flash", OFF_PEAK) == Decimal("1")
    usd_peak = cost(MILLION_MISSES, "deepseek-v4-pro", PEAK, currency="USD")
    assert usd_peak == 2 * cost(MILLION_MISSES, "deepseek-v4-pro", OFF_PEAK, currency="usd") > 0


def test_a_usage_struct_a_naive_time_and_edge_cases():
    u = Usage(prompt_tokens=1000, completion_tokens=500, total_tokens=1500, prompt_cache_hit_tokens=200,
              prompt_cache_miss_tokens=800)
    assert cost(u, "deepseek-flash", PEAK.replace(tzinfo=None)) == cost(u, "deepseek-flash", PEAK) > 0
    assert cost(None, "deepseek-flash") == 0  # an answer without usage
    assert cost(u, "my-private-model", PEAK) == 0  # no DeepSeek price
    assert isinstance(cost(u, "deepseek-flash"), Decimal)  # at=None: now
    with pytest.raises(UsageError, match="currency must be one of CNY, USD"):
        cost(u, "deepseek-flash", PEAK, currency="EUR")
