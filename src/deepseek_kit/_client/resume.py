"""Stream resumption through DeepSeek's chat prefix completion (docs/design-notes.md, "Stream resumption").

When a stream breaks after tokens reached the caller — a reset, an idle timeout, an error event,
or `finish_reason: insufficient_system_resource` — the partial answer is sent back as the last
assistant message with `prefix: true` (on /beta,
https://api-docs.deepseek.com/guides/chat_prefix_completion), keeping
the partial `reasoning_content` as the CoT prefix in thinking mode (the schema allows it exactly
there), and the continuation's chunks are spliced into the same stream: one seamless iteration, one
final completion, usage summed across the pieces.

Scope (`Resumption.enabled`, default None = auto): only servers that implement DeepSeek's prefix
completion can continue an answer; any other OpenAI-compatible server (vLLM, SGLang, a proxy that
strips unknown fields) ignores `prefix` and starts the answer again, which appended would corrupt
it. Auto resumes only streams served by such a server: `Endpoint(prefix_completion=True)`,
`AsyncClient(prefix_completion=True)` for the plain base URL, or, when undeclared, a host of
DeepSeek's own API (`api.deepseek.com`). `enabled=True` resumes everywhere, `False` nowhere; the
per-call `resume=True/False` wins over both. With endpoints, the continuation may only go to
endpoints that support prefix completion (`request.options["only_endpoints"]`).

Validation (`ContinuationCheck`), whatever the scope: the continuation is held back, not shown to
the caller, until it proves it continues the answer. DeepSeek's continuation never re-sends the
prefix, so a continuation is a restart when
- its text in the channel being continued (content, or reasoning_content when the break came
  before any content) repeats the start of what was delivered: its first `min(len(delivered),
  Resumption.match_chars)` characters (default 12) equal the delivered ones — a restart sampled
  differently usually shares its opening words —, or it ends, breaks or moves on after a
  non-empty piece that is a prefix of the delivered start; or
- content had been delivered and the continuation sends reasoning_content (it is thinking again).
A continuation that differs from the delivered start within those characters is released at once,
so a genuine one is held for a character or two; one that sends only textless chunks is released
after `HOLD_MAX_CHUNKS` of them (nothing to compare, nothing to hold on to). A restart is dropped
and never retried: the original StreamError (same type, same message, the delivered text as
`.partial`) is raised, or, when the answer was cut by `insufficient_system_resource`, the stream
ends with that finish_reason and the text delivered. A server that ignores `prefix` *and* samples
a different opening is not detectable this way; that is why the scope above is the first line of
defence.

What is not resumed, and why:
- a break in the middle of tool-call arguments: prefix completion continues *text*; there is no
  way to hand the API half a tool call, so the caller gets the StreamError with the partial answer
  (the tool call so far included) and decides;
- a `total` timeout: the call's deadline has passed, continuing would break the caller's limit;
- `n > 1`-style multi-choice streams (DeepSeek has none).

Usage: DeepSeek bills the broken piece too, but its usage never arrived. It is estimated with
DeepSeek's published ratios (~0.3 token per English character, ~0.6 per Chinese character) and
added; `AsyncStream.usage_estimated` says when that happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from msgspec import UNSET

from deepseek_kit._transport.timeouts import Timeout
from deepseek_kit._wire.errors import UsageError
from deepseek_kit._wire.tokens import estimate_tokens  # the one estimate (a lost piece's size)
from deepseek_kit._wire.types import (
    ChatCompletion,
    ChatCompletionChunk,
    CompletionTokensDetails,
    PromptTokensDetails,
    Usage,
)

__all__ = ["DEEPSEEK_HOSTS", "HOLD_MAX_CHUNKS", "ContinuationCheck", "LostPiece", "Resumer", "Resumption",
           "estimate_tokens", "sum_usage", "supports_prefix_completion", "total_usage"]

# Hosts of DeepSeek's own API: prefix completion is documented there (the guide linked above).
DEEPSEEK_HOSTS = frozenset({"api.deepseek.com"})
# Textless chunks (role, empty deltas) a continuation may send before its check settles: bounds
# what is held back from a server that floods them.
HOLD_MAX_CHUNKS = 64


@dataclass(frozen=True)
class Resumption:
    """Stream resumption. `enabled`: None (default) = only for servers that support DeepSeek's
    prefix completion (see the module docstring), True = for every server, False = never.
    `max_attempts` continuations per stream at most. `match_chars`: a continuation whose text
    repeats the first `min(len(delivered), match_chars)` characters of the delivered text is a
    restart and is dropped (lower catches restarts sharing shorter openings, at the risk of
    dropping a genuine continuation that happens to begin like the answer)."""

    enabled: bool | None = None
    max_attempts: int = 2
    match_chars: int = 12

    def __post_init__(self) -> None:
        if self.enabled not in (None, True, False):
            raise UsageError(f"Resumption.enabled must be None, True or False, got {self.enabled!r}")
        if type(self.max_attempts) is not int or self.max_attempts < 0:
            raise UsageError(f"Resumption.max_attempts must be an int >= 0, got {self.max_attempts!r}")
        if type(self.match_chars) is not int or self.match_chars < 1:
            raise UsageError(f"Resumption.match_chars must be an int >= 1, got {self.match_chars!r}")


def supports_prefix_completion(base_url: str, declared: bool | None) -> bool:
    """The declaration when there is one; else True only for DeepSeek's own API host."""
    if declared is not None:
        return declared
    host = urlsplit(base_url).hostname
    return host is not None and host.lower() in DEEPSEEK_HOSTS


class ContinuationCheck:
    """Does a continuation continue the delivered answer, or start it again? Fed the
    continuation's chunks in order; `feed` answers "ok" (release what was held), "restart"
    (drop it) or "wait" (hold this chunk too). The rule is in the module docstring."""

    __slots__ = ("_channel", "_seen", "_want")

    def __init__(self, partial: ChatCompletion, match_chars: int = 12) -> None:
        msg = partial.choices[0].message if partial.choices else None
        if msg is not None and msg.content:
            self._channel: str | None = "content"
            delivered = msg.content
        elif msg is not None and msg.reasoning_content:
            self._channel = "reasoning"
            delivered = msg.reasoning_content
        else:
            self._channel = None  # nothing delivered: a fresh answer cannot repeat anything
            delivered = ""
        self._want = delivered[:match_chars]
        self._seen = ""

    def feed(self, chunk: ChatCompletionChunk) -> str:
        if self._channel is None:
            return "ok"
        moved = False
        for ch in chunk.choices:
            d = ch.delta
            reasoning = d.reasoning_content
            if reasoning is None and d.reasoning is not UNSET and isinstance(d.reasoning, str):
                reasoning = d.reasoning  # another server's name for it (docs/dialects.md)
            if self._channel == "content":
                if reasoning:
                    return "restart"  # thinking again after the answer had begun
                text = d.content
            else:
                text = reasoning
                moved = moved or bool(d.content)
            if text:
                self._seen += text
            if d.tool_calls or ch.finish_reason is not None:
                moved = True
        verdict = self._verdict()
        if verdict == "wait" and moved:
            return self.settle()
        return verdict

    def _verdict(self) -> str:
        seen = self._seen[: len(self._want)]
        if not self._want.startswith(seen):
            return "ok"
        return "restart" if len(seen) == len(self._want) else "wait"

    def settle(self) -> str:
        """The continuation ended, broke or moved on while held: a non-empty piece that matches
        the delivered start so far is a restart; nothing at all is not."""
        if self._channel is None:
            return "ok"
        return "restart" if self._seen and self._verdict() != "ok" else "ok"


def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


def sum_usage(a: Usage, b: Usage) -> Usage:
    reasoning = _add(a.completion_tokens_details.reasoning_tokens if a.completion_tokens_details else None,
                     b.completion_tokens_details.reasoning_tokens if b.completion_tokens_details else None)
    cached = _add(a.prompt_tokens_details.cached_tokens if a.prompt_tokens_details else None,
                  b.prompt_tokens_details.cached_tokens if b.prompt_tokens_details else None)
    return Usage(
        prompt_tokens=a.prompt_tokens + b.prompt_tokens,
        completion_tokens=a.completion_tokens + b.completion_tokens,
        total_tokens=a.total_tokens + b.total_tokens,
        prompt_cache_hit_tokens=_add(a.prompt_cache_hit_tokens, b.prompt_cache_hit_tokens),
        prompt_cache_miss_tokens=_add(a.prompt_cache_miss_tokens, b.prompt_cache_miss_tokens),
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached) if cached is not None else None,
        completion_tokens_details=(CompletionTokensDetails(reasoning_tokens=reasoning)
                                   if reasoning is not None else None),
    )


@dataclass(frozen=True)
class LostPiece:
    """A piece of a resumed stream: the answer's estimated size (tokens) before and after it, and
    its usage when the server sent it (insufficient_system_resource does)."""

    before: int
    after: int
    reasoning_before: int
    reasoning_after: int
    usage: Usage | None

    @classmethod
    def of(cls, partial: ChatCompletion, prev: LostPiece | None, usage: Usage | None) -> LostPiece:
        msg = partial.choices[0].message
        reasoning = estimate_tokens(msg.reasoning_content or "")
        return cls(prev.after if prev else 0, estimate_tokens(msg.content or "") + reasoning,
                   prev.reasoning_after if prev else 0, reasoning, usage)

    def usage_given(self, prompt0: int, reasoning_details: bool) -> Usage:
        """This piece's usage: the known one, or an estimate. `prompt0` is the original prompt's
        size (a piece's prompt is that plus its prefix, `before`)."""
        if self.usage is not None:
            return self.usage
        prompt = prompt0 + self.before
        completion = max(0, self.after - self.before)
        details = None
        if reasoning_details:
            grown = max(0, self.reasoning_after - self.reasoning_before)
            details = CompletionTokensDetails(reasoning_tokens=grown)
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                     prompt_cache_hit_tokens=0, prompt_cache_miss_tokens=prompt,
                     completion_tokens_details=details)


def total_usage(pieces: list[LostPiece]) -> tuple[Usage | None, bool]:
    """The pieces' usage summed (unknown ones estimated), and whether any was estimated; None
    when no piece's usage is known (nothing to anchor the prompt size on)."""
    known = next((p for p in pieces if p.usage is not None), None)
    if known is None or known.usage is None:
        return None, False
    prompt0 = max(0, known.usage.prompt_tokens - known.before)
    details = known.usage.completion_tokens_details is not None
    total: Usage | None = None
    estimated = False
    for p in pieces:
        estimated = estimated or p.usage is None
        u = p.usage_given(prompt0, details)
        total = u if total is None else sum_usage(total, u)
    return total, estimated


S = TypeVar("S")


class Resumer(Generic[S]):
    """Knows how to ask for the rest of one stream: the original call's arguments, the
    endpoints a continuation may go to (None: no restriction, no router or none declared), and
    the call's deadline (loop time): `Timeout.total` bounds the whole answer, continuations
    included, so each continuation gets only what is left of it.

    `reopen(**params)` opens a stream with the call's parameters (the resource's `create`), and
    `default_timeout` is the client's timeout for calls that set none. They are passed in, not
    imported, so this module knows nothing of the resources or the stream class it serves."""

    def __init__(self, reopen: Callable[..., Awaitable[S]], default_timeout: Timeout,
                 params: Mapping[str, Any], policy: Resumption,
                 only_endpoints: frozenset[str] | None = None, deadline: float | None = None) -> None:
        self._reopen = reopen
        self._default_timeout = default_timeout
        self._params = dict(params)
        self.policy = policy
        self.only_endpoints = only_endpoints
        self.deadline = deadline
        self.attempts = 0

    def resumable(self, partial: ChatCompletion, reason: str) -> bool:
        if self.attempts >= self.policy.max_attempts or reason == "total":
            return False
        if len(partial.choices) != 1:
            return False
        return not partial.choices[0].message.tool_calls

    async def continuation(self, partial: ChatCompletion) -> S | None:
        """Open the continuation stream, or None when that fails (the caller then raises the
        original error)."""
        self.attempts += 1
        msg = partial.choices[0].message
        messages: list[Any] = list(self._params["messages"])
        content = msg.content or ""
        last = messages[-1] if messages else None
        if isinstance(last, Mapping) and last.get("role") == "assistant" and last.get("prefix"):
            # The caller already used prefix completion: the answer continues their prefix.
            content = str(last.get("content") or "") + content
            messages = messages[:-1]
        prefix: dict[str, Any] = {"role": "assistant", "content": content, "prefix": True}
        if msg.reasoning_content is not None:
            prefix["reasoning_content"] = msg.reasoning_content
        params = {**self._params, "messages": [*messages, prefix], "stream": True, "resume": False,
                  "_only_endpoints": self.only_endpoints}
        if self.deadline is not None:
            left = self.deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return None  # the caller's total has passed: the original error stands
            t = params.get("timeout", ...)
            base = self._default_timeout if t is ... else Timeout.coerce(t)
            params["timeout"] = replace(base, total=left)
        from deepseek_kit._wire.errors import DeepSeekError

        try:
            return await self._reopen(**params)
        except DeepSeekError:
            return None
