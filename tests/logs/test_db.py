"""The logs database itself: migrations (ordered, idempotent, an old schema upgrades, two processes
migrating one new file at once), two processes logging into one file through real clients and the
emulator, saved conversations, search (FTS5 and the LIKE fallback) and the statistics."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from deepseek_kit import AsyncClient, UsageError
from deepseek_kit._logs.migrations import MIGRATIONS, Migration, applied, migrate
from deepseek_kit._logs.query import Logs
from deepseek_kit._logs.store import (
    LogConfig,
    connect,
    delete_conversation,
    list_conversations,
    load_conversation,
    save_conversation,
)
from deepseek_kit._logs.writer import LogStore
from deepseek_kit._steps.logs import LogStep
from tests.logs.test_logstep import KEY, MODEL, fake_row, user


def raw(path):
    return sqlite3.connect(path, isolation_level=None)


# -- migrations ------------------------------------------------------------------------------------


def test_migrations_apply_in_order_once(tmp_path):
    conn = connect(tmp_path / "a.db")
    assert applied(conn) == [m.name for m in MIGRATIONS]
    assert migrate(conn) == []  # idempotent
    conn.close()
    conn = connect(tmp_path / "a.db")  # reopening applies nothing either
    assert applied(conn) == [m.name for m in MIGRATIONS]
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)


def test_migration_names_must_be_sorted_and_unique(tmp_path):
    conn = raw(tmp_path / "b.db")
    with pytest.raises(ValueError, match="sorted"):
        migrate(conn, [Migration("0002_b"), Migration("0001_a")])
    with pytest.raises(ValueError, match="unique"):
        migrate(conn, [Migration("0001_a"), Migration("0001_a")])


def test_a_failing_migration_leaves_nothing_recorded(tmp_path):
    conn = raw(tmp_path / "c.db")
    bad = [Migration("0001_ok", ("CREATE TABLE t (x)",)), Migration("0002_bad", ("CREATE TABLE t (y)",))]
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, bad)
    assert applied(conn) == []
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'").fetchone()[0] == 0


def test_an_old_schema_upgrades_and_its_rows_become_searchable(tmp_path):
    path = tmp_path / "old.db"
    conn = raw(path)
    migrate(conn, MIGRATIONS[:2])  # what a version before the search index created
    conn.execute("INSERT INTO requests (ts, model, path, outcome, prompt, answer) VALUES (1.0, "
                 "'deepseek-flash', '/chat/completions', 'ok', 'an ancient question', 'a fossil answer')")
    conn.close()
    conn = connect(path)
    assert applied(conn) == [m.name for m in MIGRATIONS]
    conn.close()
    with Logs(path) as logs:
        assert logs.full_text
        (hit,) = logs.search("fossil")
        assert hit.prompt == "an ancient question" and hit.id == 1


def test_a_database_from_a_newer_version_still_opens(tmp_path):
    path = tmp_path / "new.db"
    connect(path).execute("INSERT INTO schema_migrations VALUES ('0099_future', 1e10)")
    conn = connect(path)
    assert applied(conn)[-1] == "0099_future"
    conn.close()


_MIGRATE_AT_ONCE = textwrap.dedent("""
    import sys, time
    from deepseek_kit._logs.store import connect
    from deepseek_kit._logs.migrations import applied
    start = float(sys.argv[2])
    while time.time() < start:
        time.sleep(0.001)
    conn = connect(sys.argv[1])
    print(",".join(applied(conn)))
""")


def test_two_processes_creating_the_database_at_once(tmp_path):
    import time

    path = tmp_path / "race.db"
    start = str(time.time() + 1.0)  # both processes are past their imports by then
    procs = [subprocess.Popen([sys.executable, "-c", _MIGRATE_AT_ONCE, str(path), start],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    names = ",".join(m.name for m in MIGRATIONS)
    assert [(p.returncode, o[0].strip()) for p, o in zip(procs, outs, strict=True)] == [(0, names)] * 4, outs
    conn = raw(path)
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)


# -- two processes logging -------------------------------------------------------------------------

_WRITER = textwrap.dedent("""
    import asyncio, sys
    from deepseek_kit import AsyncClient
    from deepseek_kit._steps.logs import LogStep
    from deepseek_kit._logs.store import LogConfig

    async def main():
        url, db, tag, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
        step = LogStep(LogConfig(path=db, batch_delay=0.01))
        async with AsyncClient(api_key="sk-writer", base_url=url, steps=[step]) as c:
            async def one(i):
                msgs = [{"role": "user", "content": f"{tag} call {i}"}]
                if i % 2:
                    s = await c.chat.completions.create(model="deepseek-flash", messages=msgs, stream=True)
                    await s.until_done()
                else:
                    await c.chat.completions.create(model="deepseek-flash", messages=msgs)
            await asyncio.gather(*(one(i) for i in range(n)))
        # no flush here: the atexit handler must write what is still queued

    asyncio.run(main())
""")


def test_two_processes_log_into_one_file(emulator, tmp_path):
    path, n = tmp_path / "shared.db", 150
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, emulator.base_url, str(path), tag, str(n)],
                              stderr=subprocess.PIPE, text=True) for tag in ("alpha", "beta")]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert not any(errs), errs  # no "could not write" warnings
    with Logs(path) as logs:
        entries = logs.recent(10_000)
    assert len(entries) == 2 * n and len({e.id for e in entries}) == 2 * n
    want = sorted(f"{t} call {i}" for t in ("alpha", "beta") for i in range(n))
    assert sorted(e.prompt for e in entries) == want
    assert all(e.outcome == "ok" and e.answer and e.completion_tokens for e in entries)


# -- conversations ---------------------------------------------------------------------------------


async def test_conversation_round_trip_keeps_reasoning_content(emulator, tmp_path):
    db = tmp_path / "conv.db"
    async with AsyncClient(api_key=KEY, base_url=emulator.base_url) as c:
        msgs = [{"role": "system", "content": "You are terse."}, *user("Name a colour")]
        answer = (await c.chat.completions.create(model=MODEL, messages=msgs)).choices[0].message
    history = [*msgs, answer]
    cid = save_conversation(None, history, {"model": MODEL, "preset": "conversation"}, path=db)
    got, meta = load_conversation(cid, path=db)
    assert got == [*msgs, answer.to_param()] and got[-1]["reasoning_content"] == answer.reasoning_content
    assert (meta["id"], meta["model"], meta["system"], meta["title"], meta["preset"]) == (
        cid, MODEL, "You are terse.", "Name a colour", "conversation")
    created = meta["created"]

    more = [*got, *user("Another one")]
    assert save_conversation(cid, more, {"title": "Colours"}, path=db) == cid
    got2, meta2 = load_conversation(cid[:5], path=db)  # a unique prefix is enough
    assert got2 == more and meta2["title"] == "Colours" and meta2["created"] == created
    assert meta2["updated"] >= created and meta2["model"] == MODEL  # kept when not given again
    save_conversation(cid, more, path=db)
    assert load_conversation(cid, path=db)[1]["title"] == "Colours"  # an update keeps the title

    other = save_conversation(None, user("Second chat"), path=db)
    infos = list_conversations(path=db)
    assert [i.id for i in infos] == [other, cid] and infos[0].title == "Second chat"
    assert infos[1].messages == 4 and infos[1].title == "Colours"
    with pytest.raises(UsageError, match="no saved conversation"):
        load_conversation("zzzz", path=db)
    assert delete_conversation(other, path=db) and not delete_conversation(other, path=db)
    assert [i.id for i in list_conversations(path=db)] == [cid]


def test_ambiguous_conversation_prefix_is_an_error(tmp_path):
    db = tmp_path / "amb.db"
    save_conversation("abc111", user("one"), path=db)
    save_conversation("abc222", user("two"), path=db)
    with pytest.raises(UsageError, match="ambiguous"):
        load_conversation("abc", path=db)
    assert load_conversation("abc2", path=db)[0] == user("two")


async def test_conversations_work_with_request_logging_off(emulator, tmp_path, monkeypatch):
    monkeypatch.setenv("DSK_NO_LOGS", "1")
    db = tmp_path / "c.db"
    cid = save_conversation(None, user("still saved"), path=db)
    assert load_conversation(cid, path=db)[0] == user("still saved")


# -- search and statistics -------------------------------------------------------------------------


def _fill(path, rows):
    store = LogStore(LogConfig(path=path, batch_delay=0))
    for r in rows:
        store.put(lambda r=r: fake_row(**r))
    assert store.flush(10)
    store.close()


SEARCH_ROWS = [
    {"ts": 1.0, "prompt": "How do I retry a timeout?", "answer": "Use backoff with jitter."},
    {"ts": 2.0, "prompt": "Translate hello", "answer": "Bonjour",
     "reasoning": "French greeting, timeout-free"},
    {"ts": 3.0, "prompt": "100% sure? under_score", "answer": "Yes"},
    {"ts": 4.0, "prompt": "请把这句话翻译成英文", "answer": "Please translate this sentence into English"},
]


def test_search_with_fts5_and_with_the_like_fallback(tmp_path):
    fts, like = tmp_path / "fts.db", tmp_path / "like.db"
    conn = raw(like)  # a SQLite without FTS5: the search migration created nothing
    migrate(conn, MIGRATIONS[:2])
    conn.execute("INSERT INTO schema_migrations VALUES ('0003_requests_search', 0)")
    conn.close()
    _fill(fts, SEARCH_ROWS)
    _fill(like, SEARCH_ROWS)
    with Logs(fts) as a, Logs(like) as b:
        assert a.full_text and not b.full_text
        for logs in (a, b):
            assert [e.ts for e in logs.search("timeout")] == [2.0, 1.0]  # answer, reasoning; newest first
            assert [e.ts for e in logs.search("retry backoff")] == [1.0]  # every word, any column
            assert [e.ts for e in logs.search("bonjour")] == [2.0]  # case-insensitive
            assert logs.search("nothing-like-this") == [] and logs.search("   ") == []
            assert [e.ts for e in logs.search("翻译")] == [4.0]  # a word inside a run of Chinese
        assert "[retry]" in a.search("retry")[0].snippet
        assert [e.ts for e in a.search('"100')] == [3.0]  # query syntax is taken literally
        assert [e.ts for e in b.search("100%")] == [3.0] and b.search("under%") == []


def test_stats_percentiles_errors_cost_and_cache(tmp_path):
    path = tmp_path / "stats.db"
    rows = [{"ts": float(i), "latency": (i + 1) / 10, "ttft": 0.05, "stream": 1, "completion_tokens": 100,
             "prompt_tokens": 50, "cache_hit_tokens": 40, "cache_miss_tokens": 10, "cost": 0.5}
            for i in range(20)]
    rows += [{"ts": 30.0, "outcome": "error", "error": "RateLimitError", "status": 429, "latency": 9.0},
             {"ts": 31.0, "outcome": "error", "error": "RateLimitError", "status": 429},
             {"ts": 32.0, "outcome": "timeout", "error": "APITimeoutError"},
             {"ts": 33.0, "model": "deepseek-v4-pro", "latency": 2.0, "cache_hit": 1, "currency": "USD",
              "cost": 0.25},
             {"ts": 34.0, "path": "/models", "latency": 5.0}]  # not a model call
    _fill(path, rows)
    with Logs(path) as logs:
        (s,) = logs.stats()
        assert (s.requests, s.ok, s.errors) == (24, 21, 3)
        assert s.errors_by_class == {"RateLimitError": 2, "APITimeoutError": 1}
        lat = sorted([(i + 1) / 10 for i in range(20)] + [2.0])  # errors' latencies are not answers
        assert s.latency_p50 == pytest.approx(lat[10])
        assert lat[10] == pytest.approx(1.1) and s.latency_p95 == pytest.approx(lat[19])  # (21-1) x 0.95
        assert s.ttft_p50 == pytest.approx(0.05)
        # 100 tokens over latency - ttft; the median of 20 is the mean of the middle two
        assert s.tokens_per_s_p50 == pytest.approx((100 / 1.05 + 100 / 0.95) / 2)
        assert (s.prompt_tokens, s.cache_hit_tokens, s.completion_tokens) == (1000, 800, 2000)
        assert s.cache_hit_ratio == pytest.approx(0.8) and s.client_cache_hits == 1
        assert s.cost == {"CNY": pytest.approx(10.0), "USD": pytest.approx(0.25)}
        by = logs.stats(by="model")
        assert [(g.group, g.requests) for g in by] == [(MODEL, 23), ("deepseek-v4-pro", 1)]
        assert [g.requests for g in logs.stats(since=30.0)] == [4]
        assert logs.stats(model="deepseek-v4-pro")[0].latency_p95 == 2.0
    assert Logs(tmp_path / "missing.db").stats()[0].requests == 0
    assert not (tmp_path / "missing.db").exists()  # reading never creates the file


async def test_a_logged_client_and_the_reader_share_the_file(emulator, tmp_path):
    path = tmp_path / "live.db"
    step = LogStep(LogConfig(path=path))
    async with AsyncClient(api_key=KEY, base_url=emulator.base_url, steps=[step]) as c:
        await c.chat.completions.create(model=MODEL, messages=user("first"))
        await step.aclose()
        with Logs(path) as logs:  # a reader open while the writer keeps writing (WAL)
            assert logs.count() == 1
            await c.chat.completions.create(model=MODEL, messages=user("second"))
            await step.aclose()
            assert [e.prompt for e in logs.recent()] == ["second", "first"]
            assert json.loads(logs.recent()[0].messages) == user("second")


def test_the_search_index_follows_writes_and_deletes(tmp_path):
    path = tmp_path / "idx.db"
    store = LogStore(LogConfig(path=path, batch_delay=0))
    for i in range(1200):
        store.put(lambda i=i: fake_row(ts=float(i), prompt=f"row {i} {'even' if i % 2 == 0 else 'odd'}"))
    assert store.flush(30, index=True)
    conn = raw(path)
    assert conn.execute("SELECT upto FROM requests_fts_state").fetchone()[0] == 1200  # indexed by the writer
    for i in range(1200, 1210):  # written, not yet indexed
        store.put(lambda i=i: fake_row(ts=float(i), prompt=f"row {i} late"))
    assert store.flush(30)
    store.close()
    with Logs(path) as logs:
        assert logs.prune(600.0) == 600  # indexed rows leave the index with their rows
        assert len(logs.search("even", limit=10_000)) == 300
        assert [e.ts for e in logs.search("late", limit=100)] == [float(i) for i in range(1209, 1199, -1)]
    conn.execute("DELETE FROM requests WHERE ts >= 1205")  # indexed by the search above: leave the index too
    conn.execute("INSERT INTO requests_fts(requests_fts, rank) VALUES ('integrity-check', 1)")
    assert conn.execute("SELECT upto FROM requests_fts_state").fetchone()[0] == 1210
