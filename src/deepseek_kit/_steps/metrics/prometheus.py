"""Prometheus export of the client's metrics (optional: `pip install 'deepseek-kit[metrics]'`).

`PrometheusHook` is a metrics hook (`MetricsConfig(hooks=(PrometheusHook(),))`, or
`MetricsConfig(prometheus=True)` for the default registry) that feeds `prometheus_client`
collectors from each `RequestRecord`:

    {ns}_requests_total{model, endpoint, outcome, status, error}  calls, by HTTP status and error class
    {ns}_request_duration_seconds{model, endpoint, stream, outcome}  histogram of call latency
    {ns}_time_to_first_token_seconds{model, endpoint, stream}  histogram of TTFT
    {ns}_tokens_total{model, kind}                          kind: prompt_cache_hit, prompt_cache_miss,
                                                            completion, reasoning (part of completion)
    {ns}_cost_total{model, currency}                        billed amount (float)
    {ns}_retries_total{model}                               attempts beyond the first
    {ns}_client_cache_hits_total{model}                     calls answered by the client cache

With endpoints (`AsyncClient(endpoints=...)`), `endpoint` is the one that answered (or the last one
tried; "" without endpoints), and also:

    {ns}_endpoint_attempts_total{endpoint, result}   HTTP attempts per endpoint; result "ok", the
                                                     error class, "hedge_lost", "hedge_closed" or
                                                     "breaker_open" (skipped, 0 attempts: counted 1)
    {ns}_failovers_total{endpoint}                   calls that moved away from this endpoint
    {ns}_endpoint_breaker_state{endpoint, state}     1 for the breaker's current state ("closed",
                                                     "half_open", "open"), 0 for the others
    {ns}_endpoint_in_flight{endpoint}                calls sent to it and not complete

The last two are read from the client's router when Prometheus scrapes (the hook learns the
router from the client: `MetricsConfig(prometheus=True)` or a hook in `MetricsConfig.hooks`).

`ns` defaults to "deepseek". Collectors are created once per (registry, namespace), so several
clients (or hooks) in one process share them instead of failing on duplicate names. Expose them
with `exposition()` (text format bytes + `CONTENT_TYPE`), `serve_metrics(port)` (prometheus_client's
own HTTP server thread) or `metrics_handler()` (an aiohttp route, e.g. in a gateway).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from deepseek_kit._wire.errors import UsageError

if TYPE_CHECKING:
    from aiohttp import web

    from .record import RequestRecord

__all__ = ["CONTENT_TYPE", "PrometheusHook", "exposition", "metrics_handler", "serve_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: LLM calls take from tens of milliseconds (cache hits, short answers) to many minutes.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise UsageError(
            "Prometheus export needs the prometheus-client package: pip install 'deepseek-kit[metrics]'"
        ) from None
    return prometheus_client


class _Collectors:
    def __init__(self, pc: Any, registry: Any, ns: str) -> None:
        kw = {"registry": registry, "namespace": ns}
        self.requests = pc.Counter("requests", "DeepSeek API calls by outcome, HTTP status and error class",
                                   ["model", "endpoint", "outcome", "status", "error"], **kw)
        self.duration = pc.Histogram("request_duration_seconds", "Call latency, all attempts included",
                                     ["model", "endpoint", "stream", "outcome"], buckets=LATENCY_BUCKETS,
                                     **kw)
        self.ttft = pc.Histogram("time_to_first_token_seconds", "Time to the first real event or body",
                                 ["model", "endpoint", "stream"], buckets=TTFT_BUCKETS, **kw)
        self.endpoint_attempts = pc.Counter("endpoint_attempts", "HTTP attempts per endpoint, by result",
                                            ["endpoint", "result"], **kw)
        self.failovers = pc.Counter("failovers", "Calls that moved away from this endpoint to another",
                                    ["endpoint"], **kw)
        self.health = _HealthCollector(ns)
        registry.register(self.health)
        self.tokens = pc.Counter("tokens", "Billed tokens by kind (reasoning is part of completion)",
                                 ["model", "kind"], **kw)
        self.cost = pc.Counter("cost", "Billed amount per the DeepSeek price table",
                               ["model", "currency"], **kw)
        self.retries = pc.Counter("retries", "Attempts beyond the first", ["model"], **kw)
        self.cache_hits = pc.Counter("client_cache_hits", "Calls answered by the client cache",
                                     ["model"], **kw)


_STATES = ("closed", "half_open", "open")


class _HealthCollector:
    """Breaker state and in-flight gauges, read from the watched routers at scrape time (a state
    that changes with time, open -> half_open, is then right without any call)."""

    def __init__(self, ns: str) -> None:
        self._ns = ns
        self._routers: weakref.WeakSet[Any] = weakref.WeakSet()

    def watch(self, router: Any) -> None:
        self._routers.add(router)

    def describe(self) -> list[Any]:
        # No names up front: the registry then never calls collect() at registration (routers come
        # later) and several clients can feed the one collector of a (registry, namespace).
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        state = GaugeMetricFamily(f"{self._ns}_endpoint_breaker_state",
                                  "Circuit breaker state per endpoint (1 = current)",
                                  labels=["endpoint", "state"])
        inflight = GaugeMetricFamily(f"{self._ns}_endpoint_in_flight",
                                     "Calls sent to the endpoint and not complete", labels=["endpoint"])
        seen: set[str] = set()
        for router in list(self._routers):
            for h in router.health():
                if h.name in seen:  # two clients with the same endpoint names: the first one wins
                    continue
                seen.add(h.name)
                for st in _STATES:
                    state.add_metric([h.name, st], 1.0 if h.state == st else 0.0)
                inflight.add_metric([h.name], float(h.in_flight))
        yield state
        yield inflight


_lock = threading.Lock()
_registered: dict[tuple[int, str], tuple[Any, _Collectors]] = {}


def _collectors(pc: Any, registry: Any, ns: str) -> _Collectors:
    with _lock:
        got = _registered.get((id(registry), ns))
        if got is None or got[0] is not registry:
            got = (registry, _Collectors(pc, registry, ns))
            _registered[(id(registry), ns)] = got
        return got[1]


class PrometheusHook:
    """Feeds Prometheus collectors from each record: `MetricsConfig(hooks=(PrometheusHook(),))`.
    `registry` defaults to prometheus_client's global REGISTRY; `namespace` prefixes every metric
    name. Raises UsageError when prometheus-client is not installed."""

    def __init__(self, registry: Any = None, namespace: str = "deepseek") -> None:
        pc = _client()
        self.registry = registry if registry is not None else pc.REGISTRY
        self._c = _collectors(pc, self.registry, namespace)
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        # labels() takes a lock and builds a tuple key per call; a plain dict hit is cheaper.
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def watch_router(self, router: Any) -> None:
        """Report this router's endpoints in the breaker-state and in-flight gauges (the metrics
        step calls this for the client's router)."""
        self._c.health.watch(router)

    def on_request(self, r: RequestRecord) -> None:
        """Count one finished call in the collectors (requests by outcome, duration, time to first token,
        tokens, cost, failovers)."""
        c = self._c
        model = r.model or ""
        endpoint = r.endpoint or ""
        stream = "true" if r.stream else "false"
        status = "" if r.status is None else str(r.status)
        self._child(c.requests, model, endpoint, r.outcome, status, r.error or "").inc()
        self._child(c.duration, model, endpoint, stream, r.outcome).observe(r.latency)
        if r.ttft is not None and not r.cache_hit:
            self._child(c.ttft, model, endpoint, stream).observe(r.ttft)
        if r.route:
            last = len(r.route) - 1
            for i, (name, attempts, result) in enumerate(r.route):
                self._child(c.endpoint_attempts, name, result).inc(max(attempts, 1))
                if i < last and result not in ("ok", "hedge_lost", "hedge_closed"):
                    self._child(c.failovers, name).inc()
        if r.attempts > 1 and r.retries:
            self._child(c.retries, model).inc(r.retries)
        if r.cache_hit:
            self._child(c.cache_hits, model).inc()
            return
        for kind, n in (("prompt_cache_hit", r.prompt_cache_hit_tokens),
                        ("prompt_cache_miss", r.prompt_cache_miss_tokens),
                        ("completion", r.completion_tokens), ("reasoning", r.reasoning_tokens)):
            if n:
                self._child(c.tokens, model, kind).inc(n)
        if r.cost:
            self._child(c.cost, model, r.currency).inc(float(r.cost))

    __call__ = on_request


def exposition(registry: Any = None) -> bytes:
    """The registry's metrics in Prometheus text format (serve with `CONTENT_TYPE`)."""
    pc = _client()
    data: bytes = pc.generate_latest(registry if registry is not None else pc.REGISTRY)
    return data


def serve_metrics(port: int = 9464, addr: str = "127.0.0.1", registry: Any = None) -> Any:
    """Serve `/metrics` from a background thread (prometheus_client's HTTP server) on `addr`:`port`
    (loopback by default: metrics name your models and endpoints), from `registry` (default:
    prometheus_client's global one, where `MetricsConfig(prometheus=True)` registers). Returns what
    `start_http_server` returns (the server and its thread in recent versions): stop it with
    `.shutdown()`, then `.server_close()` to close its listening socket. Needs
    `deepseek-kit[metrics]`."""
    pc = _client()
    return pc.start_http_server(port, addr=addr, registry=registry if registry is not None else pc.REGISTRY)


def metrics_handler(registry: Any = None) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler for `/metrics`, e.g. `app.router.add_get("/metrics", metrics_handler())`,
    exposing `registry` (default: prometheus_client's global one). Needs `deepseek-kit[metrics]`."""
    _client()

    async def handle(request: web.Request) -> web.Response:
        from aiohttp import web

        return web.Response(body=exposition(registry), headers={"Content-Type": CONTENT_TYPE})

    return handle
