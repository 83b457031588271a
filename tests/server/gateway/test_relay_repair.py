# A thinking-mode tool turn whose caller dropped reasoning_content: the emulator (like DeepSeek)
# answers 400 when it reaches the upstream as sent; through the gateway it is repaired from the
# gateway's memory of that turn and answered.
from __future__ import annotations

import json

import aiohttp
import pytest

from deepseek_kit.server.gateway.repair import ReasoningMemory

from .relay_helpers import GatewayThread, config_for
from .test_relay import TOOLS

Q = [{"role": "user", "content": "weather in Paris? use the tool"}]


async def _post(url: str, body: dict) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + "/chat/completions", json=body, headers={"Authorization": "Bearer sk-x"}) as r,
    ):
        return r.status, await r.read()


def _assistant_turn(raw: bytes, stream: bool) -> dict:
    """The assistant message a client that strips reasoning_content would send back."""
    if not stream:
        m = json.loads(raw)["choices"][0]["message"]
        return {"role": "assistant", "content": m.get("content") or "", "tool_calls": m["tool_calls"]}
    calls: dict[int, dict] = {}
    for line in raw.split(b"\n"):
        if not line.startswith(b"data: {"):
            continue
        for f in json.loads(line[6:])["choices"][0]["delta"].get("tool_calls") or []:
            c = calls.setdefault(f["index"], {"id": f.get("id"), "type": "function",
                                              "function": {"name": "", "arguments": ""}})
            c["function"]["name"] += f.get("function", {}).get("name") or ""
            c["function"]["arguments"] += f.get("function", {}).get("arguments") or ""
    return {"role": "assistant", "content": "", "tool_calls": [calls[i] for i in sorted(calls)]}


@pytest.mark.parametrize("stream", [False, True])
async def test_dropped_reasoning_is_repaired(emulator_factory, stream):
    emu = emulator_factory()
    with GatewayThread(config_for(emu)) as gw:
        status, raw = await _post(gw.base_url, {"model": "deepseek-flash", "tools": TOOLS, "messages": Q,
                                                "stream": stream})
        assert status == 200
        turn = _assistant_turn(raw, stream)
        assert turn["tool_calls"] and "reasoning_content" not in turn
        follow = {"model": "deepseek-flash", "tools": TOOLS, "messages": [
            *Q, turn, {"role": "tool", "tool_call_id": turn["tool_calls"][0]["id"], "content": "18C"}]}
        status, raw = await _post(emu.base_url, follow)  # straight to the upstream: its 400
        assert status == 400 and b"reasoning_content" in raw
        status, raw = await _post(gw.base_url, follow)  # through the gateway: repaired
        assert status == 200, raw


def test_memory_is_bounded():
    mem = ReasoningMemory(max_entries=3, max_bytes=10)
    for i in range(5):
        mem.remember(f"call_{i}", "abc")
    assert len(mem) == 3 and mem.recall("call_0") is None and mem.recall("call_4") == "abc"
    mem.remember("big", "x" * 9)  # evicts the oldest until the bytes fit
    assert mem.recall("big") and len(mem) == 1
    mem.remember("huge", "x" * 11)  # larger than the whole memory: not kept
    assert mem.recall("huge") is None
