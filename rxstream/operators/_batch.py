"""batch(): coalesce runs of small deltas into fewer, larger events on a time or size budget."""

from __future__ import annotations

import asyncio
import datetime
import threading
from collections.abc import Callable
from typing import Any, cast

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable
from reactivex.scheduler import CurrentThreadScheduler, ImmediateScheduler, TimeoutScheduler
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxstream._errors import RxStreamError
from rxstream._events import Event, EventBase, ReasoningDelta, RefusalDelta, TextDelta, ToolCallDelta
from rxstream._merge import merge_run, mergeable
from rxstream.operators._lift import lift

__all__ = ["BatchCore", "batch"]

_RUN_KINDS: frozenset[type[EventBase]] = frozenset((TextDelta, ReasoningDelta, RefusalDelta, ToolCallDelta))


def _size(event: Any) -> int:
    """Characters of content a delta carries."""
    return len(event.arguments_delta) if event.__class__ is ToolCallDelta else len(event.text)


class BatchCore:
    """The pure core of ``batch()``: holds one run of mergeable deltas, emits it merged.

    ``feed`` returns what can no longer change, in order: the held run merged into one event
    (see :mod:`rxstream._merge`) when ``event`` cannot join it or would take it past
    ``max_chars``, then ``event`` itself unless it starts a new run; a run that reaches
    ``max_chars`` characters or ``max_events`` parts is emitted at once. A merged event has at
    most ``max_chars`` characters unless one delta alone is longer (deltas are never split).
    ``flush`` emits the held run. ``generation`` counts the runs started, so a timer armed for
    one run can tell whether that run is still the one held.
    """

    __slots__ = (
        "_chars",
        "_fast",
        "_max_chars",
        "_max_events",
        "_meta",
        "_output",
        "_run",
        "_stream_id",
        "generation",
    )

    failure: RxStreamError | None = None
    # lift() looks for a hand-over core on every item until it finds an attribute: one is here.
    delegate: None = None

    def __init__(self, *, max_chars: int | None = None, max_events: int | None = None) -> None:
        self._max_chars = max_chars
        self._max_events = max_events
        self._run: list[EventBase] = []
        self._chars = 0
        self.generation = 0
        # The held run's target when it is a text or refusal run (checked without mergeable()).
        self._fast: type[EventBase] | None = None
        self._stream_id = ""
        self._output = 0
        self._meta: dict[str, Any] = {}

    @property
    def pending(self) -> int:
        """How many deltas the held run merges."""
        return len(self._run)

    def feed(self, event: EventBase) -> list[EventBase]:
        """Take one event; return what is ready, in order."""
        run = self._run
        if run:
            part: Any = event
            if not (
                part.__class__ is self._fast
                and part.output == self._output
                and part.stream_id == self._stream_id
                and part.meta == self._meta
            ) and not mergeable(run[-1], event):
                self._run = [event]
                return self._start([merge_run(run)])
            limit = self._max_chars
            if limit is None:
                run.append(event)
                if self._max_events is None or len(run) < self._max_events:
                    return []
                self._run = []
                return [merge_run(run)]
            size = _size(event)
            if self._chars + size > limit:
                # Joining would pass max_chars: emit what is held, start again with event.
                self._run = [event]
                return self._start([merge_run(run)])
            run.append(event)
            self._chars += size
            return self._check_full([])
        run.append(event)
        return self._start([])

    def _start(self, out: list[EventBase]) -> list[EventBase]:
        """``self._run`` holds one new event: start a run with it, or pass it on."""
        event: Any = self._run[0]
        cls = event.__class__
        if cls not in _RUN_KINDS:
            self._run = []
            out.append(event)
            return out
        self.generation += 1
        if cls is TextDelta or cls is RefusalDelta:
            self._fast = cls
            self._stream_id, self._output, self._meta = event.stream_id, event.output, event.meta
        else:
            self._fast = None
        if self._max_chars is not None:
            self._chars = _size(event)
        return self._check_full(out)

    def _check_full(self, out: list[EventBase]) -> list[EventBase]:
        run = self._run
        chars_full = self._max_chars is not None and self._chars >= self._max_chars
        events_full = self._max_events is not None and len(run) >= self._max_events
        if chars_full or events_full:
            out.append(merge_run(run))
            self._run = []
        return out

    def flush(self) -> list[EventBase]:
        """Emit the held run, merged."""
        run = self._run
        if not run:
            return []
        self._run = []
        return [merge_run(run)]

    def abort(self, error: Exception) -> list[EventBase]:
        """Upstream failed: what arrived is delivered before the error."""
        return self.flush()


def timer_scheduler(
    given: abc.SchedulerBase | None, subscribe_scheduler: abc.SchedulerBase | None
) -> abc.SchedulerBase:
    """The scheduler a time-based operator arms its timers on.

    ``given`` first, then the subscribe-time scheduler, then the running asyncio loop's, then a
    thread timer (``TimeoutScheduler``). A trampoline (``CurrentThreadScheduler``,
    ``ImmediateScheduler``) is skipped: it would block the source's thread for the whole delay
    instead of letting the source go on.
    """
    if given is not None:
        return given
    if subscribe_scheduler is not None and not isinstance(
        subscribe_scheduler, CurrentThreadScheduler | ImmediateScheduler
    ):
        return subscribe_scheduler
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return TimeoutScheduler.singleton()
    return AsyncIOScheduler(loop)


def seconds_of(operator: str, name: str, value: object, *, allow_zero: bool) -> float | None:
    """A duration argument (seconds or ``timedelta``, or None) as seconds; ValueError otherwise."""
    if value is None:
        return None
    seconds: float | None = None
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    low_ok = seconds is not None and (seconds >= 0 if allow_zero else seconds > 0)
    if seconds is None or not low_ok or seconds == float("inf"):
        wanted = "a number of seconds >= 0" if allow_zero else "a positive number of seconds"
        raise ValueError(f"{operator}({name}=...) expected {wanted}, a timedelta or None, got {value!r}")
    return seconds


def _positive_int(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"batch({name}=...) expected an int > 0 or None, got {value!r}")
    return value


def _wrap(exc: Exception) -> RxStreamError:
    error = RxStreamError(f"batch(): merging deltas raised {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def batch(
    *,
    max_interval: float | datetime.timedelta | None = 0.05,
    max_chars: int | None = None,
    max_events: int | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[Event]], Observable[Event]]:
    """Coalesce consecutive deltas of one target into one event, on a time or size budget.

    Consecutive deltas of the same kind and target (the text of one output, its reasoning, its
    refusal, one tool call's arguments; same provider block, see :mod:`rxstream._merge`) are
    held as a run and emitted as one event whose text / ``arguments_delta`` is their
    concatenation and whose ``seq`` and ``at`` are those of its last part. The run is emitted
    when ``max_interval`` has passed since its first part arrived, when joining the next delta
    would take it past ``max_chars`` characters (a merged event never exceeds ``max_chars``
    unless one delta alone does; deltas are never split), when it reaches ``max_events`` parts,
    or when an event that cannot join it arrives (that event follows the run, so order is
    kept). Every other event passes unchanged, at once. Nothing is held past completion or an
    error: the run is emitted first. The text each target accumulates is unchanged.

    .. marble::
        :alt: batch
        -a-b----c-s-----|
        [ batch(max_interval=4) ]
        -----x----(c,s)-|

    (``a``, ``b``, ``c`` text deltas of one output; ``x`` their merge ``a + b``, emitted 4
    time units after ``a``; ``s`` a non-delta event (``finish``): it flushes ``c`` before it.)

    Args:
        max_interval: the longest a delta is held, in seconds or as a ``timedelta``; None
            batches only by size and by the next event.
        max_chars: the most characters of text / arguments one merged event carries.
        max_events: the most deltas one merged event joins.
        scheduler: the clock for ``max_interval``: default the subscribe-time scheduler
            (unless a trampoline, which would block), then the running asyncio loop's, then a
            thread timer (``TimeoutScheduler``). A timer firing on another thread is ordered
            with the source's notifications by one lock.

    Errors:
        Upstream errors pass unchanged, after the held run. ``batch`` calls no user code;
        should merging fail anyway, the stream fails with :class:`RxStreamError` (cause
        attached) after what was already emitted, and upstream is disposed.

    Raises:
        ValueError: at call time, for a ``max_interval`` that is not a positive number of
            seconds, ``timedelta`` or None, or a ``max_chars`` / ``max_events`` that is not an
            int > 0 or None.
    """
    interval = seconds_of("batch", "max_interval", max_interval, allow_zero=False)
    chars = _positive_int("max_chars", max_chars)
    events = _positive_int("max_events", max_events)

    def make_core() -> BatchCore:
        return BatchCore(max_chars=chars, max_events=events)

    if interval is None:
        return lift(make_core, wrap_error=_wrap)  # pyright: ignore[reportReturnType]
    wait = interval

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
            stopped = False
            armed = False  # a timer is pending (at most one at a time)
            seen = 0  # the last run generation whose start was noted
            run_started = clock.now
            emit = cast("Callable[[EventBase], None]", observer.on_next)

            def fail(exc: Exception) -> None:
                nonlocal stopped
                stopped = True
                timer.dispose()
                upstream.dispose()
                observer.on_error(exc if isinstance(exc, RxStreamError) else _wrap(exc))

            def arm(seconds: float, generation: int) -> None:
                nonlocal armed
                armed = True
                timer.disposable = clock.schedule_relative(seconds, expire, generation)

            def expire(_: abc.SchedulerBase, generation: Any = None) -> None:
                nonlocal armed
                with lock:
                    armed = False
                    if stopped or not core.pending:
                        return
                    if generation != core.generation:
                        # Armed for a run that was emitted since (size limit, next event): the
                        # run held now started later; wait out the rest of its interval,
                        # never more than a whole one (a wall clock may step back).
                        waited = (clock.now - run_started).total_seconds()
                        remaining = min(wait - waited, wait)
                        if remaining > 0:
                            arm(remaining, core.generation)
                            return
                    try:
                        out = core.flush()
                    except Exception as exc:  # noqa: BLE001 - reported per Rx grammar
                        fail(exc)
                        return
                    for event in out:
                        emit(event)

            feed = core.feed
            acquire, release = lock.acquire, lock.release  # cheaper than `with` on the hot path

            def on_next(event: Event) -> None:
                nonlocal seen, run_started
                acquire()
                try:
                    if stopped:
                        return
                    try:
                        out = feed(event)
                    except Exception as exc:  # noqa: BLE001
                        fail(exc)
                        return
                    for value in out:
                        emit(value)
                    generation = core.generation
                    if generation != seen and core.pending:
                        # A new run started with this event: note when, and make sure a timer
                        # is pending (one already armed re-arms for this run when it fires).
                        seen = generation
                        run_started = clock.now
                        if not armed:
                            arm(wait, generation)
                finally:
                    release()

            def on_error(exc: Exception) -> None:
                nonlocal stopped
                with lock:
                    if stopped:
                        return
                    stopped = True
                    timer.dispose()
                    try:
                        out = core.abort(exc)
                    except Exception as inner:  # noqa: BLE001 - the upstream error is the one to report
                        exc.add_note(
                            f"and batch() failed to emit the held run: {type(inner).__name__}: {inner}"
                        )
                        out = []
                    for value in out:
                        emit(value)
                    observer.on_error(exc)

            def on_completed() -> None:
                nonlocal stopped
                with lock:
                    if stopped:
                        return
                    try:
                        out = core.flush()
                    except Exception as exc:  # noqa: BLE001
                        fail(exc)
                        return
                    stopped = True
                    timer.dispose()
                    for value in out:
                        emit(value)
                    observer.on_completed()

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
