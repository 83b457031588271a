"""Batch reruns notice changed input (docs/batch.md#reruns-and-changed-input): the journal keeps a hash of
each id's request; a rerun with a changed request for an answered id stops before any request, or with
redo_changed re-asks exactly those and replaces their lines, exactly once, crash-safely. Schema-1
journals (no hashes) migrate with "unknown", never "changed". Emulator answers are marked
`"synthetic": true` (docs/emulator.md#nothing-it-makes-passes-for-deepseek)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading

import pytest
from aiohttp import web

from deepseek_kit import AsyncClient, UsageError
from deepseek_kit._batch.journal import Journal
from deepseek_kit._batch.run import ChangedInputError, run_batch


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _items(n, prompt="question"):
    return [{"id": f"q{i}", "prompt": f"{prompt} {i}", "thinking": False} for i in range(n)]


def _client(emu):
    return AsyncClient(api_key="sk-batch-changed", base_url=emu.base_url)


def _run(client, *args, **kw):
    kw.setdefault("model", "deepseek-flash")
    return run_batch(client, *args, **kw)


async def test_changed_requests_stop_the_rerun_before_any_request(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=3)
    items = _items(10)
    src = _write(tmp_path / "in.jsonl", items)
    out = tmp_path / "out.jsonl"
    async with _client(emu) as c:
        await _run(c, src, out)
        before, requests = out.read_bytes(), emu.state.total_requests
        for i in (2, 5, 7, 8, 9, 1):
            items[i]["prompt"] += " (edited)"
        items.append({"id": "new", "prompt": "a new one", "thinking": False})
        _write(src, items)
        with pytest.raises(ChangedInputError) as info:
            await _run(c, src, out)
        assert emu.state.total_requests == requests and out.read_bytes() == before
        msg = str(info.value)
        assert info.value.count == 6 and "\n" not in msg
        assert msg.startswith("6 ids of the input changed since") and "(q1, q2, q5, q7, q8, ...)" in msg
        assert "new output" in msg and "--redo-changed" in msg
        # Defaults are part of the request: another model changes every answered id.
        with pytest.raises(ChangedInputError, match=r"^10 ids"):
            await _run(c, _write(tmp_path / "same.jsonl", _items(10)), out, model="deepseek-v4-pro")
        # Unchanged requests and new ids rerun as before.
        r = await _run(c, _write(tmp_path / "plus.jsonl", [*_items(10), {"id": "z", "prompt": "z"}]),
                       out, defaults={"thinking": False})
    assert (r.done_now, r.skipped) == (1, 10)


async def test_redo_changed_replaces_exactly_those_lines_once(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=3)
    items = _items(12)
    src = _write(tmp_path / "in.jsonl", items)
    out = tmp_path / "out.jsonl"
    async with _client(emu) as c:
        await _run(c, src, out, concurrency=4)
        old = {x["id"]: x for x in _lines(out)}
        raw = {json.loads(line)["id"]: line for line in out.read_bytes().splitlines(keepends=True)}
        for i in (0, 6, 11):
            items[i]["prompt"] = f"another question {i}"
        items.insert(0, items.pop(6))  # reordered too: lines refer to the input of the run
        _write(src, items)
        requests = emu.state.total_requests
        r = await _run(c, src, out, redo_changed=True)
        assert emu.state.total_requests - requests == 3
        assert (r.done, r.done_now, r.skipped, r.redone) == (12, 3, 9, 3)
        lines = _lines(out)
        assert sorted(x["id"] for x in lines) == sorted(f"q{i}" for i in range(12))
        kept = [x for x in lines if x["id"] not in ("q0", "q6", "q11")]
        assert [x["id"] for x in kept] == [k for k in old if k not in ("q0", "q6", "q11")]
        kept_bytes = b"".join(raw[x["id"]] for x in kept)
        assert out.read_bytes().startswith(kept_bytes)  # kept lines untouched, in order
        redone = {x["id"]: x for x in lines[len(kept):]}
        assert redone["q6"]["line"] == 1 and redone["q0"]["line"] == 2
        assert r.cost == sum(__import__("decimal").Decimal(x["cost"]) for x in lines)
        again = await _run(c, src, out)  # and the journal agrees with the new file
    assert (again.done_now, again.skipped) == (0, 12)


async def test_redo_is_crash_safe_around_the_rename(emulator_factory, tmp_path, monkeypatch):
    emu = emulator_factory(default_tokens=3)
    items = _items(6)
    src = _write(tmp_path / "in.jsonl", items)
    out = tmp_path / "out.jsonl"
    async with _client(emu) as c:
        await _run(c, src, out)
    j = Journal(tmp_path / "out.journal.sqlite", output=out)
    j.recover()
    j.mark_changed([("q3", "0" * 32)])

    def crash(*_a):
        raise KeyboardInterrupt  # the process dies between the journal commit and the rename

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        j.drop_changed()
    j.close()
    monkeypatch.undo()
    assert len(_lines(out)) == 6  # the old output still stands
    j = Journal(tmp_path / "out.journal.sqlite", output=out)
    j.recover()  # finishes the rewrite the committed journal describes
    assert [x["id"] for x in _lines(out)] == [f"q{i}" for i in (0, 1, 2, 4, 5)]
    assert j.status("q3") == "pending" and j.committed_offset == out.stat().st_size
    assert not (tmp_path / "out.jsonl.redo.tmp").exists()
    j.close()


async def test_schema_1_journal_migrates_with_unknown_hashes(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=3)
    items = _items(4)
    src = _write(tmp_path / "in.jsonl", items)
    out = tmp_path / "out.jsonl"
    async with _client(emu) as c:
        await _run(c, src, out)
    db = sqlite3.connect(tmp_path / "out.journal.sqlite")  # what dsk of schema 1 left behind
    db.execute("ALTER TABLE items DROP COLUMN req_hash")
    db.execute("ALTER TABLE items DROP COLUMN new_hash")
    db.execute("UPDATE meta SET value='1' WHERE key='version'")
    db.commit()
    db.close()
    items[1]["prompt"] = "edited"
    _write(src, items)
    async with _client(emu) as c:
        r = await _run(c, src, out)  # unknown is not changed: nothing to redo, nothing refused
    assert (r.done_now, r.skipped) == (0, 4)
    db = sqlite3.connect(tmp_path / "out.journal.sqlite")
    assert db.execute("SELECT value FROM meta WHERE key='version'").fetchone()[0] == 2
    db.close()


def test_journal_of_a_newer_version_is_refused(tmp_path):
    out = tmp_path / "out.jsonl"
    Journal(tmp_path / "j.sqlite", output=out).close()
    db = sqlite3.connect(tmp_path / "j.sqlite")
    db.execute("UPDATE meta SET value=3 WHERE key='version'")
    db.commit()
    db.close()
    with pytest.raises(UsageError, match="written by a newer dsk"):
        Journal(tmp_path / "j.sqlite", output=out)


async def test_iterable_input_reports_a_changed_id_per_record(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=3)
    out = tmp_path / "out.jsonl"
    async with _client(emu) as c:
        await _run(c, _items(3), out)
        problems = []
        r = await _run(c, [*_items(2), {"id": "q2", "prompt": "edited", "thinking": False}], out,
                       on_problem=problems.append)
        with pytest.raises(UsageError, match="file input"):
            await _run(c, _items(3), out, redo_changed=True)
    assert [(p.line, p.kind) for p in problems] == [(3, "changed")] and r.done_now == 0


# -- synthetic answers ---------------------------------------------------------------------------


def _upstream(fingerprints):
    """A DeepSeek-shaped server whose system_fingerprint comes from the prompt's mapping."""

    async def chat(request):
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        return web.json_response({
            "id": "x", "object": "chat.completion", "created": 1, "model": body["model"],
            "system_fingerprint": fingerprints[prompt],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    app = web.Application()
    app.router.add_post("/chat/completions", chat)
    return app


@pytest.fixture
def fingerprint_server():
    import asyncio

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_upstream({"emu": "fp_dsk_emulator_0", "real": "fp_abc_prod0820"}))
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.SockSite(runner, sock).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.run_until_complete(runner.cleanup())
    loop.close()


async def test_emulator_answers_are_marked_synthetic(fingerprint_server, tmp_path):
    out = tmp_path / "out.jsonl"
    async with AsyncClient(api_key="sk-fp", base_url=fingerprint_server, max_retries=0) as c:
        r = await _run(c, [{"id": "a", "prompt": "emu"}, {"id": "b", "prompt": "real"}], out)
    assert r.done == 2
    lines = {x["id"]: x for x in _lines(out)}
    assert lines["a"]["synthetic"] is True
    assert "synthetic" not in lines["b"]


async def test_the_emulator_itself_is_marked_synthetic(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=3)
    async with _client(emu) as c:
        await _run(c, _items(1), tmp_path / "out.jsonl")
    line = _lines(tmp_path / "out.jsonl")[0]
    assert line["response"]["system_fingerprint"].startswith("fp_dsk_emulator")
    assert line["synthetic"] is True


async def test_an_output_cut_short_between_runs_is_reported_and_refilled(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=3)
    src = _write(tmp_path / "in.jsonl", _items(10))
    out = tmp_path / "out.jsonl"
    async with _client(emu) as c:
        await _run(c, src, out)
        data = out.read_bytes()
        cut = data.index(b"\n", len(data) // 2) + 1
        out.write_bytes(data[:cut])  # the user cut it at a line end
        kept = data[:cut].count(b"\n")
        r = await _run(c, src, out)
    assert (r.lost, r.done_now, r.redone) == (10 - kept, 10 - kept, 0)
    ids = [x["id"] for x in _lines(out)]
    assert sorted(ids) == sorted(f"q{i}" for i in range(10))


async def test_redo_refuses_an_output_whose_lines_moved_by_hand(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=3)
    items = _items(6)
    src = _write(tmp_path / "in.jsonl", items)
    out = tmp_path / "out.jsonl"
    async with _client(emu) as c:
        await _run(c, src, out)
        lines = out.read_bytes().splitlines(keepends=True)
        # Same total size, but the boundary between lines 2 and 3 moved: offsets lie now.
        lines[2], lines[3] = lines[2][:-1] + b" \n", lines[3][:-3] + b"}\n"
        out.write_bytes(b"".join(lines))
        edited = out.read_bytes()
        items[4]["prompt"] = "changed"
        _write(src, items)
        with pytest.raises(UsageError, match="does not match its journal"):
            await _run(c, src, out, redo_changed=True)
    assert out.read_bytes() == edited and not (tmp_path / "out.jsonl.redo.tmp").exists()


async def test_redo_changed_and_retry_failed_are_not_combined(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=3)
    src = _write(tmp_path / "in.jsonl", _items(2))
    async with _client(emu) as c:
        await _run(c, src, tmp_path / "out.jsonl")
        with pytest.raises(UsageError, match="cannot be combined"):
            await _run(c, src, tmp_path / "out.jsonl", redo_changed=True, retry_failed=True)


async def test_a_later_duplicate_with_another_request_is_not_a_change(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=3)
    items = _items(3)
    src = _write(tmp_path / "in.jsonl", items)
    async with _client(emu) as c:
        await _run(c, src, tmp_path / "out.jsonl")
        _write(src, [*items, {"id": "q1", "prompt": "something else", "thinking": False}])
        problems = []
        r = await _run(c, src, tmp_path / "out.jsonl", on_problem=problems.append)
    assert (r.done_now, r.skipped) == (0, 3)
    assert [(p.line, p.kind) for p in problems] == [(4, "duplicate")]


async def test_changed_ids_with_control_characters_stay_on_one_line(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=3)
    items = [{"id": "a\nb\x1b[2J", "prompt": "x", "thinking": False}]
    src = _write(tmp_path / "in.jsonl", items)
    async with _client(emu) as c:
        await _run(c, src, tmp_path / "out.jsonl")
        items[0]["prompt"] = "y"
        _write(src, items)
        with pytest.raises(ChangedInputError) as info:
            await _run(c, src, tmp_path / "out.jsonl")
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)
    assert "('a\\nb\\x1b[2J')" in str(info.value)
