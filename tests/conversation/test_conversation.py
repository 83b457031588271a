"""Conversation against the emulator: multi-turn history on the wire (send and stream), abandoned
streams and failed requests leave the history alone, thinking mode's reasoning_content kept and sent
back where docs/deepseek-api-notes.md#thinking-mode requires it, prompt-prefix stability measured by the
emulator's cache hits, the slash-command one-liners, saving/forking, tallies, and the sync twin."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest

from deepseek_kit import AsyncClient, Client, StreamError, UsageError
from deepseek_kit._conversation.context import SUMMARY_PREFIX, SlidingWindow, Summarize, TokenBudget
from deepseek_kit._conversation.conversation import Conversation, ConversationUsage
from deepseek_kit._conversation.summarize import ModelSummarizer
from deepseek_kit._conversation.sync import SyncConversation
from deepseek_kit._wire.pricing import cost
from tests.helpers.dsk import chat_bodies

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture
async def client(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url, max_retries=0) as c:
        yield c


async def test_send_keeps_a_multi_turn_history_on_the_wire(emulator, client):
    conv = Conversation(client, system="Be brief.")
    r1 = await conv.send("Hello, who are you?")
    r2 = await conv.send("What did I just ask?")
    b1, b2 = chat_bodies(emulator)[-2:]
    assert b1["messages"] == [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Hello, who are you?"}]
    a1 = r1.choices[0].message
    assert b2["messages"] == [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Hello, who are you?"},
                              {"role": "assistant", "content": a1.content},  # reasoning stripped: no tools
                              {"role": "user", "content": "What did I just ask?"}]
    assert b2["model"] == "deepseek-flash" and "stream" not in b2
    # The history keeps every turn as DeepSeek returned it, reasoning included (thinking is on).
    h = conv.history
    assert [m["role"] for m in h] == ["user", "assistant", "user", "assistant"]
    assert h[1]["reasoning_content"] == a1.reasoning_content and a1.reasoning_content
    assert conv.last is r2 and conv.last_reasoning == r2.choices[0].message.reasoning_content
    h.clear()  # a copy
    assert len(conv) == 4


async def test_stream_yields_chunks_and_commits_the_turn_when_done(emulator, client):
    conv = Conversation(client)
    pieces = []
    async with conv.stream("Tell me a story.") as s:
        async for chunk in s:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    assert s.committed and "".join(pieces) == s.content
    assert s.reasoning  # thinking streamed first
    assert conv.history[-1] == {"role": "assistant", "content": s.content, "reasoning_content": s.reasoning}
    # Without `async with`, and a second turn built on the first.
    final = await conv.stream("And then?").until_done()
    body = chat_bodies(emulator)[-1]
    assert body["stream"] is True
    assert body["messages"][1] == {"role": "assistant", "content": s.content}
    assert conv.history[-1]["content"] == final.choices[0].message.content
    assert len(conv) == 4


async def test_abandoned_stream_adds_nothing(emulator, client):
    conv = Conversation(client)
    await conv.send("First question.")
    before = conv.history

    s = conv.stream("Never mind.")
    async for _ in s:
        break  # the caller walks away after the first chunk, without async with
    await s.aclose()
    assert not s.committed and conv.history == before

    async with conv.stream("Also never mind.") as s2:
        async for chunk in s2:
            if chunk.choices[0].delta.content:
                break  # stop in the middle of the answer
    assert not s2.committed and conv.history == before
    assert s2.content  # the partial answer is still readable

    # Leaving right after the finish chunk counts as a complete answer.
    async with conv.stream("Last one.") as s3:
        async for chunk in s3:
            if chunk.choices and chunk.choices[0].finish_reason:
                break
    assert s3.committed and len(conv) == 4

    await conv.send("Continue.")
    users = [m["content"] for m in chat_bodies(emulator)[-1]["messages"] if m["role"] == "user"]
    assert users == ["First question.", "Last one.", "Continue."]


async def test_cancelled_stream_adds_nothing(client):
    """Ctrl-C in `dsk chat` cancels the task reading the stream: the session keeps its history."""
    conv = Conversation(client)
    await conv.send("Before.")
    first = asyncio.Event()

    async def read():
        async with conv.stream("A slow answer.", extra_headers={"X-DSK-Emulate": "delay_chunks=0.05"}) as s:
            async for _ in s:
                first.set()

    task = asyncio.ensure_future(read())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [m["role"] for m in conv.history] == ["user", "assistant"]


async def test_failed_requests_leave_the_history_alone(emulator, client):
    conv = Conversation(client)
    await conv.send("Hi.")
    with pytest.raises(Exception) as e:
        await conv.send("This one fails.", extra_headers={"X-DSK-Emulate": "status=500"})
    assert getattr(e.value, "status_code", None) == 500
    with pytest.raises(StreamError):
        await conv.stream("This stream breaks.", resume=False,
                          extra_headers={"X-DSK-Emulate": "reset_after=5"}).until_done()
    assert [m["role"] for m in conv.history] == ["user", "assistant"]
    await conv.send("Works again.")
    users = [m["content"] for m in chat_bodies(emulator)[-1]["messages"] if m["role"] == "user"]
    assert users == ["Hi.", "Works again."]


async def test_thinking_with_tools_sends_reasoning_back_where_the_api_requires_it(emulator, client):
    # The emulator answers 400 when a tool-call turn comes back without
    # its reasoning_content (docs/deepseek-api-notes.md#thinking-mode).
    conv = Conversation(client, tools=[WEATHER])
    r = await conv.send("What is the weather in Paris? Use get_weather.")
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls" and msg.reasoning_content
    call = msg.tool_calls[0]
    conv.add_tool_result(call.id, {"city": "Paris", "sky": "sunny"})
    r2 = await conv.send()  # answer the tool result
    assert r2.choices[0].finish_reason == "stop" and r2.choices[0].message.content
    sent = chat_bodies(emulator)[-1]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id
    assert sent[1]["reasoning_content"] == msg.reasoning_content  # verbatim
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": '{"city":"Paris","sky":"sunny"}'}

    r3 = await conv.send("Thanks! And tomorrow?")  # the emulator calls the tool again
    conv.add_tool_result(r3.choices[0].message.tool_calls[0].id, "rain")
    await conv.send()
    sent = chat_bodies(emulator)[-1]["messages"]
    # With tools in the request, every earlier assistant turn carries its reasoning (newest rule),
    # including the plain answer to the first tool result.
    assert [m["role"] for m in sent].count("assistant") == 3
    assert all("reasoning_content" in m for m in sent if m["role"] == "assistant")

    # Without tools, plain answers drop it (ignored by the API), tool-call turns keep it.
    del conv.defaults["tools"]
    await conv.send("Summarize our chat.")
    sent = chat_bodies(emulator)[-1]["messages"]
    assistants = [m for m in sent if m["role"] == "assistant"]
    assert len(assistants) == 4
    for m in assistants:
        assert ("reasoning_content" in m) == bool(m.get("tool_calls"))
    # keep_reasoning=True sends it always; the history had it all along.
    conv.keep_reasoning = True
    assert all("reasoning_content" in m for m in conv.messages() if m["role"] == "assistant")
    assert all(m.get("reasoning_content") for m in conv.history if m["role"] == "assistant")


async def test_cache_hits_grow_across_turns_with_a_stable_prefix(emulator_factory):
    """The emulator reports DeepSeek's prefix-cache hits (128-token
    units, docs/deepseek-api-notes.md#context-caching). With the default
    window (drops in steps) hits keep growing between drops; the seed's one-round-at-a-time window
    loses everything after the system prompt on every turn once full."""
    system = "You are a meticulous assistant. Answer in detail and keep every fact straight. " * 12

    async def run(policy):
        emu = emulator_factory(default_tokens=160)  # a round > 128 tokens: hits grow every turn
        async with AsyncClient(api_key="sk-test", base_url=emu.base_url) as c:
            conv = Conversation(c, system=system, policy=policy)
            hits, prompts = [], []
            for i in range(16):
                r = await conv.send(f"Question {i}: what is interesting about the number {i}?")
                hits.append(r.usage.prompt_cache_hit_tokens)
                prompts.append(r.usage.prompt_tokens)
            return hits, prompts, chat_bodies(emu)[-16:], conv

    hits, prompts, bodies, conv = await run(SlidingWindow(rounds=5))
    seed_hits, seed_prompts, _, _ = await run(SlidingWindow(rounds=5, step=1))
    drops = [i for i in range(1, 16) if hits[i] < hits[i - 1]]
    assert drops == [9, 14]  # the 10th and 15th requests: rounds 0-4, then 5-9 dropped
    for i in range(1, 16):
        if i not in drops:
            assert hits[i] > hits[i - 1]  # each request reuses the previous prompt and answer
            prev, cur = bodies[i - 1]["messages"], bodies[i]["messages"]
            assert cur[: len(prev)] == prev  # the whole previous prompt is the new prompt's prefix
    # After the system prompt fills, the seed window's hits stay flat at the system prompt.
    assert len(set(seed_hits[6:])) == 1
    assert sum(hits) > 2 * sum(seed_hits)
    # Cheaper too, though it sends more tokens in all (misses are 50x the
    # price of hits, docs/deepseek-api-notes.md#pricing-and-off-peak-hours).
    misses = sum(p - h for p, h in zip(prompts, hits, strict=True))
    seed_misses = sum(p - h for p, h in zip(seed_prompts, seed_hits, strict=True))
    assert misses < seed_misses
    assert conv.usage.cache_hit_tokens == sum(hits)


async def test_a_failing_summary_does_not_fail_the_turn(emulator, client):
    bad = ModelSummarizer(client, extra_headers={"X-DSK-Emulate": "status=400"})
    conv = Conversation(
        client, system="S.", policy=Summarize(threshold_chars=200, keep_rounds=1, summarizer=bad)
    )
    for i in range(3):
        await conv.send(f"Question {i} " + "about something long " * 5)
    assert len(conv) == 6  # every turn went through
    sent = chat_bodies(emulator)[-1]["messages"]
    assert len(sent) == 6 and not sent[1]["content"].startswith(SUMMARY_PREFIX)  # sent unsummarized
    assert conv.to_dict()["policy_state"]["last_error"].startswith("Error code: 400")
    bad.create_kwargs = {}  # the summarizer works again: the next turn is summarized
    await conv.send("Question 3.")
    sent = chat_bodies(emulator)[-1]["messages"]
    assert sent[1]["content"].startswith(SUMMARY_PREFIX) and sent[-1]["content"] == "Question 3."
    assert "last_error" not in conv.to_dict()["policy_state"]


async def test_slash_command_one_liners(emulator, client):
    conv = Conversation(client, system="Old system.")
    await conv.send("Hi.")
    conv.system = "New system."  # /system
    conv.model = "deepseek-v4-pro"  # /model
    conv.thinking = False  # /think off
    await conv.send("Again.")
    body = chat_bodies(emulator)[-1]
    assert body["model"] == "deepseek-v4-pro" and body["thinking"] == {"type": "disabled"}
    assert body["messages"][0] == {"role": "system", "content": "New system."}
    assert "deepseek-v4-pro, thinking off" in conv.describe()
    tokens = conv.count_tokens()  # /tokens
    assert tokens > 0 and conv.count_tokens("one more question") > tokens
    assert "2 requests" in str(conv.usage) and "cost ¥" in str(conv.usage)  # /cost
    conv.clear()  # /clear
    assert len(conv) == 0 and conv.usage.requests == 2
    await conv.send("Fresh start.")
    assert chat_bodies(emulator)[-1]["messages"] == [{"role": "system", "content": "New system."},
                                                     {"role": "user", "content": "Fresh start."}]
    conv.system = None
    assert [m["role"] for m in conv.messages("x")] == ["user", "assistant", "user"]


@pytest.mark.parametrize("peak", [True, False])
async def test_usage_tallies_match_the_responses(client, monkeypatch, peak):
    # priced at response time: pinned (DSK_FAKE_NOW) to a peak or an off-peak time, exact at any hour
    monkeypatch.setenv("DSK_FAKE_NOW", "2026-11-24T10:00:00+08:00" if peak else "2026-11-24T13:00:00+08:00")
    conv = Conversation(client, currency="USD")
    rs = [await conv.send(f"Question {i}.") for i in range(3)]
    rs.append(await conv.stream("Streamed.").until_done())
    u = conv.usage
    assert u.requests == 4 and u.currency == "USD"
    assert u.prompt_tokens == sum(r.usage.prompt_tokens for r in rs)
    assert u.completion_tokens == sum(r.usage.completion_tokens for r in rs)
    assert u.reasoning_tokens == sum(r.usage.reasoning_tokens for r in rs) > 0
    assert u.cache_hit_tokens + u.cache_miss_tokens == u.prompt_tokens
    expected = sum((cost("deepseek-flash", r.usage, currency="USD", peak=peak) for r in rs), Decimal(0))
    assert u.cost == expected > 0
    assert ConversationUsage.from_dict(json.loads(json.dumps(u.to_dict()))) == u


async def test_to_dict_from_dict_and_fork(emulator, client):
    conv = Conversation(client, system="Sys.", preset="translation", policy=TokenBudget(2000), max_tokens=50)
    await conv.send("Translate: good morning.")
    await conv.send("And: good night.")
    data = json.loads(json.dumps(conv.to_dict()))  # plain JSON data
    assert data["version"] == 1 and data["preset"] == "translation" and data["defaults"] == {"max_tokens": 50}
    again = Conversation.from_dict(data, client, policy=TokenBudget(2000))
    assert again.messages("next") == conv.messages("next")
    assert again.history == conv.history and again.usage == conv.usage
    assert again.request_kwargs() == conv.request_kwargs()

    fork = conv.fork()
    await fork.send("Only in the fork.")
    assert len(fork) == 6 and len(conv) == 4
    assert fork.usage.requests == 1 and conv.usage.requests == 2
    body = chat_bodies(emulator)[-1]
    assert body["temperature"] == 1.3 and body["max_tokens"] == 50

    with pytest.raises(UsageError, match="not a saved conversation"):
        Conversation.from_dict({"history": []}, client)
    with pytest.raises(UsageError, match="its default tools= is not plain data"):
        Conversation(client, tools=[object()]).to_dict()


async def test_usage_errors(client):
    with pytest.raises(UsageError, match="nothing to answer"):
        await Conversation(client).send()
    with (
        pytest.raises(UsageError, match="SyncConversation"),
        Client(api_key="sk-test", base_url="http://127.0.0.1:9") as sync_client,
    ):
        Conversation(sync_client)
    with pytest.raises(UsageError, match="thinking must be"):
        Conversation(client, thinking="maybe")
    with pytest.raises(UsageError, match="message role"):
        Conversation(client).append({"role": "robot", "content": "beep"})
    with pytest.raises(UsageError, match="build messages"):
        await Conversation(client).send("hi", stream=True)


def test_sync_conversation(emulator):
    with Client(api_key="sk-test", base_url=emulator.base_url) as client:
        conv = SyncConversation(client, system="Sync.", policy=SlidingWindow(rounds=2, step=1))
        r = conv.send("One.")
        assert r.choices[0].message.content
        with conv.stream("Two.") as s:
            chunks = list(s)
        assert chunks and s.committed
        conv.thinking = False
        conv.send("Three.")
        assert [m["content"] for m in chat_bodies(emulator)[-1]["messages"] if m["role"] == "user"] == [
            "Two.", "Three."]
        assert len(conv) == 6 and conv.usage.requests == 3
        copy = SyncConversation.from_dict(conv.to_dict(), client, policy=conv.policy)
        assert copy.messages() == conv.messages()
        assert copy.fork().send("Four.").choices
