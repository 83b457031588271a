"""The cache key and the caching rule (see `_steps/cache/step.py` and docs/cache.md for the why).

`canonical_body` turns a decoded request body into the form whose sorted-key JSON is hashed:
`stream`/`stream_options` dropped (they change the framing, not the answer), and, top level only,
the defaults docs/deepseek-api-notes.md#request-fields documents made explicit: null == omitted; `thinking`
omitted is `{"type": "enabled"}`; `temperature` 1, `top_p` 1, penalties 0, `logprobs` false,
`response_format` text and the default `tool_choice` are dropped; integral floats become integers.
Nothing else is normalised: a needless miss costs a call, a wrong hit returns the wrong answer.

`is_reproducible` is the rule. Thinking mode ignores `temperature` (docs/deepseek-api-notes.md#thinking-mode),
so the default rule needs both a non-thinking request (thinking disabled, or FIM) and temperature 0.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

__all__ = ["CacheRuleFields", "allows", "canonical_body", "fingerprint", "is_reproducible",
           "rule_fields_decoder"]

_VERSION = b"dsk-cache-v1\n"
_CHAT_PATH = "/chat/completions"
_FIM_PATH = "/completions"  # under /beta only

# Documented defaults (docs/deepseek-api-notes.md#request-fields):
# sending one of these is the same as omitting it.
_CHAT_DEFAULTS: dict[str, Any] = {
    "temperature": 1, "top_p": 1, "frequency_penalty": 0, "presence_penalty": 0, "logprobs": False,
    "response_format": {"type": "text"},
}
_FIM_DEFAULTS: dict[str, Any] = {"temperature": 1, "top_p": 1, "frequency_penalty": 0, "presence_penalty": 0}
_THINKING_ON = {"type": "enabled"}


def canonical_body(body: dict[str, Any], *, fim: bool = False) -> dict[str, Any]:
    """The request body with stream flags dropped and documented defaults normalised (module
    docstring); encode it with sorted keys to get the canonical JSON."""
    defaults = _FIM_DEFAULTS if fim else _CHAT_DEFAULTS
    out: dict[str, Any] = {}
    for k, v in body.items():
        if v is None or k == "stream" or k == "stream_options":
            continue
        if type(v) is float and v.is_integer():
            v = int(v)
        d = defaults.get(k, out)  # `out` as a sentinel nothing equals
        if d is not out and v == d and isinstance(v, bool) == isinstance(d, bool):
            continue
        out[k] = v
    if not fim:
        if "thinking" not in out:
            out["thinking"] = _THINKING_ON
        if "tool_choice" in out and out["tool_choice"] == ("auto" if out.get("tools") else "none"):
            del out["tool_choice"]
    return out


def is_reproducible(canonical: dict[str, Any], when: str = "reproducible", *, fim: bool = False) -> bool:
    """Whether the rule `when` caches this (canonical) request; see the module docstring."""
    return allows(canonical.get("thinking"), canonical.get("temperature", 1), when, fim)


def allows(thinking: Any, temperature: Any, when: str, fim: bool) -> bool:
    if when == "always":
        return True
    if when == "never":
        return False
    non_thinking = fim or (isinstance(thinking, dict) and thinking.get("type") == "disabled")
    if when == "non_thinking":
        return non_thinking
    return non_thinking and temperature == 0 and not isinstance(temperature, bool)


class CacheRuleFields(msgspec.Struct):
    """The two fields the rule reads. Decoding only these lets msgspec skip the messages without
    building them, so a request the rule does not cache costs little even with a long history."""

    thinking: Any = None
    temperature: Any = 1


rule_fields_decoder = msgspec.json.Decoder(CacheRuleFields)


def fingerprint(canonical: dict[str, Any], *, path: str = _CHAT_PATH, beta: bool = False,
                namespace: str = "", vary: str = "") -> str:
    """The cache key of a canonical body (hex SHA-256)."""
    h = hashlib.sha256(_VERSION)
    h.update(f"{namespace}\n{'/beta' if beta else ''}{path}\n{vary}\n".encode())
    h.update(msgspec.json.encode(canonical, order="sorted"))
    return h.hexdigest()
