"""Dashboard sessions: the admin-key login check, server-side sessions behind a cookie, CSRF
tokens, the same-origin check and the rate limit on failed logins.

The cookie carries only a random session id (`secrets.token_urlsafe`); the session (its CSRF token
and expiry) is kept server-side, so the admin key never reaches the browser and a logout or expiry
ends the session for good. `Sessions` keeps them in this process's memory; `shared_sessions.py`
keeps them in the gateway's state store, so that every worker knows them.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

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
    addresses (`overall`), so a guesser spread over many addresses is slowed down too."""

    def __init__(self, per_ip: int = 5, overall: int = 50, period: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_ip, self.overall, self.period, self.clock = per_ip, overall, period, clock
        self._all: deque[float] = deque()
        self._by_ip: dict[str, deque[float]] = {}

    def _trim(self, q: deque[float], now: float) -> None:
        while q and q[0] <= now - self.period:
            q.popleft()

    def retry_after(self, ip: str) -> float:
        """Seconds until `ip` may try again (0: it may now)."""
        now = self.clock()
        self._trim(self._all, now)
        q = self._by_ip.get(ip)
        waits = [0.0]
        if q is not None:
            self._trim(q, now)
            if not q:
                del self._by_ip[ip]
            elif len(q) >= self.per_ip:
                waits.append(q[0] + self.period - now)
        if len(self._all) >= self.overall:
            waits.append(self._all[0] + self.period - now)
        return max(waits)

    def failed(self, ip: str) -> None:
        now = self.clock()
        self._all.append(now)
        self._by_ip.setdefault(ip, deque()).append(now)
        if len(self._by_ip) > 10_000:  # many addresses: forget the ones with nothing recent
            for k in [k for k, q in self._by_ip.items() if not q or q[-1] <= now - self.period]:
                del self._by_ip[k]


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
