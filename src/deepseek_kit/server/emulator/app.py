"""The emulator's aiohttp application: routing, authentication, headers, and the request flow.

Routes (docs/deepseek-api-notes.md#what-the-emulator-reproduces): `POST /chat/completions` under `/`, `/v1`
and `/beta`; `POST /beta/completions` (FIM, only under /beta); `GET /models` and `GET /user/balance` (also
under /v1). Anything else is 404 `Unknown error` - after authentication, as a bare unauthenticated
`GET /` gets 401 from DeepSeek (docs/deepseek-api-notes.md#base-urls-and-authentication).
No WebSocket, no OAuth (docs/deepseek-api-notes.md#base-urls-and-authentication).

Every response carries `Server: openresty`, a fresh 32-hex `x-ds-trace-id` and
`X-DSK-Emulator: deepseek-kit/<version>` (with `system_fingerprint` = `fp_dsk_emulator_...`, nothing
the emulator made can pass for a DeepSeek answer,
docs/emulator.md#nothing-it-makes-passes-for-deepseek), never `x-request-id`, and no
`Retry-After` / `x-ratelimit-*` unless a fault directive asks (docs/deepseek-api-notes.md#response-headers).

Request flow: count it -> fault directives (delay, reset, status) -> bearer auth (401, key masked
to its last 4 characters, docs/deepseek-api-notes.md#what-the-emulator-reproduces)
-> balance (402) -> validation (400) -> concurrency (429, per
account and serving model until the response completes,
docs/deepseek-api-notes.md#rate-limits-and-concurrency) -> bill -> answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import msgspec
from aiohttp import http_exceptions, web

from deepseek_kit._version import __version__
from deepseek_kit._wire.types import EMULATOR_FINGERPRINT_PREFIX, EMULATOR_HEADER

from .config import EmulatorConfig
from .errors import ApiError, html_body
from .faults import ClientGone, DirectiveError, Directives, check_combination, pause, reset_connection
from .plan import ChatPlan, FimPlan, PlanCache
from .quiet import install as quiet_client_mistakes
from .render import chat_body, fim_body, usage_json
from .respond import JSON_TYPE, SSE_HEADERS, send_json, send_stream
from .state import STATE_KEY, EmulatorState

__all__ = ["EMULATOR_KEY", "Emulator", "create_emulator_app"]

log = logging.getLogger("deepseek_kit.server")
_getrandbits = random.getrandbits
_BAD_AUTH = "Authentication Fails (auth header format should be Bearer sk-...)"
#: Marks every answer as the emulator's (docs/emulator.md#nothing-it-makes-passes-for-deepseek):
#: a synthetic answer never passes for DeepSeek's.
_MARK = f"deepseek-kit/{__version__}"


async def _server_headers(request: web.Request, response: web.StreamResponse) -> None:
    h = response.headers
    h["Server"] = "openresty"
    h[EMULATOR_HEADER] = _MARK
    if "x-ds-trace-id" not in h:
        h["x-ds-trace-id"] = f"{_getrandbits(128):032x}"
    h["Vary"] = "origin, access-control-request-method, access-control-request-headers"
    h["Access-Control-Allow-Credentials"] = "true"
    h["X-Content-Type-Options"] = "nosniff"


def _json(status: int, body: bytes, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=body, content_type=JSON_TYPE, headers=headers)


def _error(exc: ApiError, html: bool = False) -> web.Response:
    if html:
        return web.Response(status=exc.status, body=html_body(exc.status), content_type="text/html",
                            headers=exc.headers)
    return _json(exc.status, exc.body(), exc.headers)


class _Dropped(web.Response):
    """Returned after the connection was reset or abandoned: nothing reaches the client, and the
    request is counted with status 0."""


class Emulator:
    """Request handlers bound to one config and state."""

    def __init__(self, config: EmulatorConfig, state: EmulatorState) -> None:
        self.config = config
        self.state = state
        self.plans = PlanCache(config)
        fp = hashlib.blake2b(str(config.seed).encode(), digest_size=5).hexdigest()
        # DeepSeek's shape is fp_<10hex>_prod0820_fp8_kvcache_<date>; ours says emulator up front
        self.fingerprint = f"{EMULATOR_FINGERPRINT_PREFIX}_{fp}_{config.fingerprint_date}"
        data = [{"id": m, "object": "model", "owned_by": "deepseek"} for m in config.models]
        self._models = msgspec.json.encode({"object": "list", "data": data})

    # -- entry points -------------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "chat")

    async def fim(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "fim")

    async def models(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "models")

    async def balance(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "balance")

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "404")

    async def _serve(self, request: web.Request, kind: str) -> web.StreamResponse:
        state = self.state
        try:
            body = await read_body(request, self.config.max_body_size)
        except ApiError as exc:
            state.begin(request.path, "", b"")
            state.end(exc.status)
            refused = _error(exc)
            refused.force_close()  # the rest of the body is not read: do not reuse the connection
            return refused
        header = request.headers.get("X-DSK-Emulate", "")
        seen = state.begin(request.path, header, body, request.method, request.headers)
        status = 0
        try:
            resp = await self._handle(request, kind, body, header, seen)
            status = 0 if isinstance(resp, _Dropped) else resp.status
            return resp
        except ClientGone:
            if not state.closing.is_set():
                state.disconnects += 1
            transport = request.transport
            if transport is not None:
                transport.close()
            return _Dropped()
        except asyncio.CancelledError:  # handler cancellation on disconnect (our runners enable it)
            if not state.closing.is_set():
                state.disconnects += 1
            raise
        finally:
            state.end(status)

    # -- the flow -----------------------------------------------------------------------------------

    def _directives(self, header: str, seen: int) -> Directives:
        merged = {**self.state.parsed(self.config.faults), **self.state.parsed(header)}
        check_combination(merged)
        d = Directives(**merged) if merged else _NO_FAULTS
        if d.times is not None and seen > d.times:
            d = d.without_failures()
        return d

    def _auth(self, request: web.Request) -> str:
        value = request.headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, _BAD_AUTH, "authentication_error")
        keys = self.config.api_keys
        if keys is not None and token not in keys:
            raise ApiError(401, f"Authentication Fails, Your api key: ****{token[-4:]} is invalid",
                           "authentication_error")
        return token

    async def _handle(self, request: web.Request, kind: str, body: bytes, header: str,
                      seen: int) -> web.StreamResponse:
        try:
            d = self._directives(header, seen)
        except DirectiveError as exc:
            return _error(ApiError(400, str(exc), "invalid_request_error"))
        if d.delay_headers > 0:
            await pause(request, d.delay_headers, self.state.closing)
        if d.reset_before_headers:
            reset_connection(request)
            return _Dropped()
        if d.status is not None and d.status >= 400:
            headers = {}
            if d.retry_after is not None:
                headers["Retry-After"] = d.retry_after
            if d.retry_after_ms is not None:
                headers["retry-after-ms"] = d.retry_after_ms
            return _error(ApiError(d.status, headers=headers), d.html)
        try:
            key = self._auth(request)
            if kind == "404":
                raise ApiError(404)
            if kind == "models":
                return self._body_fault(d, kind) or _json(200, self._models)
            account = self.state.account(key)
            if kind == "balance":
                info = {"is_available": account.total > 0,
                        "balance_infos": [account.info(self.config.currency)]}
                return self._body_fault(d, kind) or _json(200, msgspec.json.encode(info))
            if account.total <= 0:
                # never retried by clients (docs/deepseek-api-notes.md#errors-and-status-codes)
                raise ApiError(402)
            plan: ChatPlan | FimPlan
            if kind == "chat":
                plan = await self.plans.chat(body, request.path.startswith("/beta/"), d)
            else:
                plan = await self.plans.fim(body, d)
            if account.total <= 0:  # again: planning a big body awaited, others may have spent it
                raise ApiError(402)
            serving = plan.req.serving
            if not self.state.try_acquire(key, serving):
                raise ApiError(429)
        except ApiError as exc:
            return _error(exc)
        try:
            return await self._answer(request, plan, d, key, kind)
        finally:
            self.state.release(key, serving)

    def _body_fault(self, d: Directives, kind: str, stream: bool = False) -> web.Response | None:
        if not (d.empty_body or d.blank_body):
            return None
        body = b"" if d.empty_body else b"\n\n\n"
        ctype = SSE_HEADERS["Content-Type"] if stream else JSON_TYPE
        return web.Response(status=200, body=body, headers={"Content-Type": ctype})

    async def _answer(self, request: web.Request, plan: ChatPlan | FimPlan, d: Directives, key: str,
                      kind: str) -> web.StreamResponse:
        state, config, req = self.state, self.config, plan.req
        hit = 0
        if config.cache_simulation:
            hit = state.cache.lookup(key, req.user_id, plan.units_in)
            state.cache.store(key, req.user_id, plan.units_in)
            if isinstance(plan, ChatPlan) and plan.units_out:
                state.cache.store(key, req.user_id, plan.units_out)
        answer = plan.answer
        if isinstance(plan, ChatPlan):
            completion = plan.answer.completion_tokens
            reasoning = plan.answer.reasoning_tokens if plan.req.thinking else None
        else:
            completion, reasoning = len(plan.answer.tokens), None
        usage = usage_json(plan.prompt_tokens, hit, completion, reasoning)
        state.charge(key, req.serving, {"prompt_cache_hit_tokens": hit,
                                        "prompt_cache_miss_tokens": plan.prompt_tokens - hit,
                                        "completion_tokens": completion})
        fault = self._body_fault(d, kind, req.stream)
        if fault is not None:
            return fault
        rid, created = str(uuid.uuid4()), int(time.time())
        stall = config.queue_delay + d.stall_first_token
        keepalive = d.keepalive if d.keepalive is not None else config.keepalive_interval
        finish = answer.finish_reason
        if not req.stream:
            if isinstance(plan, ChatPlan):
                body = chat_body(rid, created, plan.model_json, self.fingerprint, plan.pieces, finish, usage)
            else:
                body = fim_body(rid, created, plan.model_json, self.fingerprint, plan.pieces, finish, usage)
            return await send_json(request, body, d, stall, keepalive, state.closing, config.queue_timeout)
        legacy = d.legacy_usage_chunk or config.legacy_usage_chunk
        if isinstance(plan, ChatPlan):
            events = self._chat_events(plan, rid, created, usage, legacy)
        else:
            events = self._fim_events(plan, rid, created, usage, legacy)
        return await send_stream(request, events, d, stall, keepalive, state.closing, config.queue_timeout)

    def _head(self, rid: str, created: int, model: bytes, obj: bytes) -> bytes:
        return b"".join((
            b'{"id":"', rid.encode(), b'","object":"', obj, b'","created":', str(created).encode(),
            b',"model":', model, b',"system_fingerprint":"', self.fingerprint.encode(), b'"',
        ))

    def _tail(self, head: bytes, usage: bytes, include: bool, legacy: bool) -> tuple[bytes, list[bytes]]:
        """The end of a finish chunk and any trailing usage-only chunk
        (docs/deepseek-api-notes.md#usage-fields, #what-the-emulator-reproduces)."""
        close = b'"}]'
        if not legacy:
            return close + b',"usage":' + usage + b"}", []
        end = close + (b',"usage":null}' if include else b"}")
        return end, [head + b',"choices":[],"usage":' + usage + b"}"]

    def _chat_events(self, plan: ChatPlan, rid: str, created: int, usage: bytes,
                     legacy: bool) -> Iterator[bytes]:
        """The stream's JSON payloads, made as they are sent (a 384K-token answer is ~100 MB of
        frames: materialising them per stream multiplied memory by the number of slow readers)."""
        pieces, include = plan.pieces, plan.req.include_usage
        head = self._head(rid, created, plan.model_json, b"chat.completion.chunk")
        open_ = head + b',"choices":[{"index":0,"delta":'
        mid = b',"finish_reason":null}]' + (b',"usage":null}' if include else b"}")
        yield open_ + pieces.first_delta + b',"logprobs":null' + mid
        for delta, lp, _ in pieces.deltas:
            yield open_ + delta + b',"logprobs":' + lp + mid
        end, extra = self._tail(head, usage, include, legacy)
        yield (open_ + pieces.final_delta + b',"logprobs":null,"finish_reason":"'
               + plan.answer.finish_reason.encode() + end)
        yield from extra

    def _fim_events(self, plan: FimPlan, rid: str, created: int, usage: bytes,
                    legacy: bool) -> Iterator[bytes]:
        include = plan.req.include_usage
        head = self._head(rid, created, plan.model_json, b"text_completion")
        open_ = head + b',"choices":[{"text":'
        mid = b',"finish_reason":null}]' + (b',"usage":null}' if include else b"}")
        for text, lp in plan.pieces.deltas:
            yield open_ + text + b',"index":0,"logprobs":' + lp + mid
        end, extra = self._tail(head, usage, include, legacy)
        yield (open_ + b'"","index":0,"logprobs":null,"finish_reason":"'
               + plan.answer.finish_reason.encode() + end)
        yield from extra


_NO_FAULTS = Directives()
#: Request encodings aiohttp inflates for us (as the body is read, so the size cap applies to the
#: inflated bytes and a gzip bomb stops at the cap).
_ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})


async def read_body(request: web.Request, cap: int) -> bytes:
    """The request body, at most `cap` bytes after decompression; ApiError 413 beyond (without
    reading further), 400 for an encoding we do not inflate or a body that does not inflate."""
    if request.content_length is not None and request.content_length > cap:
        raise ApiError(413)
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in _ENCODINGS:  # wording ours
        raise ApiError(400, f"Unsupported Content-Encoding {encoding!r}: send the body as plain JSON, "
                            "gzip or deflate", "invalid_request_error")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > cap:
                raise ApiError(413)
            chunks.append(chunk)
    except (web.RequestPayloadError, http_exceptions.HttpProcessingError) as exc:  # bad gzip...
        raise ApiError(400, f"Failed to read the request body: it is not valid {encoding or 'data'} "
                            f"({type(exc).__name__})", "invalid_request_error") from None
    return b"".join(chunks)


@web.middleware
async def _json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """What aiohttp itself answers (404 for CONNECT, 405, 413...) in DeepSeek's JSON shape, and an
    internal error as a JSON 500 with one log line: a client never gets text/plain from us, and a
    request never fills the log with a traceback (it goes to DEBUG)."""
    try:
        resp: web.StreamResponse = await handler(request)
        return resp
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(ApiError(exc.status))
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception as exc:
        log.error("emulator: internal error answering %s %s: %s: %s (traceback at DEBUG level)",
                  request.method, request.path, type(exc).__name__, str(exc)[:200])
        log.debug("emulator: internal error", exc_info=True)
        return _error(ApiError(500))

EMULATOR_KEY: web.AppKey[Emulator] = web.AppKey("deepseek_kit.emulator", Emulator)


async def _on_shutdown(app: web.Application) -> None:
    app[STATE_KEY].closing.set()  # long waits (stalls, keep-alive loops) end now


def _expect_handler(cap: int) -> Any:
    """`Expect: 100-continue`: refuse a body announced over the cap before the client sends it
    (aiohttp's default answers 100 Continue first, inviting the upload); errors in JSON."""

    async def expect(request: web.Request) -> web.StreamResponse | None:
        if request.version != aiohttp.HttpVersion11:
            return None
        if request.headers.get("Expect", "").lower() != "100-continue":
            return _error(ApiError(417, "Expectation Failed: only 100-continue is supported"))  # ours
        if request.content_length is not None and request.content_length > cap:
            resp = _error(ApiError(413))
            resp.force_close()
            return resp
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # as aiohttp's default: the answer has not started yet
        return None

    return expect


def create_emulator_app(config: EmulatorConfig | None = None) -> web.Application:
    """The emulator as an aiohttp application (run it with any aiohttp runner), serving
    `config` (None: the defaults, `EmulatorConfig()`). Its `EmulatorState` is `app[STATE_KEY]`.

        app = create_emulator_app(EmulatorConfig(api_keys={"sk-test"}))
        web.run_app(app, host="127.0.0.1", port=8000)"""
    config = config or EmulatorConfig()
    quiet_client_mistakes()  # aiohttp's parse-error tracebacks become one INFO line
    app = web.Application(client_max_size=config.max_body_size, middlewares=[_json_errors])
    state = EmulatorState(config)
    emulator = Emulator(config, state)
    app[STATE_KEY] = state
    app[EMULATOR_KEY] = emulator
    expect = _expect_handler(config.max_body_size)
    for prefix in ("", "/v1", "/beta"):
        app.router.add_post(prefix + "/chat/completions", emulator.chat, expect_handler=expect)
    app.router.add_post("/beta/completions", emulator.fim, expect_handler=expect)
    for prefix in ("", "/v1"):
        app.router.add_get(prefix + "/models", emulator.models, expect_handler=expect)
        app.router.add_get(prefix + "/user/balance", emulator.balance, expect_handler=expect)
    app.router.add_route("*", "/{tail:.*}", emulator.not_found, expect_handler=expect)
    app.on_response_prepare.append(_server_headers)
    app.on_shutdown.append(_on_shutdown)
    return app
