"""Prometheus metrics and the structured access log of the gateway.

Metrics live in the app's own registry (served at `/metrics`), labelled by key, model and upstream.
The key label is the virtual key's id (or "-" when auth is off), never the key itself. Upstream
breaker state and in-flight calls are read from the router at scrape time. The access log is one
JSON line per request on the `deepseek_kit.gateway.access` logger; it holds no key, no body and no
header value besides the trace id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .accesslog import AccessLogHandler
from .relay import Call

__all__ = ["ACCESS_LOG", "GatewayMetrics"]

ACCESS_LOG = logging.getLogger("deepseek_kit.gateway.access")
_STATES = ("closed", "open", "half_open")
_NS = "dsk_gateway"


class _Upstreams(Collector):
    def __init__(self, router: Any) -> None:
        self.router = router

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        state = GaugeMetricFamily(f"{_NS}_upstream_breaker_state",
                                  "Circuit breaker state per upstream (1 = current)",
                                  labels=["upstream", "state"])
        up = GaugeMetricFamily(f"{_NS}_upstream_up", "1 when the upstream's breaker lets calls through",
                               labels=["upstream"])
        inflight = GaugeMetricFamily(f"{_NS}_upstream_in_flight", "Calls sent to the upstream, not complete",
                                     labels=["upstream"])
        for h in self.router.health():
            for st in _STATES:
                state.add_metric([h.name, st], 1.0 if h.state == st else 0.0)
            up.add_metric([h.name], 0.0 if h.state == "open" else 1.0)
            inflight.add_metric([h.name], float(h.in_flight))
        yield state
        yield up
        yield inflight


class GatewayMetrics:
    def __init__(self, router: Any, currency: str) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.currency = currency
        r = self.registry
        self.requests = Counter(f"{_NS}_requests", "Requests answered",
                                ["key", "model", "upstream", "status"], registry=r)
        self.latency = Histogram(f"{_NS}_request_seconds", "Time to the last byte of the answer",
                                 ["key", "model", "upstream"], registry=r)
        self.ttft = Histogram(f"{_NS}_ttft_seconds", "Time to the first token (streams) or the body",
                              ["key", "model", "upstream"], registry=r)
        self.tokens = Counter(f"{_NS}_tokens", "Tokens as the upstream reported them",
                              ["key", "model", "upstream", "kind"], registry=r)
        self.cost = Counter(f"{_NS}_cost", "Cost at DeepSeek's prices",
                            ["key", "model", "upstream", "currency"], registry=r)
        self.chunks = Counter(f"{_NS}_stream_chunks", "Stream chunks relayed", ["upstream"], registry=r)
        self.in_flight = Gauge(f"{_NS}_in_flight", "Requests being answered", registry=r)
        self.repairs = Counter(f"{_NS}_reasoning_repairs", "Assistant turns whose dropped reasoning_content "
                               "was put back", registry=r)
        self.budget_remaining = Gauge(f"{_NS}_budget_remaining", "Remaining budget of a key (last seen)",
                                      ["key", "currency"], registry=r)
        self._upstreams = _Upstreams(router)
        self.registry.register(self._upstreams)
        self._children: dict[tuple[Any, ...], Any] = {}
        self._series: dict[tuple[str, str, str, int], _Series] = {}

    def watch(self, router: Any) -> None:
        """Report this router's upstreams from now on (after a config reload)."""
        self._upstreams.router = router

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, call: Call, seconds: float, cost: Decimal | None) -> None:
        k, m, u, status = call.key_id, call.model, call.upstream, call.status
        # One lookup per request for every child of its label set (`.labels()` and even a cache
        # keyed per metric cost more than the updates themselves).
        series = self._series.get((k, m, u, status))
        if series is None:
            series = self._series[(k, m, u, status)] = _Series(self, k, m, u, str(status))
        series.requests.inc()
        series.latency.observe(seconds)
        if call.ttft is not None:
            series.child("ttft", self.ttft).observe(call.ttft)
        if call.chunks:
            self._child(self.chunks, u).inc(call.chunks)
        usage = call.usage
        if usage:
            for kind, name in _TOKEN_KINDS:
                n = usage.get(name)
                if isinstance(n, int) and n > 0:
                    series.child(kind, self.tokens).inc(n)
            details = usage.get("completion_tokens_details")
            n = details.get("reasoning_tokens") if isinstance(details, dict) else None
            if isinstance(n, int) and n > 0:
                series.child("reasoning", self.tokens).inc(n)
        if cost:
            series.child("cost", self.cost).inc(float(cost))

    def exposition(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data


_TOKEN_KINDS = (("prompt_cache_hit", "prompt_cache_hit_tokens"),
                ("prompt_cache_miss", "prompt_cache_miss_tokens"),
                ("completion", "completion_tokens"))


class _Series:
    """The labelled children of one (key, model, upstream, status), each made on first use (a
    child shows in /metrics from the moment it exists, so none is made before it counts)."""

    __slots__ = ("_k", "_m", "_made", "_metrics", "_u", "latency", "requests")

    def __init__(self, metrics: GatewayMetrics, k: str, m: str, u: str, status: str) -> None:
        self._metrics, self._k, self._m, self._u = metrics, k, m, u
        self.requests = metrics._child(metrics.requests, k, m, u, status)
        self.latency = metrics._child(metrics.latency, k, m, u)
        self._made: dict[str, Any] = {}

    def child(self, name: str, metric: Any) -> Any:
        """The child of `metric` for this label set; `name`: "ttft", "cost" or a token kind."""
        made = self._made.get(name)
        if made is None:
            mx, k, m, u = self._metrics, self._k, self._m, self._u
            if name == "ttft":
                made = mx._child(metric, k, m, u)
            elif name == "cost":
                made = mx._child(metric, k, m, u, mx.currency)
            else:
                made = mx._child(metric, k, m, u, name)
            self._made[name] = made
        return made


_encode = msgspec.json.Encoder().encode


def access_line(call: Call, method: str, path: str, seconds: float, cost: Decimal | None) -> None:
    """One JSON line per request on ACCESS_LOG (nothing is built when the logger is off)."""
    if not ACCESS_LOG.isEnabledFor(logging.INFO):
        return
    u = call.usage or {}
    text = _encode({
        "ts": round(time.time(), 3), "method": method, "path": path, "status": call.status,
        "key": call.key_id, "key_name": call.key_name, "model": call.model, "upstream": call.upstream,
        "stream": call.stream, "ms": round(seconds * 1000, 2),
        "ttft_ms": None if call.ttft is None else round(call.ttft * 1000, 2),
        "prompt_tokens": u.get("prompt_tokens"), "completion_tokens": u.get("completion_tokens"),
        "cache_hit_tokens": u.get("prompt_cache_hit_tokens"), "chunks": call.chunks,
        "cost": None if cost is None else str(cost), "trace_id": call.trace_id, "tried": call.tried,
        "error": call.error,
    }).decode()
    handlers = ACCESS_LOG.handlers
    if len(handlers) == 1 and isinstance(handlers[0], AccessLogHandler) and not ACCESS_LOG.filters:
        handlers[0].line(text)  # no LogRecord: the line is final (accesslog.py)
    else:
        ACCESS_LOG.info(text)
