"""The event vocabulary: every kind `normalize()` and later operators emit, as frozen models.

Every event carries ``stream_id`` (correlation id), ``seq`` (position of the provider message it
came from; never decreases along a stream), ``at`` (ns, the clock of the chunk that caused it) and
``meta`` (small provider details and the user's tags; read-only: several events may share one
mapping, so an operator that adds to it builds a new one). ``Event`` is the discriminated union over
the dotted ``type`` literal; ``EVENT_ADAPTER`` validates and serialises it.

Events built by rxstream itself from already-typed values go through :func:`make_event`, which
skips re-validation (about 4x cheaper than validating, see ``benchmarks/``); events built by users
validate as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "CONTENT_TYPES",
    "EVENT_ADAPTER",
    "EVENT_TYPES",
    "Citation",
    "Event",
    "EventBase",
    "Finish",
    "FinishReason",
    "JsonPartial",
    "JsonTarget",
    "JsonValue",
    "Metrics",
    "ProviderEvent",
    "ReasoningDelta",
    "RefusalDelta",
    "StreamEnd",
    "StreamRestart",
    "StreamStart",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallDone",
    "ToolCallStart",
    "Usage",
    "UsageSource",
    "event_builder",
    "make_event",
]

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "other"]
UsageSource = Literal["provider", "estimated", "mixed"]


class EventBase(BaseModel):
    """Fields every event has."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stream_id: str
    seq: int
    at: int
    meta: dict[str, Any] = Field(default_factory=dict[str, Any])


class StreamStart(EventBase):
    """First event of every stream: who answered and what was asked.

    Its ``at`` is when the response headers arrived (the source's open chunk; the first payload's
    arrival when a source has no response head). The other marks, ns on the same clock:
    ``request_sent_at`` (the request went out; ``None`` for a replay of a raw recording) and
    ``first_event_at`` (the first provider payload arrived, whatever it carried).
    ``server_address``/``server_port`` name the host that answered (never a path or a query).
    """

    type: Literal["stream.start"] = "stream.start"
    provider: str | None = None
    wire: str
    model: str | None = None
    request_id: str | None = None
    response_id: str | None = None
    request: dict[str, Any] | None = None
    request_sent_at: int | None = None
    first_event_at: int | None = None
    server_address: str | None = None
    server_port: int | None = None


class TextDelta(EventBase):
    """A piece of the visible answer text of one output."""

    type: Literal["text.delta"] = "text.delta"
    output: int = 0
    text: str


class ReasoningDelta(EventBase):
    """A piece of reasoning / thinking text; ``signature`` when the provider signs it."""

    type: Literal["reasoning.delta"] = "reasoning.delta"
    output: int = 0
    text: str
    signature: str | None = None


class RefusalDelta(EventBase):
    """A piece of a refusal message."""

    type: Literal["refusal.delta"] = "refusal.delta"
    output: int = 0
    text: str


class ToolCallStart(EventBase):
    """A client tool call begins; ``call_index`` is its ordinal within the output."""

    type: Literal["tool_call.start"] = "tool_call.start"
    output: int = 0
    call_index: int
    call_id: str | None = None
    name: str


class ToolCallDelta(EventBase):
    """A fragment of a tool call's raw JSON arguments."""

    type: Literal["tool_call.delta"] = "tool_call.delta"
    output: int = 0
    call_index: int
    call_id: str | None = None
    arguments_delta: str


class ToolCallDone(EventBase):
    """A tool call is complete; ``arguments`` is the whole raw argument text as streamed."""

    type: Literal["tool_call.done"] = "tool_call.done"
    output: int = 0
    call_index: int
    call_id: str | None = None
    name: str
    arguments: str


class Citation(EventBase):
    """A source or annotation attached to an output."""

    type: Literal["citation"] = "citation"
    output: int = 0
    kind: str | None = None
    url: str | None = None
    title: str | None = None
    cited_text: str | None = None
    start_index: int | None = None
    end_index: int | None = None


class JsonTarget(BaseModel):
    """Which JSON document an event is about: an output's text or one tool call's arguments."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["text", "tool_call"]
    output: int = 0
    call_index: int | None = None


class JsonPartial(EventBase):
    """The partial JSON value of a target changed (from ``parse_json``).

    ``path``/``op``/``value`` is one change that brings the value rebuilt so far up to date
    (``JsonAssembler`` applies it); ``op`` is None when only ``completed_paths`` changed.
    ``snapshot`` is a copy of the whole value so far, on some events only (``every``);
    ``parsed`` is that snapshot validated against the schema with every field optional.
    """

    type: Literal["json.partial"] = "json.partial"
    target: JsonTarget
    value: Any = None
    path: list[str | int] | None = None
    op: Literal["set", "append"] | None = None
    completed_paths: list[list[str | int]] = Field(default_factory=list[list[str | int]])
    snapshot: Any = None
    parsed: Any = None


class JsonValue(EventBase):
    """A complete JSON value of a target, validated when a schema was given.

    ``error`` is the validation or JSON syntax error; ``truncated`` marks a value the stream
    ended inside of (``value`` holds what arrived).
    """

    type: Literal["json.value"] = "json.value"
    target: JsonTarget
    value: Any = None
    parsed: Any = None
    error: str | None = None
    truncated: bool = False


class Usage(EventBase):
    """Token usage: cumulative totals for the whole stream so far in one shape.

    ``input_tokens`` includes cached input (read and written), as OpenTelemetry defines it;
    ``output_tokens`` includes reasoning tokens. A field the provider never gave is ``None``.
    """

    type: Literal["usage"] = "usage"
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_write_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    source: UsageSource = "provider"
    estimator: str | None = None
    final: bool = False
    raw: Any = None


class Finish(EventBase):
    """An output ended. ``reason`` is what the caller must act on; ``raw_reason`` the provider's word."""

    type: Literal["finish"] = "finish"
    output: int = 0
    reason: FinishReason | None = None
    raw_reason: str | None = None


class Metrics(EventBase):
    """Per-stream timings from ``tap_metrics(emit=True)``, just before ``stream.end``.

    Marks are seconds from the request being sent (from the first mark the source has when it
    did not record that, e.g. a raw recording): ``ttfb`` response headers, ``first_event`` the
    first provider payload, ``ttft`` the first content (text, reasoning, refusal or tool call),
    ``first_text`` the first answer text. ``gap_*`` summarise the gaps between consecutive content
    chunks (one provider message with several content events is one chunk). ``tokens_per_s`` and
    ``chunks_per_s`` are over the generation window, first content to last content;
    ``usage_source`` says where the output token count came from.
    """

    type: Literal["metrics"] = "metrics"
    ttfb: float | None = None
    first_event: float | None = None
    ttft: float | None = None
    first_text: float | None = None
    duration: float | None = None
    events: int = 0
    chunks: int = 0
    gap_count: int = 0
    gap_min: float | None = None
    gap_p50: float | None = None
    gap_p90: float | None = None
    gap_p99: float | None = None
    gap_max: float | None = None
    gap_mean: float | None = None
    output_tokens: int | None = None
    usage_source: UsageSource | None = None
    tokens_per_s: float | None = None
    chunks_per_s: float | None = None
    finish_reasons: tuple[str, ...] = ()
    restarts: int = 0


class StreamRestart(EventBase):
    """A retry replaced everything emitted before it: consumers reset their state."""

    type: Literal["stream.restart"] = "stream.restart"
    attempt: int
    reason: str


class ProviderEvent(EventBase):
    """A provider message with no mapping, passed through when asked (``provider_events=True``)."""

    type: Literal["provider.event"] = "provider.event"
    name: str
    data: Any = None


class StreamEnd(EventBase):
    """Last event of every stream that completes, just before ``on_completed``."""

    type: Literal["stream.end"] = "stream.end"


Event = Annotated[
    StreamStart
    | TextDelta
    | ReasoningDelta
    | RefusalDelta
    | ToolCallStart
    | ToolCallDelta
    | ToolCallDone
    | Citation
    | JsonPartial
    | JsonValue
    | Usage
    | Finish
    | Metrics
    | StreamRestart
    | ProviderEvent
    | StreamEnd,
    Field(discriminator="type"),
]
"""Any rxstream event; discriminated by ``type``."""

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

CONTENT_TYPES: frozenset[str] = frozenset(
    {"text.delta", "reasoning.delta", "refusal.delta", "tool_call.start", "tool_call.delta"}
)
"""Event types that carry model output (a tool call's start carries its name). A
``reasoning.delta`` counts only when it has text: one that only brings a signature does not.
What time to first token, idle timeouts and retries call content."""

EVENT_TYPES: dict[str, type[EventBase]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        StreamStart, TextDelta, ReasoningDelta, RefusalDelta, ToolCallStart, ToolCallDelta,
        ToolCallDone, Citation, JsonPartial, JsonValue, Usage, Finish, Metrics, StreamRestart,
        ProviderEvent, StreamEnd,
    )
}
"""Event class by its ``type`` string."""

E = TypeVar("E", bound=EventBase)

_new = object.__new__
# BaseModel's own slot descriptors, called directly: object.__setattr__ would re-check the whole
# MRO on every call, a third of an event's cost on the per-chunk path.
_SLOTS = BaseModel.__dict__
_SET_DICT = _SLOTS["__dict__"].__set__
_SET_FIELDS_SET = _SLOTS["__pydantic_fields_set__"].__set__
_SET_EXTRA = _SLOTS["__pydantic_extra__"].__set__
_SET_PRIVATE = _SLOTS["__pydantic_private__"].__set__
_BUILDERS: dict[type[EventBase], Callable[..., Any]] = {}


def make_event(
    cls: type[E], /, *, stream_id: str, seq: int, at: int, meta: dict[str, Any] | None = None, **values: Any
) -> E:
    """Build an event from values rxstream already typed, without re-validating them.

    Missing optional fields take their defaults and ``meta`` a fresh dict. Only for values of
    the declared types: user-facing construction (``TextDelta(...)``) validates. Hot paths hold
    the class's :func:`event_builder` instead.
    """
    build = _BUILDERS.get(cls)
    if build is None:
        build = _BUILDERS[cls] = event_builder(cls)
    event: E = build(stream_id, seq, at, {} if meta is None else meta, **values)
    return event


_COMMON = ("stream_id", "seq", "at", "meta", "type")


def event_builder(cls: type[E]) -> Callable[..., E]:
    """A fast constructor for events built from values rxstream already typed.

    ``build(stream_id, seq, at, meta, *kind_fields)`` takes the kind's own fields positionally
    in declaration order, or by name; optional ones default as declared. A required field
    declared after an optional one (``TextDelta.text`` after ``output``) gets a placeholder
    default so the signature stays positional: callers always pass it. Generated once per class,
    like a dataclass ``__init__``, so an event costs one dict and no validation: the per-chunk
    hot path of every Normalizer.
    """
    fields = cls.model_fields
    params: list[str] = []
    namespace: dict[str, Any] = {
        "_new": _new,
        "cls": cls,
        # A set, not a frozenset: model_copy() copies it and then updates the copy.
        "FIELDS": set(fields),
        "set_dict": _SET_DICT,
        "set_fields_set": _SET_FIELDS_SET,
        "set_extra": _SET_EXTRA,
        "set_private": _SET_PRIVATE,
    }
    for name, field in fields.items():
        if name in _COMMON:
            continue
        if field.is_required():
            # Positional order must match declaration order, so a required field that follows
            # an optional one still needs a default; rxstream's callers always pass it.
            params.append(f"{name}=_REQUIRED" if any("=" in p for p in params) else name)
        elif field.default_factory is not None:
            namespace[f"_factory_{name}"] = field.default_factory
            params.append(f"{name}=None")
        else:
            namespace[f"_default_{name}"] = field.default
            params.append(f"{name}=_default_{name}")
    items: list[str] = []
    for name, field in fields.items():
        if name == "type":
            items.append(f"'type': {field.default!r}")
        elif name in _COMMON or field.default_factory is None:
            items.append(f"{name!r}: {name}")
        else:
            items.append(f"{name!r}: _factory_{name}() if {name} is None else {name}")
    namespace["_REQUIRED"] = None
    signature = ", ".join(["stream_id", "seq", "at", "meta", *params])
    source = (
        f"def build({signature}):\n"
        "    event = _new(cls)\n"
        f"    set_dict(event, {{{', '.join(items)}}})\n"
        "    set_fields_set(event, FIELDS)\n"
        "    set_extra(event, None)\n"
        "    set_private(event, None)\n"
        "    return event\n"
    )
    exec(source, namespace)  # generated from the model's own field names only
    build: Callable[..., E] = namespace["build"]
    build.__qualname__ = f"build_{cls.__name__}"
    return build
