# The official openai SDK (sync, async, stream, tools, errors) through the gateway to emulators,
# with virtual keys on (SQLite state).
from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from deepseek_kit.server.gateway.state import open_state

from .relay_helpers import GatewayThread, config_for
from .test_relay import TOOLS

PEPPER = "sdk-test-pepper-0123456789abcdef"
MSGS = [{"role": "user", "content": "Tell me about the sea."}]


@pytest.fixture
def gateway(emulator_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("DSK_GATEWAY_PEPPER", PEPPER)
    url = f"sqlite:///{tmp_path}/gw.db"

    async def make() -> tuple[str, str]:
        st = open_state(url, pepper=PEPPER.encode())
        key, _ = await st.create_key("sdk", budget_daily=Decimal("100"))
        flash_only, _ = await st.create_key("flash-only", models=["deepseek-flash"])
        await st.aclose()
        return key, flash_only

    key, flash_only = asyncio.run(make())
    a, b = emulator_factory(), emulator_factory()
    with GatewayThread(config_for(a, b, auth="keys", state=url)) as gw:
        yield gw, key, flash_only


def test_sync_chat_stream_and_tools(gateway):
    gw, key, _ = gateway
    with OpenAI(api_key=key, base_url=gw.base_url + "/v1", max_retries=0) as c:
        r = c.chat.completions.create(model="deepseek-flash", messages=MSGS)
        assert r.choices[0].message.content and r.usage.total_tokens > 0
        assert r.choices[0].message.model_extra["reasoning_content"]
        raw = c.chat.completions.with_raw_response.create(model="deepseek-flash", messages=MSGS)
        assert raw.headers.get("x-ds-trace-id")
        parts, reasoning, usage = [], [], None
        for chunk in c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                               stream_options={"include_usage": True}):
            if chunk.choices:
                d = chunk.choices[0].delta
                parts.append(d.content or "")
                reasoning.append((d.model_extra or {}).get("reasoning_content") or "")
            usage = chunk.usage or usage
        assert "".join(parts) and "".join(reasoning) and usage.prompt_tokens > 0
        r = c.chat.completions.create(
            model="deepseek-flash",
            tools=TOOLS,
            messages=[{"role": "user", "content": "weather in Paris? use the tool"}],
        )
        call = r.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) is not None
        # the SDK drops reasoning_content from the message it sends back: the gateway repairs it
        follow = c.chat.completions.create(model="deepseek-flash", tools=TOOLS, messages=[
            {"role": "user", "content": "weather in Paris? use the tool"},
            {"role": "assistant", "content": r.choices[0].message.content or "",
             "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "18C"}])
        assert follow.choices[0].message is not None
        assert {m.id for m in c.models.list()} >= {"deepseek-flash", "deepseek-v4-pro"}


async def test_async_stream_and_legacy_alias(gateway):
    gw, key, _ = gateway
    async with AsyncOpenAI(api_key=key, base_url=gw.base_url, max_retries=0) as c:
        stream = await c.chat.completions.create(model="deepseek-chat", messages=MSGS, stream=True)
        text = ""
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                assert not (chunk.choices[0].delta.model_extra or {}).get("reasoning_content")
        assert text  # deepseek-chat: served by deepseek-flash with thinking off
        r = await c.chat.completions.create(model="deepseek-reasoner", messages=MSGS)
        assert r.choices[0].message.model_extra["reasoning_content"]


async def test_sdk_errors(gateway):
    gw, _key, flash_only = gateway
    async with AsyncOpenAI(api_key="sk-dsk-wrongwro-" + "x" * 43, base_url=gw.base_url, max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError) as e:
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
        assert e.value.status_code == 401
    async with AsyncOpenAI(api_key=flash_only, base_url=gw.base_url, max_retries=0) as c:
        with pytest.raises(openai.PermissionDeniedError):
            await c.chat.completions.create(model="deepseek-v4-pro", messages=MSGS)
        with pytest.raises(openai.BadRequestError):
            await c.chat.completions.create(model="no-such-model", messages=MSGS)
        with pytest.raises(openai.UnprocessableEntityError):
            await c.chat.completions.create(model="deepseek-flash", messages="hi")  # type: ignore[arg-type]
        models = await c.models.list()
        assert [m.id for m in models.data] == ["deepseek-flash"]
