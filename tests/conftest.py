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
