import asyncio
from deepseek_kit import AsyncClient, Timeout, APITimeoutError, StreamError
from deepseek_kit.server import EmulatorThread

async def main(url):
    async with AsyncClient(api_key="sk-demo", base_url=url, timeout=Timeout(first_token=1)) as c:
        msgs = [{"role": "user", "content": "hi"}]
        r = await c.chat.completions.create(model="deepseek-flash", messages=msgs,
                                            extra_headers={"X-DSK-Emulate": "status=503;times=2"})
        print("503 twice, then:", r.choices[0].finish_reason)
        try:
            await c.chat.completions.create(model="deepseek-flash", messages=msgs, max_retries=0,
                                            extra_headers={"X-DSK-Emulate": "stall_first_token=30;keepalive=0.1"})
        except APITimeoutError as e:
            print(type(e).__name__, "-", e)
        s = await c.chat.completions.create(model="deepseek-flash", messages=msgs, stream=True,
                                            extra_headers={"X-DSK-Emulate": "reset_after=20"})
        try:
            await s.until_done()
        except StreamError as e:
            print(type(e).__name__, "-", e, "| partial:", len(e.partial.choices[0].message.reasoning_content or ""), "chars of reasoning")

with EmulatorThread() as emu:
    asyncio.run(main(emu.base_url))
