"""retry(): invisible retries before content, fail / restart after it, backoff and notes, in virtual time."""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable
from typing import Any, cast

import pytest
import reactivex
from reactivex import Observable
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.marbles import marbles_testing
from reactivex.testing.recorded import Recorded

from rxstream._errors import (
    AuthenticationError,
    BadRequestError,
    HTTPStatusError,
    JsonError,
    LimitExceededError,
    ProtocolError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    RxStreamError,
    StreamTimeoutError,
    TransportError,
)
from rxstream._events import (
    Finish,
    ReasoningDelta,
    StreamEnd,
    StreamRestart,
    StreamStart,
    TextDelta,
    ToolCallStart,
    Usage,
    make_event,
)
from rxstream.operators._retry import RetryAttempt, RetryCore, RetryPolicy, is_retryable, retry
from tests.helpers import accumulate

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error


class Fixed:
    """A jitter source that always draws ``value``: the wait is then ``value`` times the ceiling."""

    def __init__(self, value: float = 1.0) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def start(sid: str = "a1", seq: int = 0, request_id: str | None = None) -> Any:
    rid = request_id or f"req-{sid}"
    return make_event(StreamStart, stream_id=sid, seq=seq, at=seq, wire="openai.chat", model="m", request_id=rid)


def text(t: str, seq: int, sid: str = "a1") -> Any:
    return make_event(TextDelta, stream_id=sid, seq=seq, at=seq, text=t)


def usage(seq: int, sid: str = "a1", out: int = 1) -> Any:
    return make_event(Usage, stream_id=sid, seq=seq, at=seq, input_tokens=3, output_tokens=out)


def finish(seq: int, sid: str = "a1", reason: Any = "stop") -> Any:
    return make_event(Finish, stream_id=sid, seq=seq, at=seq, reason=reason)


def end(seq: int, sid: str = "a1") -> Any:
    return make_event(StreamEnd, stream_id=sid, seq=seq, at=seq)


def attempts_of(scheduler: TestScheduler, *runs: list[Recorded[Any]]) -> tuple[Observable[Any], list[Any]]:
    """A cold source whose n-th subscription plays ``runs[n]`` (the last one again past the end)."""
    observables = [scheduler.create_cold_observable(*run) for run in runs]
    count = 0

    def factory(_: Any) -> Observable[Any]:
        nonlocal count
        chosen = observables[min(count, len(observables) - 1)]
        count += 1
        return chosen

    return reactivex.defer(factory), observables


def run(
    *runs: list[Recorded[Any]], disposed: float = 1000.0, **options: Any
) -> tuple[list[Recorded[Any]], list[Any], TestScheduler]:
    scheduler = TestScheduler()
    source, observables = attempts_of(scheduler, *runs)
    options.setdefault("rng", Fixed())
    results = scheduler.start(lambda: source.pipe(retry(**options)), disposed=disposed)
    return results.messages, observables, scheduler


def notifications(messages: list[Recorded[Any]]) -> list[Any]:
    return [cast(Any, m.value) for m in messages]


def values(messages: list[Recorded[Any]]) -> list[Any]:
    return [n.value for n in notifications(messages) if n.kind == "N"]


def kinds(messages: list[Recorded[Any]]) -> list[str]:
    return [n.value.type if n.kind == "N" else n.kind for n in notifications(messages)]


def failure(messages: list[Recorded[Any]]) -> Exception:
    last = notifications(messages)[-1]
    assert last.kind == "E", messages
    return last.exception


def subscribed_at(observable: Any) -> list[float]:
    return [s.subscribe for s in observable.subscriptions]


# -- the docstring's diagram ------------------------------------------------------------------------


def test_marble_diagram() -> None:
    # The docstring's diagram, as drawn there.
    with marbles_testing() as context:
        begin, cold, _, expected = cast(Any, context)
        first = {"s": start("first"), "a": text("a", 1, "first"), "b": text("b", 2, "first")}
        second = {"s": start("second"), "a": text("a", 1, "second"), "b": text("b", 2, "second")}
        runs = [
            cold("-s-#", lookup=first, error=TransportError("connection dropped")),
            cold("    -s-a-----b-|".strip(), lookup=second),
        ]
        source: Observable[Any] = reactivex.defer(lambda _: runs.pop(0))
        results = begin(source.pipe(retry(attempts=3, backoff=1, rng=Fixed())))
        # The second attempt's events (its own start), re-stamped with the first attempt's stream id.
        wanted = expected("-------(s,a)-b-|", lookup={**first, "s": start("first", request_id="req-second")})
    assert results == wanted


# -- before content: invisible ----------------------------------------------------------------------


def test_a_failure_before_content_is_retried_invisibly_with_one_stream_start() -> None:
    messages, observables, _ = run(
        [on_next(1, start("a1")), on_next(2, usage(1, "a1")), on_error(3, RateLimitError("429", retry_after=None))],
        [on_next(1, start("a2")), on_next(2, text("hi", 1, "a2")), on_next(3, end(2, "a2")), on_completed(4)],
        backoff=1,
    )
    assert kinds(messages) == ["stream.start", "text.delta", "stream.end", "C"]
    got = values(messages)
    # The second attempt's own start (its request id), under the first attempt's stream id; seq untouched.
    assert got[0].request_id == "req-a2"
    assert {e.stream_id for e in got} == {"a1"}
    assert [e.seq for e in got] == [0, 1, 2]
    # The failed attempt's prefix (its usage) never reached the consumer.
    assert not any(isinstance(e, Usage) for e in got)
    assert subscribed_at(observables[0]) == [200] and subscribed_at(observables[1]) == [204]
    assert accumulate(got).outputs[0].text == "hi"


def test_backoff_doubles_from_backoff_and_is_capped_by_max_delay() -> None:
    fail = [on_error(1, TransportError("refused"))]
    messages, observables, _ = run(fail, attempts=5, backoff=1, max_delay=3)
    # attempt 1 at 200 fails at 201; waits 1, 2, 3 (capped), 3 (capped).
    assert subscribed_at(observables[0]) == [200, 202, 205, 209, 213]
    assert messages[-1].time == 214 and isinstance(failure(messages), TransportError)


def test_jitter_is_full_and_comes_from_the_injected_source() -> None:
    fail = [on_error(1, TransportError("refused"))]
    messages, observables, _ = run(fail, attempts=4, backoff=2, max_delay=100, rng=random.Random(7))
    draws = random.Random(7)
    expected_waits = [draws.random() * 2, draws.random() * 4, draws.random() * 8]
    times = subscribed_at(observables[0])
    waits = [b - (a + 1) for a, b in itertools.pairwise(times)]
    assert waits == pytest.approx(expected_waits)
    assert all(0 <= w <= c for w, c in zip(waits, [2, 4, 8], strict=True))
    notes = failure(messages).__notes__
    for attempt, wait in enumerate(expected_waits, 1):
        assert f"attempt {attempt} of 4 failed with TransportError: refused; retried after {wait:.3f} s" in notes[attempt - 1]


def test_retry_after_is_honoured_when_larger_than_the_backoff() -> None:
    rate = [on_error(1, RateLimitError("429 slow down", retry_after=7.5))]
    ok = [on_next(1, start()), on_next(2, text("x", 1)), on_completed(3)]
    messages, observables, _ = run(rate, ok, backoff=1, max_delay=30)
    assert subscribed_at(observables[0]) == [200] and subscribed_at(observables[1]) == [208.5]
    assert kinds(messages) == ["stream.start", "text.delta", "C"]
    # A retry-after below the jittered wait changes nothing.
    quick = [on_error(1, RateLimitError("429", retry_after=0.25))]
    _, observables, _ = run(quick, ok, backoff=4)
    assert subscribed_at(observables[1]) == [205]


def test_a_retry_after_above_max_delay_fails_at_once_and_says_why() -> None:
    rate = [on_next(1, start()), on_error(2, RateLimitError("429", retry_after=120))]
    messages, observables, _ = run(rate, [on_completed(1)], max_delay=30)
    assert len(observables[0].subscriptions) == 1 and not observables[1].subscriptions
    assert kinds(messages) == ["stream.start", "E"]
    error = failure(messages)
    assert isinstance(error, RateLimitError)
    assert "asked to wait 120 s, more than max_delay=30 s" in error.__notes__[-1]


def test_attempts_exhausted_ends_with_the_last_error_and_every_attempt_in_its_notes() -> None:
    errors = [ProviderUnavailableError("503 one", status=503), TransportError("two"), StreamTimeoutError("three", kind="idle", seconds=5)]
    runs = [[on_next(1, start(f"s{i}")), on_error(2, e)] for i, e in enumerate(errors)]
    messages, observables, _ = run(*runs, attempts=3, backoff=1)
    error = failure(messages)
    assert error is errors[2]
    notes = error.__notes__
    assert notes[0] == "rxstream.retry: attempt 1 of 3 failed with ProviderUnavailableError: 503 one; retried after 1.000 s"
    assert notes[1] == "rxstream.retry: attempt 2 of 3 failed with TransportError: two; retried after 2.000 s"
    assert notes[2] == "rxstream.retry: attempt 3 of 3 failed; not retried: no attempts left (attempts=3)"
    # Nothing was ever delivered but the last attempt's prefix, just before its error.
    assert kinds(messages) == ["stream.start", "E"] and values(messages)[0].request_id == "req-s2"
    assert [len(o.subscriptions) for o in observables] == [1, 1, 1]


@pytest.mark.parametrize(
    "error",
    [
        BadRequestError("400", status=400),
        AuthenticationError("401", status=401),
        AuthenticationError("403", status=403),
        BadRequestError("404", status=404),
        BadRequestError("422", status=422),
        ProtocolError("not SSE"),
        JsonError("bad json"),
        LimitExceededError("too long", limit="max_sse_line_bytes", value=10),
        ProviderError("invalid", code="invalid_request_error"),
        ValueError("a bug"),
    ],
    ids=lambda e: f"{type(e).__name__}-{e}",
)
def test_non_retryable_errors_fail_at_once(error: Exception) -> None:
    messages, observables, _ = run([on_next(1, start()), on_error(2, error)], [on_completed(1)])
    assert failure(messages) is error and messages[-1].time == 202
    assert not observables[1].subscriptions
    assert kinds(messages) == ["stream.start", "E"]
    assert error.__notes__ == ["rxstream.retry: attempt 1 of 3 failed; not retried: not retryable (retry_on said no)"]


def test_attempts_one_never_retries() -> None:
    messages, observables, _ = run([on_error(1, TransportError("x"))], [on_completed(1)], attempts=1)
    assert isinstance(failure(messages), TransportError) and not observables[1].subscriptions


def test_a_stream_without_content_releases_its_prefix_at_completion() -> None:
    messages, _, _ = run([on_next(1, start()), on_next(2, usage(1)), on_next(3, finish(2)), on_next(4, end(3)), on_completed(5)])
    assert kinds(messages) == ["stream.start", "usage", "finish", "stream.end", "C"]
    assert [m.time for m in messages] == [205] * 5


def test_a_reasoning_signature_alone_is_not_content_but_reasoning_text_is() -> None:
    signed = make_event(ReasoningDelta, stream_id="a1", seq=1, at=1, text="", signature="sig")
    thought = make_event(ReasoningDelta, stream_id="a1", seq=2, at=2, text="hmm")
    messages, _, _ = run(
        [on_next(1, start()), on_next(2, signed), on_error(3, TransportError("x"))],
        [on_next(1, start("b")), on_next(2, thought), on_completed(3)],
    )
    assert kinds(messages) == ["stream.start", "reasoning.delta", "C"]
    assert values(messages)[1].text == "hmm"


# -- after content ---------------------------------------------------------------------------------


def test_after_content_fail_keeps_what_was_delivered_and_ends_with_the_error() -> None:
    error = TransportError("dropped")
    messages, observables, _ = run(
        [on_next(1, start()), on_next(2, text("Hel", 1)), on_next(3, text("lo", 2)), on_error(4, error)],
        [on_completed(1)],
    )
    assert kinds(messages) == ["stream.start", "text.delta", "text.delta", "E"]
    assert failure(messages) is error and not observables[1].subscriptions
    assert error.__notes__[-1].endswith("not retried: content was already delivered and after_content='fail'")
    partial = accumulate(values(messages), error)
    assert partial.outputs[0].text == "Hello" and not partial.completed


def test_after_content_restart_announces_the_restart_before_the_new_attempts_whole_stream() -> None:
    first = [on_next(1, start("a1")), on_next(2, text("Hel", 1, "a1")), on_next(3, text("lo", 2, "a1")), on_error(4, TransportError("dropped"))]
    second = [on_next(1, start("a2")), on_next(2, usage(1, "a2")), on_next(3, text("Hello", 2, "a2")), on_next(4, text(" world", 3, "a2")), on_next(5, end(4, "a2")), on_completed(6)]
    messages, _, _ = run(first, second, after_content="restart", backoff=1)
    assert kinds(messages) == [
        "stream.start", "text.delta", "text.delta",
        "stream.restart", "stream.start", "usage", "text.delta", "text.delta", "stream.end", "C",
    ]
    got = values(messages)
    restart = got[3]
    assert isinstance(restart, StreamRestart) and restart.attempt == 2
    assert restart.reason == "attempt 1 failed after content was delivered: TransportError: dropped"
    # The restart, the new start and its usage all come with the new attempt's first content.
    assert [m.time for m in messages[3:7]] == [208] * 4
    assert {e.stream_id for e in got} == {"a1"}
    seqs = [e.seq for e in got]
    assert seqs == sorted(seqs) and seqs[3] == 2 and seqs[4] == 3  # new attempt shifted past the last delivered seq
    result = accumulate(got)
    assert result.completed and result.outputs[0].text == "Hello world" and result.request_id == "req-a2"


def test_a_restart_is_announced_only_when_a_replacement_delivers_content() -> None:
    first = [on_next(1, start("a1")), on_next(2, text("partial", 1, "a1")), on_error(3, TransportError("one"))]
    second = [on_next(1, start("a2")), on_error(2, ProviderUnavailableError("503", status=503))]
    third = [on_next(1, start("a3")), on_next(2, text("whole", 1, "a3")), on_completed(3)]
    messages, _, _ = run(first, second, third, after_content="restart", attempts=3)
    assert kinds(messages) == ["stream.start", "text.delta", "stream.restart", "stream.start", "text.delta", "C"]
    restart = values(messages)[2]
    assert restart.attempt == 3 and "attempt 1 failed after content" in restart.reason
    assert values(messages)[3].request_id == "req-a3"


def test_when_every_restart_fails_first_the_delivered_content_stays_valid() -> None:
    first = [on_next(1, start("a1")), on_next(2, text("kept", 1, "a1")), on_error(3, TransportError("one"))]
    later = [on_next(1, start("ax")), on_error(2, TransportError("again"))]
    messages, observables, _ = run(first, later, after_content="restart", attempts=3)
    # No stream.restart (nothing replaced the content) and no second stream.start.
    assert kinds(messages) == ["stream.start", "text.delta", "E"]
    error = failure(messages)
    partial = accumulate(values(messages), error if isinstance(error, RxStreamError) else None)
    assert partial.outputs[0].text == "kept"
    assert len(observables[1].subscriptions) == 2
    assert [n.split(";")[0] for n in error.__notes__] == [
        "rxstream.retry: attempt 1 of 3 failed with TransportError: one",
        "rxstream.retry: attempt 2 of 3 failed with TransportError: again",
        "rxstream.retry: attempt 3 of 3 failed",
    ]
    assert error.__notes__[0].endswith("(restart)")


def test_a_provider_errors_finish_is_dropped_when_restarted_and_kept_when_failing() -> None:
    overloaded = ProviderError("overloaded", code="overloaded_error", error_type="overloaded_error")
    first = [on_next(1, start()), on_next(2, text("a", 1)), on_next(3, finish(2, reason="error")), on_error(3, overloaded)]
    second = [on_next(1, start("b")), on_next(2, text("ab", 1, "b")), on_next(3, finish(2, "b")), on_completed(4)]
    restarted, _, _ = run(first, second, after_content="restart")
    assert kinds(restarted) == ["stream.start", "text.delta", "stream.restart", "stream.start", "text.delta", "finish", "C"]
    assert values(restarted)[-1].reason == "stop"
    failed, _, _ = run(first, second, after_content="fail")
    assert kinds(failed) == ["stream.start", "text.delta", "finish", "E"]
    assert values(failed)[-1].reason == "error"


def test_tool_call_events_are_content() -> None:
    call = make_event(ToolCallStart, stream_id="a1", seq=1, at=1, call_index=0, name="f")
    messages, observables, _ = run([on_next(1, start()), on_next(2, call), on_error(3, TransportError("x"))], [on_completed(1)])
    assert kinds(messages) == ["stream.start", "tool_call.start", "E"] and not observables[1].subscriptions


# -- retry_on, on_retry, logs --------------------------------------------------------------------------


def test_retry_on_a_tuple_of_classes_replaces_the_default() -> None:
    bad = [on_error(1, ProtocolError("garbled"))]
    ok = [on_next(1, start()), on_next(2, text("x", 1)), on_completed(3)]
    messages, _, _ = run(bad, ok, retry_on=(ProtocolError,))
    assert kinds(messages) == ["stream.start", "text.delta", "C"]
    messages, observables, _ = run([on_error(1, TransportError("x"))], ok, retry_on=(ProtocolError,))
    assert isinstance(failure(messages), TransportError) and not observables[1].subscriptions


def test_retry_on_a_predicate_can_extend_the_default() -> None:
    def predicate(e: Exception) -> bool:
        return is_retryable(e) or isinstance(e, ProtocolError)

    ok = [on_next(1, start()), on_next(2, text("x", 1)), on_completed(3)]
    messages, _, _ = run([on_error(1, ProtocolError("garbled"))], [on_error(1, TransportError("x"))], ok, retry_on=predicate)
    assert kinds(messages) == ["stream.start", "text.delta", "C"]


def test_a_retry_on_that_raises_ends_the_stream_with_its_error_attached() -> None:
    def broken(_: Exception) -> bool:
        raise KeyError("oops")

    messages, _, _ = run([on_error(1, TransportError("x"))], retry_on=broken)
    error = failure(messages)
    assert type(error) is RxStreamError and isinstance(error.__cause__, KeyError)
    assert "retry_on raised KeyError" in str(error) and "TransportError: x" in str(error)


def test_on_retry_reports_every_decision() -> None:
    seen: list[RetryAttempt] = []
    first = [on_next(1, start()), on_error(2, RateLimitError("429", retry_after=2))]
    second = [on_next(1, start()), on_next(2, text("x", 1)), on_error(3, TransportError("drop"))]
    third = [on_next(1, start()), on_error(2, BadRequestError("400", status=400))]
    run(first, second, third, after_content="restart", attempts=5, backoff=1, on_retry=seen.append)
    assert [(n.attempt, n.action, n.delay, n.content_delivered) for n in seen] == [
        (1, "retry", 2.0, False),
        (2, "restart", 2.0, True),
        (3, "fail", None, True),
    ]
    assert seen[2].reason == "not retryable (retry_on said no)" and isinstance(seen[2].error, BadRequestError)
    assert all(n.attempts == 5 for n in seen)


def test_an_on_retry_that_raises_ends_the_stream() -> None:
    def broken(_: RetryAttempt) -> None:
        raise RuntimeError("sink down")

    messages, observables, _ = run([on_error(1, TransportError("x"))], [on_completed(1)], on_retry=broken)
    error = failure(messages)
    assert type(error) is RxStreamError and isinstance(error.__cause__, RuntimeError)
    assert not observables[1].subscriptions


def test_every_retry_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rxstream.retry")
    run([on_error(1, TransportError("refused"))], [on_next(1, start()), on_next(2, text("x", 1)), on_completed(3)], backoff=1)
    lines = [r.getMessage() for r in caplog.records if r.name == "rxstream.retry"]
    assert lines == ["attempt 1 of 3 failed (TransportError: refused); retrying in 1.000 s"]


# -- the Rx shell: disposal, the usual cases -----------------------------------------------------------


def test_disposing_during_the_backoff_cancels_the_next_attempt() -> None:
    messages, observables, scheduler = run(
        [on_next(1, start()), on_error(2, TransportError("x"))], [on_completed(1)], backoff=10, disposed=205
    )
    assert messages == []
    assert not observables[1].subscriptions
    scheduler.advance_to(2000)  # the cancelled timer never fires
    assert not observables[1].subscriptions


def test_disposing_midway_disposes_the_attempt_in_flight() -> None:
    first = [on_error(1, TransportError("x"))]
    second = [on_next(1, start()), on_next(2, text("a", 1)), on_next(50, text("late", 2)), on_completed(60)]
    messages, observables, _ = run(first, second, backoff=1, disposed=220)
    assert kinds(messages) == ["stream.start", "text.delta"]
    assert [(s.subscribe, s.unsubscribe) for s in observables[1].subscriptions] == [(202, 220)]


def test_the_failed_attempt_is_released_before_the_next_one() -> None:
    messages, observables, _ = run(
        [on_error(1, TransportError("x"))], [on_next(1, start()), on_next(2, text("a", 1)), on_completed(3)]
    )
    assert [(s.subscribe, s.unsubscribe) for s in observables[0].subscriptions] == [(200, 201)]
    assert kinds(messages)[-1] == "C"


def test_never_empty_and_one_item() -> None:
    assert run([])[0] == []
    assert kinds(run([on_completed(1)])[0]) == ["C"]
    assert kinds(run([on_next(1, text("x", 1)), on_completed(2)])[0]) == ["text.delta", "C"]


def test_resubscribing_gives_the_same_output() -> None:
    scheduler = TestScheduler()
    first = [on_next(1, start()), on_error(2, TransportError("x"))]
    second = [on_next(1, start("b")), on_next(2, text("a", 1, "b")), on_completed(3)]
    source, _ = attempts_of(scheduler, first, second, first, second)
    stream = source.pipe(retry(rng=Fixed(0.5), scheduler=scheduler))
    outputs: list[list[Any]] = [[], []]
    stream.subscribe(outputs[0].append)
    scheduler.advance_to(100)
    stream.subscribe(outputs[1].append)
    scheduler.advance_to(200)
    assert outputs[0] == outputs[1] and [e.type for e in outputs[0]] == ["stream.start", "text.delta"]


def test_a_synchronous_source_that_fails_at_subscription_is_retried_on_the_scheduler() -> None:
    scheduler = TestScheduler()
    calls = 0

    def factory(_: Any) -> Observable[Any]:
        nonlocal calls
        calls += 1
        if calls < 3:
            return reactivex.throw(TransportError(f"refused {calls}"))
        return reactivex.from_iterable([start(), text("x", 1)])

    got: list[Any] = []
    errors: list[Exception] = []
    reactivex.defer(factory).pipe(retry(backoff=1, rng=Fixed(), scheduler=scheduler)).subscribe(got.append, errors.append)
    assert calls == 1 and got == []
    scheduler.advance_to(1)
    assert calls == 2
    scheduler.advance_to(3)
    assert calls == 3 and [e.type for e in got] == ["stream.start", "text.delta"] and not errors


# -- the pure parts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TransportError("x"), True),
        (RateLimitError("429"), True),
        (ProviderUnavailableError("500", status=500), True),
        (ProviderUnavailableError("529", status=529), True),
        (HTTPStatusError("408", status=408), True),
        (HTTPStatusError("409", status=409), True),
        (HTTPStatusError("418", status=418), False),
        (StreamTimeoutError("t", kind="idle", seconds=1), True),
        (ProviderError("o", code="overloaded_error", error_type="overloaded_error"), True),
        (ProviderError("o", error_type="api_error"), True),
        (ProviderError("o", code="server_error"), True),
        (ProviderError("o", code="rate_limit_exceeded"), True),
        (ProviderError("o", code="UNAVAILABLE", status=503), True),
        (ProviderError("o", code="RESOURCE_EXHAUSTED", status=429), True),
        (ProviderError("o", code="INVALID_ARGUMENT", status=400), False),
        (ProviderError("o", code="invalid_request_error"), False),
        (ProviderError("o"), False),
        (BadRequestError("400", status=400), False),
        (AuthenticationError("401", status=401), False),
        (ProtocolError("p"), False),
        (JsonError("j"), False),
        (LimitExceededError("l", limit="x", value=1), False),
        (RuntimeError("bug"), False),
    ],
    ids=lambda v: repr(v)[:60] if not isinstance(v, bool) else str(v),
)
def test_is_retryable(error: Exception, expected: bool) -> None:
    assert is_retryable(error) is expected


def test_the_policy_delay() -> None:
    policy = RetryPolicy(attempts=10, backoff=0.5, max_delay=4)
    assert [policy.ceiling(k) for k in range(1, 6)] == [0.5, 1, 2, 4, 4]
    assert policy.ceiling(10_000) == 4  # no float overflow
    assert policy.delay(3, TransportError("x"), Fixed(0.25)) == 0.5
    assert policy.delay(1, RateLimitError("x", retry_after=3), Fixed(0.25)) == 3
    assert policy.delay(1, RateLimitError("x", retry_after=5), Fixed(0.25)) is None


def test_the_core_without_rx() -> None:
    core = RetryCore(RetryPolicy(after_content="restart"), Fixed())
    assert core.feed(start("x")) == [] and core.feed(usage(1, "x")) == []
    out = core.feed(text("a", 2, "x"))
    assert [e.type for e in out] == ["stream.start", "usage", "text.delta"]
    step = core.fail(TransportError("drop"))
    assert step.error is None and step.delay == 0.5 and step.notice.action == "restart"
    core.begin()
    assert core.attempt == 2 and core.feed(start("y")) == []
    out = core.feed(text("a", 1, "y"))
    assert [(e.type, e.stream_id, e.seq) for e in out] == [("stream.restart", "x", 2), ("stream.start", "x", 3), ("text.delta", "x", 4)]


def make(**options: Any) -> Callable[[Observable[Any]], Observable[Any]]:
    return retry(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"attempts": 0}, "attempts=...) expected an int >= 1"),
        ({"attempts": True}, "attempts=...) expected an int >= 1"),
        ({"attempts": 2.0}, "attempts=...) expected an int >= 1"),
        ({"backoff": -1}, "backoff=...) expected a number of seconds >= 0"),
        ({"max_delay": "5"}, "max_delay=...) expected a number of seconds >= 0"),
        ({"backoff": None}, "expected numbers of seconds, got None"),
        ({"after_content": "later"}, "after_content=...) expected one of 'fail', 'restart', 'resume'"),
        ({"retry_on": ()}, "non-empty tuple of exception classes"),
        ({"retry_on": (int,)}, "non-empty tuple of exception classes"),
        ({"retry_on": "TransportError"}, "a predicate (error) -> bool"),
        ({"rng": 3}, "rng=...) expected an object with a random() method"),
        ({"on_retry": 3}, "on_retry=...) expected a callable"),
    ],
)
def test_bad_arguments_fail_at_call_time(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        make(**options)


def test_timedelta_durations_are_accepted() -> None:
    import datetime

    fail = [on_error(1, TransportError("x"))]
    _, observables, _ = run(fail, [on_completed(1)], backoff=datetime.timedelta(seconds=3), max_delay=datetime.timedelta(minutes=1))
    assert subscribed_at(observables[1]) == [204]


# -- resume: the core with a stand-in for the source's link -------------------------------------------------


class FakeLink:
    """Stands in for the HTTP source's ResumeLink: answers ``plan`` with ``answer`` and records calls."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[dict[str, Any]] = []
        self.begun: list[Any] = []
        self.attached = 1

    def begin(self, plan: Any) -> None:
        self.begun.append(plan)

    def plan(self, **seen: Any) -> Any:
        self.asked.append(seen)
        return self.answer


def feed(core: RetryCore, event: Any) -> list[Any]:
    return list(core.feed(event))


def complete(core: RetryCore) -> list[Any]:
    return list(core.complete())


def resuming(answer: Any) -> tuple[RetryCore, FakeLink]:
    link = FakeLink(answer)
    return RetryCore(RetryPolicy(after_content="resume", attempts=5), Fixed(), cast(Any, link)), link


def replay_plan() -> Any:
    from rxstream.sources._http import HttpRequest
    from rxstream.sources._providers import ResumePlan

    return ResumePlan("replay", HttpRequest(url="http://127.0.0.1/x", body={}, headers={}, wire="openai.responses", provider="t"))


def continue_plan() -> Any:
    from rxstream.sources._http import HttpRequest
    from rxstream.sources._providers import ResumePlan

    return ResumePlan("continue", HttpRequest(url="http://127.0.0.1/x", body={}, headers={}, wire="anthropic.messages", provider="t"))


def test_a_replay_drops_what_it_repeats_and_passes_what_is_new() -> None:
    core, link = resuming(replay_plan())
    first = [start("x"), text("a", 1, "x"), text("b", 2, "x")]
    assert [e.type for e in [o for e in first for o in feed(core, e)]] == ["stream.start", "text.delta", "text.delta"]
    step = core.fail(TransportError("drop"))
    assert step.notice.action == "resume" and link.asked == [{"text": "ab", "text_only": True, "provider_error": False}]
    core.begin()
    # The replay: the same three events (a fresh subscription's stream id), then new ones.
    assert [feed(core, e) for e in [start("y"), text("a", 1, "y"), text("b", 2, "y")]] == [[], [], []]
    out = feed(core, text("c", 3, "y"))
    assert [(e.type, e.stream_id, e.seq, e.text) for e in out] == [("text.delta", "x", 3, "c")]
    assert complete(core) == []


def test_a_replay_that_does_not_repeat_the_stream_becomes_a_restart() -> None:
    core, _ = resuming(replay_plan())
    for e in [start("x"), text("a", 1, "x"), text("b", 2, "x")]:
        feed(core, e)
    core.fail(TransportError("drop"))
    core.begin()
    assert feed(core, start("y")) == [] and feed(core, text("a", 1, "y")) == []
    out = feed(core, text("DIFFERENT", 5, "y"))
    assert [e.type for e in out] == ["stream.restart", "stream.start", "text.delta", "text.delta"]
    assert "did not repeat what was delivered" in out[0].reason


def test_a_replay_that_ends_early_becomes_a_restart() -> None:
    core, _ = resuming(replay_plan())
    for e in [start("x"), text("a", 1, "x"), text("b", 2, "x")]:
        feed(core, e)
    core.fail(TransportError("drop"))
    core.begin()
    feed(core, start("y"))
    out = complete(core)
    assert [e.type for e in out] == ["stream.restart", "stream.start"]
    assert "ended before repeating" in out[0].reason


def test_a_replay_cut_before_its_head_keeps_the_count_for_the_next() -> None:
    core, _ = resuming(replay_plan())
    for e in [start("x"), text("a", 1, "x")]:
        feed(core, e)
    core.fail(TransportError("drop"))
    core.begin()
    core.fail(TransportError("refused"))  # the resume request failed before any event
    core.begin()
    assert feed(core, start("z")) == [] and feed(core, text("a", 1, "z")) == []
    assert [e.text for e in feed(core, text("b", 2, "z"))] == ["b"]


def test_a_continuation_joins_the_stream() -> None:
    core, link = resuming(continue_plan())
    for e in [start("x"), usage(1, "x", out=1), text("Hello", 2, "x"), text(" ", 3, "x")]:
        feed(core, e)
    assert core.fail(ProviderError("overloaded", code="overloaded_error")).notice.action == "resume"
    assert link.asked[-1] == {"text": "Hello ", "text_only": True, "provider_error": True}
    core.begin()
    # The new response: its start is dropped, its usage added, the trimmed space not repeated.
    assert feed(core, start("y")) == [] and feed(core, usage(1, "y", out=1)) == []
    assert feed(core, text(" ", 2, "y")) == []
    out = feed(core, text("world", 3, "y"))
    assert [(e.type, e.seq) for e in out] == [("usage", 5), ("text.delta", 7)]
    assert (out[0].input_tokens, out[0].output_tokens) == (6, 2) and out[1].text == "world"
    out = feed(core, text(" again", 4, "y"))
    assert out[0].text == " again"  # only the continuation's start is compared


@pytest.mark.parametrize(
    ("delivered", "continuation", "expected"),
    [
        ("Hello ", [" world"], "Hello world"),
        ("Hello ", ["world"], "Hello world"),
        ("Hello ", [" \n\nWorld"], "Hello \n\nWorld"),
        ("Hello\n", ["\n", "\nWorld"], "Hello\n\nWorld"),
        ("Hello\n\n", ["\n", "\nWorld"], "Hello\n\nWorld"),
        ("Hello", [" world"], "Hello world"),
    ],
)
def test_a_continuation_does_not_repeat_the_whitespace_the_prefill_trimmed(
    delivered: str, continuation: list[str], expected: str
) -> None:
    core, _ = resuming(continue_plan())
    got = [e.text for e in feed(core, start("x")) + feed(core, text(delivered, 1, "x")) if e.type == "text.delta"]
    core.fail(TransportError("drop"))
    core.begin()
    for i, piece in enumerate(continuation):
        got += [e.text for e in feed(core, text(piece, i + 1, "y"))]
    assert "".join(got) == expected


def test_what_the_link_is_told_about_the_delivered_content() -> None:
    core, link = resuming("nope")
    thought = make_event(ReasoningDelta, stream_id="x", seq=1, at=1, text="hmm")
    for e in [start("x"), thought, text("a", 2, "x")]:
        feed(core, e)
    step = core.fail(TransportError("drop"))
    assert link.asked == [{"text": "a", "text_only": False, "provider_error": False}]
    assert step.notice.action == "restart" and step.notice.reason.endswith("resume not possible (nope), restarted")


def test_resume_without_an_http_source_upstream_restarts_and_says_so() -> None:
    first = [on_next(1, start()), on_next(2, text("a", 1)), on_error(3, TransportError("drop"))]
    second = [on_next(1, start("b")), on_next(2, text("ab", 1, "b")), on_completed(3)]
    messages, _, _ = run(first, second, after_content="resume")
    restart = values(messages)[2]
    assert isinstance(restart, StreamRestart)
    assert restart.reason == (
        "attempt 1 failed after content was delivered: TransportError: drop; "
        "resume not possible (no rxstream HTTP source upstream to resume), restarted"
    )
    assert kinds(messages)[-1] == "C"


def race_once(pause: float) -> tuple[int, int, list[Any]]:
    """Retry a failing source on thread timers, dispose after ``pause``: the subscriptions when
    dispose() returned, those 20 ms later, and what was delivered."""
    import threading
    import time

    from reactivex.scheduler import TimeoutScheduler

    subscriptions = 0
    lock = threading.Lock()

    def factory(_: Any) -> Observable[Any]:
        nonlocal subscriptions
        with lock:
            subscriptions += 1
        return reactivex.throw(TransportError("refused"))

    delivered: list[Any] = []
    stream = reactivex.defer(factory).pipe(
        retry(attempts=10_000, backoff=0.0002, rng=Fixed(), scheduler=TimeoutScheduler.singleton())
    )
    subscription = stream.subscribe(delivered.append, delivered.append, lambda: delivered.append("done"))
    time.sleep(pause)
    subscription.dispose()
    with lock:
        at_dispose = subscriptions
    time.sleep(0.02)
    with lock:
        return at_dispose, subscriptions, delivered


def test_disposal_racing_the_retry_timers_on_threads_stops_all_attempts() -> None:
    # Real time is the point here: the waits run on TimeoutScheduler's threads while this thread
    # disposes. After dispose() returns, at most an attempt already subscribing finishes
    # subscribing (and is disposed at once); no later attempt starts and nothing is delivered.
    for round_ in range(20):
        at_dispose, later, delivered = race_once(0.001 * (round_ % 5))
        assert at_dispose >= 1 and later <= at_dispose + 1
        assert delivered == []
