"""`create_gateway_app(config)`: the gateway as an aiohttp application.

Routes (docs/gateway.md): `POST /chat/completions` under `/`, `/v1` and `/beta`; `POST
/beta/completions` (FIM); `GET /models` and `GET /user/balance` (also under `/v1`); `/healthz`,
`/readyz`, `/metrics`. Per call: read the body (capped after decompression), parse and check it,
authenticate -> model allowed -> reserve the worst case -> relay (relay.py) -> settle the exact cost,
log one access line, count metrics. The library's `AsyncClient` is created at startup from the
`[[upstream]]` tables and closed at cleanup. Every error answer is DeepSeek-shaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from decimal import ROUND_DOWN, Decimal
from typing import Any

import msgspec
from aiohttp import web

from deepseek_kit._client.client import AsyncClient
from deepseek_kit._client.resume import supports_prefix_completion
from deepseek_kit._steps.auth import StaticKey
from deepseek_kit._steps.router import Endpoint
from deepseek_kit._transport.fast import gateway_transport
from deepseek_kit._wire.types import decode_json

from .admin import add_admin_routes
from .admission import DEFAULT_RESERVE_TOKENS, TOKENS_PER_BYTE, Admission, worst_case
from .balance import BalanceCollector, BalanceWatch
from .config import GatewayConfig, GatewayConfigError, load_gateway_config
from .dashboard import DashboardSources, LiveStats, add_dashboard_routes
from .errors import GatewayError, error_response
from .health import healthz, readyz
from .keylimits import KeyLimits
from .metrics import GatewayMetrics, access_line
from .oauth_routes import add_token_routes
from .ops_metrics import BudgetRefresher, QueueCollector
from .relay import Call, Caller, Relay, timeout_at
from .repair import ReasoningMemory
from .stitch import Stitcher
from .tpm import StreamMeter
from .upstream_limits import UpstreamCaps, carrier_limits, has_caps
from .websocket import add_websocket_routes

__all__ = ["GATEWAY_KEY", "Gateway", "create_gateway_app"]

log = logging.getLogger("deepseek_kit.gateway")
_DIALECTS = {"deepseek": None, "openai": None, "vllm": "vllm", "sglang": "sglang", "ollama": "ollama",
             "llamacpp": "llamacpp"}
_THINKING = {"deepseek-chat": "disabled", "deepseek-reasoner": "enabled"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Gateway:
    """Per-app runtime: the client, the relay, admission, metrics, the reasoning memory."""

    def __init__(self, config: GatewayConfig, clock: Callable[[], float] | None = None) -> None:
        self.config = config
        self.memory = ReasoningMemory(config.repair_entries)
        self.admission = Admission(config, clock)
        state = config.state or ""
        self.key_limits = KeyLimits(state if state.startswith(("redis://", "rediss://", "unix://")) else None)
        self.served = config.served_models()
        self.prefix_names = _prefix_names(config)
        self.client: AsyncClient | None = None
        self.relay: Relay | None = None
        self.metrics: GatewayMetrics | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._old_relays: set[Relay] = set()  # relays of configs replaced by SIGHUP, until idle
        self.upstream_balance = BalanceWatch(config.upstreams, config.balance_poll, config.balance_recheck)
        self.draining = False  # SIGTERM seen: /readyz answers 503, streams get `shutdown_grace`
        self._global = (config.rpm, config.tpm, config.max_in_flight)
        self.meter = StreamMeter()
        self.budgets: BudgetRefresher | None = None
        self.live = LiveStats()  # the dashboard's rolling window of finished requests

    def build_client(self) -> AsyncClient:
        c = self.config
        endpoints = [Endpoint(base_url=u.base_url, name=u.name, api_key=u.api_key, models=dict(u.models),
                              weight=u.weight, priority=u.priority, dialect=_DIALECTS[u.kind],
                              prefix_completion=u.prefix_completion, hedge_after=u.hedge_after)
                     for u in c.upstreams]
        # api_key and base_url are given so the user's own config file and DEEPSEEK_* variables
        # are not read; StaticKey(None): no key of the gateway host is sent to an upstream that has
        # none configured (each endpoint carries its own).
        caps = any(has_caps(u) for u in c.upstreams)
        client = AsyncClient(api_key="gateway", base_url=c.upstreams[0].base_url, auth=StaticKey(None),
                             endpoints=endpoints, routing=c.routing, timeout=c.timeout,
                             limits=carrier_limits(c.limits) if caps else c.limits,
                             cache=c.cache if c.cache is not None else False, logs=c.logs or False,
                             metrics=False, max_retries=1, transport=gateway_transport())
        if caps and client.limits is not None:  # per-upstream caps (upstream_limits.py)
            base = client.limits.backend if c.limits is not None and c.limits.active else None
            redis = self.key_limits.redis_url or (c.limits.redis_url if c.limits is not None else None)
            client.limits.backend = UpstreamCaps(c.upstreams, base, redis)
        return client

    async def start(self, app: web.Application) -> None:
        await self.admission.start()
        self.client = self.build_client()
        self.relay = self._relay_for(self.client, self.config)
        self.metrics = GatewayMetrics(self.client.router, self.config.currency)
        self.metrics.registry.register(BalanceCollector(lambda: self.upstream_balance))
        self.metrics.registry.register(QueueCollector(lambda: self.client, lambda: self.admission.state))
        self.budgets = BudgetRefresher(self.admission.remaining, self.metrics.budget_remaining,
                                       self.config.currency)
        self.upstream_balance.start()

    def _relay_for(self, client: AsyncClient, config: GatewayConfig) -> Relay:
        relay = Relay(client, self.memory, config.timeout.first_token)
        relay.skip = self.upstream_balance.blocked  # the same set: the balance watch updates it in place
        relay.on_refused = self.upstream_balance.refused
        return relay

    async def drain(self, app: web.Application) -> None:
        """Shutdown (aiohttp's on_shutdown, after the listener closed): /readyz says 503 at once;
        calls in flight get `shutdown_grace` seconds to finish, then every stream still open is
        ended with a DeepSeek-shaped error event (never a `[DONE]`)."""
        self.draining = True
        relays = [r for r in (self.relay, *self._old_relays) if r is not None]
        if not relays:
            return
        grace = self.config.shutdown_grace

        async def idle() -> None:
            for r in relays:
                await r.idle.wait()

        try:
            await asyncio.wait_for(idle(), grace)
        except asyncio.TimeoutError:
            n = sum(r.close_streams() for r in relays)
            log.warning("gateway: shutting down; %d streams still open after %g s were closed", n, grace)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(idle(), 5.0)

    async def reload_from_file(self) -> None:
        """SIGHUP: read the config file again. New calls use the new upstreams, routing, limits,
        models and timeouts; calls in flight finish on the old client, which is closed once they
        are done (or after `shutdown_grace`). Listen address, auth and state need a restart. A
        config with mistakes is refused and the running one kept."""
        old = self.config
        if not old.path or self.relay is None or self.metrics is None:
            return
        try:
            new = load_gateway_config(old.path)
        except GatewayConfigError as exc:
            log.error("gateway: reload refused, the running config stays: %s", exc)
            return
        new = dataclasses.replace(new, host=old.host, port=old.port, auth=old.auth, state=old.state,
                                  pepper_env=old.pepper_env)
        old_client, old_relay = self.client, self.relay
        self.config = new
        self.served = new.served_models()
        self.prefix_names = _prefix_names(new)
        self.client = self.build_client()
        self.relay = self._relay_for(self.client, new)
        self.upstream_balance.update(new.upstreams)
        self._global = (new.rpm, new.tpm, new.max_in_flight)
        self.metrics.watch(self.client.router)
        log.warning("gateway: config reloaded from %s (%d upstreams)", old.path, len(new.upstreams))
        task = asyncio.ensure_future(self._retire(old_client, old_relay, new.shutdown_grace))
        self._retiring.add(task)
        self._old_relays.add(old_relay)
        task.add_done_callback(self._retiring.discard)
        task.add_done_callback(lambda _: self._old_relays.discard(old_relay))

    @staticmethod
    async def _retire(client: AsyncClient | None, relay: Relay, grace: float) -> None:
        try:
            await asyncio.wait_for(relay.idle.wait(), grace)
        except asyncio.TimeoutError:
            log.warning("gateway: %d calls still on the old config after %g s; closing them", relay.active,
                        grace)
        if client is not None:
            await client.close()

    async def stop(self, app: web.Application) -> None:
        for t in list(self._retiring):
            t.cancel()
        if self.client is not None:
            await self.client.close()
        await self.upstream_balance.aclose()
        await self.meter.aclose()
        if self.budgets is not None:
            await self.budgets.aclose()
        await self.admission.close()
        await self.key_limits.aclose()

    # -- request parsing ---------------------------------------------------------------------------

    async def read_body(self, request: Caller) -> bytes:
        cap = self.config.max_body_bytes
        size = request.content_length
        if size is not None and size > cap and "Content-Encoding" not in request.headers:
            raise GatewayError(413, f"request body of {size:,} bytes is over the gateway's limit of "
                               f"{cap:,} bytes", code="request_too_large")
        if not isinstance(request, web.BaseRequest):  # the fast server's request (fastproto.py)
            return await request.read_capped(cap, self.config.client_timeout)
        content = request.content
        if content.is_eof():
            # The whole body is already here (the usual case for a chat request): take it without
            # a timer and a read loop. aiohttp has inflated it already, so the cap still counts
            # inflated bytes.
            data = content.read_nowait()
            if len(data) > cap:
                raise GatewayError(413, f"request body is over the gateway's limit of {cap:,} bytes "
                                   "(counted after decompression)", code="request_too_large")
            return data
        parts: list[bytes] = []
        total = 0

        async def read() -> None:
            nonlocal total
            # aiohttp inflates gzip/deflate bodies as it reads: the cap counts inflated bytes.
            async for data in request.content.iter_any():
                total += len(data)
                if total > cap:
                    raise GatewayError(413, f"request body is over the gateway's limit of {cap:,} bytes "
                                       "(counted after decompression)", code="request_too_large")
                parts.append(data)

        limit = self.config.client_timeout  # slow clients do not hold a worker
        try:
            async with timeout_at(asyncio.get_running_loop().time() + limit):
                await read()
        except asyncio.TimeoutError:
            raise GatewayError(408, f"the request body did not arrive within {limit:g} s",
                               code="request_timeout") from None
        except Exception as exc:
            if isinstance(exc, GatewayError):
                raise
            raise GatewayError(400, f"the request body could not be read ({type(exc).__name__})") from None
        return b"".join(parts)

    def parse(self, body: bytes, fim: bool) -> dict[str, Any]:
        try:
            doc = decode_json(body)
        except msgspec.DecodeError as exc:
            raise GatewayError(400, "Failed to deserialize the JSON body into the target type: "
                               f"{exc}") from None
        if not isinstance(doc, dict):
            raise GatewayError(400, "Failed to deserialize the JSON body into the target type: expected a "
                               "JSON object")
        model = doc.get("model")
        if not isinstance(model, str):
            raise GatewayError(400 if model is None else 422, "model: expected a model name string",
                               param="model")
        if model not in self.served:
            raise GatewayError(400, f"Model Not Exist: {model[:100]!r} is not served here "
                               f"(served: {', '.join(self.served)})", param="model")
        if fim:
            if not isinstance(doc.get("prompt"), str):
                raise GatewayError(422, "prompt: expected a string", param="prompt")
        elif not isinstance(doc.get("messages"), list) or not doc["messages"]:
            raise GatewayError(422, "messages: expected a non-empty array of messages", param="messages")
        stream = doc.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise GatewayError(422, "stream: expected true or false", param="stream")
        mt = doc.get("max_tokens")
        if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool) or mt < 1):
            raise GatewayError(422, "max_tokens: expected an integer >= 1", param="max_tokens")
        return doc

    # -- handlers ----------------------------------------------------------------------------------

    async def completions(self, request: Caller, path: str, beta: bool, *, message: bytes | None = None,
                          out: web.StreamResponse | None = None) -> web.StreamResponse:
        """One call: admission, relay, settlement. The WebSocket route (websocket.py) passes the
        request `message` (instead of the body) and the `out` sink the stream is written to; the
        stream is then forced on and a GatewayError is raised to it instead of answered."""
        assert self.relay is not None and self.metrics is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        call = Call(model="-", stream=False, started=started)
        reservation: Any = None
        lease: Any = None
        glease: Any = None
        metered: Any = None
        worst: Decimal | None = None
        resolved = "-"
        body_len = 0
        self.metrics.in_flight.inc()
        try:
            key = await self.admission.authenticate(request.headers.get("Authorization"), request.remote)
            if key is not None:
                call.key_id, call.key_name = key.id, key.name
                if self.budgets is not None:
                    self.budgets.seen(key)  # its budget gauge is refreshed in the background
            body = await self.read_body(request) if message is None else message
            body_len = len(body)
            doc = self.parse(body, fim=path == "/completions")
            model = call.model = doc["model"]
            call.stream = bool(doc.get("stream")) or out is not None
            if not self.admission.allowed(key, model):
                raise GatewayError(403, f"this key may not use model {model!r}", type="permission_error",
                                   code="model_not_allowed", param="model")
            changed = out is not None and doc.get("stream") is not True
            if changed:
                doc["stream"] = True  # WebSocket: always a stream (docs/gateway.md, WebSocket streaming)
            resolved = self.config.aliases.get(model, model)
            if resolved != model:
                doc["model"] = resolved
                if model in _THINKING and "thinking" not in doc:
                    doc["thinking"] = {"type": _THINKING[model]}
                changed = True
            tools = bool(doc.get("tools"))
            if tools:
                n = self.memory.repair(doc)
                if n:
                    self.metrics.repairs.inc(n)
                    changed = True
            if changed:
                body = msgspec.json.encode(doc)
            worst = worst_case(resolved, len(body), doc.get("max_tokens"), self.admission.now(),
                               self.config.currency)
            mt = doc.get("max_tokens")
            # tpm: a stream's output is counted as it arrives (tpm.py), a plain answer's up front
            tokens = math.ceil(len(body) * TOKENS_PER_BYTE) + (
                0 if call.stream else mt if isinstance(mt, int) else DEFAULT_RESERVE_TOKENS)
            if any(self._global):
                glease = await self.key_limits.admit_scope("@gateway", self._global, tokens, "the gateway's")
            lease = await self.key_limits.admit(key, tokens)
            if call.stream and (lease is not None or glease is not None):
                metered = self.meter.add(call, lease, glease)
            reservation = await self.admission.reserve(key, worst, resolved)
            stitcher = (Stitcher(doc, self.prefix_names) if call.stream and self.prefix_names
                        and path == "/chat/completions" else None)
            return await self.relay.relay(request, path, body, call.stream, beta, call, record=tools,
                                          stitcher=stitcher, out=out)
        except GatewayError as err:
            call.status, call.error = err.status, err.message[:200]
            if out is not None:
                raise
            return error_response(err)
        finally:
            self.metrics.in_flight.dec()
            # The accounting runs on the next turn of the loop, after the answer is written: the
            # fast path writes it as soon as this returns (fastproto.HotProtocol._serve), so the
            # settlement, metrics and access line no longer sit between the upstream's last byte
            # and the caller's (docs/gateway.md, Performance). One turn later changes nothing a
            # caller can see: the next request on any connection is read after it.
            loop.call_soon(self._account, call, request, loop.time() - started, resolved, body_len,
                           reservation, metered, lease, glease)

    def _account(self, call: Call, request: Caller, seconds: float, resolved: str, body_len: int,
                 reservation: Any, metered: Any, lease: Any, glease: Any) -> None:
        """Settle one finished call: its budget hold, its limits, metrics, the access line."""
        spent: Decimal | None = None
        try:
            spent = self.admission.cost(resolved, call.usage, None)
            if spent is not None and call.lost_tokens:  # a resumed stream: the broken piece too
                spent += worst_case(resolved, body_len, call.lost_tokens, self.admission.now(),
                                    self.config.currency)
            if spent is None and reservation is not None:
                # No usage seen (the caller left, or the stream broke): charge what the upstream may
                # have billed, the input estimate plus one token per relayed chunk.
                spent = worst_case(resolved, body_len, call.chunks, self.admission.now(),
                                   self.config.currency) if call.chunks else Decimal(0)
        except Exception:  # a usage we cannot price: charge the hold, never leave it (or its lease) open
            log.exception("gateway: could not price a call to %s; charging its reservation", resolved)
            spent = reservation.amount if reservation is not None else None
        try:
            assert self.metrics is not None
            if reservation is not None:
                self.admission.settle(reservation, spent or Decimal(0), resolved)
            self.meter.remove(metered)
            if lease is not None or glease is not None:
                total = (call.usage or {}).get("total_tokens")
                used = total if isinstance(total, int) else None
                self.key_limits.done(lease, used, call.status == 200)
                self.key_limits.done(glease, used, call.status == 200)
            if call.status == 0:
                call.status = 499  # the caller went away before an answer
            self.metrics.observe(call, seconds, spent)
            self.live.record(seconds, call.ttft, call.status)
            if self.config.access_log:
                access_line(call, request.method, request.path, seconds, spent)
        except Exception:  # a bug here must not go unseen, nor take the loop down
            log.exception("gateway: could not account for a call to %s", resolved)

    async def models(self, request: web.Request) -> web.Response:
        key = await self.admission.authenticate(request.headers.get("Authorization"), request.remote)
        data = [{"id": m, "object": "model", "owned_by": "deepseek"} for m in self.served
                if self.admission.allowed(key, m)]
        return web.Response(body=msgspec.json.encode({"object": "list", "data": data}),
                            content_type="application/json")

    async def balance(self, request: web.Request) -> web.Response:
        key = await self.admission.authenticate(request.headers.get("Authorization"), request.remote)
        left = await self.admission.remaining(key)
        infos = []
        if left is not None:
            amount = str(max(left, Decimal(0)).quantize(Decimal("0.01"), rounding=ROUND_DOWN))
            infos.append({"currency": self.config.currency, "total_balance": amount,
                          "granted_balance": "0.00", "topped_up_balance": amount})
            assert self.metrics is not None
            if key is not None:
                self.metrics.budget_remaining.labels(str(key.id), self.config.currency).set(float(left))
        body = {"is_available": left is None or left > 0, "balance_infos": infos}
        return web.Response(body=msgspec.json.encode(body), content_type="application/json")

    async def prometheus(self, request: web.Request) -> web.Response:
        assert self.metrics is not None
        return web.Response(body=self.metrics.exposition(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def _prefix_names(config: GatewayConfig) -> list[str]:
    """Upstreams that can continue a broken stream through prefix completion (stitch.py)."""
    return [u.name for u in config.upstreams if supports_prefix_completion(u.base_url, u.prefix_completion)]


def _errors_middleware(gw: Gateway) -> Any:
    origins = frozenset(gw.config.cors_origins)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        cors = origin is not None and (origin in origins or "*" in origins)
        if cors and request.method == "OPTIONS":
            return web.Response(status=204, headers=_cors_headers(origin or "*", preflight=True))
        try:
            resp = await handler(request)
        except GatewayError as err:
            resp = error_response(err)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            msg = "Unknown error" if exc.status == 404 else exc.reason
            resp = error_response(GatewayError(exc.status, msg))
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:  # a bug: never a traceback or a secret to the caller
            log.exception("gateway: unexpected error on %s %s", request.method, request.path)
            resp = error_response(GatewayError(500, f"internal gateway error ({type(exc).__name__})"))
        if cors and not resp.prepared:
            resp.headers.update(_cors_headers(origin or "*", preflight=False))
        return resp

    return middleware


def _cors_headers(origin: str, preflight: bool) -> dict[str, str]:
    h = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    if preflight:
        h.update({"Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                  "Access-Control-Allow-Headers": "Authorization, Content-Type",
                  "Access-Control-Max-Age": "600"})
    return h


GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)


def create_gateway_app(config: GatewayConfig, *, clock: Callable[[], float] | None = None) -> web.Application:
    """The gateway application for `config` (see the module docstring); `clock` (epoch seconds)
    prices costs and budget windows, for tests."""
    gw = Gateway(config, clock)
    app = web.Application(middlewares=[_errors_middleware(gw)], client_max_size=config.max_body_bytes)
    app[GATEWAY_KEY] = gw
    app.on_startup.append(gw.start)
    app.on_shutdown.append(gw.drain)
    app.on_cleanup.append(gw.stop)

    def chat(beta: bool) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await gw.completions(request, "/chat/completions", beta)
        return handle

    async def fim(request: web.Request) -> web.StreamResponse:
        return await gw.completions(request, "/completions", True)

    r = app.router
    r.add_post("/chat/completions", chat(False))
    r.add_post("/v1/chat/completions", chat(False))
    r.add_post("/beta/chat/completions", chat(True))
    r.add_post("/beta/completions", fim)
    for prefix in ("", "/v1"):
        r.add_get(prefix + "/models", gw.models)
        r.add_get(prefix + "/user/balance", gw.balance)
    add_dashboard_routes(app, DashboardSources(  # dashboard/: log in with the admin key; stats, keys
        state=lambda: gw.admission.state, endpoints=lambda: gw.client.endpoints() if gw.client else [],
        balances=lambda: gw.upstream_balance, live=gw.live, currency=config.currency,
        admin_key=(os.environ.get(config.admin_key_env) if config.admin_key_env else None) or None,
        now=lambda: datetime.fromtimestamp(gw.admission.clock(), timezone.utc), draining=lambda: gw.draining,
        state_url=config.state))
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz(lambda: gw.client.endpoints() if gw.client is not None else [],
                                lambda: gw.draining))
    r.add_get("/metrics", gw.prometheus)
    add_websocket_routes(app, gw)
    if config.auth == "keys":
        # The admin HTTP API (admin.py): on only when the admin key's variable is set.
        admin_key = os.environ.get(config.admin_key_env) if config.admin_key_env else None
        wall = gw.admission.clock
        add_admin_routes(app, lambda: gw.admission.state, admin_key or None, currency=config.currency,
                         clock=lambda: datetime.fromtimestamp(wall(), timezone.utc))
        add_token_routes(app, lambda: gw.admission.state)  # OAuth2 client credentials (oauth_routes.py)
    return app
