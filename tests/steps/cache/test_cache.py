"""The answer cache: backends (memory, SQLite, Redis), the key, the caching rule and its override,
stream replay, single-flight and the counters - against the real emulator and a real redis-server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import uuid

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepseek_kit import AsyncClient, InternalServerError, RetryPolicy, StreamError, Timeout, UsageError
from deepseek_kit._steps.cache.backends import MemoryBackend, RedisBackend, SQLiteBackend, open_backend
from deepseek_kit._steps.cache.replay import chat_chunks
from deepseek_kit._steps.cache.step import (
    CachePolicy,
    CacheStep,
    canonical_body,
    fingerprint,
    is_reproducible,
)
from deepseek_kit._wire.pricing import cost
from deepseek_kit._wire.types import ChatCompletion

MODEL = "deepseek-flash"
FAST = RetryPolicy(max_retries=0)
TIMEOUT = Timeout(connect=5, first_token=20, idle=20, total=60)


def msgs(text: str | None = None) -> list[dict[str, str]]:
    return [{"role": "user", "content": text or f"Tell me about the sea {uuid.uuid4().hex[:8]}"}]


def greedy(**kw):
    """A request the default rule caches: non-thinking, temperature 0."""
    return {"model": MODEL, "messages": msgs(), "thinking": False, "temperature": 0, **kw}


# -- backends ---------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend_kind(request):
    return request.param


@pytest.fixture
def spec(backend_kind, tmp_path, request) -> str:
    """A backend spec string for CachePolicy."""
    if backend_kind == "memory":
        return "memory"
    if backend_kind == "sqlite":
        return f"sqlite:///{tmp_path}/cache.sqlite3"
    return request.getfixturevalue("redis_url")


@pytest.fixture
async def make_client(emulator):
    made: list[tuple[AsyncClient, CacheStep]] = []

    def make(policy: CachePolicy | None = None, *, url: str | None = None, **kw):
        step = CacheStep(policy or CachePolicy())
        c = AsyncClient(api_key="sk-cache-test-0000", base_url=url or emulator.base_url, retry=FAST,
                        timeout=TIMEOUT, steps=[step], **kw)
        made.append((c, step))
        return c, step

    yield make
    for c, step in made:
        await step.aclose()
        await c.close()


async def test_backend_roundtrip(spec):
    b = open_backend(spec, 1 << 20)
    try:
        assert await b.get("k1") is None
        await b.set("k1", b"v1", None)
        await b.set("k2", b"v2", 60)
        assert await b.get("k1") == b"v1"
        assert await b.get("k2") == b"v2"
        await b.set("k1", b"v1-new", None)
        assert await b.get("k1") == b"v1-new"
        await b.delete("k1")
        assert await b.get("k1") is None
        await b.clear()
        assert await b.get("k2") is None
    finally:
        await b.aclose()


async def test_ttl_expiry(backend_kind, tmp_path, request):
    if backend_kind == "redis":
        b = RedisBackend(request.getfixturevalue("redis_url"))
        await b.set("short", b"x", 0.3)
        await b.set("long", b"y", 600)
        assert await b.get("short") == b"x"
        assert 0 < await b._redis().pttl("dsk:cache:short") <= 300  # the expiry is Redis's own
        await asyncio.sleep(0.6)
    else:
        clock = Clock()
        b = (MemoryBackend(1 << 20, clock=clock) if backend_kind == "memory"
             else SQLiteBackend(tmp_path / "c.sqlite3", clock=clock))
        await b.set("short", b"x", 10)
        await b.set("long", b"y", 600)
        clock.now += 9.9
        assert await b.get("short") == b"x"
        clock.now += 0.2
    try:
        assert await b.get("short") is None
        assert await b.get("long") == b"y"
    finally:
        await b.aclose()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_lru_eviction_by_bytes(kind, tmp_path):
    """Budget for three 1000-byte entries: the least recently *used* one goes first."""
    clock = Clock()
    if kind == "memory":
        from deepseek_kit._steps.cache.backends import ENTRY_OVERHEAD

        b = MemoryBackend(3 * (1002 + ENTRY_OVERHEAD), clock=clock)
    else:
        b = SQLiteBackend(tmp_path / "c.sqlite3", max_bytes=3 * 1002, clock=clock)
    for k in ("k1", "k2", "k3"):
        clock.now += 1
        await b.set(k, b"x" * 1000, None)
    clock.now += 1
    assert await b.get("k1") is not None  # k1 is now the most recently used
    clock.now += 1
    await b.set("k4", b"y" * 1000, None)
    assert await b.get("k2") is None
    assert [await b.get(k) is not None for k in ("k1", "k3", "k4")] == [True, True, True]
    clock.now += 1
    await b.set("big", b"z" * 1500, None)  # one and a half slots: the two least recently used go
    assert [await b.get(k) is not None for k in ("k1", "k3", "k4", "big")] == [False, False, True, True]
    await b.set("huge", b"h" * 10_000, None)  # larger than the whole budget: not stored, nothing evicted
    assert await b.get("huge") is None and await b.get("big") is not None
    if kind == "sqlite":
        count, total = await b.stats()
        assert (count, total) == (2, 1002 + 1503)
    await b.aclose()


_WRITER = textwrap.dedent("""
    import asyncio, sys
    from deepseek_kit._steps.cache.backends import SQLiteBackend
    async def main():
        b = SQLiteBackend(sys.argv[1], busy_timeout=30)
        for i in range(int(sys.argv[3])):
            await b.set(f"{sys.argv[2]}-{i}", b"v" * 100, None)
            await b.get(f"{sys.argv[2]}-{i // 2}")
        await b.aclose()
    asyncio.run(main())
""")


async def test_sqlite_shared_by_processes(tmp_path):
    """Two processes write the same file at once; every entry lands and the byte total is exact."""
    path = tmp_path / "shared.sqlite3"
    procs = [asyncio.create_subprocess_exec(sys.executable, "-c", _WRITER, str(path), name, "150")
             for name in ("a", "b")]
    for p in await asyncio.gather(*procs):
        assert await asyncio.wait_for(p.wait(), 60) == 0
    b = SQLiteBackend(path)
    assert await b.get("a-149") == b"v" * 100 and await b.get("b-0") == b"v" * 100
    count, total = await b.stats()
    assert count == 300
    assert total == sum(len(f"{n}-{i}") + 100 for n in "ab" for i in range(150))
    await b.aclose()


_ASKER = textwrap.dedent("""
    import asyncio, json, sys
    from deepseek_kit import AsyncClient
    from deepseek_kit._steps.cache.step import CachePolicy, CacheStep
    async def main():
        step = CacheStep(CachePolicy(backend="sqlite:///" + sys.argv[2]))
        async with AsyncClient(api_key="sk-cache-test-0000", base_url=sys.argv[1], steps=[step]) as c:
            r = await c.chat.completions.create(model="deepseek-flash", messages=json.loads(sys.argv[3]),
                                                thinking=False, temperature=0)
        await step.aclose()
        print(r.choices[0].message.content)
    asyncio.run(main())
""")


async def test_sqlite_cache_hit_across_processes(emulator, make_client, tmp_path):
    path = tmp_path / "c.sqlite3"
    m = msgs()
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", _ASKER, emulator.base_url, str(path),
                                                   json.dumps(m)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert emulator.state.total_requests == 1
    c, step = make_client(CachePolicy(backend=f"sqlite:///{path}"))
    r = await c.chat.completions.create(model=MODEL, messages=m, thinking=False, temperature=0)
    assert emulator.state.total_requests == 1
    assert r.choices[0].message.content == out.stdout.rstrip("\n")
    assert step.stats.hits == 1


def test_sqlite_default_path_is_under_dsk_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DSK_HOME", str(tmp_path / "home"))
    b = open_backend("sqlite", 1 << 20)
    assert isinstance(b, SQLiteBackend) and b.path == tmp_path / "home" / "cache.sqlite3"


def test_bad_specs():
    for bad in ("", "memcached://x", "sqlite:"):
        with pytest.raises(UsageError):
            open_backend(bad, 1)
    with pytest.raises(UsageError):
        CachePolicy(when="sometimes")
    with pytest.raises(UsageError):
        CachePolicy(ttl=0)


# -- through the client, over the three backends -------------------------------------------------------


async def test_non_stream_hit(spec, emulator, make_client):
    c, step = make_client(CachePolicy(backend=spec))
    req = greedy()
    a = await c.chat.completions.create(**req)
    b = await c.chat.completions.create(**req)
    assert emulator.state.total_requests == 1
    assert a == b
    assert (step.stats.misses, step.stats.hits, step.stats.stores) == (1, 1, 1)


async def test_stream_hit_replays_the_same_answer(spec, emulator, make_client):
    """Live stream, then the same request again: the replayed chunks assemble to the same answer,
    with the role chunk first and finish_reason + usage on the last chunk."""
    c, step = make_client(CachePolicy(backend=spec))
    req = greedy(stream=True)
    s1 = await c.chat.completions.create(**req)
    live = [ch async for ch in s1]
    await step.join()
    s2 = await c.chat.completions.create(**req)
    replayed = [ch async for ch in s2]
    assert emulator.state.total_requests == 1
    assert s2.response.cache_hit and not s1.response.cache_hit
    assert s2.get_final_completion() == s1.get_final_completion()
    assert s1.get_final_completion().choices[0].finish_reason == "stop"
    assert replayed[0].choices[0].delta.role == "assistant"
    assert replayed[-1].choices[0].finish_reason == "stop" and replayed[-1].usage == live[-1].usage
    assert all(ch.usage is None for ch in replayed[:-1])


async def test_stream_and_non_stream_share_entries(spec, emulator, make_client):
    c, step = make_client(CachePolicy(backend=spec))
    req = greedy()
    whole = await c.chat.completions.create(**req)
    s = await c.chat.completions.create(**req, stream=True)
    assert (await s.until_done()) == whole
    req2 = greedy()
    s2 = await c.chat.completions.create(**req2, stream=True)
    streamed = await s2.until_done()
    await step.join()
    again = await c.chat.completions.create(**req2)
    assert again.choices[0].message == streamed.choices[0].message and again.usage == streamed.usage
    assert emulator.state.total_requests == 2


async def test_thinking_tools_and_logprobs_replay(emulator, make_client):
    """A thinking answer with a tool call and logprobs (cached by opt-in) replays reasoning
    chunks with content null, content with reasoning null, and tool-call fragments."""
    c, step = make_client(CachePolicy(when="always"))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    req = {"model": MODEL, "messages": msgs("What is the weather in Paris? use get_weather"), "tools": tools,
           "stream": True}
    s1 = await c.chat.completions.create(**req)
    live = await s1.until_done()
    await step.join()
    s2 = await c.chat.completions.create(**req)
    chunks = [ch async for ch in s2]
    assert s2.response.cache_hit and emulator.state.total_requests == 1
    assert s2.get_final_completion() == live
    assert live.choices[0].finish_reason == "tool_calls" and live.choices[0].message.reasoning_content
    deltas = [ch.choices[0].delta for ch in chunks]
    assert deltas[0].role == "assistant" and deltas[0].reasoning_content == "" and deltas[0].content is None
    reasoning = [d for d in deltas[1:] if d.reasoning_content]
    assert reasoning and all(d.content is None for d in reasoning)
    calls = [d.tool_calls[0] for d in deltas if d.tool_calls]
    assert calls[0].id and calls[0].function.name == "get_weather" and calls[0].function.arguments == ""
    assert all(f.id is None and f.function.name is None for f in calls[1:])

    req = greedy(logprobs=True, top_logprobs=2, stream=True)
    s3 = await c.chat.completions.create(**req)
    live = await s3.until_done()
    await step.join()
    s4 = await c.chat.completions.create(**req)
    assert s4.response.cache_hit and (await s4.until_done()) == live
    assert live.choices[0].logprobs.content


def test_replayed_chunk_shape_matches_the_wire():
    """Raw payloads: role chunk, content chunks, a final chunk with an empty delta; `usage: null`
    on earlier chunks only with include_usage."""
    c = msgspec.json.decode(json.dumps({
        "id": "x", "object": "chat.completion", "created": 1, "model": MODEL, "system_fingerprint": "fp",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi " * 100},
                     "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 100, "total_tokens": 103}}), type=ChatCompletion)
    for include in (False, True):
        raw = [json.loads(p) for p in chat_chunks(c, include)]
        assert raw[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert raw[-1]["choices"][0]["delta"] == {"content": ""}
        assert raw[-1]["choices"][0]["finish_reason"] == "length" and raw[-1]["usage"]["total_tokens"] == 103
        assert "".join(r["choices"][0]["delta"]["content"] for r in raw) == "hi " * 100
        assert all(("usage" in r) == include for r in raw[:-1])
        assert all(r["usage"] is None for r in raw[:-1] if "usage" in r)
        assert {r["id"] for r in raw} == {"x"} and {r["object"] for r in raw} == {"chat.completion.chunk"}


async def test_fim_is_cached(emulator, make_client):
    c, _ = make_client()
    kw = {"model": MODEL, "prompt": f"def f{uuid.uuid4().hex[:6]}(x):\n", "suffix": "\n", "temperature": 0}
    a = await c.beta.completions.create(**kw)
    s = await c.beta.completions.create(**kw, stream=True)
    async for _ in s:
        pass
    assert s.text() == a.choices[0].text and s.response.cache_hit
    assert emulator.state.total_requests == 1


# -- the rule and the override ---------------------------------------------------------------------------


async def test_non_reproducible_requests_are_not_cached_by_default(emulator, make_client):
    c, step = make_client()
    m = msgs()
    cases = [
        # thinking is on by default and ignores temperature (docs/deepseek-api-notes.md#thinking-mode)
        {"temperature": 0},
        {"thinking": True, "temperature": 0},
        {"thinking": False},  # default temperature 1: sampled
        {"thinking": False, "temperature": 0.7},
    ]
    for extra in cases:
        await c.chat.completions.create(model=MODEL, messages=m, **extra)
        await c.chat.completions.create(model=MODEL, messages=m, **extra)
    assert emulator.state.total_requests == 2 * len(cases)
    assert step.stats.bypassed == 2 * len(cases) and step.stats.stores == 0


@pytest.mark.parametrize(("when", "cached"), [
    ("reproducible", [True, False, False]),
    ("non_thinking", [True, True, False]),
    ("always", [True, True, True]),
    ("never", [False, False, False]),
])
async def test_opt_in_rules(when, cached, emulator, make_client):
    c, _ = make_client(CachePolicy(when=when))
    results = []
    for extra in ({"thinking": False, "temperature": 0}, {"thinking": False, "temperature": 1.3}, {}):
        before = emulator.state.total_requests
        m = msgs()
        await c.chat.completions.create(model=MODEL, messages=m, **extra)
        await c.chat.completions.create(model=MODEL, messages=m, **extra)
        results.append(emulator.state.total_requests - before == 1)
    assert results == cached


class Capture:
    """An inner step that records the headers each attempt sends."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    async def handle(self, request, call_next):
        self.headers.append(dict(request.headers))
        return await call_next(request)


async def test_override_header(emulator, make_client):
    cap = Capture()
    c, step = make_client(inner_steps=[cap])
    thinking = {"model": MODEL, "messages": msgs()}
    await c.chat.completions.create(**thinking, extra_headers={"X-DSK-Cache": "force"})
    r = await c.chat.completions.create(**thinking, extra_headers={"x-dsk-cache": "FORCE"})
    assert emulator.state.total_requests == 1 and r.choices[0].message.reasoning_content

    req = greedy()
    await c.chat.completions.create(**req)
    await c.chat.completions.create(**req, extra_headers={"X-DSK-Cache": "skip"})
    assert emulator.state.total_requests == 3
    await c.chat.completions.create(**req, extra_headers={"X-DSK-Cache": "refresh"})
    assert emulator.state.total_requests == 4 and step.stats.stores == 3  # force, first, refresh
    await c.chat.completions.create(**req)
    assert emulator.state.total_requests == 4
    assert all(k.lower() != "x-dsk-cache" for h in cap.headers for k in h)  # never sent upstream

    with pytest.raises(UsageError, match="force, skip, refresh"):
        await c.chat.completions.create(**req, extra_headers={"X-DSK-Cache": "maybe"})


async def test_incomplete_and_unstorable_answers_are_not_stored(emulator, make_client):
    c, step = make_client()
    tag = uuid.uuid4().hex[:8]
    # A stream that breaks inside tool-call arguments (which no resumption can continue).
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    req = greedy(stream=True, tools=tools, messages=msgs("Weather in Paris? use get_weather"))
    s = await c.chat.completions.create(**req, extra_headers={"X-DSK-Cache": "skip"})
    n = len([ch async for ch in s])
    broken = {"X-DSK-Emulate": f"reset_after={n - 2};times=1;key={tag}"}
    s = await c.chat.completions.create(**req, extra_headers=broken)
    with pytest.raises(StreamError):
        await s.until_done()
    await step.join()
    assert step.stats.stores == 0
    s = await c.chat.completions.create(**req, extra_headers=broken)  # the fault is used up: completes
    await s.until_done()
    await step.join()
    s = await c.chat.completions.create(**req, extra_headers=broken)
    await s.until_done()
    assert s.response.cache_hit and emulator.state.total_requests == 3

    for finish in ("content_filter", "insufficient_system_resource"):
        hdr = {"X-DSK-Emulate": f"finish={finish};key={tag}"}
        r1 = await c.chat.completions.create(**greedy(), extra_headers=hdr)
        assert r1.choices[0].finish_reason == finish
    assert emulator.state.total_requests == 5 and step.stats.stores == 1

    # Left before the end (the rest still on its way): nothing stored. A caller that leaves after
    # the whole answer arrived leaves a complete answer, which is stored.
    slow = {"X-DSK-Emulate": "delay_chunks=0.05"}
    s = await c.chat.completions.create(**greedy(stream=True), extra_headers=slow)
    await s.__anext__()
    await s.aclose()
    await step.join()
    assert step.stats.stores == 1


async def test_vary_header_is_part_of_the_key(emulator, make_client):
    c, _ = make_client()
    req = greedy()
    a = await c.chat.completions.create(**req, extra_headers={"X-DSK-Emulate": "tokens=5"})
    b = await c.chat.completions.create(**req, extra_headers={"X-DSK-Emulate": "tokens=9"})
    assert emulator.state.total_requests == 2 and a.usage.completion_tokens != b.usage.completion_tokens


async def test_backend_failure_never_fails_the_call(emulator, make_client):
    c, step = make_client(CachePolicy(backend="redis://127.0.0.1:1/0"))
    r = await c.chat.completions.create(**greedy())
    assert r.choices[0].message.content
    assert step.stats.errors == 2 and step.stats.misses == 1  # the read and the write failed


# -- counters ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["2026-11-24T10:00:00+08:00", "2026-11-24T13:00:00+08:00"])  # peak, off-peak
async def test_counters_and_saved_cost(emulator, make_client, monkeypatch, when):
    monkeypatch.setenv("DSK_FAKE_NOW", when)  # saved cost is priced "now": pinned, so exact at any hour
    c, step = make_client(CachePolicy(currency="USD"))
    req = greedy()
    a = await c.chat.completions.create(**req)
    for _ in range(3):
        await c.chat.completions.create(**req)
    await c.chat.completions.create(model=MODEL, messages=msgs())
    st_ = step.stats.snapshot()
    assert (st_.misses, st_.hits, st_.bypassed, st_.stores, st_.coalesced) == (1, 3, 1, 1, 0)
    assert st_.saved_tokens == 3 * a.usage.total_tokens
    assert st_.saved_cost == 3 * cost(MODEL, a.usage, currency="USD") and st_.saved_cost > 0
    assert st_.hit_ratio == 0.75


# -- single-flight ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_single_flight_100_identical_requests(stream, spec, emulator, make_client):
    """100 identical concurrent requests: exactly one upstream call; everyone gets the answer."""
    c, step = make_client(CachePolicy(backend=spec))
    req = greedy(stream=stream)
    slow = {"X-DSK-Emulate": "delay_headers=0.3"}  # keep the leader in flight while the rest arrive
    before = emulator.state.total_requests

    async def one():
        r = await c.chat.completions.create(**req, extra_headers=slow)
        return (await r.until_done()) if stream else r

    answers = await asyncio.gather(*[one() for _ in range(100)])
    assert emulator.state.total_requests - before == 1
    assert all(a == answers[0] for a in answers)
    assert step.stats.misses == 1 and step.stats.coalesced == 99


async def test_single_flight_shares_the_leaders_error(emulator, make_client):
    c, step = make_client()
    req = greedy()
    hdr = {"X-DSK-Emulate": f"status=500;delay_headers=0.3;times=1;key={uuid.uuid4().hex}"}
    results = await asyncio.gather(*[c.chat.completions.create(**req, extra_headers=hdr) for _ in range(10)],
                                   return_exceptions=True)
    assert all(isinstance(r, InternalServerError) for r in results)
    assert emulator.state.total_requests == 1 and step.stats.stores == 0


async def test_single_flight_new_leader_when_the_leader_gives_up(emulator, make_client):
    """The leader's caller is cancelled mid-call: a follower takes over and everyone else still
    gets the answer from one further upstream call."""
    c, step = make_client()
    req = greedy()
    hdr = {"X-DSK-Emulate": "delay_headers=1"}
    leader = asyncio.create_task(c.chat.completions.create(**req, extra_headers=hdr))
    for _ in range(500):  # until the leader's request is at the emulator
        if emulator.state.total_requests:
            break
        await asyncio.sleep(0.01)
    followers = [asyncio.create_task(c.chat.completions.create(**req, extra_headers=hdr)) for _ in range(5)]
    for _ in range(20):  # followers only do a memory lookup before they join the flight
        await asyncio.sleep(0)
    assert emulator.state.total_requests == 1
    leader.cancel()
    answers = await asyncio.gather(*followers)
    assert all(a == answers[0] for a in answers)
    assert step.stats.misses == 2 and step.stats.coalesced == 4
    assert emulator.state.total_requests == 2


async def test_single_flight_off(emulator, make_client):
    c, _ = make_client(CachePolicy(single_flight=False))
    req = greedy()
    hdr = {"X-DSK-Emulate": "delay_headers=0.2"}
    await asyncio.gather(*[c.chat.completions.create(**req, extra_headers=hdr) for _ in range(5)])
    assert emulator.state.total_requests == 5


# -- the key (property tests) ------------------------------------------------------------------------------

_text = st.text(max_size=20)
_msg = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]), "content": _text},
                             optional={"name": st.from_regex(r"[a-z]{1,8}", fullmatch=True)})
_tool = st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
    {"name": st.from_regex(r"[a-z_]{1,10}", fullmatch=True)},
    optional={"description": _text, "parameters": st.just({"type": "object", "properties": {}})})})
_body = st.fixed_dictionaries(
    {"model": st.sampled_from([MODEL, "deepseek-v4-pro"]),
     "messages": st.lists(_msg, min_size=1, max_size=4)},
    optional={
        "thinking": st.sampled_from([{"type": "enabled"}, {"type": "disabled"}]),
        "temperature": st.sampled_from([0, 0.3, 1.5, 2]),
        "max_tokens": st.integers(1, 10_000),
        "tools": st.lists(_tool, min_size=1, max_size=3),
        "stop": st.lists(_text, max_size=3),
        "reasoning_effort": st.sampled_from(["low", "high", "max"]),
        "response_format": st.just({"type": "json_object"}),
        "user_id": st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True),
    })


def _shuffled(obj, rnd):
    """The same JSON value with every object's keys in another order."""
    if isinstance(obj, dict):
        keys = list(obj)
        rnd.shuffle(keys)
        return {k: _shuffled(obj[k], rnd) for k in keys}
    if isinstance(obj, list):
        return [_shuffled(v, rnd) for v in obj]
    return obj


def _key(body):
    return fingerprint(canonical_body(msgspec.json.decode(json.dumps(body))))


@settings(max_examples=200, deadline=None)
@given(body=_body, rnd=st.randoms(use_true_random=False),
       stream=st.sampled_from([None, True, False]), include=st.sampled_from([None, True, False]))
def test_key_ignores_key_order_and_stream_flags(body, rnd, stream, include):
    other = _shuffled(body, rnd)
    if stream is not None:
        other["stream"] = stream
    if include is not None:
        other["stream_options"] = {"include_usage": include}
    assert _key(other) == _key(body)


_CHANGES = {
    "model": lambda b: "deepseek-v4-flash",
    "messages": lambda b: [*b["messages"], {"role": "user", "content": "and then?"}],
    "content": None,  # handled below: edit the last message
    "thinking": lambda b: {"type": "disabled" if b.get("thinking", {}).get("type", "enabled") == "enabled"
                           else "enabled"},
    "temperature": lambda b: 0.123,
    "max_tokens": lambda b: b.get("max_tokens", 0) + 1,
    "tools": lambda b: [*b.get("tools", []), {"type": "function", "function": {"name": "zz_new"}}],
    "stop": lambda b: [*b.get("stop", []), "STOP-X"],
    "reasoning_effort": lambda b: "ultra",
    "response_format": lambda b: {"type": "json_object"} if "response_format" not in b else {"type": "x"},
    "user_id": lambda b: b.get("user_id", "") + "q",
    "extra": lambda b: 1,
}


@settings(max_examples=300, deadline=None)
@given(body=_body, field=st.sampled_from(sorted(_CHANGES)))
def test_key_changes_with_every_answer_changing_field(body, field):
    changed = json.loads(json.dumps(body))
    if field == "content":
        changed["messages"][-1]["content"] += "!"
    elif field == "extra":
        changed["seed_unknown_field"] = 1  # unknown extra_body fields count too
    else:
        changed[field] = _CHANGES[field](body)
    assert _key(changed) != _key(body)


def test_key_normalises_documented_defaults():
    base = {"model": MODEL, "messages": msgs("x")}
    same = [
        {**base, "thinking": {"type": "enabled"}},
        {**base, "thinking": None},
        {**base, "temperature": 1, "top_p": 1.0, "frequency_penalty": 0, "presence_penalty": 0.0},
        {**base, "logprobs": False, "response_format": {"type": "text"}, "tool_choice": "none"},
        {**base, "max_tokens": None, "stream": True, "stream_options": {"include_usage": True}},
    ]
    assert {_key(b) for b in same} == {_key(base)}
    assert _key({**base, "temperature": 0.0}) == _key({**base, "temperature": 0})
    assert _key({**base, "tool_choice": "auto"}) != _key(base)
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert _key({**base, "tools": tools, "tool_choice": "auto"}) == _key({**base, "tools": tools})
    assert _key({**base, "reasoning_effort": "high"}) != _key(base)  # its default is not a constant
    k = canonical_body(base)
    assert fingerprint(k, namespace="a") != fingerprint(k) != fingerprint(k, beta=True)
    assert fingerprint(k, vary="x-dsk-emulate:tokens=3") != fingerprint(k)


def test_rule():
    def rule(body, when="reproducible", fim=False):
        return is_reproducible(canonical_body(body, fim=fim), when, fim=fim)

    base = {"model": MODEL, "messages": []}
    assert rule({**base, "thinking": {"type": "disabled"}, "temperature": 0})
    assert not rule({**base, "temperature": 0})  # thinking by default: temperature is ignored
    assert not rule({**base, "thinking": {"type": "enabled"}, "temperature": 0.0})
    assert not rule({**base, "thinking": {"type": "disabled"}})
    assert rule({**base, "thinking": {"type": "disabled"}, "temperature": 0.9}, "non_thinking")
    assert not rule({**base, "temperature": 0}, "non_thinking")
    assert rule({"model": MODEL, "prompt": "x", "temperature": 0}, fim=True)
    assert not rule({"model": MODEL, "prompt": "x"}, fim=True)
