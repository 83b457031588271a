"""The pipeline step contract: `Step` and `CallNext`.

Every capability of the client (retries, auth, limits, routing, cache, metrics, logs) is a step;
users add their own through `AsyncClient(steps=[...], inner_steps=[...])`. The order they run in
is built in one place, `deepseek_kit._client.pipeline.build_pipeline`, which also lists the
`request.options` keys the steps pass each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from deepseek_kit._transport.request import Request, Response

__all__ = ["CallNext", "Step"]

#: The rest of the pipeline below a step: call it with the (possibly changed) request to get the
#: response from the layers underneath, ending at the transport.
CallNext = Callable[[Request], Awaitable[Response]]


class Step(Protocol):
    """One layer of the pipeline, the extension seam for cross-cutting behaviour.

    `handle(request, call_next)` receives the call's `Request` and the rest of the pipeline. It
    may change the request (headers, `options`), call `call_next` zero times (answer from a cache,
    refuse), once, or several times (retry, failover, hedging), and must return a `Response` or
    raise a `DeepSeekError` (subclasses: `APIStatusError` for HTTP errors, `APIConnectionError`,
    `APITimeoutError`...; `UsageError` for a caller's mistake). Contract:

    - Non-stream responses arrive complete (`response.body`); stream responses arrive with their
      first event read (`response.events`), the rest still on the socket. A step that needs the
      *end* of a call (release a slot, record usage, store a cache entry) registers
      `response.add_done_callback(fn)`: it runs once, when a stream ends whichever way, at once for
      a non-stream response. Never read a stream's events in a step unless you hand an equivalent
      reader back (see the cache's recorder).
    - Cancellation propagates: a step that holds resources releases them in `finally`.
    - Budgets: the call's deadline is `request.options["deadline"]` (loop time); a step that waits
      (a queue, a backoff) never waits past it.
    - Secrets (keys, tokens) never go into an exception message, a log line or `request.options`.

    Where a user step sits: `steps=` run outermost, once per call, before logs and metrics see it;
    `inner_steps=` run inside retry, once per attempt, after the router picked an endpoint
    (`request.endpoint`) and before limits and auth. See `build_pipeline` for the whole order.
    """

    async def handle(self, request: Request, call_next: CallNext) -> Response:
        """Handle one call (outer steps) or one attempt (steps inside retry); see the class doc."""
        ...
