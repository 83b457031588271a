"""Per-request metrics and cost: the `MetricsConfig` value, `build_record` (the `RequestRecord`
of one call, the record itself lives in the leaf `record.py`), and `MetricsStep`, the
pipeline step that times and prices every call.

It sits outside cache, router and retry (`_client/pipeline.py`) so that one record covers the whole
call, retries included, and answers served by the client cache count too.
What it costs on the hot path, per call: two loop
clock reads and one wall clock read; for a non-stream answer one msgspec decode of a struct holding
only `usage` and `model` (the rest of the body is skipped by the decoder, not built); the token
split (`_wire/usage.split_usage`); the peak check and the price cached per minute and per model
by the step's `PriceBook` (as integers, so a call's cost is integer arithmetic and one Decimal);
the record built positionally, left in `request.options["record"]` for the logs step and queued
for the summary. Nothing per
chunk: a stream's usage, end and outcome arrive once through `Response.add_done_callback`.

Cost follows DeepSeek's table (docs/deepseek-api-notes.md#pricing-and-off-peak-hours,
`_wire/pricing.py`): cache-hit input, cache-miss
input and output (reasoning included) per 1M tokens, peak or off-peak by Beijing time at the start
of the call. `MetricsConfig.prices` overrides or adds models (private deployments cost 0 unless
priced). Answers from the client cache cost nothing. A stream the caller left early, or that broke,
has no usage: its tokens and cost are 0 (DeepSeek may still bill what it generated).

Each finished call becomes a frozen `RequestRecord` (`record.py`), added to the in-process `Metrics` summary
(`_steps/metrics/summary.py`) and passed to every hook (`on_request(record)`: a plain callable, or an
object with an `on_request` method, e.g. the Prometheus and OpenTelemetry exporters). Hooks run
synchronously where the call ended; one that raises is logged and never breaks the call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import msgspec

from deepseek_kit._steps.base import CallNext
from deepseek_kit._transport.request import Request, Response
from deepseek_kit._wire import pricing as _pricing
from deepseek_kit._wire.errors import UsageError
from deepseek_kit._wire.holidays import DEFAULT_CALENDAR, HolidayCalendar
from deepseek_kit._wire.pricing import ModelPrice, PriceBook
from deepseek_kit._wire.types import SafeDecoder, Usage
from deepseek_kit._wire.usage import split_usage

from .record import RECORD_OPTION, Hook, RequestRecord
from .summary import Metrics

__all__ = ["RECORD_OPTION", "Hook", "MetricsConfig", "MetricsStep", "PriceOverride", "RequestRecord",
           "build_record"]

log = logging.getLogger("deepseek_kit.metrics")


#: A price override: one `ModelPrice` is a peak price with DeepSeek's off-peak half (like the
#: built-in table); a `(peak, off_peak)` pair sets both (the same price twice = a flat rate).
PriceOverride = ModelPrice | tuple[ModelPrice, ModelPrice]


def _route(request: Request) -> tuple[tuple[str, int, str], ...]:
    r = request.options.get("route")
    if not r:
        return ()
    return tuple((str(e[0]), int(e[1]), str(e[2])) for e in r)


@dataclass(frozen=True)
class MetricsConfig:
    """How the client measures calls.

    - enabled: False turns the step into a pass-through.
    - prices: per-model overrides of DeepSeek's table, in `currency` per 1M tokens (see
      `PriceOverride`); models in neither cost 0.
    - currency: "CNY" or "USD" for the built-in table.
    - holidays: which days are off-peak all day: a `HolidayCalendar` (default: the built-in
      Chinese statutory holidays; the config file's `[pricing]` table adds to it), or a set of
      dates taken as the complete list.
    - window: seconds over which `Metrics` computes QPS.
    - reservoir: how many recent latencies / TTFTs the percentiles are computed over.
    - hooks: callables `hook(record)` or objects with `on_request(record)`, called once per call.
    - prometheus / otel: also feed `PrometheusHook()` (default registry; needs the
      `deepseek-kit[metrics]` extra) / `OTelHook()` (global tracer provider; no-op without one).
    - clock: wall clock in epoch seconds, used for `started_at` and peak pricing (tests pin it;
      the default honours DSK_FAKE_NOW, see `_pricing.default_clock`).
    """

    enabled: bool = True
    prices: Mapping[str, PriceOverride] | None = None
    currency: str = "CNY"
    holidays: HolidayCalendar | Iterable[date] = DEFAULT_CALENDAR
    window: float = 60.0
    reservoir: int = 4096
    hooks: tuple[Any, ...] = ()
    prometheus: bool = False
    otel: bool = False
    clock: Callable[[], float] = field(default_factory=_pricing.default_clock, compare=False)

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)
        set_("currency", str(self.currency).upper())
        if self.currency not in _pricing.PRICES and not self.prices:
            raise UsageError(f"MetricsConfig.currency must be one of {sorted(_pricing.PRICES)} "
                             f"(or give prices= in your currency), got {self.currency!r}")
        if not isinstance(self.window, (int, float)) or not self.window > 0 or math.isinf(self.window):
            raise UsageError(f"MetricsConfig.window must be a positive number of seconds, "
                             f"got {self.window!r}")
        if not isinstance(self.reservoir, int) or self.reservoir < 1:
            raise UsageError(f"MetricsConfig.reservoir must be an integer >= 1, got {self.reservoir!r}")
        hooks = (self.hooks,) if callable(self.hooks) else tuple(self.hooks)
        for h in hooks:
            if not callable(h) and not callable(getattr(h, "on_request", None)):
                raise UsageError(f"MetricsConfig.hooks: {h!r} is neither callable nor has on_request(record)")
        set_("hooks", hooks)
        set_("holidays", _pricing.calendar_of(self.holidays, "MetricsConfig.holidays"))
        set_("prices", MappingProxyType(_normalise_prices(self.prices)) if self.prices else None)

    @classmethod
    def coerce(cls, value: MetricsConfig | bool | None) -> MetricsConfig | None:
        """`metrics=` argument: True -> defaults, False/None -> None (no step), a config as is."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, MetricsConfig):
            return value
        raise UsageError(f"metrics must be a MetricsConfig, True or False, got {type(value).__name__}")


def _normalise_prices(prices: Mapping[str, Any]) -> dict[str, tuple[ModelPrice, ModelPrice]]:
    out: dict[str, tuple[ModelPrice, ModelPrice]] = {}
    for model, p in prices.items():
        if isinstance(p, ModelPrice):
            pair = (p, p.at(False))
        elif (isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], ModelPrice)
              and isinstance(p[1], ModelPrice)):
            pair = (p[0], p[1])
        else:
            raise UsageError(f"MetricsConfig.prices[{model!r}] must be a ModelPrice (peak; off-peak is half) "
                             f"or a (peak, off_peak) pair of ModelPrice, got {p!r}")
        for price in pair:
            for d in (price.cache_hit, price.cache_miss, price.output):
                if not isinstance(d, Decimal) or not d.is_finite() or d < 0:
                    raise UsageError(f"MetricsConfig.prices[{model!r}]: prices must be finite Decimals >= 0 "
                                     f"(per 1M tokens), got {d!r}")
        out[model] = pair
    return out


class _UsageOnly(msgspec.Struct, gc=False):
    """What the step reads from a non-stream body: msgspec skips every other field unbuilt."""

    usage: Usage | None = None
    model: str = ""


class _ModelOnly(msgspec.Struct, gc=False):
    model: str = ""


_usage_decoder: SafeDecoder[_UsageOnly] = SafeDecoder(_UsageOnly)  # a response body: nesting-guarded
_model_decoder = msgspec.json.Decoder(_ModelOnly)
_ZERO = Decimal(0)
_MODEL_PREFIX = b'{"model":"'


def _request_model(body: bytes | None) -> str | None:
    """The requested model. The resources encode `model` first, so a prefix check usually finds it
    without parsing; other bodies are decoded (skipping everything but `model`)."""
    if not body:
        return None
    if body.startswith(_MODEL_PREFIX):
        end = body.find(b'"', 10)
        if end > 10 and body.find(b"\\", 10, end) < 0:
            return body[10:end].decode()
    try:
        return _model_decoder.decode(body).model or None
    except msgspec.DecodeError:
        return None


def _endpoint(request: Request, resp: Response | None) -> str | None:
    if resp is not None and resp.endpoint is not None:
        return resp.endpoint
    ep = request.endpoint
    if ep is None:
        return None
    name = getattr(ep, "name", None)
    return name if isinstance(name, str) else str(ep)


def _as_hook(h: Any) -> Callable[[RequestRecord], object]:
    on_request = getattr(h, "on_request", None)
    fn: Callable[[RequestRecord], object] = on_request if callable(on_request) else h
    return fn


def build_record(request: Request, resp: Response, wall: float, t0: float, t1: float, prices: PriceBook,
                 usage: Any = None) -> RequestRecord:
    """The `RequestRecord` of a call that returned `resp` (for a stream: once it ended). `wall` is
    the epoch time of the call, `t0` / `t1` loop times of the call and of its end; `usage` when the
    caller already has it (else `resp.usage`, else read from a non-stream body, skipping every
    other field). Shared by the metrics step and the logs step (which builds the record itself when
    metrics are off), so both count and price a call alike."""
    usage = usage if usage is not None else resp.usage
    model = _request_model(request.body)
    if usage is None and resp.events is None and resp.body:
        try:
            got = _usage_decoder.decode(resp.body)
        except msgspec.DecodeError:
            got = None
        if got is not None:
            usage = got.usage
            model = model or got.model or None
    tokens = split_usage(usage)
    latency = t1 - t0
    ttft = None if resp.first_event_at is None else max(resp.first_event_at - t0, 0.0)
    tps = None
    if tokens.completion:
        gen = latency - ttft if (resp.events is not None and ttft is not None) else latency
        tps = tokens.completion / gen if gen > 0 else None
    peak = prices.is_peak(wall)
    cost = _ZERO if resp.cache_hit else prices.charge(model, tokens, peak)
    outcome = resp.outcome or "ok"
    error = None if outcome in ("ok", "closed") else ("StreamTimeoutError" if outcome == "timeout"
                                                      else "StreamError")
    route = _route(request)
    attempts = sum(a for _, a, _ in route) if route else resp.attempts
    # Positional: msgspec matches 23 keywords several times slower than it takes positions.
    return RequestRecord(
        model, request.path, request.stream, outcome, resp.status, error, attempts,
        _endpoint(request, resp), resp.headers.get("x-ds-trace-id"), wall, latency, ttft, tps,
        resp.cache_hit, *tokens, cost, prices.currency, peak, route,
    )


class MetricsStep:
    """Pipeline step (`AsyncClient(metrics=...)`): one `RequestRecord` per call, into `self.metrics`
    (a `Metrics` summary) and every hook. `config`: a `MetricsConfig` (hooks, window, currency...);
    `metrics`: a `Metrics` to count into (e.g. one shared by several clients)."""

    def __init__(self, config: MetricsConfig | None = None, metrics: Metrics | None = None) -> None:
        cfg = self.config = config or MetricsConfig()
        self.metrics = metrics or Metrics(window=cfg.window, reservoir=cfg.reservoir, currency=cfg.currency)
        hooks: list[Any] = list(cfg.hooks)
        if cfg.prometheus:
            from .prometheus import PrometheusHook

            hooks.append(PrometheusHook())
        if cfg.otel:
            from .otel import OTelHook

            hooks.append(OTelHook())
        self._hook_objects = tuple(hooks)
        self._hooks = tuple(_as_hook(h) for h in hooks)
        self._hook_failed: set[int] = set()
        self.hook_errors = 0
        self._clock = cfg.clock
        #: the step's prices (peak state per minute, each model's price), `_wire/pricing.PriceBook`
        self.prices = _pricing.PriceBook(cfg.currency, cfg.holidays,
                                         _normalise_prices(cfg.prices) if cfg.prices else None)

    def watch_router(self, router: Any) -> None:
        """The client's router (endpoints): hooks that report endpoint health read it (e.g. the
        Prometheus breaker-state gauge, at scrape time)."""
        for h in self._hook_objects:
            watch = getattr(h, "watch_router", None)
            if callable(watch):
                watch(router)

    async def handle(self, request: Request, call_next: CallNext) -> Response:
        """Time the call and, once its response completes (or it raises), build its `RequestRecord`
        and hand it to the in-process summary and every hook."""
        if not self.config.enabled:
            return await call_next(request)
        loop_time = asyncio.get_running_loop().time
        t0 = loop_time()
        wall = self._clock()
        try:
            resp = await call_next(request)
        except BaseException as exc:
            self._safely(self._failed, request, exc, wall, loop_time() - t0)
            raise
        if resp.events is None:
            self._safely(self._done, request, resp, wall, t0, loop_time())
        else:
            # Usage and the end of a stream are only known when the caller has read it.
            resp.add_done_callback(functools.partial(self._stream_done, request, wall, t0, loop_time))
        return resp

    # -- building records ----------------------------------------------------------------------------

    def _stream_done(self, request: Request, wall: float, t0: float, loop_time: Callable[[], float],
                     resp: Response) -> None:
        self._safely(self._done, request, resp, wall, t0, loop_time())

    def _done(self, request: Request, resp: Response, wall: float, t0: float, t1: float) -> None:
        record = build_record(request, resp, wall, t0, t1, self.prices)
        request.options[RECORD_OPTION] = record  # the logs step (outside) reads it: not decoded twice
        self._emit(record)

    def _failed(self, request: Request, exc: BaseException, wall: float, latency: float) -> None:
        if isinstance(exc, asyncio.CancelledError):
            outcome = "cancelled"
        elif isinstance(exc, TimeoutError):
            outcome = "timeout"
        else:
            outcome = "error"
        attempts = getattr(exc, "attempts", 1)
        endpoint = _endpoint(request, None)
        if isinstance(attempts, list):  # AllEndpointsFailedError: (endpoint, error) pairs
            if attempts and endpoint is None:
                endpoint = str(attempts[-1][0])
            attempts = len(attempts)
        status = getattr(exc, "status_code", None)
        headers = getattr(exc, "headers", None)
        trace_id = headers.get("x-ds-trace-id") if isinstance(headers, Mapping) else None
        route = _route(request)
        if route:
            attempts = sum(a for _, a, _ in route)
            endpoint = route[-1][0]
        record = request.options[RECORD_OPTION] = RequestRecord(
            model=_request_model(request.body), path=request.path, stream=request.stream, outcome=outcome,
            status=status if isinstance(status, int) else None, error=type(exc).__name__,
            attempts=attempts if isinstance(attempts, int) else 1, endpoint=endpoint,
            trace_id=trace_id, started_at=wall, latency=latency, currency=self.prices.currency,
            peak=self.prices.is_peak(wall), route=route,
        )
        self._emit(record)

    # -- delivering records --------------------------------------------------------------------------

    def _emit(self, record: RequestRecord) -> None:
        self.metrics.add(record)
        for hook in self._hooks:
            try:
                hook(record)
            except Exception:
                self._hook_error(hook)

    def _hook_error(self, hook: Callable[[RequestRecord], object]) -> None:
        # A broken hook fails on every call: one traceback per hook, the rest at debug level.
        self.hook_errors += 1
        if id(hook) not in self._hook_failed:
            self._hook_failed.add(id(hook))
            log.exception("metrics hook %r failed (further failures of this hook are logged at "
                          "DEBUG level; the call itself is unaffected)", hook)
        else:
            log.debug("metrics hook %r failed again", hook, exc_info=True)

    def _safely(self, fn: Callable[..., None], *args: Any) -> None:
        """Metrics must never break or alter a call: a bug here is logged, not raised."""
        try:
            fn(*args)
        except Exception:
            log.exception("deepseek_kit metrics failed to record a call")

