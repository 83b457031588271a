"""Assemble streamed chunks into one ChatCompletion (what `stream.get_final_completion()` returns).

Rules (docs/deepseek-api-notes.md#streaming-and-keep-alives):
- content and reasoning_content are concatenated per choice index;
- tool calls are assembled per `index`: the first fragment carries id/type/name, later ones only an
  argument piece; a later fragment's null/empty id or name never overwrites an earlier one
  (a bug seen in clients, docs/deepseek-api-notes.md#tool-calls), and some servers repeat the name on every
  fragment, so a name is only taken when none is known yet;
- logprobs entries are appended per choice;
- usage may ride on the finish chunk or on a trailing `choices: []` chunk: the last non-null wins.

Dialects of private deployments (docs/dialects.md), each handled where DeepSeek's own chunks pay at
most one attribute test:
- `delta.reasoning` (vLLM >= 0.11, Ollama) is folded into `reasoning_content` on the chunk itself,
  so the caller iterating the stream sees the DeepSeek field too; when a server sends both with the
  same text (vLLM's transition releases, vllm-mlx) `reasoning_content` wins and nothing is doubled;
- a fragment that opens a call (it has a name) with an id different from the call already at its
  index is a new call: Ollama sends every call of a turn at index 0 (ollama#15457), older vLLM did
  too; later argument fragments of that index then go to the new call;
- `index: null` (or, via the default, a missing index) is placed the same way;
- a call that never received an id gets one (`call_` + 24 hex digits), fixed once per call.
"""

from __future__ import annotations

import secrets

from msgspec import UNSET

from .types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceLogprobs,
    Function,
    TokenLogprob,
    ToolCall,
    Usage,
)

__all__ = ["ChunkAccumulator"]


class _ToolState:
    __slots__ = ("args", "id", "name", "type")

    def __init__(self) -> None:
        self.id = ""
        self.type = "function"
        self.name = ""
        self.args: list[str] = []


class _ChoiceState:
    __slots__ = ("alias", "content", "finish_reason", "lp_content", "lp_reasoning", "reasoning", "role",
                 "tools")

    def __init__(self) -> None:
        self.role = "assistant"
        self.content: list[str] = []
        self.reasoning: list[str] | None = None
        self.tools: dict[int, _ToolState] | None = None
        self.alias: dict[int, int] | None = None  # wire index -> slot, once indexes were reused
        self.lp_content: list[TokenLogprob] | None = None
        self.lp_reasoning: list[TokenLogprob] | None = None
        self.finish_reason: str | None = None


class ChunkAccumulator:
    """Feed every chunk to `add()`; `completion()` builds the assembled ChatCompletion at any time
    (also mid-stream, for the partial answer attached to a StreamError)."""

    __slots__ = ("_choices", "created", "finished", "id", "model", "system_fingerprint", "usage")

    def __init__(self) -> None:
        self._choices: dict[int, _ChoiceState] = {}
        self.id = ""
        self.created = 0
        self.model = ""
        self.system_fingerprint: str | None = None
        self.usage: Usage | None = None
        self.finished = False

    def add(self, chunk: ChatCompletionChunk) -> bool:
        """Accumulate one chunk; returns True when it carried a finish_reason."""
        if not self.id:
            self.id = chunk.id
            self.created = chunk.created
            self.model = chunk.model
            self.system_fingerprint = chunk.system_fingerprint
        if chunk.usage is not None:
            self.usage = chunk.usage
        finished = False
        for ch in chunk.choices:
            st = self._choices.get(ch.index)
            if st is None:
                st = self._choices[ch.index] = _ChoiceState()
            d = ch.delta
            if d.content:
                st.content.append(d.content)
            rc = d.reasoning_content
            if d.reasoning is not UNSET:  # another server's name for it (docs/dialects.md)
                if rc is None and d.reasoning is not None:
                    rc = d.reasoning_content = d.reasoning
                d.reasoning = UNSET
            if rc is not None:
                if st.reasoning is None:
                    st.reasoning = []
                if rc:
                    st.reasoning.append(rc)
            if d.tool_calls:
                self._add_tools(st, d.tool_calls)
            if d.role:
                st.role = d.role
            lp = ch.logprobs
            if lp is not None:
                if lp.content:
                    if st.lp_content is None:
                        st.lp_content = []
                    st.lp_content.extend(lp.content)
                if lp.reasoning_content:
                    if st.lp_reasoning is None:
                        st.lp_reasoning = []
                    st.lp_reasoning.extend(lp.reasoning_content)
            if ch.finish_reason is not None:
                st.finish_reason = ch.finish_reason
                finished = True
        if finished and all(s.finish_reason is not None for s in self._choices.values()):
            self.finished = True
        return finished

    @staticmethod
    def _add_tools(st: _ChoiceState, fragments: list) -> None:  # type: ignore[type-arg]
        tools = st.tools
        if tools is None:
            tools = st.tools = {}
        for frag in fragments:
            wire = frag.index
            if wire is None:
                wire = -1  # no index: a running slot after the others, split by ids like a reused index
            key = wire if st.alias is None else st.alias.get(wire, wire)
            if key == -1:
                key = max(tools) + 1 if tools else 0
                if st.alias is None:
                    st.alias = {}
                st.alias[-1] = key
            t = tools.get(key)
            fn = frag.function
            if t is None:
                t = tools[key] = _ToolState()
            elif (frag.id and t.id and frag.id != t.id and fn is not None and fn.name):
                # A new call at an index already in use (Ollama, older vLLM): give it the next slot.
                key = max(tools) + 1
                t = tools[key] = _ToolState()
                if st.alias is None:
                    st.alias = {}
                st.alias[wire] = key
            if frag.id and not t.id:
                t.id = frag.id
            if frag.type:
                t.type = frag.type
            if fn is not None:
                if fn.name and not t.name:
                    t.name = fn.name
                if fn.arguments:
                    t.args.append(fn.arguments)

    @property
    def text(self) -> str:
        """Content of choice 0 so far."""
        st = self._choices.get(0)
        return "".join(st.content) if st else ""

    def in_tool_call(self) -> bool:
        """True when any choice has started a tool call (its arguments may be incomplete)."""
        return any(st.tools for st in self._choices.values())

    def completion(self) -> ChatCompletion:
        choices = []
        for idx in sorted(self._choices):
            st = self._choices[idx]
            tool_calls = None
            if st.tools:
                tool_calls = []
                for _, t in sorted(st.tools.items()):
                    if not t.id:  # a server that sends no ids: the caller still needs one to answer
                        t.id = "call_" + secrets.token_hex(12)
                    tool_calls.append(ToolCall(id=t.id, type=t.type,
                                               function=Function(name=t.name, arguments="".join(t.args))))
            content: str | None = "".join(st.content)
            if not content and tool_calls:
                content = None if not st.content else content
            msg = ChatCompletionMessage(
                role=st.role,
                content=content,
                reasoning_content="".join(st.reasoning) if st.reasoning is not None else None,
                tool_calls=tool_calls,
            )
            lp = None
            if st.lp_content is not None or st.lp_reasoning is not None:
                lp = ChoiceLogprobs(content=st.lp_content, reasoning_content=st.lp_reasoning)
            choices.append(Choice(index=idx, message=msg, logprobs=lp, finish_reason=st.finish_reason))
        return ChatCompletion(
            id=self.id, object="chat.completion", created=self.created, model=self.model,
            system_fingerprint=self.system_fingerprint, choices=choices, usage=self.usage,
        )
