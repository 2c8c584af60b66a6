"""Scheduler clocks as integer nanoseconds: the one conversion sources and operators share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["stamp_ns"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)  # some schedulers' clocks are naive UTC
_MICROSECOND = timedelta(microseconds=1)


def stamp_ns(now: datetime) -> int:
    """ns since the epoch of a scheduler's clock, exact to its microsecond."""
    epoch = _EPOCH if now.tzinfo is not None else _NAIVE_EPOCH
    return (now - epoch) // _MICROSECOND * 1000
