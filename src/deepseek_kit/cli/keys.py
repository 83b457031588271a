"""`dsk keys`: manage the gateway's virtual keys in its state (SQLite file or Redis), as named by
the gateway config file.

    dsk keys create --config FILE --name NAME [--models M1,M2] [--rpm N] [--tpm N]
                    [--max-in-flight N] [--budget-daily AMOUNT] [--budget-monthly AMOUNT]
                    [--expires DATE] [--allow-ip CIDR]...
    dsk keys list|show ID|revoke ID|rotate ID|usage ID [--since WHEN]  (each with --config FILE)

`create` and `rotate` print the new key once, alone on the last line of stdout (for scripts:
`dsk keys create ... | tail -1`); nothing else ever prints a key or its secret part. From the config
only `[gateway] state`, `pepper_env` (default DSK_GATEWAY_PEPPER) and `currency` (default CNY) are
read; the pepper itself comes from that environment variable.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import common

if TYPE_CHECKING:
    from deepseek_kit.server.gateway import GatewayState

__all__ = ["add_parser"]

HELP = "create, list, revoke and rotate the gateway's virtual keys; show their spend"
DEFAULT_PEPPER_ENV = "DSK_GATEWAY_PEPPER"
_DURATION = re.compile(r"\s*(\d+)\s*([hdw])\s*")
_HOURS = {"h": 1, "d": 24, "w": 168}


# -- argument types ----------------------------------------------------------------------------------


def _amount(text: str) -> Decimal:
    try:
        v = Decimal(text.strip())
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"expected an amount such as 5 or 0.25, got {text!r}") from None
    if not v.is_finite() or v < 0:
        raise argparse.ArgumentTypeError(f"must be an amount >= 0, got {text!r}")
    return v


def _expires(text: str) -> datetime:
    """A date (midnight Beijing time, DeepSeek's billing day), a date-time (Beijing time unless it
    has an offset), or a duration from now: 12h, 30d, 2w."""
    from deepseek_kit.server.gateway import BEIJING, now

    m = _DURATION.fullmatch(text)
    if m:
        return now() + timedelta(hours=int(m.group(1)) * _HOURS[m.group(2)])
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date like 2027-01-31, a time like 2027-01-31T18:00+08:00, or 30d, got {text!r}"
        ) from None
    return at.replace(tzinfo=BEIJING) if at.tzinfo is None else at


def _models(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    if not models:
        raise argparse.ArgumentTypeError("expected model names separated by commas")
    return models


def _since(text: str) -> date:
    from deepseek_kit.server.gateway import BEIJING, now

    m = re.fullmatch(r"\s*(\d+)\s*d\s*", text)
    if m:
        return (now().astimezone(BEIJING) - timedelta(days=int(m.group(1)))).date()
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2026-12-01 or 7d, got {text!r}") from None


# -- config and state ----------------------------------------------------------------------------------


def _gateway_table(path: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 needs the tomli backport
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        with Path(path).open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
    except OSError as exc:
        raise common.CLIError(f"cannot read the gateway config {path}: {exc.strerror}") from None
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise common.CLIError(f"{path} is not valid TOML: {exc}") from None
    gw = data.get("gateway")
    if not isinstance(gw, dict):
        raise common.CLIError(f"{path} has no [gateway] table (it needs at least: [gateway] state = "
                              "\"sqlite:///var/lib/dsk/gateway.db\")")
    return gw


def _open(args: argparse.Namespace) -> tuple[GatewayState, str]:
    from deepseek_kit.server.gateway import open_state

    gw = _gateway_table(args.config)
    url = gw.get("state")
    if not isinstance(url, str) or not url:
        raise common.CLIError(f"{args.config}: [gateway] state must be a URL such as "
                              "\"sqlite:///var/lib/dsk/gateway.db\" or \"redis://127.0.0.1:6379/0\"")
    env = gw.get("pepper_env", DEFAULT_PEPPER_ENV)
    if not isinstance(env, str) or not env:
        raise common.CLIError(f"{args.config}: [gateway] pepper_env must name an environment variable")
    pepper = os.environ.get(env, "")
    if not pepper:
        raise common.CLIError(f"the environment variable {env} (the gateway's pepper) is not set; use the "
                              f"same value as the gateway, e.g. export {env}=$(openssl rand -hex 32) once")
    currency = gw.get("currency", "CNY")
    return open_state(url, pepper=pepper.encode()), str(currency).upper()


def _run(args: argparse.Namespace, action: Any) -> int:
    from deepseek_kit.server.gateway import GatewayKeyError, StateUnavailableError

    async def main() -> int:
        state, currency = _open(args)
        try:
            code: int = await action(state, currency)
            return code
        finally:
            await state.aclose()

    try:
        return common.run_async(main)
    except StateUnavailableError as exc:  # the store, not the arguments: like an API error
        raise common.CLIError(exc.message, common.EXIT_API) from None
    except GatewayKeyError as exc:
        raise common.CLIError(exc.message) from None


# -- output ------------------------------------------------------------------------------------------------


def _when(at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _print_new(verb: str, token: str, key: Any) -> None:
    print(f"{verb} key {key.id} ({key.name}), prefix {key.prefix}")
    print("the key below is shown only this once; store it now (the gateway keeps only a hash)")
    print(token)


# -- commands --------------------------------------------------------------------------------------------


def run_create(args: argparse.Namespace) -> int:
    async def act(state: GatewayState, currency: str) -> int:
        token, key = await state.create_key(
            args.name, models=args.models, rpm=args.rpm, tpm=args.tpm, max_in_flight=args.max_in_flight,
            budget_daily=args.budget_daily, budget_monthly=args.budget_monthly, expires_at=args.expires,
            allow_ip=args.allow_ip or ())
        _print_new("created", token, key)
        return 0

    return _run(args, act)


def run_list(args: argparse.Namespace) -> int:
    from deepseek_kit.server.gateway import now

    from .logs import table

    async def act(state: GatewayState, currency: str) -> int:
        at = now()
        recs = await state.list_keys()
        if args.json:
            for rec in recs:
                sys.stdout.write(json.dumps(rec.to_dict(at, currency)) + "\n")
            return 0
        if not recs:
            print(f"dsk: no keys yet (dsk keys create --config {args.config} --name NAME)", file=sys.stderr)
            return 0
        rows = [[r.key.id, r.key.prefix, r.status(at), str(r.key.budget_daily or "-"),
                 str(r.key.budget_monthly or "-"), _when(r.key.expires_at), r.key.name] for r in recs]
        print(table(["ID", "PREFIX", "STATUS", f"DAY {currency}", f"MONTH {currency}", "EXPIRES", "NAME"],
                    rows, right=(3, 4)))
        return 0

    return _run(args, act)


def run_show(args: argparse.Namespace) -> int:
    from deepseek_kit.server.gateway import now

    async def act(state: GatewayState, currency: str) -> int:
        rec = await state.get_key(args.id)
        d = rec.to_dict(now(), currency)
        today, month = await state.spent(rec.key)
        d["spent_today"], d["spent_this_month"] = str(today), str(month)
        left = await state.remaining(rec.key)
        d["remaining"] = None if left is None else str(left)
        if args.json:
            print(json.dumps(d))
            return 0
        for name, value in d.items():
            if isinstance(value, list):
                value = ", ".join(value) or "-"
            print(f"{name + ':':<18} {'-' if value is None else value}")
        return 0

    return _run(args, act)


def run_revoke(args: argparse.Namespace) -> int:
    async def act(state: GatewayState, currency: str) -> int:
        rec = await state.revoke(args.id)
        print(f"revoked key {rec.key.id} ({rec.key.name}, {rec.key.prefix}); every gateway worker refuses "
              "it within a second")
        return 0

    return _run(args, act)


def run_rotate(args: argparse.Namespace) -> int:
    async def act(state: GatewayState, currency: str) -> int:
        token, key = await state.rotate(args.id)
        _print_new("rotated", token, key)
        return 0

    return _run(args, act)


def run_usage(args: argparse.Namespace) -> int:
    from .logs import table

    async def act(state: GatewayState, currency: str) -> int:
        rows = await state.usage(args.id, args.since)
        if args.json:
            for r in rows:
                sys.stdout.write(json.dumps({"day": r.day, "model": r.model, "requests": r.requests,
                                             "cost": str(r.cost), "currency": currency}) + "\n")
            return 0
        total = sum((r.cost for r in rows), Decimal(0))
        body = [[r.day, r.model, str(r.requests), f"{r.cost:f}"] for r in rows]
        body.append(["total", "", str(sum(r.requests for r in rows)), f"{total:f}"])
        print(table(["DAY (Beijing)", "MODEL", "REQUESTS", f"COST {currency}"], body, right=(2, 3)))
        return 0

    return _run(args, act)


# -- parser ------------------------------------------------------------------------------------------------


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "keys", help=HELP, description=HELP + ".", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  dsk keys create --config gateway.toml --name team-a --budget-daily 20\n"
               "  dsk keys list --config gateway.toml\n  dsk keys revoke --config gateway.toml key_1a2b3c4d")
    s = p.add_subparsers(dest="keys_command", metavar="SUBCOMMAND", required=True)

    def cmd(name: str, help: str, func: Any, *, with_id: bool = True, json_out: bool = False) -> Any:
        c = s.add_parser(name, help=help, description=help)
        c.add_argument("--config", required=True, metavar="FILE",
                       help="the gateway config (TOML); [gateway] state and pepper_env are read")
        if with_id:
            c.add_argument("id", metavar="ID", help="key id (key_...) or display prefix (sk-dsk-...)")
        if json_out:
            c.add_argument("--json", action="store_true", help="JSON (Lines) for scripts")
        c.set_defaults(func=func)
        return c

    create = cmd("create", "create a key; prints it once, alone on the last line", run_create, with_id=False)
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--models", type=_models, metavar="M1,M2", help="allowed models (default: all)")
    create.add_argument("--rpm", type=common.positive_int, metavar="N", help="requests per minute")
    create.add_argument("--tpm", type=common.positive_int, metavar="N", help="tokens per minute")
    create.add_argument("--max-in-flight", type=common.positive_int, metavar="N",
                        help="concurrent requests")
    create.add_argument("--budget-daily", type=_amount, metavar="AMOUNT",
                        help="spend per Beijing day, in the gateway's currency ([gateway] currency, "
                             "default CNY)")
    create.add_argument("--budget-monthly", type=_amount, metavar="AMOUNT",
                        help="spend per Beijing calendar month, same currency")
    create.add_argument("--expires", type=_expires, metavar="DATE",
                        help="2027-01-31 (midnight Beijing time), 2027-01-31T18:00+00:00, or 30d from now")
    create.add_argument("--allow-ip", action="append", metavar="CIDR",
                        help="accept the key only from this network (repeat for several)")
    cmd("list", "every key: id, prefix, status, budgets (never a secret)", run_list, with_id=False,
        json_out=True)
    cmd("show", "one key's settings, spend today and this month, remaining budget", run_show, json_out=True)
    cmd("revoke", "refuse the key from now on (every worker within a second)", run_revoke)
    cmd("rotate", "give the key a new secret (the old one stops working); prints it once", run_rotate)
    usage = cmd("usage", "spend per Beijing day and model", run_usage, json_out=True)
    usage.add_argument("--since", type=_since, metavar="WHEN", help="from this day: 2026-12-01 or 7d")
    return p
