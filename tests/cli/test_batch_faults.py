"""`dsk batch` as a subprocess under faults (docs/attack-round-2026-12.md, K1 K2 K3 K9): a full disk (a real
200 KB tmpfs), a huge -c, outputs that are hard links or devices, a read-only failures file, the
in-process emulator's tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from deepseek_kit._batch.run import MAX_CONCURRENCY
from tests.helpers.dsk import dsk_batch, keyed_env
from tests.helpers.tmpfs import tmpfs

# The child's own peak RSS, read from /proc/self/status at exit. Not os.wait4's ru_maxrss: Linux
# carries the high-water mark of the forked copy of pytest across exec, so ru_maxrss would measure
# this test process (whatever earlier tests left in it), not dsk.
_PEAK = ("import atexit, runpy, sys\n"
         "def _peak():\n"
         "    for ln in open('/proc/self/status'):\n"
         "        if ln.startswith('VmHWM:'):\n"
         "            sys.stderr.write('VMHWM ' + ln.split()[1] + '\\n')\n"
         "atexit.register(_peak)\n"
         "sys.argv = ['dsk', *sys.argv[1:]]\n"
         "runpy.run_module('deepseek_kit.cli.main', run_name='__main__', alter_sys=True)\n")


def _peak_run(tmp_path, *args):
    """Run `dsk batch ARGS`; (exit code, stderr without the peak line, the child's peak RSS in kB)."""
    proc = subprocess.run([sys.executable, "-c", _PEAK, "batch", *map(str, args)], capture_output=True,
                          text=True, env=keyed_env(tmp_path / "home"), stdin=subprocess.DEVNULL, timeout=120)
    lines = proc.stderr.splitlines()
    peak = [int(ln.split()[1]) for ln in lines if ln.startswith("VMHWM ")]
    assert len(peak) == 1, proc.stderr
    return proc.returncode, "\n".join(ln for ln in lines if not ln.startswith("VMHWM ")), peak[0]


def _write(path, n, **extra):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"id-{i}", "prompt": f"prompt {i}", "thinking": False, **extra})
                    + "\n")
    return path


def _ids(path):
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


@pytest.fixture
def tiny_fs(tmp_path, request):
    """A 200 KB tmpfs (or the size given by `@pytest.mark.parametrize("tiny_fs", ["2m"],
    indirect=True)`); see tests/helpers/tmpfs.py."""
    with tmpfs(tmp_path / "tiny", getattr(request, "param", "200k")) as mnt:
        yield mnt


def test_disk_full_stops_the_run_with_one_line_and_a_rerun_resumes_exactly_once(
        emulator_factory, tmp_path, tiny_fs):
    emu = emulator_factory(default_tokens=40)
    src = _write(tmp_path / "in.jsonl", 600)
    out = tiny_fs / "out.jsonl"
    t0 = time.monotonic()
    proc = dsk_batch(tmp_path, src, "-o", out, "--base-url", emu.base_url, "-q", "--no-log",
                     timeout=60)
    assert time.monotonic() - t0 < 60
    assert proc.returncode != 0, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"dsk: error: {tiny_fs}/") and last.endswith("No space left on device"), \
        proc.stderr
    subprocess.run(["mount", "-o", "remount,size=20m", str(tiny_fs)], check=True)
    again = dsk_batch(tmp_path, src, "-o", out, "--base-url", emu.base_url, "-q", "--no-log")
    assert again.returncode == 0, again.stderr
    ids = _ids(out)
    assert sorted(ids) == sorted(f"id-{i}" for i in range(600)) and len(set(ids)) == 600


def test_failures_file_on_a_read_only_place_is_refused_before_any_request(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=2)
    src = _write(tmp_path / "in.jsonl", 3)
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)],
                             capture_output=True).returncode == 0
    if not mounted:
        pytest.fail("cannot mount a read-only tmpfs (this test needs root)")
    try:
        proc = dsk_batch(tmp_path, src, "-o", tmp_path / "out.jsonl", "--failures", ro / "f.jsonl",
                         "--base-url", emu.base_url, "-q", "--no-log")
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"dsk: error: {ro}/f.jsonl.tmp: Read-only file system"
    assert emu.state.total_requests == 0


def test_huge_concurrency_is_a_usage_error_and_a_large_one_costs_no_memory(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=2)
    src = _write(tmp_path / "in.jsonl", 1)
    proc = dsk_batch(tmp_path, src, "-o", tmp_path / "o.jsonl", "--base-url", emu.base_url,
                     "-c", "1000000000")
    assert proc.returncode == 2 and f"at most {MAX_CONCURRENCY:,}" in proc.stderr

    def peak_kb(out, c):
        code, err, peak = _peak_run(tmp_path, src, "-o", out, "--base-url", emu.base_url, "-c", c, "-q",
                                    "--no-log")
        assert code == 0, err
        return peak

    small = peak_kb(tmp_path / "a.jsonl", 1)
    large = peak_kb(tmp_path / "b.jsonl", MAX_CONCURRENCY)
    print(f"peak RSS: -c 1 {small} kB, -c {MAX_CONCURRENCY} {large} kB")
    # 10,000 workers started up front cost ~10 MB (a task, a coroutine and a queue slot each).
    assert large - small < 4 * 1024, (small, large)


def test_hard_linked_output_with_overwrite_keeps_the_input(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=2)
    src = _write(tmp_path / "in.jsonl", 2)
    before = src.read_bytes()
    os.link(src, tmp_path / "out.jsonl")
    proc = dsk_batch(tmp_path, src, "-o", tmp_path / "out.jsonl", "--base-url", emu.base_url,
                     "--overwrite", "-q")
    assert proc.returncode == 2 and "same file" in proc.stderr
    assert src.read_bytes() == before


def test_dev_null_as_output_is_a_clear_error(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=2)
    src = _write(tmp_path / "in.jsonl", 1)
    proc = dsk_batch(tmp_path, src, "-o", "/dev/null", "--base-url", emu.base_url, "-q")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("dsk: error: /dev/null: not a regular file"), proc.stderr
    assert not os.path.exists("/dev/null.journal.sqlite")


def test_mock_emulator_tracebacks_stay_off_stderr(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "h", "prompt": "hi", "thinking": False,
                               "extra_headers": {"X-Long": "a" * 10_000}}) + "\n"
                   + json.dumps({"id": "ok", "prompt": "hi", "thinking": False}) + "\n")
    proc = dsk_batch(tmp_path, src, "-o", tmp_path / "out.jsonl", "--mock", "-q", "--no-log")
    assert "Error handling request" not in proc.stderr, proc.stderr
    assert "ok" in _ids(tmp_path / "out.jsonl")


# -- docs/batch.md#reruns-and-changed-input through the CLI
# --------------------------------------------------------------


def test_changed_input_stops_with_one_line_and_redo_changed_replaces(emulator_factory, tmp_path):
    import sqlite3

    emu = emulator_factory(default_tokens=2)
    src = _write(tmp_path / "in.jsonl", 5)
    out = tmp_path / "out.jsonl"
    first = dsk_batch(tmp_path, src, "-o", out, "--base-url", emu.base_url, "-q")
    assert first.returncode == 0, first.stderr
    db = sqlite3.connect(tmp_path / "home" / "logs.sqlite3")
    rows = db.execute("SELECT prompt, messages, answer, prompt_tokens, cost FROM requests").fetchall()
    db.close()
    assert len(rows) == 5  # numbers only by default: no prompt, no answer
    assert all(r[0] is None and r[1] is None and r[2] is None and r[3] > 0 for r in rows), rows
    lines = src.read_text().splitlines()
    lines[3] = lines[3].replace("prompt 3", "prompt three")
    src.write_text("\n".join(lines) + "\n")
    requests = emu.state.total_requests
    proc = dsk_batch(tmp_path, src, "-o", out, "--base-url", emu.base_url, "-q")
    assert proc.returncode == 2 and emu.state.total_requests == requests
    assert proc.stderr.splitlines() == [
        f"dsk: error: 1 id of the input changed since {out} was written (id-3): write to a new "
        "output, or re-ask exactly those with --redo-changed (redo_changed=True)"]
    proc = dsk_batch(tmp_path, src, "-o", out, "--base-url", emu.base_url, "-q", "--redo-changed")
    assert proc.returncode == 0, proc.stderr
    assert emu.state.total_requests == requests + 1
    ids = _ids(out)
    assert sorted(ids) == [f"id-{i}" for i in range(5)] and ids[-1] == "id-3"


def test_an_over_long_line_is_skipped_without_being_held(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=2)
    src = tmp_path / "in.jsonl"
    with open(src, "w") as f:
        f.write('{"id": "a", "prompt": "hi", "thinking": false}\n{"id": "big", "prompt": "')
        chunk = "x" * (1 << 20)
        for _ in range(60):
            f.write(chunk)
        f.write('"}\n{"id": "b", "prompt": "hi", "thinking": false}\n')

    code, err, peak = _peak_run(tmp_path, src, "-o", tmp_path / "out.jsonl", "--base-url", emu.base_url,
                                "-q", "--no-log", "--max-record-bytes", 1 << 20)
    assert code == 1, err
    assert f"{src}:2: record longer than 1,048,576 bytes (62,914,5" in err
    assert sorted(_ids(tmp_path / "out.jsonl")) == ["a", "b"]
    print(f"peak RSS with a 60 MiB line: {peak} kB")
    assert peak < 100 * 1024  # the line alone would be 60 MiB, several copies 200+


# 2 MB: the first, complete run must fit whatever the journal's WAL grows to under load (with
# 200 KB it filled the disk one run in three on a busy machine); the filler then takes the rest.
@pytest.mark.parametrize("tiny_fs", ["2m"], indirect=True)
def test_disk_full_when_opening_the_journal_or_rewriting_for_redo(emulator_factory, tmp_path, tiny_fs):
    emu = emulator_factory(default_tokens=5)
    src = _write(tmp_path / "in.jsonl", 150)
    out = tiny_fs / "out.jsonl"
    args = ("-o", out, "--base-url", emu.base_url, "-q", "--no-log")
    assert dsk_batch(tmp_path, src, *args).returncode == 0
    before = out.read_bytes()
    with open(tiny_fs / "filler", "wb", buffering=0) as f, pytest.raises(OSError):  # fill what is left
        while True:
            f.write(b"\0" * 4096)
    proc = dsk_batch(tmp_path, src, *args, "--system", "changed", "--redo-changed")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith(f"dsk: error: {tiny_fs}/"), proc.stderr
    assert proc.stderr.strip().endswith("No space left on device"), proc.stderr
    assert out.read_bytes() == before and not (tiny_fs / "out.jsonl.redo.tmp").exists()
    (tiny_fs / "filler").unlink()
    subprocess.run(["mount", "-o", "remount,size=20m", str(tiny_fs)], check=True)
    proc = dsk_batch(tmp_path, src, *args, "--system", "changed", "--redo-changed")
    assert proc.returncode == 0, proc.stderr
    ids = _ids(out)
    assert len(ids) == 150 == len(set(ids))
