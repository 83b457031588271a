"""The public surface survives refactors: every name users import from `deepseek_kit` and
`deepseek_kit.server` imports from there, whatever package holds it inside. Names may be added;
removing or moving one out of these namespaces breaks users and fails here."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

# deepseek_kit.__all__ as of the layer reshape (docs/architecture.md)
PUBLIC = [
    "PRESETS", "APIConnectionError", "APIStatusError", "APITimeoutError", "Adaptive",
    "AiohttpTransport", "AllEndpointsFailedError", "AsyncClient", "AsyncCompletionStream",
    "AsyncStream", "AuthProvider", "AuthStep", "AuthenticationError", "BadRequestError", "Balance",
    "BalanceInfo", "BartSummarizer", "BatchProgress", "BatchResult", "BreakerPolicy", "CacheBackend",
    "CachePolicy", "CacheStats", "CacheStep", "Chain", "ChatCompletion", "ChatCompletionChunk",
    "ChatCompletionMessage", "Choice", "ChoiceDelta", "ChoiceDeltaToolCall", "ChunkChoice", "Client",
    "Completion", "CompletionStream", "ContentDelta", "ContextPolicy", "Conversation",
    "ConversationInfo", "ConversationStream", "ConversationUsage", "DeepSeekError",
    "EmptyResponseError", "Endpoint", "EndpointHealth", "ExtractiveSummarizer", "Final",
    "HolidayCalendar", "HolidayCalendarWarning", "HttpToolsTransport", "InsufficientBalanceError",
    "InternalServerError", "KeepAll", "KeyRotation", "LimitBackendError", "LimitStep", "Limits",
    "LogConfig", "LogEntry",
    "LogStats", "LogStep", "Logs", "MaxStepsExceeded", "MemoryBackend", "Metrics", "MetricsConfig",
    "MetricsStep", "MockResponse", "MockTransport", "Model", "ModelList", "ModelPrice",
    "ModelSummarizer", "NotFoundError", "OAuth2ClientCredentials", "OTelHook", "Parsed", "Preset",
    "PrometheusHook", "QueueTimeoutError", "RateLimitError", "ReasoningDelta", "RedisBackend",
    "Request", "RequestRecord", "Response", "Resumption", "RetryPolicy", "Routing", "SQLiteBackend",
    "SSEDecoder", "ServerSentEvent", "ServiceUnavailableError", "SlidingWindow", "StaticKey", "Step",
    "StepFinished", "Stream", "StreamError", "StreamTimeoutError", "StructuredOutputError",
    "Summarize", "Summarizer", "SyncConversation", "SyncConversationStream", "Timeout", "TokenBudget",
    "Tool", "ToolArgumentsError", "ToolCall", "ToolCallStarted", "ToolError", "ToolResult", "ToolRun",
    "Transport", "UnprocessableEntityError", "Usage", "UsageError", "Window", "__version__",
    "cost", "count_messages", "count_tokens", "delete_conversation", "is_peak", "list_conversations",
    "load_conversation", "metrics_handler", "parse", "parse_sync", "preset", "run_batch", "run_tool_loop",
    "run_tool_loop_sync", "run_tools", "run_tools_sync", "save_conversation", "serve_metrics", "tool",
]

SERVER_PUBLIC = [
    "STATE_KEY", "Account", "Directives", "EmulatorConfig", "EmulatorState", "EmulatorThread",
    "create_emulator_app", "parse_directives", "run_emulator",
]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_imports_from_the_package(name):
    mod = importlib.import_module("deepseek_kit")
    assert name in mod.__all__
    assert getattr(mod, name) is not None


@pytest.mark.parametrize("name", SERVER_PUBLIC)
def test_server_name_imports_from_deepseek_kit_server(name):
    mod = importlib.import_module("deepseek_kit.server")
    assert name in mod.__all__
    assert getattr(mod, name) is not None


def test_from_import_star_gives_every_public_name():
    code = ("from deepseek_kit import *; from deepseek_kit.server import *; "
            f"missing = [n for n in {PUBLIC + SERVER_PUBLIC!r} if n not in globals()]; "
            "assert not missing, missing")
    r = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
