# WebSocket streaming through the real gateway app and emulators on loopback: the tutorial's chat
# client unchanged (websockets 13 with extra_headers in a subprocess, the current release with
# additional_headers in process), the same chunks as SSE, several requests on one connection, and
# error messages with their close codes.
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import websockets
from websockets.exceptions import ConnectionClosedError

from .relay_helpers import GatewayThread, config_for
from .ws_helpers import chat_system_source

ASK = {"model": "deepseek-flash", "messages": [{"role": "user", "content": "hello there"}], "stream": True}
WS13 = Path(sys.executable).parent.parent / "ws13"  # scripts/test installs websockets 13.1 there


@pytest.fixture
def gw(emulator_factory):
    with GatewayThread(config_for(emulator_factory())) as g:
        yield g


def ws_url(gw, path: str = "/v1/chat/stream") -> str:
    return gw.base_url.replace("http://", "ws://") + path


async def _ws_messages(url: str, *requests: dict, headers=None) -> tuple[list[bytes], int | None, str]:
    """Send the requests (all at once), read every message until the server closes."""
    out: list[bytes] = []
    async with websockets.connect(url, additional_headers=headers or {}) as ws:
        for r in requests:
            await ws.send(json.dumps(r))
        try:
            async for m in ws:
                out.append(m.encode() if isinstance(m, str) else m)
        except ConnectionClosedError:
            pass
        return out, ws.close_code, ws.close_reason


async def _sse(base: str, body: dict) -> list[bytes]:
    async with aiohttp.ClientSession() as s, s.post(base + "/chat/completions", json=body) as r:
        raw = await r.read()
    return [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]


def test_tutorial_chat_system_with_websockets_13_extra_headers(gw):
    assert (WS13 / "websockets").is_dir(), "scripts/test installs websockets==13.1 into .venv/ws13"
    code = chat_system_source("extra_headers") + (
        "\nimport sys\nasyncio.run(ChatSystem(sys.argv[1], 'sk-tutorial').chat('hello there'))\n")
    env = {**os.environ, "PYTHONPATH": str(WS13), "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    r = subprocess.run([sys.executable, "-c", code, ws_url(gw)], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) > 3 and "".join(lines).strip(), r.stdout
    check = subprocess.run([sys.executable, "-c", "import websockets; print(websockets.__version__)"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert check.stdout.strip() == "13.1"


async def test_tutorial_chat_system_with_current_websockets(gw, capsys):
    ns: dict = {}
    exec(chat_system_source("additional_headers"), ns)
    await ns["ChatSystem"](ws_url(gw), "sk-tutorial").chat("hello there")
    printed = capsys.readouterr().out.splitlines()
    sse = [
        json.loads(p) for p in await _sse(gw.base_url, {**ASK, "model": "deepseek-chat"}) if p != b"[DONE]"
    ]
    assert printed == [str(c["choices"][0]["delta"]["content"]) for c in sse]


async def test_thinking_chunks_are_the_sse_chunks(gw):
    # reasoning_content, usage with cache hit/miss: the same payload bytes as over SSE (ids differ)
    msgs, code, _ = await _ws_messages(ws_url(gw), ASK)
    sse = await _sse(gw.base_url, ASK)
    assert code == 1000 and sse[-1] == b"[DONE]" and b"[DONE]" not in msgs
    assert [len(m) for m in msgs] == [len(p) for p in sse[:-1]]
    chunks = [json.loads(m) for m in msgs]
    strip = [json.loads(p) for p in sse[:-1]]
    for c in chunks + strip:
        c.pop("id"), c.pop("created")
    assert chunks == strip
    assert any(c["choices"][0]["delta"].get("reasoning_content") for c in chunks)
    usage = chunks[-1]["usage"]
    assert {"prompt_cache_hit_tokens", "prompt_cache_miss_tokens"} <= set(usage)
    assert usage["completion_tokens_details"]["reasoning_tokens"] > 0


async def test_tool_call_fragments_intact(gw):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                             "required": ["city"]}}}]
    ask = {**ASK, "tools": tools, "messages": [{"role": "user", "content": "weather in Paris? use the tool"}]}
    msgs, code, _ = await _ws_messages(ws_url(gw, "/chat/stream"), ask)
    chunks = [json.loads(m) for m in msgs]
    frags = [tc for c in chunks for tc in (c["choices"][0]["delta"].get("tool_calls") or [])]
    assert code == 1000 and frags and frags[0]["function"]["name"] == "get_weather"
    assert json.loads("".join(f["function"].get("arguments", "") for f in frags)) is not None
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_two_requests_on_one_connection_and_stream_false(gw):
    # the second request is sent before the first answer ends: it waits its turn, then runs
    second = {**ASK, "stream": False, "messages": [{"role": "user", "content": "second question"}]}
    msgs, code, reason = await _ws_messages(ws_url(gw), ASK, second)
    chunks = [json.loads(m) for m in msgs]
    finishes = [i for i, c in enumerate(chunks) if c["choices"] and c["choices"][0]["finish_reason"]]
    assert code == 1000 and reason == "done" and len(finishes) == 2
    assert len({c["id"] for c in chunks}) == 2  # two answers, one after the other, not interleaved
    assert chunks[finishes[0]]["id"] != chunks[finishes[0] + 1]["id"]
    # a request sent after an answer, within the linger, is served on the same connection
    async with websockets.connect(ws_url(gw)) as ws:
        for _ in range(2):
            await ws.send(json.dumps(ASK))
            while "finish_reason\":\"stop" not in await ws.recv():
                pass
        await ws.wait_closed()
        assert ws.close_code == 1000


@pytest.mark.parametrize(("message", "code", "status_code"), [
    ("{not json", 1007, "invalid_request_error"),
    (json.dumps({**ASK, "model": "gpt-4"}), 1007, "invalid_request_error"),
    (json.dumps({**ASK, "messages": []}), 1007, "invalid_request_error"),
    (b'{"model": "deepseek-flash"}', 1003, "invalid_request_error"),  # binary
    (json.dumps({**ASK, "pad": "x" * 5000}), 1009, "request_too_large"),
])
async def test_bad_requests_get_an_error_message_and_close_code(emulator_factory, message, code, status_code):
    cfg = config_for(emulator_factory(), extra="")
    with GatewayThread(dataclasses.replace(cfg, max_body_bytes=4096)) as gw:
        async with websockets.connect(ws_url(gw)) as ws:
            await ws.send(message)
            err = json.loads(await ws.recv())["error"]
            await ws.wait_closed()
        assert set(err) == {"message", "type", "param", "code"} and err["code"] == status_code
        assert ws.close_code == code and ws.close_reason == status_code
        # the worker still serves the next connection
        msgs, close, _ = await _ws_messages(ws_url(gw), ASK)
        assert close == 1000 and json.loads(msgs[-1])["usage"]["total_tokens"] > 0


async def test_upstream_unavailable_closes_with_try_again_later(emulator_factory):
    emu = emulator_factory(faults="status=503")
    with GatewayThread(config_for(emu)) as gw:
        msgs, code, reason = await _ws_messages(ws_url(gw), ASK)
    err = json.loads(msgs[0])["error"]
    assert len(msgs) == 1 and err["type"] == "service_unavailable_error"
    assert code == 1013 and reason == "upstream_unavailable"


async def test_plain_get_is_told_to_upgrade(gw):
    async with aiohttp.ClientSession() as s, s.get(gw.base_url + "/v1/chat/stream") as r:
        assert r.status == 426 and (await r.json())["error"]["code"] == "upgrade_required"


async def test_idle_connection_closes_after_ws_idle(emulator_factory):
    cfg = dataclasses.replace(config_for(emulator_factory()), ws_idle=0.3)
    with GatewayThread(cfg) as gw:
        async with websockets.connect(ws_url(gw)) as ws:
            await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code == 1000 and ws.close_reason == "no request within 0.3 s"


async def test_too_many_waiting_requests_close_with_policy(gw):
    async with websockets.connect(ws_url(gw)) as ws:
        for _ in range(12):  # one served, at most 8 waiting: the rest is refused
            await ws.send(json.dumps(ASK))
        msgs = []
        try:
            async for m in ws:
                msgs.append(json.loads(m))
        except ConnectionClosedError:
            pass
    assert msgs[-1]["error"]["code"] == "too_many_pending_requests"
    assert ws.close_code == 1008


async def test_shutdown_closes_an_idle_connection_with_going_away(emulator_factory):
    # a long linger: the connection waits for a next request when the shutdown comes
    g = GatewayThread(dataclasses.replace(config_for(emulator_factory()), ws_linger=60.0)).start()
    try:
        async with websockets.connect(ws_url(g)) as ws:
            await ws.send(json.dumps(ASK))
            while "finish_reason\":\"stop" not in await ws.recv():
                pass
            await asyncio.get_running_loop().run_in_executor(None, g.stop)
            await asyncio.wait_for(ws.wait_closed(), 10)
    finally:
        g.stop()
    assert ws.close_code == 1001 and ws.close_reason == "gateway shutting down"


async def test_metrics_and_access_line_count_websocket_calls(gw, caplog):
    caplog.set_level("INFO", logger="deepseek_kit.gateway.access")
    msgs, code, _ = await _ws_messages(ws_url(gw), ASK)
    assert code == 1000
    async with aiohttp.ClientSession() as s, s.get(gw.base_url + "/metrics") as r:
        text = await r.text()
    assert (
        'dsk_gateway_requests_total{key="-",model="deepseek-flash",status="200",upstream="up0"} 1.0' in text
    )
    assert f'dsk_gateway_stream_chunks_total{{upstream="up0"}} {float(len(msgs))}' in text
    assert "dsk_gateway_in_flight 0.0" in text
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "deepseek_kit.gateway.access"]
    assert [(x["path"], x["status"], x["stream"], x["chunks"]) for x in lines] == [
        ("/v1/chat/stream", 200, True, len(msgs))]
    assert lines[0]["completion_tokens"] == json.loads(msgs[-1])["usage"]["completion_tokens"]


def test_websocket_settings_in_the_config_file():
    from deepseek_kit.server.gateway import GatewayConfigError, parse_gateway_config
    up = '[[upstream]]\nname = "a"\nbase_url = "http://127.0.0.1:9"\n'
    cfg = parse_gateway_config(
        f'[gateway]\nauth = "none"\nws_heartbeat = 5\nws_idle = 60\nws_linger = 1.5\n{up}'
    )
    assert (cfg.ws_heartbeat, cfg.ws_idle, cfg.ws_linger) == (5, 60, 1.5)
    with pytest.raises(GatewayConfigError, match="ws_linger"):
        parse_gateway_config(f'[gateway]\nauth = "none"\nws_linger = 0\n{up}')
