"""Chunk accumulator: random fragmentations of content, reasoning and tool calls reassemble exactly."""

from __future__ import annotations

import json

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from deepseek_kit._wire.accumulate import ChunkAccumulator
from deepseek_kit._wire.types import ChatCompletionChunk, chunk_decoder


def pieces(text: str, cuts: list[int]) -> list[str]:
    pts = sorted({c % (len(text) + 1) for c in cuts})
    out, prev = [], 0
    for p in pts:
        out.append(text[prev:p])
        prev = p
    out.append(text[prev:])
    return [p for p in out if p]


def chunk(delta, finish=None, usage=None, index=0, choices=True):
    obj = {"id": "id-1", "object": "chat.completion.chunk", "created": 5, "model": "deepseek-flash"}
    obj["choices"] = (
        [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}] if choices else []
    )
    if usage is not None:
        obj["usage"] = usage
    return chunk_decoder.decode(msgspec.json.encode(obj))


text_st = st.text(max_size=60)
cuts_st = st.lists(st.integers(min_value=0), max_size=10)


@settings(max_examples=200, deadline=None)
@given(text_st, text_st, cuts_st, cuts_st,
       st.lists(st.tuples(st.sampled_from(["get_weather", "search", "x"]),
                          st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
                          cuts_st), max_size=3),
       st.booleans())
def test_reassembles_everything(reasoning, content, rcuts, ccuts, tools, trailing_usage):
    acc = ChunkAccumulator()
    acc.add(chunk({"role": "assistant", "content": None, "reasoning_content": ""}))
    for p in pieces(reasoning, rcuts):
        acc.add(chunk({"content": None, "reasoning_content": p}))
    for p in pieces(content, ccuts):
        acc.add(chunk({"content": p, "reasoning_content": None}))
    expected_calls = []
    for i, (name, args, tcuts) in enumerate(tools):
        arg_text = json.dumps(args)
        call_id = f"call_{i:02d}_abc"
        acc.add(chunk({"tool_calls": [{"index": i, "id": call_id, "type": "function",
                                       "function": {"name": name, "arguments": ""}}]}))
        for p in pieces(arg_text, tcuts):
            # later fragments: null id/name must not overwrite the first fragment's values
            acc.add(chunk({"tool_calls": [{"index": i, "id": None,
                                           "function": {"name": None, "arguments": p}}]}))
        expected_calls.append((call_id, name, arg_text))
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    finish = "tool_calls" if tools else "stop"
    if trailing_usage:
        assert acc.add(chunk({"content": ""}, finish=finish))
        acc.add(chunk({}, usage=usage, choices=False))  # legacy choices: [] usage chunk
    else:
        assert acc.add(chunk({"content": "", "reasoning_content": None}, finish=finish, usage=usage))
    assert acc.finished
    done = acc.completion()
    msg = done.choices[0].message
    assert msg.reasoning_content == reasoning
    assert (msg.content or "") == content
    assert done.choices[0].finish_reason == finish
    assert done.usage is not None and done.usage.total_tokens == 7
    got = [(tc.id, tc.function.name, tc.function.arguments) for tc in (msg.tool_calls or [])]
    assert got == expected_calls
    for _, _, a in got:
        json.loads(a)
    assert done.id == "id-1" and done.model == "deepseek-flash" and done.object == "chat.completion"


def test_parallel_tool_calls_interleaved_by_index():
    acc = ChunkAccumulator()
    acc.add(chunk({"tool_calls": [{"index": 0, "id": "a", "type": "function",
                                   "function": {"name": "f", "arguments": ""}},
                                  {"index": 1, "id": "b", "type": "function",
                                   "function": {"name": "g", "arguments": ""}}]}))
    acc.add(chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"y":'}}]}))
    acc.add(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":1}'}}]}))
    acc.add(chunk({"tool_calls": [{"index": 1, "function": {"arguments": "2}"}}]}))
    calls = acc.completion().choices[0].message.tool_calls
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("a", "f", '{"x":1}'), ("b", "g", '{"y":2}')]


def test_unknown_fields_and_new_finish_reason_do_not_break():
    raw = (b'{"id":"z","choices":[{"index":0,"delta":{"content":"hi","new_field":[1,2]},'
           b'"finish_reason":"brand_new_reason","extra":{}}],"surprise":true,"model":"deepseek-v9"}')
    c = chunk_decoder.decode(raw)
    assert isinstance(c, ChatCompletionChunk)
    acc = ChunkAccumulator()
    acc.add(c)
    done = acc.completion()
    assert done.choices[0].finish_reason == "brand_new_reason"
    assert done.model == "deepseek-v9"


def test_logprobs_accumulate():
    acc = ChunkAccumulator()
    lp = {"content": [{"token": "a", "logprob": -0.1, "bytes": [97], "top_logprobs": []}]}
    for _ in range(3):
        c = chunk_decoder.decode(msgspec.json.encode({
            "id": "x", "choices": [{"index": 0, "delta": {"content": "a"}, "logprobs": lp}]}))
        acc.add(c)
    out = acc.completion().choices[0].logprobs
    assert out is not None and [t.token for t in out.content] == ["a", "a", "a"]
