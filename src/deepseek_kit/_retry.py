"""`RetryPolicy` and the retry step: the single owner of retries in the pipeline.

Retried: 408/409/429/500/502/503/504, connection errors, timeouts and empty 200 bodies
(deepseek-api.md §4.4, §6.1). Never retried: 400/401/402/404/422 (402 Insufficient Balance must
never be retried, §8.9). A stream is only retried before its first event reached the caller: the
attempt step reads that event before returning, and nothing after it passes back through here.

Backoff is exponential with full jitter (delay = uniform(0, min(max_delay, initial * 2**n))),
bounded in attempts and in total time; a server's Retry-After / retry-after-ms wins when present
(capped by `max_retry_after`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from ._errors import APIConnectionError, APIStatusError, APITimeoutError, UsageError
from ._request import Request, Response

__all__ = ["RetryPolicy", "RetryStep"]

DEFAULT_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})

CallNext = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class RetryPolicy:
    """How to retry. `max_retries` counts retries after the first attempt (so attempts =
    max_retries + 1); `max_elapsed` bounds the time spent across all attempts and waits."""

    max_retries: int = 4
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_elapsed: float | None = 120.0
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    respect_retry_after: bool = True
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise UsageError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise UsageError("retry delays must be >= 0")

    def is_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, APIStatusError):
            return exc.status_code in self.retry_statuses
        return isinstance(exc, APIConnectionError)

    def backoff(self, retry_number: int) -> float:
        """Full-jitter delay before retry number `retry_number` (0-based)."""
        cap = min(self.max_delay, self.initial_delay * (2 ** min(retry_number, 30)))
        return random.uniform(0.0, cap)

    def delay_for(self, exc: BaseException, retry_number: int) -> float:
        if self.respect_retry_after and isinstance(exc, APIStatusError):
            ra = retry_after_seconds(exc.headers)
            if ra is not None:
                return min(max(ra, 0.0), self.max_retry_after)
        return self.backoff(retry_number)


def moves_at_once(exc: BaseException) -> bool:
    """Errors that mean "this endpoint cannot serve now": with another endpoint available, the
    router moves the call there instead of retrying here."""
    if isinstance(exc, APITimeoutError):
        return exc.which in ("connect", "first_token")
    if isinstance(exc, APIStatusError):
        return exc.status_code == 503
    return isinstance(exc, APIConnectionError)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` (milliseconds) or `Retry-After` (seconds or an HTTP date)."""
    get = headers.get
    ms = get("retry-after-ms") or get("Retry-After-Ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    ra = get("retry-after") or get("Retry-After")
    if not ra:
        return None
    try:
        return float(ra)
    except ValueError:
        pass
    import email.utils  # only for the rare HTTP-date form; keeps `import deepseek_kit` light

    try:
        dt = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    return max(0.0, dt.timestamp() - time.time())


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
                if request.options.get("failover") and moves_at_once(exc):
                    raise  # the router sends it to the next endpoint instead (issue 3 item 1)
                delay = policy.delay_for(exc, attempt - 1)
                now = loop.time()
                ends = [t for t in (deadline, budget_end) if t is not None]
                if ends and now + delay >= min(ends):
                    raise
                await asyncio.sleep(delay)
                continue
            resp.attempts = attempt
            return resp
