"""smooth(): chunkers, the pure core, pacing in virtual time, the Rx case list, real streams, and the
property both batch() and smooth() keep: text per target unchanged, every other event in place."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex import Observable, abc
from reactivex import operators as ops
from reactivex.disposable import Disposable
from reactivex.scheduler import TimeoutScheduler
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.marbles import marbles_testing

from rxstream._consume import collect
from rxstream._errors import RxStreamError
from rxstream._events import (
    Citation,
    Finish,
    ReasoningDelta,
    RefusalDelta,
    StreamEnd,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    make_event,
)
from rxstream.operators import normalize
from rxstream.operators._batch import batch
from rxstream.operators._smooth import Chunker, SmoothCore, smooth
from rxstream.sources import openai_chat
from rxstream.testing import ProviderEmulator
from tests.conftest import RECORDINGS, recording_paths
from tests.helpers import accumulate, run_recording

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error

DELTA_KINDS = (TextDelta, ReasoningDelta, RefusalDelta, ToolCallDelta)


def text(t: str, seq: int = 1, output: int = 0, meta: dict[str, Any] | None = None) -> Any:
    return make_event(TextDelta, stream_id="t", seq=seq, at=seq * 10, meta=meta, output=output, text=t)


def reasoning(t: str, seq: int = 1, signature: str | None = None) -> Any:
    return make_event(ReasoningDelta, stream_id="t", seq=seq, at=seq * 10, text=t, signature=signature)


def finish(seq: int = 9) -> Any:
    return make_event(Finish, stream_id="t", seq=seq, at=seq * 10, reason="stop")


def start() -> Any:
    return make_event(StreamStart, stream_id="t", seq=0, at=0, wire="openai.chat")


def fed(core: SmoothCore, event: Any) -> list[Any]:
    return list(core.feed(event))


def flushed(core: SmoothCore) -> list[Any]:
    return list(core.flush())


def texts_of(events: list[Any]) -> list[str]:
    return [e.text for e in events]


def two(buffer: str) -> str | None:
    """A callable chunker: two characters at a time."""
    return buffer[:2] if len(buffer) >= 2 else None


def chunks(chunking: Any, parts: list[str]) -> list[list[str]]:
    """What the core emits after each part (and, last, at the end), as texts."""
    core = SmoothCore(Chunker(chunking))
    out = [texts_of(fed(core, text(p, i + 1))) for i, p in enumerate(parts)]
    return [*out, texts_of(flushed(core))]


def flat(parts: list[list[str]]) -> list[str]:
    return [c for group in parts for c in group]


# -- chunkers ------------------------------------------------------------------------------------


def test_word_chunks_are_words_with_the_whitespace_after_them() -> None:
    assert chunks("word", ["Hello wor", "ld,  how", " are\nyou"]) == [
        ["Hello "],
        ["world,  "],
        ["how ", "are\n"],
        ["you"],
    ]
    # Whitespace before the first word joins it.
    assert flat(chunks("word", ["  lead", "ing  x"])) == ["  leading  ", "x"]


def test_word_chunks_cjk_per_character() -> None:
    assert chunks("word", ["你好\uff0c世界。", "GPT-4是最", "好的 model ok"]) == [
        ["你", "好", "\uff0c", "世", "界", "。"],
        ["GPT-4", "是", "最"],
        ["好", "的", " model "],
        ["ok"],
    ]
    assert flat(chunks("word", ["こんにちは、カタカナ"])) == list("こんにちは、カタカナ")
    # Korean is written with spaces: it chunks by word.
    assert flat(chunks("word", ["안녕하세요 세계 ", "입니다"])) == ["안녕하세요 ", "세계 ", "입니다"]
    # Whitespace after a CJK character (here an ideographic space) opens the next chunk.
    assert flat(chunks("word", ["日\u3000本 x"])) == ["日", "\u3000本", " x"]


def test_line_chunks_end_after_a_newline_run() -> None:
    assert chunks("line", ["a\nb", "c\n\n", "\nd"]) == [["a\n"], ["bc\n\n"], ["\n"], ["d"]]


def test_sentence_chunks() -> None:
    assert flat(
        chunks("sentence", ["Hi. How", " are you?", '" Fine!) Next', "\n\n好的。", "再见\uff01」ok"])
    ) == [
        "Hi. ",
        'How are you?" ',
        "Fine!) ",
        "Next\n\n",
        "好的。",
        "再见\uff01」",
        "ok",
    ]
    # "Hi." waits for what follows: a full stop inside a word is not an end.
    assert chunks("sentence", ["v1.", "2 is out. ", "Yes"]) == [[], ["v1.2 is out. "], [], ["Yes"]]


def test_regex_chunks_run_to_the_end_of_the_first_match() -> None:
    # smoothStream's rule: from the buffer's start to the end of the first match.
    assert flat(chunks(re.compile(r"[\u4e00-\u9fff]|\S+\s+"), ["Hello你好 x", "y "])) == ["Hello你好 ", "xy "]
    assert flat(chunks(re.compile(r"[\u4e00-\u9fff]|\S+\s+"), ["你好 x"])) == ["你", "好", " x"]
    # A match ending at position 0 is no chunk: the next match is used.
    assert flat(chunks(re.compile(r"x*"), ["abc"])) == ["a", "b", "c"]


def test_callable_chunks() -> None:
    assert chunks(two, ["abcde", "f"]) == [["ab", "cd"], ["ef"], []]


@pytest.mark.parametrize(
    "text_",
    [
        "The quick brown fox. Jumps over\nthe lazy dog! Right?",
        "你好世界。这是一个测试\uff01GPT-4是模型。",
        "mixed 中文 and English.\nok",
    ],
)
@pytest.mark.parametrize("chunking", ["word", "line", "sentence"])
def test_chunks_do_not_depend_on_how_the_text_was_split(text_: str, chunking: str) -> None:
    # Without runs of whitespace (which are emitted as far as they have arrived), the chunks are
    # the same whole, per character, and at every split point.
    whole = flat(chunks(chunking, [text_]))
    assert "".join(whole) == text_
    assert flat(chunks(chunking, list(text_))) == whole
    for cut in range(1, len(text_)):
        assert flat(chunks(chunking, [text_[:cut], text_[cut:]])) == whole


@pytest.mark.parametrize("chunking", ["word", "line", "sentence"])
def test_held_text_is_scanned_once(chunking: str) -> None:
    # A long stretch without a boundary stays in scanned pieces; nothing is searched twice
    # (the active string a boundary can start in stays short), so the cost is linear.
    core = SmoothCore(Chunker(chunking))
    for i in range(5000):
        assert fed(core, text("x.", i + 1) if chunking == "sentence" else text("x", i + 1)) == []
        assert len(core._active) <= 2  # pyright: ignore[reportPrivateUsage]
    (tail,) = flushed(core)
    assert len(tail.text) == 10000 if chunking == "sentence" else len(tail.text) == 5000


@pytest.mark.parametrize(
    "bad",
    ["words", "", b"word", 3, None, re.compile(rb"\s")],
)
def test_bad_chunking_fails_at_call_time(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"smooth\(chunking=\.\.\.\) expected"):
        smooth(chunking=bad)


@pytest.mark.parametrize("bad", [-1, "0.1", True, float("nan"), float("inf"), datetime.timedelta(seconds=-1)])
def test_bad_delay_fails_at_call_time(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"smooth\(delay=\.\.\.\) expected"):
        smooth(delay=bad)


# -- the pure core ---------------------------------------------------------------------------------


def test_pieces_keep_the_target_and_take_the_last_contributing_part() -> None:
    core = SmoothCore(Chunker("word"))
    assert fed(core, text("hel", 1, output=1, meta={"block_index": 2})) == []
    (piece,) = fed(core, text("lo wo", 2, output=1, meta={"block_index": 2}))
    assert (piece.text, piece.seq, piece.at, piece.output, piece.meta) == (
        "hello ",
        2,
        20,
        1,
        {"block_index": 2},
    )
    (tail,) = flushed(core)
    assert (tail.text, tail.seq) == ("wo", 2)


def test_piece_builders_keep_every_field() -> None:
    # The fast builders pass fields by position: a field added to these models must be added there.
    assert set(TextDelta.model_fields) == {"stream_id", "seq", "at", "meta", "type", "output", "text"}
    assert set(RefusalDelta.model_fields) == {"stream_id", "seq", "at", "meta", "type", "output", "text"}
    assert set(ReasoningDelta.model_fields) == {
        "stream_id",
        "seq",
        "at",
        "meta",
        "type",
        "output",
        "text",
        "signature",
    }


def test_another_target_or_event_sends_the_held_tail_first() -> None:
    core = SmoothCore(Chunker("word"))
    fed(core, text("one tw", 1))
    out = fed(core, text("x", 2, output=1))
    assert [(e.text, e.output) for e in out] == [("tw", 0)]
    out = fed(core, make_event(RefusalDelta, stream_id="t", seq=3, at=30, text="no "))
    assert [(e.type, e.text) for e in out] == [("text.delta", "x"), ("refusal.delta", "no ")]
    out = fed(core, finish(4))
    assert [e.type for e in out] == ["finish"]
    fed(core, text("a", 5, meta={"block_index": 0}))
    assert [e.text for e in fed(core, text("b", 6, meta={"block_index": 1}))] == ["a"]
    tool = make_event(ToolCallDelta, stream_id="t", seq=7, at=70, call_index=0, arguments_delta='{"a b": 1}')
    assert fed(core, tool) == [text("b", 6, meta={"block_index": 1}), tool]


def test_a_signed_reasoning_delta_ends_its_block() -> None:
    core = SmoothCore(Chunker("word"))
    assert fed(core, reasoning("think ab", 1)) == [reasoning("think ", 1)]
    assert fed(core, reasoning("out", 2, signature="sig")) == [reasoning("about", 2, signature="sig")]
    # Nothing held: the signature rides on an empty-text delta (Anthropic sends it so).
    assert fed(core, reasoning("", 3, signature="sig2")) == [reasoning("", 3, signature="sig2")]
    assert fed(core, reasoning("done. ", 4, signature="s3")) == [reasoning("done. ", 4, signature="s3")]
    assert core.flush() == []


def test_a_failing_callable_hands_over_the_chunks_found_and_the_held_text() -> None:
    def chunker(buffer: str) -> str | None:
        if "!" in buffer:
            raise KeyError("bang")
        return buffer[:3] if len(buffer) >= 3 else None

    core = SmoothCore(Chunker(chunker))
    assert [e.text for e in fed(core, text("abcd", 1))] == ["abc"]
    assert [e.text for e in fed(core, text("e!f", 2))] == ["de!f"]
    assert isinstance(core.failure, RxStreamError) and isinstance(core.failure.__cause__, KeyError)
    assert "smooth(chunking=" in str(core.failure) and "KeyError" in str(core.failure)


@pytest.mark.parametrize("result", ["", "zz", 3])
def test_a_callable_must_return_a_non_empty_prefix(result: Any) -> None:
    def chunker(_: str) -> Any:
        return result

    core = SmoothCore(Chunker(chunker))
    assert [e.text for e in fed(core, text("abc", 1))] == ["abc"]
    assert core.failure is not None and "expected None or a non-empty prefix" in str(core.failure)


# -- the operator in virtual time ------------------------------------------------------------------


def test_marble_diagram() -> None:
    a, b, f = text("one two th", 1), text("ree", 2), finish(3)
    values: dict[str | float, Any] = {
        "a": a,
        "b": b,
        "f": f,
        "w": text("one ", 1),
        "x": text("two ", 1),
        "y": text("three", 2),
    }
    with marbles_testing(timespan=1) as (begin, cold, _hot, exp):
        source = cold("-a---b---f-----|", values, None)
        expected = exp("-w-x-----(y,f)-|", values, None)
        assert begin(source.pipe(smooth(chunking="word", delay=2))) == expected


def run_virtual(
    messages: list[Any], make: Callable[[TestScheduler], Any], *, disposed: int = 1000, hot: bool = False
) -> tuple[list[Any], Any]:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(*messages) if hot else scheduler.create_cold_observable(*messages)
    results = scheduler.start(lambda: xs.pipe(make(scheduler)), disposed=disposed)
    return results.messages, xs


def timeline(messages: list[Any]) -> list[tuple[float, str]]:
    out: list[tuple[float, str]] = []
    for m in messages:
        if m.value.kind == "N":
            event = m.value.value
            out.append((m.time, event.text if hasattr(event, "text") else event.type))
        else:
            out.append((m.time, "|" if m.value.kind == "C" else "X"))
    return out


def test_chunks_are_paced_and_other_events_follow_their_text_at_once() -> None:
    messages, _ = run_virtual(
        [
            on_next(10, text("a b c d ", 1)),
            on_next(11, finish(2)),
            on_next(12, text("e ", 3)),
            on_next(100, text("f ", 4)),
            on_completed(101),
        ],
        lambda s: smooth(delay=5, scheduler=s),
    )
    assert timeline(messages) == [
        (210, "a "),
        (215, "b "),
        (220, "c "),
        (225, "d "),
        (225, "finish"),
        (230, "e "),
        # After a pause the next chunk goes out at once; completion waits for nothing held.
        (300, "f "),
        (301, "|"),
    ]


def test_completion_waits_for_the_queue_to_drain() -> None:
    messages, _ = run_virtual(
        [on_next(10, text("a b c", 1)), on_completed(11)], lambda s: smooth(delay=10, scheduler=s)
    )
    assert timeline(messages) == [(210, "a "), (220, "b "), (230, "c"), (230, "|")]


def test_delay_none_rechunks_synchronously() -> None:
    out: list[Any] = []
    reactivex.from_iterable([text("a b", 1), text(" c", 2), finish(3)]).pipe(smooth(delay=None)).subscribe(
        out.append
    )
    assert [getattr(e, "text", e.type) for e in out] == ["a ", "b ", "c", "finish"]


def test_never_emits_nothing() -> None:
    scheduler = TestScheduler()
    results = scheduler.start(lambda: reactivex.never().pipe(smooth(scheduler=scheduler)))
    assert results.messages == []


def test_empty_completes() -> None:
    messages, _ = run_virtual([on_completed(10)], lambda s: smooth(scheduler=s))
    assert messages == [on_completed(210)]


def test_one_item() -> None:
    messages, _ = run_virtual([on_next(10, start()), on_completed(20)], lambda s: smooth(scheduler=s))
    assert messages == [on_next(210, start()), on_completed(220)]


def test_upstream_error_delivers_everything_queued_and_held_at_once() -> None:
    boom = RuntimeError("socket closed")
    messages, _ = run_virtual(
        [on_next(10, text("a b c d", 1)), on_error(12, boom)], lambda s: smooth(delay=5, scheduler=s)
    )
    assert timeline(messages) == [(210, "a "), (212, "b "), (212, "c "), (212, "d"), (212, "X")]
    assert messages[-1].value.exception is boom


def test_a_raising_chunker_fails_typed_after_the_text_and_stops_upstream() -> None:
    def chunker(buffer: str) -> str | None:
        if "!" in buffer:
            raise ValueError("cannot split")
        return buffer[:2] if len(buffer) >= 2 else None

    messages, xs = run_virtual(
        [
            on_next(10, text("abcd", 1)),
            on_next(11, text("e!", 2)),
            on_next(20, text("zz", 3)),
            on_completed(30),
        ],
        lambda s: smooth(chunking=chunker, delay=5, scheduler=s),
    )
    assert timeline(messages) == [(210, "ab"), (211, "cd"), (211, "e!"), (211, "X")]
    error = messages[-1].value.exception
    assert isinstance(error, RxStreamError) and isinstance(error.__cause__, ValueError)
    assert [(s.subscribe, s.unsubscribe) for s in xs.subscriptions] == [(200, 211)]


def test_dispose_midway_cancels_the_pacing_timer_and_unsubscribes() -> None:
    messages, xs = run_virtual(
        [on_next(210, text("a b c d ", 1)), on_next(300, text("e ", 2)), on_completed(400)],
        lambda s: smooth(delay=10, scheduler=s),
        disposed=225,
        hot=True,
    )
    assert timeline(messages) == [(210, "a "), (220, "b ")]
    assert [(s.subscribe, s.unsubscribe) for s in xs.subscriptions] == [(200, 225)]


def test_resubscribe_gives_the_same_output() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(
        on_next(5, text("one two", 1)), on_next(6, finish(2)), on_completed(50)
    )
    source = xs.pipe(smooth(delay=3, scheduler=scheduler))
    seen: list[list[tuple[float, Any]]] = [[], []]

    def sink(into: list[tuple[float, Any]]) -> Callable[[Any], None]:
        return lambda e: into.append((scheduler.clock, e))

    source.subscribe(sink(seen[0]))
    scheduler.advance_to(100)
    source.subscribe(sink(seen[1]))
    scheduler.start()
    assert [(t - 100, e) for t, e in seen[1]] == seen[0]
    assert [getattr(e, "text", e.type) for _, e in seen[0]] == ["one ", "two", "finish"]


def test_thread_timer_against_a_source_thread_loses_nothing_and_never_overlaps() -> None:
    # Real time is the point: pacing timers on threads while the source thread pushes.
    words = [f"w{i} " for i in range(300)]
    events: list[Any] = [start()]
    for i in range(0, len(words), 3):
        events.append(text("".join(words[i : i + 3]), i + 1))
        if i % 60 == 0:
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
            for event in events:
                observer.on_next(event)
                time.sleep(0.0002)
            observer.on_completed()

        threading.Thread(target=push, daemon=True).start()
        return Disposable()

    began = time.monotonic()
    Observable(source_thread).pipe(smooth(delay=0.0005, scheduler=TimeoutScheduler.singleton())).subscribe(
        record, on_completed=done.set
    )
    assert done.wait(30)
    assert not overlaps
    assert [e.text for e in out if isinstance(e, TextDelta)] == words
    assert [e for e in out if not isinstance(e, TextDelta)] == [
        e for e in events if not isinstance(e, TextDelta)
    ]
    assert time.monotonic() - began >= 299 * 0.0005


# -- real streams -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", recording_paths(), ids=lambda p: Path(p).name)
def test_every_recording_accumulates_the_same_result(path: Path) -> None:
    recorded, error = run_recording(path)
    events: list[Any] = recorded
    for chunking in ("word", "line", "sentence"):
        out: list[Any] = []
        reactivex.from_iterable(events).pipe(smooth(chunking=chunking, delay=None)).subscribe(
            out.append, lambda _: None
        )
        assert accumulate(out, error) == accumulate(events, error)
        assert [e.seq for e in out] == sorted(e.seq for e in out)


def test_over_the_emulator_in_asyncio_chunks_are_paced_and_the_result_unchanged() -> None:
    recording = RECORDINGS / "openai-chat-json-object-1.sse"
    messages = [{"role": "user", "content": "Where is the Golden Gate Bridge? Answer in JSON."}]
    delay = 0.004

    async def main() -> tuple[Any, Any, list[tuple[float, Any]]]:
        loop = asyncio.get_running_loop()
        async with ProviderEmulator(recording) as emu:

            def source() -> Any:
                return openai_chat(
                    model="gpt-4o-2024-08-06",
                    messages=messages,
                    api_key="test",
                    base_url=f"{emu.base_url}/v1",
                )

            stamped: list[tuple[float, Any]] = []
            plain = await collect(source().pipe(normalize()))
            smoothed = await collect(
                source().pipe(
                    normalize(),
                    smooth(delay=delay),
                    ops.do_action(lambda e: stamped.append((loop.time(), e))),
                )
            )
            return plain, smoothed, stamped

    plain, smoothed, stamped = asyncio.run(main())
    assert smoothed.completed and smoothed.text == plain.text and len(plain.text) > 100
    times = [t for t, e in stamped if isinstance(e, TextDelta)]
    assert len(times) > 20
    # The loop's timers are not early (asyncio rounds by its clock resolution, about 1 ms).
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= delay - 0.0015
    assert isinstance(stamped[-1][1], StreamEnd)


# -- the property both operators keep ------------------------------------------------------------------

ALPHABET = ["a", "bc", " ", "  ", "\n", ".", "!", "?", '"', "你", "好", "。", "\u3000", "x y", "é"]


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[int, Any]]:
    """(time, event) pairs: deltas of several targets, signatures, block changes, and other events."""
    count = draw(st.integers(0, 40))
    out: list[tuple[int, Any]] = [(1, start())]
    clock = 1
    for seq in range(1, count + 1):
        clock += draw(st.integers(0, 4))
        kind = draw(st.sampled_from(["text", "text", "text", "reasoning", "refusal", "call", "other"]))
        output = draw(st.integers(0, 1))
        piece = "".join(draw(st.lists(st.sampled_from(ALPHABET), min_size=0, max_size=4)))
        meta = {"block_index": draw(st.integers(0, 1))}
        event: Any
        if kind == "text":
            event = make_event(
                TextDelta, stream_id="t", seq=seq, at=clock, meta=meta, output=output, text=piece
            )
        elif kind == "reasoning":
            signature = draw(st.sampled_from([None, None, "sig"]))
            event = make_event(
                ReasoningDelta,
                stream_id="t",
                seq=seq,
                at=clock,
                output=output,
                text=piece,
                signature=signature,
            )
        elif kind == "refusal":
            event = make_event(RefusalDelta, stream_id="t", seq=seq, at=clock, output=output, text=piece)
        elif kind == "call":
            event = make_event(
                ToolCallDelta,
                stream_id="t",
                seq=seq,
                at=clock,
                output=output,
                call_index=draw(st.integers(0, 1)),
                arguments_delta=piece,
            )
        else:
            event = draw(
                st.sampled_from(
                    [
                        make_event(Finish, stream_id="t", seq=seq, at=clock, output=output, reason="stop"),
                        make_event(Citation, stream_id="t", seq=seq, at=clock, output=output, url="u"),
                        make_event(Usage, stream_id="t", seq=seq, at=clock, output_tokens=seq),
                        make_event(
                            ToolCallStart,
                            stream_id="t",
                            seq=seq,
                            at=clock,
                            output=output,
                            call_index=0,
                            name="f",
                        ),
                    ]
                )
            )
        out.append((clock, event))
    out.append((clock + 1, make_event(StreamEnd, stream_id="t", seq=count + 1, at=clock + 1)))
    return out


def key(event: Any) -> tuple[Any, ...]:
    return (event.type, event.output, getattr(event, "call_index", None))


def content(event: Any) -> str:
    return event.arguments_delta if isinstance(event, ToolCallDelta) else event.text


def per_target(events: list[Any]) -> dict[tuple[Any, ...], str]:
    texts: dict[tuple[Any, ...], str] = {}
    for e in events:
        if isinstance(e, DELTA_KINDS):
            texts[key(e)] = texts.get(key(e), "") + content(e)
    return {k: v for k, v in texts.items() if v}


def snapshots(events: list[Any]) -> list[tuple[Any, dict[tuple[Any, ...], str]]]:
    """Each non-delta event with the text per target that came before it."""
    out: list[tuple[Any, dict[tuple[Any, ...], str]]] = []
    seen: list[Any] = []
    for e in events:
        if isinstance(e, DELTA_KINDS):
            seen.append(e)
        else:
            out.append((e, per_target(seen)))
    return out


CHUNKINGS: list[Any] = [
    "word",
    "line",
    "sentence",
    re.compile(r"\S+\s+"),
    re.compile(r"[\u4e00-\u9fff]|\S+\s+"),
    two,
]


@st.composite
def pipelines(draw: st.DrawFn) -> Callable[[TestScheduler], list[Any]]:
    def make_batch(s: TestScheduler) -> Any:
        return batch(max_interval=interval, max_chars=max_chars, max_events=max_events, scheduler=s)

    def make_smooth(s: TestScheduler) -> Any:
        return smooth(chunking=chunking, delay=delay, scheduler=s)

    interval = draw(st.sampled_from([None, 1, 3, 10]))
    max_chars = draw(st.sampled_from([None, 1, 3, 8]))
    max_events = draw(st.sampled_from([None, 1, 2, 5]))
    chunking = draw(st.sampled_from(CHUNKINGS))
    delay = draw(st.sampled_from([None, 0, 1, 2.5]))
    shape = draw(st.sampled_from(["batch", "smooth", "batch|smooth", "smooth|batch"]))
    makers = {
        "batch": [make_batch],
        "smooth": [make_smooth],
        "batch|smooth": [make_batch, make_smooth],
        "smooth|batch": [make_smooth, make_batch],
    }[shape]
    return lambda s: [m(s) for m in makers]


@settings(max_examples=400, deadline=None)
@given(stream=streams(), pipeline=pipelines())
def test_text_per_target_and_the_place_of_every_other_event_are_kept(
    stream: list[tuple[int, Any]], pipeline: Callable[[TestScheduler], list[Any]]
) -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(
        *(on_next(t, e) for t, e in stream), on_completed(stream[-1][0] + 1)
    )

    def piped() -> Observable[Any]:
        observable: Observable[Any] = xs
        for operator in pipeline(scheduler):
            observable = observable.pipe(operator)
        return observable

    messages: list[Any] = scheduler.start(piped, disposed=10**9).messages
    assert messages[-1].value.kind == "C"
    out = [m.value.value for m in messages[:-1]]
    events = [e for _, e in stream]
    # Text per target unchanged, and each other event after exactly the text that preceded it.
    assert per_target(out) == per_target(events)
    assert snapshots(out) == snapshots(events)
    # Signatures keep their order per output; seq never decreases.
    signatures = [(e.output, e.signature) for e in out if isinstance(e, ReasoningDelta) and e.signature]
    assert signatures == [
        (e.output, e.signature) for e in events if isinstance(e, ReasoningDelta) and e.signature
    ]
    assert [e.seq for e in out] == sorted(e.seq for e in out)
