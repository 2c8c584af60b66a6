"""Replay recorded provider streams (.sse, .jsonl, Gemini .json) as ProviderChunk observables."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.scheduler import CurrentThreadScheduler

from rxstream._chunk import ProviderChunk, StreamOpen, Wire, detect_wire
from rxstream._errors import ProtocolError, RxStreamError
from rxstream.sources._payloads import Framing, PayloadDecoder, framing_for_path

__all__ = ["from_bytes", "load_recording", "read_payloads", "replay"]


def read_payloads(
    body: bytes, framing: Framing, *, chunk_size: int | None = None
) -> list[tuple[str | None, Any]]:
    """Decode a whole body into (event name, payload) pairs, fed ``chunk_size`` bytes at a time."""
    decoder = PayloadDecoder(framing)
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


def load_recording(
    path: str | os.PathLike[str],
    *,
    chunk_size: int | None = None,
    wire: Wire | None = None,
    provider: str | None = None,
    request: dict[str, Any] | None = None,
) -> list[ProviderChunk]:
    """Read a recording into the chunks a source would emit: the open chunk, then payloads.

    ``at`` is the payload's ordinal (a raw recording has no timing). Raises
    :class:`ProtocolError` when the body is not its framing or the wire cannot be told.
    """
    name = str(path)
    try:
        body = Path(name).read_bytes()
    except OSError as exc:
        raise ProtocolError(f"cannot read recording {name}: {exc.strerror or exc}") from exc
    framing = framing_for_path(name)
    try:
        payloads = read_payloads(body, framing, chunk_size=chunk_size)
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


def replay(
    path: str | os.PathLike[str],
    *,
    wire: Wire | None = None,
    provider: str | None = None,
    request: dict[str, Any] | None = None,
    chunk_size: int | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Observable[ProviderChunk]:
    """A cold observable of a recorded stream's chunks: the open chunk, then one per payload.

    The file is read at subscribe time; a file that cannot be read or decoded terminates with
    :class:`ProtocolError` (or :class:`LimitExceededError`) through ``on_error``. Items are
    emitted on ``scheduler`` (default: the current thread, synchronously), ``at`` taken from its
    clock.

    Args:
        path: a ``.sse`` body, a ``.jsonl`` file of payloads, or a Gemini ``.json`` array body.
        wire: the wire format; sniffed from the payloads when omitted.
        provider: who recorded it, for ``stream.start``.
        request: the request the recording answered, when known.
        chunk_size: feed the decoder this many bytes at a time (tests use 1 and 7).
        scheduler: where to emit.
    """

    def subscribe(observer: abc.ObserverBase[ProviderChunk], sched: abc.SchedulerBase | None = None) -> abc.DisposableBase:
        run_on = scheduler or sched or CurrentThreadScheduler.singleton()
        cancelled = False

        def action(_: abc.SchedulerBase, __: Any = None) -> None:
            try:
                chunks = load_recording(path, chunk_size=chunk_size, wire=wire, provider=provider, request=request)
            except RxStreamError as exc:
                observer.on_error(exc)
                return
            now = run_on.now
            stamp = int(now.timestamp() * 1e9) if hasattr(now, "timestamp") else 0
            for chunk in chunks:
                if cancelled:
                    return
                chunk.at = stamp
                observer.on_next(chunk)
            if not cancelled:
                observer.on_completed()

        inner = run_on.schedule(action)

        def dispose() -> None:
            nonlocal cancelled
            cancelled = True
            inner.dispose()

        return Disposable(dispose)

    return reactivex.create(subscribe)


def from_bytes(
    body: Iterable[bytes],
    *,
    framing: Framing = "sse",
    wire: Wire | None = None,
    provider: str | None = None,
    request: dict[str, Any] | None = None,
) -> Observable[ProviderChunk]:
    """A cold observable over body bytes already in hand (or produced by an iterable, one read
    at a time): the open chunk, then one chunk per decoded payload, ``at`` from the monotonic
    clock at each read.

    Emits synchronously on subscribe. With ``wire=None`` the chunks carry no wire and
    ``normalize()`` detects it.

    Errors:
        :class:`ProtocolError` / :class:`LimitExceededError` from the decoder, after every
        payload decoded before the fault.
    """

    def subscribe(observer: abc.ObserverBase[ProviderChunk], _: abc.SchedulerBase | None = None) -> abc.DisposableBase:
        decoder = PayloadDecoder(framing)
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
