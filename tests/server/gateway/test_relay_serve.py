# `dsk serve --config FILE` as a real subprocess: it announces its free port, relays to an emulator,
# writes one JSON access line per request without secrets, reloads its config on SIGHUP, runs
# several workers on one port, refuses a bad config with the key and line, stops on SIGTERM.
from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.request

from tests.helpers.dsk import DSK, dsk_env

UPSTREAM_KEY = "sk-upstream-secret-cli-9876"


def _env(tmp_path) -> dict[str, str]:
    return dsk_env(tmp_path, GW_KEY=UPSTREAM_KEY)


def _config(path, *emulators) -> None:
    text = '[gateway]\nlisten = "127.0.0.1:0"\nauth = "none"\nshutdown_grace = 2.0\n'
    for i, e in enumerate(emulators):
        text += f'\n[[upstream]]\nname = "emu{i}"\nbase_url = "{e.base_url}"\napi_key_env = "GW_KEY"\n'
    path.write_text(text)


def _start(tmp_path, cfg, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([*DSK, "serve", "--config", str(cfg),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env=_env(tmp_path))
    line = proc.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, f"http://127.0.0.1:{m.group(1)}"


def _chat(url: str) -> tuple[int, dict]:
    body = json.dumps({"model": "deepseek-flash", "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, dict(r.headers)


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


def test_serve_config_relays_logs_and_reloads(tmp_path, emulator_factory):
    a, b = emulator_factory(), emulator_factory()
    cfg = tmp_path / "gateway.toml"
    _config(cfg, a)
    proc, url = _start(tmp_path, cfg)
    try:
        status, headers = _chat(url)
        assert status == 200 and headers["x-dsk-upstream"] == "emu0"
        with urllib.request.urlopen(url + "/readyz", timeout=10) as r:
            assert json.load(r)["upstreams"] == {"emu0": "closed"}
        _config(cfg, b)  # a different upstream, picked up on SIGHUP
        proc.send_signal(signal.SIGHUP)
        for _ in range(100):
            status, headers = _chat(url)
            if headers["x-dsk-upstream"] == "emu0" and b.state.total_requests:
                break
            time.sleep(0.05)
        assert b.state.total_requests >= 1
    finally:
        err = _stop(proc)
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert lines and lines[0]["status"] == 200 and lines[0]["upstream"] == "emu0"
    assert UPSTREAM_KEY not in err


def test_serve_config_workers_share_the_port(tmp_path, emulator_factory):
    a = emulator_factory()
    cfg = tmp_path / "gateway.toml"
    _config(cfg, a)
    proc, url = _start(tmp_path, cfg, "--workers", "2")
    try:
        for _ in range(6):
            assert _chat(url)[0] == 200
    finally:
        _stop(proc)
    assert a.state.total_requests >= 6


def test_serve_bad_config_names_key_and_line(tmp_path):
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('[gateway]\nauth = "none"\n\n[[upstream]]\nname = "x"\nbase_url = "http://127.0.0.1:9"\n'
                   'kind = "tgi"\n')
    proc = subprocess.run([*DSK, "serve", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env=_env(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("dsk: error:") and "line 7" in last and "kind" in last


def test_serve_keys_without_pepper_is_one_line_error(tmp_path):
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'[gateway]\nstate = "sqlite:///{tmp_path}/gw.db"\n\n[[upstream]]\nname = "x"\n'
                   'base_url = "http://127.0.0.1:9"\n')
    proc = subprocess.run([*DSK, "serve", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env=_env(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "DSK_GATEWAY_PEPPER" in proc.stderr.strip().splitlines()[-1]
