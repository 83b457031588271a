"""Client-side limits: requests per minute, tokens per minute and requests in flight.

`Limits` is the value object, `LimitStep` the pipeline step. The step sits inside retry
(`_client/pipeline.py` says why), so every attempt takes a token. Per attempt it:

1. estimates the tokens (the request body's characters at DeepSeek's ratios, 1 English char ~ 0.3
   token and 1 Chinese char ~ 0.6 token, https://api-docs.deepseek.com/quick_start/token_usage,
   counted by the client's one estimate in `_wire/tokens.py`, plus `max_tokens` or
   `default_max_tokens`);
2. waits, first in first out, for an in-flight slot and then for its turn under rpm/tpm; a wait
   longer than `max_queue_wait` (or past the call's total deadline) raises `QueueTimeoutError`.
   When the router says another endpoint can take the call (`options["failover"]`), it waits at
   most `failover_wait` (default 0: a full endpoint is skipped, not queued for). With endpoints,
   quotas are per endpoint unless `per` says otherwise (docs/routing-and-limits.md);
3. sends, and holds the in-flight slot until the response is complete: at once for a plain
   response, at the end of the stream for a stream (`Response.add_done_callback`), because
   DeepSeek counts a request "from the time it is sent until the model response
   is complete" (docs/deepseek-api-notes.md#rate-limits-and-concurrency);
4. corrects the token estimate with the returned `usage`, and adapts: a 429 (DeepSeek's "rate or
   concurrency" limit, docs/deepseek-api-notes.md#errors-and-status-codes,
   #rate-limits-and-concurrency) shrinks the allowed rate and concurrency, successes grow them
   back (additive increase, multiplicative decrease).

The rates use GCRA (a token bucket kept as one timestamp) with reservations: a waiter learns its
start time when it joins, so nothing polls and order is first come, first served. Two backends keep
the same semantics: in-process (`_steps/limits/local.py`) and Redis (`_steps/limits/redis.py`, for many
processes and hosts sharing one account). Both are hand-written: the rate-limit libraries available
(aiolimiter, limits, pyrate-limiter) have no in-flight leases that outlive a dead process, no
usage correction after the fact and no adaptive factor, and none is FIFO across processes.
"""

from __future__ import annotations

import asyncio
import hashlib

import msgspec

from deepseek_kit._steps.base import CallNext
from deepseek_kit._transport.request import Request, Response
from deepseek_kit._wire.errors import APIStatusError, RateLimitError
from deepseek_kit._wire.tokens import estimate_utf8_tokens

from .base import (
    NEUTRAL,
    RATE_LIMITED,
    Adaptive,
    LimitBackendError,
    LimiterBackend,
    Limits,
    LimitState,
    QueueTimeoutError,
)

# The vocabulary lives in `base.py`; the names are re-exported here for existing imports.
__all__ = [
    "Adaptive",
    "LimitBackendError",
    "LimitState",
    "LimitStep",
    "Limits",
    "QueueTimeoutError",
    "estimate_tokens",
]


# -- token estimate (https://api-docs.deepseek.com/quick_start/token_usage) ---------------------


class _ModelAndMaxTokens(msgspec.Struct):
    """The two fields of a request body the step reads (msgspec skips the rest unbuilt)."""

    model: str = ""
    max_tokens: int | None = None


_model_and_max_tokens_decoder = msgspec.json.Decoder(_ModelAndMaxTokens)


def _read_model_and_max_tokens(body: bytes | None) -> _ModelAndMaxTokens | None:
    if not body:
        return None
    try:
        return _model_and_max_tokens_decoder.decode(body)
    except msgspec.DecodeError:
        return None


def estimate_tokens(body: bytes | None, default_max_tokens: int = 4096) -> int:
    """Tokens a request may use: its JSON body's characters at DeepSeek's ratios (the one estimate,
    `_wire/tokens.estimate_utf8_tokens`; the JSON syntax stands in for the chat template) plus
    `max_tokens` (or `default_max_tokens`). Corrected by the returned usage once the response is
    complete."""
    return _estimate(body, _read_model_and_max_tokens(body), default_max_tokens)


def _estimate(body: bytes | None, fields: _ModelAndMaxTokens | None, default_max_tokens: int) -> int:
    if not body:
        return 0
    out = default_max_tokens if fields is None or fields.max_tokens is None else max(fields.max_tokens, 0)
    return estimate_utf8_tokens(body) + out


# -- the step ------------------------------------------------------------------------------------


class LimitStep:
    """Pipeline step enforcing `Limits` (`AsyncClient(limits=...)`), once per attempt, inside retry.

    `api_key` is the client's key, used only for `per=("key",)` scopes (hashed): the auth step
    below this one has not added the header yet. `backend` replaces the one `limits` implies.
    `routed`: the client has endpoints, so `per=None` means per endpoint."""

    def __init__(self, limits: Limits, *, api_key: str | None = None,
                 backend: LimiterBackend | None = None, routed: bool = False) -> None:
        self.limits = limits
        self._per: tuple[str, ...] = limits.per if limits.per is not None else (
            ("endpoint",) if routed else ())
        self._api_key = api_key
        self._key_hashes: dict[str, str] = {}
        self._active = limits.active
        self._need_tokens = limits.tpm is not None
        self._need_fields = self._need_tokens or "model" in self._per
        if backend is None:
            if limits.redis_url is not None:
                from .redis import RedisLimiter

                backend = RedisLimiter(limits)
            else:
                from .local import LocalLimiter

                backend = LocalLimiter(limits)
        self.backend = backend

    def scope(self, request: Request, model: str | None = None) -> str:
        """The quota a request counts against: the name, then the `per` parts."""
        per = self._per
        if not per:
            return self.limits.name
        parts = [self.limits.name]
        for p in per:
            if p == "endpoint":
                ep = request.endpoint
                parts.append(str(getattr(ep, "name", None) or request.origin))
            elif p == "key":
                parts.append(self._key_hash(request))
            else:
                if model is None:
                    fields = _read_model_and_max_tokens(request.body)
                    model = fields.model if fields is not None else ""
                parts.append(model or "-")
        return "|".join(parts).replace("{", "(").replace("}", ")")

    def _key_hash(self, request: Request) -> str:
        key = getattr(request.endpoint, "api_key", None)
        if not key:
            auth = request.headers.get("Authorization", "")
            key = auth[7:] if auth.startswith("Bearer ") else self._api_key
        if not key:
            return "nokey"
        h = self._key_hashes.get(key)
        if h is None:
            h = self._key_hashes[key] = hashlib.sha256(key.encode()).hexdigest()[:16]
        return h

    async def handle(self, request: Request, call_next: CallNext) -> Response:
        """Wait for a turn within the limits (requests, tokens and calls in flight of the request's
        scope), then pass the request on; the lease is released, and the token estimate corrected by the
        real usage, when the response completes. `QueueTimeoutError` when the turn does not come within
        `max_queue_wait`."""
        if not self._active:
            return await call_next(request)
        lim = self.limits
        tokens = 0
        model = None
        if self._need_fields:
            fields = _read_model_and_max_tokens(request.body)
            model = fields.model if fields is not None else ""
            if self._need_tokens:
                tokens = _estimate(request.body, fields, lim.default_max_tokens)
        budget = lim.max_queue_wait
        opts = request.options
        if opts.get("failover") and lim.failover_wait is not None:
            # Another endpoint can take this call: do not queue behind this one (a hung endpoint
            # keeps its slots until its calls time out), let the router move on.
            budget = lim.failover_wait if budget is None else min(budget, lim.failover_wait)
        deadline = opts.get("deadline")
        if deadline is not None:
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            budget = left if budget is None else min(budget, left)
        scope = self.scope(request, model)
        try:
            lease = await self.backend.acquire(scope, tokens, budget)
        except QueueTimeoutError as exc:
            if "endpoint" in self._per and request.endpoint is not None:
                exc.endpoint = getattr(request.endpoint, "name", None)
            raise
        try:
            resp = await call_next(request)
        except RateLimitError:
            lease.finish(0, RATE_LIMITED if lim.adaptive is not None else NEUTRAL)
            raise
        except APIStatusError:
            lease.finish(0, NEUTRAL)  # an error answer used no tokens
            raise
        except BaseException:
            lease.finish(None, NEUTRAL)  # it may have reached the server: keep the estimate
            raise
        resp.add_done_callback(lease)  # frees the slot when the response is complete
        return resp

    async def state(self, request: Request | None = None, *, scope: str | None = None) -> LimitState:
        """The current state of the quota `request` (or `scope`, default the plain name) counts
        against."""
        if scope is None:
            scope = self.scope(request) if request is not None else self.limits.name
        return await self.backend.state(scope)

    async def aclose(self) -> None:
        """Let pending releases reach the shared store and close its connections."""
        await self.backend.aclose()


