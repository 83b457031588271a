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

from deepseek_kit._wire.pricing import PriceBook, charge, default_clock, price_for
from deepseek_kit._wire.usage import split_usage

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
    p = _scaled(model, at, currency)
    if p is None:
        return Decimal(0)
    out = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else DEFAULT_RESERVE_TOKENS
    return _charge(p, model, at, currency, 0, math.ceil(body_len * TOKENS_PER_BYTE), out)


# Per-request pricing without the reference's Decimal arithmetic, to the same Decimal (digits and
# exponent): the peak state is cached per minute and each price per (model, peak) as scaled
# integers (`PriceBook`), so a charge is integer arithmetic and two Decimal operations where
# `pricing.charge` does three products, two sums and a division. tests/server/gateway/
# test_admission_pricing.py compares the two on random usages.
_BOOKS: dict[str, PriceBook] = {}
_MILLION = Decimal(1_000_000)
_EXACT_BELOW = 10**26  # integer prices x tokens below this stay within Decimal's 28 digits


def _scaled(model: str, at: datetime, currency: str) -> tuple[int, int, int, int] | None:
    """`scaled_price(price_for(model, at, currency))`, or None without a price."""
    book = _BOOKS.get(currency)
    if book is None:
        book = _BOOKS[currency] = PriceBook(currency)  # the default calendar, as price_for's
    wall = (at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)).timestamp()
    return book.scaled(model, book.is_peak(wall))


def _charge(p: tuple[int, int, int, int], model: str, at: datetime, currency: str,
            hit: int, miss: int, output: int) -> Decimal:
    """`pricing.charge(price_for(model, at, currency), hit, miss, output)` from its scaled price."""
    amount = hit * p[0] + miss * p[1] + output * p[2]
    if hit < 0 or miss < 0 or output < 0 or amount >= _EXACT_BELOW:
        # beyond Decimal's precision the reference rounds its intermediate products: do as it does
        price = price_for(model, at, currency)
        return Decimal(0) if price is None else charge(price, hit, miss, output)
    # The reference's numerator is exactly `amount` x 10^-s (s: the prices' decimal places); its
    # division by 10^6 then picks the result's exponent: the same division here.
    return Decimal(amount).scaleb(p[3] + 6) / _MILLION


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
        at, currency = self.now(), self.config.currency
        p = _scaled(model, at, currency)
        if p is None:
            return Decimal(0)
        t = split_usage(usage)  # as pricing.cost reads it
        return _charge(p, model, at, currency, t.cache_hit, t.cache_miss, t.completion)

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
