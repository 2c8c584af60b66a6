"""normalize(): the operator's Rx grammar (marble tests), wire detection and fault delivery."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.marbles import marbles_testing

from rxstream._chunk import ProviderChunk, StreamOpen
from rxstream._errors import ProtocolError, ProviderError
from rxstream._events import Finish, StreamEnd, StreamStart, TextDelta
from rxstream.operators import normalize
from tests.conftest import RECORDINGS
from tests.helpers import run_chunks

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error


def chat(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "m-1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def data(payload: dict[str, Any], at: int, wire: Any = "openai.chat", event: str | None = None) -> ProviderChunk:
    return ProviderChunk("data", wire, event, payload, at)


OPEN = ProviderChunk("open", "openai.chat", None, None, 1, StreamOpen(provider="acme"))


def start(at: int = 1, first_event_at: int = 3) -> StreamStart:
    return StreamStart(
        stream_id="t", seq=0, at=at, provider="acme", wire="openai.chat", model="m-1", response_id="chatcmpl-1",
        first_event_at=first_event_at,
    )


def test_marble_diagram() -> None:
    # The docstring's diagram: -o-a-b-c-| -> stream.start with a's text, b, c, then finish + end.
    with marbles_testing(timespan=1) as (begin, cold, _hot, exp):
        a, b, c = data(chat("Hel"), 3), data(chat("lo"), 11), data(chat(finish="stop"), 19)
        source = cold("-o-a-------b-------c-------|", {"o": OPEN, "a": a, "b": b, "c": c}, None)
        expected = exp(
            "---(s,a)---b---------------(f,e,|)",
            {
                "s": start(),
                "a": TextDelta(stream_id="t", seq=1, at=3, text="Hel"),
                "b": TextDelta(stream_id="t", seq=2, at=11, text="lo"),
                "f": Finish(stream_id="t", seq=3, at=19, reason="stop", raw_reason="stop"),
                "e": StreamEnd(stream_id="t", seq=3, at=19),
            },
            None,
        )
        assert begin(source.pipe(normalize(stream_id="t"))) == expected


def test_never_emits_nothing() -> None:
    scheduler = TestScheduler()
    results = scheduler.start(lambda: reactivex.never().pipe(normalize(stream_id="t")))
    assert results.messages == []


def test_empty_upstream_is_a_protocol_error() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_completed(10))
    results = scheduler.start(lambda: xs.pipe(normalize(stream_id="t")))
    assert len(results.messages) == 1
    assert results.messages[0].time == 210
    error = results.messages[0].value.exception
    assert isinstance(error, ProtocolError)
    assert "before any provider payload" in str(error)


def test_open_chunk_only_is_an_empty_stream() -> None:
    events, error = run_chunks([OPEN])
    assert error is None
    assert [e.type for e in events] == ["stream.start", "finish", "stream.end"]
    assert events[1] == Finish(stream_id="t", seq=0, at=1, reason=None)


def test_one_item() -> None:
    events, error = run_chunks([OPEN, data(chat("x"), 5)])
    assert error is None
    assert events[:2] == [start(first_event_at=5), TextDelta(stream_id="t", seq=1, at=5, text="x")]
    assert [e.type for e in events[2:]] == ["finish", "stream.end"]


def test_upstream_error_passes_unchanged_after_what_came_before() -> None:
    boom = RuntimeError("socket closed")
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(
        on_next(10, OPEN), on_next(20, data(chat("a"), 20)), on_error(30, boom)
    )
    results = scheduler.start(lambda: xs.pipe(normalize(stream_id="t")))
    kinds = [m.value.kind for m in results.messages]
    assert kinds == ["N", "N", "E"]
    assert results.messages[2].value.exception is boom
    assert results.messages[1].value.value.text == "a"


def test_dispose_midway_unsubscribes_upstream() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, OPEN), on_next(220, data(chat("a"), 220)), on_next(400, data(chat("b"), 400)), on_completed(500)
    )
    results = scheduler.start(lambda: xs.pipe(normalize(stream_id="t")), disposed=300)
    assert [m.value.value.type for m in results.messages] == ["stream.start", "text.delta"]
    assert [(s.subscribe, s.unsubscribe) for s in xs.subscriptions] == [(200, 300)]


def test_resubscribe_gives_the_same_output() -> None:
    source = reactivex.from_iterable([OPEN, data(chat("a"), 2), data(chat("b", "stop"), 3)]).pipe(
        normalize(stream_id="t")
    )
    first: list[Any] = []
    second: list[Any] = []
    source.subscribe(first.append)
    source.subscribe(second.append)
    assert first == second and len(first) == 5


def test_each_subscription_gets_its_own_stream_id_by_default() -> None:
    source = reactivex.from_iterable([OPEN, data(chat("a"), 2)]).pipe(normalize())
    ids: list[str] = []
    source.subscribe(lambda e: ids.append(e.stream_id))
    source.subscribe(lambda e: ids.append(e.stream_id))
    assert len(set(ids[:4])) == 1 and ids[0] != ids[-1]


def test_provider_error_delivers_everything_before_it() -> None:
    broken = chat("!")
    broken["error"] = {"code": 400, "message": "Token limit reached"}
    events, error = run_chunks([OPEN, data(chat("a"), 2), data(broken, 3), data(chat("never"), 4)])
    assert isinstance(error, ProviderError)
    assert "Token limit reached" in str(error)
    texts = [e.text for e in events if e.type == "text.delta"]
    assert texts[0] == "a"
    assert "never" not in texts
    finish = [e for e in events if e.type == "finish"]
    assert len(finish) == 1 and finish[0].reason == "error"
    assert events[-1].type == "finish"


def test_wire_detected_when_chunks_do_not_name_it() -> None:
    anthropic = [
        ProviderChunk("open", None, None, None, 0, StreamOpen()),
        data({"type": "ping"}, 1, wire=None, event="ping"),
        data(
            {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "content": [], "usage": {}}},
            2,
            wire=None,
        ),
        data({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, 3, wire=None),
        data({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hey"}}, 4, wire=None),
    ]
    events, error = run_chunks(anthropic)
    assert error is None
    assert events[0].wire == "anthropic.messages"
    assert [e.text for e in events if e.type == "text.delta"] == ["hey"]


def test_undetectable_payloads_fail_clearly() -> None:
    events, error = run_chunks([data({"hello": "world"}, 1, wire=None)])
    assert events == []
    assert isinstance(error, ProtocolError)
    assert "cannot tell the wire format" in str(error) and "hello" in str(error)


def test_explicit_wire_wins() -> None:
    events, _ = run_chunks([data(chat("a"), 1, wire=None)], wire="openai.chat")
    assert events[0].wire == "openai.chat"


def test_bad_wire_argument_is_rejected_at_call_time() -> None:
    with pytest.raises(ValueError, match="wire must be one of"):
        normalize(wire="smoke-signals")  # type: ignore[arg-type]


def test_unforeseen_payload_shape_is_a_protocol_error_not_a_crash() -> None:
    events, error = run_chunks([OPEN, data(chat("a"), 2), data({"choices": "not-a-list", "id": "x"}, 3)])
    # Tolerant readers ignore what they do not understand; whatever happens, it is never a raw exception.
    assert error is None or isinstance(error, ProtocolError)
    assert any(e.type == "text.delta" for e in events)


def test_include_raw_attaches_the_payload() -> None:
    payload = chat("a")
    events, _ = run_chunks([OPEN, data(payload, 2)], include_raw=True)
    assert events[1].meta["raw"] is payload


def test_responses_echoed_output_format_reaches_stream_start() -> None:
    from tests.helpers import run_recording

    events, _ = run_recording(RECORDINGS / "openai-responses-text-1.sse")
    assert events[0].meta["response_format"] == {"type": "text"}
    events, _ = run_recording(RECORDINGS / "openai-chat-text-1.sse")
    assert "response_format" not in events[0].meta
