"""`dsk clients`: manage the gateway's OAuth2 clients (client-credentials grant) in its state, as
named by the gateway config file; each client gets access tokens that act as one virtual key.

    dsk clients create --config FILE --name NAME --key KEY [--scope S] [--token-ttl SECONDS]
    dsk clients list [--json] | revoke ID | rotate ID | rotate-signing-key   (each with --config FILE)

`create` and `rotate` print the client secret once, alone on the last line of stdout (for scripts:
`dsk clients create ... | tail -1`); nothing else ever prints a secret. The config and the pepper
are read as `dsk keys` reads them (keys.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .keys import _run  # the same config, pepper and error handling as dsk keys

if TYPE_CHECKING:
    from deepseek_kit.server.gateway import ClientRecord, GatewayState

__all__ = ["add_parser"]

HELP = "create, list, revoke and rotate the gateway's OAuth2 clients (client-credentials grant)"


def _ttl(text: str) -> int:
    """Whole seconds; the range is checked where clients are created (one place)."""
    try:
        return int(text.strip().removesuffix("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of seconds, got {text!r}") from None


def _when(at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _print_secret(verb: str, secret: str, rec: ClientRecord) -> None:
    print(f"{verb} OAuth client {rec.client_id} ({rec.name}), acting as key {rec.key_id}; scope "
          f"{rec.scope!r}, tokens live {rec.token_ttl} s")
    print(f"client_id: {rec.client_id}")
    print("the client secret below is shown only this once; store it now (the gateway keeps only a hash)")
    print(secret)


def run_create(args: argparse.Namespace) -> int:
    from deepseek_kit.server.gateway import tokens_for

    async def act(state: GatewayState, currency: str) -> int:
        opts = {k: v for k, v in (("scope", args.scope), ("token_ttl", args.token_ttl)) if v is not None}
        secret, rec = await tokens_for(state).clients.create(args.name, args.key, **opts)
        _print_secret("created", secret, rec)
        return 0

    return _run(args, act)


def run_list(args: argparse.Namespace) -> int:
    from deepseek_kit.server.gateway import tokens_for

    from .logs import table

    async def act(state: GatewayState, currency: str) -> int:
        recs = await tokens_for(state).clients.list_clients()
        if args.json:
            for rec in recs:
                sys.stdout.write(json.dumps(rec.to_dict()) + "\n")
            return 0
        if not recs:
            print(f"dsk: no OAuth clients yet (dsk clients create --config {args.config} --name NAME "
                  "--key KEY)", file=sys.stderr)
            return 0
        rows = [[r.client_id, "revoked" if r.revoked else "active", r.key_id, r.scope, str(r.token_ttl),
                 _when(r.created), r.name] for r in recs]
        print(table(["CLIENT_ID", "STATUS", "KEY", "SCOPE", "TTL S", "CREATED", "NAME"], rows, right=(4,)))
        return 0

    return _run(args, act)


def run_revoke(args: argparse.Namespace) -> int:
    from deepseek_kit.server.gateway import tokens_for

    async def act(state: GatewayState, currency: str) -> int:
        rec = await tokens_for(state).clients.revoke(args.id)
        print(f"revoked OAuth client {rec.client_id} ({rec.name}); every gateway worker refuses it and "
              "its tokens within a second")
        return 0

    return _run(args, act)


def run_rotate(args: argparse.Namespace) -> int:
    from deepseek_kit.server.gateway import tokens_for

    async def act(state: GatewayState, currency: str) -> int:
        secret, rec = await tokens_for(state).clients.rotate(args.id)
        _print_secret("rotated", secret, rec)
        return 0

    return _run(args, act)


def run_rotate_signing_key(args: argparse.Namespace) -> int:
    from deepseek_kit.server.gateway import tokens_for

    async def act(state: GatewayState, currency: str) -> int:
        kid = await tokens_for(state).rotate_signing_key()
        print(f"new token-signing key {kid}; tokens signed by the previous key stay valid until they expire")
        return 0

    return _run(args, act)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "clients", help=HELP, description=HELP + ".", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  dsk clients create --config gateway.toml --name billing-bot --key key_1a2b3c4d\n"
               "  dsk clients list --config gateway.toml\n"
               "  dsk clients revoke --config gateway.toml dskc_0123456789abcdef0123")
    s = p.add_subparsers(dest="clients_command", metavar="SUBCOMMAND", required=True)

    def cmd(name: str, help: str, func: Any, *, with_id: bool = True) -> Any:
        c = s.add_parser(name, help=help, description=help)
        c.add_argument("--config", required=True, metavar="FILE",
                       help="the gateway config (TOML); [gateway] state and pepper_env are read")
        if with_id:
            c.add_argument("id", metavar="CLIENT_ID", help="the client's id (dskc_...)")
        c.set_defaults(func=func)
        return c

    create = cmd("create", "create a client; prints its secret once, alone on the last line", run_create,
                 with_id=False)
    create.add_argument("--name", required=True, help="who or what the client is for")
    create.add_argument("--key", required=True, metavar="KEY",
                        help="the virtual key its tokens act as: id (key_...) or prefix (sk-dsk-...)")
    create.add_argument("--scope", metavar="S", help="space-separated scope words (default: api)")
    create.add_argument("--token-ttl", type=_ttl, metavar="SECONDS",
                        help="access-token lifetime, 1 to 86400 (default: 900)")
    lst = cmd("list", "every client: id, status, key, scope (never a secret)", run_list, with_id=False)
    lst.add_argument("--json", action="store_true", help="JSON Lines for scripts")
    cmd("revoke", "refuse the client and its tokens from now on (every worker within a second)", run_revoke)
    cmd("rotate", "give the client a new secret (the old one and its tokens stop working); prints it once",
        run_rotate)
    cmd("rotate-signing-key", "sign new tokens with a new key (tokens already issued stay valid)",
        run_rotate_signing_key, with_id=False)
    return p
