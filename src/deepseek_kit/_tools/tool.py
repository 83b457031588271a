"""`@tool`: a Python function as a DeepSeek tool - its JSON schema, and its arguments parsed back.

    @tool
    def get_weather(city: str, units: Literal["metric", "imperial"] = "metric") -> dict:
        '''Current weather for a city.

        Args:
            city: City name, e.g. "Paris".
        '''

`get_weather.schema` is the `{"type": "function", "function": {...}}` entry for `tools=[...]`;
`get_weather(...)` still calls the function; `await get_weather.invoke('{"city": "Paris"}')`
parses the model's JSON arguments, validates them and runs the function (sync functions in a
thread). The schema comes from the type hints (through msgspec, or pydantic when a parameter is a
pydantic model, see `_tools/json_schema.py`) and the docstring: its summary and body become the
description, its Google/NumPy/reST parameter sections the property descriptions (parsed by
`docstring_parser`, a well-kept library, rather than by hand). `strict=True` makes the schema
valid for DeepSeek's strict mode (Beta,
docs/deepseek-api-notes.md#tool-calls) and marks the function `strict`.

Arguments are validated leniently (a number sent as a string is converted) and a `null` for an
optional parameter means "use the default". What the model gets wrong raises `ToolArgumentsError`,
whose message is written for the model to read: the tool loop feeds it back as the tool result.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import re
import sys
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Generic, ParamSpec, TypeVar, overload

import msgspec

from deepseek_kit._wire.errors import DeepSeekError, UsageError

from .json_schema import drop_nulls, inline_refs, mentions_pydantic, to_strict

__all__ = ["Tool", "ToolArgumentsError", "encode_result", "tool"]

P = ParamSpec("P")
R = TypeVar("R")

# function.name rule of docs/deepseek-api-notes.md#request-fields
_NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# what DeepSeek's harness sends for an empty tool result (docs/deepseek-api-notes.md#request-fields)
NO_OUTPUT = "(no output)"


class ToolArgumentsError(DeepSeekError, ValueError):
    """The model's arguments for a tool call are not valid JSON, not an object, or do not match
    the parameters. `tool` names the tool, `detail` says what is wrong (the tool loop shows the
    model this message, so it can call again), `arguments` is the raw text the model sent."""

    def __init__(self, tool: str, detail: str, arguments: Any = None) -> None:
        super().__init__(f"Invalid arguments for tool '{tool}': {detail}")
        self.tool = tool
        self.detail = detail
        self.arguments = arguments


def _docstring(fn: Any) -> tuple[str, dict[str, str]]:
    doc = inspect.getdoc(fn)
    if not doc:
        return "", {}
    import docstring_parser

    parsed = docstring_parser.parse(doc)
    text = "\n\n".join(p for p in (parsed.short_description, parsed.long_description) if p)
    params = {p.arg_name: " ".join(p.description.split()) for p in parsed.params if p.description}
    return text, params


def _annotated_description(tp: Any) -> tuple[bool, str | None]:
    """(has a msgspec.Meta description, a plain-string Annotated description)."""
    if typing.get_origin(tp) is not Annotated:
        return False, None
    has_meta = any(isinstance(m, msgspec.Meta) and m.description for m in tp.__metadata__)
    plain = next((m for m in tp.__metadata__ if isinstance(m, str)), None)
    return has_meta, plain


def _target(fn: Any) -> Any:
    """The function whose hints and async-ness count: a callable object's __call__."""
    if inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, functools.partial):
        return fn
    return getattr(type(fn), "__call__", fn)  # noqa: B004 - the method itself, not a callable() test


def _hints(fn: Any) -> dict[str, Any]:
    target = _target(fn)
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # forward references that do not resolve, partials: the raw annotations
        return {}


class _Param(msgspec.Struct, frozen=True):
    name: str
    type: Any
    description: str | None
    default: Any  # inspect.Parameter.empty when required
    positional_only: bool


def _params(fn: Any, owner: str, docs: Mapping[str, str]) -> list[_Param]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{owner}: cannot read the function's signature ({exc})") from None
    hints = _hints(fn)
    out = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise UsageError(f"{owner}: *{p.name} / **{p.name} cannot be described to the model; "
                             "give every parameter a name and a type")
        tp = hints.get(p.name, p.annotation)
        if tp is inspect.Parameter.empty:
            tp = Any
        elif isinstance(tp, str):
            raise UsageError(f"{owner}: the annotation {tp!r} of '{p.name}' does not resolve; "
                             "import the names it uses at module level")
        has_meta, plain = _annotated_description(tp)
        desc = None if has_meta else (docs.get(p.name) or plain)
        out.append(_Param(p.name, tp, desc, p.default, p.kind is p.POSITIONAL_ONLY))
    return out


class _MsgspecArgs:
    """Parameters as a msgspec Struct: schema, and conversion with msgspec's messages
    ("Expected `int`, got `str` - at `$.count`"). Optional fields default to UNSET, so only the
    arguments the model sent are passed and the function's own defaults apply."""

    def __init__(self, name: str, params: list[_Param]) -> None:
        fields: list[Any] = []
        for p in params:
            tp = Annotated[p.type, msgspec.Meta(description=p.description)] if p.description else p.type
            required = p.default is inspect.Parameter.empty
            fields.append((p.name, tp) if required else (p.name, tp, msgspec.UNSET))
        try:
            self.struct = msgspec.defstruct(f"{name}_arguments", fields, kw_only=True)
            schema = inline_refs(msgspec.json.schema(self.struct))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"tool '{name}': cannot derive a JSON schema from the type hints "
                             f"({exc})") from None
        for p in params:  # show the defaults (the struct's are UNSET)
            if p.default is not inspect.Parameter.empty:
                with contextlib.suppress(TypeError, msgspec.EncodeError):
                    schema["properties"][p.name]["default"] = msgspec.to_builtins(p.default)
        self.schema = schema

    def convert(self, data: dict[str, Any]) -> dict[str, Any]:
        obj = msgspec.convert(data, self.struct, strict=False)
        return {f: v for f in self.struct.__struct_fields__ if (v := getattr(obj, f)) is not msgspec.UNSET}


class _PydanticArgs:
    """Parameters as a pydantic model, used when one of them is (or contains) a pydantic model."""

    def __init__(self, name: str, params: list[_Param]) -> None:
        pydantic = sys.modules["pydantic"]
        fields: dict[str, Any] = {}
        for p in params:
            tp = Annotated[p.type, pydantic.Field(description=p.description)] if p.description else p.type
            fields[p.name] = (tp, ... if p.default is inspect.Parameter.empty else p.default)
        self.model = pydantic.create_model(f"{name}_arguments", **fields)
        self.schema = inline_refs(self.model.model_json_schema())

    def convert(self, data: dict[str, Any]) -> dict[str, Any]:
        obj = self.model.model_validate(data)
        return {k: getattr(obj, k) for k in self.model.model_fields if k in obj.model_fields_set}


def validation_message(exc: Exception) -> str:
    """One line per problem: msgspec's message as is, pydantic's `loc: msg` list without its URLs."""
    errors = getattr(exc, "errors", None)
    if callable(errors) and type(exc).__module__.startswith("pydantic"):
        return "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ())) or '(root)'}: {e.get('msg')}"
                         for e in errors())
    return str(exc)


class Tool(Generic[P, R]):
    """A function the model may call. `.schema` for `tools=[...]`, `tool(...)` calls the function,
    `await tool.invoke(arguments_json)` validates the model's arguments and runs it.

    Usually made with the `@tool` decorator. `fn`: the function (sync or async; its type hints
    become the parameters' schema, its docstring the descriptions). `name`, `description`: override
    the function's name and docstring. `strict=True`: a schema valid for DeepSeek's strict mode."""

    def __init__(self, fn: Callable[P, R], *, name: str | None = None, description: str | None = None,
                 strict: bool = False) -> None:
        if not callable(fn):
            raise UsageError(f"@tool needs a function, got {type(fn).__name__}")
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", type(fn).__name__))
        if not _NAME_RE.fullmatch(self.name):
            raise UsageError(f"tool name {self.name!r} must match [a-zA-Z0-9_-]{{1,64}} (DeepSeek's rule); "
                             "pass name=...")
        owner = f"tool '{self.name}'"
        doc, param_docs = _docstring(fn)
        self.description = doc if description is None else description
        self.strict = strict
        self._params = _params(fn, owner, param_docs)
        backend = _PydanticArgs if any(mentions_pydantic(p.type) for p in self._params) else _MsgspecArgs
        self._args: _MsgspecArgs | _PydanticArgs = backend(self.name, self._params)
        self.parameters: dict[str, Any] = to_strict(self._args.schema, owner) if strict else self._args.schema
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(_target(fn))
        functools.update_wrapper(self, fn, updated=())

    @property
    def schema(self) -> dict[str, Any]:
        """The entry for `tools=[...]` (docs/deepseek-api-notes.md#request-fields)."""
        fn: dict[str, Any] = {"name": self.name}
        if self.description:
            fn["description"] = self.description
        fn["parameters"] = self.parameters
        if self.strict:
            fn["strict"] = True  # Beta: honoured under /beta only (docs/deepseek-api-notes.md#tool-calls)
        return {"type": "function", "function": fn}

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r}, strict={self.strict})"

    def parse_arguments(self, arguments: str | bytes | Mapping[str, Any] | None) -> dict[str, Any]:
        """The model's arguments (a JSON string, as on the wire) as validated keyword values.
        Empty arguments mean no arguments. Raises ToolArgumentsError."""
        if arguments is None or (isinstance(arguments, (str, bytes)) and not arguments.strip()):
            data: Any = {}
        elif isinstance(arguments, (str, bytes)):
            try:
                data = msgspec.json.decode(arguments)
            # e.g. one brace off (0.04% of calls, docs/deepseek-api-notes.md#tool-calls)
            except msgspec.DecodeError as exc:
                raise ToolArgumentsError(self.name, f"the arguments are not valid JSON ({exc}); "
                                         "send a single JSON object", arguments) from None
        else:
            data = dict(arguments)
        if not isinstance(data, dict):
            raise ToolArgumentsError(self.name, f"the arguments must be a JSON object, not "
                                     f"{type(data).__name__}", arguments)
        data = drop_nulls(data, self._args.schema, self._args.schema)
        try:
            return self._args.convert(data)
        except Exception as exc:
            if isinstance(exc, msgspec.ValidationError) or type(exc).__name__ == "ValidationError":
                raise ToolArgumentsError(self.name, validation_message(exc), arguments) from None
            raise

    async def call(self, values: Mapping[str, Any]) -> Any:
        """Run the function with already validated values: a coroutine function is awaited, a
        plain function runs in a thread (asyncio.to_thread) so it never blocks the event loop."""
        args = [values[p.name] for p in self._params if p.positional_only and p.name in values]
        kwargs = {p.name: values[p.name] for p in self._params if not p.positional_only and p.name in values}
        if self.is_async:
            result: Any = await self.fn(*args, **kwargs)  # type: ignore[misc]
        else:
            result = await asyncio.to_thread(self.fn, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def invoke(self, arguments: str | bytes | Mapping[str, Any] | None) -> Any:
        """Parse the model's arguments and run the function; returns what it returned."""
        return await self.call(self.parse_arguments(arguments))


@overload
def tool(fn: Callable[P, R], /) -> Tool[P, R]: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, strict: bool = False
) -> Callable[[Callable[P, R]], Tool[P, R]]: ...


def tool(
    fn: Callable[P, R] | None = None, /, *, name: str | None = None, description: str | None = None,
    strict: bool = False,
) -> Tool[P, R] | Callable[[Callable[P, R]], Tool[P, R]]:
    """`@tool` or `@tool(name=..., description=..., strict=True)`; also `tool(fn)` for a function
    you do not own. See the module docstring."""
    if fn is not None:
        return Tool(fn, name=name, description=description, strict=strict)

    def wrap(f: Callable[P, R]) -> Tool[P, R]:
        return Tool(f, name=name, description=description, strict=strict)

    return wrap


def as_tool(value: Tool[Any, Any] | Callable[..., Any]) -> Tool[Any, Any]:
    return value if isinstance(value, Tool) else Tool(value)


def _enc_hook(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)  # a pydantic model
    if callable(dump):
        return dump(mode="json")
    return str(obj)


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode_result(value: Any) -> str:
    """A tool's return value as the `content` of its tool message: text as is, anything else as
    JSON, and "(no output)" for None or empty text, as DeepSeek's
    harness sends (docs/deepseek-api-notes.md#request-fields)."""
    if value is None:
        return NO_OUTPUT
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value if value.strip() else NO_OUTPUT
    return _encoder.encode(value).decode()

