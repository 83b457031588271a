"""`ConversationStream`: the stream of one conversation turn, committed to the history when the
answer is complete (see `_conversation/conversation.py` for why a turn is committed whole).

The conversation hands it two callables (open the turn's stream; commit the final answer) rather
than itself, so this module does not import the conversation that imports it."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from deepseek_kit._wire.errors import UsageError
from deepseek_kit._wire.types import ChatCompletion, ChatCompletionChunk

if TYPE_CHECKING:
    from types import TracebackType

    from deepseek_kit._client.stream import AsyncStream

__all__ = ["ConversationStream"]


class ConversationStream:
    """The stream of one conversation turn: `ChatCompletionChunk`s, then the turn is committed.

    Iterate it (`async for`), optionally inside `async with`. `content`, `reasoning` and
    `get_final_completion()` give what has arrived; `committed` says whether the turn went into the
    history. Leaving before the finish chunk (break, aclose, exception, cancellation) commits
    nothing and drops the connection. From its first iteration until it ends or is closed, the
    stream holds its conversation: other turns wait (use `async with` so it is always closed; a
    stream dropped unclosed lets go when it is garbage-collected).

    `Conversation.stream()` builds it (you never construct one): `open_turn` sends the request
    (holding the conversation) and returns the `AsyncStream` and the model, `commit` adds the
    finished answer to the history, and `release` lets the conversation go once the turn is
    over (read to the end, closed, or failed)."""

    def __init__(self, open_turn: Callable[[], Awaitable[tuple[AsyncStream, str]]],
                 commit: Callable[[ChatCompletion, str], None],
                 release: Callable[[], None] | None = None) -> None:
        self._open_turn = open_turn
        self._commit_turn = commit
        # Called once when the turn is over (read to the end, closed, or failed): the conversation
        # holds its lock from `open_turn` until then, so turns never interleave.
        self._release = release
        self._finalizer: weakref.finalize[..., ConversationStream] | None = None
        self._inner: AsyncStream | None = None
        self._model = ""
        self.committed = False
        self.closed = False

    async def _open(self) -> AsyncStream:
        if self._inner is None:
            if self.closed:
                raise UsageError("this conversation stream was closed")
            self._inner, self._model = await self._open_turn()
            if self._release is not None:
                # A stream dropped unclosed (`async for ... in conv.stream(q): break`, then nothing
                # holds it) must not hold the conversation forever: when it is collected, the lock
                # is released on its loop.
                self._finalizer = weakref.finalize(self, _release_soon, asyncio.get_running_loop(),
                                                   self._release)
        return self._inner

    def __aiter__(self) -> ConversationStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        if self.closed:
            raise StopAsyncIteration
        inner = await self._open()
        try:
            return await inner.__anext__()
        except StopAsyncIteration:
            try:
                self._commit()
            finally:
                self.closed = True
                self._done()
            raise
        except BaseException:
            # A failed stream is over: nothing is committed, the next turn may start.
            self.closed = True
            self._done()
            raise

    def _done(self) -> None:
        release, self._release = self._release, None
        if self._finalizer is not None:
            self._finalizer.detach()
        if release is not None and self._inner is not None:
            release()

    def _commit(self) -> None:
        if not self.committed and self._inner is not None:
            self.committed = True
            self._commit_turn(self._inner.get_final_completion(), self._model)

    async def __aenter__(self) -> ConversationStream:
        await self._open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading. The turn is committed only if its answer had finished (finish chunk seen)."""
        try:
            if self._inner is not None and not self.committed and _finished(self._inner):
                self._commit()
        finally:
            self.closed = True
            self._done()
            if self._inner is not None:
                await self._inner.aclose()

    async def until_done(self) -> ChatCompletion:
        """Read the rest and return the final completion (the turn is then committed)."""
        async for _ in self:
            pass
        return self.get_final_completion()

    def get_final_completion(self) -> ChatCompletion:
        """The answer assembled so far (all of it once the stream is read); UsageError before the
        stream has started."""
        if self._inner is None:
            raise UsageError("the stream has not started: iterate it or use 'async with' first")
        return self._inner.get_final_completion()

    @property
    def content(self) -> str:
        """The answer text received so far ("" before the first chunk)."""
        c = self.get_final_completion() if self._inner is not None else None
        return (c.choices[0].message.content or "") if c and c.choices else ""

    @property
    def reasoning(self) -> str:
        """The reasoning_content received so far (thinking mode; "" otherwise)."""
        c = self.get_final_completion() if self._inner is not None else None
        return (c.choices[0].message.reasoning_content or "") if c and c.choices else ""


def _release_soon(loop: asyncio.AbstractEventLoop, release: Callable[[], None]) -> None:
    """Release a dropped stream's conversation lock on the loop that holds it (the collector may
    run in another thread); nothing to do once that loop is closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(release)


def _finished(stream: AsyncStream) -> bool:
    """True when the stream's finish chunk arrived (every choice has a finish_reason)."""
    return bool(stream.accumulator.finished)
