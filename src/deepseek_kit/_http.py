"""One HTTP attempt, transport-agnostic: the terminal step of the pipeline.

It arms the Watchdog, opens the request, maps error statuses to typed errors (reading the body
whatever its content type), reads non-stream bodies past DeepSeek's blank keep-alive lines (an
empty 200 is an `EmptyResponseError`, which the retry step retries), and for streams reads up to
the first real event before returning, so that everything before the first token (stalls, resets,
an error event, empty streams) is still retryable while nothing has reached the caller.
"""

from __future__ import annotations

import asyncio
import sys

from ._errors import (
    APIConnectionError,
    APITimeoutError,
    EmptyResponseError,
    error_fields,
    make_status_error,
    status_for_error,
)
from ._events import EventReader, StreamBroken
from ._request import Request, Response
from ._timeouts import Watchdog
from ._transport import ByteSource, Transport

__all__ = ["Attempt"]

_MAX_ERROR_BODY = 1 << 20
_WS = b" \t\r\n"


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

    def __init__(self, transport: Transport, secrets: tuple[str | None, ...] = ()) -> None:
        self.transport = transport
        self.secrets = secrets
        self._read_errors: tuple[type[BaseException], ...] | None = None

    def read_errors(self) -> tuple[type[BaseException], ...]:
        if self._read_errors is None:
            errs = getattr(self.transport, "read_errors", ())
            self._read_errors = (*tuple(errs), OSError, asyncio.IncompleteReadError)
        return self._read_errors

    async def __call__(self, request: Request) -> Response:
        abort = _Abort(asyncio.current_task())
        wd = Watchdog(request.timeout, abort, deadline=request.options.get("deadline"))
        keep_watchdog = False
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
                raise make_status_error(raw.status, raw.headers, body, secrets=self.secrets)
            if not request.stream:
                body = await self._read_body(src, wd)
                if not body:
                    raise EmptyResponseError(
                        f"{request.origin} answered {raw.status} with an empty body "
                        "(DeepSeek does this under load; retryable)"
                    )
                src.release()
                return Response(raw.status, raw.headers, body=body, first_event_at=wd.first_at)
            reader = EventReader(src, wd, self.read_errors())
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
            keep_watchdog = True
            return Response(raw.status, raw.headers, events=reader, first_event_at=wd.first_at)
        finally:
            if not keep_watchdog:
                wd.cancel()

    async def _read_all(self, src: ByteSource, wd: Watchdog, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        try:
            while size < limit:
                data = await src.read()
                if not data:
                    break
                parts.append(data)
                size += len(data)
        except self.read_errors() as exc:
            if wd.fired is not None:
                raise APITimeoutError(wd.fired, wd.limit(wd.fired)) from None
            src.abort()
            if not parts:
                raise APIConnectionError(f"connection lost while reading the error body: {exc}") from None
        if wd.fired is not None:
            raise APITimeoutError(wd.fired, wd.limit(wd.fired))
        if size >= limit:
            src.abort()
        else:
            src.release()
        return b"".join(parts)

    async def _read_body(self, src: ByteSource, wd: Watchdog) -> bytes:
        """Read a non-stream body, skipping leading blank keep-alive lines (§4.4). The first
        non-blank byte counts as the first token; later reads re-arm the idle limit."""
        parts: list[bytes] = []
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
                else:
                    wd.last = loop_time()
                parts.append(data)
                if src.at_eof():  # Content-Length bodies: no extra read just to see the end
                    break
        except self.read_errors() as exc:
            src.abort()
            if wd.fired is not None:
                raise APITimeoutError(wd.fired, wd.limit(wd.fired)) from None
            raise APIConnectionError(f"connection lost while reading the response: {exc}") from None
        if wd.fired is not None:
            src.abort()
            raise APITimeoutError(wd.fired, wd.limit(wd.fired))
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)


def _json_or_none(payload: bytes) -> object:
    import msgspec

    try:
        return msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return None
