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

    from ._batch.inputs import InputProblem
    from ._batch.run import BatchProgress, BatchResult, run_batch
    from ._client.client import AsyncClient
    from ._client.resume import Resumption
    from ._client.stream import AsyncCompletionStream, AsyncStream
    from ._client.sync_client import Client, CompletionStream, Stream
    from ._conversation.context import (
        Chain,
        ContextPolicy,
        KeepAll,
        SlidingWindow,
        Summarize,
        TokenBudget,
        Window,
    )
    from ._conversation.conversation import Conversation
    from ._conversation.stream import ConversationStream
    from ._conversation.summarize import BartSummarizer, ExtractiveSummarizer, ModelSummarizer, Summarizer
    from ._conversation.sync import SyncConversation, SyncConversationStream
    from ._conversation.usage import ConversationUsage
    from ._logs.query import LogEntry, Logs, LogStats
    from ._logs.store import (
        ConversationInfo,
        LogConfig,
        delete_conversation,
        list_conversations,
        load_conversation,
        save_conversation,
    )
    from ._steps.auth import AuthProvider, AuthStep, KeyRotation, OAuth2ClientCredentials, StaticKey
    from ._steps.base import Step
    from ._steps.breaker import BreakerPolicy
    from ._steps.cache.backends import CacheBackend, MemoryBackend, RedisBackend, SQLiteBackend
    from ._steps.cache.step import CachePolicy, CacheStats, CacheStep
    from ._steps.limits.base import Adaptive, LimitBackendError, Limits, QueueTimeoutError
    from ._steps.limits.step import LimitStep
    from ._steps.logs import LogStep
    from ._steps.metrics.otel import OTelHook
    from ._steps.metrics.prometheus import PrometheusHook, metrics_handler, serve_metrics
    from ._steps.metrics.record import RequestRecord
    from ._steps.metrics.step import MetricsConfig, MetricsStep
    from ._steps.metrics.summary import Metrics
    from ._steps.retry import RetryPolicy
    from ._steps.router import Endpoint, EndpointHealth, Routing
    from ._tools.loop import (
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
    from ._tools.structured import StructuredOutputError, parse, parse_sync
    from ._tools.tool import Tool, ToolArgumentsError, tool
    from ._transport.request import Request, Response
    from ._transport.timeouts import Timeout
    from ._transport.transports import AiohttpTransport, MockResponse, MockTransport, Transport
    from ._wire.errors import (
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
        redact,
    )
    from ._wire.holidays import HolidayCalendar, HolidayCalendarWarning
    from ._wire.presets import PRESETS, Preset, preset
    from ._wire.pricing import ModelPrice
    from ._wire.sse import ServerSentEvent, SSEDecoder
    from ._wire.tokens import count_messages, count_tokens
    from ._wire.types import (
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
    "APIConnectionError": "._wire.errors",
    "APIStatusError": "._wire.errors",
    "APITimeoutError": "._wire.errors",
    "Adaptive": "._steps.limits.base",
    "AiohttpTransport": "._transport.transports",
    "AllEndpointsFailedError": "._wire.errors",
    "AsyncClient": "._client.client",
    "AsyncCompletionStream": "._client.stream",
    "AsyncStream": "._client.stream",
    "AuthProvider": "._steps.auth",
    "AuthStep": "._steps.auth",
    "AuthenticationError": "._wire.errors",
    "BadRequestError": "._wire.errors",
    "Balance": "._wire.types",
    "BalanceInfo": "._wire.types",
    "BartSummarizer": "._conversation.summarize",
    "BatchProgress": "._batch.run",
    "BatchResult": "._batch.run",
    "BreakerPolicy": "._steps.breaker",
    "CacheBackend": "._steps.cache.backends",
    "CachePolicy": "._steps.cache.step",
    "CacheStats": "._steps.cache.step",
    "CacheStep": "._steps.cache.step",
    "Chain": "._conversation.context",
    "ChatCompletion": "._wire.types",
    "ChatCompletionChunk": "._wire.types",
    "ChatCompletionMessage": "._wire.types",
    "Choice": "._wire.types",
    "ChoiceDelta": "._wire.types",
    "ChoiceDeltaToolCall": "._wire.types",
    "ChunkChoice": "._wire.types",
    "Client": "._client.sync_client",
    "Completion": "._wire.types",
    "CompletionStream": "._client.sync_client",
    "ContentDelta": "._tools.loop",
    "ContextPolicy": "._conversation.context",
    "Conversation": "._conversation.conversation",
    "ConversationInfo": "._logs.store",
    "ConversationStream": "._conversation.stream",
    "ConversationUsage": "._conversation.usage",
    "DeepSeekError": "._wire.errors",
    "EmptyResponseError": "._wire.errors",
    "Endpoint": "._steps.router",
    "EndpointHealth": "._steps.router",
    "ExtractiveSummarizer": "._conversation.summarize",
    "Final": "._tools.loop",
    "HolidayCalendar": "._wire.holidays",
    "HolidayCalendarWarning": "._wire.holidays",
    "InputProblem": "._batch.inputs",
    "InsufficientBalanceError": "._wire.errors",
    "InternalServerError": "._wire.errors",
    "KeepAll": "._conversation.context",
    "KeyRotation": "._steps.auth",
    "LimitBackendError": "._steps.limits.base",
    "LimitStep": "._steps.limits.step",
    "Limits": "._steps.limits.base",
    "LogConfig": "._logs.store",
    "LogEntry": "._logs.query",
    "LogStats": "._logs.query",
    "LogStep": "._steps.logs",
    "Logs": "._logs.query",
    "MaxStepsExceeded": "._tools.loop",
    "MemoryBackend": "._steps.cache.backends",
    "Metrics": "._steps.metrics.summary",
    "MetricsConfig": "._steps.metrics.step",
    "MetricsStep": "._steps.metrics.step",
    "MockResponse": "._transport.transports",
    "MockTransport": "._transport.transports",
    "Model": "._wire.types",
    "ModelList": "._wire.types",
    "ModelPrice": "._wire.pricing",
    "ModelSummarizer": "._conversation.summarize",
    "NotFoundError": "._wire.errors",
    "OAuth2ClientCredentials": "._steps.auth",
    "OTelHook": "._steps.metrics.otel",
    "PRESETS": "._wire.presets",
    "Preset": "._wire.presets",
    "PrometheusHook": "._steps.metrics.prometheus",
    "QueueTimeoutError": "._steps.limits.base",
    "RateLimitError": "._wire.errors",
    "ReasoningDelta": "._tools.loop",
    "RedisBackend": "._steps.cache.backends",
    "Request": "._transport.request",
    "RequestRecord": "._steps.metrics.record",
    "Response": "._transport.request",
    "Resumption": "._client.resume",
    "RetryPolicy": "._steps.retry",
    "Routing": "._steps.router",
    "SQLiteBackend": "._steps.cache.backends",
    "SSEDecoder": "._wire.sse",
    "ServerSentEvent": "._wire.sse",
    "ServiceUnavailableError": "._wire.errors",
    "SlidingWindow": "._conversation.context",
    "StaticKey": "._steps.auth",
    "Step": "._steps.base",
    "StepFinished": "._tools.loop",
    "Stream": "._client.sync_client",
    "StreamError": "._wire.errors",
    "StreamTimeoutError": "._wire.errors",
    "StructuredOutputError": "._tools.structured",
    "Summarize": "._conversation.context",
    "Summarizer": "._conversation.summarize",
    "SyncConversation": "._conversation.sync",
    "SyncConversationStream": "._conversation.sync",
    "Timeout": "._transport.timeouts",
    "TokenBudget": "._conversation.context",
    "Tool": "._tools.tool",
    "ToolArgumentsError": "._tools.tool",
    "ToolCall": "._wire.types",
    "ToolCallStarted": "._tools.loop",
    "ToolError": "._tools.loop",
    "ToolResult": "._tools.loop",
    "ToolRun": "._tools.loop",
    "Transport": "._transport.transports",
    "UnprocessableEntityError": "._wire.errors",
    "Usage": "._wire.types",
    "UsageError": "._wire.errors",
    "Window": "._conversation.context",
    "count_messages": "._wire.tokens",
    "count_tokens": "._wire.tokens",
    "delete_conversation": "._logs.store",
    "list_conversations": "._logs.store",
    "load_conversation": "._logs.store",
    "metrics_handler": "._steps.metrics.prometheus",
    "parse": "._tools.structured",
    "parse_sync": "._tools.structured",
    "preset": "._wire.presets",
    "redact": "._wire.errors",
    "run_batch": "._batch.run",
    "run_tool_loop": "._tools.loop",
    "run_tool_loop_sync": "._tools.loop",
    "run_tools": "._tools.loop",
    "run_tools_sync": "._tools.loop",
    "save_conversation": "._logs.store",
    "serve_metrics": "._steps.metrics.prometheus",
    "tool": "._tools.tool",
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
    "InputProblem",
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
    "redact",
    "run_batch",
    "run_tool_loop",
    "run_tool_loop_sync",
    "run_tools",
    "run_tools_sync",
    "save_conversation",
    "serve_metrics",
    "tool",
]
