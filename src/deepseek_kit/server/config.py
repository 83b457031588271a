"""Configuration of the DeepSeek emulator: accounts, balances, answer shape, timing and faults.

Every knob has a default that reproduces the current DeepSeek API (deepseek-api.md §9, profile
`v4.1`); where the reference marks a behaviour UNCONFIRMED the choice is a knob here. A config can
be built in code, or loaded from a plain mapping / TOML file (`EmulatorConfig.from_mapping`,
`EmulatorConfig.from_toml`) for `dsk serve --mock --config`.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from .. import _pricing

__all__ = ["CANONICAL_MODELS", "MODEL_ALIASES", "RETIRED_MODELS", "VISION_MODELS", "EmulatorConfig"]

#: Requested name -> the model that serves it (§2.1: legacy Flash names are served by V4.1-Flash).
MODEL_ALIASES: dict[str, str] = {
    "deepseek-flash": "deepseek-flash",
    "deepseek-v4-pro": "deepseek-v4-pro",
    "deepseek-v4-flash": "deepseek-flash",
    "deepseek-v4-flash-vision-exp": "deepseek-flash",
}
CANONICAL_MODELS = ("deepseek-flash", "deepseek-v4-pro")
#: Retired 2026-07-24 15:59 UTC (§0); requests with these names fail.
RETIRED_MODELS = frozenset({"deepseek-chat", "deepseek-reasoner", "deepseek-coder"})
#: Models that accept image parts (V4.1-Flash is multimodal; V4-Pro is not, §2.1).
VISION_MODELS = frozenset({"deepseek-flash", "deepseek-v4-flash", "deepseek-v4-flash-vision-exp"})


def _dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass
class EmulatorConfig:
    """Knobs of the emulator. All fields are optional."""

    #: Accepted bearer keys; None accepts any well-formed bearer key (each key is its own account).
    api_keys: set[str] | None = None
    #: Per-key balance (all of it topped-up, no granted part). Keys not listed start with
    #: `default_granted` + `default_topped_up`.
    balance: dict[str, Decimal] = field(default_factory=dict)
    default_granted: Decimal = Decimal("10.00")
    default_topped_up: Decimal = Decimal("90.00")
    #: Balance and billing currency: "CNY" or "USD" (§5.2).
    currency: str = "CNY"
    #: Billing clock (epoch seconds) deciding peak/off-peak; the default honours DSK_FAKE_NOW
    #: (`_pricing.default_clock`), so tests bill at a fixed peak or off-peak time.
    clock: Callable[[], float] = field(default_factory=_pricing.default_clock, compare=False)
    #: Holidays for billing: a `HolidayCalendar` (default: the built-in one) or a list of dates
    #: ("YYYY-MM-DD"), taken as the complete list.
    holidays: Any = None
    #: Server-wide fault directives, same syntax as the `X-DSK-Emulate` header (see faults.py).
    faults: str = ""
    #: Seconds between `: keep-alive` comments (stream) / blank lines (non-stream) while queued.
    keepalive_interval: float = 1.0
    #: Simulated queue time before inference starts on every request (§4.4, §9.20).
    queue_delay: float = 0.0
    #: The connection is closed when inference has not started after this long (§9.21: 10 min).
    queue_timeout: float = 600.0
    #: Answer length in tokens (content) and reasoning length at `reasoning_effort=high`.
    default_tokens: int = 32
    default_reasoning_tokens: int = 48
    #: Tokens per stream chunk; DeepSeek sends about one token per chunk.
    chunk_tokens: int = 1
    #: Echo a legacy alias (e.g. `deepseek-v4-flash`) as the response `model`; False reports the
    #: serving model `deepseek-flash` instead (UNCONFIRMED which one DeepSeek echoes, §9.4).
    echo_model_for_aliases: bool = True
    #: Thinking + tools: an assistant turn with tool calls but no `reasoning_content` -> 400 (§9.9).
    strict_reasoning_passback: bool = True
    #: Per-account concurrent requests per serving model; more -> 429 (§6.3).
    concurrency_limits: dict[str, int] = field(
        default_factory=lambda: {"deepseek-flash": 2500, "deepseek-v4-pro": 500}
    )
    #: Mixed into every generated answer and the system fingerprint.
    seed: int = 0
    #: JSON mode without "json" in the prompt (§5.3): "spaces" = the answer replaced by spaces with
    #: finish_reason "stop"; "until_limit" = whitespace until max_tokens, finish_reason "length".
    json_without_hint: str = "spaces"
    #: Older servers: usage in a trailing `choices: []` chunk instead of on the finish chunk (§4.3).
    legacy_usage_chunk: bool = False
    #: Prefix-cache simulation (§5.8); the unit is DeepSeek's measured 128 tokens.
    cache_simulation: bool = True
    cache_unit: int = 128
    cache_capacity: int = 1_000_000
    #: Status of request-body deserialization errors: 400 now, 422 in 2024-early 2025 (§6.2).
    validation_status: int = 400
    #: Ids returned by GET /models (§5.1, current list UNCONFIRMED).
    models: tuple[str, ...] = CANONICAL_MODELS
    #: The date part of `system_fingerprint` (`fp_<10hex>_prod0820_fp8_kvcache_<date>`).
    fingerprint_date: str = "20261017"
    #: Cached generated answers (keyed by request-body hash), recent bodies kept for tests.
    plan_cache_size: int = 4096
    recent_bodies: int = 100
    max_body_size: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        self.balance = {k: _dec(v) for k, v in self.balance.items()}
        self.default_granted = _dec(self.default_granted)
        self.default_topped_up = _dec(self.default_topped_up)
        self.currency = self.currency.upper()
        self.holidays = _pricing.calendar_of(self.holidays, "emulator holidays")
        if not callable(self.clock):  # a config file cannot give one: code only (tests)
            raise ValueError(f"clock must be a callable returning epoch seconds, not {self.clock!r}")
        if self.currency not in ("CNY", "USD"):
            raise ValueError(f"currency must be CNY or USD, not {self.currency!r}")
        if self.json_without_hint not in ("spaces", "until_limit"):
            raise ValueError("json_without_hint must be 'spaces' or 'until_limit'")
        if self.api_keys is not None:
            self.api_keys = set(self.api_keys)
        self.models = tuple(self.models)
        if self.chunk_tokens < 1 or self.cache_unit < 1:
            raise ValueError("chunk_tokens and cache_unit must be >= 1")
        from .faults import parse_directives

        parse_directives(self.faults)  # a typo fails here, not on every request (DirectiveError)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> EmulatorConfig:
        """Build from a plain mapping (e.g. a parsed TOML table). Unknown keys are an error so that
        typos do not pass silently; `api_keys` may be a list."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown emulator config keys: {', '.join(unknown)}")
        kwargs = dict(data)
        if kwargs.get("api_keys") is not None:
            kwargs["api_keys"] = set(kwargs["api_keys"])
        if "models" in kwargs:
            kwargs["models"] = tuple(kwargs["models"])
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | Path, table: str | None = "emulator") -> EmulatorConfig:
        """Load from a TOML file; settings live in `[emulator]` (or the top level if absent)."""
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10 needs the tomli backport
            import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
        with open(path, "rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
        if table and isinstance(data.get(table), dict):
            data = data[table]
        return cls.from_mapping(data)

    def serving_model(self, requested: str) -> str | None:
        return MODEL_ALIASES.get(requested)

    def response_model(self, requested: str) -> str:
        if self.echo_model_for_aliases:
            return requested
        return MODEL_ALIASES.get(requested, requested)
