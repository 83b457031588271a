"""Virtual keys of the gateway: the per-request view of a key (`VirtualKey`), the typed errors the
relay turns into DeepSeek-shaped replies, the token format and its keyed hash, the `GatewayState`
protocol (`state.open_state(url)` opens the SQLite or Redis implementation).

Tokens look like `sk-dsk-<prefix8>-<secret>`: a bearer key, clearly ours. The secret is 32 random
bytes (256 bits, URL-safe base64). At rest only HMAC-SHA256(pepper, token) is kept, with the display
prefix `sk-dsk-<prefix8>`; a stolen database without the pepper gives nothing to try offline, and
lookup is one equality match on the hash. The plaintext is returned once, by `create_key` or
`rotate`, and never stored, logged or put in a repr or an error message.

Amounts (budgets, reservations, costs) are `Decimal` in the currency the gateway prices requests in
(`deepseek_kit._wire.pricing.PRICES`: DeepSeek publishes CNY and USD tables; the gateway's default is CNY,
as `pricing.cost`'s). The state does not convert: a budget of 5 means 5 units of that currency.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from deepseek_kit._wire.errors import DeepSeekError

if TYPE_CHECKING:
    from .budget import Reservation, UsageRow

__all__ = [
    "TOKEN_PREFIX",
    "BudgetExceededError",
    "ForbiddenError",
    "GatewayKeyError",
    "GatewayState",
    "IPNetwork",
    "InvalidKeyError",
    "KeyNotFoundError",
    "KeyRecord",
    "StateUnavailableError",
    "VirtualKey",
    "display_prefix",
    "hash_token",
    "new_token",

    "parse_networks",
]

#: Every gateway token starts with this.
TOKEN_PREFIX = "sk-dsk-"
_PREFIX_CHARS = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no look-alikes, no '-'
_TOKEN_RE = re.compile(r"sk-dsk-([A-Za-z0-9]{8})-[A-Za-z0-9_\-]{43}")
_MIN_PEPPER = 16
_MAX_BUDGET = Decimal(1_000_000)  # nano-units stay below 2^53, exact in Redis Lua (budget.py)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """What the relay needs to admit one request. Never holds the token or its hash.

    `models` None = every model; `allow_ip` empty = every address. Budgets are in the gateway's
    pricing currency (module docstring); None = no budget in that window.

    Attributes:
        id: The key's id (`key_...`), what `dsk keys` and the admin API name it by.
        name: The name given at creation (`--name team-a`).
        prefix: The token's display prefix, `sk-dsk-<8 characters>`: safe to show and log.
        models: The models the key may call, or None for every model (403 otherwise).
        rpm: Requests per minute allowed, or None for no limit.
        tpm: Tokens per minute allowed, or None for no limit.
        max_in_flight: Calls in flight at once allowed, or None for no limit.
        budget_daily: Spend allowed per day, Beijing time like DeepSeek's billing (402 past it).
        budget_monthly: Spend allowed per calendar month, Beijing time.
        expires_at: When the key stops working (401 after), or None for never.
        allow_ip: Networks the key may be used from; empty for every address."""

    id: str
    name: str
    prefix: str
    models: frozenset[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_in_flight: int | None = None
    budget_daily: Decimal | None = None
    budget_monthly: Decimal | None = None
    expires_at: datetime | None = None
    allow_ip: tuple[IPNetwork, ...] = ()

    def allows_model(self, model: str) -> bool:
        """True when the key may call `model` (the relay answers 403 otherwise)."""
        return self.models is None or model in self.models

    def allows_ip(self, client_ip: str | None) -> bool:
        """True when the key may be used from `client_ip` (IPv4-mapped IPv6 counts as IPv4)."""
        if not self.allow_ip:
            return True
        if client_ip is None:
            return False
        try:
            addr = ipaddress.ip_address(client_ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1 (dual-stack sockets)
        return any(addr.version == net.version and addr in net for net in self.allow_ip)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as the admin sees it (list/show): the request view plus its history.

    Attributes:
        key: The `VirtualKey` (limits, budgets, models).
        created_at: When the key was created.
        revoked_at: When it was revoked, or None.
        rotated_at: When its secret was last replaced (`dsk keys rotate`), or None."""

    key: VirtualKey
    created_at: datetime
    revoked_at: datetime | None = None
    rotated_at: datetime | None = None

    def status(self, now: datetime) -> str:
        """"active", "revoked" or "expired" (at `now`)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.key.expires_at is not None and now >= self.key.expires_at:
            return "expired"
        return "active"

    def to_dict(self, now: datetime, currency: str) -> dict[str, Any]:
        """JSON-ready view for `dsk keys` and the admin API; amounts as decimal strings. Holds no
        secret: the record has none."""
        k = self.key

        def iso(at: datetime | None) -> str | None:
            return None if at is None else at.isoformat()

        return {
            "id": k.id, "name": k.name, "prefix": k.prefix, "status": self.status(now),
            "models": None if k.models is None else sorted(k.models), "rpm": k.rpm, "tpm": k.tpm,
            "max_in_flight": k.max_in_flight, "currency": currency,
            "budget_daily": None if k.budget_daily is None else str(k.budget_daily),
            "budget_monthly": None if k.budget_monthly is None else str(k.budget_monthly),
            "expires_at": iso(k.expires_at), "allow_ip": [str(n) for n in k.allow_ip],
            "created_at": iso(self.created_at), "revoked_at": iso(self.revoked_at),
            "rotated_at": iso(self.rotated_at),
        }


class GatewayKeyError(DeepSeekError):
    """A request refused because of its key. `status` is the HTTP status; `message`, `type` and
    `code` fill DeepSeek's error body (docs/deepseek-api-notes.md, errors), see `body()`. Messages
    never contain the token."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, dict[str, str | None]]:
        """DeepSeek's error body: {"error": {"message", "type", "param": null, "code"}}."""
        return {"error": {"message": self.message, "type": self.type, "param": None, "code": self.code}}


class InvalidKeyError(GatewayKeyError):
    """401: missing, malformed, unknown, revoked or expired key."""

    status = 401
    type = "authentication_error"


class ForbiddenError(GatewayKeyError):
    """403: the key may not use this model, or not from this address."""

    status = 403
    type = "permission_error"


class BudgetExceededError(GatewayKeyError):
    """402: the key's daily or monthly budget cannot cover this request's worst case."""

    status = 402
    type = "unknown_error"  # DeepSeek's own 402 body says unknown_error (Insufficient Balance)


class KeyNotFoundError(GatewayKeyError):
    """404 (admin API and `dsk keys`): no key has this id or prefix."""

    status = 404


class StateUnavailableError(GatewayKeyError):
    """503: the state store (SQLite file, redis-server) failed or cannot be reached. Fail closed:
    no request is admitted on a key or budget the gateway cannot check."""

    status = 503
    type = "api_error"


def new_token() -> str:
    """A fresh token: `sk-dsk-` + 8 display characters + `-` + 32 random bytes, URL-safe."""
    prefix = "".join(secrets.choice(_PREFIX_CHARS) for _ in range(8))
    return f"{TOKEN_PREFIX}{prefix}-{secrets.token_urlsafe(32)}"


def display_prefix(token: str) -> str | None:
    """`sk-dsk-AbCd2345` for a well-formed token, else None (then it cannot be one of ours)."""
    m = _TOKEN_RE.fullmatch(token)
    return f"{TOKEN_PREFIX}{m.group(1)}" if m else None


def check_pepper(pepper: bytes) -> bytes:
    """`pepper`, the secret key tokens are hashed with, when it is long enough (16 bytes or more);
    else a `GatewayKeyError` saying how to set one (the env var named by `pepper_env`, e.g.
    `DSK_GATEWAY_PEPPER=$(openssl rand -hex 32)`)."""
    if not isinstance(pepper, bytes) or len(pepper) < _MIN_PEPPER:
        raise GatewayKeyError(f"the gateway pepper must be at least {_MIN_PEPPER} bytes of secret "
                              "(set it in the environment variable named by pepper_env, e.g. "
                              "DSK_GATEWAY_PEPPER=$(openssl rand -hex 32))")
    return pepper


def hash_token(pepper: bytes, token: str) -> str:
    """HMAC-SHA256(pepper, token), hex: what the state stores and looks keys up by."""
    return hmac.new(pepper, token.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def parse_networks(items: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    """CIDRs (or bare addresses) as networks; a bad one is a GatewayKeyError naming it."""
    out: list[IPNetwork] = []
    for item in items:
        if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            out.append(item)
            continue
        try:
            out.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError:
            raise GatewayKeyError(f"not an IP network: {item!r} (expected a CIDR such as 10.0.0.0/8 "
                                  "or an address)") from None
    return tuple(out)


@dataclass(slots=True)
class KeySpec:
    """The settings of a key to create (everything but the secret)."""

    name: str
    models: frozenset[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_in_flight: int | None = None
    budget_daily: Decimal | None = None
    budget_monthly: Decimal | None = None
    expires_at: datetime | None = None
    allow_ip: tuple[IPNetwork, ...] = field(default_factory=tuple)

    def validated(self) -> KeySpec:
        """This spec, or a GatewayKeyError naming the first bad setting."""
        if not self.name or len(self.name) > 200:
            raise GatewayKeyError("a key needs a name of 1 to 200 characters")
        for what, v in (("rpm", self.rpm), ("tpm", self.tpm), ("max_in_flight", self.max_in_flight)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 2**53):
                raise GatewayKeyError(f"{what} must be a whole number >= 1, got {v!r}")
        for what, b in (("budget_daily", self.budget_daily), ("budget_monthly", self.budget_monthly)):
            ok = isinstance(b, Decimal) and b.is_finite() and 0 <= b <= _MAX_BUDGET
            if b is not None and not ok:
                raise GatewayKeyError(f"{what} must be an amount from 0 to {_MAX_BUDGET}, got {b!r}")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise GatewayKeyError("expires_at needs a time zone")
        return self


class GatewayState(Protocol):
    """Keys, budgets and usage, shared by every worker that opens the same URL."""

    async def authenticate(self, token: str, client_ip: str | None) -> VirtualKey:
        """The caller's key: 401 InvalidKeyError (missing, unknown, revoked, expired), 403
        ForbiddenError (address not allowed)."""

    async def reserve(self, key: VirtualKey, worst_case: Decimal, *, model: str = "") -> Reservation:
        """Hold the worst case against the key's budgets; 402 BudgetExceededError when it does not fit."""

    async def settle(
        self, reservation: Reservation, actual: Decimal, *, model: str | None = None,
    ) -> None:
        """Replace the hold with the exact cost (queued, written in batches)."""

    async def release(self, reservation: Reservation) -> None:
        """Give the hold back uncharged (the request never reached an upstream)."""

    async def remaining(self, key: VirtualKey) -> Decimal | None:
        """What is left of the key's tighter budget, or None without one (GET /user/balance)."""

    async def spent(self, key: VirtualKey) -> tuple[Decimal, Decimal]:
        """(today, this month) settled spend of a budgeted key."""

    async def create_key(
        self, name: str, *, models: Iterable[str] | None = None, rpm: int | None = None,
        tpm: int | None = None, max_in_flight: int | None = None, budget_daily: Decimal | None = None,
        budget_monthly: Decimal | None = None, expires_at: datetime | None = None,
        allow_ip: Sequence[str | IPNetwork] = (),
    ) -> tuple[str, VirtualKey]:
        """A new key; the returned token is the only copy of its secret."""

    async def list_keys(self) -> list[KeyRecord]:
        """Every key, oldest first."""

    async def get_key(self, id_or_prefix: str) -> KeyRecord:
        """One key by id or display prefix; 404 KeyNotFoundError."""

    async def revoke(self, key_id: str) -> KeyRecord:
        """Refuse the key from now on, on every worker within a second."""

    async def rotate(self, key_id: str) -> tuple[str, VirtualKey]:
        """A new secret for the key (returned once); the old one stops working."""

    async def usage(self, key_id: str, since: date | None = None) -> list[UsageRow]:
        """Spend per Beijing day and model since `since`."""

    async def flush(self) -> None:
        """Write queued settlements and usage rows now."""

    async def aclose(self) -> None:
        """Flush and close the store connections."""
