"""DeepSeek-shaped error answers of the gateway: `{"error": {"message", "type", "param", "code"}}`.

The shape and the `type` per status follow DeepSeek's own bodies (docs/deepseek-api-notes.md, errors):
`code` is "invalid_request_error" on every observed body, `type` varies. Messages never carry a key:
callers' keys are shown as their display prefix at most.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

__all__ = ["GatewayError", "error_body", "error_event", "error_response"]

_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "unknown_error",
    403: "permission_error", 404: "invalid_request_error", 405: "invalid_request_error",
    413: "invalid_request_error", 415: "invalid_request_error", 422: "invalid_request_error",
    429: "rate_limit_error", 500: "api_error", 502: "api_error", 503: "service_unavailable_error",
    504: "api_error",
}


class GatewayError(Exception):
    """An answer the gateway gives itself (bad input, auth, budget, limits, no upstream)."""

    def __init__(self, status: int, message: str, *, type: str | None = None, param: str | None = None,
                 code: str = "invalid_request_error", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _TYPES.get(status, "api_error")
        self.param = param
        self.code = code
        self.retry_after = retry_after


def error_body(message: str, type: str, code: str = "invalid_request_error",
               param: str | None = None) -> bytes:
    return msgspec.json.encode({"error": {"message": message, "type": type, "param": param, "code": code}})


def error_response(err: GatewayError, headers: dict[str, str] | None = None) -> web.Response:
    h = dict(headers or {})
    if err.retry_after is not None:
        h["Retry-After"] = str(max(1, int(err.retry_after + 0.999)))
    return web.Response(status=err.status, body=error_body(err.message, err.type, err.code, err.param),
                        content_type="application/json", headers=h)


def error_event(message: str, type: str = "api_error", code: str = "stream_interrupted") -> bytes:
    """An SSE event carrying an error, for a stream that broke after the first token (the caller's
    client raises it; no `[DONE]` follows, so the stream is never mistaken for a complete one)."""
    return b"data: " + error_body(message, type, code) + b"\n\n"
