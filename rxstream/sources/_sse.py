"""Incremental, I/O-free decoders that turn raw response body bytes into events.

Two wire framings are handled here, both fed with bytes exactly as they come off the network
(split at any boundary, including inside a multi-byte UTF-8 character):

* :class:`SSEDecoder` implements the WHATWG "event stream interpretation" rules for
  ``text/event-stream`` bodies, with one deliberate difference: an event still buffered when the
  body ends (no closing blank line) is dispatched by :meth:`SSEDecoder.flush`, because several
  real providers end their streams that way.
* :class:`JSONArrayDecoder` handles Gemini's ``streamGenerateContent`` body without ``alt=sse``:
  one JSON array whose elements arrive one by one.

Both enforce size limits so that a misbehaving peer cannot make memory grow without bound, and
both raise only :class:`~rxstream._errors.ProtocolError` and
:class:`~rxstream._errors.LimitExceededError`.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import ijson  # pyright: ignore[reportMissingTypeStubs]

from rxstream._errors import LimitExceededError, ProtocolError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "JSONArrayDecoder",
    "SSEDecoder",
    "ServerSentEvent",
]

DEFAULT_MAX_BYTES = 16 * 1024 * 1024

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
    unspecified: discard it.

    Args:
        max_line_bytes: Longest line accepted, counted in characters of the decoded line and
            checked as data accumulates, so a peer that never sends a line break cannot
            exhaust memory.
        max_event_bytes: Largest ``data`` of one event (lines joined with ``"\\n"``), counted in
            characters.

    Raises:
        ProtocolError: The body is not valid UTF-8 (from :meth:`feed` or :meth:`flush`).
        LimitExceededError: A line or an event is larger than its limit; ``limit`` is
            ``"max_line_bytes"`` or ``"max_event_bytes"``.
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
    )

    def __init__(
        self,
        *,
        max_line_bytes: int = DEFAULT_MAX_BYTES,
        max_event_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._decode = self._decoder.decode
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
        try:
            text = self._decode(data)
        except UnicodeDecodeError as exc:
            raise self._utf8_error(exc) from exc
        self._bytes_in += len(data)
        if not text:
            return []
        return self._feed_text(text)

    def flush(self) -> list[ServerSentEvent]:
        """Finish the body: process a trailing unterminated line and dispatch a pending event.

        Returns:
            The remaining events, including one that lacked its closing blank line.

        Raises:
            ProtocolError: The body ends inside a multi-byte UTF-8 character.
            LimitExceededError: A line or an event exceeds its limit.
        """
        try:
            try:
                text = self._decode(b"", True)
            except UnicodeDecodeError as exc:
                raise ProtocolError(
                    "SSE body ends inside a multi-byte UTF-8 character "
                    f"(expected {_utf8_continuation_hint(exc)}, got the end of the body "
                    f"after byte {self._bytes_in})"
                ) from exc
            events = self._feed_text(text) if text else []
            line = self._line + "".join(self._more) if self._more else self._line
            if line:
                self._process([line], events)
            if self._data:
                events.append(self._dispatch())
            return events
        finally:
            self._reset()

    def _feed_text(self, text: str) -> list[ServerSentEvent]:
        if self._at_start:
            self._at_start = False
            if text[0] == _BOM:
                text = text[1:]
                if not text:
                    return []
        if self._after_cr:
            # The CR that ended the previous piece already ended its line: a LF right after it
            # is the second half of a CRLF, not an empty line.
            self._after_cr = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return []
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
            return []
        if self._more:
            text = self._line + "".join(self._more) + text
            self._more = []
            self._more_size = 0
        elif self._line:
            text = self._line + text
        # A complete line can only be over the limit if the whole text is: one comparison keeps
        # the common case free of per-line length checks.
        if len(text) > max_line:
            longest = max(map(len, text.split("\n")))
            if longest > max_line:
                raise self._line_error(longest)
        events: list[ServerSentEvent] = []
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
        return events

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
        return LimitExceededError(
            f"SSE line exceeds max_line_bytes={self._max_line} "
            f"(got at least {length} characters without a line break)",
            limit="max_line_bytes",
            value=self._max_line,
        )

    def _event_error(self, size: int) -> LimitExceededError:
        return LimitExceededError(
            f"SSE event data exceeds max_event_bytes={self._max_event} "
            f"(got at least {size} characters before the blank line that ends the event)",
            limit="max_event_bytes",
            value=self._max_event,
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
# max_item_bytes check runs before a huge element has been built in memory.
_JSON_SLICE = 64 * 1024
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

    Args:
        max_item_bytes: Most bytes accepted for one element, counted from the end of the last
            complete element (separators included). The count restarts at the end of the slice
            of input (at most 64 KiB, or ``max_item_bytes`` if smaller) in which an element
            completed, so an element is rejected once it passes the limit by that much at most;
            an element within the limit is never rejected.

    Raises:
        ProtocolError: The body is not a JSON array of objects, or ends before the array is
            closed, or is empty. The ijson error is attached as ``__cause__``. (ijson's yajl2_c
            backend also rejects integers that do not fit in 64 bits.)
        LimitExceededError: An element is larger than ``max_item_bytes``
            (``limit="max_item_bytes"``).
    """

    __slots__ = ("_coro", "_count", "_items", "_max_item", "_offset", "_pending", "_started")

    def __init__(self, *, max_item_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._max_item = max_item_bytes
        self._reset()

    def _reset(self) -> None:
        self._items = cast("list[Any]", ijson.sendable_list())  # pyright: ignore[reportUnknownMemberType]
        self._coro: Any = ijson.items_coro(self._items, "item", use_float=True)  # pyright: ignore[reportUnknownMemberType]
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
            LimitExceededError: An element exceeds ``max_item_bytes``.
        """
        if not data:
            # ijson reads an empty send as the end of the input.
            return []
        if not self._started:
            stripped = data.lstrip(_JSON_WS)
            if not stripped:
                self._offset += len(data)
                return []
            if stripped[0] != ord("["):
                where = self._offset + len(data) - len(stripped)
                raise ProtocolError(
                    "Gemini JSON array body: expected '[' to open the array, "
                    f"got {_show(stripped[:16])} at byte {where}"
                )
            self._started = True
        step = min(_JSON_SLICE, self._max_item)
        if len(data) <= step:
            return self._send(data)
        out: list[Any] = []
        for start in range(0, len(data), step):
            out.extend(self._send(data[start : start + step]))
        return out

    def flush(self) -> list[Any]:
        """Finish the body.

        Returns:
            Elements still held back (normally none).

        Raises:
            ProtocolError: The body was empty, or ended before the array was closed.
        """
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
            return self._take()
        finally:
            self._reset()

    def _send(self, piece: bytes) -> list[Any]:
        base = self._offset
        self._offset = base + len(piece)
        try:
            self._coro.send(piece)
        except Exception as exc:  # ijson has no common base for its backends' errors
            raise _json_error(exc, piece, base) from exc
        if self._items:
            self._pending = 0
            return self._take()
        self._pending += len(piece)
        if self._pending > self._max_item:
            raise LimitExceededError(
                f"Gemini JSON array body: element #{self._count + 1} exceeds "
                f"max_item_bytes={self._max_item} (got at least {self._pending} bytes without "
                "the element closing)",
                limit="max_item_bytes",
                value=self._max_item,
            )
        return []

    def _take(self) -> list[Any]:
        items = self._items[:]
        del self._items[:]
        for item in items:
            self._count += 1
            if type(item) is not dict:
                raise ProtocolError(
                    f"Gemini JSON array body: expected a JSON object as element #{self._count}, "
                    f"got {_json_type(item)}"
                )
        return items


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
