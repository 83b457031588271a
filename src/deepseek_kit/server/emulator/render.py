"""Wire bytes of answers: non-stream bodies and SSE frames, byte-for-byte in DeepSeek's shape.

Built by hand rather than from structs because the shape is the point
(docs/deepseek-api-notes.md#response-objects, #what-the-emulator-reproduces):
key order as in captured traffic; `completion_tokens_details` absent when thinking is off;
`reasoning_content` only in thinking mode; while reasoning streams `content` is an explicit
`null` and while content streams `reasoning_content` is `null`; the first chunk carries the role
and an empty string; `usage: null` on earlier chunks only with `include_usage`; tool-call
fragments carry `id`/`type`/`name` only in the first one.

Everything that does not depend on the response id, time or cache hits is encoded once per
distinct request (`ChatPieces`, cached with the answer); a request then only splices bytes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec

from .generate import Answer, FimAnswer
from .schema_values import WORDS

__all__ = [
    "LAZY_DELTAS",
    "ChatPieces",
    "FimPieces",
    "LazyDeltas",
    "chat_body",
    "chat_pieces",
    "fim_body",
    "fim_pieces",
    "usage_json",
]

_enc = msgspec.json.encode
REASONING, CONTENT, TOOL = 0, 1, 2


Delta = tuple[bytes, bytes, int]  # (delta JSON, logprobs JSON, kind) of one stream chunk
#: Answers with more stream chunks than this keep no list of encoded deltas: they are encoded
#: again as each stream is sent (a 384K-token answer's list is ~40 MB, per distinct answer).
LAZY_DELTAS = 8192


class LazyDeltas:
    """The stream deltas of a big answer, encoded on each iteration (deterministically)."""

    __slots__ = ("_make", "_n")

    def __init__(self, make: Callable[[], Iterator[Delta]], n: int) -> None:
        self._make = make
        self._n = n

    def __iter__(self) -> Iterator[Delta]:
        return self._make()

    def __len__(self) -> int:
        return self._n


@dataclass(slots=True)
class ChatPieces:
    message: bytes  # the non-stream `message` object
    logprobs: bytes  # the non-stream `logprobs` value
    first_delta: bytes
    deltas: list[Delta] | LazyDeltas  # per stream chunk
    final_delta: bytes


@dataclass(slots=True)
class FimPieces:
    text: bytes  # JSON string of the whole text (with the echoed prompt)
    logprobs: bytes
    deltas: list[tuple[bytes, bytes]]  # (JSON text piece, logprobs) per stream chunk


def _logprob_entries(tokens: Sequence[str], rng: random.Random, top: int) -> list[dict[str, Any]]:
    out = []
    for tok in tokens:
        lp = -round(rng.random() ** 3 * 3, 6)
        b = list(tok.encode())
        alts = [{"token": tok, "logprob": lp, "bytes": b}]
        step = lp
        for _ in range(top - 1):
            step = round(step - 0.5 - rng.random() * 2, 6)
            alt = " " + rng.choice(WORDS)
            alts.append({"token": alt, "logprob": step, "bytes": list(alt.encode())})
        out.append({"token": tok, "logprob": lp, "bytes": b, "top_logprobs": alts[:top]})
    return out


def _groups(tokens: list[str], size: int) -> list[list[str]]:
    return [tokens[i : i + size] for i in range(0, len(tokens), size)]


def _walk(answer: Answer, thinking: bool, logprobs: bool, top: int, seed: int,
          lp_all: dict[str, Any] | None) -> Iterator[Delta]:
    """The stream deltas in order; with `lp_all`, also collects the non-stream logprobs (the
    random draws happen in the same order every time, so a second walk gives the same bytes)."""
    rng = random.Random(seed)
    size = answer.chunk_tokens
    r_entries: list[dict[str, Any]] = []
    if thinking:
        for group in _groups(answer.reasoning or [], size):
            lp = b"null"
            if logprobs:
                entries = _logprob_entries(group, rng, top)
                if lp_all is not None:
                    r_entries += entries
                lp = b'{"content":null,"reasoning_content":' + _enc(entries) + b"}"
            yield b'{"content":null,"reasoning_content":' + _enc("".join(group)) + b"}", lp, REASONING
    c_entries: list[dict[str, Any]] = []
    tail = b',"reasoning_content":null}' if thinking else b"}"
    for group in _groups(answer.content, size):
        lp = b"null"
        if logprobs:
            entries = _logprob_entries(group, rng, top)
            if lp_all is not None:
                c_entries += entries
            lp = b'{"content":' + _enc(entries) + (b',"reasoning_content":null}' if thinking else b"}")
        yield b'{"content":' + _enc("".join(group)) + tail, lp, CONTENT
    if lp_all is not None:
        lp_all["content"] = c_entries
        if thinking:
            lp_all["reasoning_content"] = r_entries
    for index, call in enumerate(answer.tool_calls):
        head = {"index": index, "id": call.id, "type": "function",
                "function": {"name": call.name, "arguments": ""}}
        yield b'{"tool_calls":[' + _enc(head) + b"]}", b"null", TOOL
        for frag in call.fragments:
            piece = {"index": index, "function": {"arguments": frag}}
            yield b'{"tool_calls":[' + _enc(piece) + b"]}", b"null", TOOL


def chat_pieces(answer: Answer, thinking: bool, logprobs: bool, top: int, seed: int) -> ChatPieces:
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(answer.content)}
    if thinking:
        msg["reasoning_content"] = "".join(answer.reasoning or [])
    if answer.tool_calls:
        msg["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in answer.tool_calls
        ]
    if thinking:
        first = b'{"role":"assistant","content":null,"reasoning_content":""}'
        final = b'{"content":"","reasoning_content":null}'
    else:
        first = b'{"role":"assistant","content":""}'
        final = b'{"content":""}'
    size = answer.chunk_tokens
    n = (-(-answer.reasoning_tokens // size) if thinking else 0) + -(-len(answer.content) // size)
    n += sum(1 + len(c.fragments) for c in answer.tool_calls)
    lp_all: dict[str, Any] = {}
    deltas: list[Delta] | LazyDeltas
    if n <= LAZY_DELTAS:
        deltas = list(_walk(answer, thinking, logprobs, top, seed, lp_all))
    else:
        if logprobs:
            for _ in _walk(answer, thinking, logprobs, top, seed, lp_all):
                pass
        deltas = LazyDeltas(partial(_walk, answer, thinking, logprobs, top, seed, None), n)
    return ChatPieces(_enc(msg), _enc(lp_all) if logprobs else b"null", first, deltas, final)


def usage_json(prompt: int, hit: int, completion: int, reasoning: int | None) -> bytes:
    """DeepSeek's usage object (docs/deepseek-api-notes.md#usage-fields):
    hit + miss = prompt; details only when thinking was on."""
    details = ""
    if reasoning is not None:
        details = f',"completion_tokens_details":{{"reasoning_tokens":{reasoning}}}'
    return (
        f'{{"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":{prompt + completion},'
        f'"prompt_tokens_details":{{"cached_tokens":{hit}}}{details},'
        f'"prompt_cache_hit_tokens":{hit},"prompt_cache_miss_tokens":{prompt - hit}}}'
    ).encode()


def chat_body(rid: str, created: int, model: bytes, fp: str, pieces: ChatPieces, finish: str,
              usage: bytes) -> bytes:
    return b"".join((
        b'{"id":"', rid.encode(), b'","object":"chat.completion","created":', str(created).encode(),
        b',"model":', model, b',"choices":[{"index":0,"message":', pieces.message,
        b',"logprobs":', pieces.logprobs, b',"finish_reason":"', finish.encode(), b'"}],"usage":', usage,
        b',"system_fingerprint":"', fp.encode(), b'"}',
    ))


def _fim_logprobs(tokens: Sequence[str], rng: random.Random, top: int, offset: int) -> dict[str, Any]:
    offsets, lps, tops = [], [], []
    pos = offset
    for tok in tokens:
        lp = -round(rng.random() ** 3 * 3, 6)
        offsets.append(pos)
        pos += len(tok)
        lps.append(lp)
        alts = {tok: lp}
        step = lp
        while len(alts) < top:
            step = round(step - 0.5 - rng.random() * 2, 6)
            alts.setdefault(" " + rng.choice(WORDS) + str(len(alts)), step)
        tops.append(dict(list(alts.items())[:top]))
    return {"text_offset": offsets, "token_logprobs": lps, "tokens": list(tokens), "top_logprobs": tops}


def fim_pieces(answer: FimAnswer, echo_prompt: str | None, logprobs: int | None, seed: int) -> FimPieces:
    rng = random.Random(seed)
    prefix = echo_prompt or ""
    text = prefix + "".join(answer.tokens)
    lp_all = b"null"
    if logprobs is not None:
        lp_all = _enc(_fim_logprobs(answer.tokens, random.Random(seed), logprobs, len(prefix)))
    deltas: list[tuple[bytes, bytes]] = []
    pos = len(prefix)
    for i, group in enumerate(_groups(answer.tokens, answer.chunk_tokens)):
        piece = "".join(group)
        lp = b"null"
        if logprobs is not None:
            lp = _enc(_fim_logprobs(group, rng, logprobs, pos))
        pos += len(piece)
        deltas.append((_enc(prefix + piece if i == 0 else piece), lp))
    if not deltas and prefix:
        deltas.append((_enc(prefix), b"null"))
    return FimPieces(_enc(text), lp_all, deltas)


def fim_body(rid: str, created: int, model: bytes, fp: str, pieces: FimPieces, finish: str,
             usage: bytes) -> bytes:
    return b"".join((
        b'{"id":"', rid.encode(), b'","object":"text_completion","created":', str(created).encode(),
        b',"model":', model, b',"system_fingerprint":"', fp.encode(), b'","choices":[{"text":', pieces.text,
        b',"index":0,"logprobs":', pieces.logprobs, b',"finish_reason":"', finish.encode(),
        b'"}],"usage":', usage, b"}",
    ))
