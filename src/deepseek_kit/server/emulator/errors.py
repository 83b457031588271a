"""DeepSeek-shaped error responses (docs/deepseek-api-notes.md#errors-and-status-codes).

Body: `{"error": {"message", "type", "param": null, "code": "invalid_request_error"}}` - `code` is
`invalid_request_error` in every observed case while `type` varies (`authentication_error`,
`unknown_error` for 402, `invalid_request_error` for validation). Messages of the status-only
errors follow the official error table ("Rate Limit Reached", "Server Overloaded", ...).
Gateway errors (502/504) can instead be served as openresty's HTML page (`html` directive),
which is what a client behind DeepSeek's edge really receives.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

__all__ = ["ApiError", "error_body", "html_body", "status_error"]

#: Official error table wording and the `type` we send per status.
_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("Invalid Format", "invalid_request_error"),
    401: ("Authentication Fails (no such user)", "authentication_error"),
    402: ("Insufficient Balance", "unknown_error"),
    403: ("Forbidden", "invalid_request_error"),
    404: ("Unknown error", "invalid_request_error"),
    408: ("Request Timeout", "invalid_request_error"),
    413: ("Request Entity Too Large", "invalid_request_error"),
    422: ("Invalid Parameters", "invalid_request_error"),
    429: ("Rate Limit Reached", "rate_limit_error"),
    500: ("Server Error", "server_error"),
    502: ("Bad Gateway", "server_error"),
    503: ("Server Overloaded", "server_error"),
    504: ("Gateway Timeout", "server_error"),
}

_REASONS = {
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 408: "Request Timeout", 413: "Request Entity Too Large",
    422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out",
}


class ApiError(Exception):
    """An error answer: status, DeepSeek message and type, extra headers."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        type: str | None = None,
        *,
        code: str = "invalid_request_error",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        default_msg, default_type = _DEFAULTS.get(status, ("Unknown error", "unknown_error"))
        self.status = status
        self.message = message if message is not None else default_msg
        self.type = type if type is not None else default_type
        self.code = code
        self.headers = dict(headers or {})
        super().__init__(self.message)

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code)


def error_body(message: str, type: str, code: str = "invalid_request_error") -> bytes:
    return msgspec.json.encode(
        {"error": {"message": message, "type": type, "param": None, "code": code}}
    )


def status_error(status: int, headers: Mapping[str, str] | None = None) -> ApiError:
    return ApiError(status, headers=headers)


def html_body(status: int) -> bytes:
    """openresty's default error page."""
    title = f"{status} {_REASONS.get(status, 'Error')}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        "<hr><center>openresty</center>\r\n</body>\r\n</html>\r\n"
    ).encode()
