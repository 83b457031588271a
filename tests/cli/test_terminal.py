"""Text from a server never drives the user's terminal: answers, reasoning, error messages and
logged text that hold escape sequences (OSC 52 clipboard writes, screen clears, colours, a bell)
are shown with their control characters made visible when printed to a terminal, and passed
through exactly to pipes and files (`dsk ask > out.txt` keeps the answer byte for byte).

Real `dsk` on a pseudo-terminal against small upstreams (tests/helpers/cli_upstreams.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.cli_upstreams import Upstream
from tests.helpers.dsk import FAKE_KEY, dsk_env, run_dsk
from tests.helpers.terminal import Pty

HOSTILE = "Hi \x1b]52;c;SGFja2Vk\x07 there \x1b[2J\x1b[31mred\x9b2J\rend"
BAD = ("\x1b]52", "\x1b[2J", "\x1b[31m", "\x07", "\x9b", "\rend")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")


@pytest.fixture
def hostile():
    up = Upstream("content:" + HOSTILE)
    yield up
    up.stop()


def run_on_pty(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    t = Pty(args, env)
    try:
        code = t.wait()
        t._read(0.2)
        return code, t.raw
    finally:
        t.close()


def assert_inert(raw: str) -> None:
    for seq in BAD:
        assert seq not in raw, (seq, raw)


def test_terminal_safe_makes_controls_visible():
    from deepseek_kit.cli.common import terminal_safe

    assert terminal_safe(HOSTILE) == ("Hi \\x1b]52;c;SGFja2Vk\\x07 there \\x1b[2J\\x1b[31mred\\x9b2Jend")
    assert (
        terminal_safe("tabs\tand\nnewlines stay; ünïcödé 中文 too")
        == "tabs\tand\nnewlines stay; ünïcödé 中文 too"
    )


@pytest.mark.parametrize("extra", [[], ["--no-stream"], ["--show-reasoning"]])
def test_ask_on_a_terminal_shows_escapes_inert(tmp_path, hostile, extra):
    env = dsk_env(tmp_path, DEEPSEEK_API_KEY=FAKE_KEY)
    code, raw = run_on_pty(["ask", "--base-url", hostile.base_url, *extra, "Hi"], env)
    assert code == 0, raw
    assert_inert(raw)
    assert "\\x1b[2J" in raw and "SGFja2Vk" in raw


def test_ask_into_a_pipe_keeps_the_answer_exactly(tmp_path, hostile):
    p = subprocess.run([sys.executable, "-m", "deepseek_kit.cli.main", "ask", "--base-url", hostile.base_url,
                        "Hi"], capture_output=True, stdin=subprocess.DEVNULL, timeout=60,
                       env=dsk_env(tmp_path, DEEPSEEK_API_KEY=FAKE_KEY))
    assert p.returncode == 0, p.stderr
    assert p.stdout == (HOSTILE + "\n").encode()  # bytes: text mode would turn \r into \n


def test_chat_on_a_terminal_shows_escapes_inert(tmp_path, hostile):
    env = dsk_env(tmp_path, DEEPSEEK_API_KEY=FAKE_KEY)
    t = Pty(["chat", "--base-url", hostile.base_url, "--show-reasoning"], env)
    try:
        t.expect(r"/help for commands")
        t.expect(r">")
        t.send("Hi\r")
        t.expect(r"(?s)red.*end.*\n>", limit=30)  # the answer, then the next prompt
        t.send("/think show\r")
        t.expect(r"(?s)SGFja2Vk.*end", limit=30)
        t.expect(r">")
        t.send("/exit\r")
        assert t.wait() == 0
    finally:
        t.close()
    assert_inert(t.raw)


def test_error_messages_and_logs_on_a_terminal_are_inert(tmp_path, hostile):
    env = dsk_env(tmp_path, DEEPSEEK_API_KEY=FAKE_KEY)
    assert run_dsk("ask", "--base-url", hostile.base_url, "Hi", env=env).returncode == 0
    bad = Upstream("error:Denied \x1b]52;c;SGFja2Vk\x07 \x1b[2J")
    try:
        code, raw = run_on_pty(["ask", "--max-retries", "0", "--base-url", bad.base_url, "Hi"], env)
    finally:
        bad.stop()
    assert code == 1 and "dsk: error:" in raw
    assert_inert(raw)
    for args in (["logs"], ["logs", "show", "1"], ["logs", "search", "there"], ["logs", "show", "2"]):
        code, raw = run_on_pty(args, env)
        assert code == 0, raw
        assert_inert(raw)
