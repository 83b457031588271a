"""The tool loop: ask the model, run the tools it calls, feed the results back, until it answers.

    async for event in run_tools(client, messages, [get_weather, add], model="deepseek-flash"):
        match event:
            case ContentDelta(text=text): print(text, end="")
            case ToolResult(name=name, content=content): print(f"[{name} -> {content}]")
            case Final(completion=c): ...

`run_tools` is an async generator of typed events, in this order per step (one model call):
`ReasoningDelta`* `ContentDelta`* (streamed; one of each with the whole text when stream=False),
then for each tool call `ToolCallStarted`, and `ToolResult` or `ToolError` as each finishes, then
`StepFinished`; the last step is followed by `Final`. `await run(...)` runs it to the end and
returns a `ToolRun` (final completion, full message list, summed usage and cost); `run_tools_sync`
and `run_sync` do the same with the sync `Client`. `StepFinished` and `Final` carry the usage and
cost of the run so far (the sum over its model calls; each call priced when its answer arrived,
peak or off-peak, in `currency`).

DeepSeek rules it follows (docs/deepseek-api-notes.md):
- every assistant turn goes back into the history as `message.to_param()`, `reasoning_content`
  verbatim: thinking mode with tools returns 400 without it (docs/deepseek-api-notes.md#thinking-mode);
- several tool calls in one turn run concurrently (async tools gathered, sync tools in threads),
  and their `tool` messages follow in call order; a result is sent as text or JSON, "(no output)"
  when empty, as DeepSeek's harness does (docs/deepseek-api-notes.md#request-fields);
- what goes wrong in a call is fed back as its result so the model can recover: invalid JSON
  arguments (one brace off in 0.04% of calls, docs/deepseek-api-notes.md#tool-calls), arguments that do not
  validate, an unknown tool name, an exception (its type and message);
- thinking mode rejects `tool_choice: "required"` and a named tool
  with 400 (docs/deepseek-api-notes.md#thinking-mode): the loop
  raises UsageError before sending, or with `on_thinking_conflict="disable_thinking"` turns
  thinking off for the whole run (a later thinking call would need `reasoning_content` on the
  tool-call turn that had none, docs/deepseek-api-notes.md#thinking-mode). A forcing tool_choice applies to
  the first step only; later steps use "auto", or the model could never stop calling tools.
- at `max_steps` model calls the last step's tools have run (the history is complete, so it can
  be continued) and the loop raises `MaxStepsExceeded`, or yields a `Final` with
  `stopped="max_steps"` when `on_max_steps="return"`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from deepseek_kit._client.params import ALL_PARAMS, Message, check_params
from deepseek_kit._client.resources import NOT_GIVEN
from deepseek_kit._client.resume import sum_usage
from deepseek_kit._wire import pricing as _pricing
from deepseek_kit._wire.errors import DeepSeekError, UsageError
from deepseek_kit._wire.types import ChatCompletion, ToolCall, Usage

from .tool import Tool, ToolArgumentsError, as_tool, encode_result

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from deepseek_kit._client.client import AsyncClient
    from deepseek_kit._client.params import LoopParams
    from deepseek_kit._client.sync_client import Client

__all__ = [
    "ContentDelta",
    "Event",
    "Final",
    "MaxStepsExceeded",
    "ReasoningDelta",
    "StepFinished",
    "ToolCallStarted",
    "ToolError",
    "ToolResult",
    "ToolRun",
    "run",
    "run_sync",
    "run_tools",
    "run_tools_sync",
]


class ReasoningDelta(msgspec.Struct, frozen=True):
    """A piece of the model's reasoning (thinking mode) in step `step` (1-based), as it streams;
    with `stream=False`, one event holding the whole reasoning of the step. `text` is the piece."""

    step: int
    text: str


class ContentDelta(msgspec.Struct, frozen=True):
    """A piece of the answer text in step `step` (1-based), as it streams; with `stream=False`, one
    event holding the whole text of the step."""

    step: int
    text: str


class ToolCallStarted(msgspec.Struct, frozen=True):
    """A call is about to run: tool `name`, asked for in step `step` (1-based) with the id
    `call_id`; `arguments` is the raw JSON text the model sent."""

    step: int
    call_id: str
    name: str
    arguments: str


class ToolResult(msgspec.Struct, frozen=True):
    """A call returned `value`; `content` is what the model receives. `step`, `call_id` and `name`
    are those of its `ToolCallStarted`."""

    step: int
    call_id: str
    name: str
    value: Any
    content: str


class ToolError(msgspec.Struct, frozen=True):
    """A call failed; `kind` is "arguments" (invalid JSON or validation), "unknown_tool" or
    "exception". `error` is the exception (a `ToolArgumentsError` for bad arguments), `content`
    the text fed back to the model in place of a result. `step`, `call_id` and `name` are those of
    its `ToolCallStarted`."""

    step: int
    call_id: str
    name: str
    kind: str
    error: BaseException
    content: str


class StepFinished(msgspec.Struct, frozen=True):
    """One model call and the tools it called are done: step `step` (1-based), its answer
    `completion`, and how many tool calls it made (`tool_calls`, 0 for the final answer). `usage`
    and `cost` are the run's so far (every step up to this one, summed; `cost` a `Decimal` in
    `currency`)."""

    step: int
    completion: ChatCompletion
    tool_calls: int
    usage: Usage | None = None
    cost: Decimal = Decimal(0)
    currency: str = "CNY"


class Final(msgspec.Struct, frozen=True):
    """The end: `completion` is the last model answer, `messages` the whole history (input,
    assistant turns with their reasoning_content, tool results). `stopped` is "answer" or
    "max_steps". `usage` and `cost` are the whole run's (all steps summed; `cost` a `Decimal`
    in `currency`)."""

    completion: ChatCompletion
    messages: list[Any]
    steps: int
    usage: Usage | None
    stopped: str = "answer"
    cost: Decimal = Decimal(0)
    currency: str = "CNY"


Event = ReasoningDelta | ContentDelta | ToolCallStarted | ToolResult | ToolError | StepFinished | Final


class ToolRun(msgspec.Struct, frozen=True):
    """What `run()` returns: the last answer (`completion`, `content`, `reasoning_content`), the
    whole history (`messages`), the number of model calls (`steps`), their summed `usage` and
    `cost` (a `Decimal` in `currency`, each call priced at the time it ran, peak or off-peak),
    and why it stopped ("answer" or "max_steps")."""

    completion: ChatCompletion
    messages: list[Any]
    steps: int
    usage: Usage | None
    stopped: str = "answer"
    cost: Decimal = Decimal(0)
    currency: str = "CNY"

    @property
    def content(self) -> str | None:
        """The final answer's text (None when the last completion has no choices)."""
        return self.completion.choices[0].message.content if self.completion.choices else None

    @property
    def reasoning_content(self) -> str | None:
        """The final answer's reasoning (thinking mode), or None."""
        return self.completion.choices[0].message.reasoning_content if self.completion.choices else None


class MaxStepsExceeded(DeepSeekError):
    """The model still called tools after `max_steps` model calls. `messages` is the complete
    history (the last step's tool results included), so the run can be continued from it;
    `steps` the model calls made, `completion` the last answer, `usage` and `cost` (a `Decimal`)
    the whole run's, summed over its steps."""

    def __init__(self, steps: int, completion: ChatCompletion, messages: list[Any],
                 usage: Usage | None, cost: Decimal = Decimal(0)) -> None:
        super().__init__(f"the model was still calling tools after max_steps={steps} model calls; "
                         "raise max_steps, or pass on_max_steps='return' to get the history so far")
        self.steps = steps
        self.completion = completion
        self.messages = messages
        self.usage = usage
        self.cost = cost


ToolLike = Tool[Any, Any] | Any


def _registry(tools: Iterable[ToolLike]) -> dict[str, Tool[Any, Any]]:
    out: dict[str, Tool[Any, Any]] = {}
    for t in tools:
        t = as_tool(t)
        if t.name in out:
            raise UsageError(f"two tools are named {t.name!r}; tool names must be unique")
        out[t.name] = t
    if not out:
        raise UsageError("run_tools needs at least one tool")
    return out


def _thinking_on(value: Any) -> bool:
    """DeepSeek's default is thinking on (docs/deepseek-api-notes.md#thinking-mode):
    only an explicit "disabled" turns it off."""
    if value is False:
        return False
    if isinstance(value, str):
        return value != "disabled"
    if isinstance(value, Mapping):
        return value.get("type") != "disabled"
    return True


def _tool_choice(choice: Any, registry: Mapping[str, Tool[Any, Any]]) -> Any:
    if isinstance(choice, Tool):
        choice = choice.name
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        if choice not in registry:
            raise UsageError(f"tool_choice names {choice!r}, which is not one of the tools")
        return {"type": "function", "function": {"name": choice}}
    return choice


def _forcing(choice: Any) -> bool:
    return choice == "required" or isinstance(choice, Mapping)


def _error(step: int, call: ToolCall, kind: str, exc: BaseException,
           registry: Mapping[str, Tool[Any, Any]]) -> ToolError:
    """The ToolError event, with the text the model reads in place of a result."""
    name = call.function.name
    if kind == "unknown_tool":
        text = f"Error: there is no tool named {name!r}; the tools are: {', '.join(registry)}."
    elif kind == "arguments":
        text = f"Error: {exc} Call the tool again with corrected arguments."
    else:
        text = f"Error: tool {name!r} raised {type(exc).__name__}: {exc}"
    return ToolError(step, call.id, name, kind, exc, text)


async def _run_call(step: int, index: int, call: ToolCall, tool: Tool[Any, Any], values: dict[str, Any],
                    registry: Mapping[str, Tool[Any, Any]]) -> tuple[int, ToolResult | ToolError]:
    name = call.function.name
    try:
        value = await tool.call(values)
        return index, ToolResult(step, call.id, name, value, encode_result(value))
    except Exception as exc:  # fed back so the model can recover; BaseException propagates
        return index, _error(step, call, "exception", exc, registry)


async def _execute(step: int, calls: Sequence[ToolCall], registry: Mapping[str, Tool[Any, Any]],
                   parallel: bool, contents: list[str]) -> AsyncIterator[Event]:
    """Run the calls of one turn; yields their events and fills `contents` (in call order)."""
    pending: list[tuple[int, ToolCall, Tool[Any, Any], dict[str, Any]]] = []
    for i, call in enumerate(calls):
        name = call.function.name
        yield ToolCallStarted(step, call.id, name, call.function.arguments)
        t = registry.get(name)
        if t is None:
            err = _error(step, call, "unknown_tool", LookupError(f"no tool named {name!r}"), registry)
        else:
            try:
                pending.append((i, call, t, t.parse_arguments(call.function.arguments)))
                continue
            except ToolArgumentsError as e:
                err = _error(step, call, "arguments", e, registry)
        contents[i] = err.content
        yield err
    if not parallel:
        for i, call, t, values in pending:
            _, ev = await _run_call(step, i, call, t, values, registry)
            contents[i] = ev.content
            yield ev
        return
    tasks = [asyncio.ensure_future(_run_call(step, i, call, t, values, registry))
             for i, call, t, values in pending]
    try:
        for fut in asyncio.as_completed(tasks):
            i, ev = await fut
            contents[i] = ev.content
            yield ev
    finally:  # the consumer left early: do not leave tool tasks running (threads finish on their own)
        for task in tasks:
            task.cancel()


#: What the loop sets itself on every call; the rest of `ChatParams` passes through.
_LOOP_SETS = frozenset({"tools"})
_ALLOWED = ALL_PARAMS - _LOOP_SETS


def check_loop_params(where: str, params: Mapping[str, Any]) -> None:
    """Refuse, before any request, a keyword `chat.completions.create` does not take (TypeError
    naming its close match) or one the loop sets itself (`tools`: pass the tools positionally)."""
    if "tools" in params or "stream" in params or "messages" in params:
        raise UsageError(f"{where} sets tools, messages and stream itself: pass the tools as its "
                         "`tools` argument and `stream=True/False` for streamed events")
    if params and not params.keys() <= _ALLOWED:
        check_params(where, params, _ALLOWED, "the other arguments go to chat.completions.create")


def run_tools(
    client: AsyncClient,
    messages: Iterable[Message],
    tools: Iterable[ToolLike],
    *,
    model: str,
    max_steps: int = 8,
    stream: bool = True,
    parallel: bool = True,
    thinking: Any = NOT_GIVEN,
    tool_choice: Any = NOT_GIVEN,
    on_thinking_conflict: Literal["raise", "disable_thinking"] = "raise",
    on_max_steps: Literal["raise", "return"] = "raise",
    currency: str = "CNY",
    **params: Unpack[LoopParams],
) -> AsyncGenerator[Event, None]:
    """The tool loop as an async generator of events (module docstring).

    - client: an `AsyncClient` (`run_tools_sync` takes a `Client`).
    - messages: the conversation so far (dicts or answer messages).
    - tools: `@tool` functions, `Tool`s or plain functions (wrapped with `tool()`).
    - model: the model of every call; max_steps: model calls at most (>= 1).
    - stream: True streams `ReasoningDelta`/`ContentDelta` as they arrive; False yields one of
      each per step. parallel: run a turn's tool calls concurrently.
    - thinking, tool_choice: as in `chat.completions.create` (a forcing tool_choice applies to
      the first step); on_thinking_conflict, on_max_steps: see the module docstring.
    - currency: "CNY" or "USD" for the `cost` on `StepFinished`, `Final` and `ToolRun`.
    - params: any other `chat.completions.create` argument for every call (temperature,
      max_tokens, max_retries, extra_headers...).

    Raises `UsageError` for bad settings and `TypeError` for an unknown keyword (both before
    any request), `MaxStepsExceeded`, and the client's errors for failed requests.

        async for event in run_tools(client, [{"role": "user", "content": "Weather in Paris?"}],
                                     [get_weather], model="deepseek-flash"):
            if isinstance(event, Final):
                print(event.completion.choices[0].message.content, event.cost)"""
    if max_steps < 1:
        raise UsageError("max_steps must be at least 1")
    if on_thinking_conflict not in ("raise", "disable_thinking"):
        raise UsageError("on_thinking_conflict must be 'raise' or 'disable_thinking'")
    if currency.upper() not in _pricing.PRICES:
        raise UsageError(f"currency must be one of {', '.join(_pricing.PRICES)}, not {currency!r}")
    check_loop_params("run_tools()", params)
    return _loop(client, messages, tools, model=model, max_steps=max_steps, stream=stream,
                 parallel=parallel, thinking=thinking, tool_choice=tool_choice,
                 on_thinking_conflict=on_thinking_conflict, on_max_steps=on_max_steps,
                 currency=currency.upper(), create_kwargs=dict(params))


async def _loop(
    client: AsyncClient,
    messages: Iterable[Any],
    tools: Iterable[ToolLike],
    *,
    model: str,
    max_steps: int,
    stream: bool,
    parallel: bool,
    thinking: Any,
    tool_choice: Any,
    on_thinking_conflict: str,
    on_max_steps: str,
    currency: str,
    create_kwargs: dict[str, Any],
) -> AsyncGenerator[Event, None]:
    """The loop itself; `run_tools` checks its arguments first, at the call (a generator's body
    would only run at the first iteration)."""
    registry = _registry(tools)
    schemas = [t.schema for t in registry.values()]
    choice = _tool_choice(tool_choice, registry)
    if _forcing(choice) and _thinking_on(thinking):
        if on_thinking_conflict == "raise":
            raise UsageError(
                f"tool_choice={choice!r} is rejected by DeepSeek in thinking mode (400 'Thinking mode does "
                "not support this tool_choice'): use tool_choice='auto', pass "
                "thinking=False, or on_thinking_conflict='disable_thinking'")
        thinking = {"type": "disabled"}  # for the whole run (module docstring)
    msgs: list[Any] = list(messages)
    total: Usage | None = None
    spent = Decimal(0)
    prices = _pricing.PriceBook(currency, client.holidays)
    completion = ChatCompletion()
    for step in range(1, max_steps + 1):
        kwargs = {**create_kwargs, "model": model, "messages": msgs, "tools": schemas}
        if thinking is not NOT_GIVEN:
            kwargs["thinking"] = thinking
        if step == 1 and choice is not NOT_GIVEN:
            kwargs["tool_choice"] = choice
        if stream:
            s = await client.chat.completions.create(stream=True, **kwargs)
            async with s:
                async for chunk in s:
                    for c in chunk.choices:
                        if c.index == 0 and c.delta.reasoning_content:
                            yield ReasoningDelta(step, c.delta.reasoning_content)
                        if c.index == 0 and c.delta.content:
                            yield ContentDelta(step, c.delta.content)
                completion = s.get_final_completion()
        else:
            completion = await client.chat.completions.create(stream=False, **kwargs)
            if completion.choices:
                m = completion.choices[0].message
                if m.reasoning_content:
                    yield ReasoningDelta(step, m.reasoning_content)
                if m.content:
                    yield ContentDelta(step, m.content)
        if not completion.choices:
            raise DeepSeekError(f"the model's answer at step {step} had no choices")
        if completion.usage is not None:
            total = completion.usage if total is None else sum_usage(total, completion.usage)
            spent += prices.cost(completion.model or model, completion.usage, client.clock())
        message = completion.choices[0].message
        # reasoning_content kept verbatim (docs/deepseek-api-notes.md#thinking-mode)
        msgs.append(message.to_param())
        calls = message.tool_calls or []
        if not calls:
            yield StepFinished(step, completion, 0, total, spent, currency)
            yield Final(completion, msgs, step, total, "answer", spent, currency)
            return
        contents = [""] * len(calls)
        async for ev in _execute(step, calls, registry, parallel, contents):
            yield ev
        msgs.extend({"role": "tool", "tool_call_id": call.id, "content": content}
                    for call, content in zip(calls, contents, strict=True))
        yield StepFinished(step, completion, len(calls), total, spent, currency)
    if on_max_steps == "raise":
        raise MaxStepsExceeded(max_steps, completion, msgs, total, spent)
    yield Final(completion, msgs, max_steps, total, "max_steps", spent, currency)


async def run_tool_loop(client: AsyncClient, messages: Iterable[Message], tools: Iterable[ToolLike], *,
                        model: str, max_steps: int = 8, stream: bool = True, parallel: bool = True,
                        thinking: Any = NOT_GIVEN, tool_choice: Any = NOT_GIVEN,
                        on_thinking_conflict: Literal["raise", "disable_thinking"] = "raise",
                        on_max_steps: Literal["raise", "return"] = "raise", currency: str = "CNY",
                        **params: Unpack[LoopParams]) -> ToolRun:
    """Run the tool loop to the end (same arguments as `run_tools`) and return a `ToolRun`:
    the answer, the history, and the run's summed usage and cost.

    - client: an `AsyncClient`.
    - messages: the conversation so far (dicts or answer messages).
    - tools: `@tool` functions, `Tool`s or plain functions (wrapped with `tool()`).
    - model: the model of every call; max_steps: model calls at most (>= 1).
    - stream: True streams the reasoning and answer of each call; False asks for whole answers.
      parallel: run a turn's tool calls concurrently.
    - thinking, tool_choice: as in `chat.completions.create` (a forcing tool_choice applies to
      the first step); on_thinking_conflict: "raise" or "disable_thinking" when tool_choice
      forces a tool in thinking mode; on_max_steps: "raise" `MaxStepsExceeded` or "return" the
      history so far (`stopped="max_steps"`).
    - currency: "CNY" or "USD" for the `cost`.
    - params: any other `chat.completions.create` argument for every call (temperature,
      max_tokens, max_retries, extra_headers...).

    Raises `UsageError` for bad settings and `TypeError` for an unknown keyword (both before
    any request), `MaxStepsExceeded`, and the client's errors for failed requests.

        result = await run_tool_loop(client, messages, [get_weather], model="deepseek-flash")
        print(result.content, result.usage, result.cost)"""
    events = run_tools(client, messages, tools, model=model, max_steps=max_steps, stream=stream,
                       parallel=parallel, thinking=thinking, tool_choice=tool_choice,
                       on_thinking_conflict=on_thinking_conflict, on_max_steps=on_max_steps,
                       currency=currency, **params)
    async for ev in events:
        if isinstance(ev, Final):
            return ToolRun(ev.completion, ev.messages, ev.steps, ev.usage, ev.stopped, ev.cost, ev.currency)
    raise DeepSeekError("the tool loop ended without a final answer")  # pragma: no cover - unreachable


def run_tools_sync(client: Client, messages: Iterable[Message], tools: Iterable[ToolLike], *, model: str,
                   max_steps: int = 8, stream: bool = True, parallel: bool = True, thinking: Any = NOT_GIVEN,
                   tool_choice: Any = NOT_GIVEN,
                   on_thinking_conflict: Literal["raise", "disable_thinking"] = "raise",
                   on_max_steps: Literal["raise", "return"] = "raise", currency: str = "CNY",
                   **params: Unpack[LoopParams]) -> Iterator[Event]:
    """`run_tools` for the sync `Client`: a plain generator of the same events. The loop runs on
    the client's event-loop thread, so async tools run there and sync tools in its threads.
    Arguments are checked at the call, before the first event is asked for.

    - client: a `Client`.
    - messages: the conversation so far (dicts or answer messages).
    - tools: `@tool` functions, `Tool`s or plain functions (wrapped with `tool()`).
    - model: the model of every call; max_steps: model calls at most (>= 1).
    - stream: True streams the reasoning and answer of each call; False asks for whole answers.
      parallel: run a turn's tool calls concurrently.
    - thinking, tool_choice: as in `chat.completions.create` (a forcing tool_choice applies to
      the first step); on_thinking_conflict: "raise" or "disable_thinking" when tool_choice
      forces a tool in thinking mode; on_max_steps: "raise" `MaxStepsExceeded` or "return" the
      history so far (`stopped="max_steps"`).
    - currency: "CNY" or "USD" for the `cost`.
    - params: any other `chat.completions.create` argument for every call (temperature,
      max_tokens, max_retries, extra_headers...).

        for event in run_tools_sync(client, [{"role": "user", "content": "Weather in Paris?"}],
                                    [get_weather], model="deepseek-flash"):
            if isinstance(event, Final):
                print(event.completion.choices[0].message.content)"""
    agen = run_tools(client.async_client, messages, tools, model=model, max_steps=max_steps, stream=stream,
                     parallel=parallel, thinking=thinking, tool_choice=tool_choice,
                     on_thinking_conflict=on_thinking_conflict, on_max_steps=on_max_steps,
                     currency=currency, **params)
    return _drive(client, agen)


def _drive(client: Client, agen: AsyncGenerator[Event, None]) -> Iterator[Event]:
    async def step() -> Event:
        return await agen.__anext__()

    async def close() -> None:
        await agen.aclose()

    try:
        while True:
            try:
                ev = client._run(step())
            except StopAsyncIteration:
                return
            yield ev
    finally:
        if not client._runner.loop.is_closed():
            client._run(close())


def run_tool_loop_sync(client: Client, messages: Iterable[Message], tools: Iterable[ToolLike], *,
                       model: str, max_steps: int = 8, stream: bool = True, parallel: bool = True,
                       thinking: Any = NOT_GIVEN, tool_choice: Any = NOT_GIVEN,
                       on_thinking_conflict: Literal["raise", "disable_thinking"] = "raise",
                       on_max_steps: Literal["raise", "return"] = "raise", currency: str = "CNY",
                       **params: Unpack[LoopParams]) -> ToolRun:
    """`run_tool_loop` for the sync `Client`: the same arguments, the same `ToolRun`.

    - client: a `Client`.
    - messages: the conversation so far (dicts or answer messages).
    - tools: `@tool` functions, `Tool`s or plain functions (wrapped with `tool()`).
    - model: the model of every call; max_steps: model calls at most (>= 1).
    - stream: True streams the reasoning and answer of each call; False asks for whole answers.
      parallel: run a turn's tool calls concurrently.
    - thinking, tool_choice: as in `chat.completions.create` (a forcing tool_choice applies to
      the first step); on_thinking_conflict: "raise" or "disable_thinking" when tool_choice
      forces a tool in thinking mode; on_max_steps: "raise" `MaxStepsExceeded` or "return" the
      history so far (`stopped="max_steps"`).
    - currency: "CNY" or "USD" for the `cost`.
    - params: any other `chat.completions.create` argument for every call (temperature,
      max_tokens, max_retries, extra_headers...).

    Raises as `run_tool_loop` does.

        result = run_tool_loop_sync(client, messages, [get_weather], model="deepseek-flash")
        print(result.content, result.cost)"""
    return client._run(run_tool_loop(
        client.async_client, messages, tools, model=model, max_steps=max_steps, stream=stream,
        parallel=parallel, thinking=thinking, tool_choice=tool_choice,
        on_thinking_conflict=on_thinking_conflict, on_max_steps=on_max_steps, currency=currency, **params))


# The functions carry their top-level names (deepseek_kit.run_tool_loop: `run` alone is too
# generic there), so the reference shows them as functions with their signatures; `run` and
# `run_sync` are this module's short names for them.
run = run_tool_loop
run_sync = run_tool_loop_sync
