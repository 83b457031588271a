"""The access log's writer: `AccessLogHandler`, lines written in batches rather than one per request.

The stock `logging.StreamHandler` writes and flushes once per record: a system call and a
`LogRecord` per request, ~50-100 us of the gateway's CPU per call at load. This handler buffers the
lines and writes them together at most `delay` seconds later (or at `max_lines`), from the event
loop that logged them; `access_line` (metrics.py) hands it the finished line directly, without
building a `LogRecord`, when it is the access logger's only handler. Records from anywhere else go
through `emit` as usual. Lines are never lost at a clean stop: `logging.shutdown` (at exit) and
`close` flush what is buffered.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TextIO

__all__ = ["AccessLogHandler"]


class AccessLogHandler(logging.Handler):
    """A `logging.Handler` that writes its lines to `stream` in batches: a line waits at most
    `delay` seconds, and `max_lines` buffered lines are written at once. `dsk serve` installs it
    on its access logger; install it yourself to send that log to another stream:

        logging.getLogger("deepseek_kit.gateway.access").addHandler(AccessLogHandler(sys.stderr))"""

    def __init__(self, stream: TextIO, *, delay: float = 0.05, max_lines: int = 256) -> None:
        super().__init__()
        self.stream = stream
        self.delay = delay
        self.max_lines = max_lines
        self._lines: list[str] = []
        self.setFormatter(logging.Formatter("%(message)s"))

    def line(self, text: str) -> None:
        """Buffer one finished line (no trailing newline)."""
        lines = self._lines
        lines.append(text)
        if len(lines) >= self.max_lines:
            self.flush()
        elif len(lines) == 1:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on an event loop: nothing would flush it later
                self.flush()
                return
            loop.call_later(self.delay, self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.line(self.format(record))
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        lines = self._lines
        if not lines:
            return
        self._lines = []
        lines.append("")  # the last line's newline
        try:
            self.stream.write("\n".join(lines))
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed or gone: the access log is best effort
            pass

    def close(self) -> None:
        self.flush()
        super().close()
