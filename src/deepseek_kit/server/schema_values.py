"""Values that satisfy a JSON schema - the arguments of emulated tool calls.

Covers the subset tool definitions use (deepseek-api.md §5.7): objects with required and optional
properties, strings (with `format`, length limits and hints from the property name: a `city`
gets a city, an `email` an address), numbers and integers within their bounds, booleans, enums,
`const`, arrays (min/max items, unique enum items), nested objects, `anyOf`/`oneOf`, `allOf`
(merged) and local `$ref`s. Deterministic for a given `random.Random`.
"""

from __future__ import annotations

import math
import random
import uuid
from typing import Any

__all__ = ["WORDS", "value_from_schema"]

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
_CITIES = ("Hangzhou", "Beijing", "Paris", "Tokyo", "Berlin", "Lima", "Oslo", "Cairo")
_NAMES = ("Alice", "Bob", "Chen", "Dana", "Eve", "Farah")


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    node: Any = root
    if not ref.startswith("#/"):
        return {}
    for part in ref[2:].split("/"):
        node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
    return node


def _string(schema: dict[str, Any], rng: random.Random, name: str) -> str:
    fmt = schema.get("format")
    lname = name.lower()
    if fmt == "email" or "email" in lname:
        s = f"{rng.choice(_NAMES).lower()}@example.com"
    elif fmt == "uuid":
        s = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    elif fmt == "date-time":
        s = f"2026-10-{rng.randint(10, 28)}T{rng.randint(10, 23)}:00:00Z"
    elif fmt == "date" or "date" in lname:
        s = f"2026-10-{rng.randint(10, 28)}"
    elif fmt in ("uri", "url") or "url" in lname or "uri" in lname:
        s = f"https://example.com/{rng.choice(WORDS)}"
    elif fmt == "ipv4":
        s = f"192.0.2.{rng.randint(1, 254)}"
    elif fmt == "ipv6":
        s = f"2001:db8::{rng.randint(1, 9999):x}"
    elif fmt == "hostname":
        s = f"{rng.choice(WORDS)}.example.com"
    elif any(k in lname for k in ("city", "location", "place", "town")):
        s = rng.choice(_CITIES)
    elif "name" in lname:
        s = rng.choice(_NAMES)
    else:
        s = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
    lo, hi = schema.get("minLength"), schema.get("maxLength")
    if isinstance(lo, int) and len(s) < lo:
        s = s + "x" * (lo - len(s))
    if isinstance(hi, int) and len(s) > hi:
        s = s[: max(hi, 0)]
    return s


def _number(schema: dict[str, Any], rng: random.Random, integer: bool) -> int | float:
    def num(key: str) -> float | None:
        v = schema.get(key)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    lo, hi, xlo, xhi = num("minimum"), num("maximum"), num("exclusiveMinimum"), num("exclusiveMaximum")
    if integer:
        ilo = math.ceil(lo) if lo is not None else (math.floor(xlo) + 1 if xlo is not None else None)
        ihi = math.floor(hi) if hi is not None else (math.ceil(xhi) - 1 if xhi is not None else None)
        if ilo is None:
            ilo = 0 if ihi is None or ihi >= 0 else ihi - 100
        if ihi is None:
            ihi = ilo + 100
        return rng.randint(ilo, max(ilo, ihi))
    flo = lo if lo is not None else xlo
    fhi = hi if hi is not None else xhi
    if flo is None:
        flo = 0.0 if fhi is None or fhi >= 0 else fhi - 100
    if fhi is None:
        fhi = flo + 100
    value = round(rng.uniform(flo, fhi), 2)
    if value < flo or value > fhi or (xlo is not None and value <= xlo) or (xhi is not None and value >= xhi):
        value = (flo + fhi) / 2
    return value


def value_from_schema(schema: Any, rng: random.Random, root: dict[str, Any] | None = None,
                      name: str = "", depth: int = 0) -> Any:
    """A value valid against `schema` (the common JSON-schema subset tools use)."""
    if not isinstance(schema, dict):
        return {}
    root = root if root is not None else schema
    if depth > 8:
        return None if "null" in str(schema.get("type")) else ({} if schema.get("type") == "object" else "x")
    if "$ref" in schema:
        return value_from_schema(_resolve(schema["$ref"], root), rng, root, name, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return value_from_schema(rng.choice(non_null or options), rng, root, name, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged.setdefault("properties", {}).update(part.get("properties") or {})
                merged.setdefault("required", []).extend(part.get("required") or [])
                merged.setdefault("type", part.get("type"))
        return value_from_schema(merged, rng, root, name, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        out: dict[str, Any] = {}
        for key, sub in props.items():
            if key in required or (depth < 4 and rng.random() < 0.5):
                out[key] = value_from_schema(sub, rng, root, key, depth + 1)
        return out
    if kind == "array":
        min_items, max_items = schema.get("minItems"), schema.get("maxItems")
        lo = min_items if isinstance(min_items, int) else 0
        hi = max_items if isinstance(max_items, int) else max(lo, 3)
        n = min(max(lo, rng.randint(1, 3)), hi)
        items = schema.get("items") or {}
        values = [value_from_schema(items, rng, root, name, depth + 1) for _ in range(n)]
        if schema.get("uniqueItems") and isinstance(items, dict) and isinstance(items.get("enum"), list):
            values = rng.sample(items["enum"], min(n, len(items["enum"])))
        return values
    if kind == "string":
        return _string(schema, rng, name)
    if kind in ("integer", "number"):
        return _number(schema, rng, kind == "integer")
    if kind == "boolean":
        return rng.random() < 0.5
    return None
