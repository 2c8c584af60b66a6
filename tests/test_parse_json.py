"""parse_json(): recordings, partial values and their rebuild, schemas, cadences and the Rx grammar."""

from __future__ import annotations

import datetime
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any, cast

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, field_validator
from reactivex import operators as ops
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.marbles import marbles_testing

from rxstream._errors import JsonError
from rxstream._events import (
    Event,
    EventBase,
    Finish,
    JsonPartial,
    JsonTarget,
    JsonValue,
    StreamEnd,
    StreamRestart,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallStart,
    make_event,
)
from rxstream.operators import JsonAssembler, parse_json
from rxstream.operators._json import JsonTargetsCore, partial_model
from rxstream.operators._json_partial import PartialJsonParser
from rxstream.operators._json_stream import YajlDocument
from rxstream.sources import load_recording
from tests.helpers import accumulate, run_chunks, run_recording

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error

ROOT = Path(__file__).parent / "recordings"
KIT = Path(__file__).parent.parent / "rxstream" / "testing" / "recordings"
TEXT = JsonTarget(kind="text", output=0)


def start(request: dict[str, Any] | None = None, meta: dict[str, Any] | None = None) -> Any:
    return make_event(StreamStart, stream_id="t", seq=0, at=0, meta=meta, wire="openai.chat", request=request)


def delta(text: str, seq: int = 1, output: int = 0) -> Any:
    return make_event(TextDelta, stream_id="t", seq=seq, at=seq * 10, output=output, text=text)


def call_delta(arguments: str, seq: int, call_index: int = 0) -> Any:
    return make_event(
        ToolCallDelta, stream_id="t", seq=seq, at=seq, call_index=call_index, arguments_delta=arguments
    )


def call_done(arguments: str, seq: int, call_index: int = 0) -> Any:
    return make_event(
        ToolCallDone, stream_id="t", seq=seq, at=seq, call_index=call_index, name="f", arguments=arguments
    )


def finish(seq: int, reason: Any = "stop", output: int = 0) -> Any:
    return make_event(Finish, stream_id="t", seq=seq, at=seq, output=output, reason=reason)


def end(seq: int) -> Any:
    return make_event(StreamEnd, stream_id="t", seq=seq, at=seq)


def pipe(events: list[Any], **options: Any) -> list[Any]:
    out: list[Event] = []
    errors: list[Exception] = []
    reactivex.from_iterable(events).pipe(parse_json(**options)).subscribe(out.append, errors.append)
    assert not errors, errors
    return out


def text_events(parts: list[str], *, request: dict[str, Any] | None = None, close: bool = True) -> list[Any]:
    events: list[Any] = [start(request), *(delta(p, i + 1) for i, p in enumerate(parts))]
    if close:
        events += [finish(len(parts) + 1), end(len(parts) + 2)]
    return events


def of(events: list[Any], kind: type[Any], target: JsonTarget | None = None) -> list[Any]:
    return [e for e in events if isinstance(e, kind) and (target is None or e.target == target)]


def all_paths(value: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path of a value, the value's own included."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in cast(dict[str, Any], value).items():
            out += all_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(cast(list[Any], value)):
            out += all_paths(v, (*prefix, i))
    return out


def check_target(out: list[Any], target: JsonTarget, pieces: list[str]) -> Any:
    """The invariants of one target whose whole text is one JSON value; returns the value."""
    whole = "".join(pieces)
    expected = json.loads(whole)
    values = of(out, JsonValue, target)
    assert len(values) == 1 and values[0].error is None and not values[0].truncated
    assert values[0].value == expected
    partials = of(out, JsonPartial, target)
    completed = Counter(tuple(p) for e in partials for p in e.completed_paths)
    assert all(n == 1 for n in completed.values()), "a path completed twice"
    assert set(completed) == set(all_paths(expected))
    # Each rebuilt state is the state after a prefix of the text: what a parser fed that prefix holds.
    assembler = JsonAssembler()
    reference = PartialJsonParser()
    by_seq = {e.seq: e for e in partials}
    cause_text = [e for e in out if isinstance(e, TextDelta | ToolCallDelta | ToolCallDone)]
    rebuilt: Any = None
    for cause in cause_text:
        text = cause.text if isinstance(cause, TextDelta) else getattr(cause, "arguments_delta", "")
        if isinstance(cause, TextDelta) != (target.kind == "text") or text == "":
            continue
        if not isinstance(cause, TextDelta) and cause.call_index != target.call_index:
            continue
        reference.feed(text)
        partial = by_seq.get(cause.seq)
        if partial is not None:
            rebuilt = assembler.feed(partial)
            if partial.snapshot is not None:
                assert partial.snapshot == rebuilt
        assert rebuilt == reference.value
    assert rebuilt == expected
    return expected


# -- recordings --------------------------------------------------------------------------------

STRUCTURED: dict[str, dict[str, Any]] = {
    "openai-chat-structured-json-schema-1.sse": {"response_format": {"type": "json_schema", "json_schema": {}}},
    "gemini-generatecontent-structured-json-1.sse": {"generationConfig": {"responseMimeType": "application/json"}},
}


@pytest.mark.parametrize("chunk_size", [None, 1, 7])
@pytest.mark.parametrize(
    ("path", "request_", "options"),
    [
        (ROOT / "openai-chat-structured-json-schema-1.sse", STRUCTURED["openai-chat-structured-json-schema-1.sse"], {}),
        (ROOT / "openai-chat-structured-json-schema-1.sse", None, {"targets": "text"}),
        (ROOT / "openai-chat-json-object-1.sse", None, {"targets": "text"}),
        (
            ROOT / "gemini-generatecontent-structured-json-1.sse",
            STRUCTURED["gemini-generatecontent-structured-json-1.sse"],
            {},
        ),
        (ROOT / "anthropic-messages-structured-json-1.sse", None, {"targets": "text"}),
        (KIT / "openai-responses-structured-json-1.sse", None, {}),
    ],
    ids=["chat-schema-auto", "chat-schema-text", "chat-json-object", "gemini-auto", "anthropic", "responses-echo"],
)
def test_text_recordings(path: Path, request_: dict[str, Any] | None, options: dict[str, Any], chunk_size: int | None) -> None:
    events, error = run_chunks(load_recording(path, chunk_size=chunk_size, request=request_))
    assert error is None
    out = pipe(events, every=4, **options)
    # Events pass through unchanged and in order; json.* carry their cause's seq, at and stream id.
    assert [e for e in out if not isinstance(e, JsonPartial | JsonValue)] == events
    last: EventBase | None = None
    for e in out:
        if isinstance(e, JsonPartial | JsonValue):
            assert last is not None and (e.seq, e.at, e.stream_id) == (last.seq, last.at, last.stream_id)
        else:
            last = e
    assert isinstance(out[-1], StreamEnd)
    pieces = [e.text for e in events if isinstance(e, TextDelta)]
    value = check_target(out, TEXT, pieces)
    assert accumulate(out).outputs[0].json == value
    assert any(e.snapshot is not None for e in of(out, JsonPartial))


def test_auto_ignores_text_when_json_was_not_asked() -> None:
    events, _ = run_recording(ROOT / "openai-chat-structured-json-schema-1.sse")
    out = pipe(events)
    assert not of(out, JsonPartial) and not of(out, JsonValue)
    assert out == events


@pytest.mark.parametrize(
    ("request_", "meta"),
    [
        ({"response_format": {"type": "json_object"}}, None),
        ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {}}}}, None),
        ({"generationConfig": {"responseMimeType": "application/json"}}, None),
        ({"output_format": {"type": "json_schema", "schema": {}}}, None),
        (None, {"response_format": {"type": "json_object"}}),
    ],
    ids=["chat", "responses", "gemini", "anthropic", "echoed"],
)
def test_auto_detects_every_way_to_ask_for_json(request_: dict[str, Any] | None, meta: dict[str, Any] | None) -> None:
    events = [start(request_, meta), delta('{"a": 1}'), finish(2), end(3)]
    assert [e.value for e in of(pipe(events), JsonValue)] == [{"a": 1}]
    assert of(pipe(events, targets="tools"), JsonValue) == []


def test_auto_ignores_other_formats() -> None:
    events = [start({"response_format": {"type": "text"}}), delta('{"a": 1}'), finish(2)]
    assert of(pipe(events), JsonValue) == []


@pytest.mark.parametrize("chunk_size", [None, 1, 7])
@pytest.mark.parametrize(
    "name",
    [
        "openai-chat-toolcall-parallel-1.sse",
        "anthropic-messages-toolcall-1.sse",
        "gemini-generatecontent-partial-args-1.jsonl",
        "openai-chat-toolcall-1.sse",
        "openai-responses-functioncall-1.sse",
    ],
)
def test_tool_call_recordings(name: str, chunk_size: int | None) -> None:
    events, error = run_recording(ROOT / name, chunk_size=chunk_size)
    assert error is None
    out = pipe(events, every=8)
    dones = [e for e in events if isinstance(e, ToolCallDone)]
    assert dones
    for done in dones:
        target = JsonTarget(kind="tool_call", output=done.output, call_index=done.call_index)
        pieces = [
            e.arguments_delta
            for e in events
            if isinstance(e, ToolCallDelta) and (e.output, e.call_index) == (done.output, done.call_index)
        ]
        assert "".join(pieces) == done.arguments
        check_target(out, target, pieces)
        # The value follows the delta that closed it, before the call's done.
        value = of(out, JsonValue, target)[0]
        last_delta = max(e.seq for e in events if isinstance(e, ToolCallDelta) and e.call_index == done.call_index)
        assert value.seq == last_delta <= done.seq
    result = accumulate(out)
    for call in result.tool_calls:
        assert call.parsed == json.loads(call.arguments)


def test_truncated_by_length_is_reported() -> None:
    events, _ = run_recording(ROOT / "openai-chat-structured-length-1.sse")
    out = pipe(events, targets="text")
    (value,) = of(out, JsonValue)
    assert value.truncated and value.value == {}
    assert value.error == "truncated: the stream ended inside the JSON value (finish reason length)"
    finish_index = next(i for i, e in enumerate(out) if isinstance(e, Finish))
    assert out[finish_index + 1] == value
    assert accumulate(out).outputs[0].json is None


def test_truncated_without_finish_is_reported_at_completion() -> None:
    out = pipe(text_events(['{"a": [1, 2'], close=False), targets="text")
    (value,) = of(out, JsonValue)
    assert value.truncated and value.value == {"a": [1, 2]}
    assert value.error is not None and "no finish reason" in value.error
    assert out[-1] == value


def test_truncated_is_reported_before_stream_end() -> None:
    events = [start(), delta('{"a": "b'), end(2)]
    out = pipe(events, targets="text")
    assert isinstance(out[-1], StreamEnd) and isinstance(out[-2], JsonValue) and out[-2].truncated


# -- values, partials, completion ----------------------------------------------------------------


def test_invalid_json_is_reported_and_the_stream_goes_on() -> None:
    events = text_events(['{"a": 1', "x}", ' "more"'])
    out = pipe(events, targets="text")
    (value,) = of(out, JsonValue)
    assert value.value is None and value.error is not None
    assert value.error.startswith("invalid JSON at position 7")
    assert value.seq == 2
    # Nothing more about that target, and every event still arrives.
    assert [e for e in out if not isinstance(e, JsonPartial | JsonValue)] == events
    assert all(e.seq < 2 for e in of(out, JsonPartial))


def test_several_values_in_one_delta() -> None:
    out = pipe(text_events(['{"a": 1} [2', ", 3] 4 ", '"x']), targets="text")
    values = of(out, JsonValue)
    assert [v.value for v in values] == [{"a": 1}, [2, 3], 4, "x"]
    assert values[-1].truncated
    assert [v.seq for v in values] == [1, 2, 2, 4]
    assembler = JsonAssembler()
    rebuilt = [assembler.feed(p) for p in of(out, JsonPartial)]
    assert rebuilt[-1] == "x"


def test_one_partial_per_delta_and_none_without_change() -> None:
    out = pipe(text_events(['{"a"', ":", " ", '"x', '"', "}"]), targets="text")
    partials = of(out, JsonPartial)
    assert [p.seq for p in partials] == [1, 4, 5, 6]
    assert [p.completed_paths for p in partials] == [[], [], [["a"]], [[]]]
    assert (partials[1].path, partials[1].op, partials[1].value) == (["a"], "set", "x")


def test_partial_false_emits_only_values() -> None:
    out = pipe(text_events(['{"a": [1', ",2]}"]), targets="text", partial=False)
    assert of(out, JsonPartial) == []
    assert [v.value for v in of(out, JsonValue)] == [{"a": [1, 2]}]


def test_snapshot_at_most_every_n_bytes() -> None:
    parts = ['["' + "x" * 3, *("y" * 3 for _ in range(10)), '"]']
    out = pipe(text_events(parts), targets="text", every=10)
    partials = of(out, JsonPartial)
    with_snapshot = [p for p in partials if p.snapshot is not None]
    # 5 bytes, then 3 per delta: due at 10 bytes (seq 3, 11 bytes), then 21 (seq 7), then 33.
    assert [p.seq for p in with_snapshot] == [3, 7, 11]
    assert with_snapshot[0].snapshot == ["xxx" + "y" * 6]


def test_non_ascii_counts_bytes() -> None:
    out = pipe(text_events(['"é', "é", "é"]), targets="text", every=4)
    assert [p.snapshot for p in of(out, JsonPartial)] == [None, "éé", None]


class CountingDocument(YajlDocument):
    """Counts joins of a string still streaming: each costs the string's length."""

    __slots__ = ()
    reads = 0

    def _materialize(self) -> None:
        if self._s_path is not None and self._s_stale:  # pyright: ignore[reportPrivateUsage]
            CountingDocument.reads += 1
        super()._materialize()  # pyright: ignore[reportPrivateUsage]


@pytest.mark.parametrize("doc_start", ['{"a": [1, {"b": "', '"'])
def test_a_long_string_costs_no_read_of_the_value_per_delta(
    doc_start: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rxstream.operators._json.new_document", CountingDocument)
    CountingDocument.reads = 0
    parts = [doc_start, *("abcdefgh" for _ in range(5000))]
    out = pipe(text_events(parts, close=False), targets="text", every=10**9)
    assert len(of(out, JsonPartial)) == 5001
    assert CountingDocument.reads <= 2
    assert of(out, JsonValue)[0].value == pipe(text_events(parts, close=False), targets="text")[-1].value


@pytest.mark.parametrize("size", [1, 3, 10])
def test_emitted_values_never_change_later(size: int) -> None:
    # Copies share the closed parts of the parser's value: nothing emitted may change afterwards.
    doc = json.dumps({"items": [{"name": "ab" * i, "tags": [i, [i]], "o": {"k": "v"}} for i in range(12)]})
    events = text_events([doc[i : i + size] for i in range(0, len(doc), size)])
    seen: list[tuple[Event, Any]] = []
    reactivex.from_iterable(events).pipe(
        parse_json(targets="text", every=7), ops.do_action(lambda e: seen.append((e, e.model_dump())))
    ).subscribe()
    assert all(e.model_dump() == dumped for e, dumped in seen)
    assembler = JsonAssembler()
    for e, _ in seen:
        if isinstance(e, JsonPartial):
            assembler.feed(e)
    assert assembler.value(TEXT) == json.loads(doc)
    assert all(e.model_dump() == dumped for e, dumped in seen), "the assembler changed an event"


def test_tool_call_arguments_only_in_done() -> None:
    out = pipe([start(), call_done('{"q": [1]}', 1), call_done("", 2, call_index=1), finish(3)])
    values = of(out, JsonValue)
    assert [(v.target.call_index, v.value) for v in values] == [(0, {"q": [1]}), (1, {})]
    assert isinstance(out[1], ToolCallDone) and out[2].type == "json.partial"


def test_tool_calls_are_independent_of_text() -> None:
    events = [
        start(),
        delta("Let me look."),
        make_event(ToolCallStart, stream_id="t", seq=2, at=2, call_index=0, name="f"),
        call_delta('{"a":', 3),
        call_delta(' "b"}', 4),
        call_done('{"a": "b"}', 5),
        finish(6, "tool_calls"),
        end(7),
    ]
    out = pipe(events)
    assert [(v.target.kind, v.value) for v in of(out, JsonValue)] == [("tool_call", {"a": "b"})]
    assert of(pipe(events, targets="text"), JsonValue)[0].error is not None


def test_restart_forgets_the_parsers() -> None:
    restart = make_event(StreamRestart, stream_id="t", seq=3, at=3, attempt=1, reason="retry")
    out = pipe([start(), delta('{"a": ', 1), restart, delta('[1]', 4), finish(5)], targets="text")
    assert [v.value for v in of(out, JsonValue)] == [[1]]


# -- schemas -------------------------------------------------------------------------------------


class City(BaseModel):
    name: str
    population: int


class Answer(BaseModel):
    country: str
    cities: list[City]
    capital: City | None = None


def test_model_schema_validates_the_value_and_the_partials() -> None:
    doc = json.dumps(
        {"country": "France", "cities": [{"name": "Paris", "population": 2}, {"name": "Lyon", "population": 1}]}
    )
    parts = [doc[i : i + 5] for i in range(0, len(doc), 5)]
    out = pipe(text_events(parts), targets="text", schema=Answer, every=1)
    (value,) = of(out, JsonValue)
    assert isinstance(value.parsed, Answer) and value.parsed.cities[1].name == "Lyon"
    assert value.error is None
    partial_type = partial_model(Answer)
    parsed = [p.parsed for p in of(out, JsonPartial) if p.parsed is not None]
    assert len(parsed) > 5
    assert all(isinstance(p, partial_type) for p in parsed)
    assert accumulate(out).outputs[0].json == value.parsed


def test_partial_model_is_optional_at_every_depth_and_cached() -> None:
    partial_type = partial_model(Answer)
    assert partial_model(Answer) is partial_type
    empty = partial_type.model_validate({})
    assert empty.model_dump() == {"country": None, "cities": None, "capital": None}
    some = partial_type.model_validate({"cities": [{"name": "Pa"}], "capital": {}})
    assert some.cities[0].population is None  # type: ignore[attr-defined]
    assert type(some.cities[0]) is partial_model(City)  # type: ignore[attr-defined]
    assert type(some.capital) is partial_model(City)  # type: ignore[attr-defined]


def test_validation_failure_is_reported_not_raised() -> None:
    out = pipe(text_events(['{"name": "Paris"}']), targets="text", schema=City)
    (value,) = of(out, JsonValue)
    assert value.parsed is None and value.value == {"name": "Paris"}
    assert value.error is not None and "population" in value.error
    assert isinstance(out[-1], StreamEnd)


ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["country", "cities"],
    "properties": {
        "country": {"type": "string"},
        "cities": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/city"}},
    },
    "additionalProperties": False,
    "$defs": {
        "city": {
            "type": "object",
            "required": ["name", "population"],
            "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
        }
    },
}


def test_json_schema_dict_validates_the_value_and_the_partials() -> None:
    doc = json.dumps(
        {"country": "France", "cities": [{"name": "Paris", "population": 2}, {"name": "Lyon", "population": 1}]}
    )
    parts = [doc[i : i + 5] for i in range(0, len(doc), 5)]
    out = pipe(text_events(parts), targets="text", schema=ANSWER_SCHEMA, every=1)
    (value,) = of(out, JsonValue)
    assert value.error is None and value.parsed == json.loads(doc)
    partials = of(out, JsonPartial)
    with_snapshot = [p for p in partials if p.snapshot is not None]
    # Prefix states miss required keys and items: the relaxed schema accepts them all.
    assert len(with_snapshot) > 5
    assert all(p.parsed == p.snapshot for p in with_snapshot)


def test_json_schema_dict_reports_violations_with_their_path() -> None:
    doc = '{"country": "France", "cities": [{"name": "Paris", "population": "many"}]}'
    out = pipe(text_events([doc[:30], doc[30:]]), targets="text", schema=ANSWER_SCHEMA, every=1)
    (value,) = of(out, JsonValue)
    assert value.parsed is None and value.value == json.loads(doc)
    assert value.error is not None and "$.cities[0].population" in value.error and "'many'" in value.error
    # The partial that already holds the wrong type fails the relaxed schema too: parsed is None.
    last = of(out, JsonPartial)[-1]
    assert last.snapshot is None or last.parsed is None
    assert isinstance(out[-1], StreamEnd)


def test_type_adapter_schema() -> None:
    out = pipe(text_events(["[1, ", '"2"]']), targets="text", schema=TypeAdapter(list[int]))
    assert of(out, JsonValue)[0].parsed == [1, 2]


class Strict(BaseModel):
    x: int

    @field_validator("x")
    @classmethod
    def explode(cls, v: int) -> int:
        raise KeyError("bug in the user's validator")


def test_a_validator_that_crashes_fails_the_stream_with_json_error() -> None:
    errors: list[Exception] = []
    reactivex.from_iterable(text_events(['{"x": 1}'])).pipe(
        parse_json(targets="text", schema=Strict)
    ).subscribe(on_error=errors.append)
    (error,) = errors
    assert isinstance(error, JsonError) and "KeyError" in str(error)
    assert isinstance(error.__cause__, KeyError)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"every": 0}, "every"),
        ({"every": -1}, "every"),
        ({"every": True}, "every"),
        ({"every": datetime.timedelta(0)}, "timedelta"),
        ({"targets": "all"}, "targets"),
        ({"schema": {"type": "objekt"}}, "valid JSON Schema"),
        ({"schema": int}, "BaseModel"),
        ({"partial": 1}, "bool"),
    ],
)
def test_arguments_are_checked_at_call_time(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_json(**options)


# -- the pure core and the assembler ------------------------------------------------------------


def test_core_flush_reports_open_targets() -> None:
    core = JsonTargetsCore(targets="text")
    assert core.feed(start()) == [start()]
    out = core.feed(delta("[1"))
    assert len(out) == 2
    flushed = core.flush()
    # Cut inside the array: the number 1 could have gone on, so nothing became final; the
    # truncated value keeps it.
    assert [type(e) for e in flushed] == [JsonValue]
    assert isinstance(flushed[0], JsonValue) and flushed[0].truncated and flushed[0].value == [1]
    assert core.failure is None


def test_assembler_keeps_targets_apart() -> None:
    events = [start(), call_delta('{"a": "x', 1), call_delta('["y', 2, call_index=1), call_delta('z"}', 3)]
    assembler = JsonAssembler()
    for e in of(pipe(events), JsonPartial):
        assembler.feed(e)
    assert assembler.value(JsonTarget(kind="tool_call", call_index=0)) == {"a": "xz"}
    assert assembler.value(JsonTarget(kind="tool_call", call_index=1)) == ["y"]
    assert assembler.value(TEXT) is None
    assembler.reset()
    assert assembler.value(JsonTarget(kind="tool_call", call_index=0)) is None


# -- hypothesis ----------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


def cut(text: str, points: list[int]) -> list[str]:
    marks = sorted({p % (len(text) + 1) for p in points})
    edges = [0, *marks, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=200, deadline=None)
@given(
    JSON_VALUES,
    st.sampled_from([None, 0, 2]),
    st.booleans(),
    st.lists(st.integers(0, 10_000), max_size=10),
    st.lists(st.integers(0, 10_000), max_size=10),
)
def test_every_split_gives_the_same_value(
    value: Any, indent: int | None, ascii_only: bool, points: list[int], other: list[int]
) -> None:
    doc = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    if doc[0] not in '{["':
        doc += " "  # a bare scalar ends only at a delimiter or the end of the text
    results: list[tuple[Any, Any]] = []
    for split in (points, other):
        out = pipe(text_events(cut(doc, split)), targets="text", every=3)
        (final,) = of(out, JsonValue)
        assembler = JsonAssembler()
        reference = PartialJsonParser()
        rebuilt: Any = None
        for e in out:
            if isinstance(e, TextDelta):
                reference.feed(e.text)
            elif isinstance(e, JsonPartial):
                rebuilt = assembler.feed(e)
                # Every rebuilt state is the state after the text so far.
                assert rebuilt == reference.value
        results.append((final.value, rebuilt))
    expected = json.loads(doc)
    assert results[0] == results[1] == (expected, expected)


# -- the operator, in virtual time ---------------------------------------------------------------


def test_marble_diagram() -> None:
    a, b = delta('{"x": ', 1), delta("1}", 2)
    p = make_event(JsonPartial, stream_id="t", seq=1, at=10, target=TEXT, value={}, path=[], op="set")
    q = make_event(
        JsonPartial, stream_id="t", seq=2, at=20, target=TEXT, value=1, path=["x"], op="set",
        completed_paths=[["x"], []],
    )
    v = make_event(JsonValue, stream_id="t", seq=2, at=20, target=TEXT, value={"x": 1})
    values: dict[str | float, Any] = {"s": start(), "a": a, "b": b, "p": p, "q": q, "v": v, "f": finish(3), "e": end(4)}
    with marbles_testing(timespan=1) as (begin, cold, _hot, exp):
        source = cold("-s-a-----b-------f-e-|", values, None)
        expected = exp("-s-(a,p)-(b,q,v)-f-e-|", values, None)
        assert begin(source.pipe(parse_json(targets="text"))) == expected


def test_marble_diagram_in_test_scheduler_messages() -> None:
    a, b = delta('{"x": ', 1), delta("1}", 2)
    s, f, e = start(), finish(3), end(4)
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(
        on_next(10, s), on_next(20, a), on_next(30, b), on_next(40, f), on_next(50, e), on_completed(60)
    )
    results = scheduler.start(lambda: xs.pipe(parse_json(targets="text")))
    p1 = make_event(JsonPartial, stream_id="t", seq=1, at=10, target=TEXT, value={}, path=[], op="set")
    p2 = make_event(
        JsonPartial, stream_id="t", seq=2, at=20, target=TEXT, value=1, path=["x"], op="set",
        completed_paths=[["x"], []],
    )
    v = make_event(JsonValue, stream_id="t", seq=2, at=20, target=TEXT, value={"x": 1})
    assert results.messages == [
        on_next(210, s),
        on_next(220, a),
        on_next(220, p1),
        on_next(230, b),
        on_next(230, p2),
        on_next(230, v),
        on_next(240, f),
        on_next(250, e),
        on_completed(260),
    ]


def test_never_emits_nothing() -> None:
    scheduler = TestScheduler()
    results = scheduler.start(lambda: reactivex.never().pipe(parse_json()))
    assert results.messages == []


def test_empty_completes() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_completed(10))
    results = scheduler.start(lambda: xs.pipe(parse_json()))
    assert results.messages == [on_completed(210)]


def test_one_item() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, start()), on_completed(20))
    results = scheduler.start(lambda: xs.pipe(parse_json()))
    assert results.messages == [on_next(210, start()), on_completed(220)]


def test_upstream_error_passes_unchanged() -> None:
    boom = RuntimeError("socket closed")
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, start()), on_next(15, delta("[1")), on_error(20, boom))
    results = scheduler.start(lambda: xs.pipe(parse_json(targets="text")))
    assert [m.time for m in results.messages] == [210, 215, 215, 220]
    assert cast(Any, results.messages[-1].value).exception is boom


def test_dispose_midway_unsubscribes_upstream() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, start()), on_next(400, delta("[1]")), on_completed(500)
    )
    results = scheduler.start(lambda: xs.pipe(parse_json(targets="text")), disposed=300)
    assert results.messages == [on_next(210, start())]
    assert [(s.subscribe, s.unsubscribe) for s in xs.subscriptions] == [(200, 300)]


def test_resubscribe_gives_the_same_output() -> None:
    source = reactivex.from_iterable(text_events(['{"a": [1', ", 2]}"])).pipe(parse_json(targets="text"))
    first: list[EventBase] = []
    second: list[EventBase] = []
    source.subscribe(first.append)
    source.subscribe(second.append)
    assert first == second
    assert [v.value for v in of(cast(list[Event], first), JsonValue)] == [{"a": [1, 2]}]


def partials_of(messages: list[Any]) -> list[tuple[float, JsonPartial]]:
    """The json.partial notifications of a test run, with their times."""
    out: list[tuple[float, JsonPartial]] = []
    for m in messages:
        value: object = getattr(m.value, "value", None)
        if isinstance(value, JsonPartial):
            out.append((m.time, value))
    return out


def test_snapshot_cadence_in_virtual_time() -> None:
    scheduler = TestScheduler()
    pieces = ['["', "a", "b", "c", "d", "e", "f", '"]']
    xs = scheduler.create_cold_observable(
        on_next(1, start()),
        *(on_next(10 * (i + 1), delta(p, i + 1)) for i, p in enumerate(pieces)),
        on_completed(100),
    )
    every = datetime.timedelta(seconds=25)
    results = scheduler.start(lambda: xs.pipe(parse_json(targets="text", every=every, scheduler=scheduler)))
    snapshots = [(time, p.snapshot) for time, p in partials_of(results.messages) if p.snapshot is not None]
    # The target opens at 210: a snapshot rides on the first partial 25 s (virtual) after the
    # last one; none rides on the partial that completes the value (its json.value has it).
    assert snapshots == [(240, ["abc"]), (270, ["abcdef"])]


def test_time_cadence_uses_the_subscribe_scheduler_by_default() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(1, start()), on_next(10, delta('"a')), on_next(60, delta("b")))
    results = scheduler.start(
        lambda: xs.pipe(parse_json(targets="text", every=datetime.timedelta(seconds=30))), disposed=1000
    )
    assert [p.snapshot for _, p in partials_of(results.messages)] == [None, "ab"]


@pytest.mark.parametrize("chunk_size", [None, 5])
def test_the_c_and_the_ijson_documents_give_the_same_events_on_every_recording(
    chunk_size: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # parse_json() uses the C document when it is built and ijson's otherwise: on all 86
    # recordings (answers read as JSON whether or not they are, tool calls everywhere) both
    # must say exactly the same thing.
    paths = sorted(p for p in ROOT.iterdir() if p.suffix in {".sse", ".jsonl", ".json"})
    assert len(paths) == 86
    with_c: list[list[Any]] = []
    for path in paths:
        events, _ = run_recording(path, chunk_size=chunk_size)
        with_c.append(pipe(events, targets="text", every=16))
    monkeypatch.setattr("rxstream.operators._json.new_document", YajlDocument)
    for path, expected in zip(paths, with_c, strict=True):
        events, _ = run_recording(path, chunk_size=chunk_size)
        assert pipe(events, targets="text", every=16) == expected, path.name
    assert sum(isinstance(e, JsonValue) for out in with_c for e in out) > 50
