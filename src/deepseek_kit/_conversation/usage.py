"""`ConversationUsage`: a conversation's token and cost tallies, summed from each response's `usage`.

Exact as billed: DeepSeek's `usage` (prompt = cache hits + misses, completion including reasoning,
deepseek-api.md §4.1) priced with `_pricing` at the time of the response (peak/off-peak, §2.1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from deepseek_kit._wire import pricing as _pricing
from deepseek_kit._wire.types import Usage

__all__ = ["ConversationUsage"]


@dataclass
class ConversationUsage:
    """Tokens and cost of a conversation's requests, summed from each response's `usage`."""

    requests: int = 0
    prompt_tokens: int = 0
    cache_hit_tokens: int = 0
    cache_miss_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal = Decimal(0)
    currency: str = "CNY"

    def add(self, model: str, usage: Usage | None, at: datetime | None = None) -> None:
        """Count one request: its `usage` (None: counted as a request without tokens) priced for
        `model` at time `at` (default: now), peak or off-peak."""
        self.requests += 1
        if usage is None:
            return
        hit = usage.prompt_cache_hit_tokens or 0
        miss = usage.prompt_cache_miss_tokens
        self.prompt_tokens += usage.prompt_tokens
        self.cache_hit_tokens += hit
        self.cache_miss_tokens += miss if miss is not None else usage.prompt_tokens - hit
        self.completion_tokens += usage.completion_tokens
        self.reasoning_tokens += usage.reasoning_tokens
        self.cost += _pricing.cost(model, usage, at, self.currency)  # at=None: now (DSK_FAKE_NOW aware)

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens (reasoning is part of completion)."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def cache_hit_rate(self) -> float:
        """The share of prompt tokens served from DeepSeek's context cache, 0.0 to 1.0."""
        return self.cache_hit_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def __str__(self) -> str:
        sign = {"CNY": "¥", "USD": "$"}.get(self.currency, self.currency + " ")
        return (f"{self.requests} requests, {self.prompt_tokens:,} prompt tokens "
                f"({self.cache_hit_rate:.0%} cache hits), {self.completion_tokens:,} completion tokens "
                f"({self.reasoning_tokens:,} reasoning), cost {sign}{self.cost:.6f}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible values (`cost` as a decimal string), for `from_dict`."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["cost"] = str(self.cost)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConversationUsage:
        """Rebuild tallies saved with `to_dict()`; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        if "cost" in kw:
            kw["cost"] = Decimal(str(kw["cost"]))
        return cls(**kw)
