"""HttpToolsTransport and proxies: it speaks no proxy protocol itself; an explicit `proxy=` or a
proxy the environment sets for a URL (NO_PROXY honoured, `trust_env=False` ignores them) sends the
request through an internal AiohttpTransport. The proxy is tests/transport/test_proxy.py's forward
proxy on 127.0.0.1 in front of the emulator."""

from __future__ import annotations

import pytest

from deepseek_kit import AsyncClient, HttpToolsTransport
from tests.transport.test_proxy import KEY, MSGS, PROXY_VARS, ForwardProxy, ask


@pytest.fixture
def proxy():
    p = ForwardProxy().start()
    yield p
    p.stop()


@pytest.fixture
def clean_env(monkeypatch):
    for v in PROXY_VARS:
        monkeypatch.delenv(v, raising=False)
    return monkeypatch


async def test_explicit_proxy_goes_through_the_fallback(clean_env, proxy, emulator_url):
    t = HttpToolsTransport(proxy=proxy.url)
    async with AsyncClient(api_key=KEY, base_url=emulator_url, transport=t, max_retries=0) as c:
        assert await ask(c)
        stream = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True)
        async for _ in stream:
            pass
    assert [target for target, _ in proxy.seen] == [emulator_url + "/chat/completions"] * 2
    assert not t._idle  # nothing went over its own pool


async def test_environment_proxy_and_no_proxy(clean_env, proxy, emulator_url):
    clean_env.setenv("HTTP_PROXY", proxy.url)
    async with AsyncClient(api_key=KEY, base_url=emulator_url, transport=HttpToolsTransport(),
                           max_retries=0) as c:
        assert await ask(c)
    assert len(proxy.seen) == 1
    clean_env.setenv("NO_PROXY", "127.0.0.1")
    async with AsyncClient(api_key=KEY, base_url=emulator_url, transport=HttpToolsTransport(),
                           max_retries=0) as c:
        assert await ask(c)
    async with AsyncClient(api_key=KEY, base_url=emulator_url,
                           transport=HttpToolsTransport(trust_env=False), max_retries=0) as c:
        clean_env.delenv("NO_PROXY")
        assert await ask(c)
    assert len(proxy.seen) == 1  # NO_PROXY and trust_env=False went direct

