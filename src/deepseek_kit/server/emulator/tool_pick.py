"""Which tools an emulated answer calls: deterministic, and easy to steer from a test.

Rules, in order (docs/emulator.md, "Tool calls"):

1. `tool_choice` "none" (or a prefix-completion turn): no call; a named `tool_choice`: that tool.
2. The last non-system turn is a tool result (and `tool_choice` is not "required"): no call, the
   model answers in text.
3. Tools whose names appear in the last user message: those, in the order they appear there.
4. Tools that fit the message: a word of the tool's name (split at `_`, `-` and camelCase; generic
   verbs such as `get` left out) or of its description (words of four letters or more, common
   words left out) appears in the message, plurals folded. DeepSeek calls independent tools in
   parallel (docs/deepseek-api-notes.md#tool-calls), so all of them are called in one turn, in
   the order of `tools`.
5. Otherwise the first tool.

Parallel calls (several tools in one turn) are on by default; `EmulatorConfig.parallel_tool_calls
= False` turns them off server-wide, and a request's `parallel_tool_calls` field (true/false, the
OpenAI name; DeepSeek ignores unknown fields) decides for that request. Off, rules 3 and 4 give the
first match only. At most 16 calls per turn.
"""

from __future__ import annotations

import re
from typing import Any

from .validate import ChatRequest

__all__ = ["MAX_PARALLEL", "pick_tools"]

MAX_PARALLEL = 16
_WORD_RE = re.compile(r"[A-Za-z][a-z]*|[0-9]+")
# Words that say nothing about what a tool is for: a tool does not fit a message for sharing them.
_GENERIC = frozenset({
    "get", "set", "put", "run", "do", "make", "fetch", "find", "list", "call", "use", "the", "a", "an",
    "to", "of", "for", "and", "or", "by", "from", "with", "into", "in", "on", "at", "is", "it", "new",
    "tool", "function", "value", "data", "info", "some", "this", "that", "these", "those", "given",
    "return", "returns", "current", "about", "which", "what", "when", "where", "will", "would",
    "should", "could", "there", "their", "them", "they", "then", "than", "your", "yours", "have",
    "item", "items", "thing", "things", "more", "most", "many", "much", "only", "also", "each",
})


def _fold(word: str) -> str:
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def _words(text: str) -> set[str]:
    return {_fold(w) for w in _WORD_RE.findall(text)}


def _tool_words(fn: dict[str, Any]) -> set[str]:
    name = {w for w in _words(fn["name"]) if len(w) >= 3}
    desc = fn.get("description")
    about = {w for w in _words(desc) if len(w) >= 4} if isinstance(desc, str) else set()
    return (name | about) - _GENERIC


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def pick_tools(req: ChatRequest, parallel: bool) -> list[dict[str, Any]]:
    """The tools this answer calls (module docstring); `parallel` False gives at most one."""
    if not req.tools or req.tool_choice == "none" or req.prefix:
        return []
    if req.tool_choice == "named":
        return [t for t in req.tools if t["function"]["name"] == req.tool_name][:1]
    last = next((m for m in reversed(req.messages) if m["role"] != "system"), req.messages[-1])
    if last["role"] == "tool" and req.tool_choice != "required":
        return []  # tool results are in: answer in text
    keep = MAX_PARALLEL if parallel else 1
    text = _text(last.get("content"))
    named = sorted((text.find(t["function"]["name"]), i) for i, t in enumerate(req.tools)
                   if t["function"]["name"] in text)
    if named:
        return [req.tools[i] for _, i in named[:keep]]
    said = _words(text)
    fits = [t for t in req.tools if _tool_words(t["function"]) & said]
    return fits[:keep] or [req.tools[0]]
