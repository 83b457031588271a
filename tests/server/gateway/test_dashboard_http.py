"""The dashboard over plain HTTP on a real gateway (SQLite and Redis state) in front of the
emulator: login with the admin key (wrong key refused, failures rate-limited and counted by every
worker sharing the state, no admin key: no login), the cookie's flags, security headers, CSRF token
and same-origin checks on every state-changing request, logout, stats aggregated from the usage
rows, and the OAuth panel's 404."""

from __future__ import annotations

import dataclasses

import pytest
from yarl import URL

from .dash_helpers import ADMIN, ASK, NOW, PEPPER, browser_session, dashboard_gateway, login
from .relay_helpers import GatewayThread, config_for


async def _chat(base: str, token: str) -> int:
    async with browser_session() as s, s.post(base + "/v1/chat/completions", json=ASK,
                                                    headers={"Authorization": f"Bearer {token}"}) as r:
        await r.read()
        return r.status


async def test_login_session_csrf_and_logout(emulator, tmp_path, monkeypatch):
    with dashboard_gateway(emulator, f"sqlite:///{tmp_path}/gw.db", monkeypatch) as gw:
        base = gw.base_url
        async with browser_session() as s:
            async with s.get(base + "/dashboard") as r:
                assert r.status == 200 and "text/html" in r.headers["Content-Type"]
                csp = r.headers["Content-Security-Policy"]
                assert "script-src 'self'" in csp and "unsafe-inline" not in csp
                assert r.headers["X-Frame-Options"] == "DENY"
            async with s.get(base + "/dashboard/static/app.js") as r:
                assert r.status == 200 and "javascript" in r.headers["Content-Type"]
            for bad in ("../app.py", "index.html", "nope.js"):
                async with s.get(base + "/dashboard/static/" + bad) as r:
                    assert r.status == 404
            async with s.get(base + "/dashboard/api/stats") as r:
                assert r.status == 401
            async with s.get(base + "/dashboard/api/session") as r:
                assert await r.json() == {"admin_configured": True, "logged_in": False, "csrf": None,
                                          "currency": "CNY"}

            assert (await login(s, base, "wrong-key"))[0] == 401
            assert (await login(s, base, ADMIN + "x"))[0] == 401
            assert not s.cookie_jar.filter_cookies(URL(base + "/dashboard"))

            async with s.post(base + "/dashboard/login", data={"admin_key": ADMIN},
                              headers={"Origin": "http://evil.example", "Accept": "application/json"}) as r:
                assert r.status == 403  # login CSRF: a foreign page cannot log the browser in

            async with s.post(base + "/dashboard/login", data={"admin_key": ADMIN},
                              headers={"Origin": base, "Accept": "application/json"}) as r:
                assert r.status == 200
                csrf = (await r.json())["csrf"]
                cookie = r.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard" in cookie
            assert "Secure" not in cookie  # plain http here; https adds it (next test)
            assert ADMIN not in cookie

            h = {"X-CSRF-Token": csrf, "Origin": base}
            async with s.get(base + "/dashboard/api/stats") as r:
                assert r.status == 403  # the session alone is not enough: the CSRF header too
            async with s.get(base + "/dashboard/api/stats", headers=h) as r:
                assert r.status == 200
            body = {"name": "from-dash"}
            async with s.post(base + "/dashboard/api/keys", json=body, headers={"Origin": base}) as r:
                assert r.status == 403 and "X-CSRF-Token" in (await r.json())["error"]["message"]
            async with s.post(base + "/dashboard/api/keys", json=body,
                              headers={"X-CSRF-Token": "forged", "Origin": base}) as r:
                assert r.status == 403
            async with s.post(base + "/dashboard/api/keys", json=body,
                              headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"}) as r:
                assert r.status == 403 and "cross-origin" in (await r.json())["error"]["message"]
            async with s.post(base + "/dashboard/api/keys", json=body, headers={"X-CSRF-Token": csrf}) as r:
                assert r.status == 403  # neither Origin nor Referer
            async with s.post(base + "/dashboard/api/keys", json=body,
                              headers={"X-CSRF-Token": csrf, "Referer": base + "/dashboard"}) as r:
                assert r.status == 201
                created = await r.json()
                assert r.headers["Cache-Control"] == "no-store"
            assert created["key"].startswith("sk-dsk-") and created["name"] == "from-dash"
            assert await _chat(base, created["key"]) == 200

            async with s.get(base + "/dashboard/api/keys", headers=h) as r:
                listing = await r.text()
            assert created["id"] in listing and created["key"] not in listing

            async with s.post(base + f"/dashboard/api/keys/{created['id']}/revoke", headers=h) as r:
                assert r.status == 200 and (await r.json())["status"] == "revoked"
            assert await _chat(base, created["key"]) == 401

            async with s.get(base + "/dashboard/api/clients", headers=h) as r:
                # the OAuth admin API is another part of the gateway; without it the panel says so
                if r.status == 404:
                    assert "not available" in (await r.json())["error"]["message"]
                else:
                    assert r.status == 200

            async with s.post(base + "/dashboard/api/logout", headers=h) as r:
                assert r.status == 200
            async with s.get(base + "/dashboard/api/stats", headers=h) as r:
                assert r.status == 401


async def test_secure_cookie_behind_https_proxy(emulator, tmp_path, monkeypatch):
    with dashboard_gateway(emulator, f"sqlite:///{tmp_path}/gw.db", monkeypatch) as gw:
        host = gw.base_url.removeprefix("http://")
        async with browser_session() as s, s.post(
                gw.base_url + "/dashboard/login", data={"admin_key": ADMIN},
                headers={"Origin": f"https://{host}", "X-Forwarded-Proto": "https",
                         "Accept": "application/json"}) as r:
            assert r.status == 200 and "Secure" in r.headers["Set-Cookie"]


async def test_failed_logins_are_rate_limited(emulator, tmp_path, monkeypatch):
    with dashboard_gateway(emulator, f"sqlite:///{tmp_path}/gw.db", monkeypatch) as gw:
        async with browser_session() as s:
            statuses = [(await login(s, gw.base_url, f"guess-{i}"))[0] for i in range(5)]
            assert statuses == [401] * 5
            async with s.post(gw.base_url + "/dashboard/login", data={"admin_key": ADMIN},
                              headers={"Origin": gw.base_url, "Accept": "application/json"}) as r:
                # even the right key waits: a guesser cannot tell a hit from the lock-out
                assert r.status == 429 and int(r.headers["Retry-After"]) > 0


async def test_no_admin_key_means_no_login(emulator, tmp_path, monkeypatch):
    with dashboard_gateway(emulator, f"sqlite:///{tmp_path}/gw.db", monkeypatch, admin=None) as gw:
        async with browser_session() as s:
            async with s.get(gw.base_url + "/dashboard/api/session") as r:
                assert (await r.json())["admin_configured"] is False
            status, _ = await login(s, gw.base_url, "")
            assert status == 403


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_stats_aggregate_usage_rows_per_key_model_and_day(backend, emulator, tmp_path, monkeypatch,
                                                                request):
    url = f"sqlite:///{tmp_path}/gw.db" if backend == "sqlite" else request.getfixturevalue("redis_url")
    with dashboard_gateway(emulator, url, monkeypatch) as gw:
        base = gw.base_url
        async with browser_session() as s:
            _, csrf = await login(s, base)
            h = {"X-CSRF-Token": csrf or "", "Origin": base}
            tokens = {}
            for name in ("alpha", "beta"):
                async with s.post(base + "/dashboard/api/keys", json={"name": name}, headers=h) as r:
                    tokens[name] = (await r.json())["key"]
            for name, n in (("alpha", 3), ("beta", 1)):
                for _ in range(n):
                    assert await _chat(base, tokens[name]) == 200
            assert await _chat(base, "sk-dsk-wrong") == 401
            async with s.get(base + "/dashboard/api/stats", headers=h) as r:
                stats = await r.json()
    usage = stats["usage"]
    by_key = {k["name"]: k for k in usage["by_key"]}
    assert (by_key["alpha"]["requests"], by_key["beta"]["requests"]) == (3, 1)
    assert [(m["model"], m["requests"]) for m in usage["by_model"]] == [("deepseek-flash", 4)]
    assert [d["requests"] for d in usage["by_day"]][-1] == 4 and len(usage["by_day"]) == 14
    assert usage["by_day"][-1]["day"] == "2026-12-06"
    from decimal import Decimal
    assert Decimal(usage["total"]["cost"]) == sum(Decimal(k["cost"]) for k in usage["by_key"]) > 0
    live = stats["live"]
    assert live["requests"] == 5 and live["errors"] == 1 and live["latency"]["p50"] > 0
    assert [u["state"] for u in stats["upstreams"]] == ["closed"]


async def test_gateway_without_keys_shows_live_stats_and_no_key_management(emulator, monkeypatch):
    import dataclasses

    from .relay_helpers import GatewayThread, config_for

    monkeypatch.setenv("GW_TEST_ADMIN", ADMIN)
    cfg = dataclasses.replace(config_for(emulator), admin_key_env="GW_TEST_ADMIN")  # auth = "none"
    with GatewayThread(cfg) as gw:
        base = gw.base_url
        assert await _chat(base, "anything") == 200
        async with browser_session() as s:
            _, csrf = await login(s, base)
            h = {"X-CSRF-Token": csrf or "", "Origin": base}
            async with s.get(base + "/dashboard/api/stats", headers=h) as r:
                stats = await r.json()
            assert stats["usage"] is None and stats["live"]["requests"] == 1
            async with s.get(base + "/dashboard/api/keys", headers=h) as r:
                assert r.status == 404
                assert "key management not available" in (await r.json())["error"]["message"]
            async with s.post(base + "/dashboard/api/keys", json={"name": "x"}, headers=h) as r:
                assert r.status == 404
            async with s.get(base + "/dashboard/api/clients", headers=h) as r:
                assert r.status == 404  # the page shows "OAuth clients not available on this gateway"
                assert "OAuth clients not available" in (await r.json())["error"]["message"]


async def test_stats_show_the_polled_upstream_balance(emulator, tmp_path, monkeypatch):
    import asyncio

    async with browser_session() as s:
        async with s.get(emulator.base_url + "/user/balance", headers={"Authorization": "Bearer sk-x"}) as r:
            info = (await r.json())["balance_infos"][0]
        with dashboard_gateway(emulator, f"sqlite:///{tmp_path}/gw.db", monkeypatch, balance_poll=0.2) as gw:
            _, csrf = await login(s, gw.base_url)
            h = {"X-CSRF-Token": csrf or ""}
            for _ in range(100):  # the first poll comes one period after the start
                async with s.get(gw.base_url + "/dashboard/api/stats", headers=h) as r:
                    up = (await r.json())["upstreams"][0]
                if up["balance"]:
                    break
                await asyncio.sleep(0.1)
    assert up["balance"] == {info["currency"]: float(info["total_balance"])}
    assert up["out_of_balance"] is False and up["state"] == "closed"


async def test_stats_show_an_open_breaker_and_the_errors(emulator_factory, tmp_path, monkeypatch):
    bad = emulator_factory(faults="status=503")
    with dashboard_gateway(bad, f"sqlite:///{tmp_path}/gw.db", monkeypatch) as gw:
        async with browser_session() as s:
            _, csrf = await login(s, gw.base_url)
            h = {"X-CSRF-Token": csrf or "", "Origin": gw.base_url}
            async with s.post(gw.base_url + "/dashboard/api/keys", json={"name": "k"}, headers=h) as r:
                token = (await r.json())["key"]
            statuses = [await _chat(gw.base_url, token) for _ in range(6)]
            async with s.get(gw.base_url + "/dashboard/api/stats", headers=h) as r:
                stats = await r.json()
    assert set(statuses) <= {502, 503} and statuses
    up = stats["upstreams"][0]
    assert up["state"] == "open" and up["failures"] >= 5 and up["reopens_in"] > 0
    assert stats["live"]["errors"] == 6 and stats["live"]["error_rate"] == 1.0


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_a_session_works_on_every_worker_sharing_the_state(backend, emulator, tmp_path, monkeypatch,
                                                                  request):
    """Two gateways on one state stand for two workers: a login on one is known to the other, and a
    logout on the other ends it on both."""
    url = f"sqlite:///{tmp_path}/gw.db" if backend == "sqlite" else request.getfixturevalue("redis_url")
    with dashboard_gateway(emulator, url, monkeypatch) as a, \
            dashboard_gateway(emulator, url, monkeypatch) as b:
        async with browser_session() as s:  # cookies are per host, not per port: both get it
            _, csrf = await login(s, a.base_url)
            h = {"X-CSRF-Token": csrf or "", "Origin": b.base_url}
            async with s.get(b.base_url + "/dashboard/api/stats", headers=h) as r:
                assert r.status == 200
            async with s.get(b.base_url + "/dashboard/api/session") as r:
                assert (await r.json())["csrf"] == csrf
            sid = s.cookie_jar.filter_cookies(URL(a.base_url + "/dashboard/api/"))["dsk_dashboard"].value
            async with browser_session() as copy, copy.get(a.base_url + "/dashboard/api/stats", headers=h,
                                                           cookies={"dsk_dashboard": sid}) as r:
                assert r.status == 200  # the cookie alone carries the session (the control)
            async with s.post(b.base_url + "/dashboard/api/logout", headers=h) as r:
                assert r.status == 200
        # the old cookie, replayed after the logout
        async with browser_session() as stolen, stolen.get(a.base_url + "/dashboard/api/stats", headers=h,
                                                           cookies={"dsk_dashboard": sid}) as r:
            assert r.status == 401


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_failed_logins_are_counted_by_every_worker_sharing_the_state(backend, emulator, tmp_path,
                                                                           monkeypatch, request):
    """Two gateways on one state stand for two workers: failed logins on either count on both, the
    right key waits out the lock-out everywhere, and gets in once the gateway's clock passes it."""
    url = f"sqlite:///{tmp_path}/gw.db" if backend == "sqlite" else request.getfixturevalue("redis_url")
    now = [NOW + 17.0]
    monkeypatch.setenv("DSK_GATEWAY_PEPPER", PEPPER)
    monkeypatch.setenv("GW_TEST_ADMIN", ADMIN)
    cfg = dataclasses.replace(config_for(emulator, auth="keys", state=url), admin_key_env="GW_TEST_ADMIN")
    with GatewayThread(cfg, clock=lambda: now[0]) as a, GatewayThread(cfg, clock=lambda: now[0]) as b:
        async with browser_session() as s:
            statuses = [(await login(s, (a, b)[i % 2].base_url, f"guess-{i}"))[0] for i in range(5)]
            assert statuses == [401] * 5  # 5 per address per minute: 3 on a, 2 on b
            waits = []
            for gw in (a, b):
                async with s.post(gw.base_url + "/dashboard/login", data={"admin_key": ADMIN},
                                  headers={"Origin": gw.base_url, "Accept": "application/json"}) as r:
                    assert r.status == 429, await r.text()
                    waits.append(int(r.headers["Retry-After"]))
            assert waits[0] == waits[1] > 0
            now[0] += waits[0]
            assert (await login(s, b.base_url))[0] == 200
