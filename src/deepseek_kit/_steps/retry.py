"""`RetryPolicy` and the retry step: the single owner of retries in the pipeline.

Retried: 408/409/429/500/502/503/504, connection errors, timeouts and empty 200 bodies
(docs/deepseek-api-notes.md#streaming-and-keep-alives, #errors-and-status-codes).
Never retried: 400/401/402/404/422 (402 Insufficient Balance must
never be retried, docs/deepseek-api-notes.md#errors-and-status-codes).
A stream is only retried before its first event reached the caller: the
attempt step reads that event before returning, and nothing after it passes back through here.

Backoff is exponential with full jitter (delay = uniform(0, min(max_delay, initial * 2**n))),
bounded in attempts and in total time; a server's Retry-After / retry-after-ms wins when present
(capped by `max_retry_after`). Both headers are read by one parser, `retry_after_seconds`, which
ignores anything that is not a finite number >= 0 (`nan`, `inf`, `-1`, garbage: the backoff
applies instead), so no NaN or infinite delay can reach a comparison with the deadline or
`asyncio.sleep` (a NaN timer corrupts the default loop's timer heap and is a ValueError on uvloop).
The call's deadline (`options["deadline"]`, set once per call by the client) bounds every wait: a
retry whose delay would end past it is not attempted.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from deepseek_kit._transport.request import Request, Response
from deepseek_kit._wire.errors import APIConnectionError, APIStatusError, APITimeoutError, UsageError

from .base import CallNext

__all__ = ["RetryPolicy", "RetryStep"]

DEFAULT_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})



@dataclass(frozen=True)
class RetryPolicy:
    """How to retry: `AsyncClient(retry=RetryPolicy(...))`. `max_retries` counts retries after the
    first attempt (so attempts = max_retries + 1); `max_elapsed` bounds the time spent across all
    attempts and waits. Waits grow from `initial_delay` up to `max_delay` seconds (exponential
    backoff, full jitter). `retry_statuses`: the status codes worth another try (connection errors
    and timeouts always are). `respect_retry_after`: wait what a Retry-After header asks, at most
    `max_retry_after` seconds."""

    max_retries: int = 4
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_elapsed: float | None = 120.0
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    respect_retry_after: bool = True
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        mr = self.max_retries
        if not isinstance(mr, int) or isinstance(mr, bool) or mr < 0:
            raise UsageError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")
        for name in ("initial_delay", "max_delay", "max_retry_after"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v < math.inf:
                raise UsageError(f"RetryPolicy.{name} must be a finite number of seconds >= 0, got {v!r}")
        me = self.max_elapsed
        if me is not None and (not isinstance(me, (int, float)) or not me > 0):  # nan fails too
            raise UsageError(f"RetryPolicy.max_elapsed must be a positive number of seconds or None, "
                             f"got {me!r}")

    def is_retryable(self, exc: BaseException) -> bool:
        """True for connection errors and timeouts, and for status errors whose code is in
        `retry_statuses` (408, 409, 429, 500, 502, 503, 504 by default)."""
        if getattr(exc, "final", False):
            return False  # an answer that retrying cannot change (e.g. a token endpoint's lock-out)
        if isinstance(exc, APIStatusError):
            return exc.status_code in self.retry_statuses
        return isinstance(exc, APIConnectionError)

    def backoff(self, retry_number: int) -> float:
        """Full-jitter delay before retry number `retry_number` (0-based)."""
        cap = min(self.max_delay, self.initial_delay * (2 ** min(retry_number, 30)))
        return random.uniform(0.0, cap)

    def delay_for(self, exc: BaseException, retry_number: int) -> float:
        """Seconds to wait before the retry: the server's Retry-After (capped by
        `max_retry_after`) when it gave a usable one, else the backoff. Always finite and >= 0."""
        if self.respect_retry_after and isinstance(exc, APIStatusError):
            ra = retry_after_seconds(exc.headers)
            if ra is not None:
                return min(ra, self.max_retry_after)
        return self.backoff(retry_number)


def moves_at_once(exc: BaseException) -> bool:
    """Errors that mean "this endpoint cannot serve now": with another endpoint available, the
    router moves the call there instead of retrying here. 429 is one: DeepSeek sends it when the
    account is at its rate or concurrency limit, which another endpoint (account) is not."""
    if isinstance(exc, APITimeoutError):
        return exc.which in ("connect", "first_token")
    if isinstance(exc, APIStatusError):
        return exc.status_code in (429, 503)
    return isinstance(exc, APIConnectionError)


def _finite(v: float) -> float | None:
    return v if 0.0 <= v < math.inf else None  # also None for nan (every comparison is False)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` (milliseconds) or `Retry-After` (seconds or an HTTP date);
    None when neither gives a finite value >= 0 (the caller then uses its backoff)."""
    get = headers.get
    ms = get("retry-after-ms") or get("Retry-After-Ms")
    if ms:
        try:
            v = _finite(float(ms) / 1000.0)
        except ValueError:
            v = None
        if v is not None:
            return v
    ra = get("retry-after") or get("Retry-After")
    if not ra:
        return None
    try:
        return _finite(float(ra))  # a number, usable or not: never read as a date
    except ValueError:
        pass
    import email.utils  # only for the rare HTTP-date form; keeps `import deepseek_kit` light

    try:
        dt = email.utils.parsedate_to_datetime(ra)
        return _finite(max(0.0, dt.timestamp() - time.time()))
    except (TypeError, ValueError, OverflowError):
        return None


class RetryStep:
    """Pipeline step. The request's `max_retries` (per call) overrides the policy's."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    async def handle(self, request: Request, call_next: CallNext) -> Response:
        policy = self.policy
        retries = policy.max_retries if request.max_retries is None else request.max_retries
        loop = asyncio.get_running_loop()
        start = loop.time()
        total = request.timeout.total
        if total is not None and "deadline" not in request.options:
            request.options["deadline"] = start + total
        deadline = request.options.get("deadline")
        budget_end = start + policy.max_elapsed if policy.max_elapsed is not None else None
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = await call_next(request)
            except (APIStatusError, APIConnectionError) as exc:
                exc.attempts = attempt
                if attempt > retries or not policy.is_retryable(exc):
                    raise
                delay = policy.delay_for(exc, attempt - 1)
                if request.options.get("failover") and (moves_at_once(exc) or delay > policy.max_delay):
                    # Another endpoint can take the call: move there now rather than retry here
                    # ("cannot serve now"), or wait out a Retry-After longer than our own backoff.
                    raise
                now = loop.time()
                ends = [t for t in (deadline, budget_end) if t is not None]
                # `not <` rather than `>=`: should a NaN ever get here, it stops the retries.
                if ends and not now + delay < min(ends):
                    raise
                if not 0.0 <= delay < math.inf:
                    raise
                await asyncio.sleep(delay)
                continue
            resp.attempts = attempt
            return resp
