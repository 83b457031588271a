"""The batch journal and the output file stay consistent: what is committed is exactly the file's
first `committed_offset` bytes, and recover() repairs whatever a crash left behind."""

from __future__ import annotations

import sqlite3
import subprocess
from decimal import Decimal

import pytest

from deepseek_kit import UsageError
from deepseek_kit._batch.journal import Journal
from deepseek_kit._batch.output import ResultSink, encode_line
from tests.helpers.tmpfs import tmpfs


def _line(i):
    return encode_line({"id": i, "response": {"n": i}})


def _run(tmp_path, ids, *, commit=True):
    out = tmp_path / "out.jsonl"
    j = Journal(tmp_path / "j.sqlite", output=out)
    sink = ResultSink(j, out, j.recover().offset)
    for i in ids:
        assert j.claim(str(i), i, i)[0] in ("new", "pending")
    j.commit(sink.offset)  # the claims reached the journal (a periodic commit)
    for i in ids:
        sink.result(0, str(i), _line(i), Decimal("0.001"), 3, 4)
    if commit:
        sink.close()
    else:
        sink._file.flush()  # the lines reached the file, the journal commit did not happen
        sink._file.close()
    j.close()
    return out


def test_uncommitted_lines_and_torn_tail_are_cut_on_resume(tmp_path):
    out = _run(tmp_path, [1, 2, 3])
    committed = out.read_bytes()
    _run(tmp_path, [4, 5], commit=False)
    with open(out, "ab") as f:
        f.write(b'{"id": 6, "resp')  # a torn write
    assert out.read_bytes() != committed
    j = Journal(tmp_path / "j.sqlite", output=out)
    rec = j.recover()
    assert rec.offset == len(committed) and rec.truncated_bytes > 0
    assert out.read_bytes() == committed
    assert j.status("4") == "pending" and j.status("3") == "done"
    t = j.totals()
    assert (t.done, t.pending, t.cost, t.prompt_tokens) == (3, 2, Decimal("0.003"), 9)
    j.close()


def test_output_shorter_than_journal_puts_lost_results_back(tmp_path):
    out = _run(tmp_path, [1, 2, 3])
    keep = len(_line(1))
    with open(out, "r+b") as f:
        f.truncate(keep + 5)  # e.g. a power loss without fsync
    j = Journal(tmp_path / "j.sqlite", output=out)
    rec = j.recover()
    assert rec.offset == keep and rec.lost_results == 2
    assert out.read_bytes() == _line(1)
    assert [j.status(k) for k in ("1", "2", "3")] == ["done", "pending", "pending"]
    j.close()


def test_duplicates_are_per_run_and_runs_are_counted(tmp_path):
    out = tmp_path / "o.jsonl"
    j = Journal(tmp_path / "j.sqlite", output=out)
    assert j.claim("a", "a", 1) == ("new", 1)
    assert j.claim("a", "a", 5) == ("duplicate", 1)
    j.commit(0)
    j.close()
    j = Journal(tmp_path / "j.sqlite", output=out)
    assert j.run == 2
    assert j.claim("a", "a", 1) == ("pending", 1)  # seen by run 1, never finished
    j.failed("a", "BadRequestError", "bad", 400)
    j.problem(3, None, "InputError", "not valid JSON")
    j.commit(0)
    assert list(j.failures()) == [
        {"id": "a", "line": 1, "error": "BadRequestError", "message": "bad", "status": 400},
        {"id": None, "line": 3, "error": "InputError", "message": "not valid JSON"}]
    j.close()


def test_journal_belongs_to_one_output(tmp_path):
    Journal(tmp_path / "j.sqlite", output=tmp_path / "a.jsonl").close()
    with pytest.raises(UsageError, match="journal of"):
        Journal(tmp_path / "j.sqlite", output=tmp_path / "b.jsonl")


def test_output_changed_outside_is_refused(tmp_path):
    out = _run(tmp_path, [1, 2])
    data = out.read_bytes()
    out.write_bytes(data[:-1] + b"X" + b"more")  # same length+, but no line end where expected
    j = Journal(tmp_path / "j.sqlite", output=out)
    with pytest.raises(UsageError, match="does not match its journal"):
        j.recover()
    j.close()


def test_not_a_journal(tmp_path):
    bad = tmp_path / "j.sqlite"
    bad.write_text("hello, not sqlite" * 100)
    with pytest.raises(UsageError, match="not a usable batch journal"):
        Journal(bad, output=tmp_path / "o.jsonl")


def test_one_run_per_journal_at_a_time(tmp_path):
    first = Journal(tmp_path / "j.sqlite", output=tmp_path / "o.jsonl")
    with pytest.raises(UsageError, match="in use by another dsk batch run"):
        Journal(tmp_path / "j.sqlite", output=tmp_path / "o.jsonl")
    first.close()
    Journal(tmp_path / "j.sqlite", output=tmp_path / "o.jsonl").close()


def test_missing_directory_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such directory"):
        Journal(tmp_path / "j.sqlite", output=tmp_path / "nope" / "o.jsonl")


def test_a_full_disk_at_the_final_flush_names_the_output(tmp_path):
    """The last lines sit in the output's buffer until the final commit; when that flush hits a full
    disk, the error names the output. (Closing the file flushed again and raised a second ENOSPC
    naming no file, which replaced the first: the user read "No space left on device" alone.)"""
    with tmpfs(tmp_path / "tiny", "16k") as mnt:
        out = mnt / "out.jsonl"
        jr = Journal(tmp_path / "j.sqlite", output=out)
        sink = ResultSink(jr, out, 0, durable=False)
        line = b'{"id":"x","answer":"' + b"a" * 980 + b'"}\n'
        for i in range(40):  # 40 KB: stays in the 64 KB buffer, more than the 16 KB disk
            sink.result(i, f"id-{i}", line, Decimal(0), 1, 1)
        with pytest.raises(OSError) as info:
            sink.close()
        assert info.value.filename == str(out) and "No space left" in str(info.value)
        jr.close()


def test_a_journal_transaction_rolled_back_by_a_full_disk_is_never_committed_over(tmp_path):
    """SQLite rolls the open transaction back by itself when the journal's disk fills (SQLITE_FULL):
    the claims since the last commit are gone. The final commit of the stopping run used to go on
    in autocommit mode and record `committed_offset` over the lines of those ids, so the rerun
    answered them again (a CI run of test_batch_faults saw 178 ids twice). Now that commit is
    refused and the rerun cuts the file back to the last real commit."""
    with tmpfs(tmp_path / "tiny", "64k") as mnt:
        out = tmp_path / "out.jsonl"  # on the big disk: only the journal runs out of space
        jr = Journal(mnt / "j.sqlite", output=out)
        sink = ResultSink(jr, out, jr.recover().offset, durable=False)
        for i in range(10):
            assert jr.claim(str(i), i, i)[0] == "new"
        jr.commit(sink.offset)
        for i in range(5):
            sink.result(0, str(i), _line(i), Decimal("0.001"), 3, 4)
        sink.commit()
        committed = out.read_bytes()
        for i in range(5, 10):  # answered, their lines in the file's buffer, not committed yet
            sink.result(0, str(i), _line(i), Decimal("0.001"), 3, 4)
        with pytest.raises(sqlite3.OperationalError, match="full"):
            for i in range(10, 100_000):  # the run reads on: its claims fill the journal's disk
                jr.claim(f"{i}-{'x' * 200}", i, i)
        with pytest.raises(OSError, match="lost its uncommitted results") as info:
            sink.close()  # the runner's close on the way out (it keeps the first error)
        assert info.value.filename == str(mnt / "j.sqlite")
        jr.close()

        subprocess.run(["mount", "-o", "remount,size=20m", str(mnt)], check=True)
        jr = Journal(mnt / "j.sqlite", output=out)
        rec = jr.recover()
        assert rec.offset == len(committed) and out.read_bytes() == committed
        assert [jr.status(str(i)) for i in range(10)] == ["done"] * 5 + ["pending"] * 5
        assert jr.totals().done == 5
        jr.close()
