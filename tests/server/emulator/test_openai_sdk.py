"""Tier 3: the official `openai` SDK as a client of the emulator (sync and async)."""

from __future__ import annotations

import json
import uuid

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city", "days"]}}}
MSGS = [{"role": "user", "content": "Tell me about the sea."}]
OFF = {"thinking": {"type": "disabled"}}


def fault(spec: str) -> dict[str, str]:
    return {"X-DSK-Emulate": f"{spec};key={uuid.uuid4().hex[:8]}"}


@pytest.fixture
async def aclient(emulator):
    c = AsyncOpenAI(api_key="sk-sdk-test", base_url=emulator.base_url, max_retries=0)
    yield c
    await c.close()


@pytest.fixture
def client(emulator):
    c = OpenAI(api_key="sk-sdk-test", base_url=emulator.base_url, max_retries=0)
    yield c
    c.close()


async def test_async_chat_non_stream(aclient):
    resp = await aclient.chat.completions.create(model="deepseek-flash", messages=MSGS)
    assert resp.object == "chat.completion" and resp.model == "deepseek-flash"
    choice = resp.choices[0]
    assert choice.finish_reason == "stop" and choice.message.content
    assert choice.message.model_extra["reasoning_content"]  # DeepSeek's extra field survives
    assert resp.usage.completion_tokens_details.reasoning_tokens == 48
    assert resp.usage.model_extra["prompt_cache_miss_tokens"] == resp.usage.prompt_tokens


def test_sync_chat_non_stream_without_thinking(client):
    resp = client.chat.completions.create(model="deepseek-v4-pro", messages=MSGS, extra_body=OFF)
    assert resp.choices[0].message.content
    assert "reasoning_content" not in (resp.choices[0].message.model_extra or {})
    assert resp.usage.completion_tokens_details is None


async def test_async_stream(aclient):
    stream = await aclient.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                                   stream_options={"include_usage": True})
    content, reasoning, usage, finish = "", "", None, None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            content += ch.delta.content or ""
            reasoning += (ch.delta.model_extra or {}).get("reasoning_content") or ""
            finish = ch.finish_reason or finish
    assert content and reasoning and finish == "stop"
    assert usage.completion_tokens == 80


def test_sync_stream_matches_non_stream(client):
    body = {"model": "deepseek-flash", "messages": MSGS, "extra_body": OFF}
    whole = client.chat.completions.create(**body).choices[0].message.content
    parts = [c.choices[0].delta.content or "" for c in client.chat.completions.create(**body, stream=True)
             if c.choices]
    assert "".join(parts) == whole


async def test_streamed_tool_calls_assemble(aclient):
    msgs = [{"role": "user", "content": "Weather in Paris for the weekend?"}]
    stream = await aclient.chat.completions.create(model="deepseek-flash", messages=msgs, tools=[WEATHER],
                                                   stream=True)
    calls: dict[int, dict] = {}
    finish = None
    async for chunk in stream:
        for ch in chunk.choices:
            finish = ch.finish_reason or finish
            for tc in ch.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": None, "name": None, "args": ""})
                if tc.id:
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    slot["args"] += tc.function.arguments
    assert finish == "tool_calls"
    (call,) = calls.values()
    assert call["name"] == "get_weather" and call["id"].startswith("call_00_")
    args = json.loads(call["args"])
    assert isinstance(args["city"], str) and isinstance(args["days"], int) and args["days"] >= 1


def test_tool_loop_with_sync_client(client):
    msgs = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client.chat.completions.create(model="deepseek-flash", messages=msgs, tools=[WEATHER])
    msg = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    call = msg.tool_calls[0]
    json.loads(call.function.arguments)
    msgs.append(msg.model_dump(exclude_none=True))  # keeps reasoning_content for the passback rule
    msgs.append({"role": "tool", "tool_call_id": call.id, "content": "cold"})
    final = client.chat.completions.create(model="deepseek-flash", messages=msgs, tools=[WEATHER])
    assert final.choices[0].finish_reason == "stop" and final.choices[0].message.content


async def test_json_mode(aclient):
    resp = await aclient.chat.completions.create(
        model="deepseek-flash", response_format={"type": "json_object"},
        messages=[{"role": "system", "content": 'Output json: {"name": "...", "age": 30}'},
                  {"role": "user", "content": "Invent a person."}])
    obj = json.loads(resp.choices[0].message.content)
    assert set(obj) == {"name", "age"}


async def test_models_list(aclient, client):
    models = await aclient.models.list()
    assert [m.id for m in models.data] == ["deepseek-flash", "deepseek-v4-pro"]
    assert [m.id for m in client.models.list()] == ["deepseek-flash", "deepseek-v4-pro"]


async def test_fim_via_completions(emulator):
    c = AsyncOpenAI(api_key="sk-sdk-test", base_url=emulator.base_url + "/beta", max_retries=0)
    try:
        resp = await c.completions.create(model="deepseek-flash", prompt="def add(a, b):", suffix="\n",
                                          max_tokens=8)
    finally:
        await c.close()
    assert resp.object == "text_completion" and resp.choices[0].text
    assert resp.usage.completion_tokens == 8


async def test_authentication_error(emulator_factory):
    emu = emulator_factory(api_keys={"sk-right"})
    c = AsyncOpenAI(api_key="sk-wrong-key-9876", base_url=emu.base_url, max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError) as info:
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
    finally:
        await c.close()
    assert info.value.status_code == 401
    assert info.value.body["message"] == "Authentication Fails, Your api key: ****9876 is invalid"


def test_insufficient_balance(emulator_factory):
    emu = emulator_factory(balance={"sk-broke": "0"})
    with (
        OpenAI(api_key="sk-broke", base_url=emu.base_url, max_retries=0) as c,
        pytest.raises(openai.APIStatusError) as info,
    ):
        c.chat.completions.create(model="deepseek-flash", messages=MSGS)
    assert info.value.status_code == 402
    assert info.value.body["message"] == "Insufficient Balance"


async def test_bad_request(aclient):
    with pytest.raises(openai.BadRequestError) as info:
        await aclient.chat.completions.create(model="deepseek-flash", messages=MSGS, max_tokens=0)
    assert (
        info.value.body["message"] == "Invalid max_tokens value, the valid range of max_tokens is [1, 393216]"
    )
    with pytest.raises(openai.BadRequestError, match="Model Not Exist"):
        await aclient.chat.completions.create(model="deepseek-chat", messages=MSGS)
    with pytest.raises(openai.BadRequestError, match="Thinking mode does not support this tool_choice"):
        await aclient.chat.completions.create(model="deepseek-flash", messages=MSGS, tools=[WEATHER],
                                              tool_choice="required")


@pytest.mark.parametrize(("spec", "exc"), [("status=429", openai.RateLimitError),
                                           ("status=503", openai.InternalServerError),
                                           ("status=500", openai.InternalServerError)])
async def test_server_errors_via_header(aclient, emulator, spec, exc):
    with pytest.raises(exc) as info:
        await aclient.chat.completions.create(
            model="deepseek-flash", messages=MSGS, extra_headers=fault(spec)
        )
    assert info.value.status_code == int(spec.split("=")[1])
    assert emulator.state.total_requests == 1  # max_retries=0: one attempt


async def test_sdk_retries_until_the_fault_clears(emulator):
    c = AsyncOpenAI(api_key="sk-sdk-test", base_url=emulator.base_url, max_retries=3)
    try:
        resp = await c.chat.completions.create(model="deepseek-flash", messages=MSGS,
                                               extra_headers=fault("status=503;times=2;retry_after_ms=10"))
    finally:
        await c.close()
    assert resp.choices[0].message.content
    assert emulator.state.total_requests == 3


async def test_keepalive_blank_lines_do_not_break_the_sdk(aclient):
    resp = await aclient.chat.completions.create(model="deepseek-flash", messages=MSGS,
                                                 extra_headers=fault("queue=0.3;keepalive=0.1"))
    assert resp.choices[0].message.content
    stream = await aclient.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                                   extra_headers=fault("queue=0.3;keepalive=0.1"))
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == resp.choices[0].message.content
