"""The DeepSeek API emulator: a faithful local stand-in for api.deepseek.com, with fault injection;
and the gateway (`create_gateway_app`, `GatewayConfig`, `load_gateway_config`, docs/gateway.md),
loaded only when first used so the emulator starts as fast as before.

Users point their apps and CI at it (`dsk serve --mock`); our own tests run against it on loopback.
Its behaviour follows docs/deepseek-api-notes.md#what-the-emulator-reproduces; faults are selected per server
(`EmulatorConfig.faults`) or per request with the `X-DSK-Emulate` header (see `faults.py`).

    from deepseek_kit.server import EmulatorThread
    with EmulatorThread() as emu:
        client = AsyncClient(api_key="sk-test", base_url=emu.base_url)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    "GatewayConfig",
    "create_emulator_app",
    "create_gateway_app",
    "load_gateway_config",
    "parse_directives",
    "run_emulator",
]

if TYPE_CHECKING:
    from .gateway import GatewayConfig, create_gateway_app, load_gateway_config

_GATEWAY_NAMES = frozenset({"GatewayConfig", "create_gateway_app", "load_gateway_config"})


def __getattr__(name: str) -> Any:
    if name in _GATEWAY_NAMES:
        from . import gateway

        return getattr(gateway, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
