"""Metrics and cost against the real emulator: one record per call (non-stream, stream, errors,
timeouts, retries), cost from the DeepSeek price table at a pinned clock, the in-process summary,
hooks, and the Prometheus / OpenTelemetry exporters."""

from __future__ import annotations

import asyncio
import logging
import socket
import statistics
import sys
import uuid
from datetime import datetime
from decimal import Decimal

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepseek_kit import (
    AllEndpointsFailedError,
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    InsufficientBalanceError,
    RateLimitError,
    RetryPolicy,
    StreamError,
    StreamTimeoutError,
    Timeout,
    UsageError,
)
from deepseek_kit._steps.metrics.step import MetricsConfig, MetricsStep, RequestRecord
from deepseek_kit._steps.metrics.summary import Metrics, percentile
from deepseek_kit._wire import pricing as _pricing
from deepseek_kit._wire.pricing import ModelPrice, scaled_price
from deepseek_kit._wire.usage import split_usage as _tokens
from tests.helpers.servers import serve_app

MSGS = [{"role": "user", "content": "Tell me about the sea."}]
FAST = RetryPolicy(max_retries=3, initial_delay=0.01, max_delay=0.05)
BJ = _pricing.BEIJING
PEAK = datetime(2026, 11, 24, 10, 0, tzinfo=BJ)  # a Tuesday, 10:00 Beijing
LUNCH = datetime(2026, 11, 24, 13, 0, tzinfo=BJ)  # same day, between the peak windows
SATURDAY = datetime(2026, 11, 28, 10, 0, tzinfo=BJ)
HOLIDAY = datetime(2026, 10, 2, 10, 0, tzinfo=BJ)  # National Day week, a Friday


def fault(spec: str) -> dict[str, str]:
    return {"X-DSK-Emulate": f"{spec};key={uuid.uuid4().hex[:12]}"}


class Collect:
    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def __call__(self, record: RequestRecord) -> None:
        self.records.append(record)


def make(base_url, *, hooks=(), timeout=None, retry=FAST, **cfg):
    hook = Collect()
    step = MetricsStep(MetricsConfig(hooks=(hook, *hooks), **cfg))
    client = AsyncClient(api_key="sk-metrics-test-key", base_url=base_url, retry=retry, steps=[step],
                         timeout=timeout or Timeout(connect=2, first_token=10, idle=10, total=30),
                         prefix_completion=True)  # the emulator supports prefix completion: opt in
    return client, step, hook


async def read_stream(client, **kw):
    async with await client.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                                    **kw) as s:
        async for _ in s:
            pass
    return s.get_final_completion()


# -- records of successful calls -------------------------------------------------------------------


async def test_non_stream_record_matches_usage_and_price(emulator):
    at = PEAK.timestamp()
    client, _step, hook = make(emulator.base_url, clock=lambda: at)
    async with client:
        r = await client.chat.completions.create(model="deepseek-flash", messages=MSGS,
                                                 extra_headers=fault("tokens=300;reasoning_tokens=40"))
    [rec] = hook.records
    u = r.usage
    assert (rec.model, rec.path, rec.stream, rec.outcome, rec.status, rec.error, rec.attempts) == (
        "deepseek-flash", "/chat/completions", False, "ok", 200, None, 1)
    assert rec.prompt_tokens == u.prompt_tokens > 0
    assert rec.prompt_cache_hit_tokens == u.prompt_cache_hit_tokens
    assert rec.prompt_cache_miss_tokens == u.prompt_cache_miss_tokens
    assert rec.completion_tokens == u.completion_tokens == 340
    assert rec.reasoning_tokens == u.reasoning_tokens == 40
    assert rec.cost == _pricing.cost("deepseek-flash", u, PEAK) > 0
    assert rec.peak is True and rec.currency == "CNY" and rec.started_at == at
    assert 0 < rec.ttft <= rec.latency
    assert rec.output_tps == pytest.approx(340 / rec.latency)
    assert rec.trace_id is not None and not rec.cache_hit


async def test_stream_record_is_made_when_the_stream_ends(emulator):
    client, _step, hook = make(emulator.base_url, currency="USD", clock=lambda: LUNCH.timestamp())
    async with client:
        s = await client.chat.completions.create(model="deepseek-v4-pro", messages=MSGS, stream=True,
                                                 extra_headers=fault("tokens=50;reasoning_tokens=20"))
        assert hook.records == []  # nothing is known before the caller has read the stream
        async with s:
            async for _ in s:
                pass
        final = s.get_final_completion()
    [rec] = hook.records
    u = final.usage
    assert (rec.model, rec.stream, rec.outcome, rec.status, rec.error) == (
        "deepseek-v4-pro", True, "ok", 200, None)
    assert (rec.prompt_tokens, rec.completion_tokens, rec.reasoning_tokens) == (
        u.prompt_tokens, u.completion_tokens, 20)
    assert rec.prompt_cache_hit_tokens + rec.prompt_cache_miss_tokens == rec.prompt_tokens
    assert rec.cost == _pricing.cost("deepseek-v4-pro", u, LUNCH, "USD") > 0
    assert rec.peak is False and rec.currency == "USD"
    assert 0 < rec.ttft < rec.latency
    assert rec.output_tps == pytest.approx(u.completion_tokens / (rec.latency - rec.ttft))


@pytest.mark.parametrize("when", [PEAK, LUNCH])
async def test_cost_matches_what_the_emulator_charged(emulator_factory, when):
    emulator = emulator_factory(clock=when.timestamp)  # both clocks pinned: exact at any hour
    client, step, hook = make(emulator.base_url, clock=when.timestamp)
    async with client:
        await client.chat.completions.create(model="deepseek-flash", messages=MSGS,
                                             extra_headers=fault("tokens=5000"))
        await read_stream(client, extra_headers=fault("tokens=3000"))
    spent = emulator.state.balance("sk-metrics-test-key")
    spent = Decimal(100) - spent
    recorded = sum((r.cost for r in hook.records), Decimal(0))
    assert step.metrics.cost == recorded == spent > 0
    assert all(r.peak is (when == PEAK) for r in hook.records)


async def test_second_call_reports_deepseek_context_cache_hits(emulator):
    long = [{"role": "user", "content": "word " * 800}]
    client, step, hook = make(emulator.base_url)
    async with client:
        for _ in range(2):
            await client.chat.completions.create(model="deepseek-flash", messages=long)
    first, second = hook.records
    assert first.prompt_cache_hit_tokens == 0 and second.prompt_cache_hit_tokens > 0
    assert second.cost < first.cost  # hits are billed at the cache-hit price
    hit = step.metrics.snapshot()["prompt_cache_hit_rate"]
    assert hit == pytest.approx(second.prompt_cache_hit_tokens / (first.prompt_tokens + second.prompt_tokens))


@pytest.mark.parametrize(("when", "peak"), [(PEAK, True), (LUNCH, False), (SATURDAY, False),
                                            (HOLIDAY, False)])
async def test_peak_and_off_peak_prices_by_beijing_time(emulator, when, peak):
    client, _step, hook = make(emulator.base_url, clock=lambda: when.timestamp())
    async with client:
        r = await client.chat.completions.create(model="deepseek-flash", messages=MSGS,
                                                 extra_headers=fault("tokens=1000"))
    [rec] = hook.records
    assert rec.peak is peak
    full = _pricing.cost("deepseek-flash", r.usage, peak=True)
    assert rec.cost == (full if peak else full / 2)


async def test_price_overrides(emulator):
    mine = ModelPrice(Decimal("1"), Decimal("10"), Decimal("100"))
    flat = ModelPrice(Decimal("0"), Decimal("1"), Decimal("1"))
    client, _step, hook = make(emulator.base_url, clock=lambda: LUNCH.timestamp(),
                              prices={"deepseek-flash": mine, "deepseek-v4-pro": (flat, flat)})
    async with client:
        a = await client.chat.completions.create(model="deepseek-flash", messages=MSGS)
        b = await client.chat.completions.create(model="deepseek-v4-pro", messages=MSGS)
    ra, rb = hook.records
    u = a.usage
    assert ra.cost == (u.prompt_cache_hit_tokens * 1 + u.prompt_cache_miss_tokens * 10
                       + u.completion_tokens * 100) / Decimal(2_000_000)  # off-peak: half
    assert rb.cost == Decimal(b.usage.prompt_cache_miss_tokens + b.usage.completion_tokens) / 1_000_000


async def test_fim_and_models_calls_are_recorded(emulator):
    client, _step, hook = make(emulator.base_url)
    async with client:
        await client.beta.completions.create(model="deepseek-flash", prompt="def f(", suffix="return 1")
        await client.models.list()
    fim, models = hook.records
    assert fim.path == "/completions" and fim.model == "deepseek-flash" and fim.completion_tokens > 0
    assert fim.cost > 0
    assert (models.path, models.model, models.cost, models.prompt_tokens) == ("/models", None, 0, 0)


# -- failures, retries, timeouts -------------------------------------------------------------------


async def test_rate_limit_errors_are_counted_by_class_with_attempts(emulator):
    retry = RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.02, respect_retry_after=False)
    client, step, hook = make(emulator.base_url, retry=retry)
    async with client:
        with pytest.raises(RateLimitError):
            await client.chat.completions.create(model="deepseek-flash", messages=MSGS,
                                                 extra_headers=fault("status=429"))
        await client.chat.completions.create(model="deepseek-flash", messages=MSGS,
                                             extra_headers=fault("status=429;times=1"))
    failed, recovered = hook.records
    assert (failed.outcome, failed.status, failed.error) == ("error", 429, "RateLimitError")
    assert failed.attempts == 3
    assert failed.cost == 0 and failed.model == "deepseek-flash" and failed.trace_id
    assert (recovered.outcome, recovered.status, recovered.attempts) == ("ok", 200, 2)
    snap = step.metrics.snapshot()
    assert snap["errors_by_class"] == {"RateLimitError": 1}
    assert snap["error_rate"] == 0.5 and snap["error_rate_by_class"] == {"RateLimitError": 0.5}
    assert (snap["attempts"], snap["retries"]) == (5, 3)
    assert snap["latency_s"]["samples"] == 1  # only successful calls enter the latency percentiles


async def test_insufficient_balance_is_one_attempt(emulator_factory):
    emu = emulator_factory(balance={"sk-metrics-test-key": "0"})
    client, _step, hook = make(emu.base_url)
    async with client:
        with pytest.raises(InsufficientBalanceError):
            await client.chat.completions.create(model="deepseek-flash", messages=MSGS)
    [rec] = hook.records
    assert (rec.status, rec.error, rec.attempts) == (402, "InsufficientBalanceError", 1)


async def test_timeout_before_headers(emulator):
    client, _step, hook = make(emulator.base_url, retry=RetryPolicy(max_retries=1, initial_delay=0.01),
                              timeout=Timeout(connect=2, first_token=0.2, idle=5, total=30))
    async with client:
        with pytest.raises(APITimeoutError):
            await client.chat.completions.create(model="deepseek-flash", messages=MSGS,
                                                 extra_headers=fault("delay_headers=3"))
    [rec] = hook.records
    assert (rec.outcome, rec.error, rec.status, rec.attempts) == ("timeout", "APITimeoutError", None, 2)
    assert 0.2 <= rec.latency < 10 and rec.ttft is None


async def test_stream_idle_timeout_and_reset_after_the_first_event(emulator):
    client, step, hook = make(emulator.base_url, retry=RetryPolicy(max_retries=0),
                              timeout=Timeout(connect=2, first_token=5, idle=0.2, total=30))
    async with client:
        with pytest.raises(StreamTimeoutError):
            await read_stream(client, resume=False, extra_headers=fault("delay_chunks=2"))
        with pytest.raises(StreamError):
            await read_stream(client, resume=False, extra_headers=fault("reset_after=3;tokens=50"))
    timed_out, broken = hook.records
    assert (timed_out.outcome, timed_out.error, timed_out.status) == ("timeout", "StreamTimeoutError", 200)
    assert (broken.outcome, broken.error) == ("broken", "StreamError")
    assert broken.completion_tokens == 0 and broken.cost == 0  # no usage arrived
    assert broken.ttft is not None
    assert step.metrics.errors == {"StreamTimeoutError": 1, "StreamError": 1}


async def test_a_resumed_stream_is_one_record_per_piece_and_billed_once(emulator):
    at = PEAK.timestamp()
    client, step, hook = make(emulator.base_url, clock=lambda: at)
    async with client:
        final = await read_stream(client, extra_headers=fault("reset_after=5;times=1;tokens=60"))
    broken, rest = hook.records
    assert (broken.outcome, broken.error, broken.cost) == ("broken", "StreamError", 0)  # usage never came
    assert (rest.outcome, rest.stream) == ("ok", True)
    # the continuation's final chunk carries the usage of the whole answer (pieces summed)
    assert rest.completion_tokens == final.usage.completion_tokens
    assert step.metrics.cost == _pricing.cost("deepseek-flash", final.usage, PEAK) > 0


async def test_caller_leaving_a_stream_early_is_closed_not_an_error(emulator):
    client, step, hook = make(emulator.base_url)
    async with client, await client.chat.completions.create(model="deepseek-flash", messages=MSGS,
                                                    stream=True) as s:
        async for _ in s:
            break
    [rec] = hook.records
    assert (rec.outcome, rec.error) == ("closed", None)
    assert step.metrics.errors_total == 0


async def test_connection_refused_and_cancellation(emulator):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    client, _step, hook = make(dead, retry=RetryPolicy(max_retries=1, initial_delay=0.01))
    async with client:
        with pytest.raises(APIConnectionError):
            await client.chat.completions.create(model="deepseek-flash", messages=MSGS)
    [rec] = hook.records
    assert (rec.outcome, rec.error, rec.status, rec.attempts) == ("error", "APIConnectionError", None, 2)

    client, _step, hook = make(emulator.base_url)
    async with client:
        task = asyncio.ensure_future(client.chat.completions.create(
            model="deepseek-flash", messages=MSGS, extra_headers=fault("delay_headers=5")))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    [rec] = hook.records
    assert (rec.outcome, rec.error) == ("cancelled", "CancelledError")


# -- hooks, config, client cache -------------------------------------------------------------------


async def test_hooks_once_per_call_and_a_failing_hook_breaks_nothing(emulator, caplog):
    seen = []

    def bad(record):
        raise RuntimeError("hook bug")

    class Obj:
        def on_request(self, record):
            seen.append(record)

    client, step, hook = make(emulator.base_url, hooks=(bad, Obj()))
    caplog.set_level(logging.DEBUG, logger="deepseek_kit.metrics")
    async with client:
        r = await client.chat.completions.create(model="deepseek-flash", messages=MSGS)
        await read_stream(client)
        with pytest.raises(RateLimitError):
            await client.chat.completions.create(model="deepseek-flash", messages=MSGS, max_retries=0,
                                                 extra_headers=fault("status=429"))
    assert r.choices[0].message.content
    assert len(hook.records) == len(seen) == 3 and seen == hook.records
    assert step.hook_errors == 3
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1 and "hook bug" in caplog.text  # one traceback, then debug lines


async def test_disabled_is_a_pass_through(emulator):
    client, step, hook = make(emulator.base_url, enabled=False)
    async with client:
        await client.chat.completions.create(model="deepseek-flash", messages=MSGS)
    assert hook.records == [] and step.metrics.requests == 0


async def test_client_cache_hits_cost_nothing(emulator):
    from deepseek_kit._steps.cache.step import CachePolicy, CacheStep

    hook = Collect()
    step = MetricsStep(MetricsConfig(hooks=(hook,)))
    cache = CacheStep(CachePolicy(when="always"))
    async with AsyncClient(api_key="sk-x", base_url=emulator.base_url, steps=[step, cache]) as c:
        first = await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
        again = await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
        streamed = await read_stream(c)
    miss, hit, stream_hit = hook.records
    assert not miss.cache_hit and miss.cost > 0
    assert hit.cache_hit and hit.cost == 0 and hit.attempts == 0
    assert hit.completion_tokens == again.usage.completion_tokens == first.usage.completion_tokens
    assert stream_hit.cache_hit and stream_hit.stream and stream_hit.outcome == "ok" and stream_hit.cost == 0
    assert stream_hit.completion_tokens == streamed.usage.completion_tokens
    snap = step.metrics.snapshot()
    assert (snap["cache_hits"], snap["cache_hit_rate"], snap["retries"]) == (2, 2 / 3, 0)
    assert snap["tokens"]["completion"] == miss.completion_tokens and snap["cost"] == miss.cost
    assert snap["latency_s"]["samples"] == 1  # hits do not enter the API's latency percentiles


async def test_router_endpoint_names_are_recorded(emulator_factory):
    from deepseek_kit._steps.router import Endpoint

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    live = emulator_factory()
    hook = Collect()
    step = MetricsStep(MetricsConfig(hooks=(hook,)))
    eps = [Endpoint(dead, name="down", priority=0), Endpoint(live.base_url, name="backup", priority=1)]
    no_retry = RetryPolicy(max_retries=0)
    async with AsyncClient(api_key="sk-x", endpoints=eps, steps=[step], retry=no_retry) as c:
        await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
    [rec] = hook.records
    assert (rec.endpoint, rec.outcome) == ("backup", "ok")

    hook = Collect()
    step = MetricsStep(MetricsConfig(hooks=(hook,)))
    async with AsyncClient(api_key="sk-x", endpoints=[Endpoint(dead, name="down")], steps=[step],
                           retry=RetryPolicy(max_retries=0)) as c:
        with pytest.raises(AllEndpointsFailedError):
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
    [rec] = hook.records
    assert (rec.outcome, rec.error) == ("error", "AllEndpointsFailedError")
    assert (rec.endpoint, rec.attempts) == ("down", 1)


def test_config_validation():
    neg = ModelPrice(Decimal(-1), Decimal(1), Decimal(1))
    for bad in ({"window": 0}, {"reservoir": 0}, {"hooks": (42,)}, {"currency": "EUR"},
                {"prices": {"m": (1, 2)}}, {"prices": {"m": neg}}):
        with pytest.raises(UsageError):
            MetricsConfig(**bad)
    assert MetricsConfig.coerce(True) == MetricsConfig()
    assert MetricsConfig.coerce(False) is None and MetricsConfig.coerce(None) is None
    cfg = MetricsConfig(currency="usd", hooks=[print])
    assert MetricsConfig.coerce(cfg) is cfg and cfg.currency == "USD" and cfg.hooks == (print,)
    # a currency outside the table is fine when the user prices the models
    p = ModelPrice(Decimal(1), Decimal(1), Decimal(1))
    assert MetricsConfig(currency="EUR", prices={"m": p}).prices["m"] == (p, p.at(False))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**7), st.integers(0, 10**7), st.integers(0, 10**7),
       st.lists(st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False), min_size=3, max_size=3))
def test_scaled_prices_bill_exactly_like_the_table(hit, miss, out, custom):
    prices = [p.at(peak) for table in _pricing.PRICES.values() for p in table.values()
              for peak in (True, False)]
    prices.append(ModelPrice(*custom))
    for p in prices:
        a, b, c, e = scaled_price(p)
        assert Decimal(hit * a + miss * b + out * c).scaleb(e) == _pricing.charge(p, hit, miss, out)


def test_token_split_without_deepseek_fields():
    # OpenAI-style servers (vLLM, SGLang) report cached prompt tokens in prompt_tokens_details
    u = {"prompt_tokens": 100, "completion_tokens": 7,
         "prompt_tokens_details": {"cached_tokens": 64}, "completion_tokens_details": {"reasoning_tokens": 3}}
    assert _tokens(u) == (100, 64, 36, 7, 3)
    assert _tokens({"prompt_tokens": 10, "completion_tokens": 1}) == (10, 0, 10, 1, 0)
    assert _tokens(None) == (0, 0, 0, 0, 0)


# -- the summary -----------------------------------------------------------------------------------


def rec(**kw) -> RequestRecord:
    base = {"model": "deepseek-flash", "path": "/chat/completions", "stream": False, "outcome": "ok"}
    return RequestRecord(**{**base, **kw})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=2, max_size=300))
def test_percentiles_match_the_stdlib(values):
    data = sorted(values)
    cuts = statistics.quantiles(data, n=100, method="inclusive")
    for q in (50, 95, 99):
        assert percentile(data, q) == pytest.approx(cuts[q - 1], rel=1e-9, abs=1e-9)
    assert percentile(data, 0) == data[0] and percentile(data, 100) == data[-1]


@given(st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=1, max_size=50),
       st.floats(min_value=0, max_value=100), st.floats(min_value=0, max_value=100))
def test_percentiles_are_monotone_and_bounded(values, q1, q2):
    data = sorted(values)
    lo, hi = sorted((q1, q2))
    assert data[0] <= percentile(data, lo) <= percentile(data, hi) <= data[-1]


def test_summary_on_known_data():
    m = Metrics(reservoir=100)
    for i in range(1, 201):  # the reservoir keeps the latest 100: 101..200
        m.add(rec(latency=float(i), ttft=i / 10, output_tps=10.0, prompt_tokens=3,
                  prompt_cache_hit_tokens=1, prompt_cache_miss_tokens=2, completion_tokens=5,
                  reasoning_tokens=1, cost=Decimal("0.001")))
    m.add(rec(outcome="error", error="RateLimitError", status=429, attempts=5, latency=0.1))
    s = m.snapshot()
    assert s["latency_s"] == {"samples": 100, "p50": 150.5, "p95": pytest.approx(195.05),
                              "p99": pytest.approx(199.01), "max": 200.0}
    assert s["ttft_s"]["samples"] == 100 and s["ttft_s"]["p50"] == pytest.approx(15.05)
    assert s["tokens"] == {"prompt": 600, "prompt_cache_hit": 200, "prompt_cache_miss": 400,
                           "completion": 1000, "reasoning": 200, "total": 1600}
    assert s["cost"] == Decimal("0.200") and s["requests"] == 201 and s["retries"] == 4
    assert s["errors_by_class"] == {"RateLimitError": 1} and s["statuses"] == {429: 1}
    assert s["by_model"]["deepseek-flash"]["requests"] == 201
    assert m.prompt_cache_hit_rate == pytest.approx(1 / 3)
    text = str(m)
    assert "RateLimitError 1" in text and "latency" in text and "0.200 CNY" in text
    m.reset()
    assert m.snapshot()["requests"] == 0 and m.snapshot()["latency_s"]["p50"] is None


def test_qps_over_the_window():
    now = [1000.0]
    m = Metrics(window=10, clock=lambda: now[0])
    assert m.qps() == 0
    for i in range(50):  # 50 calls over 5 seconds
        now[0] = 1000.0 + i * 0.1
        m.add(rec())
    now[0] = 1005.0
    assert m.qps() == pytest.approx(50 / 5.0)
    now[0] = 1012.0  # the first ~2 seconds have left the 10 s window
    assert m.qps() == pytest.approx(30 / 10)
    now[0] = 1100.0
    assert m.qps() == 0


# -- exporters -------------------------------------------------------------------------------------


async def test_prometheus_exposition(emulator):
    from prometheus_client import CollectorRegistry
    from prometheus_client.parser import text_string_to_metric_families

    from deepseek_kit._steps.metrics.prometheus import PrometheusHook, exposition

    reg = CollectorRegistry()
    client, _step, hook = make(emulator.base_url, hooks=(PrometheusHook(reg), PrometheusHook(reg)),
                              clock=lambda: PEAK.timestamp())
    async with client:
        await client.chat.completions.create(model="deepseek-flash", messages=MSGS)
        await read_stream(client, extra_headers=fault("reasoning_tokens=9"))
        await client.chat.completions.create(model="deepseek-flash", messages=MSGS,
                                             extra_headers=fault("status=503;times=1"))
    samples = {}
    for fam in text_string_to_metric_families(exposition(reg).decode()):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def get(name, **labels):
        return samples[(name, tuple(sorted(labels.items())))]

    n = 2  # the hook was given twice: both feed the same (shared) collectors
    ok = get("deepseek_requests_total", model="deepseek-flash", endpoint="", outcome="ok", status="200",
             error="")
    assert ok == 3 * n
    recs = hook.records
    assert get("deepseek_tokens_total", model="deepseek-flash", kind="completion") == n * sum(
        r.completion_tokens for r in recs)
    assert get("deepseek_tokens_total", model="deepseek-flash", kind="prompt_cache_miss") == n * sum(
        r.prompt_cache_miss_tokens for r in recs)
    assert get("deepseek_cost_total", model="deepseek-flash", currency="CNY") == pytest.approx(
        n * float(sum(r.cost for r in recs)))
    assert get("deepseek_retries_total", model="deepseek-flash") == n
    assert get("deepseek_request_duration_seconds_count", model="deepseek-flash", endpoint="", stream="false",
               outcome="ok") == 2 * n
    assert get("deepseek_time_to_first_token_seconds_count", model="deepseek-flash", endpoint="",
               stream="true") == n
    assert get("deepseek_request_duration_seconds_sum", model="deepseek-flash", endpoint="", stream="true",
               outcome="ok") == pytest.approx(n * recs[1].latency)


async def test_prometheus_http_endpoints(emulator):
    from prometheus_client import CollectorRegistry

    from deepseek_kit._steps.metrics.prometheus import PrometheusHook, metrics_handler, serve_metrics

    reg = CollectorRegistry()
    client, _step, _hook = make(emulator.base_url, hooks=(PrometheusHook(reg, namespace="dsk"),))
    async with client:
        await client.chat.completions.create(model="deepseek-flash", messages=MSGS)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server, thread = serve_metrics(port, registry=reg)
    try:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
    finally:
        server.shutdown()
        server.server_close()  # shutdown() stops serving; the listening socket stays open until this
        thread.join(5)
    assert (
        'dsk_requests_total{endpoint="",error="",model="deepseek-flash",outcome="ok",status="200"} 1.0'
        in text
    )

    from aiohttp import web

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(reg))
    async with serve_app(app) as url, aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        assert "dsk_tokens_total" in await r.text()


def test_prometheus_missing_names_the_extra(monkeypatch):
    from deepseek_kit._steps.metrics.prometheus import PrometheusHook, exposition

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    for fn in (PrometheusHook, exposition, lambda: MetricsStep(MetricsConfig(prometheus=True))):
        with pytest.raises(UsageError, match=r"deepseek-kit\[metrics\]"):
            fn()


@pytest.fixture
def spans():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_otel_spans_with_genai_attributes(emulator, spans):
    from opentelemetry.trace import SpanKind, StatusCode

    from deepseek_kit._steps.metrics.otel import OTelHook

    provider, exporter = spans
    client, _step, hook = make(emulator.base_url, hooks=(OTelHook(provider),))
    async with client:
        await client.chat.completions.create(model="deepseek-flash", messages=MSGS,
                                             extra_headers=fault("reasoning_tokens=11"))
        await read_stream(client)
        with pytest.raises(RateLimitError):
            await client.chat.completions.create(model="deepseek-v4-pro", messages=MSGS, max_retries=0,
                                                 extra_headers=fault("status=429"))
    plain, streamed, failed = exporter.get_finished_spans()
    r0, r1, r2 = hook.records
    assert plain.name == "chat deepseek-flash" and plain.kind == SpanKind.CLIENT
    a = plain.attributes
    assert a["gen_ai.system"] == "deepseek" and a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "deepseek-flash" and a["gen_ai.request.stream"] is False
    assert a["gen_ai.usage.input_tokens"] == r0.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == r0.completion_tokens
    assert a["gen_ai.usage.reasoning.output_tokens"] == 11
    assert a["gen_ai.usage.cache_read.input_tokens"] == r0.prompt_cache_hit_tokens
    assert a["deepseek.cost"] == pytest.approx(float(r0.cost)) and a["http.response.status_code"] == 200
    assert plain.start_time == int(r0.started_at * 1e9)
    assert plain.end_time - plain.start_time == int(r0.latency * 1e9)
    assert streamed.attributes["gen_ai.request.stream"] is True
    assert [e.name for e in streamed.events] == ["gen_ai.first_token"]
    assert streamed.attributes["gen_ai.response.time_to_first_chunk"] == r1.ttft
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["error.type"] == "RateLimitError"
    assert failed.attributes["http.response.status_code"] == 429 and r2.error == "RateLimitError"


async def test_otel_is_a_no_op_without_a_provider_or_package(emulator, monkeypatch):
    from deepseek_kit._steps.metrics.otel import OTelHook

    hook = OTelHook()  # the global provider is the API's default proxy: nothing is configured
    assert hook._get_tracer() is None
    hook(rec())
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    client, step, records = make(emulator.base_url, otel=True)
    async with client:
        await client.chat.completions.create(model="deepseek-flash", messages=MSGS)
    assert len(records.records) == 1 and step.hook_errors == 0


def test_sync_client_records_on_its_loop_thread_and_reads_anywhere(emulator):
    from deepseek_kit import Client

    hook = Collect()
    step = MetricsStep(MetricsConfig(hooks=(hook,)))
    with Client(api_key="sk-x", base_url=emulator.base_url, steps=[step]) as c:
        c.chat.completions.create(model="deepseek-flash", messages=MSGS)
        with c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True) as s:
            for _ in s:
                pass
    snap = step.metrics.snapshot()
    assert snap["requests"] == 2 and snap["ok"] == 2 and snap["cost"] == sum(r.cost for r in hook.records) > 0
    assert [r.stream for r in hook.records] == [False, True]


# -- failover is visible (docs/routing-and-limits.md#seeing-it)
# -----------------------------------------------------------


async def test_failover_shows_in_records_summary_prometheus_and_health(emulator_factory):
    from prometheus_client import CollectorRegistry
    from prometheus_client.parser import text_string_to_metric_families

    from deepseek_kit import (
        BreakerPolicy,
        Endpoint,
        EndpointHealth,
        PrometheusHook,
        metrics_handler,
        serve_metrics,
    )
    from deepseek_kit._steps.metrics.prometheus import exposition

    assert callable(metrics_handler) and callable(serve_metrics)  # public names
    a = emulator_factory(faults="status=503")  # answers every call with 503
    b = emulator_factory()
    reg = CollectorRegistry()
    hook = Collect()
    client = AsyncClient(
        endpoints=[Endpoint(a.base_url, name="a", api_key="sk-a", breaker=BreakerPolicy(failures=2)),
                   Endpoint(b.base_url, name="b", api_key="sk-b", priority=1)],
        retry=FAST, timeout=Timeout(connect=2, first_token=10, idle=10, total=30),
        metrics=MetricsConfig(hooks=(hook, PrometheusHook(reg, namespace="fo"))))
    async with client:
        for _ in range(3):
            await client.chat.completions.create(model="deepseek-flash", messages=MSGS)
        health = client.endpoints()
        assert all(isinstance(h, EndpointHealth) for h in health)
        ha, hb = health
        got = (ha.name, ha.state, ha.consecutive_failures, ha.requests, ha.failures)
        assert got == ("a", "open", 2, 2, 2)
        assert ha.reopens_in is not None and 0 < ha.reopens_in <= 30
        assert (hb.name, hb.state, hb.in_flight, hb.requests, hb.failures) == ("b", "closed", 0, 3, 0)
        assert hb.p95_ttft is not None and hb.ewma_ttft is not None

        # records: who answered and the route taken
        r1, _r2, r3 = hook.records
        assert r1.endpoint == "b" and r1.route == (("a", 1, "ServiceUnavailableError"), ("b", 1, "ok"))
        assert r1.failovers == 1 and r1.attempts == 2 and r1.retries == 0
        assert client.metrics.snapshot()["retries"] == 0  # a failover is not a retry
        assert r3.route == (("a", 0, "breaker_open"), ("b", 1, "ok")) and r3.failovers == 1

        # the summary: attempts per endpoint
        snap = client.metrics.snapshot()
        assert snap["failovers"] == 3
        assert snap["by_endpoint"]["a"] == {"tries": 3, "attempts": 2, "ok": 0, "errors": 2, "failovers": 3,
                                            "hedge_lost": 0, "breaker_open": 1}
        assert snap["by_endpoint"]["b"]["attempts"] == 3 and snap["by_endpoint"]["b"]["ok"] == 3
        assert "a: 2 attempts in 3 tries" in str(client.metrics)

        # Prometheus: the endpoint label, the failover counter and the breaker gauge
        samples = {}
        for fam in text_string_to_metric_families(exposition(reg).decode()):
            for s in fam.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

        def get(name, **labels):
            return samples.get((name, tuple(sorted(labels.items()))))

        assert get("fo_requests_total", model="deepseek-flash", endpoint="b", outcome="ok", status="200",
                   error="") == 3
        assert get("fo_failovers_total", endpoint="a") == 3
        assert get("fo_endpoint_attempts_total", endpoint="a", result="ServiceUnavailableError") == 2
        assert get("fo_endpoint_attempts_total", endpoint="a", result="breaker_open") == 1
        assert get("fo_endpoint_attempts_total", endpoint="b", result="ok") == 3
        assert get("fo_endpoint_breaker_state", endpoint="a", state="open") == 1
        assert get("fo_endpoint_breaker_state", endpoint="a", state="closed") == 0
        assert get("fo_endpoint_breaker_state", endpoint="b", state="closed") == 1
        assert get("fo_endpoint_in_flight", endpoint="b") == 0


async def test_all_endpoints_failing_is_one_record_with_the_whole_route(emulator_factory):
    from deepseek_kit import AllEndpointsFailedError, Endpoint

    a, b = emulator_factory(faults="status=503"), emulator_factory(faults="status=500")
    hook = Collect()
    client = AsyncClient(endpoints=[Endpoint(a.base_url, name="a", api_key="k"),
                                    Endpoint(b.base_url, name="b", api_key="k", priority=1)],
                         retry=RetryPolicy(max_retries=1, initial_delay=0.01, max_delay=0.02),
                         metrics=MetricsConfig(hooks=(hook,)))
    async with client:
        with pytest.raises(AllEndpointsFailedError):
            await client.chat.completions.create(model="deepseek-flash", messages=MSGS)
    (r,) = hook.records
    assert r.outcome == "error" and r.error == "AllEndpointsFailedError" and r.endpoint == "b"
    assert r.route == (("a", 1, "ServiceUnavailableError"), ("b", 2, "InternalServerError"))
    assert r.attempts == 3 and r.failovers == 1 and r.retries == 1  # one retry on b, one failover
