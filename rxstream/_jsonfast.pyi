"""Types of the C extension ``rxstream._jsonfast`` (see ``_jsonfast.c``)."""

from collections.abc import Callable
from typing import Any

class Fallback(Exception):
    """Raised for text the C parser does not take; the caller replays it into the Python parser."""

class Parser:
    """An incremental JSON document: ``feed`` returns report tuples of ``report_type`` or None.

    On what it does not take, ``feed`` returns ``on_fallback(parser, text)``, which sets
    ``delegate``; later fragments go to ``delegate.feed``. ``finish`` raises :class:`Fallback`.
    """

    delegate: Any
    def __init__(
        self, report_type: type[tuple[Any, ...]], max_depth: int, on_fallback: Callable[[Parser, str], Any]
    ) -> None: ...
    def feed(self, text: str, /) -> Any: ...
    def finish(self) -> Any: ...
    def snapshot(self) -> Any: ...
    @property
    def value(self) -> Any: ...
    @property
    def count(self) -> int: ...
    @property
    def truncated(self) -> bool: ...
    @property
    def texts(self) -> list[str]: ...
    @property
    def max_depth(self) -> int: ...
