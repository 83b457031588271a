#!/usr/bin/env python3
"""The floor for a Python gateway on aiohttp: a bare pass-through proxy, no checks at all.

aiohttp server + one aiohttp ClientSession (keep-alive pool) to the upstream, uvloop when
installed, no access log: the same server/client stack and loop as `dsk serve --config`. It
forwards POST bodies as read and copies the answer's bytes back as they arrive (no parsing).
What our gateway costs above this is admission, the library pipeline, metrics and logs.

usage: bare_proxy.py --upstream http://127.0.0.1:18080/json/v1 --port 18503
"""
import argparse
import asyncio

import aiohttp
from aiohttp import web


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    base = a.upstream.rstrip("/")

    async def start(app: web.Application) -> None:
        app["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)

    async def stop(app: web.Application) -> None:
        await app["s"].close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with request.app["s"].post(base + "/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"}) as up:
            out = web.StreamResponse(status=up.status, headers={"Content-Type": up.headers.get(
                "Content-Type", "application/json")})
            await out.prepare(request)
            async for data in up.content.iter_any():
                await out.write(data)
            await out.write_eof()
            return out

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_post("/v1/chat/completions", proxy)
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=a.port, access_log=None, loop=loop, print=None)


if __name__ == "__main__":
    main()
