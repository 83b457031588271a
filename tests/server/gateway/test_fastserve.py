# The gateway's fast HTTP/1.1 path (server/gateway/fastproto.py) at the protocol level, on raw
# sockets: hand-over to aiohttp on a keep-alive connection, pipelining, chunked and gzip bodies,
# 100-continue, malformed and oversize heads, slow bodies, HTTP/1.0 streams, a caller leaving.
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import json
import socket
import zlib
from types import SimpleNamespace

import pytest

from deepseek_kit.server.gateway import GATEWAY_KEY
from deepseek_kit.server.gateway.state import open_state

from .relay_helpers import GatewayThread, config_for
from .ws_helpers import CountingUpstream

ASK = {"model": "deepseek-flash", "messages": [{"role": "user", "content": "hello"}]}


def _post(body: bytes, path: str = "/v1/chat/completions", extra: str = "", version: str = "1.1") -> bytes:
    return (f"POST {path} HTTP/{version}\r\nHost: gw\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


async def _response(r: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    """One HTTP response: (status line, headers with lower-case names, body de-chunked)."""
    head = (await r.readuntil(b"\r\n\r\n")).decode("latin-1")
    line, *rest = head.rstrip("\r\n").split("\r\n")
    headers = {k.lower(): v for k, v in (h.split(": ", 1) for h in rest)}
    if "content-length" in headers:
        return line, headers, await r.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            n = int((await r.readuntil(b"\r\n")).strip(), 16)
            if n == 0:
                assert await r.readuntil(b"\r\n") == b"\r\n"
                return line, headers, body
            body += await r.readexactly(n)
            assert await r.readexactly(2) == b"\r\n"
    return line, headers, await r.read()  # close-delimited


async def _close(w: asyncio.StreamWriter) -> None:
    w.close()
    with contextlib.suppress(ConnectionError):
        await w.wait_closed()


@pytest.fixture
def gw(emulator_factory):
    cfg = config_for(emulator_factory())
    with GatewayThread(cfg) as g:
        yield g


async def _open(gw: GatewayThread) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", gw.port)


async def test_a_keep_alive_connection_moves_to_aiohttp_for_a_get(gw):
    r, w = await _open(gw)
    w.write(_post(json.dumps(ASK).encode()))
    line, headers, body = await _response(r)
    assert line == "HTTP/1.1 200 OK" and json.loads(body)["choices"][0]["message"]["content"]
    assert headers["content-type"] == "application/json" and headers["x-dsk-upstream"] == "up0"
    assert "date" in headers and "aiohttp" in headers["server"]
    w.write(b"GET /models HTTP/1.1\r\nHost: gw\r\n\r\n")  # the same socket: aiohttp answers it
    line, _, body = await _response(r)
    assert line == "HTTP/1.1 200 OK" and json.loads(body)["object"] == "list"
    w.write(_post(json.dumps(ASK).encode()))  # and keeps the connection for what follows
    line, _, body = await _response(r)
    assert line == "HTTP/1.1 200 OK" and json.loads(body)["object"] == "chat.completion"
    await _close(w)


async def test_pipelined_requests_are_answered_in_order(gw):
    r, w = await _open(gw)
    one = _post(json.dumps({**ASK, "max_tokens": 3}).encode())
    two = _post(json.dumps({**ASK, "model": "nope"}).encode(), path="/chat/completions")
    w.write(one + two + b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n" + one)  # one write, four requests
    answers = [await _response(r) for _ in range(4)]
    assert [a[0].split()[1] for a in answers] == ["200", "400", "200", "200"]
    assert json.loads(answers[0][2])["usage"]["completion_tokens"] <= 3
    assert "Model Not Exist" in json.loads(answers[1][2])["error"]["message"]
    assert json.loads(answers[3][2])["object"] == "chat.completion"
    await _close(w)


async def test_chunked_and_gzip_bodies_are_inflated_with_the_cap_counted_after(emulator_factory):
    cfg = config_for(emulator_factory())
    cfg = dataclasses.replace(cfg, max_body_bytes=4096)
    with GatewayThread(cfg) as g:
        r, w = await asyncio.open_connection("127.0.0.1", g.port)
        packed = gzip.compress(json.dumps(ASK).encode())
        pieces = [packed[i:i + 7] for i in range(0, len(packed), 7)]
        chunks = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces)
        w.write(b"POST /chat/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Encoding: gzip\r\n\r\n" + chunks + b"0\r\n\r\n")
        line, _, body = await _response(r)
        assert line == "HTTP/1.1 200 OK", body
        deflated = zlib.compress(json.dumps(ASK).encode())  # deflate with its zlib header
        w.write(_post(deflated, extra="Content-Encoding: deflate\r\n"))
        line, _, body = await _response(r)
        assert line == "HTTP/1.1 200 OK", body
        # 1 MB of spaces inside the JSON: 1 KB on the wire, over the 4 KB cap once inflated
        bomb = gzip.compress(json.dumps({**ASK, "pad": " " * (1 << 20)}).encode())
        assert len(bomb) < 4096
        w.write(_post(bomb, extra="Content-Encoding: gzip\r\n"))
        line, _, body = await _response(r)
        err = json.loads(body)["error"]
        assert line.startswith("HTTP/1.1 413") and err["code"] == "request_too_large"
        assert "after decompression" in err["message"]
        w.write(_post(b"\x1f\x8b not gzip at all", extra="Content-Encoding: gzip\r\n"))
        line, _, body = await _response(r)
        assert line.startswith("HTTP/1.1 400") and "could not be read" in json.loads(body)["error"]["message"]
        await _close(w)


async def test_expect_100_continue_is_answered_before_the_body(gw):
    r, w = await _open(gw)
    body = json.dumps(ASK).encode()
    w.write(_post(b"", extra="Expect: 100-continue\r\n").replace(b"Content-Length: 0",
                                                                 b"Content-Length: %d" % len(body)))
    assert await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10) == b"HTTP/1.1 100 Continue\r\n\r\n"
    w.write(body)
    line, _, answer = await _response(r)
    assert line == "HTTP/1.1 200 OK" and json.loads(answer)["object"] == "chat.completion"
    await _close(w)


async def test_a_malformed_request_line_gets_400_and_the_connection_closes(gw):
    r, w = await _open(gw)
    w.write(b"POST /chat/completions HTTP/1.1 extra\r\nHost: gw\r\n\r\n")
    line, _, _ = await _response(r)
    assert line.split()[1] == "400"  # aiohttp answers it (on HTTP/1.0)
    assert await asyncio.wait_for(r.read(), 10) == b""
    await _close(w)


async def test_a_header_over_aiohttps_limit_gets_400(gw):
    r, w = await _open(gw)
    w.write(_post(json.dumps(ASK).encode(), extra=f"X-Big: {'a' * 9000}\r\n"))
    line, _, body = await _response(r)
    assert line.split()[1] == "400" and b"8190" in body
    await _close(w)


async def test_a_get_on_a_hot_path_is_405_from_aiohttp(gw):
    r, w = await _open(gw)
    w.write(b"GET /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n\r\n")
    line, _, body = await _response(r)
    assert line.startswith("HTTP/1.1 405") and json.loads(body)["error"]["type"] == "invalid_request_error"
    await _close(w)


async def test_a_slow_body_gets_408(emulator_factory):
    cfg = config_for(emulator_factory())
    cfg = dataclasses.replace(cfg, client_timeout=0.5)
    with GatewayThread(cfg) as g:
        r, w = await asyncio.open_connection("127.0.0.1", g.port)
        w.write(_post(b'{"model": ').replace(b"Content-Length: 10", b"Content-Length: 100"))
        line, headers, body = await asyncio.wait_for(_response(r), 10)
        assert line.startswith("HTTP/1.1 408") and json.loads(body)["error"]["code"] == "request_timeout"
        assert headers.get("connection") == "close"  # the rest of that body is never read
        await _close(w)


async def test_an_http_1_0_stream_is_close_delimited(gw):
    r, w = await _open(gw)
    w.write(_post(json.dumps({**ASK, "stream": True}).encode(), version="1.0"))
    line, headers, body = await asyncio.wait_for(_response(r), 30)
    assert line == "HTTP/1.0 200 OK" and "transfer-encoding" not in headers
    assert headers["content-type"] == "text/event-stream" and body.endswith(b"data: [DONE]\n\n")
    await _close(w)


async def test_a_chunked_stream_is_framed_one_chunk_per_write(gw):
    r, w = await _open(gw)
    w.write(_post(json.dumps({**ASK, "stream": True}).encode()))
    line, headers, body = await asyncio.wait_for(_response(r), 30)
    assert line == "HTTP/1.1 200 OK" and headers["transfer-encoding"] == "chunked"
    events = [e for e in body.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]" and all(e.startswith(b"data: ") for e in events)
    await _close(w)


async def test_a_caller_leaving_mid_stream_releases_its_hold(emulator_factory):
    emu = emulator_factory(faults="delay_chunks=0.05;tokens=200")  # a ~10 s stream
    cfg = config_for(emu)
    cfg = dataclasses.replace(cfg, max_in_flight=1)
    with GatewayThread(cfg) as g:
        gateway = g.app[GATEWAY_KEY]
        r, w = await asyncio.open_connection("127.0.0.1", g.port)
        w.write(_post(json.dumps({**ASK, "stream": True}).encode()))
        await asyncio.wait_for(r.readuntil(b"data: "), 30)  # the stream has begun
        assert gateway.relay is not None and gateway.relay.active == 1
        w.close()  # the caller leaves: the handler is cancelled, the lease and the hold released
        for _ in range(100):
            if gateway.relay.active == 0:
                break
            await asyncio.sleep(0.05)
        assert gateway.relay.active == 0
        r2, w2 = await asyncio.open_connection("127.0.0.1", g.port)
        w2.write(_post(json.dumps(ASK).encode()))  # max_in_flight = 1: only admitted once released
        line, _, _ = await asyncio.wait_for(_response(r2), 30)
        assert line == "HTTP/1.1 200 OK"
        await _close(w2)


async def test_the_peer_address_is_what_ip_allow_lists_see(emulator_factory, tmp_path, monkeypatch):
    pepper = "fastserve-test-pepper-0123456789abcdef"
    monkeypatch.setenv("DSK_GATEWAY_PEPPER", pepper)
    url = f"sqlite:///{tmp_path}/gw.db"
    st = open_state(url, pepper=pepper.encode())
    inside, _ = await st.create_key("loopback", allow_ip=["127.0.0.0/8"])
    outside, _ = await st.create_key("office", allow_ip=["10.0.0.0/8"])
    await st.aclose()
    with GatewayThread(config_for(emulator_factory(), auth="keys", state=url)) as g:
        r, w = await asyncio.open_connection("127.0.0.1", g.port)
        for key, status in ((inside, "200"), (outside, "403")):
            w.write(_post(json.dumps(ASK).encode(), extra=f"Authorization: Bearer {key}\r\n"))
            line, _, body = await _response(r)
            assert line.split()[1] == status, body
        await _close(w)


async def test_an_idle_keep_alive_connection_is_closed_after_the_runner_keepalive_timeout(emulator_factory):
    g = GatewayThread(config_for(emulator_factory()))
    g.runner_kw = {"keepalive_timeout": 0.3}
    with g:
        r, w = await asyncio.open_connection("127.0.0.1", g.port)
        w.write(_post(json.dumps(ASK).encode()))
        line, _, _ = await _response(r)
        assert line == "HTTP/1.1 200 OK"
        assert await asyncio.wait_for(r.read(), 10) == b""  # closed by the gateway once idle
        await _close(w)


async def test_a_stream_to_a_caller_who_does_not_read_holds_the_upstream_back():
    up = await CountingUpstream(chunks=200_000).start()  # ~220 MB if nothing held it back
    try:
        with GatewayThread(config_for(SimpleNamespace(base_url=up.base_url))) as g:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", g.port))
            _, w = await asyncio.open_connection(sock=sock, limit=4096)
            w.write(_post(json.dumps({**ASK, "stream": True}).encode()))
            await w.drain()
            # the caller reads nothing: once the buffers are full the gateway's writes wait
            # (pause_writing), its upstream reads stop, and so do the upstream's writes
            await up.assert_held_back()
            w.close()
            await asyncio.wait_for(up.cancelled.wait(), 20)  # and leaving cancels it
    finally:
        await up.stop()


async def test_a_get_pipelined_behind_a_chunked_request_is_handed_over_intact(gw):
    r, w = await _open(gw)
    body = json.dumps(ASK).encode()
    chunked = (b"POST /chat/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body))
    w.write(chunked + b"GET /models HTTP/1.1\r\nHost: gw\r\n\r\n")  # where the GET starts is found
    line, _, answer = await _response(r)
    assert line == "HTTP/1.1 200 OK" and json.loads(answer)["object"] == "chat.completion"
    line, _, answer = await _response(r)
    assert line == "HTTP/1.1 200 OK" and json.loads(answer)["object"] == "list"
    await _close(w)


class _Recorder:
    """The connection side of a FastStream (fastreq._Conn), recording each socket write."""

    remote = "127.0.0.1"

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def send(self, data: bytes) -> None:
        self.writes.append(data)

    def send_nowait(self, data: bytes) -> None:
        self.writes.append(data)


def _stream(version: str = "1.1"):
    from deepseek_kit.server.gateway.fastreq import FastRequest, FastStream, Headers

    conn = _Recorder()
    req = FastRequest(conn, ("/chat/completions", False), Headers(), version, True, 1 << 20)
    return conn, FastStream(req, {"Content-Type": "text/event-stream"})


async def test_a_stream_head_goes_out_with_its_first_chunk_in_one_write():
    conn, out = _stream()
    await out.prepare(None)
    await out.write(b"data: {}\n\n")
    assert len(conn.writes) == 1
    head, _, body = conn.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked" in head
    assert body == b"a\r\ndata: {}\n\n\r\n"
    await asyncio.sleep(0)  # the end-of-turn send finds nothing left to send
    await out.write_eof()
    assert conn.writes[1:] == [b"0\r\n\r\n"]


async def test_a_stream_head_with_no_chunk_in_the_same_turn_goes_out_alone_at_its_end():
    conn, out = _stream()
    await out.prepare(None)
    assert conn.writes == []
    await asyncio.sleep(0)
    assert len(conn.writes) == 1 and conn.writes[0].endswith(b"\r\n\r\n")
    await out.write(b"x")
    assert conn.writes[1] == b"1\r\nx\r\n"


async def test_an_empty_stream_sends_its_head_and_end_together():
    conn, out = _stream()
    await out.prepare(None)
    await out.write_eof()
    assert len(conn.writes) == 1 and conn.writes[0].endswith(b"\r\n\r\n0\r\n\r\n")
    conn, out = _stream("1.0")
    await out.prepare(None)
    await out.write_eof()
    assert len(conn.writes) == 1 and b"Connection: close" in conn.writes[0]
