"""Normalizer for Google Gemini / Vertex AI ``streamGenerateContent`` (SSE and JSON-array bodies).

Wire quirks handled:

- ``output`` is the candidate ``index`` (missing means 0); several candidates interleave.
- ``thought: true`` text parts are reasoning; a ``thoughtSignature`` rides on the event of its
  part (the reasoning signature, or ``meta["thought_signature"]`` on text and tool calls); a
  signature on a part with nothing visible (the trailing empty text part of Gemini 3, a
  code-execution part) becomes an empty ``reasoning.delta`` carrying the signature, so it is
  never lost and never adds text.
- ``functionCall`` arrives whole (``args`` object, serialised compactly) or, on Vertex, streamed:
  ``name`` + ``willContinue``, then ``partialArgs`` (``jsonPath`` with typed values, strings
  continued with ``willContinue``), closed by an empty ``functionCall``. The streamed values are
  turned into a JSON text whose concatenation parses to the final arguments.
- Gemini says ``STOP`` for a turn that ends in function calls (the base makes it ``tool_calls``).
- ``usageMetadata`` is cumulative and re-sent on every chunk (fields may go down or vanish; the
  last value of each field wins); Vertex sends it with only ``trafficType`` until the end.
- ``groundingMetadata`` chunks (re-sent on later chunks) and ``citationMetadata`` become
  citations once each; ``promptFeedback.blockReason`` with no candidate ends output 0 as
  ``content_filter``; an ``error`` object inside the stream is a ProviderError.
"""

from __future__ import annotations

from functools import lru_cache
from math import isfinite
from typing import Any, ClassVar

from rxstream._chunk import Wire
from rxstream._errors import RxStreamError
from rxstream._events import Event, FinishReason
from rxstream._limits import Limits
from rxstream.operators._wires._base import CallState, Normalizer
from rxstream.operators._wires._read import as_dict as _dict
from rxstream.operators._wires._read import as_int as _int
from rxstream.operators._wires._read import as_list as _list
from rxstream.operators._wires._read import as_str as _str
from rxstream.operators._wires._read import dumps_compact as _dumps

__all__ = ["GeminiNormalizer"]

_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    # The model produced no usable answer and the caller has to retry or fix the request: a
    # plain "other" would read as a normal end.
    "MALFORMED_FUNCTION_CALL": "error",
    "MALFORMED_RESPONSE": "error",
    "UNEXPECTED_TOOL_CALL": "error",
    "TOO_MANY_TOOL_CALLS": "error",
    "MISSING_THOUGHT_SIGNATURE": "error",
}

# Parts run by Google itself or carrying media: passed through, never client tool calls.
_PROVIDER_PARTS = ("executableCode", "codeExecutionResult", "inlineData", "fileData", "functionResponse")

_FINISH_DETAIL = ("index", "finishReason", "finishMessage", "safetyRatings")


def _escape(text: str) -> str:
    """The inside of a JSON string literal for ``text`` (pieces escape independently)."""
    return _dumps(text)[1:-1]


@lru_cache(maxsize=512)
def _parse_path(path: str) -> tuple[str | int, ...]:
    """Split an RFC 9535 path such as ``$.a.b[0]['c d']`` into keys and indexes.

    Only the singular-query forms partial arguments use (names, quoted names, indexes); a
    path that does not parse is taken whole as one key, so the JSON text stays valid.
    """
    query = path if path.startswith("$") else "$." + path
    out: list[str | int] = []
    i, n = 1, len(query)
    while i < n:
        c = query[i]
        if c == ".":
            j = i + 1
            while j < n and query[j] not in ".[":
                j += 1
            if j == i + 1:
                return (path,)
            out.append(query[i + 1 : j])
            i = j
        elif c == "[" and i + 1 < n and query[i + 1] in "'\"":
            quote = query[i + 1]
            j = i + 2
            name: list[str] = []
            while j < n and query[j] != quote:
                if query[j] == "\\" and j + 1 < n:
                    j += 1
                name.append(query[j])
                j += 1
            if j + 1 >= n or query[j + 1] != "]":
                return (path,)
            out.append("".join(name))
            i = j + 2
        elif c == "[":
            j = query.find("]", i)
            if j < 0 or not query[i + 1 : j].isdigit():
                return (path,)
            out.append(int(query[i + 1 : j]))
            i = j + 1
        else:
            return (path,)
    return tuple(out)


class _ArgsBuilder:
    """Turns Vertex ``partialArgs`` into a compact JSON text, one fragment per partial arg.

    The text is written as values arrive: containers open along a value's path and close when
    a later path leaves them; a string with ``willContinue`` stays open for the next piece of
    the same path. Array indexes are taken to arrive in order (the element is appended).
    """

    __slots__ = ("call", "closers", "filled", "open_string", "path", "started")

    def __init__(self, call: CallState) -> None:
        self.call = call
        self.started = False
        self.path: list[str | int] = []  # open containers below the root object
        self.closers: list[str] = []  # "}" or "]" for the root and each open container
        self.filled: list[bool] = []  # whether each open container has a member yet
        self.open_string: tuple[str | int, ...] | None = None

    def add(self, arg: dict[str, Any]) -> str:
        """The JSON text one partial argument adds."""
        raw_path = arg.get("jsonPath")
        keys = _parse_path(raw_path) if isinstance(raw_path, str) else ()
        out: list[str] = []
        if not self.started:
            self.started = True
            out.append("{")
            self.closers.append("}")
            self.filled.append(False)
        more = arg.get("willContinue") is True
        if self.open_string is not None:
            if keys == self.open_string:
                piece = arg.get("stringValue")
                if isinstance(piece, str) and piece:
                    out.append(_escape(piece))
                if not more:
                    out.append('"')
                    self.open_string = None
                return "".join(out)
            # The provider moved on without closing the string: close it for it.
            out.append('"')
            self.open_string = None
        value = self._value(arg)
        if not keys or value is None:
            return "".join(out)
        self._move_to(keys, out)
        self._member(keys[-1], out)
        if value == '"':
            out.append('"')
            piece: Any = arg.get("stringValue")
            out.append(_escape(piece))
            if more:
                self.open_string = keys
            else:
                out.append('"')
        else:
            out.append(value)
        return "".join(out)

    def close(self) -> str:
        """The JSON text that ends the arguments."""
        if not self.started:
            self.started = True
            return "{}"
        out = ['"'] if self.open_string is not None else []
        self.open_string = None
        out.extend(reversed(self.closers))
        self.closers.clear()
        self.filled.clear()
        self.path.clear()
        return "".join(out)

    @staticmethod
    def _value(arg: dict[str, Any]) -> str | None:
        """The JSON of a partial arg's value (``'"'`` for a string), ``None`` without one."""
        if isinstance(arg.get("stringValue"), str):
            return '"'
        number = arg.get("numberValue")
        if number is not None:
            if isinstance(number, bool):
                return "true" if number else "false"
            if isinstance(number, int):
                return str(number)
            if isinstance(number, float):
                return repr(number) if isfinite(number) else "null"
            # proto3 JSON writes NaN and Infinity as strings.
            return _dumps(number)
        flag = arg.get("boolValue")
        if isinstance(flag, bool):
            return "true" if flag else "false"
        if "nullValue" in arg:
            return "null"
        return None

    def _move_to(self, keys: tuple[str | int, ...], out: list[str]) -> None:
        """Close the containers the value is not in and open the ones it is in."""
        path = self.path
        depth = len(keys) - 1
        common = 0
        limit = min(len(path), depth)
        while common < limit and path[common] == keys[common]:
            common += 1
        while len(path) > common:
            path.pop()
            self.filled.pop()
            out.append(self.closers.pop())
        for i in range(common, depth):
            self._member(keys[i], out)
            if isinstance(keys[i + 1], int):
                out.append("[")
                self.closers.append("]")
            else:
                out.append("{")
                self.closers.append("}")
            path.append(keys[i])
            self.filled.append(False)

    def _member(self, key: str | int, out: list[str]) -> None:
        if self.filled[-1]:
            out.append(",")
        else:
            self.filled[-1] = True
        # The container decides (a path that mixes ``[0]`` and ``.a`` on one level still
        # gives valid JSON): objects take a key, arrays append.
        if self.closers[-1] == "}":
            out.append(_dumps(key if isinstance(key, str) else str(key)))
            out.append(":")


class GeminiNormalizer(Normalizer):
    """Gemini ``GenerateContentResponse`` chunks (Google AI and Vertex AI) to rxstream events."""

    wire: ClassVar[Wire] = "gemini"

    def __init__(
        self,
        *,
        stream_id: str,
        provider_events: bool = False,
        include_raw: bool = False,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(stream_id=stream_id, provider_events=provider_events, include_raw=include_raw, limits=limits)
        self._last_usage_raw: Any = None
        self._streaming: dict[int, _ArgsBuilder] = {}
        self._cited: dict[int, set[tuple[Any, ...]]] = {}
        self._last_grounding: dict[int, dict[str, Any]] = {}
        self._last_grounding_raw: dict[int, dict[str, Any]] = {}

    def _identity(self, data: Any) -> tuple[str | None, str | None]:
        payload = _dict(data)
        if payload is None:
            return None, None
        return _str(payload.get("modelVersion")), _str(payload.get("responseId"))

    def _guess_provider(self, model: str | None) -> str | None:
        # Only Google speaks this wire; AI Studio and Vertex share it and the payloads do not
        # reliably tell them apart.
        return "google"

    def flush(self) -> list[Event]:
        # Streamed arguments are our own JSON text: close it before the base closes the calls.
        if self._streaming and self.failure is None and not self._ended:
            out: list[Event] = []
            self._out = out
            try:
                self._close_streaming()
            except RxStreamError as exc:  # the closing text crossed the arguments limit
                self.failure = exc
                return out
            return out + super().flush()
        return super().flush()

    # -- payloads -----------------------------------------------------------------------------

    def _handle(self, event: str | None, data: Any) -> None:
        payload = _dict(data)
        if payload is None:
            self._provider_event("payload", data)
            return
        candidates = _list(payload.get("candidates"))
        if candidates:
            for candidate in candidates:
                if candidate.__class__ is dict:
                    self._candidate(candidate)
        else:
            error = payload.get("error")
            if error is not None:
                self._error(error)
                return
            feedback = _dict(payload.get("promptFeedback"))
            if feedback is not None:
                self._prompt_feedback(feedback)
        usage = payload.get("usageMetadata")
        if usage is not None and usage != self._last_usage_raw:
            # Re-sent unchanged on most chunks: compared whole before any work.
            self._last_usage_raw = usage
            usage = _dict(usage)
            if usage is not None:
                self._usage_metadata(usage)

    def _candidate(self, candidate: dict[str, Any]) -> None:
        # The hot path: class checks inline (no helper calls) for the common text chunk.
        index = candidate.get("index", 0)
        if index.__class__ is not int:
            index = 0
        content: Any = candidate.get("content")
        if content.__class__ is dict:
            parts = content.get("parts")
            if parts.__class__ is list:
                for part in parts:
                    if part.__class__ is not dict:
                        continue
                    text = part.get("text")
                    if text.__class__ is str and len(part) == 1:
                        self._text(index, text)
                    else:
                        self._part(index, part)
        size = len(candidate)
        if size > 1 and size - ("index" in candidate) - ("content" in candidate):
            self._candidate_extras(index, candidate)

    def _candidate_extras(self, index: int, candidate: dict[str, Any]) -> None:
        grounding = _dict(candidate.get("groundingMetadata"))
        if grounding:
            self._grounding(index, grounding)
        citations = _dict(candidate.get("citationMetadata"))
        if citations:
            self._citation_metadata(index, citations)
        url_context = candidate.get("urlContextMetadata")
        if url_context:
            self._provider_event("urlContextMetadata", url_context, {"output": index})
        raw_reason = _str(candidate.get("finishReason"))
        if raw_reason:
            builder = self._streaming.pop(index, None)
            if builder is not None:
                self._end_streamed(builder)
            self._finish_reason(index, raw_reason, _FINISH.get(raw_reason, "other"))
            if candidate.get("finishMessage") or candidate.get("safetyRatings"):
                detail = {key: candidate[key] for key in _FINISH_DETAIL if key in candidate}
                self._provider_event("finish", detail, {"output": index})

    def _part(self, index: int, part: dict[str, Any]) -> None:
        signature = _str(part.get("thoughtSignature"))
        text = _str(part.get("text"))
        if text is not None:
            if part.get("thought") is True:
                self._reasoning(index, text, signature)
            elif text:
                self._text(index, text, meta={"thought_signature": signature} if signature else None)
            elif signature is not None:
                # Gemini 3 puts the turn's signature on a trailing empty text part: it belongs
                # to the answer, has no text, and must reach the caller to be sent back.
                self._reasoning(index, "", signature, {"part": "text"})
            return
        call = _dict(part.get("functionCall"))
        if call is not None:
            self._function_call(index, call, signature)
            return
        kind = next((name for name in _PROVIDER_PARTS if name in part), "part")
        self._provider_event(kind, part, {"output": index})
        if signature is not None:
            # Invisible without provider events, yet needed to send the turn back.
            self._reasoning(index, "", signature, {"part": kind})

    # -- function calls -----------------------------------------------------------------------

    def _function_call(self, index: int, call: dict[str, Any], signature: str | None) -> None:
        name = _str(call.get("name"))
        partial = _list(call.get("partialArgs"))
        more = call.get("willContinue") is True
        builder = self._streaming.get(index)
        if builder is not None and name:
            # A new call began without the previous one being closed.
            del self._streaming[index]
            self._end_streamed(builder)
            builder = None
        if builder is None:
            if not name and not partial:
                return  # the closing ``{}`` of a call already closed
            state = self._start_call(index, call, name or "", signature)
            if not more and not partial:
                args = _dict(call.get("args"))
                self._tool_args(state, "{}" if not args else _dumps(args))
                self._tool_done(state)
                return
            builder = self._streaming[index] = _ArgsBuilder(state)
        if partial:
            for arg in partial:
                if arg.__class__ is dict:
                    self._tool_args(builder.call, builder.add(arg))
        if not more:
            del self._streaming[index]
            args = _dict(call.get("args"))
            self._end_streamed(builder, None if args is None else _dumps(args))

    def _start_call(self, index: int, call: dict[str, Any], name: str, signature: str | None) -> CallState:
        return self._tool_start(
            index,
            len(self._output(index).calls),  # every Gemini call part is a new call: key by ordinal
            _str(call.get("id")),
            name,
            {"thought_signature": signature} if signature else None,
        )

    def _end_streamed(self, builder: _ArgsBuilder, snapshot: str | None = None) -> None:
        self._tool_args(builder.call, builder.close())
        if snapshot is not None:
            self._tool_snapshot(builder.call, snapshot)
        self._tool_done(builder.call)

    def _close_streaming(self) -> None:
        builders = list(self._streaming.values())
        self._streaming.clear()
        for builder in builders:
            self._end_streamed(builder)

    # -- sources ------------------------------------------------------------------------------

    def _grounding(self, index: int, grounding: dict[str, Any]) -> None:
        # Often re-sent unchanged on every later chunk: nothing new to cite then.
        if grounding == self._last_grounding_raw.get(index):
            return
        self._last_grounding_raw[index] = grounding
        chunks = _list(grounding.get("groundingChunks"))
        if chunks:
            cited = self._cited.setdefault(index, set())
            spans: dict[int, list[tuple[int | None, int | None, str | None]]] = {}
            for support in _list(grounding.get("groundingSupports")) or ():
                support = _dict(support)
                if support is None:
                    continue
                segment = _dict(support.get("segment"))
                indices = _list(support.get("groundingChunkIndices"))
                if segment is None or indices is None:
                    continue
                span = (
                    _int(segment.get("startIndex")),
                    _int(segment.get("endIndex")),
                    _str(segment.get("text")),
                )
                for i in indices:
                    if isinstance(i, int):
                        spans.setdefault(i, []).append(span)
            for i, chunk in enumerate(chunks):
                chunk = _dict(chunk)
                if chunk:
                    self._grounding_chunk(index, i, chunk, spans.get(i), cited)
        rest = {k: v for k, v in grounding.items() if k not in ("groundingChunks", "groundingSupports")}
        if rest and rest != self._last_grounding.get(index):
            self._last_grounding[index] = rest
            self._provider_event("groundingMetadata", rest, {"output": index})

    def _grounding_chunk(
        self,
        index: int,
        position: int,
        chunk: dict[str, Any],
        spans: list[tuple[int | None, int | None, str | None]] | None,
        cited: set[tuple[Any, ...]],
    ) -> None:
        # One key names the source kind: ``web``, ``retrievedContext``, ``maps``...
        source_kind = next(iter(chunk))
        source = _dict(chunk[source_kind])
        if source is None:
            return
        uri = _str(source.get("uri"))
        title = _str(source.get("title"))
        key = ("grounding", uri, title)
        if key in cited:
            return
        cited.add(key)
        meta: dict[str, Any] = {"chunk_index": position, "source": source_kind}
        start = end = text = None
        if spans:
            # The first passage this source supports; all of them are listed in meta.
            start, end, text = spans[0]
            if len(spans) > 1:
                meta["segments"] = [[s, e] for s, e, _ in spans]
        self._citation(
            index, meta, kind="grounding", url=uri, title=title,
            cited_text=text, start_index=start, end_index=end,
        )

    def _citation_metadata(self, index: int, metadata: dict[str, Any]) -> None:
        # Vertex names the list ``citations``, the Gemini API ``citationSources``.
        entries = _list(metadata.get("citations") or metadata.get("citationSources"))
        if not entries:
            return
        cited = self._cited.setdefault(index, set())
        for entry in entries:
            entry = _dict(entry)
            if entry is None:
                continue
            uri = _str(entry.get("uri"))
            title = _str(entry.get("title"))
            start = _int(entry.get("startIndex"))
            end = _int(entry.get("endIndex"))
            key = ("citation_metadata", uri, title, start, end)
            if key in cited:
                continue  # re-sent on later chunks
            cited.add(key)
            license_ = _str(entry.get("license"))
            self._citation(
                index, {"license": license_} if license_ else None, kind="citation_metadata",
                url=uri, title=title, start_index=start, end_index=end,
            )

    # -- usage, blocks, errors ----------------------------------------------------------------

    def _usage_metadata(self, usage: dict[str, Any]) -> None:
        get = usage.get
        prompt = get("promptTokenCount")
        candidates = get("candidatesTokenCount")
        total = get("totalTokenCount")
        thoughts = get("thoughtsTokenCount")
        tool_prompt = get("toolUsePromptTokenCount")
        cached = get("cachedContentTokenCount")
        # Class checks, not isinstance: a bool is no count.
        if prompt.__class__ is not int:
            prompt = None
        if candidates.__class__ is not int:
            candidates = None
        if total.__class__ is not int:
            total = None
        if thoughts.__class__ is not int:
            thoughts = None
        if tool_prompt.__class__ is not int:
            tool_prompt = None
        if cached.__class__ is not int:
            cached = None
        if prompt is None and tool_prompt is None and candidates is None and thoughts is None and total is None:
            return  # Vertex sends only ``trafficType`` until the last chunk
        self._usage(
            {
                # The tool-use prompt (search results, code output fed back) is input too;
                # cached tokens are already inside promptTokenCount.
                "input_tokens": _add(prompt, tool_prompt),
                "output_tokens": _add(candidates, thoughts),
                "total_tokens": total,
                "cache_read_input_tokens": cached,
                "reasoning_tokens": thoughts,
            },
            usage,
        )

    def _prompt_feedback(self, feedback: dict[str, Any]) -> None:
        self._provider_event("promptFeedback", feedback)
        reason = _str(feedback.get("blockReason"))
        if reason:
            self._finish_reason(0, reason, "content_filter")

    def _error(self, error: Any) -> None:
        self._close_streaming()
        body = _dict(error)
        if body is None:
            message, status, code = str(error), None, None
        else:
            message = _str(body.get("message")) or str(error)
            status = _str(body.get("status"))
            code = _int(body.get("code"))
        self._fail(message, code=status, status=code, body=error)


def _add(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else a + b
