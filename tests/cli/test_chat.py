"""`dsk chat` as a real subprocess: driven through piped stdin (plain mode), and through a
pseudo-terminal (prompt_toolkit + rich, Ctrl-C during an answer keeps the session)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from decimal import Decimal

import pytest

from deepseek_kit import Client, list_conversations, load_conversation
from deepseek_kit.server import EmulatorThread
from tests.helpers.dsk import FAKE_KEY, MODEL, chat_bodies, dsk_env, run_dsk
from tests.helpers.net import closed_port
from tests.helpers.terminal import Pty


def chat(*args: str, env: dict[str, str], input: str) -> subprocess.CompletedProcess[str]:
    return run_dsk("chat", *args, env=env, input=input)


def library_reply(base_url: str, messages: list[dict], **kw):
    with Client(api_key=FAKE_KEY, base_url=base_url, max_retries=0) as c:
        return c.chat.completions.create(model=MODEL, messages=messages, **kw).choices[0].message


# --- plain mode (stdin is not a terminal) ---------------------------------------------------------


def test_two_turns_keep_the_history(emulator, env):
    proc = chat("--base-url", emulator.base_url, env=env,
                input="What is 2+2?\nAnd times 3?\nexit\nnever sent\n")
    assert proc.returncode == 0, proc.stderr
    bodies = chat_bodies(emulator)
    assert len(bodies) == 2
    assert all(b["stream"] is True and b["model"] == MODEL for b in bodies)
    first = library_reply(emulator.base_url, [{"role": "user", "content": "What is 2+2?"}])
    assert bodies[0]["messages"] == [{"role": "user", "content": "What is 2+2?"}]
    # The first turn goes back; its reasoning_content does not: without tools in the request the
    # API ignores it (docs/deepseek-api-notes.md#thinking-mode), so Conversation leaves it out.
    assert first.reasoning_content
    assert bodies[1]["messages"] == [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": "And times 3?"},
    ]
    second = library_reply(emulator.base_url, bodies[1]["messages"])
    assert proc.stdout == f"{first.content}\n{second.content}\n"
    assert proc.stderr == ""


@pytest.mark.parametrize("end", ["exit\n", "quit\n", "/exit\n", "/quit\n", "  QUIT  \n", ""])
def test_exit_words_and_eof_end_the_session(emulator, env, end):
    proc = chat("--base-url", emulator.base_url, env=env, input="Hello\n" + end + "Not sent\n" * bool(end))
    assert proc.returncode == 0, proc.stderr
    assert [b["messages"][-1]["content"] for b in chat_bodies(emulator)] == ["Hello"]


def test_blank_lines_are_skipped_and_system_prompt_leads(emulator, env):
    proc = chat("--base-url", emulator.base_url, "--system", "Be brief.", "--no-think", env=env,
                input="\n   \nHi\n")
    assert proc.returncode == 0, proc.stderr
    (body,) = chat_bodies(emulator)
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert body["thinking"] == {"type": "disabled"}


def test_clear_forgets_the_conversation(emulator, env):
    proc = chat("--base-url", emulator.base_url, "-s", "S", env=env, input="One\n/clear\nTwo\n")
    assert proc.returncode == 0, proc.stderr
    bodies = chat_bodies(emulator)
    assert bodies[1]["messages"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "Two"}]
    assert "cleared" in proc.stderr


def test_mock_and_no_fallback_in_a_script(tmp_path):
    script = "What is 2+2?\nAnd times 3?\n"
    mock = chat("--mock", env=dsk_env(tmp_path), input=script)
    assert mock.returncode == 0, mock.stderr
    assert mock.stderr == ""
    # A script (stdin not a terminal) never gets synthetic answers it did not ask for; the
    # fallback for a person at a terminal is tested on a pty in tests/cli/test_synthetic.py.
    refused = chat(env=dsk_env(tmp_path), input=script)
    assert refused.returncode == 2
    assert refused.stderr.startswith("dsk: error: no API key") and "--mock" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1 and refused.stdout == ""
    with EmulatorThread() as emu:
        first = library_reply(emu.base_url, [{"role": "user", "content": "What is 2+2?"}])
    assert mock.stdout.startswith(first.content + "\n")
    assert mock.stdout.count("\n") == 2


def test_missing_key_for_deepseek(tmp_path):
    proc = chat("--no-mock-fallback", env=dsk_env(tmp_path), input="Hi\n")
    assert proc.returncode == 2
    assert proc.stderr.startswith("dsk: error: no API key") and len(proc.stderr.splitlines()) == 1


def test_unreachable_server_ends_a_scripted_session(env):
    url = f"http://127.0.0.1:{closed_port()}"
    proc = chat("--base-url", url, "--max-retries", "0", env=env, input="Hi\nAgain\n")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dsk: error: ") and url in lines[0]


def test_api_error_midway_reports_and_exits_1(emulator_factory, env):
    emu = emulator_factory(faults="status=500;times=1;key=second")
    # The first request (the one with the fault) fails; no retries.
    proc = chat("--base-url", emu.base_url, "--max-retries", "0", env=env, input="Hi\nAgain\n")
    assert proc.returncode == 1
    assert "500" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert proc.stdout == ""


# --- interactive mode (a pseudo-terminal) ---------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_interactive_session_ctrl_c_stops_only_the_answer(emulator_factory, env):
    # The first request streams one chunk every 2 seconds; later requests at full speed.
    emu = emulator_factory(faults="delay_chunks=2;times=1")
    t = Pty(["chat", "--base-url", emu.base_url], env)
    try:
        t.expect(r"exit, quit or Ctrl-D")
        t.expect(r">")
        t.send("Tell me a long story\r")
        t.expect(r"Tell me a long story\s*\n\s*\S")  # the answer has started (reasoning, dimmed)
        t.send("\x03")  # Ctrl-C
        t.expect(r"\[interrupted\]")
        t.expect(r">")
        t.send("half a line")
        t.send("\x03")  # Ctrl-C at the prompt drops the line, keeps the session
        t.expect(r">")
        t.send("What is 2+2?\r")
        t.expect(r"thought for \d+ tokens")
        t.expect(r">")
        t.send("\x04")  # Ctrl-D
        assert t.wait() == 0
    finally:
        t.close()
    assert "Traceback" not in t.text and FAKE_KEY not in t.raw
    # The interrupted turn stays in the history, as far as it got (here: reasoning, which is not
    # sent back without tools); the session went on.
    story, partial, question = chat_bodies(emu)[-1]["messages"]
    assert story == {"role": "user", "content": "Tell me a long story"}
    assert partial["role"] == "assistant" and "reasoning_content" not in partial
    assert question == {"role": "user", "content": "What is 2+2?"}
    expected = library_reply(emu.base_url, [story, partial, question])
    assert expected.content[:40] in t.text


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_during_a_scripted_answer_keeps_the_session(emulator_factory, env):
    emu = emulator_factory(faults="delay_chunks=2;times=1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepseek_kit.cli.main", "chat", "--base-url", emu.base_url, "--no-think"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"Slow one\n")
        proc.stdin.flush()
        first = proc.stdout.read(1)  # mid-answer
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(b"Fast one\n", timeout=60)
        out = first + out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert b"[interrupted]" in err and b"Traceback" not in err
    # The partial answer (what was printed, once) stays in the history, marked interrupted.
    slow, partial, fast_q = chat_bodies(emu)[-1]["messages"]
    assert slow == {"role": "user", "content": "Slow one"}
    assert fast_q == {"role": "user", "content": "Fast one"}
    full = library_reply(emu.base_url, [slow], thinking=False).content
    assert partial["role"] == "assistant" and partial["content"] and full.startswith(partial["content"])
    fast = library_reply(emu.base_url, [slow, partial, fast_q], thinking=False)
    assert out.decode() == partial["content"] + "\n" + fast.content + "\n"
    # Stored (every chat is, from its first answer on), the cut turn marked with its estimated cost.
    (saved,) = list_conversations(path=os.path.join(env["DSK_HOME"], "logs.sqlite3"))
    messages, meta = load_conversation(saved.id, path=os.path.join(env["DSK_HOME"], "logs.sqlite3"))
    assert messages[1] == partial and len(messages) == 4 and meta["source"] == "chat"
    (cut,) = meta["interrupted"]
    assert cut["message"] == 1 and cut["estimated"] is True and Decimal(cut["cost"]) > 0


def stream_reply(base_url: str, messages: list[dict], **kw):
    with (
        Client(api_key=FAKE_KEY, base_url=base_url, max_retries=0) as c,
        c.chat.completions.create(model=MODEL, messages=messages, stream=True, **kw) as s,
    ):
        for _ in s:
            pass
        return s.get_final_completion()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_interactive_reasoning_collapses_and_expands(emulator, env):
    t = Pty(["chat", "--base-url", emulator.base_url], env)
    try:
        t.expect(r"/help for commands")
        t.expect(r">")
        t.send("Why is the sky blue?\r")
        final = stream_reply(emulator.base_url, [{"role": "user", "content": "Why is the sky blue?"}])
        msg = final.choices[0].message
        # Collapsed to one line with the billed count of reasoning tokens, then the answer.
        t.expect(rf"thought for {final.usage.reasoning_tokens:,} tokens \(/think show\)")
        words = msg.content.split()
        t.expect(r"\s+".join(map(re.escape, words[:6])))
        t.expect(r">")
        before = t.pos
        t.send("/think show\r")
        first_words = msg.reasoning_content.split()[:8]
        t.expect(r"\s+".join(map(re.escape, first_words)))
        t.expect(r">")
        t.send("/exit\r")
        assert t.wait() == 0
    finally:
        t.close()
    assert "Traceback" not in t.text
    # The full reasoning was printed by /think show, not left on the screen before it: the part of
    # the screen up to the command holds the summary line, not the reasoning's last words.
    shown = t.text[before:]
    assert " ".join(msg.reasoning_content.split()[-4:]) in " ".join(shown.split())


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_interactive_multiline_input_and_persistent_history(emulator, env, tmp_path):
    def answer_to(*texts: str) -> str:
        """The start of the answer to `texts` (the last one asked; the earlier ones, history)."""
        messages: list[dict] = []
        for text in texts:
            messages.append({"role": "user", "content": text})
            reply = library_reply(emulator.base_url, messages, thinking=False)
            messages.append({"role": "assistant", "content": reply.content})
        return r"\s+".join(map(re.escape, reply.content.split()[:5]))

    t = Pty(["chat", "--base-url", emulator.base_url, "--no-think"], env)
    try:
        t.expect(r">")
        t.send("first line\x1b\rsecond line\r")  # Alt-Enter (Esc, Enter) starts a new line
        t.expect(r"(?s)second line.*" + answer_to("first line\nsecond line"))
        t.expect(r"(?m)^>")
        t.send('"""\rin a block\r"""\r')  # Enter inside an open """ block is a new line too
        t.expect(answer_to("first line\nsecond line", "in a block"))
        t.expect(r"(?m)^>")  # the prompt is back (keys typed during an answer are not for it)
        t.send("\x04")
        assert t.wait() == 0
    finally:
        t.close()
    streamed = [b for b in chat_bodies(emulator) if b.get("stream")]  # the chat's, not answer_to's
    assert [b["messages"][-1]["content"] for b in streamed] == ["first line\nsecond line", "in a block"]
    history = (tmp_path / "chat_history").read_text()
    assert "+first line\n+second line" in history
    assert os.stat(tmp_path / "chat_history").st_mode & 0o077 == 0  # it holds prompts: private
    # A new session recalls the earlier input with the Up arrow (the latest entry first).
    t = Pty(["chat", "--base-url", emulator.base_url, "--no-think"], env)
    try:
        t.expect(r">")
        # prompt_toolkit loads the history in a task started by the first redraw: one key round
        # trip (type x, see it, delete it) makes sure that ran before Up is pressed.
        t.send("x")
        t.expect("x")
        t.send("\x7f\x1b[A\r")
        t.expect(answer_to("in a block"))
        t.expect(r"(?m)^>")
        t.send("\x04")
        assert t.wait() == 0
    finally:
        t.close()
    streamed = [b for b in chat_bodies(emulator) if b.get("stream")]
    assert len(streamed) == 3
    assert streamed[-1]["messages"] == [{"role": "user", "content": "in a block"}]
