"""Rules for the `tools` array: serde-style type checks and strict-mode schema validation.

Strict mode (Beta, docs/deepseek-api-notes.md#tool-calls) is honoured only under `/beta`: when any function
sets `strict: true`, every function must; the server then validates each parameters schema - every
object lists all its properties in `required` and sets `additionalProperties: false`; supported
types are object, string, number, integer, boolean, array (and null), plus `enum` and `anyOf`;
string `format` is limited to email, hostname, ipv4, ipv6 and uuid (rig-core's notes). The error
texts are ours (DeepSeek's are not published); they name the function and the schema location.
"""

from __future__ import annotations

from typing import Any

from .errors import ApiError
from .serde import Path, SerdeError, invalid_type

__all__ = ["check_strict_tools", "check_tool_types"]

_TYPES = frozenset({"object", "string", "number", "integer", "boolean", "array", "null"})
_FORMATS = frozenset({"email", "hostname", "ipv4", "ipv6", "uuid"})


def check_tool_types(v: Any, p: Path) -> None:
    """serde stage: `tools` is a sequence of `{type: "function", function: {name, description?,
    parameters?, strict?}}`."""
    if v is None:
        return
    if not isinstance(v, list):
        raise invalid_type(v, "a sequence", p)
    for i, tool in enumerate(v):
        tp: Path = (*p, i)
        if not isinstance(tool, dict):
            raise invalid_type(tool, "struct Tool", tp)
        kind = tool.get("type", "function")
        if kind != "function":
            if not isinstance(kind, str):
                raise invalid_type(kind, "variant identifier", (*tp, "type"))
            raise SerdeError((*tp, "type"), f"unknown variant `{kind}`, expected `function`")
        if "function" not in tool:
            raise SerdeError(tp, "missing field `function`", "end")
        fn = tool["function"]
        fp: Path = (*tp, "function")
        if not isinstance(fn, dict):
            raise invalid_type(fn, "struct FunctionDefinition", fp)
        if "name" not in fn:
            raise SerdeError(fp, "missing field `name`", "end")
        if not isinstance(fn["name"], str):
            raise invalid_type(fn["name"], "a string", (*fp, "name"))
        desc = fn.get("description")
        if desc is not None and not isinstance(desc, str):
            raise invalid_type(desc, "a string", (*fp, "description"))
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise invalid_type(params, "a map", (*fp, "parameters"))
        strict = fn.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise invalid_type(strict, "a boolean", (*fp, "strict"))


def _fail(name: str, where: str, what: str) -> ApiError:
    return ApiError(400, f"Invalid schema for function '{name}': {where or '(root)'}: {what}",
                    "invalid_request_error")


def _check(schema: Any, name: str, where: str, depth: int = 0) -> None:
    if not isinstance(schema, dict):
        raise _fail(name, where, "a schema must be an object")
    if depth > 32:
        raise _fail(name, where, "schema nesting is too deep")
    if "$ref" in schema:
        return  # references into $defs are resolved by the server; not checked further
    for key in ("anyOf", "oneOf"):
        if key in schema:
            if key == "oneOf":
                raise _fail(name, where, "'oneOf' is not supported in strict mode, use 'anyOf'")
            options = schema[key]
            if not isinstance(options, list) or not options:
                raise _fail(name, where, "'anyOf' must be a non-empty array")
            for i, sub in enumerate(options):
                _check(sub, name, f"{where}/anyOf/{i}", depth + 1)
            return
    types = schema.get("type")
    if types is None:
        if "enum" in schema or "const" in schema:
            return
        raise _fail(name, where, "'type' is required")
    type_list = types if isinstance(types, list) else [types]
    for t in type_list:
        if t not in _TYPES:
            raise _fail(name, where, f"type {t!r} is not supported in strict mode")
    if "object" in type_list:
        props = schema.get("properties") or {}
        if not isinstance(props, dict):
            raise _fail(name, where, "'properties' must be an object")
        if schema.get("additionalProperties") is not False:
            raise _fail(name, where, "'additionalProperties' must be set to false")
        required = schema.get("required") or []
        missing = [k for k in props if k not in required]
        if missing:
            raise _fail(name, where, f"'required' must list every property; missing {missing[0]!r}")
        for key, sub in props.items():
            _check(sub, name, f"{where}/properties/{key}", depth + 1)
    if "array" in type_list and "items" in schema:
        _check(schema["items"], name, f"{where}/items", depth + 1)
    if "string" in type_list and "format" in schema and schema["format"] not in _FORMATS:
        raise _fail(name, where, f"string format {schema['format']!r} is not supported in strict mode")
    for defs_key in ("$defs", "definitions"):
        defs = schema.get(defs_key)
        if isinstance(defs, dict):
            for key, sub in defs.items():
                _check(sub, name, f"{where}/{defs_key}/{key}", depth + 1)


def check_strict_tools(tools: list[dict[str, Any]]) -> None:
    """Under /beta: if any function is strict, all must be, and each schema must pass `_check`."""
    flags = [bool(t["function"].get("strict")) for t in tools]
    if not any(flags):
        return
    if not all(flags):
        off = next(t["function"]["name"] for t, f in zip(tools, flags, strict=True) if not f)
        raise ApiError(400, f"Invalid tools: in strict mode every function must set `strict: true` "
                            f"(function '{off}' does not)", "invalid_request_error")
    for tool in tools:
        fn = tool["function"]
        params = fn.get("parameters")
        if params is not None:
            _check(params, fn["name"], "")
