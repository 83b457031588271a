"""@tool: schemas from type hints and docstrings, strict-mode validity (checked by the emulator's
validator and by the emulator itself under /beta), argument parsing and validation, invocation."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import subprocess
import sys
import threading
from typing import Annotated, Any, Literal, TypedDict

import msgspec
import pydantic
import pytest

from deepseek_kit import AsyncClient, BadRequestError, UsageError
from deepseek_kit._tools.tool import Tool, ToolArgumentsError, encode_result, tool
from deepseek_kit.server.emulator.errors import ApiError
from deepseek_kit.server.emulator.schema_rules import check_strict_tools


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Point:
    """A point on the grid."""

    x: int
    y: int = 0


class Address(TypedDict):
    street: str
    zip: str


class Item(msgspec.Struct):
    sku: str
    qty: int = 1


class Person(pydantic.BaseModel):
    name: str
    age: int | None = None


class Node(msgspec.Struct):
    value: int
    children: list[Node] = []


def props(t: Tool) -> dict[str, Any]:
    return t.schema["function"]["parameters"]["properties"]


# -- schema derivation ---------------------------------------------------------------------------


def test_google_docstring_and_basic_types():
    @tool
    def search(query: str, limit: int = 10, exact: bool = False, boost: float = 1.5) -> list[str]:
        """Search the catalogue.

        Returns the matching titles.

        Args:
            query: Words to look for.
            limit: At most this many results,
                counted after ranking.
        """
        return []

    s = search.schema
    assert s["type"] == "function"
    fn = s["function"]
    assert fn["name"] == "search"
    assert fn["description"] == "Search the catalogue.\n\nReturns the matching titles."
    assert "strict" not in fn
    params = fn["parameters"]
    assert params["type"] == "object"
    assert params["required"] == ["query"]
    p = params["properties"]
    assert p["query"] == {"type": "string", "description": "Words to look for."}
    assert p["limit"] == {
        "type": "integer",
        "description": "At most this many results, counted after ranking.",
        "default": 10,
    }
    assert p["exact"] == {"type": "boolean", "default": False}
    assert p["boost"] == {"type": "number", "default": 1.5}
    assert "$defs" not in params and "title" not in json.dumps(params)


def test_numpy_and_rest_docstrings():
    @tool
    def numpy_style(a: int, b: int) -> int:
        """Add.

        Parameters
        ----------
        a : int
            The first term.
        b : int
            The second term.
        """
        return a + b

    @tool
    def rest_style(a: int, b: int) -> int:
        """Multiply.

        :param a: The first factor.
        :param b: The second factor.
        """
        return a * b

    assert props(numpy_style)["a"]["description"] == "The first term."
    assert props(numpy_style)["b"]["description"] == "The second term."
    assert props(rest_style)["a"]["description"] == "The first factor."
    assert rest_style.schema["function"]["description"] == "Multiply."


def test_optional_literal_enum_containers_and_annotated():
    @tool
    def f(
        mode: Literal["fast", "slow"],
        color: Color,
        tags: list[str],
        weights: dict[str, float],
        note: str | None = None,
        level: Annotated[int, msgspec.Meta(ge=1, le=5, description="1 to 5")] = 3,
        label: Annotated[str, "shown to people"] = "",
    ) -> None:
        """Configure.

        Args:
            level: Ignored, the Annotated description wins.
        """

    p = props(f)
    assert p["mode"] == {"enum": ["fast", "slow"]}
    assert p["color"] == {"enum": ["blue", "red"]}
    assert p["tags"] == {"type": "array", "items": {"type": "string"}}
    assert p["weights"] == {"type": "object", "additionalProperties": {"type": "number"}}
    assert p["note"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    assert p["level"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 5,
        "description": "1 to 5",
        "default": 3,
    }
    assert p["label"] == {"type": "string", "description": "shown to people", "default": ""}
    assert f.schema["function"]["parameters"]["required"] == ["mode", "color", "tags", "weights"]


def test_nested_types_are_inlined_and_recursive_ones_kept_under_defs():
    @tool
    def order(point: Point, address: Address, items: list[Item]) -> None:
        """Place an order."""

    p = props(order)
    assert p["point"]["type"] == "object" and p["point"]["description"] == "A point on the grid."
    assert p["point"]["properties"] == {"x": {"type": "integer"}, "y": {"type": "integer", "default": 0}}
    assert p["address"]["required"] == ["street", "zip"]
    assert p["items"]["items"]["properties"]["sku"] == {"type": "string"}
    assert "$ref" not in json.dumps(order.schema)

    @tool
    def walk(tree: Node) -> int:
        """Sum a tree."""
        return 0

    params = walk.schema["function"]["parameters"]
    assert params["properties"]["tree"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    assert set(params["$defs"]) == {"Node"}


def test_pydantic_parameters_use_pydantic_schema():
    @tool
    def greet(person: Person, times: int = 1) -> str:
        """Greet someone.

        Args:
            person: Who to greet.
        """
        return f"hi {person.name}" * times

    p = props(greet)
    assert p["person"]["description"] == "Who to greet."
    assert p["person"]["properties"]["name"]["type"] == "string"
    assert greet.parse_arguments('{"person": {"name": "Ann", "age": "41"}}') == {
        "person": Person(name="Ann", age=41)
    }
    with pytest.raises(ToolArgumentsError, match=r"person.name: Field required"):
        greet.parse_arguments('{"person": {"age": 3}}')


def test_name_description_overrides_and_bad_names():
    @tool(name="lookup_v2", description="Find a record.")
    def lookup(key: str) -> str:
        """Old text."""
        return key

    assert lookup.schema["function"]["name"] == "lookup_v2"
    assert lookup.schema["function"]["description"] == "Find a record."
    assert lookup("k") == "k"  # still the function
    with pytest.raises(UsageError, match="must match"):
        tool(lambda x: x)
    with pytest.raises(UsageError, match=r"\*args"):
        tool(lambda *args: None, name="star")

    def no_params() -> str:
        return "x"

    assert tool(no_params).schema["function"]["parameters"] == {
        "type": "object",
        "properties": {},
        "required": [],
    }


# -- strict mode ----------------------------------------------------------------------------------


def _strict_tools() -> list[Tool]:
    @tool(strict=True)
    def everything(
        mode: Literal["a", "b"], color: Color, point: Point, address: Address, items: list[Item],
        person: Point | None = None, n: int = 2, tags: list[str] = [],  # noqa: B006
    ) -> None:
        """All kinds of parameters."""

    @tool(strict=True)
    def with_pydantic(person: Person, note: str = "") -> None:
        """A pydantic parameter."""

    @tool(strict=True)
    def recursive(tree: Node) -> None:
        """A recursive type."""

    @tool(strict=True)
    def nothing() -> None:
        """No parameters."""

    return [everything, with_pydantic, recursive, nothing]


def _objects(node: Any):
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield node
        for v in node.values():
            yield from _objects(v)
    elif isinstance(node, list):
        for v in node:
            yield from _objects(v)


def test_strict_schemas_follow_the_rules():
    for t in _strict_tools():
        s = t.schema
        assert s["function"]["strict"] is True
        for obj in _objects(s["function"]["parameters"]):
            assert obj["additionalProperties"] is False
            assert obj["required"] == list(obj.get("properties", {}))
        assert '"default"' not in json.dumps(s)
        check_strict_tools([s])  # the emulator's strict-mode validator (server/emulator/schema_rules.py)
    p = props(_strict_tools()[0])
    assert p["n"] == {"anyOf": [{"type": "integer"}, {"type": "null"}]}  # optional -> nullable
    assert p["person"]["anyOf"][-1] == {"type": "null"}


def test_non_strict_schema_fails_the_strict_validator():
    @tool
    def f(a: int, b: int = 1) -> None:
        """F."""

    s = json.loads(json.dumps(f.schema))
    s["function"]["strict"] = True
    with pytest.raises(ApiError, match="additionalProperties"):
        check_strict_tools([s])


async def test_strict_tools_accepted_by_the_emulator_under_beta(emulator):
    tools = [t.schema for t in _strict_tools()]
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        body = msgspec.json.encode(
            {
                "model": "deepseek-flash",
                "tools": tools,
                "thinking": {"type": "disabled"},
                "messages": [{"role": "user", "content": "call everything"}],
            }
        )
        resp = await c.request("POST", "/chat/completions", body=body, beta=True)
        answer = json.loads(resp.body)
        call = answer["choices"][0]["message"]["tool_calls"][0]
        assert call["function"]["name"] == "everything"
        # ... and the emulator's arguments parse back through the tool
        values = _strict_tools()[0].parse_arguments(call["function"]["arguments"])
        assert isinstance(values["point"], Point) and isinstance(values["color"], Color)
        # control: the same request with a non-strict schema marked strict is refused
        loose = json.loads(json.dumps(tool(lambda a=1: a, name="loose").schema))
        loose["function"]["strict"] = True
        bad = msgspec.json.encode({"model": "deepseek-flash", "tools": [*tools, loose],
                                   "messages": [{"role": "user", "content": "hi"}]})
        with pytest.raises(BadRequestError, match="loose"):
            await c.request("POST", "/chat/completions", body=bad, beta=True)
    assert emulator.state.requests_per_path["/beta/chat/completions"] == 2


def test_strict_mode_refuses_what_it_cannot_express():
    def free_form(data: dict[str, int]) -> None: ...

    def untyped(x) -> None: ...

    with pytest.raises(UsageError, match=r"free_form.*free-form keys"):
        tool(strict=True)(free_form)
    with pytest.raises(UsageError, match="without a type"):
        tool(strict=True)(untyped)
    tool(free_form)  # fine when not strict
    assert props(tool(untyped))["x"] == {}


# -- arguments -----------------------------------------------------------------------------------


@tool(strict=True)
def book(city: str, nights: int = 1, point: Point | None = None, color: Color = Color.RED) -> str:
    """Book a room."""
    return f"{city}:{nights}:{point}:{color.value}"


def test_parse_arguments_converts_and_applies_defaults():
    assert book.parse_arguments('{"city": "Oslo", "nights": null, "point": null, "color": null}') == {
        "city": "Oslo", "point": None}
    v = book.parse_arguments('{"city": "Oslo", "nights": "3", "point": {"x": 1, "y": null}, "color": "blue"}')
    assert v == {"city": "Oslo", "nights": 3, "point": Point(1, 0), "color": Color.BLUE}
    assert book.parse_arguments({"city": "Rome"}) == {"city": "Rome"}
    assert tool(lambda: 1, name="empty").parse_arguments("") == {}


@pytest.mark.parametrize(("raw", "message"), [
    ('{"city": "Oslo"}}', "not valid JSON"),          # one brace off (docs/deepseek-api-notes.md#tool-calls)
    ('{"city": "Os', "not valid JSON"),
    ('["Oslo"]', "must be a JSON object"),
    ('{"nights": 2}', "missing required field `city`"),
    ('{"city": 5}', r"Expected `str`, got `int` - at `\$.city`"),
    ('{"city": "x", "color": "green"}', "Invalid enum value 'green'"),
])
def test_parse_arguments_errors_are_typed_and_readable(raw, message):
    with pytest.raises(ToolArgumentsError, match=message) as info:
        book.parse_arguments(raw)
    assert info.value.tool == "book" and info.value.arguments == raw
    assert str(info.value).startswith("Invalid arguments for tool 'book': ")


async def test_invoke_runs_sync_tools_in_a_thread_and_awaits_async_ones():
    seen: list[str] = []

    @tool
    def sync_tool(n: int) -> int:
        seen.append(threading.current_thread().name)
        return n * 2

    @tool
    async def async_tool(n: int) -> int:
        seen.append(threading.current_thread().name)
        await asyncio.sleep(0)
        return n + 1

    assert sync_tool.is_async is False and async_tool.is_async is True
    assert await sync_tool.invoke('{"n": 4}') == 8
    assert await async_tool.invoke('{"n": 4}') == 5
    assert seen[0] != threading.current_thread().name and seen[1] == threading.current_thread().name


async def test_callable_objects_methods_and_positional_only():
    class Counter:
        def __init__(self) -> None:
            self.total = 0

        async def __call__(self, step: int) -> int:
            self.total += step
            return self.total

        def add(self, a: int, /, b: int = 0) -> int:
            """Add a and b."""
            return a + b + self.total

    c = Counter()
    t = tool(c, name="counter")
    assert t.is_async and await t.invoke('{"step": 2}') == 2
    m = tool(c.add)
    assert m.schema["function"]["name"] == "add" and m.schema["function"]["parameters"]["required"] == ["a"]
    assert await m.invoke('{"a": 1, "b": 2}') == 5


def test_encode_result():
    assert encode_result(None) == "(no output)"
    assert encode_result("") == "(no output)"
    assert encode_result("  \n") == "(no output)"
    assert encode_result("plain text") == "plain text"
    assert encode_result({"a": [1, 2]}) == '{"a":[1,2]}'
    assert encode_result([]) == "[]"
    assert encode_result(Point(1, 2)) == '{"x":1,"y":2}'
    assert encode_result(Person(name="A")) == '{"name":"A","age":null}'
    assert encode_result(Color.BLUE) == '"blue"'
    assert encode_result({"when": object}).startswith('{"when":"<class')


def test_library_does_not_import_pydantic_for_msgspec_types():
    code = (
        "import sys, asyncio, msgspec\n"
        "from deepseek_kit._tools.tool import tool\n"
        "from deepseek_kit._tools.structured import _Target\n"
        "import deepseek_kit._tools.loop\n"
        "class A(msgspec.Struct):\n    x: int\n"
        "@tool\ndef f(a: A, n: int = 1) -> int:\n    return n\n"
        "assert asyncio.run(f.invoke('{\"a\": {\"x\": 1}}')) == 1\n"
        "assert _Target(A, None).validate('{\"x\": 2}') == A(2)\n"
        "print('pydantic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
