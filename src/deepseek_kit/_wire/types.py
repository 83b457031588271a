"""Typed wire objects of the DeepSeek API
(docs/deepseek-api-notes.md#request-fields), decoded and encoded with msgspec.

Responses are decoded leniently: every field has a default, unknown fields are ignored and enum-like
fields (finish_reason, role, model, object) are plain `str`, so a new finish_reason or a new model
name never breaks decoding. Private deployments (vLLM, SGLang, Ollama) omit fields DeepSeek always
sends; defaults cover that too. The few fields only other servers send (`reasoning`, the newer
vLLM/Ollama name of `reasoning_content`) default to `UNSET`, which msgspec never encodes: a DeepSeek
answer encodes exactly as before, and `_wire/dialects.py` / `_wire/accumulate.py` fold them into the DeepSeek
shape (docs/dialects.md).

Request-side structs use `UNSET` as the default so that only what the caller set goes on the wire
(`omit_defaults`); `None` is sent as JSON null where the API allows it (e.g. `thinking: null`).
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

#: Every response of deepseek-kit's emulator carries this header (value: "deepseek-kit/<version>"),
#: and its `system_fingerprint` starts with EMULATOR_FINGERPRINT_PREFIX: nothing the emulator made
#: can pass for a real DeepSeek answer (docs/emulator.md#nothing-it-makes-passes-for-deepseek).
EMULATOR_HEADER = "x-dsk-emulator"
EMULATOR_FINGERPRINT_PREFIX = "fp_dsk_emulator"


def is_synthetic_fingerprint(fingerprint: str | None) -> bool:
    return fingerprint is not None and fingerprint.startswith(EMULATOR_FINGERPRINT_PREFIX)


__all__ = [
    "EMULATOR_FINGERPRINT_PREFIX",
    "EMULATOR_HEADER",
    "Balance",
    "BalanceInfo",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "ChoiceLogprobs",
    "ChunkChoice",
    "Completion",
    "CompletionChoice",
    "CompletionLogprobs",
    "CompletionTokensDetails",
    "ErrorObject",
    "FinishReason",
    "Function",
    "FunctionDefinition",
    "Model",
    "ModelList",
    "PromptTokensDetails",
    "ResponseFormat",
    "SafeDecoder",
    "StreamOptions",
    "Thinking",
    "TokenLogprob",
    "ToolCall",
    "ToolParam",
    "TopLogprob",
    "Usage",
    "decode_json",
    "is_synthetic_fingerprint",
]

#: Known values; decoded as plain `str` so that new ones never break decoding.
FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "insufficient_system_resource"]


class _Wire(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of every wire struct: keyword construction, compact encoding, dict/JSON helpers."""

    def to_dict(self) -> dict[str, Any]:
        """The object as plain JSON-compatible Python values (what openai's `model_dump()` gives)."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out

    def to_json(self) -> str:
        """The object as compact JSON text, as it goes on the wire (for logs, caches and tests)."""
        return msgspec.json.encode(self).decode()


# ---------------------------------------------------------------------------------------------
# Request side (docs/deepseek-api-notes.md#request-fields). Messages may also be passed as plain dicts.


class Thinking(_Wire):
    """`thinking: {"type": "enabled" | "disabled"}`; top-level
    on the wire (docs/deepseek-api-notes.md#thinking-mode)."""

    type: str = "enabled"


class ResponseFormat(_Wire):
    """`{"type": "text" | "json_object"}`; json_schema is not
    supported by DeepSeek (docs/deepseek-api-notes.md#json-output)."""

    type: str = "text"


class StreamOptions(_Wire):
    include_usage: bool | UnsetType = UNSET


class FunctionDefinition(_Wire):
    name: str
    description: str | UnsetType = UNSET
    parameters: dict[str, Any] | UnsetType = UNSET
    # Beta: only honoured under /beta (docs/deepseek-api-notes.md#tool-calls)
    strict: bool | UnsetType = UNSET


class ToolParam(_Wire):
    """One entry of a request's `tools` as it goes on the wire (a function definition). Not the
    public `deepseek_kit.Tool`, which wraps a Python function and produces this shape."""

    function: FunctionDefinition
    type: str = "function"


# ---------------------------------------------------------------------------------------------
# Response side (docs/deepseek-api-notes.md#response-objects). Encoded in full (nulls included) so that
# `to_json()` shows every field the way the API sent it.


class _Out(_Wire, omit_defaults=False):
    pass


class ErrorObject(_Out, gc=False):
    """DeepSeek's `{"error": {message, type, param, code}}`, also used for error events in streams."""

    message: str = ""
    type: str | None = None
    param: str | None = None
    code: str | int | None = None


class TopLogprob(_Out, gc=False):
    token: str = ""
    logprob: float = 0.0
    bytes: list[int] | None = None


class TokenLogprob(_Out, gc=False):
    token: str = ""
    logprob: float = 0.0
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = []


class ChoiceLogprobs(_Out, gc=False):
    """`choice.logprobs`: answer tokens, and in thinking mode the
    reasoning tokens too (docs/deepseek-api-notes.md#thinking-mode)."""

    content: list[TokenLogprob] | None = None
    reasoning_content: list[TokenLogprob] | None = None


class PromptTokensDetails(_Out, gc=False):
    cached_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.cached_tokens is not None and self.cached_tokens < 0:
            self.cached_tokens = 0


class CompletionTokensDetails(_Out, gc=False):
    reasoning_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.reasoning_tokens is not None and self.reasoning_tokens < 0:
            self.reasoning_tokens = 0


class Usage(_Out, gc=False):
    """Token usage. `prompt_tokens = prompt_cache_hit_tokens + prompt_cache_miss_tokens` on DeepSeek;
    `completion_tokens_details` is absent when thinking was off (docs/deepseek-api-notes.md#usage-fields).

    Attributes:
        prompt_tokens: Input tokens of the request, cache hits and misses together.
        completion_tokens: Output tokens: the answer, plus the reasoning in thinking mode.
        total_tokens: `prompt_tokens + completion_tokens`.
        prompt_cache_hit_tokens: Input tokens served from DeepSeek's context cache (billed at the
            cache-hit price); None from servers that do not report it.
        prompt_cache_miss_tokens: Input tokens not in the cache (billed at the full input price).
        prompt_tokens_details: OpenAI's form of the cache count (`cached_tokens`), when the server
            sends it.
        completion_tokens_details: `reasoning_tokens` of the answer; read `reasoning_tokens`
            instead (0 when this is absent)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_cache_hit_tokens: int | None = None
    prompt_cache_miss_tokens: int | None = None
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None

    def __post_init__(self) -> None:
        # A count below zero is no count: read as 0, so a broken or hostile server cannot refill
        # a tpm limit, or make costs and totals negative, with
        # its usage (docs/attack-round-2026-12.md, round 2).
        if (self.prompt_tokens < 0 or self.completion_tokens < 0 or self.total_tokens < 0
                or (self.prompt_cache_hit_tokens or 0) < 0 or (self.prompt_cache_miss_tokens or 0) < 0):
            self.prompt_tokens = max(self.prompt_tokens, 0)
            self.completion_tokens = max(self.completion_tokens, 0)
            self.total_tokens = max(self.total_tokens, 0)
            if self.prompt_cache_hit_tokens is not None:
                self.prompt_cache_hit_tokens = max(self.prompt_cache_hit_tokens, 0)
            if self.prompt_cache_miss_tokens is not None:
                self.prompt_cache_miss_tokens = max(self.prompt_cache_miss_tokens, 0)

    @property
    def reasoning_tokens(self) -> int:
        """Tokens spent thinking (`completion_tokens_details.reasoning_tokens`), 0 when thinking was off."""
        d = self.completion_tokens_details
        return (d.reasoning_tokens or 0) if d is not None else 0


class Function(_Out, gc=False):
    name: str = ""
    # a JSON *string*, possibly invalid (0.04% one-brace-off, docs/deepseek-api-notes.md#tool-calls)
    arguments: str = ""


class ToolCall(_Out, gc=False):
    """One call of a function tool in an answer's `message.tool_calls`: `id` (echo it in the tool
    result message), `function.name` and `function.arguments`, a JSON *string* the model wrote, which
    may not parse: decode it yourself, or let `run_tools` validate it against the tool's schema.

    Attributes:
        id: The call's id, to send back as the tool message's `tool_call_id`.
        type: Always "function" (the only tool type DeepSeek has).
        function: The function's `name` and its `arguments` (a JSON string)."""

    id: str = ""
    type: str = "function"
    function: Function = msgspec.field(default_factory=Function)


class ChatCompletionMessage(_Out, gc=False):
    """The assistant's message in a `Choice`: the answer `content`, the thinking-mode
    `reasoning_content`, and `tool_calls` when the model asks for tools. Send it back in the next
    request's history with `to_param()`.

    Attributes:
        role: Always "assistant".
        content: The answer text; None (or "") when the model only called tools.
        reasoning_content: The thinking-mode reasoning; None when thinking was off.
        tool_calls: The tool calls the model asks for, or None.
        reasoning: Where vLLM and Ollama put the reasoning; the client moves it into
            `reasoning_content`, so it reads UNSET on the answers it returns."""

    role: str = "assistant"
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None
    #: vLLM >= 0.11 / Ollama name of reasoning_content; folded into it by `_dialects` (then UNSET).
    reasoning: str | UnsetType | None = UNSET

    def to_param(self) -> dict[str, Any]:
        """This message as it must be sent back in the next request's history: reasoning_content
        and tool_calls kept verbatim (thinking mode with tools
        requires it, docs/deepseek-api-notes.md#thinking-mode),
        null fields dropped, and `content: ""` rather than null (the key is required and some
        gateways reject null, docs/deepseek-api-notes.md#request-fields)."""
        d: dict[str, Any] = {k: v for k, v in msgspec.to_builtins(self).items() if v is not None}
        d.setdefault("content", "")
        return d


class Choice(_Out, gc=False):
    """One answer in `ChatCompletion.choices` (DeepSeek returns one): its `message`, the
    `finish_reason` ("stop", "length", "tool_calls", "content_filter", "insufficient_system_resource")
    and `logprobs` when they were asked for.

    Attributes:
        index: The choice's position in `choices` (0, as DeepSeek returns one choice).
        message: The assistant's answer.
        logprobs: Token log-probabilities when the request set `logprobs`, else None.
        finish_reason: Why the answer ended (the values above)."""

    index: int = 0
    message: ChatCompletionMessage = msgspec.field(default_factory=ChatCompletionMessage)
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletion(_Out, gc=False):
    """The answer to a non-stream `chat.completions.create()`, as DeepSeek sends it:

        completion = await client.chat.completions.create(model="deepseek-flash", messages=[...])
        completion.choices[0].message.content   # the answer
        completion.usage.prompt_cache_hit_tokens

    A stream builds the same object: `stream.get_final_completion()`.

    Attributes:
        id: The answer's id (a UUID at DeepSeek); the logs store it as `response_id`.
        object: Always "chat.completion".
        created: When the server made the answer, in Unix seconds.
        model: The model that answered, as the server names it.
        system_fingerprint: The server's build; the emulator's marks its answers as synthetic
            (see `synthetic`).
        choices: The answers, one at DeepSeek.
        usage: Token counts, the basis of the cost; None when the server sent none."""

    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    system_fingerprint: str | None = None
    choices: list[Choice] = []
    usage: Usage | None = None

    @property
    def synthetic(self) -> bool:
        """True when deepseek-kit's emulator wrote this answer (its fingerprint says so)."""
        return is_synthetic_fingerprint(self.system_fingerprint)


class ChoiceDeltaToolCallFunction(_Out, gc=False):
    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCall(_Out, gc=False):
    """A tool-call fragment: the first carries id/type/name, the rest
    only index + arguments (docs/deepseek-api-notes.md#tool-calls).
    `index` defaults to 0 for servers that omit it; some send `null` (docs/dialects.md), kept as None
    for the accumulator to place by id.

    Attributes:
        index: Which call of the answer this fragment belongs to.
        id: The call's id, on its first fragment.
        type: "function", on the first fragment.
        function: The function's `name` (first fragment) and a piece of its `arguments`."""

    index: int | None = 0
    id: str | None = None
    type: str | None = None
    function: ChoiceDeltaToolCallFunction | None = None


class ChoiceDelta(_Out, gc=False):
    """What one stream chunk adds to a choice: a piece of `content` or `reasoning_content`,
    tool-call fragments (`tool_calls`), and `role` on the first chunk. Concatenate the pieces, or let
    the stream accumulate them (`get_final_completion()`).

    Attributes:
        role: "assistant" on the first chunk, None after.
        content: The next piece of the answer text, or None.
        reasoning_content: The next piece of the reasoning (thinking mode), or None.
        tool_calls: Tool-call fragments, or None.
        reasoning: Where vLLM and Ollama stream the reasoning; the stream moves it into
            `reasoning_content`, so it reads UNSET on the chunks it yields."""

    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None
    #: vLLM >= 0.11 / Ollama name of reasoning_content; folded into it by the accumulator (then UNSET).
    reasoning: str | UnsetType | None = UNSET


class ChunkChoice(_Out, gc=False):
    """One choice in a `ChatCompletionChunk`: its `delta`, and `finish_reason` on the chunk that
    ends it (None before).

    Attributes:
        index: The choice's position (0, as DeepSeek returns one choice).
        delta: What this chunk adds.
        logprobs: This chunk's token log-probabilities when the request set `logprobs`.
        finish_reason: Why the answer ended, on its last chunk; None before."""

    index: int = 0
    delta: ChoiceDelta = msgspec.field(default_factory=ChoiceDelta)
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(_Out, gc=False):
    """One event of a streamed `chat.completions.create(stream=True)`: the `choices` deltas, and
    `usage` on the last chunk. Iterate the stream for them:

        async with await client.chat.completions.create(..., stream=True) as stream:
            async for chunk in stream:
                print(chunk.choices[0].delta.content or "", end="")

    Attributes:
        id: The answer's id, the same on every chunk of a stream.
        object: Always "chat.completion.chunk".
        created: When the server began the answer, in Unix seconds.
        model: The model that answers.
        system_fingerprint: The server's build (as on `ChatCompletion`).
        choices: This chunk's deltas; empty on a usage-only chunk.
        usage: The answer's token counts, on the last chunk; None before.
        error: An error object the server sent inside the stream; the client raises
            `APIError` rather than yield such a chunk, so it reads None."""

    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    system_fingerprint: str | None = None
    choices: list[ChunkChoice] = []
    usage: Usage | None = None
    #: Set when the server sent an error object inside the stream; the client raises instead of
    #: yielding such a chunk.
    error: ErrorObject | None = None


class CompletionLogprobs(_Out, gc=False):
    """FIM logprobs (OpenAI legacy completions shape, docs/deepseek-api-notes.md#fim-beta)."""

    text_offset: list[int] | None = None
    token_logprobs: list[float | None] | None = None
    tokens: list[str] | None = None
    top_logprobs: list[dict[str, float] | None] | None = None


class CompletionChoice(_Out, gc=False):
    index: int = 0
    text: str = ""
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None


class Completion(_Out, gc=False):
    """`text_completion` object of FIM (`POST /beta/completions`): the text that fills the gap
    between `prompt` and `suffix` is `completion.choices[0].text`.

    Attributes:
        id: The answer's id.
        object: Always "text_completion".
        created: When the server made the answer, in Unix seconds.
        model: The model that answered.
        system_fingerprint: The server's build (as on `ChatCompletion`).
        choices: The answers (`text`, `finish_reason`, `logprobs`), one at DeepSeek.
        usage: Token counts; None when the server sent none.
        error: An error object the server sent inside a stream; the client raises rather than
            return it, so it reads None."""

    id: str = ""
    object: str = "text_completion"
    created: int = 0
    model: str = ""
    system_fingerprint: str | None = None
    choices: list[CompletionChoice] = []
    usage: Usage | None = None
    error: ErrorObject | None = None


class Model(_Out, gc=False):
    """One entry of `client.models.list()`: the model `id` to pass as `model=`, and its owner.

    Attributes:
        id: The model name to pass as `model=`.
        object: Always "model".
        owned_by: Who serves it ("deepseek" at DeepSeek).
        created: When the model was published, in Unix seconds; None, as DeepSeek sends none."""

    id: str = ""
    object: str = "model"
    owned_by: str = ""
    created: int | None = None


class ModelList(_Out, gc=False):
    """The answer of `client.models.list()`: iterate it (or read `.data`) for the `Model` entries.

    Attributes:
        object: Always "list".
        data: The models."""

    object: str = "list"
    data: list[Model] = []

    def __iter__(self) -> Any:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


class BalanceInfo(_Out, gc=False):
    """The balance in one currency. Amounts are decimal *strings* on the wire, kept as strings:
    read them with `Decimal(...)`, never `float` (docs/deepseek-api-notes.md#balance).

    Attributes:
        currency: "CNY" or "USD".
        total_balance: What the account can spend, `granted_balance + topped_up_balance`.
        granted_balance: Granted credit; it can expire.
        topped_up_balance: Paid credit; it does not expire."""

    currency: str = ""
    total_balance: str = "0"
    granted_balance: str = "0"
    topped_up_balance: str = "0"


class Balance(_Out, gc=False):
    """The answer of `client.user.balance()` (`GET /user/balance`): whether the account can make
    calls now (`is_available`) and one `BalanceInfo` per currency.

    Attributes:
        is_available: Whether the balance can pay for calls now.
        balance_infos: One `BalanceInfo` per currency the account holds."""

    is_available: bool = False
    balance_infos: list[BalanceInfo] = []


class ErrorBody(_Out, gc=False):
    error: ErrorObject | None = None


# ---------------------------------------------------------------------------------------------
# Decoding what a server sent. msgspec raises RecursionError (not DecodeError) for JSON nested
# deeper than the interpreter's recursion limit (`[[[[...` 5,000 deep is 10 KB): a hostile or
# broken server must not escape our error tree that way (docs/attack-round-2026-12.md, C2). Every decode of a
# response goes through `SafeDecoder` / `decode_json`, which turn it into `msgspec.DecodeError`, so each
# `except msgspec.DecodeError` at a decode site maps it like any other malformed answer.

T = TypeVar("T")

TOO_DEEP = "JSON nested too deeply"


class SafeDecoder(Generic[T]):
    """`msgspec.json.Decoder(type)` whose `decode()` raises `msgspec.DecodeError` for too-deep
    nesting too. Costs one Python call (~0.1 us) over the bare decoder."""

    __slots__ = ("_decode", "type")

    def __init__(self, type: Any) -> None:
        self.type = type
        self._decode = msgspec.json.Decoder(type).decode

    def decode(self, buf: bytes | bytearray | memoryview | str) -> T:
        try:
            return self._decode(buf)  # type: ignore[no-any-return]
        except RecursionError:
            raise msgspec.DecodeError(TOO_DEEP) from None


_any_decode = msgspec.json.Decoder().decode


def decode_json(buf: bytes | bytearray | memoryview | str) -> Any:
    """Untyped `msgspec.json.decode` of a response body, with the same guard as `SafeDecoder`."""
    try:
        return _any_decode(buf)
    except RecursionError:
        raise msgspec.DecodeError(TOO_DEEP) from None


# Decoders are built once: msgspec compiles a decoder per type on first use and reuses it.
chat_completion_decoder: SafeDecoder[ChatCompletion] = SafeDecoder(ChatCompletion)
chunk_decoder: SafeDecoder[ChatCompletionChunk] = SafeDecoder(ChatCompletionChunk)
completion_decoder: SafeDecoder[Completion] = SafeDecoder(Completion)
model_list_decoder: SafeDecoder[ModelList] = SafeDecoder(ModelList)
balance_decoder: SafeDecoder[Balance] = SafeDecoder(Balance)
error_body_decoder: SafeDecoder[ErrorBody] = SafeDecoder(ErrorBody)
