"""Auth providers and the auth step (just above the transport, so every attempt gets a fresh
header and a refreshed token applies to the retry).

- `StaticKey(key)`: the default; `Authorization: Bearer <key>`, no await on the hot path.
- `KeyRotation([k1, k2, ...])`: round-robin over several keys; a key answered with 401 is set
  aside for `cooldown` seconds and the request is retried once with the next key.
- `OAuth2ClientCredentials(token_url, client_id, client_secret, scope=...)`: for gateways and
  private deployments that use it (DeepSeek itself has no OAuth,
  docs/deepseek-api-notes.md#base-urls-and-authentication). The token
  is fetched with the client-credentials grant (RFC 6749 §4.4), cached until `refresh_margin`
  seconds before it expires, refreshed by one caller at a time (the others wait for that refresh),
  and on a 401 invalidated and fetched again once before the request is retried once.

Hand-written: an OAuth library (authlib, oauthlib) would bring its own HTTP client and sessions;
the client-credentials grant is one form POST, and the parts that matter here (single refresh,
refresh-and-retry once) are about our pipeline, not the protocol.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from deepseek_kit._transport.request import Request, Response
from deepseek_kit._wire.errors import APIConnectionError, AuthenticationError, UsageError, make_status_error

from .base import CallNext
from .retry import retry_after_seconds

__all__ = ["AuthProvider", "AuthStep", "KeyRotation", "OAuth2ClientCredentials", "StaticKey",
           "provider_secrets"]



class AuthProvider(Protocol):
    """Where the Authorization header comes from: `AsyncClient(auth=...)` or `Endpoint(auth=...)`
    take any object with these members (`StaticKey`, `KeyRotation`, `OAuth2ClientCredentials`, or
    your own). The auth step asks it before every attempt and tells it about every 401.

    `static` is the header value when it never changes (then `authorization()` is not awaited).

    A provider may also define `secrets() -> tuple[str, ...]`: every secret it holds right now (keys,
    current tokens, a client secret). The client masks them wherever a server echoes them, in errors
    and in the logs (docs/attack-round-2026-12.md, S2); the providers here all do."""

    static: str | None

    async def authorization(self) -> str | None:
        """The whole Authorization header value for the next attempt (`"Bearer sk-..."`), or None
        to send none. Called before every attempt that `static` does not cover: keep it cheap."""
        ...

    async def unauthorized(self, header: str | None) -> bool:
        """The server rejected `header` with 401; True when a retry with a new header may work."""


class StaticKey:
    """One fixed API key: `Authorization: Bearer <key>`, the same on every request (the default
    provider; `AsyncClient(api_key=...)` builds it). A 401 is final: nothing to rotate to."""

    def __init__(self, api_key: str | None) -> None:
        self.static: str | None = f"Bearer {api_key}" if api_key else None
        self._key = api_key

    async def authorization(self) -> str | None:
        """`Bearer <key>`, or None without a key."""
        return self.static

    async def unauthorized(self, header: str | None) -> bool:
        """False: a fixed key cannot be replaced."""
        return False

    def secrets(self) -> tuple[str, ...]:
        """Every secret held now, for the client to mask in errors and logs."""
        return (self._key,) if self._key else ()

    def __repr__(self) -> str:
        return f"StaticKey({'****' + self._key[-4:] if self._key else None})"


class KeyRotation:
    """Several API keys used round-robin: `AsyncClient(auth=KeyRotation(["sk-a", "sk-b"]))`.

    A key answered with 401 is set aside for `cooldown` seconds and the request is retried once with
    the next key; when every key is set aside, they are tried anyway."""

    def __init__(self, keys: Sequence[str], *, cooldown: float = 300.0) -> None:
        if not keys or not all(isinstance(k, str) and k for k in keys):
            raise UsageError("KeyRotation needs a non-empty list of API keys")
        self.static: str | None = None  # typed as the protocol declares it (mypy --strict callers)
        self._headers = [f"Bearer {k}" for k in keys]
        self._i = 0
        self._bad: dict[str, float] = {}
        self.cooldown = cooldown

    async def authorization(self) -> str | None:
        """The next key in turn that is not set aside."""
        now = time.monotonic()
        n = len(self._headers)
        for _ in range(n):
            h = self._headers[self._i % n]
            self._i += 1
            until = self._bad.get(h)
            if until is None or until <= now:
                return h
        return self._headers[self._i % n]  # every key set aside: try anyway

    async def unauthorized(self, header: str | None) -> bool:
        """Set the key of `header` aside for `cooldown`; True while another key is left."""
        if header is not None:
            self._bad[header] = time.monotonic() + self.cooldown
        return len(self._bad) < len(self._headers)

    def secrets(self) -> tuple[str, ...]:
        """Every secret held now, for the client to mask in errors and logs."""
        return tuple(h[len("Bearer "):] for h in self._headers)

    def __repr__(self) -> str:
        return f"KeyRotation({len(self._headers)} keys)"


class _Token(msgspec.Struct):
    access_token: str
    token_type: str = "Bearer"
    expires_in: float | None = None


class OAuth2ClientCredentials:
    """Bearer tokens from an OAuth2 token endpoint (client-credentials grant, RFC 6749 section 4.4),
    for gateways and private deployments in front of a model (DeepSeek's own API uses API keys):

        auth = OAuth2ClientCredentials("https://idp.example/token", "my-id", "my-secret", scope="llm")
        client = AsyncClient(base_url="https://gateway.example/v1", auth=auth)

    The token is cached until `refresh_margin` seconds before it expires (`expires_in`, else one
    hour), fetched by one caller at a time while the others wait, and on a 401 fetched again once
    before the request is retried once. `timeout` bounds each token request; `fetches` counts them.
    `token_url`, `client_id`, `client_secret`: the grant's endpoint and credentials (the secret is
    masked wherever it could show); `scope`, `audience`: sent with the grant when given."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        audience: str | None = None,
        refresh_margin: float = 60.0,
        timeout: float = 30.0,
    ) -> None:
        if not token_url.startswith(("http://", "https://")):
            raise UsageError(f"token_url must be an http(s) URL, got {token_url!r}")
        self.static: str | None = None  # typed as the protocol declares it (mypy --strict callers)
        self.token_url = token_url
        self._form = {"grant_type": "client_credentials", "client_id": client_id,
                      "client_secret": client_secret}
        if scope:
            self._form["scope"] = scope
        if audience:
            self._form["audience"] = audience
        self.refresh_margin = refresh_margin
        self.timeout = timeout
        self._header: str | None = None
        self._recent: list[str] = []  # the last access tokens (a server may echo a stale one)
        self._expires = 0.0
        self._lock: asyncio.Lock | None = None
        self.fetches = 0  # how many tokens were fetched (observability, tests)

    def __repr__(self) -> str:
        return f"OAuth2ClientCredentials({self.token_url!r}, client_id={self._form['client_id']!r})"

    def secrets(self) -> tuple[str, ...]:
        """Every secret held now, for the client to mask in errors and logs."""
        return (self._form["client_secret"], *self._recent)

    async def authorization(self) -> str | None:
        """The cached token's header, fetching a new token when it is about to expire."""
        if self._header is not None and time.monotonic() < self._expires:
            return self._header
        return await self._refresh(stale=self._header)

    async def unauthorized(self, header: str | None) -> bool:
        """Fetch a new token (unless another caller already has); True: retry with it."""
        await self._refresh(stale=header)
        return True

    async def _refresh(self, stale: str | None) -> str:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            # Someone else refreshed while we waited: use theirs (one refresh at a time).
            if self._header is not None and self._header != stale and time.monotonic() < self._expires:
                return self._header
            token = await self._fetch()
            kind = token.token_type.capitalize() if token.token_type else "Bearer"
            self._header = f"{kind} {token.access_token}"
            self._recent = [*self._recent[-1:], token.access_token]
            life = token.expires_in if token.expires_in is not None else 3600.0
            self._expires = time.monotonic() + max(0.0, life - self.refresh_margin)
            self.fetches += 1
            return self._header

    async def _fetch(self) -> _Token:
        import aiohttp

        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as s, \
                    s.post(self.token_url, data=self._form, headers={"Accept": "application/json"}) as r:
                body = await r.read()
                if r.status != 200:
                    err = make_status_error(r.status, r.headers, body,
                                            secrets=(self._form["client_secret"],))
                    err.message = (f"token endpoint {self.token_url} refused the client credentials: "
                                   f"{err.message}")
                    if r.status == 429:
                        # A token endpoint's 429 is a lock-out of these credentials (too many failed
                        # attempts), often for minutes: waiting it out inside a request would
                        # hold the caller far past any sensible deadline. Fail now, saying when.
                        wait = retry_after_seconds(r.headers)
                        if wait is not None and "retry" not in err.message.lower():
                            err.message += f"; retry in {wait:g} s"
                        err.final = True  # type: ignore[attr-defined]
                    raise err
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise APIConnectionError(f"could not reach the token endpoint {self.token_url}: "
                                     f"{type(exc).__name__}") from None
        try:
            return msgspec.json.decode(body, type=_Token)
        except msgspec.DecodeError as exc:
            raise APIConnectionError(
                f"the token endpoint {self.token_url} sent no usable token: {exc}") from None


def provider_secrets(provider: object) -> tuple[str, ...]:
    """The secrets an auth provider holds now (its `secrets()`; none for providers without it)."""
    fn = getattr(provider, "secrets", None)
    if not callable(fn):
        return ()
    return tuple(s for s in fn() if isinstance(s, str) and s)


class AuthStep:
    """Adds the Authorization header (the endpoint's provider when the router chose one, else the
    client's), and on a 401 lets the provider refresh or rotate, then retries once."""

    def __init__(self, provider: AuthProvider) -> None:
        self.provider = provider

    async def handle(self, request: Request, call_next: CallNext) -> Response:
        """Set the Authorization header and pass the request on; on a 401 ask the provider whether a
        new header may work (`unauthorized`) and, if so, try once more with it."""
        ep: Any = request.endpoint
        provider: AuthProvider = ep.auth if ep is not None and ep.auth is not None else self.provider
        header = provider.static
        if header is None:
            header = await provider.authorization()
        if header is not None:
            request.headers["Authorization"] = header
        try:
            return await call_next(request)
        except AuthenticationError:
            if not await provider.unauthorized(header):
                raise
        header = await provider.authorization()
        if header is not None:
            request.headers["Authorization"] = header
        return await call_next(request)
