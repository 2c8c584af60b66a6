"""Incremental JSON parsing for ``parse_json()``: text fragments in, value changes out, in linear time.

:class:`PartialJsonParser` is the pure core. It is fed the fragments of one JSON text stream
(one or several top-level values, as a model streams them) and reports each change of the
value as a :class:`Change`: a value set at a path, or a piece appended to a string still
streaming, plus the paths that became final. :func:`apply` rebuilds the value from changes.

Each fragment is scanned once: only an unfinished number, literal or escape sequence (a few
characters) is carried over to the next fragment, and a string still streaming is kept as a
list of pieces joined only when someone asks for the value. Re-parsing the whole buffer per
fragment, as SDK helpers do, is quadratic in the number of fragments.
"""

from __future__ import annotations

import json
import json.decoder
import re
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, NoReturn, TypeAlias, cast

from rxstream._errors import JsonError, RxStreamError
from rxstream._limits import DEFAULT_LIMITS, limit_exceeded

__all__ = ["Change", "JsonPath", "PartialJsonParser", "apply", "deep_copy"]

JsonPath = tuple[str | int, ...]
"""Where a value sits: object keys and array indices from the top-level value down."""

_Container: TypeAlias = dict[str, Any] | list[Any]


class Change(NamedTuple):
    """One change of the value being parsed.

    Attributes:
        path: Where the change applies; ``()`` is the top-level value.
        op: ``"set"`` puts ``value`` at ``path`` (a scalar, the prefix of a string still
            streaming, an empty ``{}`` / ``[]`` for a container that opened, or the value so far
            of a number still streaming); ``"append"`` appends the string ``value`` to the
            string at ``path``; ``"done"`` changes nothing and only reports ``completed`` (a
            container closed, or a number ended, with no other change in that ``feed()``).
        value: The value set, the piece appended, or ``None`` for ``"done"``.
        completed: Paths whose values became final with this change, innermost first: a
            string, number, ``true``/``false``/``null`` when its token ends, an object or array
            when it closes, ``()`` when the top-level value is complete.
        top_level_index: Which top-level value of the stream the change belongs to (0, 1, ...).
    """

    path: JsonPath
    op: Literal["set", "append", "done"]
    value: Any
    completed: tuple[JsonPath, ...]
    top_level_index: int


# What the parser expects next. The first three all expect a value.
_VALUE = 0  # a value (top level, after ':' or after ',' in an array)
_VALUE_OR_CLOSE = 1  # a value or ']' (just after '[')
_AFTER = 2  # ',' or the closing bracket of the innermost container
_KEY = 3  # a string key (after ',' in an object)
_KEY_OR_CLOSE = 4  # a string key or '}' (just after '{')
_COLON = 5
_STRING = 6  # inside a string (key or value)
_NUMBER = 7  # inside a number; its text so far is in the tail
_LITERAL = 8  # inside true / false / null; its text so far is in the tail

_EXPECTED = {
    _VALUE: "a value",
    _VALUE_OR_CLOSE: "a value or ']'",
    _KEY: "a string key",
    _KEY_OR_CLOSE: "a string key or '}'",
    _COLON: "':'",
}

_NOT_WS = re.compile(r"[^ \t\n\r]")
_STR_STOP = re.compile(r'["\\\x00-\x1f]')
# An escape sequence cut by the end of a fragment (a high surrogate waits for its low half).
_ESCAPE_START = re.compile(
    r"\\(?:u(?:[0-9a-fA-F]{0,3}|[dD][89abAB][0-9a-fA-F]{2}(?:\\(?:u[0-9a-fA-F]{0,3})?)?))?"
)
# A run of complete string content: plain characters and whole escapes. A high surrogate
# escape is taken only with its low half; alone (or split) it is left to _escape().
_STR_CHUNK = re.compile(
    r'(?:[^"\\\x00-\x1f]+|\\["\\/bfnrt]|\\u(?![dD][89abAB])[0-9a-fA-F]{4}'
    r"|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})*"
)
_new_change = cast(Callable[[type[Change], tuple[Any, ...]], Change], vars(tuple)["__new__"])
_scanstring = cast(Callable[[str, int], tuple[str, int]], vars(json.decoder)["scanstring"])
_NUM_STOP = re.compile(r"[^-+.eE0-9]")
_NUMBER_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
# Every text that some continuation turns into a number.
_NUMBER_PREFIX = re.compile(r"-?(?:(?:0|[1-9][0-9]*)(?:\.(?:[0-9]+(?:[eE][-+]?[0-9]*)?)?|[eE][-+]?[0-9]*)?)?")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_HEX_PREFIX = re.compile(r"[0-9a-fA-F]{0,4}")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_LITERALS: dict[str, tuple[str, Any]] = {"t": ("true", True), "f": ("false", False), "n": ("null", None)}
_UNSET: Any = object()


def _to_number(text: str) -> int | float:
    # Same types as json.loads: an int unless there is a fraction or an exponent.
    if "." in text or "e" in text or "E" in text:
        return float(text)
    return int(text)


def deep_copy(value: Any) -> Any:
    """A copy of a JSON value sharing no container with it."""
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in cast(dict[str, Any], value).items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in cast(list[Any], value)]
    return value


def _empty_like(container: Any) -> Any:
    empty: Any = {} if isinstance(container, dict) else []
    return empty


class PartialJsonParser:
    """Parses a stream of JSON text fragments incrementally, reporting each value change.

    Feed every fragment with :meth:`feed`, then call :meth:`finish` once when the text ends.
    Total work is linear in the length of the text, whatever the fragment sizes.

    Example:
        >>> p = PartialJsonParser()
        >>> [c.op for c in p.feed('{"a": "he')]
        ['set', 'set']
        >>> p.feed('llo"}')[0].value
        'llo'
        >>> p.value
        {'a': 'hello'}

    Args:
        max_depth: The most objects and arrays nested in one value
            (:attr:`rxstream.Limits.max_json_depth`).

    Raises:
        JsonError: From :meth:`feed` or :meth:`finish` when the text is not JSON (the message
            gives the position, what was expected and what arrived; the ``__cause__`` is a
            :class:`json.JSONDecodeError`), and from every call after that.
        LimitExceededError: From :meth:`feed` when an object or array opens deeper than
            ``max_depth`` (``limit="max_json_depth"``), and from every call after that.
    """

    def __init__(self, *, max_depth: int = DEFAULT_LIMITS.max_json_depth) -> None:
        self._max_depth = max_depth
        self._state = _VALUE
        self._tail = ""  # unfinished number, literal or escape carried to the next fragment
        self._base = 0  # stream position of the first character of the current buffer
        self._containers: list[_Container] = []
        self._paths: list[JsonPath] = []
        self._key = ""  # key awaiting its value in the innermost object
        self._root: Any = None
        self._count = 0
        self._index = 0
        self._finished = False
        self._failure: RxStreamError | None = None
        self._truncated = False
        # The value being streamed (string or number) and where it lives.
        self._slot_parent: _Container | None = None
        self._slot_key = ""  # its key when the parent is an object (in an array it is the last item)
        self._slot_path: JsonPath = ()
        self._str_is_key = False
        self._str_parts: list[str] = []
        self._str_emitted = 0  # parts already reported
        self._str_new = False  # started in this feed(): reported with "set", not "append"
        self._num_attached = False
        self._num_last: Any = _UNSET
        self._finishing = False

    @property
    def truncated(self) -> bool:
        """Whether :meth:`finish` found the text ending inside a value."""
        return self._truncated

    @property
    def value_count(self) -> int:
        """How many top-level values have started so far."""
        return self._count

    @property
    def value(self) -> Any:
        """The current (last started) top-level value so far, ``None`` before any.

        This is the parser's live object: read it, do not mutate it; use :meth:`snapshot` to
        keep a copy.
        """
        self._materialize()
        return self._root

    def snapshot(self) -> Any:
        """Return a deep copy of :attr:`value` (cost proportional to its size)."""
        self._materialize()
        return deep_copy(self._root)

    def feed(self, text: str) -> list[Change]:
        """Consume the next fragment and return the changes it caused, in order.

        Raises:
            JsonError: When the text is not valid JSON, or after :meth:`finish`.
        """
        out: list[Change] = []
        if self._finished or self._failure is not None:
            if self._failure is not None:
                raise self._failure
            raise JsonError(f"expected no more JSON text after finish(), got {text[:20]!r}")
        if not text:
            return out
        buf = self._tail + text if self._tail else text
        if self._state == _STRING and not self._str_is_key:
            # The common case for long strings: a fragment inside the string, maybe ending
            # inside an escape sequence.
            if _STR_STOP.search(buf) is None:
                j = len(buf)
                piece = buf
            else:
                j = _STR_CHUNK.match(buf).end()  # pyright: ignore[reportOptionalMemberAccess]
                piece = _scanstring(buf[:j] + '"', 0)[0] if j else ""
            if j == len(buf) or _ESCAPE_START.fullmatch(buf, j) is not None:
                if piece:
                    parts = self._str_parts
                    parts.append(piece)
                    self._str_emitted = len(parts)
                    # tuple.__new__ skips the NamedTuple constructor: this is the hot path.
                    out.append(_new_change(Change, (self._slot_path, "append", piece, (), self._index)))
                self._tail = buf[j:]
                self._base += j
                return out
        if self._state == _LITERAL:
            self._state = _VALUE
        self._tail = ""
        self._run(buf, out)
        return out

    def finish(self) -> list[Change]:
        """Mark the end of the text and return the last changes (a number ended by it).

        Sets :attr:`truncated` when the text ended inside a value; :attr:`value` keeps what
        arrived. Calling it again returns nothing.

        Raises:
            JsonError: When parsing already failed, or the number ending the text has more
                digits than Python converts.
        """
        if self._failure is not None:
            raise self._failure
        out: list[Change] = []
        if self._finished:
            return out
        self._finished = True
        if self._state == _NUMBER:
            buf, self._tail = self._tail, ""
            self._finishing = True
            self._number(buf, 0, out)
        self._truncated = bool(self._containers) or self._state in (_STRING, _NUMBER, _LITERAL, _COLON)
        return out

    # -- scanning --------------------------------------------------------------------------

    def _run(self, buf: str, out: list[Change]) -> None:
        n = len(buf)
        i = 0
        while i < n:
            st = self._state
            if st == _STRING:
                stop = _STR_STOP.search(buf, i)
                if stop is None:
                    self._str_parts.append(buf[i:])
                    break
                j = stop.start()
                if buf[j] == '"':
                    # No escape before the closing quote: the usual end of a string.
                    if j > i:
                        self._str_parts.append(buf[i:j])
                    i = j + 1
                    self._close_string(out)
                    continue
                # The pattern matches the empty string, so there is always a match.
                j = _STR_CHUNK.match(buf, i).end()  # pyright: ignore[reportOptionalMemberAccess]
                if j > i:
                    chunk = buf[i:j]
                    if "\\" in chunk:
                        # The C decoder does the escapes of the whole run at once.
                        chunk = _scanstring(chunk + '"', 0)[0]
                    self._str_parts.append(chunk)
                    i = j
                    if i == n:
                        break
                c = buf[i]
                if c == '"':
                    i += 1
                    self._close_string(out)
                elif c == "\\":
                    k = self._escape(buf, i)
                    if k < 0:
                        self._tail = buf[i:]
                        break
                    i = k
                else:
                    self._fail(buf, i, "a string character (control characters must be escaped)")
                continue
            if st == _NUMBER:
                i = self._number(buf, i, out)
                if self._state == _NUMBER:
                    break
                continue
            c = buf[i]
            if c in " \t\n\r":
                i += 1
                if i < n and buf[i] in " \t\n\r":
                    other = _NOT_WS.search(buf, i)
                    i = n if other is None else other.start()
                continue
            if st == _AFTER:
                in_object = isinstance(self._containers[-1], dict)
                if c == ",":
                    self._state = _KEY if in_object else _VALUE
                    # Skip the usual one space after it here rather than in another round.
                    i += 2 if buf.startswith(" ", i + 1) else 1
                    continue
                if c == ("}" if in_object else "]"):
                    self._close_container(out)
                else:
                    self._fail(buf, i, "',' or '}'" if in_object else "',' or ']'")
                i += 1
            elif st <= _VALUE_OR_CLOSE:
                if c == "]" and st == _VALUE_OR_CLOSE:
                    self._close_container(out)
                    i += 1
                else:
                    i = self._start_value(buf, i, c, out)
                    if self._tail or self._state == _NUMBER:
                        break
            elif st in (_KEY, _KEY_OR_CLOSE):
                if c == '"':
                    stop = _STR_STOP.search(buf, i + 1)
                    if stop is not None and stop.group() == '"':
                        # A key with no escapes, whole in this buffer: the usual case.
                        self._key = buf[i + 1 : stop.start()]
                        self._state = _COLON
                        i = stop.start()
                    else:
                        self._state = _STRING
                        self._str_is_key = True
                        self._str_parts = []
                elif c == "}" and st == _KEY_OR_CLOSE:
                    self._close_container(out)
                else:
                    self._fail(buf, i, _EXPECTED[st])
                i += 1
            elif c == ":":  # st == _COLON
                self._state = _VALUE
                i += 2 if buf.startswith(" ", i + 1) else 1
            else:
                self._fail(buf, i, _EXPECTED[st])
        if self._state == _STRING and not self._str_is_key:
            self._report_string(out)
        self._base += n - len(self._tail)

    def _start_value(self, buf: str, i: int, c: str, out: list[Change]) -> int:
        if c == '"':
            stop = _STR_STOP.search(buf, i + 1)
            if stop is not None and stop.group() == '"':
                # A string with no escapes, whole in this buffer: set it at once.
                value = buf[i + 1 : stop.start()]
                path = self._attach(value)
                out.append(_new_change(Change, (path, "set", value, (path,), self._index)))
                self._state = _AFTER if self._containers else _VALUE
                return stop.end()
            self._slot_path = self._attach("")
            self._state = _STRING
            self._str_is_key = False
            self._str_parts = []
            self._str_emitted = 0
            self._str_new = True
            return i + 1
        if c == "{" or c == "[":
            if len(self._containers) >= self._max_depth:
                self._too_deep(i)
            container: Any = {} if c == "{" else []
            path = self._attach(container)
            self._containers.append(container)
            self._paths.append(path)
            out.append(_new_change(Change, (path, "set", {} if c == "{" else [], (), self._index)))
            self._state = _KEY_OR_CLOSE if c == "{" else _VALUE_OR_CLOSE
            return i + 1
        if c in "-0123456789":
            self._state = _NUMBER
            self._num_attached = False
            self._num_last = _UNSET
            return self._number(buf, i, out)
        literal = _LITERALS.get(c)
        if literal is None:
            self._fail(buf, i, _EXPECTED[self._state])
        word, value = literal
        end = i + len(word)
        if buf.startswith(word, i):
            path = self._attach(value)
            out.append(_new_change(Change, (path, "set", value, (path,), self._index)))
            self._state = _AFTER if self._containers else _VALUE
            return end
        rest = buf[i:end]
        if end > len(buf) and word.startswith(rest):
            self._tail = rest
            self._state = _LITERAL
            return len(buf)
        self._fail(buf, i, repr(word))

    def _number(self, buf: str, i: int, out: list[Change]) -> int:
        stop = _NUM_STOP.search(buf, i)
        j = len(buf) if stop is None else stop.start()
        text = buf[i:j]
        if j == len(buf) and not self._finishing:
            # The number may go on in the next fragment: report its value so far.
            if _NUMBER_PREFIX.fullmatch(text) is None:
                self._fail(buf, i, "a number")
            self._tail = text
            done = _NUMBER_RE.match(text)
            if done is not None:
                self._set_number(self._convert(done.group(), buf, i), False, out)
            return j
        if _NUMBER_RE.fullmatch(text) is None:
            if self._finishing and _NUMBER_PREFIX.fullmatch(text) is not None:
                return j  # cut short by the end of the text: truncated
            self._fail(buf, i, "a number")
        self._set_number(self._convert(text, buf, i), True, out)
        self._after_value()
        return j

    def _convert(self, text: str, buf: str, i: int) -> int | float:
        try:
            return _to_number(text)
        except ValueError as exc:  # more digits than int() accepts
            message = (
                f"invalid JSON at position {self._base + i}: expected a number, got {text[:40]!r} ({exc})"
            )
            self._failure = JsonError(message)
            raise self._failure from exc

    def _set_number(self, number: int | float, final: bool, out: list[Change]) -> None:
        if not self._num_attached:
            self._slot_path = self._attach(number)
            self._num_attached = True
        else:
            self._store(number)
        path = self._slot_path
        last = self._num_last
        if last is not _UNSET and last == number and type(last) is type(number):
            if final:
                self._complete(path, out)
            return
        self._num_last = number
        out.append(_new_change(Change, (path, "set", number, (path,) if final else (), self._index)))

    def _escape(self, buf: str, i: int) -> int:
        # Returns the index after the escape, or -1 when it continues in the next fragment.
        n = len(buf)
        if i + 1 >= n:
            return -1
        e = buf[i + 1]
        simple = _ESCAPES.get(e)
        if simple is not None:
            self._str_parts.append(simple)
            return i + 2
        if e != "u":
            self._fail(buf, i + 1, 'an escape character (one of "\\/bfnrtu)')
        if i + 6 > n:
            if _HEX_PREFIX.fullmatch(buf, i + 2) is None:
                self._fail(buf, i + 2, "4 hex digits")
            return -1
        if _HEX4.fullmatch(buf, i + 2, i + 6) is None:
            self._fail(buf, i + 2, "4 hex digits")
        code = int(buf[i + 2 : i + 6], 16)
        if 0xD800 <= code < 0xDC00:
            # A high surrogate: join it with a low one that follows, as json.loads does.
            rest = buf[i + 6 : i + 12]
            if len(rest) < 6 and "\\u".startswith(rest[:2]) and _HEX_PREFIX.fullmatch(rest, 2) is not None:
                return -1
            if rest[:2] == "\\u" and _HEX4.fullmatch(rest, 2) is not None:
                low = int(rest[2:], 16)
                if 0xDC00 <= low < 0xE000:
                    self._str_parts.append(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
                    return i + 12
        self._str_parts.append(chr(code))
        return i + 6

    # -- building the value ----------------------------------------------------------------

    def _attach(self, value: Any) -> JsonPath:
        if not self._containers:
            self._root = value
            self._slot_parent = None
            self._index = self._count
            self._count += 1
            return ()
        parent = self._containers[-1]
        self._slot_parent = parent
        if isinstance(parent, list):
            parent.append(value)
            return (*self._paths[-1], len(parent) - 1)
        key = self._slot_key = self._key
        parent[key] = value
        return (*self._paths[-1], key)

    def _store(self, value: Any) -> None:
        parent = self._slot_parent
        if parent is None:
            self._root = value
        elif isinstance(parent, list):
            parent[-1] = value
        else:
            parent[self._slot_key] = value

    def _report_string(self, out: list[Change]) -> None:
        parts = self._str_parts
        if self._str_new:
            piece = "".join(parts[self._str_emitted :])
            out.append(_new_change(Change, (self._slot_path, "set", piece, (), self._index)))
            self._str_new = False
        elif len(parts) > self._str_emitted:
            piece = "".join(parts[self._str_emitted :])
            out.append(_new_change(Change, (self._slot_path, "append", piece, (), self._index)))
        self._str_emitted = len(parts)

    def _close_string(self, out: list[Change]) -> None:
        parts = self._str_parts
        self._str_parts = []
        if self._str_is_key:
            self._key = "".join(parts)
            self._state = _COLON
            return
        piece = "".join(parts[self._str_emitted :])
        self._store(piece if self._str_emitted == 0 else "".join(parts))
        path = self._slot_path
        out.append(
            _new_change(Change, (path, "set" if self._str_new else "append", piece, (path,), self._index))
        )
        self._str_new = False
        self._after_value()

    def _materialize(self) -> None:
        if self._state == _STRING and not self._str_is_key:
            joined = "".join(self._str_parts)
            self._store(joined)
            self._str_parts = [joined] if joined else []
            self._str_emitted = len(self._str_parts)

    def _close_container(self, out: list[Change]) -> None:
        self._containers.pop()
        self._complete(self._paths.pop(), out)
        self._after_value()

    def _complete(self, path: JsonPath, out: list[Change]) -> None:
        # Nothing changed since the last change of this feed(), so the completion rides on it.
        if out:
            last = out[-1]
            out[-1] = _new_change(
                Change, (last.path, last.op, last.value, (*last.completed, path), last.top_level_index)
            )
        else:
            out.append(_new_change(Change, (path, "done", None, (path,), self._index)))

    def _after_value(self) -> None:
        self._state = _AFTER if self._containers else _VALUE

    def _too_deep(self, i: int) -> NoReturn:
        limit = self._max_depth
        self._failure = limit_exceeded(
            "max_json_depth",
            limit,
            limit + 1,
            f"JSON nested too deep at position {self._base + i}: got an object or array opening "
            f"at depth {limit + 1}",
            f"at most {limit} levels of nested objects and arrays",
        )
        raise self._failure

    def _fail(self, buf: str, i: int, expected: str) -> NoReturn:
        got = repr(buf[i : i + 20]) if i < len(buf) else "the end of the text"
        message = f"invalid JSON at position {self._base + i}: expected {expected}, got {got}"
        self._failure = JsonError(message)
        raise self._failure from json.JSONDecodeError(message, buf, i)


def apply(value: Any, change: Change) -> Any:
    """Apply one change to a value rebuilt from the earlier changes and return the result.

    Start from ``None`` for each top-level value (``change.top_level_index``). Containers are
    updated in place; the return value differs from ``value`` when the change sets the
    top-level value or appends to a top-level string.

    Example:
        >>> p = PartialJsonParser()
        >>> v = None
        >>> for c in p.feed('{"a": [1, "x') + p.feed('y"]}') + p.finish():
        ...     v = apply(v, c)
        >>> v
        {'a': [1, 'xy']}
    """
    op = change.op
    if op == "done":
        return value
    new = change.value
    if op == "set" and isinstance(new, dict | list):
        # Never share the change's placeholder: several consumers may apply the same change.
        new = _empty_like(new)
    path = change.path
    if not path:
        return new if op == "set" else value + new
    parent: Any = value
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if op == "append":
        parent[key] += new
    elif isinstance(key, int) and key == len(parent):
        parent.append(new)
    else:
        parent[key] = new
    return value
