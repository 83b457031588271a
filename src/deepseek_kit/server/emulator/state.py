"""Mutable state of one emulator: accounts and balances, in-flight accounting, counters for tests.

Tests assert on these counters (attempt counts, disconnects, concurrency peaks), so they are plain
attributes updated on the event loop thread; reading them from another thread is safe enough for
integers and snapshots (`snapshot()`).

Billing (docs/deepseek-api-notes.md#pricing-and-off-peak-hours):
cost = tokens x price, taken from the granted balance first, then
from the topped-up balance. A request is refused with 402 when the
total is <= 0 (docs/deepseek-api-notes.md#what-the-emulator-reproduces).
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict, deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

import msgspec
from aiohttp import web

from deepseek_kit._wire import pricing as _pricing

from .cache_sim import PrefixCache
from .config import EmulatorConfig
from .faults import parse_directives

__all__ = ["SECRET_HEADERS", "STATE_KEY", "Account", "BoundedCounter", "EmulatorState", "masked_headers"]

_CENT = Decimal("0.01")
_K = TypeVar("_K", bound=Hashable)


class BoundedCounter(OrderedDict[_K, int], Generic[_K]):
    """A counter that keeps only the `limit` most recently counted keys (unique paths, directive
    strings and keys from an unauthenticated client must not grow the emulator forever). Reading a
    missing key gives 0 like `collections.Counter`."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __missing__(self, key: _K) -> int:
        return 0

    def add(self, key: _K) -> int:
        """Count one more; returns the new count."""
        n = self.get(key, 0) + 1
        self[key] = n
        self.move_to_end(key)
        if len(self) > self.limit:
            self.popitem(last=False)
        return n


@dataclass
class Account:
    """One API key's balance (an emulated account per key), in `EmulatorConfig.currency`.

    Attributes:
        granted: Granted balance left; spent first.
        topped_up: Topped-up balance left; spent once `granted` is gone (the last request of
            an account may take it slightly below zero, as it is still billed).
        spent: What the account's requests have cost so far."""

    granted: Decimal
    topped_up: Decimal
    spent: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        """Granted plus topped-up balance (what `total_balance` reports)."""
        return self.granted + self.topped_up

    def charge(self, amount: Decimal) -> None:
        """Granted balance first, then topped-up (which may go slightly negative, as the last
        request of an account is still billed)."""
        self.spent += amount
        take = min(amount, max(self.granted, Decimal(0)))
        self.granted -= take
        self.topped_up -= amount - take

    def info(self, currency: str) -> dict[str, str]:
        """The account as one `balance_infos` entry of `GET /user/balance`, amounts as 2-decimal strings."""
        def fmt(d: Decimal) -> str:
            return str(d.quantize(_CENT))

        return {
            "currency": currency,
            "total_balance": fmt(self.total),
            "granted_balance": fmt(self.granted),
            "topped_up_balance": fmt(self.topped_up),
        }


#: Headers that carry credentials: kept as `****` + their last four characters (what DeepSeek's
#: own "invalid api key" message shows), never whole.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"})


def masked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """`headers` with the values of SECRET_HEADERS masked (`Bearer ****abcd`)."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower() in SECRET_HEADERS:
            scheme, sep, token = value.partition(" ")
            secret = token if sep else value
            shown = f"****{secret[-4:]}" if len(secret) > 8 else "****"
            value = f"{scheme} {shown}" if sep else shown
        out[name] = value
    return out


class EmulatorState:
    """Everything the emulator remembers between requests: accounts and balances, the prefix
    cache, request counts and recent bodies. `config` is the `EmulatorConfig` it serves. A test
    reads it from the app: `app[STATE_KEY]` (or `EmulatorThread.state`)."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.accounts: OrderedDict[str, Account] = OrderedDict()  # LRU, at most config.max_accounts
        self.cache = PrefixCache(config.cache_unit, config.cache_capacity)
        self.closing = asyncio.Event()  # set on app shutdown: long waits stop
        self._parsed: dict[str, dict[str, Any]] = {}
        self._prices = _pricing.PriceBook(config.currency, config.holidays)
        self.reset_counters()

    def reset_counters(self) -> None:
        """Zero the request statistics (balances and the prefix cache are kept)."""
        self.total_requests = 0
        limit = self.config.max_tracked
        self.requests_per_path: BoundedCounter[str] = BoundedCounter(limit)
        self.requests_per_emulate: BoundedCounter[str] = BoundedCounter(limit)
        self.statuses: Counter[int] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.disconnects = 0
        self.recent: deque[tuple[str, bytes]] = deque(maxlen=self.config.recent_bodies)
        #: (method, path, headers with secrets masked, body) of recent requests, for
        #: `deepseek_kit.testing`; bodies over `recent_body_max` are kept as b"".
        self.received: deque[tuple[str, str, dict[str, str], bytes]] = deque(maxlen=self.config.recent_bodies)
        self._times_seen: BoundedCounter[tuple[str, str]] = BoundedCounter(limit)
        self._model_in_flight: Counter[tuple[str, str]] = Counter()

    def forget(self) -> None:
        """A fresh start: counters, recent requests, accounts (balances back to the configured
        ones) and the prefix cache (`deepseek_kit.testing` calls it between tests)."""
        self.reset_counters()
        self.accounts.clear()
        self.cache = PrefixCache(self.config.cache_unit, self.config.cache_capacity)

    # -- request bookkeeping ----------------------------------------------------------------------

    def begin(self, path: str, emulate: str, body: bytes, method: str = "POST",
              headers: Mapping[str, str] | None = None) -> int:
        """Count a request; returns how many requests so far carried this directive string (the
        count restarts for a string not seen among the last `max_tracked` distinct ones)."""
        self.total_requests += 1
        self.requests_per_path.add(path)
        if emulate:
            self.requests_per_emulate.add(emulate)
        small = len(body) <= self.config.recent_body_max  # big bodies are not kept (memory)
        if body and small:
            self.recent.append((path, body))
        if headers is not None and self.config.recent_bodies:
            self.received.append((method, path, masked_headers(headers), body if small else b""))
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight
        return self._times_seen.add((self.config.faults, emulate))

    def end(self, status: int) -> None:
        """A request counted by `begin` has been answered with `status`."""
        self.in_flight -= 1
        self.statuses[status] += 1

    def parsed(self, text: str) -> dict[str, Any]:
        """Parsed directives, memoised per distinct string (a load test repeats a few strings)."""
        got = self._parsed.get(text)
        if got is None:
            got = parse_directives(text)
            if len(self._parsed) > 4096:
                self._parsed.clear()
            self._parsed[text] = got
        return got

    # -- concurrency (docs/deepseek-api-notes.md#rate-limits-and-concurrency:
    # per account and serving model, until the response completes) ------------

    def try_acquire(self, account: str, model: str) -> bool:
        """Take one of the account's concurrent slots for `model`; False (answer 429) when
        `concurrency_limits` allows no more."""
        limit = self.config.concurrency_limits.get(model)
        key = (account, model)
        if limit is not None and self._model_in_flight[key] >= limit:
            return False
        self._model_in_flight[key] += 1
        return True

    def release(self, account: str, model: str) -> None:
        """Give back a slot taken by `try_acquire`."""
        key = (account, model)
        self._model_in_flight[key] -= 1
        if self._model_in_flight[key] <= 0:
            del self._model_in_flight[key]

    # -- accounts -----------------------------------------------------------------------------------

    def account(self, key: str) -> Account:
        """The emulated account of API key `key`, created on first use with the configured balance
        (the least recently used accounts are forgotten past `max_accounts`)."""
        acct = self.accounts.get(key)
        if acct is None:
            if key in self.config.balance:
                acct = Account(Decimal(0), self.config.balance[key])
            else:
                acct = Account(self.config.default_granted, self.config.default_topped_up)
            self._remember(key, acct)
        else:
            self.accounts.move_to_end(key)
        return acct

    def _remember(self, key: str, acct: Account) -> None:
        self.accounts[key] = acct
        self.accounts.move_to_end(key)
        while len(self.accounts) > self.config.max_accounts:
            self.accounts.popitem(last=False)

    def charge(self, key: str, model: str, usage: Mapping[str, Any], at: datetime | None = None) -> Decimal:
        """Bill one request at the price in force now (peak/off-peak,
        docs/deepseek-api-notes.md#pricing-and-off-peak-hours)."""
        if at is None:  # the price cache: peak state per minute, each model's price
            amount = self._prices.cost(model, usage, self.config.clock())
        else:
            amount = _pricing.cost(model, usage, at, self.config.currency, self.config.holidays)
        self.account(key).charge(amount)
        return amount

    def balance(self, key: str) -> Decimal:
        """The total balance of `key`'s account."""
        return self.account(key).total

    @property
    def balances(self) -> dict[str, Decimal]:
        """Total balance of every account the emulator remembers, by key."""
        return {k: a.total for k, a in self.accounts.items()}

    def set_balance(self, key: str, topped_up: Decimal | str | int, granted: Decimal | str | int = 0) -> None:
        """Give `key`'s account this balance now (tests of 402 and of balance display)."""
        self._remember(key, Account(Decimal(str(granted)), Decimal(str(topped_up))))

    # -- views for tests ----------------------------------------------------------------------------

    @property
    def requests_by_directive(self) -> BoundedCounter[str]:
        """Alias of `requests_per_emulate` (requests per distinct `X-DSK-Emulate` value)."""
        return self.requests_per_emulate

    @property
    def recent_bodies(self) -> list[Any]:
        """Recent request bodies, decoded (non-JSON bodies are returned as bytes)."""
        out: list[Any] = []
        for _, raw in list(self.recent):
            try:
                out.append(msgspec.json.decode(raw))
            except msgspec.DecodeError:
                out.append(raw)
        return out

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain data (requests per path and directive, statuses, in flight...)."""
        return {
            "total_requests": self.total_requests,
            "requests_per_path": dict(self.requests_per_path),
            "requests_per_emulate": dict(self.requests_per_emulate),
            "statuses": dict(self.statuses),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "disconnects": self.disconnects,
            "balances": {k: str(v) for k, v in self.balances.items()},
        }


STATE_KEY: web.AppKey[EmulatorState] = web.AppKey("deepseek_kit.emulator_state", EmulatorState)
