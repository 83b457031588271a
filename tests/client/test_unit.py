"""Pure-logic client tests over MockTransport: request building, error mapping, retry decisions,
settings precedence, secrets. Everything that streams over a socket is in tests/client/test_live.py."""

from __future__ import annotations

import json

import msgspec
import pytest

import deepseek_kit
from deepseek_kit import (
    APIConnectionError,
    APIStatusError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    EmptyResponseError,
    InsufficientBalanceError,
    MockResponse,
    MockTransport,
    RateLimitError,
    RetryPolicy,
    ServiceUnavailableError,
    Timeout,
    UnprocessableEntityError,
    UsageError,
)
from deepseek_kit._steps.retry import retry_after_seconds

KEY = "sk-unit-test-secret-key-0123456789"
OK = msgspec.json.encode({
    "id": "i", "object": "chat.completion", "created": 1, "model": "deepseek-flash",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
})
FAST = RetryPolicy(max_retries=3, initial_delay=0.001, max_delay=0.002)


def client(handler, **kw):
    t = MockTransport(handler)
    kw.setdefault("retry", FAST)
    return AsyncClient(api_key=KEY, base_url="http://unit.test", transport=t, **kw), t


def test_all_is_complete_and_every_name_loads():
    names = deepseek_kit.__all__
    assert len(names) == len(set(names))
    # every lazily exported name is listed, and every listed name resolves
    assert set(names) == set(deepseek_kit._LAZY) | {"__version__"}
    for n in names:
        assert getattr(deepseek_kit, n) is not None, n
    # (the order is ruff's RUF022 isort-style sort, checked by ruff on src/)


async def test_body_has_only_given_fields_and_extra_body_passes_through():
    c, t = client(lambda r: MockResponse(200, OK))
    await c.chat.completions.create(
        model="deepseek-flash", messages=[{"role": "user", "content": "hi"}], thinking=False,
        reasoning_effort="max", tools=[{"type": "function", "function": {"name": "f"}}],
        user_id="u-1", extra_body={"custom_field": [1, 2]}, temperature=None,
    )
    req = t.requests[0]
    body = json.loads(req.body)
    assert body == {
        "model": "deepseek-flash", "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "disabled"}, "reasoning_effort": "max",
        "tools": [{"type": "function", "function": {"name": "f"}}], "user_id": "u-1",
        "custom_field": [1, 2], "temperature": None,
    }
    assert req.url == "http://unit.test/chat/completions"
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(req) and KEY not in repr(c)


async def test_create_parameters_are_defined_once_encoded_in_one_order_and_documented():
    """`ChatParams` is the one list of `create`'s parameters: the body's fields come out in a
    fixed order whatever the keyword order, a misspelt name is a TypeError (never a field sent to
    the server), and the docstring explains each parameter."""
    import typing

    from deepseek_kit._client.params import ALL_PARAMS, CLIENT_ONLY, WIRE_ORDER, ChatParams
    from deepseek_kit._client.resources import ChatCompletions
    from deepseek_kit._client.sync_client import _ChatCompletions

    c, t = client(lambda r: MockResponse(200, OK))
    msgs = [{"role": "user", "content": "hi"}]
    given = {"user_id": "u", "top_p": 0.5, "temperature": 0.1, "stop": ["x"], "max_tokens": 5,
             "thinking": "enabled", "timeout": 30, "cache": False, "extra_headers": {"X-A": "b"}}
    await c.chat.completions.create(model="m", messages=msgs, **given)
    await c.chat.completions.create(**dict(reversed(list(given.items()))), messages=msgs, model="m")
    first, second = (r.body for r in t.requests)
    assert first == second
    assert list(json.loads(first)) == ["model", "messages", "thinking", "max_tokens", "stop", "temperature",
                                       "top_p", "user_id"]
    with pytest.raises(TypeError, match="temprature"):
        await c.chat.completions.create(model="m", messages=msgs, temprature=0.5)
    assert len(t.requests) == 2
    assert ALL_PARAMS == set(typing.get_type_hints(ChatParams, include_extras=False, localns={
        "Any": typing.Any})) == set(WIRE_ORDER) | CLIENT_ONLY
    doc = ChatCompletions.create.__doc__ or ""
    for name in ("model", "messages", "stream", *ALL_PARAMS):
        assert f"- {name}:" in doc or f" {name}," in doc or f", {name}:" in doc, name
    # the async and the sync create are overloaded on `stream` over the same parameters
    if hasattr(typing, "get_overloads"):  # Python 3.11+
        for fn in (ChatCompletions.create, _ChatCompletions.create):
            assert len(typing.get_overloads(fn)) == 3
    await c.close()


async def test_prefix_completion_goes_to_beta_and_previous_answer_is_resendable():
    c, t = client(lambda r: MockResponse(200, OK))
    first = await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    msg = first.choices[0].message
    await c.chat.completions.create(model="m", messages=[
        {"role": "user", "content": "x"}, msg, {"role": "assistant", "content": "```py\n", "prefix": True}])
    req = t.requests[1]
    assert req.url == "http://unit.test/beta/chat/completions"
    sent = json.loads(req.body)["messages"][1]
    assert sent == {"role": "assistant", "content": "ok"}


async def test_beta_url_strips_v1():
    c = AsyncClient(api_key=KEY, base_url="http://h:1/v1", transport=MockTransport(lambda r: None))
    assert c.beta_base_url == "http://h:1/beta"


@pytest.mark.parametrize("status,cls", [
    (400, BadRequestError), (401, AuthenticationError), (402, InsufficientBalanceError),
    (422, UnprocessableEntityError), (429, RateLimitError), (503, ServiceUnavailableError),
    (418, APIStatusError),
])
async def test_status_errors_are_typed_and_carry_details(status, cls):
    body = {"error": {"message": f"boom {KEY}", "type": "t", "param": None, "code": "invalid_request_error"}}
    c, _t = client(lambda r: MockResponse(status, msgspec.json.encode(body), {"x-ds-trace-id": "abc123"}),
                  retry=RetryPolicy(max_retries=0))
    with pytest.raises(cls) as ei:
        await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    e = ei.value
    assert type(e) is cls
    assert e.status_code == status and e.type == "t" and e.code == "invalid_request_error"
    assert e.trace_id == "abc123"
    assert e.body["error"]["type"] == "t"
    for text in (str(e), repr(e), e.message, json.dumps(e.body)):
        assert KEY not in text


async def test_error_body_parsed_whatever_the_content_type():
    raw = b'{"error":{"message":"Failed to deserialize","type":"invalid_request_error"}}'
    c, _ = client(lambda r: MockResponse(400, raw, {"content-type": "application/octet-stream"}))
    with pytest.raises(BadRequestError, match="Failed to deserialize"):
        await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    c2, _ = client(lambda r: MockResponse(404, b"Unknown error", {"content-type": "text/plain"}))
    with pytest.raises(APIStatusError, match="Unknown error") as ei:
        await c2.models.list()
    assert ei.value.body == "Unknown error"
    c3, _ = client(lambda r: MockResponse(400, b'{"message":"flat style","type":"BadRequestError"}'))
    with pytest.raises(BadRequestError, match="flat style"):
        await c3.models.list()


@pytest.mark.parametrize("status", [400, 401, 402, 404, 422])
async def test_never_retried(status):
    c, t = client(lambda r: MockResponse(status, b"{}"))
    with pytest.raises(APIStatusError) as ei:
        await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert len(t.requests) == 1 and ei.value.attempts == 1


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_retried_then_succeeds(status):
    seq = [MockResponse(status, b"{}"), MockResponse(status, b"{}"), MockResponse(200, OK)]
    c, t = client(lambda r: seq.pop(0))
    out = await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert out.choices[0].message.content == "ok"
    assert len(t.requests) == 3


async def test_retries_bounded_and_attempts_reported():
    c, t = client(lambda r: MockResponse(503, b"{}"))
    with pytest.raises(ServiceUnavailableError) as ei:
        await c.models.list()
    assert len(t.requests) == 4 and ei.value.attempts == 4


async def test_empty_and_blank_200_bodies_are_retried_errors():
    for body in (b"", b"\n\n  \r\n"):
        c, t = client(lambda r, body=body: MockResponse(200, body))
        with pytest.raises(EmptyResponseError) as ei:
            await c.models.list()
        assert isinstance(ei.value, APIConnectionError)
        assert len(t.requests) == 4


async def test_blank_keepalive_lines_before_json_are_skipped():
    c, _ = client(lambda r: MockResponse(200, [b"\n", b"\n\n", b"  \n" + OK[:10], OK[10:]]))
    out = await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert out.choices[0].message.content == "ok"


def test_retry_after_parsing():
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_seconds({}) is None
    p = RetryPolicy(max_retry_after=10)
    e = RateLimitError("x", status_code=429, headers={"retry-after": "120"})
    assert p.delay_for(e, 0) == 10
    for n in range(10):
        assert 0 <= RetryPolicy(initial_delay=1, max_delay=30).backoff(n) <= min(30, 2 ** n)


async def test_max_retries_overrides_only_that_field_of_a_policy():
    policy = RetryPolicy(max_retries=5, initial_delay=0.25, max_delay=3.0, max_retry_after=7.0)
    async with AsyncClient(api_key=KEY, retry=policy, max_retries=1) as c:
        assert c.retry == RetryPolicy(max_retries=1, initial_delay=0.25, max_delay=3.0, max_retry_after=7.0)
    with pytest.raises(UsageError, match="max_retries"):
        AsyncClient(api_key=KEY, retry=policy, max_retries=-2)


def test_bad_arguments_are_usage_errors():
    with pytest.raises(UsageError, match=r"Timeout\.idle"):
        Timeout(idle=-1)
    with pytest.raises(UsageError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(UsageError, match="base_url"):
        AsyncClient(api_key=KEY, base_url="ftp://x")


async def test_bad_call_arguments():
    c, _ = client(lambda r: MockResponse(200, OK))
    with pytest.raises(UsageError, match="messages"):
        await c.chat.completions.create(model="m", messages="hello")
    with pytest.raises(UsageError, match="at least one"):
        await c.chat.completions.create(model="m", messages=[])
    with pytest.raises(UsageError, match="model"):
        await c.chat.completions.create(model="", messages=[{"role": "user", "content": "x"}])
    await c.close()
    with pytest.raises(UsageError, match="closed"):
        await c.models.list()


def test_settings_precedence(tmp_path, monkeypatch):
    cfg = tmp_path / "config.toml"
    cfg.write_text('api_key = "sk-from-file"\nbase_url = "http://file:1"\n'
                   '[profiles.local]\nbase_url = "http://local:2"\n')
    monkeypatch.setenv("DSK_HOME", str(tmp_path))
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    monkeypatch.delenv("DEEPSEEK_BASE_URL", raising=False)
    c = AsyncClient(transport=MockTransport(lambda r: None))
    assert c.api_key == "sk-from-file" and c.base_url == "http://file:1"
    assert AsyncClient(profile="local", transport=MockTransport(lambda r: None)).base_url == "http://local:2"
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-from-env")
    monkeypatch.setenv("DEEPSEEK_BASE_URL", "http://env:3/")
    c = AsyncClient(transport=MockTransport(lambda r: None))
    assert c.api_key == "sk-from-env" and c.base_url == "http://env:3"
    c = AsyncClient(api_key="sk-arg", base_url="http://arg:4", transport=MockTransport(lambda r: None))
    assert c.api_key == "sk-arg" and c.base_url == "http://arg:4"
    with pytest.raises(UsageError, match="profile 'nope' not found"):
        AsyncClient(profile="nope")


def test_missing_key_for_deepseek_cloud_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DSK_HOME", str(tmp_path))
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    monkeypatch.delenv("DEEPSEEK_BASE_URL", raising=False)
    with pytest.raises(UsageError, match="DEEPSEEK_API_KEY"):
        AsyncClient()


async def test_strict_tools_go_to_beta():
    c, t = client(lambda r: MockResponse(200, OK))
    strict = [{"type": "function", "function": {"name": "f", "strict": True, "parameters": {
        "type": "object", "properties": {}, "required": [], "additionalProperties": False}}}]
    await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], tools=strict)
    loose = [{"type": "function", "function": {"name": "f"}}]
    await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], tools=loose)
    assert [r.url for r in t.requests] == ["http://unit.test/beta/chat/completions",
                                          "http://unit.test/chat/completions"]


# --- docs/attack-round-2026-12.md, C7: the caller's mistakes
# are UsageErrors naming the argument ---------------------------


@pytest.mark.parametrize("kw,name", [
    ({"tools": 5}, "tools"), ({"tools": "get_weather"}, "tools"), ({"tools": {"type": "function"}}, "tools"),
    ({"extra_body": 5}, "extra_body"), ({"extra_body": ["a"]}, "extra_body"),
    ({"extra_headers": {"X-A": "a\r\nInjected: 1"}}, "extra_headers"),
    ({"extra_headers": {"X-A": "a\nb"}}, "extra_headers"), ({"extra_headers": {"X-A": 5}}, "extra_headers"),
    ({"extra_headers": {"Bad Name": "v"}}, "extra_headers"),
    ({"extra_headers": {"Content-Length": "5"}}, "extra_headers"),
    ({"extra_headers": {"transfer-encoding": "chunked"}}, "extra_headers"),
    ({"extra_headers": {"Connection": "upgrade"}}, "extra_headers"),
    ({"max_retries": "x"}, "max_retries"), ({"max_retries": -1}, "max_retries"),
    ({"max_retries": 1.5}, "max_retries"),
])
async def test_bad_create_arguments_are_usage_errors(kw, name):
    c, t = client(lambda r: MockResponse(200, OK))
    with pytest.raises(UsageError, match=name):
        await c.chat.completions.create(
            model="deepseek-flash", messages=[{"role": "user", "content": "x"}], **kw
        )
    assert t.requests == []  # refused before anything went on the wire


@pytest.mark.parametrize("kw,name", [
    ({"base_url": "http://user:pass@127.0.0.1:8000"}, "base_url"),
    ({"base_url": "http://[::1"}, "base_url"),
    ({"base_url": "http://127.0.0.1:99999"}, "base_url"),
    ({"base_url": "http://127.0.0.1:port"}, "base_url"),
    ({"base_url": "http://"}, "base_url"),
    ({"base_url": "http://exa mple.com"}, "base_url"),
    ({"base_url": "ftp://127.0.0.1"}, "base_url"),
    ({"beta_base_url": "http://[::1"}, "beta_base_url"),
    ({"api_key": "sk-abc\r\nX-Injected: 1"}, "api_key"),
    ({"api_key": "sk-abc\n"}, "api_key"),
    ({"default_headers": {"X-A": "a\r\nb: c"}}, "default_headers"),
    ({"default_headers": {"Content-Length": "0"}}, "default_headers"),
    ({"max_response_bytes": 0}, "max_response_bytes"), ({"max_event_bytes": "16MB"}, "max_event_bytes"),
    ({"trust_env": "no"}, "trust_env"),
])
def test_bad_client_arguments_are_usage_errors(kw, name):
    kw = {"api_key": KEY, "base_url": "http://127.0.0.1:8000", **kw}
    with pytest.raises(UsageError, match=name) as ei:
        AsyncClient(**kw)
    assert "pass@" not in str(ei.value)


def test_userinfo_in_base_url_is_masked_in_the_message():
    with pytest.raises(UsageError) as ei:
        AsyncClient(api_key=KEY, base_url="http://user:hunter2@127.0.0.1:8000")
    assert "hunter2" not in str(ei.value)


@pytest.mark.parametrize("kw", [{"base_url": "http://u:p@h"}, {"base_url": "http://[::1"},
                                {"base_url": "http://h:99999"}, {"api_key": "k\r\nX: 1"}])
def test_bad_endpoint_arguments_are_usage_errors(kw):
    from deepseek_kit import Endpoint

    with pytest.raises(UsageError):
        Endpoint(**{"base_url": "http://127.0.0.1:1", **kw})


@pytest.mark.parametrize("url", ["", "http://127.0.0.1:6379", 5])
def test_limits_redis_url_is_checked(url):
    from deepseek_kit import Limits

    with pytest.raises(UsageError, match="redis_url"):
        Limits(rpm=10, redis_url=url)


def test_config_api_key_of_the_wrong_type(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("api_key = 5\n")
    with pytest.raises(UsageError, match="api_key: Expected str"):
        AsyncClient(base_url="http://127.0.0.1:1", config_file=str(cfg))


async def test_host_and_content_type_may_still_be_set():
    c, t = client(lambda r: MockResponse(200, OK))
    await c.chat.completions.create(model="deepseek-flash", messages=[{"role": "user", "content": "x"}],
                                    extra_headers={"Host": "api.example", "X-Trace": "1"})
    assert t.requests[0].headers["Host"] == "api.example"


@pytest.mark.parametrize("mc", [0, -1, "5", 2.5])
def test_max_connections_is_checked(mc):
    with pytest.raises(UsageError, match="max_connections"):
        AsyncClient(api_key=KEY, base_url="http://127.0.0.1:1", max_connections=mc)


async def test_infinite_timeout_means_no_limit():
    t = Timeout.coerce(float("inf"))
    assert (t.connect, t.first_token, t.idle, t.total) == (None, None, None, None)
    c, _ = client(lambda r: MockResponse(200, OK))
    resp = await c.chat.completions.create(
        model="deepseek-flash",
        messages=[{"role": "user", "content": "x"}],
        timeout=Timeout(total=float("inf"), first_token=float("inf")),
    )
    assert resp.choices
