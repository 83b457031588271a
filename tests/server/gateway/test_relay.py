# The relay between callers and real emulators: DeepSeek fields reach the caller intact, stream
# and non-stream; failover before the first token; errors after it; no fake [DONE].
from __future__ import annotations

import json

import aiohttp
import pytest

from deepseek_kit import AsyncClient

from .relay_helpers import GatewayThread, config_for

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                         "required": ["city"]}}}]


@pytest.fixture
def pair(emulator_factory):
    a, b = emulator_factory(), emulator_factory()
    with GatewayThread(config_for(a, b)) as gw:
        yield gw, a, b


async def _sse(url: str, body: dict, headers=None) -> tuple[int, dict, list[bytes], bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + "/chat/completions", json=body, headers=headers or {}) as r,
    ):
        raw = await r.read()
        events = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
        return r.status, dict(r.headers), events, raw


async def test_stream_fields_reach_the_caller(pair):
    gw, a, _b = pair
    body = {"model": "deepseek-flash", "stream": True, "logprobs": True, "top_logprobs": 2,
            "messages": [{"role": "user", "content": "hello there"}]}
    status, headers, events, raw = await _sse(gw.base_url, body)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert headers.get("x-ds-trace-id") and headers["x-dsk-upstream"] == "up0"
    assert events[-1] == b"[DONE]" and raw.endswith(b"data: [DONE]\n\n")
    chunks = [json.loads(e) for e in events[:-1]]
    assert any(c["choices"][0]["delta"].get("reasoning_content") for c in chunks)
    assert any(c["choices"][0]["delta"].get("content") for c in chunks)
    assert any(c["choices"][0].get("logprobs") for c in chunks)
    usage = chunks[-1]["usage"]
    assert {"prompt_cache_hit_tokens", "prompt_cache_miss_tokens"} <= set(usage)
    assert usage["completion_tokens_details"]["reasoning_tokens"] > 0
    # the payloads are the upstream's bytes: re-encoding would reorder or respace them
    direct = await _sse(a.base_url, body, {"Authorization": "Bearer sk-x"})
    assert [len(e) for e in events] == [len(e) for e in direct[2]]


async def test_stream_tool_call_fragments(pair):
    gw, _, _ = pair
    body = {"model": "deepseek-flash", "stream": True, "tools": TOOLS, "tool_choice": "auto",
            "messages": [{"role": "user", "content": "weather in Paris? use the tool"}]}
    status, _, events, _ = await _sse(gw.base_url, body)
    chunks = [json.loads(e) for e in events[:-1]]
    frags = [tc for c in chunks for tc in (c["choices"][0]["delta"].get("tool_calls") or [])]
    assert status == 200 and frags, "the emulator answers tool_calls for this prompt"
    assert frags[0]["id"] and frags[0]["function"]["name"] == "get_weather"
    assert all("index" in f for f in frags)
    assert json.loads("".join(f["function"].get("arguments", "") for f in frags)) is not None
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_non_stream_fields_and_our_client(pair):
    gw, _, _ = pair
    async with AsyncClient(api_key="sk-caller", base_url=gw.base_url, max_retries=0) as c:
        r = await c.chat.completions.create(
            model="deepseek-flash", messages=[{"role": "user", "content": "hi"}], logprobs=True
        )
        assert r.choices[0].message.reasoning_content and r.choices[0].message.content
        assert r.usage.prompt_cache_miss_tokens is not None
        assert r.usage.completion_tokens_details.reasoning_tokens > 0
        assert r.choices[0].logprobs is not None
        async with await c.chat.completions.create(
                model="deepseek-flash", messages=[{"role": "user", "content": "hi"}], stream=True) as s:
            async for _ in s:
                pass
            final = s.get_final_completion()
        assert final.choices[0].message.reasoning_content and final.usage.total_tokens > 0
        models = await c.models.list()
        assert {m.id for m in models.data} >= {"deepseek-flash", "deepseek-chat"}
