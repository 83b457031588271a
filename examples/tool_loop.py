"""@tool, the tool loop and structured output, against the built-in emulator."""
import asyncio
from typing import Literal

import msgspec

from deepseek_kit import (
    AsyncClient,
    ContentDelta,
    Final,
    ToolCallStarted,
    ToolError,
    ToolResult,
    parse,
    run_tools,
    tool,
)
from deepseek_kit.server import EmulatorThread


@tool
def get_weather(city: str, units: Literal["metric", "imperial"] = "metric") -> dict[str, object]:
    """Current weather for a city.

    Args:
        city: City name, e.g. "Paris".
        units: Unit system of the temperature.
    """
    return {"city": city, "temp": 21 if units == "metric" else 70}


@tool
async def divide(a: float, b: float) -> float:
    """Divide a by b."""
    return a / b


class City(msgspec.Struct):
    name: str
    population: int


async def main(url: str) -> None:
    async with AsyncClient(api_key="sk-demo", base_url=url) as client:
        print(get_weather.schema["function"]["parameters"])
        messages = [{"role": "user", "content": "Call get_weather and divide"}]
        async for ev in run_tools(client, messages, [get_weather, divide], model="deepseek-flash"):
            if isinstance(ev, ToolCallStarted):
                print(f"step {ev.step}: calling {ev.name}({ev.arguments})")
            elif isinstance(ev, (ToolResult, ToolError)):
                print(f"step {ev.step}: {ev.name} -> {ev.content}")
            elif isinstance(ev, ContentDelta) and ev.text:
                pass  # print(ev.text, end="") to stream the answer
            elif isinstance(ev, Final):
                print("roles:", [m["role"] for m in ev.messages], "| steps:", ev.steps,
                      "| tokens:", ev.usage and ev.usage.total_tokens)
        print(await parse(client, "The largest city in Peru?", City, model="deepseek-flash"))


with EmulatorThread() as emu:
    asyncio.run(main(emu.base_url))
