"""smooth(): re-chunk streamed text to word, line or sentence boundaries and pace the pieces evenly."""

from __future__ import annotations

import datetime
import re
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Literal, cast

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable

from rxstream._errors import RxStreamError
from rxstream._events import (
    Event,
    EventBase,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    event_builder,
    make_event,
)
from rxstream._merge import mergeable
from rxstream.operators._batch import seconds_of, timer_scheduler
from rxstream.operators._lift import lift

__all__ = ["CJK_CHARS", "Chunker", "SmoothCore", "smooth"]

ChunkDetector = Callable[[str], str | None]
"""A user chunker: the first complete chunk of the buffer (a non-empty prefix of it), or None."""

Chunking = Literal["word", "line", "sentence"] | re.Pattern[str] | ChunkDetector

CJK_CHARS = (
    "\u2e80-\u2fdf"  # CJK and Kangxi radicals
    "\u3001-\u303f"  # CJK symbols and punctuation (U+3000, the ideographic space, is whitespace)
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3100-\u312f\u31a0-\u31ff"  # Bopomofo, Katakana extensions
    "\u3200-\u4dbf"  # enclosed CJK, CJK compatibility, ideographs extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # compatibility ideographs
    "\ufe30-\ufe4f"  # CJK compatibility forms
    "\uff01-\uff9f"  # fullwidth forms, halfwidth Katakana
    "\U00020000-\U0003134f"  # ideographs extensions B to H
)
"""Characters of the scripts written without spaces between words (a regex class body).

Hangul is not among them: Korean puts spaces between words, so it chunks like Latin text.
"""

_SPACES = re.compile(r"\s*")
_CJK_CHAR = re.compile(f"[{CJK_CHARS}]")
_WORD_STOP = re.compile(rf"[\s{CJK_CHARS}]")  # where a spaced-script word ends
_LINE = re.compile(r"\n+")
_TERMINALS = ".!?\u2026"
_CLOSERS = "\"')]\u201d\u2019"
_SENTENCE = re.compile(
    rf"[{re.escape(_TERMINALS)}]+[{re.escape(_CLOSERS)}]*\s+"
    r"|[\u3002\uff01\uff1f]+[\u300d\u300f\u201d\u2019\uff09]*\s*"
    r"|\n+"
)
_TEXT_KINDS: frozenset[type[EventBase]] = frozenset((TextDelta, ReasoningDelta, RefusalDelta))


def _word_end(text: str, pos: int, in_word: bool) -> tuple[int, bool]:
    """End of the first word chunk of ``text[pos:]`` (or -1), and whether a word is open.

    A chunk is leading whitespace, then either one CJK character, or a spaced-script word
    and the whitespace after it; a spaced-script word also ends where a CJK character begins.
    ``in_word`` says that the held text before ``pos`` already opened a word.
    """
    i = pos
    if not in_word:
        i = cast(re.Match[str], _SPACES.match(text, i)).end()
        if i == len(text):
            return -1, False
        if _CJK_CHAR.match(text, i) is not None:
            # Whitespace after it opens the next chunk: a chunk must not depend on whether
            # that whitespace had arrived yet.
            return i + 1, False
        i += 1
    stop = _WORD_STOP.search(text, i)
    if stop is None:
        return -1, True
    j = stop.start()
    if not text[j].isspace():
        return j, False
    return cast(re.Match[str], _SPACES.match(text, j)).end(), False


def _line_end(text: str, pos: int, _: bool) -> tuple[int, bool]:
    found = _LINE.search(text, pos)
    return (-1, False) if found is None else (found.end(), False)


def _sentence_end(text: str, pos: int, _: bool) -> tuple[int, bool]:
    found = _SENTENCE.search(text, pos)
    return (-1, False) if found is None else (found.end(), False)


def _sentence_resume(text: str, pos: int) -> int:
    # A boundary still to come can only start in a trailing run of terminals and closers
    # ("Hi." waits for the space after it); everything before that run was searched.
    i = len(text)
    while i > pos and text[i - 1] in _CLOSERS:
        i -= 1
    j = i
    while j > pos and text[j - 1] in _TERMINALS:
        j -= 1
    return j if j < i else len(text)


def _to_end(text: str, _: int) -> int:
    return len(text)


_BUILT_IN: dict[str, tuple[Callable[[str, int, bool], tuple[int, bool]], Callable[[str, int], int]]] = {
    "word": (_word_end, _to_end),
    "line": (_line_end, _to_end),
    "sentence": (_sentence_end, _sentence_resume),
}


class Chunker:
    """Where chunks end, for one ``chunking`` setting.

    The built-in chunkers scan incrementally: ``scan(text, pos, state) -> (end | -1, state)``
    finds the end of the first chunk of ``text[pos:]``, and after a miss ``resume(text, pos)``
    says where a boundary still to come can start, so held text is scanned once, not again on
    every delta. A regex or callable (``incremental`` False) is asked about the whole held
    buffer with :meth:`first_end`, as ``smoothStream`` does: a regex chunk runs from the
    buffer's start to the end of the first match ending past position 0; a callable returns
    the chunk itself (a non-empty prefix) or None.
    """

    __slots__ = ("_detect", "_pattern", "incremental", "name", "resume", "scan")

    def __init__(self, chunking: object) -> None:
        self._detect: ChunkDetector | None = None
        self._pattern: re.Pattern[str] | None = None
        self.scan, self.resume = _word_end, _to_end
        self.incremental = True
        if isinstance(chunking, str) and chunking in _BUILT_IN:
            self.scan, self.resume = _BUILT_IN[chunking]
            self.name = repr(chunking)
            return
        self.incremental = False
        if isinstance(chunking, re.Pattern):
            pattern = cast(re.Pattern[Any], chunking)
            if not isinstance(pattern.pattern, str):
                raise ValueError(
                    f"smooth(chunking=...) expected a str regex, got the bytes regex {pattern!r}"
                )
            self._pattern, self.name = pattern, f"re.compile({pattern.pattern!r})"
        elif callable(chunking):
            self._detect = cast(ChunkDetector, chunking)
            self.name = getattr(chunking, "__qualname__", repr(chunking))
        else:
            raise ValueError(
                "smooth(chunking=...) expected 'word', 'line', 'sentence', a compiled str regex "
                f"(re.compile(...)) or a callable buffer -> chunk | None, got {chunking!r}"
            )

    def first_end(self, buffer: str) -> int:
        """Where the first chunk of ``buffer`` ends (> 0), or -1 (regex and callable chunking).

        Raises:
            RxStreamError: the callable raised (cause attached) or returned something other
                than None or a non-empty prefix of ``buffer``.
        """
        pattern = self._pattern
        if pattern is not None:
            for found in pattern.finditer(buffer):
                if found.end() > 0:
                    return found.end()
            return -1
        detect = cast(ChunkDetector, self._detect)
        try:
            chunk = detect(buffer)
        except Exception as exc:
            raise _user_error(
                f"smooth(chunking={self.name}) raised {type(exc).__name__}: {exc} "
                f"(on a buffer of {len(buffer)} characters)",
                exc,
            ) from exc
        if chunk is None:
            return -1
        if not isinstance(chunk, str) or not chunk or not buffer.startswith(chunk):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise RxStreamError(
                f"smooth(chunking={self.name}) expected None or a non-empty prefix of the buffer "
                f"{_clip(buffer)}, got {_clip(chunk)}"
            )
        return len(chunk)


def _clip(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _user_error(message: str, cause: Exception) -> RxStreamError:
    error = RxStreamError(message)
    error.__cause__ = cause
    return error


def _wrap(exc: Exception) -> RxStreamError:
    return _user_error(f"smooth(): re-chunking raised {type(exc).__name__}: {exc}", exc)


_BUILD_TEXT = event_builder(TextDelta)
_BUILD_REFUSAL = event_builder(RefusalDelta)
_BUILD_REASONING = event_builder(ReasoningDelta)


def _piece(part: Any, text: str, signature: str | None = None) -> EventBase:
    """A chunk of ``part``'s target, with ``part``'s ``seq``, ``at`` and ``meta``."""
    cls = part.__class__
    if cls is TextDelta:
        return _BUILD_TEXT(part.stream_id, part.seq, part.at, part.meta, part.output, text)
    if cls is ReasoningDelta:
        return _BUILD_REASONING(part.stream_id, part.seq, part.at, part.meta, part.output, text, signature)
    if cls is RefusalDelta:
        return _BUILD_REFUSAL(part.stream_id, part.seq, part.at, part.meta, part.output, text)
    # A subclass: keep every field it has.
    fields: dict[str, Any] = {k: v for k, v in part.__dict__.items() if k not in _COMMON}
    fields["text"] = text
    if isinstance(part, ReasoningDelta):
        fields["signature"] = signature
    return make_event(cls, stream_id=part.stream_id, seq=part.seq, at=part.at, meta=part.meta, **fields)


_COMMON = frozenset({"stream_id", "seq", "at", "meta", "type"})


class SmoothCore:
    """The pure core of ``smooth()``: re-chunks text deltas to the chunker's boundaries.

    Text, reasoning and refusal deltas of one target (see :func:`rxstream._merge.mergeable`)
    go into one buffer; every complete chunk in it is emitted as a delta of that target with
    the ``seq``, ``at`` and ``meta`` of the last delta that contributed to it. What follows the
    last boundary (the tail) is held until more text completes it, a delta of another target
    or any other event arrives (the tail goes first), or the stream ends. A signed reasoning
    delta ends its block: the block's tail goes out at once, carrying the signature (as an
    empty-text delta when nothing is left to carry it). Every other event passes unchanged.
    A chunker that fails sets ``failure`` after the chunks found and the held text are
    returned, so no text is lost.

    The held text is kept as pieces already scanned plus a short active string, so a long
    stretch without a boundary (a URL, a base64 blob, a paragraph under ``"line"``) costs
    linear time with the built-in chunkers.
    """

    __slots__ = ("_active", "_chunker", "_held", "_last", "_state", "failure")

    # lift() looks for a hand-over core on every item until it finds an attribute: one is here.
    delegate: None = None

    def __init__(self, chunker: Chunker) -> None:
        self._chunker = chunker
        self._last: Any = None  # the last delta in the buffer (None: no target held)
        self._held: list[str] = []  # text scanned already, before ``_active``
        self._active = ""  # text a boundary may still start in
        self._state = False  # the built-in chunker's state at the end of ``_held``
        self.failure: RxStreamError | None = None

    def feed(self, event: EventBase) -> list[EventBase]:
        """Take one event; return what is ready, in order."""
        if event.__class__ not in _TEXT_KINDS:
            if self._last is None:
                return [event]
            out = self._tail()
            out.append(event)
            return out
        part: Any = event
        last = self._last
        out: list[EventBase] = []
        # A signed reasoning delta is never held as ``last``, so same class, stream, output and
        # meta is mergeable(); anything else asks mergeable() (meta equal but for a sequence number).
        joins = last is not None and (
            (
                part.__class__ is last.__class__
                and part.output == last.output
                and part.stream_id == last.stream_id
                and part.meta == last.meta
            )
            or mergeable(last, part)
        )
        if last is not None and not joins:
            out = self._tail()
        if not part.text and (part.__class__ is not ReasoningDelta or part.signature is None):
            # No text to chunk, but maybe details in meta (redacted or encrypted reasoning):
            # absorbed by a held delta it merges with, else passed on as it is.
            if joins:
                self._last = part
                return out
            out.append(event)
            return out
        self._last = part
        pieces: list[str] = []
        try:
            if self._chunker.incremental:
                self._scan(part.text, pieces)
            else:
                self._ask(part.text, pieces)
        except RxStreamError as exc:
            self.failure = exc
        signed = part.__class__ is ReasoningDelta and part.signature is not None
        if signed or self.failure is not None:
            # The block ends here (or the stream does): hand over everything held.
            rest = "".join(self._held) + self._active
            if rest or (signed and not pieces):
                pieces.append(rest)
            signature = part.signature if signed else None
            for text in pieces[:-1]:
                out.append(_piece(part, text))
            if pieces:
                out.append(_piece(part, pieces[-1], signature))
            self._reset()
            return out
        for text in pieces:
            out.append(_piece(part, text))
        return out

    def _scan(self, text: str, pieces: list[str]) -> None:
        chunker = self._chunker
        scan = chunker.scan
        active = self._active + text if self._active else text
        held = self._held
        state = self._state
        pos = 0
        size = len(active)
        while pos < size:
            end, state = scan(active, pos, state)
            if end < 0:
                break
            if held:
                held.append(active[pos:end])
                pieces.append("".join(held))
                held.clear()
            else:
                pieces.append(active[pos:end])
            pos = end
        self._state = state
        if pos == size:
            self._active = ""
            return
        cut = chunker.resume(active, pos)
        if cut > pos:
            held.append(active[pos:cut] if pos or cut < size else active)
        self._active = active[cut:] if cut < size else ""

    def _ask(self, text: str, pieces: list[str]) -> None:
        # User chunkers see the whole held buffer from its start, as smoothStream's do.
        buffer = self._active = self._active + text
        first_end = self._chunker.first_end
        while buffer:
            end = first_end(buffer)
            if end < 0:
                break
            pieces.append(buffer[:end])
            buffer = self._active = buffer[end:]

    def _reset(self) -> None:
        self._held = []
        self._active = ""
        self._state = False
        self._last = None

    def _tail(self) -> list[EventBase]:
        last = self._last
        rest = "".join(self._held) + self._active if self._held else self._active
        self._reset()
        if not rest:
            return []
        return [_piece(last, rest)]

    def flush(self) -> list[EventBase]:
        """The stream ended: emit the held tail."""
        return self._tail()

    def abort(self, error: Exception) -> list[EventBase]:
        """Upstream failed: the held tail goes out before the error."""
        return self._tail()


def smooth(
    *,
    chunking: Chunking = "word",
    delay: float | datetime.timedelta | None = 0.01,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[Event]], Observable[Event]]:
    """Re-chunk text to word, line or sentence boundaries and pace the chunks ``delay`` apart.

    Vercel's ``smoothStream`` as an operator. Text, reasoning and refusal deltas of one target
    (one output's text, its reasoning, its refusal; one provider block: see
    :func:`rxstream._merge.mergeable`) are buffered and re-emitted as one delta per complete
    chunk, each with the ``seq``, ``at`` and ``meta`` of the last delta that contributed to it.
    What follows the last boundary is held until the next delta completes it, a delta of
    another target or any other event arrives (the held text goes first), or the stream ends.
    Like ``smoothStream``, one target is held at a time: outputs that take turns delta by
    delta (``n > 1``) are still split at boundaries and paced, but not joined across deltas.
    A signed reasoning delta ends its thinking block: the block's held text goes out with it,
    carrying the signature. A delta with no text (redacted or encrypted reasoning carries its
    data in ``meta``) is passed on as it is unless it merges with the held text.

    Chunks go out at least ``delay`` apart on ``scheduler``: the first at once, later ones on
    a timer while the source runs ahead (like ``smoothStream``, a source faster than one chunk
    per ``delay`` builds a queue). Every other event (tool call arguments included) keeps its
    place: it follows the text before it as soon as that text is out, with no delay of its
    own. Completion waits for the queue to drain at pace; an error delivers everything queued
    and held at once, then the error. The text each target accumulates is unchanged.

    Chunking:

    - ``"word"`` (default): a word and the whitespace after it (whitespace before the first
      word joins it). CJK text, which has no spaces, is chunked per character: each Han
      ideograph, kana, Bopomofo or fullwidth character (:data:`CJK_CHARS`) is one chunk
      (whitespace after it opens the next chunk), and a spaced-script word ends where a CJK
      character begins (``"GPT-4是"`` is ``"GPT-4"``, ``"是"``). One character per ``delay``
      (100 per second by default) keeps up with how fast models emit CJK text, and needs no
      dictionary. Hangul is spaced, so Korean chunks by word; for Thai, or a dictionary
      segmenter, pass a callable.
    - ``"line"``: up to and including a run of newlines.
    - ``"sentence"``: up to a run of ``. ! ? …`` plus closing quotes or brackets and then
      whitespace, a CJK full stop, exclamation or question mark (plus closers), or a run of
      newlines. Abbreviations (``"e.g. "``) end a chunk too: it only paces text.
    - a compiled ``re.Pattern``: the chunk runs from the buffer's start to the end of the first
      match ending past position 0 (``smoothStream``'s regex rule). The held buffer is searched
      again from its start on each delta.
    - a callable ``buffer -> chunk | None``: returns the first complete chunk, a non-empty
      prefix of ``buffer``, or None to wait for more.

    .. marble::
        :alt: smooth
        -a---b---f-----|
        [ smooth(chunking="word", delay=2) ]
        -w-x-----(y,f)-|

    (``a`` the text delta ``"one two th"``, ``b`` ``"ree"``, ``f`` a ``finish``; ``w`` and
    ``x`` the chunks ``"one "`` and ``"two "``, 2 time units apart; ``"th"`` and ``"ree"`` make
    no complete word, so ``y``, ``"three"``, is held until ``f`` arrives, then goes out just
    before it.)

    Args:
        chunking: where chunks end (above).
        delay: the least time between two chunks, in seconds or as a ``timedelta``; 0 or None
            re-chunks without pacing (synchronously, no timer).
        scheduler: the clock for ``delay``: default the subscribe-time scheduler (unless a
            trampoline, which would block), then the running asyncio loop's, then a thread
            timer (``TimeoutScheduler``). A timer firing on another thread is ordered with the
            source's notifications by one lock.

    Errors:
        A ``chunking`` callable that raises, or returns something other than None or a
        non-empty prefix of the buffer, fails the stream with :class:`RxStreamError` (cause
        attached) after the chunks found and the text held are delivered; upstream is
        disposed. Upstream errors pass unchanged, after everything queued and held.

    Raises:
        ValueError: at call time, for an unknown ``chunking`` (a plain string other than the
            three names is refused: compile a regex), a bytes regex, or a ``delay`` that is not
            a number of seconds >= 0, a ``timedelta`` or None.
    """
    chunker = Chunker(chunking)
    pace = seconds_of("smooth", "delay", delay, allow_zero=True)

    def make_core() -> SmoothCore:
        return SmoothCore(chunker)

    if not pace:
        return lift(make_core, wrap_error=_wrap)  # pyright: ignore[reportReturnType]
    gap = datetime.timedelta(seconds=pace)

    def operator(source: Observable[Event]) -> Observable[Event]:
        def subscribe(
            observer: abc.ObserverBase[Event], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            core = make_core()
            clock = timer_scheduler(scheduler, subscribe_scheduler)
            # The timer may fire on another thread (TimeoutScheduler): one lock orders it with
            # the source's notifications (re-entrant, for a downstream that calls back in).
            lock = threading.RLock()
            timer = SerialDisposable()
            upstream = SerialDisposable()
            queue: deque[EventBase] = deque()
            stopped = False
            completing = False  # upstream completed: complete once the queue drains
            armed = False
            last_text: datetime.datetime | None = None  # when the last chunk went out
            emit = cast("Callable[[EventBase], None]", observer.on_next)
            text_kinds = _TEXT_KINDS

            def pump(timed: bool) -> None:
                """Emit what may go out now; arm the timer for the next chunk."""
                nonlocal armed, last_text, stopped
                while queue:
                    head = queue[0]
                    if head.__class__ in text_kinds:
                        now = clock.now
                        if timed:
                            # The timer is the pace: trust it over the clock, which may step.
                            timed = False
                        elif last_text is not None and now - last_text < gap:
                            armed = True
                            left = min(gap - (now - last_text), gap)
                            timer.disposable = clock.schedule_relative(left, tick)
                            return
                        last_text = now
                    queue.popleft()
                    emit(head)
                if completing:
                    stopped = True
                    observer.on_completed()

            def tick(_: abc.SchedulerBase, __: Any = None) -> None:
                nonlocal armed
                with lock:
                    armed = False
                    if not stopped:
                        pump(True)

            def drain_and_fail(exc: Exception) -> None:
                nonlocal stopped
                stopped = True
                timer.dispose()
                while queue:
                    emit(queue.popleft())
                observer.on_error(exc)

            feed = core.feed
            acquire, release = lock.acquire, lock.release  # cheaper than `with` on the hot path

            def on_next(event: Event) -> None:
                acquire()
                try:
                    if stopped:
                        return
                    try:
                        out = feed(event)
                    except Exception as exc:  # noqa: BLE001 - reported per Rx grammar
                        out = core.abort(exc)
                        core.failure = _wrap(exc)
                    if out:
                        queue.extend(out)
                    failure = core.failure
                    if failure is not None:
                        upstream.dispose()
                        drain_and_fail(failure)
                    elif not armed and queue:
                        pump(False)
                finally:
                    release()

            def on_error(exc: Exception) -> None:
                with lock:
                    if stopped:
                        return
                    queue.extend(core.abort(exc))
                    drain_and_fail(exc)

            def on_completed() -> None:
                nonlocal completing
                with lock:
                    if stopped or completing:
                        return
                    queue.extend(core.flush())
                    completing = True
                    if not armed:
                        pump(False)

            def dispose() -> None:
                nonlocal stopped
                stopped = True

            subscription = CompositeDisposable(Disposable(dispose), timer, upstream)
            upstream.disposable = source.subscribe(
                on_next, on_error, on_completed, scheduler=subscribe_scheduler
            )
            return subscription

        return Observable(subscribe)

    return operator
