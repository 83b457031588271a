"""Virtual keys of the gateway state, on a real SQLite file and a real redis-server: create, verify,
revoke, rotate, expiry (injected clock), IP allow-lists, and the hash-at-rest check."""

import ipaddress
import re
import socket
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from deepseek_kit.server.gateway.keys import (
    ForbiddenError,
    GatewayKeyError,
    InvalidKeyError,
    KeyNotFoundError,
    StateUnavailableError,
)
from deepseek_kit.server.gateway.state import open_state
from tests.helpers.clock import Clock

PEPPER = b"test-pepper-0123456789abcdef"
T0 = datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
async def state(state_url):
    clock = Clock(T0)
    st = open_state(state_url, pepper=PEPPER, clock=clock)
    st.clock = clock
    yield st
    await st.aclose()


def _dump_redis(url):
    """Every key and value in the redis-server, raw (DUMP would be binary; use KEYS + GET/HGETALL)."""
    import redis

    r = redis.Redis.from_url(url)
    out = []
    for k in r.keys("*"):
        out.append(k)
        t = r.type(k)
        if t == b"string":
            out.append(r.get(k))
        elif t == b"hash":
            for f, v in r.hgetall(k).items():
                out += [f, v]
        elif t == b"set":
            out += list(r.smembers(k))
        elif t == b"zset":
            out += [m for m, _ in r.zrange(k, 0, -1, withscores=True)]
    r.close()
    return b"\n".join(out)


async def test_create_verify_and_secret_shape(state):
    token, key = await state.create_key("team-a", models=["deepseek-flash"], rpm=60, tpm=1000,
                                        max_in_flight=4, budget_daily=Decimal("1.5"))
    assert re.fullmatch(r"sk-dsk-[A-Za-z0-9]{8}-[A-Za-z0-9_\-]{43}", token)
    assert token.startswith(key.prefix + "-")
    assert token not in repr(key) and token[len(key.prefix) + 1:] not in repr(key)
    got = await state.authenticate(token, "127.0.0.1")
    assert got == key
    assert (
        got.models == frozenset({"deepseek-flash"}) and got.rpm == 60 and got.budget_daily == Decimal("1.5")
    )
    assert got.allows_model("deepseek-flash") and not got.allows_model("deepseek-v4-pro")
    assert (await state.get_key(key.id)).key == key
    assert (await state.get_key(key.prefix)).key.id == key.id
    assert [r.key.id for r in await state.list_keys()] == [key.id]


async def test_unknown_malformed_and_missing_tokens_are_401_without_the_secret(state):
    token, _ = await state.create_key("a")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for bad in ["", "sk-abc", "Bearer x", forged, token + "x"]:
        with pytest.raises(InvalidKeyError) as ei:
            await state.authenticate(bad, None)
        assert ei.value.status == 401 and ei.value.body()["error"]["type"] == "authentication_error"
        assert token[16:][-12:] not in ei.value.message and token[16:][:12] not in ei.value.message


async def test_revoke_refuses_and_is_idempotent(state):
    token, key = await state.create_key("a")
    other, _ = await state.create_key("b")
    await state.authenticate(token, None)
    rec = await state.revoke(key.id)
    assert rec.revoked_at == T0
    with pytest.raises(InvalidKeyError):
        await state.authenticate(token, None)
    await state.authenticate(other, None)  # others untouched
    assert (await state.revoke(key.prefix)).revoked_at == T0
    assert (await state.get_key(key.id)).revoked_at == T0
    with pytest.raises(GatewayKeyError):
        await state.rotate(key.id)


async def test_rotate_replaces_the_secret_keeps_the_id(state):
    token, key = await state.create_key("a", budget_monthly=Decimal(3))
    await state.authenticate(token, None)
    new, key2 = await state.rotate(key.id)
    assert new != token and key2.id == key.id and key2.prefix != key.prefix
    assert key2.budget_monthly == Decimal(3)
    with pytest.raises(InvalidKeyError):
        await state.authenticate(token, None)
    assert (await state.authenticate(new, None)).id == key.id


async def test_expiry_follows_the_injected_clock(state):
    token, _ = await state.create_key("a", expires_at=T0 + timedelta(hours=1))
    await state.authenticate(token, None)
    state.clock.at = T0 + timedelta(minutes=59, seconds=59)
    await state.authenticate(token, None)
    state.clock.at = T0 + timedelta(hours=1)
    with pytest.raises(InvalidKeyError, match="expired"):
        await state.authenticate(token, None)


async def test_ip_allow_list(state):
    token, key = await state.create_key("a", allow_ip=["10.0.0.0/8", "2001:db8::/32", "192.168.1.7"])
    assert key.allow_ip[0] == ipaddress.ip_network("10.0.0.0/8")
    for ok in ["10.1.2.3", "::ffff:10.9.9.9", "2001:db8::1", "192.168.1.7"]:
        await state.authenticate(token, ok)
    for bad in ["11.0.0.1", "192.168.1.8", None, "not-an-ip", "2001:db9::1"]:
        with pytest.raises(ForbiddenError) as ei:
            await state.authenticate(token, bad)
        assert ei.value.status == 403


async def test_bad_settings_are_typed_errors(state):
    with pytest.raises(GatewayKeyError, match="IP network"):
        await state.create_key("a", allow_ip=["10.0.0.0/33"])
    with pytest.raises(GatewayKeyError, match="rpm"):
        await state.create_key("a", rpm=0)
    with pytest.raises(GatewayKeyError, match="budget_daily"):
        await state.create_key("a", budget_daily=Decimal(-1))
    with pytest.raises(GatewayKeyError, match="name"):
        await state.create_key("")
    with pytest.raises(GatewayKeyError, match="in the past"):
        await state.create_key("a", expires_at=T0)
    with pytest.raises(GatewayKeyError, match="list of model names"):
        await state.create_key("a", models="deepseek-flash")
    with pytest.raises(KeyNotFoundError):
        await state.get_key("key_nope")


def test_pepper_and_url_are_checked():
    with pytest.raises(GatewayKeyError, match="pepper"):
        open_state("sqlite:///:memory:", pepper=b"short")
    with pytest.raises(GatewayKeyError, match="unsupported"):
        open_state("postgres://x/y", pepper=PEPPER)


async def test_keys_are_hashed_at_rest(state, state_url, tmp_path):
    tokens = [(await state.create_key(f"k{i}"))[0] for i in range(3)]
    _, k = await state.create_key("rot")
    rotated, _ = await state.rotate(k.id)
    tokens.append(rotated)
    await state.aclose()
    if state_url.startswith("sqlite"):
        blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("gw.db"))
    else:
        blob = _dump_redis(state_url)
    assert b"sk-dsk-" in blob  # the display prefixes are there...
    for t in tokens:
        assert t.encode() not in blob  # ...never a token
        assert t[16:36].encode() not in blob and t[-20:].encode() not in blob
    assert PEPPER not in blob


def test_sqlite_relative_path_is_refused():
    with pytest.raises(GatewayKeyError, match="absolute"):
        open_state("sqlite://relative.db", pepper=PEPPER)



async def test_cached_keys_make_no_store_call(state, state_url):
    """The request path: a cached key is checked in memory; the store sees at most the generation
    poll (once per half second), however many requests arrive."""
    token, _ = await state.create_key("a")
    await state.authenticate(token, None)
    if state_url.startswith("sqlite"):
        statements = []
        state._inline.set_trace_callback(statements.append)
        state._db().set_trace_callback(statements.append)
        count = lambda: len(statements)  # noqa: E731
    else:
        import redis.asyncio as aioredis

        probe = aioredis.Redis.from_url(state_url)

        async def processed():
            return (await probe.info("stats"))["total_commands_processed"]
    t0 = time.monotonic()
    before = count() if state_url.startswith("sqlite") else await processed()
    for _ in range(2000):
        await state.authenticate(token, "127.0.0.1")
    elapsed = time.monotonic() - t0
    if state_url.startswith("sqlite"):
        calls = count() - before
    else:
        calls = await processed() - before - 1  # the INFO itself
        await probe.aclose()
    assert calls <= 1 + int(elapsed / 0.5), (calls, elapsed)


async def test_a_store_that_is_down_is_a_503_not_a_crash(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    st = open_state(f"redis://:hunter2@127.0.0.1:{port}/0", pepper=PEPPER)
    try:
        assert "hunter2" not in repr(st)
        for call in (lambda: st.authenticate("sk-dsk-AAAAAAAA-" + "a" * 43, None),
                     lambda: st.create_key("a"), st.list_keys):
            with pytest.raises(StateUnavailableError) as ei:
                await call()
            assert ei.value.status == 503 and "hunter2" not in ei.value.message
    finally:
        await st.aclose()


async def test_a_cached_verdict_drops_when_another_process_revokes(state, state_url):
    # The token -> key verdict cache answers repeat callers without an HMAC; a revocation made
    # through another state on the same store (another worker) still refuses here within
    # REVALIDATE (checked by moving the last check back, not by sleeping).
    token, key = await state.create_key("a")
    assert (await state.authenticate(token, None)).id == key.id
    assert (await state.authenticate(token, None)).id == key.id  # from the verdict cache
    other = open_state(state_url, pepper=PEPPER, clock=state.clock)
    try:
        await other.revoke(key.id)
    finally:
        await other.aclose()
    state._checked = -1e9  # as if REVALIDATE had passed
    with pytest.raises(InvalidKeyError):
        await state.authenticate(token, None)
