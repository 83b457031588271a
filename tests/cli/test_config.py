"""Bad settings and odd inputs give one `dsk: error:` line
(exit 2), never a traceback (docs/attack-round-2026-12.md, K8);
the config file's top-level and profile `[limits]`, `[cache]`, `[metrics]` apply to `dsk` as to
`AsyncClient()` (K7); an undecodable 200 is logged as the caller's error, without its body (S3);
smaller CLI problems (K9). Real `dsk` subprocesses against the emulator and small upstreams."""

from __future__ import annotations

import argparse
import sqlite3

import pytest

from deepseek_kit.cli import common
from tests.helpers.cli_upstreams import Upstream
from tests.helpers.dsk import FAKE_KEY, chat_bodies, dsk_env, one_error_line, run_dsk

# --- K8: config type errors and malformed values ------------------------------------------------------

CONFIG_CASES = {
    "profile-not-a-table": ("[profiles]\na = 5\n", ["--profile", "a"], "profile 'a'"),
    "profiles-not-a-table": ("profiles = 5\n", [], "profiles"),
    "retention-days-string": ('[logs]\nretention_days = "x"\n', [], "retention_days"),
    "logs-path-number": ("[logs]\npath = 5\n", [], "path"),
    "endpoints-string": ('endpoints = "x"\n', [], "endpoints"),
    "endpoints-numbers": ("endpoints = [5]\n", [], "endpoints"),
    "routing-number": ("routing = 5\n", [], "routing"),
    "api-key-number": ("api_key = 5\n", [], "api_key"),
    "api-key-list": ('api_key = ["a"]\n', [], "api_key"),
    "api-key-newline": ('api_key = "sk-x\\nInjected: 1"\n', [], "line break"),
    "base-url-number": ("base_url = 5\n", [], "base_url"),
    "model-table": ("[model]\nx = 1\n", [], "model"),
    "limits-string": ('limits = "x"\n', [], "limits"),
    "limits-bad-rpm": ('[limits]\nrpm = "x"\n', [], "rpm"),
    "limits-unknown-key": ("[limits]\nrmp = 5\n", [], "rmp"),
    "cache-bad-backend": ('[cache]\nbackend = "floppy"\n', [], "floppy"),
    "metrics-string": ('metrics = "x"\n', [], "metrics"),
    "metrics-unknown-key": ("[metrics]\nnope = 1\n", [], "nope"),
    "profile-api-key-number": ("[profiles.p]\napi_key = 5\n", ["--profile", "p"], "api_key"),
    "routing-unknown-key": ("[routing]\nstrategy_ = 1\n", [], "strategy_"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_type_errors_are_one_line(tmp_path, emulator, case, dsk_main):
    text, extra, needle = CONFIG_CASES[case]
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(text)
    # No DEEPSEEK_API_KEY, and one: the file's types are checked either way (the key's content
    # only when it is the key in use: DEEPSEEK_API_KEY wins over the file's).
    envs = [dsk_env(home, DEEPSEEK_BASE_URL=emulator.base_url)]
    if case != "api-key-newline":
        envs.append(dsk_env(home, DEEPSEEK_API_KEY=FAKE_KEY, DEEPSEEK_BASE_URL=emulator.base_url))
    for env in envs:
        proc = dsk_main("ask", "--no-stream", "--max-retries", "0", *extra, "Hi", env=env)
        assert proc.returncode == 2, (proc.stdout, proc.stderr)
        line = one_error_line(proc)
        assert needle in line, line
        assert proc.stdout == ""
    # Never sent (`Bearer 5`, `Bearer ['a']`, an injected header): the emulator saw no request.
    assert chat_bodies(emulator) == []


@pytest.mark.parametrize(("args", "needle"), [
    (["ask", "--base-url", "http://[::1", "Hi"], "not a valid URL"),
    (["ask", "--base-url", "http://127.0.0.1:99999", "Hi"], "not a valid URL"),
    (["ask", "--base-url", "http://", "Hi"], "base_url"),
    (["ask", "--base-url", "http://exa mple.com", "Hi"], "must not contain spaces"),
    (["models", "--base-url", "http://127.0.0.1:99999"], "not a valid URL"),
    (["logs", "show", "99999999999999999999999"], "no call has an id that large"),
])
def test_malformed_values_on_the_command_line_are_one_line(tmp_path, args, needle, dsk_main):
    proc = dsk_main(*args, env=dsk_env(tmp_path, DEEPSEEK_API_KEY=FAKE_KEY))
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and proc.stderr.count("\n") <= 2  # argparse: usage + error
    assert proc.stdout == ""


@pytest.mark.parametrize("value", ["sk-x\nInjected: 1", "sk-x\rY", "sk-\x01x"])
def test_api_key_with_a_control_character_from_the_environment(tmp_path, emulator, value, dsk_main):
    proc = dsk_main("ask", "--base-url", emulator.base_url, "Hi",
                    env=dsk_env(tmp_path, DEEPSEEK_API_KEY=value))
    assert proc.returncode == 2
    assert "line break or a control character" in one_error_line(proc)
    assert chat_bodies(emulator) == []


# --- K7: the config file's tables apply to dsk ----------------------------------------------------------


@pytest.mark.parametrize("where", ["top", "profile"])
def test_config_limits_apply_to_dsk(tmp_path, emulator, where):
    table = "[limits]\nrpm = 1\nmax_queue_wait = 0\n"
    home = tmp_path / "home"
    home.mkdir()
    extra: list[str] = []
    if where == "profile":
        table = "[profiles.slow.limits]\nrpm = 1\nmax_queue_wait = 0\n"
        extra = ["--profile", "slow"]
    (home / "config.toml").write_text(table)
    env = dsk_env(home, DEEPSEEK_API_KEY=FAKE_KEY)
    # Two questions in one session: the second must wait a minute for its turn, and may not wait.
    proc = run_dsk("chat", "--base-url", emulator.base_url, "--max-retries", "0", *extra,
                   input="One\nTwo\n", env=env)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    line = one_error_line(proc)
    assert "rpm" in line
    assert len(chat_bodies(emulator)) == 1


def _args(**kw) -> argparse.Namespace:
    base = {"timeout": None, "max_retries": 0, "no_log": True}
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize("where", ["top", "profile"])
async def test_batch_clients_wait_for_config_limits(tmp_path, monkeypatch, where):
    # `dsk batch` builds its client with wait_for_limits=True: limits from the profile or the top
    # level wait for their turn (max_queue_wait=None) like --rpm, instead of failing items.
    text = "[limits]\nrpm = 6\n" if where == "top" else "[profiles.slow.limits]\nrpm = 6\n"
    (tmp_path / "config.toml").write_text(text)
    monkeypatch.setenv("DSK_HOME", str(tmp_path))
    monkeypatch.delenv("DSK_CONFIG", raising=False)
    profile = "slow" if where == "profile" else None
    b = common.Backend(FAKE_KEY, "http://127.0.0.1:9", "deepseek-flash", profile=profile)
    async with common.make_client(b, _args(), wait_for_limits=True) as client:
        assert client.limits is not None
        assert client.limits.limits.rpm == 6 and client.limits.limits.max_queue_wait is None
    async with common.make_client(b, _args()) as client:  # ask, chat: the library's default bound
        assert client.limits is not None and client.limits.limits.max_queue_wait == 60.0
    from deepseek_kit import Limits

    explicit = Limits(rpm=2)
    async with common.make_client(b, _args(), limits=explicit, wait_for_limits=True) as client:
        assert client.limits.limits.rpm == 2 and client.limits.limits.max_queue_wait is None


# --- S3: an undecodable 200 is logged as the caller's error, without its body ---------------------------


@pytest.mark.parametrize("mode", ["echo-html", "echo-json"])
@pytest.mark.parametrize("command", [["ask", "--no-stream", "hi"], ["models"]])
def test_undecodable_200_is_logged_as_the_error_without_the_body(tmp_path, command, mode):
    up = Upstream(mode)  # a 200 (HTML, or JSON of the wrong shape) echoing the request headers, key too
    try:
        home = tmp_path / "home"
        env = dsk_env(home, DEEPSEEK_API_KEY=FAKE_KEY)
        proc = run_dsk(*command, "--max-retries", "0", "--base-url", up.base_url, env=env)
        assert up.requests and FAKE_KEY in up.requests[0]["Authorization"]  # the page holds the key
        assert proc.returncode == 1
        one_error_line(proc)
    finally:
        up.stop()
    conn = sqlite3.connect(home / "logs.sqlite3")
    (outcome, error, message, answer), = conn.execute(
        "SELECT outcome, error, error_message, answer FROM requests").fetchall()
    assert (outcome, error, answer) == ("error", "APIConnectionError", None)
    assert "malformed" in message
    conn.close()
    data = b"".join(p.read_bytes() for p in home.glob("logs.sqlite3*"))
    assert FAKE_KEY.encode() not in data and FAKE_KEY[-12:].encode() not in data
    stats = run_dsk("stats", "--json", env=env)
    if command[0] == "ask":
        assert '"errors": 1' in stats.stdout and '"ok": 0' in stats.stdout


# --- K9: smaller CLI problems ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["logs"], ["logs", "show", "1"], ["logs", "search", "x"], ["stats"],
                                     ["logs", "prune", "--older-than", "1d"]])
def test_logs_db_that_is_a_directory_is_named_so(tmp_path, command, dsk_main):
    proc = dsk_main(*command, "--db", str(tmp_path), env=dsk_env(tmp_path / "home"))
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "is not a logs database" in line and str(tmp_path) in line


_BAD_REQUESTS = '''
import argparse, socket, sys, time
from urllib.parse import urlsplit
from deepseek_kit.cli import common
args = argparse.Namespace(profile=None, api_key_env=None, base_url=None, model=None, mock=True,
                          no_mock_fallback=False)
with common.backend(args) as b:
    u = urlsplit(b.base_url)
    for raw in (b"GET /models HTTP/1.1\\r\\nHost: x\\r\\nBad Header: 1\\r\\n\\r\\n",
                b"POST /chat/completions HTTP/1.1\\r\\nHost: x\\r\\nContent-Encoding: br\\r\\n"
                b"Content-Length: 2\\r\\n\\r\\n{}"):
        with socket.create_connection((u.hostname, u.port)) as s:
            s.sendall(raw)
            s.settimeout(5)
            assert s.recv(100).startswith(b"HTTP/1.")
    time.sleep(0.3)
print("done")
'''


def test_mock_emulator_tracebacks_never_reach_stderr(tmp_path):
    # The in-process emulator `dsk --mock` starts (common.backend), fed requests aiohttp refuses:
    # its "Error handling request" tracebacks must not land on dsk's stderr.
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _BAD_REQUESTS], capture_output=True, text=True,
                          env=dsk_env(tmp_path), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"
    assert proc.stderr == ""


_FULL_DISK = '''
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
os.execv(sys.executable, [sys.executable, "-m", "deepseek_kit.cli.main", *sys.argv[1:]])
'''


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="POSIX resource limits")
def test_save_on_a_full_disk_gives_the_right_advice(tmp_path):
    # A file-size limit of 8 KB stands for a full disk: SQLite's writes fail as they do on one.
    import subprocess
    import sys

    env = {**dsk_env(tmp_path / "home"), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK, "chat", "--mock", "--no-log"],
                          input="Hi\n/save\n", capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert "disk" in line and "free some space" in line
    assert "move it aside" not in line


def test_damaged_logs_database_is_worth_moving_aside(tmp_path, dsk_main):
    db = tmp_path / "logs.sqlite3"
    db.write_bytes(b"this is not a database" * 300)
    proc = dsk_main("logs", "--db", str(db), env=dsk_env(tmp_path))
    assert proc.returncode == 2
    assert "move it aside" in one_error_line(proc)
