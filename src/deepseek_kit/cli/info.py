"""`dsk models` and `dsk balance`: GET /models and GET /user/balance through the client (so the
config profiles, retries and the `--mock` emulator apply as for `dsk ask`).

Balance amounts stay the decimal strings DeepSeek sends (docs/deepseek-api-notes.md#balance): printing them as
floats could show 0.30000000000000004 for money.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import common

__all__ = ["add_parser"]


async def _models(args: argparse.Namespace, b: common.Backend) -> int:
    async with common.make_client(b, args) as client:
        models = await client.models.list()
    if args.json:
        sys.stdout.write(models.to_json() + "\n")
        return 0
    from .logs import table

    print(table(["MODEL", "OWNED BY"], [[m.id, m.owned_by or "-"] for m in models.data]))
    return 0


async def _balance(args: argparse.Namespace, b: common.Backend) -> int:
    async with common.make_client(b, args) as client:
        bal = await client.user.balance()
    if args.json:
        sys.stdout.write(bal.to_json() + "\n")
        return 0
    from .logs import table

    print(f"available: {'yes' if bal.is_available else 'no (top up at https://platform.deepseek.com)'}")
    if bal.balance_infos:
        print(table(["CURRENCY", "TOTAL", "GRANTED", "TOPPED UP"],
                    [[i.currency, i.total_balance, i.granted_balance, i.topped_up_balance]
                     for i in bal.balance_infos], right=(1, 2, 3)))
    if b.synthetic:
        sys.stdout.flush()
        print("(the built-in emulator's balance, not your DeepSeek account)", file=sys.stderr)
    return 0


def run_models(args: argparse.Namespace) -> int:
    with common.backend(args) as b:
        return common.run_async(lambda: _models(args, b))


def run_balance(args: argparse.Namespace) -> int:
    with common.backend(args) as b:
        return common.run_async(lambda: _balance(args, b))


def add_parser(sub: Any) -> None:
    for name, fn, text in (
        ("models", run_models, "list the models the API serves (GET /models)"),
        ("balance", run_balance, "show the account balance (GET /user/balance)"),
    ):
        p: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text + ".")
        p.add_argument("--json", action="store_true", help="print the API's answer as JSON")
        common.add_connection_options(p)
        p.set_defaults(func=fn)
