"""Without a metrics record (metrics off, or counting in another currency), a logged row's tokens
and cost are those `build_record` gives the metrics step for the same call: every request body
shape (model first, later, escaped, missing, not a string, not JSON), every usage shape (DeepSeek's
hit/miss split, OpenAI-style cached tokens, reasoning, none in the body), client-cache hits, peak
and off-peak."""

from __future__ import annotations

import itertools
from datetime import datetime, timezone

import pytest

from deepseek_kit._logs.store import REQUEST_COLUMNS, LogConfig
from deepseek_kit._steps.logs import LogStep
from deepseek_kit._steps.metrics.step import build_record
from deepseek_kit._transport.request import Request, Response
from deepseek_kit._transport.timeouts import Timeout
from deepseek_kit._wire.types import chat_completion_decoder

BODIES = [
    b'{"model":"deepseek-flash","messages":[{"role":"user","content":"hi"}]}',
    b'{"messages":[{"role":"user","content":"hi"}],"model":"deepseek-v4-pro","max_tokens":5}',
    b'{"model":"deepseek-fla\\u0073h","messages":[]}',
    b'{"messages":[{"role":"user","content":"hi"}]}',
    b'{"model":7,"messages":[]}',
    b'{"model":"deepseek-flash", not json',
    b'{"model":"no-such-model","messages":[]}',
]
USAGES = [
    b'{"prompt_tokens":1200,"completion_tokens":345,"total_tokens":1545,"prompt_cache_hit_tokens":1000,'
    b'"prompt_cache_miss_tokens":200,"completion_tokens_details":{"reasoning_tokens":40}}',
    b'{"prompt_tokens":90,"completion_tokens":7,"total_tokens":97,"prompt_tokens_details":{"cached_tokens":64}}',
    b'{"prompt_tokens":12,"completion_tokens":0,"total_tokens":12}',
    None,
]
PEAK = datetime(2026, 12, 3, 2, 30, tzinfo=timezone.utc).timestamp()  # Thursday 10:30 Beijing
OFF_PEAK = datetime(2026, 12, 5, 2, 30, tzinfo=timezone.utc).timestamp()  # Saturday


def answer(usage: bytes | None) -> bytes:
    doc = (b'{"id":"r1","object":"chat.completion","created":1,"model":"deepseek-flash","choices":['
           b'{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]')
    return doc + (b',"usage":' + usage if usage is not None else b"") + b"}"


@pytest.mark.parametrize("currency", ["CNY", "USD"])
def test_row_counts_and_prices_as_build_record(tmp_path, currency):
    step = LogStep(LogConfig(path=tmp_path / "logs.sqlite3", content=False, currency=currency))
    i = {c: REQUEST_COLUMNS.index(c) for c in ("prompt_tokens", "cache_hit_tokens", "cache_miss_tokens",
                                               "completion_tokens", "reasoning_tokens", "cost")}
    costs = []
    for body, usage, cache_hit, wall in itertools.product(BODIES, USAGES, (False, True), (PEAK, OFF_PEAK)):
        req = Request("POST", "http://127.0.0.1:9/chat/completions", "/chat/completions", body=body,
                      timeout=Timeout())
        resp = Response(200, {"content-type": "application/json"}, body=answer(usage))
        resp.cache_hit = cache_hit
        row = step._row(req, resp, None, wall, 0.25, 0.0, None, None)
        final = chat_completion_decoder.decode(resp.body)
        rec = build_record(req, resp, wall, 0.0, 0.25, step._prices, final.usage)
        got = {c: row[n] for c, n in i.items()}
        assert got == {"prompt_tokens": rec.prompt_tokens, "cache_hit_tokens": rec.prompt_cache_hit_tokens,
                       "cache_miss_tokens": rec.prompt_cache_miss_tokens,
                       "completion_tokens": rec.completion_tokens, "reasoning_tokens": rec.reasoning_tokens,
                       "cost": float(rec.cost)}, (body, usage, cache_hit, wall)
        costs.append(got["cost"])
    assert len(set(costs)) > 4  # priced calls, peak and off-peak, not only zeros
