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

import json
from functools import lru_cache
from math import isfinite
from typing import Any, ClassVar

from rxstream._chunk import Wire
from rxstream._events import Event, FinishReason
from rxstream.operators._wires._base import CallState, Normalizer

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

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _escape(text: str) -> str:
    """The inside of a JSON string literal for ``text`` (pieces escape independently)."""
    return _dumps(text)[1:-1]


@lru_cache(maxsize=512)
def _parse_path(path: str) -> tuple[str | int, ...]:
    """Split an RFC 9535 path such as ``$.a.b[0]['c d']`` into keys and indexes.

    Only the singular-query forms partial arguments use (names, quoted names, indexes); a
    path that does not parse is taken as one key, so the JSON text stays valid.
    """
    if path.startswith("$"):
        i = 1
    else:
        path = "$." + path
        i = 1
    out: list[str | int] = []
    n = len(path)
    while i < n:
        c = path[i]
        if c == ".":
            j = i + 1
            while j < n and path[j] not in ".[":
                j += 1
            if j == i + 1:
                return (path[1:],)
            out.append(path[i + 1 : j])
            i = j
        elif c == "[":
            if i + 1 < n and path[i + 1] in "'\"":
                quote = path[i + 1]
                j = i + 2
                name: list[str] = []
                while j < n and path[j] != quote:
                    if path[j] == "\\" and j + 1 < n:
                        j += 1
                    name.append(path[j])
                    j += 1
                if j + 1 >= n or path[j + 1] != "]":
                    return (path[1:],)
                out.append("".join(name))
                i = j + 2
            else:
                j = path.find("]", i)
                if j < 0 or not path[i + 1 : j].isdigit():
                    return (path[1:],)
                out.append(int(path[i + 1 : j]))
                i = j + 1
        else:
            return (path[1:],)
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
        if isinstance(key, str):
            out.append(_dumps(key))
            out.append(":")


class GeminiNormalizer(Normalizer):
    """Gemini ``GenerateContentResponse`` chunks (Google AI and Vertex AI) to rxstream events."""

    wire: ClassVar[Wire] = "gemini"

    def __init__(self, *, stream_id: str, provider_events: bool = False, include_raw: bool = False) -> None:
        super().__init__(stream_id=stream_id, provider_events=provider_events, include_raw=include_raw)
        self._last_usage_raw: Any = None
        self._streaming: dict[int, _ArgsBuilder] = {}
        self._cited: dict[int, set[tuple[Any, ...]]] = {}
        self._last_grounding: dict[int, Any] = {}

    def _identity(self, data: Any) -> tuple[str | None, str | None]:
        if not isinstance(data, dict):
            return None, None
        model: Any = data.get("modelVersion")  # pyright: ignore[reportUnknownMemberType]
        response_id: Any = data.get("responseId")  # pyright: ignore[reportUnknownMemberType]
        return (
            model if isinstance(model, str) else None,
            response_id if isinstance(response_id, str) else None,
        )

    def _guess_provider(self, model: str | None) -> str | None:
        # Only Google speaks this wire; Vertex and AI Studio share it and the payloads do not
        # reliably tell them apart.
        return "google"

    def flush(self) -> list[Event]:
        # Streamed arguments are our own JSON text: close it before the base closes the calls.
        if self._streaming and self.failure is None and not self._ended:
            out: list[Event] = []
            self._out = out
            self._close_streaming()
            return out + super().flush()
        return super().flush()

    # -- payloads -----------------------------------------------------------------------------

    def _handle(self, event: str | None, data: Any) -> None:
        if not isinstance(data, dict):
            self._provider_event("payload", data)
            return
        payload: dict[str, Any] = data  # pyright: ignore[reportUnknownVariableType]
        candidates = payload.get("candidates")
        if candidates:
            if isinstance(candidates, list):
                for candidate in candidates:  # pyright: ignore[reportUnknownVariableType]
                    if isinstance(candidate, dict):
                        self._candidate(candidate)  # pyright: ignore[reportUnknownArgumentType]
        else:
            error = payload.get("error")
            if error is not None:
                self._error(error)
                return
            feedback = payload.get("promptFeedback")
            if isinstance(feedback, dict):
                self._prompt_feedback(feedback)  # pyright: ignore[reportUnknownArgumentType]
        usage = payload.get("usageMetadata")
        if usage is not None and usage != self._last_usage_raw:
            self._last_usage_raw = usage
            if isinstance(usage, dict):
                self._usage_metadata(usage)  # pyright: ignore[reportUnknownArgumentType]

    def _candidate(self, candidate: dict[str, Any]) -> None:
        index = candidate.get("index") or 0
        if not isinstance(index, int):
            index = 0
        content = candidate.get("content")
        if content:
            parts: Any = content.get("parts") if isinstance(content, dict) else None  # pyright: ignore[reportUnknownMemberType]
            if isinstance(parts, list):
                for part in parts:  # pyright: ignore[reportUnknownVariableType]
                    if isinstance(part, dict):
                        text = part.get("text")  # pyright: ignore[reportUnknownMemberType]
                        if len(part) == 1 and text.__class__ is str:  # pyright: ignore[reportUnknownArgumentType]
                            self._text(index, text)  # pyright: ignore[reportArgumentType]
                        else:
                            self._part(index, part)  # pyright: ignore[reportUnknownArgumentType]
        size = len(candidate)
        if size > 1 and size - ("index" in candidate) - ("content" in candidate):
            self._candidate_extras(index, candidate)

    def _candidate_extras(self, index: int, candidate: dict[str, Any]) -> None:
        grounding = candidate.get("groundingMetadata")
        if grounding and isinstance(grounding, dict):
            self._grounding(index, grounding)  # pyright: ignore[reportUnknownArgumentType]
        citations = candidate.get("citationMetadata")
        if citations and isinstance(citations, dict):
            self._citation_metadata(index, citations)  # pyright: ignore[reportUnknownArgumentType]
        url_context = candidate.get("urlContextMetadata")
        if url_context:
            self._provider_event("urlContextMetadata", url_context, {"output": index})
        raw_reason = candidate.get("finishReason")
        if isinstance(raw_reason, str) and raw_reason:
            builder = self._streaming.pop(index, None)
            if builder is not None:
                self._end_streamed(builder)
            self._finish_reason(index, raw_reason, _FINISH.get(raw_reason, "other"))
            if candidate.get("finishMessage") or candidate.get("safetyRatings"):
                self._provider_event(
                    "finish",
                    {
                        key: candidate[key]
                        for key in ("index", "finishReason", "finishMessage", "safetyRatings")
                        if key in candidate
                    },
                    {"output": index},
                )

    def _part(self, index: int, part: dict[str, Any]) -> None:
        signature = part.get("thoughtSignature")
        if not isinstance(signature, str):
            signature = None
        text = part.get("text")
        if isinstance(text, str):
            if part.get("thought") is True:
                self._reasoning(index, text, signature)
            elif text:
                self._text(index, text, meta={"thought_signature": signature} if signature else None)
            elif signature is not None:
                # Gemini 3 puts the turn's signature on a trailing empty text part: it belongs
                # to the answer, has no text, and must reach the caller to be sent back.
                self._reasoning(index, "", signature, {"part": "text"})
            return
        call = part.get("functionCall")
        if isinstance(call, dict):
            self._function_call(index, call, signature)  # pyright: ignore[reportUnknownArgumentType]
            return
        kind = next((name for name in _PROVIDER_PARTS if name in part), "part")
        self._provider_event(kind, part, {"output": index})
        if signature is not None:
            # Not visible without provider events, yet needed to send the turn back.
            self._reasoning(index, "", signature, {"part": kind})

    # -- function calls -----------------------------------------------------------------------

    def _function_call(self, index: int, call: dict[str, Any], signature: str | None) -> None:
        name = call.get("name")
        partial = call.get("partialArgs")
        more = call.get("willContinue") is True
        builder = self._streaming.get(index)
        if builder is not None and isinstance(name, str) and name:
            # A new call began without the previous one being closed.
            del self._streaming[index]
            self._end_streamed(builder)
            builder = None
        if builder is None:
            if not name and not partial:
                # A closing ``{}`` for a call already closed, or noise.
                return
            state = self._start_call(index, call, name, signature)
            if not more and not partial:
                args = call.get("args")
                self._tool_args(state, _dumps(args) if isinstance(args, dict) else "{}")
                self._tool_done(state)
                return
            builder = self._streaming[index] = _ArgsBuilder(state)
        if isinstance(partial, list):
            for arg in partial:  # pyright: ignore[reportUnknownVariableType]
                if isinstance(arg, dict):
                    self._tool_args(builder.call, builder.add(arg))  # pyright: ignore[reportUnknownArgumentType]
        if not more:
            del self._streaming[index]
            args = call.get("args")
            self._end_streamed(builder, _dumps(args) if isinstance(args, dict) else None)

    def _start_call(self, index: int, call: dict[str, Any], name: Any, signature: str | None) -> CallState:
        call_id = call.get("id")
        return self._tool_start(
            index,
            len(self._output(index).calls),  # each Gemini call part is a new call: key by ordinal
            call_id if isinstance(call_id, str) else None,
            name if isinstance(name, str) else "",
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
        chunks = grounding.get("groundingChunks")
        if isinstance(chunks, list) and chunks:
            cited = self._cited.setdefault(index, set())
            supports = grounding.get("groundingSupports")
            spans: dict[int, list[tuple[Any, Any, Any]]] = {}
            if isinstance(supports, list):
                for support in supports:  # pyright: ignore[reportUnknownVariableType]
                    if not isinstance(support, dict):
                        continue
                    segment: Any = support.get("segment")  # pyright: ignore[reportUnknownMemberType]
                    indices: Any = support.get("groundingChunkIndices")  # pyright: ignore[reportUnknownMemberType]
                    if not isinstance(segment, dict) or not isinstance(indices, list):
                        continue
                    span = (
                        segment.get("startIndex"),  # pyright: ignore[reportUnknownMemberType]
                        segment.get("endIndex"),  # pyright: ignore[reportUnknownMemberType]
                        segment.get("text"),  # pyright: ignore[reportUnknownMemberType]
                    )
                    for i in indices:  # pyright: ignore[reportUnknownVariableType]
                        if isinstance(i, int):
                            spans.setdefault(i, []).append(span)
            for i, chunk in enumerate(chunks):  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
                if isinstance(chunk, dict):
                    self._grounding_chunk(index, i, chunk, spans.get(i), cited)  # pyright: ignore[reportUnknownArgumentType]
        rest = {k: v for k, v in grounding.items() if k not in ("groundingChunks", "groundingSupports")}
        if rest and rest != self._last_grounding.get(index):
            self._last_grounding[index] = rest
            self._provider_event("groundingMetadata", rest, {"output": index})

    def _grounding_chunk(
        self,
        index: int,
        position: int,
        chunk: dict[str, Any],
        spans: list[tuple[Any, Any, Any]] | None,
        cited: set[tuple[Any, ...]],
    ) -> None:
        source_kind = next(iter(chunk), None)
        source = chunk.get(source_kind) if source_kind is not None else None
        if not isinstance(source, dict):
            return
        uri: Any = source.get("uri")  # pyright: ignore[reportUnknownMemberType]
        title: Any = source.get("title")  # pyright: ignore[reportUnknownMemberType]
        key = ("grounding", uri, title)
        if key in cited:
            return
        cited.add(key)
        meta: dict[str, Any] = {"chunk_index": position, "source": source_kind}
        start = end = text = None
        if spans:
            # The first passage this source supports; every one is listed in meta.
            start, end, text = spans[0]
            if len(spans) > 1:
                meta["segments"] = [[s, e] for s, e, _ in spans]
        self._citation(
            index,
            meta,
            kind="grounding",
            url=uri if isinstance(uri, str) else None,
            title=title if isinstance(title, str) else None,
            cited_text=text if isinstance(text, str) else None,
            start_index=start if isinstance(start, int) else None,
            end_index=end if isinstance(end, int) else None,
        )

    def _citation_metadata(self, index: int, metadata: dict[str, Any]) -> None:
        # Vertex names the list ``citations``, the Gemini API ``citationSources``.
        entries = metadata.get("citations") or metadata.get("citationSources")
        if not isinstance(entries, list):
            return
        cited = self._cited.setdefault(index, set())
        for entry in entries:  # pyright: ignore[reportUnknownVariableType]
            if not isinstance(entry, dict):
                continue
            uri: Any = entry.get("uri")  # pyright: ignore[reportUnknownMemberType]
            title: Any = entry.get("title")  # pyright: ignore[reportUnknownMemberType]
            start: Any = entry.get("startIndex")  # pyright: ignore[reportUnknownMemberType]
            end: Any = entry.get("endIndex")  # pyright: ignore[reportUnknownMemberType]
            key = ("citation_metadata", uri, title, start, end)
            if key in cited:
                continue
            cited.add(key)
            license_: Any = entry.get("license")  # pyright: ignore[reportUnknownMemberType]
            self._citation(
                index,
                {"license": license_} if license_ else None,
                kind="citation_metadata",
                url=uri if isinstance(uri, str) else None,
                title=title if isinstance(title, str) else None,
                start_index=start if isinstance(start, int) else None,
                end_index=end if isinstance(end, int) else None,
            )

    # -- usage, blocks, errors ----------------------------------------------------------------

    def _usage_metadata(self, usage: dict[str, Any]) -> None:
        prompt = _count(usage, "promptTokenCount")
        tool_prompt = _count(usage, "toolUsePromptTokenCount")
        candidates = _count(usage, "candidatesTokenCount")
        thoughts = _count(usage, "thoughtsTokenCount")
        total = _count(usage, "totalTokenCount")
        cached = _count(usage, "cachedContentTokenCount")
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
        reason = feedback.get("blockReason")
        if isinstance(reason, str) and reason:
            self._finish_reason(0, reason, "content_filter")

    def _error(self, error: Any) -> None:
        self._close_streaming()
        if isinstance(error, dict):
            message: Any = error.get("message")  # pyright: ignore[reportUnknownMemberType]
            status: Any = error.get("status")  # pyright: ignore[reportUnknownMemberType]
            code: Any = error.get("code")  # pyright: ignore[reportUnknownMemberType]
        else:
            message, status, code = error, None, None
        self._fail(
            message if isinstance(message, str) and message else str(error),
            code=status if isinstance(status, str) else None,
            status=code if isinstance(code, int) and not isinstance(code, bool) else None,
            body=error,
        )


def _count(usage: dict[str, Any], name: str) -> int | None:
    value = usage.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _add(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else a + b
