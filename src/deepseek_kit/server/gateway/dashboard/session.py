"""Dashboard sessions: the admin-key login check, server-side sessions behind a cookie, CSRF
tokens, the same-origin check and the limit on failed logins (auth_throttle.py counts them).

The cookie carries only a random session id (`secrets.token_urlsafe`); the session (its CSRF token
and expiry) is kept server-side, so the admin key never reaches the browser and a logout or expiry
ends the session for good. `Sessions` keeps them in this process's memory; `shared_sessions.py`
keeps them in the gateway's state store, so that every worker knows them.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from ..auth_throttle import Attempt, FailureLimiter, FailureStore, Limit, MemoryFailures

__all__ = ["COOKIE", "LoginLimiter", "Session", "Sessions", "admin_key_matches", "same_origin"]

COOKIE = "dsk_dashboard"
CSRF_HEADER = "X-CSRF-Token"


def admin_key_matches(given: str, admin_key: str | None) -> bool:
    """True when `given` is the admin key; constant time (`hmac.compare_digest`)."""
    if not admin_key:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), admin_key.encode())


@dataclass
class Session:
    csrf: str
    expires: float  # idle expiry, pushed forward on use
    ends: float  # absolute expiry


class Sessions:
    """Session id -> Session in memory, with idle and absolute expiry and a cap on how many are
    kept. The interface is async so that a shared store (shared_sessions.py) can stand in."""

    def __init__(self, idle: float = 3600.0, absolute: float = 12 * 3600.0, cap: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle, self.absolute, self.cap, self.clock = idle, absolute, cap, clock
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def new(self) -> tuple[str, Session]:
        """A fresh session id and session (not stored yet)."""
        now = self.clock()
        return secrets.token_urlsafe(32), Session(csrf=secrets.token_urlsafe(32), expires=now + self.idle,
                                                  ends=now + self.absolute)

    async def create(self) -> tuple[str, Session]:
        sid, s = self.new()
        self._by_id[sid] = s
        while len(self._by_id) > self.cap:  # the oldest login goes first
            self._by_id.popitem(last=False)
        return sid, s

    async def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        s = self._by_id.get(sid)
        now = self.clock()
        if s is None:
            return None
        if now >= s.expires or now >= s.ends:
            del self._by_id[sid]
            return None
        s.expires = min(now + self.idle, s.ends)
        return s

    async def drop(self, sid: str | None) -> None:
        if sid:
            self._by_id.pop(sid, None)

    async def aclose(self) -> None:
        self._by_id.clear()


class LoginLimiter:
    """Failed logins allowed per client address (`per_ip` in `period` seconds) and over all
    addresses (`overall`), so a guesser spread over many addresses is slowed down too. Counted in
    `store` (shared_sessions.py gives the one beside the sessions, so that every worker counts the
    same failures), on `clock` (epoch seconds; the gateway's, which tests move)."""

    def __init__(self, per_ip: int = 5, overall: int = 50, period: float = 60.0,
                 clock: Callable[[], float] = time.time, store: FailureStore | None = None) -> None:
        self.by_ip = Limit("dash-login-ip", per_ip, period)
        self.overall = Limit("dash-login-all", overall, period)
        self._limiter = FailureLimiter(store or MemoryFailures(), clock)

    def _checks(self, ip: str) -> list[tuple[Limit, str]]:
        return [(self.by_ip, ip), (self.overall, "*")]

    async def attempt(self, ip: str) -> Attempt:
        """Count a login attempt from `ip` as a failure until `succeeded`; its `retry_after` is the
        whole seconds to wait first (0: judge it now)."""
        return await self._limiter.attempt(self._checks(ip))

    async def succeeded(self, attempt: Attempt) -> None:
        """Take back the attempt of a login that succeeded."""
        await self._limiter.succeeded(attempt)


def is_https(request: web.Request) -> bool:
    """The browser talks https to us: TLS here, or a proxy in front says so. Only used to add the
    cookie's Secure flag, so believing the header can only make the cookie stricter."""
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def same_origin(request: web.Request) -> bool:
    """The request comes from a page of this host: its Origin (or, without one, its Referer) has
    this request's Host (a proxy in front must pass Host through). Browsers send Origin on every
    cross-site POST, so a request with neither is refused too."""
    source = request.headers.get("Origin")
    if source is None or source == "null":
        source = request.headers.get("Referer")
    if not source:
        return False
    parts = urlsplit(source)
    schemes = {request.scheme, "https" if is_https(request) else request.scheme}
    return parts.scheme in schemes and parts.netloc.lower() == request.host.lower()
