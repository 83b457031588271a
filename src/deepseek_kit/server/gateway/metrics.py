"""Prometheus metrics and the structured access log of the gateway.

Metrics live in the app's own registry (served at `/metrics`), labelled by key, model and upstream.
The key label is the virtual key's id (or "-" when auth is off), never the key itself. Upstream
breaker state and in-flight calls are read from the router at scrape time. The access log is one
JSON line per request on the `deepseek_kit.gateway.access` logger; it holds no key, no body and no
header value besides the trace id.
"""

from __future__ import annotations

import bisect
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


class _Level(Collector):
    """A gauge without labels as a plain number, for the ones moved twice per request: `inc` and
    `dec` as `prometheus_client.Gauge` has them, without its lock and call chain (the event loop is
    the only writer); collected as the same gauge."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = float(value)

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        yield GaugeMetricFamily(self.name, self.documentation, value=self.value)


class _Flush(Collector):
    """Registered first: every collection of the registry (the /metrics page, `generate_latest`,
    `get_sample_value`) first applies the updates `observe` deferred."""

    def __init__(self, flush: Any) -> None:
        self.flush = flush

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        self.flush()
        return iter(())


class GatewayMetrics:
    """The gateway's Prometheus metrics. `observe` only adds to plain numbers per label set (each
    prometheus_client update takes a lock and a Python call chain: ~1-2 us, seven per request);
    they are applied to the metrics when the registry is collected, so a scrape sees every request
    answered before it. Both run on the event loop (the /metrics handler collects there)."""

    def __init__(self, router: Any, currency: str) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.currency = currency
        r = self.registry
        self._dirty: list[_Series] = []
        r.register(_Flush(self.flush))
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
        self.in_flight = _Level(f"{_NS}_in_flight", "Requests being answered")
        r.register(self.in_flight)
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
        # One lookup per request for the label set's children and pending numbers.
        series = self._series.get((k, m, u, status))
        if series is None:
            series = self._series[(k, m, u, status)] = _Series(self, k, m, u, str(status))
        if not series.dirty:
            series.dirty = True
            self._dirty.append(series)
        series.n += 1
        series.latency.add(seconds)
        if call.ttft is not None:
            series.hist("ttft").add(call.ttft)
        if call.chunks:
            self._child(self.chunks, u).inc(call.chunks)
        usage = call.usage
        if usage:
            for kind, name in _TOKEN_KINDS:
                n = usage.get(name)
                if isinstance(n, int) and n > 0:
                    series.add(kind, n)
            details = usage.get("completion_tokens_details")
            n = details.get("reasoning_tokens") if isinstance(details, dict) else None
            if isinstance(n, int) and n > 0:
                series.add("reasoning", n)
        if cost:
            series.add("cost", float(cost))

    def flush(self) -> None:
        """Apply the updates `observe` deferred (collecting the registry does it first)."""
        dirty, self._dirty = self._dirty, []
        for series in dirty:
            series.flush()

    def exposition(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data


_TOKEN_KINDS = (("prompt_cache_hit", "prompt_cache_hit_tokens"),
                ("prompt_cache_miss", "prompt_cache_miss_tokens"),
                ("completion", "completion_tokens"))


class _Hist:
    """Observations of one histogram child not applied yet: their sum and count per bucket."""

    __slots__ = ("bounds", "child", "counts", "total")

    def __init__(self, child: Any) -> None:
        self.child = child
        # The child's own buckets, when this prometheus_client has them as we know them (else
        # every observation is handed to `observe` at once, as before).
        bounds = getattr(child, "_upper_bounds", None)
        buckets = getattr(child, "_buckets", None)
        ok = (isinstance(bounds, list) and isinstance(buckets, list) and len(bounds) == len(buckets)
              and hasattr(child, "_sum"))
        self.bounds: list[float] | None = bounds if ok else None
        self.counts = [0] * len(self.bounds) if self.bounds is not None else []
        self.total = 0.0

    def add(self, value: float) -> None:
        if self.bounds is None or value != value:  # NaN: as Histogram.observe takes it
            self.child.observe(value)
            return
        self.total += value
        # Histogram.observe counts a value in the first bucket whose bound is >= it (the last is +Inf)
        self.counts[bisect.bisect_left(self.bounds, value)] += 1

    def flush(self) -> None:
        if self.bounds is None:
            return
        counts, total = self.counts, self.total
        if any(counts):
            self.child._sum.inc(total)
            buckets = self.child._buckets
            for i, n in enumerate(counts):
                if n:
                    buckets[i].inc(n)
                    counts[i] = 0
        self.total = 0.0


class _Series:
    """One (key, model, upstream, status): its labelled children, each made on first use (a child
    shows in /metrics from the moment it exists, so none is made before it counts), and the
    counts and sums not applied to them yet."""

    __slots__ = ("_hists", "_k", "_m", "_metrics", "_sums", "_u", "dirty", "latency", "n", "requests")

    def __init__(self, metrics: GatewayMetrics, k: str, m: str, u: str, status: str) -> None:
        self._metrics, self._k, self._m, self._u = metrics, k, m, u
        self.requests = metrics._child(metrics.requests, k, m, u, status)
        self.latency = _Hist(metrics._child(metrics.latency, k, m, u))
        self._hists: dict[str, _Hist] = {}
        self._sums: dict[str, list[Any]] = {}  # "cost" or a token kind -> [child, pending amount]
        self.n = 0
        self.dirty = False

    def hist(self, name: str) -> _Hist:
        """The pending observations of histogram `name` ("ttft")."""
        h = self._hists.get(name)
        if h is None:
            mx = self._metrics
            h = self._hists[name] = _Hist(mx._child(mx.ttft, self._k, self._m, self._u))
        return h

    def add(self, name: str, amount: float) -> None:
        """Count `amount` on counter `name`: "cost" or a token kind."""
        pending = self._sums.get(name)
        if pending is None:
            mx, k, m, u = self._metrics, self._k, self._m, self._u
            child = (mx._child(mx.cost, k, m, u, mx.currency) if name == "cost"
                     else mx._child(mx.tokens, k, m, u, name))
            pending = self._sums[name] = [child, 0]
        pending[1] += amount

    def flush(self) -> None:
        self.dirty = False
        if self.n:
            self.requests.inc(self.n)
            self.n = 0
        self.latency.flush()
        for h in self._hists.values():
            h.flush()
        for pending in self._sums.values():
            if pending[1]:
                pending[0].inc(pending[1])
                pending[1] = 0


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
