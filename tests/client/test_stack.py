"""The production stack wired together: config-file profiles (endpoints, limits, cache, metrics)
used from the library and from `dsk`, against real emulators."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from deepseek_kit import AsyncClient, Client

NON_THINKING_T0 = {"thinking": False, "temperature": 0}
MSGS = [{"role": "user", "content": "stack test"}]


def write_profile(home, primary, secondary, extra=""):
    (home / "config.toml").write_text(f'''
model = "deepseek-flash"

[profiles.dual]
[[profiles.dual.endpoints]]
name = "cloud"
base_url = "{primary}"
api_key_env = "DSK_TEST_CLOUD_KEY"
[[profiles.dual.endpoints]]
name = "private"
base_url = "{secondary}"
api_key = "sk-private-1234"
priority = 1
[profiles.dual.limits]
rpm = 6000
max_in_flight = 8
[profiles.dual.cache]
backend = "memory"
[profiles.dual.metrics]
currency = "USD"
{extra}''')


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DSK_HOME", str(tmp_path))
    monkeypatch.setenv("DSK_TEST_CLOUD_KEY", "sk-cloud-5678")
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    monkeypatch.delenv("DEEPSEEK_BASE_URL", raising=False)
    return tmp_path


async def test_profile_builds_the_whole_stack(home, emulator_factory):
    a, b = emulator_factory(faults="status=503"), emulator_factory()
    write_profile(home, a.base_url, b.base_url)
    c = AsyncClient(profile="dual")
    assert c.router is not None and c.limits is not None and c.cache is not None
    r1 = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, **NON_THINKING_T0)
    r2 = await c.chat.completions.create(model="deepseek-flash", messages=MSGS, **NON_THINKING_T0)
    assert r1.choices[0].message.content == r2.choices[0].message.content
    # the first call failed over from the 503 endpoint; the second came from the cache
    assert a.state.requests_per_path["/chat/completions"] == 1
    assert b.state.requests_per_path["/chat/completions"] == 1
    assert c.cache.stats.hits == 1
    s = c.metrics.snapshot()
    assert s["requests"] == 2 and s["cache_hit_rate"] == 0.5
    await c.close()


def test_sync_client_exposes_the_same_stack(home, emulator_factory):
    a, b = emulator_factory(), emulator_factory()
    write_profile(home, a.base_url, b.base_url)
    with Client(profile="dual") as c:
        c.chat.completions.create(model="deepseek-flash", messages=MSGS)
        assert c.metrics.snapshot()["requests"] == 1


def test_dsk_uses_the_profile(home, emulator_factory):
    a, b = emulator_factory(faults="status=503"), emulator_factory()
    write_profile(home, a.base_url, b.base_url)
    env = {**os.environ, "DSK_HOME": str(home), "DSK_TEST_CLOUD_KEY": "sk-cloud-5678"}
    env.pop("DEEPSEEK_API_KEY", None)
    out = subprocess.run([sys.executable, "-m", "deepseek_kit.cli.main", "ask", "--profile", "dual",
                          "--no-think", "hello"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() and "emulator" not in out.stderr
    assert b.state.requests_per_path["/chat/completions"] == 1  # failed over to the private endpoint
    for text in (out.stdout, out.stderr):
        assert "sk-cloud-5678" not in text and "sk-private-1234" not in text


async def test_library_logs_only_when_asked(home, emulator):
    import sqlite3

    c = AsyncClient(api_key="sk-lib-logs-4321", base_url=emulator.base_url)
    assert c.logs is None  # off by default in the library
    await c.close()
    c = AsyncClient(api_key="sk-lib-logs-4321", base_url=emulator.base_url, logs=True)
    await c.chat.completions.create(model="deepseek-flash", messages=MSGS)
    await c.close()  # waits for the row to be written
    db = home / "logs.sqlite3"
    rows = sqlite3.connect(db).execute("select count(*) from requests").fetchone()[0]
    assert rows == 1
    assert b"sk-lib-logs-4321" not in db.read_bytes()
