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

Recording is deferred: `add()` appends to a deque (thread-safe, nothing else on the call's path)
and the records are folded into the totals in batches, by the next reader or every 256 records.
Folding and reading hold a lock: the sync `Client` records on its loop thread while the caller
reads from its own.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .record import RequestRecord

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


class _EndpointTotals:
    __slots__ = ("attempts", "breaker_open", "errors", "failovers", "hedge_lost", "ok", "tries")

    def __init__(self) -> None:
        self.tries = self.attempts = self.ok = self.errors = self.failovers = 0
        self.hedge_lost = self.breaker_open = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


#: Route results that are no error of the endpoint's own.
_NOT_ERRORS = frozenset({"ok", "hedge_lost", "hedge_closed", "breaker_open"})


class _Totals:
    """The aggregates, changed only by `add()` under the summary's lock."""

    def __init__(self, window: float, reservoir: int) -> None:
        self.latency: deque[float] = deque(maxlen=reservoir)
        self.ttft: deque[float] = deque(maxlen=reservoir)
        self.tps: deque[float] = deque(maxlen=reservoir)
        self.requests = self.ok = self.attempts = self.retries = self.cache_hits = 0
        self.errors: dict[str, int] = {}
        self.outcomes: dict[str, int] = {}
        self.statuses: dict[int, int] = {}
        self.prompt = self.hit = self.miss = self.completion = self.reasoning = 0
        self.cost = Decimal(0)
        self.models: dict[str, _ModelTotals] = {}
        self.endpoints: dict[str, _EndpointTotals] = {}
        self.failovers = self.hedged = 0
        n = math.ceil(window) + 1
        self.bucket_sec = [-1] * n
        self.bucket_count = [0] * n
        self.first: float | None = None

    def add(self, now: float, r: RequestRecord) -> None:
        self.requests += 1
        a = r.attempts
        self.attempts += a
        if a > 1:  # cache hits make no attempt at all (attempts 0)
            self.retries += r.retries  # per endpoint: a failover is not a retry
        d = self.outcomes
        d[r.outcome] = d.get(r.outcome, 0) + 1
        if r.status is not None:
            st = self.statuses
            st[r.status] = st.get(r.status, 0) + 1
        # Per model; calls without one (GET /models, /user/balance) only count in the totals.
        key = r.model or ""
        m = self.models.get(key)
        if m is None:
            m = self.models[key] = _ModelTotals()
        m.requests += 1
        if r.error is not None:
            e = self.errors
            e[r.error] = e.get(r.error, 0) + 1
            m.errors += 1
        if r.route:
            self._add_route(r.route)
        ok = r.outcome == "ok"
        if ok:
            self.ok += 1
        if r.cache_hit:
            self.cache_hits += 1
        else:
            if ok:
                self.latency.append(r.latency)
                if r.output_tps is not None:
                    self.tps.append(r.output_tps)
            if r.ttft is not None:
                self.ttft.append(r.ttft)
            self.prompt += r.prompt_tokens
            self.hit += r.prompt_cache_hit_tokens
            self.miss += r.prompt_cache_miss_tokens
            self.completion += r.completion_tokens
            self.reasoning += r.reasoning_tokens
            m.prompt_tokens += r.prompt_tokens
            m.completion_tokens += r.completion_tokens
            if r.cost:
                self.cost += r.cost
                m.cost += r.cost
        sec = int(now)
        i = sec % len(self.bucket_sec)
        if self.bucket_sec[i] != sec:
            self.bucket_sec[i] = sec
            self.bucket_count[i] = 0
        self.bucket_count[i] += 1
        if self.first is None:
            self.first = now

    def _add_route(self, route: tuple[tuple[str, int, str], ...]) -> None:
        last = len(route) - 1
        hedged = False
        for i, (name, attempts, res) in enumerate(route):
            e = self.endpoints.get(name)
            if e is None:
                e = self.endpoints[name] = _EndpointTotals()
            e.tries += 1
            e.attempts += attempts
            if res == "ok":
                e.ok += 1
            elif res in ("hedge_lost", "hedge_closed"):
                hedged = True
                e.hedge_lost += res == "hedge_lost"
            elif res == "breaker_open":
                e.breaker_open += 1
            if res not in _NOT_ERRORS:
                e.errors += 1
            if i < last and res not in ("ok", "hedge_lost", "hedge_closed"):
                e.failovers += 1
                self.failovers += 1
        self.hedged += hedged


class Metrics:
    """Summary of finished calls. Read `snapshot()` (a plain dict), `str(metrics)` (a table) or
    the properties below; `reset()` starts over.

    `add()` only queues the record (a deque append: thread-safe, nothing else on the caller's
    path); queued records are folded into the totals in batches, by the next reader or every
    `_BATCH` records, so the per-call cost is paid in a tight loop instead of on the hot path.

    `window`: seconds over which QPS is counted. `reservoir`: how many recent calls the
    percentiles are computed over. `currency`: of `cost`. `clock`: monotonic seconds (tests)."""

    _BATCH = 256

    def __init__(self, *, window: float = 60.0, reservoir: int = 4096, currency: str = "CNY",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = float(window)
        self.reservoir = reservoir
        self.currency = currency
        self._lock = threading.Lock()
        self._clock = clock  # monotonic seconds, for QPS only
        self._pending: deque[tuple[float, RequestRecord]] = deque()
        self._t = _Totals(self.window, reservoir)

    def reset(self) -> None:
        """Forget everything counted so far (start a new measurement)."""
        with self._lock:
            self._pending.clear()
            self._t = _Totals(self.window, self.reservoir)

    def add(self, r: RequestRecord) -> None:
        """Count one finished call (the metrics step calls this; hooks see the same record)."""
        pending = self._pending
        pending.append((self._clock(), r))
        if len(pending) >= self._BATCH:
            self._fold()

    def _fold(self) -> _Totals:
        """Fold the queued records into the totals; returns them (read them under the lock)."""
        with self._lock:
            t = self._t
            pop = self._pending.popleft
            while True:
                try:
                    now, r = pop()
                except IndexError:
                    return t
                t.add(now, r)

    @property
    def requests(self) -> int:
        """Calls counted (finished, failed or broken)."""
        return self._fold().requests

    @property
    def ok(self) -> int:
        """Calls that succeeded."""
        return self._fold().ok

    @property
    def cost(self) -> Decimal:
        """Money spent by the counted calls, in the configured currency."""
        return self._fold().cost

    @property
    def cache_hits(self) -> int:
        """Calls answered by the client cache."""
        return self._fold().cache_hits

    @property
    def errors(self) -> dict[str, int]:
        """Calls that raised (or whose stream broke), by error class."""
        t = self._fold()
        with self._lock:
            return dict(t.errors)

    @property
    def errors_total(self) -> int:
        """Calls that raised or broke, all error classes together."""
        return sum(self.errors.values())

    @property
    def error_rate(self) -> float:
        """Share of calls that raised or broke, 0.0 to 1.0."""
        n = self.requests
        return self.errors_total / n if n else 0.0

    @property
    def cache_hit_rate(self) -> float:
        """Share of calls answered by the client cache."""
        t = self._fold()
        return t.cache_hits / t.requests if t.requests else 0.0

    @property
    def prompt_cache_hit_rate(self) -> float:
        """Share of prompt tokens DeepSeek served from its context
        cache (docs/deepseek-api-notes.md#context-caching)."""
        t = self._fold()
        seen = t.hit + t.miss
        return t.hit / seen if seen else 0.0

    def qps(self) -> float:
        """Finished calls per second over the last `window` seconds (or since the first call)."""
        t = self._fold()
        now = self._clock()
        with self._lock:
            if t.first is None:
                return 0.0
            # The buckets still in the ring cover from the start of the oldest one to now: a span
            # of `window` to `window + 1` seconds, exact at one-second resolution.
            oldest = int(now) - len(t.bucket_sec) + 1
            n = sum(c for s, c in zip(t.bucket_sec, t.bucket_count, strict=True) if s >= oldest)
            span = min(now - oldest, max(now - t.first, 1.0))
        return n / span

    def snapshot(self) -> dict[str, Any]:
        """Everything as a plain dict (costs are Decimal; latencies in seconds)."""
        qps = self.qps()
        t = self._fold()
        with self._lock:
            lat, ttft, tps = list(t.latency), list(t.ttft), list(t.tps)
            n = t.requests
            errors = dict(t.errors)
            seen = t.hit + t.miss
            out: dict[str, Any] = {
                "requests": n,
                "ok": t.ok,
                "errors": sum(errors.values()),
                "error_rate": sum(errors.values()) / n if n else 0.0,
                "errors_by_class": errors,
                "error_rate_by_class": {k: v / n for k, v in errors.items()},
                "outcomes": dict(t.outcomes),
                "statuses": dict(t.statuses),
                "attempts": t.attempts,
                "retries": t.retries,
                "qps": qps,
                "window_s": self.window,
                "tokens": {
                    "prompt": t.prompt,
                    "prompt_cache_hit": t.hit,
                    "prompt_cache_miss": t.miss,
                    "completion": t.completion,
                    "reasoning": t.reasoning,
                    "total": t.prompt + t.completion,
                },
                "prompt_cache_hit_rate": t.hit / seen if seen else 0.0,
                "cache_hits": t.cache_hits,
                "cache_hit_rate": t.cache_hits / n if n else 0.0,
                "cost": t.cost,
                "currency": self.currency,
                "failovers": t.failovers,
                "hedged": t.hedged,
                "by_endpoint": {k: e.as_dict() for k, e in t.endpoints.items()},
                "by_model": {
                    k: {"requests": m.requests, "errors": m.errors, "prompt_tokens": m.prompt_tokens,
                        "completion_tokens": m.completion_tokens, "cost": m.cost}
                    for k, m in t.models.items() if k
                },
            }
        out["latency_s"] = _summary(lat)
        out["ttft_s"] = _summary(ttft)
        out["output_tokens_per_s"] = _summary(tps)
        return out

    def __repr__(self) -> str:
        s = self.snapshot()
        return f"Metrics(requests={s['requests']}, errors={s['errors']}, cost={s['cost']} {self.currency})"

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
        if s["by_endpoint"]:
            lines.append(f"endpoints: {s['failovers']} failovers, {s['hedged']} hedged calls")
            for name, e in s["by_endpoint"].items():
                lines.append(f"  {name}: {e['attempts']} attempts in {e['tries']} tries, {e['ok']} ok, "
                             f"{e['errors']} errors, {e['failovers']} failed over, {e['hedge_lost']} "
                             f"hedges lost, {e['breaker_open']} skipped (breaker open)")
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
