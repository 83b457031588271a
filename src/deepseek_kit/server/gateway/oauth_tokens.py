"""Access tokens of the gateway's OAuth clients: short-lived JWTs (RFC 7519, profile of RFC 9068)
signed with one pinned algorithm, EdDSA over Ed25519, and checked on every request in place of a
virtual key (`TokenService.authenticate`, called from admission.py for a bearer with two dots).

Header `{"alg": "EdDSA", "typ": "at+jwt", "kid": ...}`; claims iss, aud, sub (= client_id),
client_id, key_id (the bound virtual key), scope, iat, nbf, exp, jti, ver (the client's secret
version). PyJWT (with `cryptography`) does the JOSE work: parsing, the Ed25519 signature, iss and
aud. Why PyJWT rather than hand-written JOSE or a larger library (authlib, jwcrypto): it is the most
used and maintained JWT library for Python, small, takes the accepted algorithms per call (pinned
here), never uses an asymmetric key as an HMAC secret, and its Ed25519 runs in OpenSSL.
Everything that depends on time is checked here against the state's clock, which tests and
`DSK_FAKE_NOW` can move (PyJWT reads the system clock).

Signing keys live in the gateway state (oauth_store.py); the private half is encrypted at rest with
AES-256-GCM under a key derived from the pepper (HMAC-SHA256(pepper, label)), so a copy of the
SQLite file or of Redis without the pepper cannot mint tokens. The first token issued creates a
key; `rotate_signing_key` makes a new current key and retires the old one, whose public half keeps
verifying the tokens it signed before its retirement until they expire.

Refused with 401 (InvalidKeyError, DeepSeek's error body): a token longer than `MAX_TOKEN_LEN`
(checked before any parsing), malformed, any `alg` but EdDSA (so `none` and HS256-with-the-public-
key both fail before a key is chosen), a `typ` that is not at+jwt, a `kid` that is not a short
URL-safe name or not one of ours, a bad signature, wrong iss or aud, expired, not yet valid (a few
seconds of leeway for clock skew between hosts), a revoked or rotated client, a revoked or expired
bound key. Verified tokens are cached (bounded) by their text, so a repeated token costs a dict
lookup and the time checks; the cache, the clients and keys it relies on, and the signing keys are
dropped whenever the state's revocation generation moves (polled every 0.5 s, state_common.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .keys import (
    ForbiddenError,
    GatewayKeyError,
    GatewayState,
    InvalidKeyError,
    KeyRecord,
    StateUnavailableError,
    VirtualKey,
)
from .oauth_clients import MAX_TOKEN_TTL, ClientRecord, OAuthClients
from .state_admin import store_call
from .state_common import REVALIDATE

__all__ = ["ALGORITHM", "AUDIENCE", "ISSUER", "MAX_TOKEN_LEN", "OAuthUnavailableError", "TokenService",
           "tokens_for"]

#: The one algorithm tokens are signed and accepted with.
ALGORITHM = "EdDSA"
ISSUER = "dsk-gateway"
AUDIENCE = "dsk-gateway"
#: Longest bearer value given to the JWT parser (ours are ~500 characters).
MAX_TOKEN_LEN = 2048
#: Seconds a token's nbf/iat may be ahead of this host's clock (skew between gateway hosts).
LEEWAY = 5
_KID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CACHE_MAX = 10_000  # ~7 MB of verified tokens at most
_LABEL = b"dsk-gateway-oauth-signing-key:v1"
_REQUIRED = ["iss", "aud", "sub", "exp", "nbf", "iat", "scope", "key_id", "ver"]


class OAuthUnavailableError(GatewayKeyError):
    """501: this installation has no JOSE library, so it can neither issue nor check tokens."""

    status = 501
    type = "api_error"


def _jwt() -> Any:
    try:
        import jwt
    except ImportError:
        raise OAuthUnavailableError("OAuth access tokens need PyJWT with cryptography on the gateway: "
                                    "pip install 'deepseek-kit[oauth]'") from None
    return jwt


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class _SigningKey:
    kid: str
    public: Any  # Ed25519PublicKey
    private: Any  # Ed25519PrivateKey
    retired: float | None


@dataclass(frozen=True, slots=True)
class _Claims:
    client_id: str
    key_id: str
    exp: int
    nbf: int
    iat: int
    ver: int
    kid: str


def _refuse(why: str) -> InvalidKeyError:
    return InvalidKeyError(f"Authentication Fails, the access token {why}")


class TokenService:
    """Issues and verifies access tokens for the OAuth clients of one gateway state (one per state:
    `tokens_for(state)`); `clients` manages the clients themselves. Tokens carry `issuer` as
    their `iss` claim and `audience` as `aud` (both "dsk-gateway" by default), and only tokens
    with both are accepted."""

    def __init__(self, state: GatewayState, *, issuer: str = ISSUER, audience: str = AUDIENCE) -> None:
        self.clients = OAuthClients(state)
        self.clients.changed = self.forget
        self.store = self.clients.store
        self.issuer = issuer
        self.audience = audience
        self._aead_key = hmac.new(self.clients._pepper, _LABEL, hashlib.sha256).digest()
        self._keys: dict[str, _SigningKey] | None = None
        self._current: str | None = None
        self._lock = asyncio.Lock()
        self._verified: dict[str, _Claims] = {}
        self._client_cache: dict[str, ClientRecord | None] = {}
        self._key_cache: dict[str, KeyRecord | None] = {}
        self._gen: int | None = None
        self._checked = -1e9
        self._epoch = 0
        self._reload_at = 0.0
        self._state_epoch = -1

    def __repr__(self) -> str:  # never a key
        return f"<TokenService {self.issuer} cached={len(self._verified)}>"

    def now(self) -> float:
        return float(self.clients.clock().timestamp())

    def forget(self) -> None:
        """Drop every cache now (this process changed a client or a signing key)."""
        self._epoch += 1
        self._verified.clear()
        self._client_cache.clear()
        self._key_cache.clear()
        self._keys = None
        self._checked = -1e9

    # -- signing keys ------------------------------------------------------------------------------

    def _seal(self, kid: str, private: Any) -> str:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
        pub = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        nonce = secrets.token_bytes(12)
        sealed = nonce + AESGCM(self._aead_key).encrypt(nonce, raw, kid.encode())
        return json.dumps({"kid": kid, "alg": ALGORITHM, "pub": _b64(pub), "enc": _b64(sealed)},
                          separators=(",", ":"))

    def _unseal(self, data: str, retired: float | None) -> _SigningKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        d = json.loads(data)
        sealed = _unb64(d["enc"])
        try:
            raw = AESGCM(self._aead_key).decrypt(sealed[:12], sealed[12:], d["kid"].encode())
        except Exception:  # InvalidTag: a server-side misconfiguration, so a 503, not the caller's fault
            raise StateUnavailableError("cannot decrypt the gateway's token-signing key: the pepper differs "
                                        "from the one it was made with (use the same pepper on every "
                                        "gateway worker and for dsk clients)") from None
        return _SigningKey(d["kid"], Ed25519PublicKey.from_public_bytes(_unb64(d["pub"])),
                           Ed25519PrivateKey.from_private_bytes(raw), retired)

    async def _load_keys(self) -> dict[str, _SigningKey]:
        keys = self._keys
        if keys is not None:
            return keys
        async with self._lock:
            if self._keys is None:
                epoch = self._epoch
                current, rows = await store_call("reading token-signing keys", self.store.signing_keys())
                loaded = {k.kid: k for k in (self._unseal(d, r) for d, r in rows)}
                if epoch == self._epoch:
                    self._keys, self._current = loaded, current
                return loaded
            return self._keys

    async def _signing_key(self) -> _SigningKey:
        keys = await self._load_keys()
        if self._current is None or self._current not in keys:
            await self._new_key(only_if_none=True)
            keys = await self._load_keys()
        assert self._current is not None
        return keys[self._current]

    async def _new_key(self, *, only_if_none: bool) -> str:
        _jwt()
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        kid = secrets.token_urlsafe(12)
        data = self._seal(kid, Ed25519PrivateKey.generate())
        current = await store_call("storing a token-signing key",
                               self.store.add_signing_key(kid, data, self.now(), only_if_none))
        self.forget()
        return current

    async def rotate_signing_key(self) -> str:
        """A new current signing key (its kid returned); tokens signed by the previous key stay
        valid until they expire."""
        return await self._new_key(only_if_none=False)

    async def signing_keys(self) -> list[dict[str, Any]]:
        """The public view of every signing key: kid, current, retired (never a private half)."""
        keys = await self._load_keys()
        return [{"kid": k.kid, "alg": ALGORITHM, "current": k.kid == self._current,
                 "retired": None if k.retired is None else
                 datetime.fromtimestamp(k.retired, timezone.utc).isoformat()} for k in keys.values()]

    async def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set (RFC 7517 section 5, OKP keys of RFC 8037) of the public halves of
        the current signing key and of every retired one whose tokens may still be valid: a key
        retired at t signed nothing after t, and no token lives longer than `MAX_TOKEN_TTL`. The
        newest key comes first. Never a private half (`d`)."""
        from cryptography.hazmat.primitives import serialization

        if time.monotonic() - self._checked > REVALIDATE:  # a key rotated by another worker
            await self._revalidate()
        await self._signing_key()  # makes the first key if there is none: the set is never empty
        keys = await self._load_keys()
        horizon = self.now() - MAX_TOKEN_TTL - LEEWAY
        live = [k for k in keys.values() if k.retired is None or k.retired > horizon]
        live.sort(key=lambda k: (k.retired is None, k.retired or 0.0), reverse=True)
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": _b64(k.public.public_bytes(*raw)),
                          "kid": k.kid, "use": "sig", "alg": ALGORITHM} for k in live]}

    # -- issuing -----------------------------------------------------------------------------------

    async def issue(self, client: ClientRecord, scope: str) -> tuple[str, int]:
        """(access token, lifetime in seconds) for a client whose credentials were checked."""
        jwt = _jwt()
        key = await self._signing_key()
        now = int(self.now())
        claims = {"iss": self.issuer, "aud": self.audience, "sub": client.client_id,
                  "client_id": client.client_id, "key_id": client.key_id, "scope": scope, "iat": now,
                  "nbf": now, "exp": now + client.token_ttl, "jti": secrets.token_urlsafe(12),
                  "ver": client.version}
        token: str = jwt.encode(claims, key.private, algorithm=ALGORITHM,
                                headers={"kid": key.kid, "typ": "at+jwt"})
        return token, client.token_ttl

    # -- verifying ---------------------------------------------------------------------------------

    async def authenticate(self, token: str, client_ip: str | None) -> VirtualKey:
        """The bound key of a valid access token; 401 InvalidKeyError otherwise (module docstring),
        403 ForbiddenError when the key may not be used from `client_ip`, 503 when the store fails."""
        if len(token) > MAX_TOKEN_LEN:
            raise _refuse(f"is longer than {MAX_TOKEN_LEN} characters")
        if self.clients.state._epoch != self._state_epoch:  # type: ignore[attr-defined]
            # The state dropped its key cache (this process revoked or rotated a key): so do we.
            self._state_epoch = self.clients.state._epoch  # type: ignore[attr-defined]
            self.forget()
        if time.monotonic() - self._checked > REVALIDATE:
            await self._revalidate()
        claims = self._verified.get(token)
        if claims is None:
            epoch = self._epoch
            claims = await self._verify(token)
            if epoch == self._epoch:
                if len(self._verified) >= _CACHE_MAX:
                    self._verified.clear()
                self._verified[token] = claims
        now = self.now()
        if now >= claims.exp:
            at = datetime.fromtimestamp(claims.exp, timezone.utc).isoformat()
            raise _refuse(f"expired at {at}; fetch a new one from /v1/oauth/token")
        if now + LEEWAY < claims.nbf:
            raise _refuse("is not valid yet (nbf is in the future)")
        client: ClientRecord | None = await self._cached(self._client_cache, claims.client_id,
                                                         self._read_client)
        if client is None or client.revoked is not None:
            raise _refuse(f"belongs to OAuth client {claims.client_id}, which is unknown or revoked")
        if client.version != claims.ver or client.key_id != claims.key_id:
            raise _refuse(f"was issued under an old secret of client {claims.client_id} (rotated); "
                          "fetch a new one")
        rec: KeyRecord | None = await self._cached(self._key_cache, claims.key_id, self.key_record)
        if rec is None or rec.revoked_at is not None:
            raise _refuse(f"acts as key {claims.key_id}, which is unknown or revoked")
        key: VirtualKey = rec.key
        if key.expires_at is not None and self.clients.clock() >= key.expires_at:
            raise _refuse(f"acts as key {claims.key_id}, which expired at {key.expires_at.isoformat()}")
        if not key.allows_ip(client_ip):
            raise ForbiddenError(f"the key {key.prefix}**** of OAuth client {claims.client_id} may not be "
                                 "used from this address")
        return key

    async def _read_client(self, client_id: str) -> ClientRecord | None:
        row = await store_call("looking up an OAuth client", self.store.client(client_id))
        return None if row is None else ClientRecord.from_json(row[0])

    async def key_record(self, key_id: str) -> KeyRecord | None:
        """The bound key's record by id (one indexed read, revoked keys too), or None."""
        return await store_call("looking up a key", self.store.key_record(key_id))

    async def _cached(self, cache: dict[str, Any], ident: str, read: Any) -> Any:
        if ident in cache:
            return cache[ident]
        epoch = self._epoch
        value = await read(ident)
        if epoch == self._epoch:  # no change seen while we read: safe to remember
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[ident] = value
        return value

    async def _revalidate(self) -> None:
        self._checked = time.monotonic()
        try:
            gen = await store_call("checking for revocations", self.store.generation())
        except BaseException:
            self._checked = -1e9
            raise
        if gen != self._gen:
            self.forget()
            self._gen = gen
            self._checked = time.monotonic()

    async def _verify(self, token: str) -> _Claims:
        """Parse and check everything that does not depend on time or on revocation."""
        try:
            jwt = _jwt()
        except OAuthUnavailableError:  # no token can have been issued here: the caller's bearer is bad
            raise _refuse("cannot be one of this gateway's (it has no OAuth support installed)") from None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _refuse("is malformed (not a JWT of this gateway)") from None
        alg = header.get("alg")
        if alg != ALGORITHM:
            raise _refuse(f"is signed with {str(alg)[:20]!r}; this gateway accepts only {ALGORITHM}")
        if header.get("typ") != "at+jwt":
            raise _refuse("is not an access token (typ must be at+jwt)")
        kid = header.get("kid")
        if not isinstance(kid, str) or not _KID_RE.fullmatch(kid):
            raise _refuse("names no valid signing key (kid)")
        keys = await self._load_keys()
        if kid not in keys and time.monotonic() >= self._reload_at:
            # A key rotated by another worker a moment ago: look once (rate-limited, so a flood of
            # made-up kids costs the store one read per interval).
            self._reload_at = time.monotonic() + REVALIDATE
            self._keys = None
            keys = await self._load_keys()
        signing = keys.get(kid)
        if signing is None:
            raise _refuse("names a signing key (kid) this gateway does not have")
        try:
            claims = jwt.decode(token, signing.public, algorithms=[ALGORITHM], audience=self.audience,
                                issuer=self.issuer, options={"verify_exp": False, "verify_nbf": False,
                                                             "verify_iat": False, "require": _REQUIRED})
        except jwt.InvalidSignatureError:
            raise _refuse("has a bad signature") from None
        except jwt.InvalidAudienceError:
            raise _refuse(f"is not for this gateway (aud must be {self.audience!r})") from None
        except jwt.InvalidIssuerError:
            raise _refuse(f"was not issued by this gateway (iss must be {self.issuer!r})") from None
        except jwt.InvalidTokenError:
            raise _refuse("is malformed (missing or invalid claims)") from None
        ints = [claims.get(c) for c in ("exp", "nbf", "iat", "ver")]
        strs = [claims.get(c) for c in ("sub", "key_id", "scope")]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints) or \
                not all(isinstance(v, str) for v in strs):
            raise _refuse("is malformed (claims of the wrong type)")
        exp, nbf, iat, ver = ints
        if signing.retired is not None and iat > signing.retired + 1:
            raise _refuse("was signed by a retired signing key after its retirement")
        return _Claims(claims["sub"], claims["key_id"], exp, nbf, iat, ver, kid)


_SERVICES: weakref.WeakKeyDictionary[Any, TokenService] = weakref.WeakKeyDictionary()


def tokens_for(state: GatewayState) -> TokenService:
    """The one `TokenService` of an open state (the admission path, the token endpoint, the admin
    API and `dsk clients` share its caches)."""
    service = _SERVICES.get(state)
    if service is None:
        service = _SERVICES[state] = TokenService(state)
    return service
