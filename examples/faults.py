"""The emulator's fault injection, per request through a header: retries, a first-token timeout
that keep-alive comments cannot extend, and a stream cut in the middle."""

import asyncio

from deepseek_kit import APITimeoutError, AsyncClient, StreamError, Timeout
from deepseek_kit.server import EmulatorThread


async def main(url: str) -> None:
    async with AsyncClient(api_key="sk-demo", base_url=url, timeout=Timeout(first_token=1)) as c:
        msgs = [{"role": "user", "content": "hi"}]
        r = await c.chat.completions.create(model="deepseek-flash", messages=msgs,
                                            extra_headers={"X-DSK-Emulate": "status=503;times=2"})
        print("503 twice, then:", r.choices[0].finish_reason)
        try:
            await c.chat.completions.create(
                model="deepseek-flash", messages=msgs, max_retries=0,
                extra_headers={"X-DSK-Emulate": "stall_first_token=30;keepalive=0.1"})
        except APITimeoutError as e:
            print(type(e).__name__, "-", e)
        s = await c.chat.completions.create(model="deepseek-flash", messages=msgs, stream=True,
                                            extra_headers={"X-DSK-Emulate": "reset_after=20"})
        try:
            await s.until_done()
        except StreamError as e:
            reasoning = e.partial.choices[0].message.reasoning_content if e.partial else None
            print(type(e).__name__, "-", e, "| partial:", len(reasoning or ""), "chars of reasoning")


with EmulatorThread() as emu:
    asyncio.run(main(emu.base_url))
