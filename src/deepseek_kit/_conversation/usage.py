"""`ConversationUsage`: a conversation's token and cost tallies, summed from each response's `usage`.

Exact as billed: each `usage` read by the client's one split (`_wire/usage.split_usage`: prompt =
cache hits + misses, completion including reasoning,
docs/deepseek-api-notes.md#response-objects) and priced by the one price cache
(`_wire/pricing.PriceBook`) at the time of the response (peak or off-peak).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from deepseek_kit._wire import pricing as _pricing
from deepseek_kit._wire.types import Usage
from deepseek_kit._wire.usage import split_usage

__all__ = ["ConversationUsage"]


@dataclass
class ConversationUsage:
    """Tokens and cost of a conversation's requests, summed from each response's `usage`.

    Attributes:
        requests: Requests counted.
        prompt_tokens: Input tokens, cache hits and misses together.
        cache_hit_tokens: Input tokens served from DeepSeek's context cache (the cheap ones).
        cache_miss_tokens: Input tokens not in the cache.
        completion_tokens: Output tokens, reasoning included.
        reasoning_tokens: The part of `completion_tokens` spent thinking.
        cost: The summed cost (`Decimal`), each request priced at the time it ran, peak or
            off-peak (docs/pricing.md).
        currency: "CNY" or "USD", the currency of `cost`."""

    requests: int = 0
    prompt_tokens: int = 0
    cache_hit_tokens: int = 0
    cache_miss_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal = Decimal(0)
    currency: str = "CNY"
    _prices: _pricing.PriceBook | None = field(default=None, init=False, repr=False, compare=False)

    def add(self, model: str, usage: Usage | None, at: datetime | None = None) -> None:
        """Count one request: its `usage` (None: counted as a request without tokens) priced for
        `model` at time `at` (default: now), peak or off-peak."""
        self.requests += 1
        if usage is None:
            return
        t = split_usage(usage)
        self.prompt_tokens += t.prompt
        self.cache_hit_tokens += t.cache_hit
        self.cache_miss_tokens += t.cache_miss
        self.completion_tokens += t.completion
        self.reasoning_tokens += t.reasoning
        prices = self._prices
        if prices is None or prices.currency != self.currency.upper():
            prices = self._prices = _pricing.PriceBook(self.currency)
        at = at or _pricing.now()  # DSK_FAKE_NOW aware
        if at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)  # naive = UTC, as `_pricing.is_peak` reads it
        self.cost += prices.cost(model, t, at.timestamp())

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
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        d["cost"] = str(self.cost)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConversationUsage:
        """Rebuild tallies saved with `to_dict()`; unknown keys are ignored."""
        names = {f.name for f in fields(cls) if f.init}
        kw = {k: v for k, v in data.items() if k in names}
        if "cost" in kw:
            kw["cost"] = Decimal(str(kw["cost"]))
        return cls(**kw)
