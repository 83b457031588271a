"""Our client against servers that speak vLLM, SGLang, Ollama and llama.cpp (tests/helpers/dialect_servers.py,
byte-faithful per docs/dialects.md): whichever answered, the caller sees DeepSeek's shape —
content, reasoning_content, tool calls with ids and names, usage when the server sent it, and typed
errors that carry the server's message.

Streams go through `client.chat.completions.create(stream=True)` (normalized by the accumulator).
Non-stream answers go through the real pipeline (`client.request`) and
`_dialects.decode_chat_completion`, the function the typed layer calls; the tests at the end check
the same through `create()` once that call is wired in.
"""

from __future__ import annotations

import json

import msgspec
import pytest

from deepseek_kit import (
    APIStatusError,
    AsyncClient,
    BadRequestError,
    NotFoundError,
    RetryPolicy,
    StreamError,
    Timeout,
    UnprocessableEntityError,
)
from deepseek_kit._wire.accumulate import ChunkAccumulator
from deepseek_kit._wire.dialects import (
    decode_chat_completion,
    error_object,
    normalize_completion,
    stream_error,
)
from deepseek_kit._wire.errors import make_status_error, status_for_error
from deepseek_kit._wire.types import ChatCompletion, chat_completion_decoder, chunk_decoder
from tests.helpers.dialect_servers import (
    CALLS,
    COMPLETION_TOKENS,
    CONTENT,
    DIALECTS,
    PROMPT_TOKENS,
    REASONING,
    serve,
)

MSGS = [{"role": "user", "content": "Tell me about the sea."}]
TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n, _ in CALLS]
KEY = "sk-dialect-test-key-0123456789"
ANSWER, THOUGHT = "".join(CONTENT), "".join(REASONING)
WANT_CALLS = [(n, json.loads("".join(p))) for n, p in CALLS]


async def _served(dialect):
    async with serve(dialect) as url:
        c = AsyncClient(api_key=KEY, base_url=url, retry=RetryPolicy(max_retries=1, initial_delay=0.01),
                        timeout=Timeout(connect=2, first_token=10, idle=10, total=30))
        yield dialect, c
        await c.close()


@pytest.fixture(params=DIALECTS)
async def served(request):
    async for pair in _served(request.param):
        yield pair


@pytest.fixture(params=[d for d in DIALECTS if d != "llamacpp-legacy"])
async def served_modern_errors(request):
    """llama.cpp before PR #16109 reports stream errors differently: tested on their own below."""
    async for pair in _served(request.param):
        yield pair


async def create(client: AsyncClient, headers: dict[str, str] | None = None, **fields) -> ChatCompletion:
    """A non-stream call through the client's pipeline, decoded the way the typed layer does."""
    body = msgspec.json.encode({"model": "local-model", "messages": MSGS, **fields})
    resp = await client.request("POST", "/chat/completions", body=body, extra_headers=headers)
    return decode_chat_completion(resp.status, resp.headers, resp.body, secrets=(KEY,))


async def stream(client: AsyncClient, **kw):
    s = await client.chat.completions.create(model=kw.pop("model", "local-model"), messages=MSGS,
                                             stream=True, **kw)
    async with s:
        chunks = [c async for c in s]
    return chunks, s.get_final_completion()


def assert_calls(msg, dialect: str) -> None:
    calls = msg.tool_calls
    assert calls is not None, dialect
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == WANT_CALLS
    ids = [c.id for c in calls]
    assert all(ids) and len(set(ids)) == len(ids), ids
    assert all(c.type == "function" for c in calls)


def assert_deepseek_shape(msg) -> None:
    """Nothing but DeepSeek's fields is visible: the dialect's `reasoning` alias is gone."""
    d = msg.to_dict()
    assert "reasoning" not in d
    assert set(d) == {"role", "content", "reasoning_content", "tool_calls"}
    assert "reasoning" not in msg.to_param()


# ---------------------------------------------------------------------------------------------
# non-stream


async def test_answer_has_one_shape(served):
    dialect, client = served
    comp = await create(client)
    msg = comp.choices[0].message
    assert (msg.content, msg.reasoning_content, msg.tool_calls) == (ANSWER, THOUGHT, None), dialect
    assert comp.choices[0].finish_reason == "stop"
    assert comp.usage is not None
    assert (comp.usage.prompt_tokens, comp.usage.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert_deepseek_shape(msg)


async def test_tool_calls_have_one_shape(served):
    dialect, client = served
    comp = await create(client, tools=TOOLS)
    msg = comp.choices[0].message
    assert_calls(msg, dialect)
    assert msg.reasoning_content == THOUGHT
    assert not msg.content
    assert comp.choices[0].finish_reason == "tool_calls"
    assert_deepseek_shape(msg)
    # the answer goes back into the history as DeepSeek expects it
    param = msg.to_param()
    assert param["reasoning_content"] == THOUGHT and len(param["tool_calls"]) == 2


# ---------------------------------------------------------------------------------------------
# streams


async def test_stream_assembles_one_shape_with_usage(served):
    dialect, client = served
    chunks, comp = await stream(client, stream_options={"include_usage": True})
    msg = comp.choices[0].message
    assert (msg.content, msg.reasoning_content, msg.tool_calls) == (ANSWER, THOUGHT, None), dialect
    assert comp.choices[0].finish_reason == "stop"
    assert comp.usage is not None and comp.usage.total_tokens == PROMPT_TOKENS + COMPLETION_TOKENS
    # the chunks the caller iterated carry DeepSeek's field too
    seen = "".join(c.choices[0].delta.reasoning_content or "" for c in chunks if c.choices)
    assert seen == THOUGHT
    assert all("reasoning" not in c.choices[0].delta.to_dict() for c in chunks if c.choices)


async def test_stream_without_usage_has_none(served):
    dialect, client = served
    _, comp = await stream(client, stream_options={"include_usage": False})
    assert comp.choices[0].message.content == ANSWER
    assert comp.usage is None, f"{dialect} only sends usage when asked (stream_options.include_usage)"


async def test_stream_tool_calls_have_ids_and_names(served):
    dialect, client = served
    _, comp = await stream(client, tools=TOOLS)
    msg = comp.choices[0].message
    assert_calls(msg, dialect)
    assert msg.reasoning_content == THOUGHT
    assert comp.choices[0].finish_reason == "tool_calls"


# ---------------------------------------------------------------------------------------------
# errors


NOT_FOUND = {"vllm": "does not exist", "vllm-legacy": "does not exist", "ollama": "not found",
             "ollama-indexed": "not found"}


async def test_unknown_model_is_a_typed_not_found(served):
    dialect, client = served
    if dialect not in NOT_FOUND:
        comp = await create(client, model="missing-model")  # SGLang and llama-server ignore `model`
        assert comp.choices[0].message.content == ANSWER
        return
    with pytest.raises(NotFoundError) as ei:
        await create(client, model="missing-model")
    assert NOT_FOUND[dialect] in ei.value.message and "missing-model" in ei.value.message
    assert ei.value.status_code == 404 and ei.value.type


CONTEXT = {"vllm": "maximum context length", "vllm-legacy": "maximum context length",
           "sglang": "context length", "ollama": "too short", "ollama-indexed": "too short",
           "llamacpp": "exceeds the available context size", "llamacpp-legacy": "exceeds the available"}


async def test_request_error_is_typed_with_the_servers_message(served):
    dialect, client = served
    with pytest.raises(BadRequestError) as ei:
        await create(client, headers={"X-Scenario": "context"})
    assert CONTEXT[dialect] in ei.value.message
    assert ei.value.attempts == 1  # a 400 is never retried


async def test_stream_refused_before_the_first_token_is_typed(served_modern_errors):
    dialect, client = served_modern_errors
    with pytest.raises(BadRequestError) as ei:
        await stream(client, extra_headers={"X-Scenario": "context"})
    assert CONTEXT[dialect] in ei.value.message


async def test_error_inside_a_stream_is_a_stream_error_with_the_partial_answer(served_modern_errors):
    dialect, client = served_modern_errors
    with pytest.raises(StreamError) as ei:
        await stream(client, extra_headers={"X-Scenario": "midstream"})
    partial = ei.value.partial
    assert partial is not None and partial.choices[0].message.reasoning_content == THOUGHT
    assert partial.choices[0].message.content == ANSWER
    if dialect.startswith("ollama"):
        # Ollama turns the error into an empty chunk and ends the body without [DONE]
        assert "before [DONE]" in ei.value.message
    else:
        assert ei.value.error is not None and ei.value.error.message in ei.value.message
        assert ei.value.error.code in (500, 503)


async def test_ok_status_carrying_an_error_raises_the_error_it_names():
    async with serve("vllm") as url, AsyncClient(api_key=KEY, base_url=url) as client:
        with pytest.raises(BadRequestError) as ei:
            await create(client, headers={"X-Scenario": "ok-error"})
    assert "`max_tokens` must be positive" in ei.value.message
    assert ei.value.status_code == 400 and ei.value.type == "BadRequestError"


async def test_fastapi_validation_detail_reads_as_a_sentence():
    async with serve("sglang") as url, AsyncClient(api_key=KEY, base_url=url) as client:
        with pytest.raises(UnprocessableEntityError) as ei:
            await create(client, headers={"X-Scenario": "invalid"})
    assert ei.value.message == "body.messages.0.role: Input should be 'system', 'user', 'assistant' or 'tool'"


async def test_legacy_llamacpp_error_field_before_any_token_is_typed():
    async with serve("llamacpp-legacy") as url, AsyncClient(api_key=KEY, base_url=url) as client:
        with pytest.raises(BadRequestError) as ei:
            await stream(client, extra_headers={"X-Scenario": "context"})
    assert "exceeds the available context size" in ei.value.message


async def test_legacy_llamacpp_error_field_mid_stream_is_a_stream_error():
    async with serve("llamacpp-legacy") as url, AsyncClient(api_key=KEY, base_url=url) as client:
        with pytest.raises(StreamError) as ei:
            await stream(client, extra_headers={"X-Scenario": "midstream"})
    assert "failed to decode the batch" in ei.value.message


# ---------------------------------------------------------------------------------------------
# DeepSeek pays nothing: its answers come out exactly as the plain decoder gives them


async def test_deepseek_answers_pass_through_unchanged(emulator):
    async with AsyncClient(api_key=KEY, base_url=emulator.base_url) as client:
        body = msgspec.json.encode({"model": "deepseek-flash", "messages": MSGS})
        resp = await client.request("POST", "/chat/completions", body=body)
        plain = chat_completion_decoder.decode(resp.body)
        assert decode_chat_completion(resp.status, resp.headers, resp.body).to_json() == plain.to_json()
        s = await client.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True)
        async with s:
            chunks = [c async for c in s]
        assert chunks and all(b"\"reasoning\":" not in c.to_json().encode() for c in chunks)


# ---------------------------------------------------------------------------------------------
# pure logic


def test_reasoning_alias_never_doubles_text():
    comp = chat_completion_decoder.decode(
        b'{"choices":[{"message":{"content":"a","reasoning_content":"r","reasoning":"r"}}]}')
    msg = normalize_completion(comp).choices[0].message
    assert msg.reasoning_content == "r" and "reasoning" not in msg.to_dict()
    acc = ChunkAccumulator()
    for p in (b'{"choices":[{"delta":{"reasoning":"x","reasoning_content":"x"}}]}',
              b'{"choices":[{"delta":{"reasoning":"y"}}]}',
              b'{"choices":[{"delta":{"reasoning":null,"content":"c"},"finish_reason":"stop"}]}'):
        acc.add(chunk_decoder.decode(p))
    m = acc.completion().choices[0].message
    assert (m.reasoning_content, m.content) == ("xy", "c")


def test_reused_and_missing_tool_call_indexes_split_by_id():
    acc = ChunkAccumulator()
    frags = [  # Ollama: whole calls, all at index 0; then a server that sends index null
        {"index": 0, "id": "a", "function": {"name": "f", "arguments": "{}"}},
        {"index": 0, "id": "b", "function": {"name": "g", "arguments": "{\"k\""}},
        {"index": 0, "function": {"arguments": ": 1}"}},
        {"index": None, "id": "c", "function": {"name": "h", "arguments": ""}},
        {"index": None, "id": None, "function": {"name": None, "arguments": "[]"}},
        {"index": None, "id": "d", "function": {"name": "i", "arguments": "0"}},
        # a server repeating the same id on every fragment is not a new call
        {"index": 5, "id": "e", "function": {"name": "j", "arguments": "\"x"}},
        {"index": 5, "id": "e", "function": {"arguments": "y\""}},
    ]
    for f in frags:
        acc.add(chunk_decoder.decode(msgspec.json.encode({"choices": [{"delta": {"tool_calls": [f]}}]})))
    calls = acc.completion().choices[0].message.tool_calls
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("a", "f", "{}"), ("b", "g", "{\"k\": 1}"), ("c", "h", "[]"), ("d", "i", "0"), ("e", "j", "\"xy\"")]


def test_calls_without_ids_get_stable_ones():
    acc = ChunkAccumulator()
    acc.add(chunk_decoder.decode(b'{"choices":[{"delta":{"tool_calls":[{"index":0,"function":'
                                 b'{"name":"f","arguments":"{}"}}]}}]}'))
    first = acc.completion().choices[0].message.tool_calls[0].id
    assert first.startswith("call_") and acc.completion().choices[0].message.tool_calls[0].id == first
    comp = normalize_completion(chat_completion_decoder.decode(
        b'{"choices":[{"message":{"tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}}]}'))
    assert comp.choices[0].message.tool_calls[0].id.startswith("call_")


@pytest.mark.parametrize("payload, message, code", [
    (b'{"error":{"message":"m1","type":"BadRequestError","param":null,"code":400}}', "m1", 400),
    (b'{"error": {"object": "error", "message": "m2", "type": "x", "param": null, "code": 503}}', "m2", 503),
    (b'{"object":"error","message":"m3","type":"NotFoundError","param":null,"code":404}', "m3", 404),
    (b'{"error":"m4"}', "m4", None),
    (b'{"error":{"code":400,"message":"m5","type":"exceed_context_size_error","n_ctx":2048}}', "m5", 400),
])
def test_error_envelopes_in_streams(payload, message, code):
    err = error_object(payload)
    assert err is not None and (err.message, err.code) == (message, code)
    try:
        chunk = chunk_decoder.decode(payload)
    except msgspec.DecodeError:
        return  # {"error": "text"} does not fit the chunk type: _stream's decode path uses error_object
    got = stream_error(chunk, payload)
    assert got is not None and got.message == message


def test_content_chunks_are_not_errors():
    p = b'{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}'
    assert stream_error(chunk_decoder.decode(p), p) is None
    assert error_object(p) is None and error_object(b"not json") is None


@pytest.mark.parametrize("code, etype, status", [
    (400, None, 400), ("429", None, 429), (None, "rate_limit_error", 429), (None, "not_found_error", 404),
    (None, "exceed_context_size_error", 400), ("model_not_found", "invalid_request_error", 400),
    (None, "weird", 500), (200, None, 500),
])
def test_status_for_error(code, etype, status):
    assert status_for_error(code, etype) == status


def test_status_errors_keep_messages_and_redact():
    err = make_status_error(401, {}, b'{"error":{"code":401,"message":"Invalid API Key sk-abcdefghij",'
                                     b'"type":"authentication_error"}}', secrets=("sk-abcdefghij",))
    assert err.status_code == 401 and err.type == "authentication_error"
    assert "sk-abcdefghij" not in err.message
    err = make_status_error(404, {}, b'{"detail":"Not Found"}')
    assert isinstance(err, APIStatusError) and err.message == "Not Found"
    err = make_status_error(400, {}, b'{"message":"flat without object","type":"t","code":"c"}')
    assert (err.message, err.type, err.code) == ("flat without object", "t", "c")


# ---------------------------------------------------------------------------------------------
# through create() once the typed layer calls decode_chat_completion (see docs/dialects.md)


async def test_create_returns_the_normalized_shape():
    async with serve("vllm") as url, AsyncClient(api_key=KEY, base_url=url) as client:
        comp = await client.chat.completions.create(model="local-model", messages=MSGS)
        assert comp.choices[0].message.reasoning_content == THOUGHT
        with pytest.raises(BadRequestError):
            await client.chat.completions.create(model="local-model", messages=MSGS,
                                                 extra_headers={"X-Scenario": "ok-error"})
