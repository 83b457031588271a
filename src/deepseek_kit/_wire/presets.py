"""Parameter presets from DeepSeek's own recommendations (docs/deepseek-api-notes.md#request-fields,
`temperature` row, from https://api-docs.deepseek.com/quick_start/parameter_settings):

    coding / math                0.0
    data cleaning / analysis     1.0
    general conversation         1.3
    translation                  1.3
    creative writing / poetry    1.5

DeepSeek published these for the non-thinking model, and in thinking mode `temperature` "will not
trigger an error but will also have no effect" (docs/deepseek-api-notes.md#thinking-mode). A preset whose
point is its temperature is therefore worthless with thinking on, so every preset here also turns thinking off
(`thinking: {"type": "disabled"}`). A caller who wants thinking anyway passes `thinking=True`
after the preset (later keyword arguments win); the temperature then has no effect, by DeepSeek's
rule, and `Conversation` says so in `describe()`.

`preset(name)` returns plain `create()` keyword arguments, so it works with the client directly:

    client.chat.completions.create(model=..., messages=..., **preset("coding"))
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .errors import UsageError

__all__ = ["PRESETS", "Preset", "preset", "preset_names"]

_NO_THINKING = MappingProxyType({"type": "disabled"})


@dataclass(frozen=True)
class Preset:
    """One named recommendation: a temperature for a kind of task, thinking off (see module doc).
    `name` is what `preset()` and `--preset` take, `description` the kind of task."""

    name: str
    temperature: float
    description: str

    def kwargs(self) -> dict[str, Any]:
        """`create()` keyword arguments (fresh dicts: callers may change them)."""
        return {"temperature": self.temperature, "thinking": dict(_NO_THINKING)}


#: DeepSeek's recommended temperatures by task (docs/deepseek-api-notes.md#request-fields). Read-only.
PRESETS: MappingProxyType[str, Preset] = MappingProxyType({
    p.name: p
    for p in (
        Preset("coding", 0.0, "code generation and review: deterministic (DeepSeek: coding/math 0.0)"),
        Preset("math", 0.0, "mathematics: deterministic (DeepSeek: coding/math 0.0)"),
        Preset("data", 1.0, "data cleaning and analysis (DeepSeek: 1.0)"),
        Preset("conversation", 1.3, "general conversation (DeepSeek: 1.3)"),
        Preset("translation", 1.3, "translation (DeepSeek: 1.3)"),
        Preset("creative", 1.5, "creative writing and poetry (DeepSeek: 1.5)"),
    )
})


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    """The `Preset` called `name` (case-insensitive); UsageError listing the valid names."""
    key = name.strip().lower() if isinstance(name, str) else name
    found = PRESETS.get(key) if isinstance(key, str) else None
    if found is None:
        raise UsageError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return found


def preset(name: str) -> dict[str, Any]:
    """`create()` keyword arguments for the preset called `name` (case-insensitive; the names are
    the keys of `PRESETS`): `{"temperature": T, "thinking": {"type": "disabled"}}`. Unknown names
    raise UsageError listing the valid ones."""
    return get_preset(name).kwargs()
