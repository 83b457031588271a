"""The CLI habits users bring from simonw's llm: `dsk -c` continues the last conversation, `-u`
prints usage and cost, `-x` prints only the first fenced code block, `dsk "question"` is `dsk ask`,
and Ctrl-C keeps the partial turn. Real runs against the emulator (or a small upstream of ours when
the answer must hold a code block): in process where that suffices, as a subprocess for signals.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from decimal import Decimal

import pytest

from deepseek_kit import Client, list_conversations, load_conversation
from deepseek_kit._wire import pricing as _pricing
from tests.helpers.cli_upstreams import Upstream
from tests.helpers.dsk import DSK, FAKE_KEY, MODEL, assert_clean, chat_bodies, one_error_line, run_dsk


def reply(base_url: str, messages: list[dict], **kw):
    with Client(api_key=FAKE_KEY, base_url=base_url, max_retries=0) as c:
        return c.chat.completions.create(model=MODEL, messages=messages, **kw)


def db(env: dict[str, str]) -> str:
    return os.path.join(env["DSK_HOME"], "logs.sqlite3")


# --- -c / --cid -----------------------------------------------------------------------------------


def test_continue_sends_the_last_conversation_and_stores_the_new_turn(emulator, env, dsk_main):
    url = emulator.base_url
    first = dsk_main("ask", "--base-url", url, "Remember the word kiwi", env=env)
    assert first.returncode == 0, first.stderr
    q1 = {"role": "user", "content": "Remember the word kiwi"}
    a1 = {"role": "assistant", "content": reply(url, [q1]).choices[0].message.content}
    assert first.stdout == a1["content"] + "\n"

    again = dsk_main("-c", "--base-url", url, "Which word?", env=env)  # the shortcut form
    assert again.returncode == 0, again.stderr
    q2 = {"role": "user", "content": "Which word?"}
    assert chat_bodies(emulator)[-1]["messages"] == [q1, a1, q2]

    (saved,) = list_conversations(path=db(env))  # one conversation, updated
    messages, meta = load_conversation(saved.id, path=db(env))
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert meta["source"] == "ask" and "interrupted" not in meta
    assert meta["dsk_chat"]["usage"]["requests"] == 2


def test_last_is_the_latest_of_ask_and_chat_and_cid_picks_another(emulator, env, dsk_main):
    url = emulator.base_url
    assert dsk_main("ask", "--base-url", url, "About apples", env=env).returncode == 0
    (asked,) = list_conversations(path=db(env))
    chat = run_dsk("chat", "--base-url", url, env=env, input="About pears\n")  # chat reads a real fd
    assert chat.returncode == 0, chat.stderr
    # `last` is now the chat: every chat is saved from its first answer on.
    dsk_main("ask", "-c", "--base-url", url, "And?", env=env)
    users = [m["content"] for m in chat_bodies(emulator)[-1]["messages"] if m["role"] == "user"]
    assert users == ["About pears", "And?"]
    # --cid (a unique prefix will do) picks the older conversation of `dsk ask`.
    dsk_main("ask", "--cid", asked.id[:6], "--base-url", url, "Or?", env=env)
    users = [m["content"] for m in chat_bodies(emulator)[-1]["messages"] if m["role"] == "user"]
    assert users == ["About apples", "Or?"]


def test_continue_with_nothing_stored_is_one_line_and_no_request(emulator, env, dsk_main):
    proc = dsk_main("ask", "-c", "--base-url", emulator.base_url, "go on", env=env)
    assert proc.returncode == 2
    assert one_error_line(proc) == ("dsk: error: there is no conversation to continue yet: dsk ask or "
                                    "dsk chat starts one")
    assert chat_bodies(emulator) == []
    proc = dsk_main("ask", "--cid", "ffffff", "--base-url", emulator.base_url, "go on", env=env)
    assert proc.returncode == 2 and "no saved conversation 'ffffff'" in one_error_line(proc)


def test_no_log_stores_no_conversation(emulator, env, dsk_main):
    proc = dsk_main("ask", "--no-log", "--base-url", emulator.base_url, "Private", env=env)
    assert proc.returncode == 0, proc.stderr
    assert not os.path.exists(db(env)) or list_conversations(path=db(env)) == []


# --- -u ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("peak", [True, False])
def test_usage_goes_to_stderr_with_the_cost_at_the_price_that_applied(emulator, env, dsk_main, peak):
    # Priced at a pinned Beijing time (DSK_FAKE_NOW), so the test gives the same result at any hour.
    env = {**env, "DSK_FAKE_NOW": "2026-11-24T10:00:00+08:00" if peak else "2026-11-24T13:00:00+08:00"}
    proc = dsk_main("ask", "-u", "--base-url", emulator.base_url, "Count to three", env=env)
    assert proc.returncode == 0, proc.stderr
    resp = reply(emulator.base_url, [{"role": "user", "content": "Count to three"}])
    assert proc.stdout == resp.choices[0].message.content + "\n"  # stdout stays the answer alone
    u = resp.usage
    hit = u.prompt_cache_hit_tokens or 0
    cost = _pricing.cost(MODEL, u, peak=peak).quantize(Decimal("0.000001"))
    assert cost > 0 and u.reasoning_tokens > 0
    when = "peak price" if peak else "off-peak price"
    assert proc.stderr == (
        f"dsk: usage: {u.prompt_tokens:,} prompt tokens ({hit:,} cache hit, {u.prompt_tokens - hit:,} miss) "
        f"+ {u.completion_tokens:,} completion ({u.reasoning_tokens:,} reasoning) = "
        f"{u.prompt_tokens + u.completion_tokens:,} tokens; cost ¥{cost} at the {when} (Beijing time; "
        "peak, Mon-Fri 09:00-12:00 and 14:00-18:00, costs double)\n")


# --- -x ---------------------------------------------------------------------------------------------

ANSWER = "Here it is:\n\n```python\nfor i in range(3):\n    print(i)\n```\n\nThen:\n\n```sh\nls\n```\n"


@pytest.mark.parametrize("stream", [True, False])
def test_extract_prints_only_the_first_fenced_block(env, dsk_main, stream):
    up = Upstream("content:" + ANSWER)
    try:
        args = ["ask", "-x", "--base-url", up.base_url, "Loop to three in Python"]
        proc = dsk_main(*args, *([] if stream else ["--no-stream"]), env=env)
    finally:
        up.stop()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "for i in range(3):\n    print(i)\n"
    assert proc.stderr == ""


def test_extract_reads_fences_as_markdown_does(env, dsk_main):
    # A longer fence holds a shorter one; a tilde fence counts; text about fences does not.
    text = "Use ``` in text.\n\n~~~~md\n```\ninner\n```\n~~~~\n"
    up = Upstream("content:" + text)
    try:
        proc = dsk_main("ask", "-x", "--base-url", up.base_url, "Show markdown", env=env)
    finally:
        up.stop()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "```\ninner\n```\n"


def test_extract_without_a_block_fails_and_says_where_the_answer_is(emulator, env, dsk_main):
    proc = dsk_main("ask", "-x", "--base-url", emulator.base_url, "Say hi", env=env)
    assert proc.returncode == 3
    assert proc.stdout == ""
    (saved,) = list_conversations(path=db(env))
    assert one_error_line(proc) == (f"dsk: error: the answer has no fenced code block (the answer is kept "
                                    f"in conversation {saved.id}; dsk -c continues it)")


def test_extract_and_json_do_not_go_together(env, dsk_main):
    proc = dsk_main("ask", "-x", "--json", "Hi", env=env)
    assert proc.returncode == 2 and "-x and --json" in one_error_line(proc)


# --- dsk "question" -----------------------------------------------------------------------------------


def test_a_question_without_a_command_is_ask(emulator, env, dsk_main):
    url = emulator.base_url
    short = dsk_main("What is 2+2?", "--base-url", url, env=env)
    long = dsk_main("ask", "What is 2+2?", "--base-url", url, env=env)
    assert short.returncode == long.returncode == 0, short.stderr
    assert short.stdout == long.stdout != ""
    # Options first, and a one-word question that is no command's near miss, work too.
    opts = dsk_main("-u", "--base-url", url, "hello", env=env)
    assert opts.returncode == 0, opts.stderr
    assert opts.stderr.startswith("dsk: usage: ")
    assert chat_bodies(emulator)[-1]["messages"] == [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize("argv, expected", [
    (["Why?"], ["ask", "Why?"]),
    (["-c", "go on"], ["ask", "-c", "go on"]),
    (["-u", "-x", "Write a loop"], ["ask", "-u", "-x", "Write a loop"]),
    (["hello", "there"], ["ask", "hello", "there"]),
    (["Explain", "batch", "runs"], ["ask", "Explain", "batch", "runs"]),
    (["batch", "run", "p.jsonl"], ["batch", "run", "p.jsonl"]),
    (["--version"], ["--version"]),
    (["-h"], ["-h"]),
    ([], []),
])
def test_the_shortcut_puts_ask_in_front_of_anything_but_a_command(argv, expected):
    from deepseek_kit.cli.main import build_parser
    from deepseek_kit.cli.shortcut import rewrite

    commands = next(a.choices for a in build_parser()._actions if a.dest == "command")
    assert rewrite(argv, commands) == expected


@pytest.mark.parametrize("typo, command", [("bach", "batch"), ("chta", "chat"), ("stat", "stats"),
                                           ("log", "logs")])
def test_a_mistyped_command_is_an_error_not_a_question(emulator, env, dsk_main, typo, command):
    proc = dsk_main(typo, "--base-url", emulator.base_url, env=env)
    assert proc.returncode == 2
    assert one_error_line(proc) == (f"dsk: error: unknown command '{typo}': did you mean 'dsk {command}'? "
                                    f"(to ask it as a question: dsk ask {typo})")
    assert chat_bodies(emulator) == []


# --- Ctrl-C ------------------------------------------------------------------------------------------


def read_until_text(proc: subprocess.Popen[bytes], pattern: bytes, limit: float = 30) -> bytes:
    """Read the child's stdout until `pattern` has appeared (the answer is under way)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    got = b""
    end = time.monotonic() + limit
    while not re.search(pattern, got):
        assert time.monotonic() < end, f"{pattern!r} not seen in {got!r}"
        got += os.read(fd, 4096)
    return got


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_keeps_the_partial_turn_with_its_cost_and_prints_nothing_twice(emulator_factory, env,
                                                                              dsk_main):
    # One chunk every 0.3 s for the first request, so SIGINT lands mid-answer.
    emu = emulator_factory(faults="delay_chunks=0.3;times=1")
    proc = subprocess.Popen([*DSK, "ask", "-u", "--no-think", "--base-url", emu.base_url, "Tell me a story"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    try:
        head = read_until_text(proc, rb"\w+ \w+")  # two words shown
        proc.send_signal(signal.SIGINT)
        rest, err_b = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out, err = (head + rest).decode(), err_b.decode()
    assert_clean(out, err)
    assert proc.returncode == 130, err

    (saved,) = list_conversations(path=db(env))
    messages, meta = load_conversation(saved.id, path=db(env))
    question, partial = messages
    assert question == {"role": "user", "content": "Tell me a story"}
    full = reply(emu.base_url, [question], thinking={"type": "disabled"}).choices[0].message.content
    # The partial text was printed exactly once, the line ended, and the same text was kept.
    assert partial["role"] == "assistant" and partial["content"]
    assert out == partial["content"] + "\n"
    assert full.startswith(partial["content"]) and len(partial["content"]) < len(full)
    (cut,) = meta["interrupted"]
    assert cut["message"] == 1 and cut["estimated"] is True and cut["currency"] == "CNY"
    assert cut["prompt_tokens"] > 0 and cut["completion_tokens"] > 0 and Decimal(cut["cost"]) > 0
    assert meta["dsk_chat"]["usage"]["requests"] == 1
    assert Decimal(meta["dsk_chat"]["usage"]["cost"]) == Decimal(cut["cost"])
    lines = err.splitlines()
    assert lines[0].startswith("dsk: usage (estimated, the answer was cut short): ")
    assert lines[1:] == [f"dsk: interrupted: the partial answer is kept in conversation {saved.id} "
                         "(dsk -c continues it)"]

    # `dsk -c` sends the history with the partial turn in it.
    go_on = dsk_main("-c", "--no-think", "--base-url", emu.base_url, "go on", env=env)
    assert go_on.returncode == 0, go_on.stderr
    assert chat_bodies(emu)[-1]["messages"] == [
        question, {"role": "assistant", "content": partial["content"]}, {"role": "user", "content": "go on"}]
    messages, meta = load_conversation(saved.id, path=db(env))
    assert len(messages) == 4 and [c["message"] for c in meta["interrupted"]] == [1]
