"""The emulator under hostile or careless input (docs/attack-round-2026-12.md,
E1-E10; docs/emulator.md#nothing-it-makes-passes-for-deepseek markers).

Every test talks to a real emulator on 127.0.0.1 (raw aiohttp requests or raw sockets) and
asserts DeepSeek-shaped answers, bounded state and quiet logs.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import socket
import uuid

import aiohttp
import pytest

from deepseek_kit._version import __version__
from deepseek_kit._wire.types import EMULATOR_FINGERPRINT_PREFIX, EMULATOR_HEADER
from deepseek_kit.server import EmulatorConfig, EmulatorThread
from deepseek_kit.server.emulator.config import EmulatorConfigError

AUTH = {"Authorization": "Bearer sk-test-abcd"}
MSGS = [{"role": "user", "content": "Hi"}]
BODY = {"model": "deepseek-flash", "messages": MSGS, "thinking": {"type": "disabled"}}
MARK = f"deepseek-kit/{__version__}"
PARSE = "Failed to parse the request body as JSON: "


async def post(url: str, body: object = BODY, headers: dict[str, str] | None = None,
               path: str = "/chat/completions", raw: bytes | None = None, timeout: float = 60):
    data = raw if raw is not None else json.dumps(body).encode()
    # A file-like body: aiohttp warns (ResourceWarning) about bytes bodies over 1 MiB, which the
    # hostile tests send on purpose.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s, \
            s.post(url + path, data=io.BytesIO(data), headers={**AUTH, **(headers or {})}) as r:
        return r.status, r.headers, await r.read()


def error_of(status: int, body: bytes, expected: int = 400) -> str:
    assert status == expected, body[:300]
    got = json.loads(body)
    assert set(got["error"]) == {"message", "type", "param", "code"}
    return str(got["error"]["message"])


@pytest.fixture
def no_tracebacks(caplog):
    """Fails the test when anything (the emulator, aiohttp) logged a traceback."""
    caplog.set_level(logging.DEBUG - 1, logger="nothing")  # capture the default levels everywhere
    yield
    bad = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not bad, [r.getMessage() for r in bad]


# -- docs/emulator.md#nothing-it-makes-passes-for-deepseek: nothing the
# emulator made passes for DeepSeek -------------------------------------


async def test_every_response_is_marked(emulator):
    url = emulator.base_url
    chat = {**BODY, "messages": [{"role": "user", "content": "mark"}]}
    async with aiohttp.ClientSession() as s:
        cases = [
            s.post(url + "/chat/completions", json=chat, headers=AUTH),
            s.post(url + "/chat/completions", json={**chat, "stream": True}, headers=AUTH),
            s.post(url + "/beta/completions", json={"model": "deepseek-flash", "prompt": "def f("},
                   headers=AUTH),
            s.get(url + "/models", headers=AUTH),
            s.get(url + "/user/balance", headers=AUTH),
            s.get(url + "/nope"),  # 401 before the route
            s.get(url + "/nope", headers=AUTH),  # 404
            s.post(url + "/chat/completions", data=b"{", headers=AUTH),  # 400 parse error
            s.post(url + "/chat/completions", json=chat, headers={**AUTH, "X-DSK-Emulate": "status=503"}),
            s.post(url + "/chat/completions", json=chat,
                   headers={**AUTH, "X-DSK-Emulate": "status=502;html"}),
            s.post(url + "/chat/completions", json=chat, headers={**AUTH, "X-DSK-Emulate": "bogus"}),
        ]
        statuses = []
        for req in cases:
            async with req as r:
                text = await r.read()
                statuses.append(r.status)
                assert r.headers.get(EMULATOR_HEADER) == MARK, (r.status, r.url)
                if r.status == 200 and r.url.path.endswith("completions"):
                    if r.headers["Content-Type"].startswith("text/event-stream"):
                        first = text.split(b"\n\n")[0].removeprefix(b"data: ")
                        fp = json.loads(first)["system_fingerprint"]
                    else:
                        fp = json.loads(text)["system_fingerprint"]
                    assert fp.startswith(EMULATOR_FINGERPRINT_PREFIX + "_"), fp
    assert statuses == [200, 200, 200, 200, 200, 401, 404, 400, 503, 502, 400]


# -- E1: tool schemas that ask for huge arguments ----------------------------------------------------


def _tool(params: object) -> dict[str, object]:
    return {**BODY, "tools": [{"type": "function", "function": {"name": "f", "parameters": params}}]}


@pytest.mark.parametrize("params", [
    {"type": "string", "minLength": 1_000_000_000},
    {"type": "array", "minItems": 100_000_000},
    {"type": "object",
     "properties": {"a": {"type": "array", "minItems": 50_000, "items": {"const": "x" * 100}}},
     "required": ["a"]},
    {"type": "object", "properties": {f"p{i}": {"type": "string", "minLength": 60} for i in range(5000)},
     "required": [f"p{i}" for i in range(5000)]},
])
@pytest.mark.parametrize("path", ["/chat/completions", "/beta/chat/completions"])
async def test_huge_tool_arguments_are_a_400_not_a_freeze(emulator, no_tracebacks, params, path):
    status, _, body = await post(emulator.base_url, _tool(params), path=path, timeout=30)
    msg = error_of(status, body)
    assert msg.startswith("Invalid schema for function 'f': ") and "max_tool_argument_chars" in msg
    status, _, _ = await post(emulator.base_url, timeout=10)  # the server is still answering
    assert status == 200


async def test_tool_arguments_within_the_limit_still_work(emulator):
    params = {"type": "object", "properties": {"s": {"type": "string", "minLength": 2000}}, "required": ["s"]}
    status, _, body = await post(emulator.base_url, _tool(params))
    assert status == 200
    args = json.loads(json.loads(body)["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    assert len(args["s"]) >= 2000


def test_tool_argument_limit_is_a_setting(emulator_factory):
    emu = emulator_factory(max_tool_argument_chars=100)
    params = {"type": "object", "properties": {"s": {"type": "string", "minLength": 200}}, "required": ["s"]}
    status, _, body = asyncio.run(post(emu.base_url, _tool(params)))
    assert "limit of 100 characters" in error_of(status, body)


# -- E2: answer-length directives above the max output -------------------------------------------------


@pytest.mark.parametrize("directive", ["tokens=393217", "tokens=10000000", "reasoning_tokens=10000000",
                                       "chunk_tokens=1000000"])
async def test_answer_length_directives_are_capped(emulator, directive):
    status, _, body = await post(emulator.base_url, headers={"X-DSK-Emulate": directive}, timeout=10)
    name, value = directive.split("=")
    assert error_of(status, body) == f"X-DSK-Emulate: bad value {value!r} for {name!r}"


# -- E3: deep nesting, odd schemas, bad encodings: DeepSeek-shaped 400s, no traceback ----------------


async def test_deep_nesting_is_serde_recursion_limit(emulator, no_tracebacks):
    url = emulator.base_url
    status, _, body = await post(url, raw=b"[" * 100_000 + b"]" * 100_000)
    assert error_of(status, body) == PARSE + "recursion limit exceeded at line 1 column 128"
    deep = "[" * 5000 + "]" * 5000
    for raw in (
        '{"model":"deepseek-flash","x":' + deep + ',"messages":[{"role":"user","content":"hi"}]}',
        '{"model":"deepseek-flash","messages":[{"role":"user","content":"hi","extra":' + deep + "}]}",
    ):
        status, _, body = await post(url, raw=raw.encode())
        msg = error_of(status, body)
        assert msg.startswith(PARSE + "recursion limit exceeded at line 1 column "), msg


async def test_json_mode_with_a_deeply_nested_example(emulator, no_tracebacks):
    for depth in (900, 5000):
        example = '{"a":' * depth + "1" + "}" * depth
        body = {**BODY, "response_format": {"type": "json_object"},
                "messages": [{"role": "user", "content": "answer in json like " + example}]}
        status, _, text = await post(emulator.base_url, body)
        assert status == 200, text[:300]
        json.loads(json.loads(text)["choices"][0]["message"]["content"])


@pytest.mark.parametrize(("params", "why"), [
    ({"type": "object", "properties": 5}, "'properties' must be an object"),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": 5},
     "'required' must be an array"),
    ({"allOf": [{"properties": [1]}]}, "'properties' must be an object"),
])
async def test_malformed_tool_schema_is_a_400(emulator, no_tracebacks, params, why):
    status, _, body = await post(emulator.base_url, _tool(params))
    msg = error_of(status, body)
    assert msg.startswith("Invalid schema for function 'f': ") and why in msg


async def test_bad_content_encoding_is_a_400(emulator, no_tracebacks):
    status, _, body = await post(emulator.base_url, headers={"Content-Encoding": "gzip"})
    assert "Failed to read the request body" in error_of(status, body)
    status, _, body = await post(emulator.base_url, headers={"Content-Encoding": "zstd-nope"})
    assert "Unsupported Content-Encoding" in error_of(status, body)
    status, _, body = await post(emulator.base_url, raw=gzip.compress(json.dumps(BODY).encode()),
                                 headers={"Content-Encoding": "gzip"})
    assert status == 200, body  # a well-formed gzip body is fine


# -- E4: per-request maps stay bounded -------------------------------------------------------------


async def test_unique_paths_directives_and_keys_keep_the_maps_bounded(emulator_factory):
    emu = emulator_factory(max_tracked=64, max_accounts=64, cache_simulation=False)
    url, n = emu.base_url, 10_000
    sem = asyncio.Semaphore(32)
    async with aiohttp.ClientSession() as s:
        async def one(i: int) -> int:
            kind = i % 4
            async with sem:
                if kind == 0:
                    req = s.get(f"{url}/{uuid.uuid4().hex}")  # unauthenticated 401
                elif kind == 1:
                    req = s.post(url + "/chat/completions", json=BODY,
                                 headers={**AUTH, "X-DSK-Emulate": f"key={uuid.uuid4().hex}"})
                elif kind == 2:
                    req = s.post(url + "/chat/completions", json=BODY,
                                 headers={**AUTH, "X-DSK-Emulate": f"nope={uuid.uuid4().hex}"})
                else:
                    req = s.get(url + "/user/balance",
                                headers={"Authorization": f"Bearer sk-{uuid.uuid4().hex}"})
                async with req as r:
                    await r.read()
                    return r.status
        statuses = await asyncio.gather(*(one(i) for i in range(n)))
    assert sorted(set(statuses)) == [200, 400, 401]
    st = emu.state
    assert st.total_requests == n
    assert len(st.requests_per_path) <= 64
    assert len(st.requests_per_emulate) <= 64
    assert len(st._times_seen) <= 64
    assert len(st.accounts) <= 64
    assert len(st._parsed) <= 4097


def test_times_directive_still_counts_recent_strings(emulator_factory):
    emu = emulator_factory(max_tracked=8)
    key = uuid.uuid4().hex

    async def run() -> list[int]:
        out = []
        for _ in range(3):
            directive = f"status=503;times=2;key={key}"
            status, _, _ = await post(emu.base_url, headers={"X-DSK-Emulate": directive})
            out.append(status)
        return out

    assert asyncio.run(run()) == [503, 503, 200]


# -- E5: big bodies are not kept ------------------------------------------------------------------


async def test_big_bodies_are_not_kept_and_cached_errors_hold_no_traceback(emulator_factory):
    emu = emulator_factory(recent_body_max=100_000, plan_cache_bytes=2_000_000)
    url = emu.base_url
    big = "a " * 500_000  # ~1 MB
    for i in range(4):
        status, _, _ = await post(url, {"model": f"nope-{i}", "messages": [{"role": "user", "content": big}]})
        assert status == 400
        status, _, _ = await post(url, {**BODY, "messages": [{"role": "user", "content": big + str(i)}]})
        assert status == 200
    await post(url, raw=b'{"model": "deepseek-flash", "messages": [' + b"1" * 10 + b"]")
    assert all(len(raw) <= 100_000 for _, raw in emu.state.recent)
    plans = emu.app[_emulator_key()].plans
    assert plans.nbytes <= 2_000_000
    for entry in plans.entries():
        if isinstance(entry, Exception):
            assert entry.__traceback__ is None and entry.__context__ is None and entry.__cause__ is None
        else:
            assert entry.req.messages == []  # the decoded body is not kept with the answer


def _emulator_key():
    from deepseek_kit.server.emulator.app import EMULATOR_KEY

    return EMULATOR_KEY


# -- E6: context length ---------------------------------------------------------------------------


async def test_prompt_over_the_context_length_is_a_400(emulator, no_tracebacks):
    url = emulator.base_url
    huge = "alpha beta gamma delta " * 1_000_000  # 23 MB: over by its size alone
    status, _, body = await post(url, {**BODY, "messages": [{"role": "user", "content": huge}]})
    msg = error_of(status, body)
    assert msg.startswith("This model's maximum context length is 1048576 tokens. However, you requested ")
    assert msg.endswith("Please reduce the length of the messages or completion.")
    over = " a" * 1_100_000  # 2.2 MB, 1.1M tokens: counted exactly
    body_ = {**BODY, "max_tokens": 1000, "messages": [{"role": "user", "content": over}]}
    status, _, body = await post(url, body_)
    msg = error_of(status, body)
    assert " in the messages, 1000 in the completion)" in msg


def test_context_length_counts_max_tokens(emulator_factory):
    emu = emulator_factory(context_length=1000)
    ok = {**BODY, "max_tokens": 900, "messages": [{"role": "user", "content": "hi " * 10}]}
    status, _, _ = asyncio.run(post(emu.base_url, ok))
    assert status == 200
    status, _, body = asyncio.run(post(emu.base_url, {**ok, "max_tokens": 995}))
    assert "maximum context length is 1000 tokens" in error_of(status, body)


# -- E7: oversize bodies, gzip bombs, odd methods --------------------------------------------------


async def test_oversize_body_and_gzip_bomb_are_json_413(emulator_factory, no_tracebacks):
    emu = emulator_factory(max_body_size=1_000_000)
    padded = {**BODY, "pad": "x" * 2_000_000}
    status, headers, body = await post(emu.base_url, padded)
    error_of(status, body, 413)
    assert headers["Content-Type"].startswith("application/json")
    bomb = gzip.compress(json.dumps({**BODY, "pad": "0" * 50_000_000}).encode())
    assert len(bomb) < 200_000
    status, _, body = await post(emu.base_url, raw=bomb, headers={"Content-Encoding": "gzip"})
    assert error_of(status, body, 413) == "Request Entity Too Large"
    status, _, _ = await post(emu.base_url)
    assert status == 200


def _raw_http(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                head, _, rest = out.partition(b"\r\n\r\n")
                length = [int(h.split(b":")[1]) for h in head.split(b"\r\n")
                          if h.lower().startswith(b"content-length")]
                if length and len(rest) >= length[0]:
                    break
        return out


def test_connect_and_odd_methods_get_json(emulator):
    for request in (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
                    b"PROPFIND /models HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"):
        out = _raw_http(emulator.port, request)
        head, _, body = out.partition(b"\r\n\r\n")
        assert b"application/json" in head, out[:300]
        assert json.loads(body)["error"]["code"] == "invalid_request_error"


def test_unparsable_request_line_still_gets_an_answer(emulator):
    # aiohttp's HTTP parser answers these before any application code runs (plain text, like an
    # nginx front would); what matters is that the server answers and keeps serving.
    for bad in (b"GE T /models HTTP/1.1\r\nHost: x\r\n\r\n",
                b"FROB /chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"):
        out = _raw_http(emulator.port, bad)
        assert out.startswith(b"HTTP/1.") and b" 400 " in out.split(b"\r\n")[0]
    out = _raw_http(emulator.port, b"GET /models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-x\r\n"
                                   b"Connection: close\r\n\r\n")
    assert b" 200 " in out.split(b"\r\n")[0]


# -- E8: parse errors in serde's words ---------------------------------------------------------------


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"model":"deepseek-flash","messages":[{"role":"user","content":"\xff\xfe"}]}',
     "invalid unicode code point at line 1 column 67"),
    (b'{"model":"deepseek-flash","messages":[{"role":"user","content":"\\udc00"}]}',
     "lone leading surrogate in hex escape at line 1 column 70"),
    (b'{"model":"deepseek-flash","messages":[{"role":"user","content":"\\ud800"}]}',
     "unexpected end of hex escape at line 1 column 71"),
    (b'{"model":"deepseek-flash","temperature":1e999,"messages":[]}',
     "number out of range at line 1 column 45"),
])
async def test_parse_error_reasons_and_positions(emulator, raw, message):
    status, _, body = await post(emulator.base_url, raw=raw)
    assert error_of(status, body) == PARSE + message


# -- E9: directives that did nothing or too much ------------------------------------------------------


@pytest.mark.parametrize("directive", ["status=100", "status=200", "status=204", "status=302", "status=399",
                                       "html=maybe", "keepalive=0", "keepalive=0.01", "empty_body=yes"])
async def test_directives_that_would_do_nothing_or_too_much(emulator, directive):
    status, _, body = await post(emulator.base_url, headers={"X-DSK-Emulate": directive})
    name, value = directive.split("=")
    assert error_of(status, body) == f"X-DSK-Emulate: bad value {value!r} for {name!r}"


async def test_html_needs_a_status(emulator):
    status, _, body = await post(emulator.base_url, headers={"X-DSK-Emulate": "html"})
    assert error_of(status, body) == "X-DSK-Emulate: html needs a status (e.g. status=502;html)"
    status, headers, _ = await post(emulator.base_url, headers={"X-DSK-Emulate": "status=502;html=true"})
    assert status == 502 and headers["Content-Type"].startswith("text/html")
    status, _, _ = await post(emulator.base_url, headers={"X-DSK-Emulate": "keepalive=0.05;html=0"})
    assert status == 200


# -- E10: settings are checked when the emulator is configured -----------------------------------------


@pytest.mark.parametrize(("setting", "value"), [
    ("concurrency_limits", 5), ("concurrency_limits", {"deepseek-flash": 0}), ("default_tokens", "many"),
    ("max_body_size", -1), ("keepalive_interval", -1), ("keepalive_interval", 0), ("validation_status", 200),
    ("chunk_tokens", "x"), ("balance", 5), ("api_keys", 5), ("api_keys", "sk-one"), ("models", 5),
    ("default_granted", "abc"), ("recent_bodies", -1), ("queue_timeout", float("nan")), ("seed", 1.5),
    ("cache_simulation", "yes"), ("faults", "status=200"), ("faults", "html"), ("currency", 5),
    ("fingerprint_date", 20261017), ("default_tokens", 10**9), ("max_tracked", 0),
])
def test_bad_settings_are_refused_with_their_name(setting, value):
    with pytest.raises(EmulatorConfigError) as info:
        EmulatorConfig.from_mapping({setting: value})
    assert str(info.value).startswith(f"bad emulator setting: {setting}: ")
    assert isinstance(info.value, ValueError)


def test_good_settings_still_convert():
    c = EmulatorConfig.from_mapping({"api_keys": ["sk-a"], "models": ["m"], "balance": {"sk-a": 5},
                                     "default_granted": "1.5", "keepalive_interval": 1})
    assert c.api_keys == {"sk-a"} and c.models == ("m",) and str(c.balance["sk-a"]) == "5"
    assert isinstance(c.keepalive_interval, float)


def test_emulator_thread_refuses_bad_settings_before_starting():
    with pytest.raises(EmulatorConfigError):
        EmulatorThread(EmulatorConfig(max_body_size=0))


def test_malformed_http_is_one_log_line_not_a_traceback(emulator, caplog):
    caplog.set_level(logging.INFO, logger="aiohttp.server")
    out = _raw_http(emulator.port, b"GET /models HTTP/1.1\r\nHost: x\r\nX-DSK-Emulate: " + b"k" * 20_000
                    + b"\r\n\r\n")
    assert b" 400 " in out.split(b"\r\n")[0]
    out = _raw_http(emulator.port, b"POST /chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                    b"\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
    assert b" 400 " in out.split(b"\r\n")[0]
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records, "aiohttp logged nothing: the test did not reach the parser error path"
    assert all(r.exc_info is None and r.levelno == logging.INFO for r in records)
    assert any("malformed request" in r.getMessage() for r in records)


def test_a_huge_message_list_is_refused_before_rendering(emulator_factory):
    emu = emulator_factory(context_length=1000)
    body = {**BODY, "messages": [{"role": "user", "content": "a"}] * 600}
    status, _, text = asyncio.run(post(emu.base_url, body))
    msg = error_of(status, text)
    assert "However, you requested 1200 tokens (1200 in the messages, 0 in the completion)" in msg


async def test_big_bodies_are_planned_off_the_loop_and_balance_is_rechecked(emulator_factory):
    # a >1 MB body is planned in a worker thread; the balance is checked again afterwards, so
    # concurrent big requests on an almost empty account cannot all pass the first check
    emu = emulator_factory(balance={"sk-poor-0001": "0.0001"}, default_granted=0)
    pad = "word " * 300_000
    async with aiohttp.ClientSession() as s:
        async def one(i: int) -> int:
            body = {**BODY, "messages": [{"role": "user", "content": f"{i} {pad}"}]}
            async with s.post(emu.base_url + "/chat/completions", data=io.BytesIO(json.dumps(body).encode()),
                              headers={"Authorization": "Bearer sk-poor-0001",
                                       "Content-Type": "application/json"}) as r:
                await r.read()
                return r.status
        statuses = await asyncio.gather(*(one(i) for i in range(6)))
    assert statuses.count(200) == 1 and statuses.count(402) == 5, statuses


def test_expect_100_continue_refuses_an_oversize_body_before_the_upload(emulator_factory):
    emu = emulator_factory(max_body_size=1_000_000)
    out = _raw_http(emu.port, b"POST /chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-x\r\n"
                              b"Expect: 100-continue\r\nContent-Length: 1000000000\r\n\r\n")
    assert out.split(b"\r\n")[0] == b"HTTP/1.1 413 Request Entity Too Large", out[:200]
    assert b"100 Continue" not in out and b"application/json" in out
    body = json.dumps(BODY).encode()
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(b"POST /chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-x\r\n"
                     b"Connection: close\r\n"
                     b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
    assert rest.split(b"\r\n")[0] == b"HTTP/1.1 200 OK", rest[:200]


def test_the_client_sees_emulator_answers_as_synthetic(emulator):
    from deepseek_kit import Client

    with Client(api_key="sk-test-abcd", base_url=emulator.base_url, max_retries=0) as c:
        resp = c.chat.completions.create(model="deepseek-flash", messages=MSGS)
        assert resp.synthetic
        with c.chat.completions.create(model="deepseek-flash", messages=MSGS, stream=True) as stream:
            chunks = list(stream)
        assert chunks and all(ch.system_fingerprint.startswith(EMULATOR_FINGERPRINT_PREFIX) for ch in chunks)
        assert stream.get_final_completion().synthetic


@pytest.mark.parametrize("thinking", [True, False])
@pytest.mark.parametrize("logprobs", [True, False])
def test_big_answers_keep_no_delta_list_and_stream_the_same_bytes(monkeypatch, thinking, logprobs):
    from deepseek_kit.server.emulator import render
    from deepseek_kit.server.emulator.faults import Directives
    from deepseek_kit.server.emulator.generate import generate_chat
    from deepseek_kit.server.emulator.validate import validate_chat

    config = EmulatorConfig()
    body = {**BODY, "thinking": {"type": "enabled" if thinking else "disabled"}, "logprobs": logprobs,
            **({"top_logprobs": 3} if logprobs else {})}
    req = validate_chat(json.dumps(body).encode(), beta=False, config=config)
    answer = generate_chat(req, Directives(tokens=9000, reasoning_tokens=40), config)
    lazy = render.chat_pieces(answer, req.thinking, req.logprobs, req.top_logprobs, 7)
    assert isinstance(lazy.deltas, render.LazyDeltas)
    monkeypatch.setattr(render, "LAZY_DELTAS", 10**9)
    eager = render.chat_pieces(answer, req.thinking, req.logprobs, req.top_logprobs, 7)
    assert isinstance(eager.deltas, list) and len(eager.deltas) == len(lazy.deltas)
    assert list(lazy.deltas) == eager.deltas == list(lazy.deltas)
    assert (lazy.message, lazy.logprobs) == (eager.message, eager.logprobs)
