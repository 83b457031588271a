"""The `Request` value that travels down the pipeline, and the `Response` that travels back up."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .timeouts import Timeout

if TYPE_CHECKING:
    from .events import EventReader

__all__ = ["Request", "Response"]


class Request:
    """One API call: `method`, full `url`, the API `path` (`/chat/completions`), `headers` (without
    auth until the auth step adds it), the encoded JSON `body`, whether it will `stream`, its
    `timeout`, the call's `max_retries` override (None: the client's policy), whether it goes to
    the `/beta` base URL (`beta`), and free-form `options` for pipeline steps. `repr()` never shows
    headers, so the key cannot leak through it."""

    __slots__ = ("beta", "body", "endpoint", "headers", "max_retries", "method", "options", "path", "stream",
                 "timeout", "url")

    def __init__(
        self,
        method: str,
        url: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        timeout: Timeout,
        max_retries: int | None = None,
        options: dict[str, Any] | None = None,
        beta: bool = False,
    ) -> None:
        self.method = method
        self.url = url
        self.path = path
        self.body = body
        self.headers = headers if headers is not None else {}
        self.stream = stream
        self.timeout = timeout
        self.max_retries = max_retries
        self.options = options if options is not None else {}
        self.beta = beta  # served under /beta (prefix completion, FIM)
        self.endpoint: Any = None  # the Endpoint chosen by the router, when there is one

    @property
    def origin(self) -> str:
        """`scheme://host[:port]` of the URL, for messages that must not show the path or query."""
        from urllib.parse import urlsplit

        p = urlsplit(self.url)
        return f"{p.scheme}://{p.netloc}"

    def __repr__(self) -> str:
        return f"Request({self.method} {self.url}, stream={self.stream})"


class Response:
    """A successful (2xx) response: its `status` and `headers`, how many `attempts` it took, and
    for a stream the loop time its first event arrived (`first_event_at`). Non-stream: `body`
    holds the JSON bytes, leading keep-alive whitespace stripped. Stream: `events` yields data
    payloads, the first one already read.

    Pipeline steps that must act when the response is *complete* (release an in-flight lease,
    correct a token estimate, record latency and usage, store a cache entry) register
    `add_done_callback(fn)`: for a non-stream response `fn(self)` runs at once; for a stream it runs
    once when the stream ends, whichever way (`outcome` is then "ok", "broken", "timeout" or
    "closed" for a caller that left early). The typed stream layer fills `usage` as it passes and
    sets `final` to a function returning the answer accumulated so far (a ChatCompletion).
    """

    __slots__ = ("_callbacks", "attempts", "body", "cache_hit", "endpoint", "events", "final",
                 "first_event_at", "headers", "outcome", "status", "usage")

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        *,
        body: bytes = b"",
        events: EventReader | None = None,
        attempts: int = 1,
        first_event_at: float | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.events = events
        self.attempts = attempts
        self.first_event_at = first_event_at  # loop time of the first real event / body byte
        self.endpoint: str | None = None
        self.cache_hit = False
        self.usage: Any = None  # a Usage once known (set by the stream layer for streams)
        self.final: Callable[[], Any] | None = None  # streams: the answer so far (set by the stream layer)
        self.outcome: str | None = None if events is not None else "ok"
        self._callbacks: list[Callable[[Response], None]] | None = None
        if events is not None:
            events.on_close = self._finish

    @property
    def trace_id(self) -> str | None:
        """DeepSeek's `x-ds-trace-id` response header (quote it when reporting a problem), or None."""
        return self.headers.get("x-ds-trace-id")

    @property
    def synthetic(self) -> bool:
        """True when deepseek-kit's emulator answered (its marker header, see _types.EMULATOR_HEADER)."""
        return "x-dsk-emulator" in self.headers

    def add_done_callback(self, fn: Callable[[Response], None]) -> None:
        """Call `fn(self)` once the response is complete: at once when it already is (non-stream),
        else when the stream ends, however it ends (read `outcome` in `fn`)."""
        if self.outcome is not None:
            fn(self)
            return
        if self._callbacks is None:
            self._callbacks = []
        self._callbacks.append(fn)

    def _finish(self, outcome: str) -> None:
        if self.outcome is not None:
            return
        self.outcome = outcome
        cbs, self._callbacks = self._callbacks, None
        for fn in cbs or ():
            fn(self)
