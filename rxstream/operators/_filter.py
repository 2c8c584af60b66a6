"""Filtering and transforming an event stream: only(), drop(), where(), map_text(), redact(), tag(), split_by_stream().

Every operator here keeps the stream's order: events that pass come out in the order they went
in, so ``seq`` still never decreases. Events are frozen: an operator that changes one emits a
copy (built without re-validation, like :func:`rxstream._events.make_event`) and never touches
the input event or its ``meta`` mapping.
"""

from __future__ import annotations

import inspect
import re
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal, TypeVar, cast, get_args

from pydantic import BaseModel
from reactivex import GroupedObservable, Observable, abc
from reactivex.disposable import Disposable, SingleAssignmentDisposable

from rxstream._errors import RxStreamError
from rxstream._events import (
    EVENT_TYPES,
    Event,
    EventBase,
    ReasoningDelta,
    ToolCallDelta,
    ToolCallDone,
)
from rxstream.operators._lift import lift

__all__ = [
    "TEXT_KINDS",
    "Redactor",
    "TextKind",
    "drop",
    "map_text",
    "only",
    "redact",
    "split_by_stream",
    "tag",
    "where",
]

E = TypeVar("E", bound=EventBase)

Operator = Callable[[Observable[Event]], Observable[Event]]

TextKind = Literal["text", "reasoning", "refusal", "tool_call"]
"""A kind of streamed text: an output's answer, its reasoning, its refusal, a tool call's arguments."""

TEXT_KINDS: Final[tuple[TextKind, ...]] = get_args(TextKind)

# The delta event carrying each kind of text, and the field holding the text.
_DELTA_OF: Final[dict[str, TextKind]] = {
    "text.delta": "text",
    "reasoning.delta": "reasoning",
    "refusal.delta": "refusal",
    "tool_call.delta": "tool_call",
}
_FIELD_OF: Final[dict[str, str]] = {
    "text.delta": "text",
    "reasoning.delta": "text",
    "refusal.delta": "text",
    "tool_call.delta": "arguments_delta",
}

# -- copies of frozen events --------------------------------------------------------------------

_new = object.__new__
# BaseModel's own slot descriptors, as rxstream._events uses them: a copy costs one dict.
_SLOTS = BaseModel.__dict__
_SET_DICT = _SLOTS["__dict__"].__set__
_SET_FIELDS_SET = _SLOTS["__pydantic_fields_set__"].__set__
_SET_EXTRA = _SLOTS["__pydantic_extra__"].__set__
_SET_PRIVATE = _SLOTS["__pydantic_private__"].__set__


def _replace(event: E, name: str, value: Any) -> E:
    """A copy of ``event`` with one field changed, without re-validating (the value is typed)."""
    copy: E = _new(type(event))
    values = event.__dict__.copy()
    values[name] = value
    _SET_DICT(copy, values)
    # Shared, as event_builder shares it: pydantic copies the set before it ever changes one.
    _SET_FIELDS_SET(copy, event.__pydantic_fields_set__)
    # Events forbid extra fields and have no private attributes (as event_builder assumes).
    _SET_EXTRA(copy, None)
    _SET_PRIVATE(copy, None)
    return copy


# -- the Rx shells --------------------------------------------------------------------------------


def _wrap(name: str, what: str, exc: Exception) -> RxStreamError:
    if isinstance(exc, RxStreamError):
        return exc
    error = RxStreamError(f"{name}(): {what} raised {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def _per_event(name: str, what: str, make_step: Callable[[], Callable[[Any], Any]]) -> Operator:
    """An operator that maps each event through ``step`` (one per subscription); ``None`` drops it.

    A step that raises ends the stream with a typed error (cause attached) and disposes
    upstream; nothing is emitted after it. ``what`` names the user code the step runs, for
    the message.
    """

    def operator(source: Observable[Event]) -> Observable[Event]:
        def subscribe(
            observer: abc.ObserverBase[Event], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            step = make_step()
            upstream = SingleAssignmentDisposable()
            stopped = False
            emit = observer.on_next

            def on_next(event: Event) -> None:
                nonlocal stopped
                if stopped:
                    return
                try:
                    out = step(event)
                except Exception as exc:  # noqa: BLE001 - reported, not raised, per Rx grammar
                    stopped = True
                    upstream.dispose()
                    observer.on_error(_wrap(name, what, exc))
                    return
                if out is not None:
                    emit(out)

            def on_error(exc: Exception) -> None:
                nonlocal stopped
                if not stopped:
                    stopped = True
                    observer.on_error(exc)

            def on_completed() -> None:
                nonlocal stopped
                if not stopped:
                    stopped = True
                    observer.on_completed()

            upstream.disposable = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler)
            return upstream

        return Observable[Event](subscribe)

    return operator


# -- only / drop / where --------------------------------------------------------------------------


def _type_names(name: str, types: tuple[object, ...]) -> frozenset[str]:
    """The ``type`` strings that event classes or type strings name; checked at call time."""
    if not types:
        raise ValueError(
            f"{name}() expected at least one event type (a class or a string such as 'text.delta')"
        )
    kinds: set[str] = set()
    for given in types:
        if isinstance(given, str):
            if given not in EVENT_TYPES:
                raise ValueError(
                    f"{name}() got the unknown event type {given!r}; expected one of {', '.join(sorted(EVENT_TYPES))}"
                )
            kinds.add(given)
        elif isinstance(given, type) and issubclass(given, EventBase):
            # A base class (EventBase itself) names every kind derived from it.
            named = {kind for kind, cls in EVENT_TYPES.items() if issubclass(cls, given)}
            if not named:
                raise ValueError(f"{name}() got {given.__name__}, which is no rxstream event kind")
            kinds |= named
        else:
            raise TypeError(
                f"{name}() expected event classes or type strings such as 'text.delta', got {given!r}"
            )
    return frozenset(kinds)


def only(*types: type[EventBase] | str) -> Operator:
    """Keep only events of the given kinds.

    Kinds are event classes (``TextDelta``; a base class such as ``EventBase`` names every
    kind derived from it) or ``type`` strings (``"text.delta"``). Nothing else is kept, not even
    ``stream.start`` / ``stream.end``: downstream consumers (``collect()``) see only these.

    .. marble::
        :alt: only
        -s-a-u-b-e-|
        [ only("text.delta") ]
        ---a---b---|

    (``s`` stream.start, ``a`` / ``b`` text deltas, ``u`` usage, ``e`` stream.end.)

    Errors:
        Upstream errors pass unchanged; an item that is not an event (no ``type``) fails the
        stream with :class:`RxStreamError` (cause attached).

    Raises:
        ValueError: at call time, for no kinds, an unknown type string (the message lists the
            valid ones) or a class that is no event kind.
        TypeError: at call time, for something neither a string nor an event class.
    """
    kinds = _type_names("only", types)

    def make_step() -> Callable[[Event], Event | None]:
        def step(event: Event) -> Event | None:
            return event if event.type in kinds else None

        return step

    return _per_event("only", "reading the event's type", make_step)


def drop(*types: type[EventBase] | str) -> Operator:
    """Drop events of the given kinds; everything else passes.

    Kinds as for :func:`only`.

    .. marble::
        :alt: drop
        -s-a-u-b-e-|
        [ drop("usage") ]
        -s-a---b-e-|

    (``s`` stream.start, ``a`` / ``b`` text deltas, ``u`` usage, ``e`` stream.end.)

    Errors:
        Upstream errors pass unchanged; an item that is not an event (no ``type``) fails the
        stream with :class:`RxStreamError` (cause attached).

    Raises:
        ValueError: at call time, for no kinds, an unknown type string (the message lists the
            valid ones) or a class that is no event kind.
        TypeError: at call time, for something neither a string nor an event class.
    """
    kinds = _type_names("drop", types)

    def make_step() -> Callable[[Event], Event | None]:
        def step(event: Event) -> Event | None:
            return None if event.type in kinds else event

        return step

    return _per_event("drop", "reading the event's type", make_step)


def where(predicate: Callable[[Event], object]) -> Operator:
    """Keep the events for which ``predicate(event)`` is true.

    ``where(lambda e: e.stream_id == "a")`` picks one stream out of a merge; ``where(lambda e:
    getattr(e, "output", 0) == 0)`` one output.

    .. marble::
        :alt: where
        -s-a-b-c-e-|
        [ where(lambda e: e.type != "text.delta" or e.output == 0) ]
        -s-a---c-e-|

    (``a`` / ``c`` text of output 0, ``b`` text of output 1.)

    Errors:
        A predicate that raises, or returns an awaitable (async predicates are not supported:
        filter in the consumer instead), fails the stream with :class:`RxStreamError` (cause
        attached) and disposes upstream. Upstream errors pass unchanged.

    Raises:
        TypeError: at call time, when ``predicate`` is not callable.
    """
    if not callable(predicate):
        raise TypeError(f"where() expected a callable predicate, got {type(predicate).__name__}")

    def make_step() -> Callable[[Event], Event | None]:
        def step(event: Event) -> Event | None:
            keep = predicate(event)
            if keep is True:
                return event
            if keep is False:
                return None
            if inspect.isawaitable(keep):
                if inspect.iscoroutine(keep):
                    keep.close()
                raise TypeError(
                    f"where() expected the predicate to return a bool, got an awaitable ({type(keep).__name__}): "
                    "async predicates are not supported"
                )
            return event if keep else None

        return step

    return _per_event("where", "the predicate", make_step)


# -- map_text ------------------------------------------------------------------------------------


def _text_kinds(name: str, kinds: Iterable[TextKind] | TextKind) -> frozenset[str]:
    """The delta ``type`` strings the given text kinds name; checked at call time."""
    given: list[object] = [kinds] if isinstance(kinds, str) else list(cast(Iterable[object], kinds))
    if not given:
        raise ValueError(f"{name}(kinds=...) expected at least one of {', '.join(TEXT_KINDS)}")
    types: set[str] = set()
    for kind in given:
        if kind not in TEXT_KINDS:
            raise ValueError(f"{name}(kinds=...) expected kinds among {', '.join(TEXT_KINDS)}, got {kind!r}")
        types.add(next(t for t, k in _DELTA_OF.items() if k == kind))
    return frozenset(types)


_CallKey = tuple[str, int, int]


class _CallTexts:
    """What a tool call's deltas became, so its ``tool_call.done`` can carry the same arguments."""

    __slots__ = ("parts", "streamed")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.streamed = 0  # original characters of the deltas


def _call_key(event: ToolCallDelta | ToolCallDone) -> _CallKey:
    return (event.stream_id, event.output, event.call_index)


def _done_arguments(done: ToolCallDone, texts: _CallTexts | None, convert: Callable[[str], str]) -> str:
    """The done event's arguments as its (converted) deltas spelled them.

    ``normalize()`` guarantees ``arguments`` is the concatenation of the call's deltas; any
    part of it that never streamed (a hand-built stream) is converted whole.
    """
    if texts is None:
        return convert(done.arguments) if done.arguments else done.arguments
    rest = done.arguments[texts.streamed :]
    if rest:
        texts.parts.append(convert(rest))
    return "".join(texts.parts)


def map_text(fn: Callable[[str], str], *, kinds: Iterable[TextKind] | TextKind = ("text",)) -> Operator:
    """Apply ``fn`` to the text of each delta of the chosen kinds, one delta at a time.

    ``fn`` sees each piece as it streams (not the whole text: use :func:`redact` for patterns
    that may straddle pieces) and must return a ``str``. One event in, one event out; other
    events pass as they are; an empty text is left alone (a reasoning delta that only carries
    a signature keeps it). Kinds:

    - ``"text"`` (default): ``text.delta``, the visible answer;
    - ``"reasoning"``: ``reasoning.delta``; ``"refusal"``: ``refusal.delta``;
    - ``"tool_call"``: ``tool_call.delta`` arguments; the call's ``tool_call.done`` then
      carries the concatenation of the converted pieces, so it still equals what streamed.
      The arguments are JSON: ``fn`` must keep them so (``parse_json`` comes after it).

    Citation offsets (``start_index`` / ``end_index``) refer to the original text: a length-
    changing ``fn`` invalidates them.

    .. marble::
        :alt: map_text
        -s-a-b-f-e-|
        [ map_text(str.upper) ]
        -s-A-B-f-e-|

    Args:
        fn: ``str -> str``, called once per non-empty delta text.
        kinds: which texts to convert (a kind or an iterable of them).

    Errors:
        ``fn`` raising, or returning something other than a ``str``, fails the stream with
        :class:`RxStreamError` (cause attached) and disposes upstream. Upstream errors pass
        unchanged.

    Raises:
        TypeError: at call time, when ``fn`` is not callable.
        ValueError: at call time, for an unknown or empty ``kinds``.
    """
    if not callable(fn):
        raise TypeError(f"map_text() expected a callable str -> str, got {type(fn).__name__}")
    types = _text_kinds("map_text", kinds)
    calls_too = "tool_call.delta" in types

    def convert(text: str) -> str:
        out = fn(text)
        if not isinstance(out, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"map_text() expected fn to return a str, got {type(out).__name__}")
        return out

    def make_step() -> Callable[[Event], Event | None]:
        calls: dict[_CallKey, _CallTexts] = {}

        def step(event: Event) -> Event | None:
            kind = event.type
            if kind in types:
                if kind == "tool_call.delta":
                    delta = cast(ToolCallDelta, event)
                    texts = calls.get(_call_key(delta))
                    if texts is None:
                        texts = calls[_call_key(delta)] = _CallTexts()
                    original = delta.arguments_delta
                    texts.streamed += len(original)
                    if not original:
                        return event
                    mapped = convert(original)
                    texts.parts.append(mapped)
                    return _replace(delta, "arguments_delta", mapped)
                text: str = cast(Any, event).text  # every kind in types but tool calls has a text
                if not text:
                    return event
                return _replace(event, "text", convert(text))
            if calls_too:
                if kind == "tool_call.done":
                    done = cast(ToolCallDone, event)
                    arguments = _done_arguments(done, calls.pop(_call_key(done), None), convert)
                    return event if arguments == done.arguments else _replace(done, "arguments", arguments)
                if kind == "stream.restart" or kind == "stream.end":
                    # What streamed before a restart is void; after an end nothing follows.
                    stream = event.stream_id
                    for key in [k for k in calls if k[0] == stream]:
                        del calls[key]
            return event

        return step

    return _per_event("map_text", "fn", make_step)


# -- redact --------------------------------------------------------------------------------------

_MAX_WAITING = 1024
"""Events that may wait behind held text before the oldest held target is released early."""


# A held delta ("slot") is a small list, cheaper to build than an object on this per-delta
# path: [end, event, parts, ready, field, original]. ``end`` is the absolute end of the
# delta's text in its target's text, ``parts`` what the delta becomes, ``ready`` whether all of
# it is decided, ``field`` / ``original`` the text field and its value.
_Slot = list[Any]
_END, _EVENT, _PARTS, _READY, _FIELD, _ORIGINAL = range(6)


class _Target:
    """The held text of one target (an output's text, reasoning or refusal, or one tool call).

    ``text`` holds the original characters from absolute position ``base``; everything before
    ``pos`` is decided (handed to the slots); up to ``max_len`` characters before ``pos`` stay
    as context for look-behinds and ``\\b``.
    """

    __slots__ = ("base", "call", "call_index", "empty_at", "kind", "pos", "slots", "text")

    def __init__(self, kind: str, call_index: int, call: _CallTexts | None) -> None:
        self.kind = kind
        self.call_index = call_index
        self.call = call
        self.text = ""
        self.base = 0
        self.pos = 0
        self.empty_at = -1  # where an empty match was replaced last (not to replace it twice)
        self.slots: deque[_Slot] = deque()


class Redactor:
    """The pure core of :func:`redact`: ``feed(event) -> list``, ``flush() -> list``, ``abort(error)``.

    Events leave in the order they came. Each output holds at most one target at a time (a
    delta of other content of the output releases it), whose last ``max_len`` characters are
    held back; the events after a held delta wait with it. A match is replaced in the delta
    where it ends; the deltas it covers lose those characters (one left empty is dropped,
    unless it carries a reasoning signature).
    """

    def __init__(
        self,
        pattern: re.Pattern[str],
        replace: Callable[[re.Match[str]], str],
        *,
        max_len: int,
        types: frozenset[str],
    ) -> None:
        self._search = pattern.search
        self._sub = pattern.sub
        self._replace = replace
        self._max_len = max_len
        self._types = types
        self._calls_too = "tool_call.delta" in types
        self._queue: deque[_Slot | EventBase] = deque()
        self._targets: dict[tuple[str, int], _Target] = {}
        self._calls: dict[_CallKey, _CallTexts] = {}

    # Plain attributes, not properties: lift reads both after every item. Redaction reports
    # faults by raising (lift wraps them) and never hands over to another core.
    failure: None = None
    delegate: None = None

    @property
    def waiting(self) -> int:
        """Events (and deltas) held back right now."""
        return len(self._queue)

    # -- feed --------------------------------------------------------------------------------

    def feed(self, event: EventBase) -> list[EventBase]:
        """Take one event; return the events decided so far, in order."""
        ev: Any = event
        kind: str = ev.type
        queue = self._queue
        if kind in self._types:
            self._delta(ev, kind)
        elif kind in _DELTA_OF or kind == "tool_call.start":
            # Other content of the output: the held text of its segment is complete.
            self._release_output(ev.stream_id, ev.output)
            queue.append(event)
        elif kind == "finish":
            self._release_output(ev.stream_id, ev.output)
            queue.append(event)
        elif kind == "tool_call.done":
            queue.append(self._call_done(ev))
        elif kind in ("stream.start", "stream.end", "stream.restart"):
            stream = ev.stream_id
            for key in [k for k in self._targets if k[0] == stream]:
                self._release(key)
            for key in [k for k in self._calls if k[0] == stream]:
                del self._calls[key]
            queue.append(event)
        elif not queue:
            return [event]
        else:
            queue.append(event)
        if len(queue) > _MAX_WAITING:
            head = queue[0]
            if type(head) is list and not head[_READY]:
                for key, target in self._targets.items():
                    if any(slot is head for slot in target.slots):
                        self._release(key)
                        break
        head = queue[0]
        if type(head) is list and not head[_READY]:
            return []
        return self._drain()

    def flush(self) -> list[EventBase]:
        """The stream completed: release every target; everything leaves."""
        for key in list(self._targets):
            self._release(key)
        return self._drain()

    def abort(self, error: Exception) -> list[EventBase]:
        """Upstream failed: what was held goes out (redacted) before the error."""
        return self.flush()

    # -- targets -----------------------------------------------------------------------------

    def _delta(self, delta: Any, kind: str) -> None:
        key = (delta.stream_id, delta.output)
        call_index: int = delta.call_index if kind == "tool_call.delta" else -1
        target = self._targets.get(key)
        if target is None or target.kind != kind or target.call_index != call_index:
            if target is not None:
                self._release(key)
            call: _CallTexts | None = None
            if call_index >= 0:
                call_key = (key[0], key[1], call_index)
                call = self._calls.get(call_key)
                if call is None:
                    call = self._calls[call_key] = _CallTexts()
            target = self._targets[key] = _Target(kind, call_index, call)
        field = _FIELD_OF[kind]
        text: str = delta.arguments_delta if call_index >= 0 else delta.text
        if target.call is not None:
            target.call.streamed += len(text)
        slot: _Slot = [target.base + len(target.text) + len(text), delta, [], False, field, text]
        target.slots.append(slot)
        self._queue.append(slot)
        if text:
            target.text += text
            self._settle(target, final=False)
        else:
            self._ready(target)

    def _release_output(self, stream: str, output: int) -> None:
        if (stream, output) in self._targets:
            self._release((stream, output))

    def _release(self, key: tuple[str, int]) -> None:
        """The target's text ended (for now): decide the rest and forget it."""
        self._settle(self._targets.pop(key), final=True)

    def _call_done(self, done: ToolCallDone) -> EventBase:
        key = (done.stream_id, done.output)
        target = self._targets.get(key)
        if target is not None and target.call_index == done.call_index:
            self._release(key)
        if not self._calls_too:
            return done
        texts = self._calls.pop(_call_key(done), None)
        arguments = _done_arguments(done, texts, self._redact_whole)
        return done if arguments == done.arguments else _replace(done, "arguments", arguments)

    # -- matching ----------------------------------------------------------------------------

    def _settle(self, target: _Target, *, final: bool) -> None:
        """Decide every position no later text can change and hand the result to the slots.

        A match starting at ``p`` is decided once the characters up to ``p + max_len`` are
        known (matches are at most ``max_len`` long, and none ends at the end of what is known,
        where ``$`` or ``\\b`` could not tell yet); at the target's end everything is.
        """
        text = target.text
        base = target.base
        length = base + len(text)
        limit = length if final else length - self._max_len
        pos = target.pos
        if pos >= limit and not final:
            return
        search = self._search
        match = search(text, pos - base)
        while match is not None:
            start = match.start() + base
            if start >= limit and not final:
                break
            end = match.end() + base
            if start == end:
                if start == target.empty_at:
                    match = search(text, start - base + 1) if start < length else None
                    continue
                target.empty_at = start
            if start > pos:
                self._assign(target, text[pos - base : start - base], pos)
            replacement = self._replace(match)
            if replacement:
                self._assign_replacement(target, replacement, end)
            pos = end
            match = search(text, end - base + (start == end)) if end < length or start != end else None
        if pos < limit:
            piece = text[pos - base : limit - base]
            slots = target.slots
            head = slots[0] if slots else None
            if head is not None and head[_END] >= limit:
                head[_PARTS].append(piece)  # the common case: all of it came in one delta
            else:
                self._assign(target, piece, pos)
            pos = limit
        target.pos = pos
        self._ready(target)
        # Keep max_len characters before pos as context; trim in bulk so appends stay cheap.
        keep_from = pos - self._max_len
        if keep_from - base > self._max_len:
            target.text = text[keep_from - base :]
            target.base = keep_from

    @staticmethod
    def _assign(target: _Target, piece: str, at: int) -> None:
        """Give the original characters ``piece`` (starting at ``at``) to the slots they came in."""
        for slot in target.slots:
            end = slot[_END]
            if end <= at:
                continue
            take = end - at
            if take >= len(piece):
                slot[_PARTS].append(piece)
                return
            slot[_PARTS].append(piece[:take])
            piece = piece[take:]
            at = end

    @staticmethod
    def _assign_replacement(target: _Target, replacement: str, end: int) -> None:
        """A match ending at ``end`` is replaced in the delta holding its last character."""
        for slot in target.slots:
            if slot[_END] >= end:
                slot[_PARTS].append(replacement)
                return
        # Only an empty match (a look-around) can end where no undecided delta is left: the
        # deltas around it have gone already, so it is not replaced.

    @staticmethod
    def _ready(target: _Target) -> None:
        pos = target.pos
        slots = target.slots
        call = target.call
        while slots and slots[0][_END] <= pos:
            slot = slots.popleft()
            slot[_READY] = True
            if call is not None:
                call.parts.append("".join(slot[_PARTS]))

    def _redact_whole(self, text: str) -> str:
        return self._sub(self._replace, text)

    # -- output ------------------------------------------------------------------------------

    def _drain(self) -> list[EventBase]:
        queue = self._queue
        out: list[EventBase] = []
        while queue:
            head = queue[0]
            if type(head) is not list:
                out.append(cast(EventBase, head))
                queue.popleft()
                continue
            if not head[_READY]:
                break
            queue.popleft()
            event = head[_EVENT]
            parts = head[_PARTS]
            original: str = head[_ORIGINAL]
            text = parts[0] if len(parts) == 1 else "".join(parts)
            if text == original:
                out.append(event)
            elif text or not original or (isinstance(event, ReasoningDelta) and event.signature is not None):
                out.append(_replace(event, head[_FIELD], text))
        return out


def _replacer(replacement: str | Callable[[re.Match[str]], str]) -> Callable[[re.Match[str]], str]:
    """``replacement`` as a function of the match; its failures are typed (cause attached)."""
    if callable(replacement):
        user = replacement

        def call(match: re.Match[str]) -> str:
            try:
                out = user(match)
            except Exception as exc:
                raise _wrap("redact", "the replacement", exc) from exc
            if not isinstance(out, str):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise RxStreamError(
                    f"redact() expected the replacement to return a str, got {type(out).__name__}"
                )
            return out

        return call
    if not isinstance(replacement, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(
            f"redact() expected a str or a callable replacement, got {type(replacement).__name__}"
        )
    if "\\" not in replacement:
        fixed = replacement
        return lambda _match: fixed
    template = replacement

    def expand(match: re.Match[str]) -> str:
        try:
            return match.expand(template)
        except (re.error, IndexError) as exc:
            raise _wrap("redact", f"the replacement template {template!r}", exc) from exc

    return expand


def redact(
    pattern: str | re.Pattern[str],
    replacement: str | Callable[[re.Match[str]], str] = "[redacted]",
    *,
    max_len: int = 256,
    kinds: Iterable[TextKind] | TextKind = TEXT_KINDS,
) -> Operator:
    """Replace every match of a regex in the streamed text, also across delta boundaries.

    Each target (an output's text, reasoning, refusal; a tool call's arguments) is matched as
    one text, as ``pattern.sub(replacement, whole_text)`` would, so a secret split over two
    deltas (or ten) is still found. For that it holds back the last ``max_len`` characters of
    each target, and the events behind them wait (order is kept): a match that starts at
    ``p`` is decided once the characters up to ``p + max_len`` are known. A match is replaced in
    the delta where it ends; the deltas it covers lose their part of it, and one left empty is
    dropped (a reasoning delta with a signature is kept). ``tool_call.done`` carries the
    redacted arguments, so it still equals its deltas.

    Latency bound: a delta (and every event after it) leaves once ``max_len`` more characters
    of its target have arrived after its last character, so the text shown trails the text
    received by ``max_len`` characters plus at most the rest of one delta. Held text leaves
    at once when it is released: another kind of content or a tool call of the same output
    starts, its ``finish``, its ``tool_call.done``, ``stream.end`` / ``stream.restart``,
    completion, an upstream error (held text goes out redacted before it), or more than
    1,024 events waiting behind it.
    Released text is matched as if it ended there (``$`` can match); text of the target that
    comes later starts a new segment (a secret spanning the release is not joined).

    Limits: matches (with their look-arounds) must fit in ``max_len`` characters; a longer
    one is matched only if it happens to lie in the held window. Look-behinds see up to
    ``max_len`` characters before the undecided text. The match given to a callable
    replacement is over an internal window: use its groups, not its offsets. Place ``redact``
    before ``parse_json`` (JSON events are built from the text they see) and before anything
    that records or displays text; ``stream.start``'s request and citations are not changed.

    .. marble::
        :alt: redact
        -s-a-b-c-f----e-|
        [ redact(r"sk-\\w{4}", max_len=8) ]
        -s-----x-(y,f)e-|

    (``a`` / ``b`` / ``c`` the text deltas ``"key sk-"``, ``"12"``, ``"34 ok"``, a secret split
    over three; ``f`` finish. ``c`` decides the match: ``x`` is ``a`` as ``"key "``; ``b`` lay
    wholly inside the secret and is dropped; ``y`` is ``c`` as ``"[redacted] ok"``, released by
    the finish.)

    Args:
        pattern: the regex (a string or a compiled ``re.Pattern``); it must not match the
            empty string.
        replacement: a ``re.sub`` template (``\\1``, ``\\g<name>``) or a callable
            ``re.Match -> str``.
        max_len: the longest match to find, in characters: the hold-back window (>= 1).
        kinds: which texts to redact (default: all four).

    Errors:
        A callable replacement that raises or returns something other than a ``str``, or a
        template naming a group the pattern lacks, fails the stream with
        :class:`RxStreamError` (cause attached); what was held back is not emitted (it may hold
        an unredacted secret). So does an item that is not an event. Upstream errors pass
        unchanged, after the held text (redacted).

    Raises:
        ValueError: at call time, for an invalid regex, one that matches the empty string,
            ``max_len`` not a positive int, or unknown ``kinds``.
        TypeError: at call time, for a replacement that is neither a str nor callable.
    """
    if isinstance(pattern, str):
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"redact() expected a valid regular expression, got {pattern!r}: {exc}") from exc
    elif isinstance(pattern, re.Pattern):  # pyright: ignore[reportUnnecessaryIsInstance]
        compiled = pattern
        if not isinstance(compiled.pattern, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError("redact() expected a str pattern, got a bytes pattern")
    else:
        raise TypeError(f"redact() expected a regex string or re.Pattern, got {type(pattern).__name__}")
    if compiled.search("") is not None:
        raise ValueError(
            f"redact() expected a pattern that cannot match the empty string, got {compiled.pattern!r}"
        )
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"redact(max_len=...) expected an int of at least 1, got {max_len!r}")
    replace = _replacer(replacement)
    types = _text_kinds("redact", kinds)

    def make() -> Redactor:
        return Redactor(compiled, replace, max_len=max_len, types=types)

    return cast(Operator, lift(make, wrap_error=lambda exc: _wrap("redact", "matching", exc)))


# -- tag -----------------------------------------------------------------------------------------


def tag(**metadata: Any) -> Operator:
    """Add the user's metadata to every event's ``meta``.

    Each event leaves as a copy whose ``meta`` is the event's own plus ``metadata`` (a key
    already present takes the user's value); the input event and its mapping are untouched.
    Events that shared one ``meta`` mapping share the tagged one too, and events with no meta
    share one mapping, so tagging costs a shallow copy per event. ``meta`` is read-only by
    convention: do not mutate it downstream.

    .. marble::
        :alt: tag
        -s-a-e-|
        [ tag(user="u1") ]
        -S-A-E-|

    (``S`` / ``A`` / ``E``: ``s`` / ``a`` / ``e`` with ``meta["user"] == "u1"``.)

    Errors:
        Upstream errors pass unchanged; an item that is not an event fails the stream with
        :class:`RxStreamError` (cause attached).

    Raises:
        ValueError: at call time, when no metadata is given.
    """
    if not metadata:
        raise ValueError("tag() expected at least one keyword, such as tag(user='u1')")
    tags = dict(metadata)

    def make_step() -> Callable[[Event], Event]:
        plain = dict(tags)
        last_in: dict[str, Any] | None = None
        last_out = plain

        def step(event: Event) -> Event:
            nonlocal last_in, last_out
            meta = event.meta
            if not meta:
                merged = plain
            elif meta is last_in:
                merged = last_out
            else:
                merged = {**meta, **tags}
                last_in, last_out = meta, merged
            return _replace(event, "meta", merged)

        return step

    return _per_event("tag", "copying the event", make_step)


# -- split_by_stream -----------------------------------------------------------------------------


class _Fanout:
    """The events of one stream, to every observer of its group (a minimal Subject)."""

    __slots__ = ("done", "error", "observers")

    def __init__(self) -> None:
        self.observers: list[abc.ObserverBase[Event]] = []
        self.done = False
        self.error: Exception | None = None

    def subscribe(
        self, observer: abc.ObserverBase[Event], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        if self.done:
            if self.error is not None:
                observer.on_error(self.error)
            else:
                observer.on_completed()
            return Disposable()
        observers = self.observers
        observers.append(observer)

        def remove() -> None:
            if observer in observers:
                observers.remove(observer)

        return Disposable(remove)

    def on_next(self, event: Event) -> None:
        for observer in self.observers[:] if len(self.observers) > 1 else self.observers:
            observer.on_next(event)

    def end(self, error: Exception | None) -> None:
        self.done = True
        self.error = error
        observers, self.observers = self.observers, []
        for observer in observers:
            if error is None:
                observer.on_completed()
            else:
                observer.on_error(error)


def split_by_stream() -> Callable[[Observable[Event]], Observable[GroupedObservable[str, Event]]]:
    """Split a merge of several streams back into one observable per ``stream_id``.

    Emits a ``GroupedObservable`` (``key`` = the stream id) when a stream's first event
    arrives; the group gets that stream's events in order and completes right after its
    ``stream.end`` (so ``collect(group)`` returns while other streams still run). Like
    ``group_by``, a group is hot: subscribe to it when it is emitted (in ``on_next``; with
    ``ops.flat_map``), or it misses events. An event of a stream id that already ended opens a
    new group. On upstream completion or error, the groups still open complete or fail too.
    Disposing the outer subscription disposes upstream.

    .. marble::
        :alt: split_by_stream
        -a1-b1-a2-ae-b2-be-|
        [ split_by_stream() ]
        -A--B--------------|
        A: -a1----a2-ae|
        B: ----b1--------b2-be|

    Errors:
        Upstream errors reach the open groups and then the outer observer.
    """

    def operator(source: Observable[Event]) -> Observable[GroupedObservable[str, Event]]:
        def subscribe(
            observer: abc.ObserverBase[GroupedObservable[str, Event]],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            groups: dict[str, _Fanout] = {}
            stopped = False

            def on_next(event: Event) -> None:
                if stopped:
                    return
                stream = event.stream_id
                group = groups.get(stream)
                if group is None:
                    group = groups[stream] = _Fanout()
                    observer.on_next(GroupedObservable(stream, Observable[Event](group.subscribe)))
                group.on_next(event)
                if event.type == "stream.end":
                    del groups[stream]
                    group.end(None)

            def finish(error: Exception | None) -> None:
                nonlocal stopped
                if stopped:
                    return
                stopped = True
                for group in list(groups.values()):
                    group.end(error)
                groups.clear()
                if error is None:
                    observer.on_completed()
                else:
                    observer.on_error(error)

            return source.subscribe(on_next, finish, lambda: finish(None), scheduler=scheduler)

        return Observable[GroupedObservable[str, Event]](subscribe)

    return operator
