"""OAuth access tokens against a real SQLite file and a real redis-server: issue and verify, every
refusal as its own case (tokens crafted by hand and with PyJWT), expiry on a hand-moved clock,
revocation seen by another worker within a second, signing-key rotation, the private key
encrypted at rest, and the verification cost."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import sqlite3
import time
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deepseek_kit.server.gateway.keys import ForbiddenError, GatewayKeyError, InvalidKeyError
from deepseek_kit.server.gateway.oauth_tokens import MAX_TOKEN_LEN, tokens_for
from deepseek_kit.server.gateway.state import open_state
from tests.helpers.clock import Clock

PEPPER = b"oauth-test-pepper-0123456789"
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


def b64(data: bytes | dict) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture
async def world(state_url):
    clock = Clock(T0)
    st = open_state(state_url, pepper=PEPPER, clock=clock)
    _, key = await st.create_key("team", allow_ip=["127.0.0.0/8"])
    svc = tokens_for(st)
    secret, client = await svc.clients.create("bot", key.id, scope="api chat", token_ttl=600)
    token, _ = await svc.issue(client, client.scope)
    yield st, svc, clock, key, client, secret, token
    await st.aclose()


def _signing(svc):
    keys = svc._keys
    assert keys is not None and svc._current is not None
    return keys[svc._current]


def _claims(svc, client, **over):
    now = int(svc.now())
    c = {"iss": svc.issuer, "aud": svc.audience, "sub": client.client_id, "client_id": client.client_id,
         "key_id": client.key_id, "scope": client.scope, "iat": now, "nbf": now, "exp": now + 600,
         "jti": "j1", "ver": client.version}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def _sign(svc, claims, *, key=None, **header):
    sk = _signing(svc)
    return jwt.encode(claims, key or sk.private, algorithm="EdDSA",
                      headers={"kid": sk.kid, "typ": "at+jwt", **header})


async def test_a_token_acts_as_its_bound_key(world):
    st, svc, _, key, client, _, token = world
    got = await svc.authenticate(token, "127.0.0.1")
    assert got.id == key.id and got == (await st.get_key(key.id)).key
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["typ"] == "at+jwt" and header["kid"] == _signing(svc).kid
    claims = jwt.decode(token, options={"verify_signature": False})
    assert {"iss", "aud", "sub", "exp", "nbf", "iat", "scope", "key_id"} <= set(claims)
    assert claims["sub"] == client.client_id and claims["exp"] - claims["iat"] == 600
    with pytest.raises(ForbiddenError):  # the bound key's address allow-list applies
        await svc.authenticate(token, "10.1.2.3")


def _bad_tokens(svc, client, good):
    sk = _signing(svc)
    pub_pem = sk.public.public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = _claims(svc, client)
    hs_input = f"{b64({'alg': 'HS256', 'typ': 'at+jwt', 'kid': sk.kid})}.{b64(claims)}"
    hs_sig = b64(hmac.new(pub_pem, hs_input.encode(), hashlib.sha256).digest())
    head, body, sig = good.split(".")
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    return {
        "alg none": f"{b64({'alg': 'none', 'typ': 'at+jwt', 'kid': sk.kid})}.{b64(claims)}.",
        "HS256 keyed with the public key": f"{hs_input}.{hs_sig}",
        "unknown kid": _sign(svc, claims, kid="no-such-key-id"),
        "path-like kid": _sign(svc, claims, kid="../../etc/passwd"),
        "bad signature": f"{head}.{body}.{flipped}",
        "another key's signature": _sign(svc, claims, key=Ed25519PrivateKey.generate()),
        "payload swapped": f"{head}.{b64(_claims(svc, client, scope='admin'))}.{sig}",
        "wrong issuer": _sign(svc, _claims(svc, client, iss="https://evil.example")),
        "wrong audience": _sign(svc, _claims(svc, client, aud="someone-else")),
        "expired": _sign(svc, _claims(svc, client, exp=int(svc.now()) - 1)),
        "not yet valid": _sign(svc, _claims(svc, client, nbf=int(svc.now()) + 3600)),
        "missing exp": _sign(svc, _claims(svc, client, exp=None)),
        "exp not a number": _sign(svc, _claims(svc, client, exp="tomorrow")),
        "not an access token (typ)": _sign(svc, claims, typ="JWT"),
        "other client's key": _sign(svc, _claims(svc, client, key_id="key_0000000000000000")),
        "oversize": _sign(svc, _claims(svc, client, pad="x" * MAX_TOKEN_LEN)),
        "malformed base64": "abc.def.ghi",
        "malformed json": f"{b64(b'{not json')}.{b64(claims)}.{sig}",
    }


CASES = ["alg none", "HS256 keyed with the public key", "unknown kid", "path-like kid", "bad signature",
         "another key's signature", "payload swapped", "wrong issuer", "wrong audience", "expired",
         "not yet valid", "missing exp", "exp not a number", "not an access token (typ)",
         "other client's key", "oversize", "malformed base64", "malformed json"]


@pytest.mark.parametrize("case", CASES)
async def test_refused_tokens(world, case):
    _, svc, _, _, client, secret, good = world
    await svc.authenticate(good, "127.0.0.1")  # loads the signing keys
    bad = _bad_tokens(svc, client, good)[case]
    with pytest.raises(InvalidKeyError) as err:
        await svc.authenticate(bad, "127.0.0.1")
    assert err.value.status == 401 and err.value.body()["error"]["type"] == "authentication_error"
    assert bad not in err.value.message and secret not in err.value.message


async def test_expiry_follows_the_injected_clock(world):
    _, svc, clock, _, _, _, token = world
    await svc.authenticate(token, "127.0.0.1")
    clock.at = T0 + timedelta(seconds=599)
    await svc.authenticate(token, "127.0.0.1")  # cached, still checked against the clock
    clock.at = T0 + timedelta(seconds=600)
    with pytest.raises(InvalidKeyError, match="expired at 2026-12-06T12:10:00"):
        await svc.authenticate(token, "127.0.0.1")


async def test_revoking_reaches_another_worker_within_a_second(world, state_url):
    _, svc, clock, key, client, secret, token = world
    other = open_state(state_url, pepper=PEPPER, clock=clock)  # a second worker on the same store
    try:
        theirs = tokens_for(other)
        assert (await theirs.authenticate(token, "127.0.0.1")).id == key.id
        await svc.clients.revoke(client.client_id)
        with pytest.raises(InvalidKeyError, match="revoked"):
            await svc.authenticate(token, "127.0.0.1")  # this worker: at once
        start = time.monotonic()
        while True:
            try:
                await theirs.authenticate(token, "127.0.0.1")
            except InvalidKeyError:
                break
            assert time.monotonic() - start < 1.0, "the other worker still accepts a revoked client"
            await asyncio.sleep(0.05)
        assert await svc.clients.check(client.client_id, secret) is None
    finally:
        await other.aclose()


async def test_rotating_a_secret_ends_old_tokens_and_a_revoked_key_ends_all(world):
    st, svc, _, key, client, secret, token = world
    new_secret, rec = await svc.clients.rotate(client.client_id)
    assert new_secret != secret and rec.version == 2
    assert await svc.clients.check(client.client_id, secret) is None
    with pytest.raises(InvalidKeyError, match="old secret"):
        await svc.authenticate(token, "127.0.0.1")
    fresh, _ = await svc.issue(await svc.clients.check(client.client_id, new_secret), "api")
    assert (await svc.authenticate(fresh, "127.0.0.1")).id == key.id
    await st.revoke(key.id)
    with pytest.raises(InvalidKeyError, match="unknown or revoked"):
        await svc.authenticate(fresh, "127.0.0.1")


async def test_signing_key_rotation_keeps_old_tokens_until_they_expire(world, state_url):
    _, svc, clock, _, client, _, old = world
    await svc.authenticate(old, "127.0.0.1")
    old_kid = jwt.get_unverified_header(old)["kid"]
    new_kid = await svc.rotate_signing_key()
    assert new_kid != old_kid
    new, _ = await svc.issue(client, client.scope)
    assert jwt.get_unverified_header(new)["kid"] == new_kid
    await svc.authenticate(old, "127.0.0.1")
    await svc.authenticate(new, "127.0.0.1")
    views = {k["kid"]: k for k in await svc.signing_keys()}
    assert views[new_kid]["current"] and views[old_kid]["retired"] and not views[old_kid]["current"]
    assert all(set(v) == {"kid", "alg", "current", "retired"} for v in views.values())
    clock.at = T0 + timedelta(seconds=600)
    with pytest.raises(InvalidKeyError, match="expired"):
        await svc.authenticate(old, "127.0.0.1")


async def test_the_private_key_is_encrypted_at_rest(world, state_url, tmp_path):
    st, svc, clock, _, client, _, token = world
    raw = _signing(svc).private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                              serialization.NoEncryption())
    if state_url.startswith("sqlite"):
        await st.flush()
        with sqlite3.connect(state_url[len("sqlite://"):]) as db:
            stored = " ".join(d for (d,) in db.execute("SELECT data FROM gw_oauth_signing"))
            clients = " ".join(d + h for d, h in db.execute("SELECT data, hash FROM gw_oauth_clients"))
    else:
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(state_url)
        stored = " ".join(v.decode() for v in (await r.hgetall("dsk:gw:jwks")).values())
        clients = json.dumps({k.decode(): v.decode() for k, v in
                              (await r.hgetall(f"dsk:gw:client:{client.client_id}")).items()})
        await r.aclose()
    assert b64(raw) not in stored and "enc" in stored
    assert "dsk-cs-" not in clients  # the secret is only a hash
    other = open_state(state_url, pepper=b"a-different-pepper-0000", clock=clock)
    try:
        with pytest.raises(GatewayKeyError, match="pepper differs"):
            await tokens_for(other).authenticate(token, "127.0.0.1")
    finally:
        await other.aclose()


async def test_verification_is_cheap(world, capsys):
    _, svc, _, _, _, _, token = world
    await svc.authenticate(token, "127.0.0.1")
    n = 200
    start = time.process_time()
    for _ in range(n):
        svc._verified.clear()  # the full check: parse, Ed25519 signature, claims
        await svc.authenticate(token, "127.0.0.1")
    full = (time.process_time() - start) / n
    start = time.process_time()
    for _ in range(n * 10):
        await svc.authenticate(token, "127.0.0.1")
    cached = (time.process_time() - start) / (n * 10)
    with capsys.disabled():
        print(f"\ntoken verification CPU time: {full * 1e6:.0f} us full, {cached * 1e6:.1f} us cached")
    assert full < 0.005 and cached < 0.001  # generous: a shared, loaded test machine


async def test_without_pyjwt_a_dotted_bearer_is_a_401_and_issuing_says_what_to_install(world, monkeypatch):
    from deepseek_kit.server.gateway.oauth_tokens import OAuthUnavailableError

    _, svc, _, _, client, _, token = world
    monkeypatch.setitem(__import__("sys").modules, "jwt", None)  # as if PyJWT were not installed
    with pytest.raises(InvalidKeyError) as err:
        await svc.authenticate(token + "x", "127.0.0.1")
    assert err.value.status == 401
    with pytest.raises(OAuthUnavailableError, match=r"deepseek-kit\[oauth\]") as err:
        await svc.issue(client, client.scope)
    assert err.value.status == 501
