"""The access log's batched writer: lines are buffered on the event loop and written together, on
time, on a full buffer and at close; outside a loop each line is written at once."""

from __future__ import annotations

import asyncio
import io
import logging

from deepseek_kit.server.gateway.accesslog import AccessLogHandler


async def test_lines_are_written_together_after_the_delay():
    out = io.StringIO()
    h = AccessLogHandler(out, delay=0.05)
    h.line('{"a":1}')
    h.line('{"a":2}')
    assert out.getvalue() == ""
    for _ in range(200):  # generous: a loaded machine may run the timer late
        await asyncio.sleep(0.02)
        if out.getvalue():
            break
    assert out.getvalue() == '{"a":1}\n{"a":2}\n'


async def test_a_full_buffer_is_written_at_once_and_close_writes_the_rest():
    out = io.StringIO()
    h = AccessLogHandler(out, delay=60.0, max_lines=3)
    for i in range(4):
        h.line(str(i))
    assert out.getvalue() == "0\n1\n2\n"
    h.close()
    assert out.getvalue() == "0\n1\n2\n3\n"


def test_records_through_logging_and_outside_a_loop_are_written_at_once():
    out = io.StringIO()
    log = logging.getLogger("test.accesslog.plain")
    log.propagate = False
    h = AccessLogHandler(out)
    log.addHandler(h)
    log.setLevel(logging.INFO)
    try:
        log.info("one %s", "line")
        assert out.getvalue() == "one line\n"
    finally:
        log.removeHandler(h)
