# Upstream balance: after a 402 from a DeepSeek upstream no more traffic goes to it (the next
# upstream serves) until a poll sees its balance back; the balances are Prometheus gauges; with every
# upstream out of balance the caller gets a DeepSeek-shaped 503.
from __future__ import annotations

import json
import time

from .ops_helpers import UPSTREAM_KEY, AppThread, chat_body, config, get, post


def _metric(text: str, name: str, labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def _wait(pred, timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_402_takes_an_upstream_out_until_its_balance_is_back(emulator_factory):
    a, b = emulator_factory(), emulator_factory()
    a.state.set_balance(UPSTREAM_KEY, 0)
    cfg = config(("a", a.base_url, ""), ("b", b.base_url, ""),
                 gateway="balance_poll = 60\nbalance_recheck = 0.3")  # no periodic poll in this test
    with AppThread(cfg) as gw:
        status, headers, _ = post(gw.base_url, chat_body())
        assert status == 200 and headers["x-dsk-upstream"] == "b"  # a answered 402, b served
        assert a.state.statuses[402] == 1
        chats_a = a.state.requests_per_path["/chat/completions"]
        for _ in range(5):
            status, headers, _ = post(gw.base_url, chat_body())
            assert status == 200 and headers["x-dsk-upstream"] == "b"
        assert a.state.requests_per_path["/chat/completions"] == chats_a  # no traffic to a
        assert _wait(lambda: _metric(get(gw.base_url, "/metrics")[1].decode(),
                                     "dsk_gateway_upstream_balance", 'upstream="a"') == 0.0)  # rechecked
        metrics = get(gw.base_url, "/metrics")[1].decode()
        assert _metric(metrics, "dsk_gateway_upstream_out_of_balance", 'upstream="a"') == 1.0
        assert _metric(metrics, "dsk_gateway_upstream_out_of_balance", 'upstream="b"') == 0.0
        assert UPSTREAM_KEY not in metrics

        a.state.set_balance(UPSTREAM_KEY, 25)  # topped up: the next recheck puts a back
        assert _wait(lambda: _metric(get(gw.base_url, "/metrics")[1].decode(),
                                     "dsk_gateway_upstream_out_of_balance", 'upstream="a"') == 0.0)
        status, headers, _ = post(gw.base_url, chat_body())
        assert status == 200 and headers["x-dsk-upstream"] == "a"
        metrics = get(gw.base_url, "/metrics")[1].decode()
        assert _metric(metrics, "dsk_gateway_upstream_balance", 'upstream="a"') == 25.0

        a.state.set_balance(UPSTREAM_KEY, 0)
        b.state.set_balance(UPSTREAM_KEY, 0)
        status, _, body = post(gw.base_url, chat_body())  # both answer 402: both out
        assert status == 503
        served_before = a.state.total_requests + b.state.total_requests
        status, headers, body = post(gw.base_url, chat_body())
        err = json.loads(body)["error"]
        assert status == 503 and err["code"] == "upstream_insufficient_balance" and "retry-after" in headers
        assert a.state.total_requests + b.state.total_requests - served_before <= 2  # polls, no chats


def test_periodic_poll_takes_an_empty_account_out_before_any_402(emulator_factory):
    a, b = emulator_factory(), emulator_factory()
    a.state.set_balance(UPSTREAM_KEY, 0)
    cfg = config(("a", a.base_url, ""), ("b", b.base_url, ""), gateway="balance_poll = 0.2")
    with AppThread(cfg) as gw:
        assert _wait(lambda: _metric(get(gw.base_url, "/metrics")[1].decode(),
                                     "dsk_gateway_upstream_out_of_balance", 'upstream="a"') == 1.0)
        # the two accounts are polled independently: b's first answer may come after a's
        assert _wait(lambda: _metric(get(gw.base_url, "/metrics")[1].decode(),
                                     "dsk_gateway_upstream_balance", 'upstream="b"') == 100.0)
        status, headers, _ = post(gw.base_url, chat_body())
        assert status == 200 and headers["x-dsk-upstream"] == "b"
    assert a.state.statuses[402] == 0 and a.state.requests_per_path["/chat/completions"] == 0
