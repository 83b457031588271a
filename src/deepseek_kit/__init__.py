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
    from ._batch import BatchProgress, BatchResult, run_batch
    from ._breaker import BreakerPolicy
    from ._cache import CachePolicy, CacheStats, CacheStep
    from ._cache_backends import CacheBackend, MemoryBackend, RedisBackend, SQLiteBackend
    from ._client import AsyncClient, Step
    from ._context import Chain, ContextPolicy, KeepAll, SlidingWindow, Summarize, TokenBudget, Window
    from ._conversation import Conversation
    from ._conversation_stream import ConversationStream
    from ._conversation_sync import SyncConversation, SyncConversationStream
    from ._conversation_usage import ConversationUsage
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
    from ._holidays import HolidayCalendar, HolidayCalendarWarning
    from ._limits import Adaptive, LimitBackendError, Limits, LimitStep, QueueTimeoutError
    from ._logquery import LogEntry, Logs, LogStats
    from ._logstep import LogStep
    from ._logstore import (
        ConversationInfo,
        LogConfig,
        delete_conversation,
        list_conversations,
        load_conversation,
        save_conversation,
    )
    from ._metrics import MetricsConfig, MetricsStep, RequestRecord
    from ._metrics_summary import Metrics
    from ._otel import OTelHook
    from ._presets import PRESETS, Preset, preset
    from ._pricing import ModelPrice
    from ._prometheus import PrometheusHook, metrics_handler, serve_metrics
    from ._request import Request, Response
    from ._resume import Resumption
    from ._retry import RetryPolicy
    from ._router import Endpoint, EndpointHealth, Routing
    from ._sse import ServerSentEvent, SSEDecoder
    from ._stream import AsyncCompletionStream, AsyncStream
    from ._structured import StructuredOutputError, parse, parse_sync
    from ._summarize import BartSummarizer, ExtractiveSummarizer, ModelSummarizer, Summarizer
    from ._sync import Client, CompletionStream, Stream
    from ._timeouts import Timeout
    from ._tokens import count_messages, count_tokens
    from ._tool_loop import (
        ContentDelta,
        Final,
        MaxStepsExceeded,
        ReasoningDelta,
        StepFinished,
        ToolCallStarted,
        ToolError,
        ToolResult,
        ToolRun,
        run_tool_loop,
        run_tool_loop_sync,
        run_tools,
        run_tools_sync,
    )
    from ._tools import Tool, ToolArgumentsError, tool
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
    "Adaptive": "._limits",
    "AiohttpTransport": "._transport",
    "AllEndpointsFailedError": "._errors",
    "AsyncClient": "._client",
    "AsyncCompletionStream": "._stream",
    "AsyncStream": "._stream",
    "AuthProvider": "._auth",
    "AuthStep": "._auth",
    "AuthenticationError": "._errors",
    "BadRequestError": "._errors",
    "Balance": "._types",
    "BalanceInfo": "._types",
    "BartSummarizer": "._summarize",
    "BatchProgress": "._batch",
    "BatchResult": "._batch",
    "BreakerPolicy": "._breaker",
    "CacheBackend": "._cache_backends",
    "CachePolicy": "._cache",
    "CacheStats": "._cache",
    "CacheStep": "._cache",
    "Chain": "._context",
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
    "ContentDelta": "._tool_loop",
    "ContextPolicy": "._context",
    "Conversation": "._conversation",
    "ConversationInfo": "._logstore",
    "ConversationStream": "._conversation_stream",
    "ConversationUsage": "._conversation_usage",
    "DeepSeekError": "._errors",
    "EmptyResponseError": "._errors",
    "Endpoint": "._router",
    "EndpointHealth": "._router",
    "ExtractiveSummarizer": "._summarize",
    "Final": "._tool_loop",
    "HolidayCalendar": "._holidays",
    "HolidayCalendarWarning": "._holidays",
    "InsufficientBalanceError": "._errors",
    "InternalServerError": "._errors",
    "KeepAll": "._context",
    "KeyRotation": "._auth",
    "LimitBackendError": "._limits",
    "LimitStep": "._limits",
    "Limits": "._limits",
    "LogConfig": "._logstore",
    "LogEntry": "._logquery",
    "LogStats": "._logquery",
    "LogStep": "._logstep",
    "Logs": "._logquery",
    "MaxStepsExceeded": "._tool_loop",
    "MemoryBackend": "._cache_backends",
    "Metrics": "._metrics_summary",
    "MetricsConfig": "._metrics",
    "MetricsStep": "._metrics",
    "MockResponse": "._transport",
    "MockTransport": "._transport",
    "Model": "._types",
    "ModelList": "._types",
    "ModelPrice": "._pricing",
    "ModelSummarizer": "._summarize",
    "NotFoundError": "._errors",
    "OAuth2ClientCredentials": "._auth",
    "OTelHook": "._otel",
    "PRESETS": "._presets",
    "Preset": "._presets",
    "PrometheusHook": "._prometheus",
    "QueueTimeoutError": "._limits",
    "RateLimitError": "._errors",
    "ReasoningDelta": "._tool_loop",
    "RedisBackend": "._cache_backends",
    "Request": "._request",
    "RequestRecord": "._metrics",
    "Response": "._request",
    "Resumption": "._resume",
    "RetryPolicy": "._retry",
    "Routing": "._router",
    "SQLiteBackend": "._cache_backends",
    "SSEDecoder": "._sse",
    "ServerSentEvent": "._sse",
    "ServiceUnavailableError": "._errors",
    "SlidingWindow": "._context",
    "StaticKey": "._auth",
    "Step": "._client",
    "StepFinished": "._tool_loop",
    "Stream": "._sync",
    "StreamError": "._errors",
    "StreamTimeoutError": "._errors",
    "StructuredOutputError": "._structured",
    "Summarize": "._context",
    "Summarizer": "._summarize",
    "SyncConversation": "._conversation_sync",
    "SyncConversationStream": "._conversation_sync",
    "Timeout": "._timeouts",
    "TokenBudget": "._context",
    "Tool": "._tools",
    "ToolArgumentsError": "._tools",
    "ToolCall": "._types",
    "ToolCallStarted": "._tool_loop",
    "ToolError": "._tool_loop",
    "ToolResult": "._tool_loop",
    "ToolRun": "._tool_loop",
    "Transport": "._transport",
    "UnprocessableEntityError": "._errors",
    "Usage": "._types",
    "UsageError": "._errors",
    "Window": "._context",
    "count_messages": "._tokens",
    "count_tokens": "._tokens",
    "delete_conversation": "._logstore",
    "list_conversations": "._logstore",
    "load_conversation": "._logstore",
    "metrics_handler": "._prometheus",
    "parse": "._structured",
    "parse_sync": "._structured",
    "preset": "._presets",
    "run_batch": "._batch",
    "run_tool_loop": "._tool_loop",
    "run_tool_loop_sync": "._tool_loop",
    "run_tools": "._tool_loop",
    "run_tools_sync": "._tool_loop",
    "save_conversation": "._logstore",
    "serve_metrics": "._prometheus",
    "tool": "._tools",
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
    "PRESETS",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "Adaptive",
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
    "BartSummarizer",
    "BatchProgress",
    "BatchResult",
    "BreakerPolicy",
    "CacheBackend",
    "CachePolicy",
    "CacheStats",
    "CacheStep",
    "Chain",
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
    "ContentDelta",
    "ContextPolicy",
    "Conversation",
    "ConversationInfo",
    "ConversationStream",
    "ConversationUsage",
    "DeepSeekError",
    "EmptyResponseError",
    "Endpoint",
    "EndpointHealth",
    "ExtractiveSummarizer",
    "Final",
    "HolidayCalendar",
    "HolidayCalendarWarning",
    "InsufficientBalanceError",
    "InternalServerError",
    "KeepAll",
    "KeyRotation",
    "LimitBackendError",
    "LimitStep",
    "Limits",
    "LogConfig",
    "LogEntry",
    "LogStats",
    "LogStep",
    "Logs",
    "MaxStepsExceeded",
    "MemoryBackend",
    "Metrics",
    "MetricsConfig",
    "MetricsStep",
    "MockResponse",
    "MockTransport",
    "Model",
    "ModelList",
    "ModelPrice",
    "ModelSummarizer",
    "NotFoundError",
    "OAuth2ClientCredentials",
    "OTelHook",
    "Preset",
    "PrometheusHook",
    "QueueTimeoutError",
    "RateLimitError",
    "ReasoningDelta",
    "RedisBackend",
    "Request",
    "RequestRecord",
    "Response",
    "Resumption",
    "RetryPolicy",
    "Routing",
    "SQLiteBackend",
    "SSEDecoder",
    "ServerSentEvent",
    "ServiceUnavailableError",
    "SlidingWindow",
    "StaticKey",
    "Step",
    "StepFinished",
    "Stream",
    "StreamError",
    "StreamTimeoutError",
    "StructuredOutputError",
    "Summarize",
    "Summarizer",
    "SyncConversation",
    "SyncConversationStream",
    "Timeout",
    "TokenBudget",
    "Tool",
    "ToolArgumentsError",
    "ToolCall",
    "ToolCallStarted",
    "ToolError",
    "ToolResult",
    "ToolRun",
    "Transport",
    "UnprocessableEntityError",
    "Usage",
    "UsageError",
    "Window",
    "__version__",
    "count_messages",
    "count_tokens",
    "delete_conversation",
    "list_conversations",
    "load_conversation",
    "metrics_handler",
    "parse",
    "parse_sync",
    "preset",
    "run_batch",
    "run_tool_loop",
    "run_tool_loop_sync",
    "run_tools",
    "run_tools_sync",
    "save_conversation",
    "serve_metrics",
    "tool",
]
