"""Request validation with DeepSeek's error texts (docs/deepseek-api-notes.md#request-fields,
#prefix-completion-beta, #errors-and-status-codes, #what-the-emulator-reproduces).

Two stages, as on the real server:

1. Deserialization (serde): types of known fields, in body order, then missing fields. Errors read
   `Failed to deserialize the JSON body into the target type: <path>: <reason> at line L column C`
   (status 400 now, 422 in older profiles: `EmulatorConfig.validation_status`). Messages are an
   internally tagged enum, so errors inside one are reported at
   `messages[N]` (docs/deepseek-api-notes.md#errors-and-status-codes).
   Unknown fields are ignored (docs/deepseek-api-notes.md#request-fields:
   `n`, `seed`, `prompt_cache_key`... pass through).
2. Semantics: model names, ranges, tool rules, thinking-mode rules, the reasoning passback check.
   Texts seen from DeepSeek are reproduced exactly; the others follow the
   `Invalid max_tokens value, the valid range of max_tokens is [1, 8192]` pattern (marked below).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from .config import MODEL_ALIASES, VISION_MODELS, EmulatorConfig
from .errors import ApiError
from .fields import CHAT_FIELDS, EFFORTS, FIM_FIELDS
from .schema_rules import check_strict_tools
from .serde import SerdeError, invalid_type, parse_error_message

__all__ = ["EFFORTS", "ChatRequest", "FimRequest", "too_deep", "validate_chat", "validate_fim"]

MAX_OUTPUT = 393_216  # 384K (docs/deepseek-api-notes.md#models-and-aliases; the harness treats it as 393,216)
FIM_MAX_OUTPUT = 4096  # "The max tokens of FIM completion is 4K" (docs/deepseek-api-notes.md#fim-beta)
_USER_ID_RE = re.compile(r"[a-zA-Z0-9\-_]+")
THINKING_TOOL_CHOICE = "Thinking mode does not support this tool_choice"
PASSBACK = "The `reasoning_content` in the thinking mode must be passed back to the API."


@dataclass(slots=True)
class ChatRequest:
    model: str
    serving: str
    messages: list[dict[str, Any]]
    thinking: bool = True
    effort: str = "high"
    max_tokens: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str = "auto"
    tool_name: str | None = None
    json_mode: bool = False
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    user_id: str | None = None
    stream: bool = False
    include_usage: bool = False
    prefix: bool = False
    #: the request's `parallel_tool_calls` (None: not sent, the server's setting applies)
    parallel_tools: bool | None = None


@dataclass(slots=True)
class FimRequest:
    model: str
    serving: str
    prompt: str
    suffix: str | None = None
    echo: bool = False
    logprobs: int | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    user_id: str | None = None


def _bad(message: str) -> ApiError:
    return ApiError(400, message, "invalid_request_error")


def too_deep(raw: bytes) -> ApiError:
    """A body nested so deeply that working on it recursed too far: serde's recursion-limit 400."""
    return _bad(parse_error_message(raw, RecursionError()))


def _deserialize(raw: bytes, fields: dict[str, Any], required: tuple[str, ...], name: str,
                 config: EmulatorConfig) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:  # msgspec raises RecursionError on deep nesting
        raise _bad(parse_error_message(raw, exc)) from None
    try:
        if not isinstance(body, dict):
            raise invalid_type(body, f"struct {name}", ())
        for key, value in body.items():
            check = fields.get(key)
            if check is not None:
                check(value, (key,))
        for key in required:
            if key not in body:
                raise SerdeError((), f"missing field `{key}`", "end")
    except SerdeError as exc:
        raise ApiError(config.validation_status, exc.render(raw), "invalid_request_error") from None
    return body


# -- stage 2: semantics ----------------------------------------------------------------------------


def _model(name: str) -> str:
    serving = MODEL_ALIASES.get(name)
    if serving is None:
        # Retired names (deepseek-chat/-reasoner) and unknown names: exact post-retirement text is
        # UNCONFIRMED (docs/deepseek-api-notes.md#models-and-aliases);
        # "Model Not Exist" is DeepSeek's long-standing unknown-model error.
        raise _bad("Model Not Exist")
    return serving


def _range(name: str, value: float | None, lo: float, hi: float) -> None:
    if value is not None and not lo <= value <= hi:
        raise _bad(f"Invalid {name} value, the valid range of {name} is [{lo:g}, {hi:g}]")


def _stops(v: Any) -> tuple[str, ...]:
    stops = (v,) if isinstance(v, str) else tuple(v or ())
    if len(stops) > 16:
        raise _bad("Invalid stop value, the number of stop sequences must not exceed 16")  # wording ours
    return stops


def _user_id(v: Any) -> str | None:
    if v is None:
        return None
    if not _USER_ID_RE.fullmatch(v) or len(v.encode()) > 512:  # wording ours
        raise _bad("Invalid user_id value, user_id must match [a-zA-Z0-9\\-_]+ and be at most 512 bytes")
    return str(v)


def _include_usage(body: dict[str, Any]) -> bool:
    opts = body.get("stream_options") or {}
    return bool(body.get("stream")) and bool(opts.get("include_usage"))


def validate_chat(raw: bytes, *, beta: bool, config: EmulatorConfig) -> ChatRequest:
    body = _deserialize(raw, CHAT_FIELDS, ("messages", "model"), "ChatCompletionRequest", config)
    model = body["model"]
    req = ChatRequest(model=model, serving=_model(model), messages=body["messages"])
    if not req.messages:
        raise _bad("Invalid messages: `messages` must contain at least one message")  # wording ours
    thinking = body.get("thinking")
    # default on (docs/deepseek-api-notes.md#request-fields)
    req.thinking = thinking is None or thinking.get("type") != "disabled"
    req.effort = EFFORTS[body.get("reasoning_effort") or "high"]
    req.max_tokens = body.get("max_tokens")
    _range("max_tokens", req.max_tokens, 1, MAX_OUTPUT)
    if not req.thinking:  # ignored in thinking mode (docs/deepseek-api-notes.md#thinking-mode)
        _range("temperature", body.get("temperature"), 0, 2)
        _range("top_p", body.get("top_p"), 0, 1)
    req.stop = _stops(body.get("stop"))
    req.logprobs = bool(body.get("logprobs"))
    top = body.get("top_logprobs")
    _range("top_logprobs", top, 0, 20)
    if top is not None and not req.logprobs:  # wording ours
        raise _bad("Invalid top_logprobs value, logprobs must be true when top_logprobs is used")
    req.top_logprobs = top or 0
    req.user_id = _user_id(body.get("user_id"))
    req.stream = bool(body.get("stream"))
    req.include_usage = _include_usage(body)
    rf = body.get("response_format")
    req.json_mode = isinstance(rf, dict) and rf.get("type") == "json_object"
    parallel = body.get("parallel_tool_calls")  # not a DeepSeek field: a non-boolean is ignored like it
    req.parallel_tools = parallel if isinstance(parallel, bool) else None
    _tools(req, body, beta)
    _messages_semantics(req, beta, config, raw)
    return req


def _tools(req: ChatRequest, body: dict[str, Any], beta: bool) -> None:
    tools = body.get("tools") or None
    choice = body.get("tool_choice")
    if tools:
        if len(tools) > 128:  # wording ours
            raise _bad("Invalid tools: the number of tools must not exceed 128")
        for i, tool in enumerate(tools):
            name = tool["function"]["name"]
            if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name):  # wording ours
                raise _bad(f"Invalid tools[{i}].function.name: `{name}` must match ^[a-zA-Z0-9_-]{{1,64}}$")
        # strict mode is a /beta feature
        # (docs/deepseek-api-notes.md#tool-calls); elsewhere `strict` is ignored
        if beta:
            check_strict_tools(tools)
    req.tools = tools
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        if not tools or all(t["function"]["name"] != name for t in tools):  # wording ours
            raise _bad(f"Invalid tool_choice: function `{name}` is not in tools")
        req.tool_choice, req.tool_name = "named", name
    else:
        req.tool_choice = choice or ("auto" if tools else "none")
    if req.thinking and req.tool_choice in ("required", "named"):
        raise _bad(THINKING_TOOL_CHOICE)  # docs/deepseek-api-notes.md#thinking-mode (measured)


def _messages_semantics(req: ChatRequest, beta: bool, config: EmulatorConfig, raw: bytes) -> None:
    msgs = req.messages
    last = len(msgs) - 1
    for i, m in enumerate(msgs):
        role = m["role"]
        if role == "user" and isinstance(m["content"], list) and req.model not in VISION_MODELS:
            for part in m["content"]:
                # non-vision model (docs/deepseek-api-notes.md#what-the-emulator-reproduces);
                # wording UNCONFIRMED
                if part.get("type") == "image_url":
                    raise ApiError(config.validation_status, SerdeError(
                        ("messages", i), "unknown variant `image_url`, expected `text`", "end"
                    ).render(raw), "invalid_request_error")
        if role != "assistant":
            continue
        if m.get("prefix"):
            if i != last:  # wording ours
                raise _bad("Invalid prefix: only the last message may set `prefix: true`")
            # Chat Prefix Completion needs base_url .../beta
            # (docs/deepseek-api-notes.md#prefix-completion-beta); wording ours
            if not beta:
                raise _bad("Chat prefix completion is only available with base_url https://api.deepseek.com/beta")
            req.prefix = True
        if (
            config.strict_reasoning_passback and req.thinking and req.tools
            and m.get("tool_calls") and m.get("reasoning_content") is None
        ):
            raise _bad(PASSBACK)  # docs/deepseek-api-notes.md#thinking-mode, #what-the-emulator-reproduces


def validate_fim(raw: bytes, *, config: EmulatorConfig) -> FimRequest:
    body = _deserialize(raw, FIM_FIELDS, ("model", "prompt"), "CompletionRequest", config)
    model = body["model"]
    req = FimRequest(model=model, serving=_model(model), prompt=body["prompt"])
    thinking = body.get("thinking")
    # docs/deepseek-api-notes.md#models-and-aliases: FIM is non-thinking only
    if thinking is not None and thinking.get("type") == "enabled":
        raise _bad("FIM completion is not supported in thinking mode")  # wording ours
    req.suffix = body.get("suffix")
    req.echo = bool(body.get("echo"))
    req.logprobs = body.get("logprobs")
    _range("logprobs", req.logprobs, 0, 20)
    req.max_tokens = body.get("max_tokens")
    _range("max_tokens", req.max_tokens, 1, FIM_MAX_OUTPUT)
    _range("temperature", body.get("temperature"), 0, 2)
    _range("top_p", body.get("top_p"), 0, 1)
    req.stop = _stops(body.get("stop"))
    req.stream = bool(body.get("stream"))
    req.include_usage = _include_usage(body)
    req.user_id = _user_id(body.get("user_id"))
    return req
