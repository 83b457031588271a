"""`Metrics`: the in-process summary of a client's calls (`client.metrics`).

Counts, error rates by class, token totals, cost (Decimal, exact), cache hit rates, QPS over a
window, and p50/p95/p99 of latency, time to first token and output tokens/s.

Percentiles are exact over a bounded reservoir of the most recent N samples (a ring buffer,
default 4096), not a streaming sketch (t-digest, DDSketch). Why: adding a sample must be close to
free on the hot path, and a deque append is one C call, where a sketch insert is a logarithm and a
dict update in Python per call (or a compiled dependency); percentiles are computed only when
someone reads them (a sort of N floats, well under a millisecond). And "recent" is what an operator
wants from a live client: an all-time sketch lets hours of good traffic hide a regression. The
interpolation is the usual linear one between closest ranks (numpy's default, `statistics.
quantiles(method="inclusive")`), written out because the stdlib's needs two samples and computes
all 99 cut points.

QPS counts finished calls in per-second buckets over the last `window` seconds (memory bounded by
the window, not the rate). Latency and TTFT percentiles include only successful calls answered by
the API: errors are counted by class instead, and client-cache hits (near-zero latency) by their
own rate. Token totals and cost count what DeepSeek billed, so cache hits add neither.

Thread-safe: the sync `Client` records on its loop thread while the caller reads from its own.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._metrics import RequestRecord

__all__ = ["Metrics", "percentile"]

QUANTILES = (50, 95, 99)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of already sorted values, linear between closest ranks."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of no values")
    h = (n - 1) * q / 100.0
    lo = math.floor(h)
    if lo >= n - 1:
        return float(sorted_values[-1])
    a, b = sorted_values[lo], sorted_values[lo + 1]
    return float(a + (h - lo) * (b - a))


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"samples": 0, **{f"p{q}": None for q in QUANTILES}, "max": None}
    values.sort()
    return {"samples": len(values), **{f"p{q}": percentile(values, q) for q in QUANTILES},
            "max": values[-1]}


class _ModelTotals:
    __slots__ = ("completion_tokens", "cost", "errors", "prompt_tokens", "requests")

    def __init__(self) -> None:
        self.requests = self.errors = self.prompt_tokens = self.completion_tokens = 0
        self.cost = Decimal(0)


class Metrics:
    """Summary of finished calls. Read `snapshot()` (a plain dict) or `str(metrics)` (a table);
    `reset()` starts over."""

    def __init__(self, *, window: float = 60.0, reservoir: int = 4096, currency: str = "CNY",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = float(window)
        self.reservoir = reservoir
        self.currency = currency
        self._lock = threading.Lock()
        self._clock = clock  # monotonic seconds, for QPS only
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._latency: deque[float] = deque(maxlen=self.reservoir)
            self._ttft: deque[float] = deque(maxlen=self.reservoir)
            self._tps: deque[float] = deque(maxlen=self.reservoir)
            self.requests = 0
            self.ok = 0
            self.attempts = 0
            self.retries = 0
            self.cache_hits = 0
            self.errors: Counter[str] = Counter()
            self.outcomes: Counter[str] = Counter()
            self.statuses: Counter[int] = Counter()
            self.prompt_tokens = self.prompt_cache_hit_tokens = self.prompt_cache_miss_tokens = 0
            self.completion_tokens = self.reasoning_tokens = 0
            self.cost = Decimal(0)
            self._models: dict[str, _ModelTotals] = {}
            n = math.ceil(self.window) + 1
            self._bucket_sec = [-1] * n
            self._bucket_count = [0] * n
            self._first: float | None = None

    def add(self, r: RequestRecord) -> None:
        """Count one finished call (the metrics step calls this; hooks see the same record)."""
        now = self._clock()
        with self._lock:
            self.requests += 1
            self.attempts += r.attempts
            if r.attempts > 1:  # cache hits make no attempt at all (attempts 0)
                self.retries += r.attempts - 1
            self.outcomes[r.outcome] += 1
            if r.status is not None:
                self.statuses[r.status] += 1
            if r.error is not None:
                self.errors[r.error] += 1
            # Per model; calls without one (GET /models, /user/balance) only count in the totals.
            m = self._models.get(r.model or "")
            if m is None:
                m = self._models[r.model or ""] = _ModelTotals()
            m.requests += 1
            if r.outcome == "ok":
                self.ok += 1
            elif r.error is not None:
                m.errors += 1
            if r.cache_hit:
                self.cache_hits += 1
            else:
                if r.outcome == "ok":
                    self._latency.append(r.latency)
                    if r.output_tps is not None:
                        self._tps.append(r.output_tps)
                if r.ttft is not None:
                    self._ttft.append(r.ttft)
                self.prompt_tokens += r.prompt_tokens
                self.prompt_cache_hit_tokens += r.prompt_cache_hit_tokens
                self.prompt_cache_miss_tokens += r.prompt_cache_miss_tokens
                self.completion_tokens += r.completion_tokens
                self.reasoning_tokens += r.reasoning_tokens
                m.prompt_tokens += r.prompt_tokens
                m.completion_tokens += r.completion_tokens
                if r.cost:
                    self.cost += r.cost
                    m.cost += r.cost
            sec = int(now)
            i = sec % len(self._bucket_sec)
            if self._bucket_sec[i] != sec:
                self._bucket_sec[i] = sec
                self._bucket_count[i] = 0
            self._bucket_count[i] += 1
            if self._first is None:
                self._first = now

    def qps(self) -> float:
        """Finished calls per second over the last `window` seconds (or since the first call)."""
        now = self._clock()
        with self._lock:
            if self._first is None:
                return 0.0
            # The buckets still in the ring cover from the start of the oldest one to now: a span
            # of `window` to `window + 1` seconds, exact at one-second resolution.
            oldest = int(now) - len(self._bucket_sec) + 1
            n = sum(c for s, c in zip(self._bucket_sec, self._bucket_count, strict=True) if s >= oldest)
            span = min(now - oldest, max(now - self._first, 1.0))
        return n / span

    @property
    def errors_total(self) -> int:
        return sum(self.errors.values())

    @property
    def error_rate(self) -> float:
        return self.errors_total / self.requests if self.requests else 0.0

    @property
    def cache_hit_rate(self) -> float:
        """Share of calls answered by the client cache."""
        return self.cache_hits / self.requests if self.requests else 0.0

    @property
    def prompt_cache_hit_rate(self) -> float:
        """Share of prompt tokens DeepSeek served from its context cache (§5.8)."""
        seen = self.prompt_cache_hit_tokens + self.prompt_cache_miss_tokens
        return self.prompt_cache_hit_tokens / seen if seen else 0.0

    def snapshot(self) -> dict[str, Any]:
        """Everything as a plain dict (costs are Decimal; latencies in seconds)."""
        qps = self.qps()
        with self._lock:
            lat, ttft, tps = list(self._latency), list(self._ttft), list(self._tps)
            n = self.requests
            errors = dict(self.errors)
            out: dict[str, Any] = {
                "requests": n,
                "ok": self.ok,
                "errors": sum(errors.values()),
                "error_rate": sum(errors.values()) / n if n else 0.0,
                "errors_by_class": errors,
                "error_rate_by_class": {k: v / n for k, v in errors.items()},
                "outcomes": dict(self.outcomes),
                "statuses": dict(self.statuses),
                "attempts": self.attempts,
                "retries": self.retries,
                "qps": qps,
                "window_s": self.window,
                "tokens": {
                    "prompt": self.prompt_tokens,
                    "prompt_cache_hit": self.prompt_cache_hit_tokens,
                    "prompt_cache_miss": self.prompt_cache_miss_tokens,
                    "completion": self.completion_tokens,
                    "reasoning": self.reasoning_tokens,
                    "total": self.prompt_tokens + self.completion_tokens,
                },
                "prompt_cache_hit_rate": self.prompt_cache_hit_rate,
                "cache_hits": self.cache_hits,
                "cache_hit_rate": self.cache_hits / n if n else 0.0,
                "cost": self.cost,
                "currency": self.currency,
                "by_model": {
                    k: {"requests": m.requests, "errors": m.errors, "prompt_tokens": m.prompt_tokens,
                        "completion_tokens": m.completion_tokens, "cost": m.cost}
                    for k, m in self._models.items() if k
                },
            }
        out["latency_s"] = _summary(lat)
        out["ttft_s"] = _summary(ttft)
        out["output_tokens_per_s"] = _summary(tps)
        return out

    def __repr__(self) -> str:
        return (f"Metrics(requests={self.requests}, errors={self.errors_total}, "
                f"cost={self.cost} {self.currency})")

    def __str__(self) -> str:
        s = self.snapshot()
        lines = [f"{s['requests']} requests ({s['ok']} ok), {s['qps']:.2f} req/s over the last "
                 f"{s['window_s']:g} s, {s['retries']} retries, error rate {s['error_rate']:.1%}"]
        lines.append(f"{'':<18}{'p50':>10}{'p95':>10}{'p99':>10}{'max':>10}{'n':>8}")
        for key, label, unit in (("latency_s", "latency", "s"), ("ttft_s", "first token", "s"),
                                 ("output_tokens_per_s", "output tok/s", "")):
            row = s[key]
            cells = "".join(f"{_fmt(row[c], unit):>10}" for c in ("p50", "p95", "p99", "max"))
            lines.append(f"{label:<18}{cells}{row['samples']:>8}")
        if s["errors_by_class"]:
            lines.append("errors: " + ", ".join(
                f"{k} {v} ({s['error_rate_by_class'][k]:.1%})"
                for k, v in sorted(s["errors_by_class"].items(), key=lambda kv: -kv[1])))
        t = s["tokens"]
        lines.append(f"tokens: prompt {t['prompt']:,} (cache hit {t['prompt_cache_hit']:,} / miss "
                     f"{t['prompt_cache_miss']:,}, {s['prompt_cache_hit_rate']:.1%} hit), completion "
                     f"{t['completion']:,} (reasoning {t['reasoning']:,})")
        lines.append(f"cost: {s['cost']:f} {s['currency']}; client cache hits {s['cache_hits']} "
                     f"({s['cache_hit_rate']:.1%})")
        for model, m in sorted(s["by_model"].items()):
            lines.append(f"  {model}: {m['requests']} requests, {m['errors']} errors, "
                         f"{m['prompt_tokens']:,} + {m['completion_tokens']:,} tokens, "
                         f"{m['cost']:f} {s['currency']}")
        return "\n".join(lines)


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "s":
        return f"{v * 1000:.1f}ms" if v < 1 else f"{v:.2f}s"
    return f"{v:.1f}"
