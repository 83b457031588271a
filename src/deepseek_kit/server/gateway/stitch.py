"""Stream resumption in the gateway: a chat stream that breaks after its first token is continued
through DeepSeek's chat prefix completion and stitched into the caller's same stream.

The library's rules apply (`deepseek_kit._client.resume`, docs/routing-and-limits.md): only
upstreams that implement prefix completion may continue an answer (`prefix_completion = true` on
the `[[upstream]]`, or DeepSeek's own host), never a break inside a tool call, and the continuation
is held back until `ContinuationCheck` accepts that it continues rather than restarts the answer;
a restart is dropped and the caller gets the error event. The payloads of the stream are kept as
references (nothing is decoded unless it breaks), up to `MAX_KEPT_BYTES`; past that the stream is
no longer resumable. The continuation's chunks are forwarded as its upstream sent them (their
`id` is the continuation's); its final usage covers the continuation, and the gateway charges the
broken piece on top from its estimate (input plus one token per relayed chunk).
"""

from __future__ import annotations

from typing import Any

import msgspec

from deepseek_kit._client.resume import ContinuationCheck
from deepseek_kit._wire.accumulate import ChunkAccumulator
from deepseek_kit._wire.types import ChatCompletion, chunk_decoder

__all__ = ["MAX_KEPT_BYTES", "Stitcher"]

#: Bytes of payload kept per stream for a possible resumption (a long answer beyond it is not
#: resumed, so 500 long streams stay within memory).
MAX_KEPT_BYTES = 4 << 20
#: Characters of the delivered answer a continuation must not repeat (the library's default).
MATCH_CHARS = 12
#: Continuation chunks held at most while they carry no text to compare.
HOLD_MAX_CHUNKS = 8


class Stitcher:
    __slots__ = ("doc", "names", "payloads", "size")

    def __init__(self, doc: dict[str, Any], names: list[str]) -> None:
        self.doc = doc
        self.names = names  # upstreams that may continue an answer
        self.payloads: list[bytes] | None = []
        self.size = 0

    def keep(self, payload: bytes) -> None:
        if self.payloads is not None:
            self.size += len(payload)
            if self.size > MAX_KEPT_BYTES:
                self.payloads = None
            else:
                self.payloads.append(payload)

    def partial(self) -> ChatCompletion | None:
        if self.payloads is None:
            return None
        acc = ChunkAccumulator()
        try:
            for p in self.payloads:
                acc.add(chunk_decoder.decode(p))
        except (msgspec.DecodeError, ValueError, TypeError):
            return None
        return acc.completion()

    def body(self, partial: ChatCompletion) -> bytes | None:
        """The continuation request, or None when this answer cannot be continued."""
        if len(partial.choices) != 1:
            return None
        msg = partial.choices[0].message
        if msg.tool_calls:
            return None  # prefix completion continues text, not half a tool call
        messages = list(self.doc.get("messages") or [])
        content = msg.content or ""
        last = messages[-1] if messages else None
        if isinstance(last, dict) and last.get("role") == "assistant" and last.get("prefix"):
            content = str(last.get("content") or "") + content  # the caller's own prefix goes first
            messages = messages[:-1]
        prefix: dict[str, Any] = {"role": "assistant", "content": content, "prefix": True}
        if msg.reasoning_content is not None:
            prefix["reasoning_content"] = msg.reasoning_content
        return msgspec.json.encode({**self.doc, "messages": [*messages, prefix], "stream": True})

    @staticmethod
    def check(partial: ChatCompletion) -> ContinuationCheck:
        return ContinuationCheck(partial, MATCH_CHARS)
