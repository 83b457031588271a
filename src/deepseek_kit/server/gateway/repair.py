"""Reasoning memory: put back the `reasoning_content` a caller dropped from a thinking-mode tool turn.

In thinking mode with tools, DeepSeek requires every earlier assistant turn that made tool calls to
carry its `reasoning_content` back, and answers 400 otherwise (docs/deepseek-api-notes.md, "reasoning
content"; https://api-docs.deepseek.com/guides/thinking_mode). Many frameworks drop the field. The
gateway remembers, for each tool call id it relayed, the reasoning of the answer that made the call,
and fills the field in when a later request sends that turn without it.

Bounds: at most `max_entries` tool call ids and `max_bytes` of reasoning text (UTF-8 length), least
recently used evicted first; in memory, per worker process (a turn relayed by another worker, or
before a restart, is not repaired and reaches the upstream as the caller sent it).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec

__all__ = ["ReasoningMemory", "StreamRecorder"]


class _Call(msgspec.Struct):
    index: int = 0
    id: str | None = None


class _Part(msgspec.Struct):
    reasoning_content: str | None = None
    reasoning: str | None = None  # vLLM >= 0.11 / Ollama name (docs/dialects.md)
    tool_calls: list[_Call] | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    delta: _Part | None = None
    message: _Part | None = None


class _Doc(msgspec.Struct):
    choices: list[_Choice] = []


_decoder = msgspec.json.Decoder(_Doc)


class ReasoningMemory:
    """tool call id -> the reasoning of the answer that made the call (an LRU, see module doc)."""

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 64 << 20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0
        self.repaired = 0  # assistant turns filled in since start

    def __len__(self) -> int:
        return len(self._items)

    def remember(self, call_id: str, reasoning: str) -> None:
        size = len(reasoning)
        if size > self.max_bytes:
            return
        old = self._items.pop(call_id, None)
        if old is not None:
            self._bytes -= len(old)
        self._items[call_id] = reasoning
        self._bytes += size
        while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
            _, gone = self._items.popitem(last=False)
            self._bytes -= len(gone)

    def recall(self, call_id: str) -> str | None:
        value = self._items.get(call_id)
        if value is not None:
            self._items.move_to_end(call_id)
        return value

    def record_body(self, body: bytes) -> None:
        """Remember the tool calls of a non-stream answer (cheap when it made none)."""
        if b'"tool_calls"' not in body:
            return
        try:
            doc = _decoder.decode(body)
        except msgspec.DecodeError:
            return
        for ch in doc.choices:
            m = ch.message
            if m is None or not m.tool_calls:
                continue
            text = m.reasoning_content if m.reasoning_content is not None else m.reasoning
            if text:
                for call in m.tool_calls:
                    if call.id:
                        self.remember(call.id, text)

    def repair(self, doc: dict[str, Any]) -> int:
        """Fill `reasoning_content` into assistant tool-call turns that lack it, in place; returns
        how many turns were filled."""
        messages = doc.get("messages")
        if not isinstance(messages, list):
            return 0
        n = 0
        for m in messages:
            if (not isinstance(m, dict) or m.get("role") != "assistant" or m.get("reasoning_content")
                    is not None):
                continue
            calls = m.get("tool_calls")
            if not isinstance(calls, list):
                continue
            for call in calls:
                cid = call.get("id") if isinstance(call, dict) else None
                text = self.recall(cid) if isinstance(cid, str) else None
                if text is not None:
                    m["reasoning_content"] = text
                    n += 1
                    break
        self.repaired += n
        return n


class StreamRecorder:
    """Collects reasoning and tool call ids from a stream's chunks (only chunks that may carry
    either are decoded), then hands them to the memory when the stream ends."""

    __slots__ = ("_calls", "_memory", "_reasoning")

    def __init__(self, memory: ReasoningMemory) -> None:
        self._memory = memory
        self._reasoning: dict[int, list[str]] = {}
        self._calls: dict[int, list[str]] = {}

    def feed(self, payload: bytes) -> None:
        if b'"reasoning' not in payload and b'"tool_calls"' not in payload:
            return
        try:
            doc = _decoder.decode(payload)
        except msgspec.DecodeError:
            return
        for ch in doc.choices:
            d = ch.delta
            if d is None:
                continue
            text = d.reasoning_content if d.reasoning_content is not None else d.reasoning
            if text:
                self._reasoning.setdefault(ch.index, []).append(text)
            if d.tool_calls:
                for call in d.tool_calls:
                    if call.id:
                        self._calls.setdefault(ch.index, []).append(call.id)

    def commit(self) -> None:
        for index, ids in self._calls.items():
            text = "".join(self._reasoning.get(index, ()))
            if text:
                for cid in ids:
                    self._memory.remember(cid, text)
