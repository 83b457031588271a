"""Emulator answers: non-stream and stream shapes (thinking on/off), tool calls, JSON mode, prefix
completion, logprobs, max_tokens, stop, FIM and determinism - checked at the byte/JSON level."""

from __future__ import annotations

import json
import re
import uuid

import aiohttp
import pytest

from deepseek_kit._wire.sse import SSEDecoder
from deepseek_kit.server.emulator.tokens import tokenize

AUTH = {"Authorization": "Bearer sk-test-abcd"}
USER = [{"role": "user", "content": "Tell me about the sea."}]
OFF = {"type": "disabled"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
FP_RE = re.compile(r"fp_dsk_emulator_[0-9a-f]{10}_\d{8}")
CALL_ID_RE = re.compile(r"call_(\d{2})_[A-Za-z0-9]{24}")


async def post(url, body, path="/chat/completions", headers=None):
    async with aiohttp.ClientSession() as s, \
            s.post(url + path, json=body, headers={**AUTH, **(headers or {})}) as r:
        return r.status, r.headers, await r.read()


async def complete(url, path="/chat/completions", **body):
    status, _, raw = await post(url, body, path)
    assert status == 200, raw
    return json.loads(raw)


async def stream(url, path="/chat/completions", headers=None, **body):
    """(list of decoded chunks, raw bytes); asserts the [DONE] terminator."""
    status, hdrs, raw = await post(url, {**body, "stream": True}, path, headers)
    assert status == 200, raw
    assert hdrs["Content-Type"].startswith("text/event-stream")
    events = SSEDecoder().feed_events(raw)
    assert events[-1].data == b"[DONE]"
    assert all(e.event is None for e in events)
    return [json.loads(e.data) for e in events[:-1]], raw


def assemble(chunks):
    content, reasoning, calls = "", "", {}
    for c in chunks:
        for ch in c["choices"]:
            d = ch["delta"]
            content += d.get("content") or ""
            reasoning += d.get("reasoning_content") or ""
            for tc in d.get("tool_calls") or []:
                slot = calls.setdefault(tc["index"], {"id": None, "name": None, "arguments": ""})
                if "id" in tc:
                    slot["id"] = tc["id"]
                    slot["name"] = tc["function"]["name"]
                slot["arguments"] += tc["function"]["arguments"]
    return content, reasoning, calls


# -- a tiny JSON-schema validator for the generated tool arguments ----------------------------------

def conforms(value, schema, root=None) -> bool:
    root = root or schema
    if "$ref" in schema:
        node = root
        for part in schema["$ref"][2:].split("/"):
            node = node[part]
        return conforms(value, node, root)
    if "const" in schema:
        return value == schema["const"]
    if "enum" in schema:
        return value in schema["enum"]
    if "anyOf" in schema:
        return any(conforms(value, s, root) for s in schema["anyOf"])
    kinds = schema.get("type")
    if kinds is None:
        kinds = "object" if "properties" in schema else None
    if isinstance(kinds, list):
        return any(conforms(value, {**schema, "type": k}, root) for k in kinds)
    checks = {
        "object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "null": lambda v: v is None, None: lambda v: True,
    }
    if not checks[kinds](value):
        return False
    if kinds == "object":
        props = schema.get("properties", {})
        if any(r not in value for r in schema.get("required", [])):
            return False
        if schema.get("additionalProperties") is False and set(value) - set(props):
            return False
        return all(conforms(v, props[k], root) for k, v in value.items() if k in props)
    if kinds == "array":
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 10**9):
            return False
        return all(conforms(v, schema.get("items", {}), root) for v in value)
    if kinds in ("integer", "number"):
        return schema.get("minimum", -1e308) <= value <= schema.get("maximum", 1e308)
    if kinds == "string":
        return schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", 10**9)
    return True


# -- non-stream -----------------------------------------------------------------------------------------


async def test_non_stream_thinking_shape(emulator):
    body = await complete(emulator.base_url, model="deepseek-flash", messages=USER)
    assert list(body) == ["id", "object", "created", "model", "choices", "usage", "system_fingerprint"]
    uuid.UUID(body["id"])
    assert body["object"] == "chat.completion" and body["model"] == "deepseek-flash"
    assert FP_RE.fullmatch(body["system_fingerprint"])
    (choice,) = body["choices"]
    assert choice == {"index": 0, "message": choice["message"], "logprobs": None, "finish_reason": "stop"}
    msg = choice["message"]
    assert list(msg) == ["role", "content", "reasoning_content"]
    assert msg["role"] == "assistant" and msg["content"] and msg["reasoning_content"]
    u = body["usage"]
    assert list(u) == ["prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
                       "completion_tokens_details", "prompt_cache_hit_tokens", "prompt_cache_miss_tokens"]
    assert u["prompt_tokens"] == u["prompt_cache_hit_tokens"] + u["prompt_cache_miss_tokens"]
    assert u["prompt_tokens_details"] == {"cached_tokens": u["prompt_cache_hit_tokens"]}
    r = u["completion_tokens_details"]["reasoning_tokens"]
    assert r == len(tokenize(msg["reasoning_content"])) == 48
    assert u["completion_tokens"] == r + len(tokenize(msg["content"])) == 48 + 32
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


async def test_non_stream_without_thinking(emulator):
    body = await complete(emulator.base_url, model="deepseek-v4-pro", messages=USER, thinking=OFF)
    msg = body["choices"][0]["message"]
    assert list(msg) == ["role", "content"]
    assert "completion_tokens_details" not in body["usage"]
    assert body["usage"]["completion_tokens"] == len(tokenize(msg["content"])) == 32


async def test_reasoning_effort_changes_reasoning_length(emulator):
    lengths = {}
    for effort in ("low", "medium", "high", "max", "ultra"):
        body = await complete(
            emulator.base_url, model="deepseek-flash", messages=USER, reasoning_effort=effort
        )
        lengths[effort] = body["usage"]["completion_tokens_details"]["reasoning_tokens"]
    assert lengths["low"] < lengths["medium"] == lengths["high"] < lengths["max"] == lengths["ultra"]


async def test_max_tokens_starves_reasoning(emulator):
    body = await complete(emulator.base_url, model="deepseek-flash", messages=USER, max_tokens=20)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == ""
    assert body["usage"]["completion_tokens"] == 20
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 20


async def test_max_tokens_cuts_answer_as_prefix(emulator):
    full = await complete(emulator.base_url, model="deepseek-flash", messages=USER, thinking=OFF)
    cut = await complete(emulator.base_url, model="deepseek-flash", messages=USER, thinking=OFF, max_tokens=5)
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == 5
    assert full["choices"][0]["message"]["content"].startswith(cut["choices"][0]["message"]["content"])


async def test_stop_sequence_truncates(emulator):
    full = await complete(emulator.base_url, model="deepseek-flash", messages=USER, thinking=OFF)
    text = full["choices"][0]["message"]["content"]
    word = tokenize(text)[10]
    cut = await complete(emulator.base_url, model="deepseek-flash", messages=USER, thinking=OFF, stop=[word])
    got = cut["choices"][0]["message"]["content"]
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert got == text[: text.find(word)]
    assert word not in got


async def test_logprobs(emulator):
    body = await complete(
        emulator.base_url, model="deepseek-flash", messages=USER, logprobs=True, top_logprobs=3
    )
    lp = body["choices"][0]["logprobs"]
    msg = body["choices"][0]["message"]
    assert "".join(e["token"] for e in lp["content"]) == msg["content"]
    assert "".join(e["token"] for e in lp["reasoning_content"]) == msg["reasoning_content"]
    for e in lp["content"]:
        assert e["logprob"] <= 0 and e["bytes"] == list(e["token"].encode())
        assert len(e["top_logprobs"]) == 3 and e["top_logprobs"][0]["token"] == e["token"]
        assert [t["logprob"] for t in e["top_logprobs"]] == sorted((t["logprob"] for t in e["top_logprobs"]),
                                                                    reverse=True)


# -- streams -------------------------------------------------------------------------------------------------


async def test_stream_thinking_shape(emulator):
    chunks, raw = await stream(emulator.base_url, model="deepseek-flash", messages=USER)
    first, last = chunks[0], chunks[-1]
    ids = {(c["id"], c["created"], c["model"], c["system_fingerprint"], c["object"]) for c in chunks}
    assert len(ids) == 1 and first["object"] == "chat.completion.chunk"
    assert list(first) == ["id", "object", "created", "model", "system_fingerprint", "choices"]
    assert first["choices"] == [{"index": 0, "delta": {"role": "assistant", "content": None,
                                                         "reasoning_content": ""},
                                 "logprobs": None, "finish_reason": None}]
    middle = chunks[1:-1]
    kinds = ["r" if c["choices"][0]["delta"].get("reasoning_content") is not None else "c" for c in middle]
    assert kinds == sorted(kinds, key=lambda k: k == "c")  # all reasoning before any content
    for c in middle:
        d = c["choices"][0]["delta"]
        assert "role" not in d and "usage" not in c and c["choices"][0]["finish_reason"] is None
        if d.get("reasoning_content") is not None:
            assert list(d) == ["content", "reasoning_content"] and d["content"] is None
        else:
            assert list(d) == ["content", "reasoning_content"] and d["reasoning_content"] is None
    assert last["choices"] == [{"index": 0, "delta": {"content": "", "reasoning_content": None},
                                "logprobs": None, "finish_reason": "stop"}]
    assert last["usage"]["completion_tokens_details"]["reasoning_tokens"] == 48
    assert b'"content":null' in raw and b"\n\ndata: [DONE]\n\n" in raw
    # the same request without streaming gives the same answer
    body = await complete(emulator.base_url, model="deepseek-flash", messages=USER)
    content, reasoning, _ = assemble(chunks)
    assert content == body["choices"][0]["message"]["content"]
    assert reasoning == body["choices"][0]["message"]["reasoning_content"]
    assert last["usage"]["completion_tokens"] == body["usage"]["completion_tokens"]


async def test_stream_non_thinking_shape_and_include_usage(emulator):
    chunks, _ = await stream(emulator.base_url, model="deepseek-flash", messages=USER, thinking=OFF,
                             stream_options={"include_usage": True})
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    for c in chunks[:-1]:
        assert list(c) == ["id", "object", "created", "model", "system_fingerprint", "choices", "usage"]
        assert c["usage"] is None
    for c in chunks[1:-1]:
        assert list(c["choices"][0]["delta"]) == ["content"]
    last = chunks[-1]
    assert last["choices"][0]["delta"] == {"content": ""}
    assert last["usage"]["completion_tokens"] == 32
    assert "completion_tokens_details" not in last["usage"]
    assert len(chunks) == 32 + 2  # one token per chunk, plus role and finish chunks


async def test_stream_usage_present_without_include_usage(emulator):
    chunks, _ = await stream(emulator.base_url, model="deepseek-flash", messages=USER, thinking=OFF)
    assert all("usage" not in c for c in chunks[:-1])
    assert chunks[-1]["usage"]["prompt_tokens"] > 0


async def test_legacy_usage_chunk(emulator_factory):
    emu = emulator_factory(legacy_usage_chunk=True)
    chunks, _ = await stream(emu.base_url, model="deepseek-flash", messages=USER, thinking=OFF,
                             stream_options={"include_usage": True})
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-2]["usage"] is None
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 32
    emu2 = emulator_factory()
    chunks, _ = await stream(emu2.base_url, headers={"X-DSK-Emulate": "legacy_usage_chunk"},
                             model="deepseek-flash", messages=USER)
    assert chunks[-1]["choices"] == [] and "usage" not in chunks[-2]


async def test_stream_logprobs_per_chunk(emulator):
    chunks, _ = await stream(emulator.base_url, model="deepseek-flash", messages=USER, logprobs=True,
                             top_logprobs=2)
    for c in chunks[1:-1]:
        d, lp = c["choices"][0]["delta"], c["choices"][0]["logprobs"]
        if d.get("reasoning_content"):
            assert "".join(e["token"] for e in lp["reasoning_content"]) == d["reasoning_content"]
        else:
            assert "".join(e["token"] for e in lp["content"]) == d["content"]
            assert all(len(e["top_logprobs"]) == 2 for e in lp["content"])


async def test_shaping_directives(emulator):
    hdr = {"X-DSK-Emulate": "tokens=8;reasoning_tokens=3;chunk_tokens=4;finish=content_filter"}
    chunks, _ = await stream(emulator.base_url, headers=hdr, model="deepseek-flash", messages=USER)
    content, reasoning, _ = assemble(chunks)
    assert len(tokenize(content)) == 8 and len(tokenize(reasoning)) == 3
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]
              if c["choices"][0]["delta"].get("content")]
    assert [len(tokenize(p)) for p in pieces] == [4, 4]
    assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter"


# -- tools -------------------------------------------------------------------------------------------------


async def test_tool_call_non_stream(emulator):
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    body = await complete(emulator.base_url, model="deepseek-flash", messages=msgs, tools=[WEATHER])
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    msg = choice["message"]
    assert list(msg) == ["role", "content", "reasoning_content", "tool_calls"]
    (call,) = msg["tool_calls"]
    assert CALL_ID_RE.fullmatch(call["id"]).group(1) == "00"
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    args = json.loads(call["function"]["arguments"])
    assert conforms(args, WEATHER["function"]["parameters"])
    # the tool result comes back (with the reasoning passed back): now a text answer
    msgs += [{**msg}, {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21C"}]
    final = await complete(emulator.base_url, model="deepseek-flash", messages=msgs, tools=[WEATHER])
    assert final["choices"][0]["finish_reason"] == "stop"
    assert final["choices"][0]["message"]["content"]


async def test_parallel_tool_calls_for_named_tools(emulator):
    time_tool = {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}
    msgs = [{"role": "user", "content": "Use get_time and then get_weather for Oslo"}]
    body = await complete(
        emulator.base_url, model="deepseek-flash", messages=msgs, tools=[WEATHER, time_tool], thinking=OFF
    )
    calls = body["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_time", "get_weather"]
    assert [CALL_ID_RE.fullmatch(c["id"]).group(1) for c in calls] == ["00", "01"]
    assert len({c["id"] for c in calls}) == 2


async def test_tool_choice_none_and_named(emulator):
    msgs = [{"role": "user", "content": "weather?"}]
    body = await complete(emulator.base_url, model="deepseek-flash", messages=msgs, tools=[WEATHER],
                          tool_choice="none")
    assert body["choices"][0]["finish_reason"] == "stop"
    assert "tool_calls" not in body["choices"][0]["message"]
    body = await complete(emulator.base_url, model="deepseek-flash", messages=msgs, tools=[WEATHER],
                          thinking=OFF, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


async def test_streamed_tool_calls(emulator):
    msgs = [{"role": "user", "content": "weather in Lima please"}]
    chunks, _ = await stream(emulator.base_url, model="deepseek-flash", messages=msgs, tools=[WEATHER])
    frags = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert frags[0] == {"index": 0, "id": frags[0]["id"], "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert len(frags) > 3
    for f in frags[1:]:
        assert f == {"index": 0, "function": {"arguments": f["function"]["arguments"]}}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"][0]["delta"] == {"content": "", "reasoning_content": None}
    _, reasoning, calls = assemble(chunks)
    assert reasoning
    args = json.loads(calls[0]["arguments"])
    assert conforms(args, WEATHER["function"]["parameters"])
    body = await complete(emulator.base_url, model="deepseek-flash", messages=msgs, tools=[WEATHER])
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == calls[0]["arguments"]


COMPLEX = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 3, "maxLength": 10},
        "count": {"type": "integer", "minimum": 5, "maximum": 9},
        "ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "flag": {"type": "boolean"},
        "kind": {"type": "string", "enum": ["a", "b", "c"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4},
        "owner": {"type": "object", "properties": {"email": {"type": "string", "format": "email"},
                                                   "age": {"type": ["integer", "null"]}},
                  "required": ["email", "age"], "additionalProperties": False},
        "choice": {"anyOf": [{"type": "integer"}, {"$ref": "#/$defs/point"}]},
        "points": {"type": "array", "items": {"$ref": "#/$defs/point"}},
    },
    "required": ["title", "count", "ratio", "flag", "kind", "tags", "owner", "choice", "points"],
    "additionalProperties": False,
    "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                        "required": ["x", "y"], "additionalProperties": False}},
}


async def test_arguments_follow_complex_schemas(emulator):
    tool = {"type": "function", "function": {"name": "make", "parameters": COMPLEX}}
    for i in range(15):
        msgs = [{"role": "user", "content": f"make thing {i}"}]
        body = await complete(
            emulator.base_url, model="deepseek-flash", messages=msgs, tools=[tool], thinking=OFF
        )
        args = json.loads(body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
        assert conforms(args, COMPLEX), args


# -- JSON mode, prefix completion ---------------------------------------------------------------------------


async def test_json_mode_with_json_in_prompt(emulator):
    msgs = [
        {"role": "system", "content": 'Reply in JSON like {"question": "...", "answer": "...", "score": 1}'},
        {"role": "user", "content": "Which is the longest river?"},
    ]
    body = await complete(emulator.base_url, model="deepseek-flash", messages=msgs,
                          response_format={"type": "json_object"})
    obj = json.loads(body["choices"][0]["message"]["content"])
    assert set(obj) == {"question", "answer", "score"} and isinstance(obj["score"], int)
    msgs[0]["content"] = "Answer as json."
    body = await complete(emulator.base_url, model="deepseek-flash", messages=msgs,
                          response_format={"type": "json_object"})
    assert isinstance(json.loads(body["choices"][0]["message"]["content"]), dict)


async def test_json_mode_without_json_hint_returns_spaces(emulator, emulator_factory):
    body = await complete(emulator.base_url, model="deepseek-flash", messages=USER,
                          response_format={"type": "json_object"})
    content = body["choices"][0]["message"]["content"]
    assert content and content.strip(" ") == "" and body["choices"][0]["finish_reason"] == "stop"
    emu = emulator_factory(json_without_hint="until_limit")
    body = await complete(emu.base_url, model="deepseek-flash", messages=USER, thinking=OFF, max_tokens=50,
                          response_format={"type": "json_object"})
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 50
    assert body["choices"][0]["message"]["content"].strip() == ""


async def test_prefix_completion_continues_code(emulator):
    msgs = [{"role": "user", "content": "Please write quick sort code"},
            {"role": "assistant", "content": "```python\n", "prefix": True}]
    body = await complete(emulator.base_url, "/beta/chat/completions", model="deepseek-flash", messages=msgs,
                          stop=["```"], thinking=OFF)
    content = body["choices"][0]["message"]["content"]
    assert body["choices"][0]["finish_reason"] == "stop"
    assert content and "```" not in content and not content.startswith("```python")
    msgs[-1] = {"role": "assistant", "content": "The sea is", "prefix": True}
    body = await complete(emulator.base_url, "/beta/chat/completions", model="deepseek-flash", messages=msgs)
    assert body["choices"][0]["message"]["content"].startswith(" ")


# -- FIM -----------------------------------------------------------------------------------------------------


async def test_fim_non_stream(emulator):
    body = await complete(emulator.base_url, "/beta/completions", model="deepseek-flash",
                          prompt="def fib(a):", suffix="    return fib(a-1) + fib(a-2)", max_tokens=16)
    assert list(body) == ["id", "object", "created", "model", "system_fingerprint", "choices", "usage"]
    assert body["object"] == "text_completion"
    (choice,) = body["choices"]
    assert list(choice) == ["text", "index", "logprobs", "finish_reason"]
    assert choice["logprobs"] is None and choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == len(tokenize(choice["text"])) == 16
    assert "completion_tokens_details" not in body["usage"]


async def test_fim_echo_and_logprobs(emulator):
    body = await complete(emulator.base_url, "/beta/completions", model="deepseek-flash", prompt="x = ",
                          echo=True, logprobs=2, max_tokens=5)
    choice = body["choices"][0]
    assert choice["text"].startswith("x = ")
    lp = choice["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["text_offset"]) == 5
    assert lp["text_offset"][0] == 4 and all(len(t) == 2 for t in lp["top_logprobs"])
    assert "".join(lp["tokens"]) == choice["text"][4:]


async def test_fim_stream(emulator):
    chunks, _ = await stream(
        emulator.base_url,
        "/beta/completions",
        model="deepseek-flash",
        prompt="def f():",
        max_tokens=6,
        stream_options={"include_usage": True},
    )
    assert all(c["object"] == "text_completion" for c in chunks)
    assert all(c["usage"] is None for c in chunks[:-1])
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert len(tokenize(text)) == 6
    assert chunks[-1]["choices"][0] == {"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}
    assert chunks[-1]["usage"]["completion_tokens"] == 6


# -- determinism ---------------------------------------------------------------------------------------------


def _strip_ids(raw: bytes) -> bytes:
    raw = re.sub(rb'"id":"[0-9a-f-]{36}"', b'"id":""', raw)
    return re.sub(rb'"created":\d+', b'"created":0', raw)


@pytest.mark.parametrize("streaming", [False, True])
async def test_same_request_same_bytes(emulator, streaming):
    body = {"model": "deepseek-flash", "messages": USER, "tools": [WEATHER], "stream": streaming,
            "logprobs": True, "top_logprobs": 2}
    body["messages"] = [{"role": "user", "content": "weather in Tokyo"}]
    a = (await post(emulator.base_url, body))[2]
    b = (await post(emulator.base_url, body))[2]
    assert a != b  # ids differ
    assert _strip_ids(a) == _strip_ids(b)


async def test_seed_and_messages_change_the_answer(emulator, emulator_factory):
    a = await complete(emulator.base_url, model="deepseek-flash", messages=USER)
    other = emulator_factory(seed=42)
    b = await complete(other.base_url, model="deepseek-flash", messages=USER)
    c = await complete(
        emulator.base_url, model="deepseek-flash", messages=[{"role": "user", "content": "Hi!"}]
    )
    texts = {x["choices"][0]["message"]["content"] for x in (a, b, c)}
    assert len(texts) == 3
    assert a["system_fingerprint"] != b["system_fingerprint"]


async def test_prefix_that_is_the_start_of_the_answer_continues_it_exactly(emulator):
    """A broken answer resumed by prefix completion equals the
    unbroken one (docs/design-notes.md, "Stream resumption")."""
    from deepseek_kit import AsyncClient

    c = AsyncClient(api_key="sk-x", base_url=emulator.base_url, max_retries=0)
    m = [{"role": "user", "content": "tell me about rivers"}]
    for think in (False, True):
        full = (await c.chat.completions.create(model="deepseek-flash", messages=m, thinking=think)).choices[
            0
        ]
        fm = full.message
        for cut in (0, 1, 9, len(fm.content) - 1):
            prefix = {"role": "assistant", "content": fm.content[:cut], "prefix": True}
            if think:
                prefix["reasoning_content"] = fm.reasoning_content
            r = (await c.chat.completions.create(model="deepseek-flash", messages=[*m, prefix],
                                                 thinking=think)).choices[0]
            assert fm.content[:cut] + r.message.content == fm.content
            assert r.finish_reason == full.finish_reason
        if think:  # cut inside the reasoning: the rest of the reasoning, then the whole answer
            prefix = {"role": "assistant", "content": "", "reasoning_content": fm.reasoning_content[:25],
                      "prefix": True}
            r = (await c.chat.completions.create(model="deepseek-flash", messages=[*m, prefix])).choices[0]
            assert fm.reasoning_content[:25] + r.message.reasoning_content == fm.reasoning_content
            assert r.message.content == fm.content
    # a prefix that is not the start of the answer is simply continued (no crash, some text)
    other = {"role": "assistant", "content": "Something else entirely", "prefix": True}
    r = await c.chat.completions.create(model="deepseek-flash", messages=[*m, other], thinking=False)
    assert r.choices[0].message.content
    await c.close()
