# --- emulator fixtures (deepseek_kit.server) ------------------------------------------------------
# Self-contained: real sockets on 127.0.0.1, free ports, one emulator per test unless shared.
#   emulator            a running EmulatorThread with the default config (`.base_url`, `.state`)
#   emulator_factory    make(config=None, **config_fields) -> a running EmulatorThread, stopped at teardown
#   emulator_url        the default emulator's base URL ("http://127.0.0.1:PORT")
# Works from sync and async tests alike: the emulator runs its own event loop in a daemon thread.
from __future__ import annotations

import pytest

from deepseek_kit.server import EmulatorConfig, EmulatorThread


@pytest.fixture
def emulator_factory():
    started: list[EmulatorThread] = []

    def make(config: EmulatorConfig | None = None, **fields) -> EmulatorThread:
        cfg = config if config is not None else EmulatorConfig(**fields)
        emu = EmulatorThread(cfg).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


@pytest.fixture
def emulator(emulator_factory) -> EmulatorThread:
    return emulator_factory()


@pytest.fixture
def emulator_url(emulator: EmulatorThread) -> str:
    return emulator.base_url


# --- end of emulator fixtures ---------------------------------------------------------------------


# --- redis-server fixture ---------------------------------------------------------------------------
# A real redis-server on a free 127.0.0.1 port, one per test session (`redis_url`), flushed before
# each test that asks for it. Missing redis-server is a failure, never a skip: scripts/test installs it.
import shutil
import socket
import subprocess
import time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed (scripts/test installs it with apt-get)")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("redis-server did not start")
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def redis_url(redis_server):
    with socket.create_connection(("127.0.0.1", int(redis_server.rsplit(":", 1)[1].split("/")[0]))) as s:
        s.sendall(b"FLUSHALL\r\n")
        s.recv(16)
    return redis_server
# --- end of redis-server fixture --------------------------------------------------------------------


# --- proxy variables of the machine -----------------------------------------------------------------
# The client honours HTTP(S)_PROXY by default and, like httpx, bypasses only the hosts NO_PROXY lists,
# loopback included (docs/proxies.md). Keep every 127.0.0.1 server of the suite off a proxy that CI
# may set; tests/test_proxy.py sets the variables it needs itself.
import os as _os

for _var in ("NO_PROXY", "no_proxy"):
    _os.environ[_var] = ",".join(x for x in (_os.environ.get(_var), "127.0.0.1", "localhost") if x)
# --- end of proxy variables ---------------------------------------------------------------------------
