"""The tool loop against the emulator's streamed tool calls (it calls the tools the user message
names, in parallel when several are named, and answers in text after tool results)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading

import pytest

from deepseek_kit import AsyncClient, BadRequestError, Client, UsageError
from deepseek_kit._tools.loop import (
    ContentDelta,
    Final,
    MaxStepsExceeded,
    ReasoningDelta,
    StepFinished,
    ToolCallStarted,
    ToolError,
    ToolResult,
    _execute,
    run,
    run_sync,
    run_tools,
    run_tools_sync,
)
from deepseek_kit._tools.tool import tool
from deepseek_kit._wire.types import Function, ToolCall
from tests.helpers.dsk import chat_bodies

MODEL = "deepseek-flash"


@tool
def get_weather(city: str) -> dict:
    """Current weather for a city.

    Args:
        city: City name.
    """
    return {"city": city, "temp_c": 21}


@tool
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


async def collect(agen) -> list:
    return [ev async for ev in agen]


async def test_streamed_events_in_order_and_history_with_reasoning(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        events = await collect(run_tools(c, user("Use get_weather and add"), [get_weather, add], model=MODEL))
    kinds = [type(e).__name__ for e in events]
    # step 1: reasoning streams, then both calls start, then both finish; step 2: reasoning, answer
    first_tool = kinds.index("ToolCallStarted")
    assert set(kinds[:first_tool]) == {"ReasoningDelta"}
    assert kinds[first_tool:first_tool + 4].count("ToolCallStarted") == 2
    assert sorted(kinds[first_tool + 2:first_tool + 4]) == ["ToolResult", "ToolResult"]
    assert kinds[first_tool + 4] == "StepFinished"
    rest = kinds[first_tool + 5:]
    assert rest[-2:] == ["StepFinished", "Final"]
    body = rest[:-2]
    assert body.index("ContentDelta") > 0 and set(body[:body.index("ContentDelta")]) == {"ReasoningDelta"}
    assert set(body[body.index("ContentDelta"):]) == {"ContentDelta"}

    started = [e for e in events if isinstance(e, ToolCallStarted)]
    assert [e.name for e in started] == ["get_weather", "add"]
    results = {e.name: e for e in events if isinstance(e, ToolResult)}
    args = json.loads(started[1].arguments)
    total = args["a"] + args["b"]
    assert results["add"].value == total and results["add"].content == str(total)
    assert json.loads(results["get_weather"].content)["temp_c"] == 21

    final = events[-1]
    assert isinstance(final, Final) and final.steps == 2 and final.stopped == "answer"
    text = "".join(e.text for e in events if isinstance(e, ContentDelta))
    assert final.completion.choices[0].message.content == text
    assert final.usage.total_tokens == sum(e.completion.usage.total_tokens for e in events
                                           if isinstance(e, StepFinished))
    roles = [m["role"] for m in final.messages]
    assert roles == ["user", "assistant", "tool", "tool", "assistant"]
    step1_reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta) and e.step == 1)
    assert final.messages[1]["reasoning_content"] == step1_reasoning
    assert [m["tool_call_id"] for m in final.messages[2:4]] == [e.call_id for e in started]

    # what the server received: the second request carries step 1's reasoning_content verbatim
    second = chat_bodies(emulator)[1]
    assert second["messages"][1]["reasoning_content"] == step1_reasoning
    assert [t["function"]["name"] for t in second["tools"]] == ["get_weather", "add"]


async def test_passback_is_what_the_emulator_enforces(emulator):
    """Control: the same history without reasoning_content is
    refused (400, docs/deepseek-api-notes.md#thinking-mode)."""
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        result = await run(c, user("Use add"), [add], model=MODEL)
        stripped = [{k: v for k, v in m.items() if k != "reasoning_content"} for m in result.messages]
        with pytest.raises(BadRequestError, match="reasoning_content"):
            await c.chat.completions.create(model=MODEL, messages=stripped, tools=[add.schema])


async def test_async_tools_run_concurrently(emulator):
    a_in, b_in = asyncio.Event(), asyncio.Event()

    @tool
    async def ping(city: str) -> str:
        a_in.set()
        await asyncio.wait_for(b_in.wait(), 10)  # only returns if pong runs at the same time
        return "ping done"

    @tool
    async def pong(city: str) -> str:
        b_in.set()
        await asyncio.wait_for(a_in.wait(), 10)
        return "pong done"

    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        events = await collect(run_tools(c, user("call ping and pong"), [ping, pong], model=MODEL))
    assert sorted(e.content for e in events if isinstance(e, ToolResult)) == ["ping done", "pong done"]
    assert not [e for e in events if isinstance(e, ToolError)]


async def test_sync_tools_run_concurrently_in_threads(emulator):
    barrier = threading.Barrier(2, timeout=10)  # both calls must be inside at once
    threads: set[str] = set()

    @tool
    def left(city: str) -> str:
        threads.add(threading.current_thread().name)
        barrier.wait()
        return "left"

    @tool
    def right(city: str) -> str:
        threads.add(threading.current_thread().name)
        barrier.wait()
        return "right"

    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        result = await run(c, user("call left and right"), [left, right], model=MODEL)
    assert [m["content"] for m in result.messages if m["role"] == "tool"] == ["left", "right"]
    assert len(threads) == 2 and threading.current_thread().name not in threads


async def test_parallel_false_runs_one_at_a_time_in_call_order(emulator):
    running, peak, order = 0, 0, []

    def make(name):
        async def fn(city: str) -> str:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            running -= 1
            order.append(name)
            return name
        return tool(fn, name=name)

    tools = [make("one"), make("two"), make("three")]
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        await run(c, user("three then one then two"), tools, model=MODEL, parallel=False)
    assert order == ["three", "one", "two"] and peak == 1


async def test_exceptions_are_fed_back_and_the_model_answers(emulator):
    @tool
    def divide(a: int, b: int) -> float:
        """Divide a by b."""
        raise ZeroDivisionError("division by zero")

    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        events = await collect(run_tools(c, user("divide please"), [divide], model=MODEL))
    errors = [e for e in events if isinstance(e, ToolError)]
    assert len(errors) == 1 and errors[0].kind == "exception"
    assert isinstance(errors[0].error, ZeroDivisionError)
    assert errors[0].content == "Error: tool 'divide' raised ZeroDivisionError: division by zero"
    assert isinstance(events[-1], Final) and events[-1].completion.choices[0].message.content
    tool_msg = chat_bodies(emulator)[-1]["messages"][2]
    assert tool_msg == {"role": "tool", "tool_call_id": errors[0].call_id, "content": errors[0].content}


async def test_truncated_arguments_are_fed_back_as_the_result(emulator):
    """max_tokens cuts the emulator's tool-call arguments: invalid JSON, like the measured
    one-brace-off calls (docs/deepseek-api-notes.md#tool-calls). The parse error becomes the tool result."""
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        events = await collect(run_tools(c, user("get_weather"), [get_weather], model=MODEL,
                                         thinking=False, max_tokens=5))
    errors = [e for e in events if isinstance(e, ToolError)]
    assert len(errors) == 1 and errors[0].kind == "arguments"
    assert errors[0].content.startswith("Error: Invalid arguments for tool 'get_weather': the arguments are "
                                        "not valid JSON")
    assert errors[0].content.endswith("Call the tool again with corrected arguments.")
    assert chat_bodies(emulator)[-1]["messages"][-1]["content"] == errors[0].content


async def test_unknown_tool_and_bad_arguments_without_a_server():
    calls = [
        ToolCall(id="c0", function=Function(name="nope", arguments="{}")),
        ToolCall(id="c1", function=Function(name="add", arguments='{"a": 1, "b": 2}}')),  # one brace off
        ToolCall(id="c2", function=Function(name="add", arguments='{"a": "x", "b": 2}')),
        ToolCall(id="c3", function=Function(name="add", arguments='{"a": 1, "b": 2}')),
    ]
    contents = [""] * 4
    events = [e async for e in _execute(1, calls, {"add": add}, True, contents)]
    errors = {e.call_id: e for e in events if isinstance(e, ToolError)}
    assert errors["c0"].kind == "unknown_tool" and "the tools are: add" in errors["c0"].content
    assert errors["c1"].kind == "arguments" and "not valid JSON" in errors["c1"].content
    assert errors["c2"].kind == "arguments" and "Expected `int`, got `str`" in errors["c2"].content
    assert contents[3] == "3"
    assert [type(e).__name__ for e in events].count("ToolCallStarted") == 4


async def test_step_limit_raises_with_a_complete_history_that_can_continue(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        with pytest.raises(MaxStepsExceeded, match="max_steps=1") as info:
            await run(c, user("add"), [add], model=MODEL, max_steps=1)
        err = info.value
        assert [m["role"] for m in err.messages] == ["user", "assistant", "tool"]
        assert err.completion.choices[0].finish_reason == "tool_calls"

        stopped = await run(c, user("add"), [add], model=MODEL, max_steps=1, on_max_steps="return")
        assert stopped.stopped == "max_steps" and stopped.steps == 1
        assert stopped.messages == err.messages

        resumed = await run(c, err.messages, [add], model=MODEL)
        assert resumed.steps == 1 and resumed.content
        assert [m["role"] for m in resumed.messages] == ["user", "assistant", "tool", "assistant"]


async def test_forcing_tool_choice_in_thinking_mode_is_refused_before_sending(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        for choice in ("required", add, "add", {"type": "function", "function": {"name": "add"}}):
            with pytest.raises(UsageError, match="Thinking mode does not support this tool_choice"):
                await run(c, user("add"), [add], model=MODEL, tool_choice=choice)
        with pytest.raises(UsageError, match="not one of the tools"):
            await run(c, user("add"), [add], model=MODEL, tool_choice="other")
        assert emulator.state.total_requests == 0
        # control: DeepSeek (the emulator) really answers 400 to it
        with pytest.raises(BadRequestError, match="Thinking mode does not support this tool_choice"):
            await c.chat.completions.create(model=MODEL, messages=user("add"), tools=[add.schema],
                                            tool_choice="required")


async def test_disable_thinking_option_and_first_step_only_forcing(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        result = await run(c, user("Tell me about Paris"), [get_weather, add], model=MODEL, tool_choice="add",
                           on_thinking_conflict="disable_thinking")
        assert result.steps == 2 and result.reasoning_content is None
        first, second = chat_bodies(emulator)[-2:]
        assert first["thinking"] == {"type": "disabled"} and second["thinking"] == {"type": "disabled"}
        assert first["tool_choice"] == {"type": "function", "function": {"name": "add"}}
        assert "tool_choice" not in second
        assert result.messages[1]["tool_calls"][0]["function"]["name"] == "add"
        # an explicit thinking=False needs no option
        ok = await run(c, user("hi"), [add], model=MODEL, thinking=False, tool_choice="required")
        assert ok.steps == 2


async def test_non_streamed_steps_emit_whole_deltas(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        events = await collect(run_tools(c, user("add"), [add], model=MODEL, stream=False))
    per_step = [(type(e).__name__, getattr(e, "step", None)) for e in events
                if isinstance(e, (ReasoningDelta, ContentDelta))]
    assert per_step == [("ReasoningDelta", 1), ("ReasoningDelta", 2), ("ContentDelta", 2)]
    assert all(b.get("stream") is None for b in chat_bodies(emulator))


async def test_leaving_early_cancels_running_tools(emulator):
    cancelled = asyncio.Event()

    @tool
    async def slow(city: str) -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    @tool
    async def quick(city: str) -> str:
        return "quick"

    async with (
        AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c,
        contextlib.aclosing(run_tools(c, user("slow and quick"), [slow, quick], model=MODEL)) as events,
    ):
        async for ev in events:
            if isinstance(ev, ToolResult):  # quick is done, slow is still waiting
                assert ev.name == "quick"
                break
    assert cancelled.is_set()


def test_sync_twin(emulator):
    names: list[str] = []

    @tool
    def lookup(city: str) -> str:
        names.append(threading.current_thread().name)
        return f"{city}: sunny"

    with Client(api_key="sk-test", base_url=emulator.base_url) as c:
        events = list(run_tools_sync(c, user("lookup"), [lookup, add], model=MODEL))
        assert isinstance(events[-1], Final) and events[-1].steps == 2
        assert any(isinstance(e, ToolResult) and e.content.endswith(": sunny") for e in events)
        result = run_sync(c, user("add"), [lookup, add], model=MODEL)
        assert result.content and [m["role"] for m in result.messages][-2:] == ["tool", "assistant"]
        # leaving the sync generator early closes it on the client's loop
        gen = run_tools_sync(c, user("lookup"), [lookup], model=MODEL)
        assert isinstance(next(gen), ReasoningDelta)
        gen.close()
    assert names and threading.current_thread().name not in names


SATURDAY = "2026-12-05T03:00:00Z"  # off-peak all day: the cost does not depend on when the test runs


async def test_events_and_result_carry_the_runs_usage_and_cost(emulator, monkeypatch):
    """Each StepFinished carries the run's usage and cost so far, Final and ToolRun the whole
    run's: the sum of its model calls, priced as `deepseek_kit.cost` prices them."""
    from datetime import datetime
    from decimal import Decimal

    from deepseek_kit import cost
    from deepseek_kit._client.resume import sum_usage

    monkeypatch.setenv("DSK_FAKE_NOW", SATURDAY)
    at = datetime.fromisoformat(SATURDAY.replace("Z", "+00:00"))
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        events = await collect(run_tools(c, user("Use get_weather"), [get_weather], model=MODEL))
        result = await run(c, user("Use get_weather"), [get_weather], model=MODEL, stream=False)
    steps = [e for e in events if isinstance(e, StepFinished)]
    final = events[-1]
    assert isinstance(final, Final) and len(steps) == 2
    first, second = (s.completion.usage for s in steps)
    assert first is not None and second is not None
    assert steps[0].usage == first and steps[0].cost == cost(first, MODEL, at) > 0
    assert steps[1].usage == final.usage == sum_usage(first, second)
    assert final.cost == steps[1].cost == cost(first, MODEL, at) + cost(second, MODEL, at)
    assert final.currency == "CNY" and isinstance(final.cost, Decimal)
    assert result.steps == 2 and result.usage is not None and result.cost == cost(result.usage, MODEL, at) > 0


async def test_a_misspelt_argument_fails_at_the_call_before_any_request(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        with pytest.raises(TypeError, match=r"'max_token' \(did you mean 'max_tokens'\?\)"):
            run_tools(c, user("Use get_weather"), [get_weather], model=MODEL, max_token=5)  # type: ignore[call-arg]
        with pytest.raises(UsageError, match="currency"):
            run_tools(c, user("Use get_weather"), [get_weather], model=MODEL, currency="EUR")
    assert emulator.state.total_requests == 0
