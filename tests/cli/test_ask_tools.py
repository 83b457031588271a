"""`dsk ask --preset` and `dsk ask --tools FILE.py`, as subprocesses against the emulator (which calls
the tools the user message names, then answers in text once the results are in)."""

from __future__ import annotations

import importlib.util
import json
import textwrap

import pytest

from deepseek_kit import Client, Tool
from deepseek_kit._tools.loop import run_sync
from tests.helpers.dsk import FAKE_KEY, MODEL, chat_bodies, one_error_line, run_dsk

TOOLS = '''
from typing import Literal

from deepseek_kit import tool


@tool
def get_weather(city: str, units: Literal["metric", "imperial"] = "metric") -> dict:
    """Current weather for a city.

    Args:
        city: City name, e.g. "Paris".
        units: Unit system of the temperature.
    """
    return {"city": city, "temperature": 21 if units == "metric" else 70, "sky": "clear"}


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def explode(reason: str) -> str:
    """Always fails."""
    raise ValueError("no such luck: " + reason)


def not_a_tool() -> None:
    """Plain functions are not offered."""
'''


@pytest.fixture
def tools_file(tmp_path):
    path = tmp_path / "tools.py"
    path.write_text(TOOLS)
    return path


def load(path) -> list[Tool]:
    spec = importlib.util.spec_from_file_location("expected_tools", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [module.get_weather, module.add, module.explode]


def ask(emulator, env, *args: str):
    return run_dsk("ask", "--base-url", emulator.base_url, *args, env=env)


# --- presets ----------------------------------------------------------------------------------------


def test_preset_coding_sends_temperature_zero_and_thinking_off(emulator, env):
    proc = ask(emulator, env, "--preset", "coding", "Reverse a list in Python")
    assert proc.returncode == 0, proc.stderr
    (body,) = chat_bodies(emulator)
    assert body["temperature"] == 0.0
    assert body["thinking"] == {"type": "disabled"}


@pytest.mark.parametrize("name, temperature", [("math", 0.0), ("data", 1.0), ("conversation", 1.3),
                                               ("translation", 1.3), ("creative", 1.5)])
def test_every_preset_reaches_the_request(emulator, env, name, temperature):
    proc = ask(emulator, env, "--preset", name.upper(), "Hi")  # names are case-insensitive
    assert proc.returncode == 0, proc.stderr
    (body,) = chat_bodies(emulator)
    assert body["temperature"] == temperature and body["thinking"] == {"type": "disabled"}


def test_explicit_think_wins_over_the_preset(emulator, env):
    proc = ask(emulator, env, "--preset", "coding", "--think", "Hi")
    assert proc.returncode == 0, proc.stderr
    (body,) = chat_bodies(emulator)
    assert body["temperature"] == 0.0 and body["thinking"] == {"type": "enabled"}


def test_unknown_preset_is_one_line_and_sends_nothing(emulator, env):
    proc = ask(emulator, env, "--preset", "poetry", "Hi")
    assert proc.returncode == 2
    assert one_error_line(proc) == ("dsk: error: unknown preset 'poetry': choose one of coding, math, data, "
                                    "conversation, translation, creative")
    assert chat_bodies(emulator) == []


# --- tools ------------------------------------------------------------------------------------------

QUESTION = "What is the weather in Paris? Use get_weather, and add the numbers with add."


def test_tools_run_the_loop_and_print_the_final_answer(emulator, env, tools_file):
    proc = ask(emulator, env, "--tools", str(tools_file), QUESTION)
    assert proc.returncode == 0, proc.stderr
    with Client(api_key=FAKE_KEY, base_url=emulator.base_url, max_retries=0) as c:
        expected = run_sync(c, [{"role": "user", "content": QUESTION}], load(tools_file), model=MODEL)
    assert proc.stdout == expected.content + "\n"  # stdout: the final answer only

    first, second = [b for b in chat_bodies(emulator) if b.get("stream")][:2]
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather", "add", "explode"]
    # The model named two tools: both ran, their results went back after the tool-call turn,
    # whose reasoning_content went back verbatim (thinking mode
    # with tools, docs/deepseek-api-notes.md#thinking-mode).
    call_turn, *results = second["messages"][1:]
    assert call_turn["role"] == "assistant" and call_turn["reasoning_content"]
    calls = {c["id"]: c["function"] for c in call_turn["tool_calls"]}
    assert sorted(f["name"] for f in calls.values()) == ["add", "get_weather"]
    lines = proc.stderr.splitlines()
    for r in results:
        fn = calls[r["tool_call_id"]]
        args = json.loads(fn["arguments"])
        if fn["name"] == "add":
            assert r["content"] == str(args["a"] + args["b"])
        else:
            assert json.loads(r["content"])["city"] == args["city"]
        assert f"[tool] {fn['name']} {' '.join(fn['arguments'].split())}" in lines
        assert f"[tool] {fn['name']} -> {r['content']}" in lines


def test_a_failing_tool_is_reported_and_fed_back(emulator, env, tools_file):
    proc = ask(emulator, env, "--tools", str(tools_file), "--no-think", "Please call explode")
    assert proc.returncode == 0, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if "failed:" in x]
    assert line.startswith("[tool] explode failed: Error: tool 'explode' raised ValueError: no such luck: ")
    second = [b for b in chat_bodies(emulator) if b.get("stream")][1]
    assert second["messages"][-1]["content"].startswith("Error: tool 'explode' raised ValueError")
    assert proc.stdout.strip()


def test_tools_with_json_and_no_stream(emulator, env, tools_file):
    proc = ask(emulator, env, "--tools", str(tools_file), "--json", "--no-stream", "Use add")
    assert proc.returncode == 0, proc.stderr
    completion = json.loads(proc.stdout)
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert [bool(b.get("stream")) for b in chat_bodies(emulator)] == [False, False]
    assert "[tool] add ->" in proc.stderr


def test_step_limit_is_an_api_error_line(emulator, env, tools_file):
    proc = ask(emulator, env, "--tools", str(tools_file), "--max-steps", "1", "Use add")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1].startswith("dsk: error: the model was still calling tools after "
                                                   "max_steps=1 model calls")


@pytest.mark.parametrize("source, error", [
    (None, "dsk: error: --tools {path}: no such file"),
    ("def f(:\n    pass\n", "dsk: error: --tools {path}: syntax error at line 1: "),
    ("import no_such_module_here\n", "dsk: error: --tools {path}: loading it raised ModuleNotFoundError: "
                                     "No module named 'no_such_module_here'"),
    ("def plain():\n    return 1\n", "dsk: error: --tools {path}: no tools in it (decorate functions with "
                                     "@tool: from deepseek_kit import tool)"),
])
def test_bad_tools_files_are_one_line_errors(emulator, env, tmp_path, source, error):
    path = tmp_path / "bad_tools.py"
    if source is not None:
        path.write_text(textwrap.dedent(source))
    proc = ask(emulator, env, "--tools", str(path), "Hi")
    assert proc.returncode == 2
    assert one_error_line(proc).startswith(error.format(path=path))
    assert chat_bodies(emulator) == []


def test_a_tool_run_joins_the_conversation_and_continues_with_c(emulator, env, tools_file):
    url = emulator.base_url
    first = run_dsk("ask", "--base-url", url, "--tools", str(tools_file), "Use add to add 2 and 3.",
                    env=env)
    assert first.returncode == 0, first.stderr
    answer = first.stdout.rstrip("\n")
    then = run_dsk("-c", "--base-url", url, "--tools", str(tools_file), "Thanks. Now say hi.", env=env)
    assert then.returncode == 0, then.stderr
    # The question and the final answer are history; the tool rounds stay in the request log.
    sent = chat_bodies(emulator)[-1]["messages"]
    assert sent[0] == {"role": "user", "content": "Use add to add 2 and 3."}
    assert sent[1]["role"] == "assistant" and sent[1]["content"] == answer and not sent[1].get("tool_calls")
    assert sent[2] == {"role": "user", "content": "Thanks. Now say hi."}
