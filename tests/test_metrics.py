"""tap_metrics(): marks, gaps and throughput equal the recorded timing, replayed in virtual time."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import itertools
import json
import math
import pickle
import random
from pathlib import Path
from typing import Any

import pytest
import reactivex
from reactivex import abc
from reactivex import operators as ops
from reactivex.disposable import Disposable
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

from rxstream._consume import collect
from rxstream._errors import ProviderUnavailableError, RxStreamError
from rxstream._events import (
    EventBase,
    Finish,
    Metrics,
    ReasoningDelta,
    StreamEnd,
    StreamStart,
    TextDelta,
    ToolCallStart,
    Usage,
    make_event,
)
from rxstream.metrics import (
    DURATION_BUCKETS,
    TOKEN_BUCKETS,
    Histogram,
    InMemoryMetrics,
    StreamMetrics,
    format_metrics,
)
from rxstream.operators import aggregate_usage, batch, normalize, tap_metrics
from rxstream.sources import load_recording, openai_chat, replay
from rxstream.testing import ProviderEmulator
from tests.conftest import recording_paths

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error

CONTENT = {"text.delta", "reasoning.delta", "refusal.delta", "tool_call.start", "tool_call.delta"}
HEADERS_MS = 150.0
FIRST_MS = 400.0


def offset(i: int) -> float:
    """Arrival of payload ``i`` (0-based): irregular gaps, whole microseconds."""
    return FIRST_MS + 10.0 * i + (i * 7 % 13) * 1.5


def timed_cassette(recording: Path, directory: Path, *, end: dict[str, Any] | None = None, cut: int | None = None) -> tuple[Path, int]:
    """Write ``recording`` as a cassette with known offsets; returns it and its payload count."""
    chunks = [c for c in load_recording(recording) if c.kind == "data"][:cut]
    wire = chunks[0].wire if chunks else None
    rows: list[dict[str, Any]] = [{"format": "rxstream.cassette", "version": 1, "timing": True}]
    rows.append(
        {
            "kind": "open",
            "ms": HEADERS_MS,
            "wire": wire,
            "open": {
                "provider": "acme",
                "request": {"model": "requested-model"},
                "status": 200,
                "headers": {},
                "request_id": "req_1",
                "url": "https://api.example.com:8443/v1/x?key=SECRET",
                "request_sent_ms": 0.0,
                "headers_ms": HEADERS_MS,
            },
        }
    )
    for i, chunk in enumerate(chunks):
        row: dict[str, Any] = {"kind": "data", "ms": offset(i), "data": chunk.data}
        if chunk.event is not None:
            row["event"] = chunk.event
        rows.append(row)
    rows.append(end if end is not None else {"kind": "complete", "ms": offset(len(chunks))})
    path = directory / (recording.name + ".cassette.jsonl")
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path, len(chunks)


def run_timed(path: Path, *, emit: bool = True, usage: bool = False) -> tuple[list[Any], Exception | None, InMemoryMetrics]:
    scheduler = TestScheduler()
    sink = InMemoryMetrics()
    events: list[Any] = []
    errors: list[Exception] = []
    pipe = [normalize(), aggregate_usage()] if usage else [normalize()]
    replay(path, speed=1.0, scheduler=scheduler).pipe(
        *pipe, tap_metrics(sink, emit=emit, scheduler=scheduler)
    ).subscribe(events.append, errors.append, scheduler=scheduler)
    scheduler.start()
    return events, (errors[0] if errors else None), sink


def expected_content_seqs(events: list[Any]) -> list[int]:
    """The seq of each content chunk, in order (several content events of one payload are one chunk)."""
    seqs: list[int] = []
    for e in events:
        if e.type in CONTENT and (e.type != "reasoning.delta" or e.text) and (not seqs or seqs[-1] != e.seq):
            seqs.append(e.seq)
    return seqs


@pytest.mark.parametrize("recording", recording_paths(), ids=lambda p: p.name)
def test_marks_and_gaps_equal_the_recorded_offsets(recording: Path, tmp_path: Path) -> None:
    path, n = timed_cassette(recording, tmp_path)
    events, error, sink = run_timed(path)
    [m] = sink.records
    assert m.origin == "request" and m.ttfb == pytest.approx(HEADERS_MS / 1000, abs=1e-9)
    assert m.first_event == pytest.approx(FIRST_MS / 1000, abs=1e-9)
    assert m.server_address == "api.example.com" and m.server_port == 8443
    assert m.request_model == "requested-model" and m.provider == "acme"
    seqs = expected_content_seqs(events)
    # seq n is the n-th payload (1-based), which arrived at offset(n - 1).
    arrivals = [offset(s - 1) / 1000 for s in seqs]
    assert m.chunks == len(seqs)
    if seqs:
        assert m.ttft == pytest.approx(arrivals[0], abs=1e-9)
    else:
        assert m.ttft is None
    assert m.gaps == pytest.approx([b - a for a, b in itertools.pairwise(arrivals)], abs=1e-9)
    assert len(m.gaps) == max(0, len(seqs) - 1)
    texts = [e for e in events if e.type == "text.delta"]
    assert m.first_text == (pytest.approx(offset(texts[0].seq - 1) / 1000, abs=1e-9) if texts else None)
    if error is None:
        assert m.outcome == "completed"
        assert m.duration == pytest.approx(offset(n - 1) / 1000, abs=1e-9)  # stream.end comes with the last payload
        assert [e.type for e in events[-2:]] == ["metrics", "stream.end"]
        metrics_event = events[-2]
        assert metrics_event.seq == events[-1].seq and metrics_event.at == events[-1].at
        assert metrics_event.ttft == m.ttft and metrics_event.gap_count == len(m.gaps)
    else:
        assert m.outcome == "error" and m.error_type == type(error).__name__
        assert not any(e.type == "metrics" for e in events)
    assert m.events == len([e for e in events if e.type != "metrics"])


FIRST_EVENT_IS_METADATA = [
    p for p in recording_paths() if p.name.startswith(("openai-responses", "anthropic-messages"))
]


@pytest.mark.parametrize("recording", FIRST_EVENT_IS_METADATA, ids=lambda p: p.name)
def test_time_to_first_token_is_not_the_first_provider_event(recording: Path, tmp_path: Path) -> None:
    """response.created and message_start carry no content: ttft comes strictly later."""
    path, _ = timed_cassette(recording, tmp_path)
    _, _, sink = run_timed(path)
    [m] = sink.records
    assert m.first_event is not None
    if m.ttft is not None:
        assert m.ttft > m.first_event


def test_responses_and_anthropic_recordings_are_covered() -> None:
    names = {p.name.split("-")[0] + "-" + p.name.split("-")[1] for p in FIRST_EVENT_IS_METADATA}
    assert names == {"openai-responses", "anthropic-messages"}
    assert len(FIRST_EVENT_IS_METADATA) >= 10


def test_throughput_uses_the_final_usage_and_says_whose_count(tmp_path: Path) -> None:
    recording = next(p for p in recording_paths() if p.name == "openai-chat-text-nousage-1.sse")
    path, _ = timed_cassette(recording, tmp_path)
    events, error, sink = run_timed(path, usage=True)
    assert error is None
    [m] = sink.records
    final = next(e for e in events if e.type == "usage" and e.final)
    assert m.output_tokens == final.output_tokens and m.usage_source == "estimated"
    window = (m.ttft or 0) + sum(m.gaps)
    assert m.tokens_per_s == pytest.approx(final.output_tokens / (window - (m.ttft or 0)))
    assert m.chunks_per_s == pytest.approx(len(m.gaps) / sum(m.gaps))
    metrics_event = next(e for e in events if e.type == "metrics")
    assert metrics_event.usage_source == "estimated" and metrics_event.tokens_per_s == m.tokens_per_s


def test_collect_carries_the_metrics_event(tmp_path: Path) -> None:
    recording = next(p for p in recording_paths() if p.name == "anthropic-messages-text-1.sse")
    path, _ = timed_cassette(recording, tmp_path)
    result = asyncio.run(collect(replay(path).pipe(normalize(), tap_metrics(emit=True))))
    assert isinstance(result.metrics, Metrics) and result.metrics.chunks == 3
    assert result.text and result.completed
    # Without emit, nothing is added to the stream or the result.
    plain = asyncio.run(collect(replay(path).pipe(normalize(), tap_metrics(InMemoryMetrics()))))
    assert plain.metrics is None and plain.text == result.text


def test_an_error_is_recorded_with_its_time_and_passed_on_unchanged(tmp_path: Path) -> None:
    recording = next(p for p in recording_paths() if p.name == "openai-chat-text-1.sse")
    end = {"kind": "error", "ms": 900.0, "type": "ProviderUnavailableError", "message": "upstream reset", "fields": {"status": 503}}
    path, n = timed_cassette(recording, tmp_path, end=end, cut=4)
    events, error, sink = run_timed(path)
    assert isinstance(error, ProviderUnavailableError) and "upstream reset" in str(error)
    assert not error.__notes__ if hasattr(error, "__notes__") else True
    [m] = sink.records
    assert m.outcome == "error" and m.error_type == "ProviderUnavailableError"
    assert m.duration == pytest.approx(0.9)  # the scheduler's clock at the error, not the last event
    assert [e.type for e in events if e.type == "text.delta"]  # what came before was delivered
    assert m.chunks == len(expected_content_seqs(events)) and n == 4


def test_without_a_scheduler_a_failed_stream_ends_at_its_last_event() -> None:
    boom = ProviderUnavailableError("overloaded", status=529)
    events: list[EventBase] = [start(), text("a", 1, 100), text("b", 2, 250)]
    sink = InMemoryMetrics()
    errors: list[Exception] = []
    reactivex.concat(reactivex.from_iterable(events), reactivex.throw(boom)).pipe(tap_metrics(sink)).subscribe(
        on_error=errors.append
    )
    assert errors == [boom]
    [m] = sink.records
    assert m.outcome == "error" and m.duration == pytest.approx(0.25) and m.gaps == pytest.approx([0.15])


def start(at: int = 0, sent: int | None = None, first: int | None = None, stream_id: str = "t") -> Any:
    return make_event(
        StreamStart, stream_id=stream_id, seq=0, at=at, wire="openai.chat", provider="p", model="m",
        request_sent_at=sent, first_event_at=first,
    )


def text(t: str, seq: int, at_ms: int, stream_id: str = "t") -> Any:
    return make_event(TextDelta, stream_id=stream_id, seq=seq, at=at_ms * 1_000_000, text=t)


def end_event(seq: int, at_ms: int, stream_id: str = "t") -> Any:
    return make_event(StreamEnd, stream_id=stream_id, seq=seq, at=at_ms * 1_000_000)


def test_marble_diagram() -> None:
    # -s-a-b-u-e-| -> -s-a-b-u-(m,e)-|
    scheduler = TestScheduler()
    s = start()
    a, b = text("a", 1, 300), text("b", 2, 500)
    u = make_event(Usage, stream_id="t", seq=3, at=600_000_000, output_tokens=4)
    e = end_event(3, 600)
    source = scheduler.create_cold_observable(
        on_next(210, s), on_next(220, a), on_next(230, b), on_next(240, u), on_next(250, e), on_completed(260)
    )
    sink = InMemoryMetrics()
    results = scheduler.start(lambda: source.pipe(tap_metrics(sink, emit=True)))
    messages = results.messages
    assert [(m.time, m.value.kind) for m in messages] == [
        (410, "N"), (420, "N"), (430, "N"), (440, "N"), (450, "N"), (450, "N"), (460, "C"),
    ]
    values = [m.value.value for m in messages[:-1]]
    assert values[:4] == [s, a, b, u] and values[5] is e
    metrics = values[4]
    assert isinstance(metrics, Metrics) and (metrics.seq, metrics.at) == (e.seq, e.at)
    assert metrics.ttft == pytest.approx(0.3) and metrics.gap_p50 == pytest.approx(0.2) and metrics.chunks == 2
    assert metrics.tokens_per_s == pytest.approx(4 / 0.2) and metrics.output_tokens == 4
    # Without emit the output is the input, message for message.
    plain = TestScheduler()
    source2 = plain.create_cold_observable(on_next(210, s), on_next(220, a), on_next(250, e), on_completed(260))
    results2 = plain.start(lambda: source2.pipe(tap_metrics(InMemoryMetrics())))
    assert [m.value.value for m in results2.messages[:-1]] == [s, a, e]


def test_several_content_events_of_one_payload_are_one_chunk() -> None:
    events = [
        start(),
        text("a", 1, 100),
        make_event(TextDelta, stream_id="t", seq=1, at=100_000_000, output=1, text="x"),
        make_event(ToolCallStart, stream_id="t", seq=2, at=180_000_000, call_index=0, name="f"),
        make_event(ReasoningDelta, stream_id="t", seq=3, at=200_000_000, text="", signature="sig"),
        text("b", 4, 260),
        make_event(Finish, stream_id="t", seq=4, at=260_000_000, reason="stop"),
        make_event(Finish, stream_id="t", seq=4, at=260_000_000, output=1, raw_reason="eos"),
        end_event(4, 260),
    ]
    sink = InMemoryMetrics()
    reactivex.from_iterable(events).pipe(tap_metrics(sink)).subscribe()
    [m] = sink.records
    assert m.chunks == 3 and m.gaps == pytest.approx([0.08, 0.08])  # the signature-only delta is not content
    assert m.finish_reasons == ("stop", "eos") and m.events == len(events)
    assert m.origin == "first_event" and m.ttfb is None  # no request mark: measured from stream.start


def test_a_merge_of_streams_is_measured_stream_by_stream() -> None:
    left = [start(stream_id="L"), text("a", 1, 100, "L"), text("b", 2, 300, "L"), end_event(2, 300, "L")]
    right = [start(stream_id="R"), text("x", 1, 50, "R"), text("y", 2, 60, "R"), text("z", 3, 90, "R")]
    merged = [left[0], right[0], left[1], right[1], right[2], left[2], right[3], left[3]]
    sink = InMemoryMetrics()
    out: list[Any] = []
    reactivex.from_iterable(merged).pipe(tap_metrics(sink, emit=True)).subscribe(out.append)
    by_id = {m.stream_id: m for m in sink.records}
    assert by_id["L"].gaps == pytest.approx([0.2]) and by_id["L"].outcome == "completed"
    # R never sent stream.end: recorded at completion, its metrics event after everything else.
    assert by_id["R"].gaps == pytest.approx([0.01, 0.03]) and by_id["R"].chunks == 3
    assert [e.type for e in out].count("metrics") == 2 and out[-1].type == "metrics" and out[-1].stream_id == "R"


def test_a_consumer_that_disposes_first_is_recorded_as_cancelled() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, start(at=210_000_000)), on_next(220, text("a", 1, 220)), on_next(300, text("b", 2, 300))
    )
    sink = InMemoryMetrics()
    scheduler.start(lambda: source.pipe(tap_metrics(sink, scheduler=scheduler)), disposed=250)
    [m] = sink.records
    assert m.outcome == "cancelled" and m.chunks == 1 and m.error_type is None
    # The cancel is stamped on the scheduler's clock (a TestScheduler tick is a second after the epoch).
    assert m.duration == pytest.approx(250 - 0.21)


def test_a_sink_that_raises_fails_the_stream_after_what_came_before() -> None:
    class Broken:
        def record(self, metrics: StreamMetrics) -> None:
            raise RuntimeError("disk full")

    out: list[Any] = []
    errors: list[Exception] = []
    completed: list[bool] = []
    events = [start(), text("a", 1, 100), end_event(1, 100)]
    reactivex.from_iterable(events).pipe(tap_metrics([InMemoryMetrics(), Broken()])).subscribe(
        out.append, errors.append, lambda: completed.append(True)
    )
    assert [e.type for e in out] == ["stream.start", "text.delta"]
    assert [str(e) for e in errors] == ["disk full"] and not completed


def test_a_sink_that_raises_on_an_upstream_error_notes_it_on_that_error() -> None:
    class Broken:
        def record(self, metrics: StreamMetrics) -> None:
            raise RuntimeError("disk full")

    boom = RxStreamError("boom")
    errors: list[Exception] = []
    reactivex.concat(reactivex.of(start()), reactivex.throw(boom)).pipe(tap_metrics(Broken())).subscribe(
        on_error=errors.append
    )
    assert errors == [boom] and any("disk full" in note for note in boom.__notes__)


def test_arguments_are_checked_at_call_time() -> None:
    with pytest.raises(TypeError, match="expected a metrics sink"):
        tap_metrics(object())  # pyright: ignore[reportArgumentType]
    with pytest.raises(TypeError, match="got int"):
        tap_metrics([InMemoryMetrics(), 3])  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="positive"):
        InMemoryMetrics(max_streams=0)


def test_place_it_before_batch_it_measures_arrival_not_repacing() -> None:
    scheduler = TestScheduler()
    items = [start(), text("a", 1, 100), text("b", 2, 130), text("c", 3, 170), end_event(3, 170)]
    source = scheduler.create_cold_observable(*(on_next(200 + i, e) for i, e in enumerate(items)), on_completed(300))
    sink = InMemoryMetrics()
    scheduler.start(lambda: source.pipe(tap_metrics(sink), batch(max_interval=0.5, scheduler=scheduler)))
    [m] = sink.records
    assert m.gaps == pytest.approx([0.03, 0.04])


def test_in_memory_sink_bounds_what_it_keeps_and_counts_everything() -> None:
    sink = InMemoryMetrics(max_streams=3)
    for i in range(10):
        sink.record(
            StreamMetrics(
                stream_id=str(i), provider="p", request_model="m", ttft=0.1 * (i + 1), duration=1.0,
                gaps=[0.02, 0.03], output_tokens=100, tokens_per_s=50.0,
                outcome="error" if i % 5 == 0 else "completed", error_type="X" if i % 5 == 0 else None,
            )
        )
    assert [m.stream_id for m in sink.records] == ["7", "8", "9"]
    assert sink.streams == 10 and sink.errors == 2
    gap = sink.histograms["gap"]
    assert gap.count == 20 and gap.sum == pytest.approx(0.5)
    assert dict(gap.cumulative())[0.02] == 10 and dict(gap.cumulative())[0.04] == 20 == gap.cumulative()[-1][1]
    assert sink.histograms["ttft"].count == 10
    table = sink.summary()
    assert "p  " in table and "m  " in table and "10 stream(s) seen, 2 failed" in table
    assert "900.0 ms" in table  # ttft p50 over the kept streams 0.8, 0.9, 1.0: nearest rank


def test_format_metrics_names_origin_outcome_and_usage_source() -> None:
    m = StreamMetrics(ttfb=0.12, ttft=0.3765, gaps=[0.0255], output_tokens=6, usage_source="estimated",
                      outcome="error", error_type="TransportError", finish_reasons=("length",))
    table = format_metrics(m)
    assert "from request sent" in table and "120.0 ms" in table and "376.5 ms" in table
    assert "6 (estimated)" in table and "error (TransportError)" in table and "length" in table


def test_a_live_stream_over_loopback_has_ordered_marks() -> None:
    recording = next(p for p in recording_paths() if p.name == "openai-chat-text-1.sse")

    async def main() -> tuple[Any, InMemoryMetrics]:
        sink = InMemoryMetrics()
        async with ProviderEmulator(recording, pace="fast") as emulator:
            source = openai_chat(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], api_key="sk-test",
                base_url=emulator.base_url + "/v1",
            )
            result = await collect(source.pipe(normalize(), tap_metrics(sink, emit=True)))
        return result, sink

    result, sink = asyncio.run(main())
    [m] = sink.records
    assert m.origin == "request" and m.server_address == "127.0.0.1" and m.server_port is not None
    assert m.ttfb is not None and m.first_event is not None and m.ttft is not None and m.duration is not None
    assert 0 < m.ttfb <= m.first_event <= m.ttft <= m.duration
    assert result.metrics is not None and result.metrics.ttft == m.ttft and m.outcome == "completed"


def test_the_operator_is_in_the_public_namespace() -> None:
    from rxstream import operators

    assert operators.tap_metrics is tap_metrics
    assert ops is not None  # reactivex operators compose with it (used above through pipe)


def test_a_failure_before_any_event_is_recorded_too() -> None:
    """An HTTP 429 or a refused connection fails before stream.start: still a failed stream."""
    boom = ProviderUnavailableError("service unavailable", status=503)
    sink = InMemoryMetrics()
    errors: list[Exception] = []
    reactivex.throw(boom).pipe(tap_metrics(sink)).subscribe(on_error=errors.append)
    assert errors == [boom]
    [m] = sink.records
    assert m.outcome == "error" and m.error_type == "ProviderUnavailableError" and m.events == 0
    assert m.provider is None and m.duration is None and sink.errors == 1


def test_a_restart_keeps_the_first_attempts_origin_and_is_counted() -> None:
    from rxstream._events import StreamRestart

    first = start(at=100_000_000, sent=0)
    again = start(at=900_000_000, sent=800_000_000)
    events = [
        first, text("a", 1, 300),
        make_event(StreamRestart, stream_id="t", seq=1, at=700_000_000, attempt=2, reason="dropped"),
        again, text("a", 1, 1000), text("b", 2, 1100), end_event(2, 1100),
    ]
    sink = InMemoryMetrics()
    out: list[Any] = []
    reactivex.from_iterable(events).pipe(tap_metrics(sink, emit=True)).subscribe(out.append)
    [m] = sink.records
    assert m.restarts == 1 and m.ttfb == pytest.approx(0.1) and m.ttft == pytest.approx(0.3)
    assert m.duration == pytest.approx(1.1) and m.gaps == pytest.approx([0.7, 0.1])
    assert next(e for e in out if e.type == "metrics").restarts == 1


def test_the_metrics_event_carries_every_figure_it_declares() -> None:
    from rxstream._events import EventBase

    m = StreamMetrics(ttfb=0.1, ttft=0.2, gaps=[0.01, 0.03], events=5, chunks=3, restarts=1, finish_reasons=("stop",))
    event = m.to_event("s", 4, 9)
    own = set(Metrics.model_fields) - set(EventBase.model_fields) - {"type"}
    assert own == set(event.model_fields_set) - set(EventBase.model_fields) - {"type"}
    assert (event.gap_count, event.gap_max, event.restarts) == (2, 0.03, 1)
    assert event.gap_mean == pytest.approx(0.02) and event.ttft == 0.2 and event.finish_reasons == ("stop",)


# The cheaper paths (issue 7): the same figures as the straightforward computations they replace.


def test_gaps_are_exactly_the_differences_of_the_arrivals() -> None:
    """Each gap is (b - a) / 1e9 of consecutive content arrivals, in arrival order, bit for bit."""
    base = 1_733_000_000_123_456_789  # ns since the epoch: beyond a float's exact integers
    offsets = [0, 17, 3_000_001, 2_999_999, 250_000_000, 250_000_000, 1_000_000_007]  # one goes back
    stamps = [base + o for o in offsets]
    events: list[Any] = [start(at=base - 5, sent=base - 900_000_000)]
    for i, at in enumerate(stamps, 1):
        events.append(make_event(TextDelta, stream_id="t", seq=i, at=at, text="x"))
        if i == 3:  # the same payload again, and a reasoning delta without text: no new chunk
            events.append(make_event(TextDelta, stream_id="t", seq=i, at=at + 1, output=1, text="y"))
            events.append(make_event(ReasoningDelta, stream_id="t", seq=i + 100, at=at + 2, text=""))
    events.append(make_event(StreamEnd, stream_id="t", seq=len(stamps), at=stamps[-1] + 9))
    sink = InMemoryMetrics()
    reactivex.from_iterable(events).pipe(tap_metrics(sink)).subscribe()
    [m] = sink.records
    assert m.gaps == [(b - a) / 1e9 for a, b in itertools.pairwise(stamps)]
    assert m.chunks == len(stamps) and m.events == len(events)
    origin = base - 900_000_000
    assert m.ttft == (stamps[0] - origin) / 1e9 and m.first_text == m.ttft
    assert m.duration == (stamps[-1] + 9 - origin) / 1e9
    assert m.chunks_per_s == (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9)
    assert m.sorted_gaps() == tuple(sorted(m.gaps))


def test_a_record_sets_every_field() -> None:
    """Each outcome's record equals the record its values make: no field left unset or stray."""
    boom = ProviderUnavailableError("service unavailable", status=503)
    sink = InMemoryMetrics()
    reactivex.throw(boom).pipe(tap_metrics(sink)).subscribe(on_error=lambda _: None)
    # Only an empty reasoning delta: an event, but nothing with a time to measure from.
    empty = make_event(ReasoningDelta, stream_id="t", seq=1, at=5, text="", signature="sig")
    reactivex.of(empty).pipe(tap_metrics(sink)).subscribe()
    events = [start(), text("a", 1, 100), end_event(1, 100)]
    reactivex.from_iterable(events).pipe(tap_metrics(sink)).subscribe()
    failed, unmeasured, one = sink.records
    assert failed == StreamMetrics(origin="first_event", outcome="error", error_type="ProviderUnavailableError")
    assert unmeasured == StreamMetrics(stream_id="t", events=1, origin="first_event")
    assert one == StreamMetrics(
        stream_id="t", provider="p", wire="openai.chat", response_model="m", origin_at=0, origin="first_event",
        ttft=0.1, first_text=0.1, duration=0.1, events=3, chunks=1,
    )
    assert "_sorted" not in dataclasses.asdict(one) and "_sorted" not in repr(one)


@pytest.mark.parametrize("boundaries", [DURATION_BUCKETS, TOKEN_BUCKETS, (1.0,)], ids=["duration", "tokens", "one"])
def test_observe_sorted_counts_what_observe_many_counts(boundaries: tuple[float, ...]) -> None:
    rng = random.Random(7)
    top = boundaries[-1]
    cases: list[list[float]] = [
        [],
        [0.0],
        [math.inf],
        [-math.inf, -1.0, 0.0],
        list(boundaries),  # each value exactly on a bound
        [b * 1.0000001 for b in boundaries] + [b / 1.0000001 for b in boundaries],
        [rng.uniform(-top / 10, top * 2) for _ in range(500)],
        [rng.choice(boundaries) for _ in range(50)] + [rng.expovariate(4 / top) for _ in range(200)],
        [top] * 7 + [math.inf] * 2,
    ]
    for values in cases:
        many, ordered = Histogram(boundaries), Histogram(boundaries)
        for _ in range(2):  # the counts add up over calls
            many.observe_many(values)
            ordered.observe_sorted(sorted(values))
        assert (ordered.counts, ordered.count) == (many.counts, many.count), values
        assert ordered.sum == many.sum


def test_sorted_gaps_are_sorted_once_and_follow_a_replaced_list() -> None:
    m = StreamMetrics(gaps=[0.3, 0.1, 0.2])
    ordered = m.sorted_gaps()
    assert ordered == (0.1, 0.2, 0.3) and m.sorted_gaps() is ordered  # kept for the next sink
    assert m.gap_stats()["min"] == 0.1 and m == StreamMetrics(gaps=[0.3, 0.1, 0.2])
    m.gaps = [0.5, 0.4]
    assert m.sorted_gaps() == (0.4, 0.5) and m.gap_stats()["max"] == 0.5
    m.gaps.append(0.0)  # a longer list is sorted again
    assert m.sorted_gaps() == (0.0, 0.4, 0.5)
    for other in (dataclasses.replace(m, gaps=[2.0, 1.0]), copy.copy(m), pickle.loads(pickle.dumps(m))):
        assert other.sorted_gaps() == tuple(sorted(other.gaps))


def test_a_sink_failing_inside_a_synchronous_subscribe_disposes_the_source() -> None:
    """The failure comes before source.subscribe() returned the subscription: disposed on arrival."""

    class Broken:
        def record(self, metrics: StreamMetrics) -> None:
            raise RuntimeError("disk full")

    disposed: list[bool] = []
    after: list[bool] = []

    def produce(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> abc.DisposableBase:
        for e in [start(), text("a", 1, 100), end_event(1, 100)]:
            observer.on_next(e)
        after.append(True)
        observer.on_next(text("b", 2, 200))  # dropped: the stream failed
        return Disposable(lambda: disposed.append(True))

    out: list[Any] = []
    errors: list[Exception] = []
    reactivex.create(produce).pipe(tap_metrics(Broken())).subscribe(out.append, errors.append)
    assert [e.type for e in out] == ["stream.start", "text.delta"] and [str(e) for e in errors] == ["disk full"]
    assert after == [True] and disposed == [True]


def test_disposing_twice_records_one_cancel_and_disposes_upstream_once() -> None:
    source: Subject[Any] = Subject()
    sink = InMemoryMetrics()
    subscription = source.pipe(tap_metrics(sink)).subscribe()
    source.on_next(start())
    source.on_next(text("a", 1, 100))
    assert source.observers
    subscription.dispose()
    subscription.dispose()
    assert [m.outcome for m in sink.records] == ["cancelled"] and not source.observers
    source.on_next(text("b", 2, 200))  # after the cancel: nothing more is recorded
    assert sink.streams == 1
