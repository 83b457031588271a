"""Batch input: JSONL/CSV records become items or problems with their line numbers, one at a time."""

from __future__ import annotations

import json

import pytest

from deepseek_kit._batch.inputs import (
    BatchItem,
    InputProblem,
    count_records,
    detect_format,
    item_from_object,
    iter_items,
)


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_jsonl_items_and_problems_keep_line_numbers(tmp_path):
    src = _write(tmp_path / "in.jsonl", [
        json.dumps({"id": "a", "prompt": "hi", "temperature": 0.5}),
        "",
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"prompt": "no id"}),
        json.dumps({"id": "b", "messages": [{"role": "user", "content": "x"}], "model": "deepseek-v4-pro"}),
        json.dumps({"id": "c", "prompt": "x", "temprature": 1}),
        json.dumps({"id": "d"}),
        json.dumps({"id": 7, "prompt": "x", "system": "be brief", "metadata": {"k": 1}}),
        json.dumps({"id": "e", "prompt": "x", "stream": True}),
        json.dumps({"id": "f", "messages": []}),
        json.dumps({"custom_id": "g", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "deepseek-flash", "messages": [{"role": "user", "content": "y"}]}}),
    ])
    out = list(iter_items(src))
    kinds = [(r.line, type(r).__name__) for r in out]
    assert kinds == [(1, "BatchItem"), (3, "InputProblem"), (4, "InputProblem"), (5, "InputProblem"),
                     (6, "BatchItem"), (7, "InputProblem"), (8, "InputProblem"), (9, "BatchItem"),
                     (10, "InputProblem"), (11, "InputProblem"), (12, "BatchItem")]
    a = out[0]
    assert a.params == {"temperature": 0.5, "messages": [{"role": "user", "content": "hi"}]}
    assert "not valid JSON" in out[1].message
    assert "expected a JSON object" in out[2].message
    assert "no 'id'" in out[3].message
    assert out[4].params["model"] == "deepseek-v4-pro"
    assert "temprature" in out[5].message and out[5].id == "c"
    assert "exactly one of 'prompt'" in out[6].message
    seven = out[7]
    assert seven.id == 7 and seven.key == "7" and seven.metadata == {"k": 1}
    assert seven.params["messages"][0] == {"role": "system", "content": "be brief"}
    assert "stream" in out[8].message
    assert "non-empty list" in out[9].message
    g = out[10]
    assert g.id == "g" and g.params["model"] == "deepseek-flash"


def test_csv_columns_typed_and_rows_numbered(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text('\ufeffid,prompt,temperature,max_tokens,thinking\n'
                   '1,"Hello, world",0.2,50,false\n'
                   '2,"two\nlines",,,\n'
                   '3,only two\n'
                   '4,123,,,\n', encoding="utf-8")
    out = list(iter_items(src))
    assert [(r.line, type(r).__name__) for r in out] == [
        (2, "BatchItem"), (3, "BatchItem"), (5, "InputProblem"), (6, "BatchItem")]
    one = out[0]
    assert isinstance(one, BatchItem)
    assert one.id == "1" and one.params == {
        "temperature": 0.2, "max_tokens": 50, "thinking": False,
        "messages": [{"role": "user", "content": "Hello, world"}]}
    assert out[1].params["messages"][0]["content"] == "two\nlines"
    assert "2 cells, the header has 5" in out[2].message
    assert out[3].params["messages"][0]["content"] == "123"  # prompts stay text
    assert count_records(src) == 4  # data rows: the header is not a record


def test_csv_without_id_column_is_one_problem(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("prompt\nhello\n", encoding="utf-8")
    out = list(iter_items(src))
    assert len(out) == 1 and isinstance(out[0], InputProblem) and "'id' column" in out[0].message


def test_count_records_skips_blank_lines(tmp_path):
    src = _write(tmp_path / "in.jsonl", ['{"id":1,"prompt":"a"}', "", "   ", "{bad", '{"id":2,"prompt":"b"}'])
    assert count_records(src) == 3


def test_iterable_source_and_format_detection(tmp_path):
    out = list(iter_items([{"id": "x", "prompt": "p"}, {"id": "y"}]))
    assert isinstance(out[0], BatchItem) and out[0].line == 1
    assert isinstance(out[1], InputProblem) and out[1].line == 2
    assert detect_format("a.CSV") == "csv" and detect_format("a.jsonl") == "jsonl"
    assert detect_format("a.txt", "csv") == "csv"
    with pytest.raises(ValueError):
        detect_format("a", "xml")


@pytest.mark.parametrize("record, reason", [
    ({"id": True, "prompt": "x"}, "'id' must be"),
    ({"id": "", "prompt": "x"}, "'id' must be"),
    ({"id": "a", "prompt": 3}, "'prompt' must be text"),
    ({"id": "a", "messages": [{"content": "no role"}]}, "messages[0]"),
    ({"id": "a", "prompt": "x", "extra_headers": {"X": 1}}, "extra_headers"),
    ({"id": "a", "prompt": "x", "model": ""}, "'model'"),
    ({"id": "a", "prompt": "x", "body": "nope"}, "'body' must be"),
])
def test_invalid_records_say_why(record, reason):
    p = item_from_object(record, 9)
    assert isinstance(p, InputProblem) and p.line == 9 and reason in p.message
