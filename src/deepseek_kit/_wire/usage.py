"""`TokenSplit` and `split_usage`: the one reading of a response's `usage` into the five counts
DeepSeek bills and reports (docs/deepseek-api-notes.md, usage).

prompt = cache-hit + cache-miss input tokens; completion includes reasoning. Every tally of the
client reads usage through here: the metrics step and the logs step (per call), a conversation's
running totals, the cost in `_wire/pricing.py` (and through it batch runs). One rule, so the
same answer never counts differently in `dsk stats`, a `RequestRecord` and a conversation:

- DeepSeek's `prompt_cache_hit_tokens` / `prompt_cache_miss_tokens` when present (one of them
  missing: the other is the rest of `prompt_tokens`);
- else OpenAI-style `prompt_tokens_details.cached_tokens` (vLLM, SGLang) as the hits, the rest
  misses; with neither, every prompt token is a miss;
- reasoning from `completion_tokens_details.reasoning_tokens` (absent when thinking was off).

A wire `Usage` is read directly; a mapping or a look-alike object (a cache entry, a user's dict)
is converted first, leniently: a count that is not a number is read as 0, never an error.
Counts below zero are 0 (`Usage.__post_init__`), so a hostile server cannot make totals negative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import msgspec

from .types import CompletionTokensDetails, PromptTokensDetails, Usage

__all__ = ["NO_TOKENS", "TokenSplit", "split_usage"]


class TokenSplit(NamedTuple):
    """The counts of one usage: `cache_hit + cache_miss == prompt`; `reasoning` is part of
    `completion`."""

    prompt: int
    cache_hit: int
    cache_miss: int
    completion: int
    reasoning: int

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    @property
    def billable(self) -> bool:
        """True when any token is billed (a call without one costs nothing, priced or not)."""
        return bool(self.cache_hit or self.cache_miss or self.completion)


NO_TOKENS = TokenSplit(0, 0, 0, 0, 0)


def split_usage(usage: Any) -> TokenSplit:
    """The `TokenSplit` of a `Usage`, a mapping or an object with the same attributes; None gives
    `NO_TOKENS`."""
    if usage is None:
        return NO_TOKENS
    if isinstance(usage, TokenSplit):
        return usage
    u = usage if type(usage) is Usage else _as_usage(usage)
    prompt = u.prompt_tokens
    hit = u.prompt_cache_hit_tokens
    miss = u.prompt_cache_miss_tokens
    if hit is None and miss is None:
        d = u.prompt_tokens_details
        hit = (d.cached_tokens or 0) if d is not None else 0
        miss = max(prompt - hit, 0)
    else:
        hit = hit or 0
        miss = miss if miss is not None else max(prompt - hit, 0)
    r = u.completion_tokens_details
    reasoning = (r.reasoning_tokens or 0) if r is not None else 0
    return TokenSplit(prompt, hit, miss, u.completion_tokens, reasoning)


def _as_usage(usage: Any) -> Usage:
    mapping = isinstance(usage, Mapping)
    try:
        return msgspec.convert(usage, Usage, from_attributes=not mapping, strict=False)
    except (msgspec.ValidationError, TypeError):
        pass

    def get(obj: Any, name: str) -> Any:
        return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)

    def count(obj: Any, name: str) -> int | None:
        v = get(obj, name)
        ok = isinstance(v, int) or (isinstance(v, float) and math.isfinite(v))
        return int(v) if ok and not isinstance(v, bool) else None

    pd, cd = get(usage, "prompt_tokens_details"), get(usage, "completion_tokens_details")
    return Usage(
        prompt_tokens=count(usage, "prompt_tokens") or 0,
        completion_tokens=count(usage, "completion_tokens") or 0,
        total_tokens=count(usage, "total_tokens") or 0,
        prompt_cache_hit_tokens=count(usage, "prompt_cache_hit_tokens"),
        prompt_cache_miss_tokens=count(usage, "prompt_cache_miss_tokens"),
        prompt_tokens_details=(None if pd is None else
                               PromptTokensDetails(cached_tokens=count(pd, "cached_tokens"))),
        completion_tokens_details=(None if cd is None else
                                   CompletionTokensDetails(reasoning_tokens=count(cd, "reasoning_tokens"))),
    )
