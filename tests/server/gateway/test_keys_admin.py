"""The admin HTTP API on a real loopback socket over a real SQLite state: admin-key auth, create
(key once, no-store), list without secrets, show, revoke, rotate, usage, and typed 4xx errors."""

from decimal import Decimal

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from deepseek_kit.server.gateway.admin import add_admin_routes
from deepseek_kit.server.gateway.keys import InvalidKeyError
from deepseek_kit.server.gateway.state import open_state

PEPPER = b"admin-test-pepper-0123456789"
ADMIN = "adm-secret-0123456789"


@pytest.fixture
async def admin(tmp_path):
    state = open_state(f"sqlite:///{tmp_path}/gw.db", pepper=PEPPER)
    app = web.Application()
    add_admin_routes(app, lambda: state, ADMIN, currency="usd")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"})
    base = str(server.make_url("/admin"))
    yield session, base, state
    await session.close()
    await server.close()
    await state.aclose()


async def test_admin_key_is_required(admin, tmp_path):
    session, base, _ = admin
    async with aiohttp.ClientSession() as anon:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {ADMIN}x"},
                        {"Authorization": ADMIN}):
            async with anon.get(f"{base}/keys", headers=headers) as r:
                assert r.status == 401
                body = await r.json()
                assert body["error"]["type"] == "authentication_error" and ADMIN not in str(body)
    app = web.Application()
    add_admin_routes(app, lambda: None, None)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with session.get(server.make_url("/admin/keys")) as r:
            assert r.status == 403
    finally:
        await server.close()


async def test_create_list_show_rotate_revoke_usage(admin):
    session, base, state = admin
    async with session.post(f"{base}/keys", json={
            "name": "dash", "models": ["deepseek-flash"], "rpm": 10, "budget_daily": "2.5",
            "expires_at": "2099-01-01T00:00:00+08:00", "allow_ip": ["127.0.0.0/8"]}) as r:
        assert r.status == 201, await r.text()
        assert r.headers["Cache-Control"] == "no-store"
        created = await r.json()
    token = created["key"]
    assert created["prefix"] in token and created["currency"] == "USD" and created["budget_daily"] == "2.5"
    key = await state.authenticate(token, "127.0.0.1")
    await state.settle(await state.reserve(key, Decimal(1), model="deepseek-flash"), Decimal("0.5"))

    async with session.get(f"{base}/keys") as r:
        listing = await r.text()
    assert created["id"] in listing and token not in listing and token[16:30] not in listing
    async with session.get(f"{base}/keys/{created['prefix']}") as r:
        shown = await r.json()
    assert shown["spent_today"] == "0.5" and shown["remaining"] == "2" and "key" not in shown
    async with session.get(f"{base}/keys/{created['id']}/usage", params={"since": "2026-01-01"}) as r:
        usage = await r.json()
    assert [(u["model"], u["requests"], u["cost"]) for u in usage["data"]] == [("deepseek-flash", 1, "0.5")]

    async with session.post(f"{base}/keys/{created['id']}/rotate") as r:
        rotated = await r.json()
    assert rotated["key"] != token and rotated["id"] == created["id"]
    with pytest.raises(InvalidKeyError):
        await state.authenticate(token, "127.0.0.1")
    async with session.delete(f"{base}/keys/{created['id']}") as r:
        assert (await r.json())["status"] == "revoked"
    with pytest.raises(InvalidKeyError):
        await state.authenticate(rotated["key"], "127.0.0.1")


@pytest.mark.parametrize("body, status, words", [
    ({"name": "x", "rpm": "ten"}, 400, "rpm"),
    ({"name": "x", "budget_daily": "lots"}, 400, "budget_daily"),
    ({"name": "x", "budget_daily": -1}, 400, "budget_daily"),
    ({"name": "x", "allow_ip": ["300.0.0.0/8"]}, 400, "IP network"),
    ({"name": "x", "expires_at": "2099-01-01"}, 400, "offset"),
    ({"name": "x", "secret": "y"}, 400, "unknown field"),
    ({"models": ["m"]}, 400, "name"),
    (["not", "an", "object"], 400, "JSON object"),
])
async def test_bad_create_bodies(admin, body, status, words):
    session, base, _ = admin
    async with session.post(f"{base}/keys", json=body) as r:
        assert r.status == status
        assert words in (await r.json())["error"]["message"]


async def test_bad_requests(admin):
    session, base, _ = admin
    async with session.post(f"{base}/keys", data=b"[" * 100_000) as r:
        assert r.status == 413
    async with session.post(f"{base}/keys", data=b"[" * 50_000) as r:
        assert r.status == 400
    async with session.get(f"{base}/keys/key_nope") as r:
        assert r.status == 404
    async with session.get(f"{base}/keys/key_nope/usage", params={"since": "yesterday"}) as r:
        assert r.status == 400
