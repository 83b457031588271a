"""One HTTP attempt, transport-agnostic: the terminal step of the pipeline.

It arms the Watchdog, opens the request, maps error statuses to typed errors (reading the body
whatever its content type), reads non-stream bodies past DeepSeek's blank keep-alive lines (an
empty 200 is an `EmptyResponseError`, which the retry step retries), and for streams reads up to
the first real event before returning, so that everything before the first token (stalls, resets,
an error event, empty streams) is still retryable while nothing has reached the caller.

A 2xx body that is not an answer (not JSON, nested too deep, or a completion without choices and
without an error envelope) is an `APIConnectionError` raised here, inside the pipeline, so the
retry and router steps treat it like any other unusable response (docs/attack-round-2026-12.md, C2/C4). Bodies
are capped while they are read (`max_response_bytes`, counted after gzip/deflate inflation, so a
compression bomb stops at the cap too; docs/attack-round-2026-12.md, C3), and so are unfinished SSE events
(`max_event_bytes`, see `_wire/sse.py`).
"""

from __future__ import annotations

import asyncio
import sys

import msgspec

from deepseek_kit._wire.errors import (
    APIConnectionError,
    APITimeoutError,
    EmptyResponseError,
    Secrets,
    error_fields,
    make_status_error,
    redact,
    secrets_of,
    status_for_error,
)
from deepseek_kit._wire.sse import DEFAULT_MAX_EVENT
from deepseek_kit._wire.types import SafeDecoder, decode_json

from .events import ByteSource, EventReader, StreamBroken
from .request import Request, Response
from .timeouts import Watchdog
from .transports import Transport

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "DEFAULT_MAX_RESPONSE_BYTES", "Attempt", "Secrets", "secrets_of"]

#: Largest non-stream response body read (after decompression); beyond it: APIConnectionError.
#: DeepSeek's largest answers (384K output tokens with reasoning and logprobs) stay well below.
DEFAULT_MAX_RESPONSE_BYTES = 64 << 20
#: Largest unfinished SSE event buffered; beyond it: StreamError (a chunk is a few hundred bytes).
DEFAULT_MAX_EVENT_BYTES = DEFAULT_MAX_EVENT

_MAX_ERROR_BODY = 1 << 20
_WS = b" \t\r\n"
_top_decoder: SafeDecoder[dict[str, msgspec.Raw]] = SafeDecoder(dict[str, msgspec.Raw])
_list_decoder: SafeDecoder[list[msgspec.Raw]] = SafeDecoder(list[msgspec.Raw])


def not_an_answer(path: str, body: bytes) -> str | None:
    """Why a 2xx non-stream `body` cannot be the answer to `path`, or None when it can.

    Every API answer is a JSON object; a completion (`/chat/completions`, `/completions`) has a
    non-empty `choices` list unless it is an error envelope, which the resources turn into the
    typed error (docs/dialects.md). One extra parse, without building the answer's objects."""
    try:
        top = _top_decoder.decode(body)
    except msgspec.DecodeError as exc:  # also not an object, and too-deep nesting
        return f"not a JSON object ({exc})"
    if not path.endswith("completions"):
        return None
    choices = top.get("choices")
    if choices is None:
        if "error" in top or "detail" in top or top.get("object") == b'"error"':
            return None
        return "a completion without choices"
    try:
        n = len(_list_decoder.decode(choices))
    except msgspec.DecodeError:
        return "choices is not a list"
    if n == 0 and "error" not in top:
        return "a completion with no choices"
    return None


class _Abort:
    """What the watchdog does when a limit passes: cancel the waiting task while no response
    exists yet (waiting for headers), drop the connection once one does."""

    __slots__ = ("source", "task")

    def __init__(self, task: asyncio.Task[object] | None) -> None:
        self.task = task
        self.source: ByteSource | None = None

    def __call__(self) -> None:
        if self.source is not None:
            self.source.abort()
        elif self.task is not None:
            self.task.cancel()


class Attempt:
    """The terminal pipeline step: `await Attempt(transport)(request)` performs one try."""

    def __init__(
        self,
        transport: Transport,
        secrets: Secrets = (),
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.transport = transport
        self.secrets_source = secrets
        self.max_response_bytes = max_response_bytes
        self.max_event_bytes = max_event_bytes
        self._read_errors: tuple[type[BaseException], ...] | None = None

    @property
    def secrets(self) -> tuple[str | None, ...]:
        """The secrets to mask now (the source is called each time: keys rotate, tokens refresh)."""
        return secrets_of(self.secrets_source)

    def read_errors(self) -> tuple[type[BaseException], ...]:
        if self._read_errors is None:
            errs = getattr(self.transport, "read_errors", ())
            self._read_errors = (*tuple(errs), OSError, asyncio.IncompleteReadError)
        return self._read_errors

    async def __call__(self, request: Request) -> Response:
        abort = _Abort(asyncio.current_task())
        wd = Watchdog(request.timeout, abort, deadline=request.options.get("deadline"))
        keep_watchdog = False
        src: ByteSource | None = None
        answered = False
        try:
            try:
                raw = await self.transport.open(request)
            except asyncio.CancelledError:
                if wd.fired is None:
                    raise
                if sys.version_info >= (3, 11) and abort.task is not None:
                    abort.task.uncancel()
                raise APITimeoutError(wd.fired, wd.limit(wd.fired)) from None
            src = abort.source = raw.source
            if not 200 <= raw.status < 300:
                body = await self._read_all(src, wd, limit=_MAX_ERROR_BODY)
                err = make_status_error(raw.status, raw.headers, body, secrets=self.secrets)
                if raw.status == 407:  # only a proxy answers 407 (RFC 9110 §15.5.8)
                    err.message = (f"the proxy refused the request: {err.message}; give it credentials "
                                   "in the proxy URL (http://user:password@host:port)")
                raise err
            if not request.stream:
                body = await self._read_body(src, wd, request, raw.headers.get("content-length"))
                if not body:
                    raise EmptyResponseError(
                        f"{request.origin} answered {raw.status} with an empty body "
                        "(DeepSeek does this under load; retryable)"
                    )
                src.release()
                answered = True
                why = not_an_answer(request.path, body)
                if why is not None:
                    snippet = redact(body[:200].decode("utf-8", "replace"), *self.secrets)
                    raise APIConnectionError(
                        f"{request.origin} answered {raw.status} with a malformed body ({why}): {snippet!r}")
                return Response(raw.status, raw.headers, body=body, first_event_at=wd.first_at)
            reader = EventReader(src, wd, self.read_errors(), max_event_bytes=self.max_event_bytes)
            reader.secrets = self.secrets_source
            try:
                first = await reader.next()
            except StreamBroken as b:
                if b.timeout:
                    raise APITimeoutError(b.timeout, b.after) from None
                raise APIConnectionError(f"stream from {request.origin} broke before the first "
                                         f"event: {b.reason}") from None
            if first is None:
                raise EmptyResponseError(f"stream from {request.origin} ended without any event")
            if first[:9] == b'{"error":' or first[:10] == b'{"error" :' or b'"object":"error"' in first[:200]:
                fields = error_fields(_json_or_none(first))
                if fields is not None:
                    reader.close()
                    status = status_for_error(fields[2], fields[1])
                    raise make_status_error(status, raw.headers, first, secrets=self.secrets)
            reader._queue.insert(reader._i, first)  # put the first event back for the caller
            keep_watchdog = answered = True
            return Response(raw.status, raw.headers, events=reader, first_event_at=wd.first_at)
        finally:
            if not keep_watchdog:
                wd.cancel()
            if src is not None and not answered:
                # Cancelled (a hedge that lost, the caller's deadline) or failed while reading: the
                # connection is dropped here, not left to the garbage collector still open.
                src.abort()

    async def _read_all(self, src: ByteSource, wd: Watchdog, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        lost: str | None = None
        try:
            while size < limit:
                data = await src.read()
                if not data:
                    break
                parts.append(data)
                size += len(data)
        except self.read_errors() as exc:
            # Raised below, outside this block: aiohttp's exceptions hold the request headers
            # (the key), and must not ride along as __context__ (docs/attack-round-2026-12.md, S1).
            lost = str(exc) or type(exc).__name__
        if lost is not None and wd.fired is None:
            src.abort()
            if not parts:
                raise APIConnectionError(f"connection lost while reading the error body: {lost}")
        if wd.fired is not None:
            raise APITimeoutError(wd.fired, wd.limit(wd.fired))
        if size >= limit:
            src.abort()
        else:
            src.release()
        return b"".join(parts)

    def _too_big(self, src: ByteSource, request: Request, what: str) -> APIConnectionError:
        src.abort()
        return APIConnectionError(
            f"{request.origin} sent a response body {what} max_response_bytes={self.max_response_bytes} "
            "(not an API answer; raise AsyncClient(max_response_bytes=...) if it is expected)")

    async def _read_body(self, src: ByteSource, wd: Watchdog, request: Request,
                         content_length: str | None = None) -> bytes:
        """Read a non-stream body, skipping leading blank keep-alive lines
        (docs/deepseek-api-notes.md#streaming-and-keep-alives), up to
        `max_response_bytes` (counted as read, after decompression). The first non-blank byte
        counts as the first token; later reads re-arm the idle limit."""
        cap = self.max_response_bytes
        if content_length is not None and content_length.isdigit() and int(content_length) > cap:
            raise self._too_big(src, request, f"of {content_length} bytes (Content-Length), over")
        parts: list[bytes] = []
        size = 0
        lost: str | None = None
        loop_time = asyncio.get_running_loop().time
        try:
            while True:
                data = await src.read()
                if not data:
                    break
                if not parts:
                    data = data.lstrip(_WS)
                    if not data:
                        continue
                    wd.first_event()
                elif not data.strip(_WS):
                    # Blank keep-alive bytes after the body began are not progress: some servers
                    # keep sending them after a complete answer (as streams do,
                    # docs/deepseek-api-notes.md#streaming-and-keep-alives) and never
                    # close. Kept (they may sit inside a JSON string), but once the body so far is
                    # a whole JSON document the answer is complete: drop the busy connection (it
                    # must not go back to the pool) and return it, instead of waiting for `total`.
                    parts.append(data)
                    size += len(data)
                    if size > cap:
                        raise self._too_big(src, request, "over")
                    body = b"".join(parts)
                    if _json_or_none(body) is not None:
                        src.abort()
                        return body
                    parts = [body]
                    continue
                else:
                    wd.last = loop_time()
                parts.append(data)
                size += len(data)
                if size > cap:
                    raise self._too_big(src, request, "over")
                if src.at_eof():  # Content-Length bodies: no extra read just to see the end
                    break
        except self.read_errors() as exc:
            lost = str(exc) or type(exc).__name__  # raised outside this block (S1, see _read_all)
        if lost is not None and wd.fired is None:
            src.abort()
            raise APIConnectionError(f"connection lost while reading the response: {lost}")
        if wd.fired is not None:
            src.abort()
            raise APITimeoutError(wd.fired, wd.limit(wd.fired))
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)


def _json_or_none(payload: bytes) -> object:
    try:
        return decode_json(payload)
    except msgspec.DecodeError:
        return None
