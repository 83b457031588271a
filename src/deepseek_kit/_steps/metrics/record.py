"""`RequestRecord`: one finished API call as the metrics step saw it, and the `Hook` type of the
callables that receive it.

A leaf of the metrics family: it imports only msgspec and the standard library, so the step that
builds records (`step.py`) and the sinks that read them (`summary.py`, `prometheus.py`,
`otel.py`, and the logs step) all import this module and none imports another (no import
circle, type-only ones included).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import msgspec

__all__ = ["RECORD_OPTION", "Hook", "RequestRecord"]

#: The `Request.options` key under which the metrics step leaves the call's `RequestRecord` when
#: it has built it (the call ended: a plain answer, an error, or the end of a stream), for steps
#: outside it: the logs step takes the tokens and the cost from it instead of decoding and pricing
#: the same answer again.
RECORD_OPTION = "record"


class RequestRecord(msgspec.Struct, frozen=True, gc=False):
    """One finished API call, as seen by the caller (all attempts together): the `model` asked
    for, the API `path`, DeepSeek's `trace_id` (x-ds-trace-id) when an answer carried one.

    `outcome`: "ok"; "error" (an exception reached the caller; `error` names its class, e.g.
    "RateLimitError", `status` the HTTP status when there was one); "timeout" (an
    APITimeoutError); "cancelled"; for streams also "broken", "timeout" and "closed" (the caller
    left early). Times are seconds: `latency` from the call to the answer (non-stream) or to the
    end of the stream as the caller read it; `ttft` to the first real event (stream) or the
    answer's body (non-stream); `started_at` is wall-clock epoch time (`MetricsConfig.clock`).
    `output_tps` is completion tokens per second after the first token (stream) or over the whole
    call (non-stream). Tokens: `prompt_cache_hit_tokens + prompt_cache_miss_tokens ==
    prompt_tokens`; `reasoning_tokens` are part of `completion_tokens`
    (docs/deepseek-api-notes.md#usage-fields). `cost` is in
    `currency`, priced at `peak` or off-peak; `cache_hit` means the client cache answered.

    With endpoints, `endpoint` is the one that answered (or the last one tried) and `route` lists
    every endpoint the router went to, in order, as `(endpoint, attempts, result)`: result "ok",
    "hedge_lost" (cancelled: another endpoint answered first), "hedge_closed" (answered too late),
    "breaker_open" (skipped) or the error's class name ("APITimeoutError", "QueueTimeoutError"
    when its limits were full, ...). `attempts` is then the sum over the route; `failovers` counts
    the endpoints the call moved away from.

    Fields are in a fixed order (the step builds records positionally, which is much faster);
    construct your own with keywords.
    """

    model: str | None
    path: str
    stream: bool
    outcome: str
    status: int | None = None
    error: str | None = None
    attempts: int = 1
    endpoint: str | None = None
    trace_id: str | None = None
    started_at: float = 0.0
    latency: float = 0.0
    ttft: float | None = None
    output_tps: float | None = None
    cache_hit: bool = False
    prompt_tokens: int = 0
    prompt_cache_hit_tokens: int = 0
    prompt_cache_miss_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal = Decimal(0)
    currency: str = "CNY"
    peak: bool = False
    route: tuple[tuple[str, int, str], ...] = ()

    @property
    def ok(self) -> bool:
        """True when the call succeeded (`outcome == "ok"`)."""
        return self.outcome == "ok"

    @property
    def retries(self) -> int:
        """Attempts beyond the first on the same endpoint (moving to another endpoint is a
        failover, not a retry)."""
        if self.route:
            return sum(a - 1 for _, a, _ in self.route if a > 1)
        return max(self.attempts - 1, 0)

    @property
    def failovers(self) -> int:
        """Endpoints this call moved away from (failed, full or breaker open) to try another."""
        return sum(1 for _, _, res in self.route[:-1] if res not in _NOT_FAILOVER)

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens (reasoning is part of completion)."""
        return self.prompt_tokens + self.completion_tokens


Hook = Callable[[RequestRecord], object]

#: Route results that are not a move away from an endpoint (hedges race, they do not fail over).
_NOT_FAILOVER = frozenset({"ok", "hedge_lost", "hedge_closed"})


