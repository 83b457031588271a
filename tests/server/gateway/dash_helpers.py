# Helpers for the dashboard tests: a gateway with virtual keys (SQLite or Redis state) and an admin
# key in front of an emulator, on a fixed off-peak clock so costs do not depend on the hour.
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from datetime import datetime, timezone

import aiohttp

from .relay_helpers import GatewayThread, config_for

PEPPER = "dashboard-test-pepper-0123456789abcdef"
ADMIN = "adm-dashboard-secret-0123456789"
# Sunday 2026-12-06 12:00 UTC: off-peak in Beijing whatever the calendar says
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc).timestamp()
ASK = {"model": "deepseek-flash", "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]}


@contextlib.contextmanager
def dashboard_gateway(emu, state_url: str, monkeypatch, admin: str | None = ADMIN) -> Iterator[GatewayThread]:
    monkeypatch.setenv("DSK_GATEWAY_PEPPER", PEPPER)
    if admin is None:
        monkeypatch.delenv("GW_TEST_ADMIN", raising=False)
    else:
        monkeypatch.setenv("GW_TEST_ADMIN", admin)
    cfg = dataclasses.replace(config_for(emu, auth="keys", state=state_url), admin_key_env="GW_TEST_ADMIN")
    with GatewayThread(cfg, clock=lambda: NOW) as gw:
        yield gw


async def login(session: aiohttp.ClientSession, base: str, key: str = ADMIN) -> tuple[int, str | None]:
    """POST the login form as the page's script does; (status, csrf token)."""
    async with session.post(base + "/dashboard/login", data={"admin_key": key},
                            headers={"Origin": base, "Accept": "application/json"}) as r:
        body = await r.json()
        return r.status, body.get("csrf")


def browser_session() -> aiohttp.ClientSession:
    """A client session that keeps cookies from 127.0.0.1 (aiohttp's jar refuses IP hosts by default)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
