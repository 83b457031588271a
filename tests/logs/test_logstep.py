"""Request logging against the real emulator on 127.0.0.1: what a LogStep records for non-stream
and stream calls, tool calls, errors, retries, broken and resumed streams, client-cache hits; that
the API key is never stored (the database's bytes are searched for it); content=False; logging off.
"""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone

import msgspec
import pytest

from deepseek_kit import AsyncClient, Client, Resumption
from deepseek_kit._logs.query import Logs
from deepseek_kit._logs.store import REQUEST_COLUMNS, LogConfig
from deepseek_kit._logs.writer import LogStore
from deepseek_kit._steps.cache.step import CachePolicy
from deepseek_kit._steps.logs import LogStep
from deepseek_kit._wire.errors import APIConnectionError, BadRequestError, StreamError
from deepseek_kit._wire.pricing import cost

KEY = "sk-logtest-NEVER-STORED-4e1d9b77c0"
MODEL = "deepseek-flash"


@pytest.fixture
def db(tmp_path):
    return tmp_path / "logs.sqlite3"


def make(url, db, **kw):
    step = LogStep(LogConfig(path=db, **kw.pop("log", {})), secrets=(KEY,))
    client = AsyncClient(api_key=KEY, base_url=url, steps=[step], **kw)
    return client, step


def user(text):
    return [{"role": "user", "content": text}]


def rows(db):
    with Logs(db) as logs:
        return list(reversed(logs.recent(1000)))


def fake_row(**fields):
    """A row tuple as LogStep builds it (REQUEST_COLUMNS order), for tests of the store itself."""
    base = dict.fromkeys(REQUEST_COLUMNS)
    base.update(ts=0.0, model=MODEL, path="/chat/completions", stream=0, status=200, outcome="ok",
                attempts=1, prompt_tokens=0, completion_tokens=0, reasoning_tokens=0, cache_hit_tokens=0,
                cache_miss_tokens=0, cost=0.0, currency="CNY", cache_hit=0, synthetic=0)
    base.update(fields)
    return tuple(base[c] for c in REQUEST_COLUMNS)


def db_bytes(db):
    data = b""
    for suffix in ("", "-wal", "-shm"):
        p = db.with_name(db.name + suffix)
        if p.exists():
            data += p.read_bytes()
    return data


async def test_non_stream_call_is_logged_with_its_fields(emulator, db):
    client, step = make(emulator.base_url, db)
    async with client:
        msgs = [{"role": "system", "content": "Be brief."}, *user("What is the logging test?")]
        resp = await client.chat.completions.create(model=MODEL, messages=msgs, temperature=0.5)
        await step.aclose()
    (e,) = rows(db)
    assert (e.model, e.path, e.stream, e.status, e.outcome, e.error) == (
        MODEL, "/chat/completions", 0, 200, "ok", None)
    assert e.endpoint == emulator.base_url.split("//")[1]
    assert e.message_list() == msgs
    assert e.prompt == "What is the logging test?"
    assert json.loads(e.params) == {"model": MODEL, "temperature": 0.5}
    msg = resp.choices[0].message
    assert e.answer == msg.content and e.reasoning == msg.reasoning_content and msg.reasoning_content
    assert e.finish_reason == "stop" and e.response_id == resp.id and e.trace_id
    u = resp.usage
    assert (e.prompt_tokens, e.completion_tokens, e.reasoning_tokens) == (
        u.prompt_tokens, u.completion_tokens, u.reasoning_tokens)
    assert (e.cache_hit_tokens, e.cache_miss_tokens) == (
        u.prompt_cache_hit_tokens, u.prompt_cache_miss_tokens)
    priced = cost(MODEL, u, datetime.fromtimestamp(e.ts, timezone.utc))
    assert e.cost > 0 and e.cost == pytest.approx(float(priced))
    assert e.latency > 0 and 0 <= e.ttft <= e.latency and e.attempts == 1 and not e.cache_hit


async def test_stream_call_is_logged_with_the_accumulated_answer(emulator, db):
    client, step = make(emulator.base_url, db)
    async with client:
        async with await client.chat.completions.create(model=MODEL, messages=user("stream it"),
                                                         stream=True) as s:
            n = 0
            async for _ in s:
                n += 1
        final = s.get_final_completion()
        await step.aclose()
    (e,) = rows(db)
    assert n > 10 and e.stream == 1 and e.outcome == "ok"
    msg = final.choices[0].message
    assert e.answer == msg.content and e.reasoning == msg.reasoning_content
    assert e.completion_tokens == final.usage.completion_tokens and e.response_id == final.id
    assert 0 < e.ttft < e.latency


async def test_tool_calls_are_logged(emulator, db):
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    client, step = make(emulator.base_url, db)
    async with client:
        resp = await client.chat.completions.create(model=MODEL, messages=user("weather in Paris?"),
                                                    tools=tools)
        s = await client.chat.completions.create(model=MODEL, messages=user("weather in Oslo?"), tools=tools,
                                                 stream=True)
        final = await s.until_done()
        await step.aclose()
    e1, e2 = rows(db)
    for e, comp in ((e1, resp), (e2, final)):
        calls = comp.choices[0].message.tool_calls
        assert calls and e.finish_reason == "tool_calls"
        assert json.loads(e.tool_calls) == [
            {"id": c.id, "type": "function",
             "function": {"name": "get_weather", "arguments": c.function.arguments}}
            for c in calls]
    assert json.loads(e1.params)["tools"] == tools


async def test_errors_and_retries_are_logged_without_the_key(emulator, db):
    client, step = make(emulator.base_url, db, max_retries=3)
    async with client:
        ok = await client.chat.completions.create(
            model=MODEL, messages=user("retried"),
            extra_headers={"X-DSK-Emulate": "status=503;times=2;key=lg1"})
        with pytest.raises(BadRequestError):
            await client.chat.completions.create(model=MODEL, messages=user("bad"),
                                                 extra_headers={"X-DSK-Emulate": "status=400"})
        await step.aclose()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    client, step = make(dead, db, max_retries=1)
    async with client:
        with pytest.raises(APIConnectionError):
            await client.chat.completions.create(model=MODEL, messages=user("nobody home"))
        await step.aclose()
    retried, bad, refused = rows(db)
    assert retried.outcome == "ok" and retried.attempts == 3
    assert retried.answer == ok.choices[0].message.content
    assert (bad.outcome, bad.status, bad.error) == ("error", 400, "BadRequestError")
    assert bad.error_message and bad.trace_id and bad.answer is None and bad.cost == 0
    assert (refused.outcome, refused.error, refused.status, refused.attempts) == (
        "error", "APIConnectionError", None, 2)
    assert "127.0.0.1" in refused.error_message
    data = db_bytes(db)
    assert KEY.encode() not in data and KEY[-12:].encode() not in data


async def test_an_error_quoting_the_key_is_stored_redacted(emulator_factory, db):
    emu = emulator_factory(api_keys={"sk-the-only-valid-key"})
    client, step = make(emu.base_url, db, max_retries=0)
    async with client:
        with pytest.raises(Exception, match=r"401|Authentication"):
            await client.chat.completions.create(model=MODEL, messages=user("who am i"))
        await step.aclose()
    (e,) = rows(db)
    assert e.status == 401 and e.error == "AuthenticationError" and "****" in e.error_message
    assert KEY.encode() not in db_bytes(db)


async def test_broken_stream_without_resumption_logs_the_partial_answer(emulator, db):
    client, step = make(emulator.base_url, db, resumption=Resumption(enabled=False))
    async with client:
        s = await client.chat.completions.create(model=MODEL, messages=user("break me"), stream=True,
                                                 extra_headers={"X-DSK-Emulate": "reset_after=20"})
        with pytest.raises(StreamError) as info:
            async for _ in s:
                pass
        await step.aclose()
    (e,) = rows(db)
    assert (e.outcome, e.error) == ("broken", "StreamError")
    partial = info.value.partial.choices[0].message
    assert e.reasoning == partial.reasoning_content and e.reasoning
    assert e.prompt_tokens == 0  # usage never arrived


async def test_resumed_stream_logs_each_piece_and_the_whole_answer(emulator, db):
    client, step = make(emulator.base_url, db, prefix_completion=True)  # the emulator is opt-in
    async with client:
        s = await client.chat.completions.create(
            model=MODEL, messages=user("resume me"), stream=True,
            extra_headers={"X-DSK-Emulate": "reset_after=30;times=1;key=lg2"})
        final = await s.until_done()
        await step.aclose()
    assert s.resumed == 1
    broken, cont = rows(db)
    assert broken.outcome == "broken" and cont.outcome == "ok"
    msg = final.choices[0].message
    assert cont.answer == msg.content and cont.reasoning == msg.reasoning_content
    assert cont.completion_tokens == final.usage.completion_tokens
    assert cont.message_list()[-1]["prefix"] is True and cont.prompt == "resume me"


async def test_client_cache_hits_are_logged_at_no_cost(emulator, db):
    client, step = make(emulator.base_url, db, cache=CachePolicy(backend="memory"))
    async with client:
        for _ in range(2):
            await client.chat.completions.create(model=MODEL, messages=user("cache me"), thinking=False,
                                                 temperature=0)
        await step.aclose()
    first, second = rows(db)
    assert (first.cache_hit, second.cache_hit) == (0, 1)
    assert first.cost > 0 and second.cost == 0 and second.answer == first.answer


async def test_content_false_stores_only_the_numbers(emulator, db):
    client, step = make(emulator.base_url, db, log={"content": False})
    async with client:
        await client.chat.completions.create(model=MODEL, messages=user("secret prompt words"))
        await step.aclose()
    (e,) = rows(db)
    assert e.prompt is e.messages is e.answer is e.reasoning is None
    assert e.completion_tokens > 0 and e.cost > 0
    assert b"secret prompt words" not in db_bytes(db)


async def test_models_and_balance_calls_are_logged(emulator, db):
    client, step = make(emulator.base_url, db)
    async with client:
        await client.models.list()
        await client.user.balance()
        await step.aclose()
    models, balance = rows(db)
    assert (models.path, balance.path) == ("/models", "/user/balance")
    assert "deepseek-flash" in models.answer and "balance_infos" in balance.answer
    with Logs(db) as logs:
        assert logs.stats()[0].requests == 0  # stats count model calls only


def test_sync_client_logs_too(emulator, db):
    step = LogStep(LogConfig(path=db))
    with Client(api_key=KEY, base_url=emulator.base_url, steps=[step]) as c:
        r = c.chat.completions.create(model=MODEL, messages=user("sync"))
        for _ in c.chat.completions.create(model=MODEL, messages=user("sync stream"), stream=True):
            pass
    assert step.flush(10)
    a, b = rows(db)
    assert a.answer == r.choices[0].message.content and b.stream == 1 and b.answer


async def test_logging_off_writes_nothing(emulator, tmp_path, monkeypatch):
    off = tmp_path / "off.sqlite3"
    client, step = make(emulator.base_url, off, log={"enabled": False})
    async with client:
        await client.chat.completions.create(model=MODEL, messages=user("not logged"))
        await step.aclose()
    assert not off.exists()
    monkeypatch.setenv("DSK_NO_LOGS", "1")
    assert LogConfig.resolve(True, {"logs": True}, default=True) is None
    assert LogConfig.resolve(LogConfig(), None) is None


def test_log_config_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("DSK_NO_LOGS", raising=False)
    assert LogConfig.resolve(None, {}, default=False) is None  # the library: off unless asked
    assert LogConfig.resolve(None, {}, default=True) == LogConfig()  # dsk: on
    assert LogConfig.resolve(None, {"logs": False}, default=True) is None
    assert LogConfig.resolve(None, {"logs": True}) == LogConfig()
    assert LogConfig.resolve(False, {"logs": True}) is None
    table = {"logs": {"path": str(tmp_path / "x.db"), "retention_days": 7, "content": False}}
    got = LogConfig.resolve(None, table)
    assert got is not None and got.retention_days == 7 and not got.content
    assert LogConfig.resolve(None, {"logs": {"enabled": False}}, default=True) is None
    assert LogConfig.resolve(True, {"logs": {"enabled": False}}).enabled
    with pytest.raises(Exception, match="unknown keys"):
        LogConfig.resolve(None, {"logs": {"retention": 3}})
    with pytest.raises(Exception, match="retention_days"):
        LogConfig(retention_days=0)


def test_a_full_queue_drops_rows_and_never_blocks(db):
    store = LogStore(LogConfig(path=db, max_queue=5, batch_delay=0.3))
    row = fake_row()
    accepted = sum(store.put(lambda: row) for _ in range(50))
    assert accepted < 50 and store.dropped == 50 - accepted
    assert store.flush(10)
    store.close()
    assert store.written == accepted
    with Logs(db) as logs:
        assert logs.count() == accepted


def _rowids_by_ts(db):
    import sqlite3
    with sqlite3.connect(db) as conn:
        return [ts for (ts,) in conn.execute("SELECT ts FROM requests ORDER BY rowid")]


async def test_rows_put_on_a_loop_are_held_there_and_handed_over_as_one_batch(db):
    """A put on an event loop wakes nothing (the writer's queue stays empty: a wake-up in the middle
    of a call delays it); the loop hands the rows over together after batch_delay, in order."""
    import asyncio

    store = LogStore(LogConfig(path=db, batch_delay=0.05))
    try:
        for i in range(20):
            assert store.put(lambda i=i: fake_row(ts=float(i)))
        assert store._q.qsize() == 0 and len(store._held) == 20
        for _ in range(200):  # the hand-off timer runs on this loop
            await asyncio.sleep(0.01)
            if not store._held:
                break
        assert not store._held
        assert await asyncio.get_running_loop().run_in_executor(None, store.flush, 10.0)
        assert store.written == 20 and _rowids_by_ts(db) == [float(i) for i in range(20)]
    finally:
        store.close()


def test_rows_held_by_a_loop_that_stopped_are_written_by_the_next_put_flush_or_close(db):
    import asyncio

    store = LogStore(LogConfig(path=db, batch_delay=30.0))  # the loop's hand-off never comes

    async def on_a_loop(first):
        for i in range(first, first + 3):
            store.put(lambda i=i: fake_row(ts=float(i)))

    asyncio.run(on_a_loop(0))
    assert len(store._held) == 3
    store.put(lambda: fake_row(ts=3.0))  # off any loop: straight to the writer, after the held ones
    asyncio.run(on_a_loop(4))
    assert store.flush(10)
    assert _rowids_by_ts(db) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    asyncio.run(on_a_loop(7))
    store.close()  # (at exit, every store is closed)
    assert store.written == 10 and _rowids_by_ts(db)[-3:] == [7.0, 8.0, 9.0]


async def test_the_queue_bound_counts_rows_held_on_the_loop_and_handed_over(db):
    import asyncio

    store = LogStore(LogConfig(path=db, max_queue=5, batch_delay=0.02))
    try:
        accepted = sum(store.put(lambda: fake_row()) for _ in range(50))
        assert accepted == 5 and store.dropped == 45
        await asyncio.sleep(0)
        store._hand_over(None)  # as the loop's timer does: one queue item for five rows
        assert store._q.qsize() == 1
        assert store.put(lambda: fake_row()) is False  # still five rows waiting for the writer
        assert await asyncio.get_running_loop().run_in_executor(None, store.flush, 10.0)
        assert store.put(lambda: fake_row()) is True  # written: room again
        assert await asyncio.get_running_loop().run_in_executor(None, store.flush, 10.0)
        assert store.written == 6
    finally:
        store.close()


def test_retention_prunes_old_calls(db):
    store = LogStore(LogConfig(path=db, retention_days=1, batch_delay=0))
    now = datetime.now(timezone.utc).timestamp()
    for ts in (now - 3 * 86400, now - 2 * 86400, now - 60, now):
        store.put(lambda ts=ts: fake_row(ts=ts))
    assert store.flush(10)
    store.close()
    with Logs(db) as logs:
        assert sorted(e.ts for e in logs.recent()) == [now - 60, now]


def test_request_parts_prompt_messages_and_params():
    from deepseek_kit._steps.logs import _request_parts

    parts = [{"type": "text", "text": "Describe"}, {"type": "text", "text": "this"}]
    body = msgspec.json.encode({"model": MODEL, "messages": [
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": parts}, {"role": "assistant", "content": "", "prefix": True}],
        "temperature": 0.2})
    model, prompt, messages, params = _request_parts(body, True)
    assert (model, prompt) == (MODEL, "Describe this")
    assert messages.encode() in body and json.loads(params) == {"model": MODEL, "temperature": 0.2}
    no_user = msgspec.json.encode({"model": MODEL, "messages": [{"role": "system", "content": "sys only"}]})
    assert _request_parts(no_user, True)[1] == "sys only"
    fim = msgspec.json.encode({"model": MODEL, "prompt": "def f(", "suffix": "return 1"})
    assert _request_parts(fim, True) == (
        MODEL, "def f(", None, '{"model":"deepseek-flash","suffix":"return 1"}')
    assert _request_parts(fim, False)[3] == '{"model":"deepseek-flash"}'
    assert _request_parts(b"not json", True) == (None, None, None, None)
    assert _request_parts(None, True) == (None, None, None, None)


def test_a_row_sqlite_cannot_store_never_stops_the_writer(db):
    # A lone surrogate (e.g. from a header with invalid UTF-8) makes sqlite3 raise
    # UnicodeEncodeError, a ValueError: before, it killed the writer thread, every later row was
    # lost and closing waited for the flush timeout. Now only that row is lost, and counted.
    store = LogStore(LogConfig(path=db, batch_delay=0.2))
    store.put(lambda: fake_row(ts=1.0, model="before"))
    store.put(lambda: fake_row(ts=2.0, model="bad\ud800"))
    store.put(lambda: fake_row(ts=3.0, model="with-bad"))
    assert store.flush(10)
    store.put(lambda: fake_row(ts=4.0, model="after"))
    assert store.flush(10)
    store.close()
    with Logs(db) as logs:
        assert sorted(e.model for e in logs.recent()) == ["after", "before", "with-bad"]
    assert store.errors == 1


# -- the record the metrics step built ---------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_rows_take_tokens_and_cost_from_the_metrics_record(emulator, db, stream):
    """With metrics on, the logs step reads the call's `RequestRecord` (options["record"]) instead
    of decoding and pricing the answer again: a price override of the metrics config shows in the
    row. In another currency, or with metrics off, the row is priced by the table."""
    from decimal import Decimal

    from deepseek_kit import MetricsConfig
    from deepseek_kit._steps.metrics.record import RECORD_OPTION
    from deepseek_kit._wire.pricing import ModelPrice

    flat = ModelPrice(Decimal(1000), Decimal(1000), Decimal(1000))
    seen = []
    for metrics in (MetricsConfig(prices={MODEL: (flat, flat)}, hooks=(seen.append,)),
                    MetricsConfig(currency="USD", hooks=(seen.append,)), False):
        client, step = make(emulator.base_url, db, metrics=metrics)
        async with client:
            if stream:
                s = await client.chat.completions.create(model=MODEL, messages=user("record"), stream=True)
                async with s:
                    async for _ in s:
                        pass
                u = s.get_final_completion().usage
            else:
                u = (await client.chat.completions.create(model=MODEL, messages=user("record"))).usage
            await step.aclose()
    with_override, other_currency, metrics_off = rows(db)
    rec = seen[0]
    assert RECORD_OPTION == "record"
    assert with_override.cost == pytest.approx(float(rec.cost))
    assert rec.cost == Decimal(u.prompt_tokens + u.completion_tokens) / 1000  # 1000 per 1M tokens
    assert (with_override.prompt_tokens, with_override.cache_hit_tokens, with_override.cache_miss_tokens,
            with_override.completion_tokens, with_override.reasoning_tokens) == (
        rec.prompt_tokens, rec.prompt_cache_hit_tokens, rec.prompt_cache_miss_tokens,
        rec.completion_tokens, rec.reasoning_tokens)
    for e in (other_currency, metrics_off):
        assert e.currency == "CNY"
        priced = cost(MODEL, u, datetime.fromtimestamp(e.ts, timezone.utc))
        assert e.cost > 0 and e.cost == pytest.approx(float(priced))
        assert (e.prompt_tokens, e.completion_tokens) == (u.prompt_tokens, u.completion_tokens)


async def test_a_failed_call_is_logged_alike_with_metrics_on_and_off(emulator, db):
    for metrics in (True, False):
        client, step = make(emulator.base_url, db, metrics=metrics, max_retries=0)
        async with client:
            with pytest.raises(BadRequestError):
                await client.chat.completions.create(model=MODEL, messages=user("bad"),
                                                     extra_headers={"X-DSK-Emulate": "status=400"})
            await step.aclose()
    on, off = rows(db)
    for e in (on, off):
        got = (e.outcome, e.error, e.status, e.cost, e.prompt_tokens)
        assert got == ("error", "BadRequestError", 400, 0, 0)
