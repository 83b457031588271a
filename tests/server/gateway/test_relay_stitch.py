# A stream that breaks after its first token is continued through prefix completion on an upstream
# that declares it, and stitched into the caller's same stream (no error event, one [DONE]); an
# upstream without prefix completion gives the error event instead.
from __future__ import annotations

import json

import aiohttp
import pytest

from .relay_helpers import GatewayThread, config_for

ASK = {
    "model": "deepseek-flash",
    "stream": True,
    "messages": [{"role": "user", "content": "tell me a story"}],
}


async def _stream(url: str, body: dict) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + "/chat/completions", json=body, headers={"Authorization": "Bearer sk-x"}) as r,
    ):
        return r.status, await r.read()


def _text(raw: bytes) -> tuple[str, str, list[dict]]:
    events = [json.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: {")]
    content = "".join((e["choices"][0]["delta"].get("content") or "") for e in events if e.get("choices"))
    reasoning = "".join((e["choices"][0]["delta"].get("reasoning_content") or "") for e in events
                        if e.get("choices"))
    return content, reasoning, events


@pytest.mark.parametrize(("thinking", "cut"), [(False, 4), (True, 4), (True, 60)])
async def test_break_is_stitched_through_prefix_completion(emulator_factory, thinking, cut):
    body = {**ASK, "thinking": {"type": "enabled" if thinking else "disabled"}}
    flaky = emulator_factory(faults=f"reset_after={cut};times=1")
    cfg = config_for(flaky, extra="", timeout="first_token = 5.0\nidle = 5.0\ntotal = 30.0")
    cfg = type(cfg)(**{**cfg.__dict__, "upstreams": tuple(
        type(u)(**{**u.__dict__, "prefix_completion": True}) for u in cfg.upstreams)})
    with GatewayThread(cfg) as gw:
        status, raw = await _stream(gw.base_url, body)
    content, reasoning, events = _text(raw)
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n") and raw.count(b"[DONE]") == 1
    assert not any("error" in e for e in events)
    assert flaky.state.total_requests == 2  # the broken piece and its continuation
    # the same emulator unbroken (times=1 is spent): the stitched text is exactly its answer
    _, raw = await _stream(flaky.base_url, body)
    want_content, want_reasoning, _ = _text(raw)
    assert content == want_content and reasoning == want_reasoning
    assert events[-1]["usage"]["completion_tokens"] > 0


async def test_without_prefix_completion_the_break_is_an_error_event(emulator_factory):
    flaky = emulator_factory(faults="reset_after=4;times=1")
    with GatewayThread(config_for(flaky)) as gw:
        status, raw = await _stream(gw.base_url, ASK)
    assert status == 200 and b"[DONE]" not in raw
    assert json.loads(raw.strip().split(b"\n")[-1][6:])["error"]["code"] == "stream_interrupted"


@pytest.mark.parametrize("prefix", [True, False])
async def test_error_event_mid_stream_is_a_break_not_a_chunk(emulator_factory, prefix):
    flaky = emulator_factory(faults="error_event_after=5;times=1")
    cfg = config_for(flaky)
    if prefix:
        cfg = type(cfg)(**{**cfg.__dict__, "upstreams": tuple(
            type(u)(**{**u.__dict__, "prefix_completion": True}) for u in cfg.upstreams)})
    with GatewayThread(cfg) as gw:
        _status, raw = await _stream(gw.base_url, ASK)
    _, _, events = _text(raw)
    errors = [e for e in events if "error" in e]
    if prefix:
        assert not errors and raw.endswith(b"data: [DONE]\n\n")
    else:
        assert len(errors) == 1 and errors[0]["error"]["code"] == "stream_interrupted"
        assert b"[DONE]" not in raw and len(events) == 6
