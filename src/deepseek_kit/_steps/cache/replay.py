"""Cached answers in and out: record a live stream, and replay a stored answer as a stream.

Entries are stored as the complete answer object, the same JSON a non-stream call returns
(`chat.completion`, or `text_completion` for FIM). A non-stream hit returns those bytes as the
body. A stream hit turns them back into the chunks DeepSeek sends
(https://api-docs.deepseek.com/api/create-chat-completion, and the
emulator's `render.py`, which follows captured traffic):

* a role chunk: `{"role":"assistant","content":""}`, or in thinking mode (the answer has
  `reasoning_content`) `{"role":"assistant","content":null,"reasoning_content":""}`;
* reasoning chunks with `content: null`, then content chunks (with `reasoning_content: null` in
  thinking mode), each carrying up to `PIECE` characters; logprobs ride on the first chunk of
  their kind;
* tool-call fragments: the first with `index`, `id`, `type`, `name` and `arguments: ""`, then
  argument pieces with only `index`;
* a final chunk with an empty delta, the `finish_reason` and `usage` (`usage: null` on every earlier
  chunk when the request asked for `include_usage`, absent otherwise), then `data: [DONE]`.

The replay is a real `EventReader` over an in-memory byte source, so `AsyncStream`, the sync
twin and every step above the cache see exactly what a live stream gives them.

Recording a live stream: `Recorder` takes over the response's reader and keeps each batch of
payloads as it is read (one list extend per network read, and only for requests the cache will
store); when the stream ends, `assemble_chat`/`assemble_fim` decode them in one call and build the
answer with the same `ChunkAccumulator` the stream layer uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from deepseek_kit._transport.events import EventReader
from deepseek_kit._transport.request import Response
from deepseek_kit._transport.timeouts import Timeout, Watchdog
from deepseek_kit._wire.accumulate import ChunkAccumulator
from deepseek_kit._wire.sse import DONE
from deepseek_kit._wire.types import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    SafeDecoder,
)

__all__ = ["PIECE", "Recorder", "assemble_chat", "assemble_fim", "chat_chunks", "fim_chunks", "replay"]

#: Characters of text per replayed chunk. A hit has nothing to wait for, so larger pieces than the
#: live ~1 token only mean fewer events to decode; the shape stays the same.
PIECE = 128

_encode = msgspec.json.encode
_NO_LIMITS = Timeout(connect=None, first_token=None, idle=None, total=None)
_chunks_decoder: SafeDecoder[list[ChatCompletionChunk]] = SafeDecoder(list[ChatCompletionChunk])
_fim_chunks_decoder: SafeDecoder[list[Completion]] = SafeDecoder(list[Completion])
_SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "x-dsk-cache": "hit"}
_JSON_HEADERS = {"content-type": "application/json", "x-dsk-cache": "hit"}


def _pieces(text: str) -> list[str]:
    return [text[i:i + PIECE] for i in range(0, len(text), PIECE)]


def _lp(entries: Any) -> list[Any]:
    return [msgspec.to_builtins(e) for e in entries] if entries else []


def chat_chunks(c: ChatCompletion, include_usage: bool) -> list[bytes]:
    """The data payloads of a stream that assembles to `c`."""
    head = {"id": c.id, "object": "chat.completion.chunk", "created": c.created, "model": c.model,
            "system_fingerprint": c.system_fingerprint}
    out: list[bytes] = []

    def emit(index: int, delta: dict[str, Any], logprobs: Any = None, finish: str | None = None,
             usage: Any = None, last: bool = False) -> None:
        chunk: dict[str, Any] = {**head, "choices": [
            {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}
        if last:
            chunk["usage"] = msgspec.to_builtins(usage)
        elif include_usage:
            chunk["usage"] = None
        out.append(_encode(chunk))

    for n, choice in enumerate(c.choices):
        m, i = choice.message, choice.index
        thinking = m.reasoning_content is not None
        lps = choice.logprobs
        if thinking:
            emit(i, {"role": m.role, "content": None, "reasoning_content": ""})
            r_lp = _lp(lps.reasoning_content if lps else None)
            for k, piece in enumerate(_pieces(m.reasoning_content or "") or ([""] if r_lp else [])):
                r = {"content": None, "reasoning_content": r_lp} if k == 0 and r_lp else None
                emit(i, {"content": None, "reasoning_content": piece}, r)
        else:
            emit(i, {"role": m.role, "content": ""})
        c_lp = _lp(lps.content if lps else None)
        for k, piece in enumerate(_pieces(m.content or "") or ([""] if c_lp else [])):
            delta: dict[str, Any] = {"content": piece}
            lp: dict[str, Any] | None = {"content": c_lp} if k == 0 and c_lp else None
            if thinking:
                delta["reasoning_content"] = None
                if lp is not None:
                    lp["reasoning_content"] = None
            emit(i, delta, lp)
        for t, call in enumerate(m.tool_calls or ()):
            emit(i, {"tool_calls": [{"index": t, "id": call.id, "type": call.type,
                                     "function": {"name": call.function.name, "arguments": ""}}]})
            for piece in _pieces(call.function.arguments):
                emit(i, {"tool_calls": [{"index": t, "function": {"arguments": piece}}]})
        final: dict[str, Any] = {"content": "", "reasoning_content": None} if thinking else {"content": ""}
        emit(i, final, None, choice.finish_reason or "stop", c.usage, last=n == len(c.choices) - 1)
    return out


def fim_chunks(c: Completion, include_usage: bool) -> list[bytes]:
    """The data payloads of a FIM stream whose texts concatenate to `c`'s."""
    head = {"id": c.id, "object": "text_completion", "created": c.created, "model": c.model,
            "system_fingerprint": c.system_fingerprint}
    out: list[bytes] = []
    for n, ch in enumerate(c.choices):
        lp = msgspec.to_builtins(ch.logprobs)
        for k, piece in enumerate(_pieces(ch.text)):
            first = lp if k == 0 else None
            chunk: dict[str, Any] = {**head, "choices": [
                {"text": piece, "index": ch.index, "logprobs": first, "finish_reason": None}]}
            if include_usage:
                chunk["usage"] = None
            out.append(_encode(chunk))
        end: dict[str, Any] = {**head, "choices": [
            {"text": "", "index": ch.index, "logprobs": None, "finish_reason": ch.finish_reason or "stop"}]}
        if n == len(c.choices) - 1:
            end["usage"] = msgspec.to_builtins(c.usage)
        elif include_usage:
            end["usage"] = None
        out.append(_encode(end))
    return out


class _MemorySource:
    """A ByteSource over bytes already in memory: the whole stream in one read, then EOF."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self) -> bytes:
        data, self._data = self._data, b""
        return data

    def abort(self) -> None:
        self._data = b""

    def release(self) -> None:
        pass

    def at_eof(self) -> bool:
        return not self._data


def replay(entry: bytes, *, stream: bool, fim: bool = False, include_usage: bool = False) -> Response:
    """A `Response` serving a stored answer: its bytes as the body, or re-chunked as a stream.
    `cache_hit` is set; `attempts` is 0 (nothing was sent upstream)."""
    loop_time = asyncio.get_running_loop().time()
    if not stream:
        resp = Response(200, dict(_JSON_HEADERS), body=entry, attempts=0, first_event_at=loop_time)
    else:
        if fim:
            payloads = fim_chunks(msgspec.json.decode(entry, type=Completion), include_usage)
        else:
            payloads = chat_chunks(msgspec.json.decode(entry, type=ChatCompletion), include_usage)
        blob = b"".join([b"data: " + p + b"\n\n" for p in payloads]) + b"data: [DONE]\n\n"
        src = _MemorySource(blob)
        reader = EventReader(src, Watchdog(_NO_LIMITS, src.abort), ())
        resp = Response(200, dict(_SSE_HEADERS), events=reader, attempts=0, first_event_at=loop_time)
    resp.cache_hit = True
    return resp


class Recorder(EventReader):
    """A live stream's EventReader that also keeps every payload read off the network.

    It takes over the state of the reader the attempt returned (same source, watchdog, decoder,
    queue and close callback) and records each batch of events when `_fill` reads one, i.e. once
    per network read, not per chunk: `AsyncStream` takes already-read events straight from the
    queue without calling `next()`. Payloads already queued at takeover are recorded at once.
    """

    __slots__ = ("_seen", "payloads")

    def __init__(self, inner: EventReader) -> None:
        for name in EventReader.__slots__:
            setattr(self, name, getattr(inner, name))
        self._seen = self._queue
        self.payloads: list[bytes] = self._queue[self._i:]

    async def _fill(self) -> bytes | None:
        try:
            return await super()._fill()
        finally:
            q = self._queue
            if q is not self._seen:
                self._seen = q
                self.payloads.extend(q)


def _decode_all(payloads: Sequence[bytes], decode: Callable[[bytes], Any]) -> Any:
    try:
        return decode(b"[" + b",".join([p for p in payloads if p != DONE]) + b"]")
    except msgspec.DecodeError:
        return None


def assemble_chat(payloads: Sequence[bytes]) -> ChatCompletion | None:
    """The answer a recorded stream carried, or None unless every choice reached a finish_reason."""
    chunks = _decode_all(payloads, _chunks_decoder.decode)
    if not chunks:
        return None
    acc = ChunkAccumulator()
    for chunk in chunks:
        if chunk.error is not None:
            return None
        acc.add(chunk)
    return acc.completion() if acc.finished else None


def _merge_fim_logprobs(a: CompletionLogprobs | None, b: CompletionLogprobs) -> CompletionLogprobs:
    """FIM logprobs are parallel lists per chunk; a whole answer's are their concatenation."""
    if a is None:
        return b
    fields = ("text_offset", "token_logprobs", "tokens", "top_logprobs")
    merged = {f: (getattr(a, f) or []) + (getattr(b, f) or []) for f in fields}
    return CompletionLogprobs(**merged)


def assemble_fim(payloads: Sequence[bytes]) -> Completion | None:
    """A recorded FIM stream as one `text_completion`, or None if a choice never finished."""
    chunks = _decode_all(payloads, _fim_chunks_decoder.decode)
    if not chunks:
        return None
    first = chunks[0]
    texts: dict[int, list[str]] = {}
    finish: dict[int, str | None] = {}
    logprobs: dict[int, Any] = {}
    usage = None
    for chunk in chunks:
        if chunk.error is not None:
            return None
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            texts.setdefault(ch.index, []).append(ch.text)
            finish.setdefault(ch.index, None)
            if ch.finish_reason is not None:
                finish[ch.index] = ch.finish_reason
            if ch.logprobs is not None:
                logprobs[ch.index] = _merge_fim_logprobs(logprobs.get(ch.index), ch.logprobs)
    if not texts or any(f is None for f in finish.values()):
        return None
    choices = [CompletionChoice(index=i, text="".join(texts[i]), logprobs=logprobs.get(i),
                                finish_reason=finish[i]) for i in sorted(texts)]
    return Completion(id=first.id, created=first.created, model=first.model,
                      system_fingerprint=first.system_fingerprint, choices=choices, usage=usage)
