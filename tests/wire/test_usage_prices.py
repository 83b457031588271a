"""The one usage split (`_wire/usage.split_usage`) and the one price cache (`_wire/pricing.PriceBook`):
every tally (metrics record, logs row, conversation, batch, `cost()`) reads usage the same way and
prices it the same way. Pure logic: plain values and an injected wall clock."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepseek_kit._conversation.usage import ConversationUsage
from deepseek_kit._wire import pricing
from deepseek_kit._wire.holidays import HolidayCalendar
from deepseek_kit._wire.pricing import ModelPrice, PriceBook, charge
from deepseek_kit._wire.types import PromptTokensDetails, Usage
from deepseek_kit._wire.usage import NO_TOKENS, TokenSplit, split_usage

# Beijing Monday 2026-12-07: 10:00 is peak, 20:00 off-peak.
PEAK = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)
OFF = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
# 2026 covered (no warning), no holidays that matter here
NO_DAYS = HolidayCalendar(holidays=frozenset({date(2026, 1, 1)}), builtin=False)

DEEPSEEK = {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130,
            "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36,
            "completion_tokens_details": {"reasoning_tokens": 12}}
OPENAI = {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130,
          "prompt_tokens_details": {"cached_tokens": 64},
          "completion_tokens_details": {"reasoning_tokens": 12}}


def test_split_reads_deepseek_and_openai_shapes_alike():
    want = TokenSplit(100, 64, 36, 30, 12)
    assert split_usage(DEEPSEEK) == split_usage(OPENAI) == want
    plain = {k: v for k, v in DEEPSEEK.items() if "details" not in k}
    assert split_usage(Usage(**plain)) == (100, 64, 36, 30, 0)
    assert want.total == 130 and want.billable and not NO_TOKENS.billable
    assert split_usage(None) is NO_TOKENS and split_usage(want) is want


def test_split_fills_a_missing_half_and_reads_junk_as_zero():
    assert split_usage({"prompt_tokens": 10, "prompt_cache_hit_tokens": 4}) == (10, 4, 6, 0, 0)
    assert split_usage({"prompt_tokens": 10, "prompt_cache_miss_tokens": 7}) == (10, 0, 7, 0, 0)
    assert split_usage({"prompt_tokens": 10, "completion_tokens": 1}) == (10, 0, 10, 1, 0)  # all misses
    assert split_usage({"prompt_tokens": "ten", "completion_tokens": 2.0, "total_tokens": float("inf")}) == (
        0, 0, 0, 2, 0)
    assert split_usage({"prompt_tokens": -5, "completion_tokens": -1}) == NO_TOKENS  # never negative

    class LookAlike:
        prompt_tokens, completion_tokens, prompt_cache_hit_tokens, prompt_cache_miss_tokens = 9, 2, 3, 6

    assert split_usage(LookAlike()) == (9, 3, 6, 2, 0)


def test_cost_conversation_and_price_book_agree_on_openai_style_usage():
    """Cached tokens reported the OpenAI way are cache hits for every tally (cost() once billed
    them as misses while the metrics counted them as hits)."""
    book = PriceBook("CNY", NO_DAYS)
    at = PEAK.timestamp()
    want = charge(pricing.PRICES["CNY"]["deepseek-flash"], 64, 36, 30)
    assert pricing.cost("deepseek-flash", OPENAI, PEAK, holidays=NO_DAYS) == want
    assert book.cost("deepseek-flash", OPENAI, at) == want == book.cost("deepseek-flash", DEEPSEEK, at)
    conv = ConversationUsage()
    conv.add("deepseek-flash", Usage(prompt_tokens=100, completion_tokens=30, total_tokens=130,
                                     prompt_tokens_details=PromptTokensDetails(cached_tokens=64)), at=OFF)
    assert (conv.cache_hit_tokens, conv.cache_miss_tokens) == (64, 36)
    assert conv.cost == charge(pricing.PRICES["CNY"]["deepseek-flash"].at(False), 64, 36, 30)
    assert ConversationUsage.from_dict(conv.to_dict()) == conv and "_prices" not in conv.to_dict()


def test_price_book_peak_state_overrides_and_unknown_models():
    calls = []

    class CountingCalendar(HolidayCalendar):
        def is_day_off(self, day):
            calls.append(day)
            return super().is_day_off(day)

    book = PriceBook("usd", CountingCalendar(holidays=NO_DAYS.holidays, builtin=False))
    assert book.currency == "USD"
    t = PEAK.timestamp()
    assert book.is_peak(t) and book.is_peak(t + 59) and len(calls) == 1  # once per minute
    assert not book.is_peak(OFF.timestamp())
    flat = ModelPrice(Decimal(1), Decimal(2), Decimal(3))
    book = PriceBook("CNY", NO_DAYS, {"mine": (flat, flat.at(False))})
    assert book.charge("mine", TokenSplit(2_000_000, 1_000_000, 1_000_000, 1_000_000, 0), True) == 6
    assert book.charge("mine", TokenSplit(2_000_000, 1_000_000, 1_000_000, 1_000_000, 0), False) == 3
    one = TokenSplit(1, 0, 1, 1, 0)
    assert book.charge("llama", one, True) == 0 and book.charge(None, one, True) == 0
    off = OFF.timestamp()
    assert book.cost("deepseek-v4-flash", DEEPSEEK, off) == book.cost("deepseek-flash", DEEPSEEK, off)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**7), st.integers(0, 10**7), st.integers(0, 10**7), st.booleans(),
       st.sampled_from(["deepseek-flash", "deepseek-v4-pro"]), st.sampled_from(["CNY", "USD"]))
def test_price_book_bills_exactly_like_the_table(hit, miss, out, peak, model, currency):
    book = PriceBook(currency, NO_DAYS)
    price = pricing.PRICES[currency][model].at(peak)
    tokens = TokenSplit(hit + miss, hit, miss, out, 0)
    assert book.charge(model, tokens, peak) == charge(price, hit, miss, out)


@pytest.mark.parametrize("module", ["_steps.metrics.step", "_steps.logs", "_conversation.usage", "_batch.run",
                                    "_steps.cache.step", "server.emulator.state"])
def test_no_other_price_cache_or_usage_tally(module):
    import importlib
    import inspect

    source = inspect.getsource(importlib.import_module(f"deepseek_kit.{module}"))
    assert "prompt_cache_hit_tokens or" not in source and "prompt_tokens_details" not in source
    assert "_price_cache" not in source and "_pricing.is_peak(" not in source and "price_for(" not in source
