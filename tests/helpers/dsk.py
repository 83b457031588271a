"""Running `dsk` from tests: the child's environment, a subprocess run that checks no key and no
traceback leaks, an in-process run for quick commands, and checks on what a run printed.

A subprocess is for what needs one: signals, terminals, exit under kill, real concurrency, the
environment a child sees. Argument handling and one-line errors of quick commands run in process
(`run_main`), which is the same `main()` the console script calls, without interpreter start-up.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

# `python -m deepseek_kit.cli.main`: the interpreter running the tests, with the PYTHONPATH it has.
DSK = [sys.executable, "-m", "deepseek_kit.cli.main"]
# The key every `dsk` run of the suite gets; no output and no file may ever show it.
FAKE_KEY = "sk-clitest-DO-NOT-LEAK-7f3a9c2e"
MODEL = "deepseek-flash"


def dsk_env(home: Any, **extra: str) -> dict[str, str]:
    """A child `dsk`'s environment: this process's without DEEPSEEK_*, DSK_* and NO_COLOR, then a
    private DSK_HOME, no colour, unbuffered output, and `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DEEPSEEK_", "DSK_")) and k != "NO_COLOR"}
    env.update(DSK_HOME=str(home), NO_COLOR="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def keyed_env(home: Any, **extra: str) -> dict[str, str]:
    """`dsk_env` with the fake key as DEEPSEEK_API_KEY."""
    return dsk_env(home, DEEPSEEK_API_KEY=FAKE_KEY, **extra)


def dsk_cmd(*args: Any) -> list[str]:
    """The command line of `dsk ARGS` (each argument str()-ed, so paths can be passed)."""
    return [*DSK, *map(str, args)]


def assert_clean(stdout: str, stderr: str) -> None:
    """No trace of the fake key (whole or its tail) and no traceback in a run's output."""
    both = stdout + stderr
    assert FAKE_KEY not in both and FAKE_KEY[-10:] not in both, both
    assert "Traceback" not in stderr, stderr


def run_dsk(*args: str, env: dict[str, str], input: str | None = None,
            timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`dsk ARGS` as a subprocess (stdin `input`, else /dev/null), checked by `assert_clean`."""
    proc = subprocess.run(
        [*DSK, *args],
        input=input, stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True, text=True, env=env, timeout=timeout,
    )
    assert_clean(proc.stdout, proc.stderr)
    return proc


def dsk_batch(tmp_path: Any, *args: Any, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`dsk batch ARGS` as a subprocess, with the fake key and DSK_HOME `tmp_path/home`."""
    return run_dsk("batch", *map(str, args), env=keyed_env(tmp_path / "home"), timeout=timeout)


@dataclass
class Ran:
    """What an in-process `dsk` run left: the shape of subprocess.CompletedProcess that tests read."""

    returncode: int
    stdout: str
    stderr: str


def run_main(*args: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
             env: dict[str, str] | None = None, input: str = "") -> Ran:
    """`dsk ARGS` in this process through `deepseek_kit.cli.main.main`, the console script's own
    function: `env` (as `dsk_env` builds it) as the whole environment, `input` as a piped stdin
    (empty by default, like /dev/null); checked by `assert_clean`."""
    from deepseek_kit.cli.main import main

    if env is not None:
        for k in list(os.environ):
            monkeypatch.delenv(k)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(input.encode()), encoding="utf-8"))
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    assert_clean(out, err)
    return Ran(code, out, err)


def one_error_line(proc: Any) -> str:
    """The single `dsk: error: ` line a failed run printed on stderr."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dsk: error: "), lines[0]
    return lines[0]


def chat_bodies(emu: Any) -> list[dict[str, Any]]:
    """The chat request bodies an emulator received, oldest first."""
    return [b for b in emu.state.recent_bodies if isinstance(b, dict) and "messages" in b]
