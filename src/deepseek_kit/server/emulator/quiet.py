"""The emulator's logging policy: a client's mistake never writes a traceback to the log.

aiohttp's HTTP layer logs every request it cannot parse (a header over 8 KB, a bad request line,
a bad chunk size) with `logger.exception` on `aiohttp.server`: one hostile client could fill the
log with tracebacks. `install()` adds a filter to that logger that turns these records into one
line at INFO level (hidden by default) naming the reason. Real server errors keep their
traceback. The filter only touches records carrying an aiohttp `HttpProcessingError` (always a
malformed request), so it is safe for other aiohttp servers in the same process.
"""

from __future__ import annotations

import logging

from aiohttp import http_exceptions

__all__ = ["install"]


class _ClientMistakes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, http_exceptions.HttpProcessingError):
            reason = " ".join(str(exc.message or exc).split())[:200]
            record.msg = f"{record.getMessage()}: malformed request ({type(exc).__name__}: {reason})"
            record.args = ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_FILTER = _ClientMistakes()


def install() -> None:
    """Idempotent: attach the filter to aiohttp's server logger."""
    logger = logging.getLogger("aiohttp.server")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
