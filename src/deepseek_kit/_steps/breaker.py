"""Per-endpoint health: a circuit breaker and the latency statistics routing strategies use.

Breaker states: closed (traffic flows) -> open after `failures` consecutive failures, or when the
error rate over the last `window` outcomes reaches `error_rate` (with at least `min_requests`
outcomes) -> after `open_for` seconds half-open: exactly one probe request is let through; its
success closes the breaker, its failure opens it again for another `open_for`.

Only failures that say something about the endpoint's health count (5xx, 429, connection errors,
timeouts); a 400/401/402/422 is the caller's problem and counts as neither success nor failure.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from deepseek_kit._wire.errors import UsageError

__all__ = ["BreakerPolicy", "CircuitBreaker", "EndpointStats"]


@dataclass(frozen=True)
class BreakerPolicy:
    """When an endpoint's circuit breaker opens and for how long: `Endpoint(breaker=BreakerPolicy(...))`.

    It opens after `failures` consecutive failures, or when at least `error_rate` of the last
    `window` outcomes failed (once `min_requests` outcomes are in); `open_for` seconds later one probe
    request is let through, whose success closes it again. Only failures that say something about the
    endpoint count (5xx, 429, connection errors, timeouts), never a 400/401/402/422."""

    failures: int = 5
    error_rate: float = 0.5
    window: int = 20
    min_requests: int = 10
    open_for: float = 30.0

    def __post_init__(self) -> None:
        if self.failures < 1 or self.window < 1 or not 0 < self.error_rate <= 1 or self.open_for <= 0:
            raise UsageError("BreakerPolicy: failures and window >= 1, 0 < error_rate <= 1, open_for > 0")


class CircuitBreaker:
    __slots__ = ("_opened_at", "_outcomes", "_probe_out", "consecutive", "policy", "state", "transitions")

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.state = "closed"
        self.consecutive = 0
        self._outcomes: deque[bool] = deque(maxlen=policy.window)
        self._opened_at = 0.0
        self._probe_out = False
        self.transitions: list[str] = []  # history of states entered, for observability and tests

    def _enter(self, state: str) -> None:
        self.state = state
        self.transitions.append(state)

    def allow(self, now: float | None = None) -> bool:
        """May a request go to this endpoint now? In half-open, only one probe at a time."""
        if self.state == "closed":
            return True
        now = time.monotonic() if now is None else now
        if self.state == "open":
            if now - self._opened_at < self.policy.open_for:
                return False
            self._enter("half_open")
            self._probe_out = False
        if self._probe_out:
            return False
        self._probe_out = True
        return True

    def current_state(self, now: float | None = None) -> str:
        """The state as a reader should see it: an open breaker whose `open_for` has passed is
        half-open (it lets the next call through as a probe) even before a call asked."""
        if self.state == "open":
            now = time.monotonic() if now is None else now
            if now - self._opened_at >= self.policy.open_for:
                return "half_open"
        return self.state

    def reopens_in(self, now: float | None = None) -> float | None:
        """While open: seconds until a probe may go through."""
        if self.state != "open":
            return None
        now = time.monotonic() if now is None else now
        return max(0.0, self._opened_at + self.policy.open_for - now)

    def neutral(self) -> None:
        """The call ended saying nothing about health (a 400, a cancelled call): a half-open
        probe slot is given back, or the endpoint would never be probed again."""
        self._probe_out = False

    def success(self) -> None:
        self.consecutive = 0
        self._outcomes.append(True)
        if self.state != "closed":
            self._enter("closed")
            self._outcomes.clear()
        self._probe_out = False

    def failure(self, now: float | None = None) -> None:
        self.consecutive += 1
        self._outcomes.append(False)
        self._probe_out = False
        p = self.policy
        if self.state == "half_open":
            self._open(now)
            return
        if self.state == "closed":
            bad = self._outcomes.count(False)
            if self.consecutive >= p.failures or (
                    len(self._outcomes) >= p.min_requests and bad / len(self._outcomes) >= p.error_rate):
                self._open(now)

    def _open(self, now: float | None) -> None:
        self._opened_at = time.monotonic() if now is None else now
        self._enter("open")


class EndpointStats:
    """Time to first token (EWMA and recent samples for p95), requests in flight, and the tries
    sent and failed (for `EndpointHealth`)."""

    __slots__ = ("_p95", "_samples", "ewma_ttft", "failures", "in_flight", "last_ok", "requests")

    def __init__(self) -> None:
        self.ewma_ttft: float | None = None
        self._samples: deque[float] = deque(maxlen=200)
        self._p95: float | None = None
        self.in_flight = 0
        self.requests = 0
        self.failures = 0
        self.last_ok = float("-inf")  # loop time of the last answer (a queue timeout after it is "busy")

    def observe_ttft(self, seconds: float) -> None:
        self.ewma_ttft = seconds if self.ewma_ttft is None else 0.8 * self.ewma_ttft + 0.2 * seconds
        self._samples.append(seconds)
        self._p95 = None

    def p95_ttft(self) -> float | None:
        if self._p95 is None and self._samples:
            s = sorted(self._samples)
            self._p95 = s[min(len(s) - 1, int(0.95 * len(s)))]
        return self._p95
