"""Incremental, I/O-free decoders that turn raw response body bytes into events.

Two wire framings are handled here, both fed with bytes exactly as they come off the network
(split at any boundary, including inside a multi-byte UTF-8 character):

* :class:`SSEDecoder` implements the WHATWG "event stream interpretation" rules for
  ``text/event-stream`` bodies, with one deliberate difference: an event still buffered when the
  body ends (no closing blank line) is dispatched by :meth:`SSEDecoder.flush`, because several
  real providers end their streams that way.
* :class:`JSONArrayDecoder` handles Gemini's ``streamGenerateContent`` body without ``alt=sse``:
  one JSON array whose elements arrive one by one.

Both enforce size limits (:class:`~rxstream.Limits`) as data accumulates, so that a misbehaving
peer cannot make memory grow without bound, and both raise only
:class:`~rxstream._errors.ProtocolError` and :class:`~rxstream._errors.LimitExceededError`.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import ijson  # pyright: ignore[reportMissingTypeStubs]

from rxstream._errors import LimitExceededError, ProtocolError, RxStreamError
from rxstream._limits import DEFAULT_LIMITS, Limits, limit_exceeded

__all__ = [
    "DEFAULT_MAX_BYTES",
    "JSONArrayDecoder",
    "SSEDecoder",
    "ServerSentEvent",
]

DEFAULT_MAX_BYTES = DEFAULT_LIMITS.max_sse_line_bytes

_BOM = "\ufeff"


class ServerSentEvent(NamedTuple):
    """One dispatched server-sent event.

    Attributes:
        event: The ``event:`` field, or None when it was absent or empty. The SSE default
            ``"message"`` is deliberately not substituted, so callers can tell the two apart.
        data: The ``data:`` lines of the event joined with ``"\\n"``.
        id: The last event id in force when the event was dispatched (ids persist across
            events), or None if the stream never set one. An ``id:`` line with an empty value
            sets it to ``""``.
        retry: The ``retry:`` reconnection time (milliseconds) in force, or None if never set.
    """

    event: str | None
    data: str
    id: str | None = None
    retry: int | None = None


# Builds a ServerSentEvent from a 4-tuple in C, skipping the named tuple's Python __new__: the
# decoder's fast paths make one per event.
_event = cast(
    "Callable[[type[ServerSentEvent], tuple[str | None, str, str | None, int | None]], ServerSentEvent]",
    tuple.__new__,  # pyright: ignore[reportUnknownMemberType]
)


class SSEDecoder:
    """Incremental ``text/event-stream`` decoder (WHATWG event stream interpretation).

    Feed it body bytes as they arrive; it returns the events completed by each piece. Lines end
    with LF, CR or CRLF (a CRLF split across two feeds counts once); no other character breaks
    a line. A leading UTF-8 BOM is dropped. ``[DONE]`` is ordinary data and is returned like any
    other event.

    Unlike a browser, :meth:`flush` dispatches an event that was still buffered when the body
    ended, even without its closing blank line. After :meth:`flush` the decoder is reset and can
    decode another body, even if it raised. After :meth:`feed` raises, the decoder's state is
    unspecified: discard it. When :meth:`feed` or :meth:`flush` raises, :attr:`salvage` holds the
    events that call completed before the fault, so a caller can deliver everything that came
    before the error whatever the read boundaries were.

    Args:
        limits: Where ``max_sse_line_bytes`` and ``max_sse_event_bytes`` come from (default
            :class:`~rxstream.Limits`).
        max_line_bytes: Overrides ``limits.max_sse_line_bytes``: the longest line accepted,
            counted in characters of the decoded line and checked as data accumulates, so a
            peer that never sends a line break cannot exhaust memory.
        max_event_bytes: Overrides ``limits.max_sse_event_bytes``: the largest ``data`` of one
            event (lines joined with ``"\\n"``), counted in characters.

    Raises:
        ProtocolError: The body is not valid UTF-8 (from :meth:`feed` or :meth:`flush`).
        LimitExceededError: A line or an event is larger than its limit; ``limit`` is
            ``"max_sse_line_bytes"`` or ``"max_sse_event_bytes"``.
    """

    __slots__ = (
        "_after_cr",
        "_at_start",
        "_bytes_in",
        "_data",
        "_data_size",
        "_decode",
        "_decoder",
        "_event",
        "_id",
        "_line",
        "_max_event",
        "_max_line",
        "_more",
        "_more_size",
        "_retry",
        "salvage",
    )

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        max_line_bytes: int | None = None,
        max_event_bytes: int | None = None,
    ) -> None:
        chosen = DEFAULT_LIMITS if limits is None else limits
        self._max_line = chosen.max_sse_line_bytes if max_line_bytes is None else max_line_bytes
        self._max_event = chosen.max_sse_event_bytes if max_event_bytes is None else max_event_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._decode = self._decoder.decode
        self.salvage: list[ServerSentEvent] = []
        self._reset()

    def _reset(self) -> None:
        self._decoder.reset()
        self._at_start = True
        self._after_cr = False
        self._bytes_in = 0
        # The unterminated last line: its start, then later pieces that held no line break, kept
        # apart so that a long line arriving in many pieces is joined once, not once per piece.
        self._line = ""
        self._more: list[str] = []
        self._more_size = 0
        self._data: list[str] = []
        # Characters in the data buffer counting one separator per line, i.e. joined size + 1.
        self._data_size = 0
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Decode the next piece of the body.

        Args:
            data: The bytes exactly as received; any split point is fine.

        Returns:
            The events completed by this piece, in order (often empty).

        Raises:
            ProtocolError: The bytes are not valid UTF-8.
            LimitExceededError: A line or an event exceeds its limit.
        """
        events: list[ServerSentEvent] = []
        try:
            text = self._decode(data)
        except UnicodeDecodeError as exc:
            error = self._utf8_error(exc)
            # The characters before the bad byte are sound: what they complete is delivered.
            self.salvage = events
            sound = exc.object[: exc.start]
            if sound:
                self._feed_text(sound.decode("utf-8"), events)
            raise error from exc
        self._bytes_in += len(data)
        if text:
            try:
                self._feed_text(text, events)
            except LimitExceededError:
                self.salvage = events
                raise
        return events

    def flush(self) -> list[ServerSentEvent]:
        """Finish the body: process a trailing unterminated line and dispatch a pending event.

        Returns:
            The remaining events, including one that lacked its closing blank line.

        Raises:
            ProtocolError: The body ends inside a multi-byte UTF-8 character.
            LimitExceededError: A line or an event exceeds its limit.
        """
        events: list[ServerSentEvent] = []
        self.salvage = events
        try:
            try:
                text = self._decode(b"", True)
            except UnicodeDecodeError as exc:
                raise ProtocolError(
                    "SSE body ends inside a multi-byte UTF-8 character "
                    f"(expected {_utf8_continuation_hint(exc)}, got the end of the body "
                    f"after byte {self._bytes_in})"
                ) from exc
            if text:
                self._feed_text(text, events)
            line = self._line + "".join(self._more) if self._more else self._line
            if line:
                self._process([line], events)
            if self._data:
                events.append(self._dispatch())
            self.salvage = []
            return events
        finally:
            self._reset()

    def _feed_text(self, text: str, events: list[ServerSentEvent]) -> None:
        if self._at_start:
            self._at_start = False
            if text[0] == _BOM:
                text = text[1:]
                if not text:
                    return
        if self._after_cr:
            # The CR that ended the previous piece already ended its line: a LF right after it
            # is the second half of a CRLF, not an empty line.
            self._after_cr = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return
        if "\r" in text:
            self._after_cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n")
            if "\r" in text:
                text = text.replace("\r", "\n")
        max_line = self._max_line
        if "\n" not in text:
            self._more.append(text)
            self._more_size += len(text)
            if len(self._line) + self._more_size > max_line:
                raise self._line_error(len(self._line) + self._more_size)
            return
        if self._more:
            text = self._line + "".join(self._more) + text
            self._more = []
            self._more_size = 0
        elif self._line:
            text = self._line + text
        # A complete line can only be over the limit if the whole text is: one comparison keeps
        # the common case free of per-line length checks.
        if len(text) > max_line:
            lines = text.split("\n")
            for n, line in enumerate(lines):
                if len(line) > max_line:
                    # The lines before it are whole and within the limit: what they complete
                    # goes out before the error, as it would have with smaller reads.
                    self._process(lines[:n], events)
                    raise self._line_error(len(line))
        # Most events on the wire are one "data: ..." line, or one "event: ..." line and one
        # "data: ..." line. Splitting on the blank line plus the prefix of the line that opens
        # the next event leaves each such event in one piece, which needs no per-line work;
        # any other piece goes through line-by-line processing.
        first_blank = text.find("\n\n")
        if first_blank >= 0:
            if text.startswith("event: ", first_blank + 2):
                parts = text.split("\n\nevent: ")
                self._named_events(parts, events)
                text = "event: " + parts[-1]
            else:
                parts = text.split("\n\ndata: ")
                if len(parts) > 1:
                    self._data_events(parts, events)
                    text = "data: " + parts[-1]
        if "\n" in text:
            lines = text.split("\n")
            text = lines.pop()
            self._process(lines, events)
        self._line = text

    def _data_events(self, parts: list[str], events: list[ServerSentEvent]) -> None:
        """Handle pieces of ``text.split("\\n\\ndata: ")`` except the last (unterminated) one."""
        self._block(parts[0], events)
        event_id = self._id
        retry = self._retry
        max_event = self._max_event
        for i in range(1, len(parts) - 1):
            part = parts[i]
            if "\n" not in part:
                if len(part) > max_event:
                    raise self._event_error(len(part))
                events.append(_event(ServerSentEvent, (None, part, event_id, retry)))
            else:
                self._block("data: " + part, events)
                event_id = self._id
                retry = self._retry

    def _named_events(self, parts: list[str], events: list[ServerSentEvent]) -> None:
        """Handle pieces of ``text.split("\\n\\nevent: ")`` except the last (unterminated) one."""
        self._block(parts[0], events)
        event_id = self._id
        retry = self._retry
        max_event = self._max_event
        for i in range(1, len(parts) - 1):
            part = parts[i]
            nl = part.find("\n")
            if nl >= 0 and part.startswith("data: ", nl + 1) and part.find("\n", nl + 1) < 0:
                value = part[nl + 7 :]
                if len(value) > max_event:
                    raise self._event_error(len(value))
                events.append(_event(ServerSentEvent, (part[:nl] or None, value, event_id, retry)))
            else:
                self._block("event: " + part, events)
                event_id = self._id
                retry = self._retry

    def _block(self, block: str, events: list[ServerSentEvent]) -> None:
        """Process complete lines followed by a blank line."""
        if block:
            self._process(block.split("\n"), events)
        if self._data:
            events.append(self._dispatch())
        else:
            self._event = None

    def _process(self, lines: list[str], events: list[ServerSentEvent]) -> None:
        data = self._data
        size = self._data_size
        max_size = self._max_event + 1
        for line in lines:
            if not line:
                if data:
                    events.append(
                        ServerSentEvent(
                            self._event,
                            data[0] if len(data) == 1 else "\n".join(data),
                            self._id,
                            self._retry,
                        )
                    )
                    data = []
                    size = 0
                self._event = None
            elif line.startswith("data:"):
                value = line[6:] if line.startswith(" ", 5) else line[5:]
                data.append(value)
                size += len(value) + 1
                if size > max_size:
                    self._data = data
                    raise self._event_error(size - 1)
            elif line[0] != ":":
                if line == "data":
                    # A bare field name is the field with an empty value.
                    data.append("")
                    size += 1
                    if size > max_size:
                        self._data = data
                        raise self._event_error(size - 1)
                else:
                    self._field(line)
        self._data = data
        self._data_size = size

    def _field(self, line: str) -> None:
        # Every field except data: the rare path, kept out of the hot loop.
        colon = line.find(":")
        if colon < 0:
            name, value = line, ""
        else:
            name = line[:colon]
            value = line[colon + 2 :] if line.startswith(" ", colon + 1) else line[colon + 1 :]
        if name == "event":
            self._event = value or None
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)

    def _dispatch(self) -> ServerSentEvent:
        data = self._data
        event = ServerSentEvent(self._event, "\n".join(data), self._id, self._retry)
        self._data = []
        self._data_size = 0
        self._event = None
        return event

    def _line_error(self, length: int) -> LimitExceededError:
        return limit_exceeded(
            "max_sse_line_bytes",
            self._max_line,
            length,
            f"SSE line too long: got at least {length} characters without a line break",
            f"a line break within {self._max_line} characters",
        )

    def _event_error(self, size: int) -> LimitExceededError:
        return limit_exceeded(
            "max_sse_event_bytes",
            self._max_event,
            size,
            f"SSE event too large: got at least {size} characters of data before the blank line "
            "that ends the event",
            f"at most {self._max_event} characters of data in one event",
        )

    def _utf8_error(self, exc: UnicodeDecodeError) -> ProtocolError:
        # exc.start is relative to the decoder's held-back bytes followed by this piece.
        held = len(self._decoder.getstate()[0])
        offset = self._bytes_in - held + exc.start
        bad = exc.object[exc.start : exc.start + 1]
        return ProtocolError(
            f"SSE body is not valid UTF-8: expected {_utf8_continuation_hint(exc)}, "
            f"got byte 0x{bad.hex()} at byte {offset} ({exc.reason})"
        )


def _utf8_continuation_hint(exc: UnicodeDecodeError) -> str:
    if exc.reason in ("invalid continuation byte", "unexpected end of data"):
        return "the continuation bytes of a multi-byte character"
    return "a UTF-8 character"


# Bytes yajl treats as JSON whitespace before the opening bracket.
_JSON_WS = b" \t\r\n"
# Largest slice handed to ijson at once: a whole-body feed is parsed in slices so that the
# element size check runs before a huge element has been built in memory.
_JSON_SLICE = 64 * 1024
_OPENING = re.compile(rb"[\[{]")
_START_MAP = ("start_map", None)
_START_ARRAY = ("start_array", None)
_END_MAP = ("end_map", None)
_END_ARRAY = ("end_array", None)
# yajl reasons reworded as what the parser expected to see.
_YAJL_EXPECTED = {
    "after array element, I expect ',' or ']'": "expected ',' or ']' after an element",
    "after key and value, inside map, I expect ',' or '}'": "expected ',' or '}' after an object member",
    "object key and value must be separated by a colon (':')": "expected ':' after an object key",
    "invalid object key (must be a string)": "expected a string object key",
    "unallowed token at this point in JSON text": "expected a JSON value",
    "invalid char in json text.": "expected a JSON token",
    "trailing garbage": "expected nothing after the closing ']'",
    "premature EOF": "expected more JSON",
    "invalid bytes in UTF8 string.": "expected valid UTF-8 in a string",
    "integer overflow": "expected an integer that fits in 64 bits",
    "numeric (floating point) overflow": "expected a finite number",
}


class JSONArrayDecoder:
    """Incremental decoder for a body that is one JSON array of objects, streamed.

    This is Gemini's ``streamGenerateContent`` framing without ``alt=sse``:
    ``[{...}\\n,\\r\\n{...}\\n]`` delivered a piece at a time. Each top-level element is returned as
    soon as its closing brace arrives. Numbers keep their type: integers stay ``int``, the rest
    are ``float``. After :meth:`flush` the decoder is reset and can decode another body, even if
    it raised. After :meth:`feed` raises, the decoder's state is unspecified: discard it.

    The nesting depth of each element is bounded too, and checked before ijson sees the bytes
    that would cross it: ijson keeps one prefix string per open container, each as long as its
    depth, so unbounded nesting costs memory quadratic in the input (16 KB of ``[`` took 650 MB).
    A second yajl parser that builds nothing (C, about 70% of the element parser's time) tracks
    the exact depth.

    When :meth:`feed` or :meth:`flush` raises, :attr:`salvage` holds the elements that call
    completed before the fault.

    Args:
        limits: Where ``max_json_element_bytes`` and ``max_json_depth`` come from (default
            :class:`~rxstream.Limits`).
        max_item_bytes: Overrides ``limits.max_json_element_bytes``: the most bytes accepted for
            one element, counted from the end of the last complete element (separators
            included). The count restarts at the end of the slice of input (at most 64 KiB, or
            the limit if smaller) in which an element completed, so an element is rejected once
            it passes the limit by that much at most; an element within the limit is never
            rejected.

    Raises:
        ProtocolError: The body is not a JSON array of objects, or ends before the array is
            closed, or is empty. The ijson error is attached as ``__cause__``. (ijson's yajl2_c
            backend also rejects integers that do not fit in 64 bits.)
        LimitExceededError: An element is larger than its limit (``limit`` is
            ``"max_json_element_bytes"``) or nested deeper (``"max_json_depth"``).
    """

    __slots__ = (
        "_coro",
        "_count",
        "_depth",
        "_depth_events",
        "_depth_parser",
        "_items",
        "_max_depth",
        "_max_item",
        "_offset",
        "_pending",
        "_started",
        "salvage",
    )

    def __init__(self, *, limits: Limits | None = None, max_item_bytes: int | None = None) -> None:
        chosen = DEFAULT_LIMITS if limits is None else limits
        self._max_item = chosen.max_json_element_bytes if max_item_bytes is None else max_item_bytes
        # Counted from the top-level array, which is one level above each element.
        self._max_depth = chosen.max_json_depth + 1
        self.salvage: list[Any] = []
        self._reset()

    def _reset(self) -> None:
        self._items = cast("list[Any]", ijson.sendable_list())  # pyright: ignore[reportUnknownMemberType]
        self._coro: Any = ijson.items_coro(self._items, "item", use_float=True)  # pyright: ignore[reportUnknownMemberType]
        self._depth_events = cast("list[Any]", ijson.sendable_list())  # pyright: ignore[reportUnknownMemberType]
        self._depth_parser: Any = ijson.basic_parse_coro(self._depth_events, use_float=True)  # pyright: ignore[reportUnknownMemberType]
        self._depth = 0
        self._started = False
        self._offset = 0
        self._pending = 0
        self._count = 0

    def feed(self, data: bytes) -> list[Any]:
        """Decode the next piece of the body.

        Args:
            data: The bytes exactly as received; any split point is fine.

        Returns:
            The array elements (dicts) completed by this piece, in order (often empty).

        Raises:
            ProtocolError: The bytes are not a JSON array of objects.
            LimitExceededError: An element exceeds its size or nesting limit.
        """
        out: list[Any] = []
        if not data:
            # ijson reads an empty send as the end of the input.
            return out
        if not self._started:
            stripped = data.lstrip(_JSON_WS)
            if not stripped:
                self._offset += len(data)
                return out
            if stripped[0] != ord("["):
                where = self._offset + len(data) - len(stripped)
                self.salvage = out
                raise ProtocolError(
                    "Gemini JSON array body: expected '[' to open the array, "
                    f"got {_show(stripped[:16])} at byte {where}"
                )
            self._started = True
        step = min(_JSON_SLICE, self._max_item)
        try:
            if len(data) <= step:
                self._send(data, out)
            else:
                for start in range(0, len(data), step):
                    self._send(data[start : start + step], out)
        except RxStreamError:
            self.salvage = out
            raise
        return out

    def flush(self) -> list[Any]:
        """Finish the body.

        Returns:
            Elements still held back (normally none).

        Raises:
            ProtocolError: The body was empty, or ended before the array was closed.
        """
        out: list[Any] = []
        self.salvage = out
        try:
            if not self._started:
                got = "no bytes" if self._offset == 0 else f"only whitespace ({self._offset} bytes)"
                raise ProtocolError(f"Gemini JSON array body: empty body, expected a JSON array, got {got}")
            try:
                self._coro.close()
            except Exception as exc:  # ijson has no common base for its backends' errors
                raise ProtocolError(
                    "Gemini JSON array body is truncated: expected the array to be closed with ']', "
                    f"got the end of the body at byte {self._offset} after {self._count} complete "
                    "element(s)"
                ) from exc
            self._take(out)
            self.salvage = []
            return out
        finally:
            with contextlib.suppress(Exception):  # the element parser has reported the fault
                self._depth_parser.close()
            self._reset()

    def _send(self, piece: bytes, out: list[Any]) -> None:
        if self._depth + piece.count(b"[") + piece.count(b"{") > self._max_depth:
            # The piece might cross the depth limit (its brackets include any inside strings):
            # take it in parts that cannot, so the element parser never goes past the limit.
            self._send_bounded(piece, out)
            return
        self._track_depth(piece)
        self._parse(piece, out)

    def _send_bounded(self, piece: bytes, out: list[Any]) -> None:
        start = 0
        end = len(piece)
        while start < end:
            room = self._max_depth - self._depth
            # Up to the room-th opening bracket, or up to and including the next one when
            # there is no room left: only that one can cross the limit, and only as the last byte.
            stop = end
            for n, match in enumerate(_OPENING.finditer(piece, start), 1):
                if n >= max(room, 1):
                    stop = match.end()
                    break
            part = piece[start:stop]
            if not self._track_depth(part):
                # The last byte opened a container one level too deep: what came before it is
                # delivered, then the error.
                if len(part) > 1:
                    self._parse(part[:-1], out)
                raise self._depth_error()
            self._parse(part, out)
            start = stop

    def _track_depth(self, part: bytes) -> bool:
        """Feed the depth parser; False when ``part`` takes the nesting past the limit."""
        events = self._depth_events
        try:
            self._depth_parser.send(part)
        except Exception:  # noqa: BLE001 - malformed JSON: the element parser reports it precisely
            return True
        if events:
            opened = events.count(_START_MAP) + events.count(_START_ARRAY)
            depth = self._depth + opened
            closed = events.count(_END_MAP) + events.count(_END_ARRAY)
            if depth > self._max_depth and closed:
                # Closings may come first: follow the events in order (rare: near the limit).
                depth = self._depth
                deepest = 0
                for event in events:
                    if event in (_START_MAP, _START_ARRAY):
                        depth += 1
                        deepest = max(deepest, depth)
                    elif event in (_END_MAP, _END_ARRAY):
                        depth -= 1
                depth = deepest
            if depth > self._max_depth:
                return False
            self._depth = self._depth + opened - closed
            del events[:]
        return True

    def _parse(self, piece: bytes, out: list[Any]) -> None:
        base = self._offset
        self._offset = base + len(piece)
        try:
            self._coro.send(piece)
        except Exception as exc:  # ijson has no common base for its backends' errors
            # Elements completed before the fault are delivered with the error.
            self._take(out)
            raise _json_error(exc, piece, base) from exc
        if self._items:
            self._pending = 0
            self._take(out)
            return
        self._pending += len(piece)
        if self._pending > self._max_item:
            raise limit_exceeded(
                "max_json_element_bytes",
                self._max_item,
                self._pending,
                f"Gemini JSON array body: element #{self._count + 1} too large: got at least "
                f"{self._pending} bytes without the element closing",
                f"at most {self._max_item} bytes in one element",
            )

    def _depth_error(self) -> LimitExceededError:
        limit = self._max_depth - 1
        return limit_exceeded(
            "max_json_depth",
            limit,
            limit + 1,
            f"Gemini JSON array body: element #{self._count + 1} nested too deep: got an object or "
            f"array opening at depth {limit + 1} (byte {self._offset})",
            f"at most {limit} levels of nested objects and arrays",
        )

    def _take(self, out: list[Any]) -> None:
        items = self._items
        for item in items:
            if type(item) is not dict:
                raise ProtocolError(
                    f"Gemini JSON array body: expected a JSON object as element #{self._count + 1}, "
                    f"got {_json_type(item)}"
                )
            self._count += 1
            out.append(item)
        del items[:]


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _show(raw: bytes) -> str:
    return repr(raw.decode("utf-8", "replace"))


def _json_error(exc: Exception, piece: bytes, base: int) -> ProtocolError:
    """Turn a yajl error into a message that says what was expected and where.

    yajl's verbose message is the reason on line one, then up to 30 bytes of the input before
    and after the point where the parser stopped, with that point at column 40 (CR and LF shown
    as spaces). The context is searched for in the slice we sent to recover the byte offset;
    when that fails (another backend, ambiguous context) the slice's byte range is given.
    """
    raw = exc.args[0] if exc.args else b""
    msg = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "replace")
    lines = msg.split(b"\n")
    reason = lines[0].decode("utf-8", "replace")
    for prefix in ("parse error: ", "lexical error: "):
        reason = reason.removeprefix(prefix)
    expected = _YAJL_EXPECTED.get(reason, f"expected valid JSON ({reason})")
    where = f"within bytes {base}-{base + len(piece)}"
    got = ""
    if len(lines) >= 3 and lines[2].endswith(b"^"):
        column = len(lines[2]) - 1
        before = lines[1][:column].lstrip(b" ")
        after = lines[1][column:]
        flat = piece.replace(b"\r", b" ").replace(b"\n", b" ")
        needle = before + after
        found = flat.find(needle) if needle else -1
        if found >= 0 and flat.find(needle, found + 1) < 0:
            stop = found + len(before)
            where = f"at byte {base + stop}"
            got = _show(piece[max(0, stop - 16) : stop].lstrip(_JSON_WS) or piece[stop : stop + 1])
        elif before:
            got = _show(before[-16:])
    detail = f", got {got}" if got else ""
    return ProtocolError(f"Gemini JSON array body: {expected}{detail} (parser stopped {where})")
