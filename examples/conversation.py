"""Conversation with context policies, presets, usage and saving, against the built-in emulator."""
import asyncio
import json

from deepseek_kit import (
    AsyncClient,
    Conversation,
    ExtractiveSummarizer,
    SlidingWindow,
    Summarize,
    TokenBudget,
    preset,
)
from deepseek_kit.server import EmulatorThread


async def main(base_url: str) -> None:
    async with AsyncClient(api_key="sk-demo", base_url=base_url) as client:
        conv = Conversation(client, system="You are a concise travel agent.",
                            policy=SlidingWindow(keep=5) | TokenBudget(32_000))
        reply = await conv.send("Plan two days in Lisbon.")
        print("reasoning:", len(reply.choices[0].message.reasoning_content or ""), "chars kept in history")
        async with conv.stream("Now add a day trip.") as s:
            async for chunk in s:
                pass                                   # render chunk.choices[0].delta here
        print("turns:", len(conv.history), "| next request ~", conv.count_tokens("And food?"), "tokens")
        conv.preset = "coding"                         # /preset coding  (temperature 0.0, thinking off)
        print(conv.describe())
        print(conv.usage)                              # /cost
        saved = json.dumps(conv.to_dict())             # plain data; Conversation.from_dict(...) restores
        print("saved:", len(saved), "bytes")

        offline = Conversation(client, policy=Summarize(threshold_chars=2000, keep_rounds=2,
                                                        summarizer=ExtractiveSummarizer()))
        for day in range(6):
            await offline.send(f"Day {day}: what should we see in Lisbon? " + "We like museums and food. " * 8)
        print([m["role"] for m in offline.messages()])
    print(preset("creative"))


with EmulatorThread() as emu:
    asyncio.run(main(emu.base_url))
