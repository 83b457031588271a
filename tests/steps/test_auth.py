"""Auth providers against the real emulator (which checks bearer keys) and a real local OAuth2
token server."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiohttp import web

from deepseek_kit import (
    APIConnectionError,
    AsyncClient,
    AuthenticationError,
    KeyRotation,
    OAuth2ClientCredentials,
)
from tests.helpers.servers import serve_app

MSGS = [{"role": "user", "content": "auth"}]


async def test_key_rotation_skips_a_rejected_key(emulator_factory):
    emu = emulator_factory(api_keys={"sk-good-one-1111", "sk-good-two-2222"})
    rot = KeyRotation(["sk-revoked-0000", "sk-good-one-1111", "sk-good-two-2222"])
    c = AsyncClient(base_url=emu.base_url, auth=rot, max_retries=0)
    for _ in range(4):
        r = await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
        assert r.choices
    assert emu.state.statuses[401] == 1  # the revoked key was tried once, then set aside
    assert "sk-" not in repr(rot) and "sk-" not in repr(c)
    await c.close()


async def test_key_rotation_all_bad_is_an_authentication_error(emulator_factory):
    emu = emulator_factory(api_keys={"sk-only-valid-9999"})
    c = AsyncClient(
        base_url=emu.base_url, auth=KeyRotation(["sk-bad-a-0001", "sk-bad-b-0002"]), max_retries=0
    )
    with pytest.raises(AuthenticationError) as ei:
        await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
    assert "sk-bad" not in str(ei.value)
    await c.close()


class TokenServer:
    """A client-credentials token endpoint: issues tokens from a list, counts fetches."""

    def __init__(self, tokens: list[str], expires_in: float = 3600, delay: float = 0.0):
        self.tokens = tokens
        self.expires_in = expires_in
        self.delay = delay
        self.fetches = 0
        self.forms: list[dict] = []

    async def handle(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.forms.append(form)
        if form.get("client_secret") != "s3cret-value":
            return web.json_response({"error": "invalid_client",
                                      "error_description": "bad secret"}, status=401)
        await asyncio.sleep(self.delay)
        tok = self.tokens[min(self.fetches, len(self.tokens) - 1)]
        self.fetches += 1
        return web.json_response({"access_token": tok, "token_type": "bearer", "expires_in": self.expires_in})


@pytest.fixture
async def token_server():
    async with contextlib.AsyncExitStack() as stack:
        async def start(**kw):
            ts = TokenServer(**kw)
            app = web.Application()
            app.router.add_post("/oauth/token", ts.handle)
            ts.url = await stack.enter_async_context(serve_app(app)) + "/oauth/token"
            return ts

        yield start


async def test_oauth_token_fetched_once_for_concurrent_calls_and_cached(emulator_factory, token_server):
    emu = emulator_factory(api_keys={"tok-1"})
    ts = await token_server(tokens=["tok-1"], delay=0.1)
    auth = OAuth2ClientCredentials(ts.url, "client-a", "s3cret-value", scope="chat")
    c = AsyncClient(base_url=emu.base_url, auth=auth, max_retries=0)
    await asyncio.gather(
        *(c.chat.completions.create(model="deepseek-flash", messages=MSGS) for _ in range(20))
    )
    await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
    assert ts.fetches == 1 and auth.fetches == 1
    assert ts.forms[0] == {"grant_type": "client_credentials", "client_id": "client-a",
                           "client_secret": "s3cret-value", "scope": "chat"}
    await c.close()


async def test_oauth_refreshes_before_expiry(emulator_factory, token_server):
    emu = emulator_factory(api_keys={"tok-1", "tok-2"})
    ts = await token_server(tokens=["tok-1", "tok-2"], expires_in=0.6)
    auth = OAuth2ClientCredentials(ts.url, "client-a", "s3cret-value", refresh_margin=0.3)
    c = AsyncClient(base_url=emu.base_url, auth=auth, max_retries=0)
    await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
    await asyncio.sleep(0.4)  # past expires_in - refresh_margin
    await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
    assert ts.fetches == 2
    await c.close()


async def test_oauth_401_refreshes_and_retries_once(emulator_factory, token_server):
    emu = emulator_factory(api_keys={"tok-fresh"})
    ts = await token_server(tokens=["tok-revoked", "tok-fresh"])
    c = AsyncClient(base_url=emu.base_url, auth=OAuth2ClientCredentials(ts.url, "c", "s3cret-value"),
                    max_retries=0)
    r = await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
    assert r.choices and ts.fetches == 2 and emu.state.statuses[401] == 1
    await c.close()


async def test_oauth_bad_secret_and_unreachable_token_url_are_clear(emulator_factory, token_server):
    emu = emulator_factory()
    ts = await token_server(tokens=["x"])
    c = AsyncClient(base_url=emu.base_url, auth=OAuth2ClientCredentials(ts.url, "c", "wrong-secret-value"))
    with pytest.raises(AuthenticationError, match="refused the client credentials") as ei:
        await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
    assert "wrong-secret-value" not in str(ei.value)
    c2 = AsyncClient(
        base_url=emu.base_url, auth=OAuth2ClientCredentials("http://127.0.0.1:9/token", "c", "s")
    )
    with pytest.raises(APIConnectionError, match="token endpoint"):
        await c2.chat.completions.create(model="deepseek-flash", messages=MSGS)
    await c.close()
    await c2.close()


# --- docs/attack-round-2026-12.md, S2: every secret the client
# holds is masked where a server echoes it ----------------


@pytest.fixture
async def echo_server():
    """Answers 401 with a body that echoes the bearer token, with and without "Bearer"."""
    stack = contextlib.AsyncExitStack()

    async def start():
        async def handle(request):
            tok = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if (await request.json()).get("stream"):
                resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await resp.prepare(request)
                await resp.write(b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n')
                await resp.write(
                    b'data: {"error":{"message":"bad key ' + tok.encode() + b'","type":"x"}}\n\n'
                )
                return resp
            return web.json_response({"error": {"message": f"bad key {tok} (Bearer {tok})", "type": "x"}},
                                     status=401)

        async def models(request):  # a 200 that echoes the token (a debug gateway, say)
            tok = request.headers.get("Authorization", "").removeprefix("Bearer ")
            return web.json_response(
                {"object": "list", "data": [{"id": f"model-for-{tok}", "object": "model"}]}
            )

        app = web.Application()
        app.router.add_post("/chat/completions", handle)
        app.router.add_get("/models", models)
        return await stack.enter_async_context(serve_app(app))

    async with stack:
        yield start


def _logged(path) -> str:
    import sqlite3

    with sqlite3.connect(path) as db:
        return "\n".join(str(row) for row in db.execute("SELECT * FROM requests"))


@pytest.mark.parametrize("kind", ["rotation", "endpoint", "oauth"])
async def test_echoed_secrets_are_masked_in_errors_and_logs(echo_server, token_server, tmp_path, kind):
    from deepseek_kit import Endpoint, LogConfig

    url = await echo_server()
    secret = {"rotation": "tok-rot-canary-BBBB", "endpoint": "tok-ep-canary-9999",
              "oauth": "tok-OAUTH-canary-777"}[kind]
    kw: dict = {"max_retries": 0, "logs": LogConfig(path=tmp_path / "logs.sqlite3")}
    if kind == "rotation":
        kw.update(base_url=url, auth=KeyRotation(["tok-rot-canary-AAAA", secret]))
    elif kind == "endpoint":
        kw.update(endpoints=[Endpoint(url, name="private", api_key=secret)])
    else:
        ts = await token_server(tokens=[secret])
        kw.update(base_url=url, auth=OAuth2ClientCredentials(ts.url, "cid", "s3cret-value"))
    c = AsyncClient(**kw)
    errors = []
    for _ in range(2):
        try:
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
        except Exception as e:
            errors.append(e)
    await c.close()
    assert errors
    for e in errors:
        text = f"{e}\n{e!r}\n{getattr(e, 'body', '')}\n{getattr(e, 'attempts', '')}"
        attempts = getattr(e, "attempts", None)
        for inner in attempts if isinstance(attempts, list) else []:
            if isinstance(inner, tuple):
                text += f"\n{inner[1]}\n{getattr(inner[1], 'body', '')}"
        assert "canary" not in text, text
    assert "canary" not in _logged(tmp_path / "logs.sqlite3")
    if kind == "oauth":
        assert ts.fetches >= 1 and all(isinstance(e, AuthenticationError) for e in errors)


async def test_oauth_token_fetched_after_start_is_masked_in_logged_bodies(
    echo_server, token_server, tmp_path
):
    # The log step is built with the client, before any OAuth2 token exists: it must read the
    # client's secrets when it stores a row, or a token a 200 body echoes is stored in clear.
    from deepseek_kit import LogConfig

    url = await echo_server()
    ts = await token_server(tokens=["tok-OAUTH-canary-777"])
    async with AsyncClient(base_url=url, auth=OAuth2ClientCredentials(ts.url, "cid", "s3cret-value"),
                           max_retries=0, logs=LogConfig(path=tmp_path / "logs.sqlite3")) as c:
        page = await c.models.list()
    assert "canary" in str(page)  # the caller sees what the server sent; the log must not keep it
    logged = _logged(tmp_path / "logs.sqlite3")
    assert "model-for-" in logged and "canary" not in logged


@pytest.mark.parametrize("kind", ["endpoint", "client"])
async def test_echoed_secrets_are_masked_in_stream_error_events(echo_server, kind):
    from deepseek_kit import Endpoint, Resumption, StreamError

    url = await echo_server()
    kw: dict = {"max_retries": 0, "resumption": Resumption(enabled=False)}
    if kind == "endpoint":
        kw["endpoints"] = [Endpoint(url, name="private", api_key="tok-ep-canary-9999")]
    else:
        kw.update(base_url=url, api_key="tok-client-canary-1234")  # not sk-: only the key itself matches
    async with AsyncClient(**kw) as c:
        stream = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True)
        with pytest.raises(StreamError) as ei:
            async for _ in stream:
                pass
    e = ei.value
    assert "bad key ****" in str(e)
    assert "canary" not in f"{e} {e!r} {e.error} {e.partial}"
