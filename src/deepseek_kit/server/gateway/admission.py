"""Admission of one request: authenticate the caller's key, check the model is allowed, reserve the
worst-case cost, and settle the exact cost when the answer is complete.

With `[gateway] auth = "keys"` the virtual keys and budgets live in the state store
(`open_state(url, pepper=...)`, keys.py); the pepper is read from the env var named by
`pepper_env`. With `auth = "none"` every caller is admitted and nothing is charged (local use).
Costs use the library's pricing (`deepseek_kit._wire.pricing`: cache hit/miss, Beijing peak/off-peak
calendar) in the config's currency; tokens are the usage the upstream reports.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from deepseek_kit._wire.pricing import charge, cost, default_clock, price_for

from .budget import Reservation
from .config import GatewayConfig
from .errors import GatewayError
from .keys import GatewayKeyError, GatewayState, VirtualKey
from .state import open_state

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
        self.state: GatewayState | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, env: Mapping[str, str] | None = None) -> None:
        if self.config.auth != "keys":
            return
        env = os.environ if env is None else env
        pepper = env.get(self.config.pepper_env)
        if not pepper:
            raise GatewayError(500, f"the key pepper is not set: export {self.config.pepper_env} "
                               "(the same value `dsk keys` uses)")
        wall = self.clock
        assert self.config.state is not None  # the config requires it with auth = "keys"
        try:
            self.state = open_state(self.config.state, pepper=pepper.encode(),
                                    clock=lambda: datetime.fromtimestamp(wall(), timezone.utc))
        except GatewayKeyError as exc:
            raise GatewayError(500, exc.message) from None

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.state is not None:
            await self.state.aclose()
            self.state = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    async def authenticate(self, authorization: str | None, ip: str | None) -> VirtualKey | None:
        """The caller's VirtualKey (None when auth is off); GatewayError 401/403 otherwise."""
        if self.state is None:
            return None
        if not authorization or not authorization.startswith("Bearer ") or not authorization[7:].strip():
            raise GatewayError(401, "Authentication Fails (auth header format should be Bearer sk-...)",
                               type="authentication_error")
        token = authorization[7:].strip()
        try:
            if token.count(".") == 2:  # a JWT: an OAuth access token acting as its client's key
                from .oauth_tokens import tokens_for

                return await tokens_for(self.state).authenticate(token, ip)
            return await self.state.authenticate(token, ip)
        except GatewayKeyError as exc:
            raise _gateway_error(exc) from None

    @staticmethod
    def allowed(key: VirtualKey | None, model: str) -> bool:
        return key is None or key.allows_model(model)

    async def reserve(self, key: VirtualKey | None, worst: Decimal, model: str) -> Reservation | None:
        if self.state is None or key is None:
            return None
        try:
            return await self.state.reserve(key, worst, model=model)
        except GatewayKeyError as exc:
            raise _gateway_error(exc) from None

    def cost(self, model: str, usage: Mapping[str, Any] | None, fallback: Decimal | None) -> Decimal | None:
        if usage is None:
            return fallback
        return cost(model, usage, self.now(), self.config.currency)

    def settle(self, reservation: Reservation | None, actual: Decimal, model: str) -> None:
        """Settle off the request path (also when the caller left mid-stream)."""
        if reservation is None or self.state is None:
            return
        nowait = getattr(self.state, "settle_nowait", None)  # StateBase: queueing only, no task
        if nowait is not None:
            nowait(reservation, actual, model=model)
            return
        task = asyncio.ensure_future(self.state.settle(reservation, actual, model=model))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def remaining(self, key: VirtualKey | None) -> Decimal | None:
        if self.state is None or key is None:
            return None
        return await self.state.remaining(key)


def _gateway_error(exc: GatewayKeyError) -> GatewayError:
    return GatewayError(exc.status, exc.message, type=exc.type, code=exc.code)
