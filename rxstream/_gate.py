"""Backpressure from a slow consumer to a live source: the source awaits the gate between reads.

``aiter(..., overflow="block")`` creates a :class:`ReadGate` and sets :data:`CURRENT_GATE` around
``subscribe``; a live source reads the variable at subscribe time and awaits ``gate.wait()``
before each read of the HTTP body, so nothing more is read while the consumer is behind.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

__all__ = ["CURRENT_GATE", "ReadGate"]


class ReadGate:
    """Open or closed; ``wait()`` returns at once while open and blocks while closed.

    Bound to the running event loop; every method must be called from that loop's thread.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._event.set()

    @property
    def is_open(self) -> bool:
        """Whether a source may read now."""
        return self._event.is_set()

    def open(self) -> None:
        """Let the source read again."""
        self._event.set()

    def close(self) -> None:
        """Hold the source before its next read."""
        self._event.clear()

    async def wait(self) -> None:
        """Return when the gate is open."""
        if not self._event.is_set():
            await self._event.wait()


CURRENT_GATE: ContextVar[ReadGate | None] = ContextVar("rxstream_read_gate", default=None)
"""The gate of the subscription being made, read by live sources at subscribe time."""
