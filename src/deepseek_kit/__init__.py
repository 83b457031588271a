"""deepseek-kit: a fast, dependable client for the DeepSeek API, with a CLI (`dsk`) and an emulator.

    from deepseek_kit import AsyncClient, Client, Timeout

Everything public is re-exported here; `__all__` is kept sorted and checked by a test.
Names load on first access (PEP 562), so `import deepseek_kit` costs almost nothing; the client
modules (asyncio, msgspec) load with the first name used and aiohttp with the first request.
"""

from __future__ import annotations

from ._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._auth import AuthProvider, AuthStep, KeyRotation, OAuth2ClientCredentials, StaticKey
    from ._breaker import BreakerPolicy
    from ._client import AsyncClient, Step
    from ._errors import (
        AllEndpointsFailedError,
        APIConnectionError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        DeepSeekError,
        EmptyResponseError,
        InsufficientBalanceError,
        InternalServerError,
        NotFoundError,
        RateLimitError,
        ServiceUnavailableError,
        StreamError,
        StreamTimeoutError,
        UnprocessableEntityError,
        UsageError,
    )
    from ._request import Request, Response
    from ._resume import Resumption
    from ._retry import RetryPolicy
    from ._router import Endpoint, Routing
    from ._sse import ServerSentEvent, SSEDecoder
    from ._stream import AsyncCompletionStream, AsyncStream
    from ._sync import Client, CompletionStream, Stream
    from ._timeouts import Timeout
    from ._transport import AiohttpTransport, MockResponse, MockTransport, Transport
    from ._types import (
        Balance,
        BalanceInfo,
        ChatCompletion,
        ChatCompletionChunk,
        ChatCompletionMessage,
        Choice,
        ChoiceDelta,
        ChoiceDeltaToolCall,
        ChunkChoice,
        Completion,
        Model,
        ModelList,
        ToolCall,
        Usage,
    )

_LAZY: dict[str, str] = {
    "APIConnectionError": "._errors",
    "APIStatusError": "._errors",
    "APITimeoutError": "._errors",
    "AiohttpTransport": "._transport",
    "AllEndpointsFailedError": "._errors",
    "AsyncClient": "._client",
    "AsyncCompletionStream": "._stream",
    "AsyncStream": "._stream",
    "AuthProvider": "._auth",
    "AuthStep": "._auth",
    "BreakerPolicy": "._breaker",
    "Endpoint": "._router",
    "KeyRotation": "._auth",
    "OAuth2ClientCredentials": "._auth",
    "Routing": "._router",
    "StaticKey": "._auth",
    "AuthenticationError": "._errors",
    "BadRequestError": "._errors",
    "Balance": "._types",
    "BalanceInfo": "._types",
    "ChatCompletion": "._types",
    "ChatCompletionChunk": "._types",
    "ChatCompletionMessage": "._types",
    "Choice": "._types",
    "ChoiceDelta": "._types",
    "ChoiceDeltaToolCall": "._types",
    "ChunkChoice": "._types",
    "Client": "._sync",
    "Completion": "._types",
    "CompletionStream": "._sync",
    "DeepSeekError": "._errors",
    "EmptyResponseError": "._errors",
    "InsufficientBalanceError": "._errors",
    "InternalServerError": "._errors",
    "MockResponse": "._transport",
    "MockTransport": "._transport",
    "Model": "._types",
    "ModelList": "._types",
    "NotFoundError": "._errors",
    "RateLimitError": "._errors",
    "Request": "._request",
    "Response": "._request",
    "Resumption": "._resume",
    "RetryPolicy": "._retry",
    "SSEDecoder": "._sse",
    "ServerSentEvent": "._sse",
    "ServiceUnavailableError": "._errors",
    "Step": "._client",
    "Stream": "._sync",
    "StreamError": "._errors",
    "StreamTimeoutError": "._errors",
    "Timeout": "._timeouts",
    "ToolCall": "._types",
    "Transport": "._transport",
    "UnprocessableEntityError": "._errors",
    "Usage": "._types",
    "UsageError": "._errors",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'deepseek_kit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AiohttpTransport",
    "AllEndpointsFailedError",
    "AsyncClient",
    "AsyncCompletionStream",
    "AsyncStream",
    "AuthProvider",
    "AuthStep",
    "AuthenticationError",
    "BadRequestError",
    "Balance",
    "BalanceInfo",
    "BreakerPolicy",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaToolCall",
    "ChunkChoice",
    "Client",
    "Completion",
    "CompletionStream",
    "DeepSeekError",
    "EmptyResponseError",
    "Endpoint",
    "InsufficientBalanceError",
    "InternalServerError",
    "KeyRotation",
    "MockResponse",
    "MockTransport",
    "Model",
    "ModelList",
    "NotFoundError",
    "OAuth2ClientCredentials",
    "RateLimitError",
    "Request",
    "Response",
    "Resumption",
    "RetryPolicy",
    "Routing",
    "SSEDecoder",
    "ServerSentEvent",
    "ServiceUnavailableError",
    "StaticKey",
    "Step",
    "Stream",
    "StreamError",
    "StreamTimeoutError",
    "Timeout",
    "ToolCall",
    "Transport",
    "UnprocessableEntityError",
    "Usage",
    "UsageError",
    "__version__",
]
