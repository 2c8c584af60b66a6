"""GeminiNormalizer: every Gemini recording, and hand-built streams for what no recording shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rxstream._chunk import ProviderChunk
from rxstream._errors import LimitExceededError, ProviderError
from rxstream._events import (
    Citation,
    EventBase,
    Finish,
    ProviderEvent,
    ReasoningDelta,
    StreamEnd,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
)
from rxstream._limits import Limits
from rxstream.operators._wires.gemini import GeminiNormalizer, _parse_path  # pyright: ignore[reportPrivateUsage]
from rxstream.sources import load_recording

RECORDINGS = Path(__file__).parent / "recordings"
FILES = sorted(p.name for p in RECORDINGS.glob("gemini-*"))


# -- helpers ----------------------------------------------------------------------------------


def run(
    chunks: list[ProviderChunk], **options: Any
) -> tuple[list[EventBase], GeminiNormalizer]:
    normalizer = GeminiNormalizer(stream_id="t", **options)
    events: list[EventBase] = []
    for chunk in chunks:
        events.extend(normalizer.feed(chunk))
    events.extend(normalizer.flush())
    return events, normalizer


def replay(name: str, chunk_size: int | None = None, **options: Any) -> list[EventBase]:
    events, normalizer = run(load_recording(RECORDINGS / name, chunk_size=chunk_size), **options)
    assert normalizer.failure is None
    check_invariants(events)
    return events


def payloads(*items: Any) -> list[ProviderChunk]:
    return [ProviderChunk("data", "gemini", None, item, i + 1) for i, item in enumerate(items)]


def of(events: list[EventBase], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def text(events: list[EventBase], output: int = 0) -> str:
    return "".join(e.text for e in of(events, TextDelta) if e.output == output)


def reasoning(events: list[EventBase], output: int = 0) -> str:
    return "".join(e.text for e in of(events, ReasoningDelta) if e.output == output)


def finishes(events: list[EventBase]) -> dict[int, tuple[str | None, str | None]]:
    return {e.output: (e.reason, e.raw_reason) for e in of(events, Finish)}


def calls(events: list[EventBase]) -> list[tuple[int, int, str | None, str, str]]:
    return [(e.output, e.call_index, e.call_id, e.name, e.arguments) for e in of(events, ToolCallDone)]


def last_usage(events: list[EventBase]) -> dict[str, int | None]:
    usage = of(events, Usage)[-1]
    return {
        name: getattr(usage, name)
        for name in (
            "input_tokens", "output_tokens", "total_tokens", "cache_read_input_tokens",
            "cache_write_input_tokens", "reasoning_tokens",
        )
    }


def check_invariants(events: list[EventBase]) -> None:
    assert isinstance(events[0], StreamStart)
    assert isinstance(events[-1], StreamEnd)
    assert sum(isinstance(e, (StreamStart, StreamEnd)) for e in events) == 2
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs)
    outputs = [e.output for e in of(events, Finish)]
    assert len(outputs) == len(set(outputs))
    content_outputs = {getattr(e, "output", 0) for e in events if isinstance(e, (TextDelta, ReasoningDelta, ToolCallStart))}
    assert content_outputs <= set(outputs)
    starts = {(e.output, e.call_index): i for i, e in enumerate(events) if isinstance(e, ToolCallStart)}
    dones = [(i, e) for i, e in enumerate(events) if isinstance(e, ToolCallDone)]
    assert len({(e.output, e.call_index) for _, e in dones}) == len(dones)
    assert set(starts) == {(e.output, e.call_index) for _, e in dones}
    for done_at, done in dones:
        key = (done.output, done.call_index)
        deltas = [
            (i, e) for i, e in enumerate(events)
            if isinstance(e, ToolCallDelta) and (e.output, e.call_index) == key
        ]
        assert all(starts[key] < i < done_at for i, _ in deltas)
        assert "".join(e.arguments_delta for _, e in deltas) == done.arguments
        json.loads(done.arguments)  # Gemini arguments are always a JSON object we can check
    last_finish = max(i for i, e in enumerate(events) if isinstance(e, Finish))
    assert all(not isinstance(e, (TextDelta, ToolCallDelta)) for e in events[last_finish:])


# -- every recording ---------------------------------------------------------------------------


def test_every_gemini_recording_is_covered() -> None:
    assert len(FILES) == 11


@pytest.mark.parametrize("name", FILES)
def test_chunk_size_invariance(name: str) -> None:
    whole = replay(name)
    assert replay(name, chunk_size=1) == whole
    assert replay(name, chunk_size=7) == whole


@pytest.mark.parametrize("name", FILES)
def test_provider_events_add_only_provider_events(name: str) -> None:
    plain = replay(name)
    verbose = replay(name, provider_events=True)
    assert [e for e in verbose if not isinstance(e, ProviderEvent)] == plain


def test_text() -> None:
    events = replay("gemini-generatecontent-text-1.sse")
    start = events[0]
    assert isinstance(start, StreamStart)
    assert (start.provider, start.wire, start.model, start.response_id) == (
        "google", "gemini", "gemini-2.0-flash-exp", "w1peaMz6INOvnvgPgYfPiQY",
    )
    assert [e.text for e in of(events, TextDelta)] == ["The", " capital of France", " is Paris.\n"]
    assert finishes(events) == {0: ("stop", "STOP")}
    # promptTokenCount goes 15 -> 13 in the last chunk: cumulative, so the last value wins.
    assert last_usage(events) == {
        "input_tokens": 13, "output_tokens": 8, "total_tokens": 21, "cache_read_input_tokens": None,
        "cache_write_input_tokens": None, "reasoning_tokens": None,
    }
    # Chunks 1 and 2 repeat the same usage: reported once.
    assert [(u.seq, u.input_tokens, u.total_tokens) for u in of(events, Usage)] == [(1, 15, 15), (3, 13, 21)]
    assert of(events, ReasoningDelta) == []


def test_whole_tool_call_with_signature() -> None:
    events = replay("gemini-generatecontent-toolcall-1.sse")
    assert calls(events) == [(0, 0, None, "get_country", "{}")]
    start = of(events, ToolCallStart)[0]
    assert start.meta["thought_signature"].startswith("EpwICpkIAXLI2nxlU6gsWZaZ")
    assert of(events, ToolCallDone)[0].meta["thought_signature"] == start.meta["thought_signature"]
    # Gemini says STOP after a function call: the caller must run the tool.
    assert finishes(events) == {0: ("tool_calls", "STOP")}
    assert text(events) == ""
    assert of(events, ReasoningDelta) == []
    assert last_usage(events) == {
        "input_tokens": 29, "output_tokens": 212, "total_tokens": 241, "cache_read_input_tokens": None,
        "cache_write_input_tokens": None, "reasoning_tokens": 202,
    }
    assert len(of(events, Usage)) == 1  # the second chunk repeats the same usageMetadata


def test_tool_call_with_id_and_empty_args() -> None:
    events = replay("gemini-generatecontent-toolcall-2.sse")
    assert calls(events) == [(0, 0, "96c1su3s", "get_user_country", "{}")]
    assert of(events, ToolCallStart)[0].call_id == "96c1su3s"
    assert finishes(events) == {0: ("tool_calls", "STOP")}
    assert last_usage(events)["output_tokens"] == 12 + 69
    assert last_usage(events)["total_tokens"] == 110


def test_json_array_tool_call() -> None:
    events = replay("gemini-generatecontent-jsonarray-toolcall-1.json")
    assert calls(events) == [(0, 0, None, "multiply", '{"y":3,"x":5}')]
    assert [e.arguments_delta for e in of(events, ToolCallDelta)] == ['{"y":3,"x":5}']
    assert of(events, ToolCallStart)[0].meta["thought_signature"].startswith("Et0BCtoBAXLI2nwMB4mo")
    assert finishes(events) == {0: ("tool_calls", "STOP")}
    assert last_usage(events) == {
        "input_tokens": 60, "output_tokens": 48, "total_tokens": 108, "cache_read_input_tokens": None,
        "cache_write_input_tokens": None, "reasoning_tokens": 32,
    }
    assert events[0].model == "gemini-3-flash-preview"  # type: ignore[attr-defined]


def test_json_array_text_with_thought_and_trailing_signature() -> None:
    events = replay("gemini-generatecontent-jsonarray-text-1.json")
    thought = of(events, ReasoningDelta)
    assert thought[0].text.startswith("**Considering the Constraint**")
    assert thought[0].text.endswith("This constraint is paramount.\n\n\n")
    assert thought[0].signature is None
    assert text(events) == "Scoop"
    # The final chunk's only part is {"text": "", "thoughtSignature": ...}: an empty reasoning
    # delta keeps the signature and adds no text anywhere.
    assert len(thought) == 2
    assert thought[1].text == ""
    assert thought[1].signature is not None and thought[1].signature.startswith("Eq0JCqoJARFNMg+W")
    assert thought[1].meta == {"part": "text"}
    assert finishes(events) == {0: ("stop", "STOP")}
    assert last_usage(events) == {
        "input_tokens": 11, "output_tokens": 293, "total_tokens": 304, "cache_read_input_tokens": None,
        "cache_write_input_tokens": None, "reasoning_tokens": 291,
    }
    assert events[0].model == "gemini-3.6-flash"  # type: ignore[attr-defined]


def test_reasoning_recording_trailing_signature() -> None:
    events = replay("gemini-generatecontent-reasoning-1.jsonl")
    assert text(events) == 'There are **3** "r"s in strawberry.\n\nHere is the breakdown: st**r**awbe**rr**y.'
    (signed,) = of(events, ReasoningDelta)
    assert signed.text == ""
    assert signed.signature is not None and signed.signature.startswith("Eo0HCooHAb4+9vut")
    assert signed.signature.endswith("j/uUJKN")
    assert finishes(events) == {0: ("stop", "STOP")}
    assert last_usage(events) == {
        "input_tokens": 9, "output_tokens": 29 + 256, "total_tokens": 294, "cache_read_input_tokens": None,
        "cache_write_input_tokens": None, "reasoning_tokens": 256,
    }


def test_structured_json_text() -> None:
    events = replay("gemini-generatecontent-structured-json-1.sse")
    assert json.loads(text(events)) == {"city": "Mexico City", "country": "Mexico"}
    assert text(events) == '{\n  "city": "Mexico City",\n  "country": "Mexico"\n} '
    (signed,) = of(events, ReasoningDelta)
    assert (signed.text, signed.signature is not None) == ("", True)
    assert finishes(events) == {0: ("stop", "STOP")}
    # promptTokenCount jumps 59 -> 128 in the last chunk; the last value wins.
    assert last_usage(events) == {
        "input_tokens": 128, "output_tokens": 51, "total_tokens": 179, "cache_read_input_tokens": None,
        "cache_write_input_tokens": None, "reasoning_tokens": 30,
    }


def test_code_execution_is_provider_executed() -> None:
    events = replay("gemini-generatecontent-code-execution-1.sse")
    assert of(events, ToolCallStart) == []
    assert text(events) == (
        "The result of $65465 - 6544 \\times 65464 - 6 + 1.02255$ is **-428,330,955.97745**."
    )
    # Signatures on the executableCode part and on the trailing empty text part.
    signed = of(events, ReasoningDelta)
    assert [(e.text, e.meta) for e in signed] == [("", {"part": "executableCode"}), ("", {"part": "text"})]
    assert signed[0].signature is not None and signed[0].signature.startswith("EqADCp0DAQw51sct")
    assert finishes(events) == {0: ("stop", "STOP")}
    # 147 prompt + 360 tool-use prompt; 108 candidates + 168 thoughts; total 783 = their sum.
    assert last_usage(events) == {
        "input_tokens": 507, "output_tokens": 276, "total_tokens": 783, "cache_read_input_tokens": None,
        "cache_write_input_tokens": None, "reasoning_tokens": 168,
    }

    verbose = replay("gemini-generatecontent-code-execution-1.sse", provider_events=True)
    passed = of(verbose, ProviderEvent)
    assert [e.name for e in passed] == ["executableCode", "codeExecutionResult"]
    assert passed[0].data["executableCode"]["code"] == (
        "result = 65465 - 6544 * 65464 - 6 + 1.02255\nprint(result)"
    )
    assert passed[1].data["codeExecutionResult"] == {
        "outcome": "OUTCOME_OK", "output": "-428330955.97745\n", "id": "8xju7mua",
    }
    assert passed[1].meta == {"output": 0}


def test_web_search_grounding() -> None:
    events = replay("gemini-generatecontent-web-search-1.sse")
    body = text(events)
    assert body.startswith("### Weather in San Francisco is Mild and Partly Cloudy Today")
    assert body.endswith("The chance of rain remains low throughout the day.")
    cites = of(events, Citation)
    assert [(c.kind, c.title) for c in cites] == [
        ("grounding", "Weather information for San Francisco, CA, US"),
        ("grounding", "timeanddate.com"),
        ("grounding", "weather.gov"),
        ("grounding", "wunderground.com"),
        ("grounding", "accuweather.com"),
    ]
    assert cites[0].url == "https://www.google.com/search?q=weather+in+San Francisco, CA,+US"
    assert cites[1].url is not None and cites[1].url.startswith(
        "https://vertexaisearch.cloud.google.com/grounding-api-redirect/AUZIYQE9XF"
    )
    # Chunk 0 supports three segments: the first is its cited text, all are in meta.
    assert (cites[0].start_index, cites[0].end_index) == (235, 375)
    assert cites[0].cited_text is not None and cites[0].cited_text.startswith("As of Tuesday afternoon")
    assert cites[0].meta == {
        "chunk_index": 0, "source": "web", "segments": [[235, 375], [445, 499], [882, 932]],
    }
    assert (cites[1].start_index, cites[1].end_index, cites[1].cited_text) == (
        376, 444, "Another report indicates a temperature of 68\u00b0F with passing clouds.",
    )
    assert cites[1].meta == {"chunk_index": 1, "source": "web", "segments": [[376, 444], [755, 881]]}
    assert (cites[4].start_index, cites[4].end_index) == (755, 881)
    assert finishes(events) == {0: ("stop", "STOP")}
    assert last_usage(events) == {
        "input_tokens": 17 + 102, "output_tokens": 241 + 412, "total_tokens": 772,
        "cache_read_input_tokens": None, "cache_write_input_tokens": None, "reasoning_tokens": 412,
    }
    # Usage changes on each of the 10 chunks.
    assert len(of(events, Usage)) == 10

    verbose = replay("gemini-generatecontent-web-search-1.sse", provider_events=True)
    (grounding,) = of(verbose, ProviderEvent)
    assert grounding.name == "groundingMetadata"
    assert grounding.data["webSearchQueries"] == ["weather in San Francisco today"]
    assert "groundingChunks" not in grounding.data


def test_partial_args_two_streamed_calls() -> None:
    events = replay("gemini-generatecontent-partial-args-1.jsonl")
    assert calls(events) == [
        (0, 0, None, "getWeather", '{"location":"Boston"}'),
        (0, 1, None, "getWeather", '{"location":"San Francisco"}'),
    ]
    assert [(e.call_index, e.arguments_delta) for e in of(events, ToolCallDelta)] == [
        (0, '{"location":"Boston'), (0, '"'), (0, "}"),
        (1, '{"location":"San Francisco'), (1, '"'), (1, "}"),
    ]
    # The first call closes (its ``functionCall: {}``) before the second starts.
    kinds = [(type(e).__name__, getattr(e, "call_index", None)) for e in events]
    assert kinds.index(("ToolCallDone", 0)) < kinds.index(("ToolCallStart", 1))
    assert of(events, ToolCallStart)[0].meta["thought_signature"].startswith("CiMBjz1rX25KieIB")
    assert of(events, ToolCallStart)[1].meta == {}
    assert finishes(events) == {0: ("tool_calls", "STOP")}
    # Seven chunks carry usageMetadata with only trafficType: one report, at the end.
    (usage,) = of(events, Usage)
    assert usage.seq == 8
    assert last_usage(events) == {
        "input_tokens": 26, "output_tokens": 23 + 132, "total_tokens": 181, "cache_read_input_tokens": None,
        "cache_write_input_tokens": None, "reasoning_tokens": 132,
    }


def test_no_args_call_then_streamed_calls() -> None:
    events = replay("gemini-generatecontent-noargs-toolcall-1.jsonl")
    (thought,) = of(events, ReasoningDelta)
    assert thought.text.startswith("**Processing User Requests**")
    assert thought.signature is None
    assert text(events) == ""
    assert calls(events) == [
        (0, 0, None, "read_theme", "{}"),
        (0, 1, None, "read_screen", '{"id":"A"}'),
        (0, 2, None, "read_screen", '{"id":"B"}'),
        (0, 3, None, "read_screen", '{"id":"C"}'),
    ]
    assert of(events, ToolCallStart)[0].meta["thought_signature"].startswith("AY89a18a8/Loc2wl")
    assert finishes(events) == {0: ("tool_calls", "STOP")}
    (usage,) = of(events, Usage)
    assert last_usage(events) == {
        "input_tokens": 249, "output_tokens": 58 + 183, "total_tokens": 490, "cache_read_input_tokens": None,
        "cache_write_input_tokens": None, "reasoning_tokens": 183,
    }
    assert usage.raw["trafficType"] == "PROVISIONED_THROUGHPUT"


# -- hand-built streams ------------------------------------------------------------------------


def candidate(parts: list[dict[str, Any]], index: int | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"content": {"role": "model", "parts": parts}, **extra}
    if index is not None:
        out["index"] = index
    return out


def fc(**fields: Any) -> dict[str, Any]:
    return {"candidates": [candidate([{"functionCall": fields}])]}


def streamed(*partial_args: dict[str, Any], name: str = "f") -> list[ProviderChunk]:
    items: list[Any] = [fc(name=name, willContinue=True)]
    items.extend(fc(partialArgs=[arg], willContinue=True) for arg in partial_args)
    items.append(fc())
    return payloads(*items)


def streamed_arguments(*partial_args: dict[str, Any]) -> str:
    events, normalizer = run(streamed(*partial_args))
    assert normalizer.failure is None
    check_invariants(events)
    (done,) = of(events, ToolCallDone)
    return done.arguments


def test_two_candidates() -> None:
    chunks = payloads(
        {"candidates": [candidate([{"text": "Hel"}], 0), candidate([{"text": "Bon"}], 1)], "modelVersion": "m"},
        {"candidates": [candidate([{"text": "lo"}], 0, finishReason="STOP")]},
        {
            "candidates": [candidate([{"functionCall": {"name": "look", "args": {"q": 1}}}], 1)],
        },
        {"candidates": [candidate([{"text": ""}], 1, finishReason="MAX_TOKENS")]},
    )
    events, normalizer = run(chunks)
    assert normalizer.failure is None
    check_invariants(events)
    assert (text(events, 0), text(events, 1)) == ("Hello", "Bon")
    assert calls(events) == [(1, 0, None, "look", '{"q":1}')]
    assert finishes(events) == {0: ("stop", "STOP"), 1: ("length", "MAX_TOKENS")}
    assert [e.output for e in of(events, Finish)] == [0, 1]


def test_candidate_without_index_is_output_zero() -> None:
    events, _ = run(payloads({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "STOP"}]}))
    assert text(events, 0) == "x"
    assert finishes(events) == {0: ("stop", "STOP")}


def test_prompt_blocked_by_prompt_feedback() -> None:
    blocked = {
        "promptFeedback": {
            "blockReason": "SAFETY",
            "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}],
        },
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r1",
    }
    events, normalizer = run(payloads(blocked), provider_events=True)
    assert normalizer.failure is None
    check_invariants(events)
    assert finishes(events) == {0: ("content_filter", "SAFETY")}
    assert [e.name for e in of(events, ProviderEvent)] == ["promptFeedback"]
    assert last_usage(events)["input_tokens"] == 7
    assert last_usage(events)["output_tokens"] is None
    assert text(events) == ""


def test_error_chunk_mid_stream() -> None:
    error = {"error": {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}}
    chunks = payloads(
        {"candidates": [candidate([{"text": "partial"}])], "modelVersion": "gemini-2.5-pro"},
        error,
        {"candidates": [candidate([{"text": "never seen"}])]},
    )
    events, normalizer = run(chunks)
    failure = normalizer.failure
    assert isinstance(failure, ProviderError)
    assert (failure.code, failure.status) == ("INTERNAL", 500)
    assert failure.body == error["error"]
    assert "An internal error has occurred." in str(failure)
    assert text(events) == "partial"
    assert finishes(events) == {0: ("error", "INTERNAL")}
    assert not any(isinstance(e, StreamEnd) for e in events)


def test_error_chunk_closes_an_open_streamed_call() -> None:
    chunks = payloads(
        fc(name="f", willContinue=True),
        fc(partialArgs=[{"jsonPath": "$.q", "stringValue": "ab", "willContinue": True}], willContinue=True),
        {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}},
    )
    events, normalizer = run(chunks)
    assert isinstance(normalizer.failure, ProviderError)
    assert calls(events) == [(0, 0, None, "f", '{"q":"ab"}')]
    assert finishes(events) == {0: ("error", "UNAVAILABLE")}


def test_error_that_is_not_an_object() -> None:
    events, normalizer = run(payloads({"error": "quota exhausted"}))
    assert isinstance(normalizer.failure, ProviderError)
    assert "quota exhausted" in str(normalizer.failure)
    assert finishes(events) == {0: ("error", None)}


def test_partial_args_numbers_bools_nulls_and_nesting() -> None:
    arguments = streamed_arguments(
        {"jsonPath": "$.city", "stringValue": "Bos", "willContinue": True},
        {"jsonPath": "$.city", "stringValue": "ton"},
        {"jsonPath": "$.brightness", "numberValue": 50},
        {"jsonPath": "$.ratio", "numberValue": 0.25},
        {"jsonPath": "$.on", "boolValue": True},
        {"jsonPath": "$.off", "boolValue": False},
        {"jsonPath": "$.nothing", "nullValue": "NULL_VALUE"},
        {"jsonPath": "$.unit.name", "stringValue": "celsius"},
        {"jsonPath": "$.unit.scale", "numberValue": -1.5e-3},
        {"jsonPath": "$.items[0].sku", "stringValue": "A1"},
        {"jsonPath": "$.items[0].qty", "numberValue": 2},
        {"jsonPath": "$.items[1].sku", "stringValue": "B", "willContinue": True},
        {"jsonPath": "$.items[1].sku", "stringValue": "2", "willContinue": True},
        {"jsonPath": "$.items[1].sku", "stringValue": ""},
        {"jsonPath": "$.tags[0]", "stringValue": "x"},
        {"jsonPath": "$.tags[1]", "stringValue": "y"},
        {"jsonPath": "$.deep.a.b[0][0]", "numberValue": 1},
        {"jsonPath": "$.deep.a.b[0][1]", "numberValue": 2},
        {"jsonPath": "$['odd key'].v", "boolValue": True},
    )
    assert json.loads(arguments) == {
        "city": "Boston",
        "brightness": 50,
        "ratio": 0.25,
        "on": True,
        "off": False,
        "nothing": None,
        "unit": {"name": "celsius", "scale": -0.0015},
        "items": [{"sku": "A1", "qty": 2}, {"sku": "B2"}],
        "tags": ["x", "y"],
        "deep": {"a": {"b": [[1, 2]]}},
        "odd key": {"v": True},
    }


def test_partial_args_string_escaping() -> None:
    pieces = ['He said "hi"', " \\ back", "slash / tab\t", "new\nline", " caf\u00e9 \u2603 \U0001f600", " \u2028 \x01"]
    args = [{"jsonPath": "$.s", "stringValue": p, "willContinue": True} for p in pieces]
    args.append({"jsonPath": "$.s", "stringValue": ""})
    args.append({"jsonPath": '$["k\\"q"]', "stringValue": "v"})
    arguments = streamed_arguments(*args)
    assert json.loads(arguments) == {"s": "".join(pieces), 'k"q': "v"}
    assert "caf\u00e9" in arguments  # not ASCII-escaped, as json.dumps(ensure_ascii=False)


def test_partial_args_with_odd_paths_stay_valid_json() -> None:
    arguments = streamed_arguments(
        {"jsonPath": "$[0]", "numberValue": 1},  # an index on the root object
        {"jsonPath": "$.a[0]", "numberValue": 2},
        {"jsonPath": "$.a.b", "numberValue": 3},  # a key inside what is already an array
        {"jsonPath": "$", "numberValue": 4},  # no key at all: dropped
        {"jsonPath": "$.n", "numberValue": "NaN"},  # proto3 JSON spells NaN as a string
        {"jsonPath": "$.f", "numberValue": float("inf")},
        {"jsonPath": "$.novalue"},
    )
    assert json.loads(arguments) == {"0": 1, "a": [2, 3], "n": "NaN", "f": None}


def test_partial_args_string_left_open_is_closed_by_the_next_path_and_the_end() -> None:
    arguments = streamed_arguments(
        {"jsonPath": "$.a", "stringValue": "x", "willContinue": True},
        {"jsonPath": "$.b", "stringValue": "y", "willContinue": True},
    )
    assert json.loads(arguments) == {"a": "x", "b": "y"}


def test_partial_args_in_the_closing_part_and_the_start_part() -> None:
    chunks = payloads(
        fc(name="f", willContinue=True, partialArgs=[{"jsonPath": "$.a", "numberValue": 1}]),
        fc(partialArgs=[{"jsonPath": "$.b", "numberValue": 2}]),  # no willContinue: the last part
        fc(name="g", willContinue=True),
        fc(),
        fc(),  # a stray close: nothing
    )
    events, normalizer = run(chunks)
    assert normalizer.failure is None
    check_invariants(events)
    assert calls(events) == [(0, 0, None, "f", '{"a":1,"b":2}'), (0, 1, None, "g", "{}")]


def test_streamed_call_replaced_by_a_new_named_call() -> None:
    chunks = payloads(
        fc(name="f", willContinue=True),
        fc(partialArgs=[{"jsonPath": "$.a", "stringValue": "x", "willContinue": True}], willContinue=True),
        fc(name="g", args={"k": [1, "\u00e9"]}),
    )
    events, _ = run(chunks)
    check_invariants(events)
    assert calls(events) == [(0, 0, None, "f", '{"a":"x"}'), (0, 1, None, "g", '{"k":[1,"\u00e9"]}')]


def test_stream_ending_inside_a_streamed_call() -> None:
    chunks = payloads(
        fc(name="f", willContinue=True),
        fc(partialArgs=[{"jsonPath": "$.a.b", "stringValue": "x", "willContinue": True}], willContinue=True),
    )
    events, normalizer = run(chunks)
    assert normalizer.failure is None
    check_invariants(events)
    assert calls(events) == [(0, 0, None, "f", '{"a":{"b":"x"}}')]
    assert finishes(events) == {0: (None, None)}


def test_finish_reason_closes_a_streamed_call() -> None:
    chunks = payloads(
        fc(name="f", willContinue=True),
        {"candidates": [candidate([], finishReason="MALFORMED_FUNCTION_CALL", finishMessage="bad call")]},
    )
    events, normalizer = run(chunks, provider_events=True)
    assert normalizer.failure is None
    check_invariants(events)
    assert calls(events) == [(0, 0, None, "f", "{}")]
    assert finishes(events) == {0: ("error", "MALFORMED_FUNCTION_CALL")}
    (detail,) = of(events, ProviderEvent)
    assert (detail.name, detail.data) == (
        "finish", {"finishReason": "MALFORMED_FUNCTION_CALL", "finishMessage": "bad call"},
    )


def test_streamed_call_id_and_partial_args_without_a_start() -> None:
    chunks = payloads(
        fc(name="f", id="call-1", willContinue=True),
        fc(partialArgs=[{"jsonPath": "$.n", "numberValue": 3}]),
        fc(partialArgs=[{"jsonPath": "$.m", "numberValue": 4}]),  # a continuation whose start we missed
    )
    events, normalizer = run(chunks)
    assert normalizer.failure is None
    check_invariants(events)
    assert calls(events) == [(0, 0, "call-1", "f", '{"n":3}'), (0, 1, None, "", '{"m":4}')]


def test_streamed_call_closed_with_full_args_snapshot() -> None:
    chunks = payloads(
        fc(name="f", willContinue=True),
        fc(partialArgs=[{"jsonPath": "$.a", "numberValue": 1}], willContinue=True),
        fc(args={"a": 1}),
    )
    events, _ = run(chunks)
    check_invariants(events)
    assert calls(events) == [(0, 0, None, "f", '{"a":1}')]
    assert "snapshot_arguments" not in of(events, ToolCallDone)[0].meta


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "error"),
        ("FINISH_REASON_UNSPECIFIED", "other"),
        ("OTHER", "other"),
        ("LANGUAGE", "other"),
        ("SOMETHING_NEW", "other"),
    ],
)
def test_finish_reasons(raw: str, reason: str) -> None:
    events, _ = run(payloads({"candidates": [candidate([{"text": "x"}], 0, finishReason=raw)]}))
    assert finishes(events) == {0: (reason, raw)}


def test_safety_ratings_ride_on_the_finish_provider_event() -> None:
    ratings = [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
    chunks = payloads(
        {"candidates": [candidate([{"text": "a"}], 0, safetyRatings=ratings)]},
        {"candidates": [candidate([{"text": "b"}], 0, finishReason="SAFETY", safetyRatings=ratings)]},
    )
    events, _ = run(chunks, provider_events=True)
    assert finishes(events) == {0: ("content_filter", "SAFETY")}
    (detail,) = of(events, ProviderEvent)
    assert detail.data == {"index": 0, "finishReason": "SAFETY", "safetyRatings": ratings}


def test_thought_part_with_signature_and_signed_text_part() -> None:
    chunks = payloads(
        {"candidates": [candidate([{"text": "think", "thought": True, "thoughtSignature": "sig-1"}])]},
        {"candidates": [candidate([{"text": "answer", "thoughtSignature": "sig-2"}])]},
        {"candidates": [candidate([{"text": "", "thought": True}, {"text": ""}])]},
    )
    events, _ = run(chunks)
    (thought,) = of(events, ReasoningDelta)
    assert (thought.text, thought.signature) == ("think", "sig-1")
    (answer,) = of(events, TextDelta)
    assert (answer.text, answer.meta) == ("answer", {"thought_signature": "sig-2"})


def test_usage_with_cached_content_and_missing_counts() -> None:
    chunks = payloads(
        {
            "candidates": [candidate([{"text": "a"}])],
            "usageMetadata": {"promptTokenCount": 1000, "cachedContentTokenCount": 800, "totalTokenCount": 1000},
        },
        {
            "candidates": [candidate([{"text": "b"}], finishReason="STOP")],
            "usageMetadata": {
                "promptTokenCount": 1000, "cachedContentTokenCount": 800,
                "candidatesTokenCount": 5, "totalTokenCount": 1005,
            },
        },
    )
    events, _ = run(chunks)
    assert last_usage(events) == {
        "input_tokens": 1000, "output_tokens": 5, "total_tokens": 1005, "cache_read_input_tokens": 800,
        "cache_write_input_tokens": None, "reasoning_tokens": None,
    }
    first = of(events, Usage)[0]
    assert (first.input_tokens, first.output_tokens, first.cache_read_input_tokens) == (1000, None, 800)


def test_usage_without_counts_reports_nothing() -> None:
    chunks = payloads(
        {"candidates": [candidate([{"text": "a"}], finishReason="STOP")], "usageMetadata": {"trafficType": "ON_DEMAND"}},
    )
    events, _ = run(chunks)
    assert of(events, Usage) == []


def test_grounding_re_sent_on_later_chunks_is_cited_once() -> None:
    grounding = {
        "groundingChunks": [
            {"web": {"uri": "https://a.example", "title": "a.example"}},
            {"retrievedContext": {"uri": "gs://bucket/doc.pdf", "title": "doc.pdf"}},
        ],
        "groundingSupports": [
            {"segment": {"startIndex": 0, "endIndex": 5, "text": "Hello"}, "groundingChunkIndices": [1]},
        ],
        "webSearchQueries": ["hello"],
    }
    grown = {
        **grounding,
        "groundingChunks": [*grounding["groundingChunks"], {"web": {"uri": "https://c.example", "title": "c"}}],
    }
    chunks = payloads(
        {"candidates": [candidate([{"text": "Hello"}], groundingMetadata=grounding)]},
        {"candidates": [candidate([{"text": " world"}], groundingMetadata=grounding)]},
        {"candidates": [candidate([], groundingMetadata=grown, finishReason="STOP")]},
    )
    events, _ = run(chunks, provider_events=True)
    check_invariants(events)
    cites = of(events, Citation)
    assert [(c.url, c.title, c.cited_text, c.start_index, c.end_index) for c in cites] == [
        ("https://a.example", "a.example", None, None, None),
        ("gs://bucket/doc.pdf", "doc.pdf", "Hello", 0, 5),
        ("https://c.example", "c", None, None, None),
    ]
    assert cites[1].meta == {"chunk_index": 1, "source": "retrievedContext"}
    assert [c.seq for c in cites] == [1, 1, 3]
    assert [e.name for e in of(events, ProviderEvent)] == ["groundingMetadata"]


def test_citation_metadata() -> None:
    citations = {
        "citations": [
            {"startIndex": 3, "endIndex": 40, "uri": "https://src.example/x", "license": "mit"},
            {"startIndex": 50, "endIndex": 60, "title": "A Book"},
        ]
    }
    chunks = payloads(
        {"candidates": [candidate([{"text": "abc"}], citationMetadata=citations)]},
        {"candidates": [candidate([{"text": "def"}], citationMetadata=citations, finishReason="STOP")]},
        {"candidates": [candidate([], citationMetadata={"citationSources": [{"uri": "https://api.example"}]})]},
    )
    events, _ = run(chunks)
    cites = of(events, Citation)
    assert [(c.kind, c.url, c.title, c.start_index, c.end_index, c.meta) for c in cites] == [
        ("citation_metadata", "https://src.example/x", None, 3, 40, {"license": "mit"}),
        ("citation_metadata", None, "A Book", 50, 60, {}),
        ("citation_metadata", "https://api.example", None, None, None, {}),
    ]


def test_media_and_unknown_parts_pass_through_when_asked() -> None:
    parts = [
        {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://x"}},
        {"brandNewPart": {"x": 1}},
        {"text": "ok"},
    ]
    chunk = {"candidates": [candidate(parts, 1)]}
    events, normalizer = run(payloads(chunk), provider_events=True)
    assert normalizer.failure is None
    check_invariants(events)
    assert [(e.name, e.meta) for e in of(events, ProviderEvent)] == [
        ("inlineData", {"output": 1}), ("fileData", {"output": 1}), ("part", {"output": 1}),
    ]
    assert text(events, 1) == "ok"
    quiet, _ = run(payloads(chunk))
    assert of(quiet, ProviderEvent) == []
    assert text(quiet, 1) == "ok"


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2],
        "just a string",
        {},
        {"candidates": "nope"},
        {"candidates": [None, 3, {"content": "x"}, {"content": {"parts": "x"}}, {"content": {"parts": [7, None]}}]},
        {"candidates": [{"index": "one", "content": {"parts": [{"text": 5}]}}]},
        {"candidates": [candidate([{"functionCall": "x"}, {"functionCall": {"name": 3, "args": [1]}}])]},
        {"candidates": [candidate([{"functionCall": {"partialArgs": [None, {"jsonPath": 4, "numberValue": 1}]}}])]},
        {"candidates": [candidate([], groundingMetadata={"groundingChunks": [None, {}, {"web": "x"}],
                                                         "groundingSupports": [None, {"segment": 1}]})]},
        {"candidates": [candidate([], citationMetadata={"citations": [None, {"uri": 3}]})]},
        {"usageMetadata": {"promptTokenCount": "7", "totalTokenCount": True}},
        {"usageMetadata": [1]},
        {"promptFeedback": {"blockReason": 3}},
        {"somethingElse": True, "modelVersion": 12},
    ],
)
def test_malformed_payloads_never_crash(payload: Any) -> None:
    for provider_events in (False, True):
        events, normalizer = run(payloads(payload, {"candidates": [candidate([{"text": "after"}])]}),
                                 provider_events=provider_events)
        assert normalizer.failure is None
        check_invariants(events)
        assert text(events).endswith("after")


def test_non_object_payload_is_a_provider_event() -> None:
    events, _ = run(payloads([1, 2]), provider_events=True)
    assert [(e.name, e.data) for e in of(events, ProviderEvent)] == [("payload", [1, 2])]
    quiet, _ = run(payloads([1, 2]))
    assert of(quiet, ProviderEvent) == []


def test_empty_stream() -> None:
    events, normalizer = run([])
    assert normalizer.failure is None
    assert [type(e) for e in events] == [StreamStart, Finish, StreamEnd]


def test_include_raw_attaches_the_payload() -> None:
    payload = {"candidates": [candidate([{"text": "x"}])]}
    events, _ = run(payloads(payload), include_raw=True)
    assert of(events, TextDelta)[0].meta["raw"] is payload


@pytest.mark.parametrize(
    ("path", "keys"),
    [
        ("$.a", ("a",)),
        ("$.a.b[0].c", ("a", "b", 0, "c")),
        ("$['a b'][12]", ("a b", 12)),
        ('$["q\\"x"]', ('q"x',)),
        ("a.b", ("a", "b")),
        ("$.a[x]", ("$.a[x]",)),
        ("$..a", ("$..a",)),
        ("$", ()),
    ],
)
def test_parse_path(path: str, keys: tuple[str | int, ...]) -> None:
    assert _parse_path(path) == keys


def test_arguments_limit_crossed_while_closing_streamed_arguments_at_flush() -> None:
    # Regression (issue 8): the closing text of streamed arguments is written at flush(), outside
    # the base class's error handling: the limit error escaped flush() instead of setting failure.
    chunks = payloads(
        fc(name="f", willContinue=True),
        fc(partialArgs=[{"jsonPath": "$.q", "stringValue": "ab", "willContinue": True}], willContinue=True),
    )
    normalizer = GeminiNormalizer(stream_id="t", limits=Limits(max_tool_arguments_bytes=9))
    events = [e for chunk in chunks for e in normalizer.feed(chunk)]
    assert normalizer.flush() == []
    assert isinstance(normalizer.failure, LimitExceededError)
    assert normalizer.failure.limit == "max_tool_arguments_bytes" and normalizer.failure.actual == 10
    assert "".join(e.arguments_delta for e in of(events, ToolCallDelta)) == '{"q":"ab'
