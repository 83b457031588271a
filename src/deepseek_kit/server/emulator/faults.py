"""Fault injection: the `X-DSK-Emulate` directive language and the connection tricks it needs.

A directive string is `;`-separated `name` or `name=value` items, e.g.
`status=503;retry_after=2;times=2;key=test-17`. Directives come from the server config
(`EmulatorConfig.faults`) and per request from the `X-DSK-Emulate` header; the header's override
the server's. The faults reproduce what DeepSeek clients meet in
practice (docs/deepseek-api-notes.md#problems-clients-meet-in-practice,
docs/deepseek-api-notes.md#what-the-emulator-reproduces): error statuses,
200 with an empty or blank body, resets before or during a response,
long queues filled with keep-alives, streams that never send `[DONE]` but keep sending comments
(deepseek-harness discussion #6959), error events inside a stream, `insufficient_system_resource`.

`times=N` limits the failure directives to the first N requests that carry the same directive
string (counted per distinct string), so a test can say "fail twice, then succeed"; add
`key=<anything>` to make the string unique to one test. Shaping directives (`tokens`,
`reasoning_tokens`, `chunk_tokens`, `keepalive`, `legacy_usage_chunk`) always apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, fields, replace
from typing import Any

from aiohttp import web

__all__ = [
    "FINISH_REASONS",
    "MAX_TOKENS_DIRECTIVE",
    "MIN_KEEPALIVE",
    "ClientGone",
    "DirectiveError",
    "Directives",
    "check_combination",
    "close_after_flush",
    "parse_directives",
    "pause",
    "reset_connection",
]

FINISH_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls", "insufficient_system_resource"})


class DirectiveError(ValueError):
    """A malformed `X-DSK-Emulate` value; answered with a 400 that says what is wrong."""


class ClientGone(Exception):
    """The client disconnected, or the server is shutting down: stop working on this request."""


@dataclass(frozen=True, slots=True)
class Directives:
    """A parsed `X-DSK-Emulate` string (see the module docstring): which fault to inject into a
    response and how to shape it. Get one with `parse_directives("status=503;times=2")`; the fields
    before `tokens` are failures limited by `times`, the rest shape every response.

    Attributes:
        status: Answer with this error status (400-599), in DeepSeek's error shape.
        retry_after: The `Retry-After` header of that error, passed through as given (seconds).
        retry_after_ms: The `retry-after-ms` header of that error, passed through as given.
        html: Send the error as an HTML page, as proxies do (needs `status`).
        delay_headers: Seconds before the response headers.
        delay_chunks: Seconds between stream chunks.
        stall_first_token: Seconds of keep-alives only before the first token (`queue=S` is
            another name for it).
        keepalive_forever: Send the answer, then keep-alive comments forever and no `[DONE]`.
        reset_before_headers: Drop the connection (TCP reset) before the headers.
        reset_after: Drop the connection after this many stream events.
        empty_body: A 200 with no body.
        blank_body: A 200 whose body is only blank lines.
        error_event_after: An error event inside the stream after this many events.
        insufficient_after: End with DeepSeek's `insufficient_system_resource` finish after this
            many events.
        finish: End with this `finish_reason` ("length", "content_filter", "tool_calls"...).
        ignore_schema: JSON mode answers as if the prompt carried no JSON schema (a model that
            ignores it): with `times=1`, a test sees a client re-ask once and then get a valid object.
        tokens: The answer's length in tokens.
        reasoning_tokens: The reasoning's length in tokens (thinking mode).
        chunk_tokens: Tokens per stream chunk.
        keepalive: Seconds between keep-alive comments while the answer waits (at least 0.05).
        legacy_usage_chunk: Usage in a trailing `choices: []` chunk, as older servers send it.
        times: Apply the failures to the first N requests carrying this exact directive string,
            then answer normally.
        key: Any text, making the directive string (and so its `times` count) unique to one test."""

    # failure directives (limited by `times`)
    status: int | None = None
    retry_after: str | None = None
    retry_after_ms: str | None = None
    html: bool = False
    delay_headers: float = 0.0
    delay_chunks: float = 0.0
    stall_first_token: float = 0.0
    keepalive_forever: bool = False
    reset_before_headers: bool = False
    reset_after: int | None = None
    empty_body: bool = False
    blank_body: bool = False
    error_event_after: int | None = None
    insufficient_after: int | None = None
    finish: str | None = None
    ignore_schema: bool = False
    # shaping directives (always apply)
    tokens: int | None = None
    reasoning_tokens: int | None = None
    chunk_tokens: int | None = None
    keepalive: float | None = None
    legacy_usage_chunk: bool = False
    times: int | None = None
    key: str | None = None

    def without_failures(self) -> Directives:
        """These directives with the failures removed and the shaping kept (once `times` is used up)."""
        return replace(
            Directives(),
            tokens=self.tokens,
            reasoning_tokens=self.reasoning_tokens,
            chunk_tokens=self.chunk_tokens,
            keepalive=self.keepalive,
            legacy_usage_chunk=self.legacy_usage_chunk,
            times=self.times,
            key=self.key,
        )

    def shaping_key(self) -> tuple[Any, ...]:
        """What changes the generated answer (part of the answer-cache key)."""
        return (self.tokens, self.reasoning_tokens, self.chunk_tokens, self.finish, self.insufficient_after,
                self.ignore_schema)


_FLAGS = {"html", "keepalive_forever", "reset_before_headers", "empty_body", "blank_body",
          "legacy_usage_chunk", "ignore_schema"}
_INTS = {"status", "reset_after", "error_event_after", "insufficient_after", "tokens", "reasoning_tokens",
         "chunk_tokens", "times"}
_FLOATS = {"delay_headers", "delay_chunks", "stall_first_token", "keepalive"}
_NAMES = {f.name for f in fields(Directives)}
_TRUE, _FALSE = frozenset({"1", "true"}), frozenset({"0", "false"})
#: Answer lengths above the models' max output (docs/deepseek-api-notes.md#models-and-aliases: 384K = 393,216
#: tokens) are refused: DeepSeek never sends more, and generating them would block the emulator for everyone.
MAX_TOKENS_DIRECTIVE = 393_216
#: Keep-alive comments more often than this would only burn CPU (a fault test needs no more).
MIN_KEEPALIVE = 0.05
#: Delays of a day or more are typos.
_MAX_SECONDS = 86_400
#: Inclusive ranges of the integer directives; `status` is an error status: the emulator implements
#: no 1xx/2xx/3xx answer, so such a directive would silently test nothing.
_INT_RANGES: dict[str, tuple[int, int]] = {
    "status": (400, 599),
    "tokens": (0, MAX_TOKENS_DIRECTIVE),
    "reasoning_tokens": (0, MAX_TOKENS_DIRECTIVE),
    "chunk_tokens": (1, MAX_TOKENS_DIRECTIVE),
    "times": (1, 2**31),
    "reset_after": (0, 2**31),
    "error_event_after": (0, 2**31),
    "insufficient_after": (0, 2**31),
}


def _bad(name: str, value: str) -> DirectiveError:
    return DirectiveError(f"X-DSK-Emulate: bad value {value!r} for {name!r}")


def _parse_item(name: str, eq: str, value: str) -> Any:
    if name in _FLAGS:
        if not eq:
            return True
        low = value.lower()
        if low not in _TRUE and low not in _FALSE:
            raise _bad(name, value)  # `html=maybe` is a typo, not a yes
        return low in _TRUE
    if not eq:
        raise DirectiveError(f"X-DSK-Emulate: directive {name!r} needs a value ({name}=...)")
    try:
        if name in _INTS:
            number = int(value)
            lo, hi = _INT_RANGES[name]
            if not lo <= number <= hi:
                raise ValueError
            return number
        if name in _FLOATS:
            seconds = float(value)
            if not 0 <= seconds < _MAX_SECONDS or (name == "keepalive" and seconds < MIN_KEEPALIVE):
                raise ValueError
            return seconds
        if name in ("retry_after", "retry_after_ms"):
            float(value)  # nan, inf and negatives pass on purpose: clients must survive them
            return value
    except ValueError:
        raise _bad(name, value) from None
    if name == "finish" and value not in FINISH_REASONS:
        raise DirectiveError(f"X-DSK-Emulate: finish must be one of {', '.join(sorted(FINISH_REASONS))}")
    return value


def parse_directives(text: str) -> dict[str, Any]:
    """Parse a directive string (`text`, as in the `X-DSK-Emulate` header) into {field: value};
    only the items present are returned, so a header's items can override a server's. Values that
    would do nothing (a non-error `status`) or too much (`tokens` above the max output,
    `keepalive` under 50 ms) are refused with `DirectiveError`, which names the item; `html`
    without `status` is refused by `check_combination`, once a header is merged with the server's.

        >>> parse_directives("status=503;retry_after=2;times=2")
        {'status': 503, 'retry_after': '2', 'times': 2}"""
    out: dict[str, Any] = {}
    for raw in text.split(";"):
        item = raw.strip()
        if not item:
            continue
        name, eq, value = item.partition("=")
        name, value = name.strip().lower().replace("-", "_"), value.strip()
        # the queued simulation of docs/deepseek-api-notes.md#streaming-and-keep-alives
        # is a stall before the first token
        if name == "queue":
            name = "stall_first_token"
        if name not in _NAMES:
            raise DirectiveError(f"X-DSK-Emulate: unknown directive {name!r}")
        out[name] = _parse_item(name, eq, value)
    return out


def check_combination(merged: dict[str, Any]) -> None:
    """Checks across items, on the server's directives merged with a request's: `html` only
    shapes an error status, so alone it would silently test nothing."""
    if merged.get("html") and merged.get("status") is None:
        raise DirectiveError("X-DSK-Emulate: html needs a status (e.g. status=502;html)")


def _transport(request: web.BaseRequest) -> asyncio.Transport | None:
    t = request.transport
    return None if t is None or t.is_closing() else t


async def pause(request: web.BaseRequest, seconds: float, closing: asyncio.Event) -> None:
    """Sleep, but give up promptly (ClientGone) when the client disconnects or the server shuts
    down. aiohttp does not cancel handlers on disconnect by default, so we look every 50 ms."""
    if seconds <= 0:
        return
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        if closing.is_set() or _transport(request) is None:
            raise ClientGone
        left = end - loop.time()
        if left <= 0:
            return
        await asyncio.sleep(min(left, 0.05))


def reset_connection(request: web.BaseRequest) -> None:
    """Abort with a TCP RST (SO_LINGER 0): the client sees 'connection reset by peer'."""
    t = request.transport
    if t is None:
        return
    sock = t.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # not a TCP socket
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    t.abort()


async def close_after_flush(request: web.BaseRequest) -> None:
    """Close the connection once what was written has left our buffer: the client receives the
    partial response, then EOF in the middle of the body (what a mid-response reset looks like
    after the peer read everything that arrived)."""
    t = request.transport
    if t is None:
        return
    for _ in range(200):
        if t.is_closing() or t.get_write_buffer_size() == 0:
            break
        await asyncio.sleep(0.005)
    t.close()
