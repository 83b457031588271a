# WebSocket streaming uses the HTTP route's relay: failover before the first token, a break after it
# (an error message and 1011, or a seamless continuation through prefix completion), as over SSE.
from __future__ import annotations

import asyncio
import dataclasses
import json

import websockets
from websockets.exceptions import ConnectionClosedError

from .relay_helpers import GatewayThread, config_for

ASK = {
    "model": "deepseek-flash",
    "stream": True,
    "messages": [{"role": "user", "content": "tell me a story"}],
}


async def _ws(gw) -> tuple[list[dict], int | None, str]:
    out: list[dict] = []
    async with websockets.connect(gw.base_url.replace("http://", "ws://") + "/v1/chat/stream") as ws:
        await ws.send(json.dumps(ASK))
        try:
            async for m in ws:
                out.append(json.loads(m))
        except ConnectionClosedError:
            pass
    return out, ws.close_code, ws.close_reason


async def test_failover_before_the_first_token(emulator_factory):
    down, up = emulator_factory(faults="status=503"), emulator_factory()
    with GatewayThread(config_for(down, up)) as gw:
        msgs, code, _ = await _ws(gw)
    assert code == 1000 and msgs[-1]["usage"]["total_tokens"] > 0
    assert down.state.total_requests >= 1 and up.state.total_requests == 1


async def test_break_after_the_first_token_is_an_error_message_and_1011(emulator_factory):
    flaky = emulator_factory(faults="reset_after=4;times=1")
    with GatewayThread(config_for(flaky)) as gw:
        msgs, code, reason = await _ws(gw)
    assert code == 1011 and reason == "upstream stream broke"
    assert msgs[-1]["error"]["code"] == "stream_interrupted" and len(msgs) > 2
    assert not any("error" in m for m in msgs[:-1])


async def test_break_is_continued_through_prefix_completion(emulator_factory):
    flaky = emulator_factory(faults="reset_after=4;times=1")
    cfg = config_for(flaky)
    cfg = type(cfg)(**{**cfg.__dict__, "upstreams": tuple(
        type(u)(**{**u.__dict__, "prefix_completion": True}) for u in cfg.upstreams)})
    with GatewayThread(cfg) as gw:
        msgs, code, _ = await _ws(gw)
    assert code == 1000 and not any("error" in m for m in msgs)
    assert flaky.state.total_requests == 2  # the broken piece and its continuation
    text = "".join(m["choices"][0]["delta"].get("content") or "" for m in msgs if m.get("choices"))
    # the same emulator unbroken (times=1 is spent): the stitched text is exactly its answer
    with GatewayThread(config_for(flaky)) as gw:
        whole, _, _ = await _ws(gw)
    assert text == "".join(m["choices"][0]["delta"].get("content") or "" for m in whole if m.get("choices"))


async def test_shutdown_past_its_grace_ends_the_stream_with_going_away(emulator_factory):
    slow = emulator_factory(faults="delay_chunks=0.05;tokens=400")
    g = GatewayThread(dataclasses.replace(config_for(slow), shutdown_grace=0.3)).start()
    msgs: list[dict] = []
    try:
        async with websockets.connect(g.base_url.replace("http://", "ws://") + "/v1/chat/stream") as ws:
            await ws.send(json.dumps(ASK))
            for _ in range(3):
                msgs.append(json.loads(await ws.recv()))
            stopping = asyncio.get_running_loop().run_in_executor(None, g.stop)
            try:
                async for m in ws:
                    msgs.append(json.loads(m))
            except ConnectionClosedError:
                pass
            await stopping
    finally:
        g.stop()
    assert msgs[-1]["error"]["code"] == "gateway_shutdown"
    assert ws.close_code == 1001 and ws.close_reason == "gateway shutting down"
