"""`dsk`, the command-line entry point: builds the argument parser and turns every failure into one
line on stderr and an exit status (0 ok, 1 API or connection error, 2 bad arguments or settings,
130 Ctrl-C); never a traceback for an expected error.

Subcommands live in their own modules and import their heavy dependencies (aiohttp, rich,
prompt_toolkit, the server) only when they run, so `dsk --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import ask, batch, chat, clients, common, info, keys, logs, serve, shortcut, stats

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    return _build()[0]


def _build() -> tuple[argparse.ArgumentParser, Any]:
    """The parser and its subcommands (their names are what `shortcut.rewrite` must not ask)."""
    from deepseek_kit import __version__

    p = argparse.ArgumentParser(
        prog="dsk",
        description="DeepSeek from the terminal. Uses DEEPSEEK_API_KEY when set, else the built-in "
                    "emulator (synthetic answers).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='start with:\n  dsk chat\n  dsk ask "question"     (or just: dsk "question")\n'
               '  dsk -c "follow-up"     (continue the last conversation of dsk ask or dsk chat)',
    )
    p.add_argument("--version", action="version", version=f"dsk {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    ask.add_parser(sub)
    batch.add_parser(sub)
    chat.add_parser(sub)
    keys.add_parser(sub)
    clients.add_parser(sub)
    logs.add_parser(sub)
    info.add_parser(sub)
    serve.add_parser(sub)
    stats.add_parser(sub)
    return p, sub


def _run(argv: Sequence[str] | None) -> int:
    parser, sub = _build()
    try:
        argv = shortcut.rewrite(sys.argv[1:] if argv is None else argv, sub.choices)
    except common.CLIError as exc:
        print(common.error_line(exc), file=sys.stderr)
        return exc.code
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return common.EXIT_USAGE
    from deepseek_kit import DeepSeekError, UsageError

    secrets = (os.environ.get("DEEPSEEK_API_KEY"),)
    try:
        if sys.stdout is None:  # started with stdout closed (`dsk ask ... >&-`): fail before paying
            raise common.CLIError("standard output is closed: there is nowhere to print the result")
        code: int = args.func(args)
        return code
    except common.CLIError as exc:
        print(common.error_line(exc, secrets), file=sys.stderr)
        return exc.code
    except UsageError as exc:
        print(common.error_line(exc, secrets), file=sys.stderr)
        return common.EXIT_USAGE
    except DeepSeekError as exc:
        print(common.error_line(exc, secrets), file=sys.stderr)
        return common.EXIT_API


def _calendar_warning_as_one_line() -> None:
    """A price for a weekday of a year without a holiday calendar warns once per process
    (docs/pricing.md). In `dsk` that is every run: on a terminal it is one `dsk: warning:` line;
    in scripts and pipes (stderr not a terminal) it is left out, so output stays parseable."""
    import warnings

    from deepseek_kit import HolidayCalendarWarning

    if not sys.stderr.isatty():
        warnings.filterwarnings("ignore", category=HolidayCalendarWarning)
        return
    shown = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: object = None, line: str | None = None) -> None:
        if issubclass(category, HolidayCalendarWarning):
            print(f"dsk: warning: {message}", file=sys.stderr, flush=True)
        else:
            shown(message, category, filename, lineno, file, line)  # type: ignore[arg-type]

    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (`dsk = deepseek_kit.cli.main:main`)."""
    try:
        _calendar_warning_as_one_line()
        code = _run(argv)
        if sys.stdout is not None:
            sys.stdout.flush()
    except KeyboardInterrupt:
        try:
            sys.stderr.write("\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        code = common.EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`dsk ask ... | head -1`): stop quietly, as a SIGPIPE would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 141
    sys.exit(code)


if __name__ == "__main__":
    main()
