"""Pure-logic parts of the emulator: tokenizer, schema values, directives, serde positions, cache."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepseek_kit.server import Directives, EmulatorConfig, parse_directives
from deepseek_kit.server.emulator.cache_sim import PrefixCache, prefix_units
from deepseek_kit.server.emulator.faults import DirectiveError
from deepseek_kit.server.emulator.generate import text_tokens
from deepseek_kit.server.emulator.schema_values import value_from_schema
from deepseek_kit.server.emulator.serde import locate
from deepseek_kit.server.emulator.tokens import count_tokens, render_message, render_prompt, tokenize
from tests.server.emulator.test_chat import conforms


@given(st.text())
def test_tokenize_is_lossless(text):
    assert "".join(tokenize(text)) == text


@given(st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=2**32))
def test_generated_text_retokenizes_to_the_same_tokens(n, seed):
    toks = text_tokens(random.Random(seed), n)
    assert len(toks) == n
    assert tokenize("".join(toks)) == toks


def test_token_density_is_plausible():
    english = "The quick brown fox jumps over the lazy dog while the cat watches. " * 20
    assert 0.2 < count_tokens(english) / len(english) < 0.35  # DeepSeek: ~0.3 token per char
    chinese = "深度求索人工智能基础技术研究有限公司" * 20
    assert 0.4 < count_tokens(chinese) / len(chinese) < 0.7  # ~0.6 token per char


@given(st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                                       "content": st.text(max_size=50)}), max_size=5))
def test_rendering_concatenates_token_streams(messages):
    whole = tokenize(render_prompt(messages, None))
    parts = [t for m in messages for t in tokenize(render_message(m))]
    assert whole == parts


_leaf = st.one_of(
    st.just({"type": "string"}),
    st.just({"type": "integer", "minimum": -5, "maximum": 5}),
    st.just({"type": "number", "minimum": 0.5, "maximum": 0.75}),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.just({"enum": ["a", 1, None]}),
    st.just({"type": "string", "format": "email"}),
    st.just({"type": ["string", "null"]}),
    st.just({"type": "string", "minLength": 5, "maxLength": 6}),
    st.just({"const": "fixed"}),
)


def _extend(children):
    props = st.dictionaries(st.text("abcdefgh", min_size=1, max_size=5), children, max_size=4)
    return st.one_of(
        st.builds(lambda p, strict: {"type": "object", "properties": p,
                                     "required": sorted(p) if strict else sorted(p)[:1],
                                     **({"additionalProperties": False} if strict else {})},
                  props, st.booleans()),
        st.builds(lambda i, lo: {"type": "array", "items": i, "minItems": lo, "maxItems": lo + 2},
                  children, st.integers(0, 3)),
        st.builds(lambda a, b: {"anyOf": [a, b]}, children, children),
    )


@settings(max_examples=300)
@given(st.recursive(_leaf, _extend, max_leaves=12), st.integers(0, 2**32))
def test_schema_values_conform(schema, seed):
    value = value_from_schema(schema, random.Random(seed))
    assert conforms(value, schema), (schema, value)
    json.dumps(value)


def test_schema_refs_and_all_of():
    schema = {
        "type": "object",
        "properties": {
            "p": {"$ref": "#/definitions/pt"},
            "q": {"allOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]}]},
        },
        "required": ["p", "q"],
        "definitions": {
            "pt": {
                "type": "object",
                "properties": {"x": {"type": "integer", "exclusiveMinimum": 3, "exclusiveMaximum": 5}},
                "required": ["x"],
            }
        },
    }
    for seed in range(20):
        v = value_from_schema(schema, random.Random(seed))
        assert v["p"]["x"] == 4 and isinstance(v["q"]["a"], int)


def test_recursive_schema_terminates():
    schema = {"$defs": {"node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}},
                                 "required": ["child"]}}, "$ref": "#/$defs/node"}
    json.dumps(value_from_schema(schema, random.Random(1)))


def test_parse_directives():
    assert parse_directives("") == {}
    got = parse_directives(" status=503 ; retry_after=2;times=2;key=abc;keepalive_forever;queue=1.5 ")
    assert got == {"status": 503, "retry_after": "2", "times": 2, "key": "abc", "keepalive_forever": True,
                   "stall_first_token": 1.5}
    d = Directives(**got)
    assert d.without_failures() == Directives(times=2, key="abc")
    assert parse_directives("empty_body=0") == {"empty_body": False}
    for bad in ("nope", "status", "status=99", "tokens=-1", "times=0", "delay_chunks=x", "finish=maybe"):
        with pytest.raises(DirectiveError):
            parse_directives(bad)


def test_serde_locate():
    raw = b'{"a": [1, {"b": "x"}], "c": {}}'
    assert locate(raw, ("a", 1, "b")) == (1, 19)  # just past "x"
    assert locate(raw, ("a",)) == (1, 6)  # a sequence is only peeked
    assert locate(raw, ("a", 1), "end") == (1, 20)
    assert locate(raw, ("c",), "end") == (1, 30)
    assert locate(b"{\n}", (), "end") == (2, 1)


def test_prefix_cache():
    toks = [f"t{i}" for i in range(300)]
    units = prefix_units(toks, 128)
    assert len(units) == 2
    assert prefix_units(toks[:200], 128)[0] == units[0]
    assert prefix_units(toks[128:], 128, units[0])[0] == units[1]  # continuing a chain
    cache = PrefixCache(128, capacity=3)
    assert cache.lookup("k", None, units) == 0
    cache.store("k", None, units)
    assert cache.lookup("k", None, units) == 256
    assert cache.lookup("k", "u1", units) == 0
    assert cache.lookup("k", None, units[:1]) == 128
    cache.store("k", "u2", prefix_units([f"x{i}" for i in range(256)], 128))
    assert len(cache) == 3  # LRU bound


def test_config_validation():
    with pytest.raises(ValueError):
        EmulatorConfig(currency="EUR")
    with pytest.raises(ValueError):
        EmulatorConfig(json_without_hint="nothing")
    assert EmulatorConfig(balance={"k": 5}).balance["k"] == 5
