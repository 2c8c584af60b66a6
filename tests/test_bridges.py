"""The consumption bridges: aiter() and its overflow policies, EventObserver, run(), delta merging."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.scheduler import NewThreadScheduler
from reactivex.subject import Subject

from rxstream._chunk import ProviderChunk, StreamOpen
from rxstream._consume import EventObserver, aiter, collect, run
from rxstream._errors import LimitExceededError, ProviderError, StreamTimeoutError
from rxstream._events import (
    Citation,
    EventBase,
    JsonPartial,
    JsonTarget,
    ReasoningDelta,
    RefusalDelta,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
)
from rxstream._gate import CURRENT_GATE
from rxstream._merge import DeltaMerger, coalesce, merge, merge_run, mergeable
from rxstream._result import StreamResult
from rxstream.operators import normalize
from rxstream.sources import load_recording, replay
from tests.conftest import RECORDINGS, recording_paths
from tests.helpers import accumulate, run_chunks, run_recording

DELTAS = {"text.delta", "reasoning.delta", "refusal.delta", "tool_call.delta", "json.partial"}


# -- a test-only live source ---------------------------------------------------------------------


class LiveSource:
    """An asyncio source like the HTTP one: a task emits ``per_read`` chunks per read, awaiting
    the subscribe-time gate before each read; dispose cancels the task. Records what happened."""

    def __init__(self, chunks: list[ProviderChunk], *, per_read: int = 1, hang: bool = False) -> None:
        self.chunks = chunks
        self.per_read = per_read
        self.hang = hang
        self.log: list[str] = []
        self.blocked = 0  # reads that found the gate closed

    def observable(self) -> Observable[ProviderChunk]:
        def subscribe(observer: abc.ObserverBase[ProviderChunk], _: abc.SchedulerBase | None = None) -> Disposable:
            gate = CURRENT_GATE.get()
            self.log.append("subscribed with gate" if gate is not None else "subscribed")

            async def pump() -> None:
                try:
                    for start in range(0, len(self.chunks), self.per_read):
                        if gate is not None:
                            if not gate.is_open:
                                self.blocked += 1
                            await gate.wait()
                        await asyncio.sleep(0)  # the read itself
                        for chunk in self.chunks[start : start + self.per_read]:
                            observer.on_next(chunk)
                    if self.hang:
                        await asyncio.Event().wait()
                    observer.on_completed()
                except asyncio.CancelledError:
                    self.log.append("cancelled")
                    raise

            task = asyncio.get_running_loop().create_task(pump())

            def dispose() -> None:
                self.log.append("disposed")
                task.cancel()

            return Disposable(dispose)

        return reactivex.create(subscribe)

    def events(self) -> Observable[Any]:
        return self.observable().pipe(normalize(stream_id="t"))


def long_chat(n: int, outputs: int = 1) -> list[ProviderChunk]:
    """An openai.chat stream of n text deltas (taking turns between ``outputs`` choices), a
    finish per choice and a usage chunk."""

    def payload(**fields: Any) -> dict[str, Any]:
        return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m-1", **fields}

    chunks = [ProviderChunk("open", "openai.chat", None, None, 0, StreamOpen(provider="acme"))]
    chunks += [
        ProviderChunk(
            "data", "openai.chat", None, payload(choices=[{"index": i % outputs, "delta": {"content": f"w{i} "}}]), i + 1
        )
        for i in range(n)
    ]
    finishes = [{"index": k, "delta": {}, "finish_reason": "stop"} for k in range(outputs)]
    chunks.append(ProviderChunk("data", "openai.chat", None, payload(choices=finishes), n + 1))
    usage = {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": n + 3}
    chunks.append(ProviderChunk("data", "openai.chat", None, payload(choices=[], usage=usage), n + 2))
    return chunks


def most_events_per_read(chunks: list[ProviderChunk], per_read: int) -> int:
    """F: the most events one read of LiveSource makes normalize() emit (the flush at
    completion counts with the last read, since no gate wait separates them)."""
    subject: Subject[ProviderChunk] = Subject()
    count = [0]

    def bump(_: Any) -> None:
        count[0] += 1

    subject.pipe(normalize(stream_id="t")).subscribe(bump)
    counts: list[int] = []
    for start in range(0, len(chunks), per_read):
        count[0] = 0
        for chunk in chunks[start : start + per_read]:
            subject.on_next(chunk)
        counts.append(count[0])
    count[0] = 0
    subject.on_completed()
    counts[-1] += count[0]
    return max(counts)


async def consume_slowly(events: Any) -> list[Any]:
    got: list[Any] = []
    async for event in events:
        got.append(event)
        await asyncio.sleep(0)
        if len(got) % 2500 == 0:
            await asyncio.sleep(0.001)
    return got


# -- aiter: backpressure and overflow policies ----------------------------------------------------

N_DELTAS = 10_000
PER_READ = 8
MAX_BUFFER = 64


def test_block_keeps_a_slow_consumer_bounded_and_loses_nothing() -> None:
    chunks = long_chat(N_DELTAS)
    expected, error = run_chunks(chunks)
    assert error is None and len(expected) > N_DELTAS
    fanout = most_events_per_read(chunks, PER_READ)
    source = LiveSource(chunks, per_read=PER_READ)

    async def main() -> tuple[list[Any], int]:
        events = aiter(source.events(), max_buffer=MAX_BUFFER)
        return await consume_slowly(events), events.peak_buffered

    got, peak = asyncio.run(main())
    assert got == expected
    # The guaranteed bound: the gate is open only below max_buffer, and one read adds at most F.
    assert MAX_BUFFER <= peak <= MAX_BUFFER - 1 + fanout
    assert source.blocked > 0 and source.log[0] == "subscribed with gate"


def test_coalesce_merges_for_a_slow_consumer_and_keeps_the_result_exact() -> None:
    chunks = long_chat(N_DELTAS)
    expected, _ = run_chunks(chunks)
    fanout = most_events_per_read(chunks, PER_READ)
    source = LiveSource(chunks, per_read=PER_READ)

    async def main() -> tuple[list[Any], int, int]:
        events = aiter(source.events(), max_buffer=MAX_BUFFER, overflow="coalesce")
        return await consume_slowly(events), events.peak_buffered, events.coalesced

    got, peak, merged = asyncio.run(main())
    assert merged > 0 and len(got) + merged == len(expected)
    assert accumulate(got) == accumulate(expected)
    assert [e.type for e in got if e.type not in DELTAS] == [e.type for e in expected if e.type not in DELTAS]
    assert [e.seq for e in got] == sorted(e.seq for e in got)
    assert peak <= MAX_BUFFER - 1 + fanout
    # One text target: merging always makes room, so the source is never paused.
    assert source.blocked == 0


def test_coalesce_pauses_the_source_when_nothing_adjacent_merges() -> None:
    chunks = long_chat(2_000, outputs=2)  # the two choices take turns: no two adjacent deltas merge
    expected, _ = run_chunks(chunks)
    fanout = most_events_per_read(chunks, PER_READ)
    source = LiveSource(chunks, per_read=PER_READ)

    async def main() -> tuple[list[Any], int, int]:
        events = aiter(source.events(), max_buffer=MAX_BUFFER, overflow="coalesce")
        return await consume_slowly(events), events.peak_buffered, events.coalesced

    got, peak, merged = asyncio.run(main())
    assert merged == 0 and got == expected
    assert source.blocked > 0 and MAX_BUFFER <= peak <= MAX_BUFFER - 1 + fanout


def test_drop_oldest_drops_only_deltas_and_never_pauses_the_source() -> None:
    chunks = long_chat(N_DELTAS)
    expected, _ = run_chunks(chunks)
    source = LiveSource(chunks, per_read=PER_READ)

    async def main() -> tuple[list[Any], int, int]:
        events = aiter(source.events(), max_buffer=MAX_BUFFER, overflow="drop_oldest")
        return await consume_slowly(events), events.peak_buffered, events.dropped

    got, peak, dropped = asyncio.run(main())
    assert dropped > 0 and len(got) + dropped == len(expected)
    assert [e for e in got if e.type not in DELTAS] == [e for e in expected if e.type not in DELTAS]
    remaining = iter(expected)
    assert all(any(e == x for x in remaining) for e in got), "received events are not in emission order"
    assert peak <= MAX_BUFFER
    assert source.log[0] == "subscribed" and source.blocked == 0


@pytest.mark.parametrize(
    "name",
    ["openai-chat-toolcall-parallel-1.sse", "anthropic-messages-thinking-1.sse", "openai-chat-multichoice-n2-1.sse"],
)
@pytest.mark.parametrize("max_buffer", [1, 4])
def test_overflow_policies_on_a_synchronous_replay(name: str, max_buffer: int) -> None:
    path = RECORDINGS / name
    expected, _ = run_recording(path)
    stream = reactivex.from_iterable(load_recording(path)).pipe(normalize(stream_id="t"))

    async def main(overflow: Any) -> tuple[list[Any], Any]:
        events = aiter(stream, max_buffer=max_buffer, overflow=overflow)
        return [e async for e in events], events

    got, events = asyncio.run(main("block"))
    # A replay emits everything inside subscribe: it cannot be paused, and peak shows it.
    assert got == expected and events.peak_buffered == len(expected)

    got, events = asyncio.run(main("coalesce"))
    assert accumulate(got) == accumulate(expected)
    assert len(got) + events.coalesced == len(expected)

    got, events = asyncio.run(main("drop_oldest"))
    assert [e for e in got if e.type not in DELTAS] == [e for e in expected if e.type not in DELTAS]
    assert len(got) + events.dropped == len(expected) and events.dropped > 0
    kept = sum(e.type not in DELTAS or getattr(e, "signature", None) is not None for e in expected)
    assert events.peak_buffered <= max(max_buffer, kept)


def test_drop_oldest_keeps_signed_reasoning() -> None:
    path = RECORDINGS / "anthropic-messages-thinking-1.sse"
    expected, _ = run_recording(path)
    signed = [e for e in expected if isinstance(e, ReasoningDelta) and e.signature]
    assert signed

    async def main() -> list[Any]:
        stream = reactivex.from_iterable(load_recording(path)).pipe(normalize(stream_id="t"))
        return [e async for e in aiter(stream, max_buffer=2, overflow="drop_oldest")]

    got = asyncio.run(main())
    assert [e for e in got if isinstance(e, ReasoningDelta) and e.signature] == signed


def test_error_policy_raises_after_the_buffered_events() -> None:
    path = RECORDINGS / "openai-chat-text-1.sse"
    expected, _ = run_recording(path)
    stream = reactivex.from_iterable(load_recording(path)).pipe(normalize(stream_id="t"))
    got: list[Any] = []

    async def main() -> None:
        async for event in aiter(stream, max_buffer=5, overflow="error"):
            got.append(event)  # noqa: PERF401 - a comprehension would lose what came before the raise

    with pytest.raises(LimitExceededError, match="at most 5 events") as caught:
        asyncio.run(main())
    assert (caught.value.limit, caught.value.value) == ("max_buffer", 5)
    assert got == expected[:5]


def test_error_policy_disposes_a_live_source() -> None:
    chunks = long_chat(200)
    expected, _ = run_chunks(chunks)
    source = LiveSource(chunks, per_read=PER_READ)
    got: list[Any] = []

    async def main() -> None:
        async for event in aiter(source.events(), max_buffer=16, overflow="error"):
            got.append(event)
            await asyncio.sleep(0)

    with pytest.raises(LimitExceededError):
        asyncio.run(main())
    # What was consumed before the overflow, then the 16 that were waiting: nothing skipped.
    assert 16 <= len(got) < len(expected) and got == expected[: len(got)]
    assert source.log == ["subscribed", "disposed", "cancelled"]


def test_aiter_raises_the_stream_error_after_every_event_before_it() -> None:
    path = RECORDINGS / "groq-chat-reasoning-error-1.sse"
    expected, error = run_recording(path)
    assert isinstance(error, ProviderError)
    source = LiveSource(load_recording(path))
    got: list[Any] = []

    async def main() -> None:
        async for event in aiter(source.events()):
            got.append(event)  # noqa: PERF401 - a comprehension would lose what came before the raise

    with pytest.raises(ProviderError):
        asyncio.run(main())
    assert got == expected


def test_aiter_subscribes_lazily() -> None:
    source = LiveSource(long_chat(3))

    async def main() -> list[Any]:
        events = aiter(source.events())
        await asyncio.sleep(0)
        assert source.log == []
        return [e async for e in events]

    assert asyncio.run(main()) == run_chunks(long_chat(3))[0]


def test_break_disposes_the_subscription() -> None:
    source = LiveSource(long_chat(50), hang=True)

    async def main() -> None:
        async for event in aiter(source.events()):
            if event.type == "text.delta":
                break
        assert source.log == ["subscribed with gate", "disposed"]
        await asyncio.sleep(0)

    asyncio.run(main())
    assert source.log[-1] == "cancelled"


def test_aclose_and_async_with_dispose() -> None:
    first = LiveSource(long_chat(50), hang=True)
    second = LiveSource(long_chat(50), hang=True)

    async def main() -> None:
        events = aiter(first.events())
        assert (await anext(events)).type == "stream.start"
        await events.aclose()
        assert first.log[-1] == "disposed"
        with pytest.raises(StopAsyncIteration):
            await anext(events)
        async with aiter(second.events()) as events:
            await anext(events)
        assert second.log[-1] == "disposed"

    asyncio.run(main())


def test_cancelling_the_consumer_disposes_while_waiting_and_while_in_the_body() -> None:
    waiting = LiveSource(long_chat(5), hang=True)
    busy = LiveSource(long_chat(5), hang=True)

    async def main() -> None:
        seen = asyncio.Event()

        async def consume_all() -> None:
            async for event in aiter(waiting.events()):
                if event.type == "text.delta" and event.text == "w4 ":
                    seen.set()

        async def stuck_in_body() -> None:
            async for _ in aiter(busy.events()):
                await asyncio.Event().wait()

        tasks = [asyncio.create_task(consume_all()), asyncio.create_task(stuck_in_body())]
        await seen.wait()
        await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert "disposed" in waiting.log and "disposed" in busy.log


def test_aiter_takes_events_from_another_thread() -> None:
    path = RECORDINGS / "anthropic-messages-toolcall-1.sse"
    expected, _ = run_recording(path)

    async def main() -> list[Any]:
        stream = replay(path, scheduler=NewThreadScheduler()).pipe(normalize(stream_id="t"))
        return [e async for e in aiter(stream, max_buffer=4)]

    got = asyncio.run(main())
    assert [(e.type, e.seq) for e in got] == [(e.type, e.seq) for e in expected]
    assert accumulate(got).to_summary() == accumulate(expected).to_summary()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_buffer": 0}, "max_buffer must be an int of at least 1"),
        ({"max_buffer": 2.5}, "max_buffer must be an int"),
        ({"overflow": "drop_newest"}, "overflow must be one of"),
    ],
)
def test_aiter_validates_its_arguments_at_call_time(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        aiter(reactivex.empty(), **kwargs)


# -- EventObserver ---------------------------------------------------------------------------------


def recording_events(name: str) -> Observable[Any]:
    return reactivex.from_iterable(load_recording(RECORDINGS / name)).pipe(normalize(stream_id="t"))


def test_observer_routes_each_kind_in_order_without_a_loop() -> None:
    log: list[tuple[str, str]] = []
    results: list[StreamResult] = []

    def note(name: str) -> Callable[[Any], None]:
        return lambda e: log.append((name, e.type))

    observer = EventObserver(
        on_event=note("event"),
        on_start=note("start"),
        on_delta=note("delta"),
        on_tool_call_start=note("call_start"),
        on_tool_call_delta=note("call_delta"),
        on_tool_call=note("call"),
        on_usage=note("usage"),
        on_finish=note("finish"),
        on_complete=results.append,
    )
    recording_events("anthropic-messages-toolcall-1.sse").subscribe(observer)
    expected, _ = run_recording(RECORDINGS / "anthropic-messages-toolcall-1.sse")
    names = {
        "stream.start": "start", "text.delta": "delta", "tool_call.start": "call_start",
        "tool_call.delta": "call_delta", "tool_call.done": "call", "usage": "usage", "finish": "finish",
    }
    want: list[tuple[str, str]] = []
    for e in expected:
        want.append(("event", e.type))
        if e.type in names:
            want.append((names[e.type], e.type))
    assert log == want
    assert results == [accumulate(expected)]
    assert observer.result == results[0]


def test_async_callbacks_are_awaited_in_event_order() -> None:
    chunks = long_chat(20)
    expected, _ = run_chunks(chunks)
    source = LiveSource(chunks, per_read=4)
    log: list[str] = []

    async def on_delta(event: TextDelta) -> None:
        log.append(f"delta {event.text} begins")
        await asyncio.sleep(0.001 if event.text == "w0 " else 0)
        log.append(f"delta {event.text} ends")

    async def on_usage(event: Any) -> None:
        await asyncio.sleep(0)
        log.append("usage")

    async def main() -> StreamResult:
        observer = EventObserver(on_event=lambda e: log.append(e.type), on_delta=on_delta, on_usage=on_usage)
        observer.subscribe_to(source.events())
        return await observer.done()

    result = asyncio.run(main())
    want: list[str] = []
    for e in expected:
        want.append(e.type)
        if isinstance(e, TextDelta):
            want += [f"delta {e.text} begins", f"delta {e.text} ends"]
        if e.type == "usage":
            want.append("usage")
    assert log == want
    assert result == accumulate(expected)


def test_slow_async_callbacks_pause_a_live_source() -> None:
    chunks = long_chat(300)
    expected, _ = run_chunks(chunks)
    source = LiveSource(chunks, per_read=PER_READ)
    got: list[Any] = []

    async def on_event(event: Any) -> None:
        got.append(event)
        await asyncio.sleep(0)

    async def main() -> None:
        observer = EventObserver(on_event=on_event, max_pending=8)
        observer.subscribe_to(source.events())
        await observer.done()

    asyncio.run(main())
    assert got == expected
    assert source.blocked > 0 and source.log[0] == "subscribed with gate"


@pytest.mark.parametrize("is_async", [False, True])
def test_a_raising_callback_disposes_and_reaches_on_error(is_async: bool) -> None:
    source = LiveSource(long_chat(100))
    deltas: list[str] = []
    errors: list[Exception] = []
    completed: list[Any] = []

    def check(event: TextDelta) -> None:
        deltas.append(event.text)
        if len(deltas) == 3:
            try:
                {}["missing"]  # the cause the user's error carries
            except KeyError as exc:
                raise ValueError("bad delta") from exc

    async def check_async(event: TextDelta) -> None:
        await asyncio.sleep(0)
        check(event)

    async def main() -> BaseException:
        observer = EventObserver(
            on_delta=check_async if is_async else check, on_error=errors.append, on_complete=completed.append
        )
        observer.subscribe_to(source.events())
        with pytest.raises(ValueError, match="bad delta") as caught:
            await observer.done()
        assert "disposed" in source.log
        assert observer.result.text == "w0 w1 w2 "
        return caught.value

    raised = asyncio.run(main())
    assert deltas == ["w0 ", "w1 ", "w2 "] and completed == []
    assert errors == [raised] and isinstance(raised.__cause__, KeyError)


def test_a_raising_callback_under_plain_subscribe_stops_delivery() -> None:
    seen: list[str] = []
    errors: list[Exception] = []

    def on_delta(event: TextDelta) -> None:
        seen.append(event.text)
        raise RuntimeError("stop here")

    observer = EventObserver(on_delta=on_delta, on_event=lambda e: seen.append(e.type), on_error=errors.append)
    recording_events("openai-chat-text-1.sse").subscribe(observer)
    expected, _ = run_recording(RECORDINGS / "openai-chat-text-1.sse")
    first = next(e for e in expected if isinstance(e, TextDelta))
    assert seen == ["stream.start", "text.delta", first.text]
    assert [str(e) for e in errors] == ["stop here"]


def test_a_raising_on_complete_reaches_on_error() -> None:
    errors: list[Exception] = []

    def on_complete(_: StreamResult) -> None:
        raise ValueError("cannot save")

    observer = EventObserver(on_complete=on_complete, on_error=errors.append)
    recording_events("openai-chat-text-1.sse").subscribe(observer)
    assert [str(e) for e in errors] == ["cannot save"]


def test_done_raises_what_on_error_raised() -> None:
    def on_error(error: Exception) -> None:
        raise RuntimeError("reporting failed") from error

    async def main() -> None:
        observer = EventObserver(on_error=on_error)
        observer.subscribe_to(recording_events("groq-chat-reasoning-error-1.sse"))
        with pytest.raises(RuntimeError, match="reporting failed") as caught:
            await observer.done()
        assert isinstance(caught.value.__cause__, ProviderError)

    asyncio.run(main())


def test_stream_error_reaches_on_error_with_the_partial_result() -> None:
    errors: list[Exception] = []
    completed: list[Any] = []

    async def main() -> None:
        observer = EventObserver(on_error=errors.append, on_complete=completed.append)
        observer.subscribe_to(recording_events("groq-chat-reasoning-error-1.sse"))
        with pytest.raises(ProviderError):
            await observer.done()

    asyncio.run(main())
    (error,) = errors
    assert isinstance(error, ProviderError) and completed == []
    assert error.partial is not None and error.partial.error is error
    assert error.partial.outputs[0].reasoning.startswith("We need")


def test_async_callback_without_a_loop_is_an_error_not_a_leak() -> None:
    errors: list[Exception] = []

    async def on_delta(_: TextDelta) -> None:
        await asyncio.sleep(0)

    observer = EventObserver(on_delta=on_delta, on_error=errors.append)
    recording_events("openai-chat-text-1.sse").subscribe(observer)
    (error,) = errors
    assert isinstance(error, RuntimeError) and "no event loop is running" in str(error)


def test_observer_hands_events_from_another_thread_to_its_loop() -> None:
    path = RECORDINGS / "openai-chat-toolcall-1.sse"
    threads: set[int] = set()

    async def on_event(_: Any) -> None:
        threads.add(threading.get_ident())

    async def main() -> StreamResult:
        observer = EventObserver(on_event=on_event, on_tool_call=lambda _: threads.add(threading.get_ident()))
        replay(path, scheduler=NewThreadScheduler()).pipe(normalize()).subscribe(observer)
        return await observer.done()

    result = asyncio.run(main())
    assert threads == {threading.get_ident()}
    assert result.completed and result.tool_calls[0].name


def test_disposing_the_observer_stops_it() -> None:
    source = LiveSource(long_chat(50), hang=True)
    seen: list[Any] = []

    async def main() -> None:
        observer = EventObserver(on_event=seen.append)
        subscription = observer.subscribe_to(source.events())
        while len(seen) < 10:
            await asyncio.sleep(0)
        subscription.dispose()
        count = len(seen)
        with pytest.raises(asyncio.CancelledError):
            await observer.done()
        await asyncio.sleep(0)
        assert len(seen) == count

    asyncio.run(main())
    assert "disposed" in source.log


def test_observer_validates_its_arguments_and_follows_one_stream() -> None:
    with pytest.raises(TypeError, match="on_delta must be callable"):
        EventObserver(on_delta="print")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_pending"):
        EventObserver(max_pending=0)
    observer = EventObserver()
    observer.subscribe_to(reactivex.empty())
    with pytest.raises(RuntimeError, match="one subscription per observer"):
        observer.subscribe_to(reactivex.empty())


# -- run and collect -------------------------------------------------------------------------------


def test_run_collects_from_synchronous_code() -> None:
    result = run(replay(RECORDINGS / "openai-chat-text-nousage-1.sse").pipe(normalize()))
    assert result.completed and result.text == "This is a test."
    assert run(LiveSource(long_chat(30)).events()) == accumulate(run_chunks(long_chat(30))[0])


def test_run_refuses_inside_a_running_loop() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match=r"inside a running event loop .* use `await collect\(obs\)`"):
            run(reactivex.empty())

    asyncio.run(main())


def test_run_timeout_disposes_and_keeps_the_partial_result() -> None:
    source = LiveSource(long_chat(5), hang=True)
    with pytest.raises(StreamTimeoutError, match=r"within 0\.05 s") as caught:
        run(source.events(), timeout=0.05)
    assert caught.value.kind == "total" and caught.value.seconds == 0.05
    assert caught.value.partial is not None and caught.value.partial.text == "w0 w1 w2 w3 w4 "
    assert "disposed" in source.log
    with pytest.raises(ValueError, match="timeout"):
        run(reactivex.empty(), timeout=0)


def test_collect_still_works_on_a_live_source() -> None:
    chunks = long_chat(100)
    result = asyncio.run(collect(LiveSource(chunks, per_read=3).events()))
    assert result == accumulate(run_chunks(chunks)[0]) and result.completed


# -- _merge ----------------------------------------------------------------------------------------


def text(s: str, seq: int, output: int = 0, stream_id: str = "t", **meta: Any) -> TextDelta:
    return TextDelta(stream_id=stream_id, seq=seq, at=seq * 10, output=output, text=s, meta=meta)


def args(s: str, seq: int, call_index: int = 0, call_id: str | None = "c0") -> ToolCallDelta:
    return ToolCallDelta(stream_id="t", seq=seq, at=seq * 10, call_index=call_index, call_id=call_id, arguments_delta=s)


def reasoning(s: str, seq: int, signature: str | None = None) -> ReasoningDelta:
    return ReasoningDelta(stream_id="t", seq=seq, at=seq * 10, text=s, signature=signature)


def test_mergeable_pairs() -> None:
    assert mergeable(text("a", 1), text("b", 2))
    assert mergeable(RefusalDelta(stream_id="t", seq=1, at=1, text="no"), RefusalDelta(stream_id="t", seq=2, at=2, text="!"))
    assert mergeable(args('{"a"', 1), args(":1}", 2))
    assert mergeable(reasoning("x", 1), reasoning("", 2, signature="sig"))


def test_not_mergeable_across_outputs_kinds_calls_streams_and_signatures() -> None:
    assert not mergeable(text("a", 1, output=0), text("b", 2, output=1))
    assert not mergeable(text("a", 1, stream_id="s1"), text("b", 2, stream_id="s2"))
    # meta names the provider block or item, or carries per-piece details: never merged across.
    assert not mergeable(text("a", 1, item_id="m1"), text("b", 2, item_id="m2"))
    assert not mergeable(text("a", 1, block_index=0), text("b", 2, block_index=1))
    assert not mergeable(text("a", 1, logprobs=[1]), text("b", 2, logprobs=[2]))
    assert not mergeable(text("a", 1), text("b", 2, thought_signature="s"))
    assert not mergeable(text("a", 1), RefusalDelta(stream_id="t", seq=2, at=2, text="b"))
    assert not mergeable(text("a", 1), reasoning("b", 2))
    assert not mergeable(args("a", 1, call_index=0), args("b", 2, call_index=1))
    assert not mergeable(args("a", 1, call_id="c0"), args("b", 2, call_id="c1"))
    assert not mergeable(reasoning("x", 1, signature="sig"), reasoning("y", 2))
    partial = JsonPartial(stream_id="t", seq=1, at=1, target=JsonTarget(kind="text"), value={"a": 1})
    assert not mergeable(partial, partial)
    start = ToolCallStart(stream_id="t", seq=1, at=1, call_index=0, name="f")
    assert not mergeable(start, start)


def test_merge_keeps_the_first_fields_and_takes_seq_and_at_of_the_last() -> None:
    merged = merge(text("Hel", 1, output=2, item_id="m", sequence_number=7), text("lo", 4, output=2, item_id="m", sequence_number=9))
    assert merged == TextDelta(stream_id="t", seq=4, at=40, output=2, text="Hello", meta={"item_id": "m", "sequence_number": 9})
    merged_args = merge(args('{"a"', 1), args(":1}", 3))
    assert (merged_args.arguments_delta, merged_args.call_id, merged_args.seq, merged_args.at) == ('{"a":1}', "c0", 3, 30)
    signed = merge(reasoning("think", 1), reasoning("", 2, signature="sig"))
    assert (signed.text, signed.signature, signed.seq) == ("think", "sig", 2)
    with pytest.raises(ValueError, match="adjacent deltas"):
        merge(text("a", 1), text("b", 2, output=1))


def test_merge_run() -> None:
    run_ = [text("a", 1), text("b", 2), text("c", 3)]
    assert merge_run(run_) == text("abc", 3)
    assert merge_run(run_[:1]) is run_[0]
    with pytest.raises(ValueError, match="empty"):
        merge_run([])


def test_delta_merger_emits_in_order_and_holds_one_run() -> None:
    start = StreamStart(stream_id="t", seq=0, at=0, wire="openai.chat")
    cite = Citation(stream_id="t", seq=5, at=50, url="https://example.com")
    merger = DeltaMerger()
    out: list[EventBase] = []
    out += merger.feed(start)
    assert out == [start]
    out += merger.feed(text("a", 1))
    out += merger.feed(text("b", 2))
    assert merger.pending == 2 and out == [start]
    out += merger.feed(text("x", 3, output=1))
    out += merger.feed(cite)
    out += merger.feed(text("c", 6))
    out += merger.flush()
    assert out == [start, text("ab", 2), text("x", 3, output=1), cite, text("c", 6)]
    assert merger.flush() == [] and merger.failure is None


@pytest.mark.parametrize("path", recording_paths(), ids=lambda p: p.name)
def test_coalescing_a_recording_keeps_its_result(path: Path) -> None:
    events, error = run_recording(path)
    merged = coalesce(events)
    assert accumulate(merged, error) == accumulate(events, error)
    assert [e.seq for e in merged] == sorted(e.seq for e in merged)
    assert [e for e in merged if e.type not in DELTAS] == [e for e in events if e.type not in DELTAS]
