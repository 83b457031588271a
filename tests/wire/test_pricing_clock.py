"""Pricing at a chosen time, whatever the wall clock says (docs/pricing.md#the-pricing-clock).

- the peak windows to the second, on Beijing dates, over New Year;
- the holiday calendar: built-in days, the user's days and corrections (`[pricing]` in the config
  file, `HolidayCalendar`), adjusted working weekend days, malformed lists refused with a clear error;
- the once-per-process-and-year warning for a year the calendar does not cover (in a subprocess, so
  "once per process" is what is measured);
- one injected clock giving the same bill in the client's metrics, the logs and the emulator, at a
  fixed peak and a fixed off-peak time (and `DSK_FAKE_NOW` for code that builds its own configs).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from deepseek_kit import AsyncClient
from deepseek_kit._logs.query import Logs
from deepseek_kit._logs.store import LogConfig
from deepseek_kit._steps.logs import LogStep
from deepseek_kit._steps.metrics.step import MetricsConfig, MetricsStep
from deepseek_kit._wire import pricing as _pricing
from deepseek_kit._wire.errors import UsageError
from deepseek_kit._wire.holidays import HolidayCalendar, HolidayCalendarWarning
from deepseek_kit.server.emulator.config import EmulatorConfig

BJ = _pricing.BEIJING
PEAK = datetime(2026, 11, 24, 10, 0, tzinfo=BJ)       # a Tuesday, 10:00 Beijing
OFF_PEAK = datetime(2026, 11, 24, 13, 0, tzinfo=BJ)   # same day, between the windows
KEY = "sk-pricing-clock-test"
MSGS = [{"role": "user", "content": "Price me."}]
U = {"prompt_cache_hit_tokens": 1000, "prompt_cache_miss_tokens": 1000, "completion_tokens": 1000}


def bj(*args: int) -> datetime:
    return datetime(*args, tzinfo=BJ)  # type: ignore[misc]


# -- the windows, to the second ----------------------------------------------------------------------


@pytest.mark.parametrize(("when", "peak"), [
    (bj(2026, 11, 24, 8, 59, 59), False), (bj(2026, 11, 24, 9, 0, 0), True),
    (bj(2026, 11, 24, 11, 59, 59), True), (bj(2026, 11, 24, 12, 0, 0), False),
    (bj(2026, 11, 24, 13, 59, 59), False), (bj(2026, 11, 24, 14, 0, 0), True),
    (bj(2026, 11, 24, 17, 59, 59), True), (bj(2026, 11, 24, 18, 0, 0), False),
    # the same instants in UTC and as naive UTC: the window is Beijing time, whatever the zone
    (datetime(2026, 11, 24, 1, 0, 0, tzinfo=timezone.utc), True),
    (datetime(2026, 11, 24, 4, 0, 0), False),
    (datetime(2026, 11, 24, 9, 59, 59, 999999, tzinfo=timezone.utc), True),
    (datetime(2026, 11, 24, 10, 0, 0, tzinfo=timezone.utc), False),
    # New Year: 31 Dec is a Thursday working day; 2026-12-31 17:30 UTC is already 1 Jan in Beijing
    (bj(2026, 12, 31, 10, 0), True),
    (datetime(2026, 12, 31, 17, 30, tzinfo=timezone.utc), False),  # 01:30 Beijing, night
])
def test_peak_windows_to_the_second(when, peak):
    assert _pricing.is_peak(when) is peak
    price = _pricing.cost("deepseek-flash", U, when)
    assert price == _pricing.cost("deepseek-flash", U, peak=True) / (1 if peak else 2)


def test_adjusted_working_saturday_is_off_peak_unless_listed_as_workday():
    saturday = bj(2026, 10, 10, 10, 0)  # 调休: a working Saturday after National Day 2026
    assert _pricing.is_peak(saturday) is False  # DeepSeek's rule: Monday-Friday
    assert _pricing.is_peak(saturday, HolidayCalendar(workdays=["2026-10-10"])) is True
    holiday = bj(2026, 10, 2, 10, 0)  # National Day week, a Friday
    assert _pricing.is_peak(holiday) is False
    assert _pricing.is_peak(holiday, HolidayCalendar(workdays=[date(2026, 10, 2)])) is True
    assert _pricing.is_peak(bj(2026, 11, 25, 10, 0), HolidayCalendar(holidays=["2026-11-25"])) is False
    # builtin=False: only your own list
    assert _pricing.is_peak(holiday, HolidayCalendar(builtin=False, holidays=["2026-01-01"])) is True
    # a plain set of dates is the complete list, as before
    assert (
        _pricing.is_peak(holiday, frozenset()) is True
        and _pricing.is_peak(holiday, {holiday.date()}) is False
    )


@pytest.mark.parametrize(("table", "msg"), [
    ("nope", "must be a [pricing] table"),
    ({"holidays": "2027-01-01"}, "must be a list of dates"),
    ({"holidays": ["2027-13-01"]}, "is not a date"),
    ({"holidays": ["01/02/2027"]}, "is not a date"),
    ({"holidays": [20270101]}, "is not a date"),
    ({"holidays": [datetime(2027, 1, 1, 10, 0)]}, "date and time"),
    ({"holidays": [None]}, "is not a date"),
    ({"workdays": 5}, "must be a list of dates"),
    ({"holidays": ["2027-01-01"], "workdays": ["2027-01-01"]}, "both as holidays and as workdays"),
    ({"builtin_holidays": "no"}, "true or false"),
    ({"holiday": ["2027-01-01"]}, "unknown keys ['holiday']"),
])
def test_malformed_pricing_tables_are_refused_with_what_to_fix(table, msg):
    with pytest.raises(UsageError, match=None) as e:
        HolidayCalendar.from_config(table)
    assert msg in str(e.value)


def test_pricing_table_accepts_strings_and_toml_dates():
    cal = HolidayCalendar.from_config({"holidays": ["2027-01-01", date(2027, 2, 8)],
                                       "workdays": [" 2026-02-14 "], "builtin_holidays": True})
    assert cal.holidays == {date(2027, 1, 1), date(2027, 2, 8)} and cal.workdays == {date(2026, 2, 14)}
    assert cal.years == {2026, 2027} and cal.is_day_off(date(2027, 2, 8))
    assert HolidayCalendar.from_config(None) == HolidayCalendar()


# -- a year the calendar does not cover ---------------------------------------------------------------

_WARN_SCRIPT = textwrap.dedent("""
    import warnings
    from datetime import datetime, timedelta
    from deepseek_kit._wire import pricing as _pricing
    from deepseek_kit._wire.holidays import HolidayCalendar, HolidayCalendarWarning
    warnings.simplefilter("always")  # our own once-per-year rule, not the warnings registry
    bj = _pricing.BEIJING
    u = {"prompt_cache_miss_tokens": 10, "completion_tokens": 10}
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        for i in range(300):  # weekdays and weekends, peak hours, all of 2027 Q1 and some of 2028
            at = datetime(2027, 1, 1, 10, 0, tzinfo=bj) + timedelta(days=i % 90, minutes=i)
            _pricing.cost("deepseek-flash", u, at)
            _pricing.is_peak(datetime(2028, 3, 1, 10, 0, tzinfo=bj) + timedelta(days=i % 30))
        _pricing.is_peak(datetime(2026, 11, 24, 10, 0, tzinfo=bj))          # covered
        _pricing.is_peak(datetime(2029, 1, 6, 10, 0, tzinfo=bj))            # a Saturday: no question
        _pricing.is_peak(datetime(2029, 1, 8, 3, 0, tzinfo=bj))             # night: no question
        _pricing.is_peak(datetime(2030, 1, 7, 10, 0, tzinfo=bj), HolidayCalendar(holidays=["2030-01-01"]))
        _pricing.is_peak(datetime(2031, 1, 7, 10, 0, tzinfo=bj), {datetime(2031, 1, 1).date()})
    ours = [w for w in got if issubclass(w.category, HolidayCalendarWarning)]
    print(len(got), len(ours))
    for w in ours:
        print(w.filename.rsplit("/", 1)[-1], str(w.message)[:60])
""")


def test_uncovered_year_warns_once_per_process_and_year():
    p = subprocess.run([sys.executable, "-c", _WARN_SCRIPT], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "2 2", p.stdout  # 2027 and 2028, once each; nothing for the other cases
    assert "no Chinese holiday calendar for 2027" in lines[1] and "2028" in lines[2]
    # pointed at the caller's line (the script), not at deepseek_kit internals
    assert all(ln.startswith("<string>") for ln in lines[1:]), p.stdout


def test_warning_category_is_a_user_warning_named_for_filters():
    assert issubclass(HolidayCalendarWarning, UserWarning)
    with pytest.warns(HolidayCalendarWarning, match="2099"):  # no other test prices 2099
        assert _pricing.is_peak(bj(2099, 1, 5, 10, 0)) is True


# -- one clock for every bill -------------------------------------------------------------------------


@pytest.mark.parametrize(("when", "peak"), [(PEAK, True), (OFF_PEAK, False)])
async def test_metrics_logs_and_emulator_bill_the_same_at_a_pinned_time(
    emulator_factory, tmp_path, when, peak
):
    clock = when.timestamp
    emu = emulator_factory(EmulatorConfig(clock=clock))
    metrics = MetricsStep(MetricsConfig(clock=clock))
    logs = LogStep(LogConfig(path=tmp_path / "logs.sqlite3", clock=clock))
    async with AsyncClient(api_key=KEY, base_url=emu.base_url, steps=[logs, metrics]) as client:
        a = await client.chat.completions.create(model="deepseek-flash", messages=MSGS,
                                                 extra_headers={"X-DSK-Emulate": "tokens=2000"})
        async with await client.chat.completions.create(model="deepseek-v4-pro", messages=MSGS,
                                                        stream=True) as s:
            async for _ in s:
                pass
        b = s.get_final_completion()
    logs.flush(10)
    expected = (_pricing.cost("deepseek-flash", a.usage, when)
                + _pricing.cost("deepseek-v4-pro", b.usage, when))
    at_peak = (_pricing.cost("deepseek-flash", a.usage, peak=True)
               + _pricing.cost("deepseek-v4-pro", b.usage, peak=True))
    assert expected == (at_peak if peak else at_peak / 2) > 0
    assert Decimal(100) - emu.state.balance(KEY) == expected            # the emulator's bill
    assert metrics.metrics.cost == expected                               # the client's metrics
    rows = Logs(tmp_path / "logs.sqlite3").recent(10)
    assert sum(r.cost for r in rows) == pytest.approx(float(expected), rel=1e-12)  # the logs
    assert {r.ts for r in rows} == {when.timestamp()}


@pytest.mark.parametrize(("when", "peak"), [(PEAK, True), (OFF_PEAK, False)])
async def test_fake_now_env_and_config_file_holidays_reach_every_default(emulator_factory, tmp_path,
                                                                          monkeypatch, when, peak):
    """Code that builds its own configs (dsk, the config file's tables) prices at DSK_FAKE_NOW,
    with the config file's [pricing] holidays."""
    monkeypatch.setenv("DSK_FAKE_NOW", when.isoformat())
    monkeypatch.setenv("DSK_HOME", str(tmp_path))
    emu = emulator_factory()  # default clock: DSK_FAKE_NOW
    holiday = when.date() + timedelta(days=1)  # a Wednesday made a holiday by the config file
    (tmp_path / "config.toml").write_text(
        f'metrics = true\nlogs = true\n[pricing]\nholidays = ["{holiday.isoformat()}"]\n')
    async with AsyncClient(
        api_key=KEY, base_url=emu.base_url, config_file=tmp_path / "config.toml"
    ) as client:
        assert holiday in client.holidays.holidays and client.logs is not None
        assert client.logs.config.holidays == client.holidays
        r = await client.chat.completions.create(model="deepseek-flash", messages=MSGS)
        assert client.metrics.cost == _pricing.cost("deepseek-flash", r.usage, when) > 0
        rec_peak = _pricing.is_peak(datetime.fromtimestamp(client.clock(), timezone.utc), client.holidays)
        assert rec_peak is peak
        assert _pricing.is_peak(when + timedelta(days=1), client.holidays) is False  # the config's holiday
    assert Decimal(100) - emu.state.balance(KEY) == client.metrics.cost
    assert abs(client.clock() - when.timestamp()) < 60  # starts at the fake instant, then runs on


@pytest.mark.parametrize("bad", ["tomorrow", "2026-11-24 10:00", "2026-11-24T10:00:00"])
def test_fake_now_must_be_an_iso_time_with_an_offset(monkeypatch, bad):
    monkeypatch.setenv("DSK_FAKE_NOW", bad)
    with pytest.raises(UsageError, match="DSK_FAKE_NOW"):
        MetricsConfig()


@pytest.mark.parametrize(
    ("config", "env", "says"),
    [
        (
            '[pricing]\nholidays = ["2027-02-30"]\n',
            {},
            "config file [pricing] holidays: '2027-02-30' is not a date",
        ),
        ('[pricing]\nholidays = "2027-01-01"\n', {}, "must be a list of dates"),
        (
            '[pricing]\nholidays = ["2027-01-01"]\nworkdays = [2027-01-01]\n',
            {},
            "config file [pricing]: ['2027-01-01'] listed both as holidays and as workdays",
        ),
        ("", {"DSK_FAKE_NOW": "next tuesday"}, "DSK_FAKE_NOW must be an ISO 8601 time"),
    ],
)
def test_dsk_refuses_bad_pricing_settings_in_one_line(tmp_path, config, env, says):
    from tests.helpers.dsk import dsk_env, run_dsk

    (tmp_path / "config.toml").write_text(config)
    p = run_dsk("ask", "--mock", "hi", env=dsk_env(tmp_path, **env))
    assert p.returncode == 2 and p.stdout == "", p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("dsk: error: ") and says in p.stderr, p.stderr


@pytest.mark.parametrize("holiday", [True, False])
def test_dsk_batch_and_its_log_price_with_the_config_holidays(tmp_path, holiday):
    """`dsk batch` (key and URL known, so the client itself does not read the config file) prices
    with the config's [pricing] holidays, like its log rows: a Tuesday 10:00 made a holiday is
    off-peak in both."""
    import json
    import sqlite3

    from tests.helpers.dsk import dsk_env, run_dsk

    if holiday:
        (tmp_path / "config.toml").write_text('[pricing]\nholidays = ["2026-11-24"]\n')
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "messages": [{"role": "user", "content": "hello there"}]}\n')
    out = tmp_path / "out.jsonl"
    p = run_dsk("batch", str(src), "-o", str(out), "--mock", "-q",
                env=dsk_env(tmp_path, DSK_FAKE_NOW=PEAK.isoformat()))
    assert p.returncode == 0, p.stderr
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    usage = line["response"]["usage"]
    expected = _pricing.cost("deepseek-flash", usage, peak=not holiday)
    assert Decimal(str(line["cost"])) == expected > 0
    (logged,) = sqlite3.connect(tmp_path / "logs.sqlite3").execute("SELECT cost FROM requests").fetchall()
    assert logged[0] == pytest.approx(float(expected))


async def test_batch_prices_each_answer_on_its_own_side_of_noon(emulator_factory, tmp_path):
    """Two answers 0.2 s apart around 12:00:00 Beijing: the first at peak, the second off-peak (the
    batch runner's peak cache must not carry 11:59:59.9 over the boundary)."""
    import json

    from deepseek_kit import run_batch

    reads = iter([bj(2026, 11, 24, 11, 59, 59).timestamp() + 0.9] * 2)  # call 1: metrics, then batch

    def clock() -> float:
        return next(reads, bj(2026, 11, 24, 12, 0, 0).timestamp() + 0.1)

    emu = emulator_factory()
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "messages": [{"role": "user", "content": "Same."}]}) + "\n"
            for i in range(2)
        )
    )
    async with AsyncClient(api_key=KEY, base_url=emu.base_url, metrics=MetricsConfig(clock=clock)) as c:
        assert c.clock is clock
        await run_batch(c, src, tmp_path / "out.jsonl", model="deepseek-flash", concurrency=1, ordered=True)
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    peaks = [Decimal(str(x["cost"])) == _pricing.cost("deepseek-flash", x["response"]["usage"], peak=True)
             for x in lines]
    assert peaks == [True, False]


def test_dsk_shows_the_calendar_warning_as_one_line_on_a_terminal_only(tmp_path):
    """In 2027 (no calendar yet) at a weekday peak hour: a pipe gets no warning (scripts parse
    stderr); a terminal gets exactly one `dsk: warning:` line, not a Python warning dump."""
    import os
    import pty

    from tests.helpers.dsk import dsk_env, run_dsk

    env = dsk_env(tmp_path, DSK_FAKE_NOW="2027-03-02T10:00:00+08:00")  # a Tuesday
    p = run_dsk("ask", "--mock", "--no-think", "hi", env=env)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    master, slave = pty.openpty()
    try:
        q = subprocess.run(
            [sys.executable, "-m", "deepseek_kit.cli.main", "ask", "--mock", "--no-think", "hi"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
            timeout=60,
        )
        os.close(slave)
        err = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
    finally:
        os.close(master)
    assert q.returncode == 0
    lines = [ln for ln in err.decode().splitlines() if "2027" in ln]
    assert len(lines) == 1 and lines[0].startswith(
        "dsk: warning: deepseek-kit has no Chinese holiday calendar"
    ), err
    assert b"HolidayCalendarWarning" not in err and b"Traceback" not in err
