"""AnthropicMessagesNormalizer: every anthropic-messages recording, and hand-built quirks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rxstream._chunk import ProviderChunk, StreamOpen
from rxstream._errors import ProviderError
from rxstream._events import EventBase
from rxstream.operators._wires.anthropic_messages import AnthropicMessagesNormalizer
from rxstream.sources import load_recording
from tests.conftest import RECORDINGS

NAMES = [
    "anthropic-messages-code-execution-1.jsonl",
    "anthropic-messages-compaction-1.sse",
    "anthropic-messages-compatible-input-tokens-1.jsonl",
    "anthropic-messages-mcp-1.jsonl",
    "anthropic-messages-programmatic-multimessage-1.jsonl",
    "anthropic-messages-redacted-thinking-1.sse",
    "anthropic-messages-refusal-1.sse",
    "anthropic-messages-structured-json-1.sse",
    "anthropic-messages-text-1.sse",
    "anthropic-messages-text-2.sse",
    "anthropic-messages-thinking-1.sse",
    "anthropic-messages-thinking-2.jsonl",
    "anthropic-messages-thinking-toolcall-noargs-1.sse",
    "anthropic-messages-toolcall-1.sse",
    "anthropic-messages-toolcall-2.sse",
    "anthropic-messages-toolcall-noargs-2.jsonl",
]
WIRE = "anthropic.messages"


# -- helpers ------------------------------------------------------------------------------------


def run(chunks: list[ProviderChunk], **options: Any) -> tuple[list[Any], Exception | None]:
    normalizer = AnthropicMessagesNormalizer(stream_id="t", **options)
    events: list[EventBase] = []
    for chunk in chunks:
        events.extend(normalizer.feed(chunk))
    events.extend(normalizer.flush())
    return events, normalizer.failure


def replay(name: str, chunk_size: int | None = None, **options: Any) -> tuple[list[Any], Exception | None]:
    return run(load_recording(RECORDINGS / name, chunk_size=chunk_size), **options)


def chunks_of(*payloads: Any) -> list[ProviderChunk]:
    """Hand-built data chunks; the SSE event name is the payload's type, as Anthropic sends it."""
    out: list[ProviderChunk] = []
    for i, payload in enumerate(payloads):
        event = payload.get("type") if isinstance(payload, dict) else None
        out.append(ProviderChunk("data", WIRE, event, payload, i + 1))  # type: ignore[arg-type]
    return out


def of(events: list[Any], kind: str) -> list[Any]:
    return [e for e in events if e.type == kind]


def text(events: list[Any]) -> str:
    return "".join(e.text for e in of(events, "text.delta"))


def reasoning(events: list[Any]) -> str:
    return "".join(e.text for e in of(events, "reasoning.delta"))


def calls(events: list[Any]) -> list[tuple[int, str | None, str, str]]:
    return [(e.call_index, e.call_id, e.name, e.arguments) for e in of(events, "tool_call.done")]


def finish(events: list[Any]) -> tuple[str | None, str | None]:
    (event,) = of(events, "finish")
    return event.reason, event.raw_reason


def usage(events: list[Any]) -> dict[str, int | None]:
    last = of(events, "usage")[-1]
    fields = ("input_tokens", "output_tokens", "total_tokens", "cache_read_input_tokens",
              "cache_write_input_tokens", "reasoning_tokens")
    return {f: getattr(last, f) for f in fields}


def message_start(content: list[Any] | None = None, **usage_values: int) -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_01Test", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": content or [], "stop_reason": None, "stop_sequence": None,
            "usage": usage_values or {"input_tokens": 10, "output_tokens": 1},
        },
    }


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, **fields: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": fields}


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str | None, output_tokens: int = 5) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": output_tokens},
    }


STOP = {"type": "message_stop"}


def check_invariants(events: list[Any]) -> None:
    kinds = [e.type for e in events]
    assert kinds[0] == "stream.start" and kinds.count("stream.start") == 1
    assert kinds[-1] == "stream.end" and kinds.count("stream.end") == 1
    assert kinds.count("finish") == 1  # one output, 0
    assert all(e.output == 0 for e in events if hasattr(e, "output"))
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs)
    started: dict[int, list[str]] = {}
    done: set[int] = set()
    for e in events:
        if e.type == "tool_call.start":
            assert e.call_index not in started
            assert e.call_index == len(started)  # ordinals 0, 1, 2 in order of appearance
            started[e.call_index] = []
        elif e.type == "tool_call.delta":
            assert e.call_index in started and e.call_index not in done
            started[e.call_index].append(e.arguments_delta)
        elif e.type == "tool_call.done":
            assert e.call_index in started and e.call_index not in done
            done.add(e.call_index)
            assert "".join(started[e.call_index]) == e.arguments
    assert done == set(started)
    for e in events:
        if e.type in ("text.delta", "reasoning.delta", "tool_call.delta", "citation"):
            assert "block_index" in e.meta


def expected_from_payloads(name: str) -> dict[str, Any]:
    """What the client blocks of a recording hold, read straight from its payloads.

    Text and thinking are their start text plus their deltas; a client call's arguments are its
    ``input_json_delta`` fragments, or its ``input`` object when nothing was streamed (content
    inside ``message_start`` is such a block, never streamed).
    """
    payloads = [c.data for c in load_recording(RECORDINGS / name)[1:]]
    texts: list[str] = []
    thoughts: list[str] = []
    signatures: list[str] = []
    tools: list[dict[str, Any]] = []
    open_tools: dict[Any, dict[str, Any]] = {}

    def start(index: Any, block: dict[str, Any]) -> None:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            thoughts.append(block.get("thinking") or "")
            if block.get("signature"):
                signatures.append(block["signature"])
        elif kind == "tool_use":
            call = {"id": block["id"], "name": block["name"], "input": block["input"], "parts": []}
            tools.append(call)
            open_tools[index] = call

    for p in payloads:
        kind = p.get("type")
        if kind == "message_start":
            open_tools.clear()
            for i, block in enumerate(p["message"]["content"]):
                start(("prefilled", i), block)
        elif kind == "content_block_start":
            start(p["index"], p["content_block"])
        elif kind == "content_block_delta":
            d = p["delta"]
            if d["type"] == "text_delta":
                texts.append(d["text"])
            elif d["type"] == "thinking_delta":
                thoughts.append(d["thinking"])
            elif d["type"] == "signature_delta":
                signatures.append(d["signature"])
            elif d["type"] == "input_json_delta" and p["index"] in open_tools:
                open_tools[p["index"]]["parts"].append(d["partial_json"])
    arguments = []
    for call in tools:
        streamed = "".join(call["parts"])
        arguments.append((call["id"], call["name"], streamed or json.dumps(call["input"], separators=(",", ":"))))
    return {"text": "".join(texts), "reasoning": "".join(thoughts), "signatures": signatures, "calls": arguments}


# -- every recording ------------------------------------------------------------------------------


def test_the_task_lists_every_anthropic_recording() -> None:
    assert sorted(p.name for p in RECORDINGS.glob("anthropic-messages-*")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_recording_obeys_the_stream_grammar(name: str) -> None:
    events, failure = replay(name)
    assert failure is None
    check_invariants(events)
    assert of(events, "usage"), "every recording reports usage"


@pytest.mark.parametrize("name", NAMES)
def test_recording_content_is_the_concatenation_of_the_client_blocks(name: str) -> None:
    expected = expected_from_payloads(name)
    events, _ = replay(name)
    assert text(events) == expected["text"]
    assert reasoning(events) == expected["reasoning"]
    assert [e.signature for e in of(events, "reasoning.delta") if e.signature] == expected["signatures"]
    assert [(c[1], c[2], c[3]) for c in calls(events)] == expected["calls"]


@pytest.mark.parametrize("name", NAMES)
def test_recording_gives_the_same_events_at_every_chunk_size(name: str) -> None:
    whole, _ = replay(name)
    for size in (1, 7):
        events, failure = replay(name, chunk_size=size)
        assert failure is None
        assert [e.model_dump() for e in events] == [e.model_dump() for e in whole]


@pytest.mark.parametrize("name", NAMES)
def test_provider_events_only_add_provider_events(name: str) -> None:
    plain, _ = replay(name)
    verbose, failure = replay(name, provider_events=True)
    assert failure is None
    assert not of(plain, "provider.event")
    assert [e.model_dump() for e in verbose if e.type != "provider.event"] == [e.model_dump() for e in plain]
    # ping is noise, never passed through
    assert all(e.name != "ping" for e in of(verbose, "provider.event"))


# -- each recording checked by hand ---------------------------------------------------------------


def test_text_1() -> None:
    events, _ = replay("anthropic-messages-text-1.sse")
    start = events[0]
    assert (start.provider, start.model, start.response_id) == (
        "anthropic", "claude-3-opus-latest", "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK")
    assert [e.text for e in of(events, "text.delta")] == ["Hello", " there", "!"]
    assert [e.meta for e in of(events, "text.delta")] == [{"block_index": 0}] * 3
    assert finish(events) == ("stop", "end_turn")
    # message_start says input 11 / output 1, message_delta output 6 (assigned, not added)
    assert [u.output_tokens for u in of(events, "usage")] == [1, 6]
    assert usage(events) == {"input_tokens": 11, "output_tokens": 6, "total_tokens": 17,
                             "cache_read_input_tokens": None, "cache_write_input_tokens": None,
                             "reasoning_tokens": None}


def test_text_2_keeps_non_ascii() -> None:
    events, _ = replay("anthropic-messages-text-2.sse")
    out = text(events)
    assert out.startswith("The weather in San Francisco, CA is currently:\n- **Temperature:** 68°F")
    assert out.endswith("It's a nice sunny day!") and len(out) == 117
    assert finish(events) == ("stop", "end_turn")
    assert usage(events)["input_tokens"] == 770 and usage(events)["output_tokens"] == 38


def test_structured_json_1() -> None:
    events, _ = replay("anthropic-messages-structured-json-1.sse")
    assert text(events) == "[12345,67890]"
    assert finish(events) == ("stop", "end_turn")
    assert usage(events) == {"input_tokens": 135, "output_tokens": 10, "total_tokens": 145,
                             "cache_read_input_tokens": 0, "cache_write_input_tokens": 0,
                             "reasoning_tokens": None}


def test_refusal_1_is_content_filter() -> None:
    events, _ = replay("anthropic-messages-refusal-1.sse")
    assert text(events) == "" and not of(events, "refusal.delta")
    assert finish(events) == ("content_filter", "refusal")
    assert usage(events)["input_tokens"] == 20 and usage(events)["output_tokens"] == 0


def test_toolcall_1() -> None:
    events, _ = replay("anthropic-messages-toolcall-1.sse")
    assert text(events) == "I'll check the current weather in Paris for you."
    assert calls(events) == [(0, "toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", '{"location": "Paris"}')]
    # the leading empty partial_json emits nothing
    assert [e.arguments_delta for e in of(events, "tool_call.delta")] == ['{"locati', 'on": "P', "ar", 'is"}']
    (start,) = of(events, "tool_call.start")
    assert start.meta == {"block_index": 1, "caller": {"type": "direct"}}
    assert finish(events) == ("tool_calls", "tool_use")
    assert usage(events) == {"input_tokens": 377, "output_tokens": 65, "total_tokens": 442,
                             "cache_read_input_tokens": 0, "cache_write_input_tokens": 0,
                             "reasoning_tokens": None}


def test_toolcall_2() -> None:
    events, _ = replay("anthropic-messages-toolcall-2.sse")
    assert text(events) == ""
    assert calls(events) == [(0, "toolu_018acGYLtfR52q9yDbWaEdQZ", "get_weather",
                              '{"location": "San Francisco, CA", "units": "f"}')]
    assert finish(events) == ("tool_calls", "tool_use")
    # message_delta repeats input_tokens 656: same value, still one message
    assert usage(events)["input_tokens"] == 656 and usage(events)["output_tokens"] == 74


def test_toolcall_noargs_2_gets_empty_object_arguments() -> None:
    events, _ = replay("anthropic-messages-toolcall-noargs-2.jsonl")
    assert text(events) == "I'll update the issue list for you."
    assert calls(events) == [(0, "toolu_01QE1WLsSVp5hy5Q3GmGTmjP", "updateIssueList", "{}")]
    assert [e.arguments_delta for e in of(events, "tool_call.delta")] == ["{}"]
    assert finish(events) == ("tool_calls", "tool_use")
    assert usage(events)["input_tokens"] == 565 and usage(events)["output_tokens"] == 48


def test_thinking_toolcall_noargs_1() -> None:
    events, _ = replay("anthropic-messages-thinking-toolcall-noargs-1.sse")
    thought = reasoning(events)
    assert thought.startswith("The user wants me to:\n1. Use the fixed_version tool")
    assert thought.endswith("to see what version it returns.")
    signed = [e for e in of(events, "reasoning.delta") if e.signature]
    assert len(signed) == 1 and signed[0].text == "" and signed[0].signature.startswith("EoQDCm0IDhgC")
    assert calls(events) == [(0, "toolu_01825dXWLSoJwCst1qTsiWdb", "fixed_version", "{}")]
    assert finish(events) == ("tool_calls", "tool_use")
    # output_tokens_details.thinking_tokens is the reasoning share of output_tokens
    assert usage(events) == {"input_tokens": 598, "output_tokens": 92, "total_tokens": 690,
                             "cache_read_input_tokens": 0, "cache_write_input_tokens": 0,
                             "reasoning_tokens": 53}


def test_thinking_1() -> None:
    events, _ = replay("anthropic-messages-thinking-1.sse")
    assert reasoning(events).startswith("This is a straightforward question about pedestria")
    assert len(reasoning(events)) == 202
    assert text(events).startswith("Here are the basic steps for safely crossing the street:\n\n**At")
    assert text(events).endswith("Always prioritize safety over speed when crossing streets.")
    signed = [e for e in of(events, "reasoning.delta") if e.signature]
    assert len(signed) == 1 and signed[0].signature.startswith("EvMCCkYICxgCKkCHP2cS")
    assert signed[0].meta == {"block_index": 0}
    # reasoning comes before text (block 0, then block 1)
    kinds = [e.type for e in events if e.type in ("reasoning.delta", "text.delta")]
    assert kinds == sorted(kinds)
    assert finish(events) == ("stop", "end_turn")
    assert usage(events) == {"input_tokens": 43, "output_tokens": 282, "total_tokens": 325,
                             "cache_read_input_tokens": 0, "cache_write_input_tokens": 0,
                             "reasoning_tokens": None}


def test_thinking_2() -> None:
    events, _ = replay("anthropic-messages-thinking-2.jsonl")
    assert reasoning(events) == "The previous result was 925. Now I need to divide that by 5.\n\n925 ÷ 5 = 185"
    assert text(events) == "925 ÷ 5 = 185"
    # the empty thinking_delta before the signature emits nothing; the signature rides alone
    assert [e.text for e in of(events, "reasoning.delta")][-1:] == [""]
    assert of(events, "reasoning.delta")[-1].signature.startswith("EvQBCkYICxgCKkAxhD4N")
    assert finish(events) == ("stop", "end_turn")
    assert usage(events)["input_tokens"] == 69 and usage(events)["output_tokens"] == 53


def test_redacted_thinking_1() -> None:
    events, _ = replay("anthropic-messages-redacted-thinking-1.sse")
    redacted = of(events, "reasoning.delta")
    assert [e.text for e in redacted] == ["", ""]
    assert [e.meta["block_index"] for e in redacted] == [0, 1]
    assert redacted[0].meta["redacted_data"].startswith("EqkECkYIBxgCKkA8AZ4n")
    assert redacted[1].meta["redacted_data"].endswith("V3yRYdZ1J0GAE=")
    assert text(events).startswith("I notice that you've sent what appears to be some kind of test string")
    assert text(events).endswith("How can I assist you today with a legitimate task or question?")
    assert finish(events) == ("stop", "end_turn")
    assert usage(events)["input_tokens"] == 92 and usage(events)["output_tokens"] == 189


def test_compaction_1_adds_the_compaction_iteration() -> None:
    events, _ = replay("anthropic-messages-compaction-1.sse", provider_events=True)
    assert text(events) == "Hello! 👋"
    names = [e.name for e in of(events, "provider.event")]
    assert names == ["compaction", "compaction_delta"]
    assert of(events, "provider.event")[1].data["delta"]["content"].startswith("The user provided a very long")
    assert finish(events) == ("stop", "end_turn")
    # top level: input 181, output 8, cache read 0; iterations: compaction 100 + 55096 cached in, 83 out
    assert usage(events) == {"input_tokens": 100 + 55096 + 181, "output_tokens": 83 + 8,
                             "total_tokens": 55377 + 91, "cache_read_input_tokens": 55096,
                             "cache_write_input_tokens": 0, "reasoning_tokens": None}
    # message_start alone: 100 + 55096 cache read
    assert of(events, "usage")[0].input_tokens == 55196


def test_compatible_input_tokens_1_later_input_wins() -> None:
    events, _ = replay("anthropic-messages-compatible-input-tokens-1.jsonl")
    assert events[0].provider is None  # msg_ + uuid hex: not Anthropic's id format
    assert events[0].model == "claude-opus-4-5-20251101"
    assert text(events) == "pong"
    assert finish(events) == ("stop", "end_turn")
    assert [u.input_tokens for u in of(events, "usage")] == [43, 61]
    assert usage(events) == {"input_tokens": 61, "output_tokens": 2, "total_tokens": 63,
                             "cache_read_input_tokens": None, "cache_write_input_tokens": None,
                             "reasoning_tokens": None}


def test_mcp_1_server_blocks_are_provider_events() -> None:
    events, _ = replay("anthropic-messages-mcp-1.jsonl", provider_events=True)
    assert not of(events, "tool_call.start")
    assert text(events) == (
        "The echo tool responded back with: **hello world**\n\nIt simply echoed back"
        " the exact message that was sent to it."
    )
    use, result = of(events, "provider.event")
    assert use.name == "mcp_tool_use" and use.data["input"] == {"message": "hello world"}
    assert use.meta == {"block_index": 0}
    assert result.name == "mcp_tool_result" and result.data["content"][0]["text"] == "Tool echo: hello world"
    assert finish(events) == ("stop", "end_turn")
    assert usage(events)["input_tokens"] == 1250 and usage(events)["output_tokens"] == 83


def test_code_execution_1_server_tool_input_is_one_event() -> None:
    events, _ = replay("anthropic-messages-code-execution-1.jsonl", provider_events=True)
    assert not of(events, "tool_call.start")
    assert text(events).startswith("I'll create a Python script to calculate Fibonacci numbers")
    assert text(events).endswith("0, 1, 1, 2, 3, 5, 8, 13, 21, 34, ...")
    server = [e for e in of(events, "provider.event") if e.name == "server_tool_use"]
    assert len(server) == 2  # one per block, not one per input_json_delta fragment
    assert server[0].data["name"] == "text_editor_code_execution"
    assert server[0].data["input"]["path"] == "/tmp/fibonacci.py"
    assert server[0].data["input"]["file_text"].startswith("def fibonacci(n):\n")
    assert server[1].data["input"] == {"command": "python /tmp/fibonacci.py"}
    names = [e.name for e in of(events, "provider.event")]
    assert names == ["server_tool_use", "text_editor_code_execution_tool_result", "server_tool_use",
                     "bash_code_execution_tool_result", "container"]
    assert finish(events) == ("stop", "end_turn")
    assert usage(events) == {"input_tokens": 8050, "output_tokens": 771, "total_tokens": 8821,
                             "cache_read_input_tokens": 0, "cache_write_input_tokens": 0,
                             "reasoning_tokens": None}


def test_programmatic_multimessage_1() -> None:
    events, _ = replay("anthropic-messages-programmatic-multimessage-1.jsonl")
    found = calls(events)
    # rollDie is the client's tool, called from the code-execution container: 1 streamed block in
    # the first message, then 13 messages whose only content arrives inside message_start
    assert len(found) == 14
    assert found[0] == (0, "toolu_019jKkXz4jAdwHweHBw92CVY", "rollDie", '{"player":"player1"}')
    assert found[1] == (1, "toolu_015dGLMbwBKv1ZRQr6KdJzeH", "rollDie", '{"player":"player2"}')
    assert found[13] == (13, "toolu_01QcWWQcQ1pd7nx9xohX4zAr", "rollDie", '{"player":"player2"}')
    assert [c[3] for c in found] == ['{"player":"player1"}', '{"player":"player2"}'] * 7
    caller = {"type": "code_execution_20250825", "tool_id": "srvtoolu_01MzSrFWsmzBdcoQkGWLyRjK"}
    assert all(e.meta["caller"] == caller for e in of(events, "tool_call.start"))
    out = text(events)
    assert out.startswith("I'll help you simulate this game between two players where one is using a loaded die.")
    assert "3 rounds.## Game Results" in out  # two messages' text joined with nothing inserted
    assert out.endswith("with a roll of 3 against Player 1's 2.")
    # the last message ends with end_turn and holds no client call: the caller has nothing to run
    assert finish(events) == ("stop", "end_turn")
    # messages summed: 3369/725, thirteen times 0/0, then 4551/197
    assert usage(events) == {"input_tokens": 3369 + 4551, "output_tokens": 725 + 197, "total_tokens": 8842,
                             "cache_read_input_tokens": 0, "cache_write_input_tokens": 0,
                             "reasoning_tokens": None}


def test_programmatic_multimessage_1_provider_events() -> None:
    events, _ = replay("anthropic-messages-programmatic-multimessage-1.jsonl", provider_events=True)
    names = [e.name for e in of(events, "provider.event")]
    assert names.count("server_tool_use") == 1 and names.count("code_execution_tool_result") == 1
    assert names.count("container") == 14
    (code,) = [e for e in of(events, "provider.event") if e.name == "server_tool_use"]
    assert code.data["input"]["code"].startswith("\nimport asyncio\n\nasync def main():")


# -- hand-built quirks ----------------------------------------------------------------------------


def test_overloaded_error_mid_stream_keeps_the_text() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    events, failure = run(chunks_of(
        message_start(), block_start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text="Hello"), delta(0, type="text_delta", text=" wor"),
        error, delta(0, type="text_delta", text="ld"),
    ))
    assert isinstance(failure, ProviderError)
    assert failure.code == "overloaded_error" and failure.error_type == "overloaded_error"
    assert failure.body == error and "Overloaded" in str(failure)
    assert text(events) == "Hello wor"
    assert finish(events) == ("error", "overloaded_error")
    assert events[-1].type == "finish"  # no stream.end after a failure


def test_error_as_the_first_payload() -> None:
    events, failure = run(chunks_of({"type": "error", "error": {"type": "api_error", "message": "Internal"}}))
    assert isinstance(failure, ProviderError) and failure.code == "api_error"
    assert [e.type for e in events] == ["stream.start", "finish"]
    assert events[0].model is None


def test_error_without_details_still_fails_cleanly() -> None:
    events, failure = run(chunks_of(message_start(), {"type": "error"}))
    assert isinstance(failure, ProviderError) and failure.code is None
    assert finish(events) == ("error", None)


def test_max_tokens_truncated_tool_arguments_stay_as_streamed() -> None:
    events, failure = run(chunks_of(
        message_start(), block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}),
        delta(0, type="input_json_delta", partial_json='{"city": '),
        delta(0, type="input_json_delta", partial_json='"Par'),
        block_stop(0), message_delta("max_tokens", 16), STOP,
    ))
    assert failure is None
    check_invariants(events)
    assert calls(events) == [(0, "toolu_1", "get_weather", '{"city": "Par')]
    assert finish(events) == ("length", "max_tokens")


def test_tool_block_never_stopped_is_closed_at_message_stop() -> None:
    events, _ = run(chunks_of(
        message_start(), block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}),
        delta(0, type="input_json_delta", partial_json='{"a": 1'), message_delta("max_tokens"), STOP,
    ))
    check_invariants(events)
    assert calls(events) == [(0, "toolu_1", "f", '{"a": 1')]
    assert finish(events) == ("length", "max_tokens")


def test_stream_cut_inside_a_tool_block_keeps_what_streamed() -> None:
    events, _ = run(chunks_of(
        message_start(), block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}),
        delta(0, type="input_json_delta", partial_json='{"a"'),
    ))
    check_invariants(events)
    assert calls(events) == [(0, "toolu_1", "f", '{"a"')]
    assert finish(events) == (None, None)  # the provider never said


def test_start_block_input_without_deltas_is_a_snapshot() -> None:
    events, _ = run(chunks_of(
        message_start(),
        block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"q": "café", "n": [1, 2]}}),
        block_stop(0), message_delta("tool_use"), STOP,
    ))
    check_invariants(events)
    assert calls(events) == [(0, "toolu_1", "f", '{"q":"café","n":[1,2]}')]
    assert finish(events) == ("tool_calls", "tool_use")


def test_tool_use_without_any_delta_or_input_has_empty_arguments() -> None:
    events, _ = run(chunks_of(
        message_start(), block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "f"}), block_stop(0),
        message_delta("tool_use"), STOP,
    ))
    check_invariants(events)
    assert calls(events) == [(0, "toolu_1", "f", "")]


def test_re_sent_tool_header_is_announced_once() -> None:
    header = block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}})
    events, _ = run(chunks_of(
        message_start(), header, delta(0, type="input_json_delta", partial_json='{"a":'), header,
        delta(0, type="input_json_delta", partial_json="1}"), block_stop(0), message_delta("tool_use"), STOP,
    ))
    check_invariants(events)
    assert len(of(events, "tool_call.start")) == 1
    assert calls(events) == [(0, "toolu_1", "f", '{"a":1}')]


def test_prefilled_message_start_content_is_emitted_once() -> None:
    content = [
        {"type": "thinking", "thinking": "Let me see.", "signature": "sig-1"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Calling it now.", "citations": None},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
    ]
    start = message_start(content)
    start["message"]["stop_reason"] = "tool_use"
    events, failure = run(chunks_of(start, STOP), provider_events=True)
    assert failure is None
    check_invariants(events)
    assert reasoning(events) == "Let me see."
    assert [e.signature for e in of(events, "reasoning.delta")] == ["sig-1", None]
    assert of(events, "reasoning.delta")[1].meta == {"block_index": 1, "redacted_data": "opaque"}
    assert text(events) == "Calling it now."
    assert calls(events) == [(0, "toolu_1", "f", '{"a":1}')]
    assert [e.name for e in of(events, "provider.event")] == ["server_tool_use", "web_search_tool_result"]
    assert of(events, "provider.event")[0].data["input"] == {"query": "x"}
    assert finish(events) == ("tool_calls", "tool_use")
    assert all(e.seq == 1 for e in events if e.type not in ("stream.start", "finish", "stream.end"))


def test_last_message_with_a_client_call_finishes_with_tool_calls() -> None:
    events, _ = run(chunks_of(
        message_start(), block_start(0, {"type": "text", "text": ""}), delta(0, type="text_delta", text="a"),
        block_stop(0), message_delta("end_turn"), STOP,
        message_start([{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]),
        message_delta("end_turn"), STOP,
    ))
    check_invariants(events)
    assert calls(events) == [(0, "toolu_1", "f", "{}")]
    assert finish(events) == ("tool_calls", "end_turn")


def test_new_message_without_a_stop_reason_resets_the_finish() -> None:
    events, _ = run(chunks_of(
        message_start(), message_delta("end_turn"), STOP,
        message_start(), block_start(0, {"type": "text", "text": "cut"}),
    ))
    assert text(events) == "cut"
    assert finish(events) == (None, None)


def test_usage_of_several_messages_is_summed() -> None:
    events, _ = run(chunks_of(
        message_start(input_tokens=10, cache_read_input_tokens=5, output_tokens=1),
        message_delta("tool_use", 7), STOP,
        message_start(input_tokens=20, cache_creation_input_tokens=3, output_tokens=1),
        message_delta("end_turn", 4), STOP,
    ))
    assert usage(events) == {"input_tokens": 15 + 23, "output_tokens": 11, "total_tokens": 49,
                             "cache_read_input_tokens": 5, "cache_write_input_tokens": 3,
                             "reasoning_tokens": None}


def test_usage_parts_missing_or_null_are_tolerated() -> None:
    start = message_start(input_tokens=10, output_tokens=1)
    start["message"]["usage"]["cache_read_input_tokens"] = None
    late = {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 3, "cache_read_input_tokens": 4}}
    events, _ = run(chunks_of(start, late))
    # a cache read reported late adds to the input reported at the start of the same message
    assert usage(events)["input_tokens"] == 14 and usage(events)["cache_read_input_tokens"] == 4
    no_usage = message_start()
    del no_usage["message"]["usage"]
    events, failure = run(chunks_of(no_usage, {"type": "message_delta", "delta": {}, "usage": "bad"}))
    assert failure is None and not of(events, "usage")


def test_citations_from_start_block_and_deltas() -> None:
    char = {"type": "char_location", "cited_text": "the sky is blue", "document_index": 0,
            "document_title": "Facts", "start_char_index": 4, "end_char_index": 19}
    web = {"type": "web_search_result_location", "url": "https://example.com/a", "title": "A",
           "cited_text": "quote", "encrypted_index": "EpM"}
    page = {"type": "page_location", "cited_text": "p", "document_index": 1, "document_title": "PDF",
            "start_page_number": 2, "end_page_number": 3}
    block = {"type": "content_block_location", "cited_text": "b", "document_index": 2,
             "document_title": None, "start_block_index": 0, "end_block_index": 1}
    search = {"type": "search_result_location", "source": "https://kb.example/x", "title": "KB",
              "cited_text": "s", "search_result_index": 0, "start_block_index": 1, "end_block_index": 2}
    events, failure = run(chunks_of(
        message_start(),
        block_start(0, {"type": "text", "text": "", "citations": [char]}),
        delta(0, type="citations_delta", citation=web),
        delta(0, type="citations_delta", citation=page),
        delta(0, type="citations_delta", citation=block),
        delta(0, type="citations_delta", citation=search),
        delta(0, type="citations_delta", citation="not a citation"),
        delta(0, type="text_delta", text="The sky is blue."),
        block_stop(0), message_delta("end_turn"), STOP,
    ))
    assert failure is None
    found = [(c.kind, c.url, c.title, c.cited_text, c.start_index, c.end_index) for c in of(events, "citation")]
    assert found == [
        ("char_location", None, "Facts", "the sky is blue", 4, 19),
        ("web_search_result_location", "https://example.com/a", "A", "quote", None, None),
        ("page_location", None, "PDF", "p", 2, 3),
        ("content_block_location", None, None, "b", 0, 1),
        ("search_result_location", "https://kb.example/x", "KB", "s", 1, 2),
    ]
    assert of(events, "citation")[0].meta == {"block_index": 0, "document_index": 0}
    assert of(events, "citation")[4].meta == {"block_index": 0, "search_result_index": 0}
    assert text(events) == "The sky is blue."


def test_start_block_text_and_thinking_are_emitted() -> None:
    events, _ = run(chunks_of(
        message_start(),
        block_start(0, {"type": "thinking", "thinking": "Hmm", "signature": ""}),
        delta(0, type="thinking_delta", thinking=", yes"), delta(0, type="signature_delta", signature="S"),
        block_stop(0),
        block_start(1, {"type": "text", "text": "Hi"}), delta(1, type="text_delta", text=" there"), block_stop(1),
        message_delta("end_turn"), STOP,
    ))
    check_invariants(events)
    assert reasoning(events) == "Hmm, yes"
    assert [(e.text, e.signature) for e in of(events, "reasoning.delta")] == [("Hmm", None), (", yes", None), ("", "S")]
    assert text(events) == "Hi there"
    assert [e.meta["block_index"] for e in of(events, "text.delta")] == [1, 1]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("refusal", "content_filter"),
        ("something_new", "other"),
    ],
)
def test_stop_reasons(raw: str, reason: str) -> None:
    events, _ = run(chunks_of(message_start(), message_delta(raw), STOP))
    assert finish(events) == (reason, raw)


@pytest.mark.parametrize(
    ("model", "message_id", "provider"),
    [
        ("claude-sonnet-4-5", "msg_01XFDUDYJgAACzvnptvVoYEL", "anthropic"),
        ("claude-3-opus-latest", "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK", "anthropic"),
        ("claude-opus-4-5", "msg_3196a1cc08de4d76b85b8f5777c0d42b", None),
        ("gpt-4o", "msg_01XFDUDYJgAACzvnptvVoYEL", None),
        ("claude-sonnet-4-5", "chatcmpl-123", None),
        (None, "msg_01XFDUDYJgAACzvnptvVoYEL", None),
    ],
)
def test_guess_provider(model: str | None, message_id: str, provider: str | None) -> None:
    start = message_start()
    start["message"].update(model=model, id=message_id)
    events, _ = run(chunks_of(start))
    assert events[0].provider == provider
    assert events[0].response_id == message_id


def test_a_source_named_provider_wins() -> None:
    opened = ProviderChunk("open", WIRE, None, None, 0, StreamOpen(provider="bedrock"))
    events, _ = run([opened, *chunks_of(message_start())])
    assert events[0].provider == "bedrock"


def test_ping_and_message_stop_emit_nothing() -> None:
    events, _ = run(chunks_of(message_start(), {"type": "ping"}, {"type": "ping"}, STOP), provider_events=True)
    assert [e.type for e in events] == ["stream.start", "usage", "finish", "stream.end"]


def test_sse_event_name_is_the_fallback_kind() -> None:
    chunks = [ProviderChunk("data", WIRE, "message_start", {"message": message_start()["message"]}, 1),
              ProviderChunk("data", WIRE, "content_block_delta",
                            {"index": 0, "delta": {"type": "text_delta", "text": "x"}}, 2)]
    events, _ = run(chunks)
    assert events[0].model == "claude-sonnet-4-5" and text(events) == "x"


@pytest.mark.parametrize("provider_events", [True, False])
def test_unknown_payloads_pass_as_provider_events_or_nothing(provider_events: bool) -> None:
    unknown = [
        {"type": "brand_new_event", "x": 1},
        delta(0, type="brand_new_delta", value=2),
        block_start(1, {"type": "brand_new_block", "x": 3}),
        delta(5, type="input_json_delta", partial_json='{"orphan":'),
    ]
    events, failure = run(chunks_of(message_start(), *unknown, message_delta("end_turn"), STOP),
                          provider_events=provider_events)
    assert failure is None
    passed = [(e.name, e.data) for e in of(events, "provider.event")]
    if provider_events:
        assert passed == [
            ("brand_new_event", unknown[0]),
            ("brand_new_delta", unknown[1]),
            ("brand_new_block", unknown[2]["content_block"]),
            ("input_json_delta", unknown[3]),
        ]
        assert of(events, "provider.event")[1].meta == {"block_index": 0}
    else:
        assert passed == []
    assert finish(events) == ("stop", "end_turn")


@pytest.mark.parametrize("provider_events", [True, False])
def test_malformed_payloads_never_crash(provider_events: bool) -> None:
    weird: list[Any] = [
        None, "text", 42, [1, 2], {}, {"type": None}, {"type": 7},
        {"type": "message_start"}, {"type": "message_start", "message": "nope"},
        {"type": "message_start", "message": {"content": "nope", "usage": {"input_tokens": "ten"}}},
        {"type": "message_start", "message": {"content": [None, 3, {"type": "text", "text": 5}]}},
        {"type": "content_block_start"}, {"type": "content_block_start", "index": 0, "content_block": None},
        {"type": "content_block_start", "content_block": {}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": 5, "name": None}},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "thinking", "thinking": None}},
        {"type": "content_block_start", "index": 3, "content_block": {"type": "text", "citations": [1, {}]}},
        {"type": "content_block_delta"}, {"type": "content_block_delta", "delta": None},
        {"type": "content_block_delta", "delta": {}}, {"type": "content_block_delta", "delta": {"type": None}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": None}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": ["a"]}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": 5}},
        {"type": "content_block_delta", "delta": {"type": "signature_delta", "signature": 5}},
        {"type": "content_block_delta", "delta": {"type": "citations_delta"}},
        {"type": "content_block_stop"}, {"type": "content_block_stop", "index": [0]},
        {"type": "message_delta"}, {"type": "message_delta", "delta": "x", "usage": None},
        {"type": "message_delta", "delta": {"stop_reason": 3}, "usage": {"iterations": "x"}},
        {"type": "message_delta", "usage": {"iterations": [None, {"type": "compaction", "input_tokens": "1"}]}},
        {"type": "error", "error": "not an object", "then": "fails"},
    ]
    events, failure = run(chunks_of(*weird), provider_events=provider_events)
    # every payload is read tolerantly; only the error event ends the stream
    assert isinstance(failure, ProviderError)
    assert events[0].type == "stream.start" and events[-1].type == "finish"
    assert calls(events) == [(0, None, "", "")]


@pytest.mark.parametrize("index", [[], {"a": 1}, "0", 1.5, None])
def test_a_delta_index_of_the_wrong_type_reads_as_absent(index: Any) -> None:
    # Regression (issue 8 fuzzing): the text and thinking hot path keyed a dict with the raw
    # index, so a list or object index crashed the stream (TypeError: unhashable type).
    events, failure = run(
        chunks_of(
            {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 1}}},
            {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": "hi"}},
            {"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": "hm"}},
        )
    )
    assert failure is None
    assert text(events) == "hi" and reasoning(events) == "hm"
    assert of(events, "text.delta")[0].meta == {"block_index": None}
