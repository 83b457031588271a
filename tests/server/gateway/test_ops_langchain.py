# LangChain's ChatDeepSeek (langchain-deepseek, in the dev extra) through the gateway to an emulator:
# invoke (reasoning_content kept), stream, and a tool call whose follow-up turn LangChain sends back
# without reasoning_content (the gateway repairs it; the strict emulator would answer 400).
from __future__ import annotations

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_deepseek import ChatDeepSeek

from .ops_helpers import AppThread, config


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return "18C"


def test_chat_deepseek_invoke_stream_and_tools(emulator_factory):
    emu = emulator_factory(strict_reasoning_passback=True)
    with AppThread(config(("emu", emu.base_url, ""))) as gw:
        llm = ChatDeepSeek(model="deepseek-flash", api_key="sk-anything", api_base=gw.base_url + "/v1",
                           max_retries=0, timeout=30)
        r = llm.invoke("hello")
        assert r.content and r.additional_kwargs.get("reasoning_content")
        assert r.usage_metadata and r.usage_metadata["total_tokens"] > 0
        chunks = list(llm.stream("hello"))
        assert "".join(str(c.content) for c in chunks)
        assert any(c.additional_kwargs.get("reasoning_content") for c in chunks)

        bound = llm.bind_tools([get_weather])
        first = bound.invoke([HumanMessage("weather in Paris? use the tool")])
        assert first.tool_calls and first.tool_calls[0]["name"] == "get_weather"
        call = first.tool_calls[0]
        follow = bound.invoke([HumanMessage("weather in Paris? use the tool"), first,
                               ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])])
        assert follow.content or follow.tool_calls
    assert emu.state.statuses[400] == 0
