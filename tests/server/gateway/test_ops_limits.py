# Gateway-wide caps ([gateway] rpm / max_in_flight: 429 with Retry-After at admission) and per-upstream
# caps ([[upstream]] max_in_flight / rpm: a full upstream is skipped, the next one serves), in-process
# and through Redis.
from __future__ import annotations

import json
import threading
import time

from .ops_helpers import AppThread, StreamReader, chat_body, config, post


def test_gateway_rpm_and_in_flight_caps(emulator_factory):
    emu = emulator_factory(faults="delay_chunks=0.05;tokens=40")
    with AppThread(config(("emu", emu.base_url, ""), gateway="rpm = 3\nmax_in_flight = 2")) as gw:
        s1, s2 = (StreamReader(gw.base_url, chat_body(stream=True)) for _ in range(2))
        s1.start(), s2.start()
        assert s1.first.wait(10) and s2.first.wait(10)
        status, headers, body = post(gw.base_url, chat_body(max_tokens=2))  # third in flight
        assert status == 429 and "retry-after" in headers
        assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"
        assert "gateway's in_flight" in json.loads(body)["error"]["message"]
        s1.join(10), s2.join(10)
        assert s1.done and s2.done
        status, _, _ = post(gw.base_url, chat_body(max_tokens=2))  # the third request of the minute
        assert status == 200
        status, headers, body = post(gw.base_url, chat_body(max_tokens=2))
        assert status == 429 and "gateway's rpm" in json.loads(body)["error"]["message"]


def _upstream_caps(a, b, extra: str = "") -> None:
    with AppThread(config(("a", a.base_url, "max_in_flight = 1\nrpm = 100"), ("b", b.base_url, ""),
                          extra=extra)) as gw:
        s = StreamReader(gw.base_url, chat_body(stream=True))
        s.start()
        assert s.first.wait(10)
        got: list[str] = []

        def one() -> None:
            status, headers, _ = post(gw.base_url, chat_body(max_tokens=2))
            got.append(f"{status} {headers.get('x-dsk-upstream')}")

        ts = [threading.Thread(target=one) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(20)
        assert got == ["200 b"] * 4  # a is full (its one slot streams): b serves, nobody waits
        s.join(15)
        assert s.done
        status, headers, _ = post(gw.base_url, chat_body(max_tokens=2))
        assert status == 200 and headers["x-dsk-upstream"] == "a"  # a's slot is free again


def test_per_upstream_in_flight_cap_moves_calls_to_the_next_upstream(emulator_factory):
    a = emulator_factory(faults="delay_chunks=0.05;tokens=30")
    b = emulator_factory()
    _upstream_caps(a, b)


def test_per_upstream_caps_on_redis_state(emulator_factory, redis_url, tmp_path):
    a = emulator_factory(faults="delay_chunks=0.05;tokens=30")
    b = emulator_factory()
    # [limits] redis_url is how the upstream caps reach Redis with auth off (with keys: the state URL)
    _upstream_caps(a, b, extra=f'[limits]\nredis_url = "{redis_url}"\n')


def test_tpm_counts_streamed_tokens_as_they_arrive(emulator_factory):
    # tpm 300: a stream is admitted on its ~30-token input estimate; once it has relayed 350 chunks
    # (still streaming), those tokens are counted and the next request is refused on tpm.
    emu = emulator_factory(faults="delay_chunks=0.01;tokens=700")
    with AppThread(config(("emu", emu.base_url, ""), gateway="tpm = 300")) as gw:
        s = StreamReader(gw.base_url, chat_body(stream=True))
        s.start()
        end = time.monotonic() + 20
        while len(s.payloads) < 350:
            assert time.monotonic() < end and s.is_alive()
            time.sleep(0.02)
        time.sleep(0.6)  # a couple of meter ticks
        assert not s.done  # still streaming
        status, headers, body = post(gw.base_url, chat_body(stream=True, max_tokens=2))
        assert status == 429 and "gateway's tpm" in json.loads(body)["error"]["message"]
        assert int(headers["retry-after"]) >= 1
        s.join(30)
        assert s.done


def test_every_upstream_full_gives_429_with_retry_after(emulator_factory):
    a = emulator_factory(faults="delay_chunks=0.05;tokens=30")
    with AppThread(config(("a", a.base_url, "max_in_flight = 1"))) as gw:
        s = StreamReader(gw.base_url, chat_body(stream=True))
        s.start()
        assert s.first.wait(10)
        status, headers, body = post(gw.base_url, chat_body(max_tokens=2))
        err = json.loads(body)["error"]
        assert status == 429 and "retry-after" in headers and err["code"] == "rate_limit_exceeded", err
        s.join(15)
        assert s.done
