"""The openai.responses wire: every Responses recording, checked by hand and against its own final
``response.completed`` output, plus hand-built payloads for the quirks no recording shows."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from rxstream._chunk import ProviderChunk
from rxstream._errors import ProviderError
from rxstream._events import EventBase
from rxstream.operators._wires.openai_responses import OpenAIResponsesNormalizer
from rxstream.sources import load_recording

RECORDINGS = Path(__file__).parent / "recordings"

FILES = [
    "azure-responses-functioncall-1.jsonl",
    "azure-responses-text-1.jsonl",
    "bedrock-responses-functioncall-1.sse",
    "deepseek-responses-text-1.sse",
    "lmstudio-responses-reasoning-toolcall-1.jsonl",
    "openai-responses-background-1.sse",
    "openai-responses-code-interpreter-1.jsonl",
    "openai-responses-custom-tool-1.jsonl",
    "openai-responses-error-quota-1.sse",
    "openai-responses-file-search-1.jsonl",
    "openai-responses-functioncall-1.sse",
    "openai-responses-image-generation-1.jsonl",
    "openai-responses-mcp-approval-1.jsonl",
    "openai-responses-moderation-1.sse",
    "openai-responses-reasoning-functioncall-1.sse",
    "openai-responses-reasoning-functioncall-2.sse",
    "openai-responses-reasoning-multistep-1.jsonl",
    "openai-responses-reasoning-summary-1.sse",
    "openai-responses-text-1.sse",
    "openai-responses-text-2.sse",
    "xai-responses-web-search-1.jsonl",
]
FAILING = {"openai-responses-error-quota-1.sse"}


# -- helpers ----------------------------------------------------------------------------------


class Run:
    """The events of one normalized stream, with the views the tests need."""

    def __init__(self, events: list[EventBase], normalizer: OpenAIResponsesNormalizer) -> None:
        self.events = events
        self.failure = normalizer.failure

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.events if e.type == kind]  # type: ignore[attr-defined]

    def text(self, output: int = 0) -> str:
        return "".join(e.text for e in self.of("text.delta") if e.output == output)

    @property
    def reasoning(self) -> str:
        return "".join(e.text for e in self.of("reasoning.delta"))

    @property
    def refusal(self) -> str:
        return "".join(e.text for e in self.of("refusal.delta"))

    @property
    def calls(self) -> list[tuple[int, str | None, str, str]]:
        return [(e.call_index, e.call_id, e.name, e.arguments) for e in self.of("tool_call.done")]

    @property
    def finish(self) -> tuple[str | None, str | None]:
        (finish,) = self.of("finish")
        return finish.reason, finish.raw_reason

    @property
    def usage(self) -> dict[str, int | None]:
        last = self.of("usage")[-1]
        return {
            name: getattr(last, name)
            for name in (
                "input_tokens",
                "output_tokens",
                "total_tokens",
                "cache_read_input_tokens",
                "cache_write_input_tokens",
                "reasoning_tokens",
            )
        }


def feed(chunks: list[ProviderChunk], **options: Any) -> Run:
    normalizer = OpenAIResponsesNormalizer(stream_id="t", **options)
    events: list[EventBase] = []
    for chunk in chunks:
        events.extend(normalizer.feed(chunk))
    events.extend(normalizer.flush())
    return Run(events, normalizer)


def replay(name: str, chunk_size: int | None = None, **options: Any) -> Run:
    return feed(load_recording(RECORDINGS / name, chunk_size=chunk_size), **options)


def payloads(name: str) -> list[dict[str, Any]]:
    return [c.data for c in load_recording(RECORDINGS / name) if c.kind == "data"]


def built(*items: dict[str, Any], event: str | None = None) -> list[ProviderChunk]:
    """Hand-built chunks: a response.created first unless the first item is already one."""
    chunks: list[ProviderChunk] = []
    data = list(items)
    if not data or data[0].get("type") != "response.created":
        data.insert(0, created())
    for i, item in enumerate(data):
        chunks.append(ProviderChunk("data", "openai.responses", event, item, i + 1))
    return chunks


def created(model: str = "gpt-5", rid: str = "resp_1") -> dict[str, Any]:
    return {
        "type": "response.created",
        "sequence_number": 0,
        "response": {"id": rid, "model": model, "status": "in_progress", "output": [], "usage": None},
    }


def terminal(kind: str = "response.completed", status: str = "completed", **response: Any) -> dict[str, Any]:
    body = {"id": "resp_1", "model": "gpt-5", "status": status, "output": [], "usage": None}
    body.update(response)
    return {"type": kind, "response": body}


def usage(inp: int, out: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inp + out,
    }


def text_delta(delta: str, item: str | None = "msg_1", index: int = 0) -> dict[str, Any]:
    out = {"type": "response.output_text.delta", "output_index": 0, "content_index": index, "delta": delta}
    if item is not None:
        out["item_id"] = item
    return out


def message(item: str, *parts: dict[str, Any]) -> dict[str, Any]:
    return {"id": item, "type": "message", "status": "completed", "role": "assistant", "content": list(parts)}


def item_done(item: dict[str, Any], output_index: int = 0) -> dict[str, Any]:
    return {"type": "response.output_item.done", "output_index": output_index, "item": item}


def item_added(item: dict[str, Any], output_index: int = 0) -> dict[str, Any]:
    return {"type": "response.output_item.added", "output_index": output_index, "item": item}


# -- invariants -------------------------------------------------------------------------------


def check_invariants(run: Run, snapshots: list[str] | None = None) -> None:
    events = run.events
    assert events[0].type == "stream.start"  # type: ignore[attr-defined]
    if run.failure is None:
        assert events[-1].type == "stream.end"  # type: ignore[attr-defined]
    assert [e.output for e in run.of("finish")] == [0]
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs)
    assert {e.output for e in events if hasattr(e, "output")} <= {0}
    state: dict[int, str] = {}
    deltas: dict[int, list[str]] = {}
    for e in events:
        kind = e.type  # type: ignore[attr-defined]
        if kind == "tool_call.start":
            assert e.call_index not in state  # type: ignore[attr-defined]
            state[e.call_index] = "open"  # type: ignore[attr-defined]
            deltas[e.call_index] = []  # type: ignore[attr-defined]
        elif kind == "tool_call.delta":
            assert state[e.call_index] == "open"  # type: ignore[attr-defined]
            deltas[e.call_index].append(e.arguments_delta)  # type: ignore[attr-defined]
        elif kind == "tool_call.done":
            assert state[e.call_index] == "open"  # type: ignore[attr-defined]
            state[e.call_index] = "done"  # type: ignore[attr-defined]
            assert "".join(deltas[e.call_index]) == e.arguments  # type: ignore[attr-defined]
    assert sorted(state) == list(range(len(state)))
    assert all(v == "done" for v in state.values())
    text = run.text()
    for snapshot in snapshots or []:
        if snapshot:
            assert text.count(snapshot) == 1, snapshot[:60]
    seen = [
        (c.kind, c.url, c.title, c.start_index, c.end_index, c.meta.get("file_id"), c.meta.get("item_id"))
        for c in run.of("citation")
    ]
    assert len(seen) == len(set(seen))


def completed_outputs(name: str) -> list[list[dict[str, Any]]]:
    return [
        p["response"].get("output") or [] for p in payloads(name) if p.get("type") == "response.completed"
    ]


def expected_from_completed(name: str) -> tuple[str, str, list[tuple[str, str, str]], int]:
    """What the recording's own final responses say: text, reasoning, client calls, annotations."""
    text, reasoning, calls, annotations = [], [], [], set()
    for output in completed_outputs(name):
        for item in output:
            kind = item.get("type")
            if kind == "message":
                for part in item.get("content") or []:
                    if part.get("type") == "output_text":
                        text.append(part.get("text") or "")
                        for a in part.get("annotations") or []:
                            annotations.add((item["id"], json.dumps(a, sort_keys=True)))
            elif kind == "reasoning":
                reasoning.extend(p.get("text") or "" for p in item.get("summary") or [])
                reasoning.extend(p.get("text") or "" for p in item.get("content") or [])
            elif kind == "function_call":
                calls.append((item["call_id"], item["name"], item["arguments"]))
            elif kind == "custom_tool_call":
                calls.append((item["call_id"], item["name"], item["input"]))
    return "".join(text), "".join(reasoning), calls, len(annotations)


# -- every recording --------------------------------------------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_invariants(name: str) -> None:
    run = replay(name)
    snapshots = [p["text"] for p in payloads(name) if p.get("type") == "response.output_text.done"]
    check_invariants(run, snapshots)
    if name in FAILING:
        assert isinstance(run.failure, ProviderError)
    else:
        assert run.failure is None


@pytest.mark.parametrize("name", sorted(set(FILES) - FAILING))
def test_matches_final_response(name: str) -> None:
    outputs = completed_outputs(name)
    assert outputs and any(outputs)
    text, reasoning, calls, annotations = expected_from_completed(name)
    run = replay(name)
    assert run.text() == text
    assert run.reasoning == reasoning
    assert [(cid, n, a) for _, cid, n, a in run.calls] == calls
    assert [i for i, *_ in run.calls] == list(range(len(calls)))
    assert len(run.of("citation")) == annotations


@pytest.mark.parametrize("name", FILES)
def test_chunk_size_invariance(name: str) -> None:
    whole = [e.model_dump() for e in replay(name, provider_events=True).events]
    for size in (1, 7):
        assert [e.model_dump() for e in replay(name, size, provider_events=True).events] == whole


@pytest.mark.parametrize("name", FILES)
def test_provider_events_only_when_asked(name: str) -> None:
    quiet = replay(name)
    loud = replay(name, provider_events=True)
    assert quiet.of("provider.event") == []
    strip = [e.model_dump() for e in loud.events if e.type != "provider.event"]  # type: ignore[attr-defined]
    assert strip == [e.model_dump() for e in quiet.events]


# -- recordings, fact by fact -----------------------------------------------------------------


def test_openai_functioncall() -> None:
    run = replay("openai-responses-functioncall-1.sse")
    start = run.of("stream.start")[0]
    assert (start.provider, start.model, start.response_id) == (
        "openai",
        "gpt-4o-2024-08-06",
        "resp_67e554a155508191900ee113293c4c830794405d35281ae2",
    )
    assert run.calls == [(0, "call_kL0PCQV7M2WMoVX8V8OtYSAL", "get_capital", '{"country":"France"}')]
    assert [d.arguments_delta for d in run.of("tool_call.delta")] == ['{"', "country", '":"', "France", '"}']
    (tool_start,) = run.of("tool_call.start")
    assert tool_start.meta["item_id"] == "fc_67e554a1de488191af0831d35cbe082e0794405d35281ae2"
    assert run.of("tool_call.done")[0].meta == {
        "item_id": "fc_67e554a1de488191af0831d35cbe082e0794405d35281ae2"
    }
    assert run.finish == ("tool_calls", "completed")
    assert run.usage == {
        "input_tokens": 255,
        "output_tokens": 16,
        "total_tokens": 271,
        "cache_read_input_tokens": 0,
        "cache_write_input_tokens": None,
        "reasoning_tokens": 0,
    }
    assert run.text() == "" and run.reasoning == ""


def test_openai_text() -> None:
    run = replay("openai-responses-text-1.sse")
    assert run.text() == "The capital of France is Paris."
    assert [d.text for d in run.of("text.delta")] == [
        "The",
        " capital",
        " of",
        " France",
        " is",
        " Paris",
        ".",
    ]
    assert run.of("text.delta")[0].meta == {"item_id": "msg_67e554a28bec8191b56d3e2331eff88006c52f0e511c76ed"}
    assert run.finish == ("stop", "completed")
    assert (
        run.usage["input_tokens"] == 278
        and run.usage["output_tokens"] == 9
        and run.usage["total_tokens"] == 287
    )
    assert run.of("tool_call.start") == []


def test_openai_text_2_encrypted_reasoning() -> None:
    run = replay("openai-responses-text-2.sse")
    assert run.text() == "Hello, World!"
    (reasoning,) = run.of("reasoning.delta")
    # The done item's value, not the added one ("encrypted-1") nor the final response's ("encrypted-3").
    assert reasoning.text == "" and reasoning.signature is None
    assert reasoning.meta["encrypted_content"] == "encrypted-2"
    assert reasoning.meta["item_id"] == "rs_68d7eff985648196883d78673232885e07152cb8c6ac9072"
    assert reasoning.meta["sequence_number"] == 3
    assert run.of("text.delta")[0].meta["sequence_number"] == 6
    assert run.finish == ("stop", "completed")
    assert run.usage["total_tokens"] == 22


def test_openai_background_queued() -> None:
    run = replay("openai-responses-background-1.sse", provider_events=True)
    assert run.text() == "2 + 2 equals 4."
    assert run.of("provider.event") == []  # response.queued maps to nothing
    assert run.finish == ("stop", "completed")
    assert (run.usage["input_tokens"], run.usage["output_tokens"], run.usage["total_tokens"]) == (15, 9, 24)


def test_openai_reasoning_functioncall_1() -> None:
    run = replay("openai-responses-reasoning-functioncall-1.sse")
    assert run.calls == [(0, "call_CWXgs68YprAjp6t0371hiPOI", "final_result", '{"result":6666}')]
    (reasoning,) = run.of("reasoning.delta")
    assert reasoning.meta["encrypted_content"].startswith("gAAAAABoyXvxI6jwG5j6rvTGC7PD6JN5758K")
    assert run.finish == ("tool_calls", "completed")
    assert run.usage == {
        "input_tokens": 53,
        "output_tokens": 469,
        "total_tokens": 522,
        "cache_read_input_tokens": 0,
        "cache_write_input_tokens": None,
        "reasoning_tokens": 448,
    }


def test_openai_reasoning_functioncall_2() -> None:
    run = replay("openai-responses-reasoning-functioncall-2.sse")
    assert run.calls == [
        (0, "call_5dp5Uj0Loqn1YcyIpqSq6sLX", "get_weather", '{ "location": "New York City, USA" }')
    ]
    assert len(run.of("tool_call.delta")) == 12
    assert run.of("tool_call.delta")[0].meta == {"sequence_number": 5}
    assert run.finish == ("tool_calls", "completed")
    assert (run.usage["output_tokens"], run.usage["reasoning_tokens"]) == (155, 128)


def test_openai_reasoning_summary_parts_not_separated() -> None:
    run = replay("openai-responses-reasoning-summary-1.sse")
    summaries = [
        p["text"]
        for p in payloads("openai-responses-reasoning-summary-1.sse")
        if p.get("type") == "response.reasoning_summary_text.done"
    ]
    assert len(summaries) == 4
    assert run.reasoning == "".join(summaries)
    assert run.reasoning.startswith("**Providing street crossing instructions**\n\nThe user is asking")
    assert "the street.**Explaining street crossing safety**" in run.reasoning
    assert sorted({e.meta["summary_index"] for e in run.of("reasoning.delta") if e.text}) == [0, 1, 2, 3]
    assert len([e for e in run.of("reasoning.delta") if e.text]) == 383
    assert run.text().startswith("I'm not a road safety professional, but here are some")
    assert run.finish == ("stop", "completed")
    assert run.usage["reasoning_tokens"] == 1408 and run.usage["total_tokens"] == 1693


def test_openai_multistep_is_one_output_usage_summed() -> None:
    run = replay("openai-responses-reasoning-multistep-1.jsonl")
    assert run.calls == [
        (0, "call_AB6AaRZ1FYZB2RwS6A5vbdqn", "calculator", '{"a":12,"b":7,"op":"add"}'),
        (1, "call_Q6pW65MUgW9vF59BmItYGos3", "calculator", '{"a":19,"b":3,"op":"multiply"}'),
        (2, "call_Zl5vIMnD7dVAjgU6FkhmiCZh", "calculator", '{"a":57,"b":10,"op":"multiply"}'),
    ]
    assert run.text() == "The final result is **570**."
    assert run.reasoning.startswith("**Calculating step-by-step using calculator**")
    assert [u.input_tokens for u in run.of("usage")] == [134, 134 + 221, 134 + 221 + 260, 914]
    assert run.usage == {
        "input_tokens": 914,
        "output_tokens": 92,
        "total_tokens": 1006,
        "cache_read_input_tokens": 0,
        "cache_write_input_tokens": None,
        "reasoning_tokens": 0,
    }
    # The calls of the earlier responses were answered (a later response exists); the last
    # response ended with text, so nothing waits for the caller.
    assert run.finish == ("stop", "completed")
    start = run.of("stream.start")[0]
    assert start.response_id == "resp_01830d662ab3856501693c321345c88190b0de00f3b9975691"


def test_openai_custom_tool() -> None:
    run = replay("openai-responses-custom-tool-1.jsonl")
    assert run.calls == [(0, "call_custom_sql_001", "write_sql", "SELECT * FROM users WHERE age > 25")]
    assert [d.arguments_delta for d in run.of("tool_call.delta")] == [
        "SELECT * ",
        "FROM users ",
        "WHERE age > 25",
    ]
    assert run.of("tool_call.done")[0].meta == {"item_id": "ct_abc123def456"}
    assert run.finish == ("tool_calls", "completed")
    assert (run.usage["input_tokens"], run.usage["output_tokens"], run.usage["total_tokens"]) == (50, 20, 70)


def test_openai_code_interpreter_is_hosted() -> None:
    run = replay("openai-responses-code-interpreter-1.jsonl", provider_events=True)
    assert run.of("tool_call.start") == []
    names = Counter(e.name for e in run.of("provider.event"))
    assert names["response.code_interpreter_call_code.delta"] == 74 + 70 + 5
    assert names["response.code_interpreter_call.interpreting"] == 3
    assert names["response.output_item.added"] == 3 and names["response.output_item.done"] == 3
    text = run.text()
    assert text.startswith("Here\u2019s a simulation of rolling two fair six-sided dice 10,000 times.")
    assert text.endswith("(JSON, Excel, etc.).")
    (citation,) = run.of("citation")
    assert (citation.kind, citation.start_index, citation.end_index, citation.title) == (
        "container_file_citation",
        423,
        465,
        "roll2dice_sums_10000.csv",
    )
    assert citation.meta["file_id"] == "cfile_68c2e7084ab48191a67824aa1f4c90f1"
    assert citation.meta["container_id"] == "cntr_68c2e6f380d881908a57a82d394434ff02f484f5344062e9"
    assert text[423:465] == "sandbox:/mnt/data/roll2dice_sums_10000.csv"
    assert run.finish == ("stop", "completed")
    assert run.usage == {
        "input_tokens": 6047,
        "output_tokens": 1623,
        "total_tokens": 7670,
        "cache_read_input_tokens": 2944,
        "cache_write_input_tokens": None,
        "reasoning_tokens": 1408,
    }


def test_openai_file_search_citations() -> None:
    run = replay("openai-responses-file-search-1.jsonl", provider_events=True)
    assert [(c.kind, c.title, c.start_index, c.meta["file_id"]) for c in run.of("citation")] == [
        ("file_citation", "ai.pdf", 154, "file-Ebzhf8H4DPGPr9pUhr7n7v"),
        ("file_citation", "ai.pdf", 382, "file-Ebzhf8H4DPGPr9pUhr7n7v"),
    ]
    assert [c.meta["sequence_number"] for c in run.of("citation")] == [46, 88]
    assert run.text().startswith("According to the document, an embedding model converts")
    assert [e.name for e in run.of("provider.event")] == [
        "response.output_item.added",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.output_item.done",
    ]
    assert run.of("tool_call.start") == []
    assert run.usage["cache_read_input_tokens"] == 2304


def test_openai_image_generation_no_text() -> None:
    run = replay("openai-responses-image-generation-1.jsonl", provider_events=True)
    assert run.text() == "" and run.of("text.delta") == []
    partial = [
        e for e in run.of("provider.event") if e.name == "response.image_generation_call.partial_image"
    ]
    assert len(partial) == 1 and partial[0].data["partial_image_b64"].startswith("UklGR")
    assert run.of("tool_call.start") == []
    assert run.finish == ("stop", "completed")
    assert (
        run.usage["input_tokens"],
        run.usage["cache_read_input_tokens"],
        run.usage["reasoning_tokens"],
    ) == (2941, 1920, 1024)


def test_openai_mcp_approval_request_is_a_provider_event() -> None:
    run = replay("openai-responses-mcp-approval-1.jsonl", provider_events=True)
    assert run.of("tool_call.start") == []
    approvals = [
        e
        for e in run.of("provider.event")
        if isinstance(e.data.get("item"), dict) and e.data["item"]["type"] == "mcp_approval_request"
    ]
    assert [e.name for e in approvals] == ["response.output_item.added", "response.output_item.done"]
    assert approvals[1].data["item"]["name"] == "create_short_url"
    assert run.finish == ("stop", "completed")
    assert run.usage["total_tokens"] == 470


def test_openai_moderation_not_flagged() -> None:
    run = replay("openai-responses-moderation-1.sse", provider_events=True)
    assert run.text() == "Paris."
    (moderation,) = [e for e in run.of("provider.event") if e.name == "response.moderation"]
    assert moderation.data["input"]["flagged"] is False and moderation.data["output"]["flagged"] is False
    assert run.finish == ("stop", "completed")
    assert run.usage == {
        "input_tokens": 13,
        "output_tokens": 59,
        "total_tokens": 72,
        "cache_read_input_tokens": 0,
        "cache_write_input_tokens": 0,
        "reasoning_tokens": 0,
    }


def test_openai_error_quota() -> None:
    run = replay("openai-responses-error-quota-1.sse")
    error = run.failure
    assert isinstance(error, ProviderError)
    assert error.code == "insufficient_quota" and error.error_type == "insufficient_quota"
    assert "You exceeded your current quota" in error.message
    assert error.body["param"] is None
    assert [e.type for e in run.events] == ["stream.start", "finish"]  # type: ignore[attr-defined]
    assert run.finish == ("error", "insufficient_quota")
    assert run.of("usage") == []


def test_azure_text_and_content_filters() -> None:
    run = replay("azure-responses-text-1.jsonl", provider_events=True)
    assert run.text() == "Hello"
    (filters,) = [e for e in run.of("provider.event") if e.name == "response.content_filters"]
    assert [f["source_type"] for f in filters.data] == ["prompt", "completion"]
    assert run.finish == ("stop", "completed")
    assert (run.usage["input_tokens"], run.usage["output_tokens"], run.usage["total_tokens"]) == (11, 11, 22)


def test_azure_functioncall() -> None:
    run = replay("azure-responses-functioncall-1.jsonl")
    start = run.of("stream.start")[0]
    assert (start.provider, start.model) == ("openai", "gpt-5.1")
    assert run.calls == [(0, "call_H5DxLSFnsGhiROnUiDHmgyc8", "weather", '{"location":"San Francisco"}')]
    assert len(run.of("tool_call.delta")) == 6
    assert run.finish == ("tool_calls", "completed")
    assert (run.usage["input_tokens"], run.usage["output_tokens"], run.usage["total_tokens"]) == (45, 24, 69)


def test_bedrock_functioncall() -> None:
    run = replay("bedrock-responses-functioncall-1.sse")
    start = run.of("stream.start")[0]
    assert (start.provider, start.model) == (None, "openai.gpt-5.6-luna")
    assert run.calls == [(0, "call_0", "first_tool", "{}")]
    assert run.finish == ("tool_calls", "completed")
    assert run.usage == {
        "input_tokens": 88,
        "output_tokens": 14,
        "total_tokens": 102,
        "cache_read_input_tokens": 0,
        "cache_write_input_tokens": 0,
        "reasoning_tokens": 0,
    }


def test_deepseek_reasoning_text() -> None:
    run = replay("deepseek-responses-text-1.sse")
    start = run.of("stream.start")[0]
    assert (start.provider, start.response_id) == ("deepseek", "bf5e7791-6c05-44ca-b7e0-56aa217150b1")
    assert run.reasoning == "We need answer capital of France."
    assert len(run.of("reasoning.delta")) == 7  # the three snapshots add nothing
    assert run.text() == "The capital of France is Paris."
    assert run.finish == ("stop", "completed")
    assert (run.usage["output_tokens"], run.usage["reasoning_tokens"]) == (15, 7)


def test_lmstudio_arguments_only_in_done() -> None:
    run = replay("lmstudio-responses-reasoning-toolcall-1.jsonl")
    assert run.of("stream.start")[0].provider is None
    assert run.reasoning.startswith("The user is asking for the weather in San Francisco.")
    assert run.reasoning.endswith("I have all the required information to make the function call.")
    assert run.text() == "I'll get the current weather information for San Francisco for you."
    assert run.of("text.delta")[0].meta["logprobs"] == [
        {"token": "I", "logprob": 0, "bytes": [73], "top_logprobs": []}
    ]
    assert run.calls == [(0, "call_2025306790300011", "weather", '{"location":"San Francisco"}')]
    (delta,) = run.of("tool_call.delta")
    assert delta.arguments_delta == '{"location":"San Francisco"}'
    assert run.finish == ("tool_calls", "completed")
    assert run.usage == {
        "input_tokens": 182,
        "output_tokens": 61,
        "total_tokens": 243,
        "cache_read_input_tokens": 2,
        "cache_write_input_tokens": None,
        "reasoning_tokens": 48,
    }


def test_xai_web_search_citations_once() -> None:
    run = replay("xai-responses-web-search-1.jsonl", provider_events=True)
    start = run.of("stream.start")[0]
    assert (start.provider, start.model) == ("xai", "grok-4-fast-reasoning")
    assert [c.url for c in run.of("citation")] == [
        "https://en.wikipedia.org/wiki/XAI_%28company%29",
        "https://x.ai/company",
        "https://www.ibm.com/think/topics/explainable-ai",
        "https://www.owkin.com/a-z-of-ai-for-healthcare/xai",
        "https://x.ai/",
    ]
    assert {c.kind for c in run.of("citation")} == {"url_citation"}
    # The web_search_call item carries a name and arguments but is executed by xAI.
    assert run.of("tool_call.start") == []
    assert [e.data["item"]["type"] for e in run.of("provider.event")] == [
        "web_search_call",
        "web_search_call",
    ]
    assert run.text().startswith("xAI is an American artificial intelligence company")
    assert run.finish == ("stop", "completed")
    assert run.usage == {
        "input_tokens": 1875,
        "output_tokens": 695,
        "total_tokens": 2570,
        "cache_read_input_tokens": 1578,
        "cache_write_input_tokens": None,
        "reasoning_tokens": 397,
    }


# -- hand-built: quirks no recording shows ----------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("max_output_tokens", "length"), ("content_filter", "content_filter"), ("something_new", "other")],
)
def test_incomplete(reason: str, expected: str) -> None:
    run = feed(
        built(
            text_delta("Once upon"),
            terminal(
                "response.incomplete", "incomplete", incomplete_details={"reason": reason}, usage=usage(5, 16)
            ),
        )
    )
    assert run.failure is None
    assert run.text() == "Once upon"
    assert run.finish == (expected, reason)
    assert (run.usage["input_tokens"], run.usage["output_tokens"], run.usage["total_tokens"]) == (5, 16, 21)


def test_terminal_status_disagreeing_with_event() -> None:
    assert feed(built(terminal(status="in_progress"))).finish == ("stop", "completed")
    assert feed(built(terminal(status="cancelled"))).finish == ("other", "cancelled")
    failed = feed(built(terminal("response.failed", "in_progress", error={"code": 500, "message": "m"})))
    assert isinstance(failed.failure, ProviderError) and failed.failure.code == "500"


def test_incomplete_without_details() -> None:
    run = feed(built(terminal("response.incomplete", "incomplete")))
    assert run.finish == ("other", "incomplete")


def test_response_failed_with_usage() -> None:
    run = feed(
        built(
            text_delta("partial"),
            terminal(
                "response.failed",
                "failed",
                error={"code": "server_error", "message": "boom"},
                usage=usage(3, 1),
            ),
        )
    )
    assert isinstance(run.failure, ProviderError)
    assert run.failure.code == "server_error" and "boom" in run.failure.message
    assert run.failure.body == {"code": "server_error", "message": "boom"}
    assert run.text() == "partial"
    assert run.usage["input_tokens"] == 3
    assert run.finish == ("error", "server_error")
    assert run.events[-1].type == "finish"  # type: ignore[attr-defined]


def test_response_failed_without_error_object() -> None:
    run = feed(built(terminal("response.failed", "failed")))
    assert isinstance(run.failure, ProviderError)
    assert "the response failed" in run.failure.message


def test_flat_error_event() -> None:
    run = feed(
        built(
            {
                "type": "error",
                "code": "ERR_SOMETHING",
                "message": "Something went wrong",
                "param": None,
                "sequence_number": 1,
            }
        )
    )
    assert isinstance(run.failure, ProviderError)
    assert run.failure.code == "ERR_SOMETHING" and run.failure.error_type is None
    assert "Something went wrong" in run.failure.message
    assert run.failure.body["param"] is None


def test_error_named_only_by_sse_event() -> None:
    chunks = built(created())
    chunks.append(
        ProviderChunk("data", "openai.responses", "error", {"message": "overloaded", "code": 529}, 9)
    )
    run = feed(chunks)
    assert isinstance(run.failure, ProviderError)
    assert run.failure.code == "529"


def test_nothing_after_a_failure() -> None:
    normalizer = OpenAIResponsesNormalizer(stream_id="t")
    for chunk in built({"type": "error", "message": "x"}):
        normalizer.feed(chunk)
    assert normalizer.feed(ProviderChunk("data", "openai.responses", None, text_delta("late"), 9)) == []
    assert normalizer.flush() == []


def test_text_only_in_done_snapshots() -> None:
    part = {"type": "output_text", "text": "Hi there", "annotations": []}
    run = feed(
        built(
            item_added({"id": "msg_1", "type": "message", "content": []}),
            {
                "type": "response.output_text.done",
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "text": "Hi there",
                "sequence_number": 4,
            },
            {
                "type": "response.content_part.done",
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "part": part,
            },
            item_done(message("msg_1", part)),
            terminal(output=[message("msg_1", part)]),
        )
    )
    assert [e.text for e in run.of("text.delta")] == ["Hi there"]
    assert run.of("text.delta")[0].meta == {"item_id": "msg_1", "sequence_number": 4}


def test_snapshot_extends_streamed_text() -> None:
    part = {"type": "output_text", "text": "Hello world", "annotations": []}
    run = feed(built(text_delta("Hello"), item_done(message("msg_1", part))))
    assert [e.text for e in run.of("text.delta")] == ["Hello", " world"]


def test_repeated_content_is_kept() -> None:
    run = feed(
        built(
            *(text_delta(c) for c in "strawberry"),
            {
                "type": "response.output_text.done",
                "item_id": "msg_1",
                "content_index": 0,
                "text": "strawberry",
            },
        )
    )
    assert run.text() == "strawberry"
    assert len(run.of("text.delta")) == 10


def test_two_content_parts_are_separate_keys() -> None:
    parts = [
        {"type": "output_text", "text": "ab", "annotations": []},
        {"type": "output_text", "text": "cd", "annotations": []},
    ]
    run = feed(
        built(text_delta("ab", index=0), text_delta("c", index=1), item_done(message("msg_1", *parts)))
    )
    assert run.text() == "abcd"


def test_deltas_without_item_id_use_output_index() -> None:
    part = {"type": "output_text", "text": "Hey you", "annotations": []}
    run = feed(
        built(
            item_added({"id": "msg_9", "type": "message", "content": []}),
            text_delta("Hey", item=None),
            text_delta(" you", item=None),
            item_done(message("msg_9", part)),
        )
    )
    assert run.text() == "Hey you"
    assert run.of("text.delta")[0].meta["item_id"] == "msg_9"


def test_refusal_streamed_and_done() -> None:
    part = {"type": "refusal", "refusal": "I can't help with that."}
    run = feed(
        built(
            {"type": "response.refusal.delta", "item_id": "msg_1", "content_index": 0, "delta": "I can't"},
            {
                "type": "response.refusal.delta",
                "item_id": "msg_1",
                "content_index": 0,
                "delta": " help with that.",
            },
            {
                "type": "response.refusal.done",
                "item_id": "msg_1",
                "content_index": 0,
                "refusal": "I can't help with that.",
            },
            {"type": "response.content_part.done", "item_id": "msg_1", "content_index": 0, "part": part},
            item_done(message("msg_1", part)),
            terminal(usage=usage(1, 2)),
        )
    )
    assert [e.text for e in run.of("refusal.delta")] == ["I can't", " help with that."]
    assert run.text() == ""
    assert run.finish == ("stop", "completed")


def test_refusal_only_in_item_done() -> None:
    run = feed(built(item_done(message("msg_1", {"type": "refusal", "refusal": "No."}))))
    assert run.refusal == "No."


def test_reasoning_text_only_in_done() -> None:
    run = feed(
        built(
            {"type": "response.reasoning_text.done", "item_id": "rs_1", "content_index": 0, "text": "think"},
            item_done(
                {
                    "id": "rs_1",
                    "type": "reasoning",
                    "summary": [],
                    "content": [{"type": "reasoning_text", "text": "think"}],
                }
            ),
        )
    )
    assert [e.text for e in run.of("reasoning.delta")] == ["think"]


def test_reasoning_summary_only_in_item_done_then_encrypted() -> None:
    item = {
        "id": "rs_1",
        "type": "reasoning",
        "encrypted_content": "enc",
        "summary": [{"type": "summary_text", "text": "A"}, {"type": "summary_text", "text": "B"}],
    }
    run = feed(built(item_done(item), terminal(output=[item])))
    assert [
        (e.text, e.meta.get("summary_index"), e.meta.get("encrypted_content"))
        for e in run.of("reasoning.delta")
    ] == [("A", 0, None), ("B", 1, None), ("", None, "enc")]


def test_function_call_without_added_event() -> None:
    run = feed(
        built(
            {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": '{"a":'},
            {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "1}"},
            item_done(
                {
                    "id": "fc_1",
                    "type": "function_call",
                    "call_id": "call_1",
                    "name": "f",
                    "arguments": '{"a":1}',
                }
            ),
            terminal(),
        )
    )
    check_invariants(run)
    assert run.calls == [(0, "call_1", "f", '{"a":1}')]
    assert run.finish == ("tool_calls", "completed")


def test_function_call_header_repeated_and_done_twice() -> None:
    item = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": ""}
    run = feed(
        built(
            item_added(item),
            item_added(item),
            {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "{}"},
            {"type": "response.function_call_arguments.done", "item_id": "fc_1", "arguments": "{}"},
            {"type": "response.function_call_arguments.done", "item_id": "fc_1", "arguments": "{}"},
            item_done({**item, "arguments": "{}"}),
            terminal(output=[{**item, "arguments": "{}"}]),
        )
    )
    check_invariants(run)
    assert len(run.of("tool_call.start")) == 1
    assert run.calls == [(0, "call_1", "f", "{}")]


def test_custom_tool_input_done_without_deltas() -> None:
    item = {"id": "ct_1", "type": "custom_tool_call", "call_id": "call_c", "name": "sql", "input": ""}
    run = feed(
        built(
            item_added(item),
            {"type": "response.custom_tool_call_input.done", "item_id": "ct_1", "input": "SELECT 1"},
        )
    )
    assert run.calls == [(0, "call_c", "sql", "SELECT 1")]


def test_computer_call_is_a_client_call() -> None:
    item = {
        "id": "cu_1",
        "type": "computer_call",
        "call_id": "call_cu",
        "status": "completed",
        "action": {"type": "click", "x": 10, "y": 20, "button": "left"},
        "pending_safety_checks": [],
    }
    run = feed(built(item_added(item), item_done(item), terminal(output=[item])))
    assert run.calls == [(0, "call_cu", "computer", '{"type":"click","x":10,"y":20,"button":"left"}')]
    assert run.finish == ("tool_calls", "completed")


def test_annotations_only_in_snapshots_emitted_once() -> None:
    annotation = {
        "type": "url_citation",
        "url": "https://a.example",
        "title": "A",
        "start_index": 0,
        "end_index": 2,
    }
    part = {"type": "output_text", "text": "ab", "annotations": [annotation]}
    run = feed(
        built(
            text_delta("ab"),
            {"type": "response.content_part.done", "item_id": "msg_1", "content_index": 0, "part": part},
            item_done(message("msg_1", part)),
            terminal(output=[message("msg_1", part)]),
        )
    )
    (citation,) = run.of("citation")
    assert (citation.kind, citation.url, citation.title, citation.start_index, citation.end_index) == (
        "url_citation",
        "https://a.example",
        "A",
        0,
        2,
    )


def test_annotation_added_then_snapshot_not_repeated() -> None:
    annotation = {
        "type": "url_citation",
        "url": "https://a.example",
        "title": "A",
        "start_index": 0,
        "end_index": 2,
    }
    part = {"type": "output_text", "text": "ab", "annotations": [annotation]}
    run = feed(
        built(
            text_delta("ab"),
            {
                "type": "response.output_text.annotation.added",
                "item_id": "msg_1",
                "content_index": 0,
                "annotation_index": 0,
                "annotation": annotation,
            },
            item_done(message("msg_1", part)),
        )
    )
    assert len(run.of("citation")) == 1


def test_same_url_in_two_items_is_two_citations() -> None:
    annotation = {"type": "url_citation", "url": "https://a.example"}
    run = feed(
        built(
            item_done(message("msg_1", {"type": "output_text", "text": "a", "annotations": [annotation]})),
            item_done(message("msg_2", {"type": "output_text", "text": "b", "annotations": [annotation]}), 1),
        )
    )
    assert [c.meta["item_id"] for c in run.of("citation")] == ["msg_1", "msg_2"]


def test_only_final_response_carries_the_output() -> None:
    part = {"type": "output_text", "text": "late text", "annotations": []}
    fc = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}
    run = feed(built(terminal(output=[message("msg_1", part), fc], usage=usage(4, 4))))
    assert run.text() == "late text"
    assert run.calls == [(0, "call_1", "f", "{}")]
    assert run.finish == ("tool_calls", "completed")


def test_several_responses_sum_usage_once_each() -> None:
    run = feed(
        built(
            created(rid="resp_a"),
            terminal(usage=usage(10, 2, cached=4)),
            created(rid="resp_b"),
            terminal(usage=usage(20, 3, reasoning=1)),
        )
    )
    assert run.usage == {
        "input_tokens": 30,
        "output_tokens": 5,
        "total_tokens": 35,
        "cache_read_input_tokens": 4,
        "cache_write_input_tokens": None,
        "reasoning_tokens": 1,
    }
    assert run.of("stream.start")[0].response_id == "resp_a"


def test_usage_reported_twice_in_one_response_is_not_summed() -> None:
    run = feed(
        built(terminal("response.incomplete", "incomplete", usage=usage(10, 2)), terminal(usage=usage(10, 3)))
    )
    assert (run.usage["input_tokens"], run.usage["output_tokens"]) == (10, 3)


def test_moderation_flagged_is_content_filter() -> None:
    moderation = {
        "input": {"type": "moderation_result", "flagged": False},
        "output": {"type": "moderation_result", "flagged": True},
    }
    run = feed(built(text_delta("x"), terminal(moderation=moderation)), provider_events=True)
    assert run.finish == ("content_filter", "completed")
    assert [e.name for e in run.of("provider.event")] == ["response.moderation"]


def test_azure_blocked_filter_is_content_filter() -> None:
    filters = [{"blocked": True, "source_type": "completion", "content_filter_results": {}}]
    run = feed(built(terminal(content_filters=filters)))
    assert run.finish == ("content_filter", "completed")


def test_unknown_and_malformed_payloads() -> None:
    odd: list[Any] = [
        {"type": "keepalive"},
        {"type": "response.something_new", "foo": 1},
        {"no_type": True},
        {"type": 42},
        "not an object",
        ["a", "list"],
        {"type": "response.output_item.added", "item": "nope"},
        {"type": "response.output_item.done"},
        {"type": "response.output_text.delta", "delta": None},
        {"type": "response.output_text.delta", "delta": 5},
        {"type": "response.content_part.done", "part": None},
        {"type": "response.output_text.annotation.added", "annotation": "x"},
        {"type": "response.reasoning_summary_text.delta", "delta": ["x"]},
        {"type": "response.function_call_arguments.done", "item_id": "fc_x", "arguments": None},
        terminal(usage={"input_tokens": "many"}, output="nope", moderation=[1], content_filters={"a": 1}),
    ]
    loud = feed(built(*odd), provider_events=True)
    quiet = feed(built(*odd))
    assert loud.failure is None and quiet.failure is None
    assert [e.name for e in loud.of("provider.event")] == [
        "keepalive",
        "response.something_new",
        "unknown",
        "unknown",
        "unknown",
        "unknown",
        "response.output_item.added",
        "response.output_item.done",
    ]
    assert quiet.of("provider.event") == []
    assert quiet.of("usage") == []
    assert quiet.finish == ("tool_calls", "completed")  # the unannounced fc_x became a call
    assert quiet.calls == [(0, None, "", "")]
    check_invariants(quiet)


def test_malformed_ids_and_indexes_never_break_state() -> None:
    odd: list[Any] = [
        {"type": "response.output_text.delta", "item_id": ["x"], "content_index": {"a": 1}, "delta": "a"},
        {"type": "response.output_text.delta", "item_id": None, "output_index": [1], "delta": "b"},
        {"type": "response.reasoning_summary_text.delta", "item_id": {}, "summary_index": [], "delta": "r"},
        item_added({"id": ["no"], "type": {"t": 1}}, output_index=[2]),  # type: ignore[arg-type]
        item_done({"id": {"no": 1}, "type": ["message"]}),
        {"type": "response.refusal.delta", "item_id": 3, "content_index": "0", "delta": "no"},
        terminal(output=[{"id": [1], "type": "message", "content": [{"type": "output_text", "text": "ab"}]}]),
    ]
    run = feed(built(*odd), provider_events=True)
    assert run.failure is None
    # Both deltas fall back to output_index 0, the item the final output names: nothing repeats.
    assert run.text() == "ab"
    assert run.reasoning == "r" and run.refusal == "no"
    check_invariants(run)


def test_first_payload_without_response() -> None:
    run = feed([ProviderChunk("data", "openai.responses", None, text_delta("hi"), 1)])
    start = run.of("stream.start")[0]
    assert (start.model, start.response_id, start.provider) == (None, None, None)
    assert run.text() == "hi"
    assert run.finish == (None, None)


def test_empty_stream() -> None:
    run = feed([])
    assert [e.type for e in run.events] == ["stream.start", "finish", "stream.end"]  # type: ignore[attr-defined]


def test_include_raw() -> None:
    delta = text_delta("hi")
    run = feed(built(delta), include_raw=True)
    (event,) = run.of("text.delta")
    assert event.meta["raw"] is delta and event.meta["item_id"] == "msg_1"


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-4o", "openai"),
        ("o3-mini", "openai"),
        ("o4-mini-2025", "openai"),
        ("chatgpt-4o-latest", "openai"),
        ("grok-4", "xai"),
        ("deepseek-v4-flash", "deepseek"),
        ("zai-org/glm-4.7", None),
        ("openai.gpt-5.6-luna", None),
        ("omni-moderation", None),
        ("", None),
    ],
)
def test_guess_provider(model: str, provider: str | None) -> None:
    run = feed([ProviderChunk("data", "openai.responses", None, created(model=model), 1)])
    assert run.of("stream.start")[0].provider == provider
