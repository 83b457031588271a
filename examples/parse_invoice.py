"""Structured output against the emulator: a pydantic model with a date, an enum and a list of
line items parses on the first attempt (the emulator follows the JSON schema parse() sends)."""

from __future__ import annotations

import asyncio
import datetime
import enum

import pydantic

from deepseek_kit import AsyncClient, parse
from deepseek_kit.server import EmulatorThread


class Status(str, enum.Enum):
    DRAFT = "draft"
    PAID = "paid"


class LineItem(pydantic.BaseModel):
    sku: str
    quantity: int = pydantic.Field(ge=1, le=50)


class Invoice(pydantic.BaseModel):
    issued: datetime.date
    status: Status
    items: list[LineItem]


async def main() -> None:
    with EmulatorThread() as emu:
        async with AsyncClient(api_key="sk-test", base_url=emu.base_url) as client:
            invoice = await parse(client, "Extract the invoice: ...", Invoice, model="deepseek-flash")
        print(invoice)
        print(emu.state.total_requests, "request")


if __name__ == "__main__":
    asyncio.run(main())
