# Admission through the gateway with virtual keys (SQLite state): 401 missing/unknown key, 403 model
# not allowed, 402 budget, /models and /user/balance per key, the exact cost settled after a stream.
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from decimal import Decimal

import aiohttp
import pytest

from deepseek_kit._wire.pricing import cost
from deepseek_kit.server.gateway.state import open_state

from .relay_helpers import GatewayThread, config_for

PEPPER = "relay-test-pepper-0123456789abcdef"
# Sunday 2026-12-06 12:00 UTC: off-peak in Beijing whatever the calendar says
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc).timestamp()
ASK = {"model": "deepseek-flash", "max_tokens": 200, "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def keyed(emulator_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("DSK_GATEWAY_PEPPER", PEPPER)
    url = f"sqlite:///{tmp_path}/gw.db"
    emu = emulator_factory()

    async def make_keys():
        st = open_state(url, pepper=PEPPER.encode(),
                        clock=lambda: datetime.fromtimestamp(NOW, timezone.utc))
        full, _ = await st.create_key("full", budget_daily=Decimal("10"))
        pro_only, _ = await st.create_key("pro-only", models=["deepseek-v4-pro"])
        poor, _ = await st.create_key("poor", budget_daily=Decimal("0.0000001"))
        await st.aclose()
        return full, pro_only, poor

    cfg = config_for(emu, auth="keys", state=url)
    return cfg, make_keys, emu


async def _req(method: str, url: str, key: str | None, body=None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body, headers=headers) as r:
        return r.status, dict(r.headers), await r.read()


def _err(raw: bytes) -> dict:
    err = json.loads(raw)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


async def test_admission_statuses_and_per_key_views(keyed):
    cfg, make_keys, _ = keyed
    full, pro_only, poor = await make_keys()
    with GatewayThread(cfg, clock=lambda: NOW) as gw:
        u = gw.base_url
        status, _, raw = await _req("POST", u + "/chat/completions", None, ASK)
        assert status == 401 and _err(raw)["type"] == "authentication_error"
        status, _, raw = await _req("POST", u + "/chat/completions", "sk-dsk-AAAAAAAA-" + "x" * 43, ASK)
        assert status == 401
        status, _, raw = await _req("POST", u + "/chat/completions", pro_only, ASK)
        assert status == 403 and _err(raw)["code"] == "model_not_allowed"
        status, _, raw = await _req("POST", u + "/chat/completions", poor, ASK)
        assert status == 402, raw
        status, _, raw = await _req("GET", u + "/models", pro_only)
        assert status == 200 and [m["id"] for m in json.loads(raw)["data"]] == ["deepseek-v4-pro"]
        status, _, raw = await _req("GET", u + "/user/balance", full)
        bal = json.loads(raw)
        assert bal["is_available"] and bal["balance_infos"][0]["total_balance"] == "10.00"
        for secret in (full, pro_only, poor, PEPPER, "sk-upstream-secret-1234"):
            assert secret not in raw.decode()
        # a stream is settled at its exact cost from the usage the upstream reported
        status, _, raw = await _req("POST", u + "/chat/completions", full, {**ASK, "stream": True})
        assert status == 200 and raw.endswith(b"data: [DONE]\n\n")
        usage = [json.loads(line[6:]) for line in raw.split(b"\n")
                 if line.startswith(b"data: {")][-1]["usage"]
        expected = cost("deepseek-flash", usage, datetime.fromtimestamp(NOW, timezone.utc), "CNY")
        st = open_state(cfg.state, pepper=PEPPER.encode(),
                        clock=lambda: datetime.fromtimestamp(NOW, timezone.utc))
        try:
            for _ in range(100):  # settled off the request path (a lease: within about 1.1 s)
                rec = (await st.list_keys())
                key = next(r.key for r in rec if r.key.name == "full")
                left = await st.remaining(key)
                if left == Decimal(10) - expected:
                    break
                await asyncio.sleep(0.05)
            assert left == Decimal(10) - expected
        finally:
            await st.aclose()
        status, _, raw = await _req("GET", u + "/metrics", None)
        text = raw.decode()
        assert 'dsk_gateway_requests_total{' in text and "full" not in text.split("key=")[0]
        for secret in (full, pro_only, poor, PEPPER, "sk-upstream-secret-1234"):
            assert secret not in text


async def test_admin_api_is_mounted_with_the_admin_key(keyed, monkeypatch):
    import dataclasses

    cfg, make_keys, _ = keyed
    await make_keys()
    admin = "admin-secret-for-relay-tests-0001"
    monkeypatch.setenv("GW_TEST_ADMIN", admin)
    cfg = dataclasses.replace(cfg, admin_key_env="GW_TEST_ADMIN")
    with GatewayThread(cfg, clock=lambda: NOW) as gw:
        status, _, raw = await _req("GET", gw.base_url + "/admin/keys", admin)
        assert status == 200 and admin not in raw.decode()
        names = {k["name"] for k in json.loads(raw)["data"]} if isinstance(json.loads(raw), dict) else {
            k["name"] for k in json.loads(raw)}
        assert names == {"full", "pro-only", "poor"}
        status, _, _ = await _req("GET", gw.base_url + "/admin/keys", "wrong")
        assert status == 401


async def test_per_key_rpm_and_in_flight_caps_are_429_with_retry_after(keyed, emulator_factory):
    cfg, make_keys, _emu = keyed
    await make_keys()
    st = open_state(
        cfg.state, pepper=PEPPER.encode(), clock=lambda: datetime.fromtimestamp(NOW, timezone.utc)
    )
    rpm2, _ = await st.create_key("rpm2", rpm=2)
    one_at_a_time, _ = await st.create_key("one", max_in_flight=1)
    await st.aclose()
    with GatewayThread(cfg, clock=lambda: NOW) as gw:
        u = gw.base_url + "/chat/completions"
        got = [(await _req("POST", u, rpm2, ASK))[:2] for _ in range(3)]
        assert [g[0] for g in got] == [200, 200, 429]
        assert int(got[2][1]["Retry-After"]) >= 1

    slow_emu = emulator_factory(faults="delay_headers=0.5")
    with GatewayThread(config_for(slow_emu, auth="keys", state=cfg.state), clock=lambda: NOW) as gw:
        u = gw.base_url + "/chat/completions"
        first = asyncio.create_task(_req("POST", u, one_at_a_time, ASK))
        await asyncio.sleep(0.2)  # the first holds the key's only slot for 0.5 s
        status, headers, raw = await _req("POST", u, one_at_a_time, ASK)
        assert status == 429 and _err(raw)["code"] == "rate_limit_exceeded" and headers["Retry-After"]
        assert (await first)[0] == 200
        assert (await _req("POST", u, one_at_a_time, ASK))[0] == 200  # the slot was released


async def test_per_key_rpm_is_shared_by_two_gateways_on_redis(emulator_factory, redis_url, monkeypatch):
    monkeypatch.setenv("DSK_GATEWAY_PEPPER", PEPPER)
    st = open_state(redis_url, pepper=PEPPER.encode())
    key, _ = await st.create_key("shared", rpm=3)
    await st.aclose()
    emu = emulator_factory()
    cfg = config_for(emu, auth="keys", state=redis_url)
    with GatewayThread(cfg) as one, GatewayThread(cfg) as two:
        statuses = [(await _req("POST", gw.base_url + "/chat/completions", key, ASK))[0]
                    for gw in (one, two, one, two)]
    assert statuses == [200, 200, 200, 429]
