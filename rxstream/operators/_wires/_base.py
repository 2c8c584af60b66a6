"""The shared core of every wire Normalizer: event builders, tool-call and output state, usage.

A wire's Normalizer subclasses :class:`Normalizer` and implements ``_identity`` and ``_handle``;
everything a wire must not get wrong twice lives here: ``call_index`` ordinals, re-sent tool
headers, snapshots that must only add what was never streamed, cumulative usage, one ``finish``
per output, the limits on tool arguments, outputs and tool calls (:class:`~rxstream.Limits`),
and delivering everything produced before a fault.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar
from urllib.parse import urlsplit

from rxstream._chunk import ProviderChunk, StreamOpen, Wire
from rxstream._errors import ProtocolError, ProviderError, RxStreamError
from rxstream._events import (
    Citation,
    Event,
    Finish,
    FinishReason,
    ProviderEvent,
    ReasoningDelta,
    RefusalDelta,
    StreamEnd,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
    event_builder,
)
from rxstream._limits import DEFAULT_LIMITS, Limits, limit_exceeded

__all__ = ["CallState", "Normalizer", "OutputState", "UsageAccumulator"]

_START = event_builder(StreamStart)
_DEFAULT_PORTS = {"https": 443, "http": 80}


def _server(url: str | None) -> tuple[str | None, int | None]:
    """The host and port a stream came from (no path, query or credentials: nothing secret)."""
    if not url:
        return None, None
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None, None
    return parts.hostname, port
_TEXT = event_builder(TextDelta)
_REASONING = event_builder(ReasoningDelta)
_REFUSAL = event_builder(RefusalDelta)
_CALL_START = event_builder(ToolCallStart)
_CALL_DELTA = event_builder(ToolCallDelta)
_CALL_DONE = event_builder(ToolCallDone)
_CITATION = event_builder(Citation)
_USAGE = event_builder(Usage)
_FINISH = event_builder(Finish)
_PROVIDER_EVENT = event_builder(ProviderEvent)
_END = event_builder(StreamEnd)

# Preamble payloads held back at most, waiting for one that names the model (Azure's first chunk).
_MAX_HELD = 8

_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_input_tokens",
    "cache_write_input_tokens",
    "reasoning_tokens",
)


class UsageAccumulator:
    """Cumulative usage for a whole stream in the shared shape.

    Within one provider message the last reported value of a field wins (providers report
    cumulative numbers: they are assigned, never added); the values of several messages are
    summed. A field nobody reported stays ``None``. ``total_tokens`` is derived as input plus
    output only when no report ever named a total.
    """

    __slots__ = ("_closed", "_current", "raw")

    def __init__(self) -> None:
        self._closed: list[int | None] = [None] * 6
        self._current: list[int | None] = [None] * 6
        self.raw: Any = None

    def new_message(self) -> None:
        """Start a new provider message: what was reported so far is kept and summed."""
        self._closed = self._sum()
        self._current = [None] * 6

    def report(self, values: dict[str, int | None], raw: Any = None) -> None:
        """Assign the fields the provider reported (``None`` values are ignored)."""
        current = self._current
        for i, name in enumerate(_USAGE_FIELDS):
            value = values.get(name)
            if value is not None:
                current[i] = value
        self.raw = raw

    def _sum(self) -> list[int | None]:
        out: list[int | None] = []
        for a, b in zip(self._closed, self._current, strict=True):
            out.append(b if a is None else (a if b is None else a + b))
        return out

    def totals(self) -> dict[str, int | None]:
        """The cumulative totals so far, by field name."""
        values = self._sum()
        if values[2] is None and values[0] is not None and values[1] is not None:
            values[2] = values[0] + values[1]
        return dict(zip(_USAGE_FIELDS, values, strict=True))


class CallState:
    """One client tool call being streamed."""

    __slots__ = ("call_id", "call_index", "done", "meta", "name", "output", "parts", "streamed")

    def __init__(self, output: int, call_index: int, call_id: str | None, name: str) -> None:
        self.output = output
        self.call_index = call_index
        self.call_id = call_id
        self.name = name
        self.parts: list[str] = []
        self.streamed = 0
        self.done = False
        self.meta: dict[str, Any] = {}

    @property
    def arguments(self) -> str:
        """The raw argument text streamed so far."""
        if len(self.parts) > 1:
            self.parts = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""


class OutputState:
    """One output (choice / candidate): its calls and what the provider said about its end."""

    __slots__ = ("by_key", "calls", "calls_mark", "finish_meta", "index", "raw_reason", "reason", "text_streamed")

    def __init__(self, index: int) -> None:
        self.index = index
        self.calls: list[CallState] = []
        self.by_key: dict[Any, CallState] = {}
        self.raw_reason: str | None = None
        self.reason: FinishReason | None = None
        self.text_streamed: dict[Any, int] = {}
        self.finish_meta: dict[str, Any] | None = None
        # Calls made before the current provider message began (already answered, see
        # Normalizer._message_boundary).
        self.calls_mark = 0


class Normalizer(ABC):
    """Base of the per-wire Normalizers: a pure ``feed(chunk) -> list[Event]`` / ``flush()`` core.

    When the stream fails (a provider error event, a payload that breaks the wire's rules, a
    limit of ``limits`` crossed), ``feed`` returns the events produced before the fault and sets
    ``failure``; nothing is produced after that. ``flush()`` closes open tool calls, emits one
    ``finish`` per output (in output order) and ``stream.end``.

    Limits (``limits``, default :class:`~rxstream.Limits`): ``max_tool_arguments_bytes`` per
    call (the delta that would cross it is not emitted), ``max_outputs`` and ``max_tool_calls``
    per stream; each fails the stream with :class:`~rxstream.LimitExceededError`.

    Subclasses implement ``_identity(data)`` (model and response id of the first payload) and
    ``_handle(event_name, data)`` with the builder methods below.
    """

    wire: ClassVar[Wire]

    def __init__(
        self,
        *,
        stream_id: str,
        provider_events: bool = False,
        include_raw: bool = False,
        limits: Limits | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.provider_events = provider_events
        self.include_raw = include_raw
        chosen = DEFAULT_LIMITS if limits is None else limits
        self._max_arguments = chosen.max_tool_arguments_bytes
        self._max_outputs = chosen.max_outputs
        self._max_calls = chosen.max_tool_calls
        self._calls = 0
        self.failure: RxStreamError | None = None
        self.usage = UsageAccumulator()
        self._open: StreamOpen | None = None
        self._open_at: int | None = None
        self._started = False
        self._ended = False
        self._seq = 0
        self._at = 0
        self._raw: Any = None
        self._out: list[Event] = []
        self._outputs: dict[int, OutputState] = {}
        self._last_usage: dict[str, int | None] | None = None
        self._held: list[tuple[int, ProviderChunk]] = []

    # -- the pure core ---------------------------------------------------------------------

    def feed(self, chunk: ProviderChunk) -> list[Event]:
        """Normalize one chunk into events (possibly none)."""
        if self.failure is not None or self._ended:
            return []
        if chunk.kind == "open":
            self._open = chunk.open
            self._open_at = self._at = chunk.at
            return []
        out: list[Event] = []
        self._out = out
        self._seq += 1
        self._at = chunk.at
        data = chunk.data
        if self.include_raw:
            self._raw = data
        try:
            if not self._started:
                if len(self._held) < _MAX_HELD and self._defer_start(data):
                    self._held.append((self._seq, chunk))
                    return out
                self._start(data)
                if self._held:
                    self._replay_held()
            self._handle(chunk.event, data)
        except RxStreamError as exc:
            self.failure = exc
        except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen payload shape
            self.failure = ProtocolError(
                f"{self.wire} payload #{self._seq} could not be normalized: {type(exc).__name__}: "
                f"{exc}; payload starts {str(data)[:200]!r}"
            )
            self.failure.__cause__ = exc
        return out

    def flush(self) -> list[Event]:
        """End of stream: close open calls, one ``finish`` per output, then ``stream.end``."""
        if self.failure is not None or self._ended:
            return []
        out: list[Event] = []
        self._out = out
        self._raw = None
        try:
            if not self._started:
                held = self._held
                self._start(held[0][1].data if held else None)
                if held:
                    self._replay_held()
        except RxStreamError as exc:
            self.failure = exc
            return out
        self._close_outputs()
        self._ended = True
        out.append(_END(self.stream_id, self._seq, self._at, {}))
        return out

    def _replay_held(self) -> None:
        # Payloads held back while waiting for one that names the model, handled in order with
        # their own seq and clock.
        held, self._held = self._held, []
        seq, at, raw = self._seq, self._at, self._raw
        for chunk_seq, chunk in held:
            self._seq, self._at = chunk_seq, chunk.at
            if self.include_raw:
                self._raw = chunk.data
            self._handle(chunk.event, chunk.data)
        self._seq, self._at, self._raw = seq, at, raw

    # -- for subclasses ---------------------------------------------------------------------

    def _defer_start(self, data: Any) -> bool:
        """True when this first payload names nothing and carries no content (a preamble), so
        ``stream.start`` should wait for the next one to name the model and response id. At
        most a few payloads are held."""
        return False

    @abstractmethod
    def _identity(self, data: Any) -> tuple[str | None, str | None]:
        """(model, response id) named by the first payload, if any."""

    @abstractmethod
    def _handle(self, event: str | None, data: Any) -> None:
        """Turn one payload into events through the builder methods."""

    def _guess_provider(self, model: str | None) -> str | None:
        """The provider when no source said so: overridden by wires that can tell."""
        return None

    def _response_format(self, data: Any) -> Any:
        """The output format the provider echoes in its first payload (Responses' ``text.format``),
        put in ``stream.start.meta["response_format"]`` so later operators know the answer is JSON
        even when the request is unknown (a raw replay)."""
        return None

    # -- builders ---------------------------------------------------------------------------

    def _meta(self, meta: dict[str, Any] | None) -> dict[str, Any]:
        if self._raw is not None:
            meta = dict(meta) if meta else {}
            meta["raw"] = self._raw
        return meta if meta is not None else {}

    def _start(self, data: Any) -> None:
        self._started = True
        model, response_id = self._identity(data) if data is not None else (None, None)
        opened = self._open
        request = opened.request if opened is not None else None
        if model is None and request is not None:
            requested = request.get("model")
            model = requested if isinstance(requested, str) else None
        provider = opened.provider if opened is not None else None
        if provider is None:
            provider = self._guess_provider(model)
        at = self._open_at if self._open_at is not None else self._at
        first = self._held[0][1].at if self._held else (self._at if data is not None else None)
        address, port = _server(opened.url if opened is not None else None)
        echoed = self._response_format(data) if data is not None else None
        self._out.append(
            _START(
                self.stream_id,
                0,
                at,
                self._meta({"response_format": echoed} if echoed is not None else None),
                provider=provider,
                wire=self.wire,
                model=model,
                request_id=opened.request_id if opened is not None else None,
                response_id=response_id,
                request=request,
                request_sent_at=opened.request_sent_at if opened is not None else None,
                first_event_at=first,
                server_address=address,
                server_port=port,
            )
        )
        self._output(0)

    def _output(self, index: int) -> OutputState:
        state = self._outputs.get(index)
        if state is None:
            outputs = self._outputs
            if len(outputs) >= self._max_outputs:
                raise limit_exceeded(
                    "max_outputs",
                    self._max_outputs,
                    len(outputs) + 1,
                    f"{self.wire} stream has too many outputs: got output {index} at payload "
                    f"#{self._seq} after {len(outputs)} others",
                    f"at most {self._max_outputs} outputs (choices / candidates) in one stream",
                )
            state = outputs[index] = OutputState(index)
        return state

    def _text(self, output: int, text: str, key: Any = None, meta: dict[str, Any] | None = None) -> None:
        """Emit visible text. ``key`` names the part (item, block) for later snapshots."""
        if not text:
            return
        if key is not None:
            streamed = self._output(output).text_streamed
            streamed[key] = streamed.get(key, 0) + len(text)
        elif output not in self._outputs:
            self._output(output)
        if self._raw is not None:
            meta = self._meta(meta)
        self._out.append(
            _TEXT(
                self.stream_id,
                self._seq,
                self._at,
                {} if meta is None else meta,
                output,
                text,
            )
        )

    def _text_snapshot(self, output: int, key: Any, full: str, meta: dict[str, Any] | None = None) -> None:
        """A provider's full text of part ``key``: emit only what was never streamed."""
        streamed = self._output(output).text_streamed.get(key, 0)
        if len(full) > streamed:
            self._text(output, full[streamed:], key, meta)

    def _reasoning(
        self,
        output: int,
        text: str,
        signature: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Emit reasoning text and/or its signature (an empty text with a signature is kept)."""
        if not text and signature is None and not meta:
            return
        if output not in self._outputs:
            self._output(output)
        self._out.append(
            _REASONING(
                self.stream_id,
                self._seq,
                self._at,
                self._meta(meta),
                output=output,
                text=text,
                signature=signature,
            )
        )

    def _refusal(self, output: int, text: str, meta: dict[str, Any] | None = None) -> None:
        if not text:
            return
        if output not in self._outputs:
            self._output(output)
        self._out.append(
            _REFUSAL(
                self.stream_id,
                self._seq,
                self._at,
                self._meta(meta),
                output=output,
                text=text,
            )
        )

    def _call(self, output: int, key: Any) -> CallState | None:
        """The call registered under ``key`` in ``output``, if any."""
        state = self._outputs.get(output)
        return state.by_key.get(key) if state is not None else None

    def _tool_start(
        self,
        output: int,
        key: Any,
        call_id: str | None,
        name: str,
        meta: dict[str, Any] | None = None,
    ) -> CallState:
        """Register and announce a client tool call under the wire's own ``key``.

        A header re-sent for a known key announces nothing again (an empty or missing id on the
        repeat keeps the first; a first id that was missing is filled in).
        """
        state = self._output(output)
        call = state.by_key.get(key)
        if call is not None:
            if not call.call_id and call_id:
                call.call_id = call_id
            if not call.name and name:
                call.name = name
            return call
        if self._calls >= self._max_calls:
            raise limit_exceeded(
                "max_tool_calls",
                self._max_calls,
                self._calls + 1,
                f"{self.wire} stream has too many tool calls: got call {self._calls + 1} "
                f"({name!r}) at payload #{self._seq}",
                f"at most {self._max_calls} tool calls in one stream",
            )
        self._calls += 1
        call = CallState(output, len(state.calls), call_id or None, name)
        state.calls.append(call)
        state.by_key[key] = call
        if meta:
            call.meta = meta
        self._out.append(
            _CALL_START(
                self.stream_id,
                self._seq,
                self._at,
                self._meta(meta),
                output=output,
                call_index=call.call_index,
                call_id=call.call_id,
                name=name,
            )
        )
        return call

    def _tool_args(self, call: CallState, delta: str, meta: dict[str, Any] | None = None) -> None:
        """Emit an arguments fragment of an open call."""
        if not delta or call.done:
            return
        streamed = call.streamed + len(delta)
        if streamed > self._max_arguments:
            raise self._arguments_error(streamed, f"call {call.call_index} ({call.name!r}) of output {call.output}")
        call.parts.append(delta)
        call.streamed = streamed
        if self._raw is not None:
            meta = self._meta(meta)
        self._out.append(
            _CALL_DELTA(
                self.stream_id,
                self._seq,
                self._at,
                {} if meta is None else meta,
                output=call.output,
                call_index=call.call_index,
                call_id=call.call_id,
                arguments_delta=delta,
            )
        )

    def _arguments_error(self, size: int, which: str) -> RxStreamError:
        """The error for tool arguments (or a server tool's input) past their limit."""
        return limit_exceeded(
            "max_tool_arguments_bytes",
            self._max_arguments,
            size,
            f"{self.wire} tool arguments too large: got {size} characters for {which} at payload "
            f"#{self._seq}",
            f"at most {self._max_arguments} characters of arguments per tool call",
        )

    def _tool_snapshot(self, call: CallState, full: str) -> None:
        """The provider's whole arguments: emit only the part never streamed.

        When ``full`` does not extend what was streamed, the streamed text stands (it is what
        the caller already saw) and the snapshot is kept in the done event's ``meta``.
        """
        if call.done:
            return
        streamed = call.arguments
        if full.startswith(streamed):
            self._tool_args(call, full[len(streamed) :])
        elif full != streamed:
            call.meta = {**call.meta, "snapshot_arguments": full}

    def _tool_done(self, call: CallState) -> None:
        """Close a call: one ``tool_call.done`` with its whole raw arguments."""
        if call.done:
            return
        call.done = True
        self._out.append(
            _CALL_DONE(
                self.stream_id,
                self._seq,
                self._at,
                self._meta(call.meta or None),
                output=call.output,
                call_index=call.call_index,
                call_id=call.call_id,
                name=call.name,
                arguments=call.arguments,
            )
        )

    def _close_calls(self, output: int | None = None) -> None:
        """Close every open call (of one output, or all)."""
        for state in self._outputs.values():
            if output is None or state.index == output:
                for call in state.calls:
                    if not call.done:
                        self._tool_done(call)

    def _citation(self, output: int, meta: dict[str, Any] | None = None, **fields: Any) -> None:
        if output not in self._outputs:
            self._output(output)
        self._out.append(
            _CITATION(
                self.stream_id,
                self._seq,
                self._at,
                self._meta(meta),
                output=output,
                **fields,
            )
        )

    def _finish_reason(
        self,
        output: int,
        raw_reason: str | None,
        reason: FinishReason | None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Record how an output ended (``meta`` rides on its ``finish``, e.g. content-filter
        results); ``finish`` itself is emitted at the end of the stream."""
        state = self._output(output)
        state.raw_reason = raw_reason
        state.reason = reason
        if meta:
            state.finish_meta = meta

    def _usage(self, values: dict[str, int | None], raw: Any, *, new_message: bool = False) -> None:
        """Record a provider usage report and emit the cumulative totals when they changed."""
        if new_message:
            self.usage.new_message()
        self.usage.report(values, raw)
        totals = self.usage.totals()
        if totals == self._last_usage or all(v is None for v in totals.values()):
            return
        self._last_usage = totals
        self._out.append(
            _USAGE(
                self.stream_id,
                self._seq,
                self._at,
                self._meta(None),
                raw=raw,
                **totals,
            )
        )

    def _provider_event(self, name: str, data: Any, meta: dict[str, Any] | None = None) -> None:
        """Pass an unmapped provider message through, when the caller opted in."""
        if self.provider_events:
            self._out.append(
                _PROVIDER_EVENT(
                    self.stream_id,
                    self._seq,
                    self._at,
                    self._meta(meta),
                    name=name,
                    data=data,
                )
            )

    def _fail(
        self,
        message: str,
        *,
        code: str | None = None,
        error_type: str | None = None,
        status: int | None = None,
        body: Any = None,
    ) -> None:
        """The provider reported an error inside the stream: close every output with
        ``finish(reason="error")`` and raise :class:`ProviderError` (the operator delivers
        everything emitted before it, then ``on_error``)."""
        for state in self._outputs.values():
            if state.reason is None or state.reason == "stop":
                state.reason = "error"
                state.raw_reason = code or error_type or state.raw_reason
        self._close_outputs()
        self._ended = True
        raise ProviderError(
            f"{self.wire} stream reported an error: {message}" + (f" (code {code})" if code else ""),
            code=code,
            error_type=error_type,
            status=status,
            body=body,
        )

    def _message_boundary(self) -> None:
        """A new provider message begins in a stream that joins several (Anthropic messages,
        Responses responses): the calls made before it were answered already, so only calls
        made after it turn an output's ``stop`` into ``tool_calls``."""
        for state in self._outputs.values():
            state.calls_mark = len(state.calls)

    def _close_outputs(self) -> None:
        self._close_calls()
        for index in sorted(self._outputs):
            state = self._outputs[index]
            reason = state.reason
            if reason == "stop" and len(state.calls) > state.calls_mark:
                reason = "tool_calls"
            self._out.append(
                _FINISH(
                    self.stream_id,
                    self._seq,
                    self._at,
                    state.finish_meta or {},
                    output=index,
                    reason=reason,
                    raw_reason=state.raw_reason,
                )
            )
