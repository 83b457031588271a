# Two `dsk serve --config` processes sharing one redis-server, driven over HTTP: 200 concurrent
# requests against a tiny budget (overspend at most one request's worst case), a per-key rpm cap
# held within 5% across both, a revoked key refused by both within a second, and the budget gauge.
from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone
from decimal import Decimal

import aiohttp
import pytest

from deepseek_kit.server.gateway.admission import worst_case
from deepseek_kit.server.gateway.state import open_state

from .ops_helpers import UPSTREAM_KEY, serve

PEPPER = "two-gateways-pepper-0123456789abcdef"
BODY = json.dumps({"model": "deepseek-flash", "max_tokens": 50,
                   "messages": [{"role": "user", "content": "hello"}]}).encode()


@pytest.fixture
def two_gateways(tmp_path, redis_url, emulator_factory):
    emu = emulator_factory()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'[gateway]\nlisten = "127.0.0.1:0"\nstate = "{redis_url}"\naccess_log = false\n\n'
                   f'[[upstream]]\nname = "emu"\nbase_url = "{emu.base_url}"\napi_key_env = "GW_KEY"\n')
    env = {"GW_KEY": UPSTREAM_KEY, "DSK_GATEWAY_PEPPER": PEPPER}
    procs = [serve(cfg, tmp_path, env=env) for _ in range(2)]
    yield redis_url, [url for _, url in procs]
    for p, _ in procs:
        p.terminate()
        p.communicate(timeout=30)


async def _post(s: aiohttp.ClientSession, url: str, token: str) -> int:
    async with s.post(url + "/chat/completions", data=BODY, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"}) as r:
        await r.read()
        return r.status


def _state(url: str):
    return open_state(url, pepper=PEPPER.encode())


async def test_budget_rpm_and_revocation_across_two_gateways(two_gateways):
    redis, (g1, g2) = two_gateways
    # The gateways price at the real hour; the bound takes the dearer of peak and off-peak so the
    # test holds at any hour (Beijing 10:00 Wednesday is peak, 04:00 off-peak).
    worst = max(worst_case("deepseek-flash", len(BODY), 50, at, "CNY")
                for at in (datetime(2026, 12, 2, 2, 0, tzinfo=timezone.utc),
                           datetime(2026, 12, 2, 20, 0, tzinfo=timezone.utc)))
    budget = (worst * 20).quantize(Decimal("0.000000001"))
    st = _state(redis)
    tok_budget, key_budget = await st.create_key("tiny", budget_daily=budget)
    tok_rpm, _ = await st.create_key("rpm", rpm=120)
    tok_rev, key_rev = await st.create_key("revoked")
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as s:
        # 1. 200 concurrent requests, half on each gateway, against a budget of ~20 worst cases
        statuses = await asyncio.gather(*(_post(s, (g1, g2)[i % 2], tok_budget) for i in range(200)))
        assert set(statuses) <= {200, 402}, statuses
        ok = statuses.count(200)
        assert 10 <= ok < 200
        await asyncio.sleep(1.5)  # settlements are written within 0.1 s, usage rows within ~1 s
        today, _ = await st.spent(key_budget)
        assert today <= budget + worst, (today, budget, worst)

        # 2. rpm 120 on one key through both gateways for 6 s: a minute's burst (120) + 2/s
        t0 = time.monotonic()
        admitted = 0

        async def hammer(url: str) -> None:
            nonlocal admitted
            while time.monotonic() - t0 < 6.0:
                if await _post(s, url, tok_rpm) == 200:
                    admitted += 1
                await asyncio.sleep(0.01)

        await asyncio.gather(*(hammer(u) for u in (g1, g2) for _ in range(4)))
        window = time.monotonic() - t0
        expected = 120 + 120 * window / 60
        assert abs(admitted - expected) <= 0.05 * expected, (admitted, expected)

        # 3. revocation: both gateways refuse the key within a second
        assert await _post(s, g1, tok_rev) == 200 and await _post(s, g2, tok_rev) == 200
        await st.revoke(key_rev.id)
        t_rev = time.monotonic()
        refused: dict[str, float] = {}
        while len(refused) < 2 and time.monotonic() - t_rev < 3.0:
            for g in (g1, g2):
                if g not in refused and await _post(s, g, tok_rev) == 401:
                    refused[g] = time.monotonic() - t_rev
            await asyncio.sleep(0.02)
        assert len(refused) == 2 and max(refused.values()) < 1.0, refused

        # 4. the budget gauge of the budgeted key (refreshed in the background, by id, never the key)
        async with s.get(g1 + "/metrics") as r:
            metrics = await r.text()
    await st.aclose()
    line = next(ln for ln in metrics.splitlines()
                if ln.startswith("dsk_gateway_budget_remaining{") and key_budget.id in ln)
    assert 0 <= float(line.rsplit(" ", 1)[1]) <= float(budget)
    assert "dsk_gateway_log_rows_dropped_total 0.0" in metrics
    for secret in (tok_budget, tok_rpm, tok_rev, UPSTREAM_KEY, PEPPER):
        assert secret not in metrics
