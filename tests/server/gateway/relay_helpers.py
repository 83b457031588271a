# Helpers for the gateway relay tests: run a gateway app on a free 127.0.0.1 port in its own thread
# and event loop (like the emulator's EmulatorThread), and build configs over running emulators.
from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from deepseek_kit.server.gateway import GatewaySite, create_gateway_app, parse_gateway_config


class GatewayThread:
    def __init__(self, config, **kw) -> None:
        self.app = create_gateway_app(config, **kw)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self.runner_kw: dict = {}  # more AppRunner arguments (e.g. keepalive_timeout)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayThread:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.close()

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None,
                                     shutdown_timeout=2.0, **self.runner_kw)
        await self._runner.setup()
        site = GatewaySite(self._runner, "127.0.0.1", 0)  # the path `dsk serve` uses
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> GatewayThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def config_for(*emulators, extra: str = "", timeout: str = "first_token = 5.0\nidle = 5.0\ntotal = 30.0",
               auth: str = "none", state: str | None = None, env=None):
    """A gateway config over the given emulators (priority in the given order), auth off."""
    parts = [f'[gateway]\nlisten = "127.0.0.1:0"\nauth = "{auth}"\n'
             + (f'state = "{state}"\n' if state else "")]
    for i, emu in enumerate(emulators):
        parts.append(f'[[upstream]]\nname = "up{i}"\nbase_url = "{emu.base_url}"\n'
                     f'api_key_env = "GW_TEST_UPSTREAM_KEY"\npriority = {i}\n')
    parts.append(f"[timeout]\n{timeout}\n")
    parts.append(extra)
    return parse_gateway_config(
        "\n".join(parts), env=env or {"GW_TEST_UPSTREAM_KEY": "sk-upstream-secret-1234"}
    )
