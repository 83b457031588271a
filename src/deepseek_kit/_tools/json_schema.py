"""JSON schemas of Python types, shared by tools (`tool.py`) and structured output (`structured.py`).

- `type_schema(tp)`: the schema of a type. msgspec derives it (str/int/float/bool, Optional,
  Literal, Enum, list, dict, TypedDict, dataclass, msgspec.Struct, Annotated constraints) and
  pydantic's own `model_json_schema()` is used for a pydantic model. pydantic is never imported
  here: a pydantic model can only exist once the caller imported pydantic, so `sys.modules` says.
- `inline_refs`: `$ref`s into `$defs` replaced by the definitions (the model reads one flat
  schema; DeepSeek's strict mode wants `$ref`s inside `anyOf` expanded,
  docs/deepseek-api-notes.md#tool-calls). Recursive definitions cannot be inlined and stay under `$defs`.
- `to_strict`: the strict-mode rules of docs/deepseek-api-notes.md#tool-calls: every object lists all its
  properties in `required` and sets `additionalProperties: false`; a property that was optional becomes
  nullable (`anyOf` with `null`), so the model sends `null` for "use the default"; `oneOf` becomes
  `anyOf`; string formats other than email/hostname/ipv4/ipv6/uuid move into the description.
- `drop_nulls`: the way back - a `null` the model sent for an optional, non-nullable property is
  removed so the default applies.
- `example`: a small instance of a schema, for prompts that show the model the expected shape.
"""

from __future__ import annotations

import copy
import sys
import typing
from collections.abc import Iterator
from typing import Any

import msgspec

from deepseek_kit._wire.errors import UsageError

__all__ = [
    "accepts_null",
    "drop_nulls",
    "example",
    "inline_refs",
    "is_pydantic_model",
    "mentions_pydantic",
    "to_strict",
    "type_schema",
]

_STRICT_FORMATS = frozenset({"email", "hostname", "ipv4", "ipv6", "uuid"})
_DEFS_PREFIX = "#/$defs/"


def is_pydantic_model(tp: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def _type_parts(tp: Any, depth: int = 0) -> Iterator[Any]:
    yield tp
    if depth < 16:
        for arg in typing.get_args(tp):
            yield from _type_parts(arg, depth + 1)


def mentions_pydantic(tp: Any) -> bool:
    """True when `tp` is or contains (list[M], M | None, Annotated[M, ...]) a pydantic model."""
    if "pydantic" not in sys.modules:
        return False
    return any(is_pydantic_model(t) for t in _type_parts(tp))


def type_schema(tp: Any) -> dict[str, Any]:
    """The JSON schema of one type (with `$defs` when it has named parts)."""
    if is_pydantic_model(tp):
        out: dict[str, Any] = tp.model_json_schema()
        return out
    try:
        return msgspec.json.schema(tp)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot derive a JSON schema for {tp!r}: {exc}") from None


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` with local `$ref`s replaced by their definitions (see module docstring);
    `title`s are dropped (msgspec and pydantic add one per object: tokens the model pays for)."""
    defs: dict[str, Any] = dict(schema.get("$defs") or {})
    kept: dict[str, Any] = {}

    def walk(node: Any, stack: frozenset[str]) -> Any:
        if isinstance(node, list):
            return [walk(x, stack) for x in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_DEFS_PREFIX) and ref[len(_DEFS_PREFIX):] in defs:
            name = ref[len(_DEFS_PREFIX):]
            if name in stack:  # recursive: keep the reference, and the definition once
                if name not in kept:
                    kept[name] = {}
                    kept[name] = walk(defs[name], frozenset({name}))
                return {k: walk(v, stack) for k, v in node.items() if k != "title"}
            body = walk(defs[name], stack | {name})
            extra = {k: walk(v, stack) for k, v in node.items() if k not in ("$ref", "$defs", "title")}
            return {**body, **extra}
        return {k: walk(v, stack) for k, v in node.items() if k not in ("$defs", "title")}

    out: dict[str, Any] = walk(schema, frozenset())
    if kept:
        out["$defs"] = kept
    return out


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    seen = 0
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and seen < 32:
        ref = node["$ref"]
        if not ref.startswith(_DEFS_PREFIX):
            break
        node = (root.get("$defs") or {}).get(ref[len(_DEFS_PREFIX):], {})
        seen += 1
    return node


def accepts_null(node: Any, root: dict[str, Any] | None = None) -> bool:
    node = _resolve(node, root or {})
    if not isinstance(node, dict) or not node:
        return True  # {} is "anything"
    t = node.get("type")
    if t == "null" or (isinstance(t, list) and "null" in t):
        return True
    if isinstance(node.get("enum"), list) and None in node["enum"]:
        return True
    return any(accepts_null(o, root) for key in ("anyOf", "oneOf") for o in node.get(key) or ())


def _nullable(node: dict[str, Any]) -> dict[str, Any]:
    if accepts_null(node):
        return node
    desc = node.get("description")
    inner = {k: v for k, v in node.items() if k != "description"}
    if "anyOf" in inner and len(inner) == 1:
        out: dict[str, Any] = {"anyOf": [*inner["anyOf"], {"type": "null"}]}
    else:
        out = {"anyOf": [inner, {"type": "null"}]}
    if desc is not None:
        out = {"description": desc, **out}
    return out


def to_strict(schema: dict[str, Any], owner: str) -> dict[str, Any]:
    """A strict-mode copy of an inlined schema (module docstring). `owner` names the tool in the
    UsageError raised for what strict mode cannot express (free-form dicts, untyped values)."""

    def fail(path: str, what: str) -> UsageError:
        return UsageError(f"{owner}: {path or 'parameters'}: {what} cannot be expressed in strict mode "
                          "(https://api-docs.deepseek.com/guides/tool_calls); use a TypedDict, dataclass or "
                          "model with named fields, or strict=False")

    def fix(node: Any, path: str) -> Any:
        if not isinstance(node, dict):
            return node
        node = {k: v for k, v in node.items() if k not in ("default", "title", "examples")}
        if "$ref" in node:
            return node  # a recursive definition, fixed under $defs
        if "oneOf" in node:
            node["anyOf"] = node.pop("oneOf")
        if "allOf" in node:
            parts = node.pop("allOf")
            if len(parts) != 1:
                raise fail(path, "'allOf'")
            node = {**parts[0], **node}
            return fix(node, path)
        if "anyOf" in node:
            node["anyOf"] = [fix(o, f"{path}|{i}") for i, o in enumerate(node["anyOf"])]
            return node
        fmt = node.get("format")
        if fmt is not None and fmt not in _STRICT_FORMATS:
            node.pop("format")
            note = f"format: {fmt}"
            node["description"] = f"{node['description']} ({note})" if node.get("description") else note
        types = node.get("type")
        type_list = types if isinstance(types, list) else [types]
        if types is None and not ({"enum", "const"} & node.keys()) and "properties" not in node:
            raise fail(path, "a value without a type (Any)")
        if "object" in type_list or "properties" in node:
            extra = node.get("additionalProperties")
            if extra is True or (isinstance(extra, dict) and extra):
                raise fail(path, "a mapping with free-form keys (dict[str, T])")
            props = node.get("properties") or {}
            required = set(node.get("required") or ())
            fixed = {}
            for key, sub in props.items():
                sub = fix(sub, f"{path}.{key}" if path else key)
                fixed[key] = sub if key in required else _nullable(sub)
            node["type"] = types if types is not None else "object"
            node["properties"] = fixed
            node["required"] = list(props)
            node["additionalProperties"] = False
        if "array" in type_list and isinstance(node.get("items"), dict):
            node["items"] = fix(node["items"], f"{path}[]")
        return node

    out: dict[str, Any] = fix(schema, "")
    if isinstance(schema.get("$defs"), dict):
        out["$defs"] = {k: fix(v, k) for k, v in schema["$defs"].items()}
    return out


def drop_nulls(value: Any, node: Any, root: dict[str, Any]) -> Any:
    """Remove the `null`s the model sent for optional properties that do not accept null (strict
    mode makes them nullable, module docstring), recursively, guided by the non-strict schema."""
    node = _resolve(node, root)
    if not isinstance(node, dict):
        return value
    if isinstance(value, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            required = set(node.get("required") or ())
            out = {}
            for k, v in value.items():
                sub = props.get(k)
                if v is None and sub is not None and k not in required and not accepts_null(sub, root):
                    continue
                out[k] = drop_nulls(v, sub, root) if sub is not None else v
            return out
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            return {k: drop_nulls(v, extra, root) for k, v in value.items()}
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [drop_nulls(v, node["items"], root) for v in value]
    options = [o for o in node.get("anyOf") or node.get("oneOf") or () if not accepts_null(o, root)]
    if len(options) == 1 and value is not None:
        return drop_nulls(value, options[0], root)
    return value


_FORMAT_EXAMPLES = {
    "date-time": "2026-01-31T12:00:00Z", "date": "2026-01-31", "time": "12:00:00", "email": "ann@example.com",
    "uuid": "123e4567-e89b-42d3-a456-426614174000", "uri": "https://example.com", "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1", "hostname": "example.com", "duration": "P1D",
}


def example(node: Any, root: dict[str, Any] | None = None, name: str = "", depth: int = 0) -> Any:
    """A small instance of `node`: every property present, the first enum value, the default when
    there is one, one item per array. Used to show the expected shape in a prompt."""
    root = root if root is not None else (node if isinstance(node, dict) else {})
    node = _resolve(node, root)
    if not isinstance(node, dict) or depth > 8:
        return None
    if isinstance(node.get("examples"), list) and node["examples"]:
        return copy.deepcopy(node["examples"][0])
    for key in ("default", "const"):
        if key in node and node[key] is not None:
            return copy.deepcopy(node[key])
    if isinstance(node.get("enum"), list) and node["enum"]:
        return node["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return example((non_null or options)[0], root, name, depth + 1)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in node:
        props = node.get("properties") or {}
        out = {k: example(v, root, k, depth + 1) for k, v in props.items()}
        extra = node.get("additionalProperties")
        if not props and isinstance(extra, dict):
            out = {"key": example(extra, root, "key", depth + 1)}
        return out
    if kind == "array":
        items = node.get("items")
        return [example(items, root, name, depth + 1)] if isinstance(items, dict) else []
    if kind == "string":
        return _FORMAT_EXAMPLES.get(str(node.get("format")), f"<{name or 'text'}>")
    if kind in ("integer", "number"):
        lo = node.get("minimum", node.get("exclusiveMinimum"))
        base = lo if isinstance(lo, (int, float)) and not isinstance(lo, bool) else 0
        if kind == "integer":
            return int(base) + (1 if "exclusiveMinimum" in node else 0)
        return float(base) + 0.5
    if kind == "boolean":
        return True
    return None
