"""Tools for `dsk ask --tools examples/tools.py "..."`: every `@tool` at the top level is offered."""

from __future__ import annotations

from typing import Literal

from deepseek_kit import tool


@tool
def get_weather(city: str, units: Literal["metric", "imperial"] = "metric") -> dict[str, object]:
    """Current weather for a city.

    Args:
        city: City name, e.g. "Paris".
        units: Unit system of the temperature.
    """
    return {"city": city, "temperature": 21 if units == "metric" else 70, "sky": "clear"}


@tool
def add(a: int, b: int) -> int:
    """Add two whole numbers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b
