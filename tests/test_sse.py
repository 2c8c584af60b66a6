"""Tests for the incremental SSE and Gemini JSON-array decoders in rxstream.sources._sse."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxstream._errors import LimitExceededError, ProtocolError
from rxstream.sources._sse import (
    DEFAULT_MAX_BYTES,
    JSONArrayDecoder,
    ServerSentEvent,
    SSEDecoder,
)

RECORDINGS = Path(__file__).parent / "recordings"
SSE_FILES = sorted(RECORDINGS.glob("*.sse"))
JSON_FILES = sorted(RECORDINGS.glob("*.json"))

# The hypothesis example database would write .hypothesis/ into the working tree.
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def E(
    data: str, event: str | None = None, id: str | None = None, retry: int | None = None
) -> ServerSentEvent:
    return ServerSentEvent(event, data, id, retry)


def decode(*pieces: bytes, **limits: int) -> list[ServerSentEvent]:
    decoder = SSEDecoder(**limits)
    events: list[ServerSentEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.flush())
    return events


def decode_in(body: bytes, size: int) -> list[ServerSentEvent]:
    return decode(*(body[i : i + size] for i in range(0, len(body), size)))


def decode_json(*pieces: bytes, **limits: int) -> list[Any]:
    decoder = JSONArrayDecoder(**limits)
    items: list[Any] = []
    for piece in pieces:
        items.extend(decoder.feed(piece))
    items.extend(decoder.flush())
    return items


def reference(body: bytes) -> list[ServerSentEvent]:
    """Line-at-a-time transcription of the WHATWG rules (plus the dispatch at end of body)."""
    text = body.decode("utf-8")
    text = text.removeprefix("\ufeff")
    lines = re.split(r"\r\n|\r|\n", text)
    events: list[ServerSentEvent] = []
    data: list[str] = []
    event = ""
    last_id: str | None = None
    retry: int | None = None
    for index, line in enumerate(lines):
        if line == "":
            if index == len(lines) - 1:
                break
            if data:
                events.append(ServerSentEvent(event or None, "\n".join(data), last_id, retry))
            data, event = [], ""
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and re.fullmatch(r"[0-9]+", value):
            retry = int(value)
    if data:
        events.append(ServerSentEvent(event or None, "\n".join(data), last_id, retry))
    return events


def cut(body: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted(set(points)), len(body)]
    return [body[a:b] for a, b in itertools.pairwise(bounds)]


# --- ServerSentEvent -------------------------------------------------------------------------


def test_event_value_semantics() -> None:
    a = ServerSentEvent("x", "d", "1", 5)
    assert a == ServerSentEvent("x", "d", "1", 5)
    assert a != ServerSentEvent("x", "d", "1", None)
    assert a.event == "x" and a.data == "d" and a.id == "1" and a.retry == 5
    assert repr(a) == "ServerSentEvent(event='x', data='d', id='1', retry=5)"
    assert ServerSentEvent(None, "d") == ServerSentEvent(None, "d", None, None)
    assert not hasattr(a, "__dict__")


# --- line endings ------------------------------------------------------------------------------


def test_lf_line_endings() -> None:
    assert decode(b"data: a\n\ndata: b\n\n") == [E("a"), E("b")]


def test_cr_line_endings() -> None:
    assert decode(b"event: e\rdata: a\r\rdata: b\r\r") == [E("a", "e"), E("b")]


def test_crlf_line_endings() -> None:
    assert decode(b"event: e\r\ndata: a\r\n\r\ndata: b\r\n\r\n") == [E("a", "e"), E("b")]


def test_crlf_split_across_feeds_is_one_line_break() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    # Were the LF taken as an empty line, "a" would be dispatched on its own.
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n") == []
    # A CR ends its (blank) line at once; the LF that follows completes the CRLF, nothing more.
    assert decoder.feed(b"\r") == [E("a\nb")]
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"data: c\r\n\r\n") == [E("c")]
    assert decoder.flush() == []


def test_cr_at_end_of_feed_ends_the_line_at_once() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [E("a")]
    assert decoder.feed(b"\ndata: b\n\n") == [E("b")]


def test_mixed_line_endings() -> None:
    assert decode(b"data: a\rdata: b\r\ndata: c\n\r\n") == [E("a\nb\nc")]


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x0b", "\x0c", "\x85", "\x1c", "\x1d", "\x1e"])
def test_only_cr_and_lf_break_lines(char: str) -> None:
    body = f"data: a{char}b\n\nevent: x{char}y\ndata: c\n\n".encode()
    assert decode(body) == [E(f"a{char}b"), E("c", f"x{char}y")]


# --- fields ------------------------------------------------------------------------------------


def test_comments_are_ignored() -> None:
    body = b": OPENROUTER PROCESSING\n\n:\ndata: a\n: inside an event\ndata: b\n\n"
    assert decode(body) == [E("a\nb")]


def test_multi_line_data_joined_with_lf() -> None:
    assert decode(b"data: a\ndata:\ndata: c\n\n") == [E("a\n\nc")]


def test_only_one_leading_space_is_removed() -> None:
    assert decode(b"data:x\n\ndata:  x\n\nevent:  e\ndata: \n\n") == [E("x"), E(" x"), E("", " e")]


def test_event_name_absent_or_empty_is_none_and_resets_per_event() -> None:
    body = b"event: ping\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\nevent: message\ndata: 4\n\n"
    assert decode(body) == [E("1", "ping"), E("2"), E("3"), E("4", "message")]
    body = b"event: a\ndata: 1\n\nevent: \ndata: 2\n\nevent: \ndata: 3\n\n"
    assert decode(body) == [E("1", "a"), E("2"), E("3")]


def test_fields_between_common_events_take_effect_at_once() -> None:
    # id and retry set inside one event apply to every later event, however the events look.
    body = b"data: a\n\ndata: b\nid: 7\n\ndata: c\n\nretry: 3\ndata: d\n\ndata: e\n\n"
    assert decode(body) == [
        E("a"),
        E("b", id="7"),
        E("c", id="7"),
        E("d", id="7", retry=3),
        E("e", id="7", retry=3),
    ]
    body = b"event: a\ndata: 1\n\nevent: b\nid: 9\ndata: 2\n\nevent: c\ndata: 3\n\n"
    assert decode(body) == [E("1", "a"), E("2", "b", id="9"), E("3", "c", id="9")]


def test_id_persists_across_events() -> None:
    body = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\nid\ndata: d\n\n"
    assert decode(body) == [E("a", id="1"), E("b", id="1"), E("c", id="2"), E("d", id="")]


def test_id_containing_nul_is_ignored() -> None:
    assert decode(b"id: 7\ndata: a\n\nid: 8\x009\ndata: b\n\n") == [E("a", id="7"), E("b", id="7")]


def test_retry_accepts_ascii_digits_only() -> None:
    body = (
        "retry: 1500\ndata: a\n\n"
        "retry: 15x\ndata: b\n\n"
        "retry: -1\ndata: c\n\n"
        "retry: \u0661\u0662\ndata: d\n\n"  # Arabic-Indic digits: isdigit() but not ASCII
        "retry:\ndata: e\n\n"
        "retry: 20\ndata: f\n\n"
    ).encode()
    assert [e.retry for e in decode(body)] == [1500, 1500, 1500, 1500, 1500, 20]


def test_line_without_colon_is_a_field_with_empty_value() -> None:
    body = b"data\ndata\n\nevent: x\nevent\ndata: y\n\n"
    assert decode(body) == [E("\n"), E("y")]


def test_unknown_fields_are_ignored() -> None:
    assert decode(b"foo: bar\nDATA: no\nEvent: no\ndata: yes\n\n") == [E("yes")]


def test_line_starting_with_space_is_an_unknown_field() -> None:
    body = b" data: ignored\n\ndata: kept\n\n event: nope\ndata: also\n\n"
    assert decode(body) == [E("kept"), E("also")]


def test_blank_line_without_data_dispatches_nothing() -> None:
    body = b"\n\n\nevent: lonely\n\nid: 3\n\nretry: 9\n\n: c\n\ndata: x\n\n"
    assert decode(body) == [E("x", id="3", retry=9)]


def test_empty_data_line_is_dispatched() -> None:
    assert decode(b"data:\n\n") == [E("")]


def test_done_marker_is_ordinary_data() -> None:
    assert decode(b'data: {"a":1}\n\ndata: [DONE]\n\n') == [E('{"a":1}'), E("[DONE]")]


# --- end of body -------------------------------------------------------------------------------


def test_event_without_final_blank_line_is_dispatched_at_flush() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: done\ndata: a\n") == []
    assert decoder.flush() == [E("a", "done")]


def test_unterminated_last_line_is_processed_at_flush() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\nevent: e\ndata: {}") == [E("a")]
    assert decoder.flush() == [E("{}", "e")]


def test_flush_without_pending_data_returns_nothing() -> None:
    assert decode(b"") == []
    assert decode(b"data: a\n\n: trailing comment") == [E("a")]
    assert decode(b"data: a\n\nevent: only-a-name\n") == [E("a")]


def test_flush_resets_for_reuse() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef\xbb\xbfid: 1\nretry: 5\ndata: a\n\ndata: b") == [E("a", id="1", retry=5)]
    assert decoder.flush() == [E("b", id="1", retry=5)]
    # A second body starts clean: no id, no retry, and its BOM is stripped again.
    assert decoder.feed(b"\xef\xbb\xbfdata: c\n\n") == [E("c")]
    assert decoder.flush() == []


# --- UTF-8 -------------------------------------------------------------------------------------


def test_leading_bom_is_stripped_once() -> None:
    assert decode(b"\xef\xbb\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\n") == [E("a")]
    assert decode(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n") == []


def test_bom_split_across_feeds() -> None:
    assert decode(b"\xef", b"\xbb", b"\xbfdata: a\n\n") == [E("a")]


def test_utf8_character_split_across_feeds() -> None:
    body = "data: °€😀\n\n".encode()
    for at in range(len(body)):
        assert decode(body[:at], body[at:]) == [E("°€😀")]
    assert decode_in(body, 1) == [E("°€😀")]


def test_invalid_utf8_is_a_protocol_error() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: ok\n\n")
    with pytest.raises(ProtocolError, match=r"not valid UTF-8.*got byte 0xff at byte 16"):
        decoder.feed(b"data: \xff\n\n")


def test_invalid_continuation_split_across_feeds_reports_its_offset() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: \xe2\x82")
    with pytest.raises(ProtocolError, match=r"expected the continuation bytes.*at byte 6") as info:
        decoder.feed(b"A\n\n")
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


def test_body_ending_inside_a_character_is_a_protocol_error() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: \xe2\x82")
    with pytest.raises(ProtocolError, match="SSE body ends inside a multi-byte UTF-8 character"):
        decoder.flush()
    # flush() resets even when it raises.
    assert decoder.feed(b"data: x\n\n") == [E("x")]


# --- limits ------------------------------------------------------------------------------------


def test_default_limits() -> None:
    assert DEFAULT_MAX_BYTES == 16 * 1024 * 1024
    assert decode(b"data: " + b"x" * 100_000 + b"\n\n") == [E("x" * 100_000)]


def test_long_line_in_many_pieces() -> None:
    value = "x" * (2 * 1024 * 1024)
    assert decode_in(f"data: {value}\n\n".encode(), 4096) == [E(value)]
    assert decode_in(f"event: e\r\ndata: {value}".encode(), 4096) == [E(value, "e")]


def test_line_limit_without_any_line_break_stays_bounded() -> None:
    decoder = SSEDecoder(max_line_bytes=1000)
    with pytest.raises(LimitExceededError) as info:
        for _ in range(1000):
            decoder.feed(b"x" * 64)
    assert info.value.limit == "max_sse_line_bytes"
    assert info.value.value == 1000
    assert "max_sse_line_bytes=1000" in info.value.message
    assert "without a line break" in info.value.message
    # Raised as soon as the pending line passed the limit, not after everything was buffered.
    assert "got at least 1024 characters" in info.value.message


def test_line_limit_applies_to_complete_lines_in_one_feed() -> None:
    assert decode(b"data: " + b"x" * 94 + b"\n\n", max_line_bytes=100) == [E("x" * 94)]
    with pytest.raises(LimitExceededError) as info:
        decode(b"data: a\n\n" + b"data: " + b"x" * 95 + b"\n\ndata: b\n\n", max_line_bytes=100)
    assert info.value.limit == "max_sse_line_bytes"
    assert "got at least 101 characters" in info.value.message


def test_event_limit_single_line() -> None:
    assert decode(b"data: " + b"x" * 50 + b"\n\n", max_event_bytes=50) == [E("x" * 50)]
    with pytest.raises(LimitExceededError) as info:
        decode(b"data: " + b"x" * 51 + b"\n\n", max_event_bytes=50)
    assert info.value.limit == "max_sse_event_bytes"
    assert info.value.value == 50
    assert "max_sse_event_bytes=50" in info.value.message


def test_event_limit_counts_all_data_lines() -> None:
    # 4 lines of 10 characters joined by 3 newlines: 43 characters.
    body = b"data: 0123456789\n" * 4 + b"\n"
    assert decode(body, max_event_bytes=43) == [E("\n".join(["0123456789"] * 4))]
    with pytest.raises(LimitExceededError) as info:
        decode(body, max_event_bytes=42)
    assert info.value.limit == "max_sse_event_bytes"
    # Checked line by line, before the blank line arrives.
    decoder = SSEDecoder(max_event_bytes=42)
    with pytest.raises(LimitExceededError):
        decoder.feed(body[:-1])


def test_event_limit_named_event_fast_path() -> None:
    with pytest.raises(LimitExceededError) as info:
        decode(
            b"event: a\ndata: 1\n\nevent: b\ndata: " + b"x" * 11 + b"\n\nevent: c\ndata: 2\n\n",
            max_event_bytes=10,
        )
    assert info.value.limit == "max_sse_event_bytes"


# --- recordings --------------------------------------------------------------------------------


_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def _assert_every_two_piece_split(body: bytes, expected: list[ServerSentEvent]) -> None:
    for at in range(len(body) + 1):
        assert decode(body[:at], body[at:]) == expected, f"split at byte {at}"


@pytest.mark.parametrize("path", SSE_FILES, ids=lambda p: p.name)
def test_recording_split_invariance(path: Path) -> None:
    body = path.read_bytes()
    whole = decode(body)
    assert whole, "every recording holds events"
    assert whole == reference(body)
    if len(body) < 8192:
        _assert_every_two_piece_split(body, whole)
    else:
        # Every split point in the first and last 2 KB. The decoder's state right after a blank
        # line is the same however the bytes before it were split (recordings set no id or
        # retry), so the head and the tail are cut at blank lines and checked on their own,
        # which keeps this linear in the file size.
        head_end = _BLANK_LINE.search(body, 2048)
        tail_start = [m.end() for m in _BLANK_LINE.finditer(body) if m.end() <= len(body) - 2048][-1]
        assert head_end is not None
        assert head_end.end() <= tail_start
        head, middle, tail = body[: head_end.end()], body[head_end.end() : tail_start], body[tail_start:]
        assert decode(head) + decode(middle) + decode(tail) == whole
        _assert_every_two_piece_split(head, decode(head))
        _assert_every_two_piece_split(tail, decode(tail))
    assert decode_in(body, 1) == whole
    assert decode_in(body, 7) == whole
    assert decode_in(body, 4096) == whole


@pytest.mark.parametrize("path", SSE_FILES, ids=lambda p: p.name)
def test_recording_events_are_well_formed(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    events = decode(path.read_bytes())
    # Every recording has single-line data, so one event per "data:" line at a line start.
    assert len(events) == len(re.findall(r"^data:", text, re.MULTILINE))
    for event in events:
        assert event.id is None
        assert event.retry is None
        if event.data == "[DONE]":
            assert event is events[-1]
            continue
        payload = json.loads(event.data)
        if event.event is not None and isinstance(payload, dict) and "type" in payload:
            assert payload["type"] == event.event


def test_openai_chat_toolcall_counts() -> None:
    events = decode((RECORDINGS / "openai-chat-toolcall-1.sse").read_bytes())
    assert [e.data for e in events].count("[DONE]") == 1
    assert len([e for e in events if e.data != "[DONE]"]) == 17
    assert all(e.event is None for e in events)


def test_openrouter_stray_space_line_is_ignored() -> None:
    body = (RECORDINGS / "openrouter-chat-toolcall-variant-c-1.sse").read_bytes()
    assert body.startswith(b" data: ")
    events = decode(body)
    assert len(events) == 5
    assert events[-1] == E("[DONE]")
    # The ignored line was the role-only first delta; the tool-call header comes next.
    first = json.loads(events[0].data)["choices"][0]["delta"]["tool_calls"][0]
    assert first["id"] == "llm_version:0"
    assert "arguments" not in first["function"]
    second = json.loads(events[1].data)["choices"][0]["delta"]["tool_calls"][0]
    assert second["function"]["arguments"] == "{}"


def test_openrouter_comments_are_skipped() -> None:
    body = (RECORDINGS / "openrouter-chat-error-1.sse").read_bytes()
    assert body.count(b": OPENROUTER PROCESSING") == 17
    events = decode(body)
    assert len(events) == 5
    assert all(not e.data.startswith(":") for e in events)


@pytest.mark.parametrize(
    "name",
    [
        "anthropic-messages-text-1.sse",
        "anthropic-messages-toolcall-1.sse",
        "openai-responses-error-quota-1.sse",
        "openai-responses-text-2.sse",
    ],
)
def test_recordings_without_final_blank_line_keep_their_last_event(name: str) -> None:
    body = (RECORDINGS / name).read_bytes()
    assert not body.endswith(b"\n\n")
    decoder = SSEDecoder()
    fed = decoder.feed(body)
    last = decoder.flush()
    assert len(last) == 1
    assert last[0].event is not None
    assert json.loads(last[0].data)["type"] == last[0].event
    assert len(fed) + 1 == len(decode(body))


def test_gemini_crlf_recording() -> None:
    body = (RECORDINGS / "gemini-generatecontent-text-1.sse").read_bytes()
    assert b"\r\n\r\n" in body
    events = decode(body)
    assert len(events) == 3
    assert all("candidates" in json.loads(e.data) for e in events)


# --- property tests ----------------------------------------------------------------------------

_VALUE = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=12)
_LINE = st.one_of(
    _VALUE.map("data: {}".format),
    _VALUE.map("data: {}".format),
    _VALUE.map("data:{}".format),
    _VALUE.map("event: {}".format),
    _VALUE.map("id: {}".format),
    st.from_regex(r"[0-9]{1,5}|[0-9]x", fullmatch=True).map("retry: {}".format),
    _VALUE.map(":{}".format),
    st.sampled_from(["", "data", "event", "id", " data: x", "data: [DONE]"]),
    _VALUE,
)
_ENDING = st.sampled_from(["\n", "\r", "\r\n"])


@st.composite
def sse_bodies(draw: st.DrawFn) -> bytes:
    """Events of a few field lines each, blank-line separated, with CR, LF or CRLF endings."""
    blocks = draw(st.lists(st.lists(_LINE, max_size=3), max_size=15))
    if draw(st.booleans()):
        # Streams that name every event (Anthropic, OpenAI Responses) take another path.
        blocks = [[f"event: {draw(_VALUE)}", *block] for block in blocks]
    lines = [line for block in blocks for line in [*block, ""]]
    if draw(st.booleans()):
        endings = [draw(_ENDING)] * len(lines)
    else:
        endings = draw(st.lists(_ENDING, min_size=len(lines), max_size=len(lines)))
    text = "".join(line + ending for line, ending in zip(lines, endings, strict=True))
    if lines and draw(st.booleans()):
        text = text[: -len(endings[-1])]  # no blank line at the end
    if draw(st.booleans()):
        text = "\ufeff" + text
    return text.encode()


@FUZZ
@given(st.data())
def test_any_chunking_gives_the_same_events(data: st.DataObject) -> None:
    body = data.draw(sse_bodies())
    points = data.draw(st.lists(st.integers(0, len(body)), max_size=30))
    whole = decode(body)
    assert whole == reference(body)
    assert decode(*cut(body, points)) == whole


# Fragments chosen to hit the decoder's fast paths and their edges (a "\n\ndata: " or
# "\n\nevent: " boundary, CR/LF pairs, a BOM, NUL, multi-byte characters).
_FRAGMENTS = st.sampled_from(
    [
        "data",
        "data:",
        "data: ",
        "event: ",
        "event:",
        "id: ",
        "retry: ",
        ":",
        " ",
        "1",
        "x",
        "é",
        "😀",
        "\u2028",
        "\x00",
        "\ufeff",
        "\r",
        "\n",
        "\r\n",
        "\n\n",
        "\n\ndata: ",
        "\n\nevent: ",
        "\r\n\r\ndata: ",
    ]
)


@FUZZ
@given(st.lists(_FRAGMENTS, max_size=60).map("".join), st.data())
def test_fragment_soup_matches_the_reference(text: str, data: st.DataObject) -> None:
    body = text.encode()
    expected = reference(body)
    assert decode(body) == expected
    points = data.draw(st.lists(st.integers(0, len(body)), max_size=30))
    assert decode(*cut(body, points)) == expected


# --- JSONArrayDecoder --------------------------------------------------------------------------


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: p.name)
def test_json_recording_split_invariance(path: Path) -> None:
    body = path.read_bytes()
    expected = json.loads(body)
    assert decode_json(body) == expected
    for at in range(len(body) + 1):
        assert decode_json(body[:at], body[at:]) == expected, f"split at byte {at}"
    for size in (1, 7):
        assert decode_json(*(body[i : i + size] for i in range(0, len(body), size))) == expected


def test_json_recordings_content() -> None:
    text = decode_json((RECORDINGS / "gemini-generatecontent-jsonarray-text-1.json").read_bytes())
    assert len(text) == 3
    assert all(isinstance(item, dict) and "candidates" in item for item in text)
    tool = decode_json((RECORDINGS / "gemini-generatecontent-jsonarray-toolcall-1.json").read_bytes())
    assert len(tool) == 2
    call = tool[0]["candidates"][0]["content"]["parts"][0]["functionCall"]
    assert call == {"name": "multiply", "args": {"y": 3, "x": 5}}
    assert type(call["args"]["y"]) is int


def test_json_elements_arrive_as_soon_as_they_close() -> None:
    decoder = JSONArrayDecoder()
    assert decoder.feed(b'[{"a": 1}\n,\r\n{"b"') == [{"a": 1}]
    assert decoder.feed(b": 2}") == [{"b": 2}]
    assert decoder.feed(b"\n]") == []
    assert decoder.flush() == []


def test_json_numbers_keep_their_kind() -> None:
    [item] = decode_json(
        b'[{"i": 3, "f": 2.5, "e": 1e3, "n": -0, "z": 0.0, "s": "x", "b": true, "null": null}]'
    )
    assert item == {"i": 3, "f": 2.5, "e": 1000.0, "n": 0, "z": 0.0, "s": "x", "b": True, "null": None}
    assert type(item["i"]) is int
    assert type(item["n"]) is int
    assert type(item["f"]) is float
    assert type(item["e"]) is float


def test_json_empty_array_is_fine() -> None:
    assert decode_json(b" \r\n[ ]\n") == []


@pytest.mark.parametrize("body", [b"", b" \r\n\t "])
def test_json_empty_body_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="empty body, expected a JSON array"):
        decode_json(body)


def test_json_truncated_array_is_a_protocol_error() -> None:
    decoder = JSONArrayDecoder()
    assert decoder.feed(b'[{"a": 1},\r\n{"b": [1, 2') == [{"a": 1}]
    with pytest.raises(
        ProtocolError, match=r"truncated.*expected the array to be closed.*after 1 complete"
    ) as info:
        decoder.flush()
    assert info.value.__cause__ is not None
    # flush() resets even when it raises.
    assert decoder.feed(b"[{}]") == [{}]
    assert decoder.flush() == []


def test_json_missing_closing_bracket_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="truncated"):
        decode_json(b'[{"a": 1}\n')


def test_json_body_must_open_with_a_bracket() -> None:
    with pytest.raises(
        ProtocolError, match=r"expected '\[' to open the array, got '\{\"error\": \{\"code' at byte 2"
    ):
        decode_json(b"\r\n", b'{"error": {"code": 400}}')


@pytest.mark.parametrize(
    ("body", "element"),
    [(b"[1]", "a number"), (b'[{"a": 1}, "x"]', "a string"), (b"[[{}]]", "an array"), (b"[null]", "null")],
)
def test_json_elements_must_be_objects(body: bytes, element: str) -> None:
    with pytest.raises(ProtocolError, match=f"expected a JSON object as element #\\d, got {element}"):
        decode_json(body)


def test_json_syntax_error_says_what_was_expected_and_where() -> None:
    body = b'[{"a": 1}\n,\r\n{"b": 2}\n' + b" " * 40 + b'{"c": 3}]'
    with pytest.raises(ProtocolError) as info:
        decode_json(body)
    message = info.value.message
    assert message.startswith("Gemini JSON array body: expected ',' or ']' after an element, got ")
    stop = body.index(b'{"c"') + 1
    assert f"at byte {stop}" in message
    assert info.value.__cause__ is not None


def test_json_syntax_error_split_across_feeds_reports_absolute_offset() -> None:
    decoder = JSONArrayDecoder()
    decoder.feed(b'[{"a": 1}, ')
    with pytest.raises(ProtocolError, match=r"expected a JSON token, got 'x' \(parser stopped at byte 12\)"):
        decoder.feed(b"x]")


def test_json_trailing_garbage_is_a_protocol_error() -> None:
    decoder = JSONArrayDecoder()
    assert decoder.feed(b'[{"a": 1}]\n') == [{"a": 1}]
    with pytest.raises(ProtocolError, match="expected nothing after the closing ']'"):
        decoder.feed(b"[]")


def test_json_invalid_utf8_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="UTF-8"):
        decode_json(b'[{"a": "\xff"}]')


def test_json_item_limit() -> None:
    item = b'{"t": "' + b"x" * 1000 + b'"}'
    body = b"[" + item + b",\n" + item + b"]"
    assert decode_json(body, max_item_bytes=1100) == [{"t": "x" * 1000}] * 2
    big = b'[{"t": "ok"},' + b'{"t": "' + b"x" * 5000 + b'"}]'
    for pieces in ([big], [big[i : i + 100] for i in range(0, len(big), 100)]):
        with pytest.raises(LimitExceededError) as info:
            decode_json(*pieces, max_item_bytes=1000)
        assert info.value.limit == "max_json_element_bytes"
        assert info.value.value == 1000
        assert "element #2 too large" in info.value.message
        assert "max_json_element_bytes=1000" in info.value.message


def test_json_item_limit_stays_bounded_without_a_closing_brace() -> None:
    decoder = JSONArrayDecoder(max_item_bytes=4096)
    decoder.feed(b'[{"t": "')
    accepted = 0
    with pytest.raises(LimitExceededError):
        for _ in range(1000):
            decoder.feed(b"x" * 100)
            accepted += 100
    assert accepted <= 4096


# --- what a call completed before it raised (issue 8 fuzzing) ------------------------------------


def _salvaged(decoder: SSEDecoder | JSONArrayDecoder, pieces: list[bytes]) -> tuple[list[Any], Exception]:
    """Everything returned or salvaged before the first fault, and the fault."""
    out: list[Any] = []
    try:
        for piece in pieces:
            out.extend(decoder.feed(piece))
        out.extend(decoder.flush())
    except (ProtocolError, LimitExceededError) as exc:
        return out + list(decoder.salvage), exc
    raise AssertionError("no fault")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"data: a\n\ndata: b\n\ndata: \xff\n\n", ProtocolError),
        (b"data: a\n\ndata: b\n\ndata: " + b"x" * 60 + b"\n\n", LimitExceededError),
        (b"data: a\n\ndata: b\n\n" + b"data: xxxxxxxxxx\n" * 6, LimitExceededError),
    ],
)
def test_sse_events_before_a_fault_are_salvaged_at_any_split(body: bytes, error: type[Exception]) -> None:
    # Regression: a read that held whole events and then a fault lost those events (1-byte
    # reads delivered them).
    for size in (len(body), 1, 7):
        pieces = [body[i : i + size] for i in range(0, len(body), size)]
        events, exc = _salvaged(SSEDecoder(max_line_bytes=50, max_event_bytes=50), pieces)
        assert events == [E("a"), E("b")] and isinstance(exc, error)


@pytest.mark.parametrize(
    "body", [b'[{"a": 1},{"b": 2} x]', b'[{"a": 1},{"b": 2}, 3]', b'[{"a": 1},{"b": 2},{"c": ' + b"[" * 200]
)
def test_json_elements_before_a_fault_are_salvaged_at_any_split(body: bytes) -> None:
    # Regression: elements completed in the read (or the 64 KiB slice) that then failed were lost.
    for size in (len(body), 1, 7):
        pieces = [body[i : i + size] for i in range(0, len(body), size)]
        items, exc = _salvaged(JSONArrayDecoder(), pieces)
        assert items == [{"a": 1}, {"b": 2}]
        assert isinstance(exc, LimitExceededError if b"[[[" in body else ProtocolError)
