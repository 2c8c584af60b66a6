"""Every recorded provider stream through normalize(): chunk-size invariance, goldens, invariants."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxstream._chunk import ProviderChunk
from rxstream._errors import ProviderError
from rxstream._events import EventBase
from rxstream.sources import load_recording
from rxstream.sources._payloads import PayloadDecoder, framing_for_path
from tests.conftest import GOLDEN, recording_paths
from tests.helpers import accumulate, run_chunks, run_recording

PATHS = recording_paths()
IDS = [p.name for p in PATHS]


def test_all_86_recordings_present() -> None:
    assert len(PATHS) == 86
    assert (PATHS[0].parent / "MANIFEST.md").exists()


def _dump(events: list[EventBase]) -> list[dict[str, object]]:
    return [e.model_dump() for e in events]


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_same_events_at_every_chunk_size(path: Path) -> None:
    whole, error = run_recording(path)
    for size in (1, 7):
        events, err = run_recording(path, chunk_size=size)
        assert _dump(events) == _dump(whole), f"chunk size {size} changed the events"
        assert type(err) is type(error) and str(err) == str(error)


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_golden_summary(path: Path, update_goldens: bool) -> None:
    events, error = run_recording(path)
    assert error is None or isinstance(error, ProviderError), f"unexpected failure: {error!r}"
    summary = accumulate(events, error).to_summary()
    golden = GOLDEN / (path.name + ".json")
    if update_goldens:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert golden.exists(), f"no golden file for {path.name}: run pytest --update-goldens and review it"
    assert summary == json.loads(golden.read_text(encoding="utf-8"))


def check_invariants(events: list[EventBase]) -> None:
    """The stream grammar and the concatenation rule every normalized stream obeys."""
    assert events, "no events"
    kinds = [e.type for e in events]  # type: ignore[attr-defined]
    assert kinds[0] == "stream.start"
    assert kinds.count("stream.start") == 1
    if "stream.end" in kinds:
        assert kinds[-1] == "stream.end" and kinds.count("stream.end") == 1
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs), "seq decreased"
    finishes = [e.output for e in events if e.type == "finish"]  # type: ignore[attr-defined]
    assert len(finishes) == len(set(finishes)), "more than one finish for an output"
    calls: dict[tuple[int, int], dict[str, object]] = {}
    for e in events:
        t = e.type  # type: ignore[attr-defined]
        if t == "tool_call.start":
            key = (e.output, e.call_index)  # type: ignore[attr-defined]
            assert key not in calls, f"tool call {key} started twice"
            calls[key] = {"parts": [], "done": None}
        elif t == "tool_call.delta":
            call = calls[(e.output, e.call_index)]  # type: ignore[attr-defined]
            assert call["done"] is None, "arguments after done"
            call["parts"].append(e.arguments_delta)  # type: ignore[attr-defined, union-attr]
        elif t == "tool_call.done":
            call = calls[(e.output, e.call_index)]  # type: ignore[attr-defined]
            assert call["done"] is None, "done twice"
            call["done"] = e.arguments  # type: ignore[attr-defined]
            assert "".join(call["parts"]) == e.arguments  # type: ignore[arg-type, attr-defined]
    for key, call in calls.items():
        assert call["done"] is not None, f"tool call {key} never done"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_stream_invariants(path: Path) -> None:
    events, _ = run_recording(path)
    check_invariants(events)


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_concatenated_deltas_equal_result(path: Path) -> None:
    events, error = run_recording(path)
    result = accumulate(events, error)
    texts: dict[tuple[str, int], list[str]] = defaultdict(list)
    for e in events:
        t = e.type  # type: ignore[attr-defined]
        if t in ("text.delta", "reasoning.delta", "refusal.delta"):
            texts[(t, e.output)].append(e.text)  # type: ignore[attr-defined]
    for out in result.outputs:
        assert "".join(texts[("text.delta", out.index)]) == out.text
        assert "".join(texts[("reasoning.delta", out.index)]) == out.reasoning
        assert "".join(texts[("refusal.delta", out.index)]) == out.refusal


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_every_payload_kind_survives_provider_events(path: Path) -> None:
    # Opting in to provider events must not change the content, only add provider.event items.
    plain, error = run_recording(path)
    verbose, error2 = run_recording(path, provider_events=True)
    assert str(error) == str(error2)
    assert _dump([e for e in verbose if e.type != "provider.event"]) == _dump(plain)  # type: ignore[attr-defined]


SMALL = [p for p in PATHS if p.stat().st_size < 40_000]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_arbitrary_chunkings_give_same_events_and_exact_concatenation(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(SMALL), label="recording")
    body = path.read_bytes()
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=40), label="cuts")))
    reference_chunks = load_recording(path)
    wire = reference_chunks[0].wire
    decoder = PayloadDecoder(framing_for_path(path.name))
    payloads: list[tuple[str | None, object]] = []
    start = 0
    for cut in [*cuts, len(body)]:
        payloads.extend(decoder.feed(body[start:cut]))
        start = cut
    payloads.extend(decoder.flush())
    chunks = [reference_chunks[0]] + [
        ProviderChunk("data", wire, event, payload, i + 1) for i, (event, payload) in enumerate(payloads)
    ]
    events, error = run_chunks(chunks)
    reference, reference_error = run_chunks(reference_chunks)
    assert _dump(events) == _dump(reference)
    assert str(error) == str(reference_error)
    result = accumulate(events, error)
    pieces: dict[tuple[str, int, int], list[str]] = defaultdict(list)
    for e in events:
        t = e.type  # type: ignore[attr-defined]
        if t == "tool_call.delta":
            pieces[(t, e.output, e.call_index)].append(e.arguments_delta)  # type: ignore[attr-defined]
        elif t in ("text.delta", "reasoning.delta", "refusal.delta"):
            pieces[(t, e.output, 0)].append(e.text)  # type: ignore[attr-defined]
    for out in result.outputs:
        assert "".join(pieces[("text.delta", out.index, 0)]) == out.text
        assert "".join(pieces[("reasoning.delta", out.index, 0)]) == out.reasoning
        assert "".join(pieces[("refusal.delta", out.index, 0)]) == out.refusal
        for call in out.tool_calls:
            assert "".join(pieces[("tool_call.delta", out.index, call.call_index)]) == call.arguments


def test_bad_json_payload_delivers_the_payloads_before_it() -> None:
    body = (
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"kept"}}]}\n\n'
        b"data: {not json\n\n"
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"never"}}]}\n\n'
    )
    decoder = PayloadDecoder("sse")
    payloads = decoder.feed(body)
    assert [p[1]["choices"][0]["delta"]["content"] for p in payloads] == ["kept"]
    assert decoder.failure is not None
    assert "#2" in str(decoder.failure) and "{not json" in str(decoder.failure)
    assert decoder.feed(body) == [] and decoder.flush() == []

    from rxstream import ProtocolError
    from rxstream.operators import normalize
    from rxstream.sources import from_bytes

    events: list[EventBase] = []
    errors: list[Exception] = []
    from_bytes([body], wire="openai.chat").pipe(normalize()).subscribe(events.append, errors.append)
    assert [e.text for e in events if e.type == "text.delta"] == ["kept"]  # type: ignore[attr-defined]
    assert isinstance(errors[0], ProtocolError)


def test_bad_json_line_in_jsonl_is_reported_with_its_number() -> None:
    decoder = PayloadDecoder("jsonl")
    payloads = decoder.feed(b'{"a": 1}\n\n{"b": 2}\nnope\n{"c": 3}\n')
    assert payloads == [(None, {"a": 1}), (None, {"b": 2})]
    assert decoder.failure is not None and "line #3" in str(decoder.failure)
