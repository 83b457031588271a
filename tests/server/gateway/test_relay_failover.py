# Failover before the first token (stall past the first-token deadline even with keep-alives, 5xx,
# reset, insufficient_system_resource), errors after it (an error event, never a fake [DONE]), and
# a primary killed mid-run (no request lost).
from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from .relay_helpers import GatewayThread, config_for

ASK = {"model": "deepseek-flash", "messages": [{"role": "user", "content": "hello"}]}


async def _post(url: str, body: dict) -> tuple[int, dict, bytes]:
    async with aiohttp.ClientSession() as s, s.post(url + "/chat/completions", json=body) as r:
        return r.status, dict(r.headers), await r.read()


_FAULTS = ["status=500", "status=503", "reset_before_headers", "reset_after=0", "insufficient_after=0"]


# error events exist only in streams
@pytest.mark.parametrize(("fault", "stream"), [(f, s) for f in _FAULTS for s in (True, False)]
                         + [("error_event_after=0", True)])
async def test_fails_over_before_the_first_token(emulator_factory, fault, stream):
    bad = emulator_factory(faults=fault)
    good = emulator_factory()
    with GatewayThread(config_for(bad, good)) as gw:
        body = {**ASK, "stream": stream}
        if fault.startswith("insufficient"):  # cut before the first content token, no reasoning
            body["thinking"] = {"type": "disabled"}
        status, headers, raw = await _post(gw.base_url, body)
    assert status == 200, raw
    assert headers["x-dsk-upstream"] == "up1"
    if stream:
        assert raw.endswith(b"data: [DONE]\n\n")
    assert bad.state.total_requests >= 1


async def test_stall_with_keepalives_fails_over_within_the_first_token_deadline(emulator_factory):
    hung = emulator_factory(faults="stall_first_token=30", keepalive_interval=0.1)
    good = emulator_factory()
    cfg = config_for(hung, good, timeout="first_token = 1.0\nidle = 5.0\ntotal = 30.0")
    with GatewayThread(cfg) as gw:
        for stream in (False, True):
            t0 = time.monotonic()
            status, headers, raw = await _post(gw.base_url, {**ASK, "stream": stream})
            took = time.monotonic() - t0
            assert status == 200 and headers["x-dsk-upstream"] == "up1", raw
            assert took < 10, "keep-alive comments must not reset the first-token deadline"


async def test_break_after_first_token_is_an_error_event_without_done(emulator_factory):
    a = emulator_factory(faults="reset_after=3")
    b = emulator_factory(faults="reset_after=3")
    with GatewayThread(config_for(a, b)) as gw:
        status, _, raw = await _post(gw.base_url, {**ASK, "stream": True})
    assert status == 200
    assert b"[DONE]" not in raw
    events = [json.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")]
    assert events[-1]["error"]["code"] == "stream_interrupted"
    assert set(events[-1]["error"]) == {"message", "type", "param", "code"}
    assert len(events) == 4  # three real chunks, then the error


async def test_every_upstream_down_is_a_deepseek_shaped_503(emulator_factory):
    a = emulator_factory(faults="status=503")
    b = emulator_factory(faults="status=500")
    with GatewayThread(config_for(a, b)) as gw:
        status, _, raw = await _post(gw.base_url, ASK)
    err = json.loads(raw)["error"]
    assert status == 503 and set(err) == {"message", "type", "param", "code"}
    assert "sk-upstream-secret" not in raw.decode() and "127.0.0.1" not in err["message"]


async def test_primary_killed_mid_run_loses_no_request(emulator_factory):
    primary = emulator_factory(faults="delay_headers=0.05")
    backup = emulator_factory()
    with GatewayThread(config_for(primary, backup)) as gw:
        async with aiohttp.ClientSession() as s:

            async def one(i: int) -> int:
                await asyncio.sleep(i * 0.005)
                async with s.post(gw.base_url + "/chat/completions", json=ASK) as r:
                    await r.read()
                    return r.status

            tasks = [asyncio.create_task(one(i)) for i in range(60)]
            await asyncio.sleep(0.12)
            await asyncio.to_thread(primary.stop)
            statuses = await asyncio.gather(*tasks)
    assert statuses == [200] * 60
    assert primary.state.total_requests > 0 and backup.state.total_requests > 0


async def test_complete_answer_then_keepalives_forever_ends_with_done(emulator_factory):
    # the upstream sends the whole answer (finish_reason and usage), then only comments (the
    # harness discussion #6959 behaviour): the answer is complete, so the caller gets [DONE]
    # after the tail limit instead of a hung stream
    emu = emulator_factory(faults="keepalive_forever", keepalive_interval=0.05)
    cfg = config_for(emu, timeout="first_token = 5.0\nidle = 5.0\ntotal = 30.0\ntail = 0.5")
    with GatewayThread(cfg) as gw:
        t0 = time.monotonic()
        status, _, raw = await _post(gw.base_url, {**ASK, "stream": True})
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n") and time.monotonic() - t0 < 5
    events = [json.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: {")]
    assert events[-1]["choices"][0]["finish_reason"] == "stop" and events[-1]["usage"]
