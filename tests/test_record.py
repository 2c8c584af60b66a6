"""record() and cassettes: live round trips over the emulator, timed replay in virtual time, failures, secrets, buffering, the Rx grammar."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import reactivex
from reactivex import Observable
from reactivex import operators as ops
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.marbles import marbles_testing

from rxstream._cassette import (
    CASSETTE_FORMAT,
    CASSETTE_VERSION,
    REDACTED,
    Cassette,
    CassetteWriter,
    is_cassette,
    read_cassette,
    redact,
)
from rxstream._chunk import ProviderChunk, StreamOpen
from rxstream._consume import collect
from rxstream._errors import (
    ProtocolError,
    ProviderError,
    RateLimitError,
    RxStreamError,
    StreamTimeoutError,
    TransportError,
)
from rxstream._events import EventBase, StreamStart
from rxstream._result import StreamResult
from rxstream.operators import normalize
from rxstream.operators._record import record
from rxstream.sources import anthropic_messages, gemini, openai_chat, openai_responses, replay
from rxstream.sources._payloads import PayloadDecoder
from rxstream.sources._replay import play, read_recording
from rxstream.testing import ProviderEmulator
from tests.conftest import RECORDINGS

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error

KEY = "sk-test-SECRET-7f3a9c"
MESSAGES = [{"role": "user", "content": "What is the weather in Edinburgh?"}]

# One live source per wire, all against the emulator (real HTTP on loopback).
SOURCES: dict[str, Callable[[str, dict[str, str]], Observable[ProviderChunk]]] = {
    "openai.chat": lambda base, h: openai_chat(
        model="gpt-4o", messages=MESSAGES, api_key=KEY, base_url=f"{base}/v1", headers=h
    ),
    "openai.responses": lambda base, h: openai_responses(
        model="gpt-4o", input="weather?", api_key=KEY, base_url=f"{base}/v1", headers=h
    ),
    "anthropic.messages": lambda base, h: anthropic_messages(
        model="claude", messages=MESSAGES, api_key=KEY, base_url=base, headers=h
    ),
    "gemini": lambda base, h: gemini(model="gemini-2.5-flash", contents="weather?", api_key=KEY, base_url=base, headers=h),
    "gemini.array": lambda base, h: gemini(
        model="gemini-2.5-flash", contents="weather?", api_key=KEY, base_url=base, headers=h, sse=False
    ),
}
ROUND_TRIPS = [
    ("openai.chat", "openai-chat-toolcall-parallel-1.sse"),
    ("openai.chat", "openai-chat-multichoice-n2-1.sse"),
    ("openai.responses", "openai-responses-functioncall-1.sse"),
    ("anthropic.messages", "anthropic-messages-thinking-1.sse"),
    ("gemini", "gemini-generatecontent-toolcall-1.sse"),
    ("gemini.array", "gemini-generatecontent-jsonarray-text-1.json"),
]


def timeless(events: list[EventBase]) -> list[EventBase]:
    return [
        e.model_copy(update={"at": 0, "request_sent_at": None, "first_event_at": None})
        if isinstance(e, StreamStart)
        else e.model_copy(update={"at": 0})
        for e in events
    ]


def result_timeless(result: StreamResult) -> StreamResult:
    """The result with every event's clock reading zeroed (live and replayed clocks differ)."""
    outputs = [
        dataclasses.replace(o, citations=[c.model_copy(update={"at": 0}) for c in o.citations]) for o in result.outputs
    ]
    usage = result.usage.model_copy(update={"at": 0}) if result.usage is not None else None
    return dataclasses.replace(result, outputs=outputs, usage=usage, error=None)


async def live(
    wire: str, recording: str | None, path: Path | io.IOBase, *, pace: str = "fast", fault: str | None = None, **kw: Any
) -> tuple[list[ProviderChunk], list[EventBase], StreamResult, Exception | None]:
    """One live request to the emulator, recorded; the chunks, events and result it gave."""
    async with ProviderEmulator(RECORDINGS) as emu:
        headers = {"x-rxstream-pace": pace}
        if recording is not None:
            headers["x-rxstream-recording"] = recording
        if fault is not None:
            headers["x-rxstream-fault"] = fault
        chunks: list[ProviderChunk] = []
        events: list[EventBase] = []
        stream = SOURCES[wire](emu.base_url, headers).pipe(
            record(cast(Any, path), **kw), ops.do_action(chunks.append), normalize(stream_id="s"), ops.do_action(events.append)
        )
        try:
            result = await collect(stream)
            error = None
        except RxStreamError as exc:
            assert exc.partial is not None
            result, error = exc.partial, exc
    return chunks, events, result, error


async def replayed(path: Path, **kw: Any) -> tuple[list[EventBase], StreamResult, Exception | None]:
    events: list[EventBase] = []
    try:
        result = await collect(replay(path, **kw).pipe(normalize(stream_id="s"), ops.do_action(events.append)))
        error = None
    except RxStreamError as exc:
        assert exc.partial is not None
        result, error = exc.partial, exc
    return events, result, error


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- round trips over real HTTP --------------------------------------------------------------------


@pytest.mark.parametrize(("wire", "recording"), ROUND_TRIPS)
def test_record_then_replay_gives_the_live_result(tmp_path: Path, wire: str, recording: str) -> None:
    path = tmp_path / "run.jsonl"

    async def go() -> tuple[Any, ...]:
        chunks, events, result, error = await live(wire, recording, path)
        again = await replayed(path)
        timed = await replayed(path, speed=50.0)
        return chunks, events, result, error, again, timed

    chunks, events, result, error, (events2, result2, error2), (events3, result3, _) = asyncio.run(go())
    assert error is None and error2 is None and result.completed
    assert timeless(events2) == timeless(events) and timeless(events3) == timeless(events)
    assert result_timeless(result2) == result_timeless(result) == result_timeless(result3)
    assert result2.request_id is not None and result2.request_id == result.request_id
    assert result2.request == result.request  # nothing secret in it, so nothing was redacted
    rows = lines(path)
    assert rows[0]["format"] == CASSETTE_FORMAT and rows[0]["version"] == CASSETTE_VERSION and rows[0]["timing"]
    assert [r["kind"] for r in rows[1:]] == ["open"] + ["data"] * (len(chunks) - 1) + ["complete"]
    assert rows[1]["wire"] == chunks[0].wire and all("wire" not in r for r in rows[2:])
    assert rows[1]["open"]["status"] == 200 and rows[1]["open"]["headers"]["content-type"]
    # Offsets are the live arrival times, to the microsecond, from the moment the request was sent.
    sent = cast(StreamOpen, chunks[0].open).request_sent_at
    assert sent is not None
    assert [r["ms"] for r in rows[1:-1]] == [((c.at - sent + 500) // 1000) / 1000 for c in chunks]
    assert rows[1]["open"]["request_sent_ms"] == 0.0 and rows[-1]["ms"] >= rows[-2]["ms"]


def test_replay_at_recorded_speed_in_virtual_time_keeps_the_gaps(tmp_path: Path) -> None:
    path = tmp_path / "paced.jsonl"
    chunks, _, _, _ = asyncio.run(live("anthropic.messages", "anthropic-messages-toolcall-1.sse", path, pace="400"))
    tape = read_recording(path)
    assert tape.timed and tape.end == "complete" and tape.end_at is not None
    recorded = [c.at for c in tape.chunks]
    # The emulator paced it at 400 events/s: the gaps are real, a few ms each.
    assert sum(b - a for a, b in itertools.pairwise(recorded)) > 10_000_000

    def run(speed: float) -> tuple[list[tuple[float, ProviderChunk]], float]:
        scheduler = TestScheduler()
        results = scheduler.start(lambda: replay(path, speed=speed, scheduler=scheduler), disposed=10_000)
        items = [(m.time, cast(Any, m.value).value) for m in results.messages if m.value.kind == "N"]
        (end,) = [m.time for m in results.messages if m.value.kind == "C"]
        return items, end

    items, end = run(1.0)
    ats = [chunk.at for _, chunk in items]
    start_ns = 200 * 10**9  # TestScheduler.start subscribes at 200 s
    assert [at - start_ns for at in ats] == recorded  # each chunk at its recorded offset, exactly
    assert [b - a for a, b in itertools.pairwise(ats)] == [b - a for a, b in itertools.pairwise(recorded)]
    live_ats = [c.at for c in chunks]  # ns on the live clock: the cassette keeps microseconds
    assert all(
        abs((b - a) - (d - c)) <= 1000 for (a, b), (c, d) in zip(itertools.pairwise(ats), itertools.pairwise(live_ats), strict=True)
    )
    assert [t for t, _ in items] == pytest.approx([200 + r / 1e9 for r in recorded], abs=1e-6)
    assert end == pytest.approx(200 + tape.end_at / 1e9, abs=1e-6)
    opened = cast(StreamOpen, items[0][1].open)
    assert opened.request_sent_at == start_ns and opened.headers_at == ats[0]
    fast, fast_end = run(2.0)
    assert [chunk.at - start_ns for _, chunk in fast] == [round(r / 2 / 1000) * 1000 for r in recorded]
    assert fast_end == pytest.approx(200 + tape.end_at / 2e9, abs=1e-6)
    at_once, _ = run(1e9)
    assert len({chunk.at for _, chunk in at_once}) <= 2  # a billion times faster: all within a microsecond


def test_time_based_operators_see_the_recorded_gaps(tmp_path: Path) -> None:
    # Gaps of 0, 30 and 5 ms: a 10 ms debounce keeps the chunk before each longer silence.
    path = tmp_path / "gaps.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(row)
            for row in [
                {"format": CASSETTE_FORMAT, "version": 1, "timing": True},
                {"kind": "open", "ms": 1.0, "wire": "openai.chat", "open": None},
                *(
                    {"kind": "data", "ms": ms, "data": {"object": "chat.completion.chunk", "choices": [], "n": i}}
                    for i, ms in enumerate([1.0, 31.0, 36.0, 80.0])
                ),
                {"kind": "complete", "ms": 90.0},
            ]
        )
        + "\n"
    )
    scheduler = TestScheduler()
    results = scheduler.start(
        lambda: replay(path, speed=1.0, scheduler=scheduler).pipe(ops.debounce(0.010, scheduler=scheduler))
    )
    kept = [(round(m.time, 6), cast(Any, m.value).value.data["n"]) for m in results.messages if m.value.kind == "N"]
    assert kept == [(200.011, 0), (200.046, 2), (200.09, 3)]


# -- failures --------------------------------------------------------------------------------------


def test_a_dropped_connection_leaves_a_valid_cassette_ending_with_the_error(tmp_path: Path) -> None:
    path = tmp_path / "dropped.jsonl"

    async def go() -> tuple[Any, ...]:
        first = await live("openai.chat", "openai-chat-toolcall-1.sse", path, fault="drop_after=5")
        return first, await replayed(path), await replayed(path, speed=100.0)

    (chunks, events, result, error), (events2, result2, error2), (_, _, error3) = asyncio.run(go())
    assert isinstance(error, TransportError)
    tape = read_recording(path)
    assert tape.end == "error" and tape.error is not None and tape.error.type == "TransportError"
    assert len(tape.chunks) == len(chunks) == 6  # the open chunk and the five payloads sent
    assert isinstance(error2, TransportError) and error2.message == error.message
    assert isinstance(error3, TransportError)
    assert timeless(events2) == timeless(events)
    assert result_timeless(result2) == result_timeless(result) and not result2.completed
    assert lines(path)[-1]["kind"] == "error" and "cause" in lines(path)[-1]


def test_an_in_stream_provider_error_replays_as_the_same_error(tmp_path: Path) -> None:
    path = tmp_path / "failed.jsonl"

    async def go() -> tuple[Any, ...]:
        return await live("anthropic.messages", "anthropic-messages-text-1.sse", path, fault="error_after=4"), await replayed(path)

    (_, events, result, error), (events2, result2, error2) = asyncio.run(go())
    assert isinstance(error, ProviderError) and isinstance(error2, ProviderError)
    assert error2.message == error.message and error2.code == error.code
    assert timeless(events2) == timeless(events) and result_timeless(result2) == result_timeless(result)
    tape = read_recording(path)
    # normalize() raised on the error payload: the cassette holds it, and ends where the consumer stopped.
    assert tape.chunks[-1].event == "error" and tape.end in ("complete", "dispose")


def test_an_http_error_leaves_a_cassette_with_only_the_error(tmp_path: Path) -> None:
    path = tmp_path / "limited.jsonl"
    _, events, _, error = asyncio.run(live("openai.chat", None, path, fault="status=429;retry_after=2"))
    assert isinstance(error, RateLimitError) and events == []
    rows = lines(path)
    assert [r.get("kind") for r in rows] == [None, "error"]
    assert rows[1]["fields"]["status"] == 429 and rows[1]["fields"]["retry_after"] == 2.0
    _, _, error2 = asyncio.run(replayed(path))
    assert isinstance(error2, RateLimitError)
    assert (error2.status, error2.retry_after, error2.message) == (429, 2.0, error.message)


def test_recorded_errors_rebuild_with_their_typed_fields(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    timeout = StreamTimeoutError("no data within 5 s", kind="idle", seconds=5.0)
    source: Observable[ProviderChunk] = reactivex.throw(timeout)
    source.pipe(record(buffer)).subscribe(on_error=lambda _: None)
    tape = read_cassette(buffer.getvalue())
    assert tape.error is not None
    error = tape.error.build()
    assert isinstance(error, StreamTimeoutError) and (error.kind, error.seconds) == ("idle", 5.0)
    assert tape.error.build() is not error  # a fresh exception per replay
    foreign = io.BytesIO()
    reactivex.throw(KeyError("callback bug")).pipe(record(foreign)).subscribe(on_error=lambda _: None)
    rebuilt = cast(Any, read_cassette(foreign.getvalue()).error).build()
    assert type(rebuilt) is RxStreamError and "KeyError" in rebuilt.message


# -- secrets ---------------------------------------------------------------------------------------


def test_secrets_never_reach_the_cassette(tmp_path: Path) -> None:
    path = tmp_path / "secret.jsonl"

    async def go() -> None:
        async with ProviderEmulator(RECORDINGS) as emu:
            base = emu.base_url.replace("http://", f"http://user:{KEY}@")
            source = openai_chat(
                model="gpt-4o",
                messages=MESSAGES,
                api_key=KEY,
                base_url=f"{base}/v1",
                headers={"x-goog-api-key": KEY},
                metadata={"api_key": KEY, "note": f"Bearer {KEY}"},
                tools=[{"type": "function", "function": {"name": "f", "parameters": {"properties": {"token": {"type": "string"}}}}}],
            )
            await collect(source.pipe(record(path), normalize()))

    asyncio.run(go())
    body = path.read_text()
    assert KEY not in body and "SECRET" not in body
    request = lines(path)[1]["open"]["request"]
    assert request["metadata"] == {"api_key": REDACTED, "note": f"Bearer {REDACTED}"}
    assert request["tools"][0]["function"]["parameters"]["properties"]["token"] == {"type": "string"}


def test_redaction_of_urls_headers_and_nested_fields() -> None:
    opened = StreamOpen(
        provider="p",
        request={"contents": [{"parts": [{"text": "hi"}]}], "auth": {"Authorization": f"Bearer {KEY}"}, "key": KEY},
        status=200,
        headers={"set-cookie": f"session={KEY}", "x-request-id": "r1", "Authorization": KEY},
        url=f"https://user:{KEY}@example.com/v1/models/m:stream?alt=sse&key={KEY}",
        request_sent_at=1_000_000,
        headers_at=3_500_000,
    )
    buffer = io.BytesIO()
    reactivex.from_iterable([ProviderChunk("open", "gemini", None, None, 3_500_000, opened)]).pipe(record(buffer)).subscribe()
    text = buffer.getvalue().decode()
    assert KEY not in text
    row = json.loads(text.splitlines()[1])["open"]
    assert row["headers"] == {"set-cookie": REDACTED, "x-request-id": "r1", "Authorization": REDACTED}
    assert row["url"].startswith(f"https://{REDACTED}@example.com/") and "alt=sse" in row["url"]
    assert row["request"]["key"] == REDACTED and row["request"]["auth"]["Authorization"] == REDACTED
    assert (row["request_sent_ms"], row["headers_ms"]) == (0.0, 2.5)
    assert json.loads(text.splitlines()[1])["ms"] == 2.5
    assert redact({"password": 3, "list": [f"Basic {KEY}"]}) == {"password": 3, "list": [f"Basic {REDACTED}"]}


# -- buffering -------------------------------------------------------------------------------------


class CountingFile(io.BytesIO):
    """A binary file that counts its write calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def write(self, data: Any) -> int:
        self.calls.append(len(data))
        return super().write(data)


def test_writes_are_buffered_and_flushed_on_completion(tmp_path: Path) -> None:
    chunks = read_recording(RECORDINGS / "openai-chat-toolcall-parallel-1.sse").chunks
    file = CountingFile()
    writes_seen: list[int] = []
    source = reactivex.from_iterable(chunks).pipe(record(file), ops.do_action(lambda _: writes_seen.append(len(file.calls))))
    got: list[ProviderChunk] = []
    source.subscribe(got.append)
    assert got == chunks  # passed through unchanged, the same objects
    assert set(writes_seen) == {0}, "nothing is written while the stream runs"
    assert len(file.calls) == 1 and file.calls[0] == len(file.getvalue())
    small = CountingFile()
    reactivex.from_iterable(chunks).pipe(record(small, buffer_bytes=2048)).subscribe()
    assert 1 < len(small.calls) < len(chunks) / 2
    assert all(size >= 2048 for size in small.calls[:-1])
    tape, tape_small = read_cassette(file.getvalue()), read_cassette(small.getvalue())
    assert [c.data for c in tape.chunks] == [c.data for c in tape_small.chunks] == [c.data for c in chunks]


def test_a_text_file_and_untimed_cassettes(tmp_path: Path) -> None:
    chunks = read_recording(RECORDINGS / "gemini-generatecontent-text-1.sse").chunks
    text = io.StringIO()
    reactivex.from_iterable(chunks).pipe(record(text, timing=False)).subscribe()
    rows = [json.loads(line) for line in text.getvalue().splitlines()]
    assert rows[0]["timing"] is False and all("ms" not in r for r in rows[1:])
    assert not text.closed, "a file given open is left open"
    path = tmp_path / "untimed.jsonl"
    path.write_text(text.getvalue())
    scheduler = TestScheduler()
    results = scheduler.start(lambda: replay(path, speed=1.0, scheduler=scheduler))
    assert {m.time for m in results.messages} == {200.0}, "an untimed cassette plays at once"


# -- the Rx grammar --------------------------------------------------------------------------------


def chunk(n: int) -> ProviderChunk:
    if n == 0:
        return ProviderChunk("open", "openai.chat", None, None, 1_000_000, StreamOpen(provider="p", request_sent_at=0))
    return ProviderChunk("data", "openai.chat", None, {"object": "chat.completion.chunk", "choices": [], "n": n}, n * 1_000_000)


def test_marble_diagram() -> None:
    buffer = io.BytesIO()
    values: dict[str | float, Any] = {"o": chunk(0), "a": chunk(1), "b": chunk(2), "c": chunk(3)}
    with marbles_testing(timespan=1) as (begin, cold, _hot, exp):
        source = cold("-o-a-b-c-|", values, None)
        expected = exp("-o-a-b-c-|", values, None)
        assert begin(source.pipe(record(buffer))) == expected
    kinds = [json.loads(line).get("kind") for line in buffer.getvalue().splitlines()]
    assert kinds == [None, "open", "data", "data", "data", "complete"]


def test_never_writes_the_header_only_then_dispose(tmp_path: Path) -> None:
    path = tmp_path / "never.jsonl"
    scheduler = TestScheduler()
    results = scheduler.start(lambda: reactivex.never().pipe(record(path)))
    assert results.messages == []
    rows = lines(path)
    assert rows[0]["format"] == CASSETTE_FORMAT and rows[1]["kind"] == "dispose" and len(rows) == 2


def test_empty_writes_complete(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_completed(10))
    results = scheduler.start(lambda: xs.pipe(record(path)))
    assert results.messages == [on_completed(210)]
    assert [r.get("kind") for r in lines(path)] == [None, "complete"]
    tape = read_recording(path)
    assert tape.chunks == [] and tape.end == "complete"


def test_one_item_passes_and_is_written(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, chunk(0)), on_completed(20))
    results = scheduler.start(lambda: xs.pipe(record(path)))
    assert results.messages == [on_next(210, chunk(0)), on_completed(220)]
    assert read_recording(path).chunks[0].open == StreamOpen(provider="p", request_sent_at=0, headers_at=None)


def test_upstream_error_is_written_then_passed_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "error.jsonl"
    boom = TransportError("connection reset")
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, chunk(0)), on_next(15, chunk(1)), on_error(20, boom))
    results = scheduler.start(lambda: xs.pipe(record(path)))
    assert cast(Any, results.messages[-1].value).exception is boom
    assert lines(path)[-1] == {"kind": "error", "ms": lines(path)[-1]["ms"], "type": "TransportError", "message": "connection reset"}


def test_dispose_midway_writes_dispose_and_unsubscribes_upstream(tmp_path: Path) -> None:
    path = tmp_path / "disposed.jsonl"
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, chunk(0)), on_next(400, chunk(1)), on_completed(500))
    results = scheduler.start(lambda: xs.pipe(record(path)), disposed=300)
    assert results.messages == [on_next(210, chunk(0))]
    assert [(s.subscribe, s.unsubscribe) for s in xs.subscriptions] == [(200, 300)]
    tape = read_recording(path)
    assert tape.end == "dispose" and len(tape.chunks) == 1
    replayed_chunks: list[ProviderChunk] = []
    done: list[bool] = []
    replay(path).subscribe(replayed_chunks.append, on_completed=lambda: done.append(True))
    assert [c.kind for c in replayed_chunks] == ["open"] and done == [True]  # a stopped stream replays as ended


def test_resubscribe_rewrites_the_same_cassette(tmp_path: Path) -> None:
    path = tmp_path / "again.jsonl"
    source = reactivex.from_iterable([chunk(0), chunk(1), chunk(2)]).pipe(record(path, timing=False))
    first: list[ProviderChunk] = []
    source.subscribe(first.append)
    body = path.read_text().splitlines()[1:]
    second: list[ProviderChunk] = []
    source.subscribe(second.append)
    assert first == second and path.read_text().splitlines()[1:] == body


def test_record_after_normalize_is_an_error() -> None:
    events = list(read_recording(RECORDINGS / "openai-chat-text-1.sse").chunks)
    errors: list[Exception] = []
    stream = reactivex.from_iterable(events).pipe(normalize(), cast(Any, record(io.BytesIO())))
    stream.subscribe(on_error=errors.append)
    assert isinstance(errors[0], RxStreamError) and "before normalize()" in str(errors[0])


def test_an_unopenable_path_fails_before_subscribing_upstream(tmp_path: Path) -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, chunk(0)), on_completed(20))
    results = scheduler.start(lambda: xs.pipe(record(tmp_path / "missing" / "dir" / "c.jsonl")))
    (message,) = results.messages
    error = cast(Any, message.value).exception
    assert isinstance(error, RxStreamError) and "cannot open the cassette" in error.message
    assert isinstance(error.__cause__, OSError) and xs.subscriptions == []


class BrokenFile(io.BytesIO):
    """A file whose disk fills up after the first write (the header)."""

    def write(self, data: Any) -> int:
        if self.tell():
            raise OSError(28, "No space left on device")
        return super().write(data)


def test_a_failing_write_fails_the_stream_and_stops_the_source() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, chunk(0)), on_next(220, chunk(1)), on_completed(500))
    results = scheduler.start(lambda: xs.pipe(record(BrokenFile(), buffer_bytes=1)))
    (message,) = results.messages
    error = cast(Any, message.value).exception
    assert message.time == 210 and isinstance(error, RxStreamError) and "No space left" in error.message
    assert isinstance(error.__cause__, OSError)
    assert [(s.subscribe, s.unsubscribe) for s in xs.subscriptions] == [(200, 210)]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((42,), {}, "a path or a file"),
        (("c.jsonl",), {"timing": "yes"}, "timing"),
        (("c.jsonl",), {"buffer_bytes": 0}, "buffer_bytes"),
        (("c.jsonl",), {"buffer_bytes": True}, "buffer_bytes"),
    ],
)
def test_config_is_checked_at_call_time(args: tuple[Any, ...], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        record(*args, **kwargs)


@pytest.mark.parametrize("speed", [0, -1.0, math.nan, math.inf, True, "1"])
def test_replay_speed_is_checked_at_call_time(speed: Any) -> None:
    with pytest.raises(ValueError, match="speed"):
        replay(RECORDINGS / "openai-chat-text-1.sse", speed=speed)


# -- timed replay: disposal, re-subscription, the loop ---------------------------------------------


def paced_cassette(tmp_path: Path, gaps_ms: list[float], end: str = "complete") -> Path:
    rows: list[dict[str, Any]] = [
        {"format": CASSETTE_FORMAT, "version": 1, "timing": True},
        {"kind": "open", "ms": 0.0, "wire": "openai.chat", "open": {"provider": "p", "request_sent_ms": 0.0, "headers_ms": 0.0}},
    ]
    at = 0.0
    for i, gap in enumerate(gaps_ms):
        at += gap
        delta = {"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}
        rows.append({"kind": "data", "ms": round(at, 3), "data": {"object": "chat.completion.chunk", "model": "m", "choices": [delta]}})
    rows.append({"kind": end, "ms": round(at, 3)} if end != "error" else {"kind": "error", "ms": at, "type": "TransportError", "message": "gone"})
    path = tmp_path / "paced.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


class SpyScheduler(TestScheduler):
    """Keeps what each scheduled action returned, to see which were cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.scheduled: list[tuple[float, Any]] = []

    def schedule_absolute(self, duetime: Any, action: Any, state: Any = None) -> Any:
        disposable = super().schedule_absolute(duetime, action, state)
        self.scheduled.append((self.to_seconds(duetime), disposable))
        return disposable


def test_disposing_a_timed_replay_cancels_its_timer(tmp_path: Path) -> None:
    path = paced_cassette(tmp_path, [10.0] * 10)
    scheduler = SpyScheduler()
    results = scheduler.start(lambda: replay(path, speed=1.0, scheduler=scheduler), disposed=200.035)
    assert [m.time for m in results.messages] == pytest.approx([200.0, 200.01, 200.02, 200.03])
    due, pending = scheduler.scheduled[-1]
    assert due == pytest.approx(200.04) and pending.is_disposed


def test_a_cassette_plays_the_same_twice(tmp_path: Path) -> None:
    tape = read_recording(paced_cassette(tmp_path, [5.0, 7.5, 2.25], end="error"))
    scheduler = TestScheduler()
    observable = play(tape, speed=1.0, scheduler=scheduler)
    first: list[ProviderChunk] = []
    second: list[ProviderChunk] = []
    errors: list[Exception] = []
    observable.subscribe(first.append, errors.append)
    scheduler.advance_by(1.0)
    observable.subscribe(second.append, errors.append)
    scheduler.advance_by(1.0)
    gaps = [[b.at - a.at for a, b in itertools.pairwise(run)] for run in (first, second)]
    assert gaps[0] == gaps[1] == [5_000_000, 7_500_000, 2_250_000]
    assert len(errors) == 2 and errors[0] is not errors[1] and all(isinstance(e, TransportError) for e in errors)
    assert tape.chunks[1].at == 5_000_000, "playing does not touch the cassette"


def test_a_timed_replay_runs_on_the_asyncio_loop(tmp_path: Path) -> None:
    # Real time is the point here: 8 gaps of 5 ms at speed 1, and the loop stays free meanwhile.
    path = paced_cassette(tmp_path, [5.0] * 8)

    async def go() -> tuple[float, int, StreamResult]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        task = asyncio.create_task(ticker())
        began = time.perf_counter()
        result = await collect(replay(path, speed=1.0).pipe(normalize()))
        took = time.perf_counter() - began
        task.cancel()
        return took, ticks, result

    took, ticks, result = asyncio.run(go())
    assert 0.035 <= took < 2.0 and ticks >= 5
    assert result.text == "".join(f"w{i} " for i in range(8))


# -- reading cassettes -----------------------------------------------------------------------------


def test_a_cassette_cut_short_replays_then_fails(tmp_path: Path) -> None:
    whole = paced_cassette(tmp_path, [1.0] * 4).read_bytes()
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(whole[: whole.rindex(b'{"kind": "complete"')] + b'{"kind": "da')  # a write interrupted mid-line
    tape = read_recording(cut)
    assert tape.end is None and len(tape.chunks) == 5
    _, result, error = asyncio.run(replayed(cut))
    assert isinstance(error, ProtocolError) and "cut short" in error.message
    assert result.text == "w0 w1 w2 w3 "


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"format": "rxstream.cassette", "version": 2}\n', "version 2 was written by a newer rxstream"),
        (b'{"format": "rxstream.cassette", "version": "1"}\n', "integer version"),
        (b'{"format": "rxstream.cassette", "version": 1}\nnot json\n{"kind": "complete"}\n', "line #2: expected a JSON object"),
        (b'{"format": "rxstream.cassette", "version": 1}\n{"kind": "tape", "ms": 1}\n', "line #2: expected kind open"),
        (b'{"format": "rxstream.cassette", "version": 1}\n{"kind": "data"}\n', "line #2: expected an offset"),
        (b'{"format": "rxstream.cassette", "version": 1}\n{"kind": "complete", "ms": 1}\n{"kind": "data", "ms": 2}\n', "nothing after"),
        (b'{"format": "rxstream.cassette", "version": 1}\n{"kind": "data", "ms": 1, "wire": "soap"}\n', "in wire"),
        (b'{"format": "rxstream.cassette", "version": 1}\n{"kind": "error", "ms": 1, "type": 3}\n', "type and message"),
    ],
)
def test_malformed_cassettes_are_refused_with_the_line(tmp_path: Path, body: bytes, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(body)
    with pytest.raises(ProtocolError, match=message):
        read_recording(path)
    errors: list[Exception] = []
    replay(path).subscribe(on_error=errors.append)
    assert isinstance(errors[0], ProtocolError) and str(path) in str(errors[0])


def test_is_cassette_tells_cassettes_from_raw_recordings() -> None:
    assert is_cassette(b'\n{"format": "rxstream.cassette", "version": 1}\n')
    assert not is_cassette((RECORDINGS / "mistral-chat-text-1.jsonl").read_bytes())
    assert not is_cassette(b'{"note": "rxstream.cassette"}\n')
    assert not is_cassette(b"")


def test_writer_close_without_end_reads_as_cut_short() -> None:
    buffer = io.BytesIO()
    writer = CassetteWriter(buffer, buffer_bytes=1)
    writer.chunk(chunk(0))
    writer.close()
    tape: Cassette = read_cassette(buffer.getvalue())
    assert tape.end is None and len(tape.chunks) == 1 and writer.writes == 2


# -- the emulator serves cassettes -----------------------------------------------------------------


def test_the_emulator_serves_a_recorded_cassette_with_its_gaps(tmp_path: Path) -> None:
    folder = tmp_path / "cassettes"
    folder.mkdir()
    path = folder / "recorded.jsonl"
    _, events, result, _ = asyncio.run(live("openai.chat", "openai-chat-text-1.sse", path, pace="100"))
    tape = read_recording(path)
    head = tape.chunks[0].at
    recorded = [(c.at - head) / 1e9 for c in tape.chunks[1:]]

    async def serve() -> tuple[list[float], StreamResult, StreamResult]:
        async with ProviderEmulator(folder, pace="original") as emu:
            assert emu.recordings["openai.chat"] == ["recorded.jsonl"]
            decoder = PayloadDecoder("sse")
            times: list[float] = []
            async with httpx.AsyncClient() as client:
                began = time.perf_counter()
                async with client.stream("POST", f"{emu.base_url}/v1/chat/completions", json={}) as resp:
                    async for piece in resp.aiter_raw():
                        times.extend(time.perf_counter() - began for _ in decoder.feed(piece))
            source = openai_chat(model="gpt-4o", messages=MESSAGES, api_key=KEY, base_url=f"{emu.base_url}/v1")
            served = await collect(source.pipe(normalize(stream_id="s")))
            fast = openai_chat(
                model="gpt-4o", messages=MESSAGES, api_key=KEY, base_url=f"{emu.base_url}/v1", headers={"x-rxstream-pace": "fast"}
            )
            return times, served, await collect(fast.pipe(normalize(stream_id="s")))

    times, served, fast = asyncio.run(serve())
    assert len(times) == len(recorded)
    # Paced at 100 events/s when recorded (about 10 ms apart): served again, no payload arrives
    # before its recorded offset from the response head (the emulator may only be late).
    assert recorded[-1] > 0.1
    assert all(t >= r - 0.001 for t, r in zip(times, recorded, strict=True)), (times, recorded)
    assert served.outputs == result.outputs == fast.outputs and served.text
    assert events


def test_an_emulator_cassette_without_payloads_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(json.dumps({"format": CASSETTE_FORMAT, "version": 1}) + "\n" + json.dumps({"kind": "error", "ms": 1, "type": "RateLimitError", "message": "429"}) + "\n")
    with pytest.raises(ProtocolError, match="ended error before its first payload"):
        ProviderEmulator(tmp_path)
