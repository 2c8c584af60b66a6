"""dedupe_json(): drop a repeated top-level JSON value from an output's text as it streams."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from reactivex import Observable

from rxstream._errors import RxStreamError
from rxstream._events import (
    Event,
    EventBase,
    Finish,
    StreamEnd,
    StreamRestart,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    make_event,
)
from rxstream.operators._lift import lift

__all__ = ["JsonDedupeCore", "dedupe_json"]

_WS = frozenset(" \t\n\r")
# Numbers and true/false/null are "bare" tokens: they end at the first character outside this set.
_BARE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")
_BARE_END = re.compile(r"[^A-Za-z0-9+\-.]")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LITERALS = frozenset(("true", "false", "null"))
_CONTAINER_SPECIAL = re.compile(r'[\[\]{}"]')
_STRING_SPECIAL = re.compile(r'["\\]')

# Scanner modes.
_TOP = 0  # between values, nothing held
_HOLD = 1  # between values, holding text that may repeat the last completed value
_CONTAINER = 2
_STRING = 3
_BARE_TOKEN = 4


class _TextDeduper:
    """One text (an output's answer, or a tool call's arguments): a top-level JSON scanner plus the hold.

    Each character is scanned once, or twice when held text is released (it is then scanned
    as ordinary text), so the work is linear in the text.
    """

    def __init__(self) -> None:
        self.dropped = 0
        # The text so far is whitespace and JSON values; once it is not, it is prose and passes.
        self._pure = True
        self._mode = _TOP
        self._last: str | None = None  # exact text of the last completed, valid value
        self._last_bare = False  # the last value needs a delimiter to be complete
        # Inside a value:
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._parts: list[str] = []
        self._value_from = 0
        # Holding:
        self._held: list[str] = []
        self._pos = 0  # how much of ``_last`` the held text has matched
        self._no_hold_once = False

    def feed(self, s: str) -> str:
        """Scan ``s``; return the part of it (plus released held text) to pass on now."""
        return self._process(s, hold=True)

    def resolve(self) -> str:
        """Decide held text now (the output ended or another of its events came): release or drop."""
        last = self._last
        if self._mode != _HOLD or last is None:
            return ""
        if self._pos == len(last):
            self._drop()
            return ""
        released = "".join(self._held)
        self._held = []
        self._pos = 0
        self._mode = _TOP
        return self._process(released, hold=False)

    def _drop(self) -> None:
        self.dropped += 1
        self._held = []
        self._pos = 0

    def _process(self, s: str, *, hold: bool) -> str:
        if not self._pure:
            return s
        out: list[str] = []
        start = 0  # s[start:i] is passed on (or, in _HOLD, held) when the chunk ends or the mode changes
        i = 0
        n = len(s)
        self._value_from = 0
        while i < n:
            if not self._pure:
                # Prose from here on: nothing is held or scanned any more.
                out.append(s[start:n])
                return "".join(out)
            mode = self._mode
            if mode in (_CONTAINER, _STRING):
                i = self._scan_delimited(s, i, n)
            elif mode == _BARE_TOKEN:
                i = self._scan_bare(s, i, n)
            elif mode == _TOP:
                if hold and self._last is not None and not self._no_hold_once:
                    out.append(s[start:i])
                    start = i
                    self._mode = _HOLD
                    continue
                self._no_hold_once = False
                i = self._top_char(s, i)
            else:
                last = self._last
                if last is None:  # unreachable: _HOLD is entered only with a last value
                    self._mode = _TOP
                    continue
                pos = self._pos
                size = len(last)
                ch = s[i]
                if pos == size:
                    # A bare value matched whole: only a delimiter makes it a repeat.
                    if ch in _BARE:
                        i = self._diverge(s, start, i, out)
                        start = i
                    else:
                        self._drop()
                        start = i
                    continue
                if pos == 0 and ch in _WS:
                    i += 1
                    continue
                k = min(n - i, size - pos)
                if s[i : i + k] == last[pos : pos + k]:
                    i += k
                    self._pos = pos = pos + k
                    if pos == size and not self._last_bare:
                        self._drop()
                        start = i
                    continue
                j = 0
                while s[i + j] == last[pos + j]:
                    j += 1
                i = self._diverge(s, start, i + j, out)
                start = i
        if self._mode == _HOLD:
            self._held.append(s[start:n])
        else:
            out.append(s[start:n])
            if self._mode != _TOP:
                self._parts.append(s[self._value_from : n])
        return "".join(out)

    def _diverge(self, s: str, start: int, d: int, out: list[str]) -> int:
        """The held text plus ``s[start:d]`` is not a repeat: scan and release it; go on at ``d``."""
        released = "".join(self._held) + s[start:d]
        self._held = []
        self._pos = 0
        self._mode = _TOP
        out.append(self._process(released, hold=False))
        if self._mode == _TOP:
            # Only whitespace was held, and s[d] already failed to match: it starts a new value.
            self._no_hold_once = True
        self._value_from = d
        return d

    def _top_char(self, s: str, i: int) -> int:
        ch = s[i]
        if ch in _WS:
            return i + 1
        self._value_from = i
        self._parts = []
        if ch == "{" or ch == "[":
            self._mode = _CONTAINER
            self._depth = 1
            self._in_string = False
            self._escape = False
        elif ch == '"':
            self._mode = _STRING
            self._in_string = True
            self._escape = False
        elif ch in _BARE:
            self._mode = _BARE_TOKEN
            return i
        else:
            # Not JSON (prose, a stray closer): a number or "[1]" in prose repeats for real.
            self._pure = False
            self._last = None
        return i + 1

    def _scan_delimited(self, s: str, i: int, n: int) -> int:
        while i < n:
            if self._in_string:
                if self._escape:
                    self._escape = False
                    i += 1
                    continue
                m = _STRING_SPECIAL.search(s, i)
                if m is None:
                    return n
                i = m.end()
                if m.group() == "\\":
                    self._escape = True
                    continue
                self._in_string = False
                if self._mode == _STRING:
                    self._complete(s, i)
                    return i
                continue
            m = _CONTAINER_SPECIAL.search(s, i)
            if m is None:
                return n
            i = m.end()
            ch = m.group()
            if ch == '"':
                self._in_string = True
            elif ch == "{" or ch == "[":
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 0:
                    self._complete(s, i)
                    return i
        return i

    def _scan_bare(self, s: str, i: int, n: int) -> int:
        m = _BARE_END.search(s, i)
        if m is None:
            return n
        end = m.start()
        self._complete(s, end)
        return end

    def _complete(self, s: str, end: int) -> None:
        self._parts.append(s[self._value_from : end])
        text = "".join(self._parts)
        self._parts = []
        bare = self._mode == _BARE_TOKEN
        self._mode = _TOP
        if bare:
            valid = text in _LITERALS or _NUMBER.fullmatch(text) is not None
        else:
            try:
                json.loads(text)
            except ValueError:
                valid = False
            else:
                valid = True
        self._last = text if valid else None
        self._pure = valid
        self._last_bare = bare


class _Target:
    """One deduplicated text: an output's answer text, or one tool call's arguments."""

    __slots__ = ("call_id", "deduper", "passed")

    def __init__(self, call_id: str | None) -> None:
        self.deduper = _TextDeduper()
        self.call_id = call_id
        self.passed: list[str] = []  # tool calls only: the arguments as passed on, for ``done``


_TEXT = -1  # the target key of an output's text; tool calls are keyed by their call_index


class JsonDedupeCore:
    """The pure core of ``dedupe_json()``: one :class:`_TextDeduper` per output text and tool call.

    Args:
        tool_calls: also deduplicate each tool call's ``arguments_delta`` text.
    """

    failure: RxStreamError | None = None

    def __init__(self, *, tool_calls: bool = True) -> None:
        self._tool_calls = tool_calls
        self._outputs: dict[int, dict[int, _Target]] = {}
        self._latest: EventBase | None = None

    def feed(self, event: Event) -> list[Event]:
        """Pass ``event`` on, trimmed of repeated JSON text, after any held text it releases."""
        self._latest = event
        if isinstance(event, TextDelta):
            output = event.output
            targets = self._outputs.get(output)
            if targets is None:
                targets = self._outputs[output] = {}
            target = targets.get(_TEXT)
            if target is None:
                target = targets[_TEXT] = _Target(None)
            out = self._settle(event, output, targets, _TEXT) if len(targets) > 1 else []
            text = target.deduper.feed(event.text)
            if text == event.text:
                out.append(event)
            elif text:
                out.append(event.model_copy(update={"text": text}))
            return out
        if self._tool_calls and isinstance(event, ToolCallDelta):
            return self._tool_delta(event)
        if self._tool_calls and isinstance(event, ToolCallDone):
            return self._tool_done(event)
        if isinstance(event, StreamRestart):
            # Consumers discard everything before a restart, held text included.
            self._outputs.clear()
            return [event]
        if isinstance(event, StreamEnd):
            out = self._settle_all(event)
            out.append(event)
            return out
        output: object = getattr(event, "output", None)
        if not isinstance(output, int):
            return [event]
        targets = self._outputs.get(output)
        if targets is None:
            return [event]
        out = self._settle(event, output, targets, None)
        if isinstance(event, Finish):
            del self._outputs[output]
            text_target = targets.get(_TEXT)
            if text_target is not None and text_target.deduper.dropped:
                dropped = text_target.deduper.dropped
                event = event.model_copy(update={"meta": {**event.meta, "dropped_duplicate_json": dropped}})
        out.append(event)
        return out

    def flush(self) -> list[Event]:
        """Release what is still held when the stream completes without a ``stream.end``."""
        latest = self._latest
        return [] if latest is None else self._settle_all(latest)

    def _tool_delta(self, event: ToolCallDelta) -> list[Event]:
        output = event.output
        targets = self._outputs.get(output)
        if targets is None:
            targets = self._outputs[output] = {}
        target = targets.get(event.call_index)
        if target is None:
            target = targets[event.call_index] = _Target(event.call_id)
        out = self._settle(event, output, targets, event.call_index) if len(targets) > 1 else []
        text = target.deduper.feed(event.arguments_delta)
        if text:
            target.passed.append(text)
            out.append(
                event if text == event.arguments_delta else event.model_copy(update={"arguments_delta": text})
            )
        return out

    def _tool_done(self, event: ToolCallDone) -> list[Event]:
        output = event.output
        targets = self._outputs.get(output)
        if targets is None:
            return [event]
        out = self._settle(event, output, targets, event.call_index)
        target = targets.pop(event.call_index, None)
        if target is None:
            out.append(event)
            return out
        released = target.deduper.resolve()
        if released:
            target.passed.append(released)
            out.append(_released(event, output, event.call_index, target.call_id, released))
        dropped = target.deduper.dropped
        if dropped:
            event = event.model_copy(
                update={
                    "arguments": "".join(target.passed),
                    "meta": {**event.meta, "dropped_duplicate_json": dropped},
                }
            )
        out.append(event)
        return out

    def _settle(
        self, cause: EventBase, output: int, targets: dict[int, _Target], keep: int | None
    ) -> list[Event]:
        """Decide the held text of every target of ``output`` but ``keep``: ``cause`` comes first."""
        out: list[Event] = []
        for key, target in targets.items():
            if key == keep:
                continue
            released = target.deduper.resolve()
            if released:
                if key != _TEXT:
                    target.passed.append(released)
                out.append(_released(cause, output, key, target.call_id, released))
        return out

    def _settle_all(self, cause: EventBase) -> list[Event]:
        out: list[Event] = []
        for output, targets in self._outputs.items():
            out.extend(self._settle(cause, output, targets, None))
        return out


def _released(cause: EventBase, output: int, key: int, call_id: str | None, text: str) -> Event:
    # Released text takes the seq/at of the event that decided it, so seq never decreases.
    if key == _TEXT:
        return make_event(
            TextDelta, stream_id=cause.stream_id, seq=cause.seq, at=cause.at, output=output, text=text
        )
    return make_event(
        ToolCallDelta,
        stream_id=cause.stream_id,
        seq=cause.seq,
        at=cause.at,
        output=output,
        call_index=key,
        call_id=call_id,
        arguments_delta=text,
    )


def dedupe_json(*, tool_calls: bool = True) -> Callable[[Observable[Event]], Observable[Event]]:
    """Drop a complete top-level JSON value that an output's text repeats right after itself.

    A server or a retry that re-sends the final object turns ``{"a":1}`` into ``{"a":1}{"a":1}``
    (with or without whitespace between); the repeat's ``text.delta`` text is not passed on, the
    first value is kept whole. Values that differ (``{"a":1}{"b":2}``) are kept. Only a text that
    is a sequence of JSON values (whitespace between) is deduplicated: from its first character
    that is not (prose, a code fence, invalid JSON) it passes untouched, so a number or a ``[1]``
    repeated in prose is never dropped. Provider-level duplicates are already gone after
    ``normalize()``. With
    ``tool_calls`` each tool call's arguments (``tool_call.delta``, keyed by output and
    ``call_index``) get the same treatment, and a ``tool_call.done`` whose arguments lost a
    repeat carries the deduplicated ``arguments``.

    .. marble::
        :alt: dedupe_json
        -a-b-c-d-f-|
        [ dedupe_json() ]
        -a-b-----f-|

    ``a`` ``{"a":``, ``b`` ``1}`` (a complete value), ``c`` ``{"a":`` and ``d`` ``1}`` (its
    repeat, held and then dropped), ``f`` the output's ``finish``, which then carries
    ``meta["dropped_duplicate_json"] == 1`` (the number of repeats dropped from its text; a
    ``tool_call.done`` carries its own count the same way).

    Latency: text passes through as it arrives, except text that could still be the start of a
    repeat of the last completed value, held only while it stays a prefix of that value's exact
    text (whitespace before it is held too and dropped with it). So at most the length of the
    last completed value plus the whitespace before its repeat is held per text; with no
    completed value, nothing is. Held text that turns out not to be a repeat is released whole
    as one delta with the ``seq``/``at`` of the event that decided it: the next delta of the
    same text, another event of the same output (its ``finish``, a ``tool_call.done``),
    ``stream.end`` or completion. Numbers and ``true``/``false``/``null`` repeat only once a
    delimiter (or the end of the text) follows. Events of other outputs and stream-level events
    pass unchanged and in order; a ``stream.restart`` discards held text, as consumers do. Work
    is linear in the text: each character is scanned at most twice.

    Args:
        tool_calls: also deduplicate tool call arguments (default ``True``).

    Returns:
        An operator ``Observable[Event] -> Observable[Event]``; all state is per subscription.

    Raises:
        TypeError: ``tool_calls`` is not a bool.

    Errors:
        Upstream errors pass through unchanged (held text is not released before them); the
        operator raises nothing itself.
    """
    if not isinstance(tool_calls, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"tool_calls must be a bool, got {tool_calls!r}")

    def make() -> JsonDedupeCore:
        return JsonDedupeCore(tool_calls=tool_calls)

    return lift(make)
