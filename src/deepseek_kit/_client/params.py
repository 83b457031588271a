"""`ChatParams`: the optional keyword arguments of `chat.completions.create`, defined once.

`AsyncClient.chat.completions.create` and `Client.chat.completions.create` (and their overloads
for `stream=False` / `stream=True`) take `**params: Unpack[ChatParams]`, so the parameter list is
written here and nowhere else; mypy checks every call against it and editors complete the names
(PEP 692). What each parameter means on DeepSeek is told in `ChatCompletions.create`'s
docstring. `WIRE_ORDER` is the order the body's fields are encoded in; `CLIENT_ONLY` are the ones
that never go on the wire.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Literal, TypedDict

import msgspec

from deepseek_kit._transport.timeouts import Timeout
from deepseek_kit._wire.types import ChatCompletionMessage

__all__ = ["ALL_PARAMS", "CLIENT_ONLY", "FIM_PARAMS", "FIM_WIRE_ORDER", "WIRE_ORDER", "ChatParams",
           "ConversationParams", "FimParams", "LoopParams", "Message", "TurnParams", "check_params"]

#: A message: a mapping, or a struct (e.g. a previous answer's `ChatCompletionMessage`).
Message = Mapping[str, Any] | ChatCompletionMessage | msgspec.Struct


class LoopParams(TypedDict, total=False):
    """The `create` arguments that `run_tools` passes through (it sets tools, tool_choice and
    thinking through its own parameters)."""

    reasoning_effort: str | None
    max_tokens: int | None
    response_format: Mapping[str, Any] | None
    stop: str | Sequence[str] | None
    stream_options: Mapping[str, Any] | None
    temperature: float | None
    top_p: float | None
    frequency_penalty: float | None
    presence_penalty: float | None
    logprobs: bool | None
    top_logprobs: int | None
    user_id: str | None
    extra_body: Mapping[str, Any] | None
    extra_headers: Mapping[str, str] | None
    timeout: Timeout | float | None
    max_retries: int | None
    resume: bool | None
    cache: bool | Literal["force", "skip", "refresh"] | None
    endpoints: Collection[str] | None


class ConversationParams(LoopParams, total=False):
    """The `create` arguments a `Conversation` keeps as defaults (its `thinking` is a parameter
    of its own)."""

    tools: Sequence[Mapping[str, Any] | msgspec.Struct] | None
    tool_choice: str | Mapping[str, Any] | None


class ChatParams(ConversationParams, total=False):
    """Optional arguments of `chat.completions.create` (besides `model`, `messages`, `stream`)."""

    thinking: Any


class TurnParams(ChatParams, total=False):
    """What one `Conversation.send()`/`stream()` may override: any `create` argument and `model`."""

    model: str


#: The body's optional fields, in the order they are encoded (after model, messages, stream).
WIRE_ORDER: tuple[str, ...] = (
    "thinking", "reasoning_effort", "max_tokens", "response_format", "stop", "stream_options",
    "temperature", "top_p", "frequency_penalty", "presence_penalty", "tools", "tool_choice",
    "logprobs", "top_logprobs", "user_id",
)
#: Arguments that shape the call, never the body.
CLIENT_ONLY: frozenset[str] = frozenset({"extra_body", "extra_headers", "timeout", "max_retries", "resume",
                                         "cache", "endpoints"})
#: Every name `ChatParams` accepts (checked at run time too: a misspelt argument is a TypeError,
#: as it would be with a written-out signature, instead of a field sent to the server).
ALL_PARAMS: frozenset[str] = frozenset(ChatParams.__annotations__)



class FimParams(TypedDict, total=False):
    """Optional arguments of `beta.completions.create` (FIM; besides `model`, `prompt`, `stream`)."""

    suffix: str | None
    echo: bool | None
    logprobs: int | None
    max_tokens: int | None
    stop: str | Sequence[str] | None
    stream_options: Mapping[str, Any] | None
    temperature: float | None
    top_p: float | None
    frequency_penalty: float | None
    presence_penalty: float | None
    extra_body: Mapping[str, Any] | None
    extra_headers: Mapping[str, str] | None
    timeout: Timeout | float | None
    max_retries: int | None
    cache: bool | Literal["force", "skip", "refresh"] | None
    endpoints: Collection[str] | None


#: The FIM body's optional fields, in the order they are encoded (after model, prompt).
FIM_WIRE_ORDER: tuple[str, ...] = (
    "suffix", "echo", "logprobs", "max_tokens", "stop", "stream_options", "temperature", "top_p",
    "frequency_penalty", "presence_penalty",
)
FIM_PARAMS: frozenset[str] = frozenset(FimParams.__annotations__)


def check_params(where: str, given: Iterable[str], allowed: frozenset[str] = ALL_PARAMS,
                 hint: str = "extra JSON fields go in extra_body={...}") -> None:
    """TypeError for keyword arguments outside `allowed`, naming each and its close match, as a
    written-out signature would (`**params: Unpack[ChatParams]` is only checked by mypy): a typo
    such as `temprature=` fails at the call, not as a field the server ignores or rejects."""
    bad = sorted(set(given) - allowed)
    if not bad:
        return
    import difflib  # only on the error path: the client imports this module on its first name

    parts = []
    for name in bad:
        near = difflib.get_close_matches(name, sorted(allowed), n=1)
        parts.append(f"{name!r} (did you mean {near[0]!r}?)" if near else repr(name))
    noun = "argument" if len(bad) == 1 else "arguments"
    raise TypeError(f"{where} got unexpected keyword {noun} {', '.join(parts)}; {hint}")


# One list, checked once at import: the TypedDicts and the tuples must name the same things.
_CHAT_OK = frozenset(WIRE_ORDER) | CLIENT_ONLY == ALL_PARAMS
if not _CHAT_OK or set(FIM_WIRE_ORDER) != FIM_PARAMS - CLIENT_ONLY:  # pragma: no cover - a programming error
    raise AssertionError("ChatParams/FimParams, WIRE_ORDER/FIM_WIRE_ORDER and CLIENT_ONLY disagree")

