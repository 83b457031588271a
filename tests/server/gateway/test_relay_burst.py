# The relay's burst path: an upstream that sends a whole stream in one write (many events decoded
# from one read) must reach the caller exactly as the per-chunk path would deliver it: every payload
# in order, the usage counted, [DONE] at the end; an error object inside the burst still ends the
# caller's stream with an error event after the chunks before it, and no [DONE].
from __future__ import annotations

import json

import aiohttp
from aiohttp import web

from .relay_helpers import GatewayThread, config_for


def _chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
    doc: dict = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "deepseek-flash",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    if usage is not None:
        doc["usage"] = usage
    return json.dumps(doc, separators=(",", ":")).encode()


USAGE = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9, "prompt_cache_hit_tokens": 0,
         "prompt_cache_miss_tokens": 5}
GOOD = [_chunk({"role": "assistant", "content": ""}), _chunk({"content": "one"}), _chunk({"content": " two"}),
        _chunk({"content": " three"}), _chunk({"content": " four"}), _chunk({}, "stop", USAGE)]
BROKEN = [*GOOD[:3], b'{"error":{"message":"boom","type":"api_error","code":"server_error"}}', *GOOD[3:]]


class BurstUpstream:
    """A 127.0.0.1 server answering every chat request with `payloads` in ONE write."""

    def __init__(self, payloads: list[bytes], done: bool = True) -> None:
        self.body = b"".join(b"data: " + p + b"\n\n" for p in payloads) + (
            b"data: [DONE]\n\n" if done else b""
        )
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    async def __aenter__(self) -> BurstUpstream:
        async def chat(request: web.Request) -> web.StreamResponse:
            await request.read()
            out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await out.prepare(request)
            await out.write(self.body)
            await out.write_eof()
            return out

        app = web.Application()
        app.router.add_post("/chat/completions", chat)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def _stream(base: str) -> list[bytes]:
    body = {"model": "deepseek-flash", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as s, s.post(base + "/chat/completions", json=body) as r:
        assert r.status == 200
        raw = await r.read()
    return [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]


async def test_a_burst_reaches_the_caller_intact_with_its_usage():
    async with BurstUpstream(GOOD) as up:
        with GatewayThread(config_for(up)) as gw:
            events = await _stream(gw.base_url)
            async with aiohttp.ClientSession() as s, s.get(gw.base_url + "/metrics") as r:
                metrics = await r.text()
    assert events == [*GOOD, b"[DONE]"]
    assert 'kind="completion"' in metrics and "} 4.0" in metrics  # the usage of the burst was seen
    assert 'dsk_gateway_stream_chunks_total{upstream="up0"} 6.0' in metrics


async def test_an_error_object_inside_a_burst_ends_the_stream_without_done():
    async with BurstUpstream(BROKEN) as up:
        with GatewayThread(config_for(up)) as gw:
            events = await _stream(gw.base_url)
    assert events[:3] == GOOD[:3]
    assert len(events) == 4 and b'"stream_interrupted"' in events[3]
    assert b"[DONE]" not in events
