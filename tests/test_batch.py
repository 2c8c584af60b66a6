"""batch(): the pure core, the operator in virtual time, its timer races, and real streams."""

from __future__ import annotations

import asyncio
import datetime
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import reactivex
from reactivex import Observable, abc
from reactivex import operators as ops
from reactivex.disposable import Disposable
from reactivex.scheduler import CurrentThreadScheduler, ImmediateScheduler, TimeoutScheduler
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.marbles import marbles_testing

from rxstream._consume import collect
from rxstream._errors import RxStreamError
from rxstream._events import (
    Finish,
    ReasoningDelta,
    RefusalDelta,
    StreamEnd,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    make_event,
)
from rxstream.operators import normalize
from rxstream.operators._batch import BatchCore, batch, seconds_of, timer_scheduler
from rxstream.sources import openai_chat
from rxstream.testing import ProviderEmulator
from tests.conftest import RECORDINGS, recording_paths
from tests.helpers import accumulate, run_recording

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error


def text(t: str, seq: int = 1, output: int = 0, meta: dict[str, Any] | None = None) -> Any:
    return make_event(TextDelta, stream_id="t", seq=seq, at=seq * 10, meta=meta, output=output, text=t)


def reasoning(t: str, seq: int = 1, signature: str | None = None) -> Any:
    return make_event(ReasoningDelta, stream_id="t", seq=seq, at=seq * 10, text=t, signature=signature)


def args(a: str, seq: int = 1, call_index: int = 0) -> Any:
    return make_event(
        ToolCallDelta,
        stream_id="t",
        seq=seq,
        at=seq * 10,
        call_index=call_index,
        call_id=f"c{call_index}",
        arguments_delta=a,
    )


def finish(seq: int = 9) -> Any:
    return make_event(Finish, stream_id="t", seq=seq, at=seq * 10, reason="stop")


def start() -> Any:
    return make_event(StreamStart, stream_id="t", seq=0, at=0, wire="openai.chat")


def feed_all(core: BatchCore, events: list[Any]) -> list[Any]:
    out: list[Any] = []
    for e in events:
        out += core.feed(e)
    return out + core.flush()


def texts(events: list[Any]) -> list[str]:
    return [e.text if hasattr(e, "text") else getattr(e, "arguments_delta", e.type) for e in events]


# -- the pure core -------------------------------------------------------------------------------


def test_core_merges_a_run_and_keeps_the_last_parts_seq_and_at() -> None:
    out = feed_all(BatchCore(), [start(), text("a", 1), text("b", 2), text("c", 3), finish(4)])
    assert texts(out) == ["stream.start", "abc", "finish"]
    assert (out[1].seq, out[1].at) == (3, 30)


def test_core_keeps_targets_apart() -> None:
    events = [
        text("a", 1),
        text("b", 2, output=1),
        text("c", 3, output=1),
        reasoning("r", 4),
        reasoning("s", 5),
        make_event(RefusalDelta, stream_id="t", seq=6, at=60, text="no"),
        args('{"x"', 7, call_index=0),
        args(":1}", 8, call_index=0),
        args("{}", 9, call_index=1),
        text("d", 10, meta={"block_index": 1}),
        text("e", 11, meta={"block_index": 2}),
    ]
    out = feed_all(BatchCore(), events)
    assert texts(out) == ["a", "bc", "rs", "no", '{"x":1}', "{}", "d", "e"]
    assert [type(e) for e in out] == [
        TextDelta,
        TextDelta,
        ReasoningDelta,
        RefusalDelta,
        ToolCallDelta,
        ToolCallDelta,
        TextDelta,
        TextDelta,
    ]


def test_core_ends_a_reasoning_run_at_its_signature() -> None:
    out = feed_all(BatchCore(), [reasoning("a", 1), reasoning("b", 2, signature="sig"), reasoning("c", 3)])
    assert [(e.text, e.signature) for e in out] == [("ab", "sig"), ("c", None)]


def test_core_merges_responses_deltas_whose_meta_differs_by_sequence_number() -> None:
    out = feed_all(
        BatchCore(),
        [
            text("a", 1, meta={"item_id": "m", "sequence_number": 4}),
            text("b", 2, meta={"item_id": "m", "sequence_number": 5}),
        ],
    )
    assert texts(out) == ["ab"] and out[0].meta == {"item_id": "m", "sequence_number": 5}


def test_max_chars_is_never_exceeded_unless_one_delta_is_longer() -> None:
    pieces = ["ab", "cde", "f", "ghij", "klmnopq", "r", "s"]
    out = feed_all(BatchCore(max_chars=4), [text(p, i + 1) for i, p in enumerate(pieces)])
    assert texts(out) == ["ab", "cdef", "ghij", "klmnopq", "rs"]
    assert "".join(texts(out)) == "".join(pieces)


def test_a_run_that_reaches_a_limit_goes_out_at_once() -> None:
    core = BatchCore(max_chars=3)
    assert core.feed(text("ab", 1)) == [] and texts(core.feed(text("c", 2))) == ["abc"]
    assert core.pending == 0
    core = BatchCore(max_events=2)
    assert core.feed(args("1", 1)) == [] and texts(core.feed(args("2", 2))) == ["12"]
    assert texts(core.feed(args("345", 3))) == [] and texts(core.flush()) == ["345"]


def test_generation_counts_runs_started() -> None:
    core = BatchCore()
    core.feed(text("a", 1))
    core.feed(text("b", 2))
    assert core.generation == 1
    core.feed(finish(3))
    core.feed(text("c", 4))
    assert core.generation == 2 and core.pending == 1


def test_abort_hands_over_the_held_run() -> None:
    core = BatchCore()
    core.feed(text("a", 1))
    core.feed(text("b", 2))
    assert texts(core.abort(RuntimeError("x"))) == ["ab"] and core.flush() == []


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_interval": 0},
        {"max_interval": -1},
        {"max_interval": "1"},
        {"max_interval": True},
        {"max_interval": float("inf")},
        {"max_interval": datetime.timedelta(0)},
        {"max_chars": 0},
        {"max_chars": 1.5},
        {"max_chars": True},
        {"max_events": -2},
        {"max_events": "3"},
    ],
)
def test_bad_configuration_fails_at_call_time(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"batch\(max_"):
        batch(**kwargs)


def test_durations_accept_seconds_and_timedeltas() -> None:
    assert seconds_of("batch", "max_interval", datetime.timedelta(milliseconds=20), allow_zero=False) == 0.02
    assert seconds_of("smooth", "delay", 0, allow_zero=True) == 0.0
    assert seconds_of("smooth", "delay", None, allow_zero=True) is None


def test_timer_scheduler_resolution() -> None:
    given, other = TestScheduler(), TestScheduler()
    assert timer_scheduler(given, other) is given
    assert timer_scheduler(None, other) is other
    # A trampoline would block the source for the whole interval: skipped.
    assert timer_scheduler(None, CurrentThreadScheduler.singleton()) is TimeoutScheduler.singleton()
    assert timer_scheduler(None, ImmediateScheduler.singleton()) is TimeoutScheduler.singleton()
    assert timer_scheduler(None, None) is TimeoutScheduler.singleton()

    async def in_loop() -> abc.SchedulerBase:
        return timer_scheduler(None, None)

    assert isinstance(asyncio.run(in_loop()), AsyncIOScheduler)


# -- the operator in virtual time ----------------------------------------------------------------


def test_marble_diagram() -> None:
    a, b, c, s = text("a", 1), text("b", 2), text("c", 3), finish(4)
    x = text("ab", 2)
    values: dict[str | float, Any] = {"a": a, "b": b, "c": c, "s": s, "x": x}
    with marbles_testing(timespan=1) as (begin, cold, _hot, exp):
        source = cold("-a-b----c-s-----|", values, None)
        expected = exp("-----x----(c,s)-|", values, None)
        # No scheduler= given: the timer runs on the subscribe-time scheduler, the marbles' clock.
        assert begin(source.pipe(batch(max_interval=4))) == expected


def run_virtual(
    messages: list[Any], operator: Callable[[TestScheduler], Any], *, disposed: int = 1000, hot: bool = False
) -> tuple[list[Any], Any]:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(*messages) if hot else scheduler.create_cold_observable(*messages)
    results = scheduler.start(lambda: xs.pipe(operator(scheduler)), disposed=disposed)
    return results.messages, xs


def test_interval_runs_from_the_first_part_of_a_run() -> None:
    messages, _ = run_virtual(
        [
            on_next(10, text("a", 1)),
            on_next(20, text("b", 2)),
            on_next(35, text("c", 3)),
            on_next(36, text("d", 4)),
            on_completed(100),
        ],
        lambda s: batch(max_interval=15, scheduler=s),
    )
    assert [(m.time, m.value.value.text if m.value.kind == "N" else "|") for m in messages] == [
        (225, "ab"),
        (250, "cd"),
        (300, "|"),
    ]


def test_never_emits_nothing() -> None:
    scheduler = TestScheduler()
    results = scheduler.start(lambda: reactivex.never().pipe(batch(scheduler=scheduler)))
    assert results.messages == []


def test_empty_completes() -> None:
    messages, _ = run_virtual([on_completed(10)], lambda s: batch(scheduler=s))
    assert messages == [on_completed(210)]


def test_one_item_is_held_until_completion() -> None:
    a = text("a", 1)
    messages, _ = run_virtual(
        [on_next(10, a), on_completed(20)], lambda s: batch(max_interval=50, scheduler=s)
    )
    assert messages == [on_next(220, a), on_completed(220)]


def test_upstream_error_delivers_the_held_run_first() -> None:
    boom = RuntimeError("socket closed")
    messages, _ = run_virtual(
        [on_next(10, text("a", 1)), on_next(15, text("b", 2)), on_error(20, boom)],
        lambda s: batch(max_interval=50, scheduler=s),
    )
    assert [m.time for m in messages] == [220, 220]
    assert messages[0].value.value.text == "ab"
    assert messages[1].value.exception is boom


def test_a_failing_merge_is_reported_typed_and_stops_upstream(monkeypatch: pytest.MonkeyPatch) -> None:
    # batch calls no user code; this is its one failure path (the RxPY "callback raises" case).
    def broken(_: Any) -> Any:
        raise MemoryError("no room")

    monkeypatch.setattr("rxstream.operators._batch.merge_run", broken)
    messages, xs = run_virtual(
        [on_next(10, text("a", 1)), on_next(20, finish(2)), on_next(30, text("b", 3)), on_completed(40)],
        lambda s: batch(max_interval=50, scheduler=s),
        hot=False,
    )
    assert len(messages) == 1 and messages[0].time == 220
    error = messages[0].value.exception
    assert isinstance(error, RxStreamError) and isinstance(error.__cause__, MemoryError)
    assert [(s.subscribe, s.unsubscribe) for s in xs.subscriptions] == [(200, 220)]


def test_dispose_midway_cancels_the_timer_and_unsubscribes() -> None:
    messages, xs = run_virtual(
        [on_next(210, text("a", 1)), on_next(250, text("b", 2)), on_completed(400)],
        lambda s: batch(max_interval=100, scheduler=s),
        disposed=260,
        hot=True,
    )
    # The run held at 260 is dropped with the subscription: its timer (due at 310) never fires.
    assert messages == []
    assert [(s.subscribe, s.unsubscribe) for s in xs.subscriptions] == [(200, 260)]


def test_resubscribe_gives_the_same_output() -> None:
    events = [start(), text("a", 1), text("b", 2), finish(3)]
    source = reactivex.from_iterable(events).pipe(batch(max_interval=None))
    first: list[Any] = []
    second: list[Any] = []
    source.subscribe(first.append)
    source.subscribe(second.append)
    assert first == second and texts(first) == ["stream.start", "ab", "finish"]
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(
        on_next(5, text("a", 1)), on_next(6, text("b", 2)), on_completed(50)
    )
    timed_source = xs.pipe(batch(max_interval=10, scheduler=scheduler))
    seen: list[list[Any]] = [[], []]
    for sink in seen:
        timed_source.subscribe(sink.append)
    scheduler.start()
    assert texts(seen[0]) == texts(seen[1]) == ["ab"]


def test_no_timer_mode_batches_by_size_and_next_event_only() -> None:
    events = [text(c, i + 1) for i, c in enumerate("abcdefg")] + [finish(9), text("h", 10)]
    out: list[Any] = []
    reactivex.from_iterable(events).pipe(batch(max_interval=None, max_events=3)).subscribe(out.append)
    assert texts(out) == ["abc", "def", "g", "finish", "h"]


# -- the timer races -------------------------------------------------------------------------------


def test_a_stale_timer_waits_out_the_interval_of_the_run_held_now() -> None:
    # Run 1 starts at 10 (timer due at 30) and is emitted at 12 by its size; run 2 starts at
    # 25. When the timer armed for run 1 fires at 30, run 2 has waited only 5: it goes out at 45.
    messages, _ = run_virtual(
        [
            on_next(10, text("a", 1)),
            on_next(12, text("bcd", 2)),
            on_next(25, text("e", 3)),
            on_completed(100),
        ],
        lambda s: batch(max_interval=20, max_chars=4, scheduler=s),
    )
    assert [(m.time, m.value.value.text) for m in messages if m.value.kind == "N"] == [
        (212, "abcd"),
        (245, "e"),
    ]


def test_same_tick_source_first_joins_the_run_then_the_timer_emits_it() -> None:
    # A hot source's notification was queued before the timer: at tick 220 the delta comes first.
    messages, _ = run_virtual(
        [on_next(210, text("a", 1)), on_next(220, text("b", 2)), on_next(230, finish(3)), on_completed(240)],
        lambda s: batch(max_interval=10, scheduler=s),
        hot=True,
    )
    assert [(m.time, texts([m.value.value])[0]) for m in messages if m.value.kind == "N"] == [
        (220, "ab"),
        (230, "finish"),
    ]


def paced_source(scheduler: TestScheduler, events: list[Any], gap: float) -> Observable[Any]:
    """Emits each next event ``gap`` after the last, scheduled only once the last one was sent
    (so at a shared tick the operator's timer, armed on the first event, goes first)."""

    def subscribe(observer: abc.ObserverBase[Any], _: abc.SchedulerBase | None = None) -> abc.DisposableBase:
        items = iter(events)

        def step(_: abc.SchedulerBase, __: Any = None) -> None:
            item = next(items, None)
            if item is None:
                observer.on_completed()
                return
            observer.on_next(item)
            scheduler.schedule_relative(gap, step)

        scheduler.schedule_relative(gap, step)
        return Disposable()

    return Observable(subscribe)


def test_same_tick_timer_first_emits_the_run_and_the_delta_starts_the_next() -> None:
    scheduler = TestScheduler()
    out: list[tuple[float, str]] = []
    source = paced_source(scheduler, [text("a", 1), text("b", 2), text("c", 3)], 10)

    def record(event: Any) -> None:
        out.append((scheduler.clock, event.text))

    source.pipe(batch(max_interval=10, scheduler=scheduler)).subscribe(
        record, on_completed=lambda: out.append((scheduler.clock, "|"))
    )
    scheduler.start()
    # "a" arrives at 10, its timer is due at 20, where "b" also arrives (its step was queued
    # after the timer): the timer emits "a", then "b" opens a run emitted at 30 with "c" held.
    assert out == [(20, "a"), (30, "b"), (40, "c"), (40, "|")]


class CapturingScheduler(TestScheduler):
    """A virtual clock that also keeps every action scheduled, to fire a cancelled one late."""

    def __init__(self) -> None:
        super().__init__()
        self.actions: list[tuple[Any, Any]] = []

    def schedule_relative(self, duetime: Any, action: Any, state: Any = None) -> abc.DisposableBase:
        self.actions.append((action, state))
        return super().schedule_relative(duetime, action, state)


def test_a_timer_that_fires_after_dispose_or_after_its_run_left_does_nothing() -> None:
    scheduler = CapturingScheduler()
    out: list[Any] = []
    subject_events = [text("a", 1), finish(2), text("b", 3)]
    observer_box: list[abc.ObserverBase[Any]] = []

    def subscribe(observer: abc.ObserverBase[Any], _: abc.SchedulerBase | None = None) -> abc.DisposableBase:
        observer_box.append(observer)
        return Disposable()

    subscription = (
        Observable(subscribe).pipe(batch(max_interval=10, scheduler=scheduler)).subscribe(out.append)
    )
    upstream = observer_box[0]
    upstream.on_next(subject_events[0])
    ((action, state),) = scheduler.actions
    upstream.on_next(subject_events[1])  # emits "a", then the finish
    upstream.on_next(subject_events[2])  # run 2 opens; the armed timer still belongs to run 1
    # The thread-timer race: the timer for run 1 fires (late) while run 2 is held, at the same
    # virtual instant. It must not emit run 2 early: it re-arms for run 2's own interval.
    action(scheduler, state)
    assert texts(out) == ["a", "finish"]
    assert len(scheduler.actions) == 2
    subscription.dispose()
    again, again_state = scheduler.actions[-1]
    again(scheduler, again_state)
    assert texts(out) == ["a", "finish"]


def test_thread_timer_against_a_source_thread_loses_nothing_and_never_overlaps() -> None:
    # Real time is the point: a 1 ms thread timer flushes while the source thread pushes.
    rng = random.Random(7)
    pieces = [rng.choice(["a", "b", "c", " ", "xy"]) for _ in range(4000)]
    events: list[Any] = [start()]
    for i, p in enumerate(pieces):
        events.append(text(p, i + 1, output=1 if i % 500 == 499 else 0))
        if i % 700 == 699:
            events.append(finish(i + 1))
    out: list[Any] = []
    busy = threading.Lock()
    overlaps: list[int] = []
    done = threading.Event()

    def record(event: Any) -> None:
        if not busy.acquire(blocking=False):
            overlaps.append(1)
            return
        try:
            out.append(event)
        finally:
            busy.release()

    def source_thread(
        observer: abc.ObserverBase[Any], _: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        def push() -> None:
            for i, event in enumerate(events):
                observer.on_next(event)
                if i % 97 == 0:
                    time.sleep(0.0005)
            observer.on_completed()

        threading.Thread(target=push, daemon=True).start()
        return Disposable()

    Observable(source_thread).pipe(
        batch(max_interval=0.001, scheduler=TimeoutScheduler.singleton())
    ).subscribe(record, on_completed=done.set)
    assert done.wait(20)
    assert not overlaps
    assert [e for e in out if not isinstance(e, TextDelta)] == [
        e for e in events if not isinstance(e, TextDelta)
    ]
    for output in (0, 1):
        assert "".join(e.text for e in out if isinstance(e, TextDelta) and e.output == output) == "".join(
            e.text for e in events if isinstance(e, TextDelta) and e.output == output
        )
    seqs = [e.seq for e in out]
    assert seqs == sorted(seqs)
    assert len(out) < len(events)  # the timer did batch


# -- real streams ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", recording_paths(), ids=lambda p: Path(p).name)
def test_every_recording_accumulates_the_same_result(path: Path) -> None:
    recorded, error = run_recording(path)
    events: list[Any] = recorded
    for operator in (
        batch(max_interval=None),
        batch(max_interval=None, max_chars=5),
        batch(max_interval=None, max_events=2),
    ):
        out: list[Any] = []
        reactivex.from_iterable(events).pipe(operator).subscribe(out.append, lambda _: None)
        assert accumulate(out, error) == accumulate(events, error)
        assert [e.seq for e in out] == sorted(e.seq for e in out)
        assert [
            e
            for e in out
            if e.type not in {"text.delta", "reasoning.delta", "refusal.delta", "tool_call.delta"}
        ] == [
            e
            for e in events
            if e.type not in {"text.delta", "reasoning.delta", "refusal.delta", "tool_call.delta"}
        ]


def test_over_the_emulator_in_asyncio_the_result_is_unchanged_and_deltas_fewer() -> None:
    recording = RECORDINGS / "openai-chat-json-object-1.sse"
    messages = [{"role": "user", "content": "Where is the Golden Gate Bridge? Answer in JSON."}]

    async def main() -> tuple[Any, Any, list[Any], list[Any]]:
        # 400 events per second: with a 30 ms interval, about a dozen deltas per batch.
        async with ProviderEmulator(recording, pace=400.0) as emu:

            def source() -> Any:
                return openai_chat(
                    model="gpt-4o-2024-08-06",
                    messages=messages,
                    api_key="test",
                    base_url=f"{emu.base_url}/v1",
                )

            raw: list[Any] = []
            batched: list[Any] = []
            plain = await collect(source().pipe(normalize(), ops.do_action(raw.append)))
            merged = await collect(
                source().pipe(normalize(), batch(max_interval=0.03), ops.do_action(batched.append))
            )
            return plain, merged, raw, batched

    plain, merged, raw, batched = asyncio.run(main())
    assert merged.completed and merged.text == plain.text and len(plain.text) > 100
    assert [(o.text, o.finish_reason) for o in merged.outputs] == [
        (o.text, o.finish_reason) for o in plain.outputs
    ]
    assert merged.usage is not None and plain.usage is not None
    assert merged.usage.output_tokens == plain.usage.output_tokens
    raw_deltas = [e for e in raw if isinstance(e, TextDelta)]
    deltas = [e for e in batched if isinstance(e, TextDelta)]
    assert 1 < len(deltas) < len(raw_deltas) / 3
    assert any(isinstance(e, ToolCallStart) for e in raw) is any(
        isinstance(e, ToolCallStart) for e in batched
    )
    assert isinstance(batched[-1], StreamEnd)
