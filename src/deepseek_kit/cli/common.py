"""What every API command of `dsk` shares: the connection options, choosing the backend (DeepSeek,
another server, or the in-process emulator), the event loop, and one-line error reporting.

Kept light on purpose: nothing heavy (aiohttp, rich, prompt_toolkit, the server) is imported at
module level, so `dsk --help` and argument errors stay fast.

Backend choice, in order:
1. `--mock`: an emulator on 127.0.0.1 in a daemon thread (synthetic answers), whatever the key.
2. A key from --api-key-env / DEEPSEEK_API_KEY / the config file, or a base URL that is not
   DeepSeek's (private deployments may need no key): that server.
3. No key and no base URL anywhere: only a person at a terminal (`dsk chat` with stdin and stdout
   on a terminal, `dsk ask` with stdout and stderr on one) gets the emulator, with one line on
   stderr saying so, so that a first `dsk chat` works out of the box. Everything else (`dsk batch`,
   `dsk models`, `dsk balance`, `dsk ask` in a pipe or a script) refuses with a one-line error
   (exit 2): a script must never receive synthetic answers that look real (`--mock` asks for them).
   `--no-mock-fallback` (or naming DeepSeek's URL explicitly with --base-url / DEEPSEEK_BASE_URL /
   the config) turns the fallback off everywhere.

The config file's top-level (or profile) `[limits]`, `[cache]`, `[metrics]`, `endpoints` and
`routing` apply to `dsk` as to `AsyncClient()` (`make_client` hands the client the config file);
values of the wrong type are one `dsk: error:` line, like every `UsageError`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

if TYPE_CHECKING:
    import asyncio

    from deepseek_kit import AsyncClient

__all__ = [
    "DEFAULT_MAX_INPUT_MB",
    "DEFAULT_MODEL",
    "EXIT_API",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "Backend",
    "CLIError",
    "ReasoningWriter",
    "add_client_options",
    "add_connection_options",
    "backend",
    "error_line",
    "for_stream",
    "interruptible",
    "log_step",
    "log_steps",
    "make_client",
    "max_input_bytes",
    "may_fall_back",
    "request_kwargs",
    "run_async",
    "terminal_safe",
    "too_much_input",
    "utf8_text",
]

DEFAULT_MODEL = "deepseek-flash"
DEFAULT_MAX_RETRIES = 2  # the library's 4 retries with backoff is too patient for a person waiting
EMULATOR_KEY = "sk-dsk-emulator"

#: Keys resolved in this process, masked in every error line whatever their source.
SECRETS: list[str] = []

EXIT_API = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

T = TypeVar("T")


class CLIError(Exception):
    """An error to report as one `dsk: error: ...` line; `code` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return v


def _non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return v


def add_client_options(p: argparse.ArgumentParser) -> None:
    """Options of every command that talks to the API (ask, chat)."""
    p.add_argument("-m", "--model", help=f"model id (default: config file 'model', else {DEFAULT_MODEL})")
    p.add_argument("-s", "--system", metavar="TEXT", help="system prompt")
    p.add_argument("--think", dest="think", action=argparse.BooleanOptionalAction, default=None,
                   help="turn thinking mode on or off (default: the model's default, on for current "
                        "DeepSeek models)")
    p.add_argument("--show-reasoning", action="store_true",
                   help="print the reasoning to stderr even when stderr is not a terminal")
    add_connection_options(p)


def add_connection_options(p: argparse.ArgumentParser) -> None:
    """Where requests go (every command that talks to the API: ask, chat, models, balance)."""
    p.set_defaults(model=None)  # backend() reads it; commands without --model use the config's
    g = p.add_argument_group("connection")
    g.add_argument("--base-url", metavar="URL",
                   help="API base URL (default: DEEPSEEK_BASE_URL, the config file, else "
                        "https://api.deepseek.com)")
    g.add_argument("--profile", metavar="NAME", help="profile from $DSK_HOME/config.toml")
    g.add_argument("--api-key-env", metavar="VAR",
                   help="read the API key from this environment variable instead of DEEPSEEK_API_KEY")
    g.add_argument("--timeout", type=_positive_float, metavar="SECONDS",
                   help="limit for connecting, for the first token and between tokens (keep-alives "
                        "do not count)")
    g.add_argument("--proxy", metavar="URL",
                   help="send requests through this HTTP proxy (default: HTTP_PROXY / HTTPS_PROXY / "
                        "NO_PROXY, or the config file's 'proxy')")
    g.add_argument("--max-retries", type=_non_negative_int, default=DEFAULT_MAX_RETRIES, metavar="N",
                   help=f"retries on connection errors, 429 and 5xx (default {DEFAULT_MAX_RETRIES})")
    g.add_argument("--mock", action="store_true",
                   help="use the built-in emulator (synthetic answers, runs in this process)")
    g.add_argument("--no-mock-fallback", action="store_true",
                   help="with no API key, fail instead of falling back to the built-in emulator")
    g.add_argument("--no-log", action="store_true",
                   help="do not record this call in $DSK_HOME/logs.sqlite3 (also: DSK_NO_LOGS=1, "
                        "or logs = false in the config file)")


#: Input read from stdin at most (a prompt piped to `dsk ask`, one line of `dsk chat`), in MB:
#: `dsk ask < /dev/zero` must be an error, not a process that grows until the kernel kills it.
#: DeepSeek's context is 1M tokens, about 4 MB of text. DSK_MAX_INPUT_MB changes the bound.
DEFAULT_MAX_INPUT_MB = 16


def max_input_bytes() -> int:
    """The stdin bound in bytes (DSK_MAX_INPUT_MB, default DEFAULT_MAX_INPUT_MB)."""
    text = os.environ.get("DSK_MAX_INPUT_MB", "").strip()
    if not text:
        return DEFAULT_MAX_INPUT_MB * 2**20
    try:
        mb = float(text)
    except ValueError:
        mb = -1.0
    if not 0 < mb < 2**40:  # also NaN
        raise CLIError(f"DSK_MAX_INPUT_MB must be a positive number of megabytes, got {text!r}")
    return max(int(mb * 2**20), 1)


def too_much_input(limit: int) -> CLIError:
    return CLIError(f"stdin holds more than {limit / 2**20:g} MB (DSK_MAX_INPUT_MB raises the bound; "
                    "DeepSeek's context is about 4 MB of text)")


def utf8_text(data: bytes | str, what: str) -> str:
    """`data` as text if it is valid UTF-8 (a BOM dropped), else a one-line CLIError: invalid
    bytes would otherwise fail later, in the JSON encoder, as a traceback."""
    try:
        if isinstance(data, str):
            data.encode("utf-8")  # argv holds undecodable bytes as lone surrogates
            return data
        return data.decode("utf-8-sig")
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:
        raise CLIError(f"{what} is not UTF-8 text (invalid byte at position {exc.start}): convert "
                       "it first, e.g. with iconv -t utf-8") from None


# ---------------------------------------------------------------------------------------------
# Backend


class Backend:
    """Where requests go. `synthetic` marks the in-process emulator."""

    __slots__ = ("api_key", "base_url", "model", "profile", "synthetic")

    def __init__(self, api_key: str | None, base_url: str, model: str, *, synthetic: bool = False,
                 profile: str | None = None) -> None:
        self.api_key = api_key
        self.base_url = base_url
        self.model = model
        self.synthetic = synthetic
        self.profile = profile


def _emulator_thread() -> Any:
    import logging

    try:
        from deepseek_kit.server import EmulatorThread
    except ImportError as exc:  # pragma: no cover - a broken install
        raise CLIError(f"the built-in emulator is not available: {exc}", EXIT_API) from None
    # The in-process emulator serves only this command: aiohttp's "Error handling request"
    # tracebacks (a malformed request, a client that went away) would land on dsk's stderr
    # through logging's last-resort handler. The command reports its own errors in one line.
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.access"):
        quiet = logging.getLogger(name)
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
    return EmulatorThread()


def may_fall_back(command: str, *, stdin: TextIO | None = None, stdout: TextIO | None = None,
                  stderr: TextIO | None = None) -> bool:
    """Whether `command` may answer from the built-in emulator when there is no key: only a person
    at a terminal, who sees the banner. `dsk chat` needs stdin and stdout on a terminal, `dsk ask`
    stdout and stderr (where the banner goes); every other command (batch, models, balance) never:
    synthetic answers in a file, a pipe or a script would pass for real
    ones (docs/emulator.md#nothing-it-makes-passes-for-deepseek)."""
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    if command == "chat":
        return _is_tty(stdin) and _is_tty(stdout)
    if command == "ask":
        return _is_tty(stdout) and _is_tty(stderr)
    return False


@contextlib.contextmanager
def backend(args: argparse.Namespace, *, err: TextIO | None = None,
            fallback: bool = False) -> Iterator[Backend]:
    """Resolve where requests go; start (and finally stop) an in-process emulator when needed.

    With no key and no server named, only `fallback=True` (`may_fall_back`: a person at a
    terminal) gets the emulator, with a line on stderr saying so; otherwise a one-line error.
    Commands that never fall back (batch, models, balance) just leave `fallback` False."""
    from deepseek_kit.config import DEFAULT_BASE_URL, config_path, resolve

    err = err or sys.stderr
    if args.profile and not config_path().is_file():
        raise CLIError(f"--profile {args.profile}: there is no config file ({config_path()})")
    key_env = getattr(args, "api_key_env", None)
    explicit_key: str | None = None
    if key_env:
        explicit_key = os.environ.get(key_env) or None
        if explicit_key is None and not args.mock:
            raise CLIError(f"--api-key-env {key_env}: that environment variable is not set or empty")
    key, url, cfg = resolve(explicit_key, args.base_url, profile=args.profile)
    if key:
        SECRETS.append(key)
    model = args.model or str(cfg.get("model") or DEFAULT_MODEL)
    if not args.mock:
        url_given = bool(args.base_url or os.environ.get("DEEPSEEK_BASE_URL") or cfg.get("base_url"))
        if key or url != DEFAULT_BASE_URL or cfg.get("endpoints"):  # endpoints carry their own keys
            yield Backend(key, url, model, profile=args.profile)
            return
        if url_given or args.no_mock_fallback or not fallback:
            raise CLIError(
                f"no API key for {url}: set DEEPSEEK_API_KEY (or api_key in $DSK_HOME/config.toml), "
                "or use --mock for the built-in emulator (synthetic answers)"
            )
        print("dsk: No DEEPSEEK_API_KEY set: using the built-in emulator (synthetic answers). "
              "Set DEEPSEEK_API_KEY to talk to DeepSeek.", file=err, flush=True)
    emu = _emulator_thread()
    with emu:
        yield Backend(EMULATOR_KEY, str(emu.base_url).rstrip("/"), model, synthetic=True)


def make_client(b: Backend, args: argparse.Namespace, *, limits: Any = None,
                wait_for_limits: bool = False, logs: Any = None, **kwargs: Any) -> AsyncClient:
    """The client of a command: its timeout, retries and request log from the options, and the
    config file's tables (`[limits]`, `[cache]`, `[metrics]`, `endpoints`, `routing`) applied and
    validated as `AsyncClient()` does, from the profile or the top level. The in-process emulator
    gets none of them: the endpoints would send requests elsewhere.

    `limits`: explicit limits (e.g. `dsk batch --rpm`), replacing the config's. `wait_for_limits`:
    no bound on the wait for a turn (`max_queue_wait=None`) whatever the limits' source, for
    callers whose only waiters are their own workers (`dsk batch`): a low rpm must slow the run
    down, not fail its items. `logs`: a log step replacing `log_step(b, args)`. Other keyword
    arguments go to `AsyncClient`."""
    import dataclasses

    from deepseek_kit import AsyncClient, Limits, Timeout
    from deepseek_kit.config import config_path, config_table, load_config

    timeout: Any = Timeout()
    if args.timeout is not None:
        t = float(args.timeout)
        timeout = Timeout(connect=t, first_token=t, idle=t, total=max(Timeout().total or 0.0, t))
    config_file: str | None = None
    if not b.synthetic:
        path = config_path()
        config_file = str(path) if path.is_file() else None
    if wait_for_limits:
        if limits is None and config_file is not None:
            table = load_config(Path(config_file), b.profile).get("limits")
            limits = config_table("limits", Limits, table) if table is not None else None
        if limits is not None:
            limits = dataclasses.replace(limits, max_queue_wait=None)
    return AsyncClient(api_key=b.api_key, base_url=b.base_url, timeout=timeout,
                       max_retries=args.max_retries, profile=None if b.synthetic else b.profile,
                       config_file=config_file, limits=limits,
                       logs=log_step(b, args) if logs is None else logs, holidays=holidays(b),
                       **{**proxy_kwargs(b, args), **kwargs})


def proxy_kwargs(b: Backend, args: argparse.Namespace) -> dict[str, Any]:
    """`--proxy URL` for AsyncClient; the in-process emulator is never reached through a proxy."""
    if b.synthetic:
        return {"trust_env": False}
    proxy = getattr(args, "proxy", None)
    return {"proxy": proxy} if proxy else {}


def holidays(b: Backend) -> Any:
    """The config file's `[pricing]` holiday calendar, for every cost `dsk` computes (the client
    does not read the file when the key and URL are already known)."""
    from deepseek_kit import HolidayCalendar
    from deepseek_kit.config import load_config

    return HolidayCalendar.from_config(load_config(profile=b.profile).get("pricing"))


def log_step(b: Backend, args: argparse.Namespace, *, content: bool = True) -> Any:
    """`dsk` logs every call to $DSK_HOME/logs.sqlite3 (`dsk logs`, `dsk stats`) unless --no-log,
    DSK_NO_LOGS=1 or the config's `logs = false` says not to; emulator calls are labelled so
    (endpoint "emulator", and flagged `synthetic`: `dsk stats` leaves them out unless asked).
    `content=False`: numbers only (tokens, cost, latency), not the prompts and answers."""
    if getattr(args, "no_log", False):
        return False
    from deepseek_kit import LogConfig, LogStep
    from deepseek_kit.config import load_config

    cfg = LogConfig.resolve(None, load_config(profile=b.profile), default=True)
    if cfg is None:
        return False
    if not content:
        import dataclasses

        cfg = dataclasses.replace(cfg, content=False)
    return LogStep(cfg, secrets=(b.api_key,), endpoint="emulator" if b.synthetic else None,
                   synthetic=b.synthetic)


def log_steps(b: Backend, args: argparse.Namespace) -> list[Any]:
    """`log_step` as a `steps=` list (callers that build their own pipeline)."""
    step = log_step(b, args)
    return [step] if step is not False else []


def request_kwargs(b: Backend, args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {"model": b.model}
    if args.think is not None:
        kw["thinking"] = bool(args.think)
    return kw


# ---------------------------------------------------------------------------------------------
# Output helpers


def _color_ok(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ReasoningWriter:
    """Streams reasoning (thinking mode) to stderr, dimmed on a terminal. Shown only when stderr
    is a terminal or `--show-reasoning` was given; stdout only ever carries the answer."""

    def __init__(self, show: bool, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = show or _is_tty(self.stream)
        self.dim = _color_ok(self.stream)
        self._safe = _is_tty(self.stream)
        self._open = False

    def write(self, text: str) -> None:
        if not self.enabled or not text:
            return
        if not self._open:
            self._open = True
            if self.dim:
                self.stream.write("\x1b[2m")
        self.stream.write(terminal_safe(text) if self._safe else text)
        self.stream.flush()

    def end(self) -> None:
        """The reasoning is over (the answer starts, or the request ended)."""
        if self._open:
            self._open = False
            self.stream.write("\x1b[0m\n\n" if self.dim else "\n\n")
            self.stream.flush()


# C0 controls but tab and newline, DEL, and the C1 controls (U+0080-U+009F: U+009B is a CSI to some
# terminals): shown as \xNN. A carriage return is dropped (it would let text overwrite its line).
_TERMINAL_SAFE = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (9, 10)}
_TERMINAL_SAFE[13] = ""


def terminal_safe(text: str) -> str:
    """`text` with its control characters made visible, for printing to a terminal: what a server
    sends (an answer, reasoning, an error message, a model id) must never drive the user's terminal
    (an OSC 52 clipboard write, a screen clear, a title change). Pipes and files get text exactly."""
    return text.translate(_TERMINAL_SAFE)


def for_stream(text: str, stream: TextIO) -> str:
    """`terminal_safe(text)` when `stream` is a terminal, else `text` unchanged."""
    return terminal_safe(text) if _is_tty(stream) else text


def _is_tty(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


def error_line(exc: BaseException, secrets: tuple[str | None, ...] = ()) -> str:
    """One human line for an error, secrets masked, with a hint for the common cases."""
    from deepseek_kit import (
        APIConnectionError,
        APIStatusError,
        AuthenticationError,
        InsufficientBalanceError,
        redact,
    )

    msg = str(exc) or type(exc).__name__
    if isinstance(exc, AuthenticationError):
        msg += " (check DEEPSEEK_API_KEY)"
    elif isinstance(exc, InsufficientBalanceError):
        msg += " (top up at https://platform.deepseek.com)"
    elif isinstance(exc, APIConnectionError) and not isinstance(exc, APIStatusError):
        attempts = getattr(exc, "attempts", 1)
        if attempts > 1:
            msg += f" (after {attempts} attempts)"
    msg = redact(msg, *secrets, *SECRETS, os.environ.get("DEEPSEEK_API_KEY"))
    # One line for a person: a server's message must not drive the terminal (terminal_safe).
    return "dsk: error: " + terminal_safe(" ".join(msg.split()))


# ---------------------------------------------------------------------------------------------
# Event loop


def run_async(main: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine function on uvloop when it is installed, else asyncio.
    Ctrl-C cancels the main task and surfaces as KeyboardInterrupt."""
    import asyncio

    async def _main() -> T:
        return await main()

    if os.environ.get("DSK_NO_UVLOOP") != "1":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            if sys.version_info >= (3, 11):
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    return runner.run(_main())
            uvloop.install()  # pragma: no cover - Python 3.10
    return asyncio.run(_main())


async def interruptible(task: asyncio.Task[Any]) -> bool:
    """Wait for `task`; Ctrl-C meanwhile cancels it instead of the session. True if it finished."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGINT)
    installed = False
    try:
        loop.add_signal_handler(signal.SIGINT, task.cancel)
        installed = True
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        pass
    try:
        await asyncio.wait({task})
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)
            signal.signal(signal.SIGINT, previous)
    return not task.cancelled()
