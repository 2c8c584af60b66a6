"""guard(): budgets end a stream with finish/usage/stream.end, dispose upstream, and close the HTTP request."""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
import reactivex
from reactivex import Observable, abc
from reactivex import operators as ops
from reactivex.disposable import Disposable
from reactivex.scheduler import TimeoutScheduler
from reactivex.testing import ReactiveTest, TestScheduler

from rxstream._consume import collect
from rxstream._errors import RxStreamError, StreamTimeoutError
from rxstream._events import (
    Event,
    EventBase,
    Finish,
    JsonValue,
    StreamEnd,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
    make_event,
)
from rxstream._tokens import TOOL_CALL_OVERHEAD, estimate_request_tokens, tokenizer_for_model
from rxstream.operators import aggregate_usage, guard, normalize, parse_json
from rxstream.operators._guard import GuardCore
from rxstream.sources import load_recording, openai_chat
from rxstream.testing import ProviderEmulator
from tests.conftest import RECORDINGS

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error


def count(t: str) -> int:
    return tokenizer_for_model("gpt-4o").count(t)


def start(request: dict[str, Any] | None = None) -> Any:
    return make_event(StreamStart, stream_id="t", seq=0, at=0, wire="openai.chat", model="gpt-4o", request=request)


def text(t: str, seq: int = 1, output: int = 0) -> Any:
    return make_event(TextDelta, stream_id="t", seq=seq, at=seq * 10, output=output, text=t)


def end(seq: int) -> Any:
    return make_event(StreamEnd, stream_id="t", seq=seq, at=seq * 10)


def piped(events: list[Any], operator: Any) -> tuple[list[Any], list[Exception], bool]:
    out: list[Any] = []
    errors: list[Exception] = []
    done: list[bool] = []
    reactivex.from_iterable(events).pipe(operator).subscribe(out.append, errors.append, lambda: done.append(True))
    return out, errors, bool(done)


WORDS = [" one", " two", " three", " four", " five", " six", " seven", " eight"]  # one token each


# -- the Rx shell in virtual time ---------------------------------------------------------------------


def test_marble_diagram() -> None:
    # The docstring diagram: -s-a-b-c-d-| [ guard(max_output_tokens=2) ] -s-a-(b,f,u,e)| all at b.
    scheduler = TestScheduler()
    s, a, b, c, d = start(), text(" one", 1), text(" two", 2), text(" three", 3), text(" four", 4)
    xs = scheduler.create_hot_observable(
        on_next(201, s), on_next(203, a), on_next(205, b), on_next(207, c), on_next(209, d), on_completed(211)
    )
    results = scheduler.start(lambda: xs.pipe(guard(max_output_tokens=2)))
    values = [cast(Any, m.value).value for m in results.messages[:-1]]
    assert [m.time for m in results.messages] == [201, 203, 205, 205, 205, 205, 205]
    assert values[:3] == [s, a, b]
    f, u, e = values[3:]
    assert isinstance(f, Finish) and (f.reason, f.raw_reason, f.output) == ("length", "guard:max_output_tokens", 0)
    assert isinstance(u, Usage) and u.final and u.output_tokens == 2 and u.source == "estimated"
    assert isinstance(e, StreamEnd) and (e.seq, e.at) == (b.seq, b.at)
    assert results.messages[-1] == on_completed(205)
    assert [(sub.subscribe, sub.unsubscribe) for sub in xs.subscriptions] == [(200, 205)]


def test_never_emits_nothing() -> None:
    scheduler = TestScheduler()
    results = scheduler.start(lambda: reactivex.never().pipe(guard(max_output_tokens=5)))
    assert results.messages == []


def test_never_with_a_duration_fails_as_a_total_timeout() -> None:
    scheduler = TestScheduler()
    results = scheduler.start(lambda: reactivex.never().pipe(guard(max_duration=30, scheduler=scheduler)))
    assert [m.time for m in results.messages] == [230]
    error = cast(Any, results.messages[0].value).exception
    assert isinstance(error, StreamTimeoutError) and error.kind == "total" and error.seconds == 30
    assert "got no event" in str(error)


def test_empty_completes() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_completed(10))
    results = scheduler.start(lambda: xs.pipe(guard(max_output_tokens=5, max_duration=100)))
    assert results.messages == [on_completed(210)]


def test_one_item() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, start()), on_completed(20))
    results = scheduler.start(lambda: xs.pipe(guard(max_output_tokens=5)))
    assert results.messages == [on_next(210, start()), on_completed(220)]


def test_upstream_error_passes_unchanged() -> None:
    boom = RuntimeError("socket closed")
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, start()), on_error(20, boom))
    results = scheduler.start(lambda: xs.pipe(guard(max_output_tokens=5)))
    assert [m.time for m in results.messages] == [210, 220]
    assert cast(Any, results.messages[-1].value).exception is boom


def test_dispose_midway_unsubscribes_upstream_and_the_timer() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, start()), on_next(400, text(" late")), on_completed(500))
    results = scheduler.start(lambda: xs.pipe(guard(max_duration=150, scheduler=scheduler)), disposed=300)
    assert results.messages == [on_next(210, start())]
    assert [(s.subscribe, s.unsubscribe) for s in xs.subscriptions] == [(200, 300)]


def test_max_duration_in_virtual_time() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, start()), on_next(220, text(" one", 1)), on_next(240, text(" two", 2)), on_completed(300)
    )
    results = scheduler.start(lambda: xs.pipe(guard(max_duration=datetime.timedelta(seconds=30))))
    assert [m.time for m in results.messages] == [210, 220, 230, 230, 230, 230]
    f, u, e = (cast(Any, m.value).value for m in results.messages[2:5])
    assert isinstance(f, Finish) and f.raw_reason == "guard:max_duration" and f.reason == "length"
    assert isinstance(u, Usage) and u.final and u.output_tokens == 1
    assert isinstance(e, StreamEnd) and e.seq == 1, "takes the seq of the last event"
    assert [(s.subscribe, s.unsubscribe) for s in xs.subscriptions] == [(200, 230)]


def test_a_stream_that_ends_in_time_is_left_alone() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, start()), on_next(20, text(" one")), on_next(30, end(2)), on_completed(40))
    results = scheduler.start(lambda: xs.pipe(guard(max_duration=35, max_output_tokens=5, scheduler=scheduler)))
    assert [m.time for m in results.messages] == [210, 220, 230, 240]


def test_resubscribe_gives_the_same_output() -> None:
    source = reactivex.from_iterable([start(), *(text(w, i + 1) for i, w in enumerate(WORDS)), end(9)]).pipe(
        guard(max_output_tokens=3)
    )
    first: list[EventBase] = []
    second: list[EventBase] = []
    source.subscribe(first.append)
    source.subscribe(second.append)
    assert first == second and isinstance(first[-1], StreamEnd)


# -- budgets -----------------------------------------------------------------------------------------


def test_the_delta_that_reaches_the_output_budget_is_the_last() -> None:
    events = [start(), *(text(w, i + 1) for i, w in enumerate(WORDS)), end(9)]
    for budget in range(1, 8):
        out, errors, done = piped(events, guard(max_output_tokens=budget))
        assert not errors and done
        deltas = [e for e in out if isinstance(e, TextDelta)]
        assert len(deltas) == budget, budget
        assert [e.type for e in out[-3:]] == ["finish", "usage", "stream.end"]
        assert out[-2].output_tokens == budget


def test_within_budget_nothing_changes() -> None:
    events = [start(), *(text(w, i + 1) for i, w in enumerate(WORDS)), end(9)]
    out, _, done = piped(events, guard(max_output_tokens=9))
    assert out == events and done
    # Reaching the budget exactly with the last delta is reaching it: the provider's own
    # max_tokens would also say "length" there.
    out, _, done = piped(events, guard(max_output_tokens=8))
    assert out[:9] == events[:9] and [e.type for e in out[9:]] == ["finish", "usage", "stream.end"] and done


def test_long_deltas_are_counted_exactly_near_the_budget() -> None:
    # Deltas of many tokens: the budget is judged on the exact count, not the extrapolation.
    sentence = " The quick brown fox jumps over the lazy dog."
    events = [start(), *(text(sentence, i + 1) for i in range(20)), end(21)]
    per = count(sentence)
    out, _, _ = piped(events, guard(max_output_tokens=5 * per + 1))
    assert len([e for e in out if isinstance(e, TextDelta)]) == 6
    assert out[-2].output_tokens == count(sentence * 6)


def test_the_total_budget_counts_the_estimated_input() -> None:
    request = {"messages": [{"role": "user", "content": "Count to eight"}]}
    input_tokens = estimate_request_tokens(request, count)
    assert input_tokens is not None
    events = [start(request), *(text(w, i + 1) for i, w in enumerate(WORDS)), end(9)]
    out, _, _ = piped(events, guard(max_total_tokens=input_tokens + 3))
    assert len([e for e in out if isinstance(e, TextDelta)]) == 3
    assert out[-3].raw_reason == "guard:max_total_tokens"
    usage = out[-2]
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (input_tokens, 3, input_tokens + 3)
    assert usage.source == "estimated"


def test_the_total_budget_prefers_the_providers_input() -> None:
    reported = make_event(Usage, stream_id="t", seq=1, at=10, input_tokens=100, output_tokens=1, total_tokens=101)
    events = [start({"messages": [{"role": "user", "content": "Hi"}]}), reported,
              *(text(w, i + 2) for i, w in enumerate(WORDS)), end(10)]
    out, _, _ = piped(events, guard(max_total_tokens=104))
    assert len([e for e in out if isinstance(e, TextDelta)]) == 4
    usage = out[-2]
    assert usage.input_tokens == 100 and usage.output_tokens == 4 and usage.source == "mixed"


def test_a_provider_report_can_cross_the_budget() -> None:
    reported = make_event(Usage, stream_id="t", seq=2, at=20, input_tokens=10, output_tokens=50, total_tokens=60)
    events = [start(), text(" one", 1), reported, text(" two", 3), end(4)]
    out, _, _ = piped(events, guard(max_output_tokens=40))
    assert out[2] is reported and [e.type for e in out[3:]] == ["finish", "usage", "stream.end"]
    assert out[-2].output_tokens == 50 and out[-2].source == "provider"


def test_every_unfinished_output_gets_a_finish() -> None:
    done0 = make_event(Finish, stream_id="t", seq=3, at=30, output=0, reason="stop")
    events = [start(), text(" one", 1, 0), text(" two", 2, 1), done0, text(" three", 4, 2), text(" four", 5, 1), end(6)]
    out, _, _ = piped(events, guard(max_output_tokens=4))
    finishes = [e for e in out if isinstance(e, Finish)]
    assert [(f.output, f.raw_reason) for f in finishes] == [(0, None), (1, "guard:max_output_tokens"), (2, "guard:max_output_tokens")]


def test_a_cut_tool_call_is_not_closed_and_parse_json_reports_it_truncated() -> None:
    call = make_event(ToolCallStart, stream_id="t", seq=1, at=1, call_index=0, name="search")
    pieces = ['{"query": "', "cheap", " blue", " widgets", " in", " stock", '"}']
    deltas = [make_event(ToolCallDelta, stream_id="t", seq=i + 2, at=i + 2, call_index=0, arguments_delta=p) for i, p in enumerate(pieces)]
    budget = TOOL_CALL_OVERHEAD + count("search") + count('{"query": "cheap blue widgets')
    out, _, _ = piped([start(), call, *deltas, end(20)], reactivex.compose(guard(max_output_tokens=budget), parse_json()))
    assert not any(isinstance(e, ToolCallDone) for e in out)
    values = [e for e in out if isinstance(e, JsonValue)]
    assert len(values) == 1 and values[0].truncated and values[0].value == {"query": "cheap blue widgets"}
    assert values[0].error is not None and "finish reason length" in values[0].error
    assert out[-1].type == "stream.end"


def test_guard_then_aggregate_usage_gives_one_final_usage() -> None:
    events = [start(), *(text(w, i + 1) for i, w in enumerate(WORDS)), end(9)]
    out, _, _ = piped(events, reactivex.compose(guard(max_output_tokens=3), aggregate_usage()))
    finals = [e for e in out if isinstance(e, Usage)]
    assert len(finals) == 1 and finals[0].output_tokens == 3 and out[-2] is finals[0]


def test_aggregate_usage_then_guard_gives_one_final_usage() -> None:
    events = [start(), *(text(w, i + 1) for i, w in enumerate(WORDS)), end(9)]
    out, _, _ = piped(events, reactivex.compose(aggregate_usage(live=True, every_tokens=2), guard(max_output_tokens=5)))
    assert [u.final for u in out if isinstance(u, Usage)] == [False, False, True]
    assert out[-2].output_tokens == 5


def test_a_counter_that_raises_fails_the_stream() -> None:
    def broken(t: str) -> int:
        raise ValueError("no tokenizer today")

    out, errors, _ = piped([start(), text(" one")], guard(max_output_tokens=1, counter=broken))
    assert out == [start()]
    assert len(errors) == 1 and isinstance(errors[0], RxStreamError) and isinstance(errors[0].__cause__, ValueError)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs a budget"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"max_total_tokens": -5}, "max_total_tokens"),
        ({"max_output_tokens": 1.5}, "max_output_tokens"),
        ({"max_output_tokens": True}, "max_output_tokens"),
        ({"max_duration": 0}, "max_duration"),
        ({"max_duration": datetime.timedelta(seconds=-1)}, "max_duration"),
        ({"max_duration": "10s"}, "max_duration"),
        ({"max_duration": float("inf")}, "max_duration"),
        ({"max_output_tokens": 5, "counter": 3}, "counter must be"),
    ],
)
def test_arguments_are_checked_at_call_time(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        guard(**options)


def test_core_without_rx() -> None:
    core = GuardCore(max_output_tokens=2)
    out: list[Event] = []
    for event in [start(), text(" one", 1), text(" two", 2), text(" three", 3)]:
        out.extend(core.feed(event))
    assert core.tripped and [e.type for e in out][-3:] == ["finish", "usage", "stream.end"]
    assert core.feed(text(" four", 4)) == [] and core.expire() == [] and core.flush() == []


def test_a_timer_on_another_thread_keeps_the_grammar() -> None:
    # TimeoutScheduler fires on a thread while the source emits on another: one lock orders them.
    stop = threading.Event()
    seen: list[str] = []
    finished = threading.Event()

    def source(observer: abc.ObserverBase[Any], _: abc.SchedulerBase | None = None) -> abc.DisposableBase:
        def run() -> None:
            observer.on_next(start())
            i = 0
            deadline = time.monotonic() + 5
            while not stop.is_set() and time.monotonic() < deadline:
                i += 1
                observer.on_next(text(" x", i))

        threading.Thread(target=run, daemon=True).start()
        return Disposable(stop.set)

    def on_next(e: Any) -> None:
        seen.append("next" if not finished.is_set() else "next-after-terminal")

    def on_terminal(*_: Any) -> None:
        seen.append("terminal")
        finished.set()

    Observable(source).pipe(guard(max_duration=0.02, scheduler=TimeoutScheduler.singleton())).subscribe(
        on_next, on_terminal, on_terminal
    )
    assert finished.wait(5)
    assert stop.wait(5), "upstream was disposed"
    time.sleep(0.05)  # real threads: let a late on_next show up if the lock were missing
    assert seen.count("terminal") == 1 and "next-after-terminal" not in seen


# -- over real HTTP ------------------------------------------------------------------------------------


class WatchedTransport(httpx.AsyncBaseTransport):
    """Records how much of each response body was read and when the client closed it."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.received = 0
        self.exhausted = False
        self.closed_at: float | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = cast(httpx.AsyncByteStream, response.stream)
        watcher = self

        class Watched(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                async for chunk in body:
                    watcher.received += len(chunk)
                    yield chunk
                watcher.exhausted = True

            async def aclose(self) -> None:
                watcher.closed_at = time.monotonic()
                await body.aclose()

        return httpx.Response(response.status_code, headers=response.headers, stream=Watched(), extensions=response.extensions)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_over_the_emulator_the_request_is_closed_once_the_budget_is_crossed() -> None:
    recording = RECORDINGS / "openai-chat-json-object-1.sse"
    body_size = len(recording.read_bytes())
    recorded_events = len(load_recording(recording)) - 1
    pace = 50.0  # events per second: the whole recording would take about 3.6 s
    request_messages = [{"role": "user", "content": "Where is the Golden Gate Bridge? Answer in JSON."}]

    async def main() -> tuple[list[Any], Any, WatchedTransport, float, float, ProviderEmulator]:
        transport = WatchedTransport()
        async with ProviderEmulator(recording, pace=pace) as emu, httpx.AsyncClient(transport=transport) as client:
            events: list[Any] = []
            source = openai_chat(
                model="gpt-4o-2024-08-06", messages=request_messages, api_key="test",
                base_url=f"{emu.base_url}/v1", client=client,
            )
            began = time.monotonic()
            result = await collect(source.pipe(normalize(), guard(max_output_tokens=10), ops.do_action(events.append)))
            completed = time.monotonic()
            for _ in range(300):  # the close reaches the server on a later turn of the loop
                outcome = emu.requests[0].outcome if emu.requests else None
                if transport.closed_at is not None and outcome is not None and outcome.closed_by_client:
                    break
                await asyncio.sleep(0.01)
            return events, result, transport, began, completed, emu

    events, result, transport, began, completed, emu = asyncio.run(main())
    finish, usage, stream_end = events[-3:]
    assert isinstance(finish, Finish) and finish.reason == "length" and finish.raw_reason == "guard:max_output_tokens"
    assert isinstance(usage, Usage) and usage.final and usage.output_tokens is not None and usage.output_tokens >= 10
    assert usage.source == "estimated" and usage.estimator is not None
    assert usage.input_tokens == estimate_request_tokens({"messages": request_messages}, count)
    assert isinstance(stream_end, StreamEnd)
    assert result.completed and result.usage == usage and result.outputs[0].finish_reason == "length"
    # The connection was closed by the client mid-body, long before the recording's end.
    assert transport.closed_at is not None, "the response was never closed"
    assert not transport.exhausted and 0 < transport.received < body_size
    assert transport.closed_at - began < (recorded_events / pace) / 2
    assert completed - began < (recorded_events / pace) / 2
    assert len(emu.requests) == 1 and emu.requests[0].status == 200
    # And the server saw it: it stopped sending because the client went away.
    outcome = emu.requests[0].outcome
    assert outcome is not None and outcome.closed_by_client and not outcome.finished and not outcome.dropped
    assert 0 < outcome.events_sent < recorded_events
