#!/usr/bin/env python3
"""deepseek_kit with the full production stack on (router, limits, metrics; cache off): the same driver
as drv_deepseek_kit.py with `stack = "full"`."""
import drv_deepseek_kit
from drv_deepseek_kit import main


async def make_client(args):
    args.stack = "full"
    return await drv_deepseek_kit.make_client(args)


if __name__ == "__main__":
    main("deepseek_kit_full", make_client, drv_deepseek_kit._extra)
