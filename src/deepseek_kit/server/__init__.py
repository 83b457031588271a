"""The DeepSeek API emulator: a faithful local stand-in for api.deepseek.com, with fault injection.

Users point their apps and CI at it (`dsk serve --mock`); our own tests run against it on loopback.
Its behaviour follows deepseek-api.md §9; faults are selected per server (`EmulatorConfig.faults`)
or per request with the `X-DSK-Emulate` header (see `faults.py`).

    from deepseek_kit.server import EmulatorThread
    with EmulatorThread() as emu:
        client = AsyncClient(api_key="sk-test", base_url=emu.base_url)
"""

from __future__ import annotations

from .emulator.app import create_emulator_app
from .emulator.config import EmulatorConfig
from .emulator.faults import Directives, parse_directives
from .emulator.state import STATE_KEY, Account, EmulatorState
from .emulator.thread import EmulatorThread, run_emulator

__all__ = [
    "STATE_KEY",
    "Account",
    "Directives",
    "EmulatorConfig",
    "EmulatorState",
    "EmulatorThread",
    "create_emulator_app",
    "parse_directives",
    "run_emulator",
]
