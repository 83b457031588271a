"""Endpoints and routing: DeepSeek cloud next to private deployments (vLLM, SGLang, Ollama,
llama.cpp, another deepseek-kit gateway), each with its own base URL, auth, model names, weight and
priority.

The router step sits outside retry (why: `_client/pipeline.py`). For each call it orders the
endpoints by the strategy (priority failover, weighted, least TTFT, least in flight;
`options["only_endpoints"]` restricts them), skips those whose circuit breaker is open, and sends
the call to the first; a failure that says "this endpoint cannot serve now" (503, connection
failure, first-token timeout, a full endpoint's `QueueTimeoutError`) moves to the next endpoint at
once — the retry and limits steps below are told so through `request.options["failover"]` and
neither retry nor queue then — while a 400/401/402/422 is the caller's problem and never fails over.
With hedging on, when the first token has not come after a delay (by default that endpoint's p95
time to first token), a second endpoint is raced; the first to answer wins and the other is
cancelled (or closed, if it answered too). When every endpoint fails: `AllEndpointsFailedError` with
each attempt.

All of it spends one deadline (`options["deadline"]`, set once per call from `Timeout.total`): no
endpoint is tried after it. Each try is recorded in `options["route"]` as [endpoint, attempts,
result] for the metrics step; `health()` gives each endpoint's `EndpointHealth`. How this combines
with limits: docs/routing-and-limits.md.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import msgspec

from deepseek_kit._transport.request import Request, Response
from deepseek_kit._wire.errors import AllEndpointsFailedError, APIConnectionError, APIStatusError, UsageError
from deepseek_kit._wire.urls import beta_url

from .auth import AuthProvider, StaticKey
from .base import CallNext
from .breaker import BreakerPolicy, CircuitBreaker, EndpointStats
from .limits.step import QueueTimeoutError

__all__ = ["Endpoint", "EndpointHealth", "RouterStep", "Routing"]

_NEVER_FAIL_OVER = frozenset({400, 401, 402, 422})
STRATEGIES = ("priority", "weighted", "least_latency", "least_in_flight")


def _finite_non_negative(v: object) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and 0 <= v < math.inf  # nan: False


@dataclass(frozen=True)
class Endpoint:
    """One server that can answer. `models` maps the model names callers use to the names this
    server knows (e.g. {"deepseek-flash": "deepseek-ai/DeepSeek-V4-Flash"} for a vLLM).

        AsyncClient(endpoints=[Endpoint("https://api.deepseek.com", name="cloud", api_key=key),
                               Endpoint("http://10.0.0.5:8000/v1", name="vllm", priority=1)])

    `base_url`: the server's API root. `name`: how metrics, logs and errors call it (default: the
    URL without its scheme). `api_key` or `auth` (an `AuthProvider`): its credentials. `weight`,
    `priority`: its share and rank for the `Routing` strategies. `beta_base_url`: its
    prefix-completion/FIM root.
    `dialect`: a label for the server kind, informational (dialects are detected from the answers).
    `breaker`: its `BreakerPolicy`. `hedge_after`: the hedging delay for this endpoint.
    `prefix_completion`: whether broken streams may be continued through it."""

    base_url: str
    name: str = ""
    api_key: str | None = None
    auth: AuthProvider | None = None
    models: Mapping[str, str] = field(default_factory=dict)
    weight: float = 1.0
    priority: int = 0
    beta_base_url: str | None = None
    dialect: str | None = None
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    hedge_after: float | None = None
    # DeepSeek chat prefix completion works here, so broken streams may be resumed through it
    # (None: only when base_url is DeepSeek's own API; see _client/resume.py).
    prefix_completion: bool | None = None

    def __post_init__(self) -> None:
        from deepseek_kit._settings import check_url

        object.__setattr__(self, "base_url", check_url(self.base_url, "Endpoint base_url"))
        key = self.api_key
        if key is not None and (type(key) is not str or any(c in key for c in "\r\n\0")):
            raise UsageError("Endpoint api_key must be a string without line breaks")
        if not _finite_non_negative(self.weight):
            raise UsageError(f"Endpoint weight must be a finite number >= 0, got {self.weight!r}")
        if self.hedge_after is not None and not _finite_non_negative(self.hedge_after):
            raise UsageError(f"Endpoint hedge_after must be a finite number of seconds >= 0 or None, "
                             f"got {self.hedge_after!r}")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        if not self.name:
            object.__setattr__(self, "name", self.base_url.split("://", 1)[1])

    def __repr__(self) -> str:  # never the key
        return f"Endpoint({self.name!r}, {self.base_url!r}, priority={self.priority}, weight={self.weight})"


@dataclass(frozen=True)
class Routing:
    """How a call picks one of several endpoints: `AsyncClient(endpoints=eps, routing=Routing(...))`.

    `strategy`: "priority" (lowest `Endpoint.priority` first, then list order; the default),
    "weighted" (random by `Endpoint.weight`), "least_latency" (lowest time to first token) or
    "least_in_flight" (fewest calls running). `hedge=True`: when the first token has not come after
    `hedge_after` seconds (None: that endpoint's p95 time to first token, `hedge_default` until one is
    measured), race a second endpoint; the first to answer wins, the other is cancelled."""

    strategy: str = "priority"
    hedge: bool = False
    hedge_after: float | None = None  # fixed hedging delay; None: the endpoint's p95 TTFT
    hedge_default: float = 2.0  # hedging delay before any TTFT was measured

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UsageError(f"Routing.strategy must be one of {', '.join(STRATEGIES)}: {self.strategy!r}")
        for name in ("hedge_after", "hedge_default"):
            v = getattr(self, name)
            if not (v is None and name == "hedge_after") and not _finite_non_negative(v):
                raise UsageError(f"Routing.{name} must be a finite number of seconds >= 0, got {v!r}")


class _EndpointState:
    """Runtime state of one endpoint: what the auth step and the metrics read off `request.endpoint`."""

    __slots__ = ("auth", "base_url", "beta_url", "breaker", "ep", "index", "models", "name", "stats")

    def __init__(self, ep: Endpoint, index: int) -> None:
        self.ep = ep
        self.index = index
        self.name = ep.name
        self.auth: AuthProvider | None = ep.auth or (StaticKey(ep.api_key) if ep.api_key else None)
        # Constant per endpoint (the Endpoint is frozen): read on every try, so kept at hand.
        self.base_url = ep.base_url
        self.beta_url = (ep.beta_base_url or beta_url(ep.base_url)).rstrip("/")
        self.models = ep.models
        self.breaker = CircuitBreaker(ep.breaker)
        self.stats = EndpointStats()

    def failure(self) -> None:
        self.stats.failures += 1
        self.breaker.failure()

    def health(self) -> EndpointHealth:
        b, st = self.breaker, self.stats
        return EndpointHealth(self.name, self.ep.base_url, b.current_state(), st.in_flight,
                              b.consecutive, st.requests, st.failures, st.p95_ttft(), st.ewma_ttft,
                              b.reopens_in())

    def __repr__(self) -> str:
        return f"<endpoint {self.name} {self.breaker.state}>"


@dataclass(frozen=True)
class EndpointHealth:
    """One endpoint as the router sees it now (`client.endpoints()`).

    - name, base_url: the endpoint's `Endpoint.name` and base URL;
    - state: the circuit breaker's "closed" (traffic flows), "open" (skipped) or "half_open" (the
      next call is a probe: its success closes the breaker, its failure opens it again);
    - in_flight: calls sent to it and not complete (a stream counts until it ends);
    - consecutive_failures: failures since its last success (`BreakerPolicy.failures` opens it);
    - requests / failures: tries sent to it since the client started, and those that counted as
      failures (5xx, 429, connection errors and timeouts, broken streams, lost hedges, queue
      timeouts on its own in-flight slots);
    - p95_ttft / ewma_ttft: seconds to the first token over its recent successful calls (None
      before the first);
    - reopens_in: while open, seconds until it lets a probe through (else None).
    """

    name: str
    base_url: str
    state: str
    in_flight: int
    consecutive_failures: int
    requests: int
    failures: int
    p95_ttft: float | None
    ewma_ttft: float | None
    reopens_in: float | None


def fails_over(exc: BaseException) -> bool:
    if isinstance(exc, APIStatusError):
        return exc.status_code not in _NEVER_FAIL_OVER
    return isinstance(exc, (APIConnectionError, QueueTimeoutError))


def _health_failure(exc: BaseException, name: str) -> bool:
    """Does this error say the endpoint is unhealthy (counts against its breaker)?

    A queue timeout counts only when the call waited for this endpoint's own in-flight slots
    (and, checked by the caller, the endpoint answered nothing meanwhile: stuck, not just busy);
    a full endpoint that the call simply moved past does not, nor does waiting for the caller's
    own rpm/tpm turn."""
    if isinstance(exc, APIStatusError):
        return exc.status_code >= 500 or exc.status_code in (408, 429)
    if isinstance(exc, QueueTimeoutError):
        return exc.endpoint == name and exc.limit == "in_flight" and bool(exc.max_wait)
    return isinstance(exc, APIConnectionError)


class RouterStep:
    """The routing pipeline step (see the module docstring). `health()` (and the client's
    `endpoints()`) reports each endpoint's state."""

    def __init__(self, endpoints: Sequence[Endpoint], routing: Routing | None = None) -> None:
        if not endpoints:
            raise UsageError("endpoints must list at least one Endpoint")
        names = [e.name for e in endpoints]
        if len(set(names)) != len(names):
            raise UsageError(f"endpoint names must be unique: {names}")
        self.routing = routing or Routing()
        self.live = [_EndpointState(e, i) for i, e in enumerate(endpoints)]
        # The "priority" order depends only on the (frozen) endpoints: sorted once, not per call.
        # Breaker states are not part of any order (`pick` skips open breakers at call time).
        self._by_priority = sorted(self.live, key=lambda lv: (lv.ep.priority, lv.index))

    def endpoint(self, name: str) -> _EndpointState:
        return next(lv for lv in self.live if lv.name == name)

    def health(self) -> list[EndpointHealth]:
        """A snapshot of every endpoint, in configuration order."""
        return [lv.health() for lv in self.live]

    # -- ordering ----------------------------------------------------------------------------------

    def _order(self, only: Any = None) -> list[_EndpointState]:
        live = self.live
        if only is None:
            if len(live) == 1:  # every strategy orders one endpoint the same way
                return [live[0]]
            if self.routing.strategy == "priority":
                return list(self._by_priority)
        else:  # e.g. a continuation that must stay on endpoints that can serve it
            live = [lv for lv in live if lv.name in only]
            if not live:
                raise UsageError(f"only_endpoints={sorted(only)!r} names none of the endpoints "
                                 f"{[lv.name for lv in self.live]}")
        s = self.routing.strategy
        if s == "priority":
            return [lv for lv in self._by_priority if lv.name in only]
        if s == "least_in_flight":
            return sorted(live, key=lambda lv: (lv.stats.in_flight, lv.ep.priority, lv.index))
        if s == "least_latency":  # unmeasured endpoints first, so each gets measured
            return sorted(live, key=lambda lv: (lv.stats.ewma_ttft or 0.0, lv.ep.priority, lv.index))
        # weighted: a weighted random order (Efraimidis-Spirakis keys); zero weights last, in
        # priority order (all weights 0 is a valid "priority failover" configuration)
        return sorted(live, key=lambda lv: (-(random.random() ** (1.0 / lv.ep.weight)), 0, 0)
                      if lv.ep.weight > 0 else (1.0, lv.ep.priority, lv.index))

    # -- one try on one endpoint -------------------------------------------------------------------

    def _request_for(self, request: Request, lv: _EndpointState, more: bool) -> Request:
        body = request.body
        if lv.models and body:
            try:
                doc = msgspec.json.decode(body)
            except (msgspec.DecodeError, RecursionError):
                doc = None  # not JSON: not ours to judge, the server answers it
            model = doc.get("model") if isinstance(doc, dict) else None
            if isinstance(doc, dict) and isinstance(model, str) and model in lv.models:
                doc["model"] = lv.models[model]
                body = msgspec.json.encode(doc)
        base = lv.beta_url if request.beta else lv.base_url
        options = dict(request.options)
        # "failover": another endpoint can take this call, so the retry step does not retry
        # "cannot serve now" errors here and the limits step does not queue (Limits.failover_wait).
        options["failover"] = more
        req = Request(request.method, base + request.path, request.path, body=body,
                      headers=dict(request.headers), stream=request.stream, timeout=request.timeout,
                      max_retries=request.max_retries, options=options, beta=request.beta)
        req.endpoint = lv
        return req

    async def _try(self, request: Request, lv: _EndpointState, call_next: CallNext, more: bool,
                   entry: list[Any]) -> Response:
        loop = asyncio.get_running_loop()
        start = loop.time()
        lv.stats.in_flight += 1
        lv.stats.requests += 1
        try:
            resp = await call_next(self._request_for(request, lv, more))
        except BaseException as exc:
            lv.stats.in_flight -= 1
            entry[1] = _attempts_of(exc)
            entry[2] = type(exc).__name__
            if _health_failure(exc, lv.name) and not (
                    # its slots were not freed because it is busy, not stuck: it answered meanwhile
                    isinstance(exc, QueueTimeoutError) and lv.stats.last_ok >= start):
                lv.failure()
            else:
                lv.breaker.neutral()
            raise
        lv.breaker.success()
        lv.stats.last_ok = loop.time()
        entry[1] = resp.attempts
        entry[2] = "ok"
        if resp.first_event_at is not None:
            lv.stats.observe_ttft(max(0.0, resp.first_event_at - start))
        resp.endpoint = lv.name

        def done(r: Response) -> None:
            lv.stats.in_flight -= 1
            if r.outcome in ("broken", "timeout"):
                lv.failure()

        resp.add_done_callback(done)
        return resp

    # -- the step ------------------------------------------------------------------------------------

    async def handle(self, request: Request, call_next: CallNext) -> Response:
        loop = asyncio.get_running_loop()
        opts = request.options
        total = request.timeout.total
        if total is not None and "deadline" not in opts:
            opts["deadline"] = loop.time() + total  # normally set by the client, once per call
        deadline: float | None = opts.get("deadline")
        queue = self._order(opts.get("only_endpoints"))
        route: list[list[Any]] = opts.setdefault("route", [])
        if self.routing.hedge and len(queue) > 1:
            return await self._hedged(request, call_next, queue, route, deadline)
        # Plain failover, the hot path: no task, no closure per call (the hedged path's `pick`
        # below does the same per endpoint, with the race's pending tries counted in `more`).
        failures: list[tuple[str, BaseException]] = []
        late: list[str] = []  # endpoints never tried because the deadline passed
        while queue:
            lv = queue.pop(0)
            if deadline is not None and loop.time() >= deadline:
                late.append(lv.name)
                late.extend(o.name for o in queue)
                break
            if not lv.breaker.allow():
                route.append([lv.name, 0, "breaker_open"])
                failures.append((lv.name, APIConnectionError(f"circuit breaker of {lv.name} is open")))
                continue
            more = any(o.breaker.current_state() != "open" for o in queue)
            entry = [lv.name, 0, "pending"]
            route.append(entry)
            try:
                return await self._try(request, lv, call_next, more, entry)
            except _FAILOVER_ERRORS as exc:
                if not fails_over(exc):
                    raise
                failures.append((lv.name, exc))
        self._all_failed(failures, late)

    async def _hedged(self, request: Request, call_next: CallNext, queue: list[_EndpointState],
                      route: list[list[Any]], deadline: float | None) -> Response:
        """Failover with hedging: a slow first endpoint gets a second one raced against it."""
        loop = asyncio.get_running_loop()
        failures: list[tuple[str, BaseException]] = []
        pending: dict[asyncio.Future[Response], _EndpointState] = {}
        hedge_at: float | None = None
        late: list[str] = []  # endpoints never tried because the deadline passed

        def pick() -> tuple[_EndpointState, bool, list[Any]] | None:
            """The next endpoint whose breaker lets a request through, unless the deadline passed."""
            while queue:
                lv = queue.pop(0)
                if deadline is not None and loop.time() >= deadline:
                    late.append(lv.name)
                    late.extend(o.name for o in queue)
                    queue.clear()
                    return None
                if not lv.breaker.allow():
                    route.append([lv.name, 0, "breaker_open"])
                    failures.append((lv.name, APIConnectionError(f"circuit breaker of {lv.name} is open")))
                    continue
                more = any(o.breaker.current_state() != "open" for o in queue) or bool(pending)
                entry = [lv.name, 0, "pending"]
                route.append(entry)
                return lv, more, entry
            return None

        def launch() -> bool:
            got = pick()
            if got is None:
                return False
            lv, more, entry = got
            pending[asyncio.ensure_future(self._try(request, lv, call_next, more, entry))] = lv
            return True

        first: _EndpointState | None = None  # the endpoint a hedge is raced against
        try:
            while True:
                if not pending:
                    if not launch():
                        break
                    first = next(iter(pending.values()))
                    hedge_at = (loop.time() + self._hedge_delay(first)) if queue else None
                timeout = None if hedge_at is None else max(0.0, hedge_at - loop.time())
                done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:  # the hedging delay passed without an answer: race the next endpoint
                    hedge_at = None
                    launch()
                    continue
                winner: Response | None = None
                fatal: BaseException | None = None
                for t in done:
                    lv = pending.pop(t)
                    err = t.exception()
                    if err is None:
                        if winner is None:
                            winner = t.result()
                        else:  # both answered at once: keep one, free the other
                            _drop(t.result(), route, lv.name)
                        continue
                    if isinstance(err, _FAILOVER_ERRORS) and fails_over(err):
                        failures.append((lv.name, err))
                    elif fatal is None:
                        fatal = err
                if winner is None and fatal is not None:
                    raise fatal  # a caller's mistake (400...): no other endpoint would accept it
                if winner is not None:
                    await self._cancel_losers(pending, route, first)
                    return winner
        finally:
            if pending:  # cancelled by the caller, or a caller's mistake (400...) ended the race
                for t in pending:
                    t.cancel()
                for r in await asyncio.gather(*pending, return_exceptions=True):
                    if isinstance(r, Response) and r.events is not None:
                        r.events.close()
        self._all_failed(failures, late)

    @staticmethod
    def _all_failed(failures: list[tuple[str, BaseException]], late: list[str]) -> NoReturn:
        summary = "; ".join(f"{n}: {type(e).__name__}: {e}" for n, e in failures) or "no endpoint"
        if late:
            summary += f"; not tried, the call's total timeout had passed: {', '.join(late)}"
        raise AllEndpointsFailedError(f"every endpoint failed ({summary})", failures)

    def _hedge_delay(self, lv: _EndpointState) -> float:
        for d in (self.routing.hedge_after, lv.ep.hedge_after, lv.stats.p95_ttft()):
            if d is not None:  # 0 is a valid choice: race at once
                return d
        return self.routing.hedge_default

    async def _cancel_losers(self, pending: dict[asyncio.Future[Response], _EndpointState],
                             route: list[list[Any]], slow: _EndpointState | None) -> None:
        """The race is won: cancel the others. The endpoint the hedge was raced against (`slow`),
        if still waiting, counts a failure on its breaker: it was slower than its hedging delay
        (by default its own p95) and than another endpoint. A hedge that lost says nothing (it
        started late by design). One that answered meanwhile is closed unread."""
        losers = dict(pending)
        pending.clear()
        for t in losers:
            t.cancel()
        for t, lv in losers.items():
            try:
                r = await t
            except asyncio.CancelledError:
                _mark(route, lv.name, "hedge_lost")
                if lv is slow:
                    lv.failure()
                continue
            except BaseException:  # it failed on its own meanwhile (already counted by _try)
                continue
            _drop(r, route, lv.name)


_FAILOVER_ERRORS = (APIStatusError, APIConnectionError, QueueTimeoutError)


def _attempts_of(exc: BaseException) -> int:
    n = getattr(exc, "attempts", 1)
    return n if isinstance(n, int) else 1


def _mark(route: list[list[Any]], name: str, result: str) -> None:
    for entry in reversed(route):
        if entry[0] == name:
            entry[2] = result
            return


def _drop(resp: Response, route: list[list[Any]], name: str) -> None:
    """A hedge loser that answered too: record it and release its stream (and so its slot)."""
    _mark(route, name, "hedge_closed")
    if resp.events is not None:
        resp.events.close()


def endpoints_from_config(items: Sequence[Mapping[str, Any]]) -> list[Endpoint]:
    """Endpoints from config-file tables (`[[endpoints]]`): base_url, name, api_key or
    api_key_env, models, weight, priority, dialect, hedge_after."""
    import os

    out = []
    for i, raw in enumerate(items):
        d = dict(raw)
        if "base_url" not in d:
            raise UsageError(f"endpoint #{i + 1} in the config has no base_url")
        env = d.pop("api_key_env", None)
        if env and not d.get("api_key"):
            d["api_key"] = os.environ.get(str(env))
        breaker = d.pop("breaker", None)
        if breaker:
            d["breaker"] = BreakerPolicy(**breaker)
        try:
            out.append(Endpoint(**d))
        except TypeError as exc:
            raise UsageError(f"endpoint #{i + 1} in the config: {exc}") from None
    return out

