"""Emulator routing, authentication, headers, /models and /user/balance over real sockets."""

from __future__ import annotations

import re

import aiohttp
import pytest

from deepseek_kit.server import EmulatorConfig

BODY = {"model": "deepseek-flash", "messages": [{"role": "user", "content": "Hello"}]}
AUTH = {"Authorization": "Bearer sk-test-abcd"}


async def call(method, url, *, json=None, headers=None):
    async with aiohttp.ClientSession() as s, s.request(method, url, json=json, headers=headers) as r:
        return r.status, r.headers, await r.read()


def err(body: bytes) -> dict:
    import json as _json

    return _json.loads(body)["error"]


@pytest.mark.parametrize("prefix", ["", "/v1", "/beta"])
async def test_chat_served_under_each_prefix(emulator, prefix):
    status, _headers, body = await call("POST", f"{emulator.base_url}{prefix}/chat/completions",
                                       json=BODY, headers=AUTH)
    assert status == 200, body
    assert b'"object":"chat.completion"' in body
    assert emulator.state.requests_per_path[f"{prefix}/chat/completions"] == 1


async def test_every_response_has_trace_id_and_openresty(emulator):
    seen = set()
    for method, path, body in [("POST", "/chat/completions", BODY), ("GET", "/models", None),
                               ("GET", "/user/balance", None), ("GET", "/nope", None),
                               ("POST", "/chat/completions", {"model": 1})]:
        _, headers, _ = await call(method, emulator.base_url + path, json=body, headers=AUTH)
        assert headers["Server"] == "openresty"
        assert re.fullmatch(r"[0-9a-f]{32}", headers["x-ds-trace-id"])
        assert "x-request-id" not in headers
        assert "Retry-After" not in headers
        assert not any(h.lower().startswith("x-ratelimit") for h in headers)
        seen.add(headers["x-ds-trace-id"])
    assert len(seen) == 5


@pytest.mark.parametrize("path", ["/responses", "/v1/responses", "/completions", "/v1/completions",
                                  "/beta/models", "/chat/stream", "/v1/oauth/token"])
async def test_unknown_paths_are_404_unknown_error(emulator, path):
    status, _, body = await call("POST", emulator.base_url + path, json=BODY, headers=AUTH)
    assert status == 404
    assert err(body)["message"] == "Unknown error"


async def test_wrong_method_is_404(emulator):
    status, _, _ = await call("GET", emulator.base_url + "/chat/completions", headers=AUTH)
    assert status == 404


async def test_missing_auth_header(emulator):
    status, _, body = await call("POST", emulator.base_url + "/chat/completions", json=BODY)
    assert status == 401
    assert err(body) == {"message": "Authentication Fails (auth header format should be Bearer sk-...)",
                         "type": "authentication_error", "param": None, "code": "invalid_request_error"}


async def test_unauthenticated_unknown_path_is_401(emulator):
    status, _, _ = await call("GET", emulator.base_url + "/")
    assert status == 401


@pytest.mark.parametrize("value", ["Basic abc", "Bearer", "Bearer    ", "sk-abc"])
async def test_malformed_auth_header(emulator, value):
    status, _, body = await call("POST", emulator.base_url + "/chat/completions", json=BODY,
                                 headers={"Authorization": value})
    assert status == 401
    assert "auth header format" in err(body)["message"]


async def test_unknown_key_is_masked_to_last_four(emulator_factory):
    emu = emulator_factory(api_keys={"sk-good-key-1234"})
    status, _, body = await call("POST", emu.base_url + "/chat/completions", json=BODY,
                                 headers={"Authorization": "Bearer sk-secret-value-wxyz"})
    assert status == 401
    e = err(body)
    assert e["message"] == "Authentication Fails, Your api key: ****wxyz is invalid"
    assert "secret" not in body.decode()
    status, _, _ = await call("POST", emu.base_url + "/chat/completions", json=BODY,
                              headers={"Authorization": "Bearer sk-good-key-1234"})
    assert status == 200


@pytest.mark.parametrize("prefix", ["", "/v1"])
async def test_models(emulator, prefix):
    status, headers, body = await call("GET", f"{emulator.base_url}{prefix}/models", headers=AUTH)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    import json

    assert json.loads(body) == {"object": "list", "data": [
        {"id": "deepseek-flash", "object": "model", "owned_by": "deepseek"},
        {"id": "deepseek-v4-pro", "object": "model", "owned_by": "deepseek"},
    ]}


@pytest.mark.parametrize("prefix", ["", "/v1"])
async def test_balance_shape(emulator, prefix):
    import json

    status, _, body = await call("GET", f"{emulator.base_url}{prefix}/user/balance", headers=AUTH)
    assert status == 200
    assert json.loads(body) == {"is_available": True, "balance_infos": [
        {"currency": "CNY", "total_balance": "100.00", "granted_balance": "10.00",
         "topped_up_balance": "90.00"}]}


async def test_balance_usd_and_per_key(emulator_factory):
    import json

    emu = emulator_factory(EmulatorConfig(currency="USD", balance={"sk-poor": "0"}))
    _, _, body = await call(
        "GET", emu.base_url + "/user/balance", headers={"Authorization": "Bearer sk-poor"}
    )
    assert json.loads(body) == {"is_available": False, "balance_infos": [
        {"currency": "USD", "total_balance": "0.00", "granted_balance": "0.00", "topped_up_balance": "0.00"}]}


def test_emulator_thread_from_sync_code(emulator):
    import urllib.request

    req = urllib.request.Request(emulator.base_url + "/models", headers=AUTH)
    with urllib.request.urlopen(req) as r:
        assert r.status == 200
    assert emulator.state.total_requests == 1
    assert emulator.port > 0 and emulator.base_url.endswith(f":{emulator.port}")


def test_stop_is_idempotent_and_frees_port(emulator_factory):
    import socket

    emu = emulator_factory()
    port = emu.port
    emu.stop()
    emu.stop()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_config_from_mapping_and_toml(tmp_path):
    cfg = EmulatorConfig.from_mapping({"api_keys": ["sk-a"], "faults": "status=503", "seed": 3})
    assert cfg.api_keys == {"sk-a"} and cfg.faults == "status=503" and cfg.seed == 3
    with pytest.raises(ValueError, match="unknown emulator config keys: nope"):
        EmulatorConfig.from_mapping({"nope": 1})
    path = tmp_path / "emu.toml"
    path.write_text('[emulator]\ncurrency = "usd"\ndefault_tokens = 7\n[emulator.balance]\n"sk-x" = "5.5"\n')
    cfg = EmulatorConfig.from_toml(path)
    assert cfg.currency == "USD" and cfg.default_tokens == 7
    from decimal import Decimal

    assert cfg.balance == {"sk-x": Decimal("5.5")}


def test_run_emulator_serves_until_terminated():
    """`dsk serve --mock` path: run_emulator() blocks and serves; SIGTERM stops it cleanly."""
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = f"from deepseek_kit.server import run_emulator; run_emulator('127.0.0.1', {port})"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/models", headers=AUTH)
        for _ in range(400):
            try:
                with urllib.request.urlopen(req) as r:
                    assert r.status == 200 and r.headers["Server"] == "openresty"
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.05)
        else:
            raise AssertionError("emulator never came up")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert b"DeepSeek emulator on http://127.0.0.1" in out
