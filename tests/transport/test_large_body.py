"""A request body above 1 MiB (a long document in the prompt) goes out file-like: aiohttp sends a
bytes body in one write and warns above that size, which under warnings-as-errors is a failure in
the caller's program. Retries resend the whole body. Over both transports (HttpToolsTransport writes
head and body in one write: asyncio buffers what the socket does not take at once)."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from deepseek_kit import AiohttpTransport, AsyncClient, RetryPolicy
from deepseek_kit._transport.fast import HttpToolsTransport
from tests.helpers.servers import serve_app

ANSWER = {"id": "c", "object": "chat.completion", "created": 1, "model": "deepseek-chat",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                       "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


@pytest.mark.parametrize("transport", [AiohttpTransport, HttpToolsTransport])
async def test_a_3_mb_prompt_is_sent_whole_without_a_warning_and_resent_whole_on_retry(transport):
    seen: list[int] = []

    async def chat(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(len(body))
        json.loads(body)  # whole and valid
        if len(seen) == 1:
            return web.json_response({"error": {"message": "busy"}}, status=503)
        return web.json_response(ANSWER)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/chat/completions", chat)
    prompt = "word " * (3 * 1024 * 1024 // 5)
    async with serve_app(app) as url, AsyncClient(
            api_key="sk-test", base_url=url, transport=transport(),
            retry=RetryPolicy(max_retries=1, initial_delay=0.01, max_delay=0.01)) as c:
        r = await c.chat.completions.create(model="deepseek-chat",
                                            messages=[{"role": "user", "content": prompt}])
    assert r.choices[0].message.content == "ok"
    assert len(seen) == 2 and seen[0] == seen[1] > 3 * 1024 * 1024 - 10
