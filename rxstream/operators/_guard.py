"""guard(): end a stream that crosses a token or time budget, and close its request so spending stops."""

from __future__ import annotations

import asyncio
import datetime
import threading
from collections.abc import Callable
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SingleAssignmentDisposable
from reactivex.scheduler import TimeoutScheduler
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxstream._errors import RxStreamError, StreamTimeoutError
from rxstream._events import (
    Citation,
    Event,
    EventBase,
    Finish,
    ReasoningDelta,
    RefusalDelta,
    StreamEnd,
    StreamRestart,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
    event_builder,
)
from rxstream._tokens import Tokenizer, tokenizer_from_counter
from rxstream.operators._usage import UsageTally

__all__ = ["GuardCore", "guard"]

_FINISH = event_builder(Finish)
_END = event_builder(StreamEnd)


class GuardCore:
    """The pure core of ``guard()``: watches live counts and says when a budget is crossed.

    Events pass unchanged. After the event that brings the output (or input plus output) to a
    budget, ``feed`` also returns the stream's end: one ``finish`` (reason ``length``,
    ``raw_reason`` ``guard:<budget>``) per output not finished yet, the usage so far
    (``final=True``) and ``stream.end``; ``tripped`` is then set and the caller stops. The
    output count is the larger of the provider's last cumulative report and the local count;
    the input is the provider's, else the estimate from the request, else 0.
    """

    failure: RxStreamError | None = None

    def __init__(
        self,
        *,
        max_output_tokens: int | None = None,
        max_total_tokens: int | None = None,
        max_duration: float | None = None,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        self._max_output = max_output_tokens
        self._max_total = max_total_tokens
        self._max_duration = max_duration
        self._tally = UsageTally(tokenizer)
        self._outputs: dict[int, bool] = {}  # output -> finished
        self._last: EventBase | None = None
        self._ended = False
        self.tripped = False
        # The local output count at which a budget may be reached (the total budget less the
        # input): below it, a delta costs a comparison; past it, an exact count decides.
        self._watch = float("inf")
        self._update_watch()
        tally = self._tally
        self._handlers: dict[type[Any], Callable[[Any], object]] = {
            ReasoningDelta: lambda e: tally.reasoning(e.output, e.text) if e.text else None,
            RefusalDelta: lambda e: tally.refusal(e.output, e.text),
            ToolCallStart: lambda e: tally.call(e.output, e.call_index, e.name),
            ToolCallDelta: lambda e: tally.arguments(e.output, e.call_index, e.arguments_delta),
            ToolCallDone: tally.call_done,
        }

    def feed(self, event: Any) -> list[Event]:
        """Pass ``event`` on; after it, the stream's end when it crossed a budget."""
        if self.tripped:
            return []
        self._last = event
        cls = event.__class__
        tally = self._tally
        if cls is TextDelta:
            # The hot path, inlined: one dict probe, one append, one comparison.
            output = event.output
            if output not in self._outputs:
                self._outputs[output] = False
            counter = tally.texts.get(output)
            if counter is None:
                counter = tally.text_counter(output)
            text = event.text
            counter.add(text)
            tally.fresh += len(text)
            if tally.counted + 2 * tally.fresh * tally.ratio < self._watch:
                return [event]
            return self._check(event)
        count = self._handlers.get(cls)
        if count is not None:
            if event.output not in self._outputs:
                self._outputs[event.output] = False
            count(event)
            if tally.counted + 2 * tally.fresh * tally.ratio < self._watch:
                return [event]
            return self._check(event)
        if cls is Usage:
            if event.source == "provider" and not event.final:
                tally.provider = event
                self._update_watch()
                return self._check(event)
        elif cls is Finish:
            self._outputs[event.output] = True
        elif cls is Citation:
            self._outputs.setdefault(event.output, False)
        elif cls is StreamStart:
            tally.start(event)
            self._update_watch()
        elif cls is StreamRestart:
            tally.reset()
            self._outputs = {}
            self._update_watch()
        elif cls is StreamEnd:
            self._ended = True
        return [event]

    def _check(self, event: Any) -> list[Event]:
        crossed = self._crossed()
        return [event] if crossed is None else [event, *self._trip(crossed, event)]

    def _input_now(self) -> int:
        provider = self._tally.provider
        reported = provider.input_tokens if provider is not None else None
        return reported if reported is not None else self._tally.input_tokens() or 0

    def _update_watch(self) -> None:
        watch = float("inf")
        if self._max_output is not None:
            watch = self._max_output
        if self._max_total is not None:
            watch = min(watch, self._max_total - self._input_now())
        self._watch = watch

    def flush(self) -> list[Event]:
        """Nothing is held back."""
        return []

    def expire(self) -> list[Event]:
        """``max_duration`` passed: end the stream now (a failure when nothing arrived yet)."""
        if self.tripped or self._ended:
            return []
        last = self._last
        if last is None:
            self.failure = StreamTimeoutError(
                f"guard(max_duration={self._max_duration:g}): expected a stream to end within "
                f"{self._max_duration:g} s, got no event at all in that time",
                kind="total",
                seconds=self._max_duration or 0.0,
            )
            return []
        return self._trip("max_duration", last)

    def _crossed(self) -> str | None:
        tally = self._tally
        provider = tally.provider
        reported = provider.output_tokens if provider is not None else None
        # Count exactly only once the extrapolated count is past half the distance left: a
        # few encodes per stream, and no late trip unless the text's tokens per character
        # more than double.
        near = tally.counted + 2 * tally.fresh * tally.ratio >= self._watch
        counted = tally.output_tokens() if near else tally.counted
        output = max(counted, reported or 0)
        limit = self._max_output
        if limit is not None and output >= limit:
            return "max_output_tokens"
        limit = self._max_total
        if limit is not None:
            if provider is not None and provider.total_tokens is not None and provider.total_tokens >= limit:
                return "max_total_tokens"
            if self._input_now() + output >= limit:
                return "max_total_tokens"
        return None

    def _trip(self, budget: str, cause: EventBase) -> list[Event]:
        self.tripped = True
        outputs = self._outputs or {0: False}
        out: list[Event] = [
            _FINISH(
                cause.stream_id,
                cause.seq,
                cause.at,
                {},
                output=output,
                reason="length",
                raw_reason=f"guard:{budget}",
            )
            for output in sorted(outputs)
            if not outputs[output]
        ]
        out.append(self._tally.usage(cause, final=True, complete=False))
        out.append(_END(cause.stream_id, cause.seq, cause.at, {}))
        return out


def _default_scheduler() -> abc.SchedulerBase:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return TimeoutScheduler.singleton()
    return AsyncIOScheduler(loop)


def _wrap(exc: Exception) -> RxStreamError:
    error = RxStreamError(f"guard(): counting tokens raised {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def _positive_int(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"guard({name}=...) expected an int > 0 or None, got {value!r}")
    return value


def guard(
    *,
    max_output_tokens: int | None = None,
    max_total_tokens: int | None = None,
    max_duration: float | datetime.timedelta | None = None,
    counter: object = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[Event]], Observable[Event]]:
    """End a stream that crosses a budget, and dispose upstream so its HTTP request is closed.

    Events pass unchanged while the stream is within budget. Output tokens are counted live,
    as ``aggregate_usage()`` counts them (exact across deltas, the model's tiktoken BPE or
    ``counter``), and compared with the provider's own cumulative reports when it sends any;
    the input is the provider's figure, else the estimate from the request in ``stream.start``
    (0 when unknown). When the output reaches ``max_output_tokens``, input plus output reaches
    ``max_total_tokens``, or ``max_duration`` passes (on ``scheduler``'s clock, from
    subscription), ``guard`` emits, after the event that crossed (it was already paid for):
    one ``finish`` per unfinished output with reason ``length`` and ``raw_reason``
    ``guard:max_output_tokens`` / ``guard:max_total_tokens`` / ``guard:max_duration``, the
    usage so far (``final=True``; ``aggregate_usage()`` downstream passes it as the final one),
    and ``stream.end``; then it completes and disposes upstream (a live source cancels its
    request: spending stops). Open tool calls get no ``tool_call.done``: their arguments are
    cut (``parse_json()`` reports them truncated on the ``finish``).

    .. marble::
        :alt: guard
        -s-a-b-c-d-|
        [ guard(max_output_tokens=2) ]
        -s-a-(b,f,u,e)|

    (``s`` stream.start, ``a``-``d`` one-token text deltas, ``f`` finish with reason
    ``length``, ``u`` the usage so far, ``e`` stream.end; all four, the completion and the
    disposal of upstream happen at ``b``'s time.)

    Args:
        max_output_tokens: output tokens (answer, reasoning, refusal, tool calls) allowed.
        max_total_tokens: input plus output tokens allowed.
        max_duration: seconds (or a ``timedelta``) the stream may run, from subscription.
        counter: counts tokens instead of the model's BPE (as in ``aggregate_usage()``).
        scheduler: the clock for ``max_duration``: default the subscribe-time scheduler, then
            the running asyncio loop's, then a thread timer (``TimeoutScheduler``).

    Errors:
        When ``max_duration`` passes before any event arrived there is no stream to end: the
        stream fails with :class:`StreamTimeoutError` (``kind="total"``) and upstream is
        disposed. A ``counter`` that raises fails the stream with :class:`RxStreamError`
        (cause attached). Upstream errors pass unchanged.

    Raises:
        ValueError: at call time, when no budget is given, a token budget is not an int > 0,
            ``max_duration`` is not a positive number of seconds or ``timedelta``, or
            ``counter`` is not a counter.
    """
    max_output = _positive_int("max_output_tokens", max_output_tokens)
    max_total = _positive_int("max_total_tokens", max_total_tokens)
    seconds: float | None = None
    if max_duration is not None:
        if isinstance(max_duration, datetime.timedelta):
            seconds = max_duration.total_seconds()
        elif isinstance(max_duration, int | float) and not isinstance(max_duration, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
            seconds = float(max_duration)
        if seconds is None or not 0 < seconds < float("inf"):
            raise ValueError(
                f"guard(max_duration=...) expected a positive number of seconds or timedelta, got {max_duration!r}"
            )
    if max_output is None and max_total is None and seconds is None:
        raise ValueError("guard() needs a budget: max_output_tokens=, max_total_tokens= or max_duration=")
    tokenizer = tokenizer_from_counter(counter) if counter is not None else None

    def operator(source: Observable[Event]) -> Observable[Event]:
        def subscribe(
            observer: abc.ObserverBase[Event], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            core = GuardCore(
                max_output_tokens=max_output,
                max_total_tokens=max_total,
                max_duration=seconds,
                tokenizer=tokenizer,
            )
            upstream = SingleAssignmentDisposable()
            timer = SingleAssignmentDisposable()
            stopped = False

            def stop() -> None:
                nonlocal stopped
                stopped = True
                timer.dispose()
                upstream.dispose()

            def deliver(out: list[Event]) -> None:
                for event in out:
                    observer.on_next(event)
                failure = core.failure
                if failure is not None:
                    stop()
                    observer.on_error(failure)
                elif core.tripped:
                    stop()
                    observer.on_completed()

            def fail(exc: Exception) -> None:
                stop()
                observer.on_error(exc if isinstance(exc, RxStreamError) else _wrap(exc))

            def on_next(event: Event) -> None:
                if stopped:
                    return
                try:
                    out = core.feed(event)
                except Exception as exc:  # noqa: BLE001 - reported per Rx grammar
                    fail(exc)
                    return
                if len(out) == 1 and not core.tripped:
                    observer.on_next(out[0])
                else:
                    deliver(out)

            def on_error(exc: Exception) -> None:
                if not stopped:
                    stop()
                    observer.on_error(exc)

            def on_completed() -> None:
                if not stopped:
                    stop()
                    observer.on_completed()

            def expire(_: abc.SchedulerBase, __: Any = None) -> None:
                if stopped:
                    return
                try:
                    out = core.expire()
                except Exception as exc:  # noqa: BLE001
                    fail(exc)
                    return
                deliver(out)

            if seconds is not None:
                # The timer may fire on another thread (TimeoutScheduler): one lock orders it
                # with the source's notifications (re-entrant, for a downstream that calls back).
                lock = threading.RLock()
                unlocked = (on_next, on_error, on_completed, expire)

                def locked(fn: Callable[..., None]) -> Callable[..., None]:
                    def call(*args: Any) -> None:
                        with lock:
                            fn(*args)

                    return call

                on_next, on_error, on_completed, expire = (locked(fn) for fn in unlocked)
                clock = scheduler or subscribe_scheduler or _default_scheduler()
                timer.disposable = clock.schedule_relative(datetime.timedelta(seconds=seconds), expire)
            upstream.disposable = source.subscribe(on_next, on_error, on_completed, scheduler=subscribe_scheduler)

            def dispose() -> None:
                nonlocal stopped
                stopped = True

            return CompositeDisposable(Disposable(dispose), upstream, timer)

        return Observable(subscribe)

    return operator
