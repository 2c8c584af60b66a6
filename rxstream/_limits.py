"""Hard limits against bad input: one frozen ``Limits`` value, on by default, passed as ``limits=``.

A peer that never ends a line, a JSON value nested ten thousand deep or a tool call whose
arguments never close must end the stream with a clear :class:`~rxstream.LimitExceededError`,
never with memory growing until the process dies. Every decoder and operator that buffers
provider input checks one of these bounds as data accumulates (not after buffering it all), and
delivers everything it produced before the fault first.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from rxstream._errors import LimitExceededError

__all__ = ["DEFAULT_LIMITS", "Limits", "check_limits", "limit_exceeded"]

_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The bounds rxstream enforces on provider input. Every field has a default; raise one with
    ``Limits(max_sse_line_bytes=64 * 1024 * 1024)`` and pass it as ``limits=`` to the source
    (decoder limits), to ``normalize()`` (tool-call and output limits) or to ``parse_json()``
    (nesting).

    ============================ ======== ==============================================
    field                        default  what it bounds (where it is checked)
    ============================ ======== ==============================================
    ``max_sse_line_bytes``       16 MiB   one SSE line, until its line break (sources)
    ``max_sse_event_bytes``      16 MiB   all ``data:`` lines of one SSE event (sources)
    ``max_json_element_bytes``   16 MiB   one element of a Gemini JSON-array body, one
                                          line of a JSON Lines body (sources)
    ``max_json_depth``           128      objects/arrays nested in one JSON value
                                          (``parse_json()``, Gemini JSON-array elements)
    ``max_tool_arguments_bytes`` 16 MiB   the arguments of one tool call (``normalize()``)
    ``max_outputs``              128      outputs (choices / candidates) of one stream
                                          (``normalize()``)
    ``max_tool_calls``           1024     tool calls of one stream, all outputs together
                                          (``normalize()``)
    ============================ ======== ==============================================

    Sizes are counted in characters of the decoded text (bytes for ASCII, the usual case; a
    Python string stores at most 4 bytes per character). The SSE and element sizes default to
    16 MiB rather than less because providers send whole images base64-encoded in one line
    (Gemini ``inlineData``, Responses ``image_generation_call``). 128 levels of nesting is far
    beyond any real answer and keeps every ``json.*`` event serialisable: pydantic writes at
    most 255 levels and reads back at most 200 (so past about 200 an event can no longer go
    through a cassette), and a copy of the value recurses once per level. 128 outputs is
    OpenAI's largest ``n``.

    Raises:
        ValueError: A field that is not an integer >= 1.
    """

    max_sse_line_bytes: int = 16 * _MIB
    max_sse_event_bytes: int = 16 * _MIB
    max_json_element_bytes: int = 16 * _MIB
    max_json_depth: int = 128
    max_tool_arguments_bytes: int = 16 * _MIB
    max_outputs: int = 128
    max_tool_calls: int = 1024

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits({field.name}=...) expected an integer >= 1, got {value!r}")


DEFAULT_LIMITS = Limits()
"""The limits in force when ``limits=`` is not given."""


def check_limits(limits: object, owner: str) -> Limits:
    """``limits`` itself, or the defaults for ``None``; ``ValueError`` for anything else."""
    if limits is None:
        return DEFAULT_LIMITS
    if not isinstance(limits, Limits):
        raise ValueError(f"{owner}(limits=...) expected an rxstream.Limits or None, got {limits!r}")
    return limits


def limit_exceeded(limit: str, value: int, actual: int, what: str, expected: str) -> LimitExceededError:
    """The error for ``what`` crossing ``limit``: names the limit, what was expected, what
    arrived and how to raise it.

    Args:
        limit: The :class:`Limits` field (``"max_sse_line_bytes"``).
        value: Its configured bound.
        actual: What arrived (at least this much when the count stopped early).
        what: What crossed it, with its unit, as the message's subject
            (``"SSE line: got at least 1048577 characters without a line break"``).
        expected: What was expected (``"a line break within 1048576 characters"``).
    """
    return LimitExceededError(
        f"{what}; expected {expected} ({limit}={value}); raise the limit with "
        f"limits=rxstream.Limits({limit}=...)",
        limit=limit,
        value=value,
        actual=actual,
    )
