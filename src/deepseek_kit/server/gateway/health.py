"""`/healthz` (the process answers) and `/readyz` (some upstream can take calls: 503 when every
upstream's circuit breaker is open), for load balancers and orchestrators."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

if TYPE_CHECKING:
    from deepseek_kit._steps.router import EndpointHealth

Handler = Callable[[web.Request], Awaitable[web.Response]]

__all__ = ["healthz", "readyz"]


async def healthz(request: web.Request) -> web.Response:
    """200 while the process serves requests."""
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


def readyz(health_now: Callable[[], list[EndpointHealth]]) -> Handler:
    """The /readyz handler; `health_now()` gives the upstreams' health at the time of the request
    (a callable, since a config reload replaces the client behind it)."""

    async def handle(request: web.Request) -> web.Response:
        health = health_now()
        upstreams = {h.name: h.state for h in health}
        ready = any(state != "open" for state in upstreams.values())
        body = {"status": "ready" if ready else "unavailable", "upstreams": upstreams}
        return web.Response(status=200 if ready else 503, body=msgspec.json.encode(body),
                            content_type="application/json")

    return handle
