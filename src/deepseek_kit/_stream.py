"""`AsyncStream`: typed chunks off an EventReader, accumulated as they pass.

`async for chunk in stream` yields `ChatCompletionChunk`s; `get_final_completion()` returns the
assembled ChatCompletion (also mid-stream). An error object inside the stream raises a StreamError
carrying the partial answer; so does a reset or an idle timeout (then a StreamTimeoutError, which
is also an APITimeoutError). Leaving early (`break`, an exception, `aclose()`, the `async with`
exit) drops the connection at once, so an unread stream never holds a pooled socket.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

import msgspec

from ._accumulate import ChunkAccumulator
from ._dialects import error_object, stream_error
from ._errors import StreamError, StreamTimeoutError, redact, secrets_of
from ._events import EventReader, StreamBroken
from ._request import Response
from ._resume import LostPiece, Resumer, sum_usage
from ._sse import DONE
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChunkChoice,
    Completion,
    Usage,
    chunk_decoder,
    completion_decoder,
)

__all__ = ["AsyncCompletionStream", "AsyncStream"]

T = TypeVar("T")


class _BaseStream(Generic[T]):
    __slots__ = ("_decode", "_reader", "response")

    def __init__(self, response: Response, decode: Callable[[bytes], T]) -> None:
        assert response.events is not None
        self.response = response
        self._reader: EventReader = response.events
        self._decode = decode

    @property
    def trace_id(self) -> str | None:
        return self.response.trace_id

    @property
    def attempts(self) -> int:
        return self.response.attempts

    def close(self) -> None:
        self._reader.close()

    async def aclose(self) -> None:
        self._reader.close()

    def __aiter__(self) -> _BaseStream[T]:
        return self

    async def __anext__(self) -> T:
        raise NotImplementedError

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._reader.close()

    def __del__(self) -> None:
        # A stream dropped without being read to the end must not leak its socket.
        reader = getattr(self, "_reader", None)
        if reader is not None and not reader.closed:
            with contextlib.suppress(Exception):
                reader.close()

    def _partial(self) -> ChatCompletion | None:
        return None

    def _raise_broken(self, b: StreamBroken) -> None:
        partial = self._partial()
        if b.timeout:
            raise StreamTimeoutError(b.timeout, b.after, partial=partial) from None
        raise StreamError(f"Stream broke: {b.reason}.", partial=partial) from None

    def _redact(self, text: str) -> str:
        """Mask every secret of the client in text a server sent (issue 8, S2)."""
        return redact(text, *secrets_of(self._reader.secrets))

    def _scrub(self, err: Any) -> str:
        """The error object's message, masked; also masked in the object the caller gets."""
        err.message = self._redact(err.message)
        return str(err.message)

    def _raise_decode(self, payload: bytes, exc: Exception) -> None:
        self._reader.outcome = "broken"
        self._reader.close()
        err = error_object(payload)  # e.g. {"error": "text"}: an error, not a malformed event
        if err is not None:
            raise StreamError(f"The server sent an error inside the stream: {self._scrub(err)}",
                              partial=self._partial(), error=err) from None
        snippet = self._redact(payload[:200].decode("utf-8", "replace"))
        raise StreamError(f"Malformed stream event ({exc}): {snippet!r}", partial=self._partial()) from None


class AsyncStream(_BaseStream[ChatCompletionChunk]):
    """A chat-completion stream. Use as `async with await client.chat.completions.create(...,
    stream=True) as stream:`; iterate it; then `stream.get_final_completion()`.

    With a `Resumer` attached (the default for chat streams), a break after the first event is
    continued through prefix completion instead of raised (see `_resume.py`); `resumed` counts the
    continuations, `usage_estimated` says a lost piece's usage was estimated."""

    __slots__ = ("_acc", "_pieces", "_resumer", "resumed", "usage_estimated")

    def __init__(self, response: Response, resumer: Resumer | None = None) -> None:
        super().__init__(response, chunk_decoder.decode)
        self._acc = ChunkAccumulator()
        self._resumer = resumer
        self.resumed = 0
        self.usage_estimated = False
        self._pieces: list[LostPiece] = []  # the pieces before the current one
        response.final = self._acc.completion  # what done callbacks (logs) read when the stream ends

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        r = self._reader
        q = r._queue
        i = r._i
        if i < len(q) and q[i] != DONE:
            # Fast path: the event was already read off the socket with earlier ones.
            r._i = i + 1
            payload = q[i]
        else:
            try:
                p = await r.next()
            except StreamBroken as b:
                if await self._resume(b.timeout or "broken"):
                    return await self.__anext__()
                self._raise_broken(b)
                raise  # unreachable
            if p is None:
                raise StopAsyncIteration
            payload = p
        try:
            chunk = self._decode(payload)
        except msgspec.DecodeError as exc:
            self._raise_decode(payload, exc)
            raise  # unreachable
        if chunk.error is not None or (not chunk.choices and chunk.object == "error"):
            err = stream_error(chunk, payload)
            if err is not None:
                self._reader.outcome = "broken"  # a failure for metrics and breakers, not "left early"
                self._reader.close()
                if await self._resume("error"):
                    return await self.__anext__()
                raise StreamError(f"The server sent an error inside the stream: {self._scrub(err)}",
                                  partial=self._partial(), error=err)
        if self._resumer is not None and (self.resumed or chunk.choices):
            handled = await self._splice(chunk)
            if handled is not None:
                return handled
        if chunk.usage is not None:
            self.response.usage = chunk.usage
        if self._acc.add(chunk) and self._acc.finished:
            self._reader.finish()
        return chunk

    async def _splice(self, chunk: ChatCompletionChunk) -> ChatCompletionChunk | None:
        """Resumption bookkeeping on the (rare) paths that need it: continuation chunks keep the
        first piece's id and carry the summed usage (then None: accumulate as usual); an
        `insufficient_system_resource` finish is continued instead of ending the stream (then the
        chunk to give the caller, already accumulated)."""
        if self.resumed:
            chunk.id = self._acc.id or chunk.id
            if chunk.usage is not None and self._pieces:
                total = chunk.usage
                last = self._pieces[-1]
                for piece in self._pieces:
                    if piece.usage is None:
                        self.usage_estimated = True
                    total = sum_usage(total, piece.usage_given(chunk.usage, last))
                chunk.usage = total
        choices = chunk.choices
        if not (choices and choices[0].finish_reason == "insufficient_system_resource"):
            return None
        usage = chunk.usage
        choices[0].finish_reason = None
        chunk.usage = None
        self._acc.add(chunk)  # its content belongs to the answer either way
        self._reader.close()
        if await self._resume("insufficient_system_resource", known_usage=usage):
            return await self.__anext__()
        # Not resumable: the stream ends as the server ended it.
        choices[0].finish_reason = "insufficient_system_resource"
        chunk.usage = usage
        self._acc.add(ChatCompletionChunk(id=chunk.id, usage=usage, choices=[
            ChunkChoice(index=choices[0].index, finish_reason="insufficient_system_resource")]))
        self.response.usage = usage
        return chunk

    async def _resume(self, reason: str, known_usage: Usage | None = None) -> bool:
        """Swap in a continuation stream; False when resumption is off or impossible."""
        resumer = self._resumer
        if resumer is None:
            return False
        partial = self._acc.completion()
        if not resumer.resumable(partial, reason):
            return False
        nxt = await resumer.continuation(partial)
        if nxt is None:
            return False
        self._pieces.append(LostPiece.of(partial, self._pieces[-1] if self._pieces else None, known_usage))
        self.resumed += 1
        self.response = nxt.response
        nxt.response.final = self._acc.completion  # the continuation's answer is this whole answer
        self._reader = nxt._reader
        nxt._reader = None  # type: ignore[assignment]  # ownership moved to this stream
        return True

    def _partial(self) -> ChatCompletion | None:
        return self._acc.completion()

    def get_final_completion(self) -> ChatCompletion:
        """The assembled completion: content, reasoning_content, tool calls, logprobs, usage.
        Call after iterating (mid-stream it returns what has arrived so far)."""
        return self._acc.completion()

    @property
    def accumulator(self) -> ChunkAccumulator:
        return self._acc

    async def until_done(self) -> ChatCompletion:
        """Read the rest of the stream and return the final completion."""
        async for _ in self:
            pass
        return self._acc.completion()


class AsyncCompletionStream(_BaseStream[Completion]):
    """A FIM (`/beta/completions`) stream of text_completion chunks."""

    __slots__ = ("_texts", "_usage")

    def __init__(self, response: Response) -> None:
        super().__init__(response, completion_decoder.decode)
        self._texts: dict[int, list[str]] = {}
        self._usage: Any = None

    async def __aenter__(self) -> AsyncCompletionStream:
        return self

    async def __anext__(self) -> Completion:
        try:
            payload = await self._reader.next()
        except StreamBroken as b:
            self._raise_broken(b)
            raise
        if payload is None:
            raise StopAsyncIteration
        try:
            chunk = self._decode(payload)
        except msgspec.DecodeError as exc:
            self._raise_decode(payload, exc)
            raise
        if chunk.error is not None:
            self._reader.close()
            raise StreamError(f"The server sent an error inside the stream: {self._scrub(chunk.error)}",
                              error=chunk.error)
        for c in chunk.choices:
            self._texts.setdefault(c.index, []).append(c.text)
            if c.finish_reason is not None:
                self._reader.finish()
        if chunk.usage is not None:
            self._usage = self.response.usage = chunk.usage
        return chunk

    def text(self, index: int = 0) -> str:
        return "".join(self._texts.get(index, []))
