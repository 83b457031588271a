"""The admission's per-request pricing (worst-case holds, settled costs) gives exactly the Decimal the
library's reference arithmetic gives (`pricing.charge` over `pricing.price_for`, `pricing.cost`):
same value, digits and exponent, at any time (peak or off-peak), for every priced model, unknown
models and currencies, and token counts up to beyond Decimal's precision."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from deepseek_kit._wire import pricing
from deepseek_kit.server.gateway.admission import TOKENS_PER_BYTE, Admission, worst_case
from deepseek_kit.server.gateway.config import parse_gateway_config

MODELS = [*sorted(pricing._ALIASES), "gpt-4o", ""]
CURRENCIES = ["CNY", "USD", "cny", "EUR"]
# 2026-07 to the end of 2026 (Beijing): before and after peak billing started, weekdays, weekends,
# holidays (the built-in calendar covers 2026)
instants = st.integers(1_782_864_000, 1_798_729_199).map(lambda s: datetime.fromtimestamp(s, timezone.utc))
tokens = st.one_of(st.integers(0, 2_000_000), st.integers(0, 10**30), st.integers(-5, 5))


def same(a: Decimal, b: Decimal) -> bool:
    return a == b and a.as_tuple() == b.as_tuple() and str(a) == str(b)


def reference_worst(model: str, body_len: int, max_tokens: int | None, at: datetime,
                    currency: str) -> Decimal:
    price = pricing.price_for(model, at, currency)
    if price is None:
        return Decimal(0)
    out = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 32_768
    return pricing.charge(price, 0, math.ceil(body_len * TOKENS_PER_BYTE), out)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(MODELS), st.integers(0, 10**7), st.one_of(st.none(), tokens), instants,
       st.sampled_from(CURRENCIES), st.booleans())
def test_worst_case_is_the_reference_charge(model: str, body_len: int, max_tokens: int | None,
                                            at: datetime, currency: str, naive: bool) -> None:
    when = at.replace(tzinfo=None) if naive else at.astimezone(timezone(timedelta(hours=8)))
    assert same(worst_case(model, body_len, max_tokens, when, currency),
                reference_worst(model, body_len, max_tokens, when, currency))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(MODELS), tokens, st.one_of(st.none(), tokens), st.one_of(st.none(), tokens),
       tokens, instants, st.sampled_from(["CNY", "USD"]))
def test_settled_cost_is_pricing_cost(model: str, prompt: int, hit: int | None, miss: int | None,
                                      completion: int, at: datetime, currency: str) -> None:
    config = parse_gateway_config(
        f'[gateway]\ncurrency = "{currency}"\nstate = "sqlite:///:memory:"\n'
        '[[upstream]]\nname = "u"\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "K"\n',
        env={"K": "sk-test"})
    adm = Admission(config, clock=at.timestamp)
    usage: dict[str, object] = {"prompt_tokens": prompt, "completion_tokens": completion}
    if hit is not None:
        usage["prompt_cache_hit_tokens"] = hit
    if miss is not None:
        usage["prompt_cache_miss_tokens"] = miss
    got = adm.cost(model, usage, None)
    assert got is not None and same(got, pricing.cost(model, usage, at, currency))


def test_examples_to_the_digit() -> None:
    # off-peak (a Saturday) and peak (a Thursday 10:00 Beijing) prices of deepseek-flash in CNY
    sat = datetime(2026, 12, 5, 3, 0, tzinfo=timezone.utc)
    thu = datetime(2026, 12, 3, 2, 0, tzinfo=timezone.utc)
    assert str(worst_case("deepseek-flash", 1000, 100, sat, "CNY")) == str(reference_worst(
        "deepseek-flash", 1000, 100, sat, "CNY"))
    assert worst_case("deepseek-flash", 1000, 100, thu, "CNY") == 2 * worst_case(
        "deepseek-flash", 1000, 100, sat, "CNY")
    assert worst_case("no-such-model", 1000, 100, thu, "CNY") == 0
