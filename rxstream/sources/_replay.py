"""Replay recorded provider streams (cassettes with timing; raw .sse, .jsonl, Gemini .json) as ProviderChunk observables."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable, SerialDisposable
from reactivex.scheduler import CurrentThreadScheduler, TimeoutScheduler
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxstream._cassette import Cassette, is_cassette, read_cassette
from rxstream._chunk import ProviderChunk, StreamOpen, Wire, detect_wire
from rxstream._clock import stamp_ns
from rxstream._errors import ProtocolError, RxStreamError
from rxstream._limits import Limits, check_limits
from rxstream.sources._payloads import Framing, PayloadDecoder, framing_for_path

__all__ = ["from_bytes", "load_recording", "play", "read_payloads", "read_recording", "replay"]

def read_payloads(
    body: bytes, framing: Framing, *, chunk_size: int | None = None, limits: Limits | None = None
) -> list[tuple[str | None, Any]]:
    """Decode a whole body into (event name, payload) pairs, fed ``chunk_size`` bytes at a time.

    Raises:
        ProtocolError: the body is not its framing.
        LimitExceededError: a line, event or element over its limit in ``limits``.
    """
    decoder = PayloadDecoder(framing, limits=limits)
    out: list[tuple[str | None, Any]] = []
    if chunk_size is None or chunk_size >= len(body):
        out.extend(decoder.feed(body))
    else:
        for start in range(0, len(body), chunk_size):
            out.extend(decoder.feed(body[start : start + chunk_size]))
    out.extend(decoder.flush())
    if decoder.failure is not None:
        raise decoder.failure
    return out


def _sniff(payloads: list[tuple[str | None, Any]], framing: Framing) -> Wire | None:
    if framing == "json":
        return "gemini"
    for event, data in payloads[:64]:
        wire = detect_wire(event, data)
        if wire is not None:
            return wire
    return None


def _read(path: str | os.PathLike[str]) -> tuple[str, bytes]:
    name = str(path)
    try:
        return name, Path(name).read_bytes()
    except OSError as exc:
        raise ProtocolError(f"cannot read recording {name}: {exc.strerror or exc}") from exc


def _raw_chunks(
    name: str,
    body: bytes,
    *,
    chunk_size: int | None,
    wire: Wire | None,
    provider: str | None,
    request: dict[str, Any] | None,
    limits: Limits | None,
) -> list[ProviderChunk]:
    framing = framing_for_path(name)
    try:
        payloads = read_payloads(body, framing, chunk_size=chunk_size, limits=limits)
    except RxStreamError as exc:
        exc.message = f"{name}: {exc.message}"
        exc.args = (exc.message,)
        raise
    wire = wire or _sniff(payloads, framing)
    if wire is None:
        raise ProtocolError(
            f"{name}: cannot tell the wire format: expected OpenAI chat, OpenAI Responses, "
            "Anthropic Messages or Gemini payloads; pass wire="
        )
    chunks = [ProviderChunk("open", wire, None, None, 0, StreamOpen(provider=provider, request=request))]
    chunks.extend(ProviderChunk("data", wire, event, data, i + 1) for i, (event, data) in enumerate(payloads))
    return chunks


def read_recording(
    path: str | os.PathLike[str],
    *,
    chunk_size: int | None = None,
    wire: Wire | None = None,
    provider: str | None = None,
    request: dict[str, Any] | None = None,
    limits: Limits | None = None,
) -> Cassette:
    """Read a recording of either kind into a :class:`Cassette`: an rxstream cassette (told by
    its first line, whatever the extension) with its timing and its end, or a raw body
    (``.sse``, ``.jsonl`` payloads, Gemini ``.json``), untimed, that completes.

    ``wire``, ``provider`` and ``request`` replace what the recording says when given;
    ``limits`` bounds the raw body's decoder.

    Raises:
        ProtocolError: the file cannot be read, is not its format, or its wire cannot be told.
        LimitExceededError: a line or event over the decoder's limit.
    """
    name, body = _read(path)
    if is_cassette(body):
        cassette = read_cassette(body, name)
        if wire is not None or provider is not None or request is not None:
            for chunk in cassette.chunks:
                chunk.wire = wire or chunk.wire
                opened = chunk.open
                if opened is not None:
                    opened.provider = provider if provider is not None else opened.provider
                    opened.request = request if request is not None else opened.request
        return cassette
    chunks = _raw_chunks(
        name, body, chunk_size=chunk_size, wire=wire, provider=provider, request=request, limits=limits
    )
    return Cassette(name, {}, chunks, timed=False, end="complete")


def load_recording(
    path: str | os.PathLike[str],
    *,
    chunk_size: int | None = None,
    wire: Wire | None = None,
    provider: str | None = None,
    request: dict[str, Any] | None = None,
    limits: Limits | None = None,
) -> list[ProviderChunk]:
    """Read a recording into the chunks a source would emit: the open chunk, then payloads.

    ``at`` is the payload's ordinal for a raw recording (it has no timing), the recorded offset
    in ns for a cassette (whose end, an error included, only :func:`read_recording` and
    :func:`replay` report). Raises :class:`ProtocolError` when the body is not its framing or
    the wire cannot be told.
    """
    return read_recording(
        path, chunk_size=chunk_size, wire=wire, provider=provider, request=request, limits=limits
    ).chunks


def _check_speed(speed: float | None) -> None:
    if speed is None:
        return
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0 < speed < math.inf:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"replay(speed=...) expected None or a number > 0 (1.0: recorded pace), got {speed!r}")


def _timer_scheduler() -> abc.SchedulerBase:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return TimeoutScheduler.singleton()
    return AsyncIOScheduler(loop)


def play(
    cassette: Cassette | Callable[[], Cassette],
    *,
    speed: float | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Observable[ProviderChunk]:
    """A cold observable that plays a :class:`Cassette` (or one a factory reads at subscribe
    time): what :func:`replay` does once the file is read. See :func:`replay` for ``speed`` and
    ``scheduler``.

    Errors:
        What the factory raises (an :class:`RxStreamError`), then what :func:`replay` lists.

    Raises:
        ValueError: at call time, for a ``speed`` that is not ``None`` or a number > 0.
    """
    _check_speed(speed)

    def subscribe(observer: abc.ObserverBase[ProviderChunk], sched: abc.SchedulerBase | None = None) -> abc.DisposableBase:
        if scheduler is not None:
            run_on = scheduler
        elif sched is not None:
            run_on = sched
        elif speed is None:
            run_on = CurrentThreadScheduler.singleton()
        else:
            run_on = _timer_scheduler()
        playback = _Playback(observer, run_on, speed)

        def first(_: abc.SchedulerBase, __: Any = None) -> None:
            try:
                tape = cassette() if callable(cassette) else cassette
            except RxStreamError as exc:
                observer.on_error(exc)
                return
            playback.start(tape)

        playback.pending.disposable = run_on.schedule(first)
        return Disposable(playback.dispose)

    return reactivex.create(subscribe)


class _Playback:
    """One subscription's playback: chunks in order, each on time, then the recorded end."""

    __slots__ = ("cancelled", "observer", "pending", "scheduler", "speed")

    def __init__(self, observer: abc.ObserverBase[ProviderChunk], scheduler: abc.SchedulerBase, speed: float | None) -> None:
        self.observer = observer
        self.scheduler = scheduler
        self.speed = speed
        self.cancelled = False
        self.pending = SerialDisposable()

    def dispose(self) -> None:
        self.cancelled = True
        self.pending.dispose()

    def start(self, tape: Cassette) -> None:
        if self.speed is None or not tape.timed:
            stamp = stamp_ns(self.scheduler.now)
            for chunk in tape.chunks:
                if self.cancelled:
                    return
                self.observer.on_next(_restamped(chunk, stamp, stamp, None))
            if not self.cancelled:
                self._end(tape)
            return
        self._timed(tape, self.speed)

    def _timed(self, tape: Cassette, speed: float) -> None:
        # Due times in whole microseconds from the start (the clock schedulers keep), each
        # taken from the start rather than the previous chunk, so rounding never accumulates;
        # chunks due at the same moment (one read's payloads) go out in one action.
        groups: list[tuple[int, list[ProviderChunk | None]]] = []
        items: list[tuple[int, ProviderChunk | None]] = [(c.at, c) for c in tape.chunks]
        last = tape.chunks[-1].at if tape.chunks else 0
        items.append((tape.end_at if tape.end_at is not None else last, None))
        for at, item in items:
            due = max(0, round(at / 1000 / speed))
            if groups and groups[-1][0] >= due:
                groups[-1][1].append(item)
            else:
                groups.append((due, [item]))
        scheduler = self.scheduler
        start = scheduler.now
        start_ns = stamp_ns(start)
        position = 0

        def action(_: abc.SchedulerBase, __: Any = None) -> None:
            nonlocal position
            if self.cancelled:
                return
            batch = groups[position][1]
            position += 1
            at = stamp_ns(scheduler.now)
            for item in batch:
                if self.cancelled:
                    return
                if item is None:
                    self._end(tape)
                    return
                self.observer.on_next(_restamped(item, at, start_ns, speed))
            if position < len(groups) and not self.cancelled:
                due = start + timedelta(microseconds=groups[position][0])
                self.pending.disposable = scheduler.schedule_absolute(due, action)

        self.pending.disposable = scheduler.schedule_absolute(start + timedelta(microseconds=groups[0][0]), action)

    def _end(self, tape: Cassette) -> None:
        if tape.end == "error" and tape.error is not None:
            self.observer.on_error(tape.error.build())
        elif tape.end is None:
            self.observer.on_error(
                ProtocolError(
                    f"{tape.name}: the cassette ends after {len(tape.chunks)} chunks without a "
                    "complete, error or dispose line: it was cut short while recording"
                )
            )
        else:
            self.observer.on_completed()


def _restamped(chunk: ProviderChunk, at: int, start_ns: int, speed: float | None) -> ProviderChunk:
    """A fresh chunk (the cassette may play again) stamped ``at``; the open chunk's marks moved
    onto the playback's clock (``speed=None``: both at ``at``)."""
    opened = chunk.open
    if opened is not None:

        def mark(offset: int | None) -> int | None:
            if offset is None:
                return None
            if speed is None:
                return at
            return start_ns + round(offset / 1000 / speed) * 1000

        opened = replace(opened, request_sent_at=mark(opened.request_sent_at), headers_at=at if opened.headers_at is not None else None)
    return ProviderChunk(chunk.kind, chunk.wire, chunk.event, chunk.data, at, opened)


def replay(
    path: str | os.PathLike[str],
    *,
    speed: float | None = None,
    scheduler: abc.SchedulerBase | None = None,
    wire: Wire | None = None,
    provider: str | None = None,
    request: dict[str, Any] | None = None,
    chunk_size: int | None = None,
    limits: Limits | None = None,
) -> Observable[ProviderChunk]:
    """A cold observable of a recorded stream's chunks: the open chunk, then one per payload,
    then the recorded end.

    Reads rxstream cassettes (written by :func:`rxstream.operators.record`, told by their
    first line) and raw bodies (``.sse``, ``.jsonl`` payloads, Gemini ``.json``). The file is
    read at subscribe time. A cassette ends as the recorded stream did: completed, or with its
    recorded error rebuilt (same class, message and typed fields such as ``status`` or
    ``retry_after``); one the consumer stopped (``dispose``) completes.

    Timing: ``speed=None`` emits everything at once, synchronously on the scheduler, every
    ``at`` the same stamp. ``speed=1.0`` keeps the recorded gaps (the open chunk comes after the
    recorded time to headers, each payload at its offset, the end at its own), ``2.0`` halves
    them; a raw body has no timing and plays as with ``None``. ``at`` (and the open chunk's
    marks) are taken from the scheduler's clock, so on a ``TestScheduler`` a replay runs in
    virtual time and time-based operators see exactly the recorded gaps (microsecond
    precision).

    .. marble::
        :alt: replay
        [ replay("run.jsonl", speed=1.0) ]
        --o---a-b------c-|

    Args:
        path: the cassette or raw recording.
        speed: ``None`` (as fast as possible) or how many times faster than recorded.
        scheduler: where to emit; default the subscribe-time scheduler, else the current
            thread (``speed=None``), else for a timed replay an ``AsyncIOScheduler`` on the
            running asyncio loop when there is one, else the ``TimeoutScheduler``.
        wire: the wire format; from the recording (sniffed for a raw body) when omitted.
        provider: who recorded it, for ``stream.start`` (overrides the cassette's).
        request: the request the recording answered (overrides the cassette's).
        chunk_size: feed a raw body's decoder this many bytes at a time (tests use 1 and 7).
        limits: bounds for the raw body's decoder (default :class:`~rxstream.Limits`).

    Errors:
        :class:`ProtocolError` (or :class:`LimitExceededError`) through ``on_error`` for a file
        that cannot be read or decoded, and at the end of a cassette cut short (no end line);
        a cassette's recorded error after its chunks.

    Raises:
        ValueError: at call time, for a ``speed`` that is not ``None`` or a number > 0, or
            ``limits`` that is not a :class:`~rxstream.Limits`.
    """
    _check_speed(speed)
    check_limits(limits, "replay")

    def load() -> Cassette:
        return read_recording(
            path, chunk_size=chunk_size, wire=wire, provider=provider, request=request, limits=limits
        )

    return play(load, speed=speed, scheduler=scheduler)


def from_bytes(
    body: Iterable[bytes],
    *,
    framing: Framing = "sse",
    wire: Wire | None = None,
    provider: str | None = None,
    request: dict[str, Any] | None = None,
    limits: Limits | None = None,
) -> Observable[ProviderChunk]:
    """A cold observable over body bytes already in hand (or produced by an iterable, one read
    at a time): the open chunk, then one chunk per decoded payload, ``at`` from the monotonic
    clock at each read.

    Emits synchronously on subscribe. With ``wire=None`` the chunks carry no wire and
    ``normalize()`` detects it.

    ``limits`` bounds the decoder (default :class:`~rxstream.Limits`).

    Errors:
        :class:`ProtocolError` / :class:`LimitExceededError` from the decoder, after every
        payload decoded before the fault.

    Raises:
        ValueError: at call time, for ``limits`` that is not a :class:`~rxstream.Limits`.
    """
    chosen = check_limits(limits, "from_bytes")

    def subscribe(observer: abc.ObserverBase[ProviderChunk], _: abc.SchedulerBase | None = None) -> abc.DisposableBase:
        decoder = PayloadDecoder(framing, limits=chosen)
        cancelled = False
        now = time.monotonic_ns
        emit = observer.on_next

        def dispose() -> None:
            nonlocal cancelled
            cancelled = True

        emit(ProviderChunk("open", wire, None, None, now(), StreamOpen(provider=provider, request=request)))
        try:
            for piece in body:
                if cancelled:
                    break
                at = now()
                for event, data in decoder.feed(piece):
                    emit(ProviderChunk("data", wire, event, data, at))
                if decoder.failure is not None:
                    raise decoder.failure
            if not cancelled:
                at = now()
                for event, data in decoder.flush():
                    emit(ProviderChunk("data", wire, event, data, at))
                if decoder.failure is not None:
                    raise decoder.failure
        except RxStreamError as exc:
            observer.on_error(exc)
            return Disposable(dispose)
        if not cancelled:
            observer.on_completed()
        return Disposable(dispose)

    return reactivex.create(subscribe)
