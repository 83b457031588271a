"""Fixtures the whole suite shares; plain helpers live in tests/helpers (servers, `dsk` runs, ports).

Every test starts from a clean environment: no DEEPSEEK_* or DSK_* variable of the developer's,
no proxy variable, and DSK_HOME a fresh private folder, so no test reads a real config file, key
or logs database, and no 127.0.0.1 server is reached through a proxy a machine sets. A test that
needs a variable sets it itself (monkeypatch.setenv, or the `env=` of a subprocess).

  emulator            a running EmulatorThread with the default config (`.base_url`, `.state`)
  emulator_factory    make(config=None, **config_fields) -> a running EmulatorThread, stopped at teardown
  emulator_url        the default emulator's base URL ("http://127.0.0.1:PORT")
  redis_url           a real redis-server on a free port, one per session, flushed for each test
  env                 the environment of a `dsk` subprocess: private DSK_HOME, the fake key, and a dead
                      loopback URL as the default base URL (so no run can reach the internet)
  dsk_main            run_dsk's twin in this process: dsk_main(*args, env=..., input="") -> .returncode,
                      .stdout, .stderr (tests/helpers/dsk.py says when a subprocess is needed instead)
The emulator runs its own event loop in a daemon thread: it works from sync and async tests alike.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator

import pytest

from deepseek_kit.server import EmulatorConfig, EmulatorThread
from tests.helpers.dsk import FAKE_KEY, Ran, dsk_env, run_main
from tests.helpers.net import closed_port, free_port
from tests.helpers.redis import start_redis, stop_redis

# Proxy variables in both spellings: urllib (and so the client) reads the lowercase ones first.
_RECURSION_LIMIT = sys.getrecursionlimit()
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
              "http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch,
                          tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("DEEPSEEK_", "DSK_")) or name in PROXY_VARS:
            monkeypatch.delenv(name)
    # Its own folder, not tmp_path: tests that list tmp_path see only what they made.
    monkeypatch.setenv("DSK_HOME", str(tmp_path_factory.mktemp("dsk-home")))
    # mypy run in-process (the typing and README tests) raises the interpreter's recursion limit to
    # 16,384 for good; msgspec's guard against hostile nesting follows that limit, so the tests that
    # send 5,000-deep JSON would pass or fail by test order. Every test starts and ends with the limit
    # the session started with (also when a module-scoped fixture ran mypy before this fixture).
    sys.setrecursionlimit(_RECURSION_LIMIT)
    yield
    sys.setrecursionlimit(_RECURSION_LIMIT)


# --- emulator ---------------------------------------------------------------------------------------


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


# --- redis-server -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    port = free_port()
    proc = start_redis(port, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    stop_redis(proc)


@pytest.fixture
def redis_url(redis_server):
    with socket.create_connection(("127.0.0.1", int(redis_server.rsplit(":", 1)[1].split("/")[0]))) as s:
        s.sendall(b"FLUSHALL\r\n")
        s.recv(16)
    return redis_server


# --- dsk ------------------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return dsk_env(tmp_path, DEEPSEEK_API_KEY=FAKE_KEY, DEEPSEEK_BASE_URL=f"http://127.0.0.1:{closed_port()}")


@pytest.fixture
def dsk_main(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Ran]:
    def run(*args: str, env: dict[str, str] | None = None, input: str = "") -> Ran:
        return run_main(*args, capsys=capsys, monkeypatch=monkeypatch, env=env, input=input)

    return run
