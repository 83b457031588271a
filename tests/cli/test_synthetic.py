"""No silent synthetic answers (docs/emulator.md#nothing-it-makes-passes-for-deepseek):
without a key, only a person at a terminal gets the
built-in emulator (with the banner); scripts, pipes, batch, models and balance refuse in one line.
Calls the emulator answered are flagged in the logs database, shown as such by `dsk logs`, and
kept out of `dsk stats` unless `--include-synthetic`.

Real subprocesses and sockets: `dsk` on pipes and on a pseudo-terminal, the emulator, and small
upstreams (tests/helpers/cli_upstreams.py) that do or do not send the emulator's marker."""

from __future__ import annotations

import json
import sqlite3
import sys

import pytest

from deepseek_kit._logs.migrations import MIGRATIONS, migrate
from deepseek_kit._logs.store import connect
from tests.helpers.cli_upstreams import ANSWER, Upstream
from tests.helpers.dsk import FAKE_KEY, dsk_env, one_error_line, run_dsk
from tests.helpers.terminal import Pty


@pytest.fixture
def upstream_factory():
    made: list[Upstream] = []

    def make(mode: str) -> Upstream:
        up = Upstream(mode)
        made.append(up)
        return up

    yield make
    for up in made:
        up.stop()


# --- refusing without a key ------------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["ask", "Hi"],                      # stdout is a pipe
    ["ask", "--no-stream", "Hi"],
    ["models"],
    ["models", "--json"],
    ["balance"],
    ["batch", "IN", "-o", "OUT"],
    ["chat"],                           # stdin and stdout are pipes: a script
])
def test_no_key_outside_a_terminal_refuses_in_one_line(tmp_path, command):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "prompt": "Hi"}\n')
    args = [str(src) if a == "IN" else str(tmp_path / "out.jsonl") if a == "OUT" else a for a in command]
    proc = run_dsk(*args, env=dsk_env(tmp_path / "home"), input="Hi\n")
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert "no API key" in line and "--mock" in line and "DEEPSEEK_API_KEY" in line
    assert proc.stdout == ""
    assert not (tmp_path / "out.jsonl").exists()
    assert not (tmp_path / "home" / "logs.sqlite3").exists()  # nothing was asked, nothing logged


@pytest.mark.parametrize("command", [["ask", "Hi"], ["models"], ["balance"]])
def test_mock_still_works_anywhere(tmp_path, command):
    proc = run_dsk(*command, "--mock", env=dsk_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_ask_on_a_terminal_falls_back_with_the_banner(tmp_path):
    t = Pty(["ask", "--no-think", "What is 2+2?"], dsk_env(tmp_path))
    try:
        t.expect(r"No DEEPSEEK_API_KEY set: using the built-in emulator \(synthetic answers\)")
        assert t.wait() == 0
    finally:
        t.close()
    rows = sqlite3.connect(tmp_path / "logs.sqlite3").execute(
        "SELECT endpoint, synthetic, outcome FROM requests").fetchall()
    assert rows == [("emulator", 1, "ok")]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_chat_on_a_terminal_falls_back_with_the_banner(tmp_path):
    t = Pty(["chat"], dsk_env(tmp_path))
    try:
        t.expect(r"No DEEPSEEK_API_KEY set")
        t.expect(r"the built-in emulator \(synthetic answers\)")
        t.expect(r">")
        t.send("\x04")  # Ctrl-D
        assert t.wait() == 0
    finally:
        t.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_no_mock_fallback_refuses_even_on_a_terminal(tmp_path):
    t = Pty(["ask", "--no-mock-fallback", "Hi"], dsk_env(tmp_path))
    try:
        t.expect(r"dsk: error: no API key")
        assert t.wait() == 2
    finally:
        t.close()


# --- flagged in the logs, left out of stats ----------------------------------------------------------


def test_synthetic_calls_are_flagged_shown_and_left_out_of_stats(tmp_path, upstream_factory):
    home = tmp_path / "home"
    env = dsk_env(home)
    key_env = dsk_env(home, DEEPSEEK_API_KEY=FAKE_KEY)
    real = upstream_factory("plain")
    marked = upstream_factory("marked")  # a server that says it is deepseek-kit's emulator
    assert run_dsk("ask", "--mock", "--no-think", "From the mock", env=env).returncode == 0
    for up, prompt in ((real, "From a real server"), (marked, "From a marked server")):
        for extra in ([], ["--no-stream"]):
            p = run_dsk("ask", "--base-url", up.base_url, *extra, prompt, env=key_env)
            assert p.returncode == 0, p.stderr
            assert p.stdout == ANSWER + "\n"
    rows = sqlite3.connect(home / "logs.sqlite3").execute(
        "SELECT id, synthetic FROM requests ORDER BY id").fetchall()
    assert rows == [(1, 1), (2, 0), (3, 0), (4, 1), (5, 1)]

    listing = run_dsk("logs", env=env).stdout.splitlines()[1:]
    by_id = {ln.split()[0]: ln for ln in listing}
    assert (
        "ok (synthetic)" in by_id["1"] and "ok (synthetic)" in by_id["4"] and "ok (synthetic)" in by_id["5"]
    )
    assert "synthetic" not in by_id["2"] and "synthetic" not in by_id["3"]
    show = run_dsk("logs", "show", "5", env=env).stdout
    assert "synthetic: answered by deepseek-kit's emulator" in show
    assert json.loads(run_dsk("logs", "show", "1", "--json", env=env).stdout)["synthetic"] == 1
    assert "synthetic" not in run_dsk("logs", "show", "2", env=env).stdout

    stats = run_dsk("stats", "--json", env=env)
    (s,) = [json.loads(x) for x in stats.stdout.splitlines()]
    assert (s["requests"], s["ok"], s["prompt_tokens"], s["completion_tokens"]) == (2, 2, 10, 14)
    assert "3 call(s) answered by the emulator (synthetic) not counted" in stats.stderr
    assert "--include-synthetic" in stats.stderr
    (s,) = [
        json.loads(x) for x in run_dsk("stats", "--json", "--include-synthetic", env=env).stdout.splitlines()
    ]
    assert s["requests"] == 5
    summary = run_dsk("stats", env=env).stdout
    assert summary.startswith("calls         2 (2 ok, 0 failed)")
    by = [json.loads(x) for x in run_dsk("stats", "--by", "endpoint", "--json", env=env).stdout.splitlines()]
    assert sorted(g["group"] for g in by) == [real.base_url.split("//")[1]]


def test_old_databases_flag_their_emulator_rows_when_migrated(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    before = [m for m in MIGRATIONS if m.name < "0004"]
    migrate(conn, before)
    for endpoint in ("emulator", "api.deepseek.com"):
        conn.execute(
            "INSERT INTO requests (ts, endpoint, path, outcome) VALUES (1, ?, '/chat/completions', 'ok')",
            (endpoint,),
        )
    conn.close()
    conn = connect(path)
    assert conn.execute("SELECT endpoint, synthetic FROM requests ORDER BY id").fetchall() == [
        ("emulator", 1), ("api.deepseek.com", 0)]
