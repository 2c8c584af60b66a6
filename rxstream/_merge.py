"""Merging consecutive delta events of one target into one: the core of coalescing and batching.

Two events are *mergeable* when they are adjacent deltas of the same kind and target, so that
folding them into one event changes nothing a :class:`~rxstream._result.ResultAccumulator` (or a
reader of the text) sees:

- ``text.delta``, ``refusal.delta``: same stream and output;
- ``reasoning.delta``: same stream and output, and the first carries no ``signature`` (a
  signature closes a thinking block, so what follows it belongs to the next block);
- ``tool_call.delta``: same stream, output, ``call_index`` and ``call_id``;
- and, for every kind, the same ``meta`` apart from a Responses ``sequence_number``: ``meta``
  says which provider block or item a delta belongs to (``block_index``, ``item_id``,
  ``summary_index``), and carries per-piece details (``logprobs``, a Gemini
  ``thought_signature``, ``raw``) that one merged event could not keep apart. Deltas whose
  ``meta`` differs otherwise stay separate, which is always correct, merely less compact.

The merged event keeps the first part's fields with the concatenated ``text`` /
``arguments_delta``, and takes the ``seq``, ``at`` and ``meta`` (hence ``sequence_number``) of
its last part (and, for reasoning, the last part's ``signature``), so ``seq`` still never
decreases along the stream. Nothing else is ever merged: ``json.partial`` values are not
concatenations, and every other kind is structure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar, cast

from rxstream._events import EventBase, ReasoningDelta, RefusalDelta, TextDelta, ToolCallDelta, make_event

__all__ = ["DELTA_TYPES", "DeltaMerger", "coalesce", "merge", "merge_run", "mergeable"]

DELTA_TYPES: frozenset[str] = frozenset(
    {"text.delta", "reasoning.delta", "refusal.delta", "tool_call.delta", "json.partial"}
)
"""Event kinds that are increments of content (every other kind is structure or a total)."""

E = TypeVar("E", bound=EventBase)

_COMMON = frozenset({"stream_id", "seq", "at", "meta", "type"})

_TEXT_KINDS = (TextDelta, RefusalDelta)


def _same_meta(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a is b or a == b:
        return True
    if "sequence_number" not in a and "sequence_number" not in b:
        return False
    return {k: v for k, v in a.items() if k != "sequence_number"} == {
        k: v for k, v in b.items() if k != "sequence_number"
    }


# Kind of each mergeable class, looked up by exact class: isinstance() against pydantic model
# classes goes through their metaclass's __instancecheck__, most of a merge check's cost.
_TEXT, _REASONING, _CALL = 1, 2, 3
_KINDS: dict[type[EventBase], int] = {
    TextDelta: _TEXT,
    RefusalDelta: _TEXT,
    ReasoningDelta: _REASONING,
    ToolCallDelta: _CALL,
}


def _kind(cls: type[EventBase]) -> int:
    kind = _KINDS.get(cls)
    if kind is None:
        # A user subclass of a delta merges like its base.
        kind = 0
        if issubclass(cls, _TEXT_KINDS):
            kind = _TEXT
        elif issubclass(cls, ReasoningDelta):
            kind = _REASONING
        elif issubclass(cls, ToolCallDelta):
            kind = _CALL
        _KINDS[cls] = kind
    return kind


def mergeable(a: EventBase, b: EventBase) -> bool:
    """Whether ``b``, arriving right after ``a``, can be folded into ``a`` (see the module doc)."""
    cls = a.__class__
    if cls is not b.__class__ or a.stream_id != b.stream_id:
        return False
    meta_a, meta_b = a.meta, b.meta
    if meta_a is not meta_b and meta_a != meta_b and not _same_meta(meta_a, meta_b):
        return False
    kind = _KINDS.get(cls)
    if kind is None:
        kind = _kind(cls)
    if kind == _TEXT:
        return cast(TextDelta, a).output == cast(TextDelta, b).output
    if kind == _REASONING:
        first, second = cast(ReasoningDelta, a), cast(ReasoningDelta, b)
        return first.output == second.output and first.signature is None
    if kind == _CALL:
        first_call, second_call = cast(ToolCallDelta, a), cast(ToolCallDelta, b)
        return (
            first_call.output == second_call.output
            and first_call.call_index == second_call.call_index
            and first_call.call_id == second_call.call_id
        )
    return False


def merge_run(run: Sequence[E]) -> E:
    """Fold a run of pairwise-mergeable events (each :func:`mergeable` with the next) into one.

    Joins the pieces once, so a run of n events costs O(total length), not O(n * length).
    A run of one event is returned as it is.

    Raises:
        ValueError: the run is empty.
    """
    if not run:
        raise ValueError("merge_run() needs at least one event, got an empty run")
    first = run[0]
    if len(run) == 1:
        return first
    last = run[-1]
    # Every field of the first part (including any a later model version adds), then the
    # joined content; make_event skips re-validating values that are already typed.
    fields: dict[str, Any] = {k: v for k, v in first.__dict__.items() if k not in _COMMON}
    if isinstance(first, ToolCallDelta):
        fields["arguments_delta"] = "".join(e.arguments_delta for e in cast("Sequence[ToolCallDelta]", run))
    else:
        texts = cast("Sequence[TextDelta | RefusalDelta | ReasoningDelta]", run)
        fields["text"] = "".join(e.text for e in texts)
        if isinstance(first, ReasoningDelta):
            fields["signature"] = cast(ReasoningDelta, last).signature
    return make_event(
        type(first), stream_id=first.stream_id, seq=last.seq, at=last.at, meta=last.meta, **fields
    )


def merge(a: E, b: E) -> E:
    """Fold ``b`` into ``a``; the caller has checked :func:`mergeable`.

    Raises:
        ValueError: the two events are not mergeable.
    """
    if not mergeable(a, b):
        raise ValueError(
            "merge() needs two adjacent deltas of one kind and target (see mergeable()), "
            f"got {a!r} then {b!r}"
        )
    return merge_run((a, b))


class DeltaMerger:
    """Pure core that merges runs of mergeable events: ``feed(event) -> list``, ``flush() -> list``.

    Emits every event in its original order; a run of mergeable deltas is held back until an
    event that cannot join it arrives (or ``flush()``), then emitted as one merged event.
    Holds at most one run.
    """

    __slots__ = ("_run",)

    def __init__(self) -> None:
        self._run: list[EventBase] = []

    @property
    def failure(self) -> None:
        """Merging cannot fail; present so the merger fits the operator lifting protocol."""
        return None

    @property
    def pending(self) -> int:
        """How many events the held run merges."""
        return len(self._run)

    def feed(self, event: EventBase) -> list[EventBase]:
        """Take one event; return what can no longer change."""
        run = self._run
        if run and mergeable(run[-1], event):
            run.append(event)
            return []
        out: list[EventBase] = []
        if run:
            out.append(merge_run(run))
            self._run = run = []
        if isinstance(event, (TextDelta, RefusalDelta, ReasoningDelta, ToolCallDelta)):
            run.append(event)
        else:
            out.append(event)
        return out

    def flush(self) -> list[EventBase]:
        """Emit the held run, merged."""
        run = self._run
        if not run:
            return []
        self._run = []
        return [merge_run(run)]


def coalesce(events: Iterable[E]) -> list[E]:
    """Merge every run of adjacent mergeable events in ``events``; keep everything else as is."""
    merger = DeltaMerger()
    out: list[E] = []
    for event in events:
        out.extend(merger.feed(event))  # pyright: ignore[reportArgumentType]
    out.extend(merger.flush())  # pyright: ignore[reportArgumentType]
    return out
