"""Typed, tolerant readers of provider payload values, shared by every wire's Normalizer.

Payloads are ``Any``; these return the value when it has the expected type and ``None``
otherwise, so a malformed field reads as absent instead of raising. ``value.__class__ is T`` is
used rather than ``isinstance``: decoded JSON holds exact builtins, it is faster on the per-chunk
path, and it keeps ``bool`` out of integers.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["as_dict", "as_int", "as_list", "as_str", "dumps_compact"]


def as_dict(value: Any) -> dict[str, Any] | None:
    """``value`` if it is a JSON object."""
    return value if value.__class__ is dict else None


def as_list(value: Any) -> list[Any] | None:
    """``value`` if it is a JSON array."""
    return value if value.__class__ is list else None


def as_str(value: Any) -> str | None:
    """``value`` if it is a string."""
    return value if value.__class__ is str else None


def as_int(value: Any) -> int | None:
    """``value`` if it is an integer (a float with an integral value, as some servers send
    token counts, counts too; booleans do not)."""
    if value.__class__ is int:
        return value
    if value.__class__ is float and value.is_integer():
        return int(value)
    return None


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps_compact(value: Any) -> str:
    """The one serialisation of an object a provider sent instead of argument text
    (ARCHITECTURE.md: ``json.dumps(obj, separators=(",", ":"), ensure_ascii=False)``)."""
    return _encode(value)
