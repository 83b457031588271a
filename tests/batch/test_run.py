"""run_batch against the emulator: one result line per id, failures and --retry-failed, input order,
the cost ceiling, fatal errors, defaults. Per-item faults ride on each item's `extra_headers`."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from deepseek_kit import AsyncClient, InsufficientBalanceError, UsageError
from deepseek_kit._batch.run import run_batch


def _items(n, **extra):
    return [{"id": f"q{i}", "prompt": f"question {i}", **extra} for i in range(n)]


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _client(emu, **kw):
    return AsyncClient(api_key="sk-batch-test", base_url=emu.base_url, **kw)


async def test_one_result_line_per_id_and_a_rerun_does_nothing(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=4)
    src = _write(tmp_path / "in.jsonl", _items(40, thinking=False))
    out = tmp_path / "out.jsonl"
    async with _client(emu) as c:
        r = await run_batch(c, src, out, model="deepseek-flash", concurrency=8)
        assert (r.done, r.done_now, r.failed, r.invalid, r.pending, r.total) == (40, 40, 0, 0, 0, 40)
        assert r.complete and r.failures is None and r.cost > 0
        lines = _lines(out)
        assert sorted(x["id"] for x in lines) == sorted(f"q{i}" for i in range(40))
        for x in lines:
            assert x["line"] == int(x["id"][1:]) + 1
            assert x["response"]["choices"][0]["message"]["content"]
            assert Decimal(x["cost"]) > 0
        assert sum(Decimal(x["cost"]) for x in lines) == r.cost
        before = out.read_bytes()
        requests = emu.state.total_requests
        again = await run_batch(c, src, out, model="deepseek-flash")
    assert (again.done, again.done_now, again.skipped) == (40, 0, 40)
    assert out.read_bytes() == before and emu.state.total_requests == requests


async def test_failures_file_and_retry_failed(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=4)
    items = _items(12, thinking=False)
    items[3]["extra_headers"] = {"X-DSK-Emulate": "status=500;times=1;key=three"}
    items[7]["extra_headers"] = {"X-DSK-Emulate": "status=503;times=1;key=seven"}
    items[9]["temperature"] = 9  # out of range: the emulator answers 400 every time
    src = _write(tmp_path / "in.jsonl", items)
    out = tmp_path / "out.jsonl"
    async with _client(emu, max_retries=0) as c:
        r = await run_batch(c, src, out, model="deepseek-flash", concurrency=4)
        assert (r.done, r.failed, r.failed_now) == (9, 3, 3)
        assert r.failures == tmp_path / "out.failures.jsonl"
        fails = _lines(r.failures)
        assert [(f["id"], f["line"], f["error"], f.get("status")) for f in fails] == [
            ("q3", 4, "InternalServerError", 500), ("q7", 8, "ServiceUnavailableError", 503),
            ("q9", 10, "BadRequestError", 400)]
        assert all(f["message"] for f in fails)
        # a plain rerun leaves failed ids alone
        again = await run_batch(c, src, out, model="deepseek-flash")
        assert (again.done_now, again.failed_now, again.failed) == (0, 0, 3)
        retry = await run_batch(c, src, out, model="deepseek-flash", retry_failed=True)
    assert (retry.done_now, retry.failed_now, retry.done, retry.failed) == (2, 1, 11, 1)
    assert [f["id"] for f in _lines(retry.failures)] == ["q9"]
    ids = [x["id"] for x in _lines(out)]
    assert len(ids) == len(set(ids)) == 11 and "q9" not in ids


async def test_ordered_output_follows_input_order(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=2)
    items = _items(30, thinking=False)
    for it in items[:3]:  # the first answers come last
        it["extra_headers"] = {"X-DSK-Emulate": "delay_headers=0.3"}
    src = _write(tmp_path / "in.jsonl", items)
    want = [it["id"] for it in items]
    async with _client(emu) as c:
        plain = await run_batch(c, src, tmp_path / "plain.jsonl", model="deepseek-flash", concurrency=6)
        ordered = await run_batch(c, src, tmp_path / "ordered.jsonl", model="deepseek-flash",
                                  concurrency=6, ordered=True, reorder_window=8)
    assert plain.done == ordered.done == 30
    assert [x["id"] for x in _lines(tmp_path / "plain.jsonl")] != want  # completion order
    assert [x["id"] for x in _lines(tmp_path / "ordered.jsonl")] == want


async def test_max_cost_stops_without_new_requests_then_resumes(emulator_factory, tmp_path):
    emu = emulator_factory()
    src = _write(tmp_path / "in.jsonl", _items(200))
    out = tmp_path / "out.jsonl"
    ceiling = Decimal("0.005")
    concurrency = 4
    async with _client(emu) as c:
        r = await run_batch(c, src, out, model="deepseek-flash", concurrency=concurrency,
                            max_cost=ceiling)
        assert r.stopped == "max_cost" and not r.complete
        lines = _lines(out)  # completion order
        costs = [Decimal(x["cost"]) for x in lines]
        assert sum(costs) == r.cost >= ceiling
        reached = next(i for i in range(len(costs)) if sum(costs[: i + 1]) >= ceiling)
        # after the answer that reached the ceiling, only requests already in flight finished
        assert len(lines) - 1 - reached <= concurrency - 1
        assert r.done == len(lines) < 200 and r.not_run == 200 - len(lines)
        # the ceiling covers the job: the same ceiling again starts nothing
        same = await run_batch(c, src, out, model="deepseek-flash", max_cost=ceiling)
        assert same.stopped == "max_cost" and same.done_now == 0
        rest = await run_batch(c, src, out, model="deepseek-flash", concurrency=8)
    assert rest.complete and rest.done == 200
    ids = [x["id"] for x in _lines(out)]
    assert len(ids) == len(set(ids)) == 200


async def test_insufficient_balance_stops_the_run_and_leaves_ids_pending(emulator_factory, tmp_path):
    poor = emulator_factory(balance={"sk-batch-test": 0}, default_granted=0, default_topped_up=0)
    src = _write(tmp_path / "in.jsonl", _items(20, thinking=False))
    out = tmp_path / "out.jsonl"
    async with _client(poor) as c:
        r = await run_batch(c, src, out, model="deepseek-flash", concurrency=4)
    assert r.stopped == "fatal" and isinstance(r.fatal, InsufficientBalanceError)
    assert r.failed == 0 and r.done == 0
    assert poor.state.total_requests <= 4  # 402 is never retried, and nothing new is sent
    rich = emulator_factory(default_tokens=2)
    async with _client(rich) as c:
        r2 = await run_batch(c, src, out, model="deepseek-flash")
    assert r2.complete and r2.done == 20


async def test_iterable_input_defaults_system_and_metadata(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=2)
    records = [{"id": 1, "prompt": "a", "metadata": {"row": 1}},
               {"id": 2, "messages": [{"role": "system", "content": "own"}, {"role": "user", "content": "b"}],
                "model": "deepseek-v4-pro"},
               {"id": 3}]
    problems, progress = [], []
    out = tmp_path / "out.jsonl"
    async with _client(emu) as c:
        r = await run_batch(c, records, out, model="deepseek-flash", system="be brief",
                            defaults={"thinking": False, "max_tokens": 50},
                            on_problem=problems.append, on_progress=progress.append,
                            progress_interval=0.01)
    assert (r.done, r.invalid) == (2, 1)
    assert [(p.line, p.kind) for p in problems] == [(3, "malformed")]
    lines = {x["id"]: x for x in _lines(out)}
    assert lines[1]["metadata"] == {"row": 1} and "metadata" not in lines[2]
    bodies = {b["messages"][-1]["content"]: b for b in emu.state.recent_bodies}
    assert bodies["a"]["messages"][0] == {"role": "system", "content": "be brief"}
    assert bodies["a"]["thinking"] == {"type": "disabled"} and bodies["a"]["max_tokens"] == 50
    assert bodies["a"]["model"] == "deepseek-flash"
    assert bodies["b"]["messages"][0]["content"] == "own" and bodies["b"]["model"] == "deepseek-v4-pro"
    assert progress and progress[-1].done == 2 and progress[-1].invalid == 1
    assert [p.done for p in progress] == sorted(p.done for p in progress)


async def test_existing_output_without_journal_is_not_overwritten(emulator, tmp_path):
    src = _write(tmp_path / "in.jsonl", _items(2, thinking=False))
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    async with _client(emulator) as c:
        with pytest.raises(UsageError, match="has no journal"):
            await run_batch(c, src, out, model="deepseek-flash")
        assert out.read_text() == "precious\n"
        with pytest.raises(UsageError, match="nothing to retry"):
            await run_batch(c, src, tmp_path / "other.jsonl", retry_failed=True)
        with pytest.raises(UsageError, match="no such input"):
            await run_batch(c, tmp_path / "missing.jsonl", tmp_path / "x.jsonl")
        r = await run_batch(c, src, out, model="deepseek-flash", overwrite=True)
    assert r.done == 2 and len(_lines(out)) == 2


async def test_output_must_not_be_the_input_or_the_journal(emulator, tmp_path):
    src = _write(tmp_path / "in.jsonl", _items(2))
    async with _client(emulator) as c:
        with pytest.raises(UsageError, match="different files"):
            await run_batch(c, src, src, overwrite=True)
        with pytest.raises(UsageError, match="different files"):
            await run_batch(c, src, tmp_path / "o.jsonl", failures=tmp_path / "o.jsonl")
    assert len(src.read_text().splitlines()) == 2
