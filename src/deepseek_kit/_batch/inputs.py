"""Batch input: JSONL and CSV files read one record at a time, each turned into a `BatchItem`
(an id and the keyword arguments of one `chat.completions.create()` call) or an `InputProblem`
(a line that cannot be run, with its line number and the reason).

Nothing here holds more than one record: files are iterated line by line (csv reads one row), so
a batch of a million prompts costs the memory of one. A bad record never stops the reading; the
caller reports it and goes on.

A JSONL record is an object:

    {"id": "q1", "prompt": "Hello"}                                   # one user message
    {"id": "q2", "prompt": "Hi", "system": "Be brief", "temperature": 0.2}
    {"id": "q3", "messages": [{"role": "user", "content": "Hi"}], "model": "deepseek-v4-pro",
     "thinking": false, "max_tokens": 200, "response_format": {"type": "json_object"}}
    {"custom_id": "q4", "body": {"messages": [...], "model": "..."}}  # OpenAI batch-file lines

`id` (or `custom_id`) is a string or an integer; everything else but `prompt`, `system`,
`metadata` (copied to the result line) and `body` (merged in) must be a `create()` parameter
(docs/deepseek-api-notes.md#request-fields), so that a misspelt field is reported instead of silently ignored;
wire fields the client does not name go in `extra_body`. Blank lines are skipped.

Hostile input stays a per-record problem: an id outside SQLite's signed 64-bit integers (give
such ids as strings), JSON nested too deeply to decode, and a record longer than
`max_record_bytes` (default `MAX_RECORD_BYTES`, 64 MiB). Long lines are read in bounded pieces, so
an over-long line is skipped without ever being held whole, and `count_records` scans in
bounded pieces too.

A CSV file has a header row with `id` and `prompt` (or `messages` as JSON); other columns are
`create()` parameters whose cells are read as JSON when they parse (numbers, true/false, objects)
and as text otherwise; empty cells are left out. `id`, `prompt` and `system` are always text.
CSV is read strictly: a stray quote inside a quoted cell is a problem of that row, and an
unterminated quote (which would swallow every row after it) is reported, not run.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

__all__ = [
    "MAX_RECORD_BYTES",
    "PARAMS",
    "BatchItem",
    "InputProblem",
    "count_records",
    "detect_format",
    "item_from_object",
    "iter_items",
]

#: `chat.completions.create()` keyword arguments a record
#: may carry (docs/deepseek-api-notes.md#request-fields).
PARAMS = frozenset({
    "model", "thinking", "reasoning_effort", "max_tokens", "response_format", "stop",
    "temperature", "top_p", "frequency_penalty", "presence_penalty", "tools", "tool_choice",
    "logprobs", "top_logprobs", "user_id", "extra_body", "extra_headers", "timeout",
    "max_retries",
})
_OWN = frozenset({"id", "custom_id", "prompt", "system", "messages", "metadata", "body", "stream"})
_TEXT_COLUMNS = frozenset({"id", "custom_id", "prompt", "system"})

_decode = msgspec.json.Decoder().decode
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 §5.6.2)
_BAD_VALUE = re.compile(r"[\r\n\x00]")

#: Longest input record (a JSONL line, a CSV row) in bytes; longer ones are input problems.
#: 64 MiB is far above DeepSeek's context window (~1M tokens is a few MB of text).
MAX_RECORD_BYTES = 64 * 1024 * 1024
_CHUNK = 1 << 20  # pieces in which over-long lines are skipped and records counted
#: SQLite stores integers as signed 64-bit: larger ids cannot be journaled as numbers.
_INT64 = range(-(2**63), 2**63)


@dataclass(slots=True)
class BatchItem:
    """One request of a batch: `id` as given (str or int), `key` its text form (the journal's
    key), `line` where it starts in the input (1-based), `params` the `create()` arguments
    (`messages` included, `model` only when the record names one), `metadata` copied to the
    result line."""

    id: str | int
    key: str
    line: int
    params: dict[str, Any]
    metadata: Any = None


@dataclass(slots=True)
class InputProblem:
    """A record of a batch input that cannot be run: its `line` (1-based), the `message` saying
    why, its `id` when it had one, and `kind`, "malformed" or "duplicate". `run_batch` reports each
    to `on_problem` (and to the failures file) and goes on with the other records."""

    line: int
    message: str
    id: str | int | None = None
    kind: str = "malformed"


def detect_format(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """"csv" for *.csv (or when asked), else "jsonl"."""
    if fmt:
        fmt = fmt.lower()
        if fmt not in ("jsonl", "csv"):
            raise ValueError(f"unknown input format {fmt!r}: expected jsonl or csv")
        return fmt
    return "csv" if str(path).lower().endswith(".csv") else "jsonl"


def _problem(line: int, message: str, ident: Any = None) -> InputProblem:
    if isinstance(ident, int) and ident not in _INT64:
        ident = str(ident)  # reported as text: the journal cannot hold it as a number
    return InputProblem(line, message, ident if isinstance(ident, (str, int)) else None)


def _check_messages(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list of {\"role\": ..., \"content\": ...} objects"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            return f"messages[{i}] must be an object with a 'role'"
    return None


def item_from_object(obj: Any, line: int) -> BatchItem | InputProblem:
    """Validate one decoded record (see the module docstring)."""
    if not isinstance(obj, dict):
        return _problem(line, f"expected a JSON object, got {type(obj).__name__}")
    if "body" in obj:
        body = obj["body"]
        if not isinstance(body, dict):
            return _problem(line, "'body' must be an object of create() parameters", obj.get("id"))
        obj = {**{k: v for k, v in obj.items() if k not in ("body", "method", "url")}, **body}
    ident = obj.get("id", obj.get("custom_id"))
    if ident is None:
        return _problem(line, "no 'id' (give every record a unique string or integer id)")
    if isinstance(ident, bool) or not isinstance(ident, (str, int)) or ident == "":
        return _problem(line, f"'id' must be a non-empty string or an integer, got {ident!r}")
    if isinstance(ident, int) and ident not in _INT64:
        return _problem(line, "'id' is outside the signed 64-bit integer range: give it as a "
                        "string", ident)
    unknown = sorted(k for k in obj if k not in PARAMS and k not in _OWN)
    if unknown:
        return _problem(line, f"unknown field {unknown[0]!r} (not a create() parameter; wire fields "
                        "go in 'extra_body')", ident)
    if obj.get("stream"):
        return _problem(line, "'stream' is not supported in a batch (answers are written whole)", ident)
    params = {k: v for k, v in obj.items() if k in PARAMS}
    prompt, messages, system = obj.get("prompt"), obj.get("messages"), obj.get("system")
    if (prompt is None) == (messages is None):
        return _problem(line, "give exactly one of 'prompt' (text) or 'messages' (a list)", ident)
    if system is not None and not isinstance(system, str):
        return _problem(line, "'system' must be text", ident)
    if prompt is not None:
        if not isinstance(prompt, str):
            return _problem(line, "'prompt' must be text", ident)
        messages = [{"role": "user", "content": prompt}]
    else:
        reason = _check_messages(messages)
        if reason:
            return _problem(line, reason, ident)
    if system is not None:
        messages = [{"role": "system", "content": system}, *messages]
    params["messages"] = messages
    headers = params.get("extra_headers")
    if headers is not None and not (
            isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())):
        return _problem(line, "'extra_headers' must be an object of text values", ident)
    for name, value in (headers or {}).items():
        # A header no server accepts (a space in the name) or one that would inject another
        # header (CR/LF in the value) is the record's problem, found before anything is sent.
        if not _TOKEN.fullmatch(name):
            return _problem(line, f"'extra_headers': {name!r} is not a valid header name", ident)
        if _BAD_VALUE.search(value):
            return _problem(line, f"'extra_headers': the value of {name!r} contains a control "
                            "character (CR, LF or NUL)", ident)
    if "model" in params and not (isinstance(params["model"], str) and params["model"]):
        return _problem(line, "'model' must be a non-empty string", ident)
    return BatchItem(ident, str(ident), line, params, obj.get("metadata"))


def _lines(f: Any, limit: int) -> Iterator[tuple[bytes | None, int]]:
    """Physical lines of a binary file as (bytes, size); (None, size) for a line longer than
    `limit`, whose rest is skipped in `_CHUNK` pieces so that it is never held whole."""
    while raw := f.readline(limit + 1):
        if len(raw) <= limit:
            yield raw, len(raw)
            continue
        size = len(raw)
        del raw
        while (piece := f.readline(_CHUNK)) and not piece.endswith(b"\n"):
            size += len(piece)
        yield None, size + len(piece)


def _jsonl(path: Path, limit: int) -> Iterator[BatchItem | InputProblem]:
    with path.open("rb") as f:
        for n, (raw, size) in enumerate(_lines(f, limit), 1):
            if raw is None:
                yield InputProblem(n, f"record longer than {limit:,} bytes ({size:,}): split it "
                                   "or raise max_record_bytes")
                continue
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                obj = _decode(raw)
            except msgspec.DecodeError as exc:
                yield InputProblem(n, f"not valid JSON: {exc}")
                continue
            except RecursionError:
                yield InputProblem(n, "not valid JSON: nested too deeply")
                continue
            yield item_from_object(obj, n)


class _BadCell(Exception):
    pass


def _cell(name: str, text: str) -> Any:
    if name in _TEXT_COLUMNS:
        return text
    try:
        return _decode(text)
    except msgspec.DecodeError:
        return text
    except RecursionError:
        raise _BadCell(f"column {name!r}: not valid JSON (nested too deeply)") from None


class _TooLong(Exception):
    pass


def _text_lines(f: Any, limit: int) -> Iterator[str]:
    """Physical lines for csv.reader, each at most `limit` characters; a longer one raises
    `_TooLong` (csv.reader passes it on and starts afresh on the next call)."""
    while line := f.readline(limit + 1):
        if len(line) > limit:
            while (piece := f.readline(_CHUNK)) and not piece.endswith("\n"):
                pass
            raise _TooLong
        yield line


def _csv(path: Path, limit: int) -> Iterator[BatchItem | InputProblem]:
    # The field limit is csv's module-wide setting; raise it to ours when it is lower (its
    # default, 128 KiB, would refuse long prompts), never lower it for other users.
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)
    with path.open("r", encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(_text_lines(f, limit), strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError, _TooLong) as exc:
            yield InputProblem(1, f"unreadable CSV header: {exc or 'too long'}")
            return
        header = [h.strip() for h in header]
        if "id" not in header and "custom_id" not in header:
            yield InputProblem(1, "the CSV header has no 'id' column")
            return
        repeated = sorted(h for h, n in Counter(header).items() if n > 1 and h)
        if repeated:  # which of two 'id' columns is the id? Refuse rather than pick one
            yield InputProblem(1, f"the CSV header repeats the column {repeated[0]!r}: rename one")
            return
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except _TooLong:
                yield InputProblem(start, f"record longer than {limit:,} characters: split it or "
                                   "raise max_record_bytes")
                continue
            except (csv.Error, UnicodeDecodeError) as exc:
                hint = (" (an unterminated quote: the rows after it were not read)"
                        if "unexpected end of data" in str(exc) else "")
                yield InputProblem(start, f"unreadable CSV row: {exc}{hint}")
                continue
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                yield InputProblem(start, f"{len(row)} cells, the header has {len(header)}")
                continue
            try:
                obj = {name: _cell(name, cell) for name, cell in zip(header, row, strict=True)
                       if cell != ""}
            except _BadCell as exc:
                yield _problem(start, str(exc), row[header.index("id")] if "id" in header else None)
                continue
            if isinstance(obj.get("messages"), str):
                yield _problem(start, "'messages' cell is not valid JSON", obj.get("id"))
                continue
            yield item_from_object(obj, start)


def iter_items(source: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
               fmt: str | None = None, *, max_record_bytes: int = MAX_RECORD_BYTES,
               ) -> Iterator[BatchItem | InputProblem]:
    """Items and problems in input order, one at a time. `source` is a path (JSONL, or CSV by
    extension or `fmt`) or an iterable of records (line = position, 1-based). Records longer
    than `max_record_bytes` are problems (for CSV the bound counts characters)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if detect_format(path, fmt) == "csv":
            return _csv(path, max_record_bytes)
        return _jsonl(path, max_record_bytes)
    return (item_from_object(dict(obj) if isinstance(obj, Mapping) else obj, n)
            for n, obj in enumerate(source, 1))


def count_records(path: str | os.PathLike[str], fmt: str | None = None, *,
                  max_record_bytes: int = MAX_RECORD_BYTES) -> int:
    """Non-blank records in a file, for progress totals: a byte scan for JSONL (no decoding),
    a row count for CSV (quoted newlines make physical lines wrong there); an unreadable row
    or an over-long record counts as one, as the reader reports it as one."""
    p = Path(path)
    count = 0
    if detect_format(p, fmt) == "csv":
        if csv.field_size_limit() < max_record_bytes:
            csv.field_size_limit(max_record_bytes)
        with p.open("r", encoding="utf-8-sig", newline="", errors="replace") as f:
            reader = csv.reader(_text_lines(f, max_record_bytes), strict=True)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except (csv.Error, _TooLong):
                    count += 1
                    continue
                if row and any(c.strip() for c in row):
                    count += 1
        return max(count - 1, 0)
    with p.open("rb", buffering=_CHUNK) as f:
        blank = True  # the current line has nothing but whitespace so far
        while piece := f.readline(_CHUNK):  # bounded pieces: a 2 GB line is never held
            if blank and piece.strip():
                blank = False
            if piece.endswith(b"\n"):
                count += not blank
                blank = True
        count += not blank
    return count
