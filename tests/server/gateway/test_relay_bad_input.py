# Bad input and abuse get DeepSeek-shaped errors and never stall or crash the gateway: malformed or
# deep JSON, wrong types, unknown models, oversize bodies (also gzip bombs), unknown paths, slow
# clients, every upstream rate limited (429 with Retry-After); CORS off unless configured.
from __future__ import annotations

import asyncio
import gzip
import json

import aiohttp
import pytest

from .relay_helpers import GatewayThread, config_for

OK = {"model": "deepseek-flash", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def gw(emulator_factory):
    emu = emulator_factory()
    cfg = config_for(emu, extra="", timeout="first_token = 5.0")
    cfg = type(cfg)(**{**cfg.__dict__, "max_body_bytes": 64 * 1024, "client_timeout": 0.5})
    with GatewayThread(cfg) as g:
        yield g


async def _raw(url: str, data: bytes, headers=None, method="POST") -> tuple[int, dict, dict]:
    sent = {"Content-Type": "application/json", **(headers or {})}
    async with aiohttp.ClientSession() as s, s.request(method, url, data=data, headers=sent) as r:
        raw = await r.read()
        err = json.loads(raw).get("error") if raw.startswith(b"{") else None
        return r.status, dict(r.headers), err or json.loads(raw)


@pytest.mark.parametrize(("body", "status", "param"), [
    (b"{not json", 400, None),
    (b"[" * 200_00 + b"]" * 200_00, 400, None),
    (b'"a string"', 400, None),
    (json.dumps({**OK, "model": 7}).encode(), 422, "model"),
    (json.dumps({"messages": OK["messages"]}).encode(), 400, "model"),
    (json.dumps({**OK, "messages": "hi"}).encode(), 422, "messages"),
    (json.dumps({**OK, "stream": "yes"}).encode(), 422, "stream"),
    (json.dumps({**OK, "max_tokens": -1}).encode(), 422, "max_tokens"),
    (json.dumps({**OK, "model": "gpt-4o"}).encode(), 400, "model"),
])
async def test_bad_bodies(gw, body, status, param):
    got, _, err = await _raw(gw.base_url + "/chat/completions", body)
    assert got == status and set(err) == {"message", "type", "param", "code"} and err["param"] == param
    got, _, _ = await _raw(gw.base_url + "/chat/completions", json.dumps(OK).encode())
    assert got == 200  # the worker is fine


async def test_oversize_bodies_plain_and_compressed(gw):
    big = json.dumps({**OK, "messages": [{"role": "user", "content": "x" * 100_000}]}).encode()
    got, _, err = await _raw(gw.base_url + "/chat/completions", big)
    assert got == 413 and err["code"] == "request_too_large"
    bomb = gzip.compress(b'{"model": "deepseek-flash", "pad": "' + b"0" * 5_000_000 + b'"}')
    assert len(bomb) < 64 * 1024
    got, _, err = await _raw(gw.base_url + "/chat/completions", bomb, {"Content-Encoding": "gzip"})
    assert got == 413 and "after decompression" in err["message"]


async def test_unknown_path_and_method(gw):
    got, _, err = await _raw(gw.base_url + "/responses", b"{}")
    assert got == 404 and set(err) == {"message", "type", "param", "code"}
    got, _, err = await _raw(gw.base_url + "/chat/completions", b"", method="GET")
    assert got == 405 and set(err) == {"message", "type", "param", "code"}


async def test_slow_client_times_out(gw):
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"POST /chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{")
    await writer.drain()
    head = await asyncio.wait_for(reader.read(200), 10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 408")


async def test_cors_off_unless_configured(emulator_factory):
    emu = emulator_factory()
    for origins, allowed in (("", False), ('[gateway]\ncors_origins = ["https://app.example"]\n', True)):
        cfg = config_for(emu)
        if origins:
            cfg = type(cfg)(**{**cfg.__dict__, "cors_origins": ("https://app.example",)})
        with GatewayThread(cfg) as g:
            async with aiohttp.ClientSession() as s:
                async with s.options(g.base_url + "/chat/completions", headers={
                        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"}) as r:
                    assert ("Access-Control-Allow-Origin" in r.headers) is allowed
                async with s.post(g.base_url + "/chat/completions", json=OK,
                                  headers={"Origin": "https://app.example"}) as r:
                    assert r.status == 200
                    assert ("Access-Control-Allow-Origin" in r.headers) is allowed


async def test_every_upstream_rate_limited_is_429_with_retry_after(emulator_factory):
    a, b = emulator_factory(faults="status=429"), emulator_factory(faults="status=429")
    with GatewayThread(config_for(a, b)) as g:
        got, headers, err = await _raw(g.base_url + "/chat/completions", json.dumps(OK).encode())
    assert got == 429 and int(headers["Retry-After"]) >= 1 and err["type"] == "rate_limit_error"
