"""Small aiohttp servers on 127.0.0.1 that answer `POST /v1/chat/completions` the way vLLM, SGLang,
Ollama and llama.cpp do, byte for byte as far as docs/dialects.md could establish (field names and
order, nulls, JSON spacing and escaping, SSE framing, where usage rides, how tool calls stream,
error bodies and statuses).

Every dialect tells the same story so tests can demand one normalized shape:
  reasoning "The user asks about the sea."  then content "The sea is vast and deep."
  with `tools` in the request: two calls, get_weather {"city": "Paris"} and get_time {"tz": "CET"}
  usage 11 prompt + 23 completion tokens, sent only where that server would send it.

Scenarios: `model="missing-model"` -> the server's not-found error; header `X-Scenario`:
  context     the server's context-length error (before any token)
  midstream   an error after some content (streams)
  ok-error    HTTP 200 whose body is an error envelope (non-stream)
  invalid     a request-validation error (FastAPI 422 on SGLang)

Usage: `async with serve("vllm") as base_url: AsyncClient(base_url=base_url, api_key="x")`.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import string
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from tests.helpers.servers import serve_app

__all__ = ["CALLS", "COMPLETION_TOKENS", "CONTENT", "DIALECTS", "PROMPT_TOKENS", "REASONING", "serve"]

REASONING = ["The user ", "asks about ", "the sea."]
CONTENT = ["The sea ", "is vast", " and deep."]
CALLS = [("get_weather", ['{"city', '": "Pa', 'ris"}']), ("get_time", ['{"tz": ', '"CET"}'])]
PROMPT_TOKENS, COMPLETION_TOKENS = 11, 23
CREATED = 1760000000

DIALECTS = ("vllm", "vllm-legacy", "sglang", "ollama", "ollama-indexed", "llamacpp", "llamacpp-legacy")


def _py(obj: Any) -> bytes:
    """Pydantic `model_dump_json()` / orjson / nlohmann `dump()`: compact, UTF-8 kept raw."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _pyspaced(obj: Any) -> bytes:
    """Python's `json.dumps(obj)` defaults (", " and ": "), used by vLLM < 0.10.1 and SGLang for
    their stream error events."""
    return json.dumps(obj, ensure_ascii=False).encode()


def _go(obj: Any) -> bytes:
    """Go's encoding/json: compact, with <, >, & and U+2028/U+2029 escaped as \\u003c etc."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        s = s.replace(ch, esc)
    return s.encode()


def _alnum32() -> str:
    """llama.cpp's random_string(): 32 characters of [0-9A-Za-z]."""
    return "".join(secrets.choice(string.digits + string.ascii_letters) for _ in range(32))


def _args(i: int) -> str:
    return "".join(CALLS[i][1])


class Dialect:
    """Base: the story, framing helpers. Subclasses describe their server's bytes."""

    name = ""
    sse_type = "text/event-stream"
    json_type = "application/json"
    checks_model = True  # SGLang and llama-server answer whatever `model` says

    def __init__(self) -> None:
        self.id = "chatcmpl-" + secrets.token_hex(16)

    def enc(self, obj: Any) -> bytes:
        return _py(obj)

    def frame(self, obj: Any) -> bytes:
        return b"data: " + self.enc(obj) + b"\n\n"

    def usage(self) -> dict[str, Any]:
        return {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                "completion_tokens": COMPLETION_TOKENS}

    # what each server does; overridden
    def completion(self, model: str, tools: bool) -> dict[str, Any]:
        raise NotImplementedError

    def stream(self, model: str, tools: bool, include_usage: bool, midstream: bool) -> list[bytes]:
        raise NotImplementedError

    def error(self, kind: str, model: str, stream: bool) -> tuple[int, bytes, str]:
        raise NotImplementedError


class VLLM(Dialect):
    """vLLM >= 0.11 OpenAI server (vllm/entrypoints/openai/chat_completion/{protocol,serving}.py):
    chunks are `model_dump_json(exclude_unset=True)`, reasoning in `reasoning`, usage only on a
    trailing `choices: []` chunk when stream_options.include_usage, errors nested (>= 0.10.1)."""

    name = "vllm"
    sse_type = "text/event-stream; charset=utf-8"
    reasoning_key = "reasoning"

    def chunk(self, model: str, choice: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        obj: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk", "created": CREATED,
                               "model": model, "choices": [choice] if choice is not None else []}
        obj.update(extra)
        return obj

    def delta(self, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        if finish is not None:
            choice["stop_reason"] = None
        return self.chunk(model, choice)

    def tool_id(self) -> str:
        return "chatcmpl-tool-" + secrets.token_hex(16)

    def message(self, tools: bool) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": None if tools else "".join(CONTENT),
                               "refusal": None, "annotations": None, "audio": None, "function_call": None}
        if tools:
            msg["tool_calls"] = [{"id": self.tool_id(), "type": "function",
                                  "function": {"name": n, "arguments": _args(i)}}
                                 for i, (n, _) in enumerate(CALLS)]
        msg[self.reasoning_key] = "".join(REASONING)
        return msg

    def completion(self, model: str, tools: bool) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion", "created": CREATED, "model": model,
                "choices": [{"index": 0, "message": self.message(tools), "logprobs": None,
                             "finish_reason": "tool_calls" if tools else "stop", "stop_reason": None,
                             "token_ids": None}],
                "service_tier": None, "system_fingerprint": None,
                "usage": {**self.usage(), "prompt_tokens_details": None},
                "prompt_logprobs": None, "prompt_token_ids": None, "kv_transfer_params": None}

    def tool_frames(self, model: str) -> list[bytes]:
        out = []
        for i, (name, pieces) in enumerate(CALLS):
            out.append(self.frame(self.delta(model, {"tool_calls": [
                {"id": self.tool_id(), "type": "function", "index": i, "function": {"name": name}}]})))
            for p in pieces:
                out.append(self.frame(self.delta(model, {"tool_calls": [
                    {"index": i, "function": {"arguments": p}}]})))
        return out

    def stream(self, model: str, tools: bool, include_usage: bool, midstream: bool) -> list[bytes]:
        out = [self.frame(self.delta(model, {"role": "assistant", "content": ""}))]
        out += [self.frame(self.delta(model, {self.reasoning_key: p})) for p in REASONING]
        if tools:
            out += self.tool_frames(model)
        else:
            out += [self.frame(self.delta(model, {"content": p})) for p in CONTENT]
        if midstream:
            return [*out, b"data: " + self.stream_error() + b"\n\n", b"data: [DONE]\n\n"]
        out.append(self.frame(self.delta(model, {}, "tool_calls" if tools else "stop")))
        if include_usage:
            out.append(b"data: " + _py(self.chunk(model, usage=self.usage())) + b"\n\n")
        out.append(b"data: [DONE]\n\n")
        return out

    def err(self, message: str, etype: str, code: int, param: str | None = None) -> bytes:
        return _py({"error": {"message": message, "type": etype, "param": param, "code": code}})

    def stream_error(self) -> bytes:
        return self.err("CUDA out of memory. Tried to allocate 2.00 GiB", "InternalServerError", 500)

    def error(self, kind: str, model: str, stream: bool) -> tuple[int, bytes, str]:
        if kind == "missing":
            return 404, self.err(f"The model `{model}` does not exist.", "NotFoundError", 404, "model"), \
                "application/json"
        if kind == "ok-error":
            # A route that returns the ErrorResponse model instead of a JSONResponse is serialized
            # with status 200 (vllm#32369 review); proxies in front of vLLM do the same.
            return 200, self.err("Input validation error: `max_tokens` must be positive",
                                 "BadRequestError", 400), "application/json"
        return 400, self.err(
            "This model's maximum context length is 2048 tokens. However, you requested 2723 tokens "
            "(1699 in the messages, 1024 in the completion). Please reduce the length of the messages "
            "or completion.", "BadRequestError", 400), "application/json"


class VLLMLegacy(VLLM):
    """vLLM 0.7-0.10: `reasoning_content`, `tool_calls: []` on plain messages, flat errors (`object:
    error`, vllm#12886), stream errors `json.dumps({"error": <flat>})` with Python's default spacing;
    parallel calls reported at index 0 with `id: ""` on argument fragments (InternLM/lmdeploy#3412)."""

    name = "vllm-legacy"
    reasoning_key = "reasoning_content"

    def message(self, tools: bool) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "reasoning_content": "".join(REASONING),
                               "content": None if tools else "".join(CONTENT), "tool_calls": []}
        if tools:
            msg["tool_calls"] = [{"id": self.tool_id(), "type": "function",
                                  "function": {"name": n, "arguments": _args(i)}}
                                 for i, (n, _) in enumerate(CALLS)]
        return msg

    def completion(self, model: str, tools: bool) -> dict[str, Any]:
        body = super().completion(model, tools)
        for k in ("service_tier", "kv_transfer_params", "token_ids"):
            body.pop(k, None)
            body["choices"][0].pop(k, None)
        return body

    def tool_frames(self, model: str) -> list[bytes]:
        out = []
        for name, pieces in CALLS:
            out.append(self.frame(self.delta(model, {"tool_calls": [
                {"id": self.tool_id(), "type": "function", "index": 0,
                 "function": {"name": name, "arguments": ""}}]})))
            for p in pieces:
                out.append(self.frame(self.delta(model, {"tool_calls": [
                    {"id": "", "type": "function", "index": 0, "function": {"arguments": p}}]})))
        return out

    def flat(self, message: str, etype: str, code: int) -> dict[str, Any]:
        return {"object": "error", "message": message, "type": etype, "param": None, "code": code}

    def err(self, message: str, etype: str, code: int, param: str | None = None) -> bytes:
        return _py(self.flat(message, etype, code))

    def stream_error(self) -> bytes:
        return _pyspaced({"error": self.flat("CUDA out of memory. Tried to allocate 2.00 GiB",
                                             "InternalServerError", 500)})


class SGLang(VLLM):
    """SGLang (python/sglang/srt/entrypoints/openai/serving_chat.py): chunks are
    `model_dump_json()` with every field (nulls included, `matched_stop`), reasoning in
    `reasoning_content`, argument fragments with `id: null` and `name: null`, usage on a trailing
    `choices: []` chunk, flat non-stream errors, FastAPI 422 `{"detail": [...]}`."""

    name = "sglang"
    sse_type = "text/event-stream"
    checks_model = False

    def __init__(self) -> None:
        super().__init__()
        self.id = secrets.token_hex(16)

    def delta(self, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        full = {"role": None, "content": None, "reasoning_content": None, "tool_calls": None, **delta}
        return {"id": self.id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                "choices": [{"index": 0, "delta": full, "logprobs": None, "finish_reason": finish,
                             "matched_stop": 151645 if finish == "stop" else None}],
                "usage": None}

    def chunk(self, model: str, choice: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                "choices": [], "usage": {**self.usage(), "prompt_tokens_details": None}}

    def completion(self, model: str, tools: bool) -> dict[str, Any]:
        calls = None
        if tools:
            calls = [{"id": "call_" + secrets.token_hex(12), "index": i, "type": "function",
                      "function": {"name": n, "arguments": _args(i)}} for i, (n, _) in enumerate(CALLS)]
        return {"id": self.id, "object": "chat.completion", "created": CREATED, "model": model,
                "choices": [{"index": 0, "message": {
                    "role": "assistant", "content": "" if tools else "".join(CONTENT),
                    "reasoning_content": "".join(REASONING), "tool_calls": calls},
                    "logprobs": None, "finish_reason": "tool_calls" if tools else "stop",
                    "matched_stop": None if tools else 151645}],
                "usage": {**self.usage(), "prompt_tokens_details": None},
                "metadata": {"weight_version": "default"}}

    def stream(self, model: str, tools: bool, include_usage: bool, midstream: bool) -> list[bytes]:
        out = [self.frame(self.delta(model, {"role": "assistant", "content": ""}))]
        out += [self.frame(self.delta(model, {"reasoning_content": p})) for p in REASONING]
        if tools:
            for i, (name, pieces) in enumerate(CALLS):
                out.append(self.frame(self.delta(model, {"tool_calls": [
                    {"id": "call_" + secrets.token_hex(12), "index": i, "type": "function",
                     "function": {"name": name, "arguments": ""}}]})))
                for p in pieces:
                    out.append(self.frame(self.delta(model, {"tool_calls": [
                        {"id": None, "index": i, "type": "function",
                         "function": {"name": None, "arguments": p}}]})))
        else:
            out += [self.frame(self.delta(model, {"content": p})) for p in CONTENT]
        if midstream:
            err = {"error": {"object": "error", "message": "The server is shutting down.",
                             "type": "ServiceUnavailable", "param": None, "code": 503}}
            return [*out, b"data: " + _pyspaced(err) + b"\n\n", b"data: [DONE]\n\n"]
        out.append(self.frame(self.delta(model, {}, "tool_calls" if tools else "stop")))
        if include_usage:
            out.append(self.frame(self.chunk(model)))
        out.append(b"data: [DONE]\n\n")
        return out

    def error(self, kind: str, model: str, stream: bool) -> tuple[int, bytes, str]:
        if kind == "invalid":
            detail = [{"type": "literal_error", "loc": ["body", "messages", 0, "role"],
                       "msg": "Input should be 'system', 'user', 'assistant' or 'tool'",
                       "input": "robot", "ctx": {"expected": "'system', 'user', 'assistant' or 'tool'"}}]
            return 422, _py({"detail": detail}), "application/json"
        if kind == "ok-error":
            kind = "context"
        body = {"object": "error", "message": "The input (4100 tokens) is longer than the model's "
                "context length (4096 tokens).", "type": "BadRequestError", "param": None, "code": 400}
        return 400, _py(body), "application/json"


class Ollama(Dialect):
    """Ollama's OpenAI layer (openai/openai.go, middleware/openai.go): Go JSON, `reasoning`, `role`
    and `content` on every delta, each tool call whole in one chunk; every call at index 0
    (ollama#15457/#15497); usage as the last chunk again with `choices: []` when include_usage;
    errors `{"error": {"message", "type", "param": null, "code": null}}` with a trailing newline."""

    name = "ollama"
    indexed = False

    def __init__(self) -> None:
        super().__init__()
        self.id = f"chatcmpl-{secrets.randbelow(999)}"

    def enc(self, obj: Any) -> bytes:
        return _go(obj)

    def usage(self) -> dict[str, Any]:
        return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}

    def call(self, i: int) -> dict[str, Any]:
        name = CALLS[i][0]
        args = json.dumps(json.loads(_args(i)), separators=(",", ":"))  # Go re-marshals the map
        return {"id": "call_" + secrets.token_hex(4), "index": i if self.indexed else 0,
                "type": "function", "function": {"name": name, "arguments": args}}

    def chunk(self, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                "system_fingerprint": "fp_ollama",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "", **delta},
                             "finish_reason": finish}]}

    def completion(self, model: str, tools: bool) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": "" if tools else "".join(CONTENT),
                               "reasoning": "".join(REASONING)}
        if tools:
            msg["tool_calls"] = [self.call(i) for i in range(len(CALLS))]
        return {"id": self.id, "object": "chat.completion", "created": CREATED, "model": model,
                "system_fingerprint": "fp_ollama",
                "choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls" if tools else "stop"}],
                "usage": self.usage()}

    def stream(self, model: str, tools: bool, include_usage: bool, midstream: bool) -> list[bytes]:
        out = [self.frame(self.chunk(model, {"reasoning": p})) for p in REASONING]
        if tools:
            out += [self.frame(self.chunk(model, {"tool_calls": [self.call(i)]})) for i in range(len(CALLS))]
        else:
            out += [self.frame(self.chunk(model, {"content": p})) for p in CONTENT]
        if midstream:
            # streamResponse writes {"error": "..."} through the ChatWriter at status 200: it
            # becomes an empty chunk, then the body ends without [DONE] (docs/dialects.md).
            return [*out, self.frame(self.chunk("", {}))]
        last = self.chunk(model, {}, "tool_calls" if tools else "stop")
        out.append(self.frame(last))
        if include_usage:
            out.append(self.frame({**last, "choices": [], "usage": self.usage()}))
        out.append(b"data: [DONE]\n\n")
        return out

    def error(self, kind: str, model: str, stream: bool) -> tuple[int, bytes, str]:
        if kind == "missing":
            status, etype, msg = 404, "not_found_error", f'model "{model}" not found, try pulling it first'
        else:
            status, etype, msg = 400, "invalid_request_error", "[] is too short - 'messages'"
        body = {"error": {"message": msg, "type": etype, "param": None, "code": None}}
        return status, _go(body) + b"\n", "application/json"


class OllamaIndexed(Ollama):
    """Ollama with a model parser that numbers its calls (ollama#15467): index 0, 1, ..."""

    name = "ollama-indexed"
    indexed = True


class LlamaCpp(Dialect):
    """llama.cpp `llama-server` (tools/server/server-task.cpp, server-common.cpp): nlohmann
    ordered JSON, `reasoning_content`, opening delta `content: null`, tool-call diffs with `index`,
    a finish chunk with an empty delta, `timings` on the last chunk, usage on a trailing
    `choices: []` chunk when include_usage; errors `{"error": {"code", "message", "type"}}`;
    mid-stream errors as `data: {"error": ...}` (since ggml-org/llama.cpp#16109)."""

    name = "llamacpp"
    fingerprint = "b10603-c060ca974"
    done = b"data: [DONE]\n"  # no blank line after it (darshi1337/apogee#139, build b10603)
    json_type = "application/json; charset=utf-8"
    checks_model = False

    def __init__(self) -> None:
        super().__init__()
        self.id = "chatcmpl-" + _alnum32()

    def timings(self) -> dict[str, Any]:
        return {"cache_n": 0, "prompt_n": PROMPT_TOKENS, "prompt_ms": 12.5, "prompt_per_token_ms": 1.13,
                "prompt_per_second": 880.0, "predicted_n": COMPLETION_TOKENS, "predicted_ms": 230.1,
                "predicted_per_token_ms": 10.0, "predicted_per_second": 99.9}

    def usage(self) -> dict[str, Any]:
        return {"completion_tokens": COMPLETION_TOKENS, "prompt_tokens": PROMPT_TOKENS,
                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}

    def chunk(self, model: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"choices": choices, "created": CREATED, "id": self.id, "model": model,
                "system_fingerprint": self.fingerprint, "object": "chat.completion.chunk"}

    def delta(self, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return self.chunk(model, [{"finish_reason": finish, "index": 0, "delta": delta}])

    def completion(self, model: str, tools: bool) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": None if tools else "".join(CONTENT),
                               "reasoning_content": "".join(REASONING)}
        if tools:
            msg["tool_calls"] = [{"type": "function", "function": {"name": n, "arguments": _args(i)},
                                  "id": _alnum32()} for i, (n, _) in enumerate(CALLS)]
        return {"choices": [{"finish_reason": "tool_calls" if tools else "stop", "index": 0, "message": msg}],
                "created": CREATED, "model": model, "system_fingerprint": self.fingerprint,
                "object": "chat.completion", "usage": self.usage(), "id": self.id, "timings": self.timings()}

    def stream(self, model: str, tools: bool, include_usage: bool, midstream: bool) -> list[bytes]:
        out = [b":\n\n",  # the idle ping comment (b9478+) may come at any time
               self.frame(self.delta(model, {"role": "assistant", "content": None}))]
        out += [self.frame(self.delta(model, {"reasoning_content": p})) for p in REASONING]
        if tools:
            for i, (name, pieces) in enumerate(CALLS):
                out.append(self.frame(self.delta(model, {"tool_calls": [
                    {"index": i, "id": _alnum32(), "type": "function",
                     "function": {"name": name, "arguments": ""}}]})))
                for p in pieces:
                    out.append(self.frame(self.delta(model, {"tool_calls": [
                        {"index": i, "function": {"arguments": p}}]})))
        else:
            out += [self.frame(self.delta(model, {"content": p})) for p in CONTENT]
        if midstream:
            return [*out, *self.stream_error_frames("the server failed to decode the batch",
                                                    "server_error", 500)]
        final = [self.delta(model, {}, "tool_calls" if tools else "stop")]
        if include_usage:
            final.append({**self.chunk(model, []), "usage": self.usage()})
        final[-1]["timings"] = self.timings()
        out += [self.frame(f) for f in final]
        out.append(self.done)
        return out

    def stream_error_frames(self, message: str, etype: str, code: int) -> list[bytes]:
        return [b"data: " + _py({"error": {"code": code, "message": message, "type": etype}}) + b"\n\n",
                b"data: [DONE]\n\n"]

    def error(self, kind: str, model: str, stream: bool) -> tuple[int, bytes, str]:
        body = {"error": {"code": 400, "message": "request (3000 tokens) exceeds the available context "
                          "size (2048 tokens), try increasing it", "type": "exceed_context_size_error",
                          "n_prompt_tokens": 3000, "n_ctx": 2048}}
        return 400, _py(body), "application/json; charset=utf-8"


class LlamaCppLegacy(LlamaCpp):
    """llama.cpp builds of 2025 (b5xxx, before #16109): an error after the headers went out is an
    SSE field named `error:` (which SSE parsers drop), then `data: [DONE]`; a too-long prompt on a
    stream is such an error at HTTP 200 (ggml-org/llama.cpp#14566, coddy-agent#106)."""

    name = "llamacpp-legacy"
    fingerprint = "b5966-a414a44"
    done = b"data: [DONE]\n\n"

    def stream_error_frames(self, message: str, etype: str, code: int) -> list[bytes]:
        return [b"error: " + _py({"code": code, "message": message, "type": etype}) + b"\n\n",
                b"data: [DONE]\n\n"]

    def error(self, kind: str, model: str, stream: bool) -> tuple[int, bytes, str]:
        if stream:
            frames = self.stream_error_frames("the request exceeds the available context size. try "
                                              "increasing the context size or enable context shift",
                                              "invalid_request_error", 400)
            return 200, b"".join(frames), self.sse_type
        return super().error(kind, model, stream)


_CLASSES: dict[str, type[Dialect]] = {c.name: c for c in (VLLM, VLLMLegacy, SGLang, Ollama, OllamaIndexed,
                                                          LlamaCpp, LlamaCppLegacy)}


def make_app(dialect: str) -> web.Application:
    cls = _CLASSES[dialect]

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        d = cls()
        model = body.get("model", "")
        stream = bool(body.get("stream"))
        tools = bool(body.get("tools"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        scenario = request.headers.get("X-Scenario", "")
        kind = "missing" if model == "missing-model" and d.checks_model else scenario
        if kind in ("missing", "context", "invalid") or (kind == "ok-error" and not stream):
            status, payload, ctype = d.error(kind, model, stream)
            if status == 200 and stream:
                return await _write_stream(request, d, [payload])
            return web.Response(status=status, body=payload, headers={"Content-Type": ctype})
        if stream:
            frames = d.stream(model, tools, include_usage, scenario == "midstream")
            return await _write_stream(request, d, frames)
        payload = d.enc(d.completion(model, tools)) + (b"\n" if isinstance(d, Ollama) else b"")
        return web.Response(body=payload, headers={"Content-Type": d.json_type})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def _write_stream(request: web.Request, d: Dialect, frames: list[bytes]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": d.sse_type, "Cache-Control": "no-cache"})
    await resp.prepare(request)
    for f in frames:
        await resp.write(f)
    await resp.write_eof()
    return resp


@contextlib.asynccontextmanager
async def serve(dialect: str) -> AsyncIterator[str]:
    """Run the dialect's server on a free 127.0.0.1 port; yields its base URL (".../v1")."""
    async with serve_app(make_app(dialect)) as url:
        yield url + "/v1"
