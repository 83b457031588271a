"""The dashboard's OAuth clients panel in headless Chromium, against the admin API contract
(`POST /admin/clients` -> 201 with the secret once, `GET /admin/clients`, `POST
/admin/clients/{client_id}/revoke`): create a client bound to a key made in the page (secret shown
once), see it listed, revoke it. Uses the gateway's own OAuth admin routes when it has them; a
gateway built without them gets a small in-memory stand-in of that contract (below), so the panel
is tested either way. The "not available" message of a gateway without them is in
test_dashboard_browser.py."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import expect

from .dash_helpers import ADMIN, ARTIFACTS, chromium_page, dashboard_gateway


def _has_client_routes(app: web.Application) -> bool:
    return any(getattr(res, "canonical", None) == "/admin/clients" for res in app.router.resources())


def _contract_stand_in(app: web.Application) -> None:
    """The OAuth clients admin API as its contract describes it, kept in memory; only installed on
    a gateway that lacks the real one."""
    if _has_client_routes(app):
        return
    clients: dict[str, dict] = {}

    def guard(request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bearer {ADMIN}":
            raise web.HTTPUnauthorized()

    async def create(request: web.Request) -> web.Response:
        guard(request)
        body = await request.json()
        rec = {"client_id": "cli_" + secrets.token_hex(6), "name": body["name"], "key_id": body["key"],
               "scope": body.get("scope", "chat"), "token_ttl": body.get("token_ttl", 3600),
               "created": datetime.now(timezone.utc).isoformat(), "revoked": None}
        clients[rec["client_id"]] = rec
        return web.json_response({**rec, "client_secret": "cs-" + secrets.token_urlsafe(24)}, status=201)

    async def listing(request: web.Request) -> web.Response:
        guard(request)
        return web.json_response({"data": list(clients.values())})

    async def revoke(request: web.Request) -> web.Response:
        guard(request)
        rec = clients[request.match_info["client_id"]]
        rec["revoked"] = datetime.now(timezone.utc).isoformat()
        return web.json_response(rec)

    app.router.add_post("/admin/clients", create)
    app.router.add_get("/admin/clients", listing)
    app.router.add_post("/admin/clients/{client_id}/revoke", revoke)


@pytest.mark.timeout(120)
async def test_create_and_revoke_an_oauth_client_in_the_page(emulator, tmp_path, monkeypatch):
    async with chromium_page(tmp_path / "profile") as (page, errors):
        await _create_and_revoke(page, errors, emulator, tmp_path, monkeypatch)


async def _create_and_revoke(page, errors, emulator, tmp_path, monkeypatch):
    with dashboard_gateway(emulator, f"sqlite:///{tmp_path}/gw.db", monkeypatch,
                           setup=_contract_stand_in) as gw:
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
        await page.screenshot(path=str(ARTIFACTS / "oauth-clients.png"), full_page=True)

        page.on("dialog", lambda d: d.accept())
        await row.locator("button[data-revoke]").click()
        await expect(row.locator(".badge")).to_have_text("revoked")

        async with aiohttp.ClientSession() as s, s.get(base + "/admin/clients",
                                                       headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            listed = {c["client_id"]: c for c in (await r.json())["data"]}
        assert listed[client_id]["revoked"] and client_secret not in str(listed)
        await page.reload()
        await expect(page.locator("#client-rows tr", has_text="billing-svc")).to_have_count(1)
        assert client_secret not in await page.content()
    assert errors == []
