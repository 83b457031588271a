"""Endpoints and routing: DeepSeek cloud next to private deployments (vLLM, SGLang, Ollama,
llama.cpp, another deepseek-kit gateway), each with its own base URL, auth, model names, weight and
priority.

The router step sits outside retry (DESIGN.md order: metrics -> cache -> router -> retry ->
limits -> auth). For each call it orders the endpoints by the strategy (priority failover,
weighted, least TTFT, least in flight), skips those whose circuit breaker is open, and sends the
call to the first; a failure that says "this endpoint cannot serve now" (503, connection failure,
first-token timeout) moves to the next endpoint at once — the retry step below is told so through
`request.options["failover"]` and does not retry those — while a 400/401/402/422 is the caller's
problem and never fails over. With hedging on, when the first token has not come after a delay
(by default that endpoint's p95 time to first token), a second endpoint is raced; the first to
answer wins and the other is cancelled. When every endpoint fails: `AllEndpointsFailedError` with
each attempt.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ._auth import AuthProvider, StaticKey
from ._breaker import BreakerPolicy, CircuitBreaker, EndpointStats
from ._errors import AllEndpointsFailedError, APIConnectionError, APIStatusError, UsageError
from ._request import Request, Response

__all__ = ["Endpoint", "RouterStep", "Routing"]

CallNext = Callable[[Request], Awaitable[Response]]
_NEVER_FAIL_OVER = frozenset({400, 401, 402, 422})
STRATEGIES = ("priority", "weighted", "least_latency", "least_in_flight")


@dataclass(frozen=True)
class Endpoint:
    """One server that can answer. `models` maps the model names callers use to the names this
    server knows (e.g. {"deepseek-flash": "deepseek-ai/DeepSeek-V4-Flash"} for a vLLM)."""

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

    def __post_init__(self) -> None:
        from ._settings import check_url

        object.__setattr__(self, "base_url", check_url(self.base_url, "Endpoint base_url"))
        key = self.api_key
        if key is not None and (type(key) is not str or any(c in key for c in "\r\n\0")):
            raise UsageError("Endpoint api_key must be a string without line breaks")
        if self.weight < 0:
            raise UsageError("Endpoint weight must be >= 0")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        if not self.name:
            object.__setattr__(self, "name", self.base_url.split("://", 1)[1])

    def __repr__(self) -> str:  # never the key
        return f"Endpoint({self.name!r}, {self.base_url!r}, priority={self.priority}, weight={self.weight})"


@dataclass(frozen=True)
class Routing:
    strategy: str = "priority"
    hedge: bool = False
    hedge_after: float | None = None  # fixed hedging delay; None: the endpoint's p95 TTFT
    hedge_default: float = 2.0  # hedging delay before any TTFT was measured

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UsageError(f"Routing.strategy must be one of {', '.join(STRATEGIES)}: {self.strategy!r}")


class _Live:
    """Runtime state of one endpoint: what the auth step and the metrics read off `request.endpoint`."""

    __slots__ = ("auth", "beta_url", "breaker", "ep", "index", "name", "stats")

    def __init__(self, ep: Endpoint, index: int) -> None:
        from ._client import _beta_url

        self.ep = ep
        self.index = index
        self.name = ep.name
        self.auth: AuthProvider | None = ep.auth or (StaticKey(ep.api_key) if ep.api_key else None)
        self.beta_url = (ep.beta_base_url or _beta_url(ep.base_url)).rstrip("/")
        self.breaker = CircuitBreaker(ep.breaker)
        self.stats = EndpointStats()

    def __repr__(self) -> str:
        return f"<endpoint {self.name} {self.breaker.state}>"


def fails_over(exc: BaseException) -> bool:
    if isinstance(exc, APIStatusError):
        return exc.status_code not in _NEVER_FAIL_OVER
    return isinstance(exc, APIConnectionError)


def _health_failure(exc: BaseException) -> bool:
    """Does this error say the endpoint is unhealthy (counts against its breaker)?"""
    if isinstance(exc, APIStatusError):
        return exc.status_code >= 500 or exc.status_code in (408, 429)
    return isinstance(exc, APIConnectionError)


class RouterStep:
    def __init__(self, endpoints: Sequence[Endpoint], routing: Routing | None = None) -> None:
        if not endpoints:
            raise UsageError("endpoints must list at least one Endpoint")
        names = [e.name for e in endpoints]
        if len(set(names)) != len(names):
            raise UsageError(f"endpoint names must be unique: {names}")
        self.routing = routing or Routing()
        self.live = [_Live(e, i) for i, e in enumerate(endpoints)]

    def endpoint(self, name: str) -> _Live:
        return next(lv for lv in self.live if lv.name == name)

    # -- ordering ----------------------------------------------------------------------------------

    def _order(self) -> list[_Live]:
        live = self.live
        s = self.routing.strategy
        if s == "priority":
            return sorted(live, key=lambda lv: (lv.ep.priority, lv.index))
        if s == "least_in_flight":
            return sorted(live, key=lambda lv: (lv.stats.in_flight, lv.ep.priority, lv.index))
        if s == "least_latency":  # unmeasured endpoints first, so each gets measured
            return sorted(live, key=lambda lv: (lv.stats.ewma_ttft or 0.0, lv.ep.priority, lv.index))
        # weighted: a weighted random order (Efraimidis-Spirakis keys), zero weight last
        return sorted(live, key=lambda lv: -(random.random() ** (1.0 / lv.ep.weight)) if lv.ep.weight > 0
                      else 1.0)

    # -- one try on one endpoint -------------------------------------------------------------------

    def _request_for(self, request: Request, lv: _Live, more: bool) -> Request:
        body = request.body
        if lv.ep.models and body:
            doc = msgspec.json.decode(body)
            model = doc.get("model") if isinstance(doc, dict) else None
            if isinstance(model, str) and model in lv.ep.models:
                doc["model"] = lv.ep.models[model]
                body = msgspec.json.encode(doc)
        base = lv.beta_url if request.beta else lv.ep.base_url
        options = dict(request.options)
        options["failover"] = more
        req = Request(request.method, base + request.path, request.path, body=body,
                      headers=dict(request.headers), stream=request.stream, timeout=request.timeout,
                      max_retries=request.max_retries, options=options, beta=request.beta)
        req.endpoint = lv
        return req

    async def _try(self, request: Request, lv: _Live, call_next: CallNext, more: bool) -> Response:
        loop = asyncio.get_running_loop()
        start = loop.time()
        lv.stats.in_flight += 1
        lv.stats.requests += 1
        try:
            resp = await call_next(self._request_for(request, lv, more))
        except BaseException as exc:
            lv.stats.in_flight -= 1
            if _health_failure(exc):
                lv.breaker.failure()
            raise
        lv.breaker.success()
        if resp.first_event_at is not None:
            lv.stats.observe_ttft(max(0.0, resp.first_event_at - start))
        resp.endpoint = lv.name

        def done(r: Response) -> None:
            lv.stats.in_flight -= 1
            if r.outcome in ("broken", "timeout"):
                lv.breaker.failure()

        resp.add_done_callback(done)
        return resp

    # -- the step ------------------------------------------------------------------------------------

    async def handle(self, request: Request, call_next: CallNext) -> Response:
        order = self._order()
        failures: list[tuple[str, BaseException]] = []
        i = 0
        while i < len(order):
            lv = order[i]
            i += 1
            if not lv.breaker.allow():
                failures.append((lv.name, APIConnectionError(f"circuit breaker of {lv.name} is open")))
                continue
            rest = [o for o in order[i:] if o.breaker.state != "open"]
            if self.routing.hedge and rest:
                try:
                    return await self._hedged(request, lv, rest[0], call_next, failures)
                except _BothFailed:
                    order = [o for o in order[i:] if o is not rest[0]]
                    i = 0
                    continue
            try:
                return await self._try(request, lv, call_next, more=bool(rest))
            except (APIStatusError, APIConnectionError) as exc:
                failures.append((lv.name, exc))
                if not fails_over(exc):
                    raise
        summary = "; ".join(f"{n}: {type(e).__name__}: {e}" for n, e in failures) or "no endpoint"
        raise AllEndpointsFailedError(f"every endpoint failed ({summary})", failures)

    async def _hedged(self, request: Request, first: _Live, second: _Live, call_next: CallNext,
                      failures: list[tuple[str, BaseException]]) -> Response:
        delay = self.routing.hedge_after or first.ep.hedge_after or first.stats.p95_ttft() \
            or self.routing.hedge_default
        t1: asyncio.Future[Response] = asyncio.ensure_future(self._try(request, first, call_next, more=True))
        tasks: dict[asyncio.Future[Response], _Live] = {t1: first}
        done, _ = await asyncio.wait({t1}, timeout=delay)
        if not done and second.breaker.allow():
            tasks[asyncio.ensure_future(self._try(request, second, call_next, more=True))] = second
        pending: set[asyncio.Future[Response]] = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    exc = t.exception()
                    if exc is None:
                        return t.result()
                    failures.append((tasks[t].name, exc))
                    if not fails_over(exc):
                        raise exc
            raise _BothFailed
        finally:
            for t in pending:
                t.cancel()
            for t in pending:  # the loser: cancelled, or it answered too; drop its stream then
                try:
                    r = await t
                except BaseException:  # a cancelled or failed loser is expected
                    continue
                if r.events is not None:
                    r.events.close()


class _BothFailed(Exception):
    pass


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

