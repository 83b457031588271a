"""Prefix-cache simulation, balance and billing, 402, concurrency 429 - and the price table."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from decimal import Decimal

import aiohttp
import pytest

from deepseek_kit._wire import pricing as _pricing
from deepseek_kit._wire.types import Usage

KEY = "sk-billing-test"
LONG = " ".join(f"word{i} is here" for i in range(150))  # several hundred tokens


def auth(key=KEY, **extra):
    return {"Authorization": f"Bearer {key}", **extra}


async def chat(url, messages, key=KEY, headers=None, **extra):
    body = {"model": "deepseek-flash", "messages": messages, "thinking": {"type": "disabled"}, **extra}
    async with aiohttp.ClientSession() as s, \
            s.post(url + "/chat/completions", json=body, headers={**auth(key), **(headers or {})}) as r:
        return r.status, json.loads(await r.read())


async def usage(url, messages, **kw):
    status, body = await chat(url, messages, **kw)
    assert status == 200, body
    return body["usage"], body


# -- prefix cache ----------------------------------------------------------------------------------


async def test_second_identical_request_hits_in_128_units(emulator):
    msgs = [{"role": "user", "content": LONG}]
    first, _ = await usage(emulator.base_url, msgs)
    assert first["prompt_tokens"] > 300
    assert first["prompt_cache_hit_tokens"] == 0
    second, _ = await usage(emulator.base_url, msgs)
    hit = second["prompt_cache_hit_tokens"]
    assert hit == (second["prompt_tokens"] // 128) * 128 and hit > 0
    assert second["prompt_cache_miss_tokens"] == second["prompt_tokens"] - hit
    assert second["prompt_tokens_details"] == {"cached_tokens": hit}


async def test_short_prompts_never_hit(emulator):
    msgs = [{"role": "user", "content": "short"}]
    for _ in range(3):
        u, _ = await usage(emulator.base_url, msgs)
        assert u["prompt_cache_hit_tokens"] == 0


async def test_cache_isolated_per_key_and_user_id(emulator):
    msgs = [{"role": "user", "content": LONG}]
    await usage(emulator.base_url, msgs, user_id="alice")
    assert (await usage(emulator.base_url, msgs, user_id="bob"))[0]["prompt_cache_hit_tokens"] == 0
    assert (await usage(emulator.base_url, msgs, key="sk-other", user_id="alice"))[0][
        "prompt_cache_hit_tokens"
    ] == 0
    assert (await usage(emulator.base_url, msgs, user_id="alice"))[0]["prompt_cache_hit_tokens"] > 0


async def test_common_prefix_hits(emulator):
    await usage(emulator.base_url, [{"role": "user", "content": LONG + " and then the first question"}])
    u, _ = await usage(emulator.base_url, [{"role": "user", "content": LONG + " but another thing entirely"}])
    hit = u["prompt_cache_hit_tokens"]
    assert hit > 0 and hit % 128 == 0 and hit < u["prompt_tokens"]


async def test_next_turn_hits_through_the_previous_answer(emulator):
    msgs = [{"role": "user", "content": LONG}]
    first, body = await usage(emulator.base_url, msgs, headers={"X-DSK-Emulate": "tokens=300"})
    answer = body["choices"][0]["message"]
    msgs += [{"role": "assistant", "content": answer["content"]}, {"role": "user", "content": "More please."}]
    second, _ = await usage(emulator.base_url, msgs)
    hit = second["prompt_cache_hit_tokens"]
    assert hit % 128 == 0
    # the answer was persisted too (docs/deepseek-api-notes.md#context-caching)
    assert hit > (first["prompt_tokens"] // 128) * 128
    assert hit <= first["prompt_tokens"] + first["completion_tokens"] + 2


async def test_changed_tools_invalidate_the_prefix(emulator):
    tool = {"type": "function", "function": {"name": "a", "description": LONG}}
    msgs = [{"role": "user", "content": LONG}]
    await usage(emulator.base_url, msgs, tools=[tool], tool_choice="none")
    tool2 = {"type": "function", "function": {"name": "b", "description": LONG}}
    u, _ = await usage(emulator.base_url, msgs, tools=[tool2], tool_choice="none")
    assert u["prompt_cache_hit_tokens"] == 0


async def test_cache_simulation_can_be_disabled(emulator_factory):
    emu = emulator_factory(cache_simulation=False)
    msgs = [{"role": "user", "content": LONG}]
    await usage(emu.base_url, msgs)
    assert (await usage(emu.base_url, msgs))[0]["prompt_cache_hit_tokens"] == 0


# -- balance ---------------------------------------------------------------------------------------------


# Billing follows Beijing peak hours (docs/deepseek-api-notes.md#pricing-and-off-peak-hours): the emulator's
# clock is pinned (EmulatorConfig.clock) so that the bill is exact at any hour, and both states are checked.
PEAK_AT = datetime(2026, 11, 24, 10, 0, tzinfo=_pricing.BEIJING)      # a Tuesday, 10:00 Beijing
OFF_PEAK_AT = datetime(2026, 11, 24, 13, 0, tzinfo=_pricing.BEIJING)  # same day, between the windows


@pytest.mark.parametrize("when", [PEAK_AT, OFF_PEAK_AT])
async def test_balance_decrements_granted_first(emulator_factory, when):
    emulator = emulator_factory(clock=when.timestamp)
    u, _ = await usage(emulator.base_url, [{"role": "user", "content": "hi"}],
                       headers={"X-DSK-Emulate": "tokens=60000"})
    acct = emulator.state.accounts[KEY]
    spent = Decimal("100") - acct.total
    assert spent == _pricing.cost("deepseek-flash", u, when) > 0
    assert spent == _pricing.cost("deepseek-flash", u, peak=True) / (1 if when == PEAK_AT else 2)
    assert acct.topped_up == Decimal("90.00") and acct.granted == Decimal("10.00") - spent
    async with aiohttp.ClientSession() as s, s.get(emulator.base_url + "/user/balance", headers=auth()) as r:
        info = json.loads(await r.read())["balance_infos"][0]
    assert info["total_balance"] == str((Decimal(100) - spent).quantize(Decimal("0.01")))
    assert info["topped_up_balance"] == "90.00"


async def test_topped_up_used_after_granted(emulator_factory):
    emu = emulator_factory(default_granted=Decimal("0.01"), default_topped_up=Decimal("5"))
    await usage(emu.base_url, [{"role": "user", "content": "hi"}], headers={"X-DSK-Emulate": "tokens=60000"})
    acct = emu.state.accounts[KEY]
    assert acct.granted == 0 and Decimal("4") < acct.topped_up < Decimal("5")


async def test_402_when_balance_is_exhausted(emulator_factory):
    emu = emulator_factory(balance={"sk-poor": "0", "sk-little": "0.05"})
    status, body = await chat(emu.base_url, [{"role": "user", "content": "hi"}], key="sk-poor")
    assert status == 402
    assert body["error"] == {"message": "Insufficient Balance", "type": "unknown_error", "param": None,
                             "code": "invalid_request_error"}
    # spend below zero with one big answer; the next request is refused
    status, _ = await chat(emu.base_url, [{"role": "user", "content": "hi"}], key="sk-little",
                           headers={"X-DSK-Emulate": "tokens=60000"})
    assert status == 200
    assert emu.state.balance("sk-little") <= 0
    status, _ = await chat(emu.base_url, [{"role": "user", "content": "hi"}], key="sk-little")
    assert status == 402
    async with aiohttp.ClientSession() as s, s.get(emu.base_url + "/models", headers=auth("sk-poor")) as r:
        assert r.status == 200  # listing models does not need balance


@pytest.mark.parametrize("when", [PEAK_AT, OFF_PEAK_AT])
async def test_usd_billing(emulator_factory, when):
    emu = emulator_factory(currency="USD", clock=when.timestamp)
    u, _ = await usage(
        emu.base_url, [{"role": "user", "content": "hi"}], headers={"X-DSK-Emulate": "tokens=60000"}
    )
    spent = Decimal("100") - emu.state.balance(KEY)
    assert spent == _pricing.cost("deepseek-flash", u, when, "USD") > 0


# -- concurrency -----------------------------------------------------------------------------------------


async def test_concurrency_limit_429_per_account_and_model(emulator_factory):
    emu = emulator_factory(concurrency_limits={"deepseek-flash": 2, "deepseek-v4-pro": 1})
    url = emu.base_url + "/chat/completions"
    body = {"model": "deepseek-flash", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with aiohttp.ClientSession() as s:
        held = [await s.post(url, json=body, headers=auth(**{"X-DSK-Emulate": "queue=30;keepalive=0.05"}))
                for _ in range(2)]
        assert all(r.status == 200 for r in held)
        async with s.post(url, json=body, headers=auth()) as r:
            assert r.status == 429
            assert json.loads(await r.read())["error"]["message"] == "Rate Limit Reached"
            assert "Retry-After" not in r.headers
        async with s.post(url, json=body, headers=auth("sk-someone-else")) as r:
            assert r.status == 200  # another account
        async with s.post(url, json={**body, "model": "deepseek-v4-pro"}, headers=auth()) as r:
            assert r.status == 200  # another model
        async with s.post(url, json={**body, "model": "deepseek-v4-flash"}, headers=auth()) as r:
            assert r.status == 429  # an alias of the same serving model
        for r in held:
            r.close()
        for _ in range(400):
            if emu.state.in_flight == 0:
                break
            await asyncio.sleep(0.025)
        async with s.post(url, json=body, headers=auth()) as r:
            assert r.status == 200
    assert emu.state.max_in_flight >= 3


# -- the price table ---------------------------------------------------------------------------------------


BJ = _pricing.BEIJING


@pytest.mark.parametrize(("when", "peak"), [
    (datetime(2026, 11, 16, 9, 0, tzinfo=BJ), True),     # Monday morning
    (datetime(2026, 11, 16, 11, 59, tzinfo=BJ), True),
    (datetime(2026, 11, 16, 12, 0, tzinfo=BJ), False),   # lunch
    (datetime(2026, 11, 16, 14, 0, tzinfo=BJ), True),
    (datetime(2026, 11, 16, 18, 0, tzinfo=BJ), False),
    (datetime(2026, 11, 16, 8, 59, tzinfo=BJ), False),
    (datetime(2026, 11, 21, 10, 0, tzinfo=BJ), False),   # Saturday
    (datetime(2026, 10, 1, 10, 0, tzinfo=BJ), False),    # National Day (a Thursday)
    (datetime(2026, 11, 16, 2, 0, tzinfo=timezone.utc), True),  # = 10:00 Beijing
    (datetime(2026, 11, 16, 2, 0), True),                # naive = UTC
    (datetime(2026, 8, 14, 10, 0, tzinfo=BJ), False),    # before peak billing existed
])
def test_is_peak(when, peak):
    assert _pricing.is_peak(when) is peak


def test_cost_table():
    peak = datetime(2026, 11, 16, 10, 0, tzinfo=BJ)
    off = datetime(2026, 11, 16, 20, 0, tzinfo=BJ)
    u = {"prompt_tokens": 2_000_000, "prompt_cache_hit_tokens": 1_000_000,
         "prompt_cache_miss_tokens": 1_000_000, "completion_tokens": 1_000_000}
    assert _pricing.cost("deepseek-flash", u, peak) == Decimal("10.04")
    assert _pricing.cost("deepseek-flash", u, off) == Decimal("5.02")
    assert _pricing.cost("deepseek-v4-flash", u, peak) == Decimal("10.04")
    assert _pricing.cost("deepseek-v4-flash-vision-exp", u, off, "usd") == Decimal("0.753")
    assert _pricing.cost("deepseek-v4-pro", u, peak) == Decimal("36.30")
    assert _pricing.cost("deepseek-v4-pro", u, peak, "USD") == Decimal("5.324")
    assert _pricing.cost("deepseek-v4-pro", u, off, "USD") == Decimal("2.662")
    assert _pricing.cost("my-vllm-model", u, peak) == 0
    struct = Usage(prompt_tokens=1_000_000, completion_tokens=0)  # no hit/miss split: all misses
    assert _pricing.cost("deepseek-flash", struct, peak) == Decimal("2")
    assert _pricing.price_for("deepseek-chat", peak) is None
    assert _pricing.canonical_model("deepseek-v4-flash") == "deepseek-flash"
