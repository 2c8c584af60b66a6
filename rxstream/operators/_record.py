"""record(): write a source's provider chunks to a cassette, with their timing, as they pass."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

from reactivex import Observable, abc
from reactivex.disposable import Disposable, SingleAssignmentDisposable

from rxstream._cassette import CassetteTarget, CassetteWriter
from rxstream._chunk import ProviderChunk
from rxstream._errors import RxStreamError

__all__ = ["record"]


def record(
    path_or_file: CassetteTarget,
    *,
    timing: bool = True,
    buffer_bytes: int = 64 * 1024,
) -> Callable[[Observable[ProviderChunk]], Observable[ProviderChunk]]:
    """Write every provider chunk to a cassette as it passes, unchanged, for replay later.

    Goes on the source, before ``normalize()``: ``source.pipe(record("run.jsonl"), normalize())``.
    The cassette (format in :mod:`rxstream._cassette`) holds a header line, the open chunk
    (request with secrets removed, response status and headers, marks), one line per payload
    with its arrival offset in milliseconds (from ``ProviderChunk.at``, the source's clock),
    and a last line saying how the stream ended: ``complete``, ``error`` (type, message and
    typed fields, so a failed stream still leaves a valid cassette) or ``dispose`` (the
    consumer stopped it). :func:`rxstream.sources.replay` plays it back, with its timing at
    ``speed=1.0``.

    Writing never holds the stream up for long: lines are buffered in memory and written in one
    ``write`` per ``buffer_bytes``, and on the terminal line, which also flushes the file (and
    closes it when a path was given). A path is opened (and truncated) at subscribe time, so each
    subscription writes its own cassette; an open file is written to and left open, for one
    subscription.

    .. marble::
        :alt: record
        -o-a-b-c-|
        [ record("run.jsonl") ]
        -o-a-b-c-|

    ``o`` the open chunk, ``a b c`` payloads: passed on as they are, each one line of the
    cassette; ``|`` writes the ``complete`` line and flushes.

    Args:
        path_or_file: where the cassette goes: a path, or a file open for writing (binary, or
            text when it is an ``io.TextIOBase``).
        timing: record arrival offsets (``False`` writes none: smaller, deterministic files
            for fixtures; they replay as fast as possible).
        buffer_bytes: write to the file whenever this many bytes of lines have built up.

    Errors:
        A path that cannot be opened fails the subscription with :class:`RxStreamError`
        before the source is subscribed (no request is sent); a write that fails (disk full, a
        closed file) fails the stream with :class:`RxStreamError` (cause attached) and disposes
        the source. An item that is not a ``ProviderChunk`` (``record()`` placed after
        ``normalize()``) fails the stream with :class:`RxStreamError`. Upstream errors are
        written to the cassette, then passed on unchanged.

    Raises:
        ValueError: at call time, for a target that is neither a path nor a writable file,
            a non-bool ``timing``, or ``buffer_bytes`` not an int >= 1.
    """
    if not isinstance(path_or_file, str | os.PathLike) and not callable(getattr(path_or_file, "write", None)):
        raise ValueError(f"record() expected a path or a file open for writing, got {path_or_file!r}")
    if not isinstance(timing, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"record(timing=...) expected a bool, got {timing!r}")
    if isinstance(buffer_bytes, bool) or not isinstance(buffer_bytes, int) or buffer_bytes < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"record(buffer_bytes=...) expected an int >= 1, got {buffer_bytes!r}")

    def operator(source: Observable[ProviderChunk]) -> Observable[ProviderChunk]:
        def subscribe(
            observer: abc.ObserverBase[ProviderChunk], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            try:
                writer = CassetteWriter(path_or_file, timing=timing, buffer_bytes=buffer_bytes)
            except RxStreamError as exc:
                observer.on_error(exc)
                return Disposable()
            # One lock orders the writer between the source's notifications and a dispose that
            # may come from another thread; downstream is always called outside it.
            lock = threading.Lock()
            stopped = False
            upstream = SingleAssignmentDisposable()

            def stop_with(error: RxStreamError) -> None:
                observer.on_error(error)
                upstream.dispose()

            def on_next(chunk: ProviderChunk) -> None:
                nonlocal stopped
                with lock:
                    if stopped:
                        return
                    try:
                        if not isinstance(chunk, ProviderChunk):  # pyright: ignore[reportUnnecessaryIsInstance]
                            raise RxStreamError(
                                "record() goes on the source, before normalize(): expected a "
                                f"ProviderChunk, got {type(chunk).__name__}"
                            )
                        writer.chunk(chunk)
                    except RxStreamError as exc:
                        stopped = True
                        writer.close()
                        failure = exc
                    else:
                        failure = None
                if failure is not None:
                    stop_with(failure)
                    return
                observer.on_next(chunk)

            def on_error(error: Exception) -> None:
                nonlocal stopped
                with lock:
                    if stopped:
                        return
                    stopped = True
                    try:
                        writer.fail(error)
                    except RxStreamError as exc:
                        error.add_note(f"and record() could not finish the cassette: {exc.message}")
                observer.on_error(error)

            def on_completed() -> None:
                nonlocal stopped
                with lock:
                    if stopped:
                        return
                    stopped = True
                    try:
                        writer.complete()
                    except RxStreamError as exc:
                        failure = exc
                    else:
                        failure = None
                if failure is not None:
                    observer.on_error(failure)
                    return
                observer.on_completed()

            def dispose() -> None:
                nonlocal stopped
                with lock:
                    was_stopped, stopped = stopped, True
                upstream.dispose()
                if not was_stopped:
                    # Nobody is listening any more: a failed write leaves a cassette cut short.
                    with lock, contextlib.suppress(RxStreamError):
                        writer.dispose()

            upstream.disposable = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler)
            return Disposable(dispose)

        return Observable[ProviderChunk](subscribe)

    return operator
