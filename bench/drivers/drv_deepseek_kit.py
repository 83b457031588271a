#!/usr/bin/env python3
"""deepseek-kit driver for the shared client-overhead benchmark (same `make_client(args)` shape as
the shared drivers, same harness: the kit's drivers/common.py).

`deepseek_kit.AsyncClient` as a user gets it: DEFAULT timeout (keep-alive-proof watchdog) and
DEFAULT retry policy on, typed msgspec results, pool sized to the concurrency. Streams use the
documented shape

    async with await client.chat.completions.create(..., stream=True) as s:
        async for chunk in s: ...chunk.choices[0].delta.content...
    s.get_final_completion()          # the accumulator's assembled ChatCompletion

and the driver returns the final completion's content (so the accumulator's work is counted and
checked against the fixture manifest by the harness). Default asyncio loop; `--uvloop` switches.

The shared drivers directory is found at `DSK_SHARED_BENCH` (the shared bench dir or its
drivers/ subdir), else a `shared/bench/drivers` directory beside the repository checkout.
"""
import os
import sys
from pathlib import Path


def _shared_drivers() -> Path:
    env = os.environ.get("DSK_SHARED_BENCH")
    if env:
        p = Path(env)
        return p / "drivers" if (p / "drivers" / "common.py").is_file() else p
    return Path(__file__).resolve().parents[3] / "shared" / "bench" / "drivers"


_SHARED = _shared_drivers()
if not (_SHARED / "common.py").is_file():
    sys.exit(f"shared bench harness not found at {_SHARED} (set DSK_SHARED_BENCH)")
sys.path.insert(0, str(_SHARED))

from common import API_KEY, MESSAGES, MODEL, main  # noqa: E402


def _extra(ap):
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's loop")


async def make_client(args):
    import deepseek_kit
    from deepseek_kit import AsyncClient

    if args.uvloop:
        args.client_name = "deepseek_kit_uvloop"
    if getattr(args, "stack", "default") == "full":
        # the "full stack": router (one endpoint, breaker on), limits (in-process rpm, tpm and
        # in-flight, set far above what the run reaches), metrics; cache off
        from deepseek_kit import Endpoint, Limits

        args.client_name = "deepseek_kit_full"
        client = AsyncClient(
            endpoints=[Endpoint(args.base_url, name="upstream", api_key=API_KEY)],
            limits=Limits(rpm=10_000_000, tpm=10_000_000_000, max_in_flight=2500),
            metrics=True, max_connections=args.concurrency)
    else:
        # default timeout + retry stack: only the pool is sized, like the other drivers
        client = AsyncClient(api_key=API_KEY, base_url=args.base_url, max_connections=args.concurrency)
    create = client.chat.completions.create
    stream = args.stream

    async def one():
        if not stream:
            r = await create(model=MODEL, messages=MESSAGES)
            # DeepSeek-specific usage fields must come through typed
            if r.usage is None or r.usage.prompt_cache_hit_tokens is None:
                raise ValueError("usage.prompt_cache_hit_tokens missing")
            return 1, r.choices[0].message.content
        parts, chunks = [], 0
        async with await create(model=MODEL, messages=MESSAGES, stream=True) as s:
            async for chunk in s:
                chunks += 1
                if chunk.choices:
                    c = chunk.choices[0].delta.content
                    if c:
                        parts.append(c)
            final = s.get_final_completion()
        content = final.choices[0].message.content
        if content != "".join(parts):
            raise ValueError("get_final_completion() content differs from the streamed deltas")
        if final.usage is None or final.choices[0].finish_reason != "stop":
            raise ValueError("final completion lacks usage or finish_reason")
        return chunks, content

    return one, client.close, "deepseek_kit " + deepseek_kit.__version__


if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    main("deepseek_kit", make_client, _extra)
