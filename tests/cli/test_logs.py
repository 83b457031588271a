"""`dsk logs`, `dsk stats`, `dsk models` and `dsk balance`, on a logs database made by real `dsk ask`
subprocesses (against `--mock` and against the emulator fixture, with faults), in a private DSK_HOME;
the read-only queries run in process (`dsk_main`). Every run checks that the key never appears in
any output or in the file."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

import pytest

from deepseek_kit._wire import pricing as _pricing
from tests.helpers.dsk import FAKE_KEY, dsk_env, run_dsk

# Costs depend on Beijing peak hours (docs/deepseek-api-notes.md#pricing-and-off-peak-hours):
# every dsk run here is priced at a fixed
# time through DSK_FAKE_NOW, off-peak unless a test asks for peak (docs/pricing.md#the-pricing-clock).
OFF_PEAK = "2026-11-24T13:00:00+08:00"  # a Tuesday, between the two peak windows
PEAK = "2026-11-24T10:00:00+08:00"


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def db_of(home):
    return home / "logs.sqlite3"


def ask(env, *args):
    p = run_dsk("ask", *args, env=env)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


@pytest.fixture
def logged(home, emulator_factory, request):
    """Four real `dsk ask` calls: two --mock (stream, non-stream), one through the emulator with a
    429 retried, one that fails with 400; priced at `request.param` (default off-peak)."""
    env = dsk_env(home, DSK_FAKE_NOW=getattr(request, "param", OFF_PEAK))
    answers = [ask(env, "--mock", "--no-think", "Where", "is", "the", "lighthouse?"),
               ask(env, "--mock", "--no-stream", "Tell me about zebras")]
    emu = emulator_factory(faults="status=429;times=1;key=cli-logs")
    key_env = dsk_env(home, DEEPSEEK_API_KEY=FAKE_KEY, DSK_FAKE_NOW=env["DSK_FAKE_NOW"])
    answers.append(ask(key_env, "--base-url", emu.base_url, "Count the stars"))
    emu_bad = emulator_factory(faults="status=400")
    bad = run_dsk("ask", "--base-url", emu_bad.base_url, "This one fails", env=key_env)
    assert bad.returncode == 1 and "400" in bad.stderr
    return env, answers, emu


def test_dsk_logs_lists_shows_and_searches_real_calls(logged, home, dsk_main):
    env, answers, emu = logged
    p = dsk_main("logs", env=env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["ID", "TIME", "MODEL", "TOKENS", "IN/OUT", "COST", "LATENCY", "STATUS",
                                "PROMPT"]
    body = lines[1:]
    assert [ln.split()[0] for ln in body] == ["4", "3", "2", "1"]  # newest first
    assert "400 BadRequestError" in body[0] and body[0].endswith("This one fails")
    assert " ok " in body[1] and body[1].endswith("Count the stars")
    assert body[3].endswith("Where is the lighthouse?") and "deepseek-flash" in body[3]

    show = dsk_main("logs", "show", "3", env=env)
    assert show.returncode == 0, show.stderr
    out = show.stdout
    assert out.splitlines()[0].startswith("#3 ") and emu.base_url.split("//")[1] in out
    assert "attempts: 2" in out and "[user] Count the stars" in out
    assert out.split("--- answer ---\n", 1)[1].strip() == answers[2]
    assert "--- reasoning ---" in out  # thinking on by default

    mock = json.loads(dsk_main("logs", "show", "1", "--json", env=env).stdout)
    assert mock["endpoint"] == "emulator" and mock["answer"] == answers[0] and mock["reasoning"] is None
    assert mock["messages"] == [{"role": "user", "content": "Where is the lighthouse?"}]
    assert mock["params"]["thinking"] == {"type": "disabled"} and mock["stream"] == 1

    found = dsk_main("logs", "search", "zebras", env=env)
    assert found.returncode == 0 and [ln.split()[0] for ln in found.stdout.splitlines()[1:]] == ["2"]
    assert "[zebras]" in found.stdout
    none = dsk_main("logs", "search", "giraffes", env=env)
    assert none.returncode == 0 and none.stdout == "" and "no logged call contains" in none.stderr

    jl = dsk_main("logs", "--json", "--limit", "2", env=env).stdout.splitlines()
    assert [json.loads(x)["id"] for x in jl] == [4, 3]
    errors = dsk_main("logs", "--errors", env=env).stdout.splitlines()[1:]
    assert [ln.split()[0] for ln in errors] == ["4"]

    data = b"".join(p.read_bytes() for p in home.glob("logs.sqlite3*"))
    assert FAKE_KEY.encode() not in data and FAKE_KEY[-12:].encode() not in data


@pytest.mark.parametrize("logged", [PEAK, OFF_PEAK], indirect=True)
def test_dsk_stats_from_real_calls(logged, home, dsk_main):
    env = logged[0]
    p = dsk_main("stats", "--include-synthetic", env=env)
    assert p.returncode == 0, p.stderr
    lines = dict(ln.split(None, 1) for ln in p.stdout.splitlines())
    assert lines["calls"].startswith("4 (3 ok, 1 failed)")
    assert lines["errors"] == "BadRequestError 1"
    assert lines["latency"].startswith("p50 ") and "p95 " in lines["latency"]
    # Exactly DeepSeek's price at the pinned time, peak (x2) or off-peak, whatever the real hour.
    at = datetime.fromisoformat(env["DSK_FAKE_NOW"])
    rows = sqlite3.connect(db_of(home)).execute(
        "SELECT model, cache_hit_tokens, cache_miss_tokens, completion_tokens, cost FROM requests").fetchall()
    for model, hit, miss, out, cost in rows:
        usage = {"prompt_cache_hit_tokens": hit, "prompt_cache_miss_tokens": miss, "completion_tokens": out}
        assert cost == pytest.approx(float(_pricing.cost(model, usage, at)), rel=1e-12, abs=1e-15)
        assert cost == pytest.approx(float(_pricing.cost(model, usage, peak=_pricing.is_peak(at))), abs=1e-15)
    total = sum(r[4] for r in rows)
    assert total > 0 and lines["cost"] == f"¥{total:.6f}"
    (s,) = [
        json.loads(x) for x in dsk_main("stats", "--include-synthetic", "--json", env=env).stdout.splitlines()
    ]
    assert (s["requests"], s["ok"], s["errors"]) == (4, 3, 1)
    assert s["completion_tokens"] > 0 and s["cost"]["CNY"] == pytest.approx(total)
    assert s["latency_p95"] >= s["latency_p50"] > 0
    by = [
        json.loads(x)
        for x in dsk_main(
            "stats", "--include-synthetic", "--by", "endpoint", "--json", env=env
        ).stdout.splitlines()
    ]
    got = sorted((g["group"] == "emulator", g["requests"]) for g in by)
    assert got == [(False, 1), (False, 1), (True, 2)]
    table = dsk_main("stats", "--include-synthetic", "--by", "model", env=env).stdout.splitlines()
    assert table[0].split()[:3] == ["MODEL", "CALLS", "FAILED"]
    assert table[1].split()[:3] == ["deepseek-flash", "4", "1"]


def test_logs_show_unknown_id_and_empty_database(home, dsk_main):
    env = dsk_env(home)
    p = dsk_main("logs", env=env)
    assert p.returncode == 0 and p.stdout == "" and "no calls logged yet" in p.stderr
    p = dsk_main("logs", "show", "7", env=env)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no logged call with id 7" in p.stderr
    assert not db_of(home).exists()  # reading never creates the file


@pytest.mark.parametrize("how", ["flag", "env", "config"])
def test_logging_off_leaves_no_rows(home, how):
    env = dsk_env(home)
    args = ["--mock", "Quiet please"]
    if how == "flag":
        args.insert(0, "--no-log")
    elif how == "env":
        env["DSK_NO_LOGS"] = "1"
    else:
        home.mkdir(parents=True)
        (home / "config.toml").write_text("logs = false\n")
    ask(env, *args)
    assert not db_of(home).exists()
    if how == "config":
        (home / "config.toml").unlink()
    ask(dsk_env(home), "--mock", "Now logged")  # on by default in dsk
    rows = sqlite3.connect(db_of(home)).execute("SELECT prompt FROM requests").fetchall()
    assert rows == [("Now logged",)]


def test_dsk_models_and_balance_against_the_mock(home):
    env = dsk_env(home)
    p = run_dsk("models", "--mock", env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["MODEL", "OWNED", "BY", "deepseek-flash", "deepseek", "deepseek-v4-pro",
                                "deepseek"]
    j = json.loads(run_dsk("models", "--mock", "--json", env=env).stdout)
    assert [m["id"] for m in j["data"]] == ["deepseek-flash", "deepseek-v4-pro"]
    b = run_dsk("balance", "--mock", env=env)
    assert b.returncode == 0 and b.stdout.splitlines()[0] == "available: yes"
    assert b.stdout.splitlines()[2].split() == ["CNY", "100.00", "10.00", "90.00"]
    assert "emulator" in b.stderr
    bj = json.loads(run_dsk("balance", "--mock", "--json", env=env).stdout)
    assert bj["balance_infos"][0]["total_balance"] == "100.00"


def test_dsk_balance_reports_auth_errors_in_one_line(home, emulator_factory):
    emu = emulator_factory(api_keys={"sk-someone-else"})
    p = run_dsk("balance", "--base-url", emu.base_url, env=dsk_env(home, DEEPSEEK_API_KEY=FAKE_KEY))
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "check DEEPSEEK_API_KEY" in p.stderr
