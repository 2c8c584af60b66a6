"""StreamResult: the accumulated outcome of one stream, and the Accumulator that builds it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rxstream._errors import ProviderError, RxStreamError
from rxstream._events import Citation, EventBase, FinishReason, Metrics, TextDelta, Usage

__all__ = ["ContentPart", "OutputResult", "ResultAccumulator", "StreamResult", "ToolCallResult"]


@dataclass(slots=True)
class ToolCallResult:
    """A client tool call the caller must execute: ``arguments`` is the raw JSON text."""

    call_index: int
    id: str | None
    name: str
    arguments: str
    meta: dict[str, Any] = field(default_factory=dict[str, Any])
    parsed: Any = None
    """The arguments' value from ``parse_json()``'s ``json.value`` (validated when it had a schema)."""


@dataclass(slots=True)
class ContentPart:
    """One piece of an output's content, in stream order: what ``assistant_message()`` rebuilds from.

    Text is split where the provider's own parts change (a reasoning block, a tool call, another
    Responses message item, a second Gemini thought signature); adjacent text of one provider part
    stays one part.

    Attributes:
        kind: ``"text"``, ``"reasoning"``, ``"refusal"`` or ``"tool_call"``.
        text: the part's text (empty for a tool call, and for a reasoning part that only carries a
            signature, redacted thinking or encrypted content).
        signature: the reasoning signature (Anthropic thinking) or Gemini thought signature that
            came with the part.
        call_index: the call's ``call_index`` in ``OutputResult.tool_calls``, for a tool call.
        meta: the provider details of the part's events merged (``block_index``, ``item_id``,
            ``redacted_data``, ``encrypted_content``, ``part``...), later values winning.
    """

    kind: Literal["text", "reasoning", "refusal", "tool_call"]
    text: str = ""
    signature: str | None = None
    call_index: int | None = None
    meta: dict[str, Any] = field(default_factory=dict[str, Any])


@dataclass(slots=True)
class OutputResult:
    """One output (choice / candidate) of a stream."""

    index: int
    text: str = ""
    reasoning: str = ""
    refusal: str = ""
    tool_calls: list[ToolCallResult] = field(default_factory=list[ToolCallResult])
    finish_reason: FinishReason | None = None
    raw_finish_reason: str | None = None
    citations: list[Citation] = field(default_factory=list[Citation])
    reasoning_signatures: list[str] = field(default_factory=list[str])
    parts: list[ContentPart] = field(default_factory=list[ContentPart])
    json: Any = None
    """The last JSON value ``parse_json()`` found complete in the text: parsed when validated."""


@dataclass(slots=True)
class StreamResult:
    """Everything a stream delivered, accumulated: what ``collect()`` returns.

    ``model`` is the response's when it names one, else the request's. ``error`` is set when
    the stream failed (``collect`` then raises it, with this result as ``.partial``).
    """

    stream_id: str | None = None
    provider: str | None = None
    wire: str | None = None
    model: str | None = None
    response_id: str | None = None
    request_id: str | None = None
    request: dict[str, Any] | None = None
    outputs: list[OutputResult] = field(default_factory=list[OutputResult])
    usage: Usage | None = None
    metrics: Metrics | None = None
    """The stream's timings, when ``tap_metrics(emit=True)`` was in the pipe."""
    error: RxStreamError | None = None
    completed: bool = False

    @property
    def text(self) -> str:
        """The text of output 0."""
        return self.outputs[0].text if self.outputs else ""

    @property
    def tool_calls(self) -> list[ToolCallResult]:
        """The client tool calls of output 0."""
        return self.outputs[0].tool_calls if self.outputs else []

    def output(self, index: int = 0) -> OutputResult:
        """The output with this index."""
        for out in self.outputs:
            if out.index == index:
                return out
        raise KeyError(f"no output {index}; outputs are {[o.index for o in self.outputs]}")

    def assistant_message(self, output: int = 0, *, include_reasoning: bool = False) -> Any:
        """The assistant turn in the wire's own request format, to send back in a tool loop.

        - ``openai.chat``: one message ``{"role": "assistant", "content": text or None,
          "tool_calls": [...], "refusal": ...}`` (``tool_calls`` and ``refusal`` only when
          present); append it to ``messages``.
        - ``anthropic.messages``: one message ``{"role": "assistant", "content": [blocks]}`` with
          the ``thinking`` (signed), ``redacted_thinking``, ``text`` and ``tool_use`` blocks in
          stream order; append it to ``messages``.
        - ``gemini``: one content ``{"role": "model", "parts": [...]}`` with every thought
          signature on the part it came with; append it to ``contents``.
        - ``openai.responses``: a **list** of input items (reasoning items, messages, function
          calls) in stream order; extend ``input`` with it.

        Args:
            output: which output (choice / candidate) to rebuild.
            include_reasoning: also send reasoning text the provider does not need back:
                ``reasoning_content`` on an OpenAI chat message (DeepSeek's thinking mode wants
                it back during tool calls; other servers may reject it), unsigned Gemini thought
                summaries. Signed or encrypted reasoning is always included.

        Raises:
            JsonError: a tool call's arguments are not a JSON object where the wire needs one
                parsed (Anthropic ``input``, Gemini ``args``); the message names the call.
            ValueError: the result has no known wire (no ``stream.start`` was seen).
            KeyError: there is no such output.
        """
        from rxstream._assistant import build_assistant_message

        return build_assistant_message(self, output, include_reasoning=include_reasoning)

    def to_summary(self) -> dict[str, Any]:
        """The JSON-ready summary ``rxstream replay --summary-json`` prints."""
        usage = self.usage
        error = self.error
        return {
            "wire": self.wire,
            "provider": self.provider,
            "model": self.model,
            "response_id": self.response_id,
            "request_id": self.request_id,
            "outputs": [
                {
                    "index": o.index,
                    "text": o.text,
                    "reasoning": o.reasoning,
                    "refusal": o.refusal,
                    "tool_calls": [
                        {"id": c.id, "name": c.name, "arguments": c.arguments} for c in o.tool_calls
                    ],
                    "finish_reason": o.finish_reason,
                    "raw_finish_reason": o.raw_finish_reason,
                }
                for o in self.outputs
            ],
            "usage": None
            if usage is None
            else {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "total_tokens": usage.total_tokens,
                "cache_read_input_tokens": usage.cache_read_input_tokens,
                "cache_write_input_tokens": usage.cache_write_input_tokens,
                "reasoning_tokens": usage.reasoning_tokens,
                "source": usage.source,
                "estimator": usage.estimator,
            },
            "error": None
            if error is None
            else {
                "type": type(error).__name__,
                "code": getattr(error, "code", None),
                "message": error.message,
            },
        }


# Reasoning events group into one part by these meta keys (all None when the meta is empty).
_NO_KEY = (None, None, None, None)

# Whose text events ``ResultAccumulator`` reads the meta of: none, the next one, every one.
_WATCH_OFF, _WATCH_NEXT, _WATCH_ALL = 0, 1, 2
_WATCH_TEXT = {"openai.responses": _WATCH_NEXT, "gemini": _WATCH_ALL}


class _Output:
    """One output being accumulated (``watch``: see ``_WATCH_TEXT``)."""

    __slots__ = (
        "call_parsed",
        "calls",
        "citations",
        "finish",
        "json",
        "marks",
        "parts",
        "raw_finish",
        "reasoning",
        "refusal",
        "signatures",
        "text",
        "text_item",
        "watch",
    )

    def __init__(self, watch: int = 0) -> None:
        self.watch = watch
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, list[Any]] = {}
        self.citations: list[Citation] = []
        self.signatures: list[str] = []
        self.finish: FinishReason | None = None
        self.raw_finish: str | None = None
        # Non-text parts in stream order: [kind, text pieces before it, key, events, signed];
        # text between them is rebuilt from ``text`` at result time, so text costs nothing here.
        self.parts: list[list[Any]] = []
        # (text piece index, Responses item id, Gemini thought signature) where the item changes
        # or a signature comes
        self.marks: list[tuple[int, Any, str | None]] = []
        self.text_item: Any = None
        self.json: Any = None
        self.call_parsed: dict[int, Any] = {}


class ResultAccumulator:
    """Pure accumulator of events into a :class:`StreamResult` (``feed(event)``, ``result()``).

    A ``stream.restart`` discards the content accumulated before it, as consumers must.
    """

    def __init__(self) -> None:
        self._result = StreamResult()
        self._outputs: dict[int, _Output] = {}
        # Only wires whose text carries what an assistant turn must send back pay for reading
        # text meta: Gemini thought signatures on every text event, the Responses message item
        # on the first text after each other part (a message item holds all text up to the next).
        self._watch_text = _WATCH_OFF
        self._handlers = {
            "text.delta": self._on_text,
            "reasoning.delta": self._on_reasoning,
            "refusal.delta": self._on_refusal,
            "tool_call.start": self._on_call_start,
            "tool_call.delta": self._on_call_delta,
            "tool_call.done": self._on_call_done,
            "citation": self._on_citation,
            "usage": self._on_usage,
            "metrics": self._on_metrics,
            "finish": self._on_finish,
            "json.value": self._on_json_value,
            "stream.start": self._on_start,
            "stream.restart": self._on_restart,
            "stream.end": self._on_end,
        }

    def feed(self, event: EventBase) -> None:
        """Fold one event in."""
        if event.__class__ is TextDelta:
            # The common case, kept to one dict probe, one append and one slot test.
            out = self._outputs.get(event.output)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownArgumentType]
            if out is None:
                out = self._out(event.output)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownArgumentType]
            out.text.append(event.text)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownArgumentType]
            if out.watch:
                meta = event.meta  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
                if meta:
                    self._mark_text(out, meta)  # pyright: ignore[reportUnknownArgumentType]
            return
        handler = self._handlers.get(event.type)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownArgumentType]
        if handler is not None:
            handler(event)

    def _out(self, index: int) -> _Output:
        out = self._outputs.get(index)
        if out is None:
            out = self._outputs[index] = _Output(self._watch_text)
        return out

    def _on_text(self, e: Any) -> None:
        out = self._out(e.output)
        out.text.append(e.text)
        if out.watch and e.meta:
            self._mark_text(out, e.meta)

    @staticmethod
    def _mark_text(out: _Output, meta: dict[str, Any]) -> None:
        """Note the Responses message item a text part belongs to, or a Gemini thought
        signature that came on text (both must go back with the text they belong to)."""
        if out.watch == _WATCH_NEXT:
            out.watch = _WATCH_OFF
        item = meta.get("item_id")
        signature = meta.get("thought_signature")
        if signature is not None or item != out.text_item:
            out.marks.append((len(out.text) - 1, item, signature))
            out.text_item = item

    def _on_reasoning(self, e: Any) -> None:
        out = self._out(e.output)
        if e.text:
            out.reasoning.append(e.text)
        signature = e.signature
        if signature:
            out.signatures.append(signature)
        meta = e.meta
        if meta:
            get = meta.get
            key = (get("block_index"), get("item_id"), get("summary_index"), get("part"))
        else:
            key = _NO_KEY
        parts = out.parts
        last = parts[-1] if parts else None
        # One provider block / item / summary part is one part; a signature closes it.
        if (
            last is not None
            and last[0] == "reasoning"
            and last[1] == len(out.text)
            and last[2] == key
            and not last[4]
        ):
            last[3].append(e)
            if signature:
                last[4] = True
        else:
            self._part(out, ["reasoning", len(out.text), key, [e], bool(signature)])

    def _on_refusal(self, e: Any) -> None:
        out = self._out(e.output)
        out.refusal.append(e.text)
        parts = out.parts
        last = parts[-1] if parts else None
        if last is not None and last[0] == "refusal" and last[1] == len(out.text):
            last[3].append(e)
        else:
            self._part(out, ["refusal", len(out.text), None, [e], False])

    def _part(self, out: _Output, part: list[Any]) -> None:
        out.parts.append(part)
        if self._watch_text == _WATCH_NEXT:
            out.watch = _WATCH_NEXT

    def _new_call(self, out: _Output, index: int, call: list[Any]) -> list[Any]:
        out.calls[index] = call
        self._part(out, ["tool_call", len(out.text), index, None, False])
        return call

    def _on_call_start(self, e: Any) -> None:
        out = self._out(e.output)
        call: list[Any] = [e.call_id, e.name, [], None, e.meta]
        if e.call_index in out.calls:
            out.calls[e.call_index] = call
        else:
            self._new_call(out, e.call_index, call)

    def _on_call_delta(self, e: Any) -> None:
        out = self._out(e.output)
        call = out.calls.get(e.call_index)
        if call is None:
            fresh: list[Any] = [e.call_id, "", [], None, {}]
            call = self._new_call(out, e.call_index, fresh)
        call[2].append(e.arguments_delta)

    def _on_call_done(self, e: Any) -> None:
        out = self._out(e.output)
        call = out.calls.get(e.call_index)
        if call is None:
            call = self._new_call(out, e.call_index, [e.call_id, e.name, [], None, {}])
        call[0] = e.call_id
        call[1] = e.name
        call[3] = e.arguments

    def _on_citation(self, e: Any) -> None:
        self._out(e.output).citations.append(e)

    def _on_json_value(self, e: Any) -> None:
        # A truncated or unparsable value is reported by the event, not kept as the result.
        if e.truncated or (e.value is None and e.error is not None):
            return
        value = e.parsed if e.parsed is not None else e.value
        target = e.target
        out = self._out(target.output)
        if target.kind == "text":
            out.json = value
        elif target.call_index is not None:
            out.call_parsed[target.call_index] = value

    def _on_usage(self, e: Any) -> None:
        self._result.usage = e

    def _on_metrics(self, e: Any) -> None:
        self._result.metrics = e

    def _on_finish(self, e: Any) -> None:
        out = self._out(e.output)
        out.finish = e.reason
        out.raw_finish = e.raw_reason

    def _on_start(self, e: Any) -> None:
        r = self._result
        r.stream_id = e.stream_id
        r.provider = e.provider
        r.wire = e.wire
        r.model = e.model
        r.response_id = e.response_id
        r.request_id = e.request_id
        r.request = e.request
        self._watch_text = _WATCH_TEXT.get(e.wire, _WATCH_OFF)
        for out in self._outputs.values():
            out.watch = self._watch_text
        self._out(0)

    def _on_restart(self, _: Any) -> None:
        self._outputs = {}
        self._result.usage = None
        self._result.metrics = None

    def _on_end(self, _: Any) -> None:
        self._result.completed = True

    def result(self, error: RxStreamError | None = None) -> StreamResult:
        """The result so far; ``error`` marks it failed."""
        r = self._result
        outputs: list[OutputResult] = []
        for index in sorted(self._outputs):
            o = self._outputs[index]
            calls = [
                ToolCallResult(
                    call_index=i,
                    id=c[0],
                    name=c[1],
                    arguments=c[3] if c[3] is not None else "".join(c[2]),
                    meta=c[4],
                    parsed=o.call_parsed.get(i),
                )
                for i, c in sorted(o.calls.items())
            ]
            finish = o.finish
            if error is not None and finish is None:
                finish = "error" if isinstance(error, ProviderError) else None
            outputs.append(
                OutputResult(
                    index=index,
                    text="".join(o.text),
                    reasoning="".join(o.reasoning),
                    refusal="".join(o.refusal),
                    tool_calls=calls,
                    finish_reason=finish,
                    raw_finish_reason=o.raw_finish,
                    citations=list(o.citations),
                    reasoning_signatures=list(o.signatures),
                    parts=_content_parts(o),
                    json=o.json,
                )
            )
        return StreamResult(
            stream_id=r.stream_id,
            provider=r.provider,
            wire=r.wire,
            model=r.model,
            response_id=r.response_id,
            request_id=r.request_id,
            request=r.request,
            outputs=outputs,
            usage=r.usage,
            metrics=r.metrics,
            error=error,
            completed=r.completed,
        )


def _merged_meta(events: list[Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for event in events:
        meta.update(event.meta)
    meta.pop("raw", None)
    return meta


def _content_parts(o: _Output) -> list[ContentPart]:
    """The output's parts in stream order, text rebuilt between the recorded non-text parts."""
    parts: list[ContentPart] = []
    pieces = o.text
    marks = o.marks
    state: list[Any] = [0, None]  # next mark, current text item
    start = 0
    for kind, end, key, events, _ in o.parts:
        _text_parts(parts, pieces, start, end, marks, state)
        start = end
        if kind == "tool_call":
            parts.append(ContentPart("tool_call", call_index=key))
        else:
            signature = None
            for event in events:
                if getattr(event, "signature", None):
                    signature = event.signature
            parts.append(
                ContentPart(
                    kind,
                    "".join(event.text for event in events),
                    signature,
                    meta=_merged_meta(events),
                )
            )
    _text_parts(parts, pieces, start, len(pieces), marks, state)
    return parts


def _text_parts(
    parts: list[ContentPart],
    pieces: list[str],
    start: int,
    end: int,
    marks: list[tuple[int, Any, str | None]],
    state: list[Any],
) -> None:
    """Text pieces ``[start, end)`` as text parts: split where the Responses item changes, and
    before a second Gemini thought signature (each signature stays on the text it came with)."""
    position: int = state[0]
    item: Any = state[1]
    begin = start
    signature: str | None = None

    def emit(stop: int) -> None:
        meta: dict[str, Any] = {"item_id": item} if item is not None else {}
        parts.append(ContentPart("text", "".join(pieces[begin:stop]), signature, meta=meta))

    while position < len(marks) and marks[position][0] < end:
        index, mark_item, mark_signature = marks[position]
        position += 1
        if mark_item != item:
            if index > begin:
                emit(index)
                begin, signature = index, None
            item = mark_item
        if mark_signature is not None:
            if signature is not None and index > begin:
                emit(index)
                begin = index
            signature = mark_signature
    if end > begin:
        emit(end)
    state[0], state[1] = position, item
