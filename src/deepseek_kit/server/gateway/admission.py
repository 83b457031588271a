"""Admission of one request: authenticate the caller's key, check the model is allowed, reserve the
worst-case cost, and settle the exact cost when the answer is complete.

With `[gateway] auth = "keys"` the virtual keys and budgets live in the state store
(`open_state(url, pepper=...)`, keys.py); the pepper is read from the env var named by
`pepper_env`. With `auth = "none"` every caller is admitted and nothing is charged (local use).
Costs use the library's pricing (`deepseek_kit._pricing`: cache hit/miss, Beijing peak/off-peak
calendar) in the config's currency; tokens are the usage the upstream reports.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import os
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from deepseek_kit._pricing import charge, cost, default_clock, price_for

from .config import GatewayConfig
from .errors import GatewayError

__all__ = ["Admission", "worst_case"]

#: Reservation output when the request gives no max_tokens (docs/gateway.md, "Budgets").
DEFAULT_RESERVE_TOKENS = 32_768
#: Input tokens per request byte, an upper bound for English (~0.3/char) and Chinese (~0.6 per
#: 3-byte char) text (https://api-docs.deepseek.com/quick_start/token_usage).
TOKENS_PER_BYTE = 0.3


def worst_case(model: str, body_len: int, max_tokens: int | None, at: datetime, currency: str) -> Decimal:
    price = price_for(model, at, currency)
    if price is None:
        return Decimal(0)
    out = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else DEFAULT_RESERVE_TOKENS
    return charge(price, 0, math.ceil(body_len * TOKENS_PER_BYTE), out)


class Admission:
    def __init__(self, config: GatewayConfig, clock: Callable[[], float] | None = None) -> None:
        self.config = config
        self.clock = clock or default_clock()
        self.state: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, env: Mapping[str, str] | None = None) -> None:
        if self.config.auth != "keys":
            return
        env = os.environ if env is None else env
        pepper = env.get(self.config.pepper_env)
        if not pepper:
            raise GatewayError(500, f"the key pepper is not set: export {self.config.pepper_env} "
                               "(the same value `dsk keys` uses)")
        keys = importlib.import_module(".keys", __package__)
        wall = self.clock
        self.state = keys.open_state(self.config.state, pepper=pepper.encode(),
                                     clock=lambda: datetime.fromtimestamp(wall(), timezone.utc))

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.state is not None:
            await self.state.aclose()
            self.state = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    async def authenticate(self, authorization: str | None, ip: str | None) -> Any:
        """The caller's VirtualKey (None when auth is off); GatewayError 401/403 otherwise."""
        if self.state is None:
            return None
        if not authorization or not authorization.startswith("Bearer ") or not authorization[7:].strip():
            raise GatewayError(401, "Authentication Fails (auth header format should be Bearer sk-...)",
                               type="authentication_error")
        try:
            return await self.state.authenticate(authorization[7:].strip(), ip)
        except GatewayError:
            raise
        except Exception as exc:
            status = getattr(exc, "status", None)
            if isinstance(status, int):
                raise GatewayError(status, str(getattr(exc, "message", None) or exc),
                                   code=str(getattr(exc, "code", None) or "invalid_request_error")) from None
            raise

    @staticmethod
    def allowed(key: Any, model: str) -> bool:
        models = getattr(key, "models", None)
        return models is None or model in models

    async def reserve(self, key: Any, worst: Decimal) -> Any:
        if self.state is None or key is None:
            return None
        try:
            return await self.state.reserve(key, worst)
        except Exception as exc:
            status = getattr(exc, "status", None)
            if isinstance(status, int):
                raise GatewayError(status, str(getattr(exc, "message", None) or exc),
                                   code=str(getattr(exc, "code", None) or "invalid_request_error")) from None
            raise

    def cost(self, model: str, usage: Mapping[str, Any] | None, fallback: Decimal | None) -> Decimal | None:
        if usage is None:
            return fallback
        return cost(model, usage, self.now(), self.config.currency)

    def settle(self, reservation: Any, actual: Decimal) -> None:
        """Settle off the request path (also when the caller left mid-stream)."""
        if reservation is None or self.state is None:
            return
        task = asyncio.ensure_future(self.state.settle(reservation, actual))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def remaining(self, key: Any) -> Decimal | None:
        if self.state is None or key is None:
            return None
        value: Decimal | None = await self.state.remaining(key)
        return value
