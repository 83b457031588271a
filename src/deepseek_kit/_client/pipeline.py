"""The order of the pipeline steps, built once per client in `build_pipeline`.

Each `AsyncClient` turns its settings into steps and chains them here, outermost first. Why each
sits where it does:

1. user `steps=`   outermost: they see each call once, exactly as the caller made it.
2. logs            records the call as the caller saw it: one row per call, whatever happened below.
3. metrics         measures the call end to end (latency, TTFT, cost), cache hits and failovers included.
4. cache           answers repeats before any network, limit or retry is spent on them.
5. router          picks the endpoint and fails over *across* endpoints; outside retry so that a
                   failing endpoint is left at once instead of being retried.
6. retry           retries transient failures *on* the endpoint the router chose, within the deadline.
7. user `inner_steps=`  once per attempt, with `request.endpoint` known.
8. limits          holds each attempt to RPM/TPM/in-flight limits (a retry takes a new slot;
                   limits are per endpoint account when endpoints are set).
9. auth            adds the key of the chosen endpoint last, so nothing above ever holds it.
10. attempt        the innermost call: sends through the transport, reads the body or the first
                   stream event under the keep-alive-proof timeouts.

Keys steps pass each other in `request.options` (a plain dict, so user steps can add their own;
ours are these):

- "deadline" (set by `client.request`, or by retry when a step below calls it directly; read by
  router, retry, attempt): the loop time by which the whole call must end (`Timeout.total`).
- "failover" (router -> retry, limits): True when another endpoint can take the call, so neither
  backs off nor queues here.
- "route" (router -> metrics, logs): one [endpoint, attempts, outcome] entry per endpoint tried.
- "only_endpoints" (the resources -> router): the frozenset of endpoint names the call may go to:
  the caller's `endpoints=`, intersected, for a stream's continuation, with those that support
  prefix completion.
- "cache" (the caller, `options=` -> cache): "force", "skip" or "refresh", as header X-DSK-Cache.
- "cache_key" (cache -> cache, when the answer is stored): the key it is stored under.

See docs/architecture.md for the layers and the path of one request.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from deepseek_kit._steps.base import CallNext, Step

__all__ = ["build_pipeline"]


def build_pipeline(
    attempt: CallNext,
    *,
    user_steps: Sequence[Step] = (),
    logs: Step | None = None,
    metrics: Step | None = None,
    cache: Step | None = None,
    router: Step | None = None,
    retry: Step,
    inner_steps: Sequence[Step] = (),
    limits: Step | None = None,
    auth: Step,
) -> CallNext:
    """Chain the steps in the order above (the module docstring says why) around `attempt`; steps
    that are off are None and left out. Returns the entry point: `await call(request)`."""
    order: list[Step | None] = [*user_steps, logs, metrics, cache, router, retry, *inner_steps, limits, auth]
    call = attempt
    for step in reversed(order):
        if step is not None:
            call = functools.partial(step.handle, call_next=call)
    return call
