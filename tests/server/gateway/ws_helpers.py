# Helpers for the WebSocket tests: the tutorial's chat client (as the tutorial writes it), a raw
# WebSocket peer that can refuse to read or to answer pings, and an SSE upstream that counts what it
# could write.
from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from pathlib import Path

from aiohttp import web

# The tutorial's ChatSystem, written as the tutorial has it; `{HEADERS}` is `extra_headers` (the
# websockets 13 legacy client) or `additional_headers` (websockets >= 14).
CHAT_SYSTEM = """
import asyncio
import json

import websockets


class ChatSystem:
    def __init__(self, url, token):
        self.url = url
        self.token = token

    async def chat(self, message):
        async with websockets.connect(self.url, {HEADERS}={{"Authorization": f"Bearer {{self.token}}"}}) as ws:
            await ws.send(json.dumps({{
                "model": "deepseek-chat",
                "messages": [{{"role": "user", "content": message}}],
                "stream": True,
            }}))
            async for message in ws:
                data = json.loads(message)
                print(data["choices"][0]["delta"]["content"])
"""  # noqa: E501 (the tutorial's code as the tutorial has it, one line 111 characters long)


def chat_system_source(headers_kw: str) -> str:
    return CHAT_SYSTEM.format(HEADERS=headers_kw)


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """One masked client frame (RFC 6455 section 5.2); a zero mask leaves the payload as it is."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + b"\0\0\0\0" + payload


async def raw_connect(port: int, token: str | None = None, path: str = "/v1/chat/stream",
                      rcvbuf: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket handshake by hand: the peer then does only what the test makes it do."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    key = base64.b64encode(os.urandom(16)).decode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"{auth}\r\n").encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def kernel_buffer_chunks(chunk_bytes: int = 1_100) -> int:
    """How many ~1 KB chunks the loopback sockets between upstream, gateway and caller may hold by
    themselves: the gateway's receive buffer autotunes up to tcp_rmem's maximum (32 MB on the CI
    machine; a run that reached it held 20,383 chunks), each sender's up to tcp_wmem's."""
    rmem = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
    wmem = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    return (rmem + 2 * wmem) // chunk_bytes


class CountingUpstream:
    """An SSE upstream on a free loopback port that streams `chunks` chunks of about 1 KB as fast
    as its socket takes them, counting the ones written (each `write` waits for the socket)."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.written = 0
        self.cancelled = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        filler = "x" * 1000
        try:
            for i in range(self.chunks):
                chunk = {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "deepseek-flash",
                    "choices": [{"index": 0, "delta": {"content": f"{i} {filler}"}, "finish_reason": None}],
                }
                await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                self.written += 1
        except (asyncio.CancelledError, ConnectionError):
            self.cancelled.set()
            raise
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def start(self) -> CountingUpstream:
        app = web.Application()
        app.router.add_post("/chat/completions", self.handle)
        self.runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def assert_held_back(self, limit: int | None = None) -> None:
        """Wait until the upstream has written and then stopped (10 looks 0.1 s apart with no
        progress): a caller that reads nothing must hold the upstream back through the gateway's
        flow control, with at most `limit` chunks in all the buffers on the way (default: what the
        kernel's socket buffers may hold, `kernel_buffer_chunks`, plus 5,000 for the gateway's own)."""
        if limit is None:
            limit = kernel_buffer_chunks() + 5_000
        end = asyncio.get_running_loop().time() + 20
        while self.written == 0:
            assert asyncio.get_running_loop().time() < end, "the upstream never wrote"
            await asyncio.sleep(0.02)
        last, still = -1, 0
        while still < 10:
            await asyncio.sleep(0.1)
            still = still + 1 if self.written == last else 0
            last = self.written
        assert self.written < limit, self.written
