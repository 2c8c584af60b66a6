"""The one audited helper that lifts a pure ``feed()/flush()`` core into an Rx operator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import reactivex
from reactivex import Observable, abc

from rxstream._errors import RxStreamError

__all__ = ["Core", "lift"]

A = TypeVar("A")
B = TypeVar("B")
A_contra = TypeVar("A_contra", contravariant=True)


class Core(Protocol[A_contra, B]):
    """A pure per-subscription state machine.

    ``feed`` and ``flush`` return what to emit. A core that fails sets ``failure`` after
    returning the items produced before the fault (so nothing is lost); a core that raises is
    reported through ``on_error`` as well, wrapped when the exception is not an
    :class:`RxStreamError`. A core may also have ``abort(error) -> list``: called when upstream
    fails, its items go out just before the error (``aggregate_usage()`` reports what a failed
    stream spent).
    """

    @property
    def failure(self) -> RxStreamError | None: ...

    def feed(self, item: A_contra, /) -> list[B]: ...

    def flush(self) -> list[B]: ...


def lift(
    make_core: Callable[[], Core[A, B]],
    *,
    wrap_error: Callable[[Exception], Exception] | None = None,
) -> Callable[[Observable[A]], Observable[B]]:
    """Turn a core factory into an operator; one core per subscription.

    Grammar: items of ``feed`` are emitted in order; on upstream completion ``flush``'s items,
    then ``on_completed`` (or ``on_error`` if the core failed); upstream errors pass unchanged;
    nothing is emitted after a terminal notification, even by a synchronous source that keeps
    calling.
    """

    def operator(source: Observable[A]) -> Observable[B]:
        def subscribe(observer: abc.ObserverBase[B], scheduler: abc.SchedulerBase | None = None) -> abc.DisposableBase:
            try:
                core = make_core()
            except Exception as exc:  # noqa: BLE001 - reported, not raised, per Rx grammar
                observer.on_error(exc)
                return reactivex.empty().subscribe()
            stopped = False
            # A core that may hand over to another (normalize() to the wire's Normalizer) has a
            # `delegate` attribute; for any other the per-item look-up (a raised and caught
            # AttributeError each time) is skipped.
            resolved = not hasattr(core, "delegate")
            emit = observer.on_next

            def fail(exc: Exception) -> None:
                nonlocal stopped
                stopped = True
                if wrap_error is not None and not isinstance(exc, RxStreamError):
                    exc = wrap_error(exc)
                observer.on_error(exc)

            def on_next(item: A) -> None:
                nonlocal core, resolved
                if stopped:
                    return
                try:
                    out = core.feed(item)
                except Exception as exc:  # noqa: BLE001
                    fail(exc)
                    return
                for value in out:
                    emit(value)
                if not resolved:
                    # A core may hand over to another once it knows more (normalize() to the
                    # wire's Normalizer): talk to that one directly from now on.
                    delegate = getattr(core, "delegate", None)
                    if delegate is not None:
                        core = delegate
                        resolved = True
                failure = core.failure
                if failure is not None:
                    fail(failure)

            def on_error(exc: Exception) -> None:
                nonlocal stopped
                if stopped:
                    return
                stopped = True
                abort: Callable[[Exception], list[B]] | None = getattr(core, "abort", None)
                if abort is not None:
                    try:
                        out = abort(exc)
                    except Exception as inner:  # noqa: BLE001 - the upstream error is the one to report
                        exc.add_note(f"and the operator's abort() raised {type(inner).__name__}: {inner}")
                        out = []
                    for value in out:
                        emit(value)
                observer.on_error(exc)

            def on_completed() -> None:
                nonlocal stopped
                if stopped:
                    return
                try:
                    out = core.flush()
                except Exception as exc:  # noqa: BLE001
                    fail(exc)
                    return
                for value in out:
                    emit(value)
                failure = core.failure
                if failure is not None:
                    fail(failure)
                    return
                stopped = True
                observer.on_completed()

            return source.subscribe(on_next, on_error, on_completed, scheduler=scheduler)

        return Observable[B](subscribe)

    return operator


