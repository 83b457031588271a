"""`AsyncStream`: typed chunks off an EventReader, accumulated as they pass.

`async for chunk in stream` yields `ChatCompletionChunk`s; `get_final_completion()` returns the
assembled ChatCompletion (also mid-stream). An error object inside the stream raises a StreamError
carrying the partial answer; so does a reset or an idle timeout (then a StreamTimeoutError, which
is also an APITimeoutError). Leaving early (`break`, an exception, `aclose()`, the `async with`
exit) drops the connection at once, so an unread stream never holds a pooled socket.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

import msgspec

from deepseek_kit._transport.events import EventReader, StreamBroken
from deepseek_kit._transport.request import Response
from deepseek_kit._wire.accumulate import ChunkAccumulator
from deepseek_kit._wire.dialects import error_object, stream_error
from deepseek_kit._wire.errors import StreamError, StreamTimeoutError, redact, secrets_of
from deepseek_kit._wire.sse import DONE
from deepseek_kit._wire.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChunkChoice,
    Completion,
    Usage,
    chunk_decoder,
    completion_decoder,
)

from .resume import HOLD_MAX_CHUNKS, ContinuationCheck, LostPiece, Resumer, total_usage

__all__ = ["AsyncCompletionStream", "AsyncStream"]

T = TypeVar("T")
_CUT = "insufficient_system_resource"  # a partial answer, not an error (see AsyncStream)


class _BaseStream(Generic[T]):
    __slots__ = ("_decode", "_reader", "response")

    def __init__(self, response: Response, decode: Callable[[bytes], T]) -> None:
        assert response.events is not None
        self.response = response
        self._reader: EventReader = response.events
        self._decode = decode

    @property
    def trace_id(self) -> str | None:
        """DeepSeek's `x-ds-trace-id` for this call (quote it when reporting a problem), or None."""
        return self.response.trace_id

    @property
    def attempts(self) -> int:
        """How many attempts the call took before the stream started (1 when the first one did)."""
        return self.response.attempts

    def close(self) -> None:
        """Stop reading and drop the connection now (an unread stream cannot go back to the pool).
        Safe to call twice; `async with` and `break` out of `async for` do it for you."""
        self._reader.close()

    async def aclose(self) -> None:
        """`close()` for `async` code that expects an awaitable (`contextlib.aclosing`)."""
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

    def _broken_error(self, b: StreamBroken) -> StreamError:
        partial = self._partial()
        if b.timeout:
            return StreamTimeoutError(b.timeout, b.after, partial=partial)
        return StreamError(f"Stream broke: {b.reason}.", partial=partial)

    def _raise_broken(self, b: StreamBroken) -> None:
        raise self._broken_error(b) from None

    def _redact(self, text: str) -> str:
        """Mask every secret of the client in text a server sent (docs/attack-round-2026-12.md, S2)."""
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

    With a `Resumer` attached (chat streams from servers that support prefix completion, see
    `_client/resume.py`), a break is continued through prefix completion instead of raised; a
    continuation is held back until `ContinuationCheck` accepts it, and one that starts the answer
    again is dropped. `resumed` counts the continuations, `usage_estimated` says a lost piece's
    usage was estimated. An `insufficient_system_resource` finish is a partial answer: when it
    cannot be continued the stream ends with that finish_reason, never with an error.

    `client.chat.completions.create(..., stream=True)` builds it (you never construct one):
    `response` is the transport's answer whose server-sent events it reads, `resumer` the
    prefix-completion resumer, or None where a break is raised as `StreamError`."""

    __slots__ = ("_acc", "_check", "_cut", "_error", "_held", "_over", "_pieces", "_ready", "_resumer",
                 "resumed", "usage_estimated")

    def __init__(self, response: Response, resumer: Resumer[AsyncStream] | None = None) -> None:
        super().__init__(response, chunk_decoder.decode)
        self._acc = ChunkAccumulator()
        self._resumer = resumer
        self.resumed = 0
        self.usage_estimated = False
        self._pieces: list[LostPiece] = []  # the pieces before the current one
        self._check: ContinuationCheck | None = None  # set while a continuation is held back
        self._held: list[ChatCompletionChunk] = []  # the continuation's chunks not yet accepted
        self._ready: deque[ChatCompletionChunk] = deque()  # accepted, not yet given to the caller
        self._error: StreamError | None = None  # the error the current continuation replaces
        self._cut: tuple[int, Usage | None] | None = None  # insufficient_system_resource: (choice, usage)
        self._over = False
        response.final = self._acc.completion  # what done callbacks (logs) read when the stream ends

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        while True:
            if self._ready:
                chunk = self._ready.popleft()
            else:
                if self._over:
                    raise StopAsyncIteration
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
                        out = await self._fail(self._broken_error(b), b.timeout or "broken")
                        if out is not None:
                            return out
                        continue
                    if p is None:
                        if self._check is not None:  # the continuation ended while held back
                            out = self._settle(self._check.settle())
                            if out is not None:
                                return out
                            continue
                        raise StopAsyncIteration
                    payload = p
                try:
                    chunk = self._decode(payload)
                except msgspec.DecodeError as exc:
                    if self._cut is not None:  # a malformed continuation of a cut answer
                        self._reader.outcome = "broken"
                        self._reader.close()
                        self._check = None
                        self._held = []
                        return self._end_cut(None)
                    self._raise_decode(payload, exc)
                    raise  # unreachable
                if chunk.error is not None or (not chunk.choices and chunk.object == "error"):
                    err = stream_error(chunk, payload)
                    if err is not None:
                        # a failure for metrics and breakers, not "left early"
                        self._reader.outcome = "broken"
                        self._reader.close()
                        out = await self._fail(StreamError(
                            f"The server sent an error inside the stream: {self._scrub(err)}",
                            partial=self._partial(), error=err), "error")
                        if out is not None:
                            return out
                        continue
                if self._check is not None:
                    self._held.append(chunk)
                    verdict = self._check.feed(chunk)
                    if verdict == "wait" and len(self._held) >= HOLD_MAX_CHUNKS:
                        verdict = self._check.settle()
                    out = self._settle(verdict)
                    if out is not None:
                        return out
                    continue
            if self._resumer is not None and (self.resumed or (
                    chunk.choices and chunk.choices[0].finish_reason == _CUT)):
                handled = await self._splice(chunk)
                if handled is not chunk:
                    if handled is None:
                        continue
                    return handled
            if chunk.usage is not None:
                self.response.usage = chunk.usage
            if self._acc.add(chunk) and self._acc.finished:
                self._reader.finish()
            return chunk

    def _settle(self, verdict: str) -> ChatCompletionChunk | None:
        """Act on the continuation check: "wait" holds on, "ok" releases the held chunks, "restart"
        drops the continuation and ends the stream as the original failure would have."""
        if verdict == "wait":
            return None
        self._check = None
        held, self._held = self._held, []
        if verdict == "ok":
            self._ready.extend(held)
            return None
        self._reader.close()  # nothing of it reaches the caller; no further resumption
        return self._give_up(self._error)

    async def _fail(self, exc: StreamError, reason: str) -> ChatCompletionChunk | None:
        """The current piece failed: continue it (None: read on), or end the stream as the answer
        allows (the chunk to return) or raise."""
        if self._check is not None:
            # A continuation failed while held back. Its chunks were never shown; when they
            # already repeated the delivered start, it was a restart: the original failure stands.
            verdict = self._check.settle()
            self._check = None
            self._held = []
            if verdict == "restart":
                return self._give_up(self._error)
        if await self._resume(reason, exc):
            return None
        return self._give_up(exc)

    def _give_up(self, exc: StreamError | None) -> ChatCompletionChunk:
        """No (further) continuation: an answer cut by insufficient_system_resource ends with that
        finish_reason and what was delivered; anything else raises the failure."""
        self._over = True
        if self._cut is not None:
            return self._end_cut(None)
        if exc is None:  # not reached: every continuation replaces an error or a cut
            exc = StreamError("Stream broke.", partial=self._partial())
        raise exc

    def _end_cut(self, current: Usage | None) -> ChatCompletionChunk:
        """The finish chunk of an answer cut by insufficient_system_resource (accumulated);
        `current` is the usage of the piece now ending when the server sent it."""
        assert self._cut is not None
        index, usage = self._cut
        self._over = True
        if self.resumed:  # continued before: every piece's usage, the unknown ones estimated
            usage = self._summed_usage(current) or usage
        acc = self._acc
        final = ChatCompletionChunk(id=acc.id, created=acc.created, model=acc.model,
                                    system_fingerprint=acc.system_fingerprint, usage=usage, choices=[
                                        ChunkChoice(index=index, finish_reason=_CUT)])
        acc.add(final)
        self.response.usage = usage
        return final

    def _summed_usage(self, current: Usage | None) -> Usage | None:
        last = self._pieces[-1] if self._pieces else None
        total, estimated = total_usage([*self._pieces, LostPiece.of(self._acc.completion(), last, current)])
        if estimated:
            self.usage_estimated = True
        return total

    async def _splice(self, chunk: ChatCompletionChunk) -> ChatCompletionChunk | None:
        """Resumption bookkeeping: continuation chunks keep the first piece's id and carry the
        summed usage; an `insufficient_system_resource` finish is continued instead of ending the
        stream. Returns `chunk` to go on as usual, None to read on, or another chunk to return
        (already accumulated)."""
        if self.resumed:
            chunk.id = self._acc.id or chunk.id
            if chunk.usage is not None and self._pieces:
                chunk.usage = self._summed_usage(chunk.usage) or chunk.usage
        choices = chunk.choices
        if not (choices and choices[0].finish_reason == _CUT):
            return chunk
        usage = chunk.usage
        choices[0].finish_reason = None
        chunk.usage = None
        self._acc.add(chunk)  # its content belongs to the answer either way
        self._reader.close()
        self._cut = (choices[0].index, usage)
        if await self._resume(_CUT, None, known_usage=usage):
            d = choices[0].delta
            # its own text (DeepSeek sends none on a finish chunk) still goes to the caller
            return chunk if (d.content or d.reasoning_content or d.tool_calls) else None
        # Not resumable: the stream ends as the server ended it.
        self._end_cut(usage)
        choices[0].finish_reason = _CUT
        chunk.usage = self.response.usage
        return chunk

    async def _resume(self, reason: str, exc: StreamError | None, known_usage: Usage | None = None) -> bool:
        """Swap in a continuation stream (held back until checked); False when resumption is off
        or impossible."""
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
        if exc is not None:
            self._error = exc
        self._check = ContinuationCheck(partial, resumer.policy.match_chars)
        self._held = []
        self._ready.clear()  # anything left of the piece that ended (after its finish) goes with it
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
        """What has been assembled from the chunks so far (content, reasoning, tool calls, usage);
        `get_final_completion()` is the usual way to read it."""
        return self._acc

    async def until_done(self) -> ChatCompletion:
        """Read the rest of the stream and return the final completion."""
        async for _ in self:
            pass
        return self._acc.completion()


class AsyncCompletionStream(_BaseStream[Completion]):
    """A FIM (`/beta/completions`) stream of `Completion` chunks, returned by
    `client.beta.completions.create(..., stream=True)`: iterate it inside `async with`, then
    `text()` joins the pieces. `response` is the transport's answer whose events it reads (the
    client builds the stream; you never construct one)."""

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
        """The text of choice `index` received so far (all of it once the stream is read)."""
        return "".join(self._texts.get(index, []))
