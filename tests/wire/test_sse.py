"""SSE decoder: any split, any line ending, comments, multi-line data, UTF-8 split mid-character."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepseek_kit._wire.sse import DONE, SSEDecoder, SSEError, encode_comment, encode_data, encode_event


def decode_all(chunks: list[bytes]) -> tuple[list[bytes], int]:
    dec = SSEDecoder()
    out = []
    for c in chunks:
        out.extend(dec.feed(c))
    out.extend(dec.flush())
    return out, dec.comments


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    parts, prev = [], 0
    for p in points:
        parts.append(data[prev:p])
        prev = p
    parts.append(data[prev:])
    return parts


json_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40
) | st.sampled_from(["\u2028", "a\u2029b", "é漢字🙂", "line\nbreak", "cr\rhere", ""])

payloads = st.lists(
    st.builds(lambda t, n: json.dumps({"content": t, "n": n}, ensure_ascii=False).encode(), json_text,
              st.integers()),
    min_size=0, max_size=12,
)


@st.composite
def streams(draw):
    """A random event stream (with comments and blank lines interleaved) and its payloads."""
    items = draw(payloads)
    eol = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    out = bytearray()
    for p in items:
        if draw(st.booleans()):
            out += b": keep-alive" + eol + eol
        if draw(st.booleans()):
            out += eol  # stray blank line: dispatches nothing
        out += b"data: " + p + eol + eol
    out += b"data: [DONE]" + eol + eol
    return bytes(out), items


@settings(max_examples=300, deadline=None)
@given(streams(), st.lists(st.integers(min_value=0), max_size=25))
def test_random_splits_give_the_same_events(stream, cuts):
    data, items = stream
    events, _ = decode_all(split_at(data, cuts))
    assert events == [*items, DONE]
    for raw, ev in zip(items, events[:-1], strict=True):  # events end with DONE
        assert json.loads(ev) == json.loads(raw)


@settings(max_examples=200, deadline=None)
@given(streams())
def test_byte_by_byte(stream):
    data, items = stream
    events, _comments = decode_all([data[i:i + 1] for i in range(len(data))])
    assert events == [*items, DONE]


def test_crlf_split_between_cr_and_lf_is_one_line_end():
    dec = SSEDecoder()
    assert dec.feed(b"data: a\r") == []
    assert dec.feed(b"\n\r") == [b"a"]
    assert dec.feed(b"\n") == []  # the LF pairs with the CR before it: no extra blank line
    assert dec.feed(b"data: b\r\n\r\n") == [b"b"]


def test_multiline_data_is_joined_with_lf():
    events, _ = decode_all([b"data: {\"a\":\ndata: 1}\n\n"])
    assert events == [b'{"a":\n1}']
    assert json.loads(events[0]) == {"a": 1}


def test_comments_counted_and_never_events():
    events, comments = decode_all([b": keep-alive\n\n: keep-alive\n\n\n\n"])
    assert events == []
    assert comments == 2


def test_field_without_space_event_and_id():
    dec = SSEDecoder()
    (ev,) = dec.feed_events(b"event: error\nid: 7\ndata:{\"x\":1}\n\n")
    assert ev.event == "error" and ev.id == "7" and ev.data == b'{"x":1}'
    (ev2,) = dec.feed_events(b"data: y\n\n")
    assert ev2.event is None and ev2.id == "7"  # last event id persists, event name does not


def test_utf8_split_mid_character():
    payload = json.dumps({"c": "漢🙂\u2028"}, ensure_ascii=False).encode()
    data = b"data: " + payload + b"\n\n"
    for i in range(len(data)):
        events, _ = decode_all([data[:i], data[i:]])
        assert events == [payload]
        assert json.loads(events[0])["c"] == "漢🙂\u2028"


def test_unterminated_last_event_flushed_leniently():
    events, _ = decode_all([b"data: tail"])
    assert events == [b"tail"]


def test_feed_and_feed_events_agree_on_payloads():
    blob = b": c\n\ndata: 1\n\nevent: e\ndata: 2\ndata: 3\n\n\ndata: 4\r\n\r\nid: x\n\n"
    a, b = SSEDecoder(), SSEDecoder()
    assert a.feed(blob) == [e.data for e in b.feed_events(blob)] == [b"1", b"2\n3", b"4"]


def test_encoder_roundtrip():
    blob = encode_comment() + encode_data(b'{"a":1}') + encode_event(b"x\ny", event="e", id="1")
    events, comments = decode_all([blob])
    assert events == [b'{"a":1}', b"x\ny"] and comments == 1


# --- docs/attack-round-2026-12.md, C6: linear on long lines,
# bounded unfinished events ---------------------------------


def test_long_line_is_not_recopied_per_chunk():
    """The quadratic decoder re-joined and re-searched the whole pending event on every chunk
    (50 MB line: 36 s of CPU). Now pending pieces are kept apart and joined once at the end."""
    dec = SSEDecoder()
    head = b'data: {"x":"'
    blk = b"a" * 4096
    assert dec.feed(head) == []
    for _ in range(2000):  # 8 MB in 4 KB chunks
        assert dec.feed(blk) == []
    assert len(dec._more) == 2000 and dec._buf == head  # nothing joined while the event is open
    out = dec.feed(b'"}\n\n')
    assert out == [b'{"x":"' + blk * 2000 + b'"}']
    assert not dec.has_partial


@pytest.mark.parametrize("chunk", [1000, 64 * 1024, 300 * 1024])
def test_unfinished_event_over_the_cap_raises(chunk):
    dec = SSEDecoder(max_event=256 * 1024)
    assert dec.feed(b"data: {}\n\n") == [b"{}"]
    with pytest.raises(SSEError, match="grew past"):
        for _ in range(1000):
            dec.feed(b"a" * chunk)
    assert not dec.has_partial  # the oversized event was dropped


def test_event_at_the_cap_is_fine():
    dec = SSEDecoder(max_event=1024)
    payload = b"x" * (1024 - len("data: "))
    assert dec.feed(b"data: " + payload[:500]) == []
    assert dec.feed(payload[500:] + b"\n\n") == [payload]


def test_seam_between_chunks_finds_the_blank_line():
    dec = SSEDecoder()
    assert dec.feed(b"data: 1") == []
    assert dec.feed(b"2\n") == []
    assert dec.feed(b"\n") == [b"12"]
    assert dec.feed(b"data: 3\r") == []
    assert dec.feed(b"\n") == []
    assert dec.feed(b"\r\n") == [b"3"]


_PIECES = [b'data: {"a":1}\n\n', b"data: [DONE]\n\n", b": ka\n\n", b"data: x\ndata: y\n\n", b"\n",
           b"data:z\n\n", b"event: e\n", b"data: \n\n", b"data: p", b"\r\n", b"id: 1\n\n", b"data: q\n"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=20), st.lists(st.integers(min_value=0), max_size=8))
def test_whole_frame_fast_path_matches_byte_by_byte(pieces, cuts):
    # Byte-by-byte feeding never takes feed()'s whole-frame shortcut: both must agree on any mix
    # of plain frames, comments, multi-line events, other fields, stray newlines and partial tails.
    data = b"".join(pieces)
    assert decode_all(split_at(data, cuts)) == decode_all([data[i:i + 1] for i in range(len(data))])


def test_whole_frames_in_one_read_with_a_partial_tail():
    dec = SSEDecoder()
    assert dec.feed(b"data: 1\n\ndata: 2\n\ndata: [DO") == [b"1", b"2"]
    assert dec.feed(b"NE]\n\n") == [DONE]
