"""Values that satisfy a JSON schema - the arguments of emulated tool calls.

Covers what tool definitions and `parse()`'s schemas use (docs/deepseek-api-notes.md#tool-calls):
objects with required and optional properties, strings (a `format` - date, date-time, time, email,
uri, uuid, ipv4, ipv6, hostname - else hints from the property name: a `city` gets a city, an
`email` an address; length limits), numbers and integers within their bounds (inclusive and
exclusive, integer `multipleOf`), booleans, enums, `const`, arrays (min/max items, `uniqueItems`),
nested objects, `anyOf`/`oneOf` (the first non-null option), nullable type lists, `allOf`
(merged) and local `$ref`s into `$defs`. Not covered: `pattern`, `not`, `if`/`then`,
`minProperties`. Deterministic for a given `random.Random`.

The work is bounded: an `ArgumentBudget` (characters of the JSON produced, from
`EmulatorConfig.max_tool_argument_chars`) is charged as values are made, and lengths and item
counts are checked against it before anything is built, so `minLength: 1000000000`,
`minItems: 100000000` or a thousand required properties end in `SchemaError` (a 400) at once
instead of freezing the emulator. A malformed schema part that cannot be read (`properties: 5`)
is a `SchemaError` too.
"""

from __future__ import annotations

import math
import random
import uuid
from typing import Any

import msgspec

__all__ = ["WORDS", "ArgumentBudget", "SchemaError", "text_tokens", "value_from_schema"]


class SchemaError(ValueError):
    """The schema cannot be satisfied within the budget, or a part of it is malformed."""


class ArgumentBudget:
    """Characters of generated JSON still allowed for one tool call."""

    __slots__ = ("left", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def need(self, n: int, what: str) -> None:
        """Fail before building something of about `n` characters that would not fit."""
        if n > self.left:
            raise SchemaError(f"{what} needs more than the emulator's limit of {self.limit} characters of "
                              "arguments (EmulatorConfig.max_tool_argument_chars)")

    def take(self, n: int, what: str) -> None:
        self.need(n, what)
        self.left -= n


def _size(value: Any) -> int:
    try:
        return len(msgspec.json.encode(value))
    except (TypeError, ValueError, RecursionError, OverflowError):
        return 16

# Words of at most 5 letters: each one is exactly one token of tokens.py (with its leading space).
WORDS: tuple[str, ...] = (
    "the", "a", "to", "of", "and", "in", "is", "it", "for", "on", "with", "as", "at", "by", "from",
    "this", "that", "you", "your", "we", "our", "can", "will", "may", "be", "are", "was", "here",
    "there", "model", "reply", "test", "value", "data", "token", "api", "call", "note", "sure", "okay",
    "yes", "so", "let", "me", "think", "about", "need", "user", "asks", "give", "short", "clear",
    "each", "part", "item", "list", "final", "good", "fine", "ready", "done", "more", "some", "any",
    "all", "one", "two", "three", "four", "five", "time", "way", "work", "use", "make", "take",
    "check", "step", "plan", "next", "first", "then", "also", "state", "input", "field", "query",
    "tool", "since", "while", "when", "where", "which", "would", "could", "quick", "small", "large",
    "right", "left", "up", "down", "keep", "send", "read", "write", "count", "sum", "total",
)


def text_tokens(rng: random.Random, n: int, lead_space: bool = False) -> list[str]:
    """Exactly `n` tokens of sentences made of WORDS."""
    out: list[str] = []
    choice, randint = rng.choice, rng.randint
    while len(out) < n:
        for j in range(randint(4, 12)):
            w = choice(WORDS)
            if j == 0:
                w = w.capitalize()
                out.append(w if not out and not lead_space else " " + w)
            else:
                out.append(" " + w)
            if len(out) >= n:
                return out
        out.append(".")
    return out


_CITIES = ("Hangzhou", "Beijing", "Paris", "Tokyo", "Berlin", "Lima", "Oslo", "Cairo")
_NAMES = ("Alice", "Bob", "Chen", "Dana", "Eve", "Farah")


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    node: Any = root
    if not ref.startswith("#/"):
        return {}
    for part in ref[2:].split("/"):
        node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
    return node


def _formatted(fmt: Any, rng: random.Random) -> str | None:
    """A value in a JSON-schema string `format` (None for a format we do not know)."""
    if fmt == "email":
        return f"{rng.choice(_NAMES).lower()}@example.com"
    if fmt == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if fmt == "date-time":
        return f"2026-10-{rng.randint(10, 28)}T{rng.randint(10, 23)}:00:00Z"
    if fmt == "date":
        return f"2026-10-{rng.randint(10, 28)}"
    if fmt == "time":
        return f"{rng.randint(10, 23)}:{rng.randint(10, 59)}:00Z"
    if fmt in ("uri", "url", "iri", "uri-reference", "iri-reference"):
        return f"https://example.com/{rng.choice(WORDS)}"
    if fmt == "ipv4":
        return f"192.0.2.{rng.randint(1, 254)}"
    if fmt == "ipv6":
        return f"2001:db8::{rng.randint(1, 9999):x}"
    if fmt == "hostname":
        return f"{rng.choice(WORDS)}.example.com"
    return None


def _hinted(lname: str, rng: random.Random) -> str:
    """Without a `format`: a value that fits the property's name (an `email` gets an address)."""
    if "email" in lname:
        return f"{rng.choice(_NAMES).lower()}@example.com"
    if "date" in lname:
        return f"2026-10-{rng.randint(10, 28)}"
    if "url" in lname or "uri" in lname:
        return f"https://example.com/{rng.choice(WORDS)}"
    if any(k in lname for k in ("city", "location", "place", "town")):
        return rng.choice(_CITIES)
    if "name" in lname:
        return rng.choice(_NAMES)
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))


def _string(schema: dict[str, Any], rng: random.Random, name: str, budget: ArgumentBudget) -> str:
    # a declared format wins over the name hint (a `contact_email` with `format: uri` gets a URI)
    formatted = _formatted(schema.get("format"), rng)
    s = formatted if formatted is not None else _hinted(name.lower(), rng)
    lo, hi = schema.get("minLength"), schema.get("maxLength")
    if isinstance(lo, int) and len(s) < lo:
        budget.need(lo, f"minLength {lo}")
        s = s + "x" * (lo - len(s))
    if isinstance(hi, int) and len(s) > hi:
        s = s[: max(hi, 0)]
    return s


def _num(schema: dict[str, Any], key: str) -> float | None:
    v = schema.get(key)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _bounds(schema: dict[str, Any]) -> tuple[float | None, bool, float | None, bool]:
    """(low, low is exclusive, high, high is exclusive): the tighter of minimum/exclusiveMinimum
    and of maximum/exclusiveMaximum."""
    keys = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
    lo, xlo, hi, xhi = (_num(schema, k) for k in keys)
    low, low_x = lo, False
    if xlo is not None and (low is None or xlo >= low):
        low, low_x = xlo, True
    high, high_x = hi, False
    if xhi is not None and (high is None or xhi <= high):
        high, high_x = xhi, True
    return low, low_x, high, high_x


def _number(schema: dict[str, Any], rng: random.Random, integer: bool) -> int | float:
    low, low_x, high, high_x = _bounds(schema)
    step = _num(schema, "multipleOf")
    if integer or (step is not None and float(step).is_integer()):
        ilo = None if low is None else (math.floor(low) + 1 if low_x else math.ceil(low))
        ihi = None if high is None else (math.ceil(high) - 1 if high_x else math.floor(high))
        if ilo is None:
            ilo = 0 if ihi is None or ihi >= 0 else ihi - 100
        if ihi is None:
            ihi = ilo + 100
        if step is not None and step > 0:
            m = int(step)
            klo, khi = -(-ilo // m), ihi // m  # multiples of m within [ilo, ihi]
            if klo <= khi:
                return rng.randint(klo, min(khi, klo + 100)) * m
        return rng.randint(ilo, max(ilo, ihi))
    flo = low if low is not None else (0.0 if high is None or high >= 0 else high - 100)
    fhi = high if high is not None else flo + 100
    if step is not None and step > 0:
        # a fractional multipleOf: the first multiple above the low bound (float error aside)
        k = math.floor(flo / step) + 1
        return round(k * step, 10)
    value = round(rng.uniform(flo, fhi), 2)
    if not (flo <= value <= fhi) or (low_x and value <= flo) or (high_x and value >= fhi):
        value = (flo + fhi) / 2
    return value


def _props(schema: dict[str, Any]) -> dict[str, Any]:
    props = schema.get("properties") or {}
    if not isinstance(props, dict):
        raise SchemaError(f"'properties' must be an object, got {type(props).__name__}")
    return props


def _required(schema: dict[str, Any]) -> list[Any]:
    required = schema.get("required") or []
    if not isinstance(required, list):
        raise SchemaError(f"'required' must be an array, got {type(required).__name__}")
    return required


def _distinct(values: list[Any], items: Any, rng: random.Random, root: dict[str, Any], name: str,
              depth: int, budget: ArgumentBudget) -> list[Any]:
    """`uniqueItems`: duplicates replaced by fresh values (a few tries each; a schema whose items
    have fewer distinct values than `minItems` cannot be satisfied anyway)."""
    seen: set[bytes] = set()
    out: list[Any] = []
    for v in values:
        for _ in range(8):
            key = msgspec.json.encode(v, order="sorted")
            if key not in seen:
                seen.add(key)
                out.append(v)
                break
            v = _value(items, rng, root, name, depth + 1, budget)
    return out


def value_from_schema(schema: Any, rng: random.Random, root: dict[str, Any] | None = None,
                      name: str = "", depth: int = 0, budget: ArgumentBudget | None = None) -> Any:
    """A value valid against `schema` (the common JSON-schema subset tools use), at most about
    `budget.limit` characters of JSON (SchemaError beyond)."""
    if budget is None:
        budget = ArgumentBudget(65_536)
    value = _value(schema, rng, root, name, depth, budget)
    return value


def _value(schema: Any, rng: random.Random, root: dict[str, Any] | None, name: str, depth: int,
           budget: ArgumentBudget) -> Any:
    if not isinstance(schema, dict):
        budget.take(2, "a value")
        return {}
    root = root if root is not None else schema
    if depth > 8:
        return None if "null" in str(schema.get("type")) else ({} if schema.get("type") == "object" else "x")
    if "$ref" in schema:
        return _value(_resolve(schema["$ref"], root), rng, root, name, depth + 1, budget)
    if "const" in schema:
        budget.take(_size(schema["const"]), "a const value")
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        choice = rng.choice(schema["enum"])
        budget.take(_size(choice), "an enum value")
        return choice
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            # the first option that is not `null` (an Optional field gets a value); deterministic,
            # and what a schema's author lists first is the main shape
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return _value((non_null or options)[0], rng, root, name, depth + 1, budget)
    if isinstance(schema.get("allOf"), list):
        parts = [_resolve(p["$ref"], root) if isinstance(p, dict) and "$ref" in p else p
                 for p in schema["allOf"]]
        if len(parts) == 1:
            return _value(parts[0], rng, root, name, depth + 1, budget)
        merged: dict[str, Any] = {}
        for part in parts:
            if isinstance(part, dict):
                merged.setdefault("properties", {}).update(_props(part))
                merged.setdefault("required", []).extend(_required(part))
                merged.setdefault("type", part.get("type"))
        return _value(merged, rng, root, name, depth + 1, budget)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = _props(schema)
        required = {k for k in _required(schema) if isinstance(k, str)}
        out: dict[str, Any] = {}
        budget.take(2, "an object")
        for key, sub in props.items():
            if key in required or (depth < 4 and rng.random() < 0.5):
                budget.take(len(key) + 4, f"property {key!r}")
                out[key] = _value(sub, rng, root, key, depth + 1, budget)
        return out
    if kind == "array":
        min_items, max_items = schema.get("minItems"), schema.get("maxItems")
        lo = min_items if isinstance(min_items, int) else 0
        hi = max_items if isinstance(max_items, int) else max(lo, 3)
        n = min(max(lo, rng.randint(1, 3)), hi)
        budget.need(2 * n, f"minItems {lo}")  # every item costs at least a character and a comma
        budget.take(2, "an array")
        items = schema.get("items") or {}
        if schema.get("uniqueItems") and isinstance(items, dict) and isinstance(items.get("enum"), list):
            return rng.sample(items["enum"], min(n, len(items["enum"])))
        values = [_value(items, rng, root, name, depth + 1, budget) for _ in range(n)]
        if schema.get("uniqueItems"):
            values = _distinct(values, items, rng, root, name, depth, budget)
        return values
    if kind == "string":
        s = _string(schema, rng, name, budget)
        budget.take(len(s) + 2, "a string")
        return s
    if kind in ("integer", "number"):
        number = _number(schema, rng, kind == "integer")
        budget.take(len(str(number)), "a number")
        return number
    budget.take(5, "a value")
    if kind == "boolean":
        return rng.random() < 0.5
    return None
