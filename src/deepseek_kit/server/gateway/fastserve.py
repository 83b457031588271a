"""How the gateway listens: `GatewaySite` (an aiohttp site on the fast protocol) and
`run_gateway_app` (what `dsk serve --config` runs in each worker).

The site listens with fastproto.HotProtocol: the hot routes are served there, every other request
is handed to the runner's aiohttp server on the same connection (docs/gateway.md, Performance).
Shutdown is aiohttp's: `runner.cleanup()` stops the listener, closes idle connections of both kinds,
runs `on_shutdown` (the gateway's drain: streams get their grace), waits for the requests in flight
up to the runner's shutdown_timeout, then runs `on_cleanup`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from aiohttp import web

__all__ = ["GatewaySite", "run_gateway_app"]

KEEPALIVE = 75.0  # seconds an idle keep-alive connection is kept (the runner's keepalive_timeout wins)


class GatewaySite(web.BaseSite):
    """`GatewaySite(runner, sock=sock)` or `GatewaySite(runner, host, port)`: the gateway app of
    `runner` (an AppRunner over create_gateway_app) served through the fast protocol, on the
    listening socket `sock` or a new one bound to `host`:`port` (port 0: a free one) with a
    `backlog` of pending connections. Use it like aiohttp's TCPSite: `await site.start()`, and
    `await runner.cleanup()` to shut down."""

    __slots__ = ("_host", "_port", "_sock")

    def __init__(self, runner: web.BaseRunner, host: str | None = None, port: int | None = None, *,
                 sock: socket.socket | None = None, backlog: int = 1024) -> None:
        super().__init__(runner, backlog=backlog)
        if sock is None and port is None:
            raise ValueError("give sock= or host and port")
        self._host, self._port, self._sock = host, port, sock

    @property
    def name(self) -> str:
        sockets = getattr(self._server, "sockets", None)
        if sockets:
            host, port = sockets[0].getsockname()[:2]
        else:
            host, port = self._host or "0.0.0.0", self._port
        return f"http://{f'[{host}]' if ':' in str(host) else host}:{port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        runner = self._runner
        server = runner.server
        assert server is not None and isinstance(runner, web.AppRunner)
        factory: Callable[[], asyncio.BaseProtocol]
        try:
            from .fastproto import protocol_factory
        except ImportError:  # httptools missing (the `gateway` extra): aiohttp serves every route
            factory = server
        else:
            keepalive = float(server._kwargs.get("keepalive_timeout", KEEPALIVE))
            factory = protocol_factory(runner.app, server, keepalive)
        if self._sock is not None:
            self._server = await loop.create_server(factory, sock=self._sock, backlog=self._backlog)
        else:
            assert self._port is not None
            self._server = await loop.create_server(factory, self._host, self._port, backlog=self._backlog,
                                                    reuse_address=True)


def run_gateway_app(app: web.Application, sock: socket.socket, *, shutdown_timeout: float,
                    loop: asyncio.AbstractEventLoop | None = None,
                    on_start: Callable[[], None] | None = None) -> None:
    """Serve `app` (create_gateway_app) on the listening `sock` until SIGTERM or SIGINT, then shut
    down gracefully, like `web.run_app` through GatewaySite: requests in flight get up to
    `shutdown_timeout` seconds after the app's own drain. `loop`: the event loop to run on (e.g.
    uvloop's; default a new asyncio loop, closed at the end); `on_start` is called once listening."""
    loop = loop or asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def serve() -> None:
        runner = web.AppRunner(app, handle_signals=True, handler_cancellation=True, access_log=None,
                               shutdown_timeout=shutdown_timeout)
        await runner.setup()
        try:
            await GatewaySite(runner, sock=sock).start()
            if on_start is not None:
                on_start()
            await asyncio.Future()  # until a signal raises GracefulExit out of the loop
        finally:
            await runner.cleanup()

    task = loop.create_task(serve())
    try:
        loop.run_until_complete(task)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        for t in asyncio.all_tasks(loop):
            t.cancel()
        loop.run_until_complete(asyncio.gather(*asyncio.all_tasks(loop), return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)

