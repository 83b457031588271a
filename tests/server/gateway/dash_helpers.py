# Helpers for the dashboard tests: a gateway with virtual keys (SQLite or Redis state) and an admin
# key in front of an emulator, on a fixed off-peak clock so costs do not depend on the hour.
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp

from .relay_helpers import GatewayThread, config_for

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PEPPER = "dashboard-test-pepper-0123456789abcdef"
ADMIN = "adm-dashboard-secret-0123456789"
# Sunday 2026-12-06 12:00 UTC: off-peak in Beijing whatever the calendar says
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc).timestamp()
ASK = {"model": "deepseek-flash", "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]}


@contextlib.contextmanager
def dashboard_gateway(emu, state_url: str, monkeypatch, admin: str | None = ADMIN,
                      **config: Any) -> Iterator[GatewayThread]:
    monkeypatch.setenv("DSK_GATEWAY_PEPPER", PEPPER)
    if admin is None:
        monkeypatch.delenv("GW_TEST_ADMIN", raising=False)
    else:
        monkeypatch.setenv("GW_TEST_ADMIN", admin)
    cfg = dataclasses.replace(config_for(emu, auth="keys", state=state_url), admin_key_env="GW_TEST_ADMIN",
                              **config)
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


@contextlib.asynccontextmanager
async def chromium_page(profile: Path) -> AsyncIterator[tuple[Any, list[str]]]:
    """A page in Debian's headless Chromium (a fresh profile in `profile`), driven by Playwright,
    and the list its script errors are collected in."""
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900})
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # Chromium logs every 4xx fetch as a console error ("Failed to load resource"): a wrong
            # login's 401 and the OAuth panel's 404 are expected; anything else is a bug in the page
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error"
                    and not msg.text.startswith("Failed to load resource") else None)
            yield page, errors
        finally:
            await context.close()
