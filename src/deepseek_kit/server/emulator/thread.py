"""Running the emulator: in a background thread for tests and embedding, or in the foreground
for `dsk serve --mock`.

`EmulatorThread` owns a private event loop in a daemon thread, binds a free port on 127.0.0.1 by
default, and is a context manager; it works the same from sync tests and from async tests running
their own loop (nothing is shared with the caller's loop). Handlers are cancelled when their client
disconnects (`handler_cancellation=True`), and shutdown is bounded: the app's shutdown signal ends
stalls and keep-alive loops, and connections still open after `shutdown_timeout` are dropped.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

from aiohttp import web

from .app import create_emulator_app
from .config import EmulatorConfig
from .state import STATE_KEY, EmulatorState

__all__ = ["EmulatorThread", "run_emulator"]


class EmulatorThread:
    """The emulator served from a background thread, for tests and scripts:
    `with EmulatorThread(config) as emu: ... emu.base_url ... emu.state.total_requests`.

    `config`: an `EmulatorConfig` (default: the defaults). `host`, `port`: where it listens (port 0:
    a free port, read it from `base_url` once started). `shutdown_timeout`: seconds `stop()` gives
    requests in progress."""

    def __init__(self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0,
                 *, shutdown_timeout: float = 2.0) -> None:
        self.config = config or EmulatorConfig()
        self.host = host
        self.port = port
        self.shutdown_timeout = shutdown_timeout
        self.app = create_emulator_app(self.config)
        self.state: EmulatorState = self.app[STATE_KEY]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        """`http://host:port` to give a client as `base_url` (the real port once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> EmulatorThread:
        """Serve in a daemon thread and return once it listens (the error, if it could not start);
        returns self, so `emu = EmulatorThread().start()` works. `stop()` or `with` ends it."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="dsk-emulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _start(self) -> None:
        runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None,
                               shutdown_timeout=self.shutdown_timeout)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def stop(self) -> None:
        """Shut down and wait for the thread to end."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None
        self._loop = None

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def run_emulator(host: str = "127.0.0.1", port: int = 8000, config: EmulatorConfig | None = None,
                 *, print_banner: bool = True) -> None:
    """Serve the emulator on `host`:`port` until interrupted (blocking); used by `dsk serve --mock`.
    `config` is its `EmulatorConfig` (None: the defaults); `print_banner=False` leaves out the
    "DeepSeek emulator on http://..." line. For tests, `EmulatorThread` runs it in the background
    on a free port instead."""
    app = create_emulator_app(config)

    def banner(text: str) -> None:
        if print_banner:
            print(f"DeepSeek emulator on http://{host}:{port} (Ctrl+C to stop)", flush=True)

    web.run_app(app, host=host, port=port, handler_cancellation=True, access_log=None,
                shutdown_timeout=5.0, print=banner)
