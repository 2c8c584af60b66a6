"""timeout(): content-level deadlines (first event, first content, idle, total) that end a stalled stream.

A read timeout on the socket is defeated by keep-alive pings and SSE comments, which arrive while
the model produces nothing; these deadlines look at rxstream events instead, and only content
(text, reasoning, a refusal, a tool call) counts as progress. Timers run on a reactivex scheduler,
so a ``TestScheduler`` checks them in virtual time.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable, SingleAssignmentDisposable

from rxstream._errors import StreamTimeoutError
from rxstream._events import CONTENT_TYPES, Event
from rxstream.operators._batch import seconds_of, timer_scheduler

__all__ = ["IDLE_RESOLUTION", "timeout"]


IDLE_RESOLUTION = 8
"""The idle deadline is checked ``IDLE_RESOLUTION`` times per ``idle`` period: content events only
set a flag (no clock read per event), so an idle timeout fires between ``idle`` and
``idle * (1 + 1/IDLE_RESOLUTION)`` after the last content."""


def _seconds(value: float) -> str:
    return f"{value:g} s"


def timeout(
    *,
    first_event: float | datetime.timedelta | None = None,
    first_content: float | datetime.timedelta | None = None,
    idle: float | datetime.timedelta | None = None,
    total: float | datetime.timedelta | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[Event]], Observable[Event]]:
    """End a stream with :class:`StreamTimeoutError` when it stalls, and close its request.

    Deadlines, in seconds (or ``timedelta``) on ``scheduler``'s clock, each optional:

    - ``first_event``: from subscribing to the first event (``stream.start``: the provider
      answered and sent its first payload);
    - ``first_content``: from subscribing to the first content event (text, reasoning with text,
      a refusal, a tool call): a stream that only sends metadata and pings still times out;
    - ``idle``: the longest silence allowed between content events, from the first content on
      (bound the wait before it with ``first_content``). Pings, keep-alives and other non-content
      events do not reset it. Checked ``IDLE_RESOLUTION`` (8) times per period, so it fires
      between ``idle`` and ``idle * 1.125`` after the last content, at no per-event clock cost;
    - ``total``: from subscribing to the end of the stream.

    On expiry, upstream is disposed (the HTTP response is closed: nothing more is paid for) and
    the error is delivered after everything that arrived before it. Put it right after
    ``normalize()``; ``retry()`` treats the error as retryable before any content arrived.

    .. marble::
        :alt: timeout
        -s-a-b-----------c-|
        [ timeout(idle=5) ]
        -s-a-b-----#

    (``s`` stream.start, ``a`` ``b`` ``c`` text deltas, one character one second: nothing for 5
    seconds after ``b``, so the stream fails with ``StreamTimeoutError(kind="idle")`` at the
    first check after that, and ``c`` is never requested.)

    Args:
        first_event: deadline for the first event.
        first_content: deadline for the first content event.
        idle: longest gap between content events.
        total: deadline for the whole stream.
        scheduler: the clock and timers: default the subscribe-time scheduler (a trampoline is
            skipped), then the running asyncio loop's, then a thread timer.

    Returns:
        An operator over rxstream events.

    Errors:
        ``StreamTimeoutError`` with ``kind`` (``first_event``, ``first_content``, ``idle``,
        ``total``) and ``seconds``, its message saying what was awaited, how much had arrived,
        and which argument to raise. Upstream errors and completion pass through unchanged (and
        cancel the timers). ``ValueError`` at call time for a deadline that is not a positive
        number of seconds, a ``timedelta`` or ``None``.
    """
    limits = {
        "first_event": seconds_of("timeout", "first_event", first_event, allow_zero=False),
        "first_content": seconds_of("timeout", "first_content", first_content, allow_zero=False),
        "idle": seconds_of("timeout", "idle", idle, allow_zero=False),
        "total": seconds_of("timeout", "total", total, allow_zero=False),
    }
    if all(value is None for value in limits.values()):
        raise ValueError("timeout() expected at least one of first_event=, first_content=, idle=, total=")
    first_event_s = limits["first_event"]
    first_content_s = limits["first_content"]
    idle_s = limits["idle"]
    total_s = limits["total"]
    tick_s = idle_s / IDLE_RESOLUTION if idle_s is not None else None

    def operator(source: Observable[Event]) -> Observable[Event]:
        def subscribe(observer: abc.ObserverBase[Event], subscribe_scheduler: abc.SchedulerBase | None = None) -> abc.DisposableBase:
            clock = timer_scheduler(scheduler, subscribe_scheduler)
            lock = threading.RLock()
            timer = SerialDisposable()
            upstream = SingleAssignmentDisposable()
            stopped = False
            events = 0
            chunks = 0
            progressed = False  # content since the last idle check
            started = clock.now
            # The check that last saw progress: the last content came at or before it, so the
            # silence measured from it never exceeds the real one (never early, up to a tick late).
            idle_from: datetime.datetime | None = None

            def elapsed(now: datetime.datetime, since: datetime.datetime) -> float:
                return (now - since).total_seconds()

            def expire(kind: str, seconds: float, message: str) -> None:
                nonlocal stopped
                stopped = True
                timer.dispose()
                upstream.dispose()
                observer.on_error(StreamTimeoutError(message, kind=kind, seconds=seconds))

            def check(_: abc.SchedulerBase, __: Any = None) -> None:
                nonlocal progressed, idle_from
                with lock:
                    if stopped:
                        return
                    now = clock.now
                    since_start = elapsed(now, started)
                    # A deadline a hair early by float rounding still counts as reached.
                    eps = 1e-9
                    if total_s is not None and since_start >= total_s - eps:
                        expire(
                            "total", total_s,
                            f"the stream did not finish within total={_seconds(total_s)} "
                            f"({events} events, {chunks} content events so far); raise timeout(total=...) to allow longer",
                        )
                        return
                    if first_event_s is not None and events == 0 and since_start >= first_event_s - eps:
                        expire(
                            "first_event", first_event_s,
                            f"no event within first_event={_seconds(first_event_s)} of the request: expected the "
                            "provider's first payload, got nothing; raise timeout(first_event=...) to wait longer",
                        )
                        return
                    if first_content_s is not None and chunks == 0 and since_start >= first_content_s - eps:
                        expire(
                            "first_content", first_content_s,
                            f"no content within first_content={_seconds(first_content_s)} of the request: expected "
                            f"text, reasoning, a refusal or a tool call, got {events} event(s) without any; "
                            "raise timeout(first_content=...) to wait longer",
                        )
                        return
                    if idle_s is not None and chunks:
                        if progressed or idle_from is None:
                            progressed = False
                            idle_from = now
                        elif elapsed(now, idle_from) >= idle_s - eps:
                            expire(
                                "idle", idle_s,
                                f"no content for idle={_seconds(idle_s)} after {chunks} content event(s) "
                                f"({events} events in all; pings and keep-alives do not count); "
                                "raise timeout(idle=...) to allow longer pauses",
                            )
                            return
                    arm(now)

            def arm(now: datetime.datetime) -> None:
                """Schedule the next check: the nearest deadline still pending, or the next idle tick."""
                since_start = elapsed(now, started)
                waits: list[float] = []
                if total_s is not None:
                    waits.append(total_s - since_start)
                if first_event_s is not None and events == 0:
                    waits.append(first_event_s - since_start)
                if first_content_s is not None and chunks == 0:
                    waits.append(first_content_s - since_start)
                if tick_s is not None and chunks:
                    waits.append(tick_s)
                if waits:
                    wait = max(min(waits), 0.0)
                    timer.disposable = clock.schedule_relative(datetime.timedelta(seconds=wait), check)
                else:
                    timer.disposable = Disposable()

            def on_next(event: Any) -> None:
                nonlocal events, chunks, progressed
                with lock:
                    if stopped:
                        return
                    events += 1
                    kind = event.__dict__["type"]
                    if kind in CONTENT_TYPES and (kind != "reasoning.delta" or event.__dict__["text"]):
                        chunks += 1
                        progressed = True
                        if chunks == 1:
                            # Content started: the first-content deadline is met, idle checks begin.
                            arm(clock.now)
                    elif events == 1 and first_event_s is not None:
                        arm(clock.now)
                    observer.on_next(event)

            def on_error(error: Exception) -> None:
                nonlocal stopped
                with lock:
                    if stopped:
                        return
                    stopped = True
                    timer.dispose()
                    observer.on_error(error)

            def on_completed() -> None:
                nonlocal stopped
                with lock:
                    if stopped:
                        return
                    stopped = True
                    timer.dispose()
                    observer.on_completed()

            with lock:
                arm(started)
                upstream.disposable = source.subscribe(on_next, on_error, on_completed, scheduler=subscribe_scheduler)

            def dispose() -> None:
                nonlocal stopped
                with lock:
                    stopped = True

            return CompositeDisposable(Disposable(dispose), timer, upstream)

        return Observable(subscribe)

    return operator
