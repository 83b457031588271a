"""Configuration of the DeepSeek emulator: accounts, balances, answer shape, timing and faults.

Every knob has a default that reproduces the current DeepSeek API
(docs/deepseek-api-notes.md#what-the-emulator-reproduces, profile
`v4.1`); where DeepSeek's behaviour is unconfirmed the choice is a knob here. A config can
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

from deepseek_kit._wire import pricing as _pricing

__all__ = [
    "CANONICAL_MODELS", "MODEL_ALIASES", "RETIRED_MODELS", "VISION_MODELS", "EmulatorConfig",
    "EmulatorConfigError",
]

#: Requested name -> the model that serves it (docs/deepseek-api-notes.md#models-and-aliases:
#: legacy Flash names are served by V4.1-Flash).
MODEL_ALIASES: dict[str, str] = {
    "deepseek-flash": "deepseek-flash",
    "deepseek-v4-pro": "deepseek-v4-pro",
    "deepseek-v4-flash": "deepseek-flash",
    "deepseek-v4-flash-vision-exp": "deepseek-flash",
}
CANONICAL_MODELS = ("deepseek-flash", "deepseek-v4-pro")
#: Retired 2026-07-24 15:59 UTC (docs/deepseek-api-notes.md#models-and-aliases);
#: requests with these names fail.
RETIRED_MODELS = frozenset({"deepseek-chat", "deepseek-reasoner", "deepseek-coder"})
#: Models that accept image parts (V4.1-Flash is multimodal;
#: V4-Pro is not, docs/deepseek-api-notes.md#models-and-aliases).
VISION_MODELS = frozenset({"deepseek-flash", "deepseek-v4-flash", "deepseek-v4-flash-vision-exp"})


class EmulatorConfigError(ValueError):
    """A bad emulator setting: `bad emulator setting: <name>: <why>` (`dsk serve` prints it as one line)."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"bad emulator setting: {name}: {why}")
        self.name = name


@dataclass
class EmulatorConfig:
    """Knobs of the emulator. All fields are optional; the defaults reproduce DeepSeek's API.
    `dsk serve --mock --config FILE` reads them from the file's `[emulator]` table (`from_toml`).

        EmulatorConfig(api_keys={"sk-test"}, queue_delay=2.0, faults="status=429;times=1")

    Attributes:
        api_keys: Accepted bearer keys; None accepts any well-formed bearer key (each key is its
            own account).
        balance: Per-key balance (all of it topped-up, no granted part). Keys not listed start
            with `default_granted` + `default_topped_up`.
        default_granted: Granted balance of a key not in `balance`.
        default_topped_up: Topped-up balance of a key not in `balance`.
        currency: Balance and billing currency: "CNY" or "USD" (docs/deepseek-api-notes.md#balance).
        clock: Billing clock (epoch seconds) deciding peak/off-peak; the default honours
            DSK_FAKE_NOW, so tests bill at a fixed peak or off-peak time. Code only (not in a file).
        holidays: Holidays for billing: a `HolidayCalendar` (default: the built-in one) or a list
            of dates ("YYYY-MM-DD"), taken as the complete list.
        faults: Server-wide fault directives, in the syntax of the `X-DSK-Emulate` header
            (`Directives`).
        keepalive_interval: Seconds between `: keep-alive` comments (stream) / blank lines
            (non-stream) while a request is queued.
        queue_delay: Simulated queue time before inference starts, on every request
            (docs/deepseek-api-notes.md#streaming-and-keep-alives).
        queue_timeout: The connection is closed when inference has not started after this long,
            in seconds (DeepSeek: 10 minutes, docs/deepseek-api-notes.md#what-the-emulator-reproduces).
        default_tokens: Answer length in tokens (content).
        default_reasoning_tokens: Reasoning length in tokens at `reasoning_effort=high`.
        chunk_tokens: Tokens per stream chunk; DeepSeek sends about one token per chunk.
        echo_model_for_aliases: Echo a legacy alias (e.g. `deepseek-v4-flash`) as the response
            `model`; False reports the serving model `deepseek-flash` instead (which one DeepSeek
            echoes is unconfirmed, docs/deepseek-api-notes.md#what-the-emulator-reproduces).
        strict_reasoning_passback: Thinking + tools: an assistant turn with tool calls but no
            `reasoning_content` gets a 400, as at DeepSeek
            (docs/deepseek-api-notes.md#what-the-emulator-reproduces).
        concurrency_limits: Concurrent requests per account and serving model; more get a 429
            (docs/deepseek-api-notes.md#rate-limits-and-concurrency).
        seed: Mixed into every generated answer and the system fingerprint.
        json_without_hint: JSON mode without "json" in the prompt
            (docs/deepseek-api-notes.md#json-output): "spaces" answers with spaces and
            finish_reason "stop"; "until_limit" with whitespace until max_tokens, finish_reason
            "length".
        legacy_usage_chunk: Older servers: usage in a trailing `choices: []` chunk instead of on
            the finish chunk (docs/deepseek-api-notes.md#usage-fields).
        cache_simulation: Simulate DeepSeek's prefix cache, so repeated prefixes come back as
            `prompt_cache_hit_tokens` (docs/deepseek-api-notes.md#context-caching).
        cache_unit: The cache's unit in tokens: DeepSeek's measured 128.
        cache_capacity: Cached units kept over all accounts; the least recently used go first.
        validation_status: Status of request-body deserialization errors: 400 now, 422 in
            2024-early 2025 (docs/deepseek-api-notes.md#errors-and-status-codes).
        models: Ids returned by `GET /models` (docs/deepseek-api-notes.md#models-list).
        fingerprint_date: The date part of `system_fingerprint` (`fp_dsk_emulator_<10hex>_<date>`).
        plan_cache_size: Cached generated answers (keyed by request-body hash): at most this many.
        plan_cache_bytes: Bytes of cached answers at most (an estimate; a bigger single
            answer is not cached at all).
        recent_bodies: Recent request bodies kept for tests (`EmulatorState.recent`).
        recent_body_max: Bodies above this many bytes are not kept (their path is, with an empty
            body).
        max_body_size: Largest accepted request body in bytes, after decompression; bigger ones
            get a JSON 413 without being read (or inflated) past this size.
        max_tracked: Distinct request paths and `X-DSK-Emulate` strings (for counts and `times=`)
            kept; the least recently used are forgotten beyond this.
        max_accounts: Accounts kept; beyond this the least recently used is forgotten, and comes
            back with the default balance.
        context_length: The models' context length in tokens (1M,
            docs/deepseek-api-notes.md#models-and-aliases); longer prompts (+ max_tokens) get a 400.
        max_tool_argument_chars: Upper bound of the generated arguments of one tool call, in
            characters: a schema that needs more (`minLength: 1000000000`) gets a 400 instead of
            freezing the server.
        parallel_tool_calls: Several tools called in one turn when several fit the request
            (docs/emulator.md, "Tool calls"); False: at most one call per turn. A request's
            `parallel_tool_calls` overrides it."""

    api_keys: set[str] | None = None
    balance: dict[str, Decimal] = field(default_factory=dict)
    default_granted: Decimal = Decimal("10.00")
    default_topped_up: Decimal = Decimal("90.00")
    currency: str = "CNY"
    # The default honours DSK_FAKE_NOW (`_pricing.default_clock`).
    clock: Callable[[], float] = field(default_factory=_pricing.default_clock, compare=False)
    holidays: Any = None
    faults: str = ""
    keepalive_interval: float = 1.0
    queue_delay: float = 0.0
    queue_timeout: float = 600.0
    default_tokens: int = 32
    default_reasoning_tokens: int = 48
    chunk_tokens: int = 1
    # UNCONFIRMED which name DeepSeek echoes for an alias (docs/deepseek-api-notes.md).
    echo_model_for_aliases: bool = True
    strict_reasoning_passback: bool = True
    concurrency_limits: dict[str, int] = field(
        default_factory=lambda: {"deepseek-flash": 2500, "deepseek-v4-pro": 500}
    )
    seed: int = 0
    json_without_hint: str = "spaces"
    legacy_usage_chunk: bool = False
    cache_simulation: bool = True
    cache_unit: int = 128
    cache_capacity: int = 1_000_000
    validation_status: int = 400
    # The current list is UNCONFIRMED (docs/deepseek-api-notes.md#models-list).
    models: tuple[str, ...] = CANONICAL_MODELS
    fingerprint_date: str = "20261017"
    plan_cache_size: int = 4096
    plan_cache_bytes: int = 64 * 1024 * 1024
    recent_bodies: int = 100
    recent_body_max: int = 1024 * 1024
    max_body_size: int = 64 * 1024 * 1024
    max_tracked: int = 4096
    max_accounts: int = 10_000
    context_length: int = 1_048_576
    max_tool_argument_chars: int = 65_536
    parallel_tool_calls: bool = True

    def __post_init__(self) -> None:
        _validate(self)
        try:
            self.holidays = _pricing.calendar_of(self.holidays, "emulator holidays")
        except ValueError as exc:  # UsageError is a ValueError too
            raise EmulatorConfigError("holidays", str(exc)) from None
        if not callable(self.clock):  # a config file cannot give one: code only (tests)
            raise EmulatorConfigError("clock",
                                      f"must be a callable returning epoch seconds, not {self.clock!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> EmulatorConfig:
        """Build from a plain mapping (e.g. a parsed TOML table). Unknown keys are an error so that
        typos do not pass silently; `api_keys` may be a list."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown emulator config keys: {', '.join(unknown)}")
        return cls(**dict(data))  # __post_init__ converts lists and checks every value

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
        """The model that serves `requested` (an id or a legacy alias), None for an unknown model."""
        return MODEL_ALIASES.get(requested)

    def response_model(self, requested: str) -> str:
        """The `model` the answer reports: the name as asked (`echo_model_for_aliases`), else the
        serving model."""
        if self.echo_model_for_aliases:
            return requested
        return MODEL_ALIASES.get(requested, requested)


# -- validation (one place: a bad setting fails at startup, never on every request) ----------------

_MAX_SECONDS = 86_400.0
_MAX_OUTPUT = 393_216  # docs/deepseek-api-notes.md#models-and-aliases


def _int(c: EmulatorConfig, name: str, lo: int, hi: int | None = None) -> None:
    v = getattr(c, name)
    if isinstance(v, bool) or not isinstance(v, int):
        raise EmulatorConfigError(name, f"expected an integer, got {v!r}")
    if v < lo or (hi is not None and v > hi):
        why = f"must be {lo}..{hi}" if hi is not None else f"must be >= {lo}"
        raise EmulatorConfigError(name, f"{why}, got {v}")


def _seconds(c: EmulatorConfig, name: str, lo: float, *, above: bool = False) -> None:
    v = getattr(c, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise EmulatorConfigError(name, f"expected a number of seconds, got {v!r}")
    if not (lo < v if above else lo <= v) or not v < _MAX_SECONDS:  # also refuses nan
        low = f"{'above' if above else 'at least'} {lo:g}"
        raise EmulatorConfigError(name, f"must be {low} and below {_MAX_SECONDS:g} seconds, got {v!r}")
    setattr(c, name, float(v))


def _bool(c: EmulatorConfig, name: str) -> None:
    v = getattr(c, name)
    if not isinstance(v, bool):
        raise EmulatorConfigError(name, f"expected true or false, got {v!r}")


def _money(name: str, v: Any) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, (int, float, str, Decimal)):
        raise EmulatorConfigError(name, f"expected an amount, got {v!r}")
    try:
        d = v if isinstance(v, Decimal) else Decimal(str(v))
    except ArithmeticError:
        raise EmulatorConfigError(name, f"expected an amount, got {v!r}") from None
    if not d.is_finite():
        raise EmulatorConfigError(name, f"must be a finite amount, got {v!r}")
    return d


def _strings(name: str, v: Any) -> list[str]:
    if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple, set, frozenset)):
        raise EmulatorConfigError(name, f"expected a list of strings, got {v!r}")
    bad = [x for x in v if not isinstance(x, str) or not x]
    if bad:
        raise EmulatorConfigError(name, f"expected non-empty strings, got {bad[0]!r}")
    return list(v)


def _validate(c: EmulatorConfig) -> None:
    if c.api_keys is not None:
        c.api_keys = set(_strings("api_keys", c.api_keys))
    if not isinstance(c.balance, Mapping):
        raise EmulatorConfigError("balance", f"expected a table of key = amount, got {c.balance!r}")
    c.balance = {str(k): _money(f"balance.{k}", v) for k, v in c.balance.items()}
    c.default_granted = _money("default_granted", c.default_granted)
    c.default_topped_up = _money("default_topped_up", c.default_topped_up)
    if not isinstance(c.currency, str) or c.currency.upper() not in ("CNY", "USD"):
        raise EmulatorConfigError("currency", f"must be CNY or USD, got {c.currency!r}")
    c.currency = c.currency.upper()
    if not isinstance(c.faults, str):
        raise EmulatorConfigError("faults", f"expected directives as a string, got {c.faults!r}")
    _seconds(c, "keepalive_interval", 0.05)
    _seconds(c, "queue_delay", 0.0)
    _seconds(c, "queue_timeout", 0.0, above=True)
    _int(c, "default_tokens", 0, _MAX_OUTPUT)
    _int(c, "default_reasoning_tokens", 0, _MAX_OUTPUT)
    _int(c, "chunk_tokens", 1, _MAX_OUTPUT)
    for name in ("echo_model_for_aliases", "strict_reasoning_passback", "legacy_usage_chunk",
                 "cache_simulation", "parallel_tool_calls"):
        _bool(c, name)
    limits = c.concurrency_limits
    if not isinstance(limits, Mapping):
        raise EmulatorConfigError("concurrency_limits", f"expected a table of model = limit, got {limits!r}")
    for model, limit in limits.items():
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise EmulatorConfigError("concurrency_limits",
                                      f"{model}: expected a positive integer, got {limit!r}")
    c.concurrency_limits = dict(limits)
    _int(c, "seed", -(2**63), 2**63 - 1)
    if c.json_without_hint not in ("spaces", "until_limit"):
        raise EmulatorConfigError("json_without_hint",
                                  f"must be 'spaces' or 'until_limit', got {c.json_without_hint!r}")
    _int(c, "cache_unit", 1)
    _int(c, "cache_capacity", 0)
    if c.validation_status not in (400, 422) or isinstance(c.validation_status, bool):
        raise EmulatorConfigError("validation_status",
                                  f"must be 400 or 422, got {c.validation_status!r}")
    c.models = tuple(_strings("models", c.models))
    date = c.fingerprint_date
    if not isinstance(date, str) or not (len(date) == 8 and date.isdigit()):
        raise EmulatorConfigError("fingerprint_date", f"expected 8 digits (YYYYMMDD), got {date!r}")
    _int(c, "plan_cache_size", 0)
    _int(c, "plan_cache_bytes", 0)
    _int(c, "recent_bodies", 0)
    _int(c, "recent_body_max", 0)
    _int(c, "max_body_size", 1)
    _int(c, "max_tracked", 1)
    _int(c, "max_accounts", 1)
    _int(c, "context_length", 1)
    _int(c, "max_tool_argument_chars", 1)
    from .faults import DirectiveError, check_combination, parse_directives

    try:
        check_combination(parse_directives(c.faults))  # a typo fails here, not on every request
    except DirectiveError as exc:
        raise EmulatorConfigError("faults", str(exc)) from None
