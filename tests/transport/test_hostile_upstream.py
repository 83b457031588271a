"""The client against small hostile upstreams of our own (raw asyncio servers on 127.0.0.1): deep
nesting, bodies that are not answers, oversized bodies and events, leaking chained exceptions.
Findings (docs/attack-round-2026-12.md) C2, C3, C4, C6,
S1, and the attacks of the December round on the client."""

from __future__ import annotations

import asyncio
import gzip
import time
import traceback
import zlib
from collections.abc import Awaitable, Callable

import pytest

from deepseek_kit import (
    APIConnectionError,
    APIStatusError,
    AsyncClient,
    BadRequestError,
    Client,
    DeepSeekError,
    Endpoint,
    Resumption,
    RetryPolicy,
    Routing,
    StreamError,
    Timeout,
)
from deepseek_kit._transport.fast import HttpToolsTransport
from tests.helpers.servers import ThreadedServer

KEY = "sk-SECRET-canary-123456"
MSGS = [{"role": "user", "content": "hi"}]
DEEP = b"[" * 5000 + b"]" * 5000
OK = (b'{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
      b'"message":{"role":"assistant","content":"fine"},"finish_reason":"stop"}],'
      b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}')

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


class Hostile(ThreadedServer):
    """A raw HTTP/1.1 server: reads a request (head and Content-Length body), hands it to
    `handler(request_bytes, writer)`, then closes."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length) if length else b""
        self.requests.append(head + body)
        await self.handler(head + body, writer)
        await writer.drain()


# Which transport `client()` gives the client: every test runs over both (the default aiohttp
# one, and the gateway's HttpToolsTransport).
TRANSPORT = ["aiohttp"]


@pytest.fixture(params=["aiohttp", "httptools"])
def hostile(request):
    TRANSPORT[0] = request.param
    started: list[Hostile] = []

    def make(handler: Handler) -> Hostile:
        h = Hostile(handler).start()
        started.append(h)
        return h

    yield make
    for h in started:
        h.stop()


def reply(body: bytes, status: str = "200 OK", ctype: bytes = b"application/json",
          extra: bytes = b"") -> Handler:
    async def handler(req: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: " + ctype + b"\r\n" + extra
                + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    return handler


def sse(*events: bytes, tail: bytes = b"") -> Handler:
    async def handler(req: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                + b"".join(b"data: " + e + b"\n\n" for e in events) + tail)
    return handler


def client(url: str, **kw) -> AsyncClient:
    kw.setdefault("max_retries", 0)
    kw.setdefault("timeout", Timeout(total=20))
    if TRANSPORT[0] == "httptools":
        kw.setdefault("transport", HttpToolsTransport())
    return AsyncClient(api_key=KEY, base_url=url, **kw)


# --- C2: one decode guard ------------------------------------------------------------------------


@pytest.mark.parametrize("body", [DEEP, b'{"x":' + DEEP + b"}", b'{"choices":' + DEEP + b"}",
                                  b'{"choices":[{"message":{"content":"a","tool_calls":' + DEEP + b"}}]}"])
async def test_deeply_nested_200_is_a_connection_error(hostile, body):
    h = hostile(reply(body))
    async with client(h.url) as c:
        with pytest.raises(APIConnectionError, match="malformed body"):
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS)


async def test_deeply_nested_200_is_retried(hostile):
    h = hostile(reply(DEEP))
    async with client(
        h.url, max_retries=None, retry=RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.02)
    ) as c:
        with pytest.raises(APIConnectionError) as ei:
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
    assert ei.value.attempts == 3 and len(h.requests) == 3


async def test_deeply_nested_error_body_is_a_status_error(hostile):
    h = hostile(reply(b'{"error":' + DEEP + b"}", status="400 Bad Request"))
    async with client(h.url) as c:
        with pytest.raises(BadRequestError):
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS)


@pytest.mark.parametrize("events", [(b'{"choices":' + DEEP + b"}",),
                                    (b'{"choices":[{"index":0,"delta":{"content":"a"}}]}',
                                     b'{"choices":' + DEEP + b"}")])
async def test_deeply_nested_stream_event_is_a_stream_error(hostile, events):
    h = hostile(sse(*events))
    async with client(h.url, resumption=Resumption(enabled=False)) as c:
        with pytest.raises(StreamError, match="Malformed stream event"):
            stream = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True)
            async for _ in stream:
                pass


async def test_deeply_nested_error_event_is_a_stream_error(hostile):
    h = hostile(sse(b'{"choices":[{"index":0,"delta":{"content":"a"}}]}', b'{"error":' + DEEP + b"}"))
    async with client(h.url, resumption=Resumption(enabled=False)) as c:
        with pytest.raises(StreamError):
            stream = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True)
            async for _ in stream:
                pass


@pytest.mark.parametrize("path,call", [
    ("/models", lambda c: c.models.list()),
    ("/user/balance", lambda c: c.user.balance()),
    ("/beta/completions", lambda c: c.beta.completions.create(model="deepseek-flash", prompt="p")),
])
async def test_deeply_nested_other_endpoints(hostile, path, call):
    h = hostile(reply(b'{"data":' + DEEP + b"}"))
    async with client(h.url) as c:
        with pytest.raises(APIConnectionError):
            await call(c)


def test_deeply_nested_sync_client(hostile):
    h = hostile(reply(DEEP))
    with Client(api_key=KEY, base_url=h.url, max_retries=0) as c, pytest.raises(APIConnectionError):
        c.chat.completions.create(model="deepseek-flash", messages=MSGS)


async def test_deeply_nested_answer_fails_over(hostile):
    bad = hostile(reply(DEEP))
    good = hostile(reply(OK))
    eps = [
        Endpoint(bad.url, name="bad", api_key="k1"),
        Endpoint(good.url, name="good", api_key="k2", priority=1),
    ]
    fast = {"transport": HttpToolsTransport()} if TRANSPORT[0] == "httptools" else {}
    async with AsyncClient(endpoints=eps, routing=Routing(strategy="priority"), max_retries=0, **fast) as c:
        resp = await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
    assert resp.choices[0].message.content == "fine"
    assert len(bad.requests) == 1 and len(good.requests) == 1


# --- C4: completions without choices --------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"choices": []}',
        b"{}",
        b'{"id":"x","object":"chat.completion","pad":"aaaa"}',
        b'{"choices": 5}',
        b"[]",
        b"5",
        b'"text"',
    ],
)
async def test_completion_without_choices_is_malformed(hostile, body):
    h = hostile(reply(body))
    async with client(h.url) as c:
        with pytest.raises(APIConnectionError, match="malformed body"):
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS)


async def test_200_error_envelope_stays_a_status_error(hostile):
    h = hostile(reply(b'{"error":{"message":"nope","type":"invalid_request_error"}}'))
    async with client(h.url) as c:
        with pytest.raises(BadRequestError, match="nope"):
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS)


def test_dsk_ask_no_stream_errors_on_empty_choices(hostile, tmp_path):
    import os
    import subprocess
    import sys

    h = hostile(reply(b'{"choices": []}'))
    env = {**os.environ, "DSK_HOME": str(tmp_path), "DEEPSEEK_API_KEY": KEY}
    out = subprocess.run([sys.executable, "-m", "deepseek_kit.cli.main", "ask", "--no-stream",
                          "--max-retries", "0", "--base-url", h.url, "hi"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0
    assert out.stderr.startswith("dsk: error:") and "malformed" in out.stderr
    assert KEY not in out.stderr + out.stdout


# --- C3: body cap ------------------------------------------------------------------------------------


def _big(n: int, chunked: bool, encoding: bytes | None = None) -> Handler:
    async def handler(req: bytes, w: asyncio.StreamWriter) -> None:
        blk = b"a" * (1 << 16)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        if encoding is not None:
            comp = zlib.compressobj(9, zlib.DEFLATED, 31 if encoding == b"gzip" else 15)
            data = comp.compress(b'{"x":"') + b"".join(comp.compress(blk) for _ in range(n // len(blk)))
            data += comp.flush()
            w.write(
                head + b"Content-Encoding: " + encoding + b"\r\nContent-Length: %d\r\n\r\n" % len(data) + data
            )
            return
        if chunked:
            w.write(head + b"Transfer-Encoding: chunked\r\n\r\n")
            w.write(b"6\r\n{\"x\":\"\r\n")
            for _ in range(n // len(blk)):
                w.write(b"%x\r\n" % len(blk) + blk + b"\r\n")
                await w.drain()
            w.write(b"0\r\n\r\n")
        else:
            w.write(head + b"Content-Length: %d\r\n\r\n" % (n + 6) + b'{"x":"')
            for _ in range(n // len(blk)):
                w.write(blk)
                await w.drain()
    return handler


@pytest.mark.parametrize("chunked,encoding", [(False, None), (True, None), (False, b"gzip"),
                                              (False, b"deflate")])
async def test_body_over_the_cap_is_a_connection_error(hostile, chunked, encoding):
    h = hostile(_big(8 << 20, chunked, encoding))
    async with client(h.url, max_response_bytes=1 << 20) as c:
        t = time.monotonic()
        with pytest.raises(APIConnectionError, match="max_response_bytes"):
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
    assert time.monotonic() - t < 20


async def test_body_under_the_cap_is_read(hostile):
    body = OK[:-1] + b',"pad":"' + b"a" * 500_000 + b'"}'
    h = hostile(reply(gzip.compress(body), extra=b"Content-Encoding: gzip\r\n"))
    async with client(h.url, max_response_bytes=1 << 20) as c:
        resp = await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
    assert resp.choices[0].message.content == "fine"


# --- C6: SSE events without end --------------------------------------------------------------------


def _endless_line(n: int) -> Handler:
    async def handler(req: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
        w.write(b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n')
        w.write(b'data: {"x":"')
        blk = b"a" * (1 << 16)
        for _ in range(n // len(blk)):
            w.write(blk)
            await w.drain()
        await asyncio.sleep(30)
    return handler


async def test_endless_sse_line_stops_at_the_event_cap(hostile):
    h = hostile(_endless_line(8 << 20))
    async with client(h.url, max_event_bytes=1 << 20, resumption=Resumption(enabled=False)) as c:
        t = time.monotonic()
        stream = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True)
        with pytest.raises(StreamError, match="grew past"):
            async for _ in stream:
                pass
        assert time.monotonic() - t < 20


# --- S1: no request headers in chained exceptions ---------------------------------------------------


async def _chunked_garbage(req: bytes, w: asyncio.StreamWriter) -> None:
    w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")


async def _huge_header(req: bytes, w: asyncio.StreamWriter) -> None:
    w.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 20000 + b"\r\nContent-Length: 2\r\n\r\n{}")


async def _many_headers(req: bytes, w: asyncio.StreamWriter) -> None:
    w.write(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(500))
            + b"Content-Length: 2\r\n\r\n{}")


def _chain_text(e: BaseException) -> str:
    parts = ["".join(traceback.format_exception(e))]
    seen: set[int] = set()
    x: BaseException | None = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        parts += [repr(x), str(x), repr(x.__cause__), repr(x.__context__), repr(getattr(x, "args", ()))]
        x = x.__cause__ or x.__context__
    return "\n".join(parts)


@pytest.mark.parametrize("handler", [_chunked_garbage, _huge_header, _many_headers])
@pytest.mark.parametrize("stream", [False, True])
async def test_chained_exceptions_hold_no_key(hostile, handler, stream):
    h = hostile(handler)
    async with client(h.url, resumption=Resumption(enabled=False)) as c:
        with pytest.raises(DeepSeekError) as ei:
            r = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=stream)
            async for _ in r:
                pass
    assert isinstance(ei.value, (APIConnectionError, APIStatusError, StreamError))
    assert KEY not in _chain_text(ei.value)


# --- second round: usage a server makes up -----------------------------------------------------------

USAGE = (b'{"id":"x","object":"chat.completion","created":1,"model":"deepseek-flash","choices":[{"index":0,'
         b'"message":{"role":"assistant","content":"fine"},"finish_reason":"stop"}],'
         b'"usage":{"prompt_tokens":%d,"completion_tokens":1,"total_tokens":%d,"prompt_cache_hit_tokens":%d}}')


async def test_negative_usage_neither_refills_a_tpm_limit_nor_goes_negative(hostile):
    from deepseek_kit import Limits, QueueTimeoutError

    h = hostile(reply(USAGE % (-10**9, -10**9 + 1, -5)))
    async with client(h.url, limits=Limits(tpm=2000, max_queue_wait=0.2)) as c:
        ok = 0
        with pytest.raises(QueueTimeoutError):
            for _ in range(20):  # each call is estimated at ~510 tokens: 20 would be 5x the tpm
                resp = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, max_tokens=500)
                ok += 1
                u = resp.usage
                assert u is not None and u.prompt_tokens == 0 and u.total_tokens == 0
                assert u.prompt_cache_hit_tokens == 0
        assert 1 <= ok < 10


async def test_huge_usage_does_not_lock_a_tpm_limit(hostile):
    from deepseek_kit import Limits

    h = hostile(reply(USAGE % (10**12, 10**12 + 1, 0)))
    async with client(h.url, limits=Limits(tpm=2000, max_queue_wait=5)) as c:
        for _ in range(2):  # the second waits for its turn (~1 s), not for 10**12 tokens
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS, max_tokens=10)


async def test_negative_usage_in_a_stream_is_zero(hostile):
    h = hostile(sse(b'{"choices":[{"index":0,"delta":{"content":"a"}}]}',
                    b'{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
                    b'"usage":{"prompt_tokens":-7,"completion_tokens":-1,"total_tokens":-8,'
                    b'"completion_tokens_details":{"reasoning_tokens":-3}}}', b"[DONE]"))
    async with client(h.url) as c:
        stream = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True)
        async for _ in stream:
            pass
    u = stream.get_final_completion().usage
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens, u.reasoning_tokens) == (0, 0, 0, 0)


# --- second round: response headers with invalid UTF-8 --------------------------------------------------


@pytest.mark.parametrize("status,body", [("500 Internal Server Error", b"{}"), ("200 OK", OK)])
async def test_invalid_utf8_header_is_replaced_and_logged(hostile, tmp_path, status, body):
    import sqlite3

    from deepseek_kit import LogConfig

    async def handler(req: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: application/json\r\n"
                b"x-ds-trace-id: \xff\xfe\xc3(\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    h = hostile(handler)
    db = tmp_path / "logs.sqlite3"
    async with client(h.url, logs=LogConfig(path=db)) as c:
        try:
            resp = await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
            trace = None
            assert resp.choices
        except APIStatusError as e:
            trace = e.trace_id
            assert "\ufffd" in str(e)
            str(e).encode("utf-8")  # printable, storable: no lone surrogates
        if trace is not None:
            assert trace.startswith("\ufffd")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 1
