"""`dsk clients` in process against a real SQLite file and a real redis-server: create prints the
secret once, alone on the last line; list (table and JSON) never shows a secret; rotate and revoke
take effect on the token endpoint's credential check; rotate-signing-key; one-line errors."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from deepseek_kit.server.gateway.oauth_tokens import tokens_for
from deepseek_kit.server.gateway.state import open_state
from tests.helpers.dsk import dsk_env

PEPPER = "clients-cli-pepper-0123456789"
SECRET_RE = re.compile(r"dsk-cs-[A-Za-z0-9_\-]{43}")


@pytest.fixture(params=["sqlite", "redis"])
def setup(request, tmp_path):
    url = f"sqlite:///{tmp_path}/gw.db" if request.param == "sqlite" else request.getfixturevalue("redis_url")
    path = tmp_path / "gateway.toml"
    path.write_text(f'[gateway]\nlisten = "127.0.0.1:8080"\nstate = "{url}"\npepper_env = "MY_PEPPER"\n')

    async def make_key():
        st = open_state(url, pepper=PEPPER.encode())
        try:
            _, key = await st.create_key("team")
            return key
        finally:
            await st.aclose()

    key = asyncio.run(make_key())
    return str(path), url, key, dsk_env(tmp_path, MY_PEPPER=PEPPER)


def _check(url, client_id, secret):
    async def go():
        st = open_state(url, pepper=PEPPER.encode())
        try:
            return await tokens_for(st).clients.check(client_id, secret)
        finally:
            await st.aclose()

    return asyncio.run(go())


def test_create_list_rotate_revoke(setup, dsk_main):
    path, url, key, env = setup
    r = dsk_main("clients", "create", "--config", path, "--name", "billing-bot", "--key", key.prefix,
                 "--scope", "chat", "--token-ttl", "300", env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    secret = lines[-1]
    assert SECRET_RE.fullmatch(secret) and r.stdout.count(secret) == 1 and secret not in r.stderr
    client_id = re.search(r"client_id: (dskc_[0-9a-f]{20})", r.stdout).group(1)
    rec = _check(url, client_id, secret)
    assert rec is not None and (rec.key_id, rec.scope, rec.token_ttl) == (key.id, "chat", 300)

    table = dsk_main("clients", "list", "--config", path, env=env)
    as_json = dsk_main("clients", "list", "--config", path, "--json", env=env)
    assert table.returncode == 0 and as_json.returncode == 0
    assert client_id in table.stdout and "billing-bot" in table.stdout and "active" in table.stdout
    row = json.loads(as_json.stdout)
    assert row == {**row, "client_id": client_id, "key_id": key.id, "scope": "chat", "token_ttl": 300,
                   "revoked": None}
    for out in (table.stdout, as_json.stdout, table.stderr):
        assert secret not in out and secret[7:20] not in out

    r = dsk_main("clients", "rotate", "--config", path, client_id, env=env)
    new = r.stdout.splitlines()[-1]
    assert r.returncode == 0 and SECRET_RE.fullmatch(new) and new != secret
    assert _check(url, client_id, secret) is None and _check(url, client_id, new) is not None

    r = dsk_main("clients", "revoke", "--config", path, client_id, env=env)
    assert r.returncode == 0 and "within a second" in r.stdout and new not in r.stdout
    assert _check(url, client_id, new) is None
    assert json.loads(dsk_main("clients", "list", "--config", path, "--json", env=env).stdout)["revoked"]

    r = dsk_main("clients", "rotate-signing-key", "--config", path, env=env)
    assert r.returncode == 0 and "new token-signing key" in r.stdout


def test_errors_are_one_line_exit_2(setup, dsk_main):
    path, _, key, env = setup
    cases = [
        (["create", "--config", path, "--name", "x", "--key", "key_nope"], "no key with id"),
        (["create", "--config", path, "--name", "x", "--key", key.id, "--token-ttl", "0"], "token_ttl"),
        (["create", "--config", path, "--name", "x", "--key", key.id, "--scope", 'a"b'], "scope"),
        (["revoke", "--config", path, "dskc_00000000000000000000"], "no OAuth client"),
        (["rotate", "--config", path, "not-an-id"], "no OAuth client"),
    ]
    for args, words in cases:
        r = dsk_main("clients", *args, env=env)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("dsk: error:") and words in r.stderr and r.stderr.count("\n") == 1
    r = dsk_main("clients", "create", "--config", path, "--name", "x", "--key", key.id, "--token-ttl",
                 "soon", env=env)
    assert r.returncode == 2 and "--token-ttl" in r.stderr
