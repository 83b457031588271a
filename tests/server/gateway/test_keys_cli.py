"""`dsk keys` as a subprocess against a real SQLite file and a real redis-server: the key printed
once, alone on the last line; list/show/usage never print a secret; revoke and rotate take effect
for a gateway process; errors are one `dsk: error:` line with exit status 2."""

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from deepseek_kit._wire.pricing import BEIJING
from deepseek_kit.server.gateway.keys import InvalidKeyError
from deepseek_kit.server.gateway.state import open_state

PEPPER = "cli-test-pepper-0123456789"
TOKEN_RE = re.compile(r"sk-dsk-[A-Za-z0-9]{8}-[A-Za-z0-9_\-]{43}")


def _config(tmp_path, url):
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[gateway]\nlisten = "127.0.0.1:8080"\nstate = "{url}"\nadmin_key_env = "DSK_ADMIN_KEY"\n'
        'pepper_env = "MY_PEPPER"\ncurrency = "usd"\n'
    )
    return path, url


@pytest.fixture(params=["sqlite", "redis"])
def config(request, tmp_path):
    url = f"sqlite:///{tmp_path}/gw.db" if request.param == "sqlite" else request.getfixturevalue("redis_url")
    return _config(tmp_path, url)


def dsk(*args, env_extra=None):
    env = {**os.environ, "MY_PEPPER": PEPPER, **(env_extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(__file__).parents[3] / "src"),
                                                    os.environ.get("PYTHONPATH", "")] if p)
    return subprocess.run([sys.executable, "-m", "deepseek_kit.cli.main", "keys", *args], env=env,
                          capture_output=True, text=True, timeout=60)


async def test_create_prints_the_key_once_alone_on_the_last_line(config):
    path, url = config
    r = dsk("create", "--config", str(path), "--name", "team-a", "--models", "deepseek-flash,deepseek-v4-pro",
            "--rpm", "60", "--tpm", "5000", "--max-in-flight", "3", "--budget-daily", "2.5",
            "--budget-monthly", "40", "--expires", "2099-01-31", "--allow-ip", "10.0.0.0/8",
            "--allow-ip", "127.0.0.1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    token = lines[-1]
    assert TOKEN_RE.fullmatch(token)
    assert r.stdout.count(token[16:]) == 1 and token not in r.stderr
    st = open_state(url, pepper=PEPPER.encode())
    try:
        key = await st.authenticate(token, "127.0.0.1")
        assert key.name == "team-a" and key.models == {"deepseek-flash", "deepseek-v4-pro"}
        assert (key.rpm, key.tpm, key.max_in_flight) == (60, 5000, 3)
        assert (key.budget_daily, key.budget_monthly) == (Decimal("2.5"), Decimal(40))
        assert key.expires_at == datetime(2099, 1, 31, tzinfo=BEIJING)  # a date is midnight Beijing time
        await st.settle(await st.reserve(key, Decimal("0.5"), model="deepseek-flash"), Decimal("0.125"))
        await st.flush()
    finally:
        await st.aclose()

    outputs = []
    for args in (["list"], ["list", "--json"], ["show", key.id], ["show", key.prefix, "--json"],
                 ["usage", key.id], ["usage", key.id, "--json", "--since", "2026-01-01"]):
        r = dsk(*args[:1], "--config", str(path), *args[1:])
        assert r.returncode == 0, (args, r.stderr)
        outputs.append(r.stdout)
    everything = "".join(outputs)
    assert token not in everything and token[16:30] not in everything and token[-14:] not in everything
    assert key.prefix in outputs[0] and "team-a" in outputs[0] and "active" in outputs[0]
    shown = json.loads(outputs[3])
    assert shown["spent_today"] == "0.125" and shown["remaining"] == "2.375" and shown["currency"] == "USD"
    usage = [json.loads(line) for line in outputs[5].splitlines()]
    assert [(u["model"], u["requests"], u["cost"]) for u in usage] == [("deepseek-flash", 1, "0.125")]
    assert "0.125" in outputs[4]


async def test_rotate_and_revoke(config):
    path, url = config
    token = dsk("create", "--config", str(path), "--name", "x").stdout.splitlines()[-1]
    key_id = json.loads(dsk("list", "--config", str(path), "--json").stdout)["id"]
    r = dsk("rotate", "--config", str(path), key_id)
    assert r.returncode == 0, r.stderr
    new = r.stdout.splitlines()[-1]
    assert TOKEN_RE.fullmatch(new) and new != token
    st = open_state(url, pepper=PEPPER.encode())
    try:
        with pytest.raises(InvalidKeyError):
            await st.authenticate(token, None)
        await st.authenticate(new, None)
        r = dsk("revoke", "--config", str(path), new[:15])  # by display prefix
        assert r.returncode == 0 and new not in r.stdout
        st._forget()  # this test's process: do not wait for the half-second revalidation
        with pytest.raises(InvalidKeyError):
            await st.authenticate(new, None)
    finally:
        await st.aclose()
    assert '"status": "revoked"' in dsk("list", "--config", str(path), "--json").stdout


def test_errors_are_one_line_exit_2(tmp_path):
    path, _ = _config(tmp_path, f"sqlite:///{tmp_path}/gw.db")
    cases = [
        (["show", "--config", str(path), "key_nope"], "no key with id"),
        (["list", "--config", str(tmp_path / "missing.toml")], "cannot read the gateway config"),
        (["create", "--config", str(path), "--name", "x", "--allow-ip", "10.0.0.0/33"], "not an IP network"),
    ]
    for args, words in cases:
        r = dsk(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("dsk: error:") and words in r.stderr and r.stderr.count("\n") == 1
    r = dsk("list", "--config", str(path), env_extra={"MY_PEPPER": ""})
    assert r.returncode == 2 and "MY_PEPPER" in r.stderr and "not set" in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway]\nlisten = 1\n")
    r = dsk("list", "--config", str(bad))
    assert r.returncode == 2 and "state" in r.stderr
    r = dsk("create", "--config", str(path), "--name", "x", "--budget-daily", "lots")
    assert r.returncode == 2 and "--budget-daily" in r.stderr
