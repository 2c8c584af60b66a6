"""only(), drop(), where(), map_text(), redact(), tag(): marbles, the Rx case list, recordings, and redaction across deltas."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex import Observable
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.marbles import marbles_testing

from rxstream._errors import RxStreamError
from rxstream._events import (
    EVENT_ADAPTER,
    EVENT_TYPES,
    Citation,
    Event,
    EventBase,
    Finish,
    ReasoningDelta,
    RefusalDelta,
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
from rxstream.operators._filter import Redactor, drop, map_text, only, redact, tag, where
from tests.conftest import recording_paths
from tests.helpers import accumulate, run_recording

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error

Operator = Callable[[Observable[Event]], Observable[Event]]


# -- event builders -------------------------------------------------------------------------------


def start(stream: str = "t") -> Any:
    return make_event(StreamStart, stream_id=stream, seq=0, at=0, wire="openai.chat", model="m")


def text(
    value: str, seq: int = 1, output: int = 0, stream: str = "t", meta: dict[str, Any] | None = None
) -> Any:
    return make_event(TextDelta, stream_id=stream, seq=seq, at=seq * 10, meta=meta, output=output, text=value)


def reasoning(value: str, seq: int = 1, signature: str | None = None) -> Any:
    return make_event(ReasoningDelta, stream_id="t", seq=seq, at=seq * 10, text=value, signature=signature)


def refusal(value: str, seq: int = 1) -> Any:
    return make_event(RefusalDelta, stream_id="t", seq=seq, at=seq * 10, text=value)


def call_start(seq: int, call_index: int = 0, output: int = 0) -> Any:
    return make_event(
        ToolCallStart, stream_id="t", seq=seq, at=seq, output=output, call_index=call_index, name="f"
    )


def call_delta(arguments: str, seq: int, call_index: int = 0, output: int = 0) -> Any:
    return make_event(
        ToolCallDelta,
        stream_id="t",
        seq=seq,
        at=seq,
        output=output,
        call_index=call_index,
        arguments_delta=arguments,
    )


def call_done(arguments: str, seq: int, call_index: int = 0, output: int = 0) -> Any:
    return make_event(
        ToolCallDone,
        stream_id="t",
        seq=seq,
        at=seq,
        output=output,
        call_index=call_index,
        name="f",
        arguments=arguments,
    )


def usage(seq: int) -> Any:
    return make_event(Usage, stream_id="t", seq=seq, at=seq, input_tokens=3, output_tokens=seq)


def finish(seq: int, output: int = 0, stream: str = "t") -> Any:
    return make_event(Finish, stream_id=stream, seq=seq, at=seq, output=output, reason="stop")


def end(seq: int, stream: str = "t") -> Any:
    return make_event(StreamEnd, stream_id=stream, seq=seq, at=seq)


def text_stream(parts: list[str]) -> list[Any]:
    """stream.start, one text delta per part, finish, stream.end."""
    n = len(parts)
    return [start(), *(text(p, i + 1) for i, p in enumerate(parts)), finish(n + 1), end(n + 2)]


def pipe(events: list[Any], operator: Operator) -> list[Any]:
    out: list[Any] = []
    errors: list[Exception] = []
    reactivex.from_iterable(events).pipe(operator).subscribe(out.append, errors.append)
    assert not errors, errors
    return out


def pipe_error(events: list[Any], operator: Operator) -> tuple[list[Any], Exception]:
    out: list[Any] = []
    errors: list[Exception] = []
    reactivex.from_iterable(events).pipe(operator).subscribe(out.append, errors.append)
    assert len(errors) == 1
    return out, errors[0]


def joined(events: list[Any], output: int = 0) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta) and e.output == output)


def not_text(events: list[Any]) -> list[Any]:
    return [e for e in events if not isinstance(e, TextDelta | ReasoningDelta | RefusalDelta | ToolCallDelta)]


def structure(events: list[Any]) -> list[Any]:
    """The events that carry no text, in order (``tool_call.done`` without its arguments)."""
    return [e.model_dump(exclude={"arguments"}) for e in not_text(events)]


# -- the RxPY case list, for every operator ---------------------------------------------------------

OPERATORS: dict[str, Callable[[], Operator]] = {
    "only": lambda: only("text.delta"),
    "drop": lambda: drop("usage"),
    "where": lambda: where(lambda e: e.type != "usage"),
    "map_text": lambda: map_text(str.upper),
    "redact": lambda: redact(r"sk-\w{4}", max_len=8),
    "tag": lambda: tag(user="u1"),
}
CASES = list(OPERATORS)


@pytest.mark.parametrize("name", CASES)
def test_never_emits_nothing(name: str) -> None:
    scheduler = TestScheduler()
    results = scheduler.start(lambda: reactivex.never().pipe(OPERATORS[name]()))
    assert results.messages == []


@pytest.mark.parametrize("name", CASES)
def test_empty_completes(name: str) -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_completed(10))
    results = scheduler.start(lambda: xs.pipe(OPERATORS[name]()))
    assert results.messages == [on_completed(210)]


ONE = text("key sk-1234", 1)
ONE_ITEM: dict[str, list[Any]] = {
    "only": [on_next(210, ONE)],
    "drop": [on_next(210, ONE)],
    "where": [on_next(210, ONE)],
    "map_text": [on_next(210, text("KEY SK-1234", 1))],
    # Held back until the stream completes (nothing releases it sooner), then redacted.
    "redact": [on_next(220, text("key [redacted]", 1))],
    "tag": [on_next(210, text("key sk-1234", 1, meta={"user": "u1"}))],
}


@pytest.mark.parametrize("name", CASES)
def test_one_item(name: str) -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, ONE), on_completed(20))
    results = scheduler.start(lambda: xs.pipe(OPERATORS[name]()))
    assert results.messages == [*ONE_ITEM[name], on_completed(220)]


@pytest.mark.parametrize("name", CASES)
def test_upstream_error_passes_unchanged(name: str) -> None:
    boom = RuntimeError("socket closed")
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, start()), on_error(20, boom))
    results = scheduler.start(lambda: xs.pipe(OPERATORS[name]()))
    assert cast(Any, results.messages[-1].value).exception is boom
    assert results.messages[-1].time == 220


@pytest.mark.parametrize("name", CASES)
def test_dispose_midway_unsubscribes_upstream(name: str) -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, text("a", 1)), on_next(400, text("late", 2)), on_completed(500)
    )
    results = scheduler.start(lambda: xs.pipe(OPERATORS[name]()), disposed=300)
    assert all(m.time < 300 for m in results.messages)
    assert [(s.subscribe, s.unsubscribe) for s in xs.subscriptions] == [(200, 300)]


@pytest.mark.parametrize("name", CASES)
def test_resubscribe_gives_the_same_output(name: str) -> None:
    events = [start(), text("a sk-1", 1), usage(2), text("234 b", 3), finish(4), end(5)]
    source = reactivex.from_iterable(events).pipe(OPERATORS[name]())
    first: list[Any] = []
    second: list[Any] = []
    source.subscribe(first.append)
    source.subscribe(second.append)
    assert first == second and first


# Callback raises: a typed error with the cause attached, upstream disposed, nothing after it.
RAISING: dict[str, Callable[[], Operator]] = {
    "where": lambda: where(lambda e: e.seq < 2 or 1 / 0),
    "map_text": lambda: map_text(lambda s: s[100]),
    "redact": lambda: redact(r"sk-\w{4}", lambda m: cast(dict[str, str], {})["missing"], max_len=8),
    # No user callback: an item that is not an event is the data-dependent failure.
    "only": lambda: only("text.delta"),
    "drop": lambda: drop("usage"),
    "tag": lambda: tag(user="u1"),
}
CAUSES: dict[str, type[Exception]] = {
    "where": ZeroDivisionError,
    "map_text": IndexError,
    "redact": KeyError,
    "only": AttributeError,
    "drop": AttributeError,
    "tag": AttributeError,
}


@pytest.mark.parametrize("name", list(RAISING))
def test_callback_raises_a_typed_error_with_its_cause(name: str) -> None:
    bad = object() if name in ("only", "drop", "tag") else text("x sk-1234 y", 2)
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, start()), on_next(220, bad), on_next(230, text("after", 3)), on_completed(240)
    )
    results = scheduler.start(lambda: xs.pipe(RAISING[name]()))
    last = results.messages[-1]
    error = cast(Any, last.value).exception
    assert last.time == 220 and isinstance(error, RxStreamError)
    assert isinstance(error.__cause__, CAUSES[name]) and f"{name}()" in str(error)
    assert all(m.time <= 220 for m in results.messages)
    assert [(s.subscribe, s.unsubscribe) for s in xs.subscriptions] == [(200, 220)]


# -- the docstring diagrams -----------------------------------------------------------------------


Values = dict[str | float, Any]


def marble(source: str, operator: Operator, expected: str, values: Values) -> None:
    """The operator turns the ``source`` diagram into the ``expected`` one (1 tick a character)."""
    with marbles_testing(timespan=1) as (begin, cold, _hot, exp):
        assert begin(cold(source, values, None).pipe(operator)) == exp(expected, values, None)


def test_marble_diagrams() -> None:
    values: Values = {"s": start(), "a": text("a", 1), "u": usage(2), "b": text("b", 3), "e": end(4)}
    marble("-s-a-u-b-e-|", only("text.delta"), "---a---b---|", values)
    marble("-s-a-u-b-e-|", drop("usage"), "-s-a---b-e-|", values)
    outputs: Values = {
        "s": start(),
        "a": text("a", 1),
        "b": text("b", 1, output=1),
        "c": text("c", 2),
        "e": end(3),
    }
    keep = where(lambda e: e.type != "text.delta" or cast(Any, e).output == 0)
    marble("-s-a-b-c-e-|", keep, "-s-a---c-e-|", outputs)
    upper: Values = {"s": start(), "a": text("a", 1), "b": text("b", 2), "f": finish(3), "e": end(4),
                     "A": text("A", 1), "B": text("B", 2)}  # fmt: skip
    marble("-s-a-b-f-e-|", map_text(str.upper), "-s-A-B-f-e-|", upper)
    tagged: Values = {"s": start(), "a": text("a", 1), "e": end(2)}
    tagged |= {str(k).upper(): v.model_copy(update={"meta": {"user": "u1"}}) for k, v in tagged.items()}
    marble("-s-a-e-|", tag(user="u1"), "-S-A-E-|", tagged)
    secret: Values = {
        "s": start(), "a": text("key sk-", 1), "b": text("12", 2), "c": text("34 ok", 3), "f": finish(4), "e": end(5),
        "x": text("key ", 1), "y": text("[redacted] ok", 3),
    }  # fmt: skip
    marble("-s-a-b-c-f----e-|", redact(r"sk-\w{4}", max_len=8), "-s-----x-(y,f)e-|", secret)


# -- only / drop ------------------------------------------------------------------------------------


def test_only_and_drop_take_classes_strings_and_base_classes() -> None:
    events = [start(), text("a", 1), usage(2), reasoning("r", 3), finish(4), end(5)]
    assert pipe(events, only(TextDelta, "usage")) == [events[1], events[2]]
    assert pipe(events, drop(TextDelta, "usage")) == [events[0], events[3], events[4], events[5]]
    assert pipe(events, only(EventBase)) == events
    assert pipe(events, drop(EventBase)) == []


@pytest.mark.parametrize("path", recording_paths(), ids=lambda p: p.name)
def test_only_and_drop_partition_every_recording(path: Path) -> None:
    events, _ = run_recording(path)
    events = cast(list[Any], events)
    kinds = ("text.delta", "tool_call.delta", ToolCallDone, Finish)
    kept = pipe(events, only(*kinds))
    dropped = pipe(events, drop(*kinds))
    names = {"text.delta", "tool_call.delta", "tool_call.done", "finish"}
    assert kept == [e for e in events if e.type in names]
    assert dropped == [e for e in events if e.type not in names]


def test_unknown_type_strings_fail_at_call_time_listing_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"text\.deltas") as caught:
        only("text.deltas")
    assert all(kind in str(caught.value) for kind in EVENT_TYPES)
    with pytest.raises(ValueError, match="unknown event type 'delta'"):
        drop("stream.start", "delta")


def test_only_and_drop_reject_no_types_and_non_types() -> None:
    class Custom(EventBase):
        pass

    with pytest.raises(ValueError, match="at least one"):
        only()
    with pytest.raises(ValueError, match="Custom"):
        drop(Custom)
    with pytest.raises(TypeError, match="event classes or type strings"):
        only(int)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="event classes or type strings"):
        drop(3)  # type: ignore[arg-type]


# -- where ------------------------------------------------------------------------------------------


def test_where_uses_truthiness() -> None:
    events = [start(), text("a", 1), text("", 2), end(3)]
    assert pipe(events, where(lambda e: getattr(e, "text", "x"))) == [events[0], events[1], events[3]]
    assert pipe(events, where(lambda e: None)) == []


def test_where_refuses_an_async_predicate_without_leaking_a_coroutine() -> None:
    async def keep(event: Any) -> bool:
        return True

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine was never awaited" must not happen
        out, error = pipe_error([start(), text("a", 1)], where(keep))
    assert out == [] and isinstance(error, RxStreamError) and isinstance(error.__cause__, TypeError)
    assert "async predicates are not supported" in str(error)


def test_where_needs_a_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        where("text.delta")  # type: ignore[arg-type]


# -- map_text ---------------------------------------------------------------------------------------


def mixed_stream() -> list[Any]:
    return [
        start(),
        reasoning("think", 1),
        reasoning("", 2, signature="sig"),
        text("hello ", 3),
        text("world", 4),
        refusal("no", 5),
        call_start(6),
        call_delta('{"a": ', 7),
        call_delta('"x"}', 8),
        call_done('{"a": "x"}', 9),
        finish(10),
        end(11),
    ]


def test_map_text_converts_only_the_chosen_kinds_and_leaves_the_input_alone() -> None:
    events = mixed_stream()
    snapshot = [e.model_copy(deep=True) for e in events]
    out = pipe(events, map_text(str.upper))
    assert events == snapshot  # the inputs were not touched
    assert [e.type for e in out] == [e.type for e in events]
    assert joined(out) == "HELLO WORLD"
    result = accumulate(out)
    assert result.outputs[0].reasoning == "think" and result.outputs[0].refusal == "no"
    assert result.outputs[0].tool_calls[0].arguments == '{"a": "x"}'
    # Unchanged events are passed as they are, not copied.
    assert out[1] is events[1] and out[9] is events[9]


def test_map_text_on_every_kind_keeps_tool_call_done_equal_to_its_deltas() -> None:
    out = pipe(mixed_stream(), map_text(str.upper, kinds=("text", "reasoning", "refusal", "tool_call")))
    result = accumulate(out)
    output = result.outputs[0]
    assert (output.text, output.reasoning, output.refusal) == ("HELLO WORLD", "THINK", "NO")
    done = next(e for e in out if isinstance(e, ToolCallDone))
    assert (
        done.arguments
        == '{"A": "X"}'
        == "".join(e.arguments_delta for e in out if isinstance(e, ToolCallDelta))
    )
    assert output.tool_calls[0].arguments == '{"A": "X"}'
    # The signature-only reasoning delta went through untouched (fn never saw its empty text).
    assert out[2].signature == "sig" and out[2].text == ""


def test_map_text_calls_fn_once_per_non_empty_delta() -> None:
    seen: list[str] = []

    def spy(s: str) -> str:
        seen.append(s)
        return s

    pipe([start(), text("a", 1), text("", 2), text("b", 3), end(4)], map_text(spy, kinds="text"))
    assert seen == ["a", "b"]


def test_map_text_converts_arguments_that_never_streamed_and_forgets_calls_at_a_restart() -> None:
    restart = make_event(StreamRestart, stream_id="t", seq=5, at=5, attempt=1, reason="retry")
    events = [
        start(), call_start(1), call_delta("ab", 2), restart,
        call_start(6), call_delta("c", 7), call_done("cd", 8),  # "d" never streamed as a delta
        call_start(9, call_index=1), call_done("xy", 10, call_index=1),
    ]  # fmt: skip
    out = pipe(events, map_text(str.upper, kinds=["tool_call"]))
    dones = [e for e in out if isinstance(e, ToolCallDone)]
    assert [d.arguments for d in dones] == ["CD", "XY"]


def test_map_text_fn_must_return_a_str() -> None:
    out, error = pipe_error([start(), text("a", 1), text("b", 2)], map_text(lambda s: 3))  # type: ignore[arg-type, return-value]
    assert out == [start()] and isinstance(error, RxStreamError) and "got int" in str(error)


def test_map_text_checks_its_arguments_at_call_time() -> None:
    with pytest.raises(TypeError, match="callable"):
        map_text("upper")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="text, reasoning, refusal, tool_call"):
        map_text(str.upper, kinds=("text", "json"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        map_text(str.upper, kinds=())


@pytest.mark.parametrize("path", recording_paths(), ids=lambda p: p.name)
def test_map_text_over_every_recording(path: Path) -> None:
    events, error = run_recording(path)
    out = pipe(events, map_text(str.upper, kinds=("text", "reasoning", "refusal", "tool_call")))
    assert structure(out) == structure(events)
    before = accumulate(events, error)
    after = accumulate(out, error)
    for a, b in zip(before.outputs, after.outputs, strict=True):
        assert (b.text, b.reasoning, b.refusal) == (a.text.upper(), a.reasoning.upper(), a.refusal.upper())
        assert [c.arguments for c in b.tool_calls] == [c.arguments.upper() for c in a.tool_calls]
    assert [e.seq for e in out] == [e.seq for e in events]


# -- redact: across deltas --------------------------------------------------------------------------

SECRET = "sk-ABCD1234"
PATTERN = r"sk-[A-Za-z0-9]{8}"
SENTENCE = f"my key is {SECRET}, keep it safe"
REDACTED = "my key is [redacted], keep it safe"


def test_a_secret_is_found_at_every_split_point() -> None:
    for i in range(len(SENTENCE) + 1):
        out = pipe(text_stream([SENTENCE[:i], SENTENCE[i:]]), redact(PATTERN))
        assert joined(out) == REDACTED, i
        assert SECRET[:4] not in "|".join(e.text for e in out if isinstance(e, TextDelta))


def test_a_secret_is_found_over_every_pair_of_split_points() -> None:
    for i in range(len(SENTENCE) + 1):
        for j in range(i, len(SENTENCE) + 1):
            parts = [SENTENCE[:i], SENTENCE[i:j], SENTENCE[j:]]
            out = pipe(text_stream(parts), redact(PATTERN, max_len=len(SECRET)))
            assert joined(out) == REDACTED, (i, j)


@settings(max_examples=300, deadline=None)
@given(
    before=st.text(alphabet="ab k-sS12 \n", max_size=40),
    after=st.text(alphabet="ab k-sS12 \n", max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=100), max_size=12),
    max_len=st.integers(min_value=len(SECRET), max_value=40),
)
def test_redact_equals_re_sub_on_the_whole_text_for_any_chunking(
    before: str, after: str, cuts: list[int], max_len: int
) -> None:
    whole = before + SECRET + after
    points = sorted({min(c, len(whole)) for c in cuts})
    parts = [whole[a:b] for a, b in zip([0, *points], [*points, len(whole)], strict=True)]
    out = pipe(text_stream([p for p in parts if p]), redact(PATTERN, max_len=max_len))
    assert joined(out) == re.sub(PATTERN, "[redacted]", whole)
    assert "[redacted]" in joined(out)
    # Nothing else changed: the non-text events, in their order, and seq never decreasing.
    assert not_text(out) == [
        start(),
        finish(len([p for p in parts if p]) + 1),
        end(len([p for p in parts if p]) + 2),
    ]
    assert [e.seq for e in out] == sorted(e.seq for e in out)


@settings(max_examples=200, deadline=None)
@given(
    whole=st.text(alphabet="abc 12-x\n", max_size=60),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=10),
    pattern=st.sampled_from([r"\d{2}", r"ab|abc", r"(?<=x)\w{1,3}", r"c$", r"\bab\b", r"(a)(b)", r"1(?=2)"]),
    replacement=st.sampled_from(["#", "", r"<\g<0>>", r"\2\1"]),
)
def test_redact_matches_re_sub_for_lookarounds_anchors_and_templates(
    whole: str, cuts: list[int], pattern: str, replacement: str
) -> None:
    if replacement == r"\2\1" and pattern != r"(a)(b)":
        replacement = "#"
    points = sorted({min(c, len(whole)) for c in cuts})
    parts = [whole[a:b] for a, b in zip([0, *points], [*points, len(whole)], strict=True)]
    out = pipe(text_stream([p for p in parts if p]), redact(pattern, replacement, max_len=6))
    assert joined(out) == re.sub(pattern, replacement, whole)


def test_hold_back_is_max_len_characters_and_deltas_leave_whole() -> None:
    core = Redactor(re.compile("never-there"), lambda m: "", max_len=10, types=frozenset({"text.delta"}))
    assert core.feed(start()) == [start()]
    fed = 0
    emitted = 0
    ends: list[int] = []
    for i in range(40):
        piece = "abc"[: 1 + i % 3]
        fed += len(piece)
        ends.append(fed)
        emitted += len(joined(core.feed(text(piece, i + 1))))
        # A delta leaves as soon as max_len characters of its target follow its last one.
        assert emitted == max((e for e in ends if e <= fed - 10), default=0)
    emitted += len(joined(core.flush()))
    assert emitted == fed


def test_events_behind_held_text_wait_in_order() -> None:
    events = [
        start(),
        text("hello sk-AB", 1),
        usage(2),
        text("CD1234 and more text here", 3),
        finish(4),
        end(5),
    ]
    out = pipe(events, redact(PATTERN, max_len=12))
    assert [e.type for e in out] == [e.type for e in events]
    assert joined(out) == "hello [redacted] and more text here"
    # The match is replaced in the delta holding its last character.
    assert [e.text for e in out if isinstance(e, TextDelta)] == ["hello ", "[redacted] and more text here"]


def test_a_delta_wholly_inside_a_match_is_dropped() -> None:
    out = pipe(text_stream(["a sk-", "ABCD", "1234 b"]), redact(PATTERN))
    assert [(e.seq, e.text) for e in out if isinstance(e, TextDelta)] == [(1, "a "), (3, "[redacted] b")]


def test_output_finish_tool_calls_and_other_content_release_held_text() -> None:
    events = [
        start(),
        reasoning("thinking about sk-", 1),  # held; released by the text that follows
        text("answer ", 2),
        call_start(3),  # releases the text
        call_delta('{"k": "sk-ABCD', 4),
        call_delta('1234"}', 5),
        call_done('{"k": "sk-ABCD1234"}', 6),
        finish(7),
        end(8),
    ]
    redactor = Redactor(re.compile(PATTERN), lambda m: "[redacted]", max_len=256,
                        types=frozenset({"text.delta", "reasoning.delta", "tool_call.delta"}))  # fmt: skip
    core = cast(Any, redactor)
    assert core.feed(events[0]) == [events[0]]
    assert core.feed(events[1]) == []
    assert [e.text for e in core.feed(events[2])] == ["thinking about sk-"]
    assert [e.type for e in core.feed(events[3])] == ["text.delta", "tool_call.start"]
    assert core.feed(events[4]) == [] and core.feed(events[5]) == []
    released = core.feed(events[6])
    assert [e.type for e in released] == ["tool_call.delta", "tool_call.delta", "tool_call.done"]
    assert "".join(e.arguments_delta for e in released[:2]) == '{"k": "[redacted]"}' == released[2].arguments
    assert core.feed(events[7]) == [events[7]] and core.waiting == 0


def test_interleaved_outputs_are_matched_apart() -> None:
    events = [
        start(),
        text("a sk-AB", 1, output=0),
        text("x sk-", 1, output=1),
        text("CD12", 2, output=0),
        text("zz", 2, output=1),
        text("34 b", 3, output=0),
        finish(4, output=0),
        finish(4, output=1),
        end(5),
    ]
    out = pipe(events, redact(PATTERN))
    assert joined(out, 0) == "a [redacted] b" and joined(out, 1) == "x sk-zz"
    assert not_text(out) == not_text(events)
    assert [e.seq for e in out] == sorted(e.seq for e in out)


def test_a_stalled_target_is_released_when_too_many_events_wait() -> None:
    events = [start(), text("held", 1, output=0)]
    events += [text("x", i + 2, output=1) for i in range(3000)]
    events += [finish(3002, output=0), finish(3002, output=1), end(3003)]
    core = Redactor(re.compile(PATTERN), lambda m: "#", max_len=256, types=frozenset({"text.delta"}))
    out: list[Any] = []
    for event in events:
        out += core.feed(event)
        assert core.waiting <= 1025
    out += core.flush()
    assert out == events


def test_stream_end_restart_completion_and_error_release_everything() -> None:
    restart = make_event(StreamRestart, stream_id="t", seq=2, at=2, attempt=1, reason="retry")
    out = pipe([start(), text("sk-ABCD", 1), restart, text("1234", 3), end(4)], redact(PATTERN))
    # A restart ends the attempt's text: the secret is not joined across it.
    assert [e.text for e in out if isinstance(e, TextDelta)] == ["sk-ABCD", "1234"]
    assert [e.type for e in out][2] == "stream.restart"
    completed = pipe([start(), text("x sk-ABCD1234", 1)], redact(PATTERN))
    assert joined(completed) == "x [redacted]"
    boom = RuntimeError("dropped")
    source = reactivex.concat(
        reactivex.from_iterable([start(), text("x sk-ABCD1234", 1)]), reactivex.throw(boom)
    )
    out2, error = pipe_error([], lambda _: source.pipe(redact(PATTERN)))
    assert error is boom and joined(out2) == "x [redacted]"


def test_end_anchors_match_only_at_the_true_end() -> None:
    out = pipe(text_stream(["the end", " of it, the e", "nd"]), redact(r"end$", "END", max_len=3))
    assert joined(out) == "the end of it, the END"


def test_lookbehind_sees_text_already_emitted() -> None:
    parts = ["x" * 50, "key=", "y" * 30, " key", "=ab", "cd", "z" * 40]
    out = pipe(text_stream(parts), redact(r"(?<=key=)\w{4}", "****", max_len=8))
    whole = "".join(parts)
    assert joined(out) == re.sub(r"(?<=key=)\w{4}", "****", whole)


def test_callable_replacements_and_templates() -> None:
    seen: list[str] = []

    def mask(match: re.Match[str]) -> str:
        seen.append(match.group(0))
        return match.group(0)[:3] + "*" * 8

    out = pipe(text_stream(["a sk-AB", "CD1234 b"]), redact(PATTERN, mask))
    assert joined(out) == "a sk-******** b" and seen == [SECRET]
    out = pipe(text_stream(["id 12", "-34"]), redact(r"(\d+)-(\d+)", r"\2-\1"))
    assert joined(out) == "id 34-12"


def test_a_failing_replacement_leaks_nothing_held() -> None:
    def broken(match: re.Match[str]) -> str:
        raise LookupError("vault down")

    out, error = pipe_error(text_stream(["key sk-AB", "CD1234 tail"]), redact(PATTERN, broken))
    assert isinstance(error, RxStreamError) and isinstance(error.__cause__, LookupError)
    assert "redact(): the replacement raised LookupError" in str(error)
    assert out == [start()]
    out, error = pipe_error(text_stream(["sk-ABCD1234 x"]), redact(PATTERN, lambda m: 7))  # type: ignore[arg-type, return-value]
    assert isinstance(error, RxStreamError) and "got int" in str(error)
    out, error = pipe_error(text_stream(["sk-ABCD1234 x"]), redact(PATTERN, r"\3"))
    assert isinstance(error, RxStreamError) and error.__cause__ is not None and out == [start()]


def test_redact_keeps_signatures_and_redacts_each_kind_it_is_given() -> None:
    events = [
        start(),
        reasoning("my sk-ABCD", 1),
        reasoning("1234", 2, signature="sig"),
        text("sk-ABCD1234", 3),
        refusal("sk-ABCD1234", 4),
        finish(5),
        end(6),
    ]
    out = pipe(events, redact(PATTERN, "#"))
    result = accumulate(out).outputs[0]
    assert (result.reasoning, result.text, result.refusal) == ("my #", "#", "#")
    assert result.reasoning_signatures == ["sig"]
    only_text = accumulate(pipe(events, redact(PATTERN, "#", kinds="text"))).outputs[0]
    assert (only_text.reasoning, only_text.text, only_text.refusal) == ("my sk-ABCD1234", "#", "sk-ABCD1234")


def test_redact_checks_its_arguments_at_call_time() -> None:
    with pytest.raises(ValueError, match="valid regular expression"):
        redact("(unclosed")
    with pytest.raises(ValueError, match="empty string"):
        redact(r"\d*")
    with pytest.raises(ValueError, match="bytes"):
        redact(re.compile(b"x"))  # type: ignore[arg-type]
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="max_len"):
            redact("x", max_len=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="replacement"):
        redact("x", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"re\.Pattern"):
        redact(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kinds"):
        redact("x", kinds=("citation",))  # type: ignore[arg-type]


@pytest.mark.parametrize("path", recording_paths(), ids=lambda p: p.name)
def test_redact_over_every_recording(path: Path) -> None:
    events, error = run_recording(path)
    # A pattern that never matches changes nothing, not even an event's identity.
    untouched = pipe(events, redact(r"\x00never\x00"))
    assert len(untouched) == len(events) and all(a is b for a, b in zip(untouched, events, strict=True))
    # Three-letter words: matches straddle deltas all the time.
    pattern = r"\b[A-Za-z]{3}\b"
    out = pipe(events, redact(pattern, "###", max_len=16))
    assert structure(out) == structure(events)
    assert [e.seq for e in out] == sorted(e.seq for e in out)
    before = accumulate(events, error)
    after = accumulate(out, error)
    for a, b in zip(before.outputs, after.outputs, strict=True):
        assert b.text == re.sub(pattern, "###", a.text)
        assert b.reasoning == re.sub(pattern, "###", a.reasoning)
        assert b.refusal == re.sub(pattern, "###", a.refusal)
        for ca, cb in zip(a.tool_calls, b.tool_calls, strict=True):
            assert cb.arguments == re.sub(pattern, "###", ca.arguments)


# -- tag --------------------------------------------------------------------------------------------


def test_tag_adds_metadata_without_touching_the_input() -> None:
    shared = {"block_index": 1}
    events = [start(), text("a", 1, meta=shared), text("b", 2, meta=shared), text("c", 3), end(4)]
    out = pipe(events, tag(user="u1", block_index=9))
    assert [e.meta for e in out] == [
        {"user": "u1", "block_index": 9},
        {"block_index": 9, "user": "u1"},
        {"block_index": 9, "user": "u1"},
        {"user": "u1", "block_index": 9},
        {"user": "u1", "block_index": 9},
    ]
    assert shared == {"block_index": 1} and events[0].meta == {} and events[1].meta is shared
    # Events that shared a mapping share the tagged one; copies are full, valid events.
    assert out[1].meta is out[2].meta
    for original, tagged in zip(events, out, strict=True):
        assert tagged is not original and tagged == original.model_copy(update={"meta": tagged.meta})
        assert EVENT_ADAPTER.validate_python(tagged.model_dump()) == tagged
    with pytest.raises(Exception, match="frozen"):
        out[1].text = "x"  # type: ignore[misc]


def test_tag_needs_metadata() -> None:
    with pytest.raises(ValueError, match="at least one keyword"):
        tag()


def test_tagged_citations_and_every_kind_survive_a_round_trip() -> None:
    events, _ = run_recording(next(p for p in recording_paths() if "web-search" in p.name))
    out = pipe(events, tag(tenant="acme"))
    assert any(isinstance(e, Citation) for e in out)
    assert all(e.meta["tenant"] == "acme" for e in out)
    assert [e.model_dump(exclude={"meta"}) for e in out] == [e.model_dump(exclude={"meta"}) for e in events]
