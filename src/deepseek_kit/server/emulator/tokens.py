"""A deterministic approximate tokenizer and the prompt rendering the emulator counts tokens on.

DeepSeek's guidance is "1 English character ≈ 0.3 token, 1 Chinese character ≈ 0.6 token"
(https://api-docs.deepseek.com/quick_start/token_usage). One regular expression gets close to that at C
speed: Latin words are cut
into pieces of up to 5 letters (with their leading space), digits in groups of 3, CJK characters
in pairs, punctuation in pairs, whitespace in runs. Chat-template markers such as `<|user|>` are
single tokens and never merge with neighbours, so the tokens of a concatenation of rendered
messages are the concatenation of their tokens - which the prefix-cache simulation relies on.

The emulator's generated text only uses words of at most 5 letters, so re-tokenizing an answer
gives back exactly the tokens it was generated from, and `usage` agrees with the text.

Separate from the client's estimate (`deepseek_kit._wire.tokens.estimate_tokens`) ON PURPOSE: the
emulator stands in for DeepSeek, and a stand-in that shared the client's counting would share its
bugs (a client test could then never catch a wrong estimate). It produces real token sequences for
the cache simulation, which a ratio cannot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

__all__ = ["MAX_TOKEN_CHARS", "count_tokens", "render_message", "render_prompt", "render_tools", "tokenize"]

#: No token is longer than this many characters (a marker `<|...|>` of at most 16 letters, or a
#: run of 16 whitespace characters), so a text of N characters has at least N / 20 tokens: a prompt
#: can be proven over the context length by its size alone, before tokenizing it.
MAX_TOKEN_CHARS = 20

_TOKEN_RE = re.compile(
    r"<\|[a-z_]{1,16}\|>"
    r"|[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]{1,2}"
    r"| ?[A-Za-z]{1,5}"
    r"| ?[0-9]{1,3}"
    r"| ?[^\sA-Za-z0-9]{1,2}"
    r"|\s{1,16}(?!\S)"
    r"|\s"
)

_findall = _TOKEN_RE.findall


def tokenize(text: str) -> list[str]:
    """The token strings of `text`; `"".join(tokenize(t)) == t` always holds."""
    return _findall(text)


def count_tokens(text: str) -> int:
    return len(_findall(text))


def _text_of(content: Any) -> str:
    """The text of a message `content`: a string, or an array of parts (images become one marker;
    we do not model image token cost)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    out: list[str] = []
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, Mapping):
                continue
            kind = part.get("type")
            if kind == "text":
                out.append(str(part.get("text", "")))
            elif kind == "image_url":
                out.append("<|image|>")
            elif kind == "file":
                out.append("<|file|>" + str(part.get("filename") or part.get("file_id") or ""))
    return "".join(out)


def render_message(msg: Mapping[str, Any]) -> str:
    """One message in the emulator's chat template. An assistant turn with tool calls keeps its
    `reasoning_content` (it joins the context,
    docs/deepseek-api-notes.md#thinking-mode); other turns drop it, as DeepSeek does."""
    role = str(msg.get("role", "user"))
    parts = ["<|", role, "|>"]
    if role == "assistant":
        calls = msg.get("tool_calls") or []
        reasoning = msg.get("reasoning_content")
        if calls and isinstance(reasoning, str) and reasoning:
            parts += ["<|think|>", reasoning]
        parts.append(_text_of(msg.get("content")))
        for call in calls:
            fn = (call.get("function") or {}) if isinstance(call, Mapping) else {}
            parts += ["<|call|>", str(fn.get("name", "")), "<|args|>", str(fn.get("arguments", ""))]
    else:
        parts.append(_text_of(msg.get("content")))
    parts.append("<|end|>")
    return "".join(parts)


def render_tools(tools: Iterable[Mapping[str, Any]] | None) -> str:
    """Tool definitions come first in the prompt, so changing them
    invalidates the cache (docs/deepseek-api-notes.md#context-caching)."""
    if not tools:
        return ""
    return "<|tools|>" + msgspec.json.encode(list(tools)).decode() + "<|end|>"


def render_prompt(messages: Iterable[Mapping[str, Any]], tools: Iterable[Mapping[str, Any]] | None) -> str:
    return render_tools(tools) + "".join(render_message(m) for m in messages)
