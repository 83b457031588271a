"""The gateway (`dsk serve --config FILE`): a DeepSeek-correct relay with virtual keys and budgets
(docs/gateway.md). This namespace is public: `dsk serve` and `dsk keys` use only these names.

Names load on first use (PEP 562): `dsk keys` reads the state without loading the relay's
aiohttp application. The gateway may import every library layer; never the emulator or the CLI
(docs/architecture.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deepseek_kit._lazy import lazy_namespace

if TYPE_CHECKING:
    from deepseek_kit._wire.pricing import BEIJING, now

    from .accesslog import AccessLogHandler
    from .app import GATEWAY_KEY, create_gateway_app
    from .config import GatewayConfig, GatewayConfigError, load_gateway_config, parse_gateway_config
    from .fastserve import GatewaySite, run_gateway_app
    from .keys import (
        GatewayKeyError,
        GatewayState,
        KeyRecord,
        StateUnavailableError,
        VirtualKey,
        check_pepper,
    )
    from .oauth_clients import ClientRecord
    from .oauth_tokens import TokenService, tokens_for
    from .state import open_state

_LAZY: dict[str, str] = {
    "AccessLogHandler": ".accesslog",
    "BEIJING": "deepseek_kit._wire.pricing",
    "ClientRecord": ".oauth_clients",
    "GATEWAY_KEY": ".app",
    "GatewayConfig": ".config",
    "GatewayConfigError": ".config",
    "GatewayKeyError": ".keys",
    "GatewaySite": ".fastserve",
    "GatewayState": ".keys",
    "KeyRecord": ".keys",
    "StateUnavailableError": ".keys",
    "TokenService": ".oauth_tokens",
    "VirtualKey": ".keys",
    "check_pepper": ".keys",
    "create_gateway_app": ".app",
    "load_gateway_config": ".config",
    "now": "deepseek_kit._wire.pricing",
    "open_state": ".state",
    "parse_gateway_config": ".config",
    "run_gateway_app": ".fastserve",
    "tokens_for": ".oauth_tokens",
}


__getattr__, __dir__ = lazy_namespace(__name__, _LAZY)

__all__ = [
    "BEIJING",
    "GATEWAY_KEY",
    "AccessLogHandler",
    "ClientRecord",
    "GatewayConfig",
    "GatewayConfigError",
    "GatewayKeyError",
    "GatewaySite",
    "GatewayState",
    "KeyRecord",
    "StateUnavailableError",
    "TokenService",
    "VirtualKey",
    "check_pepper",
    "create_gateway_app",
    "load_gateway_config",
    "now",
    "open_state",
    "parse_gateway_config",
    "run_gateway_app",
    "tokens_for",
]
