"""Structured output: a reply parsed into a pydantic model or a msgspec type, through JSON mode.

    class City(msgspec.Struct):
        name: str
        population: int

    city = await parse(client, "The largest city in Peru?", City, model="deepseek-flash")

DeepSeek has JSON mode (`response_format: {"type": "json_object"}`) but no JSON-schema mode
(docs/deepseek-api-notes.md#request-fields, #json-output),
so the schema travels in the prompt. What `parse` does:

1. adds a system message (after the caller's own system messages, so the prompt prefix stays
   stable for DeepSeek's disk cache) that asks for one JSON object, shows a short example first
   and then the JSON schema. It contains the word "json": without it DeepSeek's JSON mode returns
   only whitespace (docs/deepseek-api-notes.md#json-output).
   `instructions=False` leaves the prompt to the caller;
2. repairs a blank or whitespace-only reply - a real DeepSeek
   behaviour (docs/deepseek-api-notes.md#json-output) - by asking
   again, with the instruction added if it was missing, or with a nudge if it was there;
3. strips code fences (and prose around the object) that some servers add, then validates: a
   pydantic model with `model_validate_json`, anything msgspec knows (Struct, dataclass,
   TypedDict...) with `msgspec.json.decode`, both lenient about numbers sent as strings;
4. on invalid JSON or a validation error, asks again with its reply and the error text in the
   history, at most `max_reasks` times, then raises `StructuredOutputError` with the raw text
   and every error.

`max_retries` means what it means everywhere else in the API: transport retries of each request
(`chat.completions.create(max_retries=...)`). For one release the old `parse(max_retries=N)` (the
re-ask count) still works as `max_reasks=N` with a DeprecationWarning; pass `max_reasks=`.

`parse(..., full=True)` returns a `Parsed`: the object with the last completion, the usage
summed over every attempt, its cost and the number of attempts.

The example is derived from the schema (the first enum value, defaults, one item per list,
placeholders for text) unless `example=` gives one. pydantic is only used when the type is a
pydantic model, so this module never imports it.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

import msgspec

from deepseek_kit._client.params import ALL_PARAMS, Message, check_params
from deepseek_kit._client.resume import sum_usage
from deepseek_kit._wire import pricing as _pricing
from deepseek_kit._wire.errors import DeepSeekError, UsageError
from deepseek_kit._wire.types import ChatCompletion, Usage

from .json_schema import example as schema_example
from .json_schema import inline_refs, is_pydantic_model, type_schema
from .tool import validation_message

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from deepseek_kit._client.client import AsyncClient
    from deepseek_kit._client.params import ChatParams
    from deepseek_kit._client.sync_client import Client

__all__ = ["Parsed", "StructuredOutputError", "parse", "parse_sync"]

T = TypeVar("T")

_FENCE_RE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_encode = msgspec.json.Encoder().encode


class StructuredOutputError(DeepSeekError):
    """No valid object after every attempt. `raw` is the last reply's text, `errors` one message
    per failed attempt (blank reply, invalid JSON, validation), `attempts` the model calls made
    (`max_reasks + 1`), `completion` the last answer."""

    def __init__(self, message: str, *, raw: str, errors: list[str], attempts: int,
                 completion: ChatCompletion | None) -> None:
        super().__init__(message)
        self.raw = raw
        self.errors = errors
        self.attempts = attempts
        self.completion = completion


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """What `parse(..., full=True)` returns: the parsed `value` and what it took.

    - value: the instance of the requested type.
    - completion: the last answer (the one that parsed).
    - usage: tokens summed over every attempt (None if no answer carried usage).
    - cost: what those attempts cost, a `Decimal` in `currency` ("CNY" or "USD"), each answer
      priced at the time it arrived, peak or off-peak (`deepseek_kit.cost`).
    - attempts: model calls made, 1 when the first reply parsed."""

    value: T
    completion: ChatCompletion
    usage: Usage | None
    cost: Decimal
    attempts: int
    currency: str = "CNY"


_PARSE_ONLY = frozenset({"response_format"})
_ALLOWED = ALL_PARAMS - _PARSE_ONLY


class _Target:
    """The requested type: its schema, an example, and a validator."""

    def __init__(self, tp: Any, example: Any) -> None:
        self.type = tp
        self.name = getattr(tp, "__name__", repr(tp))
        self.pydantic = is_pydantic_model(tp)
        schema = inline_refs(type_schema(tp))
        if schema.get("type") != "object" and "properties" not in schema:
            raise UsageError(f"parse() needs a type that is a JSON object (a model, Struct, dataclass "
                             f"or TypedDict): DeepSeek's JSON mode returns an object, and {self.name} is "
                             "not one; wrap it in a model with one field")
        self.schema = schema
        if example is None:
            example = schema_example(schema)
        elif is_pydantic_model(type(example)):
            example = example.model_dump(mode="json")
        self.example = msgspec.to_builtins(example)
        self._decoder = None if self.pydantic else msgspec.json.Decoder(tp, strict=False)

    def instruction(self) -> str:
        # The example comes before the schema: a model (and our emulator) copies the first
        # object it sees, and the example is the shape we want back.
        example, schema = _encode(self.example).decode(), _encode(self.schema).decode()
        return ("Reply with a single JSON object and nothing else: no prose, no code fences.\n"
                f"Example of the expected JSON (the values are placeholders):\n{example}\n"
                f"The JSON must match this JSON schema:\n{schema}")

    def validate(self, text: str) -> Any:
        if self.pydantic:
            return self.type.model_validate_json(text)
        assert self._decoder is not None
        return self._decoder.decode(text)


def _extract(text: str) -> str:
    """The JSON inside a reply: code fences removed; with prose around it, the outermost object."""
    m = _FENCE_RE.match(text)
    if m:
        text = m.group(1)
    text = text.strip()
    if not text.startswith("{") and "{" in text and "}" in text:
        text = text[text.index("{"): text.rindex("}") + 1]
    return text


def _mentions_json(messages: list[Any]) -> bool:
    for m in messages:
        role = m.get("role") if isinstance(m, Mapping) else getattr(m, "role", None)
        content = m.get("content") if isinstance(m, Mapping) else getattr(m, "content", None)
        if role in ("system", "user") and isinstance(content, str) and "json" in content.lower():
            return True
    return False


def _with_instruction(messages: list[Any], instruction: str) -> list[Any]:
    """The instruction as a system message after the leading system messages."""
    i = 0
    while i < len(messages):
        m = messages[i]
        role = m.get("role") if isinstance(m, Mapping) else getattr(m, "role", None)
        if role != "system":
            break
        i += 1
    return [*messages[:i], {"role": "system", "content": instruction}, *messages[i:]]


@overload
async def parse(client: AsyncClient, messages: str | Iterable[Message], output_type: type[T], *, model: str,
                max_reasks: int | None = None, example: Any = None, instructions: bool = True,
                full: Literal[False] = False, currency: str = "CNY",
                **params: Unpack[ChatParams]) -> T: ...


@overload
async def parse(client: AsyncClient, messages: str | Iterable[Message], output_type: type[T], *, model: str,
                max_reasks: int | None = None, example: Any = None, instructions: bool = True,
                full: Literal[True], currency: str = "CNY",
                **params: Unpack[ChatParams]) -> Parsed[T]: ...


async def parse(
    client: AsyncClient,
    messages: str | Iterable[Message],
    output_type: type[T],
    *,
    model: str,
    max_reasks: int | None = None,
    example: Any = None,
    instructions: bool = True,
    full: bool = False,
    currency: str = "CNY",
    **params: Unpack[ChatParams],
) -> T | Parsed[T]:
    """Ask for a JSON object and return it as an instance of `output_type` (module docstring).

    - client: an `AsyncClient` (`parse_sync` takes a `Client`).
    - messages: a plain string (one user message) or a list of messages.
    - output_type: a pydantic model, msgspec Struct, dataclass or TypedDict (a JSON object).
    - model: the model of every request.
    - max_reasks: how many times a blank or invalid reply is asked again (default 2; 0: one
      attempt). Formerly `max_retries=`: for one release, `max_retries=N` without `max_reasks`
      is still read as the re-ask count, with a DeprecationWarning; with `max_reasks` given,
      `max_retries` is the transport retries of each request, as everywhere else.
    - example: an instance (or dict) shown as the example object (default: derived from the schema).
    - instructions: False leaves the schema instruction out (the prompt is the caller's).
    - full: True returns a `Parsed` (value, completion, summed usage, cost, attempts).
    - currency: "CNY" or "USD", for `Parsed.cost`.
    - params: any other `chat.completions.create` argument, for every attempt (thinking,
      max_tokens, temperature, max_retries = transport retries, extra_headers...); not
      `response_format` and `stream`, which parse sets.

    Raises `StructuredOutputError` when no attempt parsed, `UsageError` for a type that is not a
    JSON object or a bad setting, `TypeError` for an unknown keyword (naming its close match),
    and the client's errors (`APIStatusError`...) for failed requests.

        city = await parse(client, "The largest city in Peru? Reply in json.", City, model="deepseek-flash")
        result = await parse(client, "...", City, model="deepseek-flash", full=True)
        print(result.value.name, result.attempts, result.cost)"""
    p: dict[str, Any] = dict(params)
    if "max_retries" in p and max_reasks is None:
        # One meaning of max_retries across the API (transport retries): the old re-ask keyword
        # keeps working for one release, loudly.
        warnings.warn("parse(max_retries=N) is deprecated: it counted re-asks, and max_retries means "
                      "transport retries everywhere else; pass max_reasks=N (this call uses "
                      "max_reasks=N and the client's transport retries)", DeprecationWarning, stacklevel=2)
        max_reasks = p.pop("max_retries")
    if "response_format" in p or "stream" in p:
        raise UsageError("parse() sets response_format (JSON mode) and stream itself; do not pass them")
    if p and not p.keys() <= _ALLOWED:
        check_params("parse()", p, _ALLOWED, "parse() passes chat.completions.create arguments on")
    if max_reasks is None:
        max_reasks = 2
    if type(max_reasks) is not int or max_reasks < 0:
        raise UsageError(f"max_reasks must be an integer >= 0, got {max_reasks!r}")
    if currency.upper() not in _pricing.PRICES:
        raise UsageError(f"currency must be one of {', '.join(_pricing.PRICES)}, not {currency!r}")
    target = _Target(output_type, example)
    msgs: list[Any] = [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
    instructed = False
    if instructions:
        msgs, instructed = _with_instruction(msgs, target.instruction()), True
    errors: list[str] = []
    raw = ""
    completion: ChatCompletion | None = None
    usage: Usage | None = None
    spent = Decimal(0)
    prices = _pricing.PriceBook(currency.upper(), client.holidays)
    for attempt in range(1, max_reasks + 2):
        completion = await client.chat.completions.create(
            model=model, messages=msgs, response_format={"type": "json_object"}, **p)
        if completion.usage is not None:
            usage = completion.usage if usage is None else sum_usage(usage, completion.usage)
            spent += prices.cost(completion.model or model, completion.usage, client.clock())
        if not completion.choices:
            raise DeepSeekError("the answer had no choices")
        message = completion.choices[0].message
        raw = message.content or ""
        cut = completion.choices[0].finish_reason == "length"
        if not raw.strip():
            # DeepSeek's JSON mode answers with spaces when the prompt lacks "json" or the model
            # produced something that is not JSON
            # (docs/deepseek-api-notes.md#json-output): ask again, more explicitly.
            errors.append("blank reply (only whitespace)" + (" at max_tokens" if cut else ""))
            if not instructed:
                msgs, instructed = _with_instruction(msgs, target.instruction()), True
            elif not _mentions_json(msgs[-1:]):
                msgs = [*msgs, {"role": "user", "content": "Your reply was empty. Reply now with the JSON "
                                                          "object only."}]
            continue
        try:
            value: T = target.validate(_extract(raw))
        except Exception as exc:
            if not isinstance(exc, (msgspec.DecodeError, ValueError)):
                raise
            detail = validation_message(exc)
            if cut:
                detail += " (the reply was cut off at max_tokens)"
            errors.append(detail)
        else:
            if full:
                return Parsed(value, completion, usage, spent, attempt, currency.upper())
            return value
        if attempt <= max_reasks:
            if not instructed:
                msgs, instructed = _with_instruction(msgs, target.instruction()), True
            msgs = [*msgs, message.to_param(), {
                "role": "user",
                "content": f"That reply is not valid: {detail}\nReply again with only the corrected JSON "
                           f"object for {target.name}, matching the schema."}]
    attempts = max_reasks + 1
    raise StructuredOutputError(
        f"no valid {target.name} after {attempts} attempt{'s' if attempts > 1 else ''}: {errors[-1]}",
        raw=raw, errors=errors, attempts=attempts, completion=completion)


@overload
def parse_sync(client: Client, messages: str | Iterable[Message], output_type: type[T], *, model: str,
               max_reasks: int | None = None, example: Any = None, instructions: bool = True,
               full: Literal[False] = False, currency: str = "CNY", **params: Unpack[ChatParams]) -> T: ...


@overload
def parse_sync(client: Client, messages: str | Iterable[Message], output_type: type[T], *, model: str,
               max_reasks: int | None = None, example: Any = None, instructions: bool = True,
               full: Literal[True], currency: str = "CNY", **params: Unpack[ChatParams]) -> Parsed[T]: ...


def parse_sync(client: Client, messages: str | Iterable[Message], output_type: type[T], *, model: str,
               **kwargs: Any) -> T | Parsed[T]:
    """`parse` for the sync `Client`: the same arguments, and the same result.

    - client: a `Client`.
    - messages: a plain string (one user message) or a list of messages.
    - output_type: a pydantic model, msgspec Struct, dataclass or TypedDict (a JSON object).
    - model: the model of every request.
    - the keyword arguments of `parse`: max_reasks, example, instructions, full, currency and
      any other `chat.completions.create` argument.

    Raises as `parse` does.

        city = parse_sync(client, "The largest city in Peru? Reply in json.", City, model="deepseek-flash")"""
    if "max_retries" in kwargs and "max_reasks" not in kwargs:
        warnings.warn("parse_sync(max_retries=N) is deprecated: it counted re-asks, and max_retries "
                      "means transport retries everywhere else; pass max_reasks=N", DeprecationWarning,
                      stacklevel=2)
        kwargs["max_reasks"] = kwargs.pop("max_retries")
    out: T | Parsed[T] = client._run(parse(client.async_client, messages, output_type, model=model, **kwargs))
    return out
