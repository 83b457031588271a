# Helpers for the gateway operations tests: a gateway app on a free 127.0.0.1 port in its own thread
# and event loop, `dsk serve --config` as a subprocess, and a tiny SSE reader over http.client.
from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import subprocess
import sys
import threading
from concurrent.futures import Future
from typing import Any

from aiohttp import web

from deepseek_kit.server.gateway import GatewaySite, create_gateway_app, parse_gateway_config

UPSTREAM_KEY = "sk-upstream-ops-secret-4242"


class AppThread:
    """create_gateway_app(config) served by an AppRunner on a real socket, in a thread."""

    def __init__(self, config: Any) -> None:
        self.app = create_gateway_app(config)
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self.runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None, shutdown_timeout=5)
        await self.runner.setup()
        site = GatewaySite(self.runner, "127.0.0.1", 0)  # the path `dsk serve` uses
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def run(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def __enter__(self) -> AppThread:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.runner is not None:
            self.run(self.runner.cleanup()).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def config(*upstreams: tuple[str, str, str], gateway: str = "", extra: str = "",
           env: dict[str, str] | None = None, auth: str = "none") -> Any:
    """A gateway config: upstreams as (name, base_url, extra lines), auth off unless told."""
    text = f'[gateway]\nlisten = "127.0.0.1:0"\nauth = "{auth}"\naccess_log = false\n{gateway}\n'
    for i, (name, url, more) in enumerate(upstreams):
        text += (f'[[upstream]]\nname = "{name}"\nbase_url = "{url}"\napi_key_env = "KEY_{name.upper()}"\n'
                 f'priority = {i}\n{more}\n')
    text += '[timeout]\nfirst_token = 5.0\nidle = 10.0\ntotal = 60.0\n' + extra
    return parse_gateway_config(text, env=env or {f"KEY_{n.upper()}": UPSTREAM_KEY for n, _, _ in upstreams})


def chat_body(stream: bool = False, max_tokens: int | None = None, **kw: Any) -> bytes:
    doc: dict[str, Any] = {"model": "deepseek-flash", "messages": [{"role": "user", "content": "hi"}],
                           "stream": stream, **kw}
    if max_tokens is not None:
        doc["max_tokens"] = max_tokens
    return json.dumps(doc).encode()


def post(url: str, body: bytes, token: str | None = None,
         timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    host, port = re.match(r"http://([\d.]+):(\d+)", url).groups()  # type: ignore[union-attr]
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("POST", "/chat/completions", body=body, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def get(url: str, path: str, timeout: float = 10) -> tuple[int, bytes]:
    host, port = re.match(r"http://([\d.]+):(\d+)", url).groups()  # type: ignore[union-attr]
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


class StreamReader(threading.Thread):
    """POSTs a stream and records its SSE data payloads; `first` is set at the first payload."""

    def __init__(self, url: str, body: bytes, token: str | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.token = url, body, token
        self.payloads: list[bytes] = []
        self.first = threading.Event()
        self.status = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        host, port = re.match(r"http://([\d.]+):(\d+)", self.url).groups()  # type: ignore[union-attr]
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn.request("POST", "/chat/completions", body=self.body, headers=headers)
            r = conn.getresponse()
            self.status = r.status
            while True:
                line = r.readline()
                if not line:
                    break
                if line.startswith(b"data: "):
                    self.payloads.append(line[6:].strip())
                    self.first.set()
        except BaseException as exc:  # the test asserts on it
            self.error = exc
        finally:
            conn.close()
            self.first.set()

    @property
    def done(self) -> bool:
        return bool(self.payloads) and self.payloads[-1] == b"[DONE]"


def serve(cfg_path: Any, tmp_path: Any, *extra: str,
          env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """`dsk serve --config cfg_path` as a subprocess; returns it and its base URL."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPSEEK_", "DSK_"))}
    e.update(DSK_HOME=str(tmp_path), PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "deepseek_kit.cli.main", "serve", "--config",
                             str(cfg_path), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL, env=e)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    assert m, (line, proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
    return proc, f"http://127.0.0.1:{m.group(1)}"
