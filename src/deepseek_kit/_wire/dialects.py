"""One answer shape whichever OpenAI-style server answered: DeepSeek, vLLM, SGLang, Ollama, llama.cpp.

Private deployments speak dialects of the OpenAI format (sources and real payloads in
docs/dialects.md). This module folds them into DeepSeek's shape where the answer is decoded:

- reasoning: vLLM >= 0.11 and Ollama send `reasoning` instead of `reasoning_content`; some send
  both with the same text. It becomes `reasoning_content` (never doubled) and `reasoning` is reset
  to UNSET, so `to_json()`, `to_param()` and the caller see only the DeepSeek field.
- tool calls: vLLM < 0.11 sends `tool_calls: []` on plain answers (becomes None, as DeepSeek omits
  it); a call without an id gets one, or the caller could not answer it.
- errors: a 200 whose body is an error envelope (nested `{"error": {...}}`, `{"error": "text"}`,
  vLLM < 0.10.1 / SGLang flat `{"object": "error", ...}`) raises the typed APIStatusError its
  `code` or `type` stands for, instead of an empty completion; inside a stream the same envelopes
  become the ErrorObject that AsyncStream raises as a StreamError.

Streams are normalized chunk by chunk in `_accumulate.ChunkAccumulator.add` (reasoning, reused
tool-call indexes, null ids and names), which the stream already calls for every chunk.

Cost on DeepSeek's answers: detection, not configuration. Every rule is triggered by a field
DeepSeek never sends (`reasoning`, `tool_calls: []`, an id-less call, no `choices`), so the fast
path is one or two attribute tests per choice, and nothing is parsed twice. No per-endpoint
`dialect=` is needed on the response side; the request side (`stream_options`) is noted in
docs/dialects.md.
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Mapping
from typing import Any

import msgspec
from msgspec import UNSET

from .errors import (
    APIConnectionError,
    APIStatusError,
    error_fields,
    make_status_error,
    redact,
    status_for_error,
)
from .types import ChatCompletion, ChatCompletionChunk, ErrorObject, chat_completion_decoder, decode_json

__all__ = [
    "decode_chat_completion",
    "error_object",
    "new_tool_call_id",
    "normalize_completion",
    "ok_body_error",
    "stream_error",
]


def new_tool_call_id() -> str:
    """An id for a call the server sent without one (SGLang's own form: `call_` + 24 hex digits)."""
    return "call_" + _secrets.token_hex(12)


def decode_chat_completion(
    status: int, headers: Mapping[str, str], body: bytes, *, secrets: tuple[str | None, ...] = ()
) -> ChatCompletion:
    """Decode and normalize a non-stream chat completion body; raise the typed error when the body
    is an error envelope (whatever the 200 says) and APIConnectionError when it is not JSON."""
    try:
        comp = chat_completion_decoder.decode(body)
    except msgspec.DecodeError as exc:
        err = ok_body_error(status, headers, body, secrets=secrets)
        if err is not None:
            raise err from None
        snippet = redact(body[:200].decode("utf-8", "replace"), *secrets)
        raise APIConnectionError(
            f"the server sent a malformed chat completion ({exc}): {snippet!r}") from None
    return normalize_completion(comp, body, status, headers, secrets=secrets)


def normalize_completion(
    comp: ChatCompletion,
    body: bytes = b"",
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    *,
    secrets: tuple[str | None, ...] = (),
) -> ChatCompletion:
    """Fold a decoded completion into DeepSeek's shape, in place; returns it. `body`/`status`/
    `headers` are only read when the completion has no choices (an error envelope, see module doc)."""
    choices = comp.choices
    if not choices:
        err = ok_body_error(status, headers or {}, body, secrets=secrets)
        if err is not None:
            raise err
        return comp
    for ch in choices:
        m = ch.message
        if m.reasoning is not UNSET:
            if m.reasoning_content is None and m.reasoning is not None:
                m.reasoning_content = m.reasoning
            m.reasoning = UNSET
        calls = m.tool_calls
        if calls is not None:
            if not calls:
                m.tool_calls = None
            else:
                for tc in calls:
                    if not tc.id:
                        tc.id = new_tool_call_id()
    return comp


def ok_body_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: tuple[str | None, ...] = (),
) -> APIStatusError | None:
    """The typed error for a success-status body that is an error envelope, or None. Its status is
    the one the error names (`code` 400-599, else its `type`, else 500); the body passes through
    `make_status_error`, so the message, type, code and a redacted body are kept."""
    try:
        obj = decode_json(body.strip() or b"null")
    except msgspec.DecodeError:
        return None
    fields = error_fields(obj)
    if fields is None or (fields[0] is None and fields[1] is None and fields[2] is None):
        return None
    return make_status_error(status_for_error(fields[2], fields[1]), headers, body, secrets=secrets)


def error_object(payload: bytes | Any) -> ErrorObject | None:
    """The error a stream event (or any decoded JSON value) carries, as an ErrorObject; None when it
    is not an error envelope. Used for events the chunk type cannot hold: flat envelopes and
    `{"error": "text"}`."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        try:
            payload = decode_json(payload)
        except msgspec.DecodeError:
            return None
    fields = error_fields(payload)
    if fields is None:
        return None
    message, etype, code, param = fields
    return ErrorObject(message=message or "the server reported an error without a message",
                       type=etype, param=param, code=code)


def stream_error(chunk: ChatCompletionChunk, payload: bytes) -> ErrorObject | None:
    """The error a decoded stream chunk stands for, or None. Nested envelopes decode into
    `chunk.error`; a flat one (`"object": "error"`) decodes into an empty chunk, so its fields are
    read from the payload. Call it only when `chunk.error is not None or not chunk.choices` (every
    DeepSeek content chunk has choices), which keeps the per-chunk cost where it was."""
    if chunk.error is not None:
        return chunk.error
    if chunk.object == "error":
        return error_object(payload)
    return None
