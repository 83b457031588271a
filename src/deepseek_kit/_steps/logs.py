"""`LogStep`: the pipeline step that records every call in the logs database (`_logs/store.py`).

Put it outermost (`AsyncClient(logs=True)` does; by hand: first in `steps=`), so one row covers the
whole call, retries included, and answers from the client cache are logged too (`cache_hit`).

What it does on the event loop, per call: two clock reads and one `put` of a `functools.partial`
onto the writer's queue; for a stream, one more when it ends: reading the answer the stream layer
accumulated (`Response.final`, set by `AsyncStream`), since the step must never consume a stream
itself. Everything else runs on the writer thread, in `_row`: decoding the request body (model,
messages, parameters) and a non-stream answer, and redacting error messages.

Tokens and cost come from the call's `RequestRecord`: the one the metrics step (inside this one)
left in `request.options["record"]` (`_steps/metrics/record.RECORD_OPTION`), so the answer is not
split and priced twice; with metrics off (or counting in another currency) the step builds the
record itself with the same function (`_steps/metrics/step.build_record`: the one usage split,
the one price cache, `_wire/pricing.PriceBook`).

Never stored: request headers (the API key travels there, and only there) and the client's key in
any error text (`redact`). With `LogConfig(content=False)` only the numbers are stored. A 200 whose
body does not decode is logged as the error the caller got (outcome "error", `APIConnectionError`),
and nothing of that body is kept: a server that echoes the request (an HTML error page, a
misconfigured proxy) would otherwise put the key in the file.

`synthetic` marks a call the emulator answered (its `x-dsk-emulator` header or `fp_dsk_emulator`
fingerprint, `_types.EMULATOR_HEADER`), or every call of a step created with `synthetic=True`
(`dsk --mock`); `dsk stats` leaves those out unless asked.

One row per pipeline call: a stream resumed through prefix completion (`_client/resume.py`) gives a
"broken" row with the partial answer and a second row for the continuation, whose answer is the
whole answer and whose usage is the sum (as the caller sees it).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import msgspec

from deepseek_kit._logs.store import LogConfig, _text
from deepseek_kit._logs.writer import LogStore
from deepseek_kit._transport.request import Request, Response
from deepseek_kit._wire import pricing as _pricing
from deepseek_kit._wire.dialects import ok_body_error
from deepseek_kit._wire.errors import Secrets, redact, secrets_of
from deepseek_kit._wire.types import (
    EMULATOR_HEADER,
    balance_decoder,
    chat_completion_decoder,
    completion_decoder,
    is_synthetic_fingerprint,
    model_list_decoder,
)
from deepseek_kit._wire.usage import split_usage

from .base import CallNext
from .metrics.record import RECORD_OPTION, RequestRecord
from .metrics.step import _request_model, build_record

__all__ = ["LogStep"]

_encode_json = msgspec.json.encode


class LogStep:
    """Pipeline step: one row per call into the logs database. `flush()` (blocking) / `aclose()`
    wait until the rows of calls made so far are written.

    `config`: a `LogConfig` (where, what to keep). `secrets`: strings to mask in logged bodies (a
    tuple, or a function returning the current ones). `endpoint`: a fixed label for every row (else
    the server's host). `synthetic=True`: flag every row as an emulator answer. `store`: the
    writer to share (default: one per database file)."""

    def __init__(self, config: LogConfig | None = None, *, secrets: Secrets = (),
                 endpoint: str | None = None, store: LogStore | None = None,
                 synthetic: bool = False) -> None:
        self.config = cfg = config or LogConfig()
        self.store = store or LogStore.shared(cfg)
        self._put = self.store.put
        # A tuple, or a callable read when a row is built: tokens an OAuth2 provider fetches later
        # are masked too (docs/attack-round-2026-12.md, S2). Only error and non-chat paths read it.
        self._secret_source = secrets
        self._endpoint = endpoint  # a fixed label (e.g. "emulator"), else the server's host
        self._synthetic = synthetic  # every call goes to the emulator (dsk --mock)
        self._content = cfg.content
        self._currency = cfg.currency
        self._clock = cfg.clock
        # Used when there is no metrics record to take the cost from (metrics off, or another currency).
        self._prices = _pricing.PriceBook(cfg.currency, cfg.holidays)

    async def handle(self, request: Request, call_next: CallNext) -> Response:
        """Pass the call on, then queue its row (request, answer, usage, cost, latency, error) for the
        writer thread once the response completes; the call never waits for the database."""
        if not self.config.enabled:
            return await call_next(request)
        loop_time = asyncio.get_running_loop().time
        t0 = loop_time()
        wall = self._clock()
        try:
            resp = await call_next(request)
        except BaseException as exc:
            self._put(functools.partial(self._row, request, None, None, wall, loop_time() - t0, t0,
                                        (exc, str(exc)), None))
            raise
        if resp.events is None:
            self._put(functools.partial(self._row, request, resp, None, wall, loop_time() - t0, t0, None,
                                        request.options.get(RECORD_OPTION)))
        else:
            resp.add_done_callback(functools.partial(self._stream_done, request, wall, t0, loop_time))
        return resp

    def _stream_done(self, request: Request, wall: float, t0: float, loop_time: Callable[[], float],
                     resp: Response) -> None:
        latency = loop_time() - t0
        # Read now, on the loop: a resumed stream keeps accumulating into the same answer.
        final = resp.final() if resp.final is not None else None
        # The metrics step (inside this one) built the call's record in its own done callback,
        # which ran first (callbacks run in the order they were added).
        self._put(functools.partial(self._row, request, resp, final, wall, latency, t0, None,
                                    request.options.get(RECORD_OPTION)))

    @property
    def _secrets(self) -> tuple[str, ...]:
        return tuple(s for s in secrets_of(self._secret_source) if s)

    def flush(self, timeout: float | None = None) -> bool:
        """Block until the rows of the calls made so far are written; False when `timeout` passed first."""
        return self.store.flush(timeout)

    async def aclose(self) -> None:
        """Wait (up to 10 s, off the event loop) until the rows of the calls made so far are written."""
        await asyncio.get_running_loop().run_in_executor(None, self.store.flush, 10.0)

    # -- on the writer thread ------------------------------------------------------------------------

    def _row(self, request: Request, resp: Response | None, final: Any, wall: float, latency: float,
             t0: float, failure: tuple[BaseException, str] | None,
             record: RequestRecord | None) -> tuple[Any, ...]:
        model, prompt, messages, params = _request_parts(request.body, self._content)

        status = error = message = trace_id = finish = response_id = None
        answer = reasoning = tool_calls = None
        usage: Any = None
        attempts = 1
        outcome = "ok"
        ttft = None
        synthetic = self._synthetic
        if failure is not None:
            exc, text = failure
            outcome, error = _outcome(exc), type(exc).__name__
            message = redact(text, *self._secrets) or None
            code = getattr(exc, "status_code", None)
            status = code if isinstance(code, int) else None
            tid = getattr(exc, "trace_id", None)
            trace_id = tid if isinstance(tid, str) else None
            n = getattr(exc, "attempts", 1)
            attempts = len(n) if isinstance(n, list) else n if isinstance(n, int) else 1
            partial = getattr(exc, "partial", None)  # e.g. a StreamError raised before the first event
            if partial is not None:
                final = partial
            headers = getattr(exc, "headers", None)
            if isinstance(headers, dict) and any(str(k).lower() == EMULATOR_HEADER for k in headers):
                synthetic = True
        if resp is not None:
            status, attempts, trace_id = resp.status, resp.attempts, resp.headers.get("x-ds-trace-id")
            outcome = resp.outcome or "ok"
            if outcome in ("broken", "timeout"):
                error = "StreamTimeoutError" if outcome == "timeout" else "StreamError"
            if resp.first_event_at is not None:
                ttft = max(resp.first_event_at - t0, 0.0)
            usage = resp.usage
            synthetic = synthetic or resp.synthetic
        if final is None and resp is not None and resp.events is None and resp.body:
            final, problem = _decode_answer(request.path, resp.body)
            if problem is not None:
                # The caller got an error for this body (`_resources._decode`): log that, and keep
                # nothing of the body (it may echo the request's headers, key included).
                outcome, error, message = "error", "APIConnectionError", problem
            elif final is None and self._content:
                answer = redact(resp.body[:65536].decode("utf-8", "replace"), *self._secrets)  # models...
            elif final is not None and not final.choices:
                # A 200 whose body is an error envelope (other servers): the caller got an error.
                err = ok_body_error(resp.status, resp.headers, resp.body, secrets=self._secrets)
                if err is not None:
                    outcome, error, message = "error", type(err).__name__, str(err)
        if final is not None:
            synthetic = synthetic or is_synthetic_fingerprint(getattr(final, "system_fingerprint", None))
            response_id = getattr(final, "id", None) or None
            if usage is None:
                usage = getattr(final, "usage", None)
            model = model or getattr(final, "model", None) or None
            choices = getattr(final, "choices", None) or ()
            if choices:
                c = choices[0]
                finish = c.finish_reason
                msg = getattr(c, "message", None)
                if msg is not None:
                    answer, reasoning = msg.content, msg.reasoning_content
                    if msg.tool_calls:
                        tool_calls = _encode_json(msg.tool_calls).decode()
                else:
                    answer = getattr(c, "text", None)  # FIM
        cache_hit = bool(resp is not None and resp.cache_hit)
        if resp is not None and record is not None and record.currency == self._currency:
            p_tokens, hit, miss, out, r_tokens = (record.prompt_tokens, record.prompt_cache_hit_tokens,
                                                  record.prompt_cache_miss_tokens, record.completion_tokens,
                                                  record.reasoning_tokens)
            cost = float(record.cost)
        elif resp is not None and usage is not None:
            # Metrics off (or in another currency): the tokens and cost the metrics step's record
            # would hold (`build_record` given a usage: that usage, split, priced for the requested
            # model), without building the rest of a record.
            tokens = split_usage(usage)
            p_tokens, hit, miss, out, r_tokens = tokens
            peak = self._prices.is_peak(wall)
            cost = 0.0 if resp.cache_hit else float(self._prices.charge(_request_model(request.body), tokens,
                                                                        peak))
        elif resp is not None:  # no usage at hand: the record reads the body for one
            record = build_record(request, resp, wall, t0, t0 + latency, self._prices, usage)
            p_tokens, hit, miss, out, r_tokens = (record.prompt_tokens, record.prompt_cache_hit_tokens,
                                                  record.prompt_cache_miss_tokens, record.completion_tokens,
                                                  record.reasoning_tokens)
            cost = float(record.cost)
        else:  # an error: the usage of a partial answer it carries, if any
            tokens = split_usage(usage)
            p_tokens, hit, miss, out, r_tokens = tokens
            cost = float(self._prices.charge(model, tokens, self._prices.is_peak(wall))) if model else 0.0
        content = self._content
        return (
            wall, model, self._endpoint or _endpoint(request, resp), request.path, int(request.stream),
            status, outcome, error, message, attempts, latency, ttft, finish, p_tokens, out, r_tokens,
            hit, miss, cost, self._currency, int(cache_hit), trace_id, response_id,
            prompt if content else None, messages if content else None, params,
            answer if content else None, reasoning if content else None, tool_calls if content else None,
            int(synthetic),
        )


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "error"


def _decode_answer(path: str, body: bytes) -> tuple[Any, str | None]:
    """(the answer in a 200 body, None), or (None, why) when the body does not decode, as the
    client's resources would refuse it. Bodies of other paths (models, balance) only have to be
    JSON: (None, None)."""
    what = "JSON body"
    try:
        if path.endswith("/chat/completions"):
            what = "chat completion"
            comp = chat_completion_decoder.decode(body)
            for c in comp.choices:  # other servers' name for it (docs/dialects.md)
                m = c.message
                if m.reasoning_content is None and isinstance(m.reasoning, str):
                    m.reasoning_content = m.reasoning
            return comp, None
        if path.endswith("/completions"):
            what = "completion"
            return completion_decoder.decode(body), None
        # Checked as the resources decode them, so the row says what the caller got; the body
        # itself is stored (redacted) as the answer.
        if path.endswith("/models"):
            what = "model list"
            model_list_decoder.decode(body)
        elif path.endswith("/user/balance"):
            what = "balance"
            balance_decoder.decode(body)
        else:
            msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        return None, f"the server sent a malformed {what} ({str(exc)[:200]})"
    except AttributeError:
        return None, None
    return None, None


class _Message(msgspec.Struct, gc=False):
    role: str = ""
    content: Any = None


_body_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])  # top level only: values stay bytes
_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_message_decoder = msgspec.json.Decoder(_Message)
_str_decoder = msgspec.json.Decoder(str)


_Parts = tuple[str | None, str | None, str | None, str | None]


def _request_parts(body: bytes | None, content: bool) -> _Parts:
    """(model, prompt, messages JSON, other parameters JSON) of a request body. The messages are
    stored as the bytes that were sent, never decoded into Python objects and encoded again (a
    long history would cost that on every call); only the last user message is decoded, for the
    prompt the list and the search show (else the last message; FIM: its prompt)."""
    if not body:
        return None, None, None, None
    try:
        fields = _body_decoder.decode(body)
    except msgspec.DecodeError:
        return None, None, None, None
    model = prompt = messages = None
    try:
        raw = fields.get("model")
        model = _str_decoder.decode(raw) if raw is not None else None
        raw = fields.pop("messages", None)
        if raw is not None:
            messages = bytes(raw).decode()
            items = _list_decoder.decode(raw)
            last = None
            for item in reversed(items):
                m = _message_decoder.decode(item)
                last = last or m
                if m.role == "user":
                    last = m
                    break
            prompt = _text(last.content) if last is not None else None
        raw = fields.pop("prompt", None)
        if raw is not None and prompt is None:
            prompt = _str_decoder.decode(raw)
    except msgspec.DecodeError:
        pass  # an unusual shape: keep what was read
    if not content:
        fields.pop("suffix", None)
    return model, prompt, messages, _encode_json(fields).decode() if fields else None


def _endpoint(request: Request, resp: Response | None) -> str | None:
    """The router's endpoint name, else the server as host:port (never the URL's user:password)."""
    if resp is not None and resp.endpoint is not None:
        return resp.endpoint
    name = getattr(request.endpoint, "name", None)
    if isinstance(name, str):
        return name
    return _host(request.url)


@functools.lru_cache(maxsize=256)
def _host(url: str) -> str | None:
    p = urlsplit(url)
    host = p.hostname or ""
    return f"{host}:{p.port}" if p.port else host or None
