"""The error tree (docs/design-notes.md#errors) and the mapping from an HTTP error response to it.

Names match openai-python's so that users' `except` clauses carry over. Every status error keeps the
status, DeepSeek's message/type/code, the `x-ds-trace-id` header and the parsed body whatever its
content type (one 400 was served as application/octet-stream,
docs/deepseek-api-notes.md#errors-and-status-codes). No message
built here ever includes an API key: bodies are passed through `redact()` before they are stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Union

import msgspec

from .types import decode_json  # guards against too-deep nesting (docs/attack-round-2026-12.md, C2)

if TYPE_CHECKING:
    from .types import ChatCompletion

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AllEndpointsFailedError",
    "AuthenticationError",
    "BadRequestError",
    "DeepSeekError",
    "EmptyResponseError",
    "InsufficientBalanceError",
    "InternalServerError",
    "NotFoundError",
    "RateLimitError",
    "Secrets",
    "ServiceUnavailableError",
    "StreamError",
    "StreamTimeoutError",
    "UnprocessableEntityError",
    "UsageError",
    "error_fields",
    "make_status_error",
    "redact",
    "secrets_of",
    "status_for_error",
]

# sk-... keys, Bearer tokens and anything that looks like a long secret after "key".
_SECRET_RE = re.compile(r"(sk-[A-Za-z0-9_\-]{4,}|Bearer\s+[A-Za-z0-9_\-.=+/~]{4,})")


#: The secrets to mask in errors: a fixed tuple, or a function giving the current ones (rotated
#: keys, refreshed OAuth2 tokens), called only when an error message is built.
Secrets = Union[tuple[str | None, ...], Callable[[], Iterable[str | None]]]  # noqa: UP007 (runtime alias, py3.10)


def secrets_of(source: Secrets) -> tuple[str | None, ...]:
    return tuple(source()) if callable(source) else source


def redact(text: str, *secrets: str | None) -> str:
    """`text` with each of `secrets` masked to `****` plus its last 4 characters, and anything
    shaped like an API key (`sk-...`) or a bearer token masked too: what the client does to every
    error message a server could have filled. Use it before logging text that may hold a key:
    `redact(str(exc), os.environ.get("DEEPSEEK_API_KEY"))`."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "****" + s[-4:])
    return _SECRET_RE.sub(lambda m: ("Bearer ****" if m.group(0).startswith("Bearer") else "sk-****"), text)


class DeepSeekError(Exception):
    """Base of every error raised by deepseek_kit."""


class UsageError(DeepSeekError, ValueError):
    """The caller's mistake: a bad argument, a missing key, a closed client. The message says what
    to change."""


class APIConnectionError(DeepSeekError):
    """No usable response: connection refused or reset, DNS or TLS failure, or an empty body.

    `message` says what failed and what to check; `attempts` is how many tries were made (retries
    included) before giving up."""

    def __init__(self, message: str = "Connection error.", *, attempts: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = attempts


class EmptyResponseError(APIConnectionError):
    """A 200 whose body was empty or only whitespace (DeepSeek under
    load, docs/deepseek-api-notes.md#streaming-and-keep-alives)."""


class APITimeoutError(APIConnectionError, TimeoutError):
    """A timeout fired. `which` is "connect", "first_token", "idle" or "total"; `after` the limit
    in seconds; `attempts` how many tries were made."""

    def __init__(self, which: str, after: float, *, attempts: int = 1) -> None:
        what = {
            "connect": "connecting to the server",
            "first_token": "waiting for the first token",
            "idle": "waiting for the next chunk (keep-alive comments do not count)",
            "total": "for the whole request",
        }.get(which, which)
        super().__init__(f"Request timed out: {which} timeout of {after:g}s {what}.", attempts=attempts)
        self.which = which
        self.after = after


class APIStatusError(DeepSeekError):
    """The server answered with an error status. Raised as the subclass for the status (400
    `BadRequestError`, 401 `AuthenticationError`, 402 `InsufficientBalanceError`, ...).

    - message: the server's error message (DeepSeek's `error.message`).
    - status_code: the HTTP status.
    - type, code, param: DeepSeek's `error.type`, `error.code` and `error.param`, when sent.
    - trace_id: the `x-ds-trace-id` response header; quote it when you contact DeepSeek.
    - body: the parsed error body (None when it was not JSON).
    - headers: the response headers (`Retry-After`...).
    - attempts: how many tries were made, retries included.
    """

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        type: str | None = None,
        code: str | int | None = None,
        param: str | None = None,
        trace_id: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.type = type
        self.code = code
        self.param = param
        self.trace_id = trace_id
        self.body = body
        self.headers = dict(headers) if headers else {}
        self.attempts = attempts

    def __str__(self) -> str:
        tail = f" (trace id {self.trace_id})" if self.trace_id else ""
        return f"Error code: {self.status_code} - {self.message}{tail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code}, message={self.message!r})"


class BadRequestError(APIStatusError):
    """400: the request is malformed or a parameter is invalid; the message names it. Not retried."""

    status_code = 400


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong or revoked (check DEEPSEEK_API_KEY). Not retried."""

    status_code = 401


class InsufficientBalanceError(APIStatusError):
    """402: the account is out of balance. Never retried: top up at platform.deepseek.com."""

    status_code = 402


class NotFoundError(APIStatusError):
    """404: no such path or model (a base URL with an extra path segment gives this too)."""

    status_code = 404


class UnprocessableEntityError(APIStatusError):
    """422: the body parsed but a parameter's value is refused; the message names it. Not retried."""

    status_code = 422


class RateLimitError(APIStatusError):
    """429: rate or concurrency limit (DeepSeek caps concurrent requests
    per account, docs/deepseek-api-notes.md#rate-limits-and-concurrency)."""

    status_code = 429


class InternalServerError(APIStatusError):
    """500: a fault on the server side. Retried by the default `RetryPolicy` (so are 502 and 504,
    which raise `APIStatusError`)."""

    status_code = 500


class ServiceUnavailableError(APIStatusError):
    """503: the server is overloaded. Retried by the default `RetryPolicy`, after `Retry-After` when
    the server sends one."""

    status_code = 503


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientBalanceError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    500: InternalServerError,
    503: ServiceUnavailableError,
}


class StreamError(DeepSeekError):
    """The stream broke or was malformed after it started. `message` says how; `partial` holds what
    arrived (content, reasoning, tool calls so far) as a ChatCompletion; `error` the server's error
    object if it sent one inside the stream, and `status_code` the status that error names."""

    def __init__(
        self,
        message: str,
        *,
        partial: ChatCompletion | None = None,
        error: Any = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.partial = partial
        self.error = error
        self.status_code = status_code


class StreamTimeoutError(StreamError, APITimeoutError):
    """The idle or total timeout fired after the stream had started; both a StreamError (with the
    partial answer) and an APITimeoutError."""

    def __init__(self, which: str, after: float, *, partial: ChatCompletion | None = None) -> None:
        APITimeoutError.__init__(self, which, after)
        self.partial = partial
        self.error = None
        self.status_code = None


class AllEndpointsFailedError(DeepSeekError):
    """Every endpoint failed: `message` summarizes, `attempts` lists (endpoint name, exception)
    pairs in the order they were tried."""

    def __init__(self, message: str, attempts: list[tuple[str, BaseException]]) -> None:
        super().__init__(message)
        self.attempts = attempts


def _decode_body(raw: bytes) -> Any:
    text = raw.strip()
    if not text:
        return None
    try:
        return decode_json(text)
    except msgspec.DecodeError:
        return raw.decode("utf-8", "replace")


def _detail_text(detail: Any) -> str | None:
    """FastAPI's `{"detail": ...}`: a string, or a list of validation errors `{loc, msg, ...}` (SGLang
    and other FastAPI servers answer 422 this way); the list becomes `body.messages: Field required`."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail[:5]:
            if isinstance(item, dict) and isinstance(item.get("msg"), str):
                loc = item.get("loc")
                where = ".".join(str(x) for x in loc) if isinstance(loc, list) else ""
                parts.append(f"{where}: {item['msg']}" if where else item["msg"])
            else:
                parts.append(str(item))
        return "; ".join(parts) or None
    return None if detail is None else str(detail)


def error_fields(body: Any) -> tuple[str | None, str | None, str | int | None, str | None] | None:
    """(message, type, code, param) of an error envelope in a decoded JSON body, or None when the
    body is not one. Shapes (docs/dialects.md): DeepSeek/OpenAI/vLLM >= 0.10.1/Ollama/llama.cpp
    nested `{"error": {...}}`; vLLM < 0.10.1 and SGLang flat `{"object": "error", "message": ...}`;
    `{"error": "text"}` (Ollama native, proxies); FastAPI `{"detail": ...}`."""
    if not isinstance(body, dict):
        return None
    err = body.get("error")
    if isinstance(err, str):
        desc = body.get("error_description")
        if isinstance(desc, str) and desc.strip():
            # RFC 6749 section 5.2 (OAuth2 token endpoints): `error` is a code, the description is
            # what a person can act on ("retry in 176 s").
            return f"{desc.strip()[:500]} ({err})", None, err, None
        return err, None, None, None
    if not isinstance(err, dict):
        if body.get("object") == "error" or "detail" in body:
            err = body
        else:
            return None
    return _fields_of(err)


def _fields_of(err: dict[str, Any]) -> tuple[str | None, str | None, str | int | None, str | None]:
    m = err.get("message")
    if not isinstance(m, str):
        m = _detail_text(err.get("detail")) if "detail" in err else (None if m is None else str(m))
    if m is None and isinstance(err.get("msg"), str):
        m = err["msg"]
    t = err.get("type")
    c = err.get("code")
    p = err.get("param")
    return (m, t if isinstance(t, str) else None, c if isinstance(c, (str, int)) else None,
            p if isinstance(p, str) else None)


# Error `type` strings of the servers in docs/dialects.md, for an error that arrives without a usable
# HTTP status (inside a 200 body or a stream).
_STATUS_BY_TYPE = {
    "invalid_request_error": 400, "BadRequestError": 400, "exceed_context_size_error": 400,
    "authentication_error": 401, "AuthenticationError": 401,
    "permission_error": 403, "PermissionDeniedError": 403,
    "not_found_error": 404, "NotFoundError": 404,
    "rate_limit_error": 429, "rate_limit_exceeded": 429, "RateLimitError": 429,
    "server_error": 500, "api_error": 500, "InternalServerError": 500,
    "not_supported_error": 501,
    "unavailable_error": 503, "overloaded_error": 503, "ServiceUnavailableError": 503,
}


def status_for_error(code: str | int | None, etype: str | None, default: int = 500) -> int:
    """The HTTP status an error object stands for: its numeric `code` (vLLM, SGLang, llama.cpp put
    the status there), else its `type`, else `default`."""
    if isinstance(code, int) and 400 <= code < 600:
        return code
    if isinstance(code, str) and code.isdigit() and 400 <= int(code) < 600:
        return int(code)
    if etype is not None:
        return _STATUS_BY_TYPE.get(etype, default)
    return default


def make_status_error(
    status: int,
    headers: Mapping[str, str],
    raw_body: bytes,
    *,
    secrets: tuple[str | None, ...] = (),
) -> APIStatusError:
    """Build the typed error for an error response, parsing the body whatever its content type.

    Understands DeepSeek's nested `{"error": {...}}`, flat `{"message": ..., "type": ...}` bodies of
    other OpenAI-style servers, `{"detail": ...}` (FastAPI) and plain text.
    """
    body = _decode_body(raw_body)
    message: str | None = None
    etype: str | None = None
    code: str | int | None = None
    param: str | None = None
    fields = error_fields(body)
    if fields is None and isinstance(body, dict):
        fields = _fields_of(body)  # an error status makes any object an error: flat without "object"
    if fields is not None:
        message, etype, code, param = fields
    elif isinstance(body, str):
        message = body.strip()[:500] or None
    if not message:
        message = _REASON.get(status, "HTTP error")
    message = redact(message, *secrets)
    if isinstance(body, str):
        body = redact(body, *secrets)
    elif body is not None:
        body = msgspec.json.decode(redact(msgspec.json.encode(body).decode(), *secrets))
    cls = _BY_STATUS.get(status, APIStatusError)
    trace_id = headers.get("x-ds-trace-id") or headers.get("x-request-id")
    return cls(
        message, status_code=status, type=etype, code=code, param=param, trace_id=trace_id,
        body=body, headers=headers,
    )


_REASON = {
    400: "Invalid Format",
    401: "Authentication Fails",
    402: "Insufficient Balance",
    404: "Not Found",
    407: "Proxy Authentication Required",
    422: "Invalid Parameters",
    429: "Rate Limit Reached",
    500: "Server Error",
    502: "Bad Gateway",
    503: "Server Overloaded",
    504: "Gateway Timeout",
}
