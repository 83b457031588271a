"""The per-call `endpoints=` option: a call (chat or FIM, and what a Conversation sends) stays on
the named endpoints of the client, checked before any request; two emulators as the endpoints."""

from __future__ import annotations

import pytest

from deepseek_kit import AsyncClient, Conversation, Endpoint, UsageError

MSGS = [{"role": "user", "content": "hi"}]


async def test_a_call_stays_on_the_named_endpoints(emulator_factory):
    a, b = emulator_factory(), emulator_factory()
    eps = [
        Endpoint(a.base_url, name="a", api_key="sk-a"),
        Endpoint(b.base_url, name="b", api_key="sk-b", priority=1),
    ]
    async with AsyncClient(endpoints=eps) as c:
        await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
        assert (a.state.total_requests, b.state.total_requests) == (1, 0)  # priority: a first
        await c.chat.completions.create(model="deepseek-flash", messages=MSGS, endpoints={"b"})
        s = await c.chat.completions.create(
            model="deepseek-flash", messages=MSGS, stream=True, endpoints=["b"]
        )
        async for _ in s:
            pass
        await c.beta.completions.create(model="deepseek-flash", prompt="def f(", endpoints=("b",))
        await Conversation(c, endpoints={"b"}).send("Hello")
        assert (a.state.total_requests, b.state.total_requests) == (1, 4)
        with pytest.raises(UsageError, match=r"unknown \['c'\]; the client's endpoints are \['a', 'b'\]"):
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS, endpoints={"c"})
        with pytest.raises(UsageError, match="collection of endpoint names"):
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS, endpoints="b")
    assert (a.state.total_requests, b.state.total_requests) == (1, 4)


async def test_endpoints_needs_a_client_with_endpoints(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        with pytest.raises(UsageError, match="create the client with endpoints="):
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS, endpoints={"a"})
    assert emulator.state.total_requests == 0
