"""The gateway's admin HTTP API (for a dashboard; `dsk keys` does the same from a shell): aiohttp
handlers that create, list, show, revoke and rotate virtual keys and report their usage.

    POST   {prefix}/keys                 create; JSON body as `dsk keys create` options -> 201
    GET    {prefix}/keys                 every key (never a secret)
    GET    {prefix}/keys/{id}            one key (id or display prefix) with spend and remaining budget
    POST   {prefix}/keys/{id}/revoke     revoke (also DELETE {prefix}/keys/{id})
    POST   {prefix}/keys/{id}/rotate     new secret -> 200
    GET    {prefix}/keys/{id}/usage      spend per Beijing day and model (?since=2026-12-01)
    ...    {prefix}/clients, {prefix}/oauth/signing-keys   OAuth clients (oauth_routes.py)

Every request needs `Authorization: Bearer <admin key>`, the value of the environment variable
named by `admin_key_env`; it is compared in constant time (`hmac.compare_digest`). With no admin key
set the API answers 403 to everyone. Create and rotate return the new key once, in `"key"`, with
`Cache-Control: no-store`. Errors use DeepSeek's body shape.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from .keys import GatewayKeyError, GatewayState, KeyRecord
from .oauth_routes import add_client_admin_routes

__all__ = ["add_admin_routes"]

StateSource = GatewayState | Callable[[], GatewayState | None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_MAX_BODY = 64 * 1024


def _error(status: int, message: str, type: str = "invalid_request_error") -> web.Response:
    body = {"error": {"message": message, "type": type, "param": None, "code": "invalid_request_error"}}
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


def _ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"},
                             dumps=lambda o: json.dumps(o, separators=(",", ":")))


class _Admin:
    def __init__(self, state: StateSource, admin_key: str | None, currency: str,
                 clock: Callable[[], datetime] | None) -> None:
        self._state = state
        self._admin = admin_key.encode() if admin_key else None
        self.currency = currency.upper()
        from .budget import default_clock

        self.clock = clock or default_clock()

    def state(self) -> GatewayState:
        st = self._state() if callable(self._state) else self._state
        if st is None:
            raise GatewayKeyError("the gateway has no key state (set [gateway] state and auth = \"keys\")")
        return st

    def guard(self, handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            if self._admin is None:
                return _error(403, "the admin API is off: set the admin key in the environment variable "
                                   "named by [gateway] admin_key_env", "permission_error")
            given = request.headers.get("Authorization", "")
            token = given[7:].strip() if given.startswith("Bearer ") else ""
            if not hmac.compare_digest(token.encode("utf-8", "surrogateescape"), self._admin):
                return _error(401, "Authentication Fails: the admin API needs Authorization: Bearer "
                                   "<admin key>", "authentication_error")
            try:
                return await handler(request)
            except GatewayKeyError as exc:
                return _error(exc.status, exc.message, exc.type)

        return wrapped

    def view(self, rec: KeyRecord) -> dict[str, Any]:
        return rec.to_dict(self.clock(), self.currency)

    # -- handlers -----------------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > _MAX_BODY:
            return _error(413, f"the body is larger than {_MAX_BODY} bytes")
        raw = await request.content.read(_MAX_BODY + 1)
        if len(raw) > _MAX_BODY:
            return _error(413, f"the body is larger than {_MAX_BODY} bytes")
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, RecursionError):
            return _error(400, "the body must be a JSON object")
        kwargs = _create_args(body)
        token, key = await self.state().create_key(**kwargs)
        rec = await self.state().get_key(key.id)
        return _ok({"key": token, **self.view(rec)}, 201)

    async def list(self, request: web.Request) -> web.Response:
        return _ok({"object": "list", "data": [self.view(r) for r in await self.state().list_keys()]})

    async def show(self, request: web.Request) -> web.Response:
        st = self.state()
        rec = await st.get_key(request.match_info["id"])
        today, month = await st.spent(rec.key)
        left = await st.remaining(rec.key)
        return _ok({**self.view(rec), "spent_today": str(today), "spent_this_month": str(month),
                    "remaining": None if left is None else str(left)})

    async def revoke(self, request: web.Request) -> web.Response:
        return _ok(self.view(await self.state().revoke(request.match_info["id"])))

    async def rotate(self, request: web.Request) -> web.Response:
        st = self.state()
        token, key = await st.rotate(request.match_info["id"])
        return _ok({"key": token, **self.view(await st.get_key(key.id))})

    async def usage(self, request: web.Request) -> web.Response:
        since_text = request.query.get("since")
        try:
            since = date.fromisoformat(since_text) if since_text else None
        except ValueError:
            return _error(400, f"since must be a date like 2026-12-01, got {str(since_text)[:40]!r}")
        rows = await self.state().usage(request.match_info["id"], since)
        return _ok({"object": "list", "currency": self.currency, "data": [
            {"day": r.day, "model": r.model, "requests": r.requests, "cost": str(r.cost)} for r in rows]})


def _create_args(body: Any) -> dict[str, Any]:
    """The JSON body of POST /keys as `create_key` arguments; a wrong type is a 400 naming the field."""
    if not isinstance(body, dict):
        raise GatewayKeyError("the body must be a JSON object")
    known = {"name", "models", "rpm", "tpm", "max_in_flight", "budget_daily", "budget_monthly",
             "expires_at", "allow_ip"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise GatewayKeyError(f"unknown field(s) {', '.join(unknown)[:200]}; "
                              f"expected: {', '.join(sorted(known))}")
    out: dict[str, Any] = {}
    name = body.get("name")
    if not isinstance(name, str):
        raise GatewayKeyError("name must be a string")
    out["name"] = name
    models = body.get("models")
    if models is not None:
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise GatewayKeyError("models must be a list of model names, or null for all")
        out["models"] = models
    for f in ("rpm", "tpm", "max_in_flight"):
        v = body.get(f)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise GatewayKeyError(f"{f} must be a whole number")
        out[f] = v
    for f in ("budget_daily", "budget_monthly"):
        v = body.get(f)
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise GatewayKeyError(f"{f} must be an amount such as \"5.00\"")
            try:
                v = Decimal(str(v))
            except InvalidOperation:
                raise GatewayKeyError(f"{f} must be an amount such as \"5.00\"") from None
        out[f] = v
    exp = body.get("expires_at")
    if exp is not None:
        try:
            out["expires_at"] = datetime.fromisoformat(exp) if isinstance(exp, str) else None
        except ValueError:
            out["expires_at"] = None
        if out["expires_at"] is None or out["expires_at"].tzinfo is None:
            raise GatewayKeyError("expires_at must be an ISO 8601 time with an offset, e.g. "
                                  "2027-01-31T00:00:00+08:00")
    allow = body.get("allow_ip", [])
    if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
        raise GatewayKeyError("allow_ip must be a list of CIDRs")
    out["allow_ip"] = allow
    return out


def add_admin_routes(
    app: web.Application, state: StateSource, admin_key: str | None, *, prefix: str = "/admin",
    currency: str = "CNY", clock: Callable[[], datetime] | None = None,
) -> None:
    """Register the admin API on `app` under `prefix`. `state` is the open state or a function
    returning it (the relay opens it at startup); `admin_key` the admin secret (None: API off)."""
    a = _Admin(state, admin_key, currency, clock)
    p = prefix.rstrip("/")
    app.router.add_post(f"{p}/keys", a.guard(a.create))
    app.router.add_get(f"{p}/keys", a.guard(a.list))
    app.router.add_get(f"{p}/keys/{{id}}", a.guard(a.show))
    app.router.add_delete(f"{p}/keys/{{id}}", a.guard(a.revoke))
    app.router.add_post(f"{p}/keys/{{id}}/revoke", a.guard(a.revoke))
    app.router.add_post(f"{p}/keys/{{id}}/rotate", a.guard(a.rotate))
    app.router.add_get(f"{p}/keys/{{id}}/usage", a.guard(a.usage))
    add_client_admin_routes(app, a.guard, a.state, p)  # OAuth clients (oauth_routes.py)
