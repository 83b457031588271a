"""New attacks on resumption and streams (docs/attack-round-2026-12.md, round 2), each against a real local
server: RestartServer (tests/helpers/restart_server.py) or the emulator."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from deepseek_kit import AsyncClient, Resumption, StreamError, Timeout
from tests.helpers.restart_server import TEXT, RestartServer
from tests.helpers.servers import serve_app

MSGS = [{"role": "user", "content": "Tell me something."}]


def client_for(url: str, **kw) -> AsyncClient:
    return AsyncClient(api_key="sk-attack", base_url=url, max_retries=0,
                       timeout=Timeout(first_token=10, idle=5, total=30), **kw)


async def read(client: AsyncClient, messages=MSGS, **kw):
    s = await client.chat.completions.create(model="m", messages=messages, stream=True, **kw)
    seen: list[str] = []
    err: StreamError | None = None
    async with s:
        try:
            async for chunk in s:
                seen.extend(ch.delta.content or "" for ch in chunk.choices)
        except StreamError as e:
            err = e
    return s, "".join(seen), err


async def test_restart_that_diverges_after_a_shared_opening_is_dropped():
    # A sampled restart shares the opening words, then differs: "PARTIAL-A partial" (17 chars).
    async with RestartServer(ending="reset", then="stop",
                             later_pieces=["PARTIAL-A partial", " reply, sampled differently"]) as srv, \
            client_for(srv.base_url, prefix_completion=True) as c:
        _, text, err = await read(c)
    assert err is not None and text == TEXT and len(srv.bodies) == 2


async def test_continuation_that_breaks_while_repeating_the_start():
    async with RestartServer(ending="reset", later_pieces=["PARTIAL-A "]) as srv, \
            client_for(srv.base_url, prefix_completion=True) as c:
        _, text, err = await read(c)
    assert err is not None and text == TEXT and err.partial.choices[0].message.content == TEXT
    assert len(srv.bodies) == 2  # a restart: never retried


async def test_continuation_that_breaks_before_any_text_is_retried_then_fails_cleanly():
    async with RestartServer(ending="reset", later_pieces=[]) as srv, \
            client_for(srv.base_url, prefix_completion=True) as c:
        s, text, err = await read(c)
    assert err is not None and text == TEXT and err.partial.choices[0].message.content == TEXT
    assert len(srv.bodies) == 3 and s.resumed == 2  # Resumption().max_attempts continuations


async def test_empty_continuation_that_finishes_ends_the_answer():
    async with RestartServer(ending="reset", then="stop", later_pieces=[]) as srv, \
            client_for(srv.base_url, prefix_completion=True) as c:
        s, text, err = await read(c)
    assert err is None and text == TEXT and s.get_final_completion().choices[0].finish_reason == "stop"


async def test_callers_own_prefix_with_a_server_that_ignores_it():
    msgs = [*MSGS, {"role": "assistant", "content": "```python\n", "prefix": True}]
    async with RestartServer(ending="reset") as srv, client_for(srv.base_url, prefix_completion=True) as c:
        _, text, err = await read(c, messages=msgs)
    assert err is not None and text == TEXT
    assert srv.bodies[1]["messages"][-1]["content"] == "```python\n" + TEXT  # one prefix, merged
    assert len(srv.bodies) == 2


async def test_insufficient_then_a_thinking_restart_is_a_partial_answer():
    async with RestartServer(ending="insufficient", then="stop", later_reasoning=["Hmm."],
                             later_pieces=["Something else"]) as srv, \
            client_for(srv.base_url, prefix_completion=True) as c:
        s, text, err = await read(c)
    final = s.get_final_completion()
    assert err is None and text == TEXT and final.choices[0].finish_reason == "insufficient_system_resource"
    assert final.choices[0].message.reasoning_content is None


async def test_insufficient_then_a_malformed_continuation_is_a_partial_answer():
    async with RestartServer(ending="insufficient", then="malformed", later_pieces=[" more"]) as srv, \
            client_for(srv.base_url, prefix_completion=True) as c:
        s, text, err = await read(c)
    final = s.get_final_completion()
    assert err is None and text == TEXT + " more"
    assert final.choices[0].finish_reason == "insufficient_system_resource"


async def test_flood_of_textless_chunks_while_held_is_bounded():
    # A continuation that sends 20,000 role-only chunks before any text: not a recursion or an
    # unbounded hold; the held chunks are released once the cap is hit, and the answer continues.
    flood = 20_000

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        def chunk(delta, finish=None):
            doc = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return b"data: " + json.dumps(doc).encode() + b"\n\n"
        if body["messages"][-1].get("prefix"):
            await resp.write(chunk({"role": "assistant", "content": ""}) * flood)
            await resp.write(chunk({"content": " and the rest."}) + chunk({}, "stop") + b"data: [DONE]\n\n")
            return resp
        await resp.write(chunk({"role": "assistant", "content": ""}) + chunk({"content": TEXT}))
        request.transport.close()
        return resp

    app = web.Application()
    app.router.add_post("/chat/completions", handler)
    app.router.add_post("/beta/chat/completions", handler)
    async with serve_app(app) as url, client_for(url, prefix_completion=True) as c:
        s, text, err = await read(c)
    assert err is None and text == TEXT + " and the rest." and s.resumed == 1


async def test_done_without_finish_reason_ends_without_pretending(emulator):
    # [DONE] with no finish_reason: the stream ends; the final completion says nothing finished it.
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        c = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "cut"}, "finish_reason": None}]}
        await resp.write(b"data: " + json.dumps(c).encode() + b"\n\ndata: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/chat/completions", handler)
    async with serve_app(app) as url, client_for(url, prefix_completion=True) as c:
        s, text, err = await read(c)
    assert err is None and text == "cut" and s.get_final_completion().choices[0].finish_reason is None


async def test_max_attempts_zero_means_never(emulator):
    async with RestartServer(ending="reset") as srv, \
            client_for(srv.base_url, prefix_completion=True, resumption=Resumption(max_attempts=0)) as c:
        _, _, err = await read(c)
    assert err is not None and len(srv.bodies) == 1


async def test_non_stream_keepalive_forever_after_the_body_ends_within_limits(emulator):
    # Blank lines forever after a complete JSON body (non-stream).
    loop = asyncio.get_running_loop()
    async with client_for(emulator.base_url) as c:
        t0 = loop.time()
        r = await c.chat.completions.create(
            model="deepseek-flash", messages=MSGS, thinking=False,
            timeout=Timeout(first_token=5, idle=1, total=8),
            extra_headers={"X-DSK-Emulate": "keepalive_forever;keepalive=0.05"})
        # Whole answer returned once the body is complete, not at `total` (8 s) nor an error.
        assert r.choices[0].message.content and loop.time() - t0 < 1 + 2


async def test_continuations_share_the_callers_total_deadline():
    # Every piece streams, stalls 1.2 s, then breaks; continuations differ (so they are accepted).
    # Timeout(total=2) bounds the whole stream, continuations included.
    loop = asyncio.get_running_loop()
    async with RestartServer(ending="reset", later_pieces=["; then more"], delay=1.2) as srv, \
            AsyncClient(api_key="sk-attack", base_url=srv.base_url, max_retries=0, prefix_completion=True,
                        timeout=Timeout(first_token=5, idle=5, total=2)) as c:
        t0 = loop.time()
        _, text, err = await read(c)
        elapsed = loop.time() - t0
    assert err is not None and elapsed < 2 + 1.0
    assert text.startswith(TEXT)


async def test_no_genuine_continuation_is_dropped_at_any_cut_point(emulator):
    # The emulator continues a prefix exactly (a faithful prefix completion): at every cut point,
    # in reasoning, at the reasoning/content boundary and in the answer, the check must accept it
    # and the resumed stream must equal the unbroken one.
    shaping = "tokens=16;reasoning_tokens=6;chunk_tokens=1"
    async with AsyncClient(api_key="sk-sweep", base_url=emulator.base_url, max_retries=0,
                           prefix_completion=True, timeout=Timeout(first_token=10, idle=5, total=30)) as c:
        for think in (True, False):
            ref = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, thinking=think,
                                                  extra_headers={"X-DSK-Emulate": shaping})
            for cut in range(2, 24):
                h = {"X-DSK-Emulate": f"reset_after={cut};times=1;{shaping};key=sweep{think}{cut}"}
                s = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, thinking=think,
                                                    stream=True, extra_headers=h)
                final = await s.until_done()
                msg = final.choices[0].message
                assert msg.content == ref.choices[0].message.content, (think, cut)
                assert (msg.reasoning_content or None) == (ref.choices[0].message.reasoning_content or None)


async def test_break_before_any_text_then_a_fresh_answer_is_not_doubled():
    # Nothing was delivered: a server that ignores the (empty) prefix answers afresh, which is right.
    async with RestartServer(ending="reset", then="stop", pieces=[],
                             later_pieces=["A fresh ", "answer."]) as srv, \
            client_for(srv.base_url, prefix_completion=True) as c:
        s, text, err = await read(c)
    assert err is None and text == "A fresh answer." and s.resumed == 1
