"""OpenTelemetry spans for the client's calls (optional: opentelemetry-api, in the `metrics` extra).

`OTelHook` is a metrics hook (`MetricsConfig(otel=True)` or `hooks=(OTelHook(provider),)`) that
turns each `RequestRecord` into one CLIENT span named "{operation} {model}" (GenAI semantic
conventions), with the call's real start and end times and these attributes:

    gen_ai.system / gen_ai.provider.name = "deepseek", gen_ai.operation.name ("chat",
    "text_completion", else the path), gen_ai.request.model, gen_ai.request.stream,
    gen_ai.usage.input_tokens, gen_ai.usage.output_tokens, gen_ai.usage.cache_read.input_tokens,
    gen_ai.usage.reasoning.output_tokens, gen_ai.response.time_to_first_chunk, error.type,
    http.response.status_code, and deepseek.* for the rest (cache-miss tokens, cost, currency,
    attempts, outcome, client cache hit, endpoint, x-ds-trace-id; with endpoints also the route
    taken and the number of failovers).

A failed call gets status ERROR; the first token is also an event ("gen_ai.first_token") at its
time. The span is built when the call has finished, from the record (that is what keeps it off
the hot path and out of the stream loop), under the context current at that moment: the caller's
span for a non-stream call and for a stream read in the caller's task.

No-op, at the cost of one isinstance check, when opentelemetry is not installed or no tracer
provider has been configured (the API's default proxy provider only makes non-recording spans).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .record import RequestRecord

__all__ = ["OTelHook"]

_NS = 1_000_000_000


def _operation(path: str) -> str:
    if path.endswith("/chat/completions"):
        return "chat"
    if path.endswith("/completions"):
        return "text_completion"  # FIM, /beta/completions
    return path.strip("/") or "request"


class OTelHook:
    """One span per call: `AsyncClient(metrics=MetricsConfig(otel=True))`, or `hooks=(OTelHook(),)`.
    `tracer_provider` defaults to the global one (looked up per call, so a provider configured after
    the client was built is used); `tracer_name` names the tracer the spans come from."""

    def __init__(self, tracer_provider: Any = None, tracer_name: str = "deepseek_kit") -> None:
        try:
            from opentelemetry import trace
        except ImportError:
            self._trace: Any = None
            return
        self._trace = trace
        self._provider = tracer_provider
        self._name = tracer_name
        self._noop = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        self._tracer: tuple[Any, Any] | None = None  # (provider, tracer)

    def _get_tracer(self) -> Any:
        provider = self._provider if self._provider is not None else self._trace.get_tracer_provider()
        if isinstance(provider, self._noop):
            return None
        cached = self._tracer
        if cached is None or cached[0] is not provider:
            from deepseek_kit._version import __version__

            cached = self._tracer = (provider, provider.get_tracer(self._name, __version__))
        return cached[1]

    def on_request(self, r: RequestRecord) -> None:
        """Record one finished call as a CLIENT span with the GenAI semantic-convention attributes
        (model, tokens, time to first chunk, error); does nothing when opentelemetry is not installed."""
        if self._trace is None:
            return
        tracer = self._get_tracer()
        if tracer is None:
            return
        trace = self._trace
        op = _operation(r.path)
        attrs: dict[str, Any] = {
            "gen_ai.system": "deepseek",
            "gen_ai.provider.name": "deepseek",
            "gen_ai.operation.name": op,
            "gen_ai.request.stream": r.stream,
            "deepseek.outcome": r.outcome,
            "deepseek.attempts": r.attempts,
            "deepseek.cache_hit": r.cache_hit,
        }
        if r.model:
            attrs["gen_ai.request.model"] = r.model
        if r.status is not None:
            attrs["http.response.status_code"] = r.status
        if r.error:
            attrs["error.type"] = r.error
        if r.endpoint:
            attrs["deepseek.endpoint"] = r.endpoint
        if r.route:  # the endpoints tried, in order: "name:attempts:result"
            attrs["deepseek.route"] = [f"{n}:{a}:{res}" for n, a, res in r.route]
            attrs["deepseek.failovers"] = r.failovers
        if r.trace_id:
            attrs["deepseek.trace_id"] = r.trace_id
        if r.ttft is not None:
            attrs["gen_ai.response.time_to_first_chunk"] = r.ttft
        if r.prompt_tokens or r.completion_tokens:
            attrs["gen_ai.usage.input_tokens"] = r.prompt_tokens
            attrs["gen_ai.usage.output_tokens"] = r.completion_tokens
            attrs["gen_ai.usage.cache_read.input_tokens"] = r.prompt_cache_hit_tokens
            attrs["gen_ai.usage.reasoning.output_tokens"] = r.reasoning_tokens
            attrs["deepseek.usage.prompt_cache_miss_tokens"] = r.prompt_cache_miss_tokens
            attrs["deepseek.cost"] = float(r.cost)
            attrs["deepseek.cost.currency"] = r.currency
        start = int(r.started_at * _NS)
        span = tracer.start_span(f"{op} {r.model}" if r.model else op, kind=trace.SpanKind.CLIENT,
                                 start_time=start, attributes=attrs)
        if r.ttft is not None:
            span.add_event("gen_ai.first_token", timestamp=start + int(r.ttft * _NS))
        if r.error:
            span.set_status(trace.Status(trace.StatusCode.ERROR, r.error))
        span.end(end_time=start + int(r.latency * _NS))

    __call__ = on_request
