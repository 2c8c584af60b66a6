"""Bridges from an event observable to user code: collect(), aiter(), run() and EventObserver."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final, Literal, get_args

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxstream._errors import LimitExceededError, RxStreamError, StreamTimeoutError
from rxstream._events import (
    Citation,
    Event,
    Finish,
    Metrics,
    ReasoningDelta,
    RefusalDelta,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
)
from rxstream._gate import CURRENT_GATE, ReadGate
from rxstream._merge import DELTA_TYPES, coalesce
from rxstream._result import ResultAccumulator, StreamResult

__all__ = ["EventIterator", "EventObserver", "Overflow", "aiter", "collect", "run"]

Overflow = Literal["block", "drop_oldest", "coalesce", "error"]
"""What ``aiter()`` does when ``max_buffer`` events wait for the consumer."""

_OVERFLOWS: Final[tuple[str, ...]] = get_args(Overflow)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# ----------------------------------------------------------------------------------------------
# collect


async def _gather(source: Observable[Any], accumulator: ResultAccumulator) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    loop_thread = threading.get_ident()

    def settle(exc: BaseException | None) -> None:
        if done.done():
            return
        if exc is None:
            done.set_result(None)
        else:
            done.set_exception(exc)

    def on_terminal(exc: BaseException | None) -> None:
        if threading.get_ident() == loop_thread:
            settle(exc)
        else:
            loop.call_soon_threadsafe(settle, exc)

    subscription = source.subscribe(accumulator.feed, on_terminal, lambda: on_terminal(None))
    try:
        await done
    except RxStreamError as exc:
        exc.partial = accumulator.result(error=exc)
        raise
    finally:
        subscription.dispose()


async def collect(source: Observable[Any]) -> StreamResult:
    """Subscribe, accumulate every event, and return the :class:`StreamResult`.

    Cancelling the awaiting task disposes the subscription (a live source then closes its
    response).

    Errors:
        The stream's :class:`RxStreamError`, with ``.partial`` set to the result accumulated
        before the fault. Other exceptions (a bug in a user callback upstream) are raised as
        they are.
    """
    accumulator = ResultAccumulator()
    await _gather(source, accumulator)
    return accumulator.result()


# ----------------------------------------------------------------------------------------------
# run


async def _collect_within(source: Observable[Any], timeout: float) -> StreamResult:
    accumulator = ResultAccumulator()
    try:
        async with asyncio.timeout(timeout):
            await _gather(source, accumulator)
    except TimeoutError as exc:
        error = StreamTimeoutError(
            f"run() timed out: expected the stream to end within {timeout:g} s, it was still "
            "running (the subscription was disposed)",
            kind="total",
            seconds=timeout,
        )
        error.partial = accumulator.result(error=error)
        raise error from exc
    return accumulator.result()


def run(source: Observable[Any], *, timeout: float | None = None) -> StreamResult:
    """Collect a stream from synchronous code: ``asyncio.run(collect(source))``.

    Starts an event loop for the stream (a live source runs on it) and returns the
    :class:`StreamResult`. For scripts and tests; async code awaits :func:`collect` instead.

    Args:
        source: the event observable.
        timeout: seconds the whole stream may take; ``None`` waits for as long as it runs.

    Raises:
        RuntimeError: called while an event loop is running in this thread (a notebook, an
            async application): ``asyncio.run`` cannot nest.
        ValueError: ``timeout`` is not a positive number.
        StreamTimeoutError: ``timeout`` passed (``kind="total"``); the subscription is
            disposed and ``.partial`` holds what arrived.
        RxStreamError: the stream's error, as :func:`collect` raises it.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    if _running_loop() is not None:
        raise RuntimeError(
            "run() cannot be used inside a running event loop (a notebook, an async app): "
            "use `await collect(obs)` instead"
        )
    if timeout is None:
        return asyncio.run(collect(source))
    return asyncio.run(_collect_within(source, timeout))


# ----------------------------------------------------------------------------------------------
# aiter


def _droppable(event: Any) -> bool:
    kind = event.type
    if kind not in DELTA_TYPES:
        return False
    # A reasoning delta that carries a signature is what a provider needs to accept the
    # thinking back in the next turn: never drop it.
    return kind != "reasoning.delta" or event.signature is None


class _Channel:
    """The state ``aiter()`` shares with the source's callbacks.

    Kept apart from :class:`EventIterator` so that the source (whose task holds these
    callbacks) never keeps the user's iterator alive: dropping the iterator after ``break``
    disposes the subscription.
    """

    __slots__ = (
        "buffer",
        "compact_at",
        "deltas",
        "dispose_on_attach",
        "dropped",
        "error",
        "finished",
        "gate",
        "gate_closed",
        "loop",
        "loop_thread",
        "low_water",
        "max_buffer",
        "merged",
        "overflow",
        "peak",
        "push",
        "started",
        "subscription",
        "waiter",
    )

    def __init__(self, max_buffer: int, overflow: Overflow) -> None:
        self.buffer: deque[Any] = deque()
        self.max_buffer = max_buffer
        self.low_water = max_buffer // 2
        self.overflow: Overflow = overflow
        self.gate: ReadGate | None = None
        # Mirrors the gate's state: cheaper than asking it on every event.
        self.gate_closed = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread = 0
        self.waiter: asyncio.Future[None] | None = None
        self.subscription: abc.DisposableBase | None = None
        self.dispose_on_attach = False
        self.started = False
        self.finished = False
        self.error: BaseException | None = None
        self.peak = 0
        self.dropped = 0
        self.merged = 0
        self.deltas = 0
        self.compact_at = max_buffer
        self.push: Callable[[Any], None] = {
            "block": self._push_block,
            "drop_oldest": self._push_drop_oldest,
            "coalesce": self._push_coalesce,
            "error": self._push_error,
        }[overflow]

    # -- subscription ------------------------------------------------------------------------

    def start(self, source: Observable[Any]) -> None:
        self.started = True
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        if self.overflow in ("block", "coalesce"):
            self.gate = ReadGate()
        token = CURRENT_GATE.set(self.gate)
        try:
            subscription = source.subscribe(self.on_next, self.on_error, self.on_completed)
        except BaseException:
            self.finished = True
            raise
        finally:
            CURRENT_GATE.reset(token)
        if self.dispose_on_attach:
            subscription.dispose()
        else:
            self.subscription = subscription

    def stop(self) -> None:
        """Stop listening: dispose the subscription (or do so as soon as subscribe returns)."""
        self.finished = True
        gate = self.gate
        if gate is not None and self.gate_closed:
            # A source that finishes its read after dispose must not hang on a closed gate.
            self.gate_closed = False
            gate.open()
        subscription = self.subscription
        if subscription is None:
            self.dispose_on_attach = True
            return
        self.subscription = None
        subscription.dispose()

    # -- source callbacks (any thread) -------------------------------------------------------

    def _on_loop(self) -> bool:
        return threading.get_ident() == self.loop_thread

    def _hand_over(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self.loop
        if loop is None:
            return
        # A closed loop raises RuntimeError: nobody is left to read the events then.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(fn, *args)

    def on_next(self, event: Any) -> None:
        if self._on_loop():
            self.push(event)
        else:
            self._hand_over(self.push, event)

    def on_error(self, error: Exception) -> None:
        if self._on_loop():
            self._terminate(error)
        else:
            self._hand_over(self._terminate, error)

    def on_completed(self) -> None:
        if self._on_loop():
            self._terminate(None)
        else:
            self._hand_over(self._terminate, None)

    def _terminate(self, error: BaseException | None) -> None:
        if self.finished:
            return
        self.finished = True
        self.error = error
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- overflow policies (loop thread) -----------------------------------------------------

    def _buffered(self, size: int) -> None:
        """Record the peak, pause the source once the buffer is full, wake the consumer."""
        if size > self.peak:
            self.peak = size
        if size >= self.max_buffer and not self.gate_closed:
            gate = self.gate
            if gate is not None:
                self.gate_closed = True
                gate.close()
        self.wake()

    def _push_block(self, event: Any) -> None:
        if self.finished:
            return
        buffer = self.buffer
        buffer.append(event)
        self._buffered(len(buffer))

    def _push_coalesce(self, event: Any) -> None:
        if self.finished:
            return
        buffer = self.buffer
        buffer.append(event)
        if len(buffer) >= self.compact_at:
            # Merge before deciding to pause the source: pause only when merging cannot make room.
            before = len(buffer)
            merged = coalesce(buffer)
            self.merged += before - len(merged)
            buffer.clear()
            buffer.extend(merged)
            # When little merges, compact again only once the buffer has doubled (a source
            # that ignores the gate would otherwise cost a full pass per event).
            self.compact_at = max(self.max_buffer, 2 * len(buffer))
        self._buffered(len(buffer))

    def _push_drop_oldest(self, event: Any) -> None:
        if self.finished:
            return
        buffer = self.buffer
        if len(buffer) >= self.max_buffer:
            if self.deltas:
                for index, queued in enumerate(buffer):
                    if _droppable(queued):
                        del buffer[index]
                        self.deltas -= 1
                        self.dropped += 1
                        break
            elif _droppable(event):
                # Nothing older to drop: the newest delta goes instead.
                self.dropped += 1
                return
        buffer.append(event)
        if _droppable(event):
            self.deltas += 1
        size = len(buffer)
        if size > self.peak:
            self.peak = size
        self.wake()

    def _push_error(self, event: Any) -> None:
        if self.finished:
            return
        buffer = self.buffer
        if len(buffer) >= self.max_buffer:
            self.error = LimitExceededError(
                f"aiter() buffer overflow: expected at most {self.max_buffer} events waiting for "
                f"the consumer (max_buffer), got {self.max_buffer + 1}; consume faster, raise "
                "max_buffer or use overflow='block'",
                limit="max_buffer",
                value=self.max_buffer,
            )
            self.stop()
            self.wake()
            return
        buffer.append(event)
        size = len(buffer)
        if size > self.peak:
            self.peak = size
        self.wake()

    # -- consumer side (loop thread) ---------------------------------------------------------

    def pop(self) -> Any:
        event = self.buffer.popleft()
        if self.overflow == "drop_oldest":
            if _droppable(event):
                self.deltas -= 1
        elif self.gate_closed and len(self.buffer) <= self.low_water:
            self.gate_closed = False
            self.compact_at = self.max_buffer
            if self.gate is not None:
                self.gate.open()
        return event


class EventIterator:
    """The async iterator :func:`aiter` returns: events in emission order, bounded.

    Also an async context manager (``async with aiter(obs) as events:``) that closes it on exit.

    Attributes:
        peak_buffered: the most events that ever waited for the consumer at once.
        dropped: delta events dropped by ``overflow="drop_oldest"``.
        coalesced: events merged away by ``overflow="coalesce"``.
    """

    __slots__ = ("_channel", "_source")

    def __init__(self, source: Observable[Any], *, max_buffer: int, overflow: Overflow) -> None:
        self._source = source
        self._channel = _Channel(max_buffer, overflow)

    @property
    def peak_buffered(self) -> int:
        """The most events that ever waited for the consumer at once."""
        return self._channel.peak

    @property
    def dropped(self) -> int:
        """How many delta events ``overflow="drop_oldest"`` dropped."""
        return self._channel.dropped

    @property
    def coalesced(self) -> int:
        """How many events ``overflow="coalesce"`` merged into others."""
        return self._channel.merged

    def __aiter__(self) -> EventIterator:
        return self

    async def __anext__(self) -> Event:
        channel = self._channel
        if not channel.started:
            channel.start(self._source)
        buffer = channel.buffer
        while True:
            if buffer:
                event: Event = channel.pop()
                return event
            if channel.finished:
                error = channel.error
                if error is not None:
                    channel.error = None
                    raise error
                raise StopAsyncIteration
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            channel.waiter = waiter
            try:
                await waiter
            except asyncio.CancelledError:
                channel.stop()
                raise
            finally:
                channel.waiter = None

    async def aclose(self) -> None:
        """Dispose the subscription and drop what is buffered; iteration then ends."""
        channel = self._channel
        channel.buffer.clear()
        channel.error = None
        if channel.started:
            channel.stop()
        else:
            channel.finished = True

    async def __aenter__(self) -> EventIterator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        channel = self._channel
        if channel.started and not channel.finished:
            # Nothing can report from a finalizer.
            with contextlib.suppress(Exception):
                channel.stop()


def aiter(
    source: Observable[Any], *, max_buffer: int = 1024, overflow: Overflow = "block"
) -> EventIterator:
    """Iterate a stream's events with ``async for``, memory bounded by ``max_buffer``.

    Subscribes lazily, on the first ``__anext__``, from the running loop. Yields every event in
    emission order and ends after ``on_completed``; a stream error is raised after every event
    received before it has been yielded. ``break`` (once the iterator is dropped), ``aclose()``,
    leaving ``async with`` and cancelling the consuming task dispose the subscription, so a live
    source closes its HTTP response. Hold the iterator in a variable only with ``aclose()`` or
    ``async with``: a ``break`` alone cannot dispose what is still referenced.

    Source callbacks may run on the loop (live sources), synchronously inside the subscribe
    call (replays) or on another thread (handed to the loop with ``call_soon_threadsafe``).
    One task consumes an iterator; the stream's error is raised as it is (without
    ``.partial``: the consumer holds what arrived).

    Overflow, when ``max_buffer`` events wait for the consumer:

    - ``"block"``: a live source stops reading the HTTP body (through the :class:`ReadGate`
      it reads from ``CURRENT_GATE`` at subscribe time) until the consumer has drained the
      buffer to half of ``max_buffer``. Nothing is lost. Bound: ``max_buffer - 1 + F`` events,
      where F is the most events one read of the source produces (a source checks the gate
      before each read, and emits a read's events at once). A source that cannot pause (a
      synchronous replay, an SDK iterator) is not slowed: the buffer then grows past
      ``max_buffer``; ``peak_buffered`` shows by how much.
    - ``"drop_oldest"``: the source is never paused; the oldest waiting delta (``text.delta``,
      ``reasoning.delta`` without a signature, ``refusal.delta``, ``tool_call.delta``,
      ``json.partial``) is dropped to make room, or the arriving delta when none waits. No
      other event is ever dropped, so the buffer exceeds ``max_buffer`` only if more
      structural events than that wait. Accumulated text then misses pieces: the trade-off.
      ``dropped`` counts them.
    - ``"coalesce"``: when the buffer fills, adjacent deltas of one target waiting in it are
      merged (see ``rxstream._merge``: same output or tool call, same provider block or item),
      so the accumulated result stays exact and the consumer sees fewer, larger deltas
      carrying the ``seq``/``at`` of their last part; ``coalesced`` counts merged-away events.
      The source keeps reading while merging makes room; when it cannot (nothing adjacent is
      mergeable, e.g. two choices taking turns) it pauses like ``"block"``, with the same
      bound.
    - ``"error"``: the subscription is disposed and :class:`LimitExceededError`
      (``limit="max_buffer"``) is raised after the events already buffered.

    Args:
        source: the event observable.
        max_buffer: events that may wait for the consumer, at least 1.
        overflow: the policy above.

    Returns:
        An :class:`EventIterator` (``peak_buffered``, ``dropped``, ``coalesced``).

    Raises:
        ValueError: at call time, for ``max_buffer < 1`` or an unknown ``overflow``.
    """
    if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"max_buffer must be an int of at least 1, got {max_buffer!r}")
    if overflow not in _OVERFLOWS:
        raise ValueError(f"overflow must be one of {', '.join(map(repr, _OVERFLOWS))}, got {overflow!r}")
    return EventIterator(source, max_buffer=max_buffer, overflow=overflow)


# ----------------------------------------------------------------------------------------------
# EventObserver

_NEXT: Final = 0
_ERROR: Final = 1
_DONE: Final = 2

# The role of a queued call, which decides what a failure of that call means.
_ON_EVENT: Final = 0
_ON_COMPLETE: Final = 1
_ON_ERROR: Final = 2
_SETTLE: Final = 3

Callback = Callable[[Any], object]
"""A user callback: returns nothing, or an awaitable the observer awaits before going on."""

_KIND_NAMES: Final = {
    "stream.start": "on_start",
    "text.delta": "on_delta",
    "reasoning.delta": "on_reasoning",
    "refusal.delta": "on_refusal",
    "tool_call.start": "on_tool_call_start",
    "tool_call.delta": "on_tool_call_delta",
    "tool_call.done": "on_tool_call",
    "citation": "on_citation",
    "usage": "on_usage",
    "metrics": "on_metrics",
    "finish": "on_finish",
}


class EventObserver(abc.ObserverBase[Event], abc.DisposableBase):
    """Callbacks per event kind, for ``observer.subscribe_to(obs)`` (or ``obs.subscribe(observer)``).

    Each event goes first to ``on_event``, then to the callback of its kind:

    ============================  ==================================================
    ``on_start``                  ``stream.start``
    ``on_delta``                  ``text.delta``
    ``on_reasoning``              ``reasoning.delta``
    ``on_refusal``                ``refusal.delta``
    ``on_tool_call_start``        ``tool_call.start`` (a call begins: name, id)
    ``on_tool_call_delta``        ``tool_call.delta`` (an arguments fragment)
    ``on_tool_call``              ``tool_call.done`` (the complete call, to execute)
    ``on_citation``               ``citation``
    ``on_usage``                  ``usage``
    ``on_metrics``                ``metrics`` (from ``tap_metrics(emit=True)``)
    ``on_finish``                 ``finish``
    ``on_complete``               the :class:`StreamResult`, when the stream completes
    ``on_error``                  the error, when the stream (or a callback) fails
    ============================  ==================================================

    Callbacks may be plain functions or coroutine functions (anything returning an
    awaitable). Calls are strictly sequential in event order: an awaitable is awaited, on the
    event loop, before the next callback starts; events arriving meanwhile wait in order. Sync
    callbacks run as the events arrive, so an observer of sync callbacks works without a loop.

    Errors:
        A stream error reaches ``on_error``; an :class:`RxStreamError` carries ``.partial``, the
        :class:`StreamResult` of the events delivered before it. An exception raised by a
        callback (``on_complete`` included) stops the observer: no further callbacks, the
        subscription is disposed (so a live source closes its HTTP response), and the
        exception itself (not wrapped, its ``__cause__`` untouched) reaches ``on_error``;
        :attr:`result` holds what was delivered. An exception raised by ``on_error`` is what
        :meth:`done` raises.

    Disposal needs the subscription: :meth:`subscribe_to` keeps it. ``obs.subscribe(observer)``
    returns it to the caller instead, since reactivex never shows an observer its own
    subscription; a failing callback then still stops delivery, but the source runs until the
    caller disposes it or the stream ends.

    One observer follows one stream.

    Args:
        loop: the loop async callbacks run on, and to which notifications from other threads
            are handed (``call_soon_threadsafe``). Default: the loop running where the observer
            is created or subscribed.
        max_pending: with :meth:`subscribe_to`, events that may wait for slow async callbacks
            before a live source is paused (it resumes at half); at least 1.
    """

    def __init__(
        self,
        *,
        on_event: Callable[[Event], object] | None = None,
        on_start: Callable[[StreamStart], object] | None = None,
        on_delta: Callable[[TextDelta], object] | None = None,
        on_reasoning: Callable[[ReasoningDelta], object] | None = None,
        on_refusal: Callable[[RefusalDelta], object] | None = None,
        on_tool_call_start: Callable[[ToolCallStart], object] | None = None,
        on_tool_call_delta: Callable[[ToolCallDelta], object] | None = None,
        on_tool_call: Callable[[ToolCallDone], object] | None = None,
        on_citation: Callable[[Citation], object] | None = None,
        on_usage: Callable[[Usage], object] | None = None,
        on_metrics: Callable[[Metrics], object] | None = None,
        on_finish: Callable[[Finish], object] | None = None,
        on_complete: Callable[[StreamResult], object] | None = None,
        on_error: Callable[[Exception], object] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        max_pending: int = 1024,
    ) -> None:
        given: dict[str, Callable[..., object] | None] = {
            "on_event": on_event,
            "on_start": on_start,
            "on_delta": on_delta,
            "on_reasoning": on_reasoning,
            "on_refusal": on_refusal,
            "on_tool_call_start": on_tool_call_start,
            "on_tool_call_delta": on_tool_call_delta,
            "on_tool_call": on_tool_call,
            "on_citation": on_citation,
            "on_usage": on_usage,
            "on_metrics": on_metrics,
            "on_finish": on_finish,
            "on_complete": on_complete,
            "on_error": on_error,
        }
        for name, fn in given.items():
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None, got {type(fn).__name__}")
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"max_pending must be an int of at least 1, got {max_pending!r}")
        if loop is not None and not isinstance(loop, asyncio.AbstractEventLoop):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"loop must be an asyncio event loop or None, got {type(loop).__name__}")
        self._on_event: Callback | None = on_event
        self._on_complete: Callback | None = on_complete
        self._on_error: Callback | None = on_error
        self._handlers: dict[str, Callback] = {
            kind: fn for kind, name in _KIND_NAMES.items() if (fn := given[name]) is not None
        }
        self._loop = loop or _running_loop()
        self._max_pending = max_pending
        self._accumulator = ResultAccumulator()
        self._pending: deque[tuple[int, Any]] = deque()
        self._calls: deque[tuple[Callback, Any, int]] = deque()
        self._awaiting_role = _ON_EVENT
        self._busy = False
        self._closed = False
        self._attached = False
        self._subscription: abc.DisposableBase | None = None
        self._dispose_on_attach = False
        self._gate: ReadGate | None = None
        self._gate_closed = False
        self._task: asyncio.Task[None] | None = None
        self._outcome: tuple[StreamResult | None, BaseException | None] | None = None
        self._waiters: list[asyncio.Future[StreamResult]] = []

    # -- public ------------------------------------------------------------------------------

    def subscribe_to(
        self, source: Observable[Any], *, scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        """Subscribe to ``source`` and keep the subscription, so a failing callback can dispose it.

        Also lets a live source pause while async callbacks are ``max_pending`` events behind.
        Returns a disposable that stops the observer and disposes the subscription.

        Raises:
            RuntimeError: this observer already follows a stream.
        """
        if self._attached:
            raise RuntimeError(
                "this EventObserver already follows a stream: expected one subscription per "
                "observer, create another observer for another stream"
            )
        self._attached = True
        if self._loop is None:
            self._loop = _running_loop()
        if self._loop is not None and self._loop is _running_loop():
            self._gate = ReadGate()
        token = CURRENT_GATE.set(self._gate)
        try:
            subscription = source.subscribe(self, scheduler=scheduler)
        finally:
            CURRENT_GATE.reset(token)
        if self._dispose_on_attach:
            subscription.dispose()
        else:
            self._subscription = subscription
        return Disposable(self.dispose)

    @property
    def result(self) -> StreamResult:
        """The :class:`StreamResult` of the events delivered to the callbacks so far."""
        return self._accumulator.result()

    async def done(self) -> StreamResult:
        """Wait until the stream ended and every callback returned.

        Returns:
            The :class:`StreamResult` (the one ``on_complete`` received).

        Raises:
            The error ``on_error`` received (or the one ``on_error`` raised);
            ``asyncio.CancelledError`` when the observer was disposed first.
        """
        outcome = self._outcome
        if outcome is None:
            waiter: asyncio.Future[StreamResult] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            return await waiter
        result, error = outcome
        if error is not None or result is None:
            raise error or asyncio.CancelledError()
        return result

    def dispose(self) -> None:
        """Stop: no further callbacks; dispose the subscription when it is held."""
        if self._outcome is None:
            self._outcome = (None, asyncio.CancelledError())
            for waiter in self._waiters:
                self._resolve(waiter, lambda w: w.cancel())
            self._waiters.clear()
        self._closed = True
        self._pending.clear()
        self._calls.clear()
        self._stop_source()
        task = self._task
        if task is not None and not task.done() and task is not _current_task():
            task.cancel()

    # -- ObserverBase ------------------------------------------------------------------------

    def on_next(self, value: Event) -> None:
        """Deliver one event to the callbacks (in order, after those before it)."""
        self._receive((_NEXT, value))

    def on_error(self, error: Exception) -> None:
        """End with the stream's error: ``on_error`` after every earlier event's callbacks."""
        self._receive((_ERROR, error))

    def on_completed(self) -> None:
        """End: ``on_complete`` after every earlier event's callbacks."""
        self._receive((_DONE, None))

    # -- machinery ---------------------------------------------------------------------------

    def _receive(self, item: tuple[int, Any]) -> None:
        loop = self._loop
        if loop is not None and _running_loop() is not loop:
            if loop.is_closed():
                # Nothing can run there any more: sync callbacks run here, async ones fail.
                self._loop = None
            else:
                loop.call_soon_threadsafe(self._accept, item)
                return
        self._accept(item)

    def _accept(self, item: tuple[int, Any]) -> None:
        if self._closed:
            return
        if item[0] != _NEXT:
            self._closed = True
        pending = self._pending
        pending.append(item)
        if self._gate is not None and len(pending) >= self._max_pending and not self._gate_closed:
            self._gate_closed = True
            self._gate.close()
        if not self._busy:
            self._kick()

    def _kick(self) -> None:
        self._busy = True
        while True:
            awaitable = self._step()
            if awaitable is None:
                self._busy = False
                return
            loop = self._loop or _running_loop()
            if loop is not None:
                self._loop = loop
                self._task = loop.create_task(self._drain(awaitable))
                return
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            self._failed(
                self._awaiting_role,
                RuntimeError(
                    "a callback returned an awaitable but no event loop is running to await it: "
                    "subscribe from async code or pass EventObserver(loop=...)"
                ),
            )

    async def _drain(self, awaitable: Awaitable[object] | None) -> None:
        while awaitable is not None:
            try:
                await awaitable
            except Exception as exc:  # noqa: BLE001 - a user callback's failure goes to on_error
                self._failed(self._awaiting_role, exc)
            awaitable = self._step()
        self._busy = False

    def _step(self) -> Awaitable[object] | None:
        """Run queued calls until one returns an awaitable (returned) or none is left."""
        calls = self._calls
        pending = self._pending
        while True:
            if not calls:
                if not pending:
                    return None
                self._expand(pending.popleft())
                if self._gate_closed and len(pending) <= self._max_pending // 2:
                    self._open_gate()
                continue
            fn, arg, role = calls.popleft()
            try:
                returned = fn(arg)
            except Exception as exc:  # noqa: BLE001 - a user callback's failure goes to on_error
                self._failed(role, exc)
                continue
            if returned is not None and inspect.isawaitable(returned):
                self._awaiting_role = role
                return returned

    def _expand(self, item: tuple[int, Any]) -> None:
        kind, value = item
        calls = self._calls
        if kind == _NEXT:
            self._accumulator.feed(value)
            if self._on_event is not None:
                calls.append((self._on_event, value, _ON_EVENT))
            handler = self._handlers.get(value.type)
            if handler is not None:
                calls.append((handler, value, _ON_EVENT))
        elif kind == _DONE:
            result = self._accumulator.result()
            if self._on_complete is not None:
                calls.append((self._on_complete, result, _ON_COMPLETE))
            calls.append((self._settle, (result, None), _SETTLE))
        else:
            if isinstance(value, RxStreamError):
                value.partial = self._accumulator.result(error=value)
            self._fail_with(value)

    def _fail_with(self, error: BaseException) -> None:
        if self._on_error is not None:
            self._calls.append((self._on_error, error, _ON_ERROR))
        self._calls.append((self._settle, (None, error), _SETTLE))

    def _failed(self, role: int, exc: Exception) -> None:
        self._calls.clear()
        self._pending.clear()
        if role in (_ON_ERROR, _SETTLE):
            self._settle((None, exc))
            return
        self._closed = True
        self._stop_source()
        self._fail_with(exc)

    def _open_gate(self) -> None:
        self._gate_closed = False
        if self._gate is not None:
            self._gate.open()

    def _stop_source(self) -> None:
        if self._gate_closed:
            self._open_gate()
        subscription = self._subscription
        if subscription is None:
            if self._attached:
                self._dispose_on_attach = True
            return
        self._subscription = None
        subscription.dispose()

    def _settle(self, outcome: tuple[StreamResult | None, BaseException | None]) -> None:
        if self._outcome is not None:
            return
        self._outcome = outcome
        result, error = outcome
        for waiter in self._waiters:
            if error is not None:
                self._resolve(waiter, lambda w, e=error: w.set_exception(e))
            elif result is not None:
                self._resolve(waiter, lambda w, r=result: w.set_result(r))
        self._waiters.clear()

    @staticmethod
    def _resolve(
        waiter: asyncio.Future[StreamResult], action: Callable[[asyncio.Future[StreamResult]], object]
    ) -> None:
        def apply() -> None:
            if not waiter.done():
                action(waiter)

        loop = waiter.get_loop()
        if _running_loop() is loop:
            apply()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(apply)


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None
