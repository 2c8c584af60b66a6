"""The per-target JSON documents behind ``parse_json()``: fragments in, one report per value change out.

A document is fed the text fragments of one target (an output's text or a tool call's arguments)
and answers each fragment with at most one :class:`Report` per top-level value it touched: one
change equivalent to everything the fragment changed (``path``/``op``/``value``), the JSON paths
that became final, and the value itself once it is complete.

:class:`YajlDocument` is the fast path. ijson's push parser on the yajl2_c backend does the
structure, in C and in linear time; yajl never reports a string or a number still in progress,
so a small lexer over each fragment finds what is still open at its end (a string, and where its
text starts; a number, and its digits so far) and reports it. yajl disagrees with ``json.loads``
in a few corners (integers beyond 64 bits overflow, lone surrogate escapes become ``?``); when a
fragment could reach one of them, or yajl rejects the text for any reason, the document hands
over to :class:`PythonDocument` (the pure-Python :class:`PartialJsonParser`), replaying the text
so far silently. That parser then either goes on exactly where the fast path stopped or raises
the precise error.
"""

from __future__ import annotations

import json.decoder
import re
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, cast

import ijson  # pyright: ignore[reportMissingTypeStubs]
from ijson.common import JSONError as _IjsonError  # pyright: ignore[reportMissingTypeStubs]
from ijson.utils import sendable_list  # pyright: ignore[reportMissingTypeStubs]

from rxstream._limits import DEFAULT_LIMITS
from rxstream.operators._json_partial import Change, PartialJsonParser, apply, deep_copy

try:
    from rxstream import _jsonfast  # the C document, built at install time when a compiler is present
except ImportError:  # pragma: no cover - exercised on installs without a C compiler
    _jsonfast = None

__all__ = ["Document", "NativeDocument", "PythonDocument", "Report", "YajlDocument", "new_document", "spine_copy"]

Path = list[str | int]


class Report(NamedTuple):
    """What one fragment changed in one top-level value.

    Attributes:
        path: Where ``value`` applies (``[]`` is the top-level value), or None when only
            ``completed`` changed.
        op: ``"set"`` (put ``value`` at ``path``) or ``"append"`` (append the string ``value`` to
            the string at ``path``), or None with ``path``.
        value: The value set (a copy the document never mutates) or the piece appended.
        completed: Paths that became final, innermost first; ``[]`` when the value is complete.
        top_level_index: Which top-level value (0, 1, ...).
        complete: Whether the top-level value is complete; ``final`` is then the value.
        final: The complete value (only when ``complete``; shared: do not mutate).
    """

    path: Path | None
    op: Literal["set", "append"] | None
    value: Any
    completed: list[Path]
    top_level_index: int
    complete: bool
    final: Any


_new_report = cast(Callable[[type[Report], tuple[Any, ...]], Report], vars(tuple)["__new__"])
_scanstring = cast(Callable[[str, int], tuple[str, int]], vars(json.decoder)["scanstring"])
_YAJL: Any = ijson.get_backend("yajl2_c")  # pyright: ignore[reportUnknownMemberType]

# The rest of a string up to and including its closing quote (possessive: fails in linear time).
_STRING_REST = re.compile(r'[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
# A run of complete string content: plain characters and whole escapes (surrogate escapes never
# reach the fast path).
_STRING_CHUNK = re.compile(r'(?:[^"\\\x00-\x1f]+|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*')
# What may be left of a string's text at a fragment's end: an escape not finished yet.
_ESCAPE_PREFIX = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?")
_CONTROL = re.compile(r"[\x00-\x1f]")
# A surrogate escape, which yajl does not decode as json.loads does (a lone one becomes '?').
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
# A number still open at the end of a fragment (no delimiter after it yet).
_NUMBER_TAIL = re.compile(r"-?[0-9][-+.eE0-9]*\Z|-\Z")
_NUMBER_CHARS = frozenset("-+.eE0123456789")
_LEADING_ZERO = re.compile(r"-?0[0-9]")
_NUMBER_VALUE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


def _number(text: str) -> int | float | None:
    """The value of the longest complete number at the start of ``text`` (json.loads types)."""
    match = _NUMBER_VALUE.match(text)
    if match is None:
        return None
    digits = match.group()
    if "." in digits or "e" in digits or "E" in digits:
        return float(digits)
    return int(digits)


def _at(value: Any, path: Path) -> Any:
    for key in path:
        value = value[key]
    return value


def spine_copy(value: Any, path: Path, start: int = 0) -> Any:
    """Copy the containers along ``path[start:]`` and share everything else.

    A document only ever changes its value along the path of its latest change (every other
    child of an open container is closed), so sharing the rest is safe and costs the width of
    the containers on the path instead of the size of the value.
    """
    if type(value) is dict:
        copied: Any = dict(cast(dict[str, Any], value))
    elif type(value) is list:
        copied = list(cast(list[Any], value))
    else:
        return value
    if start < len(path):
        key = path[start]
        copied[key] = spine_copy(copied[key], path, start + 1)
    return copied


def _merge(root: Any, changes: list[tuple[Path, str, Any]]) -> tuple[Path, Any, Any]:
    """One change equivalent to several: a ``set`` of a copy of the deepest value holding them all."""
    path = changes[0][0]
    depth = len(path)
    for other, _, _ in changes[1:]:
        n = min(depth, len(other))
        i = 0
        while i < n and path[i] == other[i]:
            i += 1
        depth = i
    common = path[:depth]
    return common, "set", spine_copy(_at(root, common), changes[-1][0], depth)


class YajlDocument:
    """The fast document: yajl for the structure, a small lexer for what is open at a fragment's end.

    Example:
        >>> d = YajlDocument()
        >>> [(r.path, r.op, r.value) for r in d.feed('{"a": "he')]
        [([], 'set', {'a': 'he'})]
        >>> [(r.path, r.op, r.value, r.completed) for r in d.feed('llo"}')]
        [(['a'], 'append', 'llo', [['a'], []])]

    Args:
        max_depth: The most objects and arrays nested in one value
            (:attr:`rxstream.Limits.max_json_depth`).

    Raises:
        JsonError: From :meth:`feed` or :meth:`finish` when the text is not JSON (raised by the
            pure-Python parser the document hands over to, with the position, what was expected
            and what arrived).
        LimitExceededError: From :meth:`feed` when an object or array opens deeper than
            ``max_depth``: a fragment that holds more opening brackets than there is room for
            goes to the pure-Python parser, which finds the exact position (so yajl never builds
            the events of a million brackets, and both documents say the same).
    """

    __slots__ = (
        "_coro",
        "_escape",
        "_events",
        "_held",
        "_in_string",
        "_index",
        "_key",
        "_last_kind",
        "_last_path",
        "_max_depth",
        "_n_last",
        "_n_open",
        "_n_path",
        "_n_text",
        "_paths",
        "_root",
        "_s_emitted",
        "_s_parts",
        "_s_path",
        "_s_stale",
        "_skip",
        "_slot_key",
        "_slot_parent",
        "_slow",
        "_stack",
        "_surrogate_carry",
        "_text",
        "count",
        "truncated",
    )

    def __init__(self, *, max_depth: int = DEFAULT_LIMITS.max_json_depth) -> None:
        self._max_depth = max_depth
        self._events: Any = sendable_list()
        self._coro: Any = _YAJL.basic_parse_coro(self._events, multiple_values=True, use_float=True)
        self._text: list[str] = []  # every fragment, for the hand-over
        self._held: list[str] = []  # fragments inside one string, not yet given to yajl
        self._slow: PythonDocument | None = None
        self._stack: list[Any] = []  # open containers, outermost first (the live objects)
        self._paths: list[Path] = []  # their paths
        self._key: str | None = None  # the key awaiting its value in the innermost object
        self._last_kind = ""  # the last yajl event (a value string follows 'map_key')
        self._root: Any = None
        self._index = -1
        self.count = 0  # top-level values started
        self.truncated = False
        self._last_path: Path = []  # the path of the latest change: where the value goes on
        # The lexer: whether the fragment ended inside a string, after a backslash.
        self._in_string = False
        self._skip = False
        self._surrogate_carry = ""  # the end of the last fragment when it may begin an escape
        # Where the value being streamed lives (a string or number still open).
        self._slot_parent: Any = None
        self._slot_key: Any = None
        # The value string still open: its path, its pieces, how many characters were reported,
        # whether the live value lags behind the pieces, and an escape cut by the fragment's end.
        self._s_path: Path | None = None
        self._s_parts: list[str] = []
        self._s_emitted = 0
        self._s_stale = False
        self._escape = ""
        # The number still open: whether, its path once it has a value, its text, its value.
        self._n_open = False
        self._n_path: Path | None = None
        self._n_text = ""
        self._n_last: Any = None

    @property
    def value(self) -> Any:
        """The current (last started) top-level value so far (live: do not mutate)."""
        if self._slow is not None:
            return self._slow.value
        self._materialize()
        return self._root

    @property
    def value_count(self) -> int:
        """How many top-level values have started so far."""
        return self._slow.value_count if self._slow is not None else self.count

    def snapshot(self) -> Any:
        """A copy of the value so far, sharing the parts that can no longer change."""
        if self._slow is not None:
            return self._slow.snapshot()
        self._materialize()
        return spine_copy(self._root, self._last_path)

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, text: str) -> list[Report] | None:
        """Consume the next fragment; return its reports, or None when nothing changed.

        Raises:
            JsonError: When the text is not valid JSON.
        """
        if self._slow is not None:
            return self._slow.feed(text)
        if not text:
            return None
        self._text.append(text)
        backslash = "\\" in text
        carry = self._surrogate_carry
        if backslash or carry:
            probe = carry + text if carry else text
            if _SURROGATE.search(probe) is not None:
                return self._hand_over(text)
            cut = probe.rfind("\\", -5)
            self._surrogate_carry = probe[cut:] if cut >= 0 else ""
        was_in_string = in_string = self._in_string
        quotes = text.count('"')
        path = self._s_path
        if path is not None and not quotes and not backslash and not self._escape and _CONTROL.search(text) is None:
            # The usual fragment of a long string: all of it is the string's next piece. yajl
            # re-reads a token it holds on every feed (quadratic for a long string fed in
            # pieces), so it gets the string's fragments together, when the string ends.
            self._held.append(text)
            self._s_parts.append(text)
            self._s_emitted += len(text)
            self._s_stale = True
            self._last_path = path
            return [_new_report(Report, (path, "append", text, [], self._index, False, None))]
        room = self._max_depth - len(self._stack)
        if len(text) > room and text.count("[") + text.count("{") > room:
            return self._hand_over(text)
        # -- the lexer: is the fragment's end inside a string, and since where?
        opened = -1  # where the text of a string opened in this fragment (still open) starts
        after = 0  # where the text after the last closing quote starts
        if not backslash and not self._skip:
            # No escapes: every quote toggles.
            if quotes:
                last = text.rfind('"') + 1
                if quotes & 1:
                    in_string = not in_string
                if in_string:
                    opened = last
                else:
                    after = last
            skip = False
        else:
            n = len(text)
            i = 1 if self._skip else 0
            while True:
                if in_string:
                    m = _STRING_REST.match(text, i)
                    if m is None:
                        break
                    i = after = m.end()
                    in_string = False
                    opened = -1
                else:
                    j = text.find('"', i)
                    if j < 0:
                        break
                    i = opened = j + 1
                    in_string = True
            skip = False
            if in_string and text[-1] == "\\":
                start = opened if opened >= 0 else (1 if self._skip else 0)
                run = n - len(text.rstrip("\\"))
                skip = min(run, n - start) % 2 == 1
        self._in_string = in_string
        self._skip = skip
        held = self._held
        if was_in_string and in_string and opened < 0:
            held.append(text)  # still inside the same string: yajl gets it when it ends
        else:
            try:
                if held:
                    held.append(text)
                    self._coro.send("".join(held).encode())
                    held.clear()
                else:
                    self._coro.send(text.encode())
            except (_IjsonError, UnicodeEncodeError):
                return self._hand_over(text)

        reports: list[Report] = []
        events = self._events
        if events:
            changes, completed = self._apply_events(events, reports)
            self._last_kind = events[-1][0]
            del events[:]
        else:
            changes = []
            completed = []
        # -- what is still open at the end of the fragment
        if in_string:
            if opened >= 0:
                stack = self._stack
                if not stack or type(stack[-1]) is list or self._last_kind == "map_key":
                    if not self._may_start(text, opened - 1, "value"):
                        return self._hand_over(text)
                    self._escape = ""
                    piece = self._decode(text[opened:])
                    if piece is None:
                        return self._hand_over(text)
                    path = self._attach(piece)
                    changes.append((path, "set", piece))
                    self._s_path = path
                    self._s_parts = [piece]
                    self._s_emitted = len(piece)
                    self._s_stale = False
            elif self._s_path is not None:
                piece = self._decode(text)
                if piece is None:
                    return self._hand_over(text)
                if piece:
                    changes.append((self._s_path, "append", piece))
                    self._s_parts.append(piece)
                    self._s_emitted += len(piece)
                    self._s_stale = True
        else:
            if self._n_open:
                self._n_text += text
            elif text[-1] in _NUMBER_CHARS:
                m = _NUMBER_TAIL.search(text, after)
                if m is not None:
                    if not self._may_start(text, m.start(), "number") or _LEADING_ZERO.match(m.group()):
                        return self._hand_over(text)
                    self._n_open = True
                    self._n_path = None
                    self._n_text = m.group()
            if self._n_open:
                number = _number(self._n_text)
                if number is not None:
                    if self._n_path is None:
                        self._n_path = path = self._attach(number)
                        changes.append((path, "set", number))
                        self._n_last = number
                    else:
                        last = self._n_last
                        if number != last or type(number) is not type(last):
                            self._store(number)
                            changes.append((self._n_path, "set", number))
                            self._n_last = number
        if len(changes) == 1:
            path, op, value = changes[0]
            self._last_path = path
            reports.append(_new_report(Report, (path, op, value, completed, self._index, False, None)))
        elif changes or completed:
            reports.append(self._report(changes, completed, False, None))
        return reports or None

    def finish(self) -> list[Report] | None:
        """Mark the end of the text; return the last reports (a top-level number ended by it).

        Sets :attr:`truncated` when the text ended inside a value.

        Raises:
            JsonError: When the text is not valid JSON.
        """
        if self._slow is not None:
            slow_reports = self._slow.finish()
            self.truncated = self._slow.truncated
            return slow_reports
        if self._stack and not self._in_string:
            self.truncated = True
            return None
        try:
            if self._in_string:
                # Inside a string: a key out of place is only found by the pure-Python parser.
                raise _IjsonError("the text ends inside a string")
            self._coro.close()
        except _IjsonError:
            # An open literal or a malformed last token: the pure-Python parser knows which.
            self._hand_over("")
            assert self._slow is not None
            ended = self._slow.finish()
            self.truncated = self._slow.truncated
            return ended
        events = self._events
        reports: list[Report] = []
        if events:
            changes, completed = self._apply_events(events, reports)
            del events[:]
            if changes or completed:
                reports.append(self._report(changes, completed, False, None))
        return reports or None

    # -- internals -------------------------------------------------------------------------

    def _hand_over(self, text: str) -> list[Report] | None:
        """Replay the text before ``text`` into the pure-Python parser, then feed it ``text``."""
        slow = self._slow = PythonDocument(max_depth=self._max_depth)
        before = "".join(self._text[:-1] if text else self._text)
        self._text = []
        if before:
            slow.replay(before)
        return slow.feed(text) if text else None

    def _apply_events(
        self, events: list[tuple[str, Any]], reports: list[Report]
    ) -> tuple[list[tuple[Path, str, Any]], list[Path]]:
        """Build the value from yajl's events; report each top-level value they complete.

        Returns the changes and completed paths of the value still open, for the caller to
        add what the lexer finds open at the fragment's end.
        """
        changes: list[tuple[Path, str, Any]] = []
        completed: list[Path] = []
        stack = self._stack
        for kind, value in events:
            if kind == "map_key":
                self._key = value
                continue
            if kind == "end_map" or kind == "end_array":
                stack.pop()
                completed.append(self._paths.pop())
                if not stack:
                    reports.append(self._report(changes, completed, True, self._root))
                    changes = []
                    completed = []
                continue
            if kind == "start_map" or kind == "start_array":
                container: Any = {} if kind == "start_map" else []
                path = self._attach(container)
                stack.append(container)
                self._paths.append(path)
                changes.append((path, "set", {} if kind == "start_map" else []))
                continue
            if kind == "string" and self._s_path is not None:
                # The string that was streaming: only its last piece is new.
                path = self._s_path
                self._s_path = None
                self._store(value)
                piece = value[self._s_emitted :]
                if piece:
                    changes.append((path, "append", piece))
                self._s_parts = []
            elif kind == "number" and self._n_open:
                self._n_open = False
                open_path = self._n_path
                if open_path is None:
                    path = self._attach(value)
                    changes.append((path, "set", value))
                else:
                    path = open_path
                    self._n_path = None
                    last = self._n_last
                    if value != last or type(value) is not type(last):
                        self._store(value)
                        changes.append((path, "set", value))
            else:
                path = self._attach(value)
                changes.append((path, "set", value))
            completed.append(path)
            if not stack:
                reports.append(self._report(changes, completed, True, self._root))
                changes = []
                completed = []
        return changes, completed

    def _report(
        self, changes: list[tuple[Path, str, Any]], completed: list[Path], complete: bool, final: Any
    ) -> Report:
        if not changes:
            return _new_report(Report, (None, None, None, completed, self._index, complete, final))
        self._last_path = changes[-1][0]
        if len(changes) == 1:
            path, op, value = changes[0]
        else:
            path, op, value = _merge(self._root, changes)
        return _new_report(Report, (path, op, value, completed, self._index, complete, final))

    def _may_start(self, text: str, pos: int, kind: Literal["value", "number"]) -> bool:
        """Whether a token may begin at ``text[pos]``, judged by the character before it.

        yajl finds a token out of place only once the token is complete; a string or number
        still open must not be reported before then, so its place is checked here.
        """
        stack = self._stack
        if not stack and kind != "number":
            return True  # top level: values may follow each other
        if pos > 1 and stack:
            # The usual case: the character just before, or one space and the one before it.
            last = text[pos - 1]
            if last == " ":
                last = text[pos - 2]
            if last == ":":
                return type(stack[-1]) is dict
            if last == "[" or last == ",":
                return type(stack[-1]) is list
        before = text[:pos]
        if stack:
            before = before.rstrip(" \t\n\r")
        if not before:
            # The token opens this fragment: look back through the earlier ones.
            history = self._text
            for k in range(len(history) - 2, -1, -1):
                before = history[k].rstrip(" \t\n\r") if stack else history[k]
                if before:
                    break
        last = before[-1:]
        if not stack:
            return last not in _NUMBER_CHARS  # "1" "2" is two values, "12" is not
        return last == ":" if type(stack[-1]) is dict else last == "[" or last == ","

    def _attach(self, value: Any) -> Path:
        stack = self._stack
        if not stack:
            self._root = value
            self._slot_parent = None
            self._index = self.count
            self.count += 1
            return []
        parent: Any = stack[-1]
        self._slot_parent = parent
        if type(parent) is list:
            items = cast(list[Any], parent)
            items.append(value)
            index = self._slot_key = len(items) - 1
            return [*self._paths[-1], index]
        key = self._slot_key = self._key
        parent[key] = value
        return [*self._paths[-1], cast(str, key)]

    def _store(self, value: Any) -> None:
        parent = self._slot_parent
        if parent is None:
            self._root = value
        else:
            parent[self._slot_key] = value

    def _decode(self, raw: str) -> str | None:
        """Decode the text of an open string; an escape cut by the fragment's end waits.

        None when the text cannot be in a string (a control character, a bad escape): yajl
        has not seen it yet (it gets a string's fragments when the string ends), so this check
        is what finds the fault at the fragment that brings it.
        """
        if self._escape:
            raw = self._escape + raw
        j = cast(re.Match[str], _STRING_CHUNK.match(raw)).end()
        if j == len(raw):
            self._escape = ""
            return _scanstring(raw + '"', 0)[0] if "\\" in raw else raw
        rest = raw[j:]
        if _ESCAPE_PREFIX.fullmatch(rest) is None:
            return None
        self._escape = rest
        return _scanstring(raw[:j] + '"', 0)[0] if j else ""

    def _materialize(self) -> None:
        if self._s_path is not None and self._s_stale:
            joined = "".join(self._s_parts)
            self._store(joined)
            self._s_parts = [joined]
            self._s_stale = False


class NativeDocument:
    """The C document (``rxstream._jsonfast``): the whole fast path in one call per fragment.

    It reads each fragment once, in C: the structure, the value, what is still open at the
    fragment's end (a string's text so far, a number's value so far), the reports. What it does
    not take (invalid JSON, surrogate escapes, nesting past ``max_depth``, integers longer than
    ``int()`` reads) makes it hand over to :class:`PythonDocument` exactly as
    :class:`YajlDocument` does: the text so far is replayed silently and that parser goes on or
    raises the precise error. Reports equal :class:`YajlDocument`'s and :class:`PythonDocument`'s
    for the same fragments (the tests hold all three to it).

    Example:
        >>> d = NativeDocument()
        >>> [(r.path, r.op, r.value) for r in d.feed('{"a": "he')]
        [([], 'set', {'a': 'he'})]
        >>> [(r.path, r.op, r.value, r.completed) for r in d.feed('llo"}')]
        [(['a'], 'append', 'llo', [['a'], []])]

    Raises:
        ImportError: When the C extension was not built (no compiler at install time); use
            :func:`new_document`, which falls back to :class:`YajlDocument`.
    """

    __slots__ = ("_c", "feed")

    feed: Callable[[str], list[Report] | None]
    """Consume the next fragment; return its reports, or None when nothing changed (the C
    parser's own method: one call per fragment, no Python frame).

    Raises:
        JsonError: When the text is not valid JSON.
        LimitExceededError: When an object or array opens deeper than ``max_depth``.
    """

    def __init__(self, *, max_depth: int = DEFAULT_LIMITS.max_json_depth) -> None:
        if _jsonfast is None:
            raise ImportError("rxstream._jsonfast is not built (no C compiler at install time)")
        self._c = _jsonfast.Parser(Report, max_depth, _hand_over)
        self.feed = self._c.feed

    @property
    def _slow(self) -> PythonDocument | None:
        delegate: Any = self._c.delegate
        return cast(PythonDocument | None, delegate)

    @property
    def value(self) -> Any:
        """The current (last started) top-level value so far (live: do not mutate)."""
        slow = self._slow
        return self._c.value if slow is None else slow.value

    @property
    def value_count(self) -> int:
        """How many top-level values have started so far."""
        slow = self._slow
        return self._c.count if slow is None else slow.value_count

    @property
    def truncated(self) -> bool:
        """Whether the text ended inside a value (after :meth:`finish`)."""
        slow = self._slow
        return self._c.truncated if slow is None else slow.truncated

    def snapshot(self) -> Any:
        """A copy of the value so far, sharing the parts that can no longer change."""
        slow = self._slow
        return self._c.snapshot() if slow is None else slow.snapshot()

    def finish(self) -> list[Report] | None:
        """Mark the end of the text; return the last reports (a top-level number ended by it).

        Raises:
            JsonError: When the text is not valid JSON.
        """
        slow = self._slow
        if slow is None:
            try:
                return cast("list[Report] | None", self._c.finish())
            except _FALLBACK:
                _hand_over(self._c, "")
                slow = self._slow
                assert slow is not None
        return slow.finish()


def _hand_over(parser: Any, text: str) -> list[Report] | None:
    """Replay the text before ``text`` into the pure-Python parser, which then takes ``text``.

    Called by the C parser on what it does not take; the new document becomes its delegate.
    """
    texts: list[str] = parser.texts
    slow = PythonDocument(max_depth=parser.max_depth)
    before = "".join(texts[:-1] if text else texts)
    parser.delegate = slow
    if before:
        slow.replay(before)
    return slow.feed(text) if text else None


_FALLBACK: type[Exception] = _jsonfast.Fallback if _jsonfast is not None else RuntimeError

Document = NativeDocument | YajlDocument


def new_document(*, max_depth: int = DEFAULT_LIMITS.max_json_depth) -> Document:
    """The fastest document this install has: :class:`NativeDocument`, else :class:`YajlDocument`."""
    if _jsonfast is not None:
        return NativeDocument(max_depth=max_depth)
    return YajlDocument(max_depth=max_depth)


class PythonDocument:
    """The pure-Python document: :class:`PartialJsonParser`'s changes merged into reports.

    ``max_depth`` bounds the nesting as in :class:`YajlDocument` (the parser raises
    :class:`~rxstream.LimitExceededError`).
    """

    __slots__ = ("_last_path", "_parser", "_pieces", "_root_index", "_root_live", "truncated")

    def __init__(self, *, max_depth: int = DEFAULT_LIMITS.max_json_depth) -> None:
        self._parser = PartialJsonParser(max_depth=max_depth)
        self._root_index = -1  # the top-level value still open after the last feed
        self._root_live: Any = None  # that value when it is a container (the parser's own object)
        self._pieces: list[Any] | None = None  # else its string pieces or its number
        self._last_path: Path = []
        self.truncated = False

    @property
    def value(self) -> Any:
        """The current (last started) top-level value so far (live: do not mutate)."""
        return self._parser.value

    @property
    def value_count(self) -> int:
        """How many top-level values have started so far."""
        return self._parser.value_count

    def snapshot(self) -> Any:
        """A copy of the value so far, sharing the parts that can no longer change."""
        return spine_copy(self._parser.value, self._last_path)

    def replay(self, text: str) -> None:
        """Feed text whose changes were already reported (a hand-over from the fast path)."""
        changes = self._parser.feed(text)
        if changes:
            last = changes[-1].top_level_index
            self._track([c for c in changes if c.top_level_index == last])
            self._last_path = list(changes[-1].path)

    def feed(self, text: str) -> list[Report] | None:
        """Consume the next fragment; return its reports, or None when nothing changed."""
        changes = self._parser.feed(text)
        return self._reports(changes) if changes else None

    def finish(self) -> list[Report] | None:
        """Mark the end of the text; return the last reports."""
        changes = self._parser.finish()
        self.truncated = self._parser.truncated
        # Text cut inside a container: nothing became final (a number it ends could have
        # gone on), as the fast path reports it.
        return self._reports(changes) if changes and not self.truncated else None

    def _reports(self, changes: list[Change]) -> list[Report]:
        groups: list[list[Change]] = []
        if changes[-1].top_level_index == changes[0].top_level_index:
            groups.append(changes)
        else:
            # Several top-level values in one fragment (rare): one report per value, in order.
            for change in changes:
                if groups and groups[-1][0].top_level_index == change.top_level_index:
                    groups[-1].append(change)
                else:
                    groups.append([change])
        reports: list[Report] = []
        last = len(groups) - 1
        for n, group in enumerate(groups):
            completed = [list(path) for change in group for path in change.completed]
            complete = () in {p for change in group for p in change.completed}
            if n == last and not complete:
                self._track(group)
                root = self._parser.value
            elif n == last:
                root = self._finished_root(group)
                self._track(group)
            else:
                root = self._finished_root(group)
            path, op, value = self._merged(group, root)
            if path is not None:
                self._last_path = list(group[-1].path)
            reports.append(
                _new_report(Report, (path, op, value, completed, group[0].top_level_index, complete, root if complete else None))
            )
        return reports

    def _finished_root(self, group: list[Change]) -> Any:
        if group[0].top_level_index != self._root_index:
            return _rebuild(None, group)  # begun and ended within this fragment: small
        if self._pieces is None:
            return self._root_live  # a container the parser built in place
        return _rebuild(_join(self._pieces), group)

    def _track(self, group: list[Change]) -> None:
        """Keep a handle on the top-level value still open, in O(changes)."""
        first = group[0]
        if first.top_level_index != self._root_index:
            # A value's first change sets it at the top level.
            self._root_index = first.top_level_index
            if isinstance(first.value, dict | list):
                self._root_live = self._parser.value
                self._pieces = None
                return
            self._root_live = None
            self._pieces = []
        pieces = self._pieces
        if pieces is None:
            return
        for change in group:
            if change.op == "set":
                pieces.clear()
                pieces.append(change.value)
            elif change.op == "append":
                pieces.append(change.value)

    @staticmethod
    def _merged(group: list[Change], root: Any) -> tuple[Path | None, Any, Any]:
        # A string closed with nothing new is only a completion.
        changes = [c for c in group if c.op != "done" and (c.op == "set" or c.value)]
        if not changes:
            return None, None, None
        if len(changes) == 1:
            c = changes[0]
            return list(c.path), c.op, deep_copy(c.value)
        path = changes[0].path
        if all(c.path == path for c in changes) and not isinstance(changes[0].value, dict | list):
            if all(c.op == "append" for c in changes):
                return list(path), "append", "".join(c.value for c in changes)
            return list(path), "set", _at(root, list(path))
        return _merge(root, [(list(c.path), c.op, c.value) for c in changes])


def _rebuild(value: Any, changes: list[Change]) -> Any:
    """Apply changes to a value: only for the few changes of one fragment."""
    for change in changes:
        value = apply(value, change)
    return value


def _join(pieces: list[Any]) -> Any:
    if len(pieces) == 1:
        return pieces[0]
    return "".join(pieces)

