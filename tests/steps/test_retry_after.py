"""Retry-After that is not a usable number (attack C1): NaN, infinities and negatives fall back to
the backoff, huge values are capped, and the call's total timeout always holds, on the default
event loop and on uvloop (where `asyncio.sleep(nan)` is a ValueError)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from deepseek_kit import AsyncClient, Client, RateLimitError, RetryPolicy, Timeout, UsageError
from deepseek_kit._steps.retry import retry_after_seconds

MSGS = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("headers, expected", [
    ({"Retry-After": "nan"}, None),
    ({"Retry-After": "NaN"}, None),
    ({"retry-after-ms": "nan"}, None),
    ({"retry-after-ms": "nan", "Retry-After": "2"}, 2.0),  # the usable one wins
    ({"Retry-After": "inf"}, None),
    ({"Retry-After": "-inf"}, None),
    ({"Retry-After": "-1"}, None),
    ({"retry-after-ms": "-5"}, None),
    ({"retry-after-ms": "1e400"}, None),
    ({"Retry-After": "1e9"}, 1e9),  # finite: capped by RetryPolicy.max_retry_after, not here
    ({"Retry-After": "garbage"}, None),
    ({"Retry-After": "Wed, 21 Oct 1970 07:28:00 GMT"}, 0.0),
    ({"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}, "huge"),  # finite: the policy caps it
    ({"Retry-After": "not, a date at all"}, None),
    ({"retry-after-ms": "1500"}, 1.5),
])
def test_retry_after_parser(headers, expected):
    got = retry_after_seconds(headers)
    if expected is None:
        assert got is None
    elif expected == "huge":
        assert got is not None and 1e9 < got < float("inf")
    else:
        assert got == pytest.approx(expected, abs=1e-6)


def test_policy_delay_is_always_finite_and_capped():
    from deepseek_kit import APIStatusError

    p = RetryPolicy(max_retry_after=7.0, initial_delay=0.1, max_delay=0.2)
    for value in ("nan", "inf", "-inf", "-1", "1e9", "1e400", "x"):
        exc = APIStatusError("slow down", status_code=429, headers={"Retry-After": value}, body=None)
        d = p.delay_for(exc, 0)
        assert 0.0 <= d <= 7.0, (value, d)
        if value != "1e9":
            assert d <= 0.2  # the backoff, not the header
    with pytest.raises(UsageError, match="max_delay"):
        RetryPolicy(max_delay=float("nan"))


@pytest.fixture
def hostile_429():
    """A server answering every request with 429 and the Retry-After headers the test sets."""
    headers: list[str] = []
    hits: list[float] = []
    srv = socket.create_server(("127.0.0.1", 0))
    srv.listen(64)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        # Keep-alive, like a real server: the client's pool then holds a connection timer, which is
        # what a NaN sleep used to wait for on the default loop.
        with conn:
            try:
                conn.settimeout(30)
                data = b""
                while not stop.is_set():
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        data += chunk
                    head_end = data.index(b"\r\n\r\n") + 4
                    length = 0
                    for line in data[:head_end].split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    while len(data) < head_end + length:
                        data += conn.recv(65536)
                    data = data[head_end + length:]
                    hits.append(time.monotonic())
                    body = b'{"error":{"message":"Rate limit reached","type":"rate_limit_error"}}'
                    extra = "".join(f"{h}\r\n" for h in headers).encode()
                    conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
                                 + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            except OSError:
                pass

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()

    class H:
        url = f"http://127.0.0.1:{srv.getsockname()[1]}"

        def set(self, *h: str) -> None:
            headers[:] = h

    h = H()
    h.hits = hits  # type: ignore[attr-defined]
    yield h
    stop.set()
    srv.close()


async def _call(url: str, total: float) -> tuple[BaseException | None, float]:
    async with AsyncClient(api_key="sk-x", base_url=url, timeout=Timeout(total=total),
                           retry=RetryPolicy(max_retries=10, initial_delay=0.05, max_delay=0.2)) as c:
        t0 = time.monotonic()
        try:
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
        except Exception as exc:  # the test checks the type
            return exc, time.monotonic() - t0
        return None, time.monotonic() - t0


@pytest.mark.parametrize("header", ["Retry-After: nan", "retry-after-ms: nan", "Retry-After: -inf",
                                    "Retry-After: 1e9", "retry-after-ms: -1"])
async def test_total_holds_whatever_retry_after_says(hostile_429, header):
    hostile_429.set(header)
    exc, took = await _call(hostile_429.url, 2.0)
    assert isinstance(exc, RateLimitError), exc
    assert took < 2.0 + 1.0
    if "1e9" not in header:  # unusable values: the backoff spaces the retries (not a burst)
        assert len(hostile_429.hits) <= 11


async def _default_policy_call(url: str) -> tuple[BaseException | None, float]:
    # The attack report's repro: default RetryPolicy, Timeout(total=...), a fresh event loop.
    async with AsyncClient(api_key="sk-x", base_url=url, timeout=Timeout(total=3)) as c:
        t0 = time.monotonic()
        try:
            await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
        except Exception as exc:  # the test checks the type
            return exc, time.monotonic() - t0
        return None, time.monotonic() - t0


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("header", ["Retry-After: nan", "retry-after-ms: nan"])
def test_nan_retry_after_on_a_fresh_loop(hostile_429, header, loop):
    import uvloop  # installed with the cli extra; `dsk` runs on it

    hostile_429.set(header)
    factory = uvloop.new_event_loop if loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        exc, took = runner.run(_default_policy_call(hostile_429.url))
    assert isinstance(exc, RateLimitError), exc  # not a ValueError from sleep(nan) on uvloop
    assert took < 3 + 1.0  # the default loop used to sleep until an unrelated timer: 30 s and more


def test_nan_retry_after_sync_client(hostile_429):
    hostile_429.set("Retry-After: nan")
    with Client(api_key="sk-x", base_url=hostile_429.url, timeout=Timeout(total=2),
                retry=RetryPolicy(max_retries=10, initial_delay=0.05, max_delay=0.2)) as c:
        t0 = time.monotonic()
        with pytest.raises(RateLimitError):
            c.chat.completions.create(model="deepseek-flash", messages=MSGS)
        assert time.monotonic() - t0 < 3.0
