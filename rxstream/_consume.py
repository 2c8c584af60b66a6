"""Bridges from an event observable to asyncio code: collect()."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from reactivex import Observable

from rxstream._errors import RxStreamError
from rxstream._result import ResultAccumulator, StreamResult

__all__ = ["collect"]


async def collect(source: Observable[Any]) -> StreamResult:
    """Subscribe, accumulate every event, and return the :class:`StreamResult`.

    Cancelling the awaiting task disposes the subscription (a live source then closes its
    response).

    Errors:
        The stream's :class:`RxStreamError`, with ``.partial`` set to the result accumulated
        before the fault. Other exceptions (a bug in a user callback upstream) are raised as
        they are.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    accumulator = ResultAccumulator()
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
    return accumulator.result()
