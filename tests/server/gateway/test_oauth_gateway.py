"""The OAuth2 client-credentials grant through a real gateway on 127.0.0.1 in front of the emulator:
the tutorial's JSON token fetch, form bodies with HTTP Basic or body credentials, the RFC 6749
error answers, a token used for chat (stream and not), FIM, /models and /user/balance with the bound
key's budget and limits, expiry on the gateway's clock, revocation, the library's
`OAuth2ClientCredentials` including refresh, and the admin API's /clients contract."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
from datetime import datetime, timezone
from decimal import Decimal

import aiohttp
import jwt
import pytest

from deepseek_kit import AsyncClient, OAuth2ClientCredentials
from deepseek_kit.server.gateway.oauth_tokens import tokens_for
from deepseek_kit.server.gateway.state import open_state

from .relay_helpers import GatewayThread, config_for

PEPPER = "oauth-gw-pepper-0123456789abcdef"
ADMIN = "oauth-admin-secret-0123456789"
# Sunday 2026-12-06 12:00 UTC: off-peak in Beijing whatever the calendar says
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc).timestamp()
ASK = {"model": "deepseek-flash", "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]}


class MovingClock:
    def __init__(self) -> None:
        self.t = NOW

    def __call__(self) -> float:
        return self.t

    def dt(self) -> datetime:
        return datetime.fromtimestamp(self.t, timezone.utc)


@dataclasses.dataclass
class World:
    gw: GatewayThread
    clock: MovingClock
    url: str
    key_id: str
    key_prefix: str
    client_id: str
    secret: str


async def _setup(url, *, rpm=None, ttl=600):
    clock = MovingClock()
    st = open_state(url, pepper=PEPPER.encode(), clock=clock.dt)
    try:
        _, key = await st.create_key("team", budget_daily=Decimal("10"), rpm=rpm)
        secret, client = await tokens_for(st).clients.create("bot", key.id, scope="api chat", token_ttl=ttl)
    finally:
        await st.aclose()
    return clock, key, client, secret


@pytest.fixture
def make_world(emulator_factory, monkeypatch):
    monkeypatch.setenv("DSK_GATEWAY_PEPPER", PEPPER)
    monkeypatch.setenv("GW_TEST_ADMIN", ADMIN)
    emu = emulator_factory()
    started: list[GatewayThread] = []

    async def make(url, **kw) -> World:
        clock, key, client, secret = await _setup(url, **kw)
        cfg = dataclasses.replace(config_for(emu, auth="keys", state=url), admin_key_env="GW_TEST_ADMIN")
        gw = GatewayThread(cfg, clock=clock).start()
        started.append(gw)
        return World(gw, clock, url, key.id, key.prefix, client.client_id, secret)

    yield make
    for gw in started:
        gw.stop()


async def _post(url, *, json_body=None, data=None, headers=None):
    async with aiohttp.ClientSession() as s, s.post(url, json=json_body, data=data, headers=headers) as r:
        return r.status, dict(r.headers), await r.read()


async def _call(method, url, token, body=None):
    async with aiohttp.ClientSession() as s, \
            s.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, dict(r.headers), await r.read()


async def _tutorial_token(w: World) -> str:
    # The tutorial's fetch, unchanged but for the host.
    status, headers, raw = await _post(w.gw.base_url + "/v1/oauth/token", json_body={
        "grant_type": "client_credentials", "client_id": w.client_id, "client_secret": w.secret})
    assert status == 200, raw
    assert headers["Cache-Control"] == "no-store"
    body = json.loads(raw)
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600 and body["scope"] == "api chat"
    return str(body["access_token"])


async def test_tutorial_token_acts_as_its_key_for_chat_models_and_balance(make_world, state_url, caplog):
    caplog.set_level(logging.DEBUG)
    w = await make_world(state_url)
    token = await _tutorial_token(w)
    u = w.gw.base_url
    status, _, raw = await _call("POST", u + "/v1/chat/completions", token, ASK)
    assert status == 200, raw
    plain_usage = json.loads(raw)["usage"]
    status, _, raw = await _call("POST", u + "/chat/completions", token, {**ASK, "stream": True})
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n")
    status, _, raw = await _call("GET", u + "/models", token)
    assert status == 200 and json.loads(raw)["data"]
    status, _, raw = await _call("POST", u + "/beta/completions", token,
                                 {"model": "deepseek-flash", "prompt": "def f(", "max_tokens": 20})
    assert status == 200 and json.loads(raw)["choices"], raw  # FIM
    from deepseek_kit._wire.pricing import cost

    spent_plain = cost("deepseek-flash", plain_usage, w.clock.dt(), "CNY")
    status, _, raw = await _call("GET", u + "/user/balance", token)  # the bound key's budget
    assert status == 200 and Decimal(json.loads(raw)["balance_infos"][0]["total_balance"]) < Decimal(10)
    st = open_state(state_url, pepper=PEPPER.encode(), clock=w.clock.dt)
    try:
        rec = await st.get_key(w.key_id)
        for _ in range(100):  # settled off the request path, within about 0.1 s
            today, _ = await st.spent(rec.key)
            if today > spent_plain:
                break
            await asyncio.sleep(0.05)
        assert today > spent_plain  # the plain call, the stream and the FIM call
    finally:
        await st.aclose()
    logs = caplog.text
    assert w.secret not in logs and token not in logs and token.split(".")[2] not in logs


async def test_form_with_basic_or_body_credentials(make_world, tmp_path):
    w = await make_world(f"sqlite:///{tmp_path}/gw.db")
    url = w.gw.base_url + "/oauth/token"
    basic = base64.b64encode(f"{w.client_id}:{w.secret}".encode()).decode()
    status, headers, raw = await _post(url, data={"grant_type": "client_credentials", "scope": "chat"},
                                       headers={"Authorization": f"Basic {basic}"})
    assert status == 200 and headers["Cache-Control"] == "no-store", raw
    assert json.loads(raw)["scope"] == "chat"
    status, _, raw = await _post(url, data={"grant_type": "client_credentials", "client_id": w.client_id,
                                            "client_secret": w.secret})
    assert status == 200
    claims = jwt.decode(json.loads(raw)["access_token"], options={"verify_signature": False})
    assert claims["sub"] == w.client_id and claims["key_id"] == w.key_id and claims["scope"] == "api chat"


async def test_rfc6749_errors(make_world, tmp_path):
    w = await make_world(f"sqlite:///{tmp_path}/gw.db")
    url = w.gw.base_url + "/v1/oauth/token"
    good = {"grant_type": "client_credentials", "client_id": w.client_id, "client_secret": w.secret}
    wrong_basic = base64.b64encode(f"{w.client_id}:nope".encode()).decode()
    cases = [
        ({"json_body": {**good, "grant_type": "password"}}, 400, "unsupported_grant_type"),
        ({"json_body": {"client_id": w.client_id, "client_secret": w.secret}}, 400, "invalid_request"),
        ({"json_body": [1, 2]}, 400, "invalid_request"),
        ({"json_body": {**good, "client_secret": 5}}, 400, "invalid_request"),
        ({"data": "grant_type=client_credentials&grant_type=client_credentials",
          "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 400, "invalid_request"),
        ({"data": b"grant_type=client_credentials", "headers": {"Content-Type": "text/plain"}}, 400,
         "invalid_request"),
        ({"data": good, "headers": {"Authorization": f"Basic {wrong_basic}"}}, 400, "invalid_request"),
        ({"json_body": {**good, "client_secret": "dsk-cs-wrong"}}, 401, "invalid_client"),
        ({"json_body": {**good, "client_id": "dskc_00000000000000000000"}}, 401, "invalid_client"),
        ({"json_body": {"grant_type": "client_credentials"}}, 401, "invalid_client"),
        ({"data": {"grant_type": "client_credentials"}, "headers": {"Authorization": f"Basic {wrong_basic}"}},
         401, "invalid_client"),
        ({"json_body": {**good, "scope": "admin"}}, 400, "invalid_scope"),
        ({"json_body": {**good, "scope": 'bad"scope'}}, 400, "invalid_scope"),
    ]
    for kwargs, want_status, want_error in cases:
        status, headers, raw = await _post(url, **kwargs)
        body = json.loads(raw)
        assert (status, body["error"]) == (want_status, want_error), (kwargs, body)
        assert set(body) == {"error", "error_description"} and headers["Cache-Control"] == "no-store"
        assert w.secret not in raw.decode()
        basic_used = "Authorization" in kwargs.get("headers", {})
        assert ("WWW-Authenticate" in headers) == (want_error == "invalid_client" and basic_used)
    st = open_state(w.url, pepper=PEPPER.encode(), clock=w.clock.dt)
    try:
        await st.revoke(w.key_id)
    finally:
        await st.aclose()
    status, _, raw = await _post(url, json_body=good)
    assert status == 400 and json.loads(raw)["error"] == "invalid_grant"


async def test_expired_revoked_and_limits_through_the_gateway(make_world, tmp_path):
    w = await make_world(f"sqlite:///{tmp_path}/gw.db", rpm=2)
    token = await _tutorial_token(w)
    u = w.gw.base_url + "/chat/completions"
    got = [(await _call("POST", u, token, ASK))[0] for _ in range(3)]
    assert got == [200, 200, 429]  # the bound key's rpm
    w.clock.t = NOW + 600
    status, _, raw = await _call("GET", w.gw.base_url + "/models", token)
    err = json.loads(raw)["error"]
    assert status == 401 and err["type"] == "authentication_error" and "expired" in err["message"]
    assert set(err) == {"message", "type", "param", "code"}
    fresh = await _tutorial_token(w)
    assert (await _call("GET", w.gw.base_url + "/models", fresh))[0] == 200
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as s, \
            s.post(f"{w.gw.base_url}/admin/clients/{w.client_id}/revoke") as r:
        assert r.status == 200 and (await r.json())["revoked"]
    status, _, raw = await _call("GET", w.gw.base_url + "/models", fresh)
    assert status == 401 and "revoked" in json.loads(raw)["error"]["message"]


async def test_library_oauth_provider_works_out_of_the_box_with_refresh(make_world, tmp_path):
    w = await make_world(f"sqlite:///{tmp_path}/gw.db")
    auth = OAuth2ClientCredentials(w.gw.base_url + "/v1/oauth/token", w.client_id, w.secret)
    client = AsyncClient(base_url=w.gw.base_url, auth=auth, max_retries=0)
    try:
        r = await client.chat.completions.create(model="deepseek-flash", messages=ASK["messages"])
        assert r.choices and auth.fetches == 1
        w.clock.t = NOW + 601  # the gateway now refuses the token: the provider fetches a new one
        r = await client.chat.completions.create(model="deepseek-flash", messages=ASK["messages"])
        assert r.choices and auth.fetches == 2
    finally:
        await client.close()
    # a short lifetime: refreshed before it runs out, without a 401
    st = open_state(w.url, pepper=PEPPER.encode(), clock=w.clock.dt)
    try:
        secret, short = await tokens_for(st).clients.create("short", w.key_id, token_ttl=2)
    finally:
        await st.aclose()
    auth = OAuth2ClientCredentials(w.gw.base_url + "/v1/oauth/token", short.client_id, secret,
                                   refresh_margin=1.5)
    client = AsyncClient(base_url=w.gw.base_url, auth=auth, max_retries=0)
    try:
        await client.chat.completions.create(model="deepseek-flash", messages=ASK["messages"])
        await asyncio.sleep(0.6)
        await client.chat.completions.create(model="deepseek-flash", messages=ASK["messages"])
        assert auth.fetches == 2
    finally:
        await client.close()


async def test_admin_clients_contract(make_world, tmp_path):
    w = await make_world(f"sqlite:///{tmp_path}/gw.db")
    base = w.gw.base_url + "/admin"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as s:
        async with s.post(f"{base}/clients", json={"name": "dash", "key": w.key_prefix, "scope": "chat",
                                                   "token_ttl": 120}) as r:
            assert r.status == 201 and r.headers["Cache-Control"] == "no-store"
            made = await r.json()
        assert set(made) == {"client_id", "client_secret", "name", "key_id", "scope", "token_ttl", "created",
                             "revoked"}
        assert (made["key_id"], made["scope"], made["token_ttl"], made["revoked"]) == (w.key_id, "chat", 120,
                                                                                     None)
        async with s.get(f"{base}/clients") as r:
            text = await r.text()
            listing = json.loads(text)["data"]
        assert {c["client_id"] for c in listing} == {w.client_id, made["client_id"]}
        assert made["client_secret"] not in text and w.secret not in text
        assert all("client_secret" not in c for c in listing)
        async with s.post(f"{base}/clients/{made['client_id']}/rotate") as r:
            rotated = await r.json()
        assert rotated["client_secret"] != made["client_secret"] and rotated["client_id"] == made["client_id"]
        async with s.delete(f"{base}/clients/{made['client_id']}") as r:
            assert r.status == 200 and (await r.json())["revoked"]
        async with s.post(f"{base}/clients", json={"name": "x", "key": "key_nope"}) as r:
            assert r.status == 404 and (await r.json())["error"]["message"]
        async with s.post(f"{base}/clients", json={"name": "x", "key": w.key_id, "token_ttl": 0}) as r:
            assert r.status == 400 and "token_ttl" in (await r.json())["error"]["message"]
        async with s.post(f"{base}/clients/dskc_00000000000000000000/revoke") as r:
            assert r.status == 404
        old = await _tutorial_token(w)
        async with s.post(f"{base}/oauth/signing-keys/rotate") as r:
            kid = (await r.json())["kid"]
        new = await _tutorial_token(w)
        assert jwt.get_unverified_header(new)["kid"] == kid != jwt.get_unverified_header(old)["kid"]
        for token in (old, new):  # the old token stays valid until it expires
            assert (await _call("GET", w.gw.base_url + "/models", token))[0] == 200
    async with aiohttp.ClientSession() as anon, anon.get(f"{base}/clients") as r:
        assert r.status == 401


async def test_two_gateways_share_clients_tokens_and_revocation(make_world, emulator_factory, tmp_path):
    import time

    w = await make_world(f"sqlite:///{tmp_path}/gw.db")
    cfg = dataclasses.replace(config_for(emulator_factory(), auth="keys", state=w.url),
                              admin_key_env="GW_TEST_ADMIN")
    with GatewayThread(cfg, clock=w.clock) as other:  # a second worker on the same state
        token = await _tutorial_token(w)  # issued by the first gateway
        assert (await _call("GET", other.base_url + "/models", token))[0] == 200
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as s, \
                s.post(f"{w.gw.base_url}/admin/clients/{w.client_id}/revoke") as r:
            assert r.status == 200
        start = time.monotonic()
        while (await _call("GET", other.base_url + "/models", token))[0] == 200:
            # 0.5 s polling plus HTTP round trips on a loaded box: within a second, bounded generously
            assert time.monotonic() - start < 2.0, "the other gateway still accepts a revoked client's token"
            await asyncio.sleep(0.05)
        assert (await _call("GET", other.base_url + "/models", token))[0] == 401


async def test_access_token_streams_over_websocket_and_a_tampered_one_is_refused(make_world, tmp_path):
    """OAuth meets WebSocket: the tutorial's token opens `/v1/chat/stream` and streams to a normal
    close, charged to the bound key; a token with a changed signature is refused at the handshake."""
    w = await make_world(f"sqlite:///{tmp_path}/gw.db")
    token = await _tutorial_token(w)
    ws_url = w.gw.base_url.replace("http://", "ws://") + "/v1/chat/stream"
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(ws_url, headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send_str(json.dumps({**ASK, "stream": True}))
            chunks = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
            assert ws.close_code == 1000
        assert chunks and "".join(c["choices"][0]["delta"].get("content") or ""
                                  for c in chunks if c["choices"])
        assert chunks[-1]["usage"]["completion_tokens"] > 0
        head, payload, sig = token.split(".")
        forged = f"{head}.{payload}.{sig[:-4]}{'AAAA' if sig[-4:] != 'AAAA' else 'BBBB'}"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(ws_url, headers={"Authorization": f"Bearer {forged}"})
        assert refused.value.status == 401
    status, _, body = await _call("GET", f"{w.gw.base_url}/user/balance", token)
    assert status == 200
    assert Decimal(json.loads(body)["balance_infos"][0]["total_balance"]) < Decimal("10")
