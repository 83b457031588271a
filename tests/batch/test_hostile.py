"""run_batch against hostile or careless inputs (docs/attack-round-2026-12.md, K1 K2 K4 K5 K6 and the batch
parts of K9): a huge concurrency, an output that is a hard link of the input, ids and lines no record may
crash the run with, an empty journal beside a finished output, an over-long line."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from deepseek_kit import AsyncClient, UsageError
from deepseek_kit._batch.inputs import count_records, iter_items
from deepseek_kit._batch.run import MAX_CONCURRENCY, run_batch


def _write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records),
                    encoding="utf-8")
    return path


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _client(emu, **kw):
    return AsyncClient(api_key="sk-batch-hostile", base_url=emu.base_url, **kw)


def _run(client, *args, **kw):
    return run_batch(client, *args, model="deepseek-flash", **kw)


def _items(n):
    return [{"id": f"q{i}", "prompt": f"question {i}", "thinking": False} for i in range(n)]


# -- K1: concurrency -----------------------------------------------------------------------------


async def test_concurrency_is_capped_and_never_more_workers_than_records(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=2)
    src = _write(tmp_path / "in.jsonl", _items(3))
    async with _client(emu) as c:
        with pytest.raises(UsageError, match=f"at most {MAX_CONCURRENCY:,}"):
            await _run(c, src, tmp_path / "o.jsonl", concurrency=MAX_CONCURRENCY + 1)
        created = []  # every task the run creates, seen through asyncio's task-factory hook
        loop = asyncio.get_running_loop()

        def factory(loop, coro, **kw):
            created.append(coro.__qualname__)
            return asyncio.Task(coro, loop=loop, **kw)

        loop.set_task_factory(factory)
        try:
            r = await _run(c, src, tmp_path / "out.jsonl", concurrency=MAX_CONCURRENCY)
        finally:
            loop.set_task_factory(None)
    assert r.done == 3
    workers = created.count("_Runner.work")
    assert 1 <= workers <= 3, workers


# -- K2: hard links ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["output", "journal", "failures"])
async def test_a_hard_link_of_the_input_is_refused_and_the_input_kept(emulator_factory, tmp_path, which):
    emu = emulator_factory(default_tokens=2)
    src = _write(tmp_path / "in.jsonl", _items(2))
    before = src.read_bytes()
    link = tmp_path / "link"
    os.link(src, link)
    kw = {"output": tmp_path / "out.jsonl"}
    kw[which] = link
    async with _client(emu) as c:
        with pytest.raises(UsageError, match="same file"):
            await _run(c, src, kw.pop("output"), overwrite=True, **kw)
    assert src.read_bytes() == before


async def test_a_hard_link_between_output_and_journal_is_refused(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=2)
    src = _write(tmp_path / "in.jsonl", _items(2))
    out = tmp_path / "out.jsonl"
    out.write_text("")
    os.link(out, tmp_path / "j.sqlite")
    async with _client(emu) as c:
        with pytest.raises(UsageError, match="same file"):
            await _run(c, src, out, journal=tmp_path / "j.sqlite", overwrite=True)


# -- K4: records that must not crash the run ------------------------------------------------------


async def test_huge_ids_and_deep_nesting_are_per_record_problems(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=2)
    deep = "[" * 5000 + "]" * 5000
    src = _write(tmp_path / "in.jsonl", [
        '{"id": 99999999999999999999999, "prompt": "hi"}',
        '{"id": -9223372036854775809, "prompt": "hi"}',
        '{"id": "d", "prompt": "hi", "metadata": ' + deep + '}',
        {"id": 9223372036854775807, "prompt": "max int64 is fine", "thinking": False},
        {"id": "ok", "prompt": "fine", "thinking": False},
    ])
    problems = []
    async with _client(emu) as c:
        r = await _run(c, src, tmp_path / "out.jsonl", on_problem=problems.append)
    assert (r.done, r.invalid) == (2, 3)
    msgs = {p.line: p.message for p in problems}
    assert "64-bit" in msgs[1] and "64-bit" in msgs[2]
    assert msgs[3].startswith("not valid JSON") and "nested" in msgs[3]
    fails = _lines(tmp_path / "out.failures.jsonl")
    assert [f["line"] for f in fails] == [1, 2, 3]


def test_deeply_nested_csv_cell_is_a_problem_of_that_record(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,prompt,temperature\n1,hi," + "[" * 5000 + "]" * 5000 + "\n2,ok,0.5\n")
    got = list(iter_items(src))
    assert got[0].message.startswith("column 'temperature': not valid JSON")
    assert got[1].id == "2" and got[1].params["temperature"] == 0.5


# -- K5: an empty journal is no journal ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["empty", "schemaless"])
async def test_empty_journal_beside_a_finished_output_is_refused(emulator_factory, tmp_path, kind):
    emu = emulator_factory(default_tokens=2)
    src = _write(tmp_path / "in.jsonl", _items(5))
    out = tmp_path / "out.jsonl"
    async with _client(emu) as c:
        await _run(c, src, out)
        finished = out.read_bytes()
        journal = tmp_path / "out.journal.sqlite"
        journal.unlink()
        if kind == "empty":
            journal.write_bytes(b"")
        else:
            import sqlite3
            db = sqlite3.connect(journal)
            db.execute("CREATE TABLE unrelated (x)")
            db.commit()
            db.close()
        requests = emu.state.total_requests
        with pytest.raises(UsageError, match="has no journal"):
            await _run(c, src, out)
        assert out.read_bytes() == finished and emu.state.total_requests == requests
        r = await _run(c, src, out, overwrite=True)  # the documented way out still works
    assert r.done_now == 5 and len(_lines(out)) == 5


# -- K6: record size -----------------------------------------------------------------------------


def test_an_over_long_line_is_a_problem_found_in_bounded_chunks(tmp_path):
    src = tmp_path / "in.jsonl"
    with open(src, "w") as f:
        f.write('{"id": 1, "prompt": "a"}\n')
        f.write('{"id": 2, "prompt": "' + "x" * 300_000 + '"}\n')
        f.write('{"id": 3, "prompt": "' + "y" * 90_000 + '"}\n')
        f.write("\n   \n")
        f.write('{"id": 4, "prompt": "' + "z" * 300_000)  # no final newline, still too long
    got = list(iter_items(src, max_record_bytes=100_000))
    assert [getattr(g, "id", None) for g in got] == [1, None, 3, None]
    assert got[1].line == 2 and "longer than 100,000 bytes" in got[1].message
    assert got[3].line == 6
    assert count_records(src) == 4


def test_csv_unterminated_quote_is_reported_not_swallowed(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text('id,prompt\n1,"unterminated\n2,ok\n3,fine\n')
    got = list(iter_items(src))
    assert len(got) == 1 and "unexpected end of data" in got[0].message
    src.write_text('id,prompt\n1,"x"y\n2,ok\n')
    got = list(iter_items(src))
    assert got[0].line == 2 and "CSV" in got[0].message and got[1].id == "2"


def test_header_injection_and_bad_header_names_are_input_problems(tmp_path):
    src = _write(tmp_path / "in.jsonl", [
        {"id": 1, "prompt": "a", "extra_headers": {"X-A": "b\r\nInjected: 1"}},
        {"id": 2, "prompt": "a", "extra_headers": {"X Bad": "x"}},
        {"id": 3, "prompt": "a", "extra_headers": {"X-Ok": "fine; with spaces"}},
    ])
    got = list(iter_items(src))
    assert "control character" in got[0].message and "not a valid header name" in got[1].message
    assert got[2].params["extra_headers"] == {"X-Ok": "fine; with spaces"}


def test_csv_header_with_a_repeated_column_is_refused(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,id,prompt\n1,2,hi\n3,4,there\n")
    got = list(iter_items(src))
    assert len(got) == 1 and got[0].line == 1 and "repeats the column 'id'" in got[0].message


async def test_output_deleted_during_the_run_stops_it(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=2, queue_delay=0.05)
    src = _write(tmp_path / "in.jsonl", _items(400))
    out = tmp_path / "out.jsonl"

    def delete_once(progress):
        if progress.done_now >= 20 and out.exists():
            out.unlink()

    async with _client(emu) as c:
        with pytest.raises(OSError, match="deleted during the run") as info:
            await _run(c, src, out, concurrency=4, on_progress=delete_once, progress_interval=0.05)
        assert info.value.filename == str(out)
        r = await _run(c, src, out)  # a rerun asks the lost answers again, exactly once
    assert r.lost > 0 and r.done == 400
    ids = [x["id"] for x in _lines(out)]
    assert len(ids) == len(set(ids)) == 400


@pytest.mark.parametrize("which", ["output", "journal", "failures"])
async def test_a_symlink_loop_is_a_usage_error(emulator_factory, tmp_path, which):
    emu = emulator_factory(default_tokens=2)
    src = _write(tmp_path / "in.jsonl", _items(1))
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    kw = {"output": tmp_path / "out.jsonl", which: loop}
    async with _client(emu) as c:
        with pytest.raises(UsageError, match="symlink loop"):
            await _run(c, src, kw.pop("output"), **kw)
