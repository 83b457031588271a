#!/usr/bin/env python3
"""In-process micro-benchmark: deepseek_kit's own per-request / per-chunk CPU cost, no sockets.

The end-to-end runs (run.sh) include aiohttp, the event loop, the kernel and nginx, and on a
shared 2-core machine they swing +-40% from run to run. This isolates the layers deepseek_kit adds
on top of the transport: a fake transport hands the fixture bytes (from the shared gen_fixtures)
straight to the client, and the same bytes go through the reference drivers' parsing
(MinimalSSE + json.loads, and MinimalSSE + msgspec structs). Best of --repeat runs, so the number
is the least-disturbed one.

  nonstream       create() -> typed ChatCompletion       vs json.dumps body + json.loads reply
  stream          body in one read (static `sse`)        vs MinimalSSE + json.loads per event
  stream-chunked  one read per SSE event (`sse-chunked`) vs the same

usage: micro.py [--n 2000] [--repeat 7] [--only nonstream,stream,stream-chunked]
"""
import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

_env = os.environ.get("DSK_SHARED_BENCH")
SHARED = Path(_env) if _env else Path(__file__).resolve().parents[2] / "shared" / "bench"
if SHARED.name == "drivers":
    SHARED = SHARED.parent
sys.path[:0] = [str(SHARED / "drivers"), str(SHARED / "fixtures")]

import msgspec  # noqa: E402
from common import MESSAGES, MODEL, MinimalSSE, request_body  # noqa: E402
from gen_fixtures import completion_body, stream_events  # noqa: E402

from deepseek_kit import AsyncClient  # noqa: E402

BODY = completion_body()[0].encode()
EVENTS = [e.encode() for e in stream_events()[0]] + [b"data: [DONE]\n\n"]
STATIC = [b"".join(EVENTS)]
NCHUNKS = len(EVENTS) - 1


class _Raw:
    __slots__ = ("headers", "source", "status")

    def __init__(self, source):
        self.status = 200
        self.headers = {"content-type": "application/json"}
        self.source = source


class _Src:
    __slots__ = ("i", "parts")

    def __init__(self, parts):
        self.parts = parts
        self.i = 0

    async def read(self):
        i = self.i
        if i < len(self.parts):
            self.i = i + 1
            return self.parts[i]
        return b""

    def abort(self):
        pass

    def release(self):
        pass

    def at_eof(self):
        return self.i >= len(self.parts)


class FakeTransport:
    def __init__(self, parts):
        self.parts = parts

    async def open(self, request):
        return _Raw(_Src(self.parts))

    async def aclose(self):
        pass


# --- the reference drivers' work on the same bytes (drv_aiohttp / drv_aiohttp_msgspec)
loads = json.loads


async def ref_nonstream_json():
    request_body(False)
    return loads(await _Src([BODY]).read())["choices"][0]["message"]["content"]


async def ref_stream_json(parts):
    src, sse, out, n = _Src(parts), MinimalSSE(), [], 0
    while data := await src.read():
        for p in sse.feed(data):
            if p == b"[DONE]":
                continue
            obj = loads(p)
            n += 1
            ch = obj["choices"]
            if ch:
                c = ch[0]["delta"].get("content")
                if c:
                    out.append(c)
    return n, "".join(out)


class Delta(msgspec.Struct):
    content: str | None = None


class Choice(msgspec.Struct):
    delta: Delta | None = None


class Chunk(msgspec.Struct):
    choices: list[Choice] = []


_cdec = msgspec.json.Decoder(Chunk)


async def ref_stream_msgspec(parts):
    src, sse, out, n = _Src(parts), MinimalSSE(), [], 0
    while data := await src.read():
        for p in sse.feed(data):
            if p == b"[DONE]":
                continue
            obj = _cdec.decode(p)
            n += 1
            if obj.choices:
                c = obj.choices[0].delta.content
                if c:
                    out.append(c)
    return n, "".join(out)


def dsk_client(parts):
    return AsyncClient(api_key="sk-bench-dummy", base_url="http://127.0.0.1:9/v1", transport=FakeTransport(parts))


async def dsk_nonstream(client):
    r = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    return r.choices[0].message.content


async def dsk_stream(client):
    n, out = 0, []
    async with await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as s:
        async for chunk in s:
            n += 1
            if chunk.choices:
                c = chunk.choices[0].delta.content
                if c:
                    out.append(c)
        final = s.get_final_completion()
    assert final.choices[0].message.content == "".join(out)
    return n, final.choices[0].message.content


async def best(fn, n, repeat, per):
    await fn()  # warm
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            await fn()
        times.append(time.perf_counter() - t)
    return min(times) / (n * per) * 1e6


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="requests per timing (streams: n/10)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--only", default="nonstream,stream,stream-chunked")
    a = ap.parse_args()
    only = a.only.split(",")
    rows = []
    if "nonstream" in only:
        c = dsk_client([BODY])
        ref = await best(ref_nonstream_json, a.n, a.repeat, 1)
        dsk = await best(lambda: dsk_nonstream(c), a.n, a.repeat, 1)
        rows.append(("nonstream", "µs/request", ref, None, dsk))
    for name, parts in (("stream", STATIC), ("stream-chunked", EVENTS)):
        if name not in only:
            continue
        ns = max(1, a.n // 10)
        c = dsk_client(parts)
        ref = await best(lambda p=parts: ref_stream_json(p), ns, a.repeat, NCHUNKS)
        ms = await best(lambda p=parts: ref_stream_msgspec(p), ns, a.repeat, NCHUNKS)
        dsk = await best(lambda c=c: dsk_stream(c), ns, a.repeat, NCHUNKS)
        rows.append((name, "µs/chunk", ref, ms, dsk))
    print("In-process, no sockets (layers above the transport only), best of", a.repeat)
    print("| case | unit | ref: MinimalSSE/json.loads | ref: MinimalSSE+msgspec | deepseek_kit | dsk − json ref |")
    print("|---|---|---:|---:|---:|---:|")
    for name, unit, ref, ms, dsk in rows:
        print(f"| {name} | {unit} | {ref:.2f} | {'–' if ms is None else f'{ms:.2f}'} | {dsk:.2f} | {dsk - ref:+.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
