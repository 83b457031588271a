"""HttpToolsTransport on real loopback sockets: the emulator, and raw asyncio servers of our own on
127.0.0.1 for what the emulator cannot do (chunked and compressed bodies, Connection: close, a
server that drops kept-alive connections, resets mid-body, never answers, never finishes TLS)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from deepseek_kit import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    StreamError,
    Timeout,
    UsageError,
)
from deepseek_kit._transport.fast import HttpToolsTransport, gateway_transport
from deepseek_kit._transport.fast_conn import HIGH_WATER, ConnectionLost
from deepseek_kit._transport.request import Request

MSGS = [{"role": "user", "content": "hi"}]
OK = (b'{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
      b'"message":{"role":"assistant","content":"fine"},"finish_reason":"stop"}],'
      b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}')



Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Raw"], Awaitable[None]]


class Raw:
    """A raw HTTP server in the test's loop: `handler(reader, writer, self)` per connection;
    counts connections and the requests read with `request()`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open = 0
        self.max_open = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.url = ""
        self.tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Raw:
        if self.server is None:
            self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.connections += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            await self.handler(reader, writer, self)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        data = head + (await reader.readexactly(length) if length else b"")
        self.requests.append(data)
        return data


def response(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s" % (
        extra, len(body), body)


def keep_alive(body: bytes = OK, extra: bytes = b"") -> Handler:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, srv: Raw) -> None:
        while True:
            await srv.request(r)
            w.write(response(body, extra))
            await w.drain()
    return handler


def req(url: str, *, body: bytes | None = b"{}", connect: float = 5.0, method: str = "POST",
        headers: dict[str, str] | None = None) -> Request:
    return Request(method, url + "/chat/completions", "/chat/completions", body=body,
                   headers=headers if headers is not None else {"Content-Type": "application/json"},
                   timeout=Timeout(connect=connect, total=30))


async def read_all(t: HttpToolsTransport, r: Request) -> tuple[int, bytes]:
    raw = await t.open(r)
    parts = []
    while data := await raw.source.read():
        parts.append(data)
    raw.source.release()
    return raw.status, b"".join(parts)


@contextlib.asynccontextmanager
async def transport(**kw: object) -> AsyncIterator[HttpToolsTransport]:
    t = HttpToolsTransport(**kw)  # type: ignore[arg-type]
    try:
        yield t
    finally:
        await t.aclose()


# --- the emulator ----------------------------------------------------------------------------------


async def test_emulator_calls_and_streams_share_one_kept_alive_connection(emulator):
    t = HttpToolsTransport()
    async with AsyncClient(api_key="sk-fast", base_url=emulator.base_url, transport=t, max_retries=0) as c:
        for _ in range(3):
            r = await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
            assert r.choices[0].message.content
        s = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True)
        text = "".join([ch.choices[0].delta.content or "" async for ch in s if ch.choices])
        assert text
        assert t._in_use == 0 and sum(len(v) for v in t._idle.values()) == 1
    assert not t._idle  # closed by AsyncClient.close()
    await t.aclose()  # a second time is harmless


async def test_emulator_status_errors_come_back_as_responses(emulator):
    async with transport() as t:
        status, body = await read_all(t, req(emulator.base_url, body=b'{"model": "no-such"}'))
    assert status == 401 and b"error" in body  # no key sent


# --- bodies ------------------------------------------------------------------------------------------


async def test_chunked_body_is_read_and_the_connection_reused():
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, srv: Raw) -> None:
        while True:
            await srv.request(r)
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (OK[:10], OK[10:50], OK[50:]):
                w.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await w.drain()
                await asyncio.sleep(0.01)
            w.write(b"0\r\n\r\n")

    async with Raw(handler) as srv, transport() as t:
        for _ in range(3):
            assert await read_all(t, req(srv.url)) == (200, OK)
    assert srv.connections == 1 and len(srv.requests) == 3


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_bodies_are_inflated(encoding):
    if encoding == "gzip":
        packed = gzip.compress(OK)
    elif encoding == "deflate":
        packed = zlib.compress(OK)
    else:
        z = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        packed = z.compress(OK) + z.flush()
    name = encoding.removeprefix("raw-").encode()
    async with Raw(keep_alive(packed, b"Content-Encoding: " + name + b"\r\n")) as srv, transport() as t:
        assert await read_all(t, req(srv.url)) == (200, OK)
        assert await read_all(t, req(srv.url)) == (200, OK)
    assert b"accept-encoding: gzip, deflate" in srv.requests[0].lower()
    assert srv.connections == 1


async def test_a_compression_bomb_inflates_a_step_at_a_time():
    packed = gzip.compress(b" " * (8 << 20))
    async with Raw(keep_alive(packed, b"Content-Encoding: gzip\r\n")) as srv, transport() as t:
        raw = await t.open(req(srv.url))
        sizes = []
        while data := await raw.source.read():
            sizes.append(len(data))
        raw.source.release()
    assert sum(sizes) == 8 << 20 and max(sizes) <= 256 * 1024


async def test_a_broken_gzip_body_is_a_read_error():
    async with Raw(keep_alive(b"not gzip at all", b"Content-Encoding: gzip\r\n")) as srv, transport() as t:
        raw = await t.open(req(srv.url))
        with pytest.raises(ConnectionLost, match="could not decode the gzip body"):
            await raw.source.read()
        raw.source.abort()
        assert t._in_use == 0 and not t._idle.get((False, "127.0.0.1", int(srv.url.rsplit(":", 1)[1])))


async def test_connection_close_and_http_1_0_are_not_reused():
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.request(r)
        if srv.connections == 1:
            w.write(response(OK, b"Connection: close\r\n"))
        else:  # HTTP/1.0 without a length: the body ends when the server closes
            w.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + OK)
        await w.drain()

    async with Raw(handler) as srv, transport() as t:
        assert await read_all(t, req(srv.url)) == (200, OK)
        assert await read_all(t, req(srv.url)) == (200, OK)
        assert not any(t._idle.values())
    assert srv.connections == 2


async def test_an_interim_100_continue_is_skipped():
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, srv: Raw) -> None:
        while True:
            await srv.request(r)
            w.write(b"HTTP/1.1 100 Continue\r\n\r\n" + response(OK, b"X-Real: yes\r\n"))
            await w.drain()

    async with Raw(handler) as srv, transport() as t:
        for _ in range(2):
            raw = await t.open(req(srv.url))
            assert raw.status == 200 and raw.headers["x-real"] == "yes"
            assert await raw.source.read() == OK
            raw.source.release()
    assert srv.connections == 1


async def test_request_head_host_length_and_headers_as_given():
    async with Raw(keep_alive()) as srv, transport() as t:
        given = {"X-Trace": "abc", "Accept-Encoding": "identity"}
        await read_all(t, req(srv.url, body=b'{"a": 1}', headers=given))
        await read_all(t, Request("POST", srv.url + "/x?q=1#frag", "/x", headers={}, timeout=Timeout()))
    first, second = srv.requests
    port = srv.url.rsplit(":", 1)[1]
    assert first.startswith(b"POST /chat/completions HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}\r\n".encode() in first and b"Content-Length: 8\r\n" in first
    assert b"X-Trace: abc\r\n" in first and first.lower().count(b"accept-encoding") == 1
    assert first.endswith(b'\r\n\r\n{"a": 1}')
    assert second.startswith(b"POST /x?q=1 HTTP/1.1") and b"Content-Length: 0\r\n" in second


async def test_a_header_with_a_newline_is_refused():
    async with transport() as t:
        with pytest.raises(UsageError, match="CR or LF"):
            await t.open(req("http://127.0.0.1:9", headers={"X-Bad": "a\r\nX-Injected: 1"}))
        assert t._in_use == 0


# --- kept-alive connections the server dropped -------------------------------------------------------------


async def test_a_connection_closed_while_idle_is_not_used():
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.request(r)
        w.write(response(OK))  # keep-alive allowed, then closed anyway (an idle timeout)
        await w.drain()

    async with Raw(handler) as srv, transport() as t:
        assert await read_all(t, req(srv.url)) == (200, OK)
        for _ in range(100):
            if not any(t._idle.values()):
                break
            await asyncio.sleep(0.01)
        assert not any(t._idle.values())  # noticed while idle and dropped from the pool
        assert await read_all(t, req(srv.url)) == (200, OK)
    assert srv.connections == 2


async def test_a_connection_idle_past_keepalive_timeout_is_replaced():
    async with Raw(keep_alive()) as srv, transport(keepalive_timeout=0.1) as t:
        assert await read_all(t, req(srv.url)) == (200, OK)
        assert await read_all(t, req(srv.url)) == (200, OK)  # reused
        assert srv.connections == 1
        await asyncio.sleep(0.3)
        assert await read_all(t, req(srv.url)) == (200, OK)
        assert srv.connections == 2
        for _ in range(100):
            if srv.open == 1:
                break
            await asyncio.sleep(0.01)
        assert srv.open == 1  # the old one was closed


async def test_a_reused_connection_closed_before_answering_is_retried_once_on_a_new_one():
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.request(r)
        w.write(response(OK))
        await w.drain()
        if srv.connections == 1:
            await srv.request(r)  # the race: the request arrived as the server gave up on it
            return  # closed without a byte
        while True:
            await srv.request(r)
            w.write(response(OK))
            await w.drain()

    async with Raw(handler) as srv, transport() as t:
        assert await read_all(t, req(srv.url)) == (200, OK)
        assert await read_all(t, req(srv.url)) == (200, OK)
    assert srv.connections == 2 and len(srv.requests) == 3


async def test_no_retry_once_bytes_of_the_answer_arrived():
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.request(r)
        w.write(response(OK))
        await w.drain()
        await srv.request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Ty")  # half a head, then gone
        await w.drain()

    async with Raw(handler) as srv, transport() as t:
        assert await read_all(t, req(srv.url)) == (200, OK)
        with pytest.raises(APIConnectionError, match="closed the connection before the response headers"):
            await t.open(req(srv.url))
        assert t._in_use == 0
    assert srv.connections == 1 and len(srv.requests) == 2


async def test_a_fresh_connection_closed_before_answering_is_an_error():
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.request(r)

    async with Raw(handler) as srv, transport() as t:
        with pytest.raises(APIConnectionError, match="closed the connection before answering") as ei:
            await t.open(req(srv.url))
    assert ei.value.__context__ is None and ei.value.__cause__ is None
    assert srv.connections == 1


async def test_reset_mid_body_fails_the_read_and_is_a_stream_error_above():
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        event = b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":' \
                b'[{"index":0,"delta":{"content":"he"},"finish_reason":null}]}\n\n'
        w.write(b"%x\r\n%s\r\n" % (len(event), event))
        await w.drain()
        await asyncio.sleep(0.05)
        sock = w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        w.transport.abort()  # RST

    async with Raw(handler) as srv:
        async with AsyncClient(api_key="sk-fast", base_url=srv.url, transport=HttpToolsTransport(),
                               max_retries=0) as c:
            s = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
            with pytest.raises(StreamError, match="lost mid-stream"):
                async for _ in s:
                    pass
        async with transport() as t:
            raw = await t.open(req(srv.url))
            with pytest.raises(ConnectionLost, match="before the end of the response body"):
                while await raw.source.read():
                    pass
            raw.source.abort()
            assert t._in_use == 0


async def test_a_server_that_does_not_speak_http_is_a_connection_error():
    async def garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.request(r)
        w.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await w.drain()
        await r.read()

    async with Raw(garbage) as srv, transport() as t:
        with pytest.raises(APIConnectionError, match="not a valid HTTP response") as ei:
            await t.open(req(srv.url))
        assert t._in_use == 0
    assert ei.value.__context__ is None


async def test_endless_response_headers_stop_at_the_cap():
    async def endless(r: asyncio.StreamReader, w: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.request(r)
        w.write(b"HTTP/1.1 200 OK\r\nX-Long: ")
        while True:
            w.write(b"a" * 16384)
            await w.drain()

    async with Raw(endless) as srv, transport() as t:
        with pytest.raises(APIConnectionError, match="headers are over 64 KiB"):
            await t.open(req(srv.url))
        assert t._in_use == 0


# --- connecting ------------------------------------------------------------------------------------


async def test_connect_refused_is_one_line_naming_the_host():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    async with transport() as t:
        with pytest.raises(APIConnectionError) as ei:
            await t.open(req(f"http://127.0.0.1:{port}"))
        assert t._in_use == 0
    assert str(ei.value) == f"Could not reach http://127.0.0.1:{port}: connection refused"
    assert ei.value.__context__ is None


async def test_a_tls_handshake_that_never_finishes_is_a_connect_timeout():
    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter, srv: Raw) -> None:
        await r.read()  # accepts TCP, never speaks TLS

    async with Raw(silent) as srv, transport() as t:
        url = srv.url.replace("http://", "https://")
        with pytest.raises(APITimeoutError) as ei:
            await t.open(req(url, connect=0.2))
        assert t._in_use == 0
    assert "connect" in str(ei.value)


def _tls_pair(tmp_path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: the server's context and a client context that
    trusts it (cryptography comes with the dev extra, through pyjwt[crypto])."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - day).not_valid_after(now + day)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = tmp_path / "cert.pem"
    key_pem = tmp_path / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_pem, key_pem)
    client = ssl.create_default_context(cafile=str(cert_pem))
    # Python 3.13+ checks CA certificates strictly (key usage, key identifiers): not the point here
    client.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
    return server, client


async def test_https_with_a_private_ca_and_an_untrusted_certificate(tmp_path):
    server_ctx, client_ctx = _tls_pair(tmp_path)
    srv = Raw(keep_alive())
    srv.server = await asyncio.start_server(srv._conn, "127.0.0.1", 0, ssl=server_ctx)
    url = f"https://127.0.0.1:{srv.server.sockets[0].getsockname()[1]}"
    async with srv, transport(ssl=client_ctx) as t:
        assert await read_all(t, req(url)) == (200, OK)
        assert await read_all(t, req(url)) == (200, OK)
        assert srv.connections == 1
        async with transport() as untrusting:  # the system's CAs
            with pytest.raises(APIConnectionError, match="certificate verify failed") as ei:
                await untrusting.open(req(url))
            assert untrusting._in_use == 0
    assert str(ei.value).startswith(f"Could not reach {url}: ")
    assert ei.value.__context__ is None


# --- flow control, the cap, cancellation ----------------------------------------------------------


async def test_a_slow_reader_pauses_the_socket():
    big = b"x" * (4 << 20)
    async with Raw(keep_alive(big)) as srv, transport() as t:
        raw = await t.open(req(srv.url))
        conn = raw.source._conn  # type: ignore[attr-defined]
        for _ in range(200):
            if conn.paused:
                break
            await asyncio.sleep(0.01)
        assert conn.paused and conn.buffered < HIGH_WATER + (1 << 20)
        got = 0
        while data := await raw.source.read():
            got += len(data)
            assert conn.buffered <= HIGH_WATER + (1 << 20)
        raw.source.release()
    assert got == len(big)


async def test_max_connections_queues_first_come_first_served():
    gate = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, srv: Raw) -> None:
        while True:
            data = await srv.request(r)
            if b"slow" in data:
                await gate.wait()
            w.write(response(OK))
            await w.drain()

    order: list[int] = []

    async def one(t: HttpToolsTransport, i: int, url: str) -> None:
        assert (await read_all(t, req(url, body=b'{"slow": %d}' % i)))[0] == 200
        order.append(i)

    async with Raw(handler) as srv, transport(max_connections=2) as t:
        tasks = [asyncio.create_task(one(t, 0, srv.url))]
        await asyncio.sleep(0.05)
        tasks += [asyncio.create_task(one(t, i, srv.url)) for i in range(1, 5)]
        await asyncio.sleep(0.1)
        assert srv.max_open == 2 and len(t._waiters) == 3 and not order
        gate.set()
        await asyncio.gather(*tasks)
        assert t._in_use == 0 and not t._waiters
    assert srv.max_open == 2 and order[:2] in ([0, 1], [1, 0]) and sorted(order) == [0, 1, 2, 3, 4]


async def test_cancelled_while_waiting_for_a_slot_or_headers_leaves_nothing_open():
    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.request(r)
        await r.read()  # until the client closes

    async with Raw(silent) as srv, transport(max_connections=1) as t:
        first = asyncio.create_task(t.open(req(srv.url)))
        second = asyncio.create_task(t.open(req(srv.url)))
        await asyncio.sleep(0.1)
        assert len(srv.requests) == 1 and len(t._waiters) == 1
        second.cancel()
        first.cancel()
        for task in (first, second):
            with pytest.raises(asyncio.CancelledError):
                await task
        assert t._in_use == 0 and not t._waiters and not any(t._idle.values())
        for _ in range(100):
            if srv.open == 0:
                break
            await asyncio.sleep(0.01)
        assert srv.open == 0  # the half-used connection was closed, not left behind


async def test_abort_wakes_a_pending_read():
    async def stalls(r: asyncio.StreamReader, w: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        await w.drain()
        await asyncio.sleep(10)

    async with Raw(stalls) as srv, transport() as t:
        raw = await t.open(req(srv.url))
        assert await raw.source.read() == b"abc"
        pending = asyncio.create_task(raw.source.read())
        await asyncio.sleep(0.05)
        raw.source.abort()
        raw.source.abort()  # twice is harmless
        with pytest.raises(ConnectionLost, match="aborted"):
            await pending
        assert t._in_use == 0


# --- construction ----------------------------------------------------------------------------------


def test_arguments_are_checked():
    with pytest.raises(UsageError, match="max_connections"):
        HttpToolsTransport(max_connections=0)
    with pytest.raises(UsageError, match="proxy"):
        HttpToolsTransport(proxy="ftp://x")
    with pytest.raises(UsageError, match="keepalive_timeout"):
        HttpToolsTransport(keepalive_timeout=-1)
    assert isinstance(gateway_transport(), HttpToolsTransport)


# --- uvloop ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", [
    test_chunked_body_is_read_and_the_connection_reused,
    test_connection_close_and_http_1_0_are_not_reused,
    test_a_connection_closed_while_idle_is_not_used,
    test_a_reused_connection_closed_before_answering_is_retried_once_on_a_new_one,
    test_no_retry_once_bytes_of_the_answer_arrived,
    test_reset_mid_body_fails_the_read_and_is_a_stream_error_above,
    test_connect_refused_is_one_line_naming_the_host,
    test_a_tls_handshake_that_never_finishes_is_a_connect_timeout,
    test_a_slow_reader_pauses_the_socket,
    test_max_connections_queues_first_come_first_served,
    test_cancelled_while_waiting_for_a_slot_or_headers_leaves_nothing_open,
    test_abort_wakes_a_pending_read,
], ids=lambda f: f.__name__.removeprefix("test_"))
def test_the_same_on_uvloop(scenario):
    """`dsk serve` runs on uvloop, whose transports are not asyncio.Transport subclasses."""
    import uvloop  # installed with the cli extra

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


async def test_the_gateway_sends_upstream_requests_over_it(emulator):
    from deepseek_kit.server.gateway.app import Gateway
    from tests.server.gateway.relay_helpers import config_for

    client = Gateway(config_for(emulator)).build_client()
    try:
        assert isinstance(client._transport, HttpToolsTransport)
        r = await client.chat.completions.create(model="deepseek-flash", messages=MSGS)
        assert r.choices[0].message.content
    finally:
        await client.close()
