"""`dsk serve --mock` as a real subprocess on 127.0.0.1: it announces where it listens, answers
chat requests (ours and the library's), applies --key / --fault / --set / --config, and stops
cleanly on SIGTERM and SIGINT."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import urllib.request

import pytest

from deepseek_kit import AuthenticationError, Client, ServiceUnavailableError
from tests.helpers.dsk import DSK, dsk_env
from tests.helpers.net import free_port

KEY = "sk-servetest-1234abcd"


class Served:
    def __init__(self, proc: subprocess.Popen[str], line: str) -> None:
        self.proc = proc
        self.line = line
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert m, line
        self.base_url = m.group(0)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err


@pytest.fixture
def serve(tmp_path):
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> Served:
        proc = subprocess.Popen([*DSK, "serve", *args],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=dsk_env(tmp_path))
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the announcement comes once the socket is bound
        assert line, proc.communicate(timeout=30)[1]
        return Served(proc, line)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # waits, and closes the stdout/stderr pipes


def ask(base_url: str, key: str = KEY, **kw):
    with Client(api_key=key, base_url=base_url, max_retries=kw.pop("max_retries", 0)) as c:
        return c.chat.completions.create(model="deepseek-flash",
                                         messages=[{"role": "user", "content": "Hello"}], **kw)


def test_serve_on_a_given_port_answers_and_stops_on_sigterm(serve):
    port = free_port()
    s = serve("--mock", "--host", "127.0.0.1", "--port", str(port))
    assert s.base_url == f"http://127.0.0.1:{port}"
    assert "emulator" in s.line and "synthetic" in s.line
    resp = ask(s.base_url)
    assert resp.choices[0].message.content
    with Client(api_key=KEY, base_url=s.base_url) as c, c.chat.completions.create(
            model="deepseek-flash", messages=[{"role": "user", "content": "Hello"}], stream=True) as stream:
        text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    assert text == resp.choices[0].message.content
    code, err = s.stop(signal.SIGTERM)
    assert code == 0
    assert "Traceback" not in err


def test_port_zero_announces_the_bound_port_and_sigint_stops(serve, tmp_path):
    s = serve("--mock", "--port", "0")
    assert not s.base_url.endswith(":0")
    proc = subprocess.run([*DSK, "ask", "--base-url", s.base_url,
                           "--json", "Hello"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env={**dsk_env(tmp_path), "DEEPSEEK_API_KEY": KEY})
    assert proc.returncode == 0, proc.stderr
    expected = ask(s.base_url).choices[0].message.content
    assert json.loads(proc.stdout)["choices"][0]["message"]["content"] == expected
    code, err = s.stop(signal.SIGINT)
    assert code == 0
    assert "Traceback" not in err


def test_keys_restrict_access(serve):
    s = serve("--mock", "--port", "0", "--key", KEY, "--key", "sk-second-key-0000")
    assert ask(s.base_url).choices
    assert ask(s.base_url, key="sk-second-key-0000").choices
    with pytest.raises(AuthenticationError):
        ask(s.base_url, key="sk-not-a-listed-key")


def test_faults_apply_server_wide(serve):
    s = serve("--mock", "--port", "0", "--fault", "status=503;times=2")
    for _ in range(2):
        with pytest.raises(ServiceUnavailableError):
            ask(s.base_url)
    assert ask(s.base_url).choices


def test_settings_and_config_file(serve, tmp_path):
    cfg = tmp_path / "emu.toml"
    cfg.write_text('[emulator]\ncurrency = "USD"\ndefault_tokens = 5\n')
    s = serve("--mock", "--port", "0", "--config", str(cfg), "--set", "default_granted=1.5")
    req = urllib.request.Request(s.base_url + "/user/balance", headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        info = json.load(r)["balance_infos"][0]
    assert info["currency"] == "USD"
    assert info["granted_balance"] == "1.50"
    assert ask(s.base_url, thinking=False).usage.completion_tokens == 5


@pytest.mark.parametrize("args", [
    ["--mock", "--fault", "no_such_directive=1"],
    ["--mock", "--set", "no_such_field=1"],
    ["--mock", "--set", "currency=XYZ"],
    ["--mock", "--port", "70000"],
    ["--mock", "--config", "/nonexistent/emu.toml"],
    ["--mock", "--config", "/dev/zero"],  # an endless device: refused, never read
    ["--mock", "--config", "/"],
    [],  # the gateway is not there yet: --mock is required
])
def test_bad_serve_arguments_exit_2(tmp_path, args, dsk_main):
    proc = dsk_main("serve", *args, env=dsk_env(tmp_path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(("dsk: error:", "dsk serve: error:"))


@pytest.mark.parametrize(("args", "toml"), [
    (["--set", "concurrency_limits=5"], None),
    (["--set", 'default_tokens="many"'], None),
    (["--set", "max_body_size=-1"], None),
    (["--set", "keepalive_interval=-1"], None),
    (["--set", "validation_status=200"], None),
    (["--set", "recent_bodies=-1"], None),
    (["--fault", "status=200"], None),
    ([], 'chunk_tokens = "x"'),
    ([], "balance = 5"),
    ([], "api_keys = 5"),
    ([], "models = 5"),
    ([], 'default_granted = "abc"'),
])
def test_bad_emulator_settings_are_one_line(tmp_path, args, toml, dsk_main):
    if toml is not None:
        (tmp_path / "emu.toml").write_text(f"[emulator]\n{toml}\n")
        args = ["--config", str(tmp_path / "emu.toml")]
    proc = dsk_main("serve", "--mock", "--port", "0", *args, env=dsk_env(tmp_path))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "dsk: error: " in lines[0] and lines[0].count("bad emulator setting") == 1, lines[0]


def test_port_in_use_is_one_line_error(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        port = s.getsockname()[1]
        proc = subprocess.run([*DSK, "serve", "--mock", "--port",
                               str(port)], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, env=dsk_env(tmp_path))
    finally:
        s.close()
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dsk: error: cannot listen on") and str(port) in lines[0]

