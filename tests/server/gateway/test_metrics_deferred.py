"""The gateway's metrics defer their updates to the next collection: whatever was observed, and
however scrapes interleave, /metrics shows what updating prometheus_client on every request shows
(the same series, counts and buckets; sums equal up to float rounding)."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram

from deepseek_kit.server.gateway.metrics import GatewayMetrics
from deepseek_kit.server.gateway.relay import Call


class _NoRouter:
    def health(self) -> list[Any]:
        return []


def _reference(calls: list[tuple[Call, float, Decimal | None]]) -> CollectorRegistry:
    """Every update applied at once, with prometheus_client's own calls."""
    r = CollectorRegistry(auto_describe=False)
    ns = "dsk_gateway"
    requests = Counter(f"{ns}_requests", "r", ["key", "model", "upstream", "status"], registry=r)
    latency = Histogram(f"{ns}_request_seconds", "l", ["key", "model", "upstream"], registry=r)
    ttft = Histogram(f"{ns}_ttft_seconds", "t", ["key", "model", "upstream"], registry=r)
    tokens = Counter(f"{ns}_tokens", "t", ["key", "model", "upstream", "kind"], registry=r)
    cost_c = Counter(f"{ns}_cost", "c", ["key", "model", "upstream", "currency"], registry=r)
    chunks = Counter(f"{ns}_stream_chunks", "c", ["upstream"], registry=r)
    for call, seconds, cost in calls:
        k, m, u = call.key_id, call.model, call.upstream
        requests.labels(k, m, u, str(call.status)).inc()
        latency.labels(k, m, u).observe(seconds)
        if call.ttft is not None:
            ttft.labels(k, m, u).observe(call.ttft)
        if call.chunks:
            chunks.labels(u).inc(call.chunks)
        usage = call.usage or {}
        for kind in ("prompt_cache_hit", "prompt_cache_miss", "completion"):
            n = usage.get(f"{kind}_tokens")
            if isinstance(n, int) and n > 0:
                tokens.labels(k, m, u, kind).inc(n)
        details = usage.get("completion_tokens_details")
        n = details.get("reasoning_tokens") if isinstance(details, dict) else None
        if isinstance(n, int) and n > 0:
            tokens.labels(k, m, u, "reasoning").inc(n)
        if cost:
            cost_c.labels(k, m, u, "CNY").inc(float(cost))
    return r


def _samples(registry: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in registry.collect() for s in metric.samples
            if s.name.startswith(("dsk_gateway_requests", "dsk_gateway_request_seconds", "dsk_gateway_ttft",
                                  "dsk_gateway_tokens", "dsk_gateway_cost", "dsk_gateway_stream_chunks"))
            and not s.name.endswith("_created")}


# bucket bounds themselves, values between them, 0, and beyond the last finite bound
seconds = st.one_of(st.sampled_from([0.0, 0.005, 0.01, 0.025, 0.1, 1.0, 2.5, 10.0, 11.0, 1e6]),
                    st.floats(0, 20, allow_nan=False))
calls = st.tuples(
    st.sampled_from(["key_a", "key_b", "-"]), st.sampled_from(["deepseek-flash", "deepseek-v4-pro"]),
    st.sampled_from([200, 429, 500]), st.one_of(st.none(), seconds), st.integers(0, 3),
    st.one_of(st.none(), st.fixed_dictionaries({
        "prompt_cache_hit_tokens": st.integers(0, 50), "prompt_cache_miss_tokens": st.integers(0, 50),
        "completion_tokens": st.integers(0, 50),
        "completion_tokens_details": st.fixed_dictionaries({"reasoning_tokens": st.integers(0, 5)})})),
    seconds, st.one_of(st.none(), st.decimals(0, 1, places=6)), st.booleans())


@settings(max_examples=150, deadline=None)
@given(st.lists(calls, max_size=40))
def test_deferred_metrics_match_direct_updates(items: list[Any]) -> None:
    metrics = GatewayMetrics(_NoRouter(), "CNY")
    done: list[tuple[Call, float, Decimal | None]] = []
    for key, model, status, ttft, chunks, usage, secs, cost, scrape in items:
        call = Call(model, bool(chunks), 0.0, key_id=key, upstream="up", status=status, usage=usage,
                    ttft=ttft, chunks=chunks)
        metrics.observe(call, secs, cost)
        done.append((call, secs, cost))
        if scrape:  # a scrape between requests sees every request before it
            got, want = _samples(metrics.registry), _samples(_reference(done))
            assert got.keys() == want.keys()
            assert all(math.isclose(got[k], want[k], rel_tol=1e-12, abs_tol=1e-12) for k in want)
    got, want = _samples(metrics.registry), _samples(_reference(done))
    assert got.keys() == want.keys()
    assert all(math.isclose(got[k], want[k], rel_tol=1e-12, abs_tol=1e-12) for k in want)
    assert b"dsk_gateway_requests_total" in metrics.exposition() or not done
