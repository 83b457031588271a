"""`dsk batch` as a real subprocess against the emulator: JSONL and CSV, malformed lines with their
line numbers, the failures file and --retry-failed, --ordered, --max-cost, SIGTERM, and SIGKILL at
random points followed by resumes (every id exactly once, nothing lost)."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import time

from tests.helpers.dsk import dsk_batch, dsk_cmd, dsk_env, keyed_env


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def read_out(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def items(n, **extra):
    return [{"id": f"id-{i}", "prompt": f"prompt {i}", **extra} for i in range(n)]


def test_jsonl_with_malformed_lines_reports_them_and_runs_the_rest(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=3)
    recs = items(10, thinking=False)
    lines = [*recs[:4], "{broken json", "", {"prompt": "no id"}, *recs[4:], {"id": "id-2", "prompt": "dup"}]
    src = write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    proc = dsk_batch(tmp_path, src, "-o", out, "--base-url", emu.base_url, "-q")
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    assert f"{src}:5: not valid JSON" in err
    assert f"{src}:7: no 'id'" in err
    assert f"{src}:14: duplicate id 'id-2' (first on line 3)" in err
    assert "dsk: batch: 10 done" in err and "3 invalid" in err
    assert sorted(r["id"] for r in read_out(out)) == sorted(r["id"] for r in recs)
    fails = read_out(tmp_path / "out.failures.jsonl")
    assert [(f["line"], f["error"]) for f in fails] == [
        (5, "InputError"),
        (7, "InputError"),
        (14, "DuplicateId"),
    ]
    assert proc.stdout == ""


def test_csv_input(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=3)
    src = tmp_path / "in.csv"
    with open(src, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt", "max_tokens", "thinking"])
        for i in range(25):
            w.writerow([f"c{i}", f"question, {i}\nwith a second line", 20, "false"])
    out = tmp_path / "out.jsonl"
    proc = dsk_batch(tmp_path, src, "-o", out, "--base-url", emu.base_url, "-q")
    assert proc.returncode == 0, proc.stderr
    got = read_out(out)
    assert sorted(r["id"] for r in got) == sorted(f"c{i}" for i in range(25))
    by_id = {r["id"]: r for r in got}
    assert by_id["c0"]["line"] == 2 and by_id["c1"]["line"] == 4  # quoted newline: two lines per row
    bodies = [b for b in emu.state.recent_bodies if b["messages"][-1]["content"].startswith("question, 3")]
    assert bodies[0]["max_tokens"] == 20 and bodies[0]["thinking"] == {"type": "disabled"}


def test_failures_file_then_retry_failed(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=3)
    recs = items(20, thinking=False)
    recs[5]["extra_headers"] = {"X-DSK-Emulate": "status=500;times=1;key=cli-five"}
    recs[11]["extra_headers"] = {"X-DSK-Emulate": "status=429;times=1;key=cli-eleven"}
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    out = tmp_path / "out.jsonl"
    first = dsk_batch(tmp_path, src, "-o", out, "--base-url", emu.base_url, "--max-retries", "0", "-q")
    assert first.returncode == 1
    assert "18 done" in first.stderr and "2 failed" in first.stderr and "--retry-failed" in first.stderr
    fails = read_out(tmp_path / "out.failures.jsonl")
    assert [(f["id"], f["line"], f["error"], f["status"]) for f in fails] == [
        ("id-5", 6, "InternalServerError", 500), ("id-11", 12, "RateLimitError", 429)]
    retry = dsk_batch(tmp_path, src, "-o", out, "--base-url", emu.base_url, "--retry-failed", "-q")
    assert retry.returncode == 0, retry.stderr
    assert "20 done (2 this run" in retry.stderr
    assert not (tmp_path / "out.failures.jsonl").exists()
    ids = [r["id"] for r in read_out(out)]
    assert len(ids) == len(set(ids)) == 20


def test_ordered_flag_and_plain_progress_lines(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=3)
    recs = items(60, thinking=False)
    for r in recs[:4]:
        r["extra_headers"] = {"X-DSK-Emulate": "delay_headers=0.4"}
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    out = tmp_path / "out.jsonl"
    proc = dsk_batch(tmp_path, src, "-o", out, "--base-url", emu.base_url, "--ordered",
                     "--concurrency", "8", "--progress-interval", "0.1")
    assert proc.returncode == 0, proc.stderr
    assert [r["id"] for r in read_out(out)] == [r["id"] for r in recs]
    progress = [ln for ln in proc.stderr.splitlines() if ln.startswith("dsk: batch ") and "/60 done" in ln]
    assert progress, proc.stderr  # "dsk: batch 12/60 done (20.0%), ... ETA ..., 0 failed, 0 invalid"
    assert all("ETA" in ln and "cost" in ln and "tokens" in ln for ln in progress)


def test_max_cost_exits_3_and_a_higher_ceiling_resumes(emulator_factory, tmp_path):
    emu = emulator_factory()
    src = write_jsonl(tmp_path / "in.jsonl", items(150))
    out = tmp_path / "out.jsonl"
    proc = dsk_batch(tmp_path, src, "-o", out, "--base-url", emu.base_url, "--max-cost", "0.004",
                     "--concurrency", "4", "-q")
    assert proc.returncode == 3, proc.stderr
    assert "reached --max-cost ¥0.0040" in proc.stderr and "records not run" in proc.stderr
    done = read_out(out)
    assert 0 < len(done) < 150
    assert sum(float(r["cost"]) for r in done) >= 0.004
    more = dsk_batch(tmp_path, src, "-o", out, "--base-url", emu.base_url, "--max-cost", "100", "-q")
    assert more.returncode == 0, more.stderr
    ids = [r["id"] for r in read_out(out)]
    assert len(ids) == len(set(ids)) == 150


def test_sigterm_stops_cleanly_and_the_run_resumes(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=3, queue_delay=0.02)
    src = write_jsonl(tmp_path / "in.jsonl", items(3000, thinking=False))
    out = tmp_path / "out.jsonl"
    p = subprocess.Popen(dsk_cmd("batch", src, "-o", out, "--base-url", emu.base_url, "-q"),
                         env=keyed_env(tmp_path / "home"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    _wait_for_output(p, out)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 143, err
    assert "run the same command again to resume" in err and "Traceback" not in err
    partial = read_out(out)  # everything written was committed: whole lines only
    assert 0 < len(partial) < 3000
    proc = dsk_batch(tmp_path, src, "-o", out, "--base-url", emu.base_url, "--concurrency", "64", "-q")
    assert proc.returncode == 0, proc.stderr
    ids = [r["id"] for r in read_out(out)]
    assert len(ids) == len(set(ids)) == 3000


def _wait_for_output(p, out, deadline=60.0):
    end = time.monotonic() + deadline
    while not (out.exists() and out.stat().st_size > 0):
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < end, "no output"
        time.sleep(0.02)


def test_sigkill_at_random_points_then_resume_every_id_exactly_once(emulator_factory, tmp_path):
    emu = emulator_factory(default_tokens=4, queue_delay=0.01)
    n = 6000
    src = write_jsonl(tmp_path / "in.jsonl", items(n, thinking=False))
    out = tmp_path / "out.jsonl"
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    kills, sizes = 0, []
    for round_ in range(5):
        args = [src, "-o", out, "--base-url", emu.base_url, "--concurrency", "16", "-q"]
        if round_ % 2:
            args.append("--no-fsync")
        p = subprocess.Popen(dsk_cmd("batch", *args), env=keyed_env(tmp_path / "home"),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.6, 2.0))
        if p.poll() is None:
            p.kill()
            kills += 1
        p.communicate(timeout=30)
        sizes.append(out.stat().st_size if out.exists() else 0)
    assert kills >= 4, f"the runs ended before they could be killed (seed {seed})"
    with open(out, "ab") as f:  # and one more death, mid-line, for certain
        f.write(b'{"id": "id-0", "line": 1, "respo')
    final = dsk_batch(tmp_path, src, "-o", out, "--base-url", emu.base_url, "--concurrency", "32", "-q")
    assert final.returncode == 0, (seed, final.stderr)
    records = read_out(out)  # every line is valid JSON (a torn line would fail here)
    ids = [r["id"] for r in records]
    assert len(ids) == n, (seed, sizes)
    assert set(ids) == {f"id-{i}" for i in range(n)}, seed
    assert all(r["response"]["choices"][0]["message"]["content"] for r in records)
    assert f"{n:,} done" in final.stderr and "uncommitted bytes" in final.stderr


def test_argument_errors_are_one_line(emulator, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", items(2))
    for args, needle in [
        ((src, "-o", tmp_path / "o.jsonl", "--reorder-window", "5"), "--reorder-window needs --ordered"),
        ((tmp_path / "missing.jsonl", "-o", tmp_path / "o.jsonl", "--base-url", emulator.base_url),
         "no such input file"),
        ((src, "-o", tmp_path / "o.jsonl", "--base-url", emulator.base_url, "--retry-failed"),
         "nothing to retry"),
    ]:
        proc = dsk_batch(tmp_path, *args)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dsk: error: ") and needle in lines[0], proc.stderr
    bad = dsk_batch(tmp_path, src, "-o", tmp_path / "o.jsonl", "--max-cost", "-1")
    assert bad.returncode == 2 and "must be a positive amount" in bad.stderr


def test_mock_backend_needs_no_key(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", items(5, thinking=False))
    out = tmp_path / "out.jsonl"
    env = dsk_env(tmp_path / "home")
    proc = subprocess.run(dsk_cmd("batch", src, "-o", out, "--mock", "-q"), capture_output=True, text=True,
                          env=env, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(read_out(out)) == 5


def test_live_progress_on_a_terminal(emulator_factory, tmp_path):
    import pty

    emu = emulator_factory(default_tokens=3, queue_delay=0.005)
    src = write_jsonl(tmp_path / "in.jsonl", items(400, thinking=False))
    out = tmp_path / "out.jsonl"
    master, slave = pty.openpty()
    env = keyed_env(tmp_path / "home", COLUMNS="200")
    p = subprocess.Popen(dsk_cmd("batch", src, "-o", out, "--base-url", emu.base_url, "-c", "4"), env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert p.wait(timeout=60) == 0
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "Traceback" not in screen
    assert "\r" in screen or "\x1b[" in screen  # redrawn in place, not one line per update
    assert "/400 done" in screen and "ETA" in screen and "cost ¥" in screen
    assert "dsk: batch: 400 done" in screen
    assert len(read_out(out)) == 400
