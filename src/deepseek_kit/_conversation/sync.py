"""`SyncConversation`: `Conversation` for the synchronous `Client`.

Same design as `Client` itself (docs/architecture.md): one implementation. A SyncConversation holds
an async `Conversation` over the Client's async core and runs each request on the Client's private
loop thread; settings and history are read and written directly (plain attributes, no I/O).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from deepseek_kit._wire.errors import UsageError
from deepseek_kit._wire.types import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage

from .context import ContextPolicy
from .conversation import _DEFAULT, Conversation, ConversationStream, ConversationUsage

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Unpack

    from deepseek_kit._client.params import ConversationParams, LoopParams, TurnParams
    from deepseek_kit._client.sync_client import Client

    from .conversation import ToolLike, ToolRun  # the tool loop's types, through the one crossing
    from .summarize import Summarizer

__all__ = ["SyncConversation", "SyncConversationStream"]


class SyncConversationStream:
    """`for chunk in conv.stream(text)`, optionally inside `with`; see `ConversationStream`.
    `SyncConversation.stream()` builds it: `client` is the sync `Client` whose event-loop thread
    reads `inner`, the async `ConversationStream`."""

    def __init__(self, client: Client, inner: ConversationStream) -> None:
        self._client = client
        self._inner = inner

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        return self

    def __next__(self) -> ChatCompletionChunk:
        try:
            return self._client._run(self._inner.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def __enter__(self) -> SyncConversationStream:
        self._client._run(self._inner.__aenter__())
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading; the turn is committed only if its answer had finished."""
        self._client._run(self._inner.aclose())

    def until_done(self) -> ChatCompletion:
        """Read the rest and return the final completion (the turn is then committed)."""
        return self._client._run(self._inner.until_done())

    def get_final_completion(self) -> ChatCompletion:
        """The answer assembled so far (all of it once the stream is read)."""
        return self._inner.get_final_completion()

    @property
    def committed(self) -> bool:
        """True once the turn (question and complete answer) is in the conversation's history."""
        return self._inner.committed

    @property
    def content(self) -> str:
        """The answer text received so far."""
        return self._inner.content

    @property
    def reasoning(self) -> str:
        """The reasoning_content received so far (thinking mode)."""
        return self._inner.reasoning


class SyncConversation:
    """A conversation over a sync `Client`: `conv.send(text)`, `for chunk in conv.stream(text)`;
    everything else (settings, `history`, `messages()`, `usage`, `to_dict()`...) as on
    `Conversation`, whose keyword arguments it takes after `client` (a sync `Client`):
    `SyncConversation(client, system="Be brief.", model="deepseek-flash")`.

    The arguments, as `Conversation` takes them:

    - system: the system prompt (None: none). model: the model of every request.
    - policy: a context policy, a list of them, or None to send everything (default
      `SlidingWindow(keep=5)`). preset: a name from `PRESETS` (sets temperature, thinking off).
    - thinking: None (API default: on), True or False; set later, it overrides the preset's.
    - keep_reasoning: True sends earlier turns' reasoning_content even without tools.
    - summarizer: what `Summarize` policies use (default: a `ModelSummarizer` on this client).
    - currency: "CNY" or "USD" for `usage.cost`.
    - max_history: keep at most this many messages (oldest whole rounds dropped; None: no bound).
    - defaults: any other `chat.completions.create()` arguments for every request.

    Raises `UsageError` for an async client or a bad setting, `TypeError` for a misspelt keyword.

        with Client() as client:
            conv = SyncConversation(client, system="Be brief.")
            print(conv.send("Hello").choices[0].message.content, conv.usage.cost)"""

    def __init__(
        self,
        client: Client,
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
        inner = getattr(client, "async_client", None)
        if inner is None:
            raise UsageError("SyncConversation needs a sync Client; use Conversation with an AsyncClient")
        self._client = client
        self._conv = Conversation(inner, system=system, model=model, policy=policy, preset=preset,
                                  thinking=thinking, keep_reasoning=keep_reasoning, summarizer=summarizer,
                                  currency=currency, max_history=max_history, **defaults)

    @classmethod
    def _wrap(cls, client: Client, conv: Conversation) -> SyncConversation:
        self = cls.__new__(cls)
        self._client = client
        self._conv = conv
        return self

    @property
    def conversation(self) -> Conversation:
        """The async Conversation underneath."""
        return self._conv

    def send(self, content: Any = None, /, **kwargs: Unpack[TurnParams]) -> ChatCompletion:
        """Send `content` as the next user turn and return the answer; the turn joins the history when
        the request succeeds. `kwargs` override `create()` arguments for this request."""
        return self._client._run(self._conv.send(content, **kwargs))

    def stream(self, content: Any = None, /, **kwargs: Unpack[TurnParams]) -> SyncConversationStream:
        """Like `send()`, streaming: `with conv.stream(text) as s: for chunk in s: ...`. The turn joins
        the history when the answer is complete, not at all if the stream is left before that."""
        return SyncConversationStream(self._client, self._conv.stream(content, **kwargs))

    def run_tools(self, content: Any, tools: Iterable[ToolLike], *, max_steps: int = 8, stream: bool = False,
                  parallel: bool = True, tool_choice: Any = None,
                  on_thinking_conflict: Literal["raise", "disable_thinking"] = "raise",
                  on_max_steps: Literal["raise", "return"] = "raise", model: str | None = None,
                  **params: Unpack[LoopParams]) -> ToolRun:
        """The tool loop as one turn, as `Conversation.run_tools` (the whole run joins the history)."""
        return self._client._run(self._conv.run_tools(
            content, tools, max_steps=max_steps, stream=stream, parallel=parallel, tool_choice=tool_choice,
            on_thinking_conflict=on_thinking_conflict, on_max_steps=on_max_steps, model=model, **params))

    def messages(self, content: Any = None, **overrides: Unpack[TurnParams]) -> list[dict[str, Any]]:
        """The messages the next request would carry, after the context policy (`Conversation.messages`)."""
        return self._conv.messages(content, **overrides)

    def count_tokens(self, content: Any = None, **overrides: Unpack[TurnParams]) -> int:
        """Estimated prompt tokens of the next request (`Conversation.count_tokens`)."""
        return self._conv.count_tokens(content, **overrides)

    def append(self, message: Mapping[str, Any] | ChatCompletionMessage) -> None:
        """Add a message to the history as it is (`Conversation.append`)."""
        self._conv.append(message)

    def add_tool_result(self, tool_call_id: str, content: Any) -> None:
        """Append a `tool` message answering `tool_call_id` (non-string content is sent as JSON)."""
        self._conv.add_tool_result(tool_call_id, content)

    def clear(self) -> None:
        """Forget the history and the policies' state; keep the system prompt, settings and usage tallies."""
        self._conv.clear()

    def describe(self) -> str:
        """One line: model, thinking, preset, policy, turns."""
        return self._conv.describe()

    def request_kwargs(self, **overrides: Unpack[TurnParams]) -> dict[str, Any]:
        """The `create()` arguments of the next request (preset, defaults, thinking, `overrides`)."""
        return self._conv.request_kwargs(**overrides)

    def fork(self) -> SyncConversation:
        """An independent copy (history, settings, policy state) on the same client, tallies at zero."""
        return SyncConversation._wrap(self._client, self._conv.fork())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible data (settings, history, policy state, usage) for `from_dict`."""
        return self._conv.to_dict()

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        client: Client,
        *,
        policy: ContextPolicy | Sequence[ContextPolicy] | None = _DEFAULT,
        summarizer: Summarizer | None = None,
    ) -> SyncConversation:
        """Rebuild a conversation saved with `to_dict()`, on the sync `client` (policies and the
        summarizer are code: pass them again)."""
        conv = Conversation.from_dict(data, client.async_client, policy=policy, summarizer=summarizer)
        return cls._wrap(client, conv)

    def __len__(self) -> int:
        return len(self._conv)

    # Settings and state: straight through to the async conversation.

    @property
    def model(self) -> str:
        """The model of the next request (assignable)."""
        return self._conv.model

    @model.setter
    def model(self, value: str) -> None:
        self._conv.model = value

    @property
    def system(self) -> str | None:
        """The system prompt sent first in every request, None for none (assignable)."""
        return self._conv.system

    @system.setter
    def system(self, value: str | None) -> None:
        self._conv.system = value

    @property
    def thinking(self) -> bool | None:
        """True/False turns thinking mode on/off, None leaves the API default (assignable)."""
        return self._conv.thinking

    @thinking.setter
    def thinking(self, value: Any) -> None:
        self._conv.thinking = value

    @property
    def preset(self) -> str | None:
        """The active preset's name, None for none; assigning one applies its settings."""
        return self._conv.preset

    @preset.setter
    def preset(self, name: str | None) -> None:
        self._conv.preset = name

    @property
    def policy(self) -> ContextPolicy:
        """The context policy deciding which messages are sent (assignable, as on `Conversation`)."""
        return self._conv.policy

    @policy.setter
    def policy(self, value: ContextPolicy) -> None:
        self._conv.policy = value

    @property
    def defaults(self) -> dict[str, Any]:
        """`create()` arguments sent with every request of this conversation (a dict to edit)."""
        return self._conv.defaults

    @property
    def history(self) -> list[dict[str, Any]]:
        """The committed turns so far, without the system prompt (a copy: use `append()`/`clear()`)."""
        return self._conv.history

    @property
    def last(self) -> ChatCompletion | None:
        """The latest answer, None before the first one."""
        return self._conv.last

    @property
    def last_reasoning(self) -> str | None:
        """The reasoning_content of the latest answer (thinking mode)."""
        return self._conv.last_reasoning

    @property
    def usage(self) -> ConversationUsage:
        """Tokens, cache hits and cost of every request so far (`ConversationUsage`)."""
        return self._conv.usage
