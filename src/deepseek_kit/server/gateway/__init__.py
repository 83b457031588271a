"""The gateway (`dsk serve --config FILE`): a DeepSeek-correct relay with virtual keys and budgets
(docs/gateway.md)."""

from __future__ import annotations

from .app import create_gateway_app
from .config import GatewayConfig, GatewayConfigError, load_gateway_config, parse_gateway_config

__all__ = ["GatewayConfig", "GatewayConfigError", "create_gateway_app", "load_gateway_config",
           "parse_gateway_config"]
