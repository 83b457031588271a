"""A Conversation as servers use it, against the emulator: concurrent turns are serialized (each
built on the history the previous one committed), a bounded history, the tool loop run as a turn,
and keyword typos caught where they are written."""

from __future__ import annotations

import asyncio

import pytest

from deepseek_kit import AsyncClient, Client, UsageError, tool
from deepseek_kit._conversation.context import TokenBudget
from deepseek_kit._conversation.conversation import Conversation
from deepseek_kit._conversation.sync import SyncConversation
from tests.helpers.dsk import chat_bodies


@tool
def get_weather(city: str) -> dict:
    """Current weather for a city.

    Args:
        city: City name.
    """
    return {"city": city, "temp_c": 21}


@pytest.fixture
async def client(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url, max_retries=0) as c:
        yield c


def _pairs(history: list[dict]) -> list[tuple[str, str]]:
    return [(history[i]["role"], history[i + 1]["role"]) for i in range(0, len(history), 2)]


async def test_concurrent_sends_and_streams_are_serialized_never_interleaved(emulator, client):
    """Six turns started at once (four sends, two streams): each request carries the whole history
    committed before it - 0, 1, 2... earlier rounds - and the history is six whole rounds, each
    question followed by its own answer. Unserialized, every request would carry no history."""
    conv = Conversation(client, system="Be brief.", policy=None)

    async def streamed(text: str) -> None:
        async with conv.stream(text) as s:
            async for _ in s:
                pass

    texts = [f"Question {i}" for i in range(6)]
    await asyncio.gather(*(streamed(t) if i in (1, 4) else conv.send(t) for i, t in enumerate(texts)))
    bodies = chat_bodies(emulator)
    assert sorted(len(b["messages"]) for b in bodies) == [2, 4, 6, 8, 10, 12]  # system + 2k + 1
    history = conv.history
    assert len(history) == 12 and set(_pairs(history)) == {("user", "assistant")}
    asked = [m["content"] for m in history[::2]]
    assert sorted(asked) == texts  # every turn once, whole
    for body in bodies:  # each request is a prefix of the final history plus its own question
        sent = body["messages"][1:]
        assert [m["content"] for m in sent[::2]] == asked[:len(sent) // 2 + 1]


async def test_a_closed_or_failed_stream_lets_the_next_turn_run(emulator, client):
    conv = Conversation(client)
    async with conv.stream("Tell me a long story.") as s:
        async for _ in s:
            break  # abandoned: nothing committed, the conversation is free again
    await asyncio.wait_for(conv.send("Hello"), 30)
    failing = conv.stream("Again", extra_headers={"X-DSK-Emulate": "status=400"})
    with pytest.raises(Exception, match="400"):
        async for _ in failing:
            pass
    await asyncio.wait_for(conv.send("Still there?"), 30)
    assert [m["content"] for m in conv.history[::2]] == ["Hello", "Still there?"]


async def test_a_stream_dropped_unclosed_does_not_hold_the_conversation(emulator, client):
    """`async for ... in conv.stream(q): break` with nothing keeping the stream: once collected it
    lets go of the conversation, and the next turn runs."""
    conv = Conversation(client)
    async for _ in conv.stream("Tell me a long story."):
        break
    await asyncio.wait_for(conv.send("Hello"), 30)
    assert [m["content"] for m in conv.history[::2]] == ["Hello"]


async def test_max_history_drops_the_oldest_whole_rounds_and_keeps_the_system_prompt(emulator, client):
    conv = Conversation(client, system="Be brief.", max_history=5, policy=TokenBudget(100_000))
    for i in range(4):
        await conv.send(f"Question {i}")
    history = conv.history
    # 8 messages made, at most 5 kept: whole rounds only, so the last two rounds (4 messages)
    assert [m["content"] for m in history[::2]] == ["Question 2", "Question 3"] and len(history) == 4
    last = chat_bodies(emulator)[-1]["messages"]
    assert last[0] == {"role": "system", "content": "Be brief."}
    await conv.send("Question 4")
    sent = chat_bodies(emulator)[-1]["messages"]
    assert sent[0]["content"] == "Be brief." and [m["content"] for m in sent[1::2]] == [
        "Question 2", "Question 3", "Question 4"]
    saved = Conversation.from_dict(conv.to_dict(), client)
    assert saved.max_history == 5 and saved.history == conv.history
    with pytest.raises(UsageError, match="max_history"):
        Conversation(client, max_history=0)


async def test_run_tools_is_a_turn_whose_tool_rounds_join_the_history(emulator, client):
    conv = Conversation(client, system="Use tools.")
    result = await conv.run_tools("Use get_weather", [get_weather])
    history = conv.history
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
    call_turn = history[1]
    assert call_turn["tool_calls"][0]["function"]["name"] == "get_weather"
    assert call_turn["reasoning_content"]  # thinking mode: kept verbatim, as the loop sends it
    assert history[2]["tool_call_id"] == call_turn["tool_calls"][0]["id"]
    assert history[3]["content"] == result.content and result.steps == 2
    assert conv.usage.requests == 2 and conv.usage.cost == result.cost > 0
    await conv.send("Thanks")
    sent = chat_bodies(emulator)[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert sent[2].get("reasoning_content") == call_turn["reasoning_content"]  # a tool-call turn keeps it


async def test_misspelt_keywords_fail_where_they_are_written(emulator, client):
    with pytest.raises(TypeError, match=r"'temprature' \(did you mean 'temperature'\?\)"):
        Conversation(client, temprature=0.5)  # type: ignore[call-arg]
    conv = Conversation(client, max_tokens=50)
    with pytest.raises(TypeError, match=r"'max_token' \(did you mean 'max_tokens'\?\)"):
        await conv.send("Hello", max_token=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="max_step"):
        await conv.run_tools("Use get_weather", [get_weather], max_step=2)  # type: ignore[call-arg]
    assert emulator.state.total_requests == 0 and len(conv) == 0


def test_sync_conversation_runs_tools_and_checks_keywords(emulator):
    with Client(api_key="sk-test", base_url=emulator.base_url) as c:
        conv = SyncConversation(c, system="Use tools.", max_history=10)
        result = conv.run_tools("Use get_weather", [get_weather])
        assert result.content and len(conv.conversation) == 4
        with pytest.raises(TypeError, match="temperature"):
            SyncConversation(c, temprature=1)  # type: ignore[call-arg]


def test_sync_conversation_shared_between_threads_is_serialized(emulator):
    from concurrent.futures import ThreadPoolExecutor

    with Client(api_key="sk-test", base_url=emulator.base_url) as c:
        conv = SyncConversation(c, policy=None)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(conv.send, [f"Question {i}" for i in range(4)]))
        assert sorted(len(b["messages"]) for b in chat_bodies(emulator)) == [1, 3, 5, 7]
        assert set(_pairs(conv.conversation.history)) == {("user", "assistant")}
