# 500 concurrent long streams through a `dsk serve --config` process, two rounds after a warm-up:
# every stream ends with [DONE], and the gateway's RSS does not grow from one round to the next.
from __future__ import annotations

import asyncio

import aiohttp

from .ops_helpers import UPSTREAM_KEY, chat_body, serve

STREAMS = 500


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def _one(s: aiohttp.ClientSession, url: str) -> tuple[bool, int]:
    chunks, last = 0, b""
    async with s.post(url + "/chat/completions", data=chat_body(stream=True),
                      headers={"Content-Type": "application/json"}) as r:
        assert r.status == 200
        async for line in r.content:
            if line.startswith(b"data: "):
                chunks += 1
                last = line.strip()
    return last == b"data: [DONE]", chunks


async def _round(url: str) -> list[tuple[bool, int]]:
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as s:
        return await asyncio.gather(*(_one(s, url) for _ in range(STREAMS)))


def test_500_concurrent_long_streams_keep_memory_flat(tmp_path, emulator_factory):
    emu = emulator_factory(faults="delay_chunks=0.02;tokens=100")  # ~2 s streams of ~100 chunks
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('[gateway]\nlisten = "127.0.0.1:0"\nauth = "none"\naccess_log = false\n\n'
                   f'[[upstream]]\nname = "emu"\nbase_url = "{emu.base_url}"\napi_key_env = "GW_KEY"\n'
                   '\n[timeout]\nfirst_token = 30.0\nidle = 30.0\ntotal = 120.0\n')
    proc, url = serve(cfg, tmp_path, env={"GW_KEY": UPSTREAM_KEY})
    try:
        start = _rss_mb(proc.pid)
        after: list[float] = []
        for _ in range(3):  # a warm-up round, then two measured ones
            results = asyncio.run(_round(url))
            assert all(done for done, _ in results), sum(not d for d, _ in results)
            assert min(n for _, n in results) >= 100
            after.append(_rss_mb(proc.pid))
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    print(f"gateway RSS MB: start {start:.1f}, after rounds {', '.join(f'{a:.1f}' for a in after)}")
    assert after[2] - after[1] < 10.0, (start, after)  # flat: no growth per round of 500 streams
    assert max(after) < 250.0, (start, after)
