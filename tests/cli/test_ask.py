"""`dsk ask` and the CLI's error handling, run as a real subprocess against the emulator on
127.0.0.1 (the `emulator` fixtures of conftest.py) and against `--mock`.

Every run checks that the fake API key never appears in any output and that no traceback leaks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from deepseek_kit import Client
from deepseek_kit.server import EmulatorThread
from tests.helpers.dsk import FAKE_KEY, MODEL, chat_bodies, dsk_env, one_error_line, run_dsk
from tests.helpers.net import closed_port


def library_message(base_url: str, prompt: str, **kw):
    with Client(api_key=FAKE_KEY, base_url=base_url, max_retries=0) as c:
        resp = c.chat.completions.create(model=kw.pop("model", MODEL),
                                         messages=[{"role": "user", "content": prompt}], **kw)
    return resp.choices[0].message


# --- answers --------------------------------------------------------------------------------------


def test_ask_streams_the_same_answer_the_library_gets(emulator, env):
    proc = run_dsk("ask", "--base-url", emulator.base_url, "What is 2+2?", env=env)
    assert proc.returncode == 0, proc.stderr
    expected = library_message(emulator.base_url, "What is 2+2?")
    assert expected.content
    assert proc.stdout == expected.content + "\n"
    assert proc.stderr == ""  # reasoning only goes to a terminal or with --show-reasoning
    body = chat_bodies(emulator)[0]
    assert body["stream"] is True
    assert body["model"] == MODEL
    assert body["messages"] == [{"role": "user", "content": "What is 2+2?"}]
    assert "thinking" not in body


def test_ask_joins_words_of_the_question(emulator, env):
    proc = run_dsk("ask", "--base-url", emulator.base_url, "What", "is", "2+2?", env=env)
    assert proc.returncode == 0, proc.stderr
    assert chat_bodies(emulator)[0]["messages"][-1]["content"] == "What is 2+2?"


def test_show_reasoning_goes_to_stderr_only(emulator, env):
    proc = run_dsk("ask", "--base-url", emulator.base_url, "--show-reasoning", "Why?", env=env)
    assert proc.returncode == 0, proc.stderr
    expected = library_message(emulator.base_url, "Why?")
    assert expected.reasoning_content
    assert proc.stdout == expected.content + "\n"
    assert proc.stderr.strip() == expected.reasoning_content.strip()


def test_no_stream_prints_the_whole_answer(emulator, env):
    proc = run_dsk("ask", "--base-url", emulator.base_url, "--no-stream", "Hello", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == library_message(emulator.base_url, "Hello").content + "\n"
    assert "stream" not in chat_bodies(emulator)[0]


@pytest.mark.parametrize("extra", [[], ["--no-stream"]])
def test_json_prints_one_chat_completion(emulator, env, extra):
    proc = run_dsk("ask", "--base-url", emulator.base_url, "--json", *extra, "Hello", env=env)
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)  # exactly one JSON document
    assert obj["object"] == "chat.completion"
    assert obj["model"] == MODEL
    expected = library_message(emulator.base_url, "Hello")
    assert obj["choices"][0]["message"]["content"] == expected.content
    assert obj["choices"][0]["message"]["reasoning_content"] == expected.reasoning_content
    assert obj["choices"][0]["finish_reason"] == "stop"
    assert obj["usage"]["completion_tokens"] > 0
    assert proc.stderr == ""


def test_options_reach_the_request(emulator, env):
    proc = run_dsk("ask", "--base-url", emulator.base_url, "--model", "deepseek-v4-pro", "--no-think",
                   "--system", "Be brief.", "Hi", env=env)
    assert proc.returncode == 0, proc.stderr
    body = chat_bodies(emulator)[0]
    assert body["model"] == "deepseek-v4-pro"
    assert body["thinking"] == {"type": "disabled"}
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hi"}]


def test_model_from_config_profile(emulator, tmp_path):
    (tmp_path / "config.toml").write_text(
        f'api_key = "{FAKE_KEY}"\n[profiles.emu]\nbase_url = "{emulator.base_url}"\n'
        'model = "deepseek-v4-pro"\n')
    proc = run_dsk("ask", "--profile", "emu", "Hi", env=dsk_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert chat_bodies(emulator)[0]["model"] == "deepseek-v4-pro"


# --- stdin ----------------------------------------------------------------------------------------


def test_question_from_stdin(emulator, env):
    proc = run_dsk("ask", "--base-url", emulator.base_url, env=env, input="What is in a name?\n")
    assert proc.returncode == 0, proc.stderr
    assert chat_bodies(emulator)[0]["messages"] == [{"role": "user", "content": "What is in a name?"}]
    assert proc.stdout == library_message(emulator.base_url, "What is in a name?").content + "\n"


def test_stdin_is_appended_to_the_question_as_context(emulator, env):
    proc = run_dsk("ask", "--base-url", emulator.base_url, "Summarize:", env=env,
                   input="line one\nline two\n")
    assert proc.returncode == 0, proc.stderr
    content = chat_bodies(emulator)[0]["messages"][-1]["content"]
    assert content == "Summarize:\n\nline one\nline two"


def test_no_stdin_ignores_piped_input(emulator, env):
    proc = run_dsk("ask", "--base-url", emulator.base_url, "--no-stdin", "Q", env=env, input="ctx")
    assert proc.returncode == 0, proc.stderr
    assert chat_bodies(emulator)[0]["messages"][-1]["content"] == "Q"


def test_no_question_at_all_is_a_usage_error(env, dsk_main):
    proc = dsk_main("ask", "--mock", env=env, input="   \n")
    assert proc.returncode == 2
    assert "no question" in one_error_line(proc)


# --- the built-in emulator -----------------------------------------------------------------------


def test_mock_answers_like_an_emulator(tmp_path):
    proc = run_dsk("ask", "--mock", "What is 2+2?", env=dsk_env(tmp_path, DEEPSEEK_API_KEY=FAKE_KEY))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    with EmulatorThread() as emu:  # same default config: the same deterministic answer
        assert proc.stdout == library_message(emu.base_url, "What is 2+2?").content + "\n"


def test_without_a_key_ask_in_a_pipe_refuses(tmp_path):
    # Only a person at a terminal may get the emulator's synthetic answers without asking
    # (tests/cli/test_synthetic.py runs that case on a pseudo-terminal).
    proc = run_dsk("ask", "What is 2+2?", env=dsk_env(tmp_path))
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "no API key" in line and "--mock" in line
    assert proc.stdout == ""


@pytest.mark.parametrize("how", [["--base-url", "https://api.deepseek.com"], ["--no-mock-fallback"],
                                 "env"])
def test_missing_key_for_deepseek_is_one_line_error(tmp_path, how):
    env = dsk_env(tmp_path)
    args = ["ask", "Hi"]
    if how == "env":
        env["DEEPSEEK_BASE_URL"] = "https://api.deepseek.com"
    else:
        args += how
    proc = run_dsk(*args, env=env)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "no API key" in line and "DEEPSEEK_API_KEY" in line and "--mock" in line
    assert proc.stdout == ""


# --- errors ---------------------------------------------------------------------------------------


def test_unreachable_server_is_one_line_naming_the_url(env):
    url = f"http://127.0.0.1:{closed_port()}"
    proc = run_dsk("ask", "--base-url", url, "--max-retries", "1", "Hi", env=env)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert url in line
    assert proc.stdout == ""


def test_authentication_error(emulator_factory, env):
    emu = emulator_factory(api_keys={"sk-some-other-key"})
    proc = run_dsk("ask", "--base-url", emu.base_url, "Hi", env=env)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "401" in line and "DEEPSEEK_API_KEY" in line


def test_server_error_after_retries(emulator_factory, env):
    emu = emulator_factory(faults="status=503")
    proc = run_dsk("ask", "--base-url", emu.base_url, "--max-retries", "0", "Hi", env=env)
    assert proc.returncode == 1
    assert "503" in one_error_line(proc)


def test_retries_get_past_transient_errors(emulator_factory, env):
    emu = emulator_factory(faults="status=503;times=2")
    proc = run_dsk("ask", "--base-url", emu.base_url, "--max-retries", "2", "Hi", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert emu.state.total_requests == 3


def test_stream_breaking_midway_keeps_the_partial_answer_and_fails(emulator_factory, env):
    emu = emulator_factory(faults="error_event_after=5")
    proc = run_dsk("ask", "--base-url", emu.base_url, "--no-think", "Hi", env=env)
    assert proc.returncode == 1
    assert proc.stdout.strip()  # the part that arrived
    assert proc.stdout.endswith("\n")
    one_error_line(proc)


def test_truncated_answer_warns(emulator_factory, env):
    emu = emulator_factory(faults="finish=length")
    proc = run_dsk("ask", "--base-url", emu.base_url, "Hi", env=env)
    assert proc.returncode == 0
    assert "incomplete" in proc.stderr and "length" in proc.stderr


@pytest.mark.parametrize("args", [
    ["ask", "--timeout", "soon", "Hi"],
    ["ask", "--timeout", "0", "Hi"],
    ["ask", "--max-retries", "-1", "Hi"],
    ["ask", "--no-such-option", "Hi"],
    ["bach"],  # a typo of a command, not a question (tests/cli/test_habits.py)
    [],
])
def test_bad_arguments_exit_2(env, args, dsk_main):
    proc = dsk_main(*args, env=env)
    assert proc.returncode == 2
    assert proc.stdout == ""


def test_bad_base_url_and_unknown_profile_exit_2(env, dsk_main):
    proc = dsk_main("ask", "--base-url", "ftp://x", "Hi", env=env)
    assert proc.returncode == 2
    assert "base_url" in one_error_line(proc)
    proc = dsk_main("ask", "--profile", "nope", "Hi", env=env)
    assert proc.returncode == 2
    assert "nope" in one_error_line(proc)
    home = env["DSK_HOME"]
    with open(os.path.join(home, "config.toml"), "w") as f:
        f.write('[profiles.other]\nbase_url = "http://127.0.0.1:9"\n')
    proc = dsk_main("ask", "--profile", "nope", "Hi", env=env)
    assert proc.returncode == 2
    assert "nope" in one_error_line(proc) and "other" in proc.stderr


def test_version_and_help(env, dsk_main):
    proc = dsk_main("--version", env=env)
    assert proc.returncode == 0 and proc.stdout.startswith("dsk ")
    for cmd in ("ask", "chat", "serve"):
        proc = dsk_main(cmd, "--help", env=env)
        assert proc.returncode == 0 and "usage: dsk " + cmd in proc.stdout


def test_ctrl_c_exits_130(emulator_factory, env):
    emu = emulator_factory(faults="delay_chunks=5")
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepseek_kit.cli.main", "ask", "--base-url", emu.base_url, "--no-think",
         "Hi"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        proc.stdout.read(1)  # the first token is out: we are mid-answer
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert b"Traceback" not in err and FAKE_KEY.encode() not in out + err


def test_timeout_counts_only_real_tokens(emulator_factory, env):
    # The server holds the request with keep-alives for a long time: --timeout 1 gives up on the
    # first token instead of waiting (keep-alive comments do not count as progress).
    emu = emulator_factory(faults="stall_first_token=60;keepalive=0.2")
    proc = run_dsk("ask", "--base-url", emu.base_url, "--timeout", "1", "--max-retries", "0", "Hi", env=env)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "timed out" in line and "first_token" in line


def test_api_key_env_names_the_variable(emulator_factory, tmp_path):
    emu = emulator_factory(api_keys={FAKE_KEY})
    env = dsk_env(tmp_path, MY_DS_KEY=FAKE_KEY)
    proc = run_dsk("ask", "--base-url", emu.base_url, "--api-key-env", "MY_DS_KEY", "Hi", env=env)
    assert proc.returncode == 0, proc.stderr
    proc = run_dsk("ask", "--base-url", emu.base_url, "--api-key-env", "UNSET_VAR_X", "Hi", env=env)
    assert proc.returncode == 2
    assert "UNSET_VAR_X" in one_error_line(proc)
