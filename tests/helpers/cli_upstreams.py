"""Small hostile or odd upstreams for the CLI tests: an aiohttp server on a free 127.0.0.1 port, in a
daemon thread with its own event loop (so subprocess `dsk` runs can use it from sync tests).

`Upstream(mode)`: `.base_url`, `.requests` (the headers of every request received), `.stop()`.
Modes (POST .../chat/completions answers; GET .../models and .../user/balance too):
  plain       a valid DeepSeek-shaped completion (stream or not, as asked)
  marked      the same, marked as the emulator's (the x-dsk-emulator header, fp_dsk_emulator fingerprint)
  echo-html   HTTP 200 text/html echoing the request headers (a misconfigured proxy's page)
  echo-json   HTTP 200 JSON of the wrong shape whose values echo the request headers
  content:X   a valid completion whose answer (and reasoning) is the text X (escape sequences included)
  error:X     HTTP 400 with a DeepSeek error body whose message is X
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from aiohttp import web

from tests.helpers.net import free_port

ANSWER = "The sea is vast and deep."


def completion(content: str, *, marked: bool, model: str = "deepseek-flash") -> dict[str, Any]:
    return {
        "id": "c-1", "object": "chat.completion", "created": 1760000000, "model": model,
        "system_fingerprint": "fp_dsk_emulator_test" if marked else "fp_upstream_test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12,
                  "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": 5},
    }


class Upstream:
    def __init__(self, mode: str = "plain") -> None:
        self.mode = mode
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.requests: list[dict[str, str]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("upstream did not start")

    def _headers(self) -> dict[str, str]:
        return {"x-dsk-emulator": "1"} if self.mode == "marked" else {}

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        body = await request.json()
        if self.mode == "echo-json":
            return web.json_response({"choices": dict(request.headers), "data": dict(request.headers)})
        if self.mode == "echo-html":
            page = "<html><body><pre>" + "\n".join(f"{k}: {v}" for k, v in request.headers.items())
            return web.Response(text=page + "</pre></body></html>", content_type="text/html")
        if self.mode.startswith("error:"):
            return web.json_response({"error": {"message": self.mode[len("error:"):], "type":
                                                "invalid_request_error", "param": None, "code": None}},
                                     status=400)
        text = self.mode[len("content:"):] if self.mode.startswith("content:") else ANSWER
        comp = completion(text, marked=self.mode == "marked", model=body.get("model", "deepseek-flash"))
        if self.mode.startswith("content:"):
            comp["choices"][0]["message"]["reasoning_content"] = text
        if not body.get("stream"):
            return web.json_response(comp, headers=self._headers())
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **self._headers()})
        await resp.prepare(request)
        base = {k: comp[k] for k in ("id", "created", "model", "system_fingerprint")}
        deltas = [{"content": text[: len(text) // 2]}, {"content": text[len(text) // 2:]}]
        if self.mode.startswith("content:"):
            deltas.insert(0, {"reasoning_content": text})
        for delta in deltas:
            chunk = {**base, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        last = {**base, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": comp["usage"]}
        await resp.write(b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _models(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        if self.mode == "echo-json":
            return web.json_response({"object": "list", "data": dict(request.headers)})
        if self.mode == "echo-html":
            page = "\n".join(f"{k}: {v}" for k, v in request.headers.items())
            return web.Response(text=f"<html>{page}</html>", content_type="text/html")
        return web.json_response({"object": "list", "data": [
            {"id": "deepseek-flash", "object": "model", "owned_by": "deepseek"}]}, headers=self._headers())

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/models", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        async def _stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()  # its self-pipe sockets: left open, ResourceWarnings at GC
