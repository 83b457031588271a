"""`dsk serve --mock`: serve the DeepSeek emulator (synthetic answers) over HTTP;
`dsk serve --config FILE`: serve the gateway (docs/gateway.md).

Emulator settings come from `--config FILE` (TOML, `[emulator]` table), then the flags: `--key`
(repeatable; without it any bearer key is accepted), `--fault` (server-wide fault directives, the
syntax of the `X-DSK-Emulate` header, e.g. "status=503;times=2"), `--seed`, and `--set NAME=VALUE`
for any other `EmulatorConfig` field (VALUE is read as JSON, else taken as a string).
Without --mock, `--config FILE` is the gateway's TOML config; `--host`/`--port` override its
`listen`, `--workers N` runs N processes sharing one listening socket (state shared through the
config's `state`: Redis for several workers).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import common

__all__ = ["add_parser", "run"]

HELP = "serve the DeepSeek emulator (--mock) or the gateway (--config FILE) on HTTP"


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {text!r}")
    return v


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help=HELP, description=HELP + ". Answers are synthetic and deterministic: for "
        "offline work and tests, not a substitute for DeepSeek.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n  dsk serve --mock --port 8000 --fault "status=503;times=2"\n'
               '  dsk serve --config gateway.toml --workers 2')
    p.add_argument("--mock", action="store_true", help="serve the emulator")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1; the "
                   "gateway: its config's listen)")
    p.add_argument("--port", type=_port, default=None, help="port (default 8000, the gateway: its "
                   "config's listen; 0 picks a free one)")
    p.add_argument("--config", metavar="FILE", help="with --mock: emulator settings (TOML, [emulator] "
                   "table); without: the gateway config")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="gateway worker processes sharing the port (default 1)")
    p.add_argument("--key", action="append", default=[], metavar="KEY",
                   help="accepted API key (repeatable); default: any bearer key is accepted")
    p.add_argument("--fault", action="append", default=[], metavar="DIRECTIVES",
                   help='server-wide fault directives, e.g. "status=503;times=2" (repeatable)')
    p.add_argument("--seed", type=int, help="seed mixed into every generated answer")
    p.add_argument("--set", dest="settings", action="append", default=[], type=_setting,
                   metavar="NAME=VALUE", help="any other emulator setting, e.g. --set currency=USD")
    p.set_defaults(func=run)
    return p


def _value(text: str) -> Any:
    """JSON when it parses (numbers, true/false, lists, quoted strings), else the text itself."""
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


MAX_CONFIG_BYTES = 1 << 20  # an emulator config is a few lines of TOML


def build_config(args: argparse.Namespace) -> Any:
    try:
        from deepseek_kit.server import EmulatorConfig
    except ImportError as exc:  # pragma: no cover - a broken install
        raise common.CLIError(f"the emulator is not available: {exc}", common.EXIT_API) from None
    import dataclasses

    data: dict[str, Any] = {}
    if args.config:
        import os
        import stat

        # A device or a FIFO (`--config /dev/zero`) would be read forever; a config file is small.
        try:
            st = os.stat(args.config)
        except OSError as exc:
            raise common.CLIError(f"cannot read {args.config}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(st.st_mode):
            raise common.CLIError(f"{args.config} is not a regular file (give a TOML file with an "
                                  "[emulator] table)")
        if st.st_size > MAX_CONFIG_BYTES:
            raise common.CLIError(f"{args.config} is {st.st_size:,} bytes: not an emulator config "
                                  f"(at most {MAX_CONFIG_BYTES:,})")
        try:
            base = EmulatorConfig.from_toml(args.config)
        except OSError as exc:
            raise common.CLIError(f"cannot read {args.config}: {exc.strerror or exc}") from None
        except ValueError as exc:  # also tomllib.TOMLDecodeError
            raise common.CLIError(f"{args.config}: {exc}") from None
        data = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    for name, value in args.settings:
        data[name] = _value(value)
    if args.key:
        data["api_keys"] = set(args.key)
    if args.fault:
        data["faults"] = ";".join(f.strip().strip(";") for f in args.fault if f.strip())
    if args.seed is not None:
        data["seed"] = args.seed
    try:
        config = EmulatorConfig.from_mapping(data)
        if config.faults:
            from deepseek_kit.server import parse_directives

            parse_directives(config.faults)
    except (TypeError, ValueError) as exc:  # faults.DirectiveError is a ValueError
        text = str(exc)  # EmulatorConfigError already reads "bad emulator setting: <name>: <why>"
        raise common.CLIError(text if text.startswith("bad emulator setting") else
                              f"bad emulator setting: {text}") from None
    return config


def _listening_line(text: str, fallback: str) -> str:
    """aiohttp announces the bound addresses ("Running on http://127.0.0.1:8000, ..."); with
    --port 0 that is the only place the real port shows."""
    import re

    urls = re.findall(r"https?://\S+?(?=[,\s]|$)", text) or [fallback]
    return (f"dsk: DeepSeek emulator listening on {', '.join(urls)} - synthetic answers, not "
            "DeepSeek (Ctrl-C to stop)")


def run(args: argparse.Namespace) -> int:
    if not args.mock:
        if not args.config:
            raise common.CLIError("give --mock (the emulator) or --config FILE (the gateway)")
        return run_gateway(args)
    args.host = args.host or "127.0.0.1"
    args.port = 8000 if args.port is None else args.port
    config = build_config(args)
    # Like server.run_emulator, but announcing the bound port (it differs from --port 0) and on
    # uvloop when installed.
    from aiohttp import web

    from deepseek_kit.server import create_emulator_app

    host = f"[{args.host}]" if ":" in args.host else args.host
    fallback = f"http://{host}:{args.port}"

    def announce(text: str) -> None:
        print(_listening_line(text, fallback), flush=True)

    loop: Any = None
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        pass
    try:
        web.run_app(create_emulator_app(config), host=args.host, port=args.port,
                    handler_cancellation=True, access_log=None, shutdown_timeout=5.0,
                    print=announce, loop=loop)
    except OSError as exc:
        raise common.CLIError(f"cannot listen on {fallback}: {exc.strerror or exc}",
                              common.EXIT_API) from None
    print("dsk: emulator stopped", file=sys.stderr, flush=True)
    return 0


# -- the gateway ----------------------------------------------------------------------------------

MAX_WORKERS = 64


def _quiet_gc() -> None:
    """Keep the cyclic collector off the request path of a long-lived worker.

    Measured with gc.callbacks on `bench/gateway/profile_gw.sh` (3,000 requests, all features on):
    the default thresholds ran 157 young, 14 middle and 2 full collections, 72 ms in all, about
    24 µs a request or a tenth of the gateway's CPU, most of it re-walking the objects built at
    start (config, routes, pricing tables, the imported modules). Freezing those moves them out of
    the collector's sight, and a young-generation threshold of 20,000 lets the per-request garbage,
    which reference counting frees, go by without a pass: the same run then makes no collection,
    and memory at 500 open streams stays where it was. Cycles still get collected, just later.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def _serve_gateway(config: Any, sock: Any) -> None:
    """One worker: the gateway app on the shared listening socket, until SIGTERM/SIGINT; SIGHUP
    reloads the config file (new calls use it, calls in flight finish on the old one)."""
    import asyncio
    import signal

    from aiohttp import web

    from deepseek_kit.server.gateway import GATEWAY_KEY, create_gateway_app, run_gateway_app

    app = create_gateway_app(config)
    _quiet_gc()

    async def on_hup(app: web.Application) -> None:
        gw = app[GATEWAY_KEY]
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(gw.reload_from_file()))

    app.on_startup.append(on_hup)
    loop: Any = None
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        pass
    try:
        # the hot routes on the fast protocol, the rest on aiohttp (server/gateway/fastserve.py)
        run_gateway_app(app, sock, shutdown_timeout=config.shutdown_grace, loop=loop)
    finally:
        import logging

        # The access log writes in batches; a forked worker exits without logging's atexit flush.
        for h in logging.getLogger("deepseek_kit.gateway.access").handlers:
            h.flush()


def run_gateway(args: argparse.Namespace) -> int:
    import logging
    import os
    import signal
    import socket

    from deepseek_kit.server.gateway import GatewayConfigError, load_gateway_config

    try:
        config = load_gateway_config(args.config)
    except GatewayConfigError as exc:
        raise common.CLIError(str(exc)) from None
    host = args.host or config.host
    port = config.port if args.port is None else args.port
    if config.auth == "keys":
        from deepseek_kit.server.gateway import GatewayKeyError, check_pepper

        pepper = os.environ.get(config.pepper_env)
        if not pepper:
            raise common.CLIError(f"the environment variable {config.pepper_env} (the key-hash pepper) is "
                                  "not set: export the value `dsk keys` uses, e.g. once "
                                  f"{config.pepper_env}=$(openssl rand -hex 32)")
        try:
            check_pepper(pepper.encode())
        except GatewayKeyError as exc:
            raise common.CLIError(exc.message) from None
    if not 1 <= args.workers <= MAX_WORKERS:
        raise common.CLIError(f"--workers must be 1-{MAX_WORKERS}, got {args.workers}")
    if args.workers > 1 and config.state and config.state.startswith("sqlite"):
        print("dsk: note: several workers share the SQLite state file; use redis:// for several hosts",
              file=sys.stderr, flush=True)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=1024)
    except OSError as exc:
        raise common.CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                              common.EXIT_API) from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    # One JSON line per request on stderr (no secrets: see server/gateway/metrics.py).
    access = logging.getLogger("deepseek_kit.gateway.access")
    if config.access_log and not access.handlers:
        from deepseek_kit.server.gateway import AccessLogHandler

        access.addHandler(AccessLogHandler(sys.stderr))  # lines written in batches
        access.setLevel(logging.INFO)
        access.propagate = False
    print(f"dsk: gateway listening on http://{shown}:{bound} ({args.workers} worker"
          f"{'s' if args.workers > 1 else ''}, upstreams: {', '.join(u.name for u in config.upstreams)})"
          " (Ctrl-C to stop)", flush=True)
    if args.workers == 1:
        _serve_gateway(config, sock)
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_serve_gateway, args=(config, sock), daemon=False)
                 for _ in range(args.workers)]
        for pr in procs:
            pr.start()

        def forward(signum: int, frame: Any) -> None:
            if signum != signal.SIGHUP:
                sock.close()  # the workers stop accepting: so does this copy of the listener
            for pr in procs:
                if pr.pid is not None and pr.is_alive():
                    os.kill(pr.pid, signum)

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, forward)
        for pr in procs:
            pr.join()
    sock.close()
    print("dsk: gateway stopped", file=sys.stderr, flush=True)
    return 0
