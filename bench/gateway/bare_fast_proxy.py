#!/usr/bin/env python3
"""The floor for a Python gateway on our fast stack: a bare pass-through proxy on uvloop + httptools.

The same server/client building blocks as `dsk serve --config` on its fast paths (asyncio protocols,
httptools parsers on both sides, a keep-alive pool to the upstream, uvloop), and nothing else: no
checks, no JSON, no routing, no metrics. The request body is forwarded as read; the answer's body
bytes are relayed as they arrive, chunked to the caller. What our gateway costs above this is
everything it does per request; what this costs above nginx is Python and the event loop.

usage: bare_fast_proxy.py --upstream http://127.0.0.1:18080/json/v1 --port 18504
"""
import argparse
import asyncio
from urllib.parse import urlsplit

import httptools

try:
    import uvloop
except ImportError:  # pragma: no cover - the kit installs it
    uvloop = None


class Upstream(asyncio.Protocol):
    """One keep-alive connection to the upstream; relays one answer at a time to `client`."""

    def __init__(self, pool: list["Upstream"]) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.client: "Caller | None" = None
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool:
            self.pool.remove(self)
        if self.client is not None:
            self.client.transport.close()
            self.client = None

    def on_headers_complete(self) -> None:
        assert self.client is not None
        self.client.transport.write(b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\n"
                                    b"Transfer-Encoding: chunked\r\n\r\n" % self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        assert self.client is not None
        self.client.transport.write(b"%x\r\n%s\r\n" % (len(body), body))

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        assert client is not None
        client.transport.write(b"0\r\n\r\n")
        self.pool.append(self)
        client.done()


class Caller(asyncio.Protocol):
    """One caller connection: parses requests, forwards each to a pooled upstream connection."""

    def __init__(self, target: tuple[str, int, bytes], pool: list[Upstream]) -> None:
        self.target, self.pool = target, pool
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []
        self.queue: list[bytes] = []
        self.busy = False
        self.up: Upstream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None and self.up.client is self:  # left mid-answer: drop that upstream
            self.up.client = None
            assert self.up.transport is not None
            self.up.transport.close()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        self.queue.append(body)
        if not self.busy:
            self.next()

    def next(self) -> None:
        if self.queue and not self.transport.is_closing():
            self.busy = True
            body = self.queue.pop(0)
            if self.pool:
                self.send(self.pool.pop(), body)
            else:
                asyncio.ensure_future(self.connect_and_send(body))
        else:
            self.busy = False

    async def connect_and_send(self, body: bytes) -> None:
        host, port, _ = self.target
        loop = asyncio.get_running_loop()
        _, up = await loop.create_connection(lambda: Upstream(self.pool), host, port)
        await up.ready
        self.send(up, body)

    def send(self, up: Upstream, body: bytes) -> None:
        up.client, self.up = self, up
        assert up.transport is not None
        up.transport.write(self.target[2] + b"%d\r\n\r\n%s" % (len(body), body))

    def done(self) -> None:
        self.next()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    u = urlsplit(a.upstream.rstrip("/"))
    head = (f"POST {u.path}/chat/completions HTTP/1.1\r\nHost: {u.netloc}\r\n"
            "Content-Type: application/json\r\nContent-Length: ").encode()
    target = (u.hostname or "127.0.0.1", u.port or 80, head)

    async def serve() -> None:
        pool: list[Upstream] = []
        server = await asyncio.get_running_loop().create_server(
            lambda: Caller(target, pool), "127.0.0.1", a.port, backlog=1024)
        async with server:
            await server.serve_forever()

    if uvloop is not None:
        uvloop.run(serve())
    else:
        asyncio.run(serve())


if __name__ == "__main__":
    main()
