"""The relay: one caller's call through the library's pipeline to an upstream, and the answer back.

The call goes through `AsyncClient.request` (router, breakers, retries, limits, timeouts that see
through keep-alives: docs/architecture.md). On top of what the router does, the relay holds a stream
until its first real token (content, reasoning or a tool call): until then nothing has reached the
caller, so a stall past the first-token deadline (keep-alive comments do not count), a reset, a
5xx or an `insufficient_system_resource` finish moves the call to the next upstream
(`options["only_endpoints"]` narrows the router to the ones not tried yet). After the first token the
data payloads are forwarded as the upstream sent them, re-framed `data: <payload>\\n\\n`; only chunks
that may carry usage (and, for tool calls, reasoning) are decoded. A break after the first token
ends the caller's stream with a DeepSeek-shaped error event and no `[DONE]`; `[DONE]` is sent only
when the upstream sent it, or when the answer was complete (its finish_reason was seen) and the
upstream then closed or only sent keep-alives.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from aiohttp import web

from deepseek_kit._client.client import AsyncClient
from deepseek_kit._steps.limits.base import QueueTimeoutError
from deepseek_kit._transport.request import Response
from deepseek_kit._wire.errors import AllEndpointsFailedError, APIStatusError, DeepSeekError
from deepseek_kit._wire.sse import DONE
from deepseek_kit._wire.types import chunk_decoder

from .errors import GatewayError, error_event
from .repair import ReasoningMemory, StreamRecorder
from .stitch import HOLD_MAX_CHUNKS, Stitcher

if sys.version_info >= (3, 11):
    from asyncio import timeout_at
else:  # pragma: no cover - Python 3.10: aiohttp depends on async-timeout there
    from async_timeout import timeout_at  # type: ignore[import-not-found,unused-ignore]

__all__ = ["Call", "Caller", "Inbound", "Relay", "timeout_at"]

_DONE = b"data: [DONE]\n\n"

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no"}


class Inbound(Protocol):
    """A call that did not come through aiohttp (the fast server, fastproto.py): what the gateway
    reads from it, a way to read its body and the sink its stream is written to. aiohttp's
    `web.Request` is the other kind of caller (the WebSocket route and every other route)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def remote(self) -> str | None: ...
    @property
    def content_length(self) -> int | None: ...
    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read_capped(self, cap: int, timeout: float) -> bytes:
        """The whole body, inflated; GatewayError 413 past `cap` bytes, 408 past `timeout`."""
        ...

    def stream_sink(self, headers: Mapping[str, str]) -> web.StreamResponse:
        """A 200 response the relay prepares and writes a stream to."""
        ...


Caller = web.Request | Inbound


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[Any] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    message: _Delta | None = None  # non-stream answers
    text: str | None = None  # FIM chunks
    finish_reason: str | None = None


class _Peek(msgspec.Struct):
    choices: list[_Choice] = []


class _Usage(msgspec.Struct):
    usage: dict[str, Any] | None = None


_peek = msgspec.json.Decoder(_Peek)
_usage = msgspec.json.Decoder(_Usage)


@dataclass(slots=True)
class Call:
    """What one request did, for the access log, the metrics and the settlement."""

    model: str
    stream: bool
    started: float
    key_id: str = "-"
    key_name: str = "-"
    upstream: str = "-"
    status: int = 0
    usage: dict[str, Any] | None = None
    ttft: float | None = None
    chunks: int = 0
    trace_id: str | None = None
    error: str | None = None
    tried: list[str] = field(default_factory=list)
    lost_tokens: int = 0  # chunks of a broken piece a resumption continued (billed, usage never came)
    resumed: bool = False


def _peek_state(payload: bytes) -> tuple[bool, str | None]:
    """(carries a real token, its finish_reason) for a chunk read before the first token."""
    try:
        doc = _peek.decode(payload)
    except msgspec.DecodeError:
        return True, None  # not ours to judge: the caller gets it as sent
    real, finish = False, None
    for ch in doc.choices:
        d = ch.delta or ch.message
        if ch.text or (d is not None and (d.content or d.reasoning_content or d.reasoning or d.tool_calls)):
            real = True
        finish = finish or ch.finish_reason
    return real, finish


def _has_finish(p: bytes) -> bool:
    # a finish_reason that is a string (not null): one or two scans instead of three
    return b'"finish_reason":"' in p or b'"finish_reason": "' in p


def _has_usage(p: bytes) -> bool:
    return b'"usage":{' in p or b'"usage": {' in p


def _take_usage(p: bytes, call: Call) -> None:
    if _has_usage(p):
        try:
            u = _usage.decode(p).usage
        except msgspec.DecodeError:
            return
        if u is not None:
            call.usage = u


class _ErrorEvent(Exception):
    """Internal: the upstream sent an error object after the first token."""


class _Failover(Exception):
    """Internal: this upstream cannot serve the call before its first token; try the next one."""


class Relay:
    def __init__(self, client: AsyncClient, memory: ReasoningMemory, first_token: float | None) -> None:
        self.client = client
        self.memory = memory
        self.first_token = first_token
        assert client.router is not None
        self.names = [lv.name for lv in client.router.live]
        self.active = 0  # calls being relayed (a reload closes the old client once it is 0)
        self.idle = asyncio.Event()
        self.idle.set()
        # Operations (balance.py, app.py): upstreams kept out of the routing (out of balance), the
        # hook told of an upstream's 401/402/403, and the streams a shutdown closes after its grace.
        self.skip: set[str] = set()
        self.on_refused: Callable[[str, int], None] | None = None
        self.streams: set[asyncio.Task[Any]] = set()
        self.closing = False

    async def _open(self, path: str, body: bytes, stream: bool, beta: bool, call: Call) -> Response:
        """The upstream response (streams: held at the first event), failing over as described."""
        last: str = "no upstream was tried"
        while True:
            left = [n for n in self.names if n not in call.tried and n not in self.skip]
            if not left:
                if not call.tried and self.skip:
                    raise GatewayError(503, "every upstream is out of balance (402); retry later",
                                       type="service_unavailable_error", code="upstream_insufficient_balance",
                                       retry_after=10.0)
                raise GatewayError(503, f"no upstream could answer: {last}",
                                   type="service_unavailable_error", code="upstream_unavailable")
            # the router records its tries in options["route"] (the client copies the dict, not the list)
            route: list[list[Any]] = []
            opts: dict[str, Any] = {"only_endpoints": left, "route": route}
            try:
                resp = await self.client.request("POST", path, body=body, stream=stream, beta=beta,
                                                 options=opts)
            except AllEndpointsFailedError as exc:
                call.tried.extend(n for n, _ in exc.attempts)
                if self.on_refused is not None:
                    for n, e in exc.attempts:
                        if isinstance(e, APIStatusError):
                            self.on_refused(n, e.status_code)
                call.tried.extend(n for n in left if n not in call.tried)
                last = "; ".join(f"{n}: {type(e).__name__}" for n, e in exc.attempts) or last
                if exc.attempts and all(isinstance(e, QueueTimeoutError) or (  # full per-upstream caps
                        isinstance(e, APIStatusError) and e.status_code == 429) for _, e in exc.attempts):
                    raise GatewayError(429, "every upstream is rate limited; retry later",
                                       code="rate_limit_exceeded", retry_after=1.0) from None
                continue
            except APIStatusError as exc:
                name = _last_tried(opts)
                call.tried.append(name or left[0])
                if exc.status_code in (401, 402, 403):
                    if self.on_refused is not None:
                        self.on_refused(name or left[0], exc.status_code)
                    # The gateway's own credentials or balance at that upstream: not the caller's
                    # problem; another upstream may serve.
                    last = f"{name}: upstream refused the gateway ({exc.status_code})"
                    continue
                raise GatewayError(exc.status_code, exc.message, type=exc.type or None,
                                   code=str(exc.code or "invalid_request_error")) from None
            name = resp.endpoint or _last_tried(opts) or left[0]
            call.upstream = name
            if not stream:
                call.tried.append(name)
                if b'"insufficient_system_resource"' in resp.body and _peek_state(resp.body) == (
                        False, "insufficient_system_resource"):
                    last = f"{name}: insufficient_system_resource before any token"
                    continue
                return resp
            try:
                await self._first_token(resp, call)
            except _Failover as exc:
                call.tried.append(name)
                last = f"{name}: {exc}"
                continue
            call.tried.append(name)
            return resp

    async def _first_token(self, resp: Response, call: Call) -> None:
        """Read events until the first real token, keeping them in `resp.events` for the caller."""
        events = resp.events
        assert events is not None
        loop = asyncio.get_running_loop()
        # The pipeline already held this upstream to the first-token deadline up to its first
        # event (often an empty role chunk); the same deadline again bounds the wait from there
        # to the first real token.
        deadline = None if self.first_token is None else loop.time() + self.first_token
        held: list[bytes] = []
        while True:
            try:
                # a cancel scope, not wait_for: no task per event on the hot path
                async with timeout_at(deadline):
                    p = await events.next()
            except asyncio.TimeoutError:
                events.close()
                raise _Failover("no first token within the first-token deadline") from None
            except (DeepSeekError, Exception) as exc:  # StreamBroken, connection errors
                events.close()
                raise _Failover(f"stream broke before the first token ({type(exc).__name__})") from None
            if p is None:
                raise _Failover("stream ended before the first token")
            real, finish = _peek_state(p)
            if finish == "insufficient_system_resource" and not real:
                events.close()
                raise _Failover("insufficient_system_resource before the first token")
            held.append(p)
            if real or finish is not None:
                break
        # Put what was read back in front of the reader's queue (the Attempt step does the same).
        q, i = events._queue, events._i
        events._queue = held + q[i:]
        events._i = 0
        call.ttft = loop.time() - call.started

    async def relay(self, request: Caller, path: str, body: bytes, stream: bool, beta: bool,
                    call: Call, record: bool, stitcher: Stitcher | None = None,
                    out: web.StreamResponse | None = None) -> web.StreamResponse:
        """Relay one call; a stream is written to `out` when given (the WebSocket route's sink,
        websocket.py) instead of a new SSE response."""
        self.active += 1
        self.idle.clear()
        try:
            return await self._relay(request, path, body, stream, beta, call, record, stitcher, out)
        finally:
            self.active -= 1
            if not self.active:
                self.idle.set()

    async def _relay(self, request: Caller, path: str, body: bytes, stream: bool, beta: bool,
                     call: Call, record: bool, stitcher: Stitcher | None,
                     out: web.StreamResponse | None) -> web.StreamResponse:
        resp = await self._open(path, body, stream, beta, call)
        call.trace_id = resp.trace_id
        headers = {"x-dsk-upstream": call.upstream}
        if call.trace_id:
            headers["x-ds-trace-id"] = call.trace_id
        if not stream:
            call.ttft = asyncio.get_running_loop().time() - call.started
            _take_usage(resp.body, call)
            if record:
                self.memory.record_body(resp.body)
            call.status = 200
            return web.Response(body=resp.body, content_type="application/json", headers=headers)
        return await self._stream(request, resp, headers, call, record, stitcher, out)

    async def _stream(self, request: Caller, resp: Response, headers: dict[str, str], call: Call,
                      record: bool, stitcher: Stitcher | None, sink: web.StreamResponse | None
                      ) -> web.StreamResponse:
        events = resp.events
        assert events is not None
        if sink is not None:
            out = sink
        elif isinstance(request, web.BaseRequest):
            out = web.StreamResponse(status=200, headers={**_SSE_HEADERS, **headers})
        else:
            out = request.stream_sink({**_SSE_HEADERS, **headers})
        await out.prepare(request)  # type: ignore[arg-type]  # an Inbound's own sink ignores it
        call.status = 200
        task = asyncio.current_task()
        if task is not None:
            self.streams.add(task)  # a shutdown past its grace closes it (close_streams)
        recorder = StreamRecorder(self.memory) if record else None
        finished = False
        # Events the reader already decoded from one network read are written together: one
        # socket write per read instead of one per chunk, and no added delay (the batch is sent
        # before the reader waits for the network again).
        batch: list[bytes] = []
        try:
            while True:
                try:
                    p = await events.next()
                    if p is not None and p[:8] == b'{"error"':
                        raise _ErrorEvent  # an upstream's error object mid-stream: a break, not a chunk
                except Exception as exc:  # StreamBroken, connection errors: after the first token
                    call.error = f"upstream stream broke: {type(exc).__name__}"
                    if (stitcher is not None and not finished
                            and getattr(exc, "timeout", None) != "total"):
                        await out.write(b"".join(batch))
                        batch.clear()
                        events.close()
                        if await self._resume(out, stitcher, call, recorder):
                            return out
                    batch.append(error_event(
                        f"the upstream stream broke after {call.chunks} chunks "
                        f"({'complete answer' if finished else 'the answer is incomplete'}); "
                        "retry the request", "api_error", "stream_interrupted"))
                    await out.write(b"".join(batch))
                    return out
                if p is None:
                    break
                call.chunks += 1
                if recorder is not None:
                    recorder.feed(p)
                if stitcher is not None:
                    stitcher.keep(p)
                if _has_finish(p):
                    finished = True
                    events.finish()  # keep-alives after the answer end it (Timeout.tail)
                _take_usage(p, call)  # on the finish chunk, or a trailing usage-only one (older servers)
                batch += (b"data: ", p, b"\n\n")
                if recorder is None and stitcher is None and events._i < len(events._queue):
                    finished = self._drain(events, batch, call) or finished
                if events._i >= len(events._queue):  # the next event needs a network read
                    await out.write(b"".join(batch))
                    batch.clear()
            batch.append(_DONE)
            await out.write(b"".join(batch))
            if recorder is not None:
                recorder.commit()
            await out.write_eof()
        except asyncio.CancelledError:
            if not self.closing or task is None:
                raise
            if sys.version_info >= (3, 11):
                task.uncancel()
            call.error = "closed by the gateway's shutdown"
            # (a batch cut by the cancel may be half written: only the error event follows)
            await out.write(error_event(
                f"the gateway is shutting down; the stream was closed after {call.chunks} chunks "
                f"({'complete answer' if finished else 'the answer is incomplete'}); retry the request",
                "service_unavailable_error", "gateway_shutdown"))
        finally:
            events.close()
            if task is not None:
                self.streams.discard(task)
        return out

    def close_streams(self) -> int:
        """Shutdown past its grace: end every stream in flight with a DeepSeek-shaped error event
        (no `[DONE]`); returns how many were closed."""
        self.closing = True
        for t in list(self.streams):
            t.cancel()
        return len(self.streams)

    @staticmethod
    def _drain(events: Any, batch: list[bytes], call: Call) -> bool:
        """Take the payloads the reader already decoded from the same network read in one go: one
        join and a few scans over the joined bytes instead of a coroutine step and four scans per
        chunk (a burst of 200 chunks from one read is common behind a fast upstream). Stops before
        `[DONE]` and leaves anything unusual (an error object) to the per-chunk path. True when a
        finish_reason was among them."""
        q, i = events._queue, events._i
        end = len(q)
        while end > i and q[end - 1] == DONE:
            end -= 1  # [DONE] stays for events.next(), which ends the stream properly
        seg = q[i:end]
        if not seg or DONE in seg:
            return False
        joined = b"\n\ndata: ".join(seg)
        if b'data: {"error"' in joined or joined[:8] == b'{"error"':
            return False  # one of them is an error object: the per-chunk path handles it
        events._i = end
        call.chunks += len(seg)
        batch += (b"data: ", joined, b"\n\n")
        if _has_usage(joined):
            for p in reversed(seg):  # the last chunk with usage wins, as chunk by chunk
                if _has_usage(p):
                    _take_usage(p, call)
                    break
        if _has_finish(joined):
            events.finish()  # keep-alives after the answer end it (Timeout.tail)
            return True
        return False

    async def _resume(self, out: web.StreamResponse, stitcher: Stitcher, call: Call,
                      recorder: StreamRecorder | None) -> bool:
        """Continue the broken answer on an upstream with prefix completion (stitch.py); True when
        the continuation was delivered to its end (`[DONE]` written)."""
        partial = stitcher.partial()
        body = stitcher.body(partial) if partial is not None else None
        if partial is None or body is None:
            return False
        lost = call.chunks
        try:
            resp = await self.client.request("POST", "/chat/completions", body=body, stream=True, beta=True,
                                             options={"only_endpoints": stitcher.names})
        except Exception:  # DeepSeekError and the like: the original break stands
            return False
        events = resp.events
        if events is None:
            return False
        check = stitcher.check(partial)
        held: list[bytes] | None = []
        try:
            while True:
                try:
                    p = await events.next()
                except Exception:
                    return False  # a second break: the caller gets the error event
                if p is not None and p[:8] == b'{"error"':
                    return False
                if p is None:
                    if held is not None:
                        if check.settle() != "ok":
                            return False
                        await out.write(b"".join(b"data: " + h + b"\n\n" for h in held))
                    break
                if recorder is not None:
                    recorder.feed(p)
                if _has_finish(p):
                    events.finish()
                _take_usage(p, call)
                if held is not None:
                    try:
                        verdict = check.feed(chunk_decoder.decode(p))
                    except msgspec.DecodeError:
                        return False
                    held.append(p)
                    if verdict == "wait" and len(held) >= HOLD_MAX_CHUNKS:
                        verdict = check.settle()
                    if verdict == "restart":
                        return False
                    if verdict == "ok":
                        call.chunks += len(held)
                        await out.write(b"".join(b"data: " + h + b"\n\n" for h in held))
                        held = None
                    continue
                call.chunks += 1
                await out.write(b"data: " + p + b"\n\n")
            await out.write(_DONE)
            if recorder is not None:
                recorder.commit()
            call.lost_tokens = lost
            call.error = None
            call.resumed = True
            await out.write_eof()
            return True
        finally:
            events.close()


def _last_tried(opts: dict[str, Any]) -> str | None:
    route = opts.get("route")
    return str(route[-1][0]) if route else None
