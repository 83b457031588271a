"""Stream resumption through prefix completion, against the real emulator: a broken stream, once
resumed, yields exactly the text the emulator sends unbroken. The emulator supports prefix
completion but is not DeepSeek's host, so these clients opt in (`prefix_completion=True`); the scope
rule itself is tested in tests/client/test_resume_scope.py. Over both transports (AiohttpTransport,
HttpToolsTransport): resets and stalls mid-stream are transport-level events."""

from __future__ import annotations

import json
import uuid

import pytest

from deepseek_kit import (
    AiohttpTransport,
    AsyncClient,
    HttpToolsTransport,
    Resumption,
    RetryPolicy,
    StreamError,
    StreamTimeoutError,
    Timeout,
)

MSGS = [{"role": "user", "content": "Tell me a long story about the sea."}]


def directive(spec: str) -> dict[str, str]:
    return {"X-DSK-Emulate": f"{spec};key={uuid.uuid4().hex[:10]}"}


@pytest.fixture(params=[AiohttpTransport, HttpToolsTransport], ids=["aiohttp", "httptools"])
async def client(emulator, request):
    c = AsyncClient(api_key="sk-resume", base_url=emulator.base_url, prefix_completion=True,
                    transport=request.param(),
                    retry=RetryPolicy(max_retries=1, initial_delay=0.01),
                    timeout=Timeout(first_token=10, idle=0.5, total=60))
    yield c
    await c.close()


async def reference(client, shaping: str, **kw):
    r = await client.chat.completions.create(model="deepseek-flash", messages=MSGS,
                                             extra_headers={"X-DSK-Emulate": shaping}, **kw)
    return r


async def streamed(client, headers, **kw):
    s = await client.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                             extra_headers=headers, **kw)
    content, reasoning, ids = [], [], set()
    async with s:
        async for chunk in s:
            ids.add(chunk.id)
            for ch in chunk.choices:
                content.append(ch.delta.content or "")
                reasoning.append(ch.delta.reasoning_content or "")
    return s, "".join(content), "".join(reasoning), ids


@pytest.mark.parametrize("think,fault", [
    (False, "reset_after=7"),          # reset mid-answer
    (True, "reset_after=4"),           # reset inside the reasoning
    (True, "reset_after=30"),          # reset inside the answer, after the reasoning
    (False, "error_event_after=9"),    # an error object mid-stream
])
async def test_resumed_stream_equals_the_unbroken_one(client, emulator, think, fault):
    shaping = "tokens=40;reasoning_tokens=12;chunk_tokens=1"
    ref = await reference(client, shaping, thinking=think)
    h = directive(f"{fault};times=1;{shaping}")
    s, content, reasoning, ids = await streamed(client, h, thinking=think)
    assert s.resumed == 1
    assert content == ref.choices[0].message.content
    assert reasoning == (ref.choices[0].message.reasoning_content or "")
    assert len(ids) == 1  # one stream id throughout
    final = s.get_final_completion()
    assert final.choices[0].message.content == ref.choices[0].message.content
    assert final.choices[0].finish_reason == "stop"
    assert emulator.state.requests_per_emulate[h["X-DSK-Emulate"]] == 2
    assert emulator.state.requests_per_path["/beta/chat/completions"] >= 1  # the continuation
    assert s.usage_estimated and final.usage.completion_tokens > 0


async def test_insufficient_system_resource_is_continued_with_exact_usage(client):
    shaping = "tokens=30;reasoning_tokens=0;chunk_tokens=2"
    ref = await reference(client, shaping, thinking=False)
    s, content, _, _ = await streamed(client, directive(f"insufficient_after=5;times=1;{shaping}"),
                                      thinking=False, stream_options={"include_usage": True})
    final = s.get_final_completion()
    assert s.resumed == 1 and not s.usage_estimated
    assert content == ref.choices[0].message.content and final.choices[0].finish_reason == "stop"
    # both pieces' usage came from the server: the completion tokens add up to the unbroken answer's
    assert final.usage.completion_tokens == ref.usage.completion_tokens
    assert final.usage.prompt_tokens > ref.usage.prompt_tokens  # the continuation's prompt had the prefix


async def test_idle_timeout_mid_stream_is_resumed(client):
    shaping = "tokens=20;reasoning_tokens=0;chunk_tokens=1"
    ref = await reference(client, shaping, thinking=False)
    s, content, _, _ = await streamed(client, directive(f"delay_chunks=3;times=1;{shaping}"), thinking=False)
    assert s.resumed == 1 and content == ref.choices[0].message.content


async def test_break_inside_tool_call_arguments_is_not_resumed(client, emulator):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
        "required": ["query", "limit"]}}}]
    h = directive("reset_after=5;times=1;chunk_tokens=1;reasoning_tokens=2")
    s = await client.chat.completions.create(
        model="deepseek-flash",
        stream=True,
        extra_headers=h,
        tools=tools,
        messages=[{"role": "user", "content": "use lookup"}],
    )
    with pytest.raises(StreamError) as ei:
        await s.until_done()
    call = ei.value.partial.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup"
    with pytest.raises(json.JSONDecodeError):
        json.loads(call.function.arguments)  # cut mid-arguments: that is why it is not resumed
    assert emulator.state.requests_per_emulate[h["X-DSK-Emulate"]] == 1


async def test_opt_out_and_bounded_attempts(client, emulator):
    h = directive("reset_after=6;reasoning_tokens=0")  # every piece breaks
    s = await client.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                             thinking=False, extra_headers=h, resume=False)
    with pytest.raises(StreamError):
        await s.until_done()
    assert emulator.state.requests_per_emulate[h["X-DSK-Emulate"]] == 1
    h2 = directive("reset_after=6;reasoning_tokens=0")
    s = await client.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                             thinking=False, extra_headers=h2)
    with pytest.raises(StreamError) as ei:
        await s.until_done()
    assert s.resumed == 2  # Resumption() default: two continuations, then the error
    assert emulator.state.requests_per_emulate[h2["X-DSK-Emulate"]] == 3
    assert ei.value.partial.choices[0].message.content  # everything that arrived is kept
    c = AsyncClient(api_key="sk-x", base_url=emulator.base_url, prefix_completion=True,
                    resumption=Resumption(enabled=False))
    s = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                        extra_headers=directive("reset_after=6"))
    with pytest.raises(StreamError):
        await s.until_done()
    await c.close()


async def test_total_timeout_is_not_resumed(emulator):
    c = AsyncClient(api_key="sk-x", base_url=emulator.base_url, prefix_completion=True,
                    timeout=Timeout(first_token=5, idle=5, total=0.8))
    s = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                        extra_headers=directive("delay_chunks=0.2;tokens=100"))
    with pytest.raises(StreamTimeoutError) as ei:
        await s.until_done()
    assert ei.value.which == "total" and s.resumed == 0
    await c.close()
