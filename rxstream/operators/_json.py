"""parse_json(): parse the JSON an output's text or a tool call's arguments carry, as it streams."""

from __future__ import annotations

import datetime
import types
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union, cast, get_args, get_origin

import reactivex
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from reactivex import Observable, abc
from reactivex.scheduler import CurrentThreadScheduler

from rxstream._errors import JsonError, LimitExceededError, RxStreamError
from rxstream._events import (
    Event,
    EventBase,
    Finish,
    JsonPartial,
    JsonTarget,
    JsonValue,
    StreamEnd,
    StreamRestart,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    event_builder,
    make_event,
)
from rxstream._limits import DEFAULT_LIMITS, Limits, check_limits
from rxstream.operators._json_partial import deep_copy
from rxstream.operators._json_schema import SchemaViolation, compile_json_schema
from rxstream.operators._json_stream import Report, new_document
from rxstream.operators._lift import lift

__all__ = ["JsonAssembler", "JsonTargetsCore", "parse_json", "partial_model"]

_TEXT = -1  # the target key of an output's text (tool calls use their call_index)
_JSON_TYPES = frozenset(("json_schema", "json_object"))
_Clock = Callable[[], datetime.datetime]
_Validators = tuple[Callable[[Any], Any], Callable[[Any], Any]]  # a compiled JSON Schema


_PARTIAL = event_builder(JsonPartial)


def _last_spine_copy(value: Any) -> Any:
    """Copy the containers along the last child at each level (where a stream goes on)."""
    if isinstance(value, dict):
        copied: dict[str, Any] = dict(cast(dict[str, Any], value))
        if copied:
            key = next(reversed(copied))
            copied[key] = _last_spine_copy(copied[key])
        return copied
    if isinstance(value, list):
        items: list[Any] = list(cast(list[Any], value))
        if items:
            items[-1] = _last_spine_copy(items[-1])
        return items
    return value


def _at(value: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


# -- the derived all-optional model for partial values ----------------------------------------

_PARTIAL_MODELS: dict[type[BaseModel], type[BaseModel]] = {}
_BUILDING: set[type[BaseModel]] = set()


def _partial_type(annotation: Any) -> Any:
    tp: Any = annotation
    if isinstance(annotation, type) and issubclass(tp, BaseModel):
        if tp in _BUILDING:
            # A model that contains itself: partial validation below this depth is not worth a
            # forward reference; any value is accepted there.
            return Any
        return partial_model(tp)
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is None or not args:
        return annotation
    if origin in (Union, types.UnionType):
        return Union[tuple(_partial_type(a) for a in args)]  # noqa: UP007 - built at run time
    if origin is list:
        item: Any = _partial_type(args[0])
        built: Any = list[item]
        return built
    if origin is dict and len(args) == 2:
        entry: Any = _partial_type(args[1])
        mapping: Any = dict[args[0], entry]
        return mapping
    if origin is tuple:
        items: Any = tuple(_partial_type(a) for a in args)
        row: Any = tuple[items]
        return row
    return annotation


def partial_model(model: type[BaseModel]) -> type[BaseModel]:
    """The model ``parse_json()`` validates partial values against: every field optional.

    Every field of ``model`` becomes ``T | None = None`` at every depth (nested models, lists
    and dicts of them, unions), keeping aliases, so any prefix state of a valid value validates.
    Built once per model and cached.
    """
    cached = _PARTIAL_MODELS.get(model)
    if cached is not None:
        return cached
    _BUILDING.add(model)
    try:
        fields: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            annotation = _partial_type(info.annotation)
            fields[name] = (annotation | None, Field(default=None, alias=info.alias))
        extra = model.model_config.get("extra")
        config = ConfigDict(extra=extra) if extra is not None else ConfigDict()
        config["populate_by_name"] = True
        built: type[BaseModel] = create_model(f"Partial{model.__name__}", __config__=config, **fields)
    finally:
        _BUILDING.discard(model)
    _PARTIAL_MODELS[model] = built
    return built


# -- the pure core ------------------------------------------------------------------------------


def _json_requested(start: StreamStart) -> bool:
    """Whether the request (or what the provider echoed) asked for a JSON answer."""
    request = start.request or {}
    fmt = request.get("response_format")
    if isinstance(fmt, dict) and cast(dict[str, Any], fmt).get("type") in _JSON_TYPES:
        return True
    text = request.get("text")
    if isinstance(text, dict):
        fmt = cast(dict[str, Any], text).get("format")
        if isinstance(fmt, dict) and cast(dict[str, Any], fmt).get("type") in _JSON_TYPES:
            return True
    config = request.get("generationConfig") or request.get("generation_config")
    if isinstance(config, dict):
        config = cast(dict[str, Any], config)
        mime = config.get("responseMimeType") or config.get("response_mime_type")
        if mime == "application/json":
            return True
    fmt = request.get("output_format")
    if isinstance(fmt, dict) and cast(dict[str, Any], fmt).get("type") == "json_schema":
        return True
    fmt = start.meta.get("response_format")
    return isinstance(fmt, dict) and cast(dict[str, Any], fmt).get("type") in _JSON_TYPES


class _Target:
    """One JSON document being parsed: an output's text or one tool call's arguments."""

    __slots__ = ("doc", "fed", "feed", "last_snapshot", "model", "next_mark", "stopped")

    def __init__(self, model: JsonTarget, every: int, now: datetime.datetime | None, max_depth: int) -> None:
        self.model = model
        self.doc = new_document(max_depth=max_depth)
        self.feed = self.doc.feed  # one attribute read per delta, not two
        self.fed = 0  # bytes fed so far
        self.next_mark = every  # bytes at which the next snapshot is due
        self.last_snapshot = now  # when the last snapshot was taken (time cadence)
        self.stopped = False  # invalid JSON or finished: ignore what follows


class JsonTargetsCore:
    """The pure core of ``parse_json()``: one JSON document per target.

    Events pass through unchanged; the ``json.partial`` / ``json.value`` events a delta causes
    follow it (before ``stream.end``, which stays last), with its ``stream_id``, ``seq`` and ``at``.

    Args:
        schema: a pydantic model class or a ``TypeAdapter`` to validate complete values, or a
            pair of validators ``(validate, validate_partial)`` (a compiled JSON schema), or None.
        targets: ``"auto"`` (text when the request asked for JSON, plus tool calls), ``"text"``
            (text and tool calls) or ``"tools"`` (tool calls only).
        partial: emit ``json.partial`` events (else only ``json.value``).
        every: bytes of a target between snapshots (``every_time`` None), ignored otherwise.
        every_time: time between snapshots, read on ``clock``.
        clock: the scheduler's clock (needed with ``every_time``).
        limits: ``max_json_depth`` bounds each document's nesting; crossing it fails the stream
            with :class:`~rxstream.LimitExceededError` after the delta that crossed it.
    """

    failure: RxStreamError | None = None

    def __init__(
        self,
        *,
        schema: type[BaseModel] | TypeAdapter[Any] | _Validators | None = None,
        targets: Literal["auto", "text", "tools"] = "auto",
        partial: bool = True,
        every: int = 256,
        every_time: datetime.timedelta | None = None,
        clock: _Clock | None = None,
        limits: Limits | None = None,
    ) -> None:
        self._max_depth = (DEFAULT_LIMITS if limits is None else limits).max_json_depth
        self._validate: Callable[[Any], Any] | None = None
        self._validate_partial: Callable[[Any], Any] | None = None
        if isinstance(schema, TypeAdapter):
            self._validate = schema.validate_python
        elif isinstance(schema, tuple):
            self._validate, self._validate_partial = schema
        elif schema is not None:
            self._validate = schema.model_validate
            self._validate_partial = partial_model(schema).model_validate
        self._targets_mode = targets
        self._text = targets == "text"
        self._partial = partial
        # Partial events without a time cadence: a delta's one report needs no clock read.
        self._by_bytes = partial and every_time is None
        self._every = every
        self._every_time = every_time
        self._clock = clock
        self._targets: dict[tuple[int, int], _Target] = {}
        self._latest: EventBase | None = None

    def feed(self, event: Event) -> list[Event]:
        """Pass ``event`` on, followed by the JSON events it caused."""
        self._latest = event
        # Deltas are the hot path: one call, fields read from __dict__ (pydantic's __getattr__
        # makes each attribute read several times slower).
        kind = type(event)
        if kind is ToolCallDelta:
            d = event.__dict__
            key = (d["output"], d["call_index"])
            text = d["arguments_delta"]
        elif kind is TextDelta:
            if not self._text:
                return [event]
            d = event.__dict__
            key = (d["output"], _TEXT)
            text = d["text"]
        else:
            return self._other(event)
        target = self._targets.get(key)
        if target is None:
            target = self._target(*key)
        out: list[Event] = [event]
        if not target.stopped:
            self._feed(target, text, d, out)
        return out

    def _other(self, event: Event) -> list[Event]:
        """Everything but a delta: ends, restarts, the request's format."""
        out: list[Event] = [event]
        if isinstance(event, ToolCallDone):
            target = self._target(event.output, event.call_index)
            if target.fed == 0 and event.arguments and not target.stopped:
                # The arguments came only with the done event: nothing was streamed.
                self._feed(target, event.arguments, event.__dict__, out)
            self._end(target, event.__dict__, "truncated: the stream ended inside the JSON value (tool call done)", out)
            return out
        if isinstance(event, Finish):
            reason = event.reason or event.raw_reason or "unknown"
            message = f"truncated: the stream ended inside the JSON value (finish reason {reason})"
            for key, target in list(self._targets.items()):
                if key[0] == event.output:
                    self._end(target, event.__dict__, message, out)
            return out
        if isinstance(event, StreamEnd):
            out = self._end_all(event.__dict__)
            out.append(event)
            return out
        if isinstance(event, StreamStart):
            self._text = self._targets_mode == "text" or (self._targets_mode == "auto" and _json_requested(event))
        elif isinstance(event, StreamRestart):
            # Consumers discard everything before a restart; so do the parsers.
            self._targets.clear()
        return out

    def flush(self) -> list[Event]:
        """Report what is still open when the stream completes without ``stream.end``."""
        latest = self._latest
        return [] if latest is None else self._end_all(latest.__dict__)

    # -- per target ---------------------------------------------------------------------------

    def _target(self, output: int, key: int) -> _Target:
        target = self._targets.get((output, key))
        if target is None:
            model = (
                JsonTarget(kind="text", output=output)
                if key == _TEXT
                else JsonTarget(kind="tool_call", output=output, call_index=key)
            )
            now = self._clock() if self._clock is not None and self._every_time is not None else None
            target = self._targets[(output, key)] = _Target(model, self._every, now, self._max_depth)
        return target

    def _end_all(self, cause: Mapping[str, Any]) -> list[Event]:
        out: list[Event] = []
        message = "truncated: the stream ended inside the JSON value (no finish reason)"
        for target in list(self._targets.values()):
            self._end(target, cause, message, out)
        return out

    def _feed(self, target: _Target, text: str, cause: Mapping[str, Any], out: list[Event]) -> None:
        """Feed a delta's text (``cause`` is the delta's ``__dict__``) and add what it caused."""
        if not text:
            return
        fed = target.fed = target.fed + (len(text) if text.isascii() else len(text.encode()))
        try:
            reports = target.feed(text)
        except JsonError as exc:
            self._invalid(target, exc, cause, out)
            return
        except LimitExceededError as exc:
            # Unlike invalid JSON, which only ends its target, a limit ends the stream: the
            # delta (already in out) goes first, then on_error.
            target.stopped = True
            self.failure = exc
            return
        if reports is None:
            return
        if len(reports) == 1 and self._by_bytes and fed < target.next_mark:
            path, op, value, completed, _, complete, _ = reports[0]
            if not complete:
                # The usual delta: one change, no snapshot due.
                out.append(
                    _PARTIAL(cause["stream_id"], cause["seq"], cause["at"], {}, target.model, value, path, op, completed, None, None)
                )
                return
        self._emit(target, reports, cause, out)

    def _end(self, target: _Target, cause: Mapping[str, Any], message: str, out: list[Event]) -> None:
        if target.stopped:
            return
        target.stopped = True
        doc = target.doc
        try:
            reports = doc.finish()
        except JsonError as exc:
            self._invalid(target, exc, cause, out)
            return
        except LimitExceededError as exc:
            self.failure = exc
            return
        if reports is not None:
            self._emit(target, reports, cause, out)
        if doc.truncated:
            out.append(self._value(target, cause, deep_copy(doc.value), truncated=message))
        elif doc.value_count == 0 and target.model.kind == "tool_call":
            # A call with no argument text takes no arguments: its value is the empty object.
            out.append(self._value(target, cause, {}))

    def _invalid(self, target: _Target, exc: JsonError, cause: Mapping[str, Any], out: list[Event]) -> None:
        target.stopped = True
        out.append(
            make_event(
                JsonValue,
                stream_id=cause["stream_id"],
                seq=cause["seq"],
                at=cause["at"],
                target=target.model,
                error=exc.message,
            )
        )

    def _emit(self, target: _Target, reports: list[Report], cause: Mapping[str, Any], out: list[Event]) -> None:
        last = reports[-1]
        for report in reports:
            if self._partial:
                snapshot: Any = None
                parsed: Any = None
                if report is last and not report.complete and self._snapshot_due(target):
                    snapshot = target.doc.snapshot()
                    if self._validate_partial is not None:
                        try:
                            parsed = self._validate_partial(snapshot)
                        except (ValidationError, SchemaViolation):
                            parsed = None
                out.append(
                    _PARTIAL(
                        cause["stream_id"],
                        cause["seq"],
                        cause["at"],
                        {},
                        target.model,
                        report.value,
                        report.path,
                        report.op,
                        report.completed,
                        snapshot,
                        parsed,
                    )
                )
            if report.complete:
                out.append(self._value(target, cause, report.final))

    def _snapshot_due(self, target: _Target) -> bool:
        every_time = self._every_time
        if every_time is not None and self._clock is not None:
            now = self._clock()
            last = target.last_snapshot
            if last is not None and now - last < every_time:
                return False
            target.last_snapshot = now
            return True
        if target.fed < target.next_mark:
            return False
        target.next_mark = target.fed + self._every
        return True

    def _value(self, target: _Target, cause: Mapping[str, Any], value: Any, truncated: str | None = None) -> Event:
        parsed: Any = None
        error: str | None = truncated
        if truncated is None and self._validate is not None:
            try:
                parsed = self._validate(value)
            except (ValidationError, SchemaViolation) as exc:
                error = str(exc)
        return make_event(
            JsonValue,
            stream_id=cause["stream_id"],
            seq=cause["seq"],
            at=cause["at"],
            target=target.model,
            value=value,
            parsed=parsed,
            error=error,
            truncated=truncated is not None,
        )


# -- the consumer helper -----------------------------------------------------------------------


class JsonAssembler:
    """Rebuilds each target's value from ``json.partial`` events, for consumers.

    The value returned shares its completed parts with the events: read it, do not mutate it.
    An append to a string costs the string's length (Python strings are immutable); for very
    long strings read the events' ``snapshot`` or the ``json.value`` instead. Call
    :meth:`reset` on ``stream.restart``.

    Example:
        >>> assembler = JsonAssembler()
        >>> for event in events:  # doctest: +SKIP
        ...     if event.type == "json.partial":
        ...         value = assembler.feed(event)
    """

    def __init__(self) -> None:
        self._values: dict[JsonTarget, Any] = {}

    def feed(self, event: JsonPartial) -> Any:
        """Apply the event's change and return the target's value so far (live: do not mutate)."""
        target = event.target
        value = self._values.get(target)
        op = event.op
        path = event.path
        if op is None or path is None:
            return value
        # The event's value may be shared with other consumers: copy what later changes touch.
        new = _last_spine_copy(event.value)
        if not path:
            value = new if op == "set" else value + new
        else:
            parent = _at(value, tuple(path[:-1]))
            key = path[-1]
            if op == "append":
                parent[key] += new
            elif isinstance(key, int) and key == len(parent):
                parent.append(new)
            else:
                parent[key] = new
        self._values[target] = value
        return value

    def value(self, target: JsonTarget) -> Any:
        """The value so far of ``target`` (None before any event)."""
        return self._values.get(target)

    def reset(self) -> None:
        """Forget every value (a ``stream.restart`` replaced what came before)."""
        self._values.clear()


# -- the operator --------------------------------------------------------------------------------


def _schema_arg(schema: object) -> type[BaseModel] | TypeAdapter[Any] | _Validators | None:
    if schema is None or isinstance(schema, TypeAdapter):
        return cast(TypeAdapter[Any] | None, schema)
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema
    if isinstance(schema, Mapping):
        return compile_json_schema(cast(Mapping[str, Any], schema))  # ValueError when invalid
    raise ValueError(
        f"parse_json(schema=...) expected a pydantic BaseModel subclass, a TypeAdapter, a JSON "
        f"Schema dict or None, got {schema!r}"
    )


def _wrap(exc: Exception) -> Exception:
    error = JsonError(f"validating a JSON value raised {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def parse_json(
    *,
    schema: type[BaseModel] | TypeAdapter[Any] | Mapping[str, Any] | None = None,
    targets: Literal["auto", "text", "tools"] = "auto",
    partial: bool = True,
    every: int | datetime.timedelta = 256,
    scheduler: abc.SchedulerBase | None = None,
    limits: Limits | None = None,
) -> Callable[[Observable[Event]], Observable[Event]]:
    """Parse the JSON of each output's text and each tool call's arguments as it streams.

    Every event passes through unchanged and in order. After the delta that caused them come:

    - ``json.partial`` (with ``partial=True``): at most one per delta and target, only when the
      value changed or parts of it became final. ``path``/``op``/``value`` is one change
      equivalent to the delta's changes (apply it, or use :class:`JsonAssembler`);
      ``completed_paths`` lists the paths that became final; ``snapshot`` (a copy of the value so
      far) rides on it at most every ``every`` bytes of the target, or every ``every`` of time on
      the scheduler's clock (on the first ``json.partial`` after the interval); with a model
      schema, ``parsed`` validates the snapshot against :func:`partial_model`, with a JSON
      Schema dict against the schema with every ``required``/minimum count relaxed at every
      depth (None if it fails).
    - ``json.value``: each complete top-level value, ``parsed`` by the schema (``error`` holds the
      validation message when that fails). A target still inside a value at its ``finish``,
      ``tool_call.done`` or the end of the stream gets a ``json.value`` with the value so far,
      ``truncated=True`` and an ``error`` naming the finish reason. A tool call with no argument
      text gets the value ``{}``.

    Targets: tool calls always; an output's text with ``targets="text"``, or with ``"auto"``
    when ``stream.start`` shows JSON was asked (OpenAI ``response_format``, Responses
    ``text.format``, Gemini ``responseMimeType``, Anthropic ``output_format``, or the
    ``response_format`` a provider echoed in ``meta``); ``"tools"``: tool calls only. JSON
    events take the ``stream_id``, ``seq`` and ``at`` of the event that caused them.

    .. marble::
        :alt: parse_json
        -s-a-----b-------f-e-|
        [ parse_json(targets="text") ]
        -s-(a,p)-(b,q,v)-f-e-|

    (``s`` stream.start, ``a`` / ``b`` the text deltas ``'{"x": '`` / ``'1}'``, ``p`` / ``q``
    their json.partial, ``v`` the json.value ``{"x": 1}``, ``f`` finish, ``e`` stream.end.)

    Args:
        schema: validates complete values: a pydantic model class, a ``TypeAdapter``, or a JSON
            Schema dict (any draft jsonschema knows, by ``$schema``; 2020-12 by default;
            ``format`` is an annotation only). With a dict, ``parsed`` is the value itself.
        targets: which documents to parse (see above).
        partial: emit ``json.partial`` events.
        every: snapshot cadence: bytes of a target (an int > 0) or a positive ``timedelta``.
        scheduler: clock for a ``timedelta`` cadence; defaults to the subscribe-time scheduler,
            then the current-thread scheduler.
        limits: ``max_json_depth`` bounds the nesting of each target's JSON (default
            :class:`~rxstream.Limits`: 512).

    Errors:
        Invalid JSON in a target does not fail the stream: it is reported as a ``json.value``
        whose ``error`` is the parser's message, and that target is no longer parsed (its text
        still passes). JSON nested deeper than ``limits.max_json_depth`` fails the stream with
        :class:`LimitExceededError` (``limit="max_json_depth"``), just after the delta that
        crossed it. A validator that raises something other than a validation error fails the
        stream with :class:`JsonError` (cause attached). Upstream errors pass unchanged.

    Raises:
        ValueError: at call time, for a schema that is not a model class, ``TypeAdapter`` or
            valid JSON Schema, an unknown ``targets``, ``every`` not positive, or ``limits``
            that is not a :class:`~rxstream.Limits`.
    """
    checked = _schema_arg(schema)
    chosen = check_limits(limits, "parse_json")
    if targets not in ("auto", "text", "tools"):
        raise ValueError(f"parse_json(targets=...) expected 'auto', 'text' or 'tools', got {targets!r}")
    if not isinstance(partial, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"parse_json(partial=...) expected a bool, got {partial!r}")
    if isinstance(every, datetime.timedelta):
        if every <= datetime.timedelta(0):
            raise ValueError(f"parse_json(every=...) expected a positive timedelta, got {every!r}")
    elif isinstance(every, bool) or not isinstance(every, int) or every <= 0:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"parse_json(every=...) expected a number of bytes > 0 or a timedelta, got {every!r}")
    if isinstance(checked, type):
        partial_model(checked)  # build (and cache) it now: a model it cannot derive fails here

    if isinstance(every, int):
        every_bytes = every

        def make_core() -> JsonTargetsCore:
            return JsonTargetsCore(
                schema=checked, targets=targets, partial=partial, every=every_bytes, limits=chosen
            )

        return lift(make_core, wrap_error=_wrap)

    interval = every

    def operator(source: Observable[Event]) -> Observable[Event]:
        def subscribe(
            observer: abc.ObserverBase[Event], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            clock_source = scheduler or subscribe_scheduler or CurrentThreadScheduler.singleton()

            def clock() -> datetime.datetime:
                return clock_source.now

            def make_core() -> JsonTargetsCore:
                return JsonTargetsCore(
                    schema=checked,
                    targets=targets,
                    partial=partial,
                    every_time=interval,
                    clock=clock,
                    limits=chosen,
                )

            return lift(make_core, wrap_error=_wrap)(source).subscribe(observer, scheduler=subscribe_scheduler)

        return reactivex.Observable(subscribe)

    return operator
