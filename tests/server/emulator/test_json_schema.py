"""JSON mode follows the JSON schema in the prompt: `parse()` against the emulator succeeds on the
first attempt, and the emulator's instance of any schema we generate validates (jsonschema)."""

from __future__ import annotations

import datetime
import enum
import json
import random
import uuid
from typing import Any

import jsonschema
import pydantic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepseek_kit import AsyncClient, parse
from deepseek_kit.server.emulator.json_mode import find_schema, json_object
from deepseek_kit.server.emulator.schema_values import value_from_schema
from tests.helpers.dsk import chat_bodies

MODEL = "deepseek-flash"


class Status(str, enum.Enum):
    DRAFT = "draft"
    SENT = "sent"
    PAID = "paid"


class LineItem(pydantic.BaseModel):
    sku: str = pydantic.Field(min_length=3, max_length=12)
    quantity: int = pydantic.Field(ge=1, le=50)
    unit_price: float = pydantic.Field(gt=0, lt=1000)


class Invoice(pydantic.BaseModel):
    number: str
    issued: datetime.date
    due: datetime.datetime | None = None
    status: Status
    customer_email: str | None = None
    website: pydantic.AnyUrl | None = None
    reference: uuid.UUID | None = None
    items: list[LineItem] = pydantic.Field(min_length=1, max_length=5)
    discount_percent: int = pydantic.Field(default=0, ge=0, le=30, multiple_of=5)


def _checker(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


async def test_pydantic_model_with_date_enum_and_line_items_parses_on_the_first_attempt(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        invoice = await parse(c, "Extract the invoice from this email: ...", Invoice, model=MODEL)
    assert isinstance(invoice, Invoice)
    assert isinstance(invoice.issued, datetime.date) and isinstance(invoice.status, Status)
    assert 1 <= len(invoice.items) <= 5 and all(isinstance(i, LineItem) for i in invoice.items)
    assert len(chat_bodies(emulator)) == 1  # no re-ask: the first answer validated


async def test_the_answer_validates_against_the_full_pydantic_schema_and_is_deterministic(emulator):
    """The `$defs`/`$ref` schema pydantic emits, as a caller's own prompt would carry it."""
    schema = Invoice.model_json_schema()
    prompt = f"Reply in json matching this schema:\n{json.dumps(schema)}"
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}],
            "response_format": {"type": "json_object"}, "thinking": {"type": "disabled"}}
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        first = await c.chat.completions.create(**body)
        second = await c.chat.completions.create(**body)
    text = first.choices[0].message.content or ""
    _checker(schema).validate(json.loads(text))
    Invoice.model_validate_json(text)
    assert second.choices[0].message.content == text


def test_without_a_schema_the_first_example_object_is_mimicked():
    messages = [{"role": "user", "content": 'Answer in json like {"city": "Lima", "rank": 3}'}]
    out = json_object(messages, random.Random(1), 65_536)
    assert set(out) == {"city", "rank"} and isinstance(out["rank"], int)
    assert json_object([{"role": "user", "content": "no hint here"}], random.Random(1), 65_536) is None


def test_the_schema_is_found_after_an_example_object():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    text = f'Example: {{"a": 0, "b": {{"c": 1}}}}\nSchema:\n{json.dumps(schema)}'
    assert find_schema(text) == schema
    assert find_schema('just {"a": 1} and {"properties": 3}') is None


# -- property test: generated schemas, validated by jsonschema ---------------------------------------

_FORMATS = ("date", "date-time", "email", "uri", "uuid", "ipv4", "ipv6", "hostname", "time")


def _string() -> st.SearchStrategy[dict[str, Any]]:
    plain = st.tuples(st.integers(0, 20), st.integers(0, 20)).map(
        lambda t: {"type": "string", "minLength": min(t), "maxLength": max(t)})
    return st.one_of(st.just({"type": "string"}), plain,
                     st.sampled_from(_FORMATS).map(lambda f: {"type": "string", "format": f}))


@st.composite
def _number(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["integer", "number"]))
    schema: dict[str, Any] = {"type": kind}
    lo = draw(st.integers(-1000, 1000))
    width = draw(st.integers(3, 500))  # an open interval of width 3 holds two integers, one even
    if draw(st.booleans()):
        schema["exclusiveMinimum" if draw(st.booleans()) else "minimum"] = lo
    if draw(st.booleans()):
        schema["exclusiveMaximum" if draw(st.booleans()) else "maximum"] = lo + width
    if draw(st.booleans()):
        schema["multipleOf"] = draw(st.integers(1, 2))  # so a multiple of 1 or 2 always fits
    return schema


_LEAVES = st.one_of(
    _string(),
    _number(),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.lists(st.one_of(st.text(max_size=8), st.integers(-5, 5)), min_size=1, max_size=4, unique=True).map(
        lambda v: {"enum": v}),
    st.one_of(st.text(max_size=8), st.integers(), st.booleans()).map(lambda v: {"const": v}),
    st.just({"$ref": "#/$defs/Item"}),
)
_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)


def _extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def obj(draw: st.DrawFn) -> dict[str, Any]:
        props = draw(st.dictionaries(_NAMES, children, max_size=5))
        required = [k for k in props if draw(st.booleans())]
        return {"type": "object", "properties": props, "required": required, "additionalProperties": False}

    @st.composite
    def arr(draw: st.DrawFn) -> dict[str, Any]:
        lo = draw(st.integers(0, 3))
        hi = lo + draw(st.integers(0, 3))
        return {"type": "array", "items": draw(children), "minItems": lo, "maxItems": hi}

    @st.composite
    def nullable(draw: st.DrawFn) -> dict[str, Any]:
        inner = draw(_string() | _number() | st.just({"type": "boolean"}))
        return {**inner, "type": [inner["type"], "null"]}

    any_of = st.lists(children, min_size=1, max_size=3).map(lambda o: {"anyOf": [*o, {"type": "null"}]})
    one_of = st.tuples(_string(), st.just({"type": "boolean"})).map(lambda t: {"oneOf": list(t)})
    return st.one_of(obj(), arr(), nullable(), any_of, one_of)


_ITEM = {"type": "object", "properties": {"sku": {"type": "string", "minLength": 3},
                                          "qty": {"type": "integer", "minimum": 1}},
         "required": ["sku", "qty"], "additionalProperties": False}


@st.composite
def _schemas(draw: st.DrawFn) -> dict[str, Any]:
    values = st.recursive(_LEAVES, _extend, max_leaves=8)
    props = draw(st.dictionaries(_NAMES, values, min_size=1, max_size=6))
    return {"$defs": {"Item": _ITEM}, "type": "object", "properties": props, "required": sorted(props),
            "additionalProperties": False}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=_schemas(), seed=st.integers(0, 2**32))
def test_instances_of_generated_schemas_validate(schema: dict[str, Any], seed: int) -> None:
    prompt = f"Reply with json. Schema:\n{json.dumps(schema)}"
    found = find_schema(prompt)
    assert found == schema
    value = value_from_schema(found, random.Random(seed), found)
    _checker(schema).validate(value)
    assert value_from_schema(found, random.Random(seed), found) == value  # deterministic


async def test_ignore_schema_once_makes_parse_ask_again_then_succeed(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        invoice = await parse(c, "Extract the invoice.", Invoice, model=MODEL,
                              extra_headers={"X-DSK-Emulate": "ignore_schema;times=1;key=reask"})
    assert isinstance(invoice, Invoice)
    _first, second = chat_bodies(emulator)
    assert second["messages"][-1]["content"].startswith("That reply is not valid:")
