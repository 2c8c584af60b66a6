"""StreamResult: the accumulated outcome of one stream, and the Accumulator that builds it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rxstream._errors import ProviderError, RxStreamError
from rxstream._events import Citation, EventBase, FinishReason, TextDelta, Usage

__all__ = ["OutputResult", "ResultAccumulator", "StreamResult", "ToolCallResult"]


@dataclass(slots=True)
class ToolCallResult:
    """A client tool call the caller must execute: ``arguments`` is the raw JSON text."""

    call_index: int
    id: str | None
    name: str
    arguments: str
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


class _Output:
    __slots__ = ("calls", "citations", "finish", "raw_finish", "reasoning", "refusal", "signatures", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, list[Any]] = {}
        self.citations: list[Citation] = []
        self.signatures: list[str] = []
        self.finish: FinishReason | None = None
        self.raw_finish: str | None = None


class ResultAccumulator:
    """Pure accumulator of events into a :class:`StreamResult` (``feed(event)``, ``result()``).

    A ``stream.restart`` discards the content accumulated before it, as consumers must.
    """

    def __init__(self) -> None:
        self._result = StreamResult()
        self._outputs: dict[int, _Output] = {}
        self._handlers = {
            "text.delta": self._on_text,
            "reasoning.delta": self._on_reasoning,
            "refusal.delta": self._on_refusal,
            "tool_call.start": self._on_call_start,
            "tool_call.delta": self._on_call_delta,
            "tool_call.done": self._on_call_done,
            "citation": self._on_citation,
            "usage": self._on_usage,
            "finish": self._on_finish,
            "stream.start": self._on_start,
            "stream.restart": self._on_restart,
            "stream.end": self._on_end,
        }

    def feed(self, event: EventBase) -> None:
        """Fold one event in."""
        if event.__class__ is TextDelta:
            # The common case, kept to one dict probe and one append.
            out = self._outputs.get(event.output)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownArgumentType]
            if out is None:
                out = self._out(event.output)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownArgumentType]
            out.text.append(event.text)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownArgumentType]
            return
        handler = self._handlers.get(event.type)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownArgumentType]
        if handler is not None:
            handler(event)

    def _out(self, index: int) -> _Output:
        out = self._outputs.get(index)
        if out is None:
            out = self._outputs[index] = _Output()
        return out

    def _on_text(self, e: Any) -> None:
        self._out(e.output).text.append(e.text)

    def _on_reasoning(self, e: Any) -> None:
        out = self._out(e.output)
        if e.text:
            out.reasoning.append(e.text)
        if e.signature:
            out.signatures.append(e.signature)

    def _on_refusal(self, e: Any) -> None:
        self._out(e.output).refusal.append(e.text)

    def _on_call_start(self, e: Any) -> None:
        self._out(e.output).calls[e.call_index] = [e.call_id, e.name, [], None, e.meta]

    def _on_call_delta(self, e: Any) -> None:
        call = self._out(e.output).calls.get(e.call_index)
        if call is None:
            call = self._out(e.output).calls[e.call_index] = [e.call_id, "", [], None, {}]
        call[2].append(e.arguments_delta)

    def _on_call_done(self, e: Any) -> None:
        calls = self._out(e.output).calls
        call = calls.get(e.call_index)
        if call is None:
            call = calls[e.call_index] = [e.call_id, e.name, [], None, {}]
        call[0] = e.call_id
        call[1] = e.name
        call[3] = e.arguments

    def _on_citation(self, e: Any) -> None:
        self._out(e.output).citations.append(e)

    def _on_usage(self, e: Any) -> None:
        self._result.usage = e

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
        self._out(0)

    def _on_restart(self, _: Any) -> None:
        self._outputs = {}
        self._result.usage = None

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
            error=error,
            completed=r.completed,
        )
