"""OAuth2 client credentials against the gateway: the emulator as the upstream, a gateway with a
virtual key and an OAuth client bound to it, the tutorial's token fetch (a JSON body), a chat with
the token, the key's budget after it, the library's OAuth2ClientCredentials, and a revoked client."""

import asyncio
import os
import tempfile
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import web

from deepseek_kit import AsyncClient, OAuth2ClientCredentials
from deepseek_kit.server import EmulatorThread
from deepseek_kit.server.gateway import create_gateway_app, open_state, parse_gateway_config, tokens_for

PEPPER = "demo-pepper-use-openssl-rand-hex-32"  # the gateway's and dsk clients' shared secret


async def post_json(url: str, body: dict[str, Any], token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s, s.post(url, json=body, headers=headers) as r:
        return r.status, await r.json()


async def main(upstream: str, state: str) -> None:
    os.environ["DSK_GATEWAY_PEPPER"] = PEPPER
    st = open_state(state, pepper=PEPPER.encode())
    _, key = await st.create_key("team-a", budget_daily=Decimal(20))
    secret, client = await tokens_for(st).clients.create("billing-bot", key.id, scope="api chat")
    await st.aclose()

    config = parse_gateway_config(
        f'[gateway]\nlisten = "127.0.0.1:0"\nstate = "{state}"\n\n'
        f'[[upstream]]\nname = "deepseek"\nbase_url = "{upstream}"\napi_key_env = "UPSTREAM_KEY"\n',
        env={"UPSTREAM_KEY": "sk-emulator"})
    runner = web.AppRunner(create_gateway_app(config))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    gw = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        # The tutorial's token fetch: a JSON body, reading access_token.
        status, tok = await post_json(gw + "/v1/oauth/token", {
            "grant_type": "client_credentials", "client_id": client.client_id, "client_secret": secret})
        print(f"token: {status}, {tok['token_type']}, expires_in {tok['expires_in']}, scope {tok['scope']!r}")
        token = tok["access_token"]
        status, answer = await post_json(gw + "/v1/chat/completions", {
            "model": "deepseek-chat", "max_tokens": 30,
            "messages": [{"role": "user", "content": "Hello"}]}, token)
        print(f"chat with the token: {status}, {answer['usage']['completion_tokens']} tokens")
        async with aiohttp.ClientSession() as s, \
                s.get(gw + "/user/balance", headers={"Authorization": f"Bearer {token}"}) as r:
            left = (await r.json())["balance_infos"][0]["total_balance"]
        print(f"the bound key's budget left today: {left} CNY")

        auth = OAuth2ClientCredentials(gw + "/v1/oauth/token", client.client_id, secret)
        async with AsyncClient(base_url=gw, auth=auth) as c:
            for _ in range(2):
                await c.chat.completions.create(model="deepseek-chat", max_tokens=10,
                                                messages=[{"role": "user", "content": "Hi"}])
        print(f"OAuth2ClientCredentials: 2 chats, {auth.fetches} token fetched")

        st = open_state(state, pepper=PEPPER.encode())
        await tokens_for(st).clients.revoke(client.client_id)
        await st.aclose()
        await asyncio.sleep(0.6)  # every worker re-reads revocations at least every 0.5 s
        status, err = await post_json(gw + "/v1/chat/completions", {
            "model": "deepseek-chat", "messages": [{"role": "user", "content": "Hello"}]}, token)
        print(f"after revoking the client: {status} {err['error']['type']}")
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    with EmulatorThread() as emu, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(emu.base_url, f"sqlite:///{tmp}/gateway.db"))
