"""Parallel tool calls: the emulator calls every tool that fits the request in one turn, without
the prompt naming them; `EmulatorConfig.parallel_tool_calls` and a request's `parallel_tool_calls`
turn it off. Run through the library's tool loop."""

from __future__ import annotations

from deepseek_kit import AsyncClient, StepFinished, ToolCallStarted, run_tools, tool
from deepseek_kit.server.emulator.tool_pick import pick_tools
from deepseek_kit.server.emulator.validate import ChatRequest
from tests.helpers.dsk import chat_bodies

MODEL = "deepseek-flash"
QUESTION = [{"role": "user", "content": "What's the weather in Oslo, and what time is it there?"}]


@tool
def get_weather(city: str) -> dict[str, object]:
    """Current weather conditions in a city."""
    return {"city": city, "temp_c": 4}


@tool
def local_time(city: str) -> str:
    """The local time in a city."""
    return "14:05"


@tool
def convert_currency(amount: float, to: str) -> float:
    """Convert money between currencies."""
    return amount


async def _first_round(base_url: str, **kwargs: object) -> list[str]:
    called: list[str] = []
    async with AsyncClient(api_key="sk-test", base_url=base_url) as c:
        async for ev in run_tools(c, QUESTION, [convert_currency, get_weather, local_time], model=MODEL,
                                  **kwargs):  # type: ignore[arg-type]
            if isinstance(ev, ToolCallStarted) and ev.step == 1:
                called.append(ev.name)
            if isinstance(ev, StepFinished) and ev.step == 1:
                break
    return called


async def test_two_independent_tools_are_both_called_in_one_round(emulator):
    assert await _first_round(emulator.base_url) == ["get_weather", "local_time"]
    # deterministic: the same request, the same calls
    assert await _first_round(emulator.base_url) == ["get_weather", "local_time"]


async def test_the_tool_loop_finishes_after_the_parallel_round(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        events = [ev async for ev in run_tools(c, QUESTION, [convert_currency, get_weather, local_time],
                                               model=MODEL)]
    assert [e.name for e in events if isinstance(e, ToolCallStarted)] == ["get_weather", "local_time"]
    second = chat_bodies(emulator)[1]["messages"]
    assert [m["role"] for m in second[-3:]] == ["assistant", "tool", "tool"]


async def test_server_setting_off_gives_one_call_per_round(emulator_factory):
    emu = emulator_factory(parallel_tool_calls=False)
    assert await _first_round(emu.base_url) == ["get_weather"]


async def test_request_field_overrides_the_server_setting(emulator_factory):
    on = emulator_factory()
    assert await _first_round(on.base_url, extra_body={"parallel_tool_calls": False}) == ["get_weather"]
    off = emulator_factory(parallel_tool_calls=False)
    assert await _first_round(off.base_url, extra_body={"parallel_tool_calls": True}) == [
        "get_weather", "local_time"]


def _fn(name: str, description: str | None = None) -> dict[str, object]:
    fn: dict[str, object] = {"name": name}
    if description is not None:
        fn["description"] = description
    return {"type": "function", "function": fn}


def _req(text: str, *tools: dict[str, object]) -> ChatRequest:
    return ChatRequest(model=MODEL, serving=MODEL, messages=[{"role": "user", "content": text}],
                       tools=list(tools))  # type: ignore[arg-type]


def test_pick_rules():
    weather, stocks, search = (
        _fn("get_weather"),
        _fn("stock_price", "Latest quote of a ticker"),
        _fn("search"),
    )
    names = lambda picked: [t["function"]["name"] for t in picked]  # noqa: E731
    # named tools win, in the order named
    assert names(pick_tools(_req("use search then get_weather", weather, search), True)) == [
        "search",
        "get_weather",
    ]
    # a name word or a description word (plurals folded) fits; generic verbs ("get") do not
    assert names(pick_tools(_req("Weather and quotes for Paris?", weather, stocks, search), True)) == [
        "get_weather", "stock_price"]
    assert names(pick_tools(_req("Weather and quotes for Paris?", weather, stocks, search), False)) == [
        "get_weather"]
    assert names(pick_tools(_req("get me something", stocks, weather), True)) == ["stock_price"]  # first tool
