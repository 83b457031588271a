"""Stream resumption through DeepSeek's chat prefix completion (issue 3 item 6).

When a stream breaks after tokens reached the caller — a reset, an idle timeout, an error event,
or `finish_reason: insufficient_system_resource` (deepseek-api.md §4.1) — the partial answer is
sent back as the last assistant message with `prefix: true` (on /beta, §5.4), keeping the partial
`reasoning_content` as the CoT prefix in thinking mode (the schema allows it exactly there), and
the continuation's chunks are spliced into the same stream: one seamless iteration, one final
completion, usage summed across the pieces.

What is not resumed, and why:
- a break in the middle of tool-call arguments: prefix completion continues *text*; there is no
  way to hand the API half a tool call, so the caller gets the StreamError with the partial answer
  (the tool call so far included) and decides;
- a `total` timeout: the call's deadline has passed, continuing would break the caller's limit;
- `n > 1`-style multi-choice streams (DeepSeek has none).

Usage: DeepSeek bills the broken piece too, but its usage never arrived. It is estimated with
DeepSeek's published ratios (deepseek-api.md §7: ~0.3 token per English character, ~0.6 per
Chinese character) and added; `AsyncStream.usage_estimated` says when that happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import UsageError
from ._types import ChatCompletion, CompletionTokensDetails, PromptTokensDetails, Usage

if TYPE_CHECKING:
    from ._resources import ChatCompletions
    from ._stream import AsyncStream

__all__ = ["LostPiece", "Resumer", "Resumption", "estimate_tokens", "sum_usage"]


@dataclass(frozen=True)
class Resumption:
    """`max_attempts` continuations per stream at most; `enabled=False` turns it off."""

    enabled: bool = True
    max_attempts: int = 2

    def __post_init__(self) -> None:
        if self.max_attempts < 0:
            raise UsageError("Resumption.max_attempts must be >= 0")


def estimate_tokens(text: str) -> int:
    """DeepSeek's rule of thumb (§7): 0.6 token per CJK character, 0.3 per other character."""
    cjk = sum(1 for ch in text if "\u3000" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff")
    return round(cjk * 0.6 + (len(text) - cjk) * 0.3)


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

    def usage_given(self, final: Usage, last: LostPiece) -> Usage:
        """This piece's usage: the known one, or an estimate. The final piece's prompt is the
        original prompt plus the last prefix, which gives the original prompt's size."""
        if self.usage is not None:
            return self.usage
        prompt = max(0, final.prompt_tokens - last.after) + self.before
        completion = max(0, self.after - self.before)
        details = None
        if final.completion_tokens_details is not None:
            grown = max(0, self.reasoning_after - self.reasoning_before)
            details = CompletionTokensDetails(reasoning_tokens=grown)
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                     prompt_cache_hit_tokens=0, prompt_cache_miss_tokens=prompt,
                     completion_tokens_details=details)


class Resumer:
    """Knows how to ask for the rest of one stream: the original call's arguments."""

    def __init__(self, completions: ChatCompletions, params: Mapping[str, Any], policy: Resumption) -> None:
        self._completions = completions
        self._params = dict(params)
        self.policy = policy
        self.attempts = 0

    def resumable(self, partial: ChatCompletion, reason: str) -> bool:
        if not self.policy.enabled or self.attempts >= self.policy.max_attempts or reason == "total":
            return False
        if len(partial.choices) != 1:
            return False
        return not partial.choices[0].message.tool_calls

    async def continuation(self, partial: ChatCompletion) -> AsyncStream | None:
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
        params = {**self._params, "messages": [*messages, prefix], "stream": True, "resume": False}
        from ._errors import DeepSeekError

        try:
            stream: AsyncStream = await self._completions.create(**params)
        except DeepSeekError:
            return None
        return stream
