"""serde_json-shaped error messages for request bodies, with `at line L column C` positions.

DeepSeek's API server deserializes bodies with serde (via axum), so a type error reads
`Failed to deserialize the JSON body into the target type: messages[9]: invalid type: sequence,
expected a string at line 1 column 45446` (docs/deepseek-api-notes.md#errors-and-status-codes), and a syntax
error `Failed to parse the request body as JSON: ...`. Validation works on the decoded value (fast, in
C via msgspec); only when an error is found do we walk the raw bytes to the offending value to
compute serde's line/column:

* the column is the number of bytes consumed on the line when the error is raised;
* scalars are consumed before the type check (`"1"` -> column 1), `[`/`{` are only peeked
  (`[1]` as a string -> column 0);
* errors raised after a whole object was read (missing fields: `{}` -> column 2, the buffered
  internally-tagged `messages[N]` enum) point just past its closing `}`.

Syntax errors msgspec reports without serde's reason or position (invalid UTF-8, surrogate escapes,
numbers out of range, nesting past serde's recursion limit of 128) are found again by `scan_error`,
a bounded scan of the raw bytes on the error path only.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import msgspec

__all__ = [
    "SerdeError", "describe", "invalid_type", "locate", "parse_error_message", "path_text", "scan_error",
]

DESERIALIZE = "Failed to deserialize the JSON body into the target type: "
PARSE = "Failed to parse the request body as JSON: "

Path = tuple[str | int, ...]


class SerdeError(Exception):
    """A deserialization error at `path`; `at` is "value" (the value itself) or "end" (after
    the object at `path` was fully read)."""

    def __init__(self, path: Path, message: str, at: str = "value") -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        self.at = at

    def render(self, raw: bytes) -> str:
        line, col = locate(raw, self.path, self.at)
        where = path_text(self.path)
        head = f"{where}: " if where else ""
        return f"{DESERIALIZE}{head}{self.message} at line {line} column {col}"


def path_text(path: Path) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else p
    return out


def _rust_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def describe(value: Any) -> str:
    """serde's `Unexpected` wording for a JSON value."""
    if value is None:
        return "null"
    if value is True or value is False:
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value!r}`"
    if isinstance(value, str):
        return f"string {_rust_str(value)}"
    if isinstance(value, list):
        return "sequence"
    return "map"


def invalid_type(value: Any, expected: str, path: Path) -> SerdeError:
    return SerdeError(path, f"invalid type: {describe(value)}, expected {expected}")


def parse_error_message(raw: bytes, exc: Exception) -> str:
    """serde_json's wording for a syntax error (msgspec reports the byte offset, but not the
    reason for the errors `scan_error` finds)."""
    text = raw.strip()
    if not text:
        return f"{PARSE}EOF while parsing a value at line 1 column 0"
    found = scan_error(raw)
    if found is not None:
        kind, at = found
        line, col = _line_col(raw, at)
        return f"{PARSE}{kind} at line {line} column {col}"
    msg = str(exc)
    pos = len(raw)
    if "(byte " in msg:
        with contextlib.suppress(ValueError):
            pos = int(msg.rsplit("(byte ", 1)[1].rstrip(")"))
    line, col = _line_col(raw, min(pos + 1, len(raw)))
    kind = "EOF while parsing a value" if pos >= len(raw.rstrip()) else "expected value"
    if "trailing" in msg.lower():
        kind = "trailing characters"
    return f"{PARSE}{kind} at line {line} column {col}"


# -- locating a path in raw JSON (error path only) ------------------------------------------------

_WS = b" \t\r\n"


def _skip_ws(s: bytes, i: int) -> int:
    n = len(s)
    while i < n and s[i] in _WS:
        i += 1
    return i


def _string_end(s: bytes, i: int) -> int:
    i += 1
    n = len(s)
    while i < n:
        c = s[i]
        if c == 0x5C:  # backslash
            i += 2
            continue
        if c == 0x22:
            return i + 1
        i += 1
    return n


def _value_end(s: bytes, i: int) -> int:
    n = len(s)
    if i >= n:
        return n
    c = s[i]
    if c == 0x22:
        return _string_end(s, i)
    if c in b"[{":
        depth = 0
        while i < n:
            c = s[i]
            if c == 0x22:
                i = _string_end(s, i)
                continue
            if c in b"[{":
                depth += 1
            elif c in b"]}":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return n
    while i < n and s[i] not in b",]} \t\r\n":
        i += 1
    return i


def _find(s: bytes, path: Path) -> tuple[int, int]:
    i = _skip_ws(s, 0)
    for comp in path:
        if i >= len(s):
            break
        opener = s[i]
        i = _skip_ws(s, i + 1)
        if isinstance(comp, str) and opener == 0x7B:
            found = False
            while i < len(s) and s[i] == 0x22:
                kend = _string_end(s, i)
                try:
                    key = msgspec.json.decode(s[i:kend])
                except msgspec.DecodeError:
                    key = None
                i = _skip_ws(s, kend)
                i = _skip_ws(s, i + 1)  # the colon
                if key == comp:
                    found = True
                    break
                i = _skip_ws(s, _value_end(s, i))
                if i < len(s) and s[i] == 0x2C:
                    i = _skip_ws(s, i + 1)
            if not found:
                break
        elif isinstance(comp, int) and opener == 0x5B:
            for _ in range(comp):
                i = _skip_ws(s, _value_end(s, i))
                if i < len(s) and s[i] == 0x2C:
                    i = _skip_ws(s, i + 1)
        else:
            break
    return i, _value_end(s, i)


def _line_col(s: bytes, pos: int) -> tuple[int, int]:
    line = s.count(b"\n", 0, pos) + 1
    start = s.rfind(b"\n", 0, pos) + 1
    return line, pos - start


def locate(raw: bytes, path: Path, at: str = "value") -> tuple[int, int]:
    """serde_json's (line, column) for an error about the value at `path`."""
    try:
        start, end = _find(raw, path)
    except (IndexError, ValueError):  # pragma: no cover - defensive: never fail an error path
        return 1, len(raw)
    consumed = at == "end" or (start < len(raw) and raw[start] not in b"[{")
    # consumed: serde's position is the index just past the value; peeked: the value's start
    pos = end if consumed else start
    return _line_col(raw, pos)


# -- errors msgspec does not place (error path only) ----------------------------------------------

#: serde_json's default recursion limit: the 128th nested array/object is refused.
RECURSION_LIMIT = 128
#: The scan stops after this many tokens (a hostile 60 MB body must not pin the event loop).
SCAN_TOKENS = 200_000
_TOKEN = re.compile(
    rb'[ \t\r\n]*(?:(")|([\[{])|([\]}])'
    rb"|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)|[,:]|true|false|null)"
)
_STRING_REST = re.compile(rb'[^"\\\x00-\x1f]*(?:\\.[^"\\\x00-\x1f]*)*', re.S)
_ESCAPE = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|.)", re.S)


def _string_error(raw: bytes, start: int) -> tuple[str | None, int]:
    """(serde's reason or None, index just past the string) for the string opening at `start`."""
    m = _STRING_REST.match(raw, start + 1)
    end = m.end() if m else start + 1
    if end < len(raw) and raw[end] < 0x20:
        return "control character (\\u0000-\\u001F) found while parsing a string", end + 1
    if end >= len(raw) or raw[end] != 0x22:
        return None, end  # unterminated: the generic EOF message is right
    body = raw[start + 1 : end]
    for esc in _ESCAPE.finditer(body):
        hexa = esc.group(1)
        if hexa is None:
            continue
        n = int(hexa, 16)
        after = start + 1 + esc.end()
        if 0xDC00 <= n <= 0xDFFF:
            return "lone leading surrogate in hex escape", after
        if 0xD800 <= n <= 0xDBFF:
            nxt = raw[after : after + 2]
            if nxt != b"\\u":
                return "unexpected end of hex escape", min(after + (2 if nxt[:1] == b"\\" else 1), len(raw))
            low = raw[after + 2 : after + 6]
            with contextlib.suppress(ValueError):
                if not 0xDC00 <= int(low, 16) <= 0xDFFF:
                    return "lone leading surrogate in hex escape", after + 6
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid unicode code point", end + 1
    return None, end + 1


def scan_error(raw: bytes) -> tuple[str, int] | None:
    """The first error serde_json would report that msgspec words differently: (reason, index of
    serde's position). None when there is none (or the scan gave up, see SCAN_TOKENS)."""
    depth, pos, n = 0, 0, len(raw)
    if raw.startswith(b"\xef\xbb\xbf"):
        pos = 3
    for _ in range(SCAN_TOKENS):
        m = _TOKEN.match(raw, pos)
        if m is None:
            return None
        if m.group(1):
            reason, pos = _string_error(raw, m.start(1))
            if reason is not None:
                return reason, pos
            continue
        pos = m.end()
        if m.group(2):
            depth += 1
            if depth >= RECURSION_LIMIT:
                return "recursion limit exceeded", pos  # serde peeks past the opener
        elif m.group(3):
            depth -= 1
        elif m.group(4) and float(m.group(4)) in (float("inf"), float("-inf")):
            return "number out of range", pos
        if pos >= n:
            return None
    return None
