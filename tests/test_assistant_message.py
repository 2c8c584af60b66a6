"""StreamResult.assistant_message(): the assistant turn rebuilt in each wire's request format.

Expected structures are checked against the recordings: ids, signatures, redacted data and
encrypted content are read from the recorded payloads themselves, so a test fails if a single
byte of what must be sent back is lost or taken from the wrong payload.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from rxstream import JsonError, StreamResult, collect
from rxstream._chunk import ProviderChunk, StreamOpen
from rxstream._events import StreamRestart, make_event
from rxstream.operators import normalize
from rxstream.sources import load_recording, replay
from tests.conftest import RECORDINGS
from tests.helpers import accumulate, run_chunks


def _collect(name: str, **options: Any) -> StreamResult:
    """replay -> normalize -> collect, as a user runs it."""
    return asyncio.run(collect(replay(RECORDINGS / name, **options).pipe(normalize())))


def _payloads(name: str) -> list[Any]:
    return [c.data for c in load_recording(RECORDINGS / name)[1:]]


def _chunks(wire: Any, payloads: list[Any]) -> list[ProviderChunk]:
    chunks = [ProviderChunk("open", wire, None, None, 0, StreamOpen())]
    chunks.extend(ProviderChunk("data", wire, None, p, i + 1) for i, p in enumerate(payloads))
    return chunks


def _result(wire: Any, payloads: list[Any]) -> StreamResult:
    events, error = run_chunks(_chunks(wire, payloads))
    assert error is None
    return accumulate(events)


# -- anthropic.messages ---------------------------------------------------------------------------


def test_anthropic_thinking_block_with_its_signature_then_text() -> None:
    payloads = _payloads("anthropic-messages-thinking-1.sse")
    signature = next(
        p["delta"]["signature"]
        for p in payloads
        if p["type"] == "content_block_delta" and p["delta"]["type"] == "signature_delta"
    )
    text = "".join(
        p["delta"]["text"]
        for p in payloads
        if p["type"] == "content_block_delta" and p["delta"]["type"] == "text_delta"
    )
    message = _collect("anthropic-messages-thinking-1.sse").assistant_message()
    assert message == {
        "role": "assistant",
        "content": [
            {
                "type": "thinking",
                "thinking": "This is a straightforward question about pedestrian safety. I should provide clear, "
                "helpful advice about how to safely cross a street. This is basic safety information that could "
                "help prevent accidents.",
                "signature": signature,
            },
            {"type": "text", "text": text},
        ],
    }
    assert signature.startswith("EvMCCkYICxgCKkCHP2cSuEdcJK") and text.startswith("Here are the basic steps")


def test_anthropic_redacted_thinking_blocks_go_back_unchanged_and_in_order() -> None:
    payloads = _payloads("anthropic-messages-redacted-thinking-1.sse")
    redacted = [
        p["content_block"]["data"]
        for p in payloads
        if p["type"] == "content_block_start" and p["content_block"]["type"] == "redacted_thinking"
    ]
    assert len(redacted) == 2 and redacted[0] != redacted[1]
    message = _collect("anthropic-messages-redacted-thinking-1.sse").assistant_message()
    content = message["content"]
    assert content[:2] == [
        {"type": "redacted_thinking", "data": redacted[0]},
        {"type": "redacted_thinking", "data": redacted[1]},
    ]
    assert len(content) == 3 and content[2]["type"] == "text"
    assert content[2]["text"].startswith(
        "I notice that you've sent what appears to be some kind of test string"
    )
    assert content[2]["text"].endswith("How can I assist you today with a legitimate task or question?")


def test_anthropic_tool_use_input_is_the_parsed_object() -> None:
    message = _collect("anthropic-messages-toolcall-1.sse").assistant_message()
    assert message == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "I'll check the current weather in Paris for you."},
            {
                "type": "tool_use",
                "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn",
                "name": "get_weather",
                "input": {"location": "Paris"},
                "caller": {"type": "direct"},
            },
        ],
    }


def test_anthropic_thinking_precedes_the_tool_use_it_led_to() -> None:
    result = _collect("anthropic-messages-thinking-toolcall-noargs-1.sse")
    content = result.assistant_message()["content"]
    assert [b["type"] for b in content] == ["thinking", "tool_use"]
    assert content[0]["thinking"].startswith("The user wants me to:\n1. Use the fixed_version tool")
    assert content[0]["signature"] == result.outputs[0].reasoning_signatures[0]
    assert content[1] == {
        "type": "tool_use",
        "id": "toolu_01825dXWLSoJwCst1qTsiWdb",
        "name": "fixed_version",
        "input": {},
        "caller": {"type": "direct"},
    }


def test_anthropic_invalid_arguments_raise_json_error_naming_the_call() -> None:
    result = _result(
        "anthropic.messages",
        [
            {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "content": []}},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_9", "name": "lookup", "input": {}},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"q": "x'},
            },
        ],
    )
    with pytest.raises(JsonError, match=r"tool call #0 \('lookup', id 'toolu_9'\).*does not parse") as caught:
        result.assistant_message()
    assert isinstance(caught.value.__cause__, ValueError)


def test_arguments_that_are_not_an_object_raise_json_error() -> None:
    result = _result(
        "anthropic.messages",
        [
            {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "content": []}},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_9", "name": "lookup", "input": {}},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": "[1, 2]"},
            },
            {"type": "content_block_stop", "index": 0},
        ],
    )
    with pytest.raises(JsonError, match="expected its arguments to be a JSON object, got list"):
        result.assistant_message()


# -- openai.chat ----------------------------------------------------------------------------------


def test_openai_chat_parallel_tool_calls() -> None:
    message = _collect("openai-chat-toolcall-parallel-1.sse").assistant_message()
    assert message == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_JMW1whyEaYG438VE1OIflxA2",
                "type": "function",
                "function": {
                    "name": "GetWeatherArgs",
                    "arguments": '{"city": "Edinburgh", "country": "GB", "units": "c"}',
                },
            },
            {
                "id": "call_DNYTawLBoN8fj3KN6qU9N1Ou",
                "type": "function",
                "function": {
                    "name": "get_stock_price",
                    "arguments": '{"ticker": "AAPL", "exchange": "NASDAQ"}',
                },
            },
        ],
    }


def test_openai_chat_text_only_has_no_tool_calls_key() -> None:
    assert _collect("openai-chat-text-nousage-1.sse").assistant_message() == {
        "role": "assistant",
        "content": "This is a test.",
    }


def test_openai_chat_refusal() -> None:
    assert _collect("openai-chat-refusal-1.sse").assistant_message() == {
        "role": "assistant",
        "content": None,
        "refusal": "I'm sorry, I can't assist with that request.",
    }


def test_openai_chat_each_choice_is_its_own_message() -> None:
    result = _collect("openai-chat-multichoice-n2-1.sse")
    second = result.assistant_message(1)
    assert second == {"role": "assistant", "content": result.output(1).text}
    assert second["content"].startswith("I'm unable to provide real-time weather updates as my capabilities")
    assert result.assistant_message(0)["content"] != second["content"]
    with pytest.raises(KeyError, match="no output 2"):
        result.assistant_message(2)


def test_openai_chat_reasoning_content_only_when_asked() -> None:
    result = _collect("deepseek-chat-reasoning-toolcall-1.jsonl")
    plain = result.assistant_message()
    assert "reasoning_content" not in plain
    assert plain["tool_calls"] == [
        {
            "id": "call_00_ioIn7yN9p1ZOMNpDLwd4MgAF",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"location": "San Francisco"}'},
        }
    ]
    with_reasoning = result.assistant_message(include_reasoning=True)
    assert with_reasoning == {
        **plain,
        "reasoning_content": "The user is asking for the weather in San Francisco. I need to use the weather tool to "
        'get this information. Let me invoke the weather tool with the location parameter set to "San Francisco".',
    }


# -- openai.responses -----------------------------------------------------------------------------


def _item_done(payloads: list[Any], kind: str) -> dict[str, Any]:
    return next(
        p["item"]
        for p in payloads
        if p.get("type") == "response.output_item.done" and p["item"]["type"] == kind
    )


@pytest.mark.parametrize(
    "name", ["openai-responses-reasoning-functioncall-1.sse", "openai-responses-reasoning-functioncall-2.sse"]
)
def test_responses_encrypted_reasoning_then_the_call_with_item_ids(name: str) -> None:
    payloads = _payloads(name)
    reasoning = _item_done(payloads, "reasoning")
    call = _item_done(payloads, "function_call")
    added = next(p["item"] for p in payloads if p.get("type") == "response.output_item.added")
    # The API's docs: the encrypted content of output_item.added may be incomplete; done's is final.
    assert added["encrypted_content"] != reasoning["encrypted_content"]
    items = _collect(name).assistant_message()
    assert items == [
        {
            "type": "reasoning",
            "id": reasoning["id"],
            "summary": [],
            "encrypted_content": reasoning["encrypted_content"],
        },
        {
            "type": "function_call",
            "call_id": call["call_id"],
            "name": call["name"],
            "arguments": call["arguments"],
            "id": call["id"],
        },
    ]


def test_responses_without_reasoning_sends_no_item_ids() -> None:
    assert _collect("openai-responses-functioncall-1.sse").assistant_message() == [
        {
            "type": "function_call",
            "call_id": "call_kL0PCQV7M2WMoVX8V8OtYSAL",
            "name": "get_capital",
            "arguments": '{"country":"France"}',
        }
    ]
    assert _collect("openai-responses-text-1.sse").assistant_message() == [
        {"type": "message", "role": "assistant", "content": "The capital of France is Paris."}
    ]


def test_responses_reasoning_summary_parts_and_the_message_with_its_id() -> None:
    name = "openai-responses-reasoning-summary-1.sse"
    payloads = _payloads(name)
    reasoning = _item_done(payloads, "reasoning")
    message = _item_done(payloads, "message")
    items = _collect(name).assistant_message()
    assert len(reasoning["summary"]) > 1
    expected_reasoning: dict[str, Any] = {
        "type": "reasoning",
        "id": reasoning["id"],
        "summary": [{"type": "summary_text", "text": s["text"]} for s in reasoning["summary"]],
    }
    if reasoning.get("encrypted_content"):
        expected_reasoning["encrypted_content"] = reasoning["encrypted_content"]
    assert items == [
        expected_reasoning,
        {
            "type": "message",
            "id": message["id"],
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": message["content"][0]["text"], "annotations": []}],
        },
    ]


def _responses_summary_only() -> list[dict[str, Any]]:
    """A reasoning item with a summary and no encrypted content, then a message."""
    return [
        {"type": "response.created", "response": {"id": "resp_1", "model": "gpt-5", "output": []}},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"id": "rs_1", "type": "reasoning", "summary": []},
        },
        {
            "type": "response.reasoning_summary_text.delta",
            "item_id": "rs_1",
            "output_index": 0,
            "summary_index": 0,
            "delta": "Plan.",
        },
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {
                "id": "rs_1",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "Plan."}],
            },
        },
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {"id": "msg_1", "type": "message", "content": []},
        },
        {
            "type": "response.output_text.delta",
            "item_id": "msg_1",
            "output_index": 1,
            "content_index": 0,
            "delta": "Hi",
        },
        {"type": "response.completed", "response": {"id": "resp_1", "status": "completed", "output": []}},
    ]


def test_responses_unresolvable_reasoning_is_left_out_with_the_ids() -> None:
    # store: false and no encrypted content: the API could not find the reasoning item, and the
    # message's id would then name a reasoning item that is missing.
    chunks = _chunks("openai.responses", _responses_summary_only())
    assert chunks[0].open is not None
    chunks[0].open.request = {"model": "gpt-5", "store": False}
    events, error = run_chunks(chunks)
    assert error is None
    assert accumulate(events).assistant_message() == [
        {"type": "message", "role": "assistant", "content": "Hi"}
    ]
    # Stored (the default), the same turn goes back whole, ids and all.
    assert _result("openai.responses", _responses_summary_only()).assistant_message() == [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Plan."}]},
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Hi", "annotations": []}],
        },
    ]


def test_responses_encrypted_reasoning_is_kept_when_not_stored() -> None:
    name = "openai-responses-reasoning-functioncall-2.sse"
    items = _collect(name, request={"model": "gpt-5", "store": False}).assistant_message()
    assert [i["type"] for i in items] == ["reasoning", "function_call"]
    assert items[0]["encrypted_content"] == _item_done(_payloads(name), "reasoning")["encrypted_content"]


def test_responses_reasoning_text_content_and_ids_of_a_compatible_server() -> None:
    items = _collect("lmstudio-responses-reasoning-toolcall-1.jsonl").assistant_message()
    assert items == [
        {
            "type": "reasoning",
            "id": "rs_3yo6zy4vu4hq6iegqwhn1",
            "summary": [],
            "content": [
                {
                    "type": "reasoning_text",
                    "text": "The user is asking for the weather in San Francisco. I have a weather function "
                    'available that takes a location parameter. The user has provided "San Francisco" as the '
                    "location, so I have all the required information to make the function call.",
                }
            ],
        },
        {
            "type": "message",
            "id": "msg_y4g4x99xneifrr153t0y4g",
            "role": "assistant",
            "status": "completed",
            "content": [
                {
                    "type": "output_text",
                    "text": "I'll get the current weather information for San Francisco for you.",
                    "annotations": [],
                }
            ],
        },
        {
            "type": "function_call",
            "call_id": "call_2025306790300011",
            "name": "weather",
            "arguments": '{"location":"San Francisco"}',
            "id": "fc_z9synwu0kvc33k6e9u3dq4",
        },
    ]


def test_responses_custom_tool_call_goes_back_as_one() -> None:
    assert _collect("openai-responses-custom-tool-1.jsonl").assistant_message() == [
        {
            "type": "custom_tool_call",
            "call_id": "call_custom_sql_001",
            "name": "write_sql",
            "input": "SELECT * FROM users WHERE age > 25",
        }
    ]


# -- gemini ---------------------------------------------------------------------------------------


def _signatures(name: str) -> list[str]:
    return [
        part["thoughtSignature"]
        for payload in _payloads(name)
        for candidate in payload.get("candidates", [])
        for part in candidate.get("content", {}).get("parts", [])
        if "thoughtSignature" in part
    ]


def test_gemini_function_call_keeps_its_thought_signature() -> None:
    (signature,) = _signatures("gemini-generatecontent-toolcall-1.sse")
    assert _collect("gemini-generatecontent-toolcall-1.sse").assistant_message() == {
        "role": "model",
        "parts": [{"functionCall": {"name": "get_country", "args": {}}, "thoughtSignature": signature}],
    }


def test_gemini_call_id_goes_back_when_the_provider_sent_one() -> None:
    (signature,) = _signatures("gemini-generatecontent-toolcall-2.sse")
    assert _collect("gemini-generatecontent-toolcall-2.sse").assistant_message()["parts"] == [
        {
            "functionCall": {"name": "get_user_country", "args": {}, "id": "96c1su3s"},
            "thoughtSignature": signature,
        }
    ]


def test_gemini_streamed_partial_args_parallel_calls_signature_on_the_first_only() -> None:
    (signature,) = _signatures("gemini-generatecontent-partial-args-1.jsonl")
    assert _collect("gemini-generatecontent-partial-args-1.jsonl").assistant_message() == {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": "getWeather", "args": {"location": "Boston"}},
                "thoughtSignature": signature,
            },
            {"functionCall": {"name": "getWeather", "args": {"location": "San Francisco"}}},
        ],
    }


def test_gemini_trailing_signature_stays_on_its_empty_text_part_and_thoughts_only_when_asked() -> None:
    name = "gemini-generatecontent-jsonarray-text-1.json"
    (signature,) = _signatures(name)
    result = _collect(name)
    assert result.assistant_message() == {
        "role": "model",
        "parts": [{"text": "Scoop"}, {"text": "", "thoughtSignature": signature}],
    }
    thought = _payloads(name)[0]["candidates"][0]["content"]["parts"][0]
    assert thought["thought"] is True
    assert result.assistant_message(include_reasoning=True)["parts"] == [
        {"text": thought["text"], "thought": True},
        {"text": "Scoop"},
        {"text": "", "thoughtSignature": signature},
    ]


def _gemini_chunk(*parts: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": "gemini-x", "responseId": "r1"}


def test_gemini_signed_thought_and_text_signatures_stay_on_their_parts() -> None:
    result = _result(
        "gemini",
        [
            _gemini_chunk({"text": "Think ", "thought": True}),
            _gemini_chunk({"text": "more.", "thought": True, "thoughtSignature": "T1"}),
            _gemini_chunk({"text": "Hel", "thoughtSignature": "S1"}),
            _gemini_chunk({"text": "lo"}),
            _gemini_chunk({"text": " again", "thoughtSignature": "S2"}),
            _gemini_chunk({"text": "!"}, finish="STOP"),
        ],
    )
    assert result.text == "Hello again!"
    assert result.assistant_message()["parts"] == [
        {"text": "Think more.", "thought": True, "thoughtSignature": "T1"},
        {"text": "Hello", "thoughtSignature": "S1"},
        {"text": " again!", "thoughtSignature": "S2"},
    ]


# -- shared -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "anthropic-messages-thinking-toolcall-noargs-1.sse",
        "openai-responses-reasoning-summary-1.sse",
        "gemini-generatecontent-partial-args-1.jsonl",
        "openai-chat-toolcall-parallel-1.sse",
    ],
)
def test_the_turn_is_the_same_at_every_chunk_size(name: str) -> None:
    whole = _collect(name).assistant_message()
    assert _collect(name, chunk_size=1).assistant_message() == whole
    assert _collect(name, chunk_size=7).assistant_message() == whole


def test_content_parts_keep_stream_order() -> None:
    result = _collect("anthropic-messages-thinking-1.sse")
    parts = result.outputs[0].parts
    assert [p.kind for p in parts] == ["reasoning", "text"]
    assert (
        parts[0].meta["block_index"] == 0 and parts[0].signature == result.outputs[0].reasoning_signatures[0]
    )
    assert parts[1].text == result.text


def test_a_restart_discards_the_parts_before_it() -> None:
    events, error = run_chunks(load_recording(RECORDINGS / "anthropic-messages-toolcall-1.sse"))
    assert error is None
    start = events[0]
    restart = make_event(StreamRestart, stream_id="t", seq=99, at=99, attempt=2, reason="retry")
    text_only, _ = run_chunks(load_recording(RECORDINGS / "anthropic-messages-text-1.sse"))
    result = accumulate([start, *events[1:-1], restart, *text_only[1:]])
    assert result.assistant_message() == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Hello there!"}],
    }


def test_a_result_without_a_wire_cannot_be_rebuilt() -> None:
    with pytest.raises(ValueError, match="expected a result of a known wire"):
        StreamResult().assistant_message()


def test_every_recording_rebuilds_or_names_the_bad_call() -> None:
    for path in sorted(Path(RECORDINGS).iterdir()):
        if path.suffix not in {".sse", ".jsonl", ".json"}:
            continue
        events, error = run_chunks(load_recording(path))
        result = accumulate(events, error)
        for out in result.outputs:
            turn = result.assistant_message(out.index)
            assert isinstance(turn, list if result.wire == "openai.responses" else dict), path.name
