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

#: latencies kept for the percentiles: the newest this many within the window. Counts and rates
#: come from 10-second buckets and stay exact whatever the traffic; this cap keeps memory bounded
#: and a snapshot (one sort) to a few milliseconds.
MAX_SAMPLES = 20_000
BUCKET = 10  # seconds per bucket of the rate chart


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The nearest-rank `p`-th percentile (0 < p <= 100) of already sorted values; None if empty.
    Nearest rank rather than interpolation: the answer is a latency some request really had."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class LiveStats:
    """The last `window` seconds of finished requests: counts per 10-second bucket, and (time,
    seconds, ttft) of the newest `MAX_SAMPLES` for the percentiles."""

    def __init__(self, window: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._samples: deque[tuple[float, float, float | None]] = deque(maxlen=MAX_SAMPLES)
        self._buckets: deque[list[int]] = deque()  # [bucket number, requests, errors], oldest first
        self._nbuckets = max(1, int(window // BUCKET))
        self.total = 0  # every request recorded since the start

    def record(self, seconds: float, ttft: float | None, status: int) -> None:
        """One finished request: its latency, its time to first token (streams) and its status."""
        now = self.clock()
        self._samples.append((now, seconds, ttft))
        b = int(now // BUCKET)
        if not self._buckets or self._buckets[-1][0] != b:
            self._buckets.append([b, 0, 0])
            self._trim(now)
        last = self._buckets[-1]
        last[1] += 1
        last[2] += status >= 400
        self.total += 1

    def _trim(self, now: float) -> None:
        edge = now - self.window
        while self._samples and self._samples[0][0] < edge:
            self._samples.popleft()
        first = int(now // BUCKET) - self._nbuckets
        while self._buckets and self._buckets[0][0] <= first:
            self._buckets.popleft()

    def snapshot(self) -> dict[str, Any]:
        """Counts, error rate and p50/p95/p99 of latency and TTFT (seconds) over the window, the
        request rate over the last minute, and a per-10-second series of request counts for the
        rate chart (oldest first)."""
        now = self.clock()
        self._trim(now)
        current = int(now // BUCKET)
        series = [0] * self._nbuckets
        n = errors = 0
        for b, count, errs in self._buckets:
            series[self._nbuckets - 1 - (current - b)] = count
            n += count
            errors += errs
        # the rate is that of the last minute (or of the whole window if shorter): recent enough to
        # show a change, long enough not to jump with every request
        rate_buckets = min(6, self._nbuckets)
        rate = sum(series[-rate_buckets:]) / (rate_buckets * BUCKET)
        latency = sorted(s[1] for s in self._samples)
        ttft = sorted(s[2] for s in self._samples if s[2] is not None)
        return {
            "window_seconds": self.window, "requests": n, "errors": errors, "total": self.total,
            "rate_per_second": rate, "error_rate": errors / n if n else 0.0,
            "latency": {f"p{p}": percentile(latency, p) for p in (50, 95, 99)},
            "ttft": {f"p{p}": percentile(ttft, p) for p in (50, 95, 99)},
            "series": series,
        }
