"""The dashboard end to end in headless Chromium (Debian's /usr/bin/chromium driven by Playwright):
a wrong login is refused, the right one opens the page, a key created in the page (secret shown
once) carries traffic through the gateway to the emulator, the charts and tiles fill with the
traffic's numbers, and the key revoked in the page stops working (401). Screenshots go to
test-artifacts/dashboard/ in the repository root."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import aiohttp
import pytest
from playwright.async_api import expect

from deepseek_kit._wire.pricing import cost

from .dash_helpers import ADMIN, ARTIFACTS, ASK, NOW, chromium_page, dashboard_gateway


async def _chat(base: str, token: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s, s.post(base + "/v1/chat/completions", json=ASK,
                                                    headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json()


@pytest.mark.timeout(120)
async def test_login_traffic_charts_create_and_revoke_key(emulator, tmp_path, monkeypatch):
    async with chromium_page(tmp_path / "profile") as (page, errors):
        await _login_traffic_charts_create_and_revoke_key(page, errors, emulator, tmp_path, monkeypatch)


async def _login_traffic_charts_create_and_revoke_key(page, errors, emulator, tmp_path, monkeypatch):
    with dashboard_gateway(emulator, f"sqlite:///{tmp_path}/gw.db", monkeypatch) as gw:
        base = gw.base_url
        await page.goto(base + "/dashboard")
        await expect(page.locator("#login-form")).to_be_visible()

        await page.fill("#admin-key", "not-the-admin-key")
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#login-error")).to_have_text("wrong admin key")
        await expect(page.locator("#app-view")).to_be_hidden()
        await page.screenshot(path=str(ARTIFACTS / "login-refused.png"))

        await page.fill("#admin-key", ADMIN)
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#app-view")).to_be_visible()
        await expect(page.locator("#usage-requests")).to_have_text("0")

        # create a key in the page: its secret is shown once
        await page.fill("#key-form input[name=name]", "web-key")
        await page.fill("#key-form input[name=budget_daily]", "5.00")
        await page.click("#key-form button[type=submit]")
        secret = page.locator("#key-secret .secret-value")
        await expect(secret).to_be_visible()
        token = (await secret.text_content() or "").strip()
        assert token.startswith("sk-dsk-")
        row = page.locator("#key-rows tr", has_text="web-key")
        await expect(row.locator(".badge")).to_have_text("active")

        # traffic through the gateway with that key, and one refused call
        spent = Decimal(0)
        for _ in range(3):
            status, body = await _chat(base, token)
            assert status == 200
            spent += cost("deepseek-flash", body["usage"], datetime.fromtimestamp(NOW, timezone.utc), "CNY")
        assert (await _chat(base, "sk-dsk-not-a-key"))[0] == 401

        await page.click("#refresh")
        await expect(page.locator("#usage-requests")).to_have_text("3")
        await expect(page.locator("#live-requests")).to_have_text("4")
        await expect(page.locator("#live-errors")).to_have_text("25.0% (1)")
        key_bar = page.locator('#chart-key rect.bar[data-label="web-key"]')
        await expect(key_bar).to_have_count(1)
        assert float(await key_bar.get_attribute("data-value") or 0) == pytest.approx(float(spent))
        model_bar = page.locator('#chart-model rect.bar[data-label="deepseek-flash"]')
        assert float(await model_bar.get_attribute("data-value") or 0) == pytest.approx(float(spent))
        day_bars = page.locator("#chart-day rect.bar")
        await expect(day_bars).to_have_count(14)
        today = page.locator('#chart-day rect.bar[data-label="2026-12-06"]')
        assert float(await today.get_attribute("data-value") or 0) == pytest.approx(float(spent))
        assert float(await day_bars.first.get_attribute("data-value") or -1) == 0
        assert await page.locator("#chart-rate rect.bar:not(.zero)").count() >= 1
        await expect(page.locator("#chart-key")).to_contain_text("3 req")
        latency = await page.locator("#live-latency").text_content() or ""
        assert latency.count("ms") == 3
        await expect(page.locator("#upstream-rows tr .badge")).to_have_text("closed")
        await expect(page.locator("#clients-off, #client-rows")).not_to_have_count(0)
        await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

        # revoke it in the page: the key stops working
        page.on("dialog", lambda d: d.accept())
        await row.locator("button[data-revoke]").click()
        await expect(row.locator(".badge")).to_have_text("revoked")
        assert (await _chat(base, token))[0] == 401

        # the secret is gone after a reload, and the session survives it
        await page.reload()
        await expect(page.locator("#app-view")).to_be_visible()
        assert token not in await page.content()
        await page.screenshot(path=str(ARTIFACTS / "after-revoke.png"), full_page=True)

        await page.click("#logout")
        await expect(page.locator("#login-form")).to_be_visible()
    assert errors == []
    assert sorted(p.name for p in ARTIFACTS.glob("*.png")) >= ["after-revoke.png", "dashboard.png",
                                                               "login-refused.png"]
