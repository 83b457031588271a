"""Wire bytes of answers: non-stream bodies and SSE frames, byte-for-byte in DeepSeek's shape.

Built by hand rather than from structs because the shape is the point (deepseek-api.md §4, §9.11-19):
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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from .generate import Answer, FimAnswer
from .schema_values import WORDS

__all__ = [
    "ChatPieces",
    "FimPieces",
    "chat_body",
    "chat_pieces",
    "fim_body",
    "fim_pieces",
    "usage_json",
]

_enc = msgspec.json.encode
REASONING, CONTENT, TOOL = 0, 1, 2


@dataclass(slots=True)
class ChatPieces:
    message: bytes  # the non-stream `message` object
    logprobs: bytes  # the non-stream `logprobs` value
    first_delta: bytes
    deltas: list[tuple[bytes, bytes, int]]  # (delta, logprobs, kind) per stream chunk
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


def chat_pieces(answer: Answer, thinking: bool, logprobs: bool, top: int, seed: int) -> ChatPieces:
    rng = random.Random(seed)
    size = answer.chunk_tokens
    reasoning = answer.reasoning or []
    content_text = "".join(answer.content)
    msg: dict[str, Any] = {"role": "assistant", "content": content_text}
    if thinking:
        msg["reasoning_content"] = "".join(reasoning)
    if answer.tool_calls:
        msg["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in answer.tool_calls
        ]
    deltas: list[tuple[bytes, bytes, int]] = []
    lp_all: dict[str, Any] = {}
    if thinking:
        first = b'{"role":"assistant","content":null,"reasoning_content":""}'
        final = b'{"content":"","reasoning_content":null}'
        r_entries: list[dict[str, Any]] = []
        for group in _groups(reasoning, size):
            lp = b"null"
            if logprobs:
                entries = _logprob_entries(group, rng, top)
                r_entries += entries
                lp = b'{"content":null,"reasoning_content":' + _enc(entries) + b"}"
            delta = b'{"content":null,"reasoning_content":' + _enc("".join(group)) + b"}"
            deltas.append((delta, lp, REASONING))
        lp_all["reasoning_content"] = r_entries
    else:
        first = b'{"role":"assistant","content":""}'
        final = b'{"content":""}'
    c_entries: list[dict[str, Any]] = []
    tail = b',"reasoning_content":null}' if thinking else b"}"
    for group in _groups(answer.content, size):
        lp = b"null"
        if logprobs:
            entries = _logprob_entries(group, rng, top)
            c_entries += entries
            lp = b'{"content":' + _enc(entries) + (b',"reasoning_content":null}' if thinking else b"}")
        deltas.append((b'{"content":' + _enc("".join(group)) + tail, lp, CONTENT))
    lp_all = {"content": c_entries, **lp_all}
    for index, call in enumerate(answer.tool_calls):
        head = {"index": index, "id": call.id, "type": "function",
                "function": {"name": call.name, "arguments": ""}}
        deltas.append((b'{"tool_calls":[' + _enc(head) + b"]}", b"null", TOOL))
        for frag in call.fragments:
            piece = {"index": index, "function": {"arguments": frag}}
            deltas.append((b'{"tool_calls":[' + _enc(piece) + b"]}", b"null", TOOL))
    return ChatPieces(_enc(msg), _enc(lp_all) if logprobs else b"null", first, deltas, final)


def usage_json(prompt: int, hit: int, completion: int, reasoning: int | None) -> bytes:
    """DeepSeek's usage object (§4.1): hit + miss = prompt; details only when thinking was on."""
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
