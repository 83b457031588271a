"""Hostile input to `dsk` (docs/attack-round-2026-12.md, round 2): an endless or huge stdin, bytes that are
not UTF-8, a closed stdout, out-of-range numbers for `dsk logs`. Each is one `dsk: error:` line (exit 2)
or works; never a traceback or a process that grows until the kernel kills it. Real subprocesses."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers.dsk import DSK, dsk_env, one_error_line, run_dsk


def _limited(cmd: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess[bytes]:
    """`cmd` with 1 GB of address space at most: a process that reads without bound dies of it."""
    def cap() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    return subprocess.run(cmd, env=env, capture_output=True, timeout=60, preexec_fn=cap, **kw)


@pytest.mark.parametrize("command", [["ask", "--mock"], ["ask", "--mock", "Summarize:"], ["chat", "--mock"]])
def test_endless_stdin_is_an_error_not_a_runaway(tmp_path, command):
    with open("/dev/zero", "rb") as zero:
        proc = _limited([*DSK, *command], dsk_env(tmp_path), stdin=zero)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err[-2000:]
    assert "Traceback" not in err and "MemoryError" not in err
    assert err.startswith("dsk: error: stdin holds more than 16 MB") and err.count("\n") == 1


def test_input_bound_is_a_setting(tmp_path):
    env = {**dsk_env(tmp_path), "DSK_MAX_INPUT_MB": "0.001"}
    proc = run_dsk("ask", "--mock", env=env, input="x" * 2000)
    line = one_error_line(proc)
    assert proc.returncode == 2 and "stdin holds more than 0.00" in line and "DSK_MAX_INPUT_MB" in line
    assert run_dsk("ask", "--mock", env=env, input="x" * 1000).returncode == 0
    bad = run_dsk("ask", "--mock", env={**env, "DSK_MAX_INPUT_MB": "nan"}, input="x")
    assert bad.returncode == 2 and "DSK_MAX_INPUT_MB" in one_error_line(bad)


@pytest.mark.parametrize("command", [["ask", "--mock"], ["ask", "--mock", "Translate:"]])
def test_stdin_that_is_not_utf8_is_one_line(tmp_path, command):
    proc = subprocess.run([*DSK, *command], input=b"caf\xe9 \xff\xfe", capture_output=True, timeout=60,
                          env=dsk_env(tmp_path))
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.startswith("dsk: error: stdin is not UTF-8 text (invalid byte at position 3)")


def test_question_with_undecodable_bytes_in_argv_is_one_line(tmp_path):
    proc = subprocess.run([*[a.encode() for a in DSK], b"ask", b"--mock", b"caf\xe9"], capture_output=True,
                          timeout=60, env=dsk_env(tmp_path), stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.decode().startswith("dsk: error: the question is not UTF-8 text")


def test_nul_and_bom_in_a_piped_prompt_work(tmp_path):
    proc = run_dsk("ask", "--mock", "--no-stream", "--json", env=dsk_env(tmp_path), input="\ufeffa\x00b")
    assert proc.returncode == 0, proc.stderr
    show = run_dsk("logs", "show", "1", "--json", env=dsk_env(tmp_path))
    assert '"a\\u0000b"' in show.stdout


def test_closed_stdout_is_one_line_before_any_call(tmp_path):
    proc = subprocess.run([*DSK, "ask", "--mock", "Hi"], capture_output=True, timeout=60, text=True,
                          env=dsk_env(tmp_path), stdin=subprocess.DEVNULL, stdout=None,
                          preexec_fn=lambda: __import__("os").close(1))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "dsk: error: standard output is closed: there is nowhere to print the result\n"
    assert not (tmp_path / "logs.sqlite3").exists()


@pytest.mark.parametrize("args", [["logs", "--limit", "99999999999999999999"],
                                  ["logs", "search", "x", "-n", "99999999999999999999"]])
def test_huge_limits_mean_all(tmp_path, args, dsk_main):
    assert run_dsk("ask", "--mock", "x marks the spot", env=dsk_env(tmp_path)).returncode == 0
    proc = dsk_main(*args, env=dsk_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2


@pytest.mark.parametrize(
    "words", [["中文"] * 3 + [f"词{i}" for i in range(2000)], [f"w{i}" for i in range(65)]]
)
def test_search_with_too_many_words_is_one_line(tmp_path, words, dsk_main):
    assert run_dsk("ask", "--mock", "请 翻译 这个", env=dsk_env(tmp_path)).returncode == 0
    proc = dsk_main("logs", "search", *words, env=dsk_env(tmp_path))
    assert proc.returncode == 2, proc.stderr[-500:]
    assert "search takes at most 64 distinct words" in one_error_line(proc)
    same = dsk_main("logs", "search", *(["翻译"] * 500), env=dsk_env(tmp_path))  # repeats count once
    assert same.returncode == 0 and len(same.stdout.splitlines()) == 2


def test_rows_damaged_by_hand_still_show(tmp_path, dsk_main):
    import sqlite3

    assert run_dsk("ask", "--mock", "x", env=dsk_env(tmp_path)).returncode == 0
    conn = sqlite3.connect(tmp_path / "logs.sqlite3")
    conn.execute("UPDATE requests SET messages = '{bad', tool_calls = '[1, {\"id\": \"c\"}]', params = 'x'")
    conn.commit()
    conn.close()
    for args in (["logs", "show", "1"], ["logs", "show", "1", "--json"], ["logs", "--json"]):
        proc = dsk_main(*args, env=dsk_env(tmp_path))
        assert proc.returncode == 0, proc.stderr
    assert '"messages": "{bad"' in dsk_main("logs", "show", "1", "--json", env=dsk_env(tmp_path)).stdout


@pytest.mark.parametrize("since", ["0001-01-01", "9999-12-31T23:59:59", "99999999999999999999999999w"])
def test_since_at_the_edges_of_time(tmp_path, since, dsk_main):
    assert run_dsk("ask", "--mock", "x", env=dsk_env(tmp_path)).returncode == 0
    for args in (["stats", "--include-synthetic", "--json"], ["logs", "--json"]):
        proc = dsk_main(*args, "--since", since, env=dsk_env(tmp_path))
        assert proc.returncode == 0, proc.stderr
    old = dsk_main("logs", "--json", "--since", "0001-01-01", env=dsk_env(tmp_path))
    assert len(old.stdout.splitlines()) == 1  # everything is after year 1
