"""OAuth2 clients of the gateway (client-credentials grant, RFC 6749 section 4.4): each is bound to
one virtual key and gets access tokens that act with that key's models, limits and budgets.

A client has a public random `client_id` (`dskc_` + 20 hex digits) and a secret (`dsk-cs-` + 32
random bytes, URL-safe base64) kept only as HMAC-SHA256(pepper, secret), like key tokens
(keys.py): the plaintext is returned once by `create` and `rotate`, and never stored, logged or put
in a repr. Rotating the secret also ends the access tokens issued under the old one (their
`ver` claim no longer matches); revoking ends them all. Both reach every worker within a second.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from .keys import GatewayKeyError, GatewayState, KeyNotFoundError, KeyRecord, hash_token
from .oauth_store import OAuthStore, oauth_store
from .state_admin import store_call

__all__ = ["DEFAULT_SCOPE", "DEFAULT_TOKEN_TTL", "MAX_TOKEN_TTL", "ClientNotFoundError", "ClientRecord",
           "OAuthClients"]

#: The scope of a client created without one.
DEFAULT_SCOPE = "api"
#: Access-token lifetime (seconds) of a client created without one: short, the grant is cheap.
DEFAULT_TOKEN_TTL = 900
#: The longest access-token lifetime a client may have (one day).
MAX_TOKEN_TTL = 86_400
SECRET_PREFIX = "dsk-cs-"
_CLIENT_ID_RE = re.compile(r"dskc_[0-9a-f]{20}")
_NO_CLIENT_HASH = "0" * 64  # compared against when the client does not exist (never a real hash)
_SCOPE_RE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 section 3.3 scope-token


class ClientNotFoundError(KeyNotFoundError):
    """404 (admin API and `dsk clients`): no OAuth client has this id."""


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """An OAuth client as stored and as the admin sees it. Never holds the secret or its hash.

    Attributes:
        client_id: The client's id (`dskc_` and 20 hex digits), its OAuth `client_id`.
        name: The name given at creation (`--name billing-bot`).
        key_id: The virtual key the client acts as: its tokens pass where that key may go.
        scope: Space-separated scope words, carried in the tokens for your own services to read.
        token_ttl: Lifetime of the access tokens it gets, in seconds (1 to 86400).
        created: When the client was created.
        revoked: When it was revoked (its tokens stop working), or None.
        rotated: When its secret was last replaced, or None.
        version: The secret's version, +1 on every rotation; tokens carry it as `ver`, so
            rotating ends the tokens issued under the old secret."""

    client_id: str
    name: str
    key_id: str
    scope: str
    token_ttl: int
    created: datetime
    revoked: datetime | None = None
    rotated: datetime | None = None
    version: int = 1  # +1 on every secret rotation; tokens carry it as `ver`

    def scopes(self) -> frozenset[str]:
        """The scope as a set of scope tokens."""
        return frozenset(self.scope.split())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (admin API, `dsk clients list --json`): no secret, no hash."""
        return {"client_id": self.client_id, "name": self.name, "key_id": self.key_id, "scope": self.scope,
                "token_ttl": self.token_ttl, "created": self.created.isoformat(),
                "revoked": None if self.revoked is None else self.revoked.isoformat()}

    def to_json(self) -> str:
        def ts(at: datetime | None) -> float | None:
            return None if at is None else at.timestamp()

        return json.dumps({"client_id": self.client_id, "name": self.name, "key_id": self.key_id,
                           "scope": self.scope, "token_ttl": self.token_ttl, "created": ts(self.created),
                           "revoked": ts(self.revoked), "rotated": ts(self.rotated), "version": self.version},
                          separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> ClientRecord:
        d = json.loads(text)

        def dt(v: Any) -> datetime | None:
            return None if v is None else datetime.fromtimestamp(float(v), timezone.utc)

        created = dt(d["created"])
        assert created is not None
        return ClientRecord(d["client_id"], d["name"], d["key_id"], d["scope"], int(d["token_ttl"]), created,
                            dt(d["revoked"]), dt(d.get("rotated")), int(d.get("version", 1)))


def check_scope(scope: str) -> str:
    """`scope` normalised (one space between tokens), or a GatewayKeyError saying what is wrong."""
    tokens = scope.split()
    if not tokens or len(scope) > 1000 or not all(_SCOPE_RE.fullmatch(t) for t in tokens):
        raise GatewayKeyError(f"a scope is 1 or more space-separated words of printable ASCII without "
                              f"quotes or backslashes, got {scope[:60]!r}")
    return " ".join(dict.fromkeys(tokens))


def check_ttl(ttl: int) -> int:
    """`ttl` if it is a whole number of seconds from 1 to `MAX_TOKEN_TTL`."""
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TOKEN_TTL:
        raise GatewayKeyError(f"token_ttl must be a whole number of seconds from 1 to {MAX_TOKEN_TTL}, "
                              f"got {ttl!r}")
    return ttl


class OAuthClients:
    """Create, list, revoke and rotate the OAuth clients stored beside `state`'s keys, and check a
    client's credentials (the token endpoint)."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.store: OAuthStore = oauth_store(state)
        # The state's pepper and clock: the same keyed hash and the same (injectable) time as keys.
        self._pepper: bytes = state._pepper  # type: ignore[attr-defined]
        self.clock = state._clock  # type: ignore[attr-defined]
        #: Called after this process revokes or rotates a client (the token service drops its caches).
        self.changed: Callable[[], None] | None = None

    def __repr__(self) -> str:  # never the pepper
        return f"<OAuthClients {self.state!r}>"

    def hash_secret(self, secret: str) -> str:
        """The stored form of a client secret (HMAC-SHA256 with the pepper, domain-separated from
        key tokens so that a secret can never match a key's hash)."""
        return hash_token(self._pepper, "oauth-client:" + secret)

    async def create(self, name: str, key: str, *, scope: str = DEFAULT_SCOPE,
                     token_ttl: int = DEFAULT_TOKEN_TTL) -> tuple[str, ClientRecord]:
        """A new client bound to `key` (id or display prefix); the returned secret is its only copy."""
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise GatewayKeyError("a client needs a name of 1 to 200 characters")
        bound = await self._live_key(key)
        rec = ClientRecord(f"dskc_{secrets.token_hex(10)}", name.strip(), bound.key.id, check_scope(scope),
                           check_ttl(token_ttl), self.clock())
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        await store_call("creating an OAuth client", self.store.insert_client(rec.client_id, rec.to_json(),
                                                                         self.hash_secret(secret)))
        return secret, rec

    async def _live_key(self, key: str) -> KeyRecord:
        if not isinstance(key, str) or not key.strip():
            raise GatewayKeyError("a client needs the key it acts as: its id (key_...) or prefix "
                                  "(sk-dsk-...)")
        rec = await self.state.get_key(key)
        if rec.status(self.clock()) != "active":
            raise GatewayKeyError(f"key {rec.key.id} is {rec.status(self.clock())}; bind the client to an "
                                  "active key")
        return rec

    async def list_clients(self) -> list[ClientRecord]:
        """Every client, revoked ones included, oldest first."""
        rows = await store_call("listing OAuth clients", self.store.clients())
        return sorted((ClientRecord.from_json(d) for d, _ in rows), key=lambda r: (r.created, r.client_id))

    async def get(self, client_id: str) -> ClientRecord:
        """One client; 404 ClientNotFoundError."""
        return (await self._row(client_id))[0]

    async def _row(self, client_id: str) -> tuple[ClientRecord, str]:
        cid = client_id.strip() if isinstance(client_id, str) else ""
        row = None
        if _CLIENT_ID_RE.fullmatch(cid):
            row = await store_call("looking up an OAuth client", self.store.client(cid))
        if row is None:
            raise ClientNotFoundError(f"no OAuth client with id {cid[:40]!r} (dsk clients list shows them)")
        return ClientRecord.from_json(row[0]), row[1]

    async def revoke(self, client_id: str) -> ClientRecord:
        """Refuse the client and every token it holds, on every worker within a second; idempotent."""
        rec, h = await self._row(client_id)
        if rec.revoked is None:
            rec = replace(rec, revoked=self.clock())
            await store_call("revoking an OAuth client",
                         self.store.update_client(rec.client_id, rec.to_json(), h))
        self._changed()
        return rec

    def _changed(self) -> None:
        if self.changed is not None:
            self.changed()

    async def rotate(self, client_id: str) -> tuple[str, ClientRecord]:
        """A new secret (returned once); the old secret and the tokens issued under it stop working."""
        rec, _ = await self._row(client_id)
        if rec.revoked is not None:
            raise GatewayKeyError(f"client {rec.client_id} is revoked; create a new one instead of rotating")
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        rec = replace(rec, rotated=self.clock(), version=rec.version + 1)
        await store_call("rotating an OAuth client", self.store.update_client(rec.client_id, rec.to_json(),
                                                                         self.hash_secret(secret)))
        self._changed()
        return secret, rec

    async def check(self, client_id: str, secret: str) -> ClientRecord | None:
        """The live client these credentials belong to, or None (unknown id, wrong secret, revoked):
        the token endpoint answers all three alike, `invalid_client`."""
        if not _CLIENT_ID_RE.fullmatch(client_id) or not secret:
            return None  # tells only what the public id format already tells
        row = await store_call("checking OAuth client credentials", self.store.client(client_id))
        # The secret is hashed and compared whether or not the client exists, so that an unknown
        # id and a wrong secret take the same time (no enumeration of client ids by timing).
        stored = _NO_CLIENT_HASH if row is None else row[1]
        matches = hmac.compare_digest(self.hash_secret(secret), stored)
        if row is None or not matches:
            return None
        rec = ClientRecord.from_json(row[0])
        return None if rec.revoked is not None else rec
