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
from ._errors import StreamError, StreamTimeoutError, redact
from ._events import EventReader, StreamBroken
from ._request import Response
from ._sse import DONE
from ._types import ChatCompletion, ChatCompletionChunk, Completion, chunk_decoder, completion_decoder

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

    def _raise_decode(self, payload: bytes, exc: Exception) -> None:
        self._reader.close()
        snippet = redact(payload[:200].decode("utf-8", "replace"))
        raise StreamError(f"Malformed stream event ({exc}): {snippet!r}", partial=self._partial()) from None


class AsyncStream(_BaseStream[ChatCompletionChunk]):
    """A chat-completion stream. Use as `async with await client.chat.completions.create(...,
    stream=True) as stream:`; iterate it; then `stream.get_final_completion()`."""

    __slots__ = ("_acc",)

    def __init__(self, response: Response) -> None:
        super().__init__(response, chunk_decoder.decode)
        self._acc = ChunkAccumulator()

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
        if chunk.error is not None:
            self._reader.close()
            err = chunk.error
            raise StreamError(f"The server sent an error inside the stream: {redact(err.message)}",
                              partial=self._partial(), error=err)
        if chunk.usage is not None:
            self.response.usage = chunk.usage
        if self._acc.add(chunk) and self._acc.finished:
            self._reader.finish()
        return chunk

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
            raise StreamError(f"The server sent an error inside the stream: {redact(chunk.error.message)}",
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
