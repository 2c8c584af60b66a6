"""Correlation and ordering: stream_id, seq, request and response ids, merged live streams split back, bridge order."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import reactivex
from reactivex import GroupedObservable, Observable
from reactivex import operators as ops
from reactivex.testing import ReactiveTest, TestScheduler

from rxstream._chunk import ProviderChunk
from rxstream._consume import EventObserver, aiter
from rxstream._events import Event, EventBase, StreamEnd, StreamStart, TextDelta, make_event
from rxstream._result import StreamResult
from rxstream.operators import normalize
from rxstream.operators._filter import split_by_stream, where
from rxstream.sources import anthropic_messages, gemini, openai_chat, openai_responses, replay
from rxstream.testing import ProviderEmulator
from tests.conftest import recording_paths
from tests.helpers import accumulate, run_recording

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error

# One recording per stream, across the four wires; each stream is named after its recording.
STREAMS = [
    "openai-chat-text-1",
    "openai-chat-toolcall-1",
    "openai-responses-text-1",
    "openai-responses-functioncall-1",
    "anthropic-messages-toolcall-1",
    "gemini-generatecontent-text-1",
]
PACE = "400"  # events per second: slow enough that concurrent streams interleave, fast enough for a test


def source_for(emu: ProviderEmulator, name: str, pace: str | None = PACE) -> Observable[ProviderChunk]:
    headers = {"x-rxstream-recording": name}
    if pace is not None:
        headers["x-rxstream-pace"] = pace
    base = emu.base_url
    if name.startswith("openai-chat"):
        return openai_chat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], api_key="test",
                           base_url=base + "/v1", headers=headers)  # fmt: skip
    if name.startswith("openai-responses"):
        return openai_responses(
            model="gpt-4o", input="hi", api_key="test", base_url=base + "/v1", headers=headers
        )
    if name.startswith("anthropic"):
        return anthropic_messages(model="claude-sonnet-4", messages=[{"role": "user", "content": "hi"}],
                                  api_key="test", base_url=base, headers=headers)  # fmt: skip
    return gemini(
        model="gemini-2.0-flash", contents="hi", api_key="test", base_url=base + "/v1beta", headers=headers
    )


def pipeline(emu: ProviderEmulator, name: str, pace: str | None = PACE) -> Observable[Event]:
    return source_for(emu, name, pace).pipe(normalize(stream_id=name))


async def gather(source: Observable[Any]) -> list[Any]:
    """Every item of ``source``, in emission order (raises its error)."""
    items: list[Any] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    source.subscribe(items.append, done.set_exception, lambda: done.set_result(None))
    await done
    return items


def comparable(event: EventBase) -> dict[str, Any]:
    """An event without what differs between two requests for the same recording: arrival
    times, the emulator's per-request id and its port."""
    return event.model_dump(exclude={"at", "request_id", "request_sent_at", "first_event_at", "server_port"})


def check_stream(events: list[Any], name: str) -> None:
    """One stream's events: its id on all, start first, end last, seq never decreasing."""
    assert events and all(e.stream_id == name for e in events)
    assert isinstance(events[0], StreamStart) and isinstance(events[-1], StreamEnd)
    assert sum(isinstance(e, StreamStart | StreamEnd) for e in events) == 2
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and seqs[0] == 0


# -- stream_id and seq ---------------------------------------------------------------------------


def test_stream_id_is_the_callers_or_one_per_subscription() -> None:
    path = next(p for p in recording_paths() if p.name == "openai-chat-text-1.sse")
    named = replay(path).pipe(normalize(stream_id="req-42"))
    events: list[Any] = []
    named.subscribe(events.append)
    assert events and {e.stream_id for e in events} == {"req-42"}
    generated = replay(path).pipe(normalize())
    first: list[Any] = []
    second: list[Any] = []
    generated.subscribe(first.append)
    generated.subscribe(second.append)
    ids = ({e.stream_id for e in first}, {e.stream_id for e in second})
    assert all(len(i) == 1 for i in ids) and ids[0] != ids[1]
    assert len(next(iter(ids[0]))) == 32  # a uuid4 hex


@pytest.mark.parametrize("path", recording_paths(), ids=lambda p: p.name)
def test_every_recording_is_one_ordered_stream(path: Path) -> None:
    events, error = run_recording(path)
    if error is None:
        check_stream(events, "t")
    else:  # a stream that fails has no stream.end, but is ordered all the same
        assert isinstance(events[0], StreamStart) and not any(isinstance(e, StreamEnd) for e in events)
        assert [e.seq for e in events] == sorted(e.seq for e in events)


def test_stream_start_carries_the_request_id_and_the_response_id() -> None:
    async def main() -> tuple[dict[str, Any], dict[str, str]]:
        async with ProviderEmulator() as emu:
            starts = {name: (await gather(pipeline(emu, name, pace=None)))[0] for name in STREAMS}
            sent = {Path(r.recording or "").stem: r.request_id for r in emu.requests}
        return starts, sent

    starts, sent = asyncio.run(main())
    expected_ids = {
        "openai-chat-text-1": "chatcmpl-",
        "openai-responses-text-1": "resp_",
        "anthropic-messages-toolcall-1": "msg_",
    }
    for name, start in starts.items():
        assert isinstance(start, StreamStart)
        assert start.request_id is not None and start.request_id == sent[name]
        assert start.request_id.startswith("req_")
        assert start.response_id, name
        if name in expected_ids:
            assert start.response_id.startswith(expected_ids[name])
        assert start.provider is not None and start.model is not None


# -- merged live streams --------------------------------------------------------------------------


def run_merged(
    consume: Callable[[Observable[Event], list[Any]], Any],
) -> tuple[list[Any], dict[str, list[Any]], Any]:
    """Each stream alone, then all of them at once merged; ``consume(merged, emitted)`` consumes
    the merge (``emitted`` receives every event in emission order)."""

    async def main() -> tuple[list[Any], dict[str, list[Any]], Any]:
        async with ProviderEmulator() as emu:
            alone = {name: await gather(pipeline(emu, name, pace=None)) for name in STREAMS}
            emitted: list[Any] = []
            merged = reactivex.merge(*(pipeline(emu, name) for name in STREAMS)).pipe(
                ops.do_action(emitted.append)
            )
            consumed = await consume(merged, emitted)
        return emitted, alone, consumed

    return asyncio.run(main())


def check_merge(emitted: list[Any], alone: dict[str, list[Any]]) -> None:
    ids = [e.stream_id for e in emitted]
    switches = sum(a != b for a, b in itertools.pairwise(ids))
    assert switches > 2 * len(STREAMS), "the streams did not run concurrently"
    for name, expected in alone.items():
        mine = [e for e in emitted if e.stream_id == name]
        check_stream(mine, name)
        assert [comparable(e) for e in mine] == [comparable(e) for e in expected]
    assert len(emitted) == sum(len(v) for v in alone.values())


def test_merged_live_streams_keep_per_stream_order_and_completeness() -> None:
    async def consume(merged: Observable[Event], emitted: list[Any]) -> list[Any]:
        return await gather(merged)

    emitted, alone, received = run_merged(consume)
    assert received == emitted
    check_merge(emitted, alone)


def test_split_by_stream_separates_a_live_merge() -> None:
    async def consume(merged: Observable[Event], emitted: list[Any]) -> list[tuple[str, list[Any], int]]:
        def per_group(group: GroupedObservable[str, Event]) -> Observable[tuple[str, list[Any], int]]:
            # When each group completes: right after its stream.end, while others still run.
            return group.pipe(ops.to_list(), ops.map(lambda events: (group.key, list(events), len(emitted))))

        return await gather(merged.pipe(split_by_stream(), ops.flat_map(per_group)))

    emitted, alone, groups = run_merged(consume)
    check_merge(emitted, alone)
    assert sorted(key for key, _, _ in groups) == sorted(STREAMS)
    for key, events, seen in groups:
        assert events == [e for e in emitted if e.stream_id == key]
        # The group completed as soon as its stream.end was emitted.
        assert emitted[seen - 1] is events[-1]
    assert min(seen for _, _, seen in groups) < len(emitted)


def test_one_event_observer_per_split_stream_gives_each_stream_its_result() -> None:
    async def consume(merged: Observable[Event], emitted: list[Any]) -> dict[str, StreamResult]:
        results: dict[str, StreamResult] = {}
        observers: list[EventObserver] = []

        def follow(group: GroupedObservable[str, Event]) -> None:
            def keep(result: StreamResult) -> None:
                results[group.key] = result

            observer = EventObserver(on_complete=keep)
            observer.subscribe_to(group)
            observers.append(observer)

        await gather(merged.pipe(split_by_stream(), ops.do_action(follow)))
        for observer in observers:
            await observer.done()
        return results

    emitted, alone, results = run_merged(consume)
    check_merge(emitted, alone)
    assert sorted(results) == sorted(STREAMS)
    for name, result in results.items():
        assert result == accumulate([e for e in emitted if e.stream_id == name])
        expected = accumulate(alone[name])
        assert result.outputs == expected.outputs and result.response_id == expected.response_id
        assert result.usage is not None and expected.usage is not None
        assert comparable(result.usage) == comparable(expected.usage)  # arrival times differ


def test_event_observer_with_async_callbacks_delivers_a_live_merge_in_emission_order() -> None:
    rng = random.Random(6)

    async def consume(merged: Observable[Event], emitted: list[Any]) -> tuple[list[Any], list[str]]:
        delivered: list[Any] = []
        deltas: list[str] = []

        async def on_event(event: Event) -> None:
            delivered.append(event)
            await asyncio.sleep(0.002 if rng.random() < 0.05 else 0)

        async def on_delta(event: TextDelta) -> None:
            await asyncio.sleep(0)
            deltas.append(f"{event.stream_id}:{event.seq}")

        observer = EventObserver(on_event=on_event, on_delta=on_delta)
        observer.subscribe_to(merged)
        await observer.done()
        return delivered, deltas

    emitted, alone, (delivered, deltas) = run_merged(consume)
    check_merge(emitted, alone)
    assert delivered == emitted
    assert deltas == [f"{e.stream_id}:{e.seq}" for e in emitted if isinstance(e, TextDelta)]


def test_aiter_yields_a_live_merge_in_emission_order() -> None:
    async def consume(merged: Observable[Event], emitted: list[Any]) -> list[Any]:
        got: list[Any] = []
        async with aiter(merged, max_buffer=4) as events:
            async for event in events:
                got.append(event)
                if len(got) % 7 == 0:
                    await asyncio.sleep(0.001)
        return got

    emitted, alone, got = run_merged(consume)
    check_merge(emitted, alone)
    assert got == emitted


def test_where_picks_one_stream_out_of_a_merge() -> None:
    a, _ = run_recording(next(p for p in recording_paths() if p.name == "openai-chat-text-1.sse"))
    b = [e.model_copy(update={"stream_id": "u"}) for e in a]
    merged: list[Event] = cast(list[Event], [x for pair in zip(a, b, strict=True) for x in pair])
    out: list[Any] = []
    reactivex.from_iterable(merged).pipe(where(lambda e: e.stream_id == "u")).subscribe(out.append)
    assert out == b


# -- split_by_stream in virtual time ----------------------------------------------------------------


def ev(kind: type[Any], stream: str, seq: int, **fields: Any) -> Any:
    return make_event(kind, stream_id=stream, seq=seq, at=seq, **fields)


A0, A1, AE = ev(StreamStart, "a", 0, wire="gemini"), ev(TextDelta, "a", 1, text="x"), ev(StreamEnd, "a", 2)
B0, B1, BE = ev(StreamStart, "b", 0, wire="gemini"), ev(TextDelta, "b", 1, text="y"), ev(StreamEnd, "b", 2)


def split_in_virtual_time(
    scheduler: TestScheduler, source: Observable[Event], disposed: int = 1000
) -> tuple[list[Any], dict[str, list[Any]]]:
    """Subscribe to each group as it is emitted; record the outer and each group's messages."""
    outer: list[Any] = []
    groups: dict[str, list[Any]] = {}

    def on_group(group: GroupedObservable[str, Event]) -> None:
        outer.append((scheduler.clock, group.key))
        log = groups.setdefault(f"{group.key}@{scheduler.clock:g}", [])
        group.subscribe(
            lambda e: log.append((scheduler.clock, e)),
            lambda x: log.append((scheduler.clock, "error", x)),
            lambda: log.append((scheduler.clock, "done")),
        )

    def create() -> Observable[Any]:
        return source.pipe(split_by_stream(), ops.do_action(on_group), ops.ignore_elements())

    results = scheduler.start(create, disposed=disposed)
    outer.extend((m.time, str(m.value)) for m in results.messages)
    return outer, groups


def test_split_by_stream_groups_complete_at_their_stream_end() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, A0), on_next(220, B0), on_next(230, A1), on_next(240, AE),
        on_next(250, B1), on_next(260, A0), on_next(270, BE), on_completed(280),
    )  # fmt: skip
    outer, groups = split_in_virtual_time(scheduler, xs)
    assert [o for o in outer if isinstance(o[1], str) and o[1] in "ab"] == [
        (210, "a"),
        (220, "b"),
        (260, "a"),
    ]
    assert groups["a@210"] == [(210, A0), (230, A1), (240, AE), (240, "done")]
    assert groups["b@220"] == [(220, B0), (250, B1), (270, BE), (270, "done")]
    # A stream id seen again after its end opens a new group, which completes with the source.
    assert groups["a@260"] == [(260, A0), (280, "done")]


def test_split_by_stream_errors_reach_open_groups_then_the_outer_observer() -> None:
    boom = RuntimeError("dropped")
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, A0), on_next(220, B0), on_next(230, BE), on_error(240, boom)
    )
    outer, groups = split_in_virtual_time(scheduler, xs)
    assert groups["a@210"][-1] == (240, "error", boom)
    assert groups["b@220"][-1] == (230, "done")
    assert outer[-1][0] == 240 and "dropped" in outer[-1][1]


def test_split_by_stream_dispose_unsubscribes_upstream_and_never_is_silent() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, A0), on_next(400, A1), on_completed(500))
    _, groups = split_in_virtual_time(scheduler, xs, disposed=300)
    assert groups["a@210"] == [(210, A0)]
    assert [(s.subscribe, s.unsubscribe) for s in xs.subscriptions] == [(200, 300)]
    outer, groups = split_in_virtual_time(TestScheduler(), reactivex.never())
    assert outer == [] and groups == {}


def test_a_group_subscribed_after_it_ended_completes_at_once() -> None:
    kept: list[GroupedObservable[str, Event]] = []
    reactivex.from_iterable([A0, AE]).pipe(split_by_stream()).subscribe(kept.append)
    late: list[Any] = []
    kept[0].subscribe(late.append, late.append, lambda: late.append("done"))
    assert late == ["done"]


def test_split_by_stream_resubscribes_the_same_way() -> None:
    def collected(group: GroupedObservable[str, Event]) -> Observable[tuple[str, list[Event]]]:
        return group.pipe(ops.to_list(), ops.map(lambda events: (group.key, list(events))))

    events: list[Event] = [A0, B0, A1, AE, B1, BE]
    source = reactivex.from_iterable(events).pipe(split_by_stream(), ops.flat_map(collected))
    first: list[Any] = []
    second: list[Any] = []
    source.subscribe(first.append)
    source.subscribe(second.append)
    assert first == second == [("a", [A0, A1, AE]), ("b", [B0, B1, BE])]
    assert cast(Any, first)[0][1][0] is A0
