"""A small hostile upstream for resumption tests: an OpenAI-compatible server that ignores `prefix`.

Like vLLM/SGLang, a proxy that strips unknown fields, or any server without DeepSeek's /beta: every
request, continuation or not, gets the answer from the start. What happens after the scripted
pieces is chosen per server (`ending`) and can change from the second request on (`then`):

  reset         the connection is closed mid-body (no [DONE])
  error         an `{"error": ...}` event, then the body ends
  malformed     an event that is not JSON, then the body ends
  insufficient  a final chunk with finish_reason "insufficient_system_resource" and usage, [DONE]
  stop          a final chunk with finish_reason "stop" and usage, [DONE]
  keepalive     a final chunk with finish_reason "stop" and usage, then `: keep-alive` forever

`later_pieces` / `later_reasoning` replace the text from the second request on; `delay` pauses
between the pieces and the ending. `beta=False`
answers 404 under /beta (a server without DeepSeek's beta paths). `reasoning` pieces stream as
`reasoning_content` before the content. The server records every request body and path, the
connections it saw (`transports`, `connections`, `closed`) and keep-alive streams whose client went
away (`gone`).

Usage: `async with RestartServer(...) as srv: AsyncClient(base_url=srv.base_url, api_key="x")`.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from aiohttp import web

PIECES = ["PARTIAL-A ", "partial answer ", "before the reset"]
TEXT = "".join(PIECES)


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    body = {"id": "chatcmpl-restart", "object": "chat.completion.chunk", "created": 1760000000,
            "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": usage}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


USAGE = {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}


class RestartServer:
    def __init__(self, *, ending: str = "reset", then: str | None = None, beta: bool = True,
                 pieces: list[str] | None = None, reasoning: list[str] | None = None,
                 later_pieces: list[str] | None = None, later_reasoning: list[str] | None = None,
                 keepalive_every: float = 0.05, delay: float = 0.0) -> None:
        self.ending = ending
        self.then = then or ending
        self.beta = beta
        self.pieces = pieces if pieces is not None else PIECES
        self.later_pieces = later_pieces
        self.reasoning = reasoning or []
        self.later_reasoning = later_reasoning
        self.keepalive_every = keepalive_every
        self.delay = delay  # seconds between the pieces and the ending
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.transports: list[asyncio.BaseTransport] = []  # one per connection, in order
        self.gone = 0  # streams whose client went away while we were still writing
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def __aenter__(self) -> RestartServer:
        app = web.Application()
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_post("/beta/chat/completions", self._chat)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    @property
    def connections(self) -> int:
        return len(self.transports)

    @property
    def closed(self) -> int:
        return sum(1 for t in self.transports if t.is_closing())

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        t = request.transport
        if t is not None and not any(t is x for x in self.transports):
            self.transports.append(t)
        if request.path.startswith("/beta") and not self.beta:
            return web.json_response({"detail": "Not Found"}, status=404)
        body = await request.json()
        self.bodies.append(body)
        first = len(self.bodies) == 1
        ending = self.ending if first else self.then
        pieces = self.pieces if first or self.later_pieces is None else self.later_pieces
        reasoning = self.reasoning if first or self.later_reasoning is None else self.later_reasoning
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        frames = [_chunk({"role": "assistant", "content": "" if not reasoning else None,
                          **({"reasoning_content": ""} if reasoning else {})})]
        frames += [_chunk({"reasoning_content": r, "content": None}) for r in reasoning]
        frames += [_chunk({"content": p}) for p in pieces]
        await resp.write(b"".join(frames))
        if self.delay:
            await asyncio.sleep(self.delay)
        if ending == "reset":
            await self._close(request)
            return resp
        if ending == "error":
            await resp.write(b'data: {"error": {"message": "Internal Server Error", '
                             b'"type": "server_error"}}\n\n')
            await resp.write_eof()
            return resp
        if ending == "malformed":
            await resp.write(b"data: {not json\n\n")
            await resp.write_eof()
            return resp
        finish = "insufficient_system_resource" if ending == "insufficient" else "stop"
        await resp.write(_chunk({"content": ""}, finish, USAGE))
        if ending == "keepalive":
            try:
                while True:
                    await asyncio.sleep(self.keepalive_every)
                    await resp.write(b": keep-alive\n\n")
            except (ConnectionError, RuntimeError):
                self.gone += 1
                return resp
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    @staticmethod
    async def _close(request: web.Request) -> None:
        t = request.transport
        if t is None:  # the client already left
            return
        for _ in range(200):
            if t.is_closing() or t.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.005)
        t.close()
