"""`LiveStats`: a rolling window of the requests this worker finished, for the dashboard's live
panel (request rate, error rate, latency and time-to-first-token percentiles).

The gateway calls `record` once per finished request (app.py, next to the Prometheus observation);
the dashboard reads `snapshot`. Each worker keeps its own window: it is cheap (one tuple appended
per request, old ones dropped from the left) and needs no shared store; Prometheus (`/metrics`) is
the place for fleet-wide numbers.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["LiveStats", "percentile"]

#: at most this many requests are kept, whatever the window, so a burst cannot grow memory unbounded
MAX_SAMPLES = 100_000


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The nearest-rank `p`-th percentile (0 < p <= 100) of already sorted values; None if empty.
    Nearest rank rather than interpolation: the answer is a latency some request really had."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class LiveStats:
    """The last `window` seconds of finished requests: (time, seconds, ttft, status)."""

    def __init__(self, window: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._samples: deque[tuple[float, float, float | None, int]] = deque(maxlen=MAX_SAMPLES)
        self.total = 0  # every request recorded since the start, for a sanity check in the page

    def record(self, seconds: float, ttft: float | None, status: int) -> None:
        """One finished request: its latency, its time to first token (streams) and its status."""
        self._samples.append((self.clock(), seconds, ttft, status))
        self.total += 1

    def _trim(self, now: float) -> None:
        edge = now - self.window
        while self._samples and self._samples[0][0] < edge:
            self._samples.popleft()

    def snapshot(self) -> dict[str, Any]:
        """Counts, error rate and p50/p95/p99 of latency and TTFT (seconds) over the window, the
        request rate over the last minute, and a per-10-second series of request counts for the
        rate chart (oldest first)."""
        now = self.clock()
        self._trim(now)
        samples = list(self._samples)
        n = len(samples)
        errors = sum(1 for s in samples if s[3] >= 400)
        latency = sorted(s[1] for s in samples)
        ttft = sorted(s[2] for s in samples if s[2] is not None)
        # the rate is that of the last minute (or of the whole window if shorter): recent enough to
        # show a change, long enough not to jump with every request
        rate_span = min(60.0, self.window)
        recent = sum(1 for s in samples if s[0] >= now - rate_span)
        buckets = max(1, int(self.window // 10))
        series = [0] * buckets
        for t, *_ in samples:
            i = buckets - 1 - int((now - t) // 10)
            if 0 <= i < buckets:
                series[i] += 1
        return {
            "window_seconds": self.window, "requests": n, "errors": errors, "total": self.total,
            "rate_per_second": recent / rate_span, "error_rate": errors / n if n else 0.0,
            "latency": {f"p{p}": percentile(latency, p) for p in (50, 95, 99)},
            "ttft": {f"p{p}": percentile(ttft, p) for p in (50, 95, 99)},
            "series": series,
        }
