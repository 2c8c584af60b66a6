"""timeout(): first-event, first-content, idle and total deadlines in virtual time and over loopback."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import pytest
from reactivex.testing import ReactiveTest, TestScheduler

from rxstream._consume import collect
from rxstream._errors import RxStreamError, StreamTimeoutError
from rxstream._events import (
    ProviderEvent,
    ReasoningDelta,
    StreamEnd,
    StreamStart,
    TextDelta,
    Usage,
    make_event,
)
from rxstream.operators import normalize, timeout
from rxstream.operators._timeout import IDLE_RESOLUTION
from rxstream.sources import anthropic_messages
from rxstream.testing import Fault, ProviderEmulator
from tests.conftest import recording_paths

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error


def start() -> Any:
    return make_event(StreamStart, stream_id="t", seq=0, at=0, wire="openai.chat")


def text(t: str, seq: int) -> Any:
    return make_event(TextDelta, stream_id="t", seq=seq, at=seq, text=t)


def ping(seq: int) -> Any:
    return make_event(ProviderEvent, stream_id="t", seq=seq, at=seq, name="ping")


T0 = 200.0  # TestScheduler.start subscribes at 200 (ticks are seconds)


def run(messages: list[Any], **limits: Any) -> tuple[list[Any], TestScheduler, Any]:
    """Subscribe at T0 to a hot source of ``messages`` (times relative to T0); times come back relative too."""
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(*(type(m)(m.time + T0, m.value) for m in messages))
    results = scheduler.start(lambda: source.pipe(timeout(**limits, scheduler=scheduler)), disposed=T0 + 1000)
    relative = [type(m)(m.time - T0, m.value) for m in results.messages]
    return relative, scheduler, source


def error_of(messages: list[Any]) -> tuple[float, StreamTimeoutError]:
    last = messages[-1]
    assert last.value.kind == "E", messages
    assert isinstance(last.value.exception, StreamTimeoutError)
    return last.time, last.value.exception


def test_idle_fires_after_the_silence_never_before_and_at_most_a_tick_late() -> None:
    messages, _, source = run(
        [on_next(1, start()), on_next(2, text("a", 1)), on_next(3, text("b", 2)), on_next(30, text("late", 3))],
        idle=4,
    )
    when, error = error_of(messages)
    assert [m.value.value.type for m in messages[:-1]] == ["stream.start", "text.delta", "text.delta"]
    assert error.kind == "idle" and error.seconds == 4
    assert 3 + 4 <= when <= 3 + 4 + 4 / IDLE_RESOLUTION
    assert "no content for idle=4 s after 2 content event(s)" in str(error)
    # Upstream is disposed at the timeout: the late delta was never taken.
    assert source.subscriptions[0].unsubscribe == when + T0


def test_pings_and_metadata_do_not_reset_idle_but_content_does() -> None:
    steady = [on_next(1, start()), *(on_next(1 + i, text("x", i)) for i in range(1, 11))]  # content to t=11
    pings = [on_next(12 + i, ping(20 + i)) for i in range(10)]  # a ping every second, no content
    messages, _, _ = run([*steady, *pings], idle=3)
    when, error = error_of(messages)
    assert error.kind == "idle" and 11 + 3 <= when <= 11 + 3 + 3 / IDLE_RESOLUTION
    # A reasoning delta with only a signature is not content either.
    signature = make_event(ReasoningDelta, stream_id="t", seq=3, at=3, text="", signature="sig")
    messages, _, _ = run([on_next(1, start()), on_next(2, text("a", 1)), on_next(4, signature)], idle=3)
    when, error = error_of(messages)
    assert error.kind == "idle" and 5 <= when <= 5 + 3 / IDLE_RESOLUTION


def test_steady_content_never_trips_idle() -> None:
    content = [on_next(1 + 2 * i, text("x", i + 1)) for i in range(20)]
    end = make_event(StreamEnd, stream_id="t", seq=21, at=21)
    messages, _scheduler, _ = run([on_next(0.5, start()), *content, on_next(41, end), on_completed(41)], idle=2.5)
    assert messages[-1].value.kind == "C" and messages[-1].time == 41
    assert len(messages) == 23


def test_first_content_counts_only_content() -> None:
    usage = make_event(Usage, stream_id="t", seq=1, at=1, input_tokens=5)
    messages, _, _ = run([on_next(1, start()), on_next(2, usage), on_next(3, ping(2)), on_next(9, text("a", 3))],
                         first_content=6)
    when, error = error_of(messages)
    assert when == 6 and error.kind == "first_content"
    assert "got 3 event(s) without any" in str(error) and "raise timeout(first_content=...)" in str(error)


def test_first_event_is_met_by_any_event() -> None:
    messages, _, _ = run([on_next(7, start())], first_event=5)
    when, error = error_of(messages)
    assert when == 5 and error.kind == "first_event" and "got nothing" in str(error)
    messages, _, _ = run([on_next(4, start()), on_next(6, text("a", 1)), on_completed(8)], first_event=5)
    assert messages[-1].value.kind == "C"


def test_total_bounds_a_stream_that_keeps_streaming() -> None:
    content = [on_next(1 + i, text("x", i + 1)) for i in range(100)]
    messages, _, source = run([on_next(0.5, start()), *content], total=10, idle=5)
    when, error = error_of(messages)
    assert when == 10 and error.kind == "total" and source.subscriptions[0].unsubscribe == 10 + T0
    # start, the deltas at 1..10 (the one at 10 was due before the deadline's check), the error
    assert len(messages) == 1 + 10 + 1


def test_timedelta_deadlines_and_validation() -> None:
    messages, _, _ = run([on_next(9, start())], first_event=datetime.timedelta(seconds=2))
    assert error_of(messages)[0] == 2
    with pytest.raises(ValueError, match="at least one of"):
        timeout()
    with pytest.raises(ValueError, match=r"timeout\(idle=...\) expected a positive number of seconds"):
        timeout(idle=0)
    with pytest.raises(ValueError, match="total"):
        timeout(total="5")  # pyright: ignore[reportArgumentType]


def test_upstream_errors_and_completion_pass_through_and_cancel_the_timers() -> None:
    boom = RxStreamError("boom")
    messages, _, _ = run([on_next(1, start()), on_next(2, text("a", 1)), on_error(3, boom)], idle=2, total=50)
    assert messages[-1].value.kind == "E" and messages[-1].value.exception is boom and messages[-1].time == 3
    messages, _, _ = run([on_next(1, start()), on_completed(2)], total=50, first_content=40)
    assert [m.value.kind for m in messages] == ["N", "C"]


def test_a_real_stall_on_loopback_is_caught_and_the_connection_closed() -> None:
    """The emulator pauses mid-body (the socket stays open); idle ends it and closes the request."""
    recording = next(p for p in recording_paths() if p.name == "anthropic-messages-text-1.sse")

    async def main() -> tuple[Exception | None, Any, Any]:
        fault = Fault(stall_after=6, stall_seconds=5.0)
        async with ProviderEmulator(recording, pace="fast", faults=[fault]) as emu:
            source = anthropic_messages(
                model="claude-3-opus-latest", messages=[{"role": "user", "content": "hi"}], api_key="test",
                base_url=emu.base_url,
            )
            began = asyncio.get_running_loop().time()
            try:
                await collect(source.pipe(normalize(), timeout(idle=0.25, first_content=5)))
            except StreamTimeoutError as exc:
                took = asyncio.get_running_loop().time() - began
                for _ in range(100):  # the server notices the closed connection shortly after
                    if emu.requests and emu.requests[-1].outcome.closed_by_client:
                        break
                    await asyncio.sleep(0.01)
                return exc, took, emu.requests[-1].outcome
        return None, None, None

    error, took, outcome = asyncio.run(main())
    assert isinstance(error, StreamTimeoutError) and error.kind == "idle"
    assert took < 2.0  # far less than the 5 s stall
    assert error.partial is not None and error.partial.text  # what arrived before the stall is kept
    assert outcome.closed_by_client and not outcome.finished and 0 < outcome.events_sent < 10


def test_it_is_exported() -> None:
    from rxstream import operators

    assert operators.timeout is timeout
    assert Path(__file__).exists()
