"""The client against the real emulator over loopback: every fault of the emulator and the client's
answer to it (typed error or recovery, attempt counts, nothing hanging past its timeout)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from deepseek_kit import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    Client,
    EmptyResponseError,
    InsufficientBalanceError,
    InternalServerError,
    RateLimitError,
    Resumption,
    RetryPolicy,
    ServiceUnavailableError,
    StreamError,
    StreamTimeoutError,
    Timeout,
)

MSGS = [{"role": "user", "content": "Tell me about the sea."}]
# These tests pin the foundation's behaviour (StreamError with the partial answer); resumption on
# top of it is tested in tests/client/test_resume.py.
NO_RESUME = Resumption(enabled=False)
FAST = RetryPolicy(max_retries=3, initial_delay=0.01, max_delay=0.05)


def key() -> str:
    return uuid.uuid4().hex[:12]


def fault(spec: str) -> dict[str, str]:
    """A per-request fault directive, made unique to the calling test."""
    return {"X-DSK-Emulate": f"{spec};key={key()}"}


@pytest.fixture
async def client(emulator):
    c = AsyncClient(
        resumption=NO_RESUME,
        api_key="sk-live-test-key-abcdef",
        base_url=emulator.base_url,
        retry=FAST,
        timeout=Timeout(connect=2, first_token=10, idle=10, total=30),
    )
    yield c
    await c.close()


@pytest.fixture
def emulator_keys(emulator_factory):
    return emulator_factory(api_keys={"sk-the-only-valid-key-1234"})


@pytest.fixture
def emulator_broke(emulator_factory):
    return emulator_factory(balance={"sk-broke-account-0000": "0"})


def hits(emulator, headers: dict[str, str]) -> int:
    return emulator.state.requests_per_emulate.get(headers["X-DSK-Emulate"], 0)


# ---------------------------------------------------------------------------------------------
# happy paths


async def test_non_stream_thinking_answer_is_typed_and_deterministic(client):
    a = await client.chat.completions.create(model="deepseek-flash", messages=MSGS)
    b = await client.chat.completions.create(model="deepseek-flash", messages=MSGS)
    m = a.choices[0].message
    assert m.content and m.reasoning_content
    assert m.content == b.choices[0].message.content
    assert a.choices[0].finish_reason == "stop"
    u = a.usage
    assert u.prompt_tokens == u.prompt_cache_hit_tokens + u.prompt_cache_miss_tokens
    assert u.completion_tokens_details is not None and u.reasoning_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


async def test_non_thinking_has_no_reasoning(client):
    r = await client.chat.completions.create(model="deepseek-flash", messages=MSGS, thinking=False)
    assert r.choices[0].message.reasoning_content is None
    assert r.usage.completion_tokens_details is None


async def test_stream_reasoning_then_content_and_final_completion(client):
    kinds = []
    async with await client.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                                    stream_options={"include_usage": True}) as s:
        async for chunk in s:
            for ch in chunk.choices:
                if ch.delta.reasoning_content:
                    kinds.append("r")
                if ch.delta.content:
                    kinds.append("c")
        final = s.get_final_completion()
    assert "r" in kinds and "c" in kinds
    assert kinds.index("c") > max(i for i, k in enumerate(kinds) if k == "r")  # reasoning first
    ref = await client.chat.completions.create(model="deepseek-flash", messages=MSGS)
    assert final.choices[0].message.content == ref.choices[0].message.content
    assert final.choices[0].message.reasoning_content == ref.choices[0].message.reasoning_content
    assert final.usage is not None and final.usage.completion_tokens == ref.usage.completion_tokens


async def test_stream_with_legacy_trailing_usage_chunk(client):
    h = {"X-DSK-Emulate": "legacy_usage_chunk"}
    s = await client.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                             extra_headers=h, stream_options={"include_usage": True})
    final = await s.until_done()
    assert final.usage is not None and final.usage.total_tokens > 0


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "days": {"type": "integer"},
        "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city", "days", "unit"]}}}]


async def test_streamed_tool_calls_assemble_to_valid_json(client):
    msgs = [{"role": "user", "content": "What's the weather in Paris? Use the tool."}]
    s = await client.chat.completions.create(model="deepseek-flash", messages=msgs, tools=TOOLS, stream=True)
    final = await s.until_done()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_00_") and call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "days", "unit"} and args["unit"] in ("c", "f")
    ns = await client.chat.completions.create(model="deepseek-flash", messages=msgs, tools=TOOLS)
    assert json.loads(ns.choices[0].message.tool_calls[0].function.arguments) == args


async def test_models_balance_fim_and_prefix(client):
    models = await client.models.list()
    assert {"deepseek-flash", "deepseek-v4-pro"} <= {m.id for m in models}
    bal = await client.user.balance()
    assert bal.is_available and bal.balance_infos[0].currency in ("CNY", "USD")
    fim = await client.beta.completions.create(model="deepseek-flash", prompt="def add(a, b):",
                                               suffix="    return c", max_tokens=20)
    assert fim.object == "text_completion" and fim.choices[0].text
    pre = await client.chat.completions.create(model="deepseek-flash", thinking=False, messages=[
        {"role": "user", "content": "Write quicksort"},
        {"role": "assistant", "content": "```python\n", "prefix": True}])
    assert pre.choices[0].message.content is not None


async def test_json_mode(client):
    r = await client.chat.completions.create(
        model="deepseek-flash", thinking=False, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Answer in json: a list of two fruits"}])
    assert isinstance(json.loads(r.choices[0].message.content), dict)


# ---------------------------------------------------------------------------------------------
# errors the server chooses


async def test_auth_error_typed_and_key_redacted(emulator_keys):
    secret = "sk-wrong-key-zzzzzzzzzz9999"
    c = AsyncClient(resumption=NO_RESUME, api_key=secret, base_url=emulator_keys.base_url, retry=FAST)
    with pytest.raises(AuthenticationError) as ei:
        await c.models.list()
    e = ei.value
    assert e.status_code == 401 and e.trace_id and len(e.trace_id) == 32
    assert e.attempts == 1
    for text in (str(e), repr(e), json.dumps(e.body), str(e.headers)):
        assert secret not in text
    await c.close()


async def test_insufficient_balance_is_never_retried(emulator_broke):
    c = AsyncClient(
        resumption=NO_RESUME, api_key="sk-broke-account-0000", base_url=emulator_broke.base_url, retry=FAST
    )
    with pytest.raises(InsufficientBalanceError) as ei:
        await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
    assert ei.value.attempts == 1 and ei.value.status_code == 402
    await c.close()


@pytest.mark.parametrize("status,cls", [(429, RateLimitError), (500, InternalServerError),
                                        (503, ServiceUnavailableError)])
async def test_transient_status_retried_then_recovers(client, emulator, status, cls):
    h = fault(f"status={status};times=2")
    r = await client.chat.completions.create(model="deepseek-flash", messages=MSGS, extra_headers=h)
    assert r.choices[0].message.content
    assert hits(emulator, h) == 3


@pytest.mark.parametrize("status,cls", [(429, RateLimitError), (500, InternalServerError),
                                        (503, ServiceUnavailableError)])
async def test_persistent_status_gives_typed_error_after_bounded_attempts(client, emulator, status, cls):
    h = fault(f"status={status}")
    with pytest.raises(cls) as ei:
        await client.chat.completions.create(model="deepseek-flash", messages=MSGS, extra_headers=h)
    assert ei.value.attempts == 4 and hits(emulator, h) == 4
    assert ei.value.trace_id


async def test_retry_after_is_honoured(client, emulator):
    h = fault("status=429;retry_after_ms=400;times=1")
    t0 = time.monotonic()
    await client.chat.completions.create(model="deepseek-flash", messages=MSGS, extra_headers=h)
    assert time.monotonic() - t0 >= 0.4  # waited what the server asked, not the 10 ms backoff
    assert hits(emulator, h) == 2
    h2 = fault("status=503;retry_after=1;times=1")
    t0 = time.monotonic()
    await client.chat.completions.create(model="deepseek-flash", messages=MSGS, extra_headers=h2)
    assert time.monotonic() - t0 >= 1.0


async def test_stream_retried_on_status_before_first_token(client, emulator):
    h = fault("status=503;times=1")
    s = await client.chat.completions.create(
        model="deepseek-flash", messages=MSGS, stream=True, extra_headers=h
    )
    assert (await s.until_done()).choices[0].message.content
    assert hits(emulator, h) == 2 and s.attempts == 2


# ---------------------------------------------------------------------------------------------
# connection faults


async def test_reset_before_headers_retried_then_recovers(client, emulator):
    h = fault("reset_before_headers;times=1")
    r = await client.chat.completions.create(model="deepseek-flash", messages=MSGS, extra_headers=h)
    assert r.choices[0].message.content and hits(emulator, h) == 2


async def test_reset_before_headers_persistent_is_connection_error(client, emulator):
    h = fault("reset_before_headers")
    with pytest.raises(APIConnectionError) as ei:
        await client.chat.completions.create(model="deepseek-flash", messages=MSGS, extra_headers=h)
    assert not isinstance(ei.value, APITimeoutError)
    assert ei.value.attempts == 4 and hits(emulator, h) == 4


async def test_empty_and_blank_200_retried(client, emulator):
    for spec in ("empty_body", "blank_body"):
        h = fault(f"{spec};times=2")
        r = await client.chat.completions.create(model="deepseek-flash", messages=MSGS, extra_headers=h)
        assert r.choices[0].message.content and hits(emulator, h) == 3
        h = fault(spec)
        with pytest.raises(EmptyResponseError):
            await client.chat.completions.create(model="deepseek-flash", messages=MSGS, extra_headers=h)
        assert hits(emulator, h) == 4


async def test_reset_mid_stream_raises_stream_error_with_partial_and_no_replay(client, emulator):
    h = fault("reset_after=6;tokens=60;chunk_tokens=1;reasoning_tokens=0")
    got = []
    s = await client.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                             thinking=False, extra_headers=h)
    with pytest.raises(StreamError) as ei:
        async for chunk in s:
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    partial = ei.value.partial
    assert partial is not None and partial.choices[0].message.content == "".join(got)
    assert got  # tokens reached us ...
    assert hits(emulator, h) == 1  # ... so the stream was not replayed
    full = await client.chat.completions.create(
        model="deepseek-flash",
        messages=MSGS,
        thinking=False,
        extra_headers={"X-DSK-Emulate": "tokens=60;chunk_tokens=1;reasoning_tokens=0"},
    )
    assert full.choices[0].message.content.startswith("".join(got))


async def test_reset_before_first_event_is_retried(client, emulator):
    h = fault("reset_after=0;times=1")
    s = await client.chat.completions.create(
        model="deepseek-flash", messages=MSGS, stream=True, extra_headers=h
    )
    assert (await s.until_done()).choices[0].message.content
    assert hits(emulator, h) == 2


async def test_error_event_mid_stream(client):
    h = fault("error_event_after=3")
    s = await client.chat.completions.create(
        model="deepseek-flash", messages=MSGS, stream=True, extra_headers=h
    )
    with pytest.raises(StreamError) as ei:
        await s.until_done()
    assert ei.value.error is not None and ei.value.error.message
    assert ei.value.partial is not None


async def test_insufficient_system_resource_finish(client):
    h = {"X-DSK-Emulate": "insufficient_after=4;reasoning_tokens=0"}
    r = await client.chat.completions.create(
        model="deepseek-flash", messages=MSGS, thinking=False, extra_headers=h
    )
    assert r.choices[0].finish_reason == "insufficient_system_resource"
    s = await client.chat.completions.create(model="deepseek-flash", messages=MSGS, thinking=False,
                                             stream=True, extra_headers=h)
    final = await s.until_done()
    assert final.choices[0].finish_reason == "insufficient_system_resource"
    assert final.choices[0].message.content == r.choices[0].message.content


# ---------------------------------------------------------------------------------------------
# timeouts: keep-alives never reset them; nothing hangs past its limit


async def test_stall_with_keepalives_fires_first_token_timeout(emulator):
    c = AsyncClient(
        resumption=NO_RESUME,
        api_key="sk-x",
        base_url=emulator.base_url,
        retry=RetryPolicy(max_retries=1, initial_delay=0.01),
        timeout=Timeout(first_token=0.6, idle=5, total=30),
    )
    h = fault("stall_first_token=30;keepalive=0.1")
    t0 = time.monotonic()
    for stream in (True, False):
        with pytest.raises(APITimeoutError) as ei:
            r = await c.chat.completions.create(
                model="deepseek-flash", messages=MSGS, stream=stream, extra_headers=h
            )
            if stream:
                await r.until_done()
        assert ei.value.which == "first_token" and ei.value.attempts == 2
        assert isinstance(ei.value, TimeoutError)
    assert time.monotonic() - t0 < 15  # two calls x two attempts x 0.6 s, not the server's 30 s stall
    await c.close()


async def test_delay_before_headers_fires_first_token_timeout(emulator):
    c = AsyncClient(resumption=NO_RESUME, api_key="sk-x", base_url=emulator.base_url, max_retries=0,
                    timeout=Timeout(first_token=0.5))
    with pytest.raises(APITimeoutError) as ei:
        await c.chat.completions.create(
            model="deepseek-flash", messages=MSGS, extra_headers=fault("delay_headers=20")
        )
    assert ei.value.which == "first_token" and "first token" in str(ei.value)
    # the client still works afterwards (the cancelled attempt left no broken state behind)
    assert (await c.models.list()).data
    await c.close()


async def test_queue_keepalives_are_tolerated(client):
    h = {"X-DSK-Emulate": "queue=0.5;keepalive=0.1"}
    r = await client.chat.completions.create(model="deepseek-flash", messages=MSGS, extra_headers=h)
    s = await client.chat.completions.create(
        model="deepseek-flash", messages=MSGS, extra_headers=h, stream=True
    )
    final = await s.until_done()
    assert r.choices[0].message.content == final.choices[0].message.content


async def test_slow_chunks_fire_idle_timeout_with_partial(emulator):
    c = AsyncClient(resumption=NO_RESUME, api_key="sk-x", base_url=emulator.base_url, max_retries=0,
                    timeout=Timeout(first_token=10, idle=0.4, total=30))
    ok = await (
        await c.chat.completions.create(
            model="deepseek-flash",
            messages=MSGS,
            stream=True,
            extra_headers={"X-DSK-Emulate": "delay_chunks=0.05;tokens=10;reasoning_tokens=2"},
        )
    ).until_done()
    assert ok.choices[0].message.content
    s = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                        extra_headers=fault("delay_chunks=3"))
    t0 = time.monotonic()
    with pytest.raises(StreamTimeoutError) as ei:
        await s.until_done()
    # the 0.4 s idle limit governs once the first event arrived, not what was left of first_token
    assert time.monotonic() - t0 < 2.5
    e = ei.value
    assert e.which == "idle" and isinstance(e, APITimeoutError) and isinstance(e, StreamError)
    assert e.partial is not None
    await c.close()


async def test_total_timeout_bounds_a_slow_stream(emulator):
    c = AsyncClient(resumption=NO_RESUME, api_key="sk-x", base_url=emulator.base_url, max_retries=0,
                    timeout=Timeout(first_token=10, idle=10, total=1.0))
    s = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                        extra_headers=fault("delay_chunks=0.2;tokens=200"))
    t0 = time.monotonic()
    with pytest.raises(StreamTimeoutError) as ei:
        await s.until_done()
    assert ei.value.which == "total" and time.monotonic() - t0 < 5
    await c.close()


async def test_keepalive_forever_after_last_chunk_ends_normally(emulator):
    c = AsyncClient(resumption=NO_RESUME, api_key="sk-x", base_url=emulator.base_url, max_retries=0,
                    timeout=Timeout(first_token=10, idle=60, total=120, tail=0.5))
    s = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                        extra_headers=fault("keepalive_forever;keepalive=0.1"))
    t0 = time.monotonic()
    final = await s.until_done()
    assert final.choices[0].finish_reason == "stop" and final.choices[0].message.content
    assert time.monotonic() - t0 < 10  # ended by the 0.5 s tail limit, not the 60 s idle one
    await c.close()


# ---------------------------------------------------------------------------------------------
# connection hygiene


async def test_leaving_a_stream_early_releases_the_connection(client, emulator):
    gone_before = emulator.state.disconnects
    s = await client.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                             extra_headers={"X-DSK-Emulate": "tokens=400;delay_chunks=0.01"})
    async with s:
        async for _ in s:
            break
    for _ in range(100):
        if emulator.state.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert emulator.state.in_flight == 0
    assert emulator.state.disconnects > gone_before
    connector = client._transport._session.connector
    assert len(connector._acquired) == 0
    # the pool still serves new requests
    assert (await client.chat.completions.create(model="deepseek-flash", messages=MSGS)).choices


async def test_finished_streams_reuse_connections(client):
    for _ in range(5):
        await (
            await client.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True)
        ).until_done()
    connector = client._transport._session.connector
    assert len(connector._acquired) == 0
    assert sum(len(v) for v in connector._conns.values()) == 1  # one keep-alive socket reused


# ---------------------------------------------------------------------------------------------
# sync twin


def test_sync_client_mirrors_async(emulator):
    with Client(api_key="sk-sync-key-000", base_url=emulator.base_url, retry=FAST) as c:
        r = c.chat.completions.create(model="deepseek-flash", messages=MSGS)
        with c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True) as s:
            parts = [ch.choices[0].delta.content or "" for ch in s if ch.choices]
            final = s.get_final_completion()
        assert "".join(parts) == r.choices[0].message.content == final.choices[0].message.content
        assert c.models.list().data and c.user.balance().is_available
        with pytest.raises(ServiceUnavailableError):
            c.chat.completions.create(
                model="deepseek-flash", messages=MSGS, extra_headers=fault("status=503"), max_retries=1
            )
        assert "sk-sync-key-000" not in repr(c)


# ---------------------------------------------------------------------------------------------
# completion hooks used by pipeline steps (leases, usage correction, metrics)


async def test_done_callbacks_fire_once_with_outcome_and_usage(client):
    from deepseek_kit._transport.request import Response

    seen: list[tuple[str, int]] = []

    class Spy:
        async def handle(self, request, call_next):
            resp: Response = await call_next(request)
            resp.add_done_callback(
                lambda r: seen.append((r.outcome, r.usage.total_tokens if r.usage else -1))
            )
            return resp

    c = AsyncClient(
        resumption=NO_RESUME, api_key="sk-x", base_url=client.base_url, steps=[Spy()], max_retries=0
    )
    s = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True)
    await s.until_done()
    assert seen == [("ok", s.get_final_completion().usage.total_tokens)]
    s = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True)
    async with s:
        async for _ in s:
            break
    assert seen[-1] == ("closed", -1)
    s = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True,
                                        extra_headers=fault("reset_after=3"))
    with pytest.raises(StreamError):
        await s.until_done()
    assert seen[-1][0] == "broken" and len(seen) == 3
    await c.close()
