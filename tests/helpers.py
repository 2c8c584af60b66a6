"""Small helpers the test modules share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import reactivex

from rxstream._chunk import ProviderChunk
from rxstream._events import EventBase
from rxstream._result import ResultAccumulator, StreamResult
from rxstream.operators import normalize
from rxstream.sources import load_recording


def run_chunks(chunks: list[ProviderChunk], **options: Any) -> tuple[list[EventBase], Exception | None]:
    """Push chunks through normalize() synchronously; return the events and the error, if any."""
    events: list[EventBase] = []
    errors: list[Exception] = []
    reactivex.from_iterable(chunks).pipe(normalize(stream_id="t", **options)).subscribe(
        events.append, errors.append
    )
    return events, errors[0] if errors else None


def run_recording(path: Path, chunk_size: int | None = None, **options: Any) -> tuple[list[EventBase], Exception | None]:
    """Replay a recording through normalize() at a chunk size."""
    return run_chunks(load_recording(path, chunk_size=chunk_size), **options)


def accumulate(events: list[EventBase], error: Exception | None = None) -> StreamResult:
    """Fold events into a StreamResult, as collect() does."""
    acc = ResultAccumulator()
    for e in events:
        acc.feed(e)
    return acc.result(error=error)  # type: ignore[arg-type]
