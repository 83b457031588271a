"""The production stack against two local emulators: failover, limits, cache, metrics, resumption."""
import asyncio

from deepseek_kit import AsyncClient, CachePolicy, Endpoint, Limits, Routing
from deepseek_kit.server import EmulatorConfig, EmulatorThread


async def main(cloud: str, private: str) -> None:
    async with AsyncClient(
        endpoints=[Endpoint(cloud, name="cloud", api_key="sk-cloud"),
                   # an emulator here, so it can continue broken streams (a real vLLM cannot):
                   Endpoint(private, name="vllm", api_key="sk-local", priority=1, prefix_completion=True)],
        routing=Routing(strategy="priority"),
        limits=Limits(rpm=600, max_in_flight=50),
        cache=CachePolicy(backend="memory"),
        metrics=True,
    ) as client:
        msgs = [{"role": "user", "content": "Name three rivers."}]
        for _ in range(2):  # the second is a cache hit (non-thinking, temperature 0)
            r = await client.chat.completions.create(model="deepseek-flash", messages=msgs,
                                                     thinking=False, temperature=0)
        print("answer:", r.choices[0].message.content[:60], "...")
        s = await client.chat.completions.create(      # breaks after 8 events, resumed seamlessly
            model="deepseek-flash", messages=msgs, stream=True,
            extra_headers={"X-DSK-Emulate": "reset_after=8;times=1"})
        final = await s.until_done()
        print("resumed:", s.resumed, "| finish:", final.choices[0].finish_reason,
              "| breaker of cloud:", client.router.endpoint("cloud").breaker.state)
        print(client.metrics)


with EmulatorThread(EmulatorConfig(faults="status=503")) as cloud, EmulatorThread() as private:
    asyncio.run(main(cloud.base_url, private.base_url))
