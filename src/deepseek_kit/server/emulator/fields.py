"""Stage 1 of request validation: serde-like type checks of the known fields of a body.

Mirrors what DeepSeek's serde structs accept (docs/deepseek-api-notes.md#request-fields): each checker gets
the decoded value and its path and raises `SerdeError` with serde's wording (`invalid type: integer `5`,
expected a string`, `unknown variant ...`, `missing field ...`). Messages are an internally tagged
enum on `role`, which serde buffers, so any error inside a message is reported at `messages[N]`
and positioned after the message object (docs/deepseek-api-notes.md#errors-and-status-codes).
Unknown fields are not checked (ignored).
"""

from __future__ import annotations

from typing import Any

from .schema_rules import check_tool_types
from .serde import Path, SerdeError, describe, invalid_type

__all__ = ["CHAT_FIELDS", "EFFORTS", "FIM_FIELDS"]

#: reasoning_effort mapping of the newest thinking guide (docs/deepseek-api-notes.md#thinking-mode).
EFFORTS = {"minimal": "low", "low": "low", "medium": "high", "high": "high", "xhigh": "high",
           "max": "max", "ultra": "max"}
_ROLES = "one of `system`, `user`, `assistant`, `tool`"


def _str(v: Any, p: Path, nullable: bool = True) -> None:
    if not (isinstance(v, str) or (nullable and v is None)):
        raise invalid_type(v, "a string", p)


def _bool(v: Any, p: Path) -> None:
    if not (v is None or v is True or v is False):
        raise invalid_type(v, "a boolean", p)


def _u32(v: Any, p: Path) -> None:
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int):
        raise invalid_type(v, "u32", p)
    if not 0 <= v < 2**32:
        raise SerdeError(p, f"invalid value: integer `{v}`, expected u32")


def _f32(v: Any, p: Path) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise invalid_type(v, "f32", p)


def _variant(v: Any, p: Path, allowed: tuple[str, ...], nullable: bool = False) -> None:
    if v is None and nullable:
        return
    if not isinstance(v, str):
        raise invalid_type(v, "variant identifier", p)
    if v not in allowed:
        quoted = [f"`{a}`" for a in allowed]
        exp = " or ".join(quoted) if len(quoted) <= 2 else "one of " + ", ".join(quoted)
        raise SerdeError(p, f"unknown variant `{v}`, expected {exp}")


def _map(v: Any, p: Path, name: str, nullable: bool = True) -> bool:
    """True when `v` is a map to look into."""
    if v is None and nullable:
        return False
    if not isinstance(v, dict):
        raise invalid_type(v, f"struct {name}", p)
    return True


def _require(v: dict[str, Any], p: Path, *names: str) -> None:
    for n in names:
        if n not in v:
            raise SerdeError(p, f"missing field `{n}`", "end")


def _stop(v: Any, p: Path) -> None:
    if v is None or isinstance(v, str):
        return
    if not (isinstance(v, list) and all(isinstance(s, str) for s in v)):
        raise SerdeError(p, "data did not match any variant of untagged enum Stop")


def _content_parts(parts: list[Any], p: Path) -> None:
    for part in parts:
        if not isinstance(part, dict):
            raise invalid_type(part, "internally tagged enum ContentPart", p)
        if "type" not in part:
            raise SerdeError(p, "missing field `type`", "end")
        _variant(part["type"], p, ("text", "image_url", "file"))
        if part["type"] == "text":
            _require(part, p, "text")
            _str(part["text"], p, False)
        elif part["type"] == "image_url":
            _require(part, p, "image_url")
            img = part["image_url"]
            if isinstance(img, str):
                continue
            _map(img, p, "ImageUrl", False)
            _require(img, p, "url")
            _str(img["url"], p, False)
            _variant(img.get("detail"), p, ("low", "high", "original", "auto"), nullable=True)


def _message(m: Any, i: int) -> None:
    p: Path = ("messages", i)
    if not isinstance(m, dict):
        raise invalid_type(m, "internally tagged enum Message", p)
    if "role" not in m:
        raise SerdeError(p, "missing field `role`", "end")
    role = m["role"]
    if not isinstance(role, str):
        raise SerdeError(p, f"invalid type: {describe(role)}, expected variant identifier", "end")
    if role not in ("system", "user", "assistant", "tool"):
        raise SerdeError(p, f"unknown variant `{role}`, expected {_ROLES}", "end")
    try:
        _str(m.get("name"), p)
        if role in ("system", "tool"):
            _require(m, p, "content")
            _str(m["content"], p, False)
            if role == "tool":
                _require(m, p, "tool_call_id")
                _str(m["tool_call_id"], p, False)
        elif role == "user":
            _require(m, p, "content")
            c = m["content"]
            if isinstance(c, list):
                _content_parts(c, p)
            elif not isinstance(c, str):
                raise invalid_type(c, "a string or a sequence of content parts", p)
        else:
            _str(m.get("content"), p)
            _str(m.get("reasoning_content"), p)
            _bool(m.get("prefix"), p)
            calls = m.get("tool_calls")
            if calls is not None:
                if not isinstance(calls, list):
                    raise invalid_type(calls, "a sequence", p)
                for call in calls:
                    _map(call, p, "ToolCall", False)
                    _require(call, p, "id", "function")
                    _str(call["id"], p, False)
                    _map(call["function"], p, "FunctionCall", False)
                    _require(call["function"], p, "name", "arguments")
                    _str(call["function"]["name"], p, False)
                    _str(call["function"]["arguments"], p, False)
    except SerdeError as exc:  # buffered enum: reported at the end of the message object
        raise SerdeError(p, exc.message, "end") from None


def _messages(v: Any, p: Path) -> None:
    if not isinstance(v, list):
        raise invalid_type(v, "a sequence", p)
    for i, m in enumerate(v):
        _message(m, i)


def _thinking(v: Any, p: Path) -> None:
    if _map(v, p, "Thinking"):
        _require(v, p, "type")
        _variant(v["type"], (*p, "type"), ("enabled", "disabled"))


def _response_format(v: Any, p: Path) -> None:
    if _map(v, p, "ResponseFormat"):
        _require(v, p, "type")
        _variant(v["type"], (*p, "type"), ("text", "json_object"))


def _stream_options(v: Any, p: Path) -> None:
    if _map(v, p, "StreamOptions"):
        _bool(v.get("include_usage"), (*p, "include_usage"))


def _tool_choice(v: Any, p: Path) -> None:
    if v is None or (isinstance(v, str) and v in ("none", "auto", "required")):
        return
    if isinstance(v, str):
        raise SerdeError(p, f"unknown variant `{v}`, expected one of `none`, `auto`, `required`")
    if not isinstance(v, dict) or not isinstance(v.get("function"), dict) \
            or not isinstance(v["function"].get("name"), str):
        raise SerdeError(p, "data did not match any variant of untagged enum ToolChoice")


CHAT_FIELDS = {
    "model": lambda v, p: _str(v, p, False),
    "messages": _messages,
    "thinking": _thinking,
    "reasoning_effort": lambda v, p: _variant(v, p, tuple(EFFORTS), nullable=True),
    "max_tokens": _u32,
    "response_format": _response_format,
    "stop": _stop,
    "stream": _bool,
    "stream_options": _stream_options,
    "temperature": _f32,
    "top_p": _f32,
    "frequency_penalty": _f32,
    "presence_penalty": _f32,
    "tools": check_tool_types,
    "tool_choice": _tool_choice,
    "logprobs": _bool,
    "top_logprobs": _u32,
    "user_id": _str,
}

FIM_FIELDS = {
    "model": lambda v, p: _str(v, p, False),
    "prompt": lambda v, p: _str(v, p, False),
    "suffix": _str,
    "echo": _bool,
    "logprobs": _u32,
    "max_tokens": _u32,
    "stop": _stop,
    "stream": _bool,
    "stream_options": _stream_options,
    "temperature": _f32,
    "top_p": _f32,
    "frequency_penalty": _f32,
    "presence_penalty": _f32,
    "thinking": _thinking,
    "user_id": _str,
}
