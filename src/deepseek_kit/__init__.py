"""deepseek-kit: a fast, dependable client for the DeepSeek API, with a CLI (`dsk`) and an emulator.

    from deepseek_kit import AsyncClient, Client, Timeout

Everything public is re-exported here; `__all__` is kept sorted and checked by a test.
The network transport (aiohttp) loads on first use, so this import stays cheap.
"""

from ._client import AsyncClient, AuthStep, Step
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
from ._retry import RetryPolicy
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
from ._version import __version__

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AiohttpTransport",
    "AllEndpointsFailedError",
    "AsyncClient",
    "AsyncCompletionStream",
    "AsyncStream",
    "AuthStep",
    "AuthenticationError",
    "BadRequestError",
    "Balance",
    "BalanceInfo",
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
    "InsufficientBalanceError",
    "InternalServerError",
    "MockResponse",
    "MockTransport",
    "Model",
    "ModelList",
    "NotFoundError",
    "RateLimitError",
    "Request",
    "Response",
    "RetryPolicy",
    "SSEDecoder",
    "ServerSentEvent",
    "ServiceUnavailableError",
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
