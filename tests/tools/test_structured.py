"""Structured output through JSON mode, against the emulator (when a prompt mentions "json" it
answers with an object valid against the JSON schema in the prompt, or with the `ignore_schema`
directive one that mimics the first example object; else with spaces)."""

from __future__ import annotations

import dataclasses
import json
from typing import Literal, TypedDict

import msgspec
import pydantic
import pytest

from deepseek_kit import AsyncClient, Client, DeepSeekError, MockResponse, MockTransport, UsageError
from deepseek_kit._tools.structured import StructuredOutputError, _extract, parse, parse_sync
from tests.helpers.dsk import chat_bodies

MODEL = "deepseek-flash"


class City(msgspec.Struct):
    name: str
    population: int
    districts: list[str]


class CityModel(pydantic.BaseModel):
    name: str
    population: int
    area_km2: float
    capital: bool
    mayor: str | None = None


@dataclasses.dataclass
class Score:
    label: str
    value: float


class Pair(TypedDict):
    left: str
    right: int


class Kind(msgspec.Struct):
    kind: Literal["alpha", "beta"]  # with ignore_schema the emulator fills strings with words: never valid


IGNORE_SCHEMA = {"X-DSK-Emulate": "ignore_schema"}


@pytest.mark.parametrize("tp", [City, CityModel, Score, Pair])
async def test_parse_into_each_kind_of_type(emulator, tp):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        out = await parse(c, "Describe a city.", tp, model=MODEL)
    if tp is Pair:
        assert isinstance(out["left"], str) and isinstance(out["right"], int)
    else:
        assert isinstance(out, tp)
    assert emulator.state.total_requests == 1


async def test_request_shape_json_mode_and_instruction_after_the_system_prompt(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        city = await parse(c, [{"role": "system", "content": "You are a geographer."},
                               {"role": "user", "content": "The largest city in Peru?"}], City, model=MODEL)
    assert isinstance(city.population, int) and isinstance(city.districts, list)
    (body,) = chat_bodies(emulator)
    assert body["response_format"] == {"type": "json_object"}
    roles = [(m["role"], m["content"][:30]) for m in body["messages"]]
    assert roles[0] == ("system", "You are a geographer.") and roles[2][0] == "user"
    instruction = body["messages"][1]["content"]
    # DeepSeek's JSON mode requires the word (docs/deepseek-api-notes.md#json-output)
    assert "json" in instruction.lower()
    example = '{"name":"<name>","population":0,"districts":["<districts>"]}'
    assert example in instruction
    schema = json.loads(instruction.split("JSON schema:\n", 1)[1])
    assert schema["required"] == ["name", "population", "districts"]
    assert instruction.index(example) < instruction.index('"properties"')  # example first


async def test_blank_reply_is_repaired_by_adding_the_instruction(emulator):
    """Without "json" in the prompt DeepSeek's JSON mode answers
    with spaces (docs/deepseek-api-notes.md#json-output)."""
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        out = await parse(c, "Describe a city.", City, model=MODEL, instructions=False)
    assert isinstance(out, City)
    first, second = chat_bodies(emulator)
    assert "json" not in json.dumps(first["messages"]).lower()
    assert second["messages"][0]["role"] == "system" and "JSON" in second["messages"][0]["content"]
    assert [m["role"] for m in second["messages"]] == ["system", "user"]  # the blank turn is not kept


async def test_whitespace_until_the_limit_is_repaired_too(emulator_factory):
    emu = emulator_factory(json_without_hint="until_limit")
    async with AsyncClient(api_key="sk-test", base_url=emu.base_url) as c:
        out = await parse(c, "Describe a city.", City, model=MODEL, instructions=False, max_tokens=200,
                          thinking=False)
    assert isinstance(out, City)
    assert emu.state.total_requests == 2


async def test_blank_reply_with_the_instruction_gets_a_nudge(emulator):
    # insufficient_after=0 cuts the first answer to nothing; `times=1`: the re-ask is answered fully
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        out = await parse(c, "Describe a city.", City, model=MODEL,
                          extra_headers={"X-DSK-Emulate": "insufficient_after=0;times=1;key=nudge"})
    assert isinstance(out, City)
    first, second = chat_bodies(emulator)
    assert second["messages"][:-1] == first["messages"]
    assert second["messages"][-1] == {
        "role": "user",
        "content": "Your reply was empty. Reply now with the JSON object only.",
    }


async def test_invalid_json_is_fed_back_and_re_asked(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        out = await parse(c, "Describe a city.", City, model=MODEL,
                          extra_headers={"X-DSK-Emulate": "insufficient_after=3;times=1;key=cut"})
    assert isinstance(out, City)
    _first, second = chat_bodies(emulator)
    bad, feedback = second["messages"][-2:]
    assert bad["role"] == "assistant" and bad["content"].startswith("{") and not bad["content"].endswith("}")
    assert bad["reasoning_content"]  # the turn goes back as the API gave it
    assert feedback["role"] == "user" and feedback["content"].startswith("That reply is not valid: ")
    assert "truncated" in feedback["content"] or "malformed" in feedback["content"]


async def test_validation_error_text_is_fed_back_and_the_second_answer_accepted(emulator):
    calls = []

    class Checked(pydantic.BaseModel):
        name: str
        population: int

        @pydantic.field_validator("population")
        @classmethod
        def first_time_wrong(cls, v: int) -> int:
            calls.append(v)
            if len(calls) == 1:
                raise ValueError("population must be an official census figure")
            return v

    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        out = await parse(c, "Describe a city.", Checked, model=MODEL)
    assert isinstance(out, Checked) and len(calls) == 2
    _first, second = chat_bodies(emulator)
    feedback = second["messages"][-1]["content"]
    assert feedback.startswith("That reply is not valid: population: Value error, population must be an "
                               "official census figure")
    assert "https://" not in feedback  # pydantic's help URLs are left out
    assert json.loads(second["messages"][-2]["content"])["population"] == calls[0]  # the rejected reply


async def test_msgspec_validation_error_is_fed_back(emulator):
    seen = []

    class Counted(msgspec.Struct):
        name: str
        population: int

        def __post_init__(self) -> None:
            seen.append(self.population)
            if len(seen) == 1:
                raise ValueError("population is too round")

    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        out = await parse(c, "Describe a city.", Counted, model=MODEL)
    assert isinstance(out, Counted) and len(seen) == 2
    assert "population is too round" in chat_bodies(emulator)[1]["messages"][-1]["content"]


async def test_gives_up_with_a_typed_error_after_max_reasks(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        with pytest.raises(StructuredOutputError) as info:
            await parse(c, "Which kind?", Kind, model=MODEL, max_reasks=2, extra_headers=IGNORE_SCHEMA)
        err = info.value
        assert isinstance(err, DeepSeekError)
        assert err.attempts == 3 and len(err.errors) == 3
        assert all(e.startswith("Invalid enum value") and e.endswith("at `$.kind`") for e in err.errors)
        assert json.loads(err.raw)["kind"] not in ("alpha", "beta")
        assert err.completion.choices[0].message.content == err.raw
        assert str(err).startswith("no valid Kind after 3 attempts: Invalid enum value")
        assert emulator.state.total_requests == 3
        # every re-ask carries the previous error text
        bodies = chat_bodies(emulator)
        assert [b["messages"][-1]["content"].split("\n")[0] for b in bodies[1:]] == [
            f"That reply is not valid: {e}" for e in err.errors[:2]]

        with pytest.raises(StructuredOutputError):
            await parse(c, "Which kind?", Kind, model=MODEL, max_reasks=0, extra_headers=IGNORE_SCHEMA)
        assert emulator.state.total_requests == 4


async def test_code_fences_and_prose_are_stripped():
    fenced = '```json\n{"name": "Lima", "population": 9, "districts": ["Miraflores"]}\n```'

    def handler(request):
        body = {"id": "x", "object": "chat.completion", "model": MODEL, "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": fenced}}]}
        return MockResponse(200, json.dumps(body).encode())

    async with AsyncClient(
        api_key="sk-test", base_url="http://unit.test", transport=MockTransport(handler)
    ) as c:
        assert await parse(c, "x", City, model=MODEL) == City("Lima", 9, ["Miraflores"])
    assert _extract('Here you go:\n{"a": 1}\nDone.') == '{"a": 1}'
    assert _extract("```\n{\"a\": 1}\n```") == '{"a": 1}'
    assert _extract('  {"a": {"b": 2}}  ') == '{"a": {"b": 2}}'


async def test_usage_errors(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        with pytest.raises(UsageError, match="JSON object"):
            await parse(c, "x", list[int], model=MODEL)
        with pytest.raises(UsageError, match="response_format"):
            await parse(c, "x", City, model=MODEL, response_format={"type": "text"})
    assert emulator.state.total_requests == 0


async def test_given_example_is_used(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        await parse(c, "x", CityModel, model=MODEL,
                    example=CityModel(name="Lima", population=10_000_000, area_km2=2672.3, capital=True))
    instruction = chat_bodies(emulator)[0]["messages"][0]["content"]
    assert (
        '{"name":"Lima","population":10000000,"area_km2":2672.3,"capital":true,"mayor":null}' in instruction
    )


def test_parse_sync(emulator):
    with Client(api_key="sk-test", base_url=emulator.base_url) as c:
        out = parse_sync(c, "Describe a city.", Score, model=MODEL)
    assert isinstance(out, Score) and isinstance(out.value, float)


SATURDAY = "2026-12-05T03:00:00Z"  # off-peak all day: the cost does not depend on when the test runs


async def test_full_returns_the_value_with_completion_summed_usage_cost_and_attempts(emulator, monkeypatch):
    """`full=True`: the object and what it took - two attempts here (the first reply is blank:
    no "json" in the prompt), their usage summed and priced (deepseek_kit.cost)."""
    from datetime import datetime

    from deepseek_kit import Parsed, cost

    monkeypatch.setenv("DSK_FAKE_NOW", SATURDAY)
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        result = await parse(c, "Describe a city.", City, model=MODEL, instructions=False, full=True)
    assert isinstance(result, Parsed) and isinstance(result.value, City)
    assert result.attempts == 2 == emulator.state.total_requests
    assert result.completion.choices[0].message.content
    assert result.usage is not None and result.completion.usage is not None
    assert result.usage.prompt_tokens > result.completion.usage.prompt_tokens  # both attempts counted
    at = datetime.fromisoformat(SATURDAY.replace("Z", "+00:00"))
    assert result.cost == cost(result.usage, MODEL, at) > 0
    assert result.currency == "CNY"


async def test_max_retries_is_the_old_reask_count_with_a_deprecation_warning(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        with pytest.warns(DeprecationWarning, match="max_reasks"), pytest.raises(StructuredOutputError) as ei:
            await parse(c, "Which kind?", Kind, model=MODEL, max_retries=1, extra_headers=IGNORE_SCHEMA)
    assert ei.value.attempts == 2 == emulator.state.total_requests


async def test_a_misspelt_argument_fails_at_the_call_naming_the_close_match(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as c:
        with pytest.raises(TypeError, match=r"'temprature' \(did you mean 'temperature'\?\)"):
            await parse(c, "Describe a city.", City, model=MODEL, temprature=0.2)  # type: ignore[call-overload]
        with pytest.raises(UsageError, match="max_reasks"):
            await parse(c, "Describe a city.", City, model=MODEL, max_reasks=-1)
    assert emulator.state.total_requests == 0


def test_parse_sync_full(emulator):
    with Client(api_key="sk-test", base_url=emulator.base_url) as c:
        result = parse_sync(c, "Describe a city.", City, model=MODEL, full=True)
    assert isinstance(result.value, City) and result.attempts == 1 and result.cost >= 0
