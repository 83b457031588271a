# WebSocket streaming, the connection's life: auth refused at the handshake, the budget's 402 as an
# error message and a 1008 close, a client leaving mid-stream (the upstream call is cancelled and the
# budget hold released), a reader that does not read (the relay stops reading the upstream), and
# the heartbeat closing a peer that answers no pings.
from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from datetime import datetime, timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from deepseek_kit.server.gateway.admission import worst_case
from deepseek_kit.server.gateway.state import open_state

from .relay_helpers import GatewayThread, config_for
from .ws_helpers import CountingUpstream, client_frame, raw_connect

PEPPER = "ws-test-pepper-0123456789abcdef"
# Sunday 2026-12-06 12:00 UTC: off-peak in Beijing whatever the calendar says
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc).timestamp()
ASK = {"model": "deepseek-flash", "max_tokens": 4000, "stream": True,
       "messages": [{"role": "user", "content": "hello"}]}


async def _wait_for(cond, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.02)


async def _refused_over_http(base_url: str, key: str, timeout: float = 10.0) -> None:
    import aiohttp

    end = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(base_url + "/v1/models", headers={"Authorization": f"Bearer {key}"}) as r:
                if r.status == 401:
                    return
            assert time.monotonic() < end, "the revoked key was still accepted after 10 s"
            await asyncio.sleep(0.05)


def _url(gw) -> str:
    return gw.base_url.replace("http://", "ws://") + "/v1/chat/stream"


@pytest.fixture
def keyed(emulator_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("DSK_GATEWAY_PEPPER", PEPPER)
    url = f"sqlite:///{tmp_path}/gw.db"
    # slow chunks: the test can leave in the middle of the answer
    emu = emulator_factory(faults="delay_chunks=0.05;tokens=400")

    async def make_keys():
        st = open_state(url, pepper=PEPPER.encode(), clock=lambda: datetime.fromtimestamp(NOW, timezone.utc))
        full, _ = await st.create_key("full", budget_daily=Decimal("10"))
        pro_only, _ = await st.create_key("pro-only", models=["deepseek-v4-pro"])
        poor, _ = await st.create_key("poor", budget_daily=Decimal("0.0000001"))
        await st.aclose()
        return full, pro_only, poor

    return config_for(emu, auth="keys", state=url), make_keys, emu, url


async def test_handshake_refusals_and_policy_closes(keyed):
    cfg, make_keys, _, _ = keyed
    _full, pro_only, poor = await make_keys()
    with GatewayThread(cfg, clock=lambda: NOW) as gw:
        for headers in (
            {},
            {"Authorization": "Bearer sk-dsk-AAAAAAAA-" + "x" * 43},
            {"Authorization": "Basic x"},
        ):
            with pytest.raises(InvalidStatus) as exc:
                async with websockets.connect(_url(gw), additional_headers=headers):
                    pass
            resp = exc.value.response
            assert (
                resp.status_code == 401 and json.loads(resp.body)["error"]["type"] == "authentication_error"
            )
        for key, status, etype in ((poor, 402, "unknown_error"), (pro_only, 403, "permission_error")):
            async with websockets.connect(
                _url(gw), additional_headers={"Authorization": f"Bearer {key}"}
            ) as ws:
                await ws.send(json.dumps(ASK))
                err = json.loads(await ws.recv())["error"]
                await ws.wait_closed()
            assert ws.close_code == 1008, (status, err)
            assert set(err) == {"message", "type", "param", "code"} and ws.close_reason == err["code"]
            assert err["type"] == etype, err
            if status == 403:
                assert err["code"] == "model_not_allowed"


async def test_client_leaving_cancels_the_upstream_and_releases_the_hold(keyed):
    cfg, make_keys, emu, url = keyed
    full, _, _ = await make_keys()
    with GatewayThread(cfg, clock=lambda: NOW) as gw:
        async with websockets.connect(_url(gw), additional_headers={"Authorization": f"Bearer {full}"}) as ws:
            await ws.send(json.dumps(ASK))
            for _ in range(5):
                json.loads(await ws.recv())
            assert emu.state.in_flight == 1
        # the client closed after 5 chunks of ~400: the emulator sees the call end early
        await _wait_for(lambda: emu.state.in_flight == 0)
        worst = worst_case("deepseek-flash", len(json.dumps(ASK)), ASK["max_tokens"],
                           datetime.fromtimestamp(NOW, timezone.utc), "CNY")
        st = open_state(url, pepper=PEPPER.encode(), clock=lambda: datetime.fromtimestamp(NOW, timezone.utc))
        try:
            key = await st.authenticate(full, None)
            # settled off the request path: the remaining budget (holds count against it) comes
            # back to 10 minus what was used (the input and a few chunks), not minus the worst case
            for _ in range(500):
                left = await st.remaining(key)
                assert left is not None
                if Decimal(10) - worst / 4 < left < Decimal(10):
                    break
                await asyncio.sleep(0.02)
            assert Decimal(10) - worst / 4 < left < Decimal(10), (left, worst)
        finally:
            await st.aclose()
        # the connection's worker is free: the next call streams to its end
        async with websockets.connect(_url(gw), additional_headers={"Authorization": f"Bearer {full}"}) as ws:
            await ws.send(json.dumps({**ASK, "max_tokens": 20}))
            n = sum(1 for _ in [m async for m in ws])
            assert n > 3 and ws.close_code == 1000


async def test_a_reader_that_does_not_read_pauses_the_upstream():
    up = await CountingUpstream(chunks=200_000).start()  # ~220 MB if nothing held it back
    try:
        cfg = config_for(SimpleNamespace(base_url=up.base_url), auth="none")
        with GatewayThread(cfg) as gw:
            _reader, writer = await raw_connect(gw.port, rcvbuf=4096)
            writer.write(client_frame(json.dumps(ASK).encode()))
            await writer.drain()
            # the peer reads nothing: after the socket buffers fill, the upstream's writes stop
            await up.assert_held_back()
            writer.close()
            await asyncio.wait_for(up.cancelled.wait(), 20)  # and leaving cancels it
    finally:
        await up.stop()


async def test_heartbeat_closes_a_peer_that_answers_no_pings(emulator_factory):
    cfg = dataclasses.replace(config_for(emulator_factory()), ws_heartbeat=0.3, ws_idle=60.0)
    with GatewayThread(cfg) as gw:
        reader, writer = await raw_connect(gw.port)
        started = time.monotonic()
        seen = b""
        while True:  # read (the pings come) but never answer
            data = await asyncio.wait_for(reader.read(4096), 20)
            if not data:
                break
            seen += data
        assert seen[:1] == b"\x89"  # a ping frame came first
        assert time.monotonic() - started < 20  # closed long before ws_idle (60 s)
        writer.close()


async def test_each_request_is_admitted_again_rate_limit_and_revocation(keyed):
    cfg, _, _, url = keyed
    st = open_state(url, pepper=PEPPER.encode(), clock=lambda: datetime.fromtimestamp(NOW, timezone.utc))
    limited, _ = await st.create_key("one-a-minute", rpm=1)
    revoked, rec = await st.create_key("soon-revoked")
    short = {**ASK, "max_tokens": 5}
    try:
        with GatewayThread(dataclasses.replace(cfg, ws_linger=30.0), clock=lambda: NOW) as gw:
            for key, then, code, etype in ((limited, None, 1013, "rate_limit_error"),
                                           (revoked, rec.id, 1008, "authentication_error")):
                async with websockets.connect(
                    _url(gw), additional_headers={"Authorization": f"Bearer {key}"}
                ) as ws:
                    await ws.send(json.dumps(short))
                    while "finish_reason\":\"length" not in await ws.recv():
                        pass
                    if then is not None:
                        await st.revoke(then)
                        # Revocation reaches a worker within a second (its key cache): wait until
                        # this gateway refuses the key over HTTP, so the WebSocket request below is
                        # judged after it, however slow the box (a fixed sleep raced it under load).
                        await _refused_over_http(gw.base_url, key)
                    await ws.send(json.dumps(short))  # the same connection, a second request
                    err = json.loads(await ws.recv())["error"]
                    await ws.wait_closed()
                assert (ws.close_code, err["type"]) == (code, etype), err
    finally:
        await st.aclose()
