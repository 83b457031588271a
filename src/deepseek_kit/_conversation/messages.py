"""Values a conversation takes from its caller: messages as independent plain dicts with a checked
role, and the many spellings of the thinking switch."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import msgspec

from deepseek_kit._wire.errors import UsageError
from deepseek_kit._wire.types import ChatCompletionMessage

__all__ = ["ROLES", "checked_message", "plain_message", "thinking_switch"]

ROLES = frozenset({"system", "user", "assistant", "tool"})


def thinking_switch(value: Any) -> bool | None:
    """None (the API default, thinking on for current models, docs/deepseek-api-notes.md#thinking-mode), or
    on/off from a bool, "enabled"/"disabled", "on"/"off" or `{"type": ...}`."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        value = value.get("type")
    if isinstance(value, str) and value.lower() in ("enabled", "on", "true", "yes"):
        return True
    if isinstance(value, str) and value.lower() in ("disabled", "off", "false", "no"):
        return False
    raise UsageError(f"thinking must be True, False, 'enabled', 'disabled' or None, not {value!r}")


def plain_message(m: Any) -> dict[str, Any]:
    """A message as an independent plain dict (structs converted, nested values copied)."""
    if isinstance(m, ChatCompletionMessage):
        return m.to_param()
    if isinstance(m, msgspec.Struct):
        out: dict[str, Any] = msgspec.to_builtins(m)
        return out
    if not isinstance(m, Mapping):
        raise UsageError(f"a message must be a dict like {{'role': 'user', 'content': '...'}}, not {m!r}")
    return copy.deepcopy(dict(m))


def checked_message(m: Any) -> dict[str, Any]:
    """`plain_message(m)`, refused with a `UsageError` unless its role is one DeepSeek knows."""
    out = plain_message(m)
    if out.get("role") not in ROLES:
        raise UsageError(f"message role must be one of {sorted(ROLES)}, got {out.get('role')!r}")
    return out
