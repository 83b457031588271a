"""The gateway's JWKS (`/.well-known/jwks.json`, `/v1/oauth/jwks`) through a real gateway on one
state (SQLite file, then redis-server): public Ed25519 keys only, in RFC 8037's OKP form, short
cache; a token from the gateway verifies with PyJWT from the served set alone; after a signing-key
rotation made elsewhere (as `dsk clients rotate-signing-key` does) both kids are served until the
old key's tokens have all expired on the gateway's clock."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import aiohttp
import jwt
import pytest

from deepseek_kit.server.gateway.oauth_clients import MAX_TOKEN_TTL
from deepseek_kit.server.gateway.oauth_tokens import tokens_for
from deepseek_kit.server.gateway.state import open_state

from .relay_helpers import GatewayThread, config_for
from .test_oauth_gateway import PEPPER, MovingClock

# The gateway's clock is moved (days ahead of the real one), so PyJWT must not judge nbf/iat by
# the system clock; the gateway checks those itself.
DECODE = {"algorithms": ["EdDSA"], "audience": "dsk-gateway", "issuer": "dsk-gateway",
          "options": {"verify_nbf": False, "verify_iat": False}}


@pytest.fixture
def world(emulator, state_url, monkeypatch):
    monkeypatch.setenv("DSK_GATEWAY_PEPPER", PEPPER)
    clock = MovingClock()
    with GatewayThread(config_for(emulator, auth="keys", state=state_url), clock=clock) as gw:
        yield gw.base_url, clock, state_url


async def _state_call(url, clock, fn):
    st = open_state(url, pepper=PEPPER.encode(), clock=clock.dt)
    try:
        return await fn(st)
    finally:
        await st.aclose()


async def _get(url: str) -> tuple[int, dict[str, str], dict]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, dict(r.headers), json.loads(await r.read())


async def _token(base: str, cid: str, secret: str) -> str:
    async with aiohttp.ClientSession() as s, s.post(base + "/v1/oauth/token", json={
            "grant_type": "client_credentials", "client_id": cid, "client_secret": secret}) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["access_token"])


def _verify(token: str, jwks: dict) -> dict:
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    claims: dict = jwt.decode(token, jwt.PyJWK(jwk).key, **DECODE)
    return claims


async def _kids(base: str) -> list[str]:
    return [k["kid"] for k in (await _get(base + "/.well-known/jwks.json"))[2]["keys"]]


async def test_jwks_serves_the_public_keys_tokens_verify_with(world):
    base, clock, url = world

    async def make(st):
        _, key = await st.create_key("team", budget_daily=Decimal("5"))
        return await tokens_for(st).clients.create("bot", key.id, token_ttl=600)

    secret, client = await _state_call(url, clock, make)
    token = await _token(base, client.client_id, secret)
    status, headers, jwks = await _get(base + "/.well-known/jwks.json")
    assert status == 200 and headers["Content-Type"].startswith("application/jwk-set+json")
    assert headers["Cache-Control"] == "public, max-age=300"
    assert (await _get(base + "/v1/oauth/jwks"))[2] == jwks
    [jwk] = jwks["keys"]
    assert set(jwk) == {"kty", "crv", "x", "kid", "use", "alg"}  # no "d": never the private half
    assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("OKP", "Ed25519", "sig", "EdDSA")
    assert "=" not in jwk["x"] and len(jwk["x"]) == 43  # 32 bytes, base64url without padding
    claims = _verify(token, jwks)
    assert claims["sub"] == client.client_id and claims["exp"] == int(clock.t) + 600

    # another process rotates the signing key: the gateway serves both kids, newest first
    old_kid = jwk["kid"]
    new_kid = await _state_call(url, clock, lambda st: tokens_for(st).rotate_signing_key())
    deadline = time.monotonic() + 10
    while await _kids(base) != [new_kid, old_kid]:  # workers see the change within a second
        assert time.monotonic() < deadline, await _kids(base)
        await asyncio.sleep(0.1)
    jwks = (await _get(base + "/.well-known/jwks.json"))[2]
    assert _verify(token, jwks)["sub"] == client.client_id  # the old token still verifies
    fresh = await _token(base, client.client_id, secret)
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid and _verify(fresh, jwks)

    # the old key stays listed while a token it signed could still be valid, then goes
    clock.t += MAX_TOKEN_TTL
    assert await _kids(base) == [new_kid, old_kid]
    clock.t += 60
    assert await _kids(base) == [new_kid]
