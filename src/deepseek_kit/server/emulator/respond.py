"""Sending an answer: plain JSON, JSON behind keep-alive blank lines, or an SSE stream - with the
faults that strike after the status line
(docs/deepseek-api-notes.md#streaming-and-keep-alives, #what-the-emulator-reproduces).

* queued (`queue_delay`, `stall_first_token`, `queue`): headers go out at once, then blank lines
  (non-stream) or `: keep-alive` comments (stream) every `keepalive` seconds; after
  `queue_timeout` the connection is closed without an answer
  (docs/deepseek-api-notes.md#what-the-emulator-reproduces, 10 minutes);
* `reset_after=N`: the connection is closed after N data events (stream) or half the body;
* `error_event_after=N`: an `{"error": ...}` event, then the stream ends without `[DONE]`;
* `keepalive_forever`: the complete answer, then comments forever, never `[DONE]` (#6959);
* `delay_chunks`: a pause between events.

Without delays a stream is written in ~64 KB batches of joined events, which is what keeps a
thousand concurrent streams cheap; events are produced lazily, so a slow reader holds at most one
batch (plus the transport buffer), not the whole answer.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable

from aiohttp import web

from deepseek_kit._wire.sse import DONE, encode_comment, encode_data

from .faults import ClientGone, Directives, close_after_flush, pause

__all__ = ["SSE_HEADERS", "send_json", "send_stream"]

JSON_TYPE = "application/json"
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_KEEPALIVE = encode_comment("keep-alive")
_DONE = encode_data(DONE)
_ERROR_EVENT = encode_data(
    b'{"error":{"message":"Internal Server Error","type":"server_error","param":null,"code":"server_error"}}'
)


async def _write(resp: web.StreamResponse, data: bytes) -> None:
    try:
        await resp.write(data)
    except (ConnectionError, RuntimeError):
        raise ClientGone from None


async def _eof(resp: web.StreamResponse) -> None:
    try:
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        raise ClientGone from None


async def _queue(request: web.BaseRequest, resp: web.StreamResponse, seconds: float, every: float,
                 beat: bytes, closing: asyncio.Event, limit: float) -> bool:
    """Keep-alives for `seconds`; False when the queue timeout closed the connection instead."""
    wait = min(seconds, limit)
    loop = asyncio.get_running_loop()
    end = loop.time() + wait
    every = max(every, 0.001)
    while True:
        left = end - loop.time()
        if left <= 0:
            break
        await pause(request, min(every, left), closing)
        if end - loop.time() > 0:
            await _write(resp, beat)
    if seconds >= limit:
        await close_after_flush(request)
        return False
    return True


async def send_json(request: web.BaseRequest, body: bytes, d: Directives, stall: float, keepalive: float,
                    closing: asyncio.Event, queue_timeout: float) -> web.StreamResponse:
    """A non-stream answer."""
    if not (stall > 0 or d.reset_after is not None or d.keepalive_forever):
        return web.Response(body=body, content_type=JSON_TYPE)
    resp = web.StreamResponse(headers={"Content-Type": JSON_TYPE})
    if d.reset_after is not None:
        resp.content_length = len(body)
    await resp.prepare(request)
    if stall > 0 and not await _queue(request, resp, stall, keepalive, b"\n", closing, queue_timeout):
        return resp
    if d.reset_after is not None:
        await _write(resp, body[: len(body) // 2])
        await close_after_flush(request)
        return resp
    await _write(resp, body)
    while d.keepalive_forever:
        await pause(request, keepalive, closing)
        await _write(resp, b"\n")
    await _eof(resp)
    return resp


async def send_stream(request: web.BaseRequest, events: Iterable[bytes], d: Directives, stall: float,
                      keepalive: float, closing: asyncio.Event, queue_timeout: float) -> web.StreamResponse:
    """An SSE answer. `events` are the JSON payloads in order (without `data: ` framing), taken
    lazily: at most ~64 KB of frames exist at a time, and a client that reads slowly holds back
    the generation (aiohttp's write waits for the transport to drain)."""
    resp = web.StreamResponse(headers=SSE_HEADERS)
    await resp.prepare(request)
    if stall > 0 and not await _queue(request, resp, stall, keepalive, _KEEPALIVE, closing, queue_timeout):
        return resp
    cut: int | None = None
    if d.reset_after is not None:
        cut = d.reset_after
    if d.error_event_after is not None:
        cut = d.error_event_after if cut is None else min(cut, d.error_event_after)
    sent = map(encode_data, itertools.islice(events, cut))
    if d.delay_chunks > 0:
        for i, frame in enumerate(sent):
            if i:
                await pause(request, d.delay_chunks, closing)
            await _write(resp, frame)
    else:
        buf: list[bytes] = []
        size = 0
        for frame in sent:
            buf.append(frame)
            size += len(frame)
            if size >= 65536:
                await _write(resp, b"".join(buf))
                buf, size = [], 0
        if buf:
            await _write(resp, b"".join(buf))
    reset, error = d.reset_after, d.error_event_after
    if reset is not None and (error is None or reset <= error):
        await close_after_flush(request)  # no [DONE]: the client sees the body end mid-stream
        return resp
    if error is not None:
        await _write(resp, _ERROR_EVENT)
        await _eof(resp)
        await close_after_flush(request)
        return resp
    if d.keepalive_forever:
        while True:
            await pause(request, keepalive, closing)
            await _write(resp, _KEEPALIVE)
    if d.delay_chunks > 0:
        await pause(request, d.delay_chunks, closing)
    await _write(resp, _DONE)
    await _eof(resp)
    return resp
