"""Every fault directive of the emulator, observed at the raw HTTP level with aiohttp."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
import pytest

from deepseek_kit._wire.sse import SSEDecoder
from deepseek_kit.server import EmulatorConfig, EmulatorThread
from tests.helpers.servers import serve_app

AUTH = {"Authorization": "Bearer sk-test-abcd"}
BODY = {
    "model": "deepseek-flash",
    "messages": [{"role": "user", "content": "Hi"}],
    "thinking": {"type": "disabled"},
}
SBODY = {**BODY, "stream": True}


def fault(spec: str) -> dict[str, str]:
    return {**AUTH, "X-DSK-Emulate": f"{spec};key={uuid.uuid4().hex[:8]}"}


async def post(url, body=BODY, headers=AUTH, path="/chat/completions"):
    async with aiohttp.ClientSession() as s, s.post(url + path, json=body, headers=headers) as r:
        return r.status, r.headers, await r.read()


async def wait_for(predicate, what: str):
    """Poll emulator state (set on its own thread) until `predicate()`; bounded by the test timeout."""
    for _ in range(400):
        if predicate():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"never happened: {what}")


# -- status faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "etype"),
    [
        (429, "Rate Limit Reached", "rate_limit_error"),
        (500, "Server Error", "server_error"),
        (502, "Bad Gateway", "server_error"),
        (503, "Server Overloaded", "server_error"),
        (504, "Gateway Timeout", "server_error"),
        (401, "Authentication Fails (no such user)", "authentication_error"),
        (402, "Insufficient Balance", "unknown_error"),
    ],
)
async def test_status_directive(emulator, status, message, etype):
    got, headers, body = await post(emulator.base_url, headers=fault(f"status={status}"))
    assert got == status
    assert json.loads(body) == {"error": {"message": message, "type": etype, "param": None,
                                          "code": "invalid_request_error"}}
    assert "Retry-After" not in headers and "retry-after-ms" not in headers
    assert headers["Server"] == "openresty" and len(headers["x-ds-trace-id"]) == 32


async def test_retry_after_headers_only_when_asked(emulator):
    _, headers, _ = await post(
        emulator.base_url, headers=fault("status=429;retry_after=2;retry_after_ms=1500")
    )
    assert headers["Retry-After"] == "2" and headers["retry-after-ms"] == "1500"


async def test_html_error_page(emulator):
    status, headers, body = await post(emulator.base_url, headers=fault("status=502;html"))
    assert status == 502 and headers["Content-Type"].startswith("text/html")
    assert b"<center>openresty</center>" in body and b"502 Bad Gateway" in body


async def test_status_applies_to_every_endpoint(emulator):
    async with aiohttp.ClientSession() as s:
        for path in ("/models", "/user/balance"):
            async with s.get(emulator.base_url + path, headers=fault("status=503")) as r:
                assert r.status == 503


async def test_times_fails_first_n_then_succeeds(emulator):
    headers = fault("status=503;times=2")
    statuses = [(await post(emulator.base_url, headers=headers))[0] for _ in range(4)]
    assert statuses == [503, 503, 200, 200]
    assert emulator.state.requests_per_emulate[headers["X-DSK-Emulate"]] == 4
    # another string has its own count
    other = fault("status=500;times=1")
    assert [(await post(emulator.base_url, headers=other))[0] for _ in range(2)] == [500, 200]


async def test_server_wide_faults_and_header_override(emulator_factory):
    emu = emulator_factory(faults="status=503;times=1")
    assert (await post(emu.base_url))[0] == 503
    assert (await post(emu.base_url))[0] == 200
    emu = emulator_factory(faults="status=503")
    assert (await post(emu.base_url, headers=fault("status=500")))[0] == 500
    assert (await post(emu.base_url))[0] == 503


async def test_unknown_or_bad_directive_is_400(emulator):
    status, _, body = await post(emulator.base_url, headers={**AUTH, "X-DSK-Emulate": "explode"})
    assert status == 400 and "unknown directive 'explode'" in json.loads(body)["error"]["message"]
    status, _, body = await post(emulator.base_url, headers={**AUTH, "X-DSK-Emulate": "status=abc"})
    assert status == 400 and "bad value 'abc' for 'status'" in json.loads(body)["error"]["message"]
    status, _, _ = await post(emulator.base_url, headers={**AUTH, "X-DSK-Emulate": "finish=done"})
    assert status == 400


# -- bodies ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("directive", "expected"), [("empty_body", b""), ("blank_body", b"\n\n\n")])
async def test_empty_and_blank_body(emulator, directive, expected):
    status, headers, body = await post(emulator.base_url, headers=fault(directive))
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert body == expected


async def test_empty_body_stream(emulator):
    status, headers, body = await post(emulator.base_url, SBODY, headers=fault("empty_body"))
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream") and body == b""


# -- delays and queues -------------------------------------------------------------------------------------


async def test_delay_headers(emulator):
    t0 = time.monotonic()
    status, _, _ = await post(emulator.base_url, headers=fault("delay_headers=0.3"))
    assert status == 200 and time.monotonic() - t0 >= 0.29


@pytest.mark.parametrize("name", ["stall_first_token", "queue"])
async def test_stall_stream_sends_keepalive_comments(emulator, name):
    _, _, raw = await post(emulator.base_url, SBODY, headers=fault(f"{name}=0.35;keepalive=0.1"))
    head, _, _rest = raw.partition(b"data: ")
    assert head.count(b": keep-alive\n\n") >= 2 and head.replace(b": keep-alive\n\n", b"") == b""
    dec = SSEDecoder()
    assert dec.feed_events(raw)[-1].data == b"[DONE]" and dec.comments >= 2


async def test_stall_non_stream_sends_blank_lines(emulator):
    status, headers, raw = await post(
        emulator.base_url, headers=fault("stall_first_token=0.35;keepalive=0.1")
    )
    assert status == 200 and "Content-Length" not in headers
    assert raw.startswith(b"\n\n") and raw.lstrip(b"\n").startswith(b"{")
    assert json.loads(raw)["object"] == "chat.completion"


async def test_server_queue_delay(emulator_factory):
    emu = emulator_factory(queue_delay=0.25, keepalive_interval=0.1)
    _, _, raw = await post(emu.base_url, SBODY)
    assert raw.startswith(b": keep-alive\n\n")


async def test_queue_timeout_closes_without_answer(emulator_factory):
    emu = emulator_factory(queue_timeout=0.3, keepalive_interval=0.1)
    async with aiohttp.ClientSession() as s, \
            s.post(emu.base_url + "/chat/completions", json=SBODY, headers=fault("queue=5")) as r:
        raw = b""
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in r.content.iter_any():
                raw += chunk
    assert b"data:" not in raw and raw.startswith(b": keep-alive")


async def test_delay_chunks(emulator):
    t0 = time.monotonic()
    _, _, raw = await post(emulator.base_url, SBODY, headers=fault("delay_chunks=0.05;tokens=4"))
    assert time.monotonic() - t0 >= 0.05 * 6 * 0.9  # 6 events after the first, then [DONE]
    assert raw.endswith(b"data: [DONE]\n\n")


# -- connection faults ---------------------------------------------------------------------------------------


async def test_reset_before_headers(emulator):
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(emulator.base_url, headers=fault("reset_before_headers"))
    assert emulator.state.total_requests == 1
    await wait_for(lambda: emulator.state.statuses == {0: 1}, "counted as dropped")


async def test_reset_after_n_events(emulator):
    got: list[bytes] = []
    dec = SSEDecoder()
    async with aiohttp.ClientSession() as s, \
            s.post(emulator.base_url + "/chat/completions", json=SBODY, headers=fault("reset_after=3")) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in r.content.iter_any():
                got += [e.data for e in dec.feed_events(chunk)]
    assert len(got) == 3 and b"[DONE]" not in got
    assert json.loads(got[0])["choices"][0]["delta"]["role"] == "assistant"


async def test_reset_after_non_stream_cuts_body(emulator):
    async with aiohttp.ClientSession() as s, \
            s.post(emulator.base_url + "/chat/completions", json=BODY, headers=fault("reset_after=1")) as r:
        assert r.status == 200 and r.content_length
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()


async def test_error_event_after(emulator):
    _, _, raw = await post(emulator.base_url, SBODY, headers=fault("error_event_after=2"))
    events = [json.loads(e.data) for e in SSEDecoder().feed_events(raw)]
    assert len(events) == 3 and b"[DONE]" not in raw
    assert events[2] == {"error": {"message": "Internal Server Error", "type": "server_error", "param": None,
                                   "code": "server_error"}}


@pytest.mark.parametrize("streaming", [True, False])
async def test_insufficient_after(emulator, streaming):
    body = SBODY if streaming else BODY
    _, _, raw = await post(emulator.base_url, body, headers=fault("insufficient_after=3"))
    if streaming:
        events = [json.loads(e.data) for e in SSEDecoder().feed_events(raw)[:-1]]
        content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
        last = events[-1]
        assert len(events) == 1 + 3 + 1 and raw.endswith(b"data: [DONE]\n\n")
    else:
        last = json.loads(raw)
        content = last["choices"][0]["message"]["content"]
    assert last["choices"][0]["finish_reason"] == "insufficient_system_resource"
    assert last["usage"]["completion_tokens"] == 3 and content


async def test_keepalive_forever_then_client_disconnects(emulator):
    dec = SSEDecoder()
    finished = False
    async with aiohttp.ClientSession() as s, s.post(
            emulator.base_url + "/chat/completions", json=SBODY,
            headers=fault("keepalive_forever;keepalive=0.05;tokens=2")) as r:
        async for chunk in r.content.iter_any():
            for e in dec.feed_events(chunk):
                assert e.data != b"[DONE]"
                if json.loads(e.data)["choices"][0]["finish_reason"]:
                    finished = True
                    after = dec.comments
            if finished and dec.comments >= after + 3:
                break
    assert finished
    await wait_for(lambda: emulator.state.disconnects == 1, "disconnect counted")
    await wait_for(lambda: emulator.state.in_flight == 0, "handler finished")


async def test_client_disconnect_during_stall_stops_handler(emulator):
    async with aiohttp.ClientSession() as s:
        with pytest.raises(asyncio.TimeoutError):
            async with s.post(emulator.base_url + "/chat/completions", json=BODY,
                              headers=fault("delay_headers=30"), timeout=aiohttp.ClientTimeout(total=0.2)):
                pass
    await wait_for(lambda: emulator.state.disconnects == 1, "disconnect counted")
    await wait_for(lambda: emulator.state.in_flight == 0, "handler finished")


async def test_shutdown_does_not_hang_on_open_streams():
    emu = EmulatorThread(EmulatorConfig()).start()
    async with aiohttp.ClientSession() as s:
        forever = s.post(emu.base_url + "/chat/completions", json=SBODY,
                         headers=fault("keepalive_forever;keepalive=0.05"))
        stalled = s.post(emu.base_url + "/chat/completions", json=BODY, headers=fault("delay_headers=3600"))
        r = await forever
        await r.content.readline()
        task = asyncio.ensure_future(stalled)
        await wait_for(lambda: emu.state.in_flight == 2, "both requests in flight")
        # a hang here would outlast the test timeout (the delay is an hour)
        await asyncio.get_running_loop().run_in_executor(None, emu.stop)
        with pytest.raises(aiohttp.ClientError):
            await task
        r.close()
    assert emu.state.in_flight == 0


async def test_counters(emulator):
    hdr = fault("status=500;times=1")
    for _ in range(3):
        await post(emulator.base_url, headers=hdr)
    snap = emulator.state.snapshot()
    assert snap["total_requests"] == 3 and snap["statuses"] == {500: 1, 200: 2}
    assert snap["requests_per_emulate"] == {hdr["X-DSK-Emulate"]: 3}
    assert snap["max_in_flight"] == 1 and snap["in_flight"] == 0
    assert emulator.state.recent_bodies[-1] == BODY


async def test_disconnect_detected_without_handler_cancellation():
    """A foreign runner (aiohttp's default: handlers are not cancelled on disconnect) still stops
    a stalled handler promptly: the emulator polls the connection while it waits."""
    from deepseek_kit.server import STATE_KEY, create_emulator_app

    app = create_emulator_app()
    state = app[STATE_KEY]
    async with serve_app(app, handler_cancellation=False) as url:
        async with aiohttp.ClientSession() as s:
            with pytest.raises(asyncio.TimeoutError):
                async with s.post(f"{url}/chat/completions", json=SBODY,
                                  headers=fault("queue=3600;keepalive=1000"),
                                  timeout=aiohttp.ClientTimeout(total=0.3)) as r:
                    await r.read()
        await wait_for(lambda: state.disconnects == 1 and state.in_flight == 0, "stalled handler ended")


def test_bad_server_faults_rejected_at_config_time():
    with pytest.raises(ValueError, match="unknown directive 'bogus'"):
        EmulatorConfig(faults="bogus=1")
