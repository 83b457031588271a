"""Failed client authentications at the token endpoint, limited across gateways: two gateway apps on
one state (a SQLite file, then the session's redis-server) stand for two workers or hosts. Failures
on one count on the other, the 11th is a 429 `slow_down` with Retry-After, a right secret is refused
during the lock-out and let in once the gateway's (moved) clock passes it, an unknown client_id
gets the same answers as a real one, and one client's success leaves the others' counts alone.
The limiter's arithmetic itself is tested without sockets at the end."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from decimal import Decimal

import aiohttp
import pytest

from deepseek_kit import AsyncClient, OAuth2ClientCredentials, RateLimitError
from deepseek_kit.server.gateway.auth_throttle import FailureLimiter, Limit, MemoryFailures, wait_seconds
from deepseek_kit.server.gateway.oauth_routes import TOKEN_FAILURES_PER_ADDRESS, TOKEN_FAILURES_PER_CLIENT
from deepseek_kit.server.gateway.oauth_tokens import tokens_for
from deepseek_kit.server.gateway.state import open_state

from .relay_helpers import GatewayThread, config_for
from .test_oauth_gateway import PEPPER, MovingClock


@dataclasses.dataclass
class Pair:
    a: str  # base URLs of the two gateways
    b: str
    clock: MovingClock
    clients: list[tuple[str, str]]  # (client_id, secret)


@pytest.fixture
def pair(emulator, state_url, monkeypatch):
    monkeypatch.setenv("DSK_GATEWAY_PEPPER", PEPPER)
    clock = MovingClock()
    clock.t += secrets.randbelow(300)  # anywhere in a window: the limits must not depend on where

    async def setup():
        st = open_state(state_url, pepper=PEPPER.encode(), clock=clock.dt)
        try:
            _, key = await st.create_key("team", budget_daily=Decimal("10"))
            out = []
            for name in ("one", "two"):
                secret, client = await tokens_for(st).clients.create(name, key.id)
                out.append((client.client_id, secret))
            return out
        finally:
            await st.aclose()

    cfg = config_for(emulator, auth="keys", state=state_url)
    with GatewayThread(cfg, clock=clock) as a, GatewayThread(cfg, clock=clock) as b:
        yield a.base_url, b.base_url, clock, setup


async def _make(pair) -> Pair:
    a, b, clock, setup = pair
    return Pair(a, b, clock, await setup())


async def _token(base: str, client_id: str, secret: str) -> tuple[int, dict[str, str], dict]:
    async with aiohttp.ClientSession() as s, s.post(base + "/v1/oauth/token", data={
            "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}) as r:
        return r.status, dict(r.headers), json.loads(await r.read())


async def test_failures_count_on_every_gateway_and_the_11th_is_429(pair):
    p = await _make(pair)
    cid, secret = p.clients[0]
    assert TOKEN_FAILURES_PER_CLIENT.limit == 10
    for i in range(10):  # alternating gateways: each sees only half of them itself
        status, _, body = await _token(p.a if i % 2 else p.b, cid, f"wrong-{i}")
        assert (status, body["error"]) == (401, "invalid_client")
    status, headers, body = await _token(p.a, cid, "wrong-again")
    assert status == 429 and body["error"] == "slow_down", body
    assert "retry in" in body["error_description"] and headers["Cache-Control"] == "no-store"
    wait = int(headers["Retry-After"])
    assert 0 < wait <= 2 * TOKEN_FAILURES_PER_CLIENT.period
    # the right secret is refused too while the lock-out lasts, on either gateway
    for base in (p.a, p.b):
        status, headers, body = await _token(base, cid, secret)
        assert status == 429 and body["error"] == "slow_down" and int(headers["Retry-After"]) <= wait
    p.clock.t += wait - 1.5
    status, _, _ = await _token(p.b, cid, secret)
    assert status == 429
    p.clock.t += 1.5  # exactly Retry-After after the first 429
    status, _, body = await _token(p.b, cid, secret)
    assert status == 200 and body["access_token"]


async def test_an_unknown_client_id_gets_the_same_answers(pair):
    p = await _make(pair)
    cid, _ = p.clients[0]
    ghost = "dskc_" + "0" * 20
    seen = []
    for who in (cid, ghost):
        answers = [await _token(p.a if i % 2 else p.b, who, "wrong") for i in range(11)]
        # the same status, headers (Retry-After too: the clock stands still) and body each time
        seen.append([(s, {k: v for k, v in h.items() if k != "Date"}, b) for s, h, b in answers])
    assert seen[0] == seen[1]
    assert [s for s, _, _ in seen[0]] == [401] * 10 + [429]


async def test_a_success_does_not_reset_other_clients_counts(pair):
    p = await _make(pair)
    (one, _), (two, two_secret) = p.clients
    for _ in range(9):
        assert (await _token(p.a, one, "wrong"))[0] == 401
    assert (await _token(p.b, two, two_secret))[0] == 200
    assert (await _token(p.b, one, "wrong"))[0] == 401  # the 10th: still counted as a failure
    assert (await _token(p.a, one, "wrong"))[0] == 429
    assert (await _token(p.a, two, two_secret))[0] == 200  # another client_id is not locked out


async def test_failures_from_one_address_are_limited_over_all_client_ids(pair):
    p = await _make(pair)
    n = TOKEN_FAILURES_PER_ADDRESS.limit
    assert n == 50
    for i in range(n):  # every guess on a different made-up client_id
        status, _, _ = await _token(p.a if i % 2 else p.b, f"dskc_{i:020x}", "wrong")
        assert status == 401
    status, headers, body = await _token(p.a, "dskc_" + "f" * 20, "wrong")
    assert status == 429 and body["error"] == "slow_down" and int(headers["Retry-After"]) > 0
    _, secret = p.clients[0]
    assert (await _token(p.b, p.clients[0][0], secret))[0] == 429  # this address, whatever client


# -- the limiter without sockets ------------------------------------------------------------------------


def test_wait_is_zero_below_the_limit_and_past_the_boundary_above_it():
    assert wait_seconds(0, 9, 100.0, 300.0, 10) == 0
    assert wait_seconds(0, 10, 100.0, 300.0, 10) == pytest.approx(200.0)  # to the end of the window
    assert wait_seconds(0, 20, 0.0, 300.0, 10) == pytest.approx(450.0)  # and half of the next
    # previous window's 10 at half weight + 5 now = 10: until the old weight is under 5
    assert wait_seconds(10, 5, 150.0, 300.0, 10) == pytest.approx(1e-9)
    assert wait_seconds(10, 6, 120.0, 300.0, 10) == pytest.approx(300 * 0.6 - 120)


async def test_limiter_lets_in_exactly_after_retry_after():
    now = [1_000_000.0 + 123.4]
    lim = FailureLimiter(MemoryFailures(), lambda: now[0])
    rule = Limit("t", 3, 60.0)
    for _ in range(3):
        assert (await lim.attempt([(rule, "x")])).retry_after == 0
    wait = (await lim.attempt([(rule, "x")])).retry_after
    assert wait > 0 and (await lim.attempt([(rule, "y")])).retry_after == 0
    now[0] += wait - 1
    assert (await lim.attempt([(rule, "x")])).retry_after > 0
    now[0] += 1
    ok = await lim.attempt([(rule, "x")])
    assert ok.retry_after == 0
    await lim.succeeded(ok)
    assert (await lim.attempt([(rule, "x")])).retry_after == 0  # the success was taken back


async def test_concurrent_guesses_get_no_more_than_the_limit(pair):
    """All at once: a check before counting would let every one of them through."""
    p = await _make(pair)
    cid, _ = p.clients[0]
    answers = await asyncio.gather(*(_token(p.a if i % 2 else p.b, cid, f"guess-{i}") for i in range(30)))
    statuses = sorted(s for s, _, _ in answers)
    assert statuses == [401] * 10 + [429] * 20


async def test_the_library_provider_reports_the_lock_out(pair):
    p = await _make(pair)
    cid, secret = p.clients[0]
    for _ in range(10):
        await _token(p.a, cid, "wrong")
    auth = OAuth2ClientCredentials(p.b + "/v1/oauth/token", cid, secret)
    # Default retries: a token endpoint's lock-out is not waited out (it lasts minutes); the
    # error says why and when to come back, from the RFC 6749 body's description.
    async with AsyncClient(base_url=p.b, auth=auth) as client:
        with pytest.raises(RateLimitError) as exc:
            await asyncio.wait_for(client.models.list(), 20)
    assert exc.value.status_code == 429 and exc.value.code == "slow_down"
    assert "(slow_down)" in exc.value.message and "retry in" in exc.value.message
    assert exc.value.attempts == 1
    assert secret not in str(exc.value)
