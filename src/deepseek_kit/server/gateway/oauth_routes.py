"""HTTP routes of the gateway's OAuth2 client-credentials grant (RFC 6749 section 4.4):

    POST /v1/oauth/token (also /oauth/token)   the token endpoint
    GET /.well-known/jwks.json (also /v1/oauth/jwks)  the public signing keys (RFC 7517 JWK Set)
    POST   {admin}/clients                     create -> 201 with "client_secret" (shown once)
    GET    {admin}/clients                     {"data": [every client, never a secret]}
    POST   {admin}/clients/{id}/revoke         revoke (also DELETE {admin}/clients/{id})
    POST   {admin}/clients/{id}/rotate         new "client_secret"
    GET    {admin}/oauth/signing-keys          kid, current, retired of each token-signing key
    POST   {admin}/oauth/signing-keys/rotate   a new current signing key

The token endpoint takes the standard form body (`grant_type=client_credentials`, credentials in
HTTP Basic or in the body, RFC 6749 section 2.3.1) and also a JSON object with the same fields,
as many tutorials send. Success: `{"access_token", "token_type": "Bearer", "expires_in", "scope"}`;
failure: `{"error", "error_description"}` (section 5.2) with 400, or 401 for `invalid_client`
(plus `WWW-Authenticate: Basic` when Basic was used). Every answer has `Cache-Control: no-store`.
Unknown client, wrong secret and revoked client are one answer, so the endpoint tells an attacker
nothing about which client ids exist.

Failed client authentications are limited (auth_throttle.py, shared by every worker and gateway on
the state): `TOKEN_FAILURES_PER_CLIENT` per client_id, known or not, and
`TOKEN_FAILURES_PER_ADDRESS` per caller address. Over either, the endpoint answers 429 with
`Retry-After` and `{"error": "slow_down"}` before looking at the secret, so a right secret is
refused too until the window passes. Why `slow_down`: RFC 6749 section 5.2 has no error for "too
many attempts"; `slow_down` is the one error registered for token-endpoint responses (IANA OAuth
Extensions Error registry, RFC 8628 section 3.5) that means "back off and retry later", and 429
with Retry-After is RFC 6585's. `invalid_client` would be wrong: the client cannot tell from it
that retrying with the same (maybe right) secret is what it should do later.
"""

from __future__ import annotations

import base64
import binascii
import json
import weakref
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from aiohttp import web

from .auth_throttle import FailureLimiter, Limit, failures_of_state
from .keys import GatewayKeyError, GatewayState, StateUnavailableError
from .oauth_clients import DEFAULT_SCOPE, DEFAULT_TOKEN_TTL, ClientRecord, check_scope
from .oauth_tokens import tokens_for
from .state_admin import store_call

__all__ = ["JWKS_MAX_AGE", "TOKEN_FAILURES_PER_ADDRESS", "TOKEN_FAILURES_PER_CLIENT",
           "add_client_admin_routes", "add_token_routes", "throttle_for"]

#: Failed client authentications at the token endpoint allowed per client_id (known or not) ...
TOKEN_FAILURES_PER_CLIENT = Limit("oauth-client", 10, 300.0)
#: ... and per caller address, counted by every worker and gateway sharing the state.
TOKEN_FAILURES_PER_ADDRESS = Limit("oauth-ip", 50, 300.0)
#: Seconds caches may keep the JWKS (a rotated key shows up within this).
JWKS_MAX_AGE = 300

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_MAX_BODY = 16 * 1024
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class _OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400, basic: bool = False,
                 retry_after: int | None = None) -> None:
        super().__init__(description)
        self.error, self.description, self.status, self.basic = error, description, status, basic
        self.retry_after = retry_after

    def response(self) -> web.Response:
        headers = dict(_NO_STORE)
        if self.basic:
            headers["WWW-Authenticate"] = 'Basic realm="dsk-gateway", charset="UTF-8"'
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return web.json_response({"error": self.error, "error_description": self.description},
                                 status=self.status, headers=headers)


async def _params(request: web.Request) -> dict[str, str]:
    """The request's parameters from a form or a JSON body; one value each (RFC 6749 section 3.2)."""
    if request.content_length is not None and request.content_length > _MAX_BODY:
        raise _OAuthError("invalid_request", f"the body is larger than {_MAX_BODY} bytes")
    raw = await request.content.read(_MAX_BODY + 1)
    if len(raw) > _MAX_BODY:
        raise _OAuthError("invalid_request", f"the body is larger than {_MAX_BODY} bytes")
    kind = request.content_type
    if kind == "application/json":
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):
            raise _OAuthError("invalid_request", "the body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise _OAuthError("invalid_request", "the JSON body must be an object")
        bad = sorted(k for k, v in doc.items() if not isinstance(v, str))
        if bad:
            raise _OAuthError("invalid_request", f"{', '.join(bad)[:100]} must be string(s)")
        return doc
    if kind == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            raise _OAuthError("invalid_request", "the form body is not valid UTF-8 form encoding") from None
        out: dict[str, str] = {}
        for k, v in pairs:
            if k in out:
                raise _OAuthError("invalid_request", f"parameter {k[:40]!r} is given more than once")
            out[k] = v
        return out
    raise _OAuthError("invalid_request", "send the grant as application/x-www-form-urlencoded "
                                         "(RFC 6749) or application/json")


def _basic(header: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    cid, sep, secret = decoded.partition(":")
    if not sep:
        raise _OAuthError("invalid_client", "the Basic credentials are not base64 of client_id:client_secret",
                          401, basic=True)
    return unquote_plus(cid), unquote_plus(secret)


def add_token_routes(app: web.Application, state: Callable[[], GatewayState | None]) -> None:
    """Register the token endpoint; `state` returns the gateway's open state (None until started)."""

    async def token(request: web.Request) -> web.Response:
        basic = request.headers.get("Authorization", "").startswith("Basic ")
        try:
            st = state()
            if st is None:
                raise _OAuthError("temporarily_unavailable", "the gateway is starting", 503)
            params = await _params(request)
            grant = params.get("grant_type")
            if not grant:
                raise _OAuthError("invalid_request", "grant_type is missing (use client_credentials)")
            if grant != "client_credentials":
                raise _OAuthError("unsupported_grant_type",
                                  f"this gateway issues tokens only for grant_type=client_credentials, "
                                  f"not {grant[:40]!r}")
            if basic:
                if "client_secret" in params:
                    raise _OAuthError("invalid_request", "send the client credentials once: in the "
                                      "Authorization header or in the body, not both")
                cid, secret = _basic(request.headers["Authorization"])
            else:
                cid, secret = params.get("client_id", ""), params.get("client_secret", "")
            if not cid or not secret:
                raise _OAuthError("invalid_client", "client_id and client_secret are required (in HTTP "
                                  "Basic or in the body)", 401, basic)
            service = tokens_for(st)
            checks = [(TOKEN_FAILURES_PER_CLIENT, cid), (TOKEN_FAILURES_PER_ADDRESS, request.remote or "-")]
            limiter = throttle_for(st)
            attempt = await store_call("counting client authentications", limiter.attempt(checks))
            if attempt.retry_after:
                # Judged before the secret, so that a right secret is refused too (else the answer
                # would confirm a guess) and an unknown client_id gets the same answer as a real one.
                raise _OAuthError("slow_down", f"too many failed client authentications for this client_id "
                                  f"or from this address; retry in {attempt.retry_after} s", 429,
                                  retry_after=attempt.retry_after)
            client = await service.clients.check(cid, secret)
            if client is None:  # the attempt stays counted as a failure
                raise _OAuthError("invalid_client", "unknown client, wrong secret, or revoked client",
                                  401, basic)
            await store_call("counting client authentications", limiter.succeeded(attempt))
            scope = _scope(client, params.get("scope"))
            bound = await service.key_record(client.key_id)
            status = "unknown" if bound is None else bound.status(service.clients.clock())
            if status != "active":
                raise _OAuthError("invalid_grant",
                                  f"the key this client acts as ({client.key_id}) is {status}")
            access, ttl = await service.issue(client, scope)
        except _OAuthError as err:
            return err.response()
        except StateUnavailableError as exc:
            return _OAuthError("temporarily_unavailable", exc.message, 503).response()
        except GatewayKeyError as exc:
            if exc.status >= 500:  # the gateway's fault (e.g. no JOSE library installed), not the request's
                return _OAuthError("server_error", exc.message, exc.status).response()
            return _OAuthError("invalid_request", exc.message).response()
        return web.json_response({"access_token": access, "token_type": "Bearer", "expires_in": ttl,
                                  "scope": scope}, headers=_NO_STORE)

    async def jwks(request: web.Request) -> web.Response:
        st = state()
        try:
            if st is None:
                raise StateUnavailableError("the gateway is starting; try again shortly")
            doc = await tokens_for(st).jwks()
        except GatewayKeyError as exc:  # the store is down (503), or no JOSE library here (501)
            return web.json_response({"error": {"message": exc.message, "type": exc.type}}, status=exc.status,
                                     headers={"Cache-Control": "no-store"})
        return web.json_response(doc, content_type="application/jwk-set+json",
                                 headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"},
                                 dumps=lambda o: json.dumps(o, separators=(",", ":")))

    app.router.add_post("/v1/oauth/token", token)
    app.router.add_post("/oauth/token", token)
    app.router.add_get("/.well-known/jwks.json", jwks)
    app.router.add_get("/v1/oauth/jwks", jwks)


_LIMITERS: weakref.WeakKeyDictionary[Any, FailureLimiter] = weakref.WeakKeyDictionary()


def throttle_for(state: GatewayState) -> FailureLimiter:
    """The token endpoint's failure limiter on `state`'s store, on the state's (injectable) clock."""
    found = _LIMITERS.get(state)
    if found is None:
        clock = tokens_for(state).now
        found = _LIMITERS[state] = FailureLimiter(failures_of_state(state), clock)
    return found


def _scope(client: ClientRecord, asked: str | None) -> str:
    """The token's scope: the client's whole scope, or the part of it asked for."""
    if asked is None or not asked.strip():
        return client.scope
    try:
        want = check_scope(asked)
    except GatewayKeyError as exc:
        raise _OAuthError("invalid_scope", exc.message) from None
    extra = sorted(set(want.split()) - client.scopes())
    if extra:
        raise _OAuthError("invalid_scope", f"this client may not ask for {' '.join(extra)[:100]!r} "
                          f"(its scope is {client.scope!r})")
    return want


# -- admin API ------------------------------------------------------------------------------------------


def _ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"},
                             dumps=lambda o: json.dumps(o, separators=(",", ":")))


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.content.read(_MAX_BODY + 1)
    if len(raw) > _MAX_BODY:
        raise GatewayKeyError(f"the body is larger than {_MAX_BODY} bytes")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        raise GatewayKeyError("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise GatewayKeyError("the body must be a JSON object")
    unknown = sorted(set(body) - {"name", "key", "scope", "token_ttl"})
    if unknown:
        raise GatewayKeyError(f"unknown field(s) {', '.join(unknown)[:200]}; expected: key, name, scope, "
                              "token_ttl")
    for f in ("name", "key"):
        if not isinstance(body.get(f), str):
            raise GatewayKeyError(f"{f} must be a string")
    if not isinstance(body.get("scope", ""), str):
        raise GatewayKeyError("scope must be a string of space-separated words")
    return body


def add_client_admin_routes(app: web.Application, guard: Callable[[Handler], Handler],
                            state: Callable[[], GatewayState], prefix: str) -> None:
    """Register the OAuth client routes of the admin API under `prefix`, behind `guard` (the admin
    API's admin-key check, which also turns a GatewayKeyError into its DeepSeek-shaped answer)."""

    async def create(request: web.Request) -> web.Response:
        body = await _json_body(request)
        secret, rec = await tokens_for(state()).clients.create(
            body["name"], body["key"], scope=body.get("scope") or DEFAULT_SCOPE,
            token_ttl=body.get("token_ttl", DEFAULT_TOKEN_TTL))
        return _ok({"client_id": rec.client_id, "client_secret": secret, **rec.to_dict()}, 201)

    async def listing(request: web.Request) -> web.Response:
        recs = await tokens_for(state()).clients.list_clients()
        return _ok({"object": "list", "data": [r.to_dict() for r in recs]})

    async def revoke(request: web.Request) -> web.Response:
        return _ok((await tokens_for(state()).clients.revoke(request.match_info["id"])).to_dict())

    async def rotate(request: web.Request) -> web.Response:
        secret, rec = await tokens_for(state()).clients.rotate(request.match_info["id"])
        return _ok({**rec.to_dict(), "client_secret": secret})

    async def signing_keys(request: web.Request) -> web.Response:
        return _ok({"object": "list", "data": await tokens_for(state()).signing_keys()})

    async def rotate_signing(request: web.Request) -> web.Response:
        service = tokens_for(state())
        kid = await service.rotate_signing_key()
        return _ok({"kid": kid, "data": await service.signing_keys()})

    p = prefix.rstrip("/")
    app.router.add_post(f"{p}/clients", guard(create))
    app.router.add_get(f"{p}/clients", guard(listing))
    app.router.add_delete(f"{p}/clients/{{id}}", guard(revoke))
    app.router.add_post(f"{p}/clients/{{id}}/revoke", guard(revoke))
    app.router.add_post(f"{p}/clients/{{id}}/rotate", guard(rotate))
    app.router.add_get(f"{p}/oauth/signing-keys", guard(signing_keys))
    app.router.add_post(f"{p}/oauth/signing-keys/rotate", guard(rotate_signing))
