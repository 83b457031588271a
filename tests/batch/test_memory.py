"""A 100,000-line `dsk batch` against the emulator keeps its memory flat: bounded by the
concurrency, not by the input size.

The run's resident memory is sampled from /proc while it goes; the peak at the end (VmHWM) is
compared with the memory once 10,000 results were written (what a 10k batch would have reached).
Holding anything per id in memory - the ids (~80 bytes each), the results (~600 bytes each) -
would add 7 to 50 MB over the other 90,000 ids; the bound allowed here is 4 MiB. The emulator is
configured for speed (one-token answers, no thinking, no cache simulation); logging is off so the
test measures the batch runner and the client alone.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from deepseek_kit.server import EmulatorConfig
from tests.helpers.dsk import dsk_cmd, keyed_env

N = 100_000
BOUND_KB = 4 * 1024


def _status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    return fields


# 100,000 answers at ~1,000/s: under two minutes on a quiet 2-core box, more when it is shared.
@pytest.mark.timeout(600)
def test_100k_batch_memory_stays_flat(emulator_factory, tmp_path):
    emu = emulator_factory(EmulatorConfig(default_tokens=1, default_reasoning_tokens=0,
                                          cache_simulation=False))
    src = tmp_path / "in.jsonl"
    with open(src, "w") as f:
        for i in range(N):
            f.write(f'{{"id": {i}, "prompt": "p{i}", "thinking": false}}\n')
    out = tmp_path / "out.jsonl"
    p = subprocess.Popen(
        dsk_cmd("batch", src, "-o", out, "--base-url", emu.base_url, "--concurrency", "128", "--no-log",
                "-q"),
        env=keyed_env(tmp_path / "home"), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    samples = []  # (bytes written, VmRSS kB, VmHWM kB)
    try:
        while p.poll() is None:
            try:
                st = _status(p.pid)
                written = out.stat().st_size if out.exists() else 0
                sample = (written, st["VmRSS"], st["VmHWM"])
            except (FileNotFoundError, ProcessLookupError, KeyError):
                # Exited between poll() and the read: a zombie's status has no Vm* lines.
                break
            samples.append(sample)
            time.sleep(0.1)
        _, err = p.communicate(timeout=60)
    finally:  # a timeout or a failed read: never leave the run behind (nor its stderr pipe)
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    lines = out.read_bytes().count(b"\n")
    assert lines == N
    size = out.stat().st_size
    at_10k = [rss for written, rss, _ in samples if written <= size * 10_000 // N]
    assert len(at_10k) >= 3 and len(samples) > 30, "too few samples to judge"
    early = max(at_10k)
    peak = max(hwm for _, _, hwm in samples)
    report = f"RSS after 10k results {early} kB, peak over 100k {peak} kB, {len(samples)} samples"
    print(report)
    assert peak - early < BOUND_KB, report
