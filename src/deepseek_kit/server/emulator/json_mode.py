"""JSON mode answers (docs/deepseek-api-notes.md#json-output): an object that follows the JSON
schema the prompt carries, else one that mimics the prompt's example object.

DeepSeek takes only `response_format: {"type": "json_object"}`, so a client that wants a shape
puts it in the prompt; `deepseek_kit.parse()` adds a system message with an example object and
then the model's JSON schema. The emulator reads that schema back from the prompt text: the first
JSON object in a system or user message that looks like a schema (an object schema with
`properties`, or one with `$schema`/`$defs`) is the shape of the answer, and the answer is a
deterministic instance of it (`schema_values`) that validates against it, so a `parse()` against
the emulator succeeds on the first attempt. Without a schema, the first JSON object found is
mimicked (its keys kept, values replaced). A prompt without the word "json" gets no object at
all (the caller answers with spaces, as DeepSeek does).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

from .schema_values import ArgumentBudget, SchemaError, text_tokens, value_from_schema

__all__ = ["find_schema", "json_object", "prompt_text"]

#: Objects looked at per prompt: a prompt full of braces must not cost more than this.
_MAX_OBJECTS = 50


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """The text of the system and user messages, where instructions about the answer live."""
    return "\n".join(_text(m.get("content")) for m in messages if m.get("role") in ("system", "user"))


def _objects(text: str) -> Iterator[dict[str, Any]]:
    """The non-empty top-level JSON objects in `text`, in order (an object inside one already
    found is not returned again)."""
    decoder = json.JSONDecoder()
    start, tries = text.find("{"), 0
    while start != -1 and tries < _MAX_OBJECTS:
        tries += 1
        try:
            value, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):  # a deeply nested "example" is no example
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict) and value:
            yield value
        start = text.find("{", end)


def _is_schema(obj: dict[str, Any]) -> bool:
    if "$schema" in obj or isinstance(obj.get("$defs"), dict):
        return True
    props = obj.get("properties")
    return (obj.get("type", "object") == "object" and isinstance(props, dict)
            and all(isinstance(v, dict) for v in props.values()))


def find_schema(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text` that looks like a JSON schema of an object, or None."""
    return next((o for o in _objects(text) if _is_schema(o)), None)


def _mimic(example: Any, rng: random.Random, depth: int = 0) -> Any:
    if isinstance(example, dict):
        if depth > 6:  # like lists: a nested example is copied to a bounded depth
            return {}
        return {k: _mimic(v, rng, depth + 1) for k, v in example.items()}
    if isinstance(example, list):
        if not example or depth > 6:
            return []
        return [_mimic(example[0], rng, depth + 1) for _ in range(rng.randint(1, 3))]
    if isinstance(example, bool):
        return rng.random() < 0.5
    if isinstance(example, int):
        return rng.randint(0, 100)
    if isinstance(example, float):
        return round(rng.random() * 100, 2)
    if isinstance(example, str):
        return "".join(text_tokens(rng, rng.randint(1, 4))).rstrip(".")
    return None


def json_object(messages: list[dict[str, Any]], rng: random.Random, limit: int, schema: bool = True) -> Any:
    """The object a JSON-mode answer holds (module docstring), or None when the prompt does not
    mention json or holds no usable object. `limit` bounds the characters made from a schema;
    `schema=False` ignores any schema (the `ignore_schema` fault directive)."""
    prompt = prompt_text(messages)
    if "json" not in prompt.lower():
        return None
    found = find_schema(prompt) if schema else None
    if found is not None:
        try:
            return value_from_schema(found, rng, found, budget=ArgumentBudget(limit))
        except SchemaError:
            # DeepSeek never refuses a prompt for its content: an unsatisfiable (or too big)
            # schema gets the mimicked example instead
            pass
    example = next((o for o in _objects(prompt) if not _is_schema(o)), None)
    if example is not None:
        return _mimic(example, rng)
    return None
