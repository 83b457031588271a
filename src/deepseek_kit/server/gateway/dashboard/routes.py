"""The `/dashboard` routes: the page and its static assets, login and logout, and the JSON
endpoints the page's script calls (`/dashboard/api/...`).

Every endpoint under `/dashboard/api/` needs the session cookie and the session's CSRF token in
the `X-CSRF-Token` header; the ones that change something also need a same-origin `Origin` (or
`Referer`). Key and OAuth-client management is not reimplemented here: the request is handed to
the admin API's own handler (`/admin/keys...`, `/admin/clients...`) inside this process with the
admin key added server-side, so the browser never holds the admin key and the two APIs cannot
drift apart. A route the gateway does not have (the admin API off, or no OAuth clients) answers
404 and the page says the panel is not available.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import CIMultiDict

from ..keys import GatewayKeyError, GatewayState
from ..state_admin import store_call
from .live import LiveStats
from .session import (
    COOKIE,
    CSRF_HEADER,
    LoginLimiter,
    Session,
    Sessions,
    admin_key_matches,
    is_https,
    same_origin,
)
from .shared_sessions import failures_beside, sessions_for
from .stats import health_view, usage_view

if TYPE_CHECKING:
    from deepseek_kit._steps.router import EndpointHealth

    from ..balance import BalanceWatch

__all__ = ["DashboardSources", "add_dashboard_routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: no inline script or style, nothing from another origin, never inside a frame
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
_MAX_LOGIN_BODY = 4096
_MAX_DAYS = 90


@dataclass
class DashboardSources:
    """What the dashboard reads, as callables since a config reload replaces the objects behind
    them: the key state (None without auth = "keys"), the router's view of the upstreams, the
    balance watch, this worker's live recorder, the admin key (None: no login possible), the
    currency, the wall clock, and the state's URL (where sessions are kept)."""

    state: Callable[[], GatewayState | None]
    endpoints: Callable[[], list[EndpointHealth]]
    balances: Callable[[], BalanceWatch]
    live: LiveStats
    admin_key: str | None
    currency: str
    now: Callable[[], datetime]
    draining: Callable[[], bool] = lambda: False
    state_url: str | None = None  # sessions are kept there (every worker sees them), else in memory


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers,
                             dumps=lambda o: json.dumps(o, separators=(",", ":")))


def _error(status: int, message: str, type: str = "invalid_request_error",
           headers: dict[str, str] | None = None) -> web.Response:
    return _json({"error": {"message": message, "type": type}}, status, headers)


def _static_files() -> dict[str, tuple[bytes, str]]:
    """name -> (content, content type) of every asset in static/, read once: the URL can only
    name one of these, so no path from the request ever reaches the file system."""
    out = {}
    for item in resources.files(__package__).joinpath("static").iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if item.is_file() and suffix in _TYPES:
            out[item.name] = (item.read_bytes(), _TYPES[suffix])
    return out


class Dashboard:
    """The handlers, with the sessions, the login limiter and the assets they share."""

    def __init__(self, src: DashboardSources, sessions: Sessions | None = None,
                 limiter: LoginLimiter | None = None) -> None:
        self.src = src
        self.sessions = sessions or sessions_for(src.state_url)
        # counted beside the sessions (the state's SQLite file or Redis): every worker sees every failure
        self.limiter = limiter or LoginLimiter(clock=lambda: src.now().timestamp(),
                                               store=failures_beside(self.sessions))
        self.files = _static_files()

    # -- wrappers ---------------------------------------------------------------------------------

    def secured(self, handler: Handler) -> Handler:
        """`handler` with the security headers on whatever it answers, and a key-state error as a
        JSON error naming what to fix."""
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                resp = await handler(request)
            except GatewayKeyError as exc:
                resp = _error(exc.status, exc.message, exc.type)
            for k, v in SECURITY_HEADERS.items():
                resp.headers.setdefault(k, v)
            return resp
        return wrapped

    async def session_of(self, request: web.Request) -> Session | None:
        return await self.sessions.get(request.cookies.get(COOKIE))

    def api(self, handler: Handler, *, changes: bool = False) -> Handler:
        """`handler` behind the session cookie, the CSRF header and (when it `changes` state) the
        same-origin check."""
        async def wrapped(request: web.Request) -> web.StreamResponse:
            s = await self.session_of(request)
            if s is None:
                return _error(401, "not logged in (or the session expired): log in again",
                              "authentication_error")
            token = request.headers.get(CSRF_HEADER, "")
            if not token or not _equal(token, s.csrf):
                return _error(403, f"missing or wrong {CSRF_HEADER} header (reload the page)",
                              "permission_error")
            if changes and not same_origin(request):
                return _error(403, "cross-origin request refused: the Origin does not match this host",
                              "permission_error")
            return await handler(request)
        return self.secured(wrapped)

    # -- page -------------------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        body, ctype = self.files["index.html"]
        return web.Response(body=body, content_type=ctype, charset="utf-8")

    async def static(self, request: web.Request) -> web.StreamResponse:
        found = self.files.get(request.match_info["name"])
        if found is None or found[1] == "text/html":
            return _error(404, "no such dashboard asset")
        # the assets change only with the package: cache them for a while, revalidating never
        return web.Response(body=found[0], content_type=found[1], charset="utf-8",
                            headers={"Cache-Control": "private, max-age=300"})

    # -- session ----------------------------------------------------------------------------------

    async def whoami(self, request: web.Request) -> web.StreamResponse:
        s = await self.session_of(request)
        return _json({"admin_configured": self.src.admin_key is not None, "logged_in": s is not None,
                      "csrf": s.csrf if s is not None else None, "currency": self.src.currency})

    async def login(self, request: web.Request) -> web.StreamResponse:
        wants_json = "application/json" in request.headers.get("Accept", "")

        def refuse(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
            if wants_json:
                return _error(status, message, "authentication_error", headers)
            return web.Response(status=status, text=message + "\n", headers=headers)

        if self.src.admin_key is None:
            return refuse(403, "the dashboard is off: no admin key is set (export the variable named by "
                               "[gateway] admin_key_env and restart the gateway)")
        if not same_origin(request):
            return refuse(403, "cross-origin login refused: the Origin does not match this host")
        if (request.content_length or 0) > _MAX_LOGIN_BODY:
            return refuse(413, "login form too large")
        form = await request.post()
        # a store failure is a 503 naming it (StateUnavailableError), not a 500
        attempt = await store_call("counting dashboard logins", self.limiter.attempt(request.remote or "-"))
        wait = attempt.retry_after
        if wait > 0:
            return refuse(429, f"too many failed logins: try again in {wait} s", {"Retry-After": str(wait)})
        given = form.get("admin_key")
        if not isinstance(given, str) or not admin_key_matches(given, self.src.admin_key):
            return refuse(401, "wrong admin key")  # the attempt stays counted as a failure
        await store_call("counting dashboard logins", self.limiter.succeeded(attempt))
        sid, s = await self.sessions.create()
        resp: web.Response
        if wants_json:
            resp = _json({"logged_in": True, "csrf": s.csrf})
        else:
            resp = web.Response(status=303, headers={"Location": "/dashboard"})
        resp.set_cookie(COOKIE, sid, path="/dashboard", httponly=True, samesite="Strict",
                        secure=is_https(request))
        return resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        await self.sessions.drop(request.cookies.get(COOKIE))
        resp = _json({"logged_in": False})
        resp.del_cookie(COOKIE, path="/dashboard")
        return resp

    # -- data -------------------------------------------------------------------------------------

    async def stats(self, request: web.Request) -> web.StreamResponse:
        try:
            days = min(max(int(request.query.get("days", "14")), 1), _MAX_DAYS)
        except ValueError:
            return _error(400, f"days must be a whole number 1-{_MAX_DAYS}")
        st = self.src.state()
        usage = await usage_view(st, self.src.now(), days) if st is not None else None
        watch = self.src.balances()
        upstreams = health_view(self.src.endpoints(), watch.balances, watch.blocked,
                                [h.name for h in self.src.endpoints() if watch.watched(h.name)])
        return _json({"currency": self.src.currency, "now": self.src.now().isoformat(),
                      "draining": self.src.draining(), "usage": usage, "live": self.src.live.snapshot(),
                      "upstreams": upstreams})

    async def admin(self, request: web.Request) -> web.StreamResponse:
        """The same request, handed to the admin API's handler at /admin/... with the admin key."""
        assert self.src.admin_key is not None  # no session can exist without one
        tail = request.path[len("/dashboard/api/"):]
        headers = CIMultiDict(request.headers)
        headers.popall("Cookie", None)
        headers["Authorization"] = f"Bearer {self.src.admin_key}"
        inner = request.clone(rel_url=request.rel_url.with_path("/admin/" + tail), headers=headers)
        match = await request.app.router.resolve(inner)
        if match.http_exception is not None:
            what = "OAuth clients" if tail.startswith("clients") else "key management"
            return _error(404, f"{what} not available on this gateway", "not_found")
        # aiohttp sets the match on the request itself when it routes (Application._handle); there
        # is no public setter, and the admin handlers read request.match_info.
        inner._match_info = match
        try:
            return await match.handler(inner)
        except web.HTTPException as exc:
            return _error(exc.status, exc.reason)


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode())


def add_dashboard_routes(app: web.Application, src: DashboardSources, *,
                         sessions: Sessions | None = None, limiter: LoginLimiter | None = None) -> None:
    """Register `/dashboard` and its endpoints on `app` (see the module docstring)."""
    d = Dashboard(src, sessions, limiter)

    async def close(app: web.Application) -> None:
        await d.sessions.aclose()

    app.on_cleanup.append(close)
    r = app.router
    r.add_get("/dashboard", d.secured(d.page))
    r.add_get("/dashboard/", d.secured(d.page))
    r.add_get("/dashboard/static/{name}", d.secured(d.static))
    r.add_post("/dashboard/login", d.secured(d.login))
    r.add_get("/dashboard/api/session", d.secured(d.whoami))
    r.add_post("/dashboard/api/logout", d.api(d.logout, changes=True))
    r.add_get("/dashboard/api/stats", d.api(d.stats))
    for path in ("keys", "clients"):
        r.add_get(f"/dashboard/api/{path}", d.api(d.admin))
        r.add_post(f"/dashboard/api/{path}", d.api(d.admin, changes=True))
        r.add_post(f"/dashboard/api/{path}/{{id}}/revoke", d.api(d.admin, changes=True))
