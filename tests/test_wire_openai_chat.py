"""OpenAIChatNormalizer: every openai.chat recording, checked by hand, and each wire quirk."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from rxstream._chunk import ProviderChunk, StreamOpen
from rxstream._errors import ProviderError
from rxstream._events import EventBase
from rxstream.operators._wires.openai_chat import OpenAIChatNormalizer
from rxstream.sources import load_recording

RECORDINGS = Path(__file__).parent / "recordings"


# -- running ---------------------------------------------------------------------------------


def feed_all(chunks: list[ProviderChunk], **options: Any) -> tuple[list[Any], OpenAIChatNormalizer]:
    normalizer = OpenAIChatNormalizer(stream_id="t", **options)
    events: list[Any] = []
    for chunk in chunks:
        events.extend(normalizer.feed(chunk))
    events.extend(normalizer.flush())
    return events, normalizer


def replay(name: str, chunk_size: int | None = None, **options: Any) -> tuple[list[Any], OpenAIChatNormalizer]:
    return feed_all(load_recording(RECORDINGS / name, chunk_size=chunk_size), **options)


def chunks(*payloads: Any, events: tuple[str | None, ...] = ()) -> list[ProviderChunk]:
    """Hand-built data chunks (no open chunk), with optional SSE event names."""
    names = list(events) + [None] * (len(payloads) - len(events))
    return [
        ProviderChunk("data", "openai.chat", name, payload, i + 1)
        for i, (name, payload) in enumerate(zip(names, payloads, strict=True))
    ]


def chunk(*choices: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"id": "c-1", "object": "chat.completion.chunk", "model": "m-1", "choices": list(choices), **top}


def choice(index: int | None = 0, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"delta": delta, "finish_reason": finish}
    if index is not None:
        out["index"] = index
    return out


def of(events: list[Any], kind: str) -> list[Any]:
    return [e for e in events if e.type == kind]


def text(events: list[Any], output: int = 0, kind: str = "text.delta") -> str:
    return "".join(e.text for e in events if e.type == kind and e.output == output)


def calls(events: list[Any]) -> list[tuple[int, int, str | None, str, str]]:
    return [(e.output, e.call_index, e.call_id, e.name, e.arguments) for e in of(events, "tool_call.done")]


def finishes(events: list[Any]) -> dict[int, tuple[str | None, str | None]]:
    return {e.output: (e.reason, e.raw_reason) for e in of(events, "finish")}


def last_usage(events: list[Any]) -> tuple[int | None, ...] | None:
    usages = of(events, "usage")
    if not usages:
        return None
    u = usages[-1]
    return (
        u.input_tokens,
        u.output_tokens,
        u.total_tokens,
        u.cache_read_input_tokens,
        u.cache_write_input_tokens,
        u.reasoning_tokens,
    )


def check_invariants(events: list[Any], failed: bool = False) -> None:
    kinds = [e.type for e in events]
    assert kinds[0] == "stream.start"
    assert kinds.count("stream.start") == 1
    if failed:
        assert "stream.end" not in kinds
    else:
        assert kinds[-1] == "stream.end" and kinds.count("stream.end") == 1
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs), "seq decreased"
    finish_outputs = [e.output for e in events if e.type == "finish"]
    assert len(finish_outputs) == len(set(finish_outputs)), "more than one finish for an output"
    content_outputs = {e.output for e in events if hasattr(e, "output")}
    assert content_outputs <= set(finish_outputs), "an output without its finish"
    state: dict[tuple[int, int], str] = {}
    args: dict[tuple[int, int], list[str]] = defaultdict(list)
    for e in events:
        if not e.type.startswith("tool_call."):
            continue
        key = (e.output, e.call_index)
        if e.type == "tool_call.start":
            assert key not in state, f"second start for {key}"
            state[key] = "open"
        elif e.type == "tool_call.delta":
            assert state.get(key) == "open", f"delta outside an open call {key}"
            args[key].append(e.arguments_delta)
        else:
            assert state.get(key) == "open", f"done for a call not open {key}"
            state[key] = "done"
            assert "".join(args[key]) == e.arguments
    assert all(v == "done" for v in state.values()), "a call never closed"


# -- every recording, checked by hand -------------------------------------------------------


@dataclass
class Expect:
    provider: str | None
    model: str | None
    response_id: str | None
    text: dict[int, str | tuple[str, str, int]] = field(default_factory=dict[int, "str | tuple[str, str, int]"])
    reasoning: str | tuple[str, str, int] = ""
    refusal: str = ""
    calls: list[tuple[int, int, str | None, str, str]] = field(default_factory=list[Any])
    finish: dict[int, tuple[str | None, str | None]] = field(default_factory=lambda: {0: ("stop", "stop")})
    usage: tuple[int | None, ...] | None = None
    error: str | None = None


def _matches(actual: str, expected: str | tuple[str, str, int]) -> bool:
    if isinstance(expected, str):
        return actual == expected
    start, end, length = expected
    return actual.startswith(start) and actual.endswith(end) and len(actual) == length


U = tuple[int | None, ...]

EXPECTED: dict[str, Expect] = {
    "alibaba-chat-reasoning-1.jsonl": Expect(
        "alibaba", "qwen3-max", "chatcmpl-3792851e-8f1b-9182-a1dc-b84603c81344",
        text={0: ('The word **"strawberry"** contains **3**', "**Answer: 3**", 816)},
        reasoning=("We are asked: \"How many 'r's", "So final answer: 3.", 3301),
        usage=(24, 1355, 1379, 0, None, 1084),
    ),
    "azure-chat-model-router-1.jsonl": Expect(
        "azure", "gpt-5-nano-2025-08-07", "chatcmpl-CYPS1lijGoK8gd9lYzY3r9Sx50nbt",
        text={0: "Capital of Denmark."}, usage=(15, 78, 93, 0, None, 64),
    ),
    "azure-chat-text-nousage-1.sse": Expect(
        "azure", "gpt-4-32k", "chatcmpl-ASxkK7GCpziJMmUFp08jG5xb3Rr9K", text={0: "Atlantic Ocean"},
    ),
    "azure-chat-text-usage-1.sse": Expect(
        "azure", "gpt-4-32k", "chatcmpl-ASxkLviKAQt414bmMPfpr2DfNYgKt", text={0: "Atlantic Ocean"},
        usage=(24, 2, 26, None, None, None),
    ),
    "crusoe-chat-text-1.sse": Expect(
        None, "meta-llama/Llama-3.3-70B-Instruct", "chatcmpl-bcfbe349402eb3d2", text={0: "1, 2, 3, 4, 5"},
        usage=(46, 14, 60, 0, None, None),
    ),
    "deepseek-chat-reasoning-1.jsonl": Expect(
        "deepseek", "deepseek-reasoner", "cac7192e-e619-40c6-96b0-ed4276bc03ac",
        text={0: 'The word "strawberry" contains three "r"s.'},
        reasoning=('We need to count the number of the letter "r"', "Thus, the answer is 3.", 606),
        usage=(18, 219, 237, 0, None, 205),
    ),
    "deepseek-chat-reasoning-toolcall-1.jsonl": Expect(
        "deepseek", "deepseek-reasoner", "cca85624-4056-401f-b220-d77601d1f70d",
        reasoning=("The user is asking for the weather in San Francisco.", 'set to "San Francisco".', 191),
        calls=[(0, 0, "call_00_ioIn7yN9p1ZOMNpDLwd4MgAF", "weather", '{"location": "San Francisco"}')],
        finish={0: ("tool_calls", "tool_calls")},
        usage=(339, 83, 422, 320, None, 39),
    ),
    "deepseek-chat-text-length-1.jsonl": Expect(
        "deepseek", "deepseek-chat", "f6117a0b-129d-46fa-b239-78f01c2c5df9",
        text={0: ("## **Holiday Name:** Starlight Remembrance", "15 minutes of silent looking at", 1855)},
        finish={0: ("length", "length")},
        usage=(13, 400, 413, 0, None, None),
    ),
    "groq-chat-reasoning-error-1.sse": Expect(
        "groq", "openai/gpt-oss-120b", "chatcmpl-4f39f3af-3267-4ac1-a0cf-6aa7451877dc",
        reasoning=("We need to call the tool with", 'with name: "test". Let\'s do that.', 412),
        finish={0: ("error", "tool_use_failed")},
        error="Tool call validation failed",
    ),
    "groq-chat-toolcall-1.jsonl": Expect(
        "groq", "llama-3.3-70b-versatile", "chatcmpl-b610d559-f156-4aca-8827-24b4fe6af54f",
        calls=[(0, 0, "tk85n1k4m", "weather", "{}")],
        finish={0: ("tool_calls", "tool_calls")},
        usage=(210, 15, 225, None, None, None),
    ),
    "huggingface-chat-text-1.sse": Expect(
        None, "meta-llama/llama-3.1-8b-instruct", "ebafdc26c3296ed027c5cd6565fa1bce", text={0: "Paris"},
        usage=(40, 2, 42, None, None, None),
    ),
    "mistral-chat-text-1.jsonl": Expect(
        "mistral", "mistral-small-latest", "5319bd0299614c679a0068a4f2c8ffd0",
        text={0: "Hello, world! This is a test response."}, usage=(13, 8, 21, None, None, None),
    ),
    "mistral-chat-toolcall-1.jsonl": Expect(
        "mistral", "mistral-small-latest", "b3999b8c93e04e11bcbff7bcab829667",
        calls=[(0, 0, "gSIMJiOkT", "weather", '{"location": "San Francisco"}')],
        finish={0: ("tool_calls", "tool_calls")},
        usage=(124, 22, 146, None, None, None),
    ),
    "ollama-chat-text-1.sse": Expect("ollama", "qwen2.5:0.5b", "chatcmpl-702", text={0: "Atlantic Sea."}),
    "ollama-chat-toolcall-as-text-1.sse": Expect(
        "ollama", "qwen2.5:0.5b", "chatcmpl-598",
        text={0: ('<tool_call>\n{"name": "get_delivery_date", "arguments": {', '"order_12345"}}\n</tool_call>', 96)},
    ),
    "openai-chat-json-object-1.sse": Expect(
        "openai", "gpt-4o-2024-08-06", "chatcmpl-ABfwCjPMi0ubw56UyMIIeNfJzyogq",
        text={0: ('\n  {\n    "location": "San Francisco, CA",', '"Cloudy"\n      }\n    ]\n  }\n', 608)},
        usage=(19, 177, 196, None, None, 0),
    ),
    "openai-chat-logprobs-1.sse": Expect(
        "openai", "gpt-4o-2024-08-06", "chatcmpl-ABfw5EzoqmfXjnnsXY7Yd8OC6tb3c", text={0: "Foo!"},
        usage=(9, 2, 11, None, None, 0),
    ),
    "openai-chat-multichoice-n2-1.sse": Expect(
        "openai", "gpt-4o-mini-2024-07-18", "chatcmpl-ASYMaNc7XmbGRUNREnmvhyyISBHsv",
        text={
            0: ("I'm unable to provide real-time weather updates. To get", "current weather conditions.", 277),
            1: ("I'm unable to provide real-time weather updates as my", "where to find this information?", 283),
        },
        finish={0: ("stop", "stop"), 1: ("stop", "stop")},
        usage=(26, 104, 130, 0, None, 0),
    ),
    "openai-chat-refusal-1.sse": Expect(
        "openai", "gpt-4o-2024-08-06", "chatcmpl-ABfw4IfQfCCrcuybFm41wJyxjbkz7",
        refusal="I'm sorry, I can't assist with that request.", usage=(79, 11, 90, None, None, 0),
    ),
    "openai-chat-structured-json-schema-1.sse": Expect(
        "openai", "gpt-4o-2024-08-06", "chatcmpl-ABfw1e5abtU8OwGr15vOreYVb2MiF",
        text={0: '{"city":"San Francisco","temperature":61,"units":"f"}'}, usage=(79, 14, 93, None, None, 0),
    ),
    "openai-chat-structured-length-1.sse": Expect(
        "openai", "gpt-4o-2024-08-06", "chatcmpl-ABfw3Oqj8RD0z6aJiiX37oTjV2HFh",
        text={0: '{"'}, finish={0: ("length", "length")}, usage=(79, 1, 80, None, None, 0),
    ),
    "openai-chat-text-1.sse": Expect(
        "openai", "gpt-4o-2024-08-06", "chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL",
        text={0: ("I'm unable to provide real-time weather updates.", "a reliable weather website or a weather app.", 159)},
        usage=(14, 30, 44, None, None, 0),
    ),
    "openai-chat-text-2.sse": Expect(
        "openai", "gpt-4-0613", "chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl", text={0: '"This is a test."'},
        usage=(12, 5, 17, 0, None, 0),
    ),
    "openai-chat-text-nousage-1.sse": Expect(
        "openai", "gpt-4-0613", "chatcmpl-ASYMZbRqo8Bkz53FVzaTj7W7feOn4", text={0: "This is a test."},
    ),
    "openai-chat-text-nousage-2.sse": Expect(
        "openai", "gpt-4o-mini-2024-07-18", "chatcmpl-Aupa7af1SkrkThXa5ZLNKFvzyDiPx", text={0: "South Atlantic Ocean."},
    ),
    "openai-chat-toolcall-1.sse": Expect(
        "openai", "gpt-4o-2024-08-06", "chatcmpl-ABfw8AOXnoa2kzy11vVTSjuQhHCQr",
        calls=[(0, 0, "call_c91SqDXlYFuETYv8mUHzz6pp", "GetWeatherArgs", '{"city":"Edinburgh","country":"UK","units":"c"}')],
        finish={0: ("tool_calls", "tool_calls")}, usage=(76, 24, 100, None, None, 0),
    ),
    "openai-chat-toolcall-2.sse": Expect(
        "openai", "gpt-4o-mini-2024-07-18", "chatcmpl-Dx0XpqH8w09uBXwq1zFGYdETjtnEl",
        calls=[(0, 0, "call_ZR5UUuTt3pf61kjwAJIYdVMj", "get_capital", '{"country":"UK"}')],
        finish={0: ("tool_calls", "tool_calls")}, usage=(53, 15, 68, 0, None, 0),
    ),
    "openai-chat-toolcall-nonstrict-1.sse": Expect(
        "openai", "gpt-4o-2024-08-06", "chatcmpl-ABfwERreu9s99xXsVuOWtIB2UOx62",
        calls=[(0, 0, "call_4XzlGBLtUe9dy3GVNV4jhq7h", "get_weather", '{"city":"New York City"}')],
        finish={0: ("tool_calls", "tool_calls")}, usage=(44, 16, 60, None, None, 0),
    ),
    "openai-chat-toolcall-parallel-1.sse": Expect(
        "openai", "gpt-4o-2024-08-06", "chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63",
        calls=[
            (0, 0, "call_JMW1whyEaYG438VE1OIflxA2", "GetWeatherArgs", '{"city": "Edinburgh", "country": "GB", "units": "c"}'),
            (0, 1, "call_DNYTawLBoN8fj3KN6qU9N1Ou", "get_stock_price", '{"ticker": "AAPL", "exchange": "NASDAQ"}'),
        ],
        finish={0: ("tool_calls", "tool_calls")}, usage=(149, 60, 209, None, None, 0),
    ),
    "openai-chat-toolcall-parallel-2.sse": Expect(
        "openai", "gpt-4o-mini-2024-07-18", "chatcmpl-ASYMdbuQwnGMCODejEnbp2ufs6WgR",
        calls=[
            (0, 0, "call_j7L00WV19wwQCvKOIVZewXZm", "get_current_weather", '{"location": "Seattle, WA"}'),
            (0, 1, "call_sAIOI3dvcd1YMsEqD8DI3l8B", "get_current_weather", '{"location": "San Francisco, CA"}'),
        ],
        finish={0: ("tool_calls", "tool_calls")}, usage=(75, 51, 126, 0, None, 0),
    ),
    "openai-chat-toolcall-strict-1.sse": Expect(
        "openai", "gpt-4o-2024-08-06", "chatcmpl-ABfwCgi41eStOcARjZq97ohCEGBPO",
        calls=[(0, 0, "call_CTf1nWJLqSeRgDqaCG27xZ74", "get_weather", '{"city":"San Francisco","state":"CA"}')],
        finish={0: ("tool_calls", "tool_calls")}, usage=(48, 19, 67, None, None, 0),
    ),
    "openrouter-chat-error-1.sse": Expect(
        "openrouter", "minimax/minimax-m2:free", "gen-1762179802-UN8pkJI4AGZvryk0kFnb",
        reasoning="We need to respond to a greeting. The user",
        # the provider said length twice before the error chunk: the base keeps a non-stop reason
        finish={0: ("length", "length")},
        usage=(43, 10, 53, 0, None, 11),
        error="Token limit reached",
    ),
    "openrouter-chat-reasoning-1.sse": Expect(
        "openrouter", "anthropic/claude-sonnet-4.5", "gen-1765226419-AGrwjunAftQIAgweibL8",
        text={0: "2 + 2 = 4"}, reasoning="This is a simple arithmetic question. 2+2 equals 4.",
        usage=(43, 36, 79, 0, None, 13),
    ),
    "openrouter-chat-toolcall-variant-a-1.sse": Expect(
        "openrouter", "moonshotai/kimi-k2", "gen-1753242299-QZRAt5HJHd1ptY8sdS0s",
        calls=[(0, 0, "0", "llm_version", "{}")], finish={0: (None, None)}, usage=(57, 17, 74, 0, None, 0),
    ),
    "openrouter-chat-toolcall-variant-b-1.sse": Expect(
        "openrouter", "moonshotai/kimi-k2", "gen-1753242299-QZRAt5HJHd1ptY8sdS0s",
        calls=[(0, 0, "0", "llm_version", "{}")], finish={0: (None, None)}, usage=(57, 17, 74, 0, None, 0),
    ),
    "openrouter-chat-toolcall-variant-c-1.sse": Expect(
        "openrouter", "moonshotai/kimi-k2", "gen-1753248108-FGOxpkEzFEwhNKSPpI4a",
        calls=[(0, 0, "llm_version:0", "llm_version", "{}")],
        finish={0: ("tool_calls", "tool_calls")}, usage=(56, 12, 68, 0, None, 0),
    ),
    "perplexity-chat-citations-1.jsonl": Expect(
        "perplexity", "sonar", "58cb9740-f356-49e9-b71e-a02a1376c1b9",
        text={0: "The current population of **[2][3]"}, usage=(10, 336, 346, None, None, None),
    ),
    "xai-chat-reasoning-text-1.jsonl": Expect(
        "xai", "grok-3-mini", "f0f0f217-c24d-1fee-5fe3-28fa1d3c8c94",
        text={0: "Grok"},
        reasoning=('First, the user said: "Say a single word."', "Response: Grok", 1455),
        usage=(12, 342, 354, 11, None, 340),
    ),
}

NAMES = sorted(EXPECTED)


def test_every_openai_chat_recording_is_covered() -> None:
    recorded = set()
    for path in RECORDINGS.iterdir():
        if path.suffix in {".sse", ".jsonl", ".json"} and load_recording(path)[0].wire == "openai.chat":
            recorded.add(path.name)
    assert recorded == set(EXPECTED)
    assert len(EXPECTED) == 38


@pytest.mark.parametrize("name", NAMES)
def test_recording_content(name: str) -> None:
    expect = EXPECTED[name]
    events, normalizer = replay(name)
    if expect.error is None:
        assert normalizer.failure is None
    else:
        assert isinstance(normalizer.failure, ProviderError)
        assert expect.error in str(normalizer.failure)
    check_invariants(events, failed=expect.error is not None)
    start = events[0]
    assert (start.provider, start.wire, start.model, start.response_id) == (
        expect.provider, "openai.chat", expect.model, expect.response_id,
    )
    outputs = sorted({e.output for e in events if e.type == "text.delta"})
    assert outputs == sorted(expect.text)
    for output, expected in expect.text.items():
        assert _matches(text(events, output), expected)
    assert _matches(text(events, 0, "reasoning.delta"), expect.reasoning)
    assert text(events, 0, "refusal.delta") == expect.refusal
    assert calls(events) == expect.calls
    assert finishes(events) == expect.finish
    assert last_usage(events) == expect.usage
    assert all(not u.final and u.source == "provider" for u in of(events, "usage"))


@pytest.mark.parametrize("name", NAMES)
def test_same_events_at_every_chunk_size(name: str) -> None:
    whole, normalizer = replay(name)
    for size in (1, 7):
        events, other = replay(name, chunk_size=size)
        assert [e.model_dump() for e in events] == [e.model_dump() for e in whole]
        assert repr(other.failure) == repr(normalizer.failure)


@pytest.mark.parametrize("name", NAMES)
def test_include_raw_and_provider_events_never_change_content(name: str) -> None:
    plain, _ = replay(name)
    rich, _ = replay(name, include_raw=True, provider_events=True)
    strip = [e.model_dump(exclude={"meta"}) for e in rich if e.type != "provider.event"]
    assert strip == [e.model_dump(exclude={"meta"}) for e in plain]
    # what flush() closes (finish, stream.end, calls never finished) has no payload to attach
    assert all("raw" in e.meta for e in rich if e.type not in ("finish", "stream.end", "tool_call.done"))


# -- recordings: the quirk each one shows -----------------------------------------------------


def test_multichoice_outputs_are_the_choice_indexes_interleaved() -> None:
    events, _ = replay("openai-chat-multichoice-n2-1.sse")
    texts = of(events, "text.delta")
    assert [e.output for e in texts[:4]] == [0, 1, 0, 1]
    assert [e.type for e in events[-3:]] == ["finish", "finish", "stream.end"]


def test_usage_only_chunk_after_the_finish_is_counted_once() -> None:
    events, _ = replay("openai-chat-text-1.sse")
    (usage,) = of(events, "usage")
    assert usage.raw == {"prompt_tokens": 14, "completion_tokens": 30, "total_tokens": 44,
                         "completion_tokens_details": {"reasoning_tokens": 0}}
    # the first delta (role + content "" + refusal null) emits nothing
    assert events[1].type == "text.delta" and events[1].text == "I'm"


def test_usage_null_on_every_chunk_emits_nothing_until_the_report() -> None:
    events, _ = replay("openai-chat-text-2.sse")
    assert [e.type for e in events].count("usage") == 1


def test_groq_usage_duplicated_in_x_groq_is_counted_once() -> None:
    events, _ = replay("groq-chat-toolcall-1.jsonl")
    (usage,) = of(events, "usage")
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (210, 15, 225)


def test_groq_usage_only_in_x_groq_is_read() -> None:
    payload = chunk(choice(finish="stop"), x_groq={"id": "req_1", "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})
    events, _ = feed_all(chunks(payload))
    assert last_usage(events) == (5, 2, 7, None, None, None)


def test_groq_usage_prefers_the_top_level_object() -> None:
    payload = chunk(
        choice(finish="stop"),
        usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        x_groq={"usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}},
    )
    events, _ = feed_all(chunks(payload))
    assert last_usage(events) == (5, 2, 7, None, None, None)


def test_perplexity_cumulative_usage_is_assigned_not_summed() -> None:
    events, _ = replay("perplexity-chat-citations-1.jsonl")
    usages = of(events, "usage")
    # 8 chunks, the last two report the same numbers: 7 changes
    assert [u.output_tokens for u in usages] == [1, 2, 3, 4, 5, 333, 336]
    assert [u.total_tokens for u in usages] == [11, 12, 13, 14, 15, 343, 346]
    assert all(u.input_tokens == 10 for u in usages)


def test_perplexity_citations_once_each_and_done_chunk_adds_nothing() -> None:
    events, _ = replay("perplexity-chat-citations-1.jsonl")
    cites = of(events, "citation")
    assert [c.url for c in cites] == [
        "https://populationstat.com/united-states/san-francisco",
        "https://en.wikipedia.org/wiki/San_Francisco",
        "https://fred.stlouisfed.org/graph/?g=4K5j",
        "https://www.california-demographics.com/cities_by_population",
        "https://worldpopulationreview.com/us-cities/california/san-francisco",
        "https://worldpopulationreview.com/us-counties/california/san-francisco-county",
        "https://www.worldometers.info/world-population/us-population/",
    ]
    assert all(c.kind == "url" and c.output == 0 for c in cites)
    assert all(c.seq == 1 for c in cites)  # all on the first chunk, never repeated
    assert len(of(events, "text.delta")) == 7  # the done chunk's content "" adds nothing


def test_xai_reasoning_outside_completion_tokens_is_added_to_output() -> None:
    events, _ = replay("xai-chat-reasoning-text-1.jsonl")
    (usage,) = of(events, "usage")
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens, usage.reasoning_tokens) == (12, 342, 354, 340)
    assert usage.raw["completion_tokens"] == 2  # raw stays untouched


def test_reasoning_inside_completion_tokens_is_not_added_again() -> None:
    # OpenAI counting: total = prompt + completion, reasoning already inside completion
    usage = {"prompt_tokens": 10, "completion_tokens": 50, "total_tokens": 60,
             "completion_tokens_details": {"reasoning_tokens": 40}}
    events, _ = feed_all(chunks(chunk(choice(finish="stop")), chunk(usage=usage)))
    assert last_usage(events) == (10, 50, 60, None, None, 40)


def test_deepseek_cache_hit_tokens_are_cache_reads() -> None:
    usage = {"prompt_tokens": 339, "completion_tokens": 83, "total_tokens": 422,
             "prompt_cache_hit_tokens": 320, "prompt_cache_miss_tokens": 19}
    events, _ = feed_all(chunks(chunk(choice(finish="stop"), usage=usage)))
    assert last_usage(events) == (339, 83, 422, 320, None, None)


def test_openrouter_cache_write_tokens() -> None:
    usage = {"prompt_tokens": 194, "completion_tokens": 2, "total_tokens": 196,
             "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 100}}
    events, _ = feed_all(chunks(chunk(choice(finish="stop"), usage=usage)))
    assert last_usage(events) == (194, 2, 196, 0, 100, None)


def test_huggingface_null_usage_details_are_tolerated() -> None:
    events, _ = replay("huggingface-chat-text-1.sse")
    assert last_usage(events) == (40, 2, 42, None, None, None)


def test_azure_preamble_waits_for_the_model_and_is_a_provider_event_on_request() -> None:
    plain, _ = replay("azure-chat-text-usage-1.sse")
    assert [e.type for e in plain][:2] == ["stream.start", "text.delta"]
    rich, _ = replay("azure-chat-text-usage-1.sse", provider_events=True)
    assert rich[0].model == "gpt-4-32k"
    (event,) = of(rich, "provider.event")
    assert event.name == "prompt_filter_results"
    assert event.data[0]["content_filter_results"]["hate"] == {"filtered": False, "severity": "safe"}
    assert rich[1] is event  # handled right after stream.start, with its own seq
    assert event.seq == 1


def test_azure_content_filter_results_ride_on_the_text_delta() -> None:
    events, _ = replay("azure-chat-text-nousage-1.sse")
    first = of(events, "text.delta")[0]
    assert first.text == "Atlantic"
    assert first.meta["content_filter_results"]["violence"] == {"filtered": False, "severity": "safe"}


def test_only_preambles_still_start_and_end() -> None:
    preamble = {"choices": [], "id": "", "model": "", "object": "", "prompt_filter_results": [{"prompt_index": 0}]}
    events, normalizer = feed_all(chunks(preamble), provider_events=True)
    assert [e.type for e in events] == ["stream.start", "provider.event", "finish", "stream.end"]
    assert events[0].provider == "azure" and events[0].model is None
    assert normalizer.failure is None


def test_logprobs_in_text_meta() -> None:
    events, _ = replay("openai-chat-logprobs-1.sse")
    foo, bang = of(events, "text.delta")
    assert foo.meta["logprobs"]["content"][0]["token"] == "Foo"
    assert foo.meta["logprobs"]["content"][0]["logprob"] == -0.0025094282
    assert bang.meta["logprobs"]["content"][0]["token"] == "!"


def test_no_logprobs_means_empty_meta() -> None:
    events, _ = replay("openai-chat-text-1.sse")
    assert all(e.meta == {} for e in of(events, "text.delta"))


def test_refusal_deltas() -> None:
    events, _ = replay("openai-chat-refusal-1.sse")
    refusals = of(events, "refusal.delta")
    assert [r.text for r in refusals[:3]] == ["I'm", " sorry", ","]
    assert of(events, "text.delta") == []


def test_deepseek_identical_consecutive_content_is_kept() -> None:
    # the recording has one consecutive identical payload: reasoning "-r" twice (spelling
    # s-t-r-a-w-b-e-r-r-y), real repeated content
    events, _ = replay("deepseek-chat-reasoning-1.jsonl")
    texts = [e.text for e in of(events, "reasoning.delta")]
    assert [a for a, b in pairwise(texts) if a == b] == ["-r"]
    assert "e-r-r-y" in text(events, 0, "reasoning.delta")


def test_groq_reasoning_channel_in_meta_and_error_event_after_reasoning() -> None:
    events, normalizer = replay("groq-chat-reasoning-error-1.sse")
    reasoning = of(events, "reasoning.delta")
    assert reasoning[0].text == "We" and reasoning[0].meta == {"channel": "analysis"}
    failure = normalizer.failure
    assert isinstance(failure, ProviderError)
    assert failure.code == "tool_use_failed"
    assert failure.error_type == "invalid_request_error"
    assert failure.status == 400
    assert failure.body["failed_generation"].startswith('{"name": "get_something_by_name"')
    assert [e.type for e in events[-2:]] == ["reasoning.delta", "finish"]


def test_openrouter_error_chunk_reports_usage_before_failing() -> None:
    events, normalizer = replay("openrouter-chat-error-1.sse")
    assert [e.type for e in events] == [
        "stream.start", "reasoning.delta", "reasoning.delta", "usage", "finish",
    ]
    failure = normalizer.failure
    assert isinstance(failure, ProviderError)
    assert (failure.code, failure.status, failure.error_type) == ("400", 400, None)
    assert failure.body == {"code": 400, "message": "Token limit reached"}


def test_openrouter_reasoning_string_wins_over_reasoning_details() -> None:
    events, _ = replay("openrouter-chat-reasoning-1.sse")
    reasoning = of(events, "reasoning.delta")
    assert [r.text for r in reasoning] == ["This", " is a simple arithmetic question. ", "2+2 equals 4.", ""]
    assert reasoning[-1].signature is not None and reasoning[-1].signature.startswith("Et0BCkgIChACGAIqQA2s")
    assert all(r.signature is None for r in reasoning[:-1])  # the empty signature "" is no signature


def test_openrouter_repeated_tool_header_is_not_concatenated() -> None:
    events, _ = replay("openrouter-chat-toolcall-variant-a-1.sse")
    (start,) = of(events, "tool_call.start")
    assert start.name == "llm_version"
    assert [d.arguments_delta for d in of(events, "tool_call.delta")] == ["{}"]


def test_openrouter_no_finish_reason_anywhere_is_none_and_calls_close_at_flush() -> None:
    events, _ = replay("openrouter-chat-toolcall-variant-b-1.sse")
    done = of(events, "tool_call.done")
    assert len(done) == 1 and done[0].seq == events[-1].seq  # closed by flush
    assert finishes(events) == {0: (None, None)}


def test_tool_call_closes_when_the_finish_reason_arrives() -> None:
    events, _ = replay("openai-chat-toolcall-1.sse")
    (done,) = of(events, "tool_call.done")
    (finish,) = of(events, "finish")
    usage_seq = of(events, "usage")[0].seq
    assert done.seq < usage_seq  # on the finish chunk, before the usage-only chunk
    assert finish.seq == events[-1].seq


def test_mistral_whole_call_finish_and_usage_in_one_chunk() -> None:
    events, _ = replay("mistral-chat-toolcall-1.jsonl")
    assert [e.type for e in events] == [
        "stream.start", "tool_call.start", "tool_call.delta", "tool_call.done", "usage", "finish", "stream.end",
    ]


def test_ollama_tool_call_text_stays_text() -> None:
    events, _ = replay("ollama-chat-toolcall-as-text-1.sse")
    assert of(events, "tool_call.start") == []
    assert text(events).startswith("<tool_call>")


def test_provider_guesses() -> None:
    def provider(model: str, **top: Any) -> str | None:
        events, _ = feed_all(chunks({"id": "x", "model": model, "choices": [], **top}))
        return events[0].provider

    assert provider("gpt-4o") == "openai"
    assert provider("o3-mini") == "openai"
    assert provider("chatgpt-4o-latest") == "openai"
    assert provider("grok-4") == "xai"
    assert provider("deepseek-chat") == "deepseek"
    assert provider("magistral-medium-latest") == "mistral"
    assert provider("ministral-8b") == "mistral"
    assert provider("qwen-plus") == "alibaba"
    assert provider("sonar-pro") == "perplexity"
    assert provider("llama-3.1-8b") is None
    assert provider("openai/gpt-4o") is None
    assert provider("openai/gpt-4o", provider="OpenAI") == "openrouter"
    assert provider("llama-3.3-70b", x_groq={"id": "r"}) == "groq"


def test_open_chunk_provider_wins() -> None:
    opened = ProviderChunk("open", "openai.chat", None, None, 0, StreamOpen(provider="acme"))
    events, _ = feed_all([opened, *chunks(chunk(choice(content="hi")))])
    assert events[0].provider == "acme"


# -- hand-built: quirks no recording shows ---------------------------------------------------


def test_choice_without_index_is_output_zero() -> None:
    events, _ = feed_all(chunks(chunk(choice(None, content="a")), chunk(choice(None, finish="stop"))))
    assert text(events) == "a"
    assert finishes(events) == {0: ("stop", "stop")}


def test_usage_on_a_chunk_that_still_has_choices_and_chunks_after_it() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    events, _ = feed_all(chunks(
        chunk(choice(content="a"), usage=usage),
        chunk(choice(content="b")),
        chunk(choice(finish="stop"), usage=None),
    ))
    assert text(events) == "ab"
    assert len(of(events, "usage")) == 1 and last_usage(events) == (3, 1, 4, None, None, None)


def test_finish_reason_mapping() -> None:
    raw = ["stop", "length", "tool_calls", "function_call", "content_filter", "weird", "max_tokens", "eos"]
    events, _ = feed_all(chunks(chunk(*[choice(i, finish=r) for i, r in enumerate(raw)])))
    assert finishes(events) == {
        0: ("stop", "stop"),
        1: ("length", "length"),
        2: ("tool_calls", "tool_calls"),
        3: ("tool_calls", "function_call"),
        4: ("content_filter", "content_filter"),
        5: ("other", "weird"),
        6: ("length", "max_tokens"),
        7: ("stop", "eos"),
    }


def test_finish_reason_never_given_is_none() -> None:
    events, _ = feed_all(chunks(chunk(choice(content="a")), chunk({"index": 0, "delta": {"content": "b"}})))
    assert finishes(events) == {0: (None, None)}


def test_duplicate_finish_chunks_give_one_finish() -> None:
    events, _ = feed_all(chunks(chunk(choice(content="a")), chunk(choice(finish="length")), chunk(choice(finish="length"))))
    assert [e.type for e in events].count("finish") == 1
    assert finishes(events) == {0: ("length", "length")}


def test_stop_with_client_calls_is_tool_calls() -> None:
    tc = {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{}"}}
    events, _ = feed_all(chunks(chunk(choice(tool_calls=[tc])), chunk(choice(finish="stop"))))
    assert finishes(events) == {0: ("tool_calls", "stop")}


def test_tool_call_without_index_keyed_by_id_or_position() -> None:
    events, _ = feed_all(chunks(
        chunk(choice(tool_calls=[
            {"id": "a", "function": {"name": "f", "arguments": '{"x":1}'}},
            {"id": "b", "function": {"name": "g", "arguments": '{"y":'}},
        ])),
        chunk(choice(tool_calls=[{"id": "b", "function": {"arguments": "2}"}}])),
        chunk(choice(tool_calls=[{"function": {"name": "h", "arguments": "{}"}}])),
        chunk(choice(finish="tool_calls")),
    ))
    check_invariants(events)
    # "a" and "b" are keyed by their ids; "h" (no id, no index, a name) by its position: new call
    assert calls(events) == [(0, 0, "a", "f", '{"x":1}'), (0, 1, "b", "g", '{"y":2}'), (0, 2, None, "h", "{}")]


def test_bare_fragment_continues_the_latest_call() -> None:
    events, _ = feed_all(chunks(
        chunk(choice(tool_calls=[{"id": "a", "function": {"name": "f", "arguments": '{"x"'}}])),
        chunk(choice(tool_calls=[{"function": {"arguments": ":1}"}}])),
        chunk(choice(finish="tool_calls")),
    ))
    assert calls(events) == [(0, 0, "a", "f", '{"x":1}')]


def test_id_repeated_or_empty_on_later_chunks() -> None:
    events, _ = feed_all(chunks(
        chunk(choice(tool_calls=[{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}])),
        chunk(choice(tool_calls=[{"index": 0, "id": "", "function": {"name": "", "arguments": '{"a"'}}])),
        chunk(choice(tool_calls=[{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ":1}"}}])),
        chunk(choice(tool_calls=[{"index": 0, "function": {"arguments": None}}])),
        chunk(choice(finish="tool_calls")),
    ))
    check_invariants(events)
    assert calls(events) == [(0, 0, "call_1", "f", '{"a":1}')]
    assert len(of(events, "tool_call.start")) == 1


def test_first_header_without_id_gets_it_later() -> None:
    events, _ = feed_all(chunks(
        chunk(choice(tool_calls=[{"index": 0, "function": {"name": "f", "arguments": "{"}}])),
        chunk(choice(tool_calls=[{"index": 0, "id": "call_9", "function": {"arguments": "}"}}])),
    ))
    assert calls(events) == [(0, 0, "call_9", "f", "{}")]


def test_new_id_at_a_used_index_starts_a_new_call() -> None:
    events, _ = feed_all(chunks(
        chunk(choice(tool_calls=[{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{}"}}])),
        chunk(choice(tool_calls=[{"index": 0, "id": "call_2", "function": {"name": "g", "arguments": '{"b":2}'}}])),
        chunk(choice(finish="tool_calls")),
    ))
    check_invariants(events)
    assert calls(events) == [(0, 0, "call_1", "f", "{}"), (0, 1, "call_2", "g", '{"b":2}')]
    # the first call closes as soon as its index is reused
    assert [e.type for e in events[1:6]] == [
        "tool_call.start", "tool_call.delta", "tool_call.done", "tool_call.start", "tool_call.delta",
    ]


def test_tool_calls_keyed_per_output() -> None:
    events, _ = feed_all(chunks(
        chunk(choice(0, tool_calls=[{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{}"}}])),
        chunk(choice(1, tool_calls=[{"index": 0, "id": "b", "function": {"name": "g", "arguments": "[]"}}])),
        chunk(choice(0, finish="tool_calls"), choice(1, finish="tool_calls")),
    ))
    assert calls(events) == [(0, 0, "a", "f", "{}"), (1, 0, "b", "g", "[]")]


def test_object_arguments_are_serialised_compactly() -> None:
    events, _ = feed_all(chunks(
        chunk(choice(tool_calls=[{"index": 0, "id": "a", "function": {"name": "f", "arguments": {"city": "Zürich", "n": [1, 2]}}}])),
    ))
    assert calls(events) == [(0, 0, "a", "f", '{"city":"Zürich","n":[1,2]}')]


def test_legacy_function_call() -> None:
    events, _ = feed_all(chunks(
        chunk(choice(function_call={"name": "f", "arguments": ""})),
        chunk(choice(function_call={"arguments": '{"q":'})),
        chunk(choice(function_call={"arguments": "1}"})),
        chunk(choice(finish="function_call")),
    ))
    assert calls(events) == [(0, 0, None, "f", '{"q":1}')]
    assert finishes(events) == {0: ("tool_calls", "function_call")}


def test_reasoning_content_and_reasoning_both_sent_count_once() -> None:
    # some vLLM versions send the same text under both names
    events, _ = feed_all(chunks(chunk(choice(reasoning_content="think", reasoning="think"))))
    assert [e.text for e in of(events, "reasoning.delta")] == ["think"]


def test_reasoning_details_alone_are_used() -> None:
    details = [
        {"type": "reasoning.text", "text": "step one", "format": "x", "index": 0},
        {"type": "reasoning.summary", "summary": " summed", "index": 0},
        {"type": "reasoning.text", "text": "", "signature": "sig-1", "index": 0},
        {"type": "reasoning.encrypted", "data": "enc-blob", "format": "openai-responses-v1", "index": 1},
        {"type": "reasoning.future", "foo": 1},
    ]
    events, _ = feed_all(chunks(chunk(choice(reasoning=None, reasoning_details=details))), provider_events=True)
    reasoning = of(events, "reasoning.delta")
    assert [(r.text, r.signature) for r in reasoning] == [
        ("step one", None), (" summed", None), ("", "sig-1"), ("", None),
    ]
    assert reasoning[-1].meta == {"encrypted": "enc-blob", "format": "openai-responses-v1"}
    (unknown,) = of(events, "provider.event")
    assert unknown.name == "reasoning_details" and unknown.data == {"type": "reasoning.future", "foo": 1}


def test_reasoning_details_signature_kept_when_reasoning_string_came_too() -> None:
    details = [{"type": "reasoning.text", "text": "abc", "signature": "sig"}]
    events, _ = feed_all(chunks(chunk(choice(reasoning="abc", reasoning_details=details))))
    assert [(r.text, r.signature) for r in of(events, "reasoning.delta")] == [("abc", None), ("", "sig")]


def test_magistral_typed_content_parts() -> None:
    events, _ = feed_all(chunks(
        chunk(choice(role="assistant", content=[
            {"type": "thinking", "thinking": [{"type": "text", "text": "Let me "}, {"type": "text", "text": "think."}]},
        ])),
        chunk(choice(content=[{"type": "thinking", "thinking": [{"type": "text", "text": " Done."}]}])),
        chunk(choice(content=[{"type": "text", "text": "The answer"}, {"type": "text", "text": " is 4."}])),
        chunk(choice(content=" Plain string too.", finish="stop")),
    ))
    assert text(events, 0, "reasoning.delta") == "Let me think. Done."
    assert text(events) == "The answer is 4. Plain string too."
    kinds = [e.type for e in events if e.type.endswith(".delta")]
    assert kinds == ["reasoning.delta", "reasoning.delta", "text.delta", "text.delta", "text.delta"]


def test_unknown_content_part_is_a_provider_event() -> None:
    part = {"type": "reference", "reference_ids": [1]}
    events, _ = feed_all(chunks(chunk(choice(content=[part]))), provider_events=True)
    (event,) = of(events, "provider.event")
    assert (event.name, event.data) == ("content.reference", part)


def test_empty_and_role_only_deltas_emit_nothing() -> None:
    events, _ = feed_all(chunks(
        chunk(choice(role="assistant", content="", refusal=None)),
        chunk(choice(role="assistant")),
        chunk(choice(content=None, reasoning_content=None, tool_calls=None)),
        chunk(choice()),
        chunk({"index": 0, "delta": None, "finish_reason": None}),
        chunk({"index": 0}),
    ))
    assert [e.type for e in events] == ["stream.start", "finish", "stream.end"]


def test_url_citation_annotations() -> None:
    annotation = {"type": "url_citation", "url_citation": {"url": "https://a.example", "title": "A", "start_index": 3, "end_index": 9}}
    events, _ = feed_all(chunks(
        chunk(choice(content="Hello [1]", annotations=[annotation])),
        chunk(choice(annotations=[annotation], finish="stop")),  # repeated: once
    ))
    (cite,) = of(events, "citation")
    assert (cite.kind, cite.url, cite.title, cite.start_index, cite.end_index) == ("url", "https://a.example", "A", 3, 9)


def test_search_results_then_citations_each_url_once() -> None:
    results = [{"title": "A", "url": "https://a.example", "date": "2025-01-01"}, {"title": "B", "url": "https://b.example"}]
    citations = ["https://a.example", "https://b.example", "https://c.example"]
    events, _ = feed_all(chunks(
        chunk(choice(content="x"), citations=citations, search_results=results),
        chunk(choice(content="y"), citations=citations, search_results=results),
    ))
    cites = of(events, "citation")
    assert [(c.url, c.title) for c in cites] == [
        ("https://a.example", "A"), ("https://b.example", "B"), ("https://c.example", None),
    ]
    assert cites[0].meta == {"date": "2025-01-01"}


def test_choice_message_snapshot_is_never_re_emitted() -> None:
    events, _ = feed_all(chunks(
        chunk({"index": 0, "delta": {"content": "Hi"}, "message": {"role": "assistant", "content": "Hi"}}),
        chunk({"index": 0, "delta": {"content": ""}, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}, object="chat.completion.done"),
    ))
    assert text(events) == "Hi"


def test_error_chunk_processes_its_content_first() -> None:
    events, normalizer = feed_all(chunks(
        chunk(choice(content="partial")),
        chunk(choice(content=" more"), error={"message": "upstream died", "code": "server_error", "type": "api_error"}),
        chunk(choice(content=" never")),
    ))
    assert text(events) == "partial more"
    assert finishes(events) == {0: ("error", "server_error")}
    assert [e.type for e in events][-1] == "finish"
    failure = normalizer.failure
    assert isinstance(failure, ProviderError)
    assert (failure.code, failure.error_type, failure.status) == ("server_error", "api_error", None)
    assert normalizer.flush() == []


def test_error_event_without_error_wrapper_and_as_a_string() -> None:
    _, normalizer = feed_all(chunks(chunk(choice(content="a")), {"message": "overloaded", "code": 529}, events=(None, "error")))
    failure = normalizer.failure
    assert isinstance(failure, ProviderError) and "overloaded" in str(failure) and failure.status == 529
    _, normalizer = feed_all(chunks(chunk(choice(content="a")), "boom", events=(None, "error")))
    assert isinstance(normalizer.failure, ProviderError) and "boom" in str(normalizer.failure)


@pytest.mark.parametrize("provider_events", [False, True])
def test_unknown_payloads_never_crash(provider_events: bool) -> None:
    odd: list[Any] = [
        {"object": "ping"},
        [1, 2, 3],
        "just a string",
        None,
        {"choices": "not a list"},
        {"choices": [None, 3, {"index": "zero", "delta": "nope"}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [None, {"index": 0, "function": "f"}]}}]},
        {"choices": [{"index": 0, "delta": {"content": [None, 3, {"type": 5}]}}]},
        {"usage": {"prompt_tokens": "many", "completion_tokens": None}},
        {"usage": "none"},
        {"citations": [None, 5, ""]},
        {"choices": [{"index": 0, "delta": {"reasoning_details": [None, {"type": "reasoning.text"}]}}]},
    ]
    events, normalizer = feed_all(chunks(chunk(choice(content="ok")), *odd), provider_events=provider_events)
    assert normalizer.failure is None
    check_invariants(events)
    assert text(events) == "ok"
    names = [e.name for e in of(events, "provider.event")]
    if provider_events:
        assert names[:4] == ["ping", "unknown", "unknown", "unknown"]
        assert "content" in names  # the part with a non-string type
    else:
        assert names == []


def test_unknown_sse_event_name_is_the_provider_event_name() -> None:
    events, _ = feed_all(chunks(chunk(choice(content="a")), {"x": 1}, events=(None, "keepalive")), provider_events=True)
    (event,) = of(events, "provider.event")
    assert (event.name, event.data) == ("keepalive", {"x": 1})


def test_ignored_extras_do_not_emit() -> None:
    payload = chunk(
        {"index": 0, "delta": {"content": "x"}, "logprobs": None, "finish_reason": None, "token_ids": [1], "stop_reason": None},
        system_fingerprint="fp", service_tier="default", prompt_token_ids=None, sla_metrics={"ttft_ms": 1}, obfuscation="abc",
    )
    events, _ = feed_all(chunks(payload), provider_events=True)
    assert [e.type for e in events] == ["stream.start", "text.delta", "finish", "stream.end"]
    assert events[1].meta == {}


def test_events_are_event_models() -> None:
    events, _ = replay("openai-chat-toolcall-parallel-1.sse")
    assert all(isinstance(e, EventBase) for e in events)
