"""The dashboard's OAuth clients panel in headless Chromium, over the gateway's OAuth admin API
(`POST /admin/clients` -> 201 with the secret once, `GET /admin/clients`, `POST
/admin/clients/{id}/revoke`): create a client bound to a key made in the page (secret shown once),
see it listed, get a token with its secret, revoke it in the page, and see the token endpoint refuse
it (invalid_client)."""

from __future__ import annotations

import aiohttp
import pytest
from playwright.async_api import expect

from .dash_helpers import ADMIN, ARTIFACTS, chromium_page, dashboard_gateway


async def _token(base: str, client_id: str, secret: str) -> tuple[int, dict]:
    body = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    async with aiohttp.ClientSession() as s, s.post(base + "/v1/oauth/token", json=body) as r:
        return r.status, await r.json()


@pytest.mark.timeout(120)
async def test_create_and_revoke_an_oauth_client_in_the_page(emulator, tmp_path, monkeypatch):
    async with chromium_page(tmp_path / "profile") as (page, errors):
        await _create_and_revoke(page, errors, emulator, tmp_path, monkeypatch)


async def _create_and_revoke(page, errors, emulator, tmp_path, monkeypatch):
    with dashboard_gateway(emulator, f"sqlite:///{tmp_path}/gw.db", monkeypatch) as gw:
        base = gw.base_url
        await page.goto(base + "/dashboard")
        await page.fill("#admin-key", ADMIN)
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#client-form")).to_be_visible()
        await expect(page.locator("#clients-off")).to_be_hidden()

        await page.fill("#key-form input[name=name]", "svc-key")
        await page.click("#key-form button[type=submit]")
        await expect(page.locator("#key-secret .secret-value")).to_be_visible()
        key_id = await page.locator("#key-rows tr", has_text="svc-key").get_attribute("data-key-id")
        assert key_id

        await page.fill("#client-form input[name=name]", "billing-svc")
        await page.select_option("#client-key", key_id)
        await page.fill("#client-form input[name=token_ttl]", "600")
        await page.click("#client-form button[type=submit]")
        secret = page.locator("#client-secret .secret-value")
        await expect(secret).to_be_visible()
        client_secret = (await secret.text_content() or "").strip()
        assert len(client_secret) >= 16
        row = page.locator("#client-rows tr", has_text="billing-svc")
        await expect(row.locator(".badge")).to_have_text("active")
        await expect(row).to_contain_text("svc-key")  # the key's name, not only its id
        await expect(row).to_contain_text("600 s")
        client_id = await row.get_attribute("data-client-id")
        assert client_id
        status, token = await _token(base, client_id, client_secret)  # the secret works
        assert status == 200 and token["token_type"] == "Bearer"
        await page.screenshot(path=str(ARTIFACTS / "oauth-clients.png"), full_page=True)

        page.on("dialog", lambda d: d.accept())
        await row.locator("button[data-revoke]").click()
        await expect(row.locator(".badge")).to_have_text("revoked")

        async with aiohttp.ClientSession() as s, s.get(base + "/admin/clients",
                                                       headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            listed = {c["client_id"]: c for c in (await r.json())["data"]}
        assert listed[client_id]["revoked"] and client_secret not in str(listed)
        status, err = await _token(base, client_id, client_secret)
        assert status == 401 and err["error"] == "invalid_client"
        await page.reload()
        await expect(page.locator("#client-rows tr", has_text="billing-svc")).to_have_count(1)
        assert client_secret not in await page.content()
    assert errors == []
