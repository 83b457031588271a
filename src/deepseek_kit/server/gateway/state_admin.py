"""Key administration over a state backend (`KeyAdmin`, the base of state_common.StateBase):
create, list, find, revoke, rotate, usage; the stored (JSON) form of a key record; and
`store_call`, which turns a store failure into a 503 that names what failed and nothing else.
None of this is on the request path."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, TypeVar

from .budget import UsageRow
from .keys import (
    GatewayKeyError,
    IPNetwork,
    KeyNotFoundError,
    KeyRecord,
    KeySpec,
    StateUnavailableError,
    VirtualKey,
    display_prefix,
    hash_token,
    new_token,
    parse_networks,
)

__all__ = ["KeyAdmin", "record_from_json", "record_to_json", "store_call"]

log = logging.getLogger("deepseek_kit.gateway")
T = TypeVar("T")


async def store_call(what: str, aw: Awaitable[T]) -> T:
    """Await a store call; a failure of the store (not a refusal) becomes a 503
    `StateUnavailableError` naming what failed, without the store's own message (it may hold a
    URL with a password)."""
    try:
        return await aw
    except GatewayKeyError:
        raise
    except Exception as exc:
        log.warning("gateway state failed while %s: %s", what, type(exc).__name__)
        raise StateUnavailableError(f"the gateway's key store is unavailable ({type(exc).__name__} "
                                    f"while {what}); try again shortly") from None


def _ts(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


def _dt(ts: Any) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(float(ts), timezone.utc)


def record_to_json(rec: KeyRecord) -> str:
    """The stored form of a key record (no secret, no hash: those never enter the record)."""
    k = rec.key
    return json.dumps({
        "id": k.id, "name": k.name, "prefix": k.prefix,
        "models": None if k.models is None else sorted(k.models),
        "rpm": k.rpm, "tpm": k.tpm, "max_in_flight": k.max_in_flight,
        "budget_daily": None if k.budget_daily is None else str(k.budget_daily),
        "budget_monthly": None if k.budget_monthly is None else str(k.budget_monthly),
        "expires_at": _ts(k.expires_at), "allow_ip": [str(n) for n in k.allow_ip],
        "created_at": _ts(rec.created_at), "revoked_at": _ts(rec.revoked_at),
        "rotated_at": _ts(rec.rotated_at),
    }, separators=(",", ":"))


def record_from_json(text: str | bytes) -> KeyRecord:
    """A key record back from `record_to_json`'s text."""
    d = json.loads(text)
    key = VirtualKey(
        id=d["id"], name=d["name"], prefix=d["prefix"],
        models=None if d["models"] is None else frozenset(d["models"]),
        rpm=d["rpm"], tpm=d["tpm"], max_in_flight=d["max_in_flight"],
        budget_daily=None if d["budget_daily"] is None else Decimal(d["budget_daily"]),
        budget_monthly=None if d["budget_monthly"] is None else Decimal(d["budget_monthly"]),
        expires_at=_dt(d["expires_at"]),
        allow_ip=tuple(ipaddress.ip_network(n) for n in d["allow_ip"]),
    )
    created = _dt(d["created_at"])
    assert created is not None
    return KeyRecord(key, created, _dt(d["revoked_at"]), _dt(d.get("rotated_at")))


class KeyAdmin:
    """The key-administration half of a gateway state; the subclass supplies the store primitives
    below, the pepper, the clock, `_forget` (drop the key cache) and `flush`."""

    _pepper: bytes
    _clock: Callable[[], datetime]

    async def _insert_key(self, token_hash: str, rec: KeyRecord) -> None:
        raise NotImplementedError

    async def _replace_key(self, rec: KeyRecord, old_hash: str | None, new_hash: str | None) -> None:
        """Store `rec` (same id), move its hash when rotating, and bump the generation."""
        raise NotImplementedError

    async def _records(self) -> list[tuple[str, KeyRecord]]:
        """Every key as (hash, record)."""
        raise NotImplementedError

    async def _usage_rows(self, key_id: str, since: str) -> list[UsageRow]:
        raise NotImplementedError

    def _forget(self) -> None:
        raise NotImplementedError

    async def flush(self) -> None:
        raise NotImplementedError

    async def create_key(
        self, name: str, *, models: Iterable[str] | None = None, rpm: int | None = None,
        tpm: int | None = None, max_in_flight: int | None = None, budget_daily: Decimal | None = None,
        budget_monthly: Decimal | None = None, expires_at: datetime | None = None,
        allow_ip: Sequence[str | IPNetwork] = (),
    ) -> tuple[str, VirtualKey]:
        """A new key; the returned token is the only copy of the secret."""
        spec = KeySpec(name, None if models is None else frozenset(models), rpm, tpm, max_in_flight,
                       budget_daily, budget_monthly, expires_at, parse_networks(allow_ip)).validated()
        if spec.expires_at is not None and spec.expires_at <= self._clock():
            raise GatewayKeyError(f"expires_at {spec.expires_at.isoformat()} is in the past")
        if isinstance(models, str):
            raise GatewayKeyError("models must be a list of model names, not one string")
        token = new_token()
        prefix = display_prefix(token)
        assert prefix is not None
        key = VirtualKey(f"key_{secrets.token_hex(8)}", spec.name, prefix, spec.models, spec.rpm, spec.tpm,
                         spec.max_in_flight, spec.budget_daily, spec.budget_monthly, spec.expires_at,
                         spec.allow_ip)
        rec = KeyRecord(key, self._clock())
        await store_call("creating a key", self._insert_key(hash_token(self._pepper, token), rec))
        return token, key

    async def list_keys(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""
        records = await store_call("listing keys", self._records())
        return sorted((rec for _, rec in records), key=lambda r: (r.created_at, r.key.id))

    async def _find(self, id_or_prefix: str) -> tuple[str, KeyRecord]:
        want = id_or_prefix.strip()
        short = want[len("sk-dsk-"):] if want.startswith("sk-dsk-") else want
        for h, rec in await store_call("finding a key", self._records()):
            if want in (rec.key.id, rec.key.prefix) or short == rec.key.prefix[len("sk-dsk-"):]:
                return h, rec
        raise KeyNotFoundError(f"no key with id or prefix {want[:40]!r} (dsk keys list shows them)")

    async def get_key(self, id_or_prefix: str) -> KeyRecord:
        """One key by id (`key_...`) or display prefix (`sk-dsk-...`); 404 KeyNotFoundError."""
        return (await self._find(id_or_prefix))[1]

    async def revoke(self, key_id: str) -> KeyRecord:
        """Refuse the key from now on, in every process within a second; idempotent."""
        h, rec = await self._find(key_id)
        if rec.revoked_at is None:
            rec = KeyRecord(rec.key, rec.created_at, self._clock(), rec.rotated_at)
            await store_call("revoking", self._replace_key(rec, h, None))
        self._forget()
        return rec

    async def rotate(self, key_id: str) -> tuple[str, VirtualKey]:
        """A new secret (and display prefix) for the same key id, budgets and spend; the old token
        stops working everywhere within a second."""
        h, rec = await self._find(key_id)
        if rec.revoked_at is not None:
            raise GatewayKeyError(f"key {rec.key.id} is revoked; create a new one instead of rotating")
        token = new_token()
        prefix = display_prefix(token)
        assert prefix is not None
        k = rec.key
        key = VirtualKey(k.id, k.name, prefix, k.models, k.rpm, k.tpm, k.max_in_flight, k.budget_daily,
                         k.budget_monthly, k.expires_at, k.allow_ip)
        await store_call("rotating", self._replace_key(KeyRecord(key, rec.created_at, None, self._clock()), h,
                                                   hash_token(self._pepper, token)))
        self._forget()
        return token, key

    async def usage(self, key_id: str, since: date | None = None) -> list[UsageRow]:
        """Spend per Beijing day and model, oldest first (this process's buffer flushed first)."""
        _, rec = await self._find(key_id)
        with contextlib.suppress(Exception):
            await self.flush()
        since_day = since.isoformat() if since else ""
        return await store_call("reading usage", self._usage_rows(rec.key.id, since_day))
