"""dedupe_json(): the pure core at every split point, hypothesis properties, and the Rx grammar."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, cast

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.marbles import marbles_testing

from rxstream._chunk import ProviderChunk
from rxstream._events import (
    Event,
    EventBase,
    Finish,
    StreamEnd,
    StreamRestart,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
    make_event,
)
from rxstream.operators import normalize
from rxstream.operators._json_dedupe import JsonDedupeCore, dedupe_json
from tests.conftest import recording_paths
from tests.helpers import accumulate, run_recording

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error


def delta(text: str, seq: int = 0, output: int = 0) -> TextDelta:
    return make_event(TextDelta, stream_id="t", seq=seq, at=seq, output=output, text=text)


def finish(seq: int, output: int = 0) -> Finish:
    return make_event(Finish, stream_id="t", seq=seq, at=seq, output=output, reason="stop")


def run(parts: list[str], *, end: bool = True) -> list[Event]:
    """Feed text parts (then a finish, when ``end``) through a fresh core; include flush()."""
    core = JsonDedupeCore()
    out: list[Event] = []
    for i, part in enumerate(parts):
        out.extend(core.feed(delta(part, i)))
    if end:
        out.extend(core.feed(finish(len(parts))))
    out.extend(core.flush())
    assert core.failure is None
    return out


def text_of(events: list[Event], output: int = 0) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta) and e.output == output)


def splits(text: str) -> list[list[str]]:
    """Every way to cut ``text`` into two or three parts (empty parts included)."""
    n = len(text)
    return [[text[:i], text[i:j], text[j:]] for i in range(n + 1) for j in range(i, n + 1)]


# -- pure core -------------------------------------------------------------------------------


def test_repeat_split_at_every_point_keeps_the_first_value() -> None:
    for parts in splits('{"a":1}{"a":1}'):
        events = run(parts)
        assert text_of(events) == '{"a":1}', parts
        assert events[-1] == finish(3).model_copy(update={"meta": {"dropped_duplicate_json": 1}})


def test_whitespace_before_the_repeat_is_dropped_with_it() -> None:
    for between in (" ", "\n", "\r\n\t  ", "\n\n"):
        for parts in splits('{"a":1}' + between + '{"a":1}'):
            assert text_of(run(parts)) == '{"a":1}', parts


def test_different_values_are_kept() -> None:
    for parts in splits('{"a":1}{"b":2}'):
        events = run(parts)
        assert text_of(events) == '{"a":1}{"b":2}'
        assert events[-1] == finish(3)


def test_late_divergence_releases_the_held_text_whole() -> None:
    for parts in splits('{"a":1} {"a":2}'):
        assert text_of(run(parts)) == '{"a":1} {"a":2}', parts


def test_released_text_takes_the_seq_of_the_delta_that_decided() -> None:
    events = run(['{"a":1}', ' {"a":', "2}"])
    assert events == [delta('{"a":1}', 0), delta(' {"a":2}', 2), finish(3)]


def test_three_copies_become_one() -> None:
    doc = '{"a":[1,{"b":null}]}'
    for parts in splits(doc + doc + "\n" + doc):
        events = run(parts)
        assert text_of(events) == doc
        assert events[-1].meta == {"dropped_duplicate_json": 2}


def test_braces_and_escaped_quotes_inside_strings() -> None:
    doc = '["}{", "a\\"]", {"k\\\\": "\\\\"}]'
    assert json.loads(doc)  # the fixture is valid JSON
    for parts in splits(doc + " " + doc):
        assert text_of(run(parts)) == doc, parts


def test_scalars_repeat_only_when_delimited() -> None:
    assert text_of(run(["1 1"])) == "1"
    assert text_of(run(["1 1", "2"])) == "1 12"
    assert text_of(run(['"x"', '"x"'])) == '"x"'
    assert text_of(run(["true", " true"])) == "true"
    assert text_of(run(["null nullx"])) == "null nullx"


def test_incomplete_repeat_is_released_at_the_end() -> None:
    for parts in splits('{"a":1} {"a"'):
        assert text_of(run(parts)) == '{"a":1} {"a"'
        assert text_of(run(parts, end=False)) == '{"a":1} {"a"'


def test_nothing_is_held_before_a_value_completes() -> None:
    core = JsonDedupeCore()
    assert core.feed(delta('{"a":', 0)) == [delta('{"a":', 0)]
    assert core.feed(delta("1}", 1)) == [delta("1}", 1)]
    assert core.feed(delta(' {"a"', 2)) == []  # could be the repeat: held
    assert core.feed(delta(":3", 3)) == [delta(' {"a":3', 3)]


def test_prose_is_never_held() -> None:
    text = 'Sure: {"a":1} and again {"a":1} done'
    for parts in splits(text):
        assert text_of(run(parts)) == text


def test_invalid_json_completes_no_value() -> None:
    assert text_of(run(["{x}{x}"])) == "{x}{x}"
    assert text_of(run(['{"a":1}', "{x}", '{"a":1}', '{"a":1}'])) == '{"a":1}{x}{"a":1}{"a":1}'


def test_repeats_in_prose_are_real() -> None:
    for text in ("I counted 3 3 times", "Paris[1] [1].", 'He said "hi" "hi"', '{"a":1} ok {"a":1}'):
        for parts in splits(text):
            assert text_of(run(parts)) == text


def test_prose_after_a_value_passes_once_decided() -> None:
    core = JsonDedupeCore()
    assert core.feed(delta("2", 0)) == [delta("2", 0)]
    assert core.feed(delta(" ", 1)) == []  # "2 2" would be a repeat
    assert core.feed(delta("+ 2 = 4", 2)) == [delta(" + 2 = 4", 2)]
    assert core.feed(delta(" 4", 3)) == [delta(" 4", 3)]


def test_outputs_are_independent_and_other_events_pass_in_order() -> None:
    core = JsonDedupeCore()
    usage = make_event(Usage, stream_id="t", seq=3, at=3, input_tokens=1)
    out: list[Event] = []
    for event in [delta("[1]", 0, 0), delta("[1]", 1, 1), delta("[", 2, 0), usage, delta("[1]", 4, 1)]:
        out.extend(core.feed(event))
    assert out == [delta("[1]", 0, 0), delta("[1]", 1, 1), usage]
    out = core.feed(delta("1]", 5, 0))
    assert out == []
    tool = make_event(ToolCallStart, stream_id="t", seq=6, at=6, output=1, call_index=0, name="f")
    assert core.feed(tool) == [tool]
    end = make_event(StreamEnd, stream_id="t", seq=7, at=7)
    assert core.feed(end) == [end]


def test_a_same_output_event_releases_held_text_before_itself() -> None:
    core = JsonDedupeCore()
    tool = make_event(ToolCallStart, stream_id="t", seq=2, at=2, output=0, call_index=0, name="f")
    assert core.feed(delta("[1] [", 0)) == [delta("[1]", 0)]
    assert core.feed(tool) == [delta(" [", 2), tool]


def test_stream_end_releases_held_text_of_every_output() -> None:
    core = JsonDedupeCore()
    core.feed(delta("[1][", 0, 0))
    core.feed(delta("2 2 ", 1, 1))
    end = make_event(StreamEnd, stream_id="t", seq=5, at=5)
    assert core.feed(end) == [
        make_event(TextDelta, stream_id="t", seq=5, at=5, output=0, text="["),
        make_event(TextDelta, stream_id="t", seq=5, at=5, output=1, text=" "),
        end,
    ]


def test_restart_forgets_held_text_and_the_last_value() -> None:
    core = JsonDedupeCore()
    core.feed(delta("[1] [", 0))
    restart = make_event(StreamRestart, stream_id="t", seq=1, at=1, attempt=1, reason="timeout")
    assert core.feed(restart) == [restart]
    assert core.feed(delta("[1]", 2)) == [delta("[1]", 2)]
    assert core.flush() == []


def test_user_built_events_and_meta_are_kept() -> None:
    core = JsonDedupeCore()
    first = TextDelta(stream_id="t", seq=0, at=0, text="[1][1", meta={"logprobs": [1]})
    assert core.feed(first) == [first.model_copy(update={"text": "[1]"})]
    done = Finish(stream_id="t", seq=1, at=1, reason="stop", meta={"x": 1})
    assert core.feed(done) == [TextDelta(stream_id="t", seq=1, at=1, text="[1"), done]


def test_a_long_stream_is_linear() -> None:
    doc = json.dumps({"k": ["x" * 50] * 200})
    text = doc + " " + doc
    events = run([text[i : i + 3] for i in range(0, len(text), 3)])
    assert text_of(events) == doc


# -- tool calls ------------------------------------------------------------------------------


def call_delta(text: str, seq: int, call_index: int = 0) -> ToolCallDelta:
    return make_event(
        ToolCallDelta,
        stream_id="t",
        seq=seq,
        at=seq,
        call_index=call_index,
        call_id=f"c{call_index}",
        arguments_delta=text,
    )


def call_done(arguments: str, seq: int, call_index: int = 0) -> ToolCallDone:
    return make_event(
        ToolCallDone,
        stream_id="t",
        seq=seq,
        at=seq,
        call_index=call_index,
        call_id=f"c{call_index}",
        name="f",
        arguments=arguments,
    )


def run_call(parts: list[str], *, tool_calls: bool = True) -> list[Event]:
    core = JsonDedupeCore(tool_calls=tool_calls)
    out: list[Event] = []
    for i, part in enumerate(parts):
        out.extend(core.feed(call_delta(part, i)))
    out.extend(core.feed(call_done("".join(parts), len(parts))))
    out.extend(core.flush())
    return out


def arguments_of(events: list[Event]) -> str:
    return "".join(e.arguments_delta for e in events if isinstance(e, ToolCallDelta))


def test_repeated_tool_arguments_are_dropped_and_done_is_rewritten() -> None:
    for parts in splits('{"q":"a}"}\n{"q":"a}"}'):
        events = run_call(parts)
        assert arguments_of(events) == '{"q":"a}"}'
        done = events[-1]
        assert isinstance(done, ToolCallDone)
        assert done.arguments == '{"q":"a}"}'
        assert done.meta == {"dropped_duplicate_json": 1}


def test_held_arguments_are_released_before_their_done() -> None:
    events = run_call(['{"q":1}', ' {"q"'])
    assert events == [call_delta('{"q":1}', 0), call_delta(' {"q"', 2), call_done('{"q":1} {"q"', 2)]


def test_arguments_without_repeats_pass_untouched() -> None:
    parts = ['{"q":', "1}"]
    assert run_call(parts) == [call_delta(parts[0], 0), call_delta(parts[1], 1), call_done('{"q":1}', 2)]


def test_tool_calls_can_be_left_alone() -> None:
    parts = ["[1]", "[1]"]
    assert run_call(parts, tool_calls=False) == [
        call_delta("[1]", 0),
        call_delta("[1]", 1),
        call_done("[1][1]", 2),
    ]


def test_calls_and_text_of_one_output_do_not_overtake_each_other() -> None:
    core = JsonDedupeCore()
    assert core.feed(delta("[1] [", 0)) == [delta("[1]", 0)]
    # The call's first fragment decides the held text: it is released first.
    assert core.feed(call_delta("[2] ", 1)) == [delta(" [", 1), call_delta("[2]", 1)]
    start = make_event(ToolCallStart, stream_id="t", seq=2, at=2, call_index=1, name="g")
    assert core.feed(start) == [call_delta(" ", 2), start]


def test_tool_calls_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="tool_calls must be a bool"):
        dedupe_json(tool_calls=cast(Any, "yes"))


# -- recorded streams ------------------------------------------------------------------------


@pytest.mark.parametrize("path", recording_paths(), ids=lambda p: p.name)
def test_recordings_without_repeats_are_unchanged(path: Path) -> None:
    # None of the recordings repeats a value: only the grouping of deltas may change (whitespace
    # after a value is held until the next text or the finish decides it).
    events, _error = run_recording(path)
    out: list[Any] = []
    cast(Any, reactivex.from_iterable(events)).pipe(dedupe_json()).subscribe(out.append)
    assert accumulate(out) == accumulate(events)
    deltas = (TextDelta, ToolCallDelta)
    assert [e for e in out if not isinstance(e, deltas)] == [e for e in events if not isinstance(e, deltas)]


def test_after_normalize() -> None:
    payloads = [
        {
            "id": "x",
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": d, "finish_reason": f}],
        }
        for d, f in [
            ({"content": '{"a":'}, None),
            ({"content": "1}\n"}, None),
            ({"content": '{"a":1}'}, None),
            ({}, "stop"),
        ]
    ]
    chunks = [ProviderChunk("data", "openai.chat", None, p, i) for i, p in enumerate(payloads)]
    out: list[EventBase] = []
    reactivex.from_iterable(chunks).pipe(normalize(stream_id="t"), dedupe_json()).subscribe(out.append)
    result = accumulate(out)
    assert result.outputs[0].text == '{"a":1}'
    assert [type(e) for e in out] == [StreamStart, TextDelta, TextDelta, Finish, StreamEnd]
    assert out[3].meta == {"dropped_duplicate_json": 1}


# -- properties ------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
WHITESPACE = st.text(alphabet=" \t\r\n", max_size=3)


@st.composite
def documents(draw: st.DrawFn) -> str:
    value = draw(JSON_VALUES)
    indent = draw(st.sampled_from([None, 0, 2]))
    return json.dumps(value, indent=indent, ensure_ascii=draw(st.booleans()))


def cut(text: str, points: list[int]) -> list[str]:
    marks = sorted({p % (len(text) + 1) for p in points})
    edges = [0, *marks, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=200, deadline=None)
@given(
    documents(),
    st.lists(WHITESPACE, min_size=1, max_size=2),
    st.lists(st.integers(0, 10_000), max_size=8),
    st.data(),
)
def test_repeated_documents_become_one(
    doc: str, gaps: list[str], points: list[int], data: st.DataObject
) -> None:
    if doc[0] not in '{["':
        # A bare scalar only ends at a delimiter: "1" "1" with nothing between is the number 11.
        gaps = [g or " " for g in gaps]
    text = doc + "".join(g + doc for g in gaps)
    events = run(cut(text, points), end=data.draw(st.booleans()))
    assert text_of(events) == doc
    other = run(cut(text, data.draw(st.lists(st.integers(0, 10_000), max_size=8))))
    assert text_of(other) == doc
    calls = run_call(cut(text, points))
    done = calls[-1]
    assert isinstance(done, ToolCallDone)
    assert arguments_of(calls) == done.arguments == doc


@settings(max_examples=200, deadline=None)
@given(documents(), st.lists(st.integers(0, 10_000), max_size=8))
def test_a_single_document_passes_exactly(doc: str, points: list[int]) -> None:
    parts = cut(doc, points)
    assert run(parts) == [*(delta(p, i) for i, p in enumerate(parts)), finish(len(parts))]


@settings(max_examples=200, deadline=None)
@given(documents(), documents(), WHITESPACE, st.lists(st.integers(0, 10_000), max_size=8))
def test_different_documents_are_all_kept(first: str, second: str, gap: str, points: list[int]) -> None:
    if first == second:
        second = "[" + second + "]"
    if first[0] not in '{["' or second[0] not in '{["':
        gap = gap or " "
    text = first + gap + second
    assert text_of(run(cut(text, points))) == text


# -- the operator ----------------------------------------------------------------------------


def test_marble_diagram() -> None:
    with marbles_testing(timespan=1) as (begin, cold, _hot, exp):
        values: dict[str | float, Any] = {
            "a": delta('{"a":', 1),
            "b": delta("1}", 2),
            "c": delta('{"a":', 3),
            "d": delta("1}", 4),
            "f": finish(5),
        }
        source = cold("-a-b-c-d-f-|", values, None)
        expected = exp(
            "-a-b-----f-|",
            {**values, "f": finish(5).model_copy(update={"meta": {"dropped_duplicate_json": 1}})},
            None,
        )
        assert begin(source.pipe(dedupe_json())) == expected


def test_never_emits_nothing() -> None:
    scheduler = TestScheduler()
    results = scheduler.start(lambda: reactivex.never().pipe(dedupe_json()))
    assert results.messages == []


def test_empty_completes() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_completed(10))
    results = scheduler.start(lambda: xs.pipe(dedupe_json()))
    assert results.messages == [on_completed(210)]


def test_one_item() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, delta("[1]")), on_completed(20))
    results = scheduler.start(lambda: xs.pipe(dedupe_json()))
    assert results.messages == [on_next(210, delta("[1]")), on_completed(220)]


def test_held_text_is_released_on_completion() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(
        on_next(10, delta("[1]", 0)), on_next(15, delta(" [1", 1)), on_completed(20)
    )
    results = scheduler.start(lambda: xs.pipe(dedupe_json()))
    assert results.messages == [
        on_next(210, delta("[1]", 0)),
        on_next(220, delta(" [1", 1)),
        on_completed(220),
    ]


def test_upstream_error_passes_unchanged() -> None:
    boom = RuntimeError("socket closed")
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(
        on_next(10, delta("[1]")), on_next(15, delta("[1]", 1)), on_error(20, boom)
    )
    results = scheduler.start(lambda: xs.pipe(dedupe_json()))
    assert results.messages == [on_next(210, delta("[1]")), on_error(220, boom)]
    assert cast(Any, results.messages[1].value).exception is boom


def test_dispose_midway_unsubscribes_upstream() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, delta("[1]", 0)), on_next(400, delta("[2]", 1)), on_completed(500)
    )
    results = scheduler.start(lambda: xs.pipe(dedupe_json()), disposed=300)
    assert results.messages == [on_next(210, delta("[1]", 0))]
    assert [(s.subscribe, s.unsubscribe) for s in xs.subscriptions] == [(200, 300)]


def test_resubscribe_gives_the_same_output() -> None:
    source = reactivex.from_iterable([delta("[1]", 0), delta(" [1", 1), delta("]", 2), finish(3)]).pipe(
        dedupe_json()
    )
    first: list[EventBase] = []
    second: list[EventBase] = []
    source.subscribe(first.append)
    source.subscribe(second.append)
    assert (
        first
        == second
        == [delta("[1]", 0), finish(3).model_copy(update={"meta": {"dropped_duplicate_json": 1}})]
    )
