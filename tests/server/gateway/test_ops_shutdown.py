# Graceful shutdown: SIGTERM closes the listener at once, lets streams in flight finish within
# [gateway] shutdown_grace, then ends the others with a DeepSeek-shaped error event (no [DONE]);
# /readyz says 503 as soon as the drain begins.
from __future__ import annotations

import json
import signal
import socket
import time

from .ops_helpers import UPSTREAM_KEY, AppThread, StreamReader, chat_body, config, get, serve


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return True
    return False


def test_sigterm_drains_streams_then_closes_them_with_an_error_event(tmp_path, emulator_factory):
    emu = emulator_factory(faults="delay_chunks=0.1;tokens=150")  # 15 s streams unless max_tokens says less
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('[gateway]\nlisten = "127.0.0.1:0"\nauth = "none"\nshutdown_grace = 2.0\n\n'
                   f'[[upstream]]\nname = "emu"\nbase_url = "{emu.base_url}"\napi_key_env = "GW_KEY"\n')
    proc, url = serve(cfg, tmp_path, env={"GW_KEY": UPSTREAM_KEY})
    port = int(url.rsplit(":", 1)[1])
    try:
        long = StreamReader(url, chat_body(stream=True))
        short = StreamReader(url, chat_body(stream=True, max_tokens=12))  # ~1.2 s
        long.start()
        short.start()
        assert long.first.wait(10) and short.first.wait(10)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        deadline = t0 + 2.0
        while not _refused(port):
            assert time.monotonic() < deadline, "the listener still accepts after SIGTERM"
            time.sleep(0.05)
        closed_after = time.monotonic() - t0
        short.join(10)
        long.join(15)
        ended = time.monotonic() - t0
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert closed_after < 1.0
    assert short.error is None and short.done, short.payloads[-2:]
    assert long.error is None and long.status == 200
    assert b"[DONE]" not in long.payloads
    last = json.loads(long.payloads[-1])
    assert last["error"]["code"] == "gateway_shutdown"
    assert last["error"]["type"] == "service_unavailable_error"
    assert 1.5 <= ended < 2.0 + 6.0  # the grace, then the close (generous bound for a shared box)
    assert UPSTREAM_KEY not in err


def test_readyz_says_503_as_soon_as_the_drain_begins(emulator_factory):
    emu = emulator_factory(faults="delay_chunks=0.1;tokens=100")
    with AppThread(config(("emu", emu.base_url, ""), gateway="shutdown_grace = 1.0")) as gw:
        assert get(gw.base_url, "/readyz")[0] == 200
        s = StreamReader(gw.base_url, chat_body(stream=True))
        s.start()
        assert s.first.wait(10)
        drain = gw.run(gw.app.shutdown())  # on_shutdown: what aiohttp runs after closing the listener
        time.sleep(0.2)
        status, body = get(gw.base_url, "/readyz")
        assert status == 503 and json.loads(body)["status"] == "draining"
        drain.result(15)
        s.join(10)
    assert b"[DONE]" not in s.payloads
    assert json.loads(s.payloads[-1])["error"]["code"] == "gateway_shutdown"
