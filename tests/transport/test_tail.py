"""`Timeout.tail` never outlasts `idle`: a complete answer followed by keep-alive
comments forever ends normally within about `idle`, and its connection is closed, not pooled.
Over both transports (AiohttpTransport, HttpToolsTransport)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from deepseek_kit import AiohttpTransport, AsyncClient, HttpToolsTransport, Timeout
from tests.helpers.restart_server import TEXT, USAGE, RestartServer

MSGS = [{"role": "user", "content": "Hi"}]
IDLE = 1.0  # the tail stays at its 5 s default: min(tail, idle) must apply


async def _read_all(client: AsyncClient, model: str, **kw):
    loop = asyncio.get_running_loop()
    s = await client.chat.completions.create(model=model, messages=MSGS, stream=True, **kw)
    t0 = loop.time()
    async with s:
        final = await s.until_done()
    return final, loop.time() - t0, s


TRANSPORTS = pytest.mark.parametrize("transport", [AiohttpTransport, HttpToolsTransport])


@TRANSPORTS
async def test_keepalive_forever_after_the_answer_ends_within_idle(emulator, transport):
    h = {"X-DSK-Emulate": f"keepalive_forever;keepalive=0.05;key={uuid.uuid4().hex[:8]}"}
    async with AsyncClient(api_key="sk-tail", base_url=emulator.base_url, max_retries=0,
                           transport=transport(),
                           timeout=Timeout(first_token=10, idle=IDLE, total=60)) as c:
        final, elapsed, s = await _read_all(c, "deepseek-flash", extra_headers=h, thinking=False)
        assert final.choices[0].finish_reason == "stop" and final.usage is not None
        assert elapsed < IDLE + 2.0  # bounded by idle (+ slack), not by the 5 s tail
        assert s.response.outcome == "ok"
        # the server sees the connection closed (its keep-alive loop notices within one beat)
        for _ in range(100):
            if emulator.state.disconnects:
                break
            await asyncio.sleep(0.05)
        assert emulator.state.disconnects == 1 and emulator.state.in_flight == 0


@TRANSPORTS
async def test_the_connection_is_dropped_not_pooled(transport):
    async with RestartServer(ending="keepalive", then="stop") as srv, \
            AsyncClient(api_key="sk-tail", base_url=srv.base_url, max_retries=0, transport=transport(),
                        timeout=Timeout(first_token=10, idle=IDLE, total=60)) as c:
        final, elapsed, _ = await _read_all(c, "m")
        assert final.choices[0].message.content == TEXT
        assert final.usage.completion_tokens == USAGE["completion_tokens"]
        assert elapsed < IDLE + 2.0
        final2, _, _ = await _read_all(c, "m")  # a clean stream: its connection may be pooled
        assert final2.choices[0].finish_reason == "stop"
        for _ in range(100):
            if srv.gone:
                break
            await asyncio.sleep(0.05)
        assert srv.gone == 1  # the keep-alive writer saw its client go
        assert srv.connections == 2  # the second request could not reuse the first connection
        assert srv.transports[0].is_closing()
