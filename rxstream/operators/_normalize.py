"""normalize(): provider chunks of any wire in, one typed ordered event stream out."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, get_args

from reactivex import Observable

from rxstream._chunk import ProviderChunk, Wire, detect_wire
from rxstream._errors import ProtocolError, RxStreamError
from rxstream._events import Event
from rxstream._limits import Limits, check_limits
from rxstream.operators._lift import lift
from rxstream.operators._wires._base import Normalizer
from rxstream.operators._wires.anthropic_messages import AnthropicMessagesNormalizer
from rxstream.operators._wires.gemini import GeminiNormalizer
from rxstream.operators._wires.openai_chat import OpenAIChatNormalizer
from rxstream.operators._wires.openai_responses import OpenAIResponsesNormalizer

__all__ = ["NORMALIZERS", "StreamNormalizer", "normalize"]

NORMALIZERS: dict[Wire, type[Normalizer]] = {
    "openai.chat": OpenAIChatNormalizer,
    "openai.responses": OpenAIResponsesNormalizer,
    "anthropic.messages": AnthropicMessagesNormalizer,
    "gemini": GeminiNormalizer,
}

# Payloads that name no wire (a ping, a bare error object) wait for one that does; past this
# many the stream is not one we know.
_MAX_UNDETECTED = 64


class StreamNormalizer:
    """The pure core of ``normalize()``: finds the wire, then delegates to its Normalizer.

    Once the wire is known, ``delegate`` (and ``feed``/``flush``) are the wire Normalizer's, so
    detection costs nothing per chunk after the first.
    """

    def __init__(
        self,
        *,
        wire: Wire | None,
        stream_id: str | None,
        provider_events: bool,
        include_raw: bool,
        limits: Limits | None = None,
    ) -> None:
        self._wire: Wire | None = wire
        self._options: dict[str, Any] = {
            "stream_id": stream_id or uuid.uuid4().hex,
            "provider_events": provider_events,
            "include_raw": include_raw,
            "limits": limits,
        }
        self._pending: list[ProviderChunk] = []
        self._inner: Normalizer | None = None
        self.delegate: Normalizer | None = None
        self._failure: RxStreamError | None = None
        self.feed: Callable[[ProviderChunk], list[Event]] = self._detect
        self.flush: Callable[[], list[Event]] = self._flush_undetected

    @property
    def failure(self) -> RxStreamError | None:
        """Why the stream failed, once it has."""
        inner = self._inner
        return inner.failure if inner is not None else self._failure

    def _detect(self, chunk: ProviderChunk) -> list[Event]:
        wire = self._wire if self._wire is not None else chunk.wire
        if wire is None and chunk.kind == "data":
            wire = detect_wire(chunk.event, chunk.data)
        if wire is None:
            self._pending.append(chunk)
            if len(self._pending) > _MAX_UNDETECTED:
                self._failure = self._undetected()
            return []
        inner = self._inner = self.delegate = NORMALIZERS[wire](**self._options)
        self.feed = inner.feed
        self.flush = inner.flush
        out: list[Event] = []
        for waiting in self._pending:
            out.extend(inner.feed(waiting))
        self._pending.clear()
        out.extend(inner.feed(chunk))
        return out

    def _flush_undetected(self) -> list[Event]:
        if self._pending and any(c.kind == "data" for c in self._pending):
            self._failure = self._undetected()
            return []
        # Nothing but an open chunk (or nothing at all): an empty stream of an unknown wire.
        self._failure = ProtocolError(
            "stream ended before any provider payload: expected at least one chunk of a known wire"
        )
        return []

    def _undetected(self) -> ProtocolError:
        first = next((c for c in self._pending if c.kind == "data"), None)
        shown = repr(first.data)[:200] if first is not None else "nothing"
        return ProtocolError(
            "cannot tell the wire format: expected OpenAI chat, OpenAI Responses, Anthropic Messages "
            f"or Gemini payloads, got {shown}; pass normalize(wire=...)"
        )


def _wrap(exc: Exception) -> Exception:
    error = ProtocolError(f"normalize() failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def normalize(
    *,
    wire: Wire | None = None,
    stream_id: str | None = None,
    provider_events: bool = False,
    include_raw: bool = False,
    limits: Limits | None = None,
) -> Callable[[Observable[ProviderChunk]], Observable[Event]]:
    """Turn a source's provider chunks into rxstream events.

    The wire is taken from ``wire=``, else from the chunks (sources set it), else detected from
    the first payload that names it. Every provider-level duplicate (re-sent tool headers or
    arguments, done/snapshot messages, repeated content-free chunks) is removed here; repeated
    content is real and kept.

    .. marble::
        :alt: normalize
        -o-a-b-c-|
        [ normalize() ]
        ---(sa)-b-c-(fe|)

    ``o`` the open chunk, ``a b c`` payloads; ``s`` is ``stream.start`` (emitted with the first
    payload, so it can name the model and response id), ``f`` one ``finish`` per output and
    ``e`` ``stream.end``.

    Args:
        wire: force a wire family instead of detecting it.
        stream_id: the correlation id every event carries (default: a fresh one per subscription).
        provider_events: pass provider messages with no mapping through as ``provider.event``.
        include_raw: attach each event's whole provider payload as ``meta["raw"]``.
        limits: the bounds on tool-call arguments (``max_tool_arguments_bytes`` per call),
            outputs (``max_outputs``) and tool calls (``max_tool_calls``) per stream; default
            :class:`~rxstream.Limits`.

    Returns:
        An operator ``Observable[ProviderChunk] -> Observable[Event]``; all state is per
        subscription.

    Errors:
        ``ProviderError`` when the provider reports an error inside the stream (after every
        event received before it, including one ``finish`` per output with reason ``error``);
        ``ProtocolError`` when the payloads are no known wire or break its rules;
        ``LimitExceededError`` when a limit is crossed (after every event before it); upstream
        errors pass through unchanged.

    Raises:
        ValueError: at call time, for an unknown ``wire`` or ``limits`` that is not a
            :class:`~rxstream.Limits`.
    """
    if wire is not None and wire not in get_args(Wire):
        raise ValueError(f"wire must be one of {', '.join(get_args(Wire))}, got {wire!r}")
    chosen = check_limits(limits, "normalize")

    def make() -> StreamNormalizer:
        return StreamNormalizer(
            wire=wire,
            stream_id=stream_id,
            provider_events=provider_events,
            include_raw=include_raw,
            limits=chosen,
        )

    return lift(make, wrap_error=_wrap)
