"""tap_metrics(): per-stream timing from the events' own arrival stamps, handed to metrics sinks.

The measurement is a pure function of the events (their ``at`` stamps, ``seq`` and type), so a
cassette replayed in virtual time yields exactly the metrics of the recorded run. Sinks receive
one :class:`StreamMetrics` per stream when it ends (completed, failed or cancelled): the per-chunk
path only counts and appends one gap.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from threading import Lock
from typing import Any, Literal, Protocol, cast, runtime_checkable

from reactivex import Observable, abc

from rxstream._clock import stamp_ns
from rxstream._events import CONTENT_TYPES, Event, Metrics, StreamStart, UsageSource, make_event

__all__ = [
    "DURATION_BUCKETS",
    "TOKEN_BUCKETS",
    "Histogram",
    "InMemoryMetrics",
    "MetricsSink",
    "Outcome",
    "StreamMetrics",
    "format_metrics",
    "metrics_rows",
    "tap_metrics",
]

_log = logging.getLogger("rxstream.metrics")

Outcome = Literal["completed", "error", "cancelled"]

# The OpenTelemetry GenAI conventions' advisory bucket boundaries: every client time metric
# (duration, time to first chunk, time per output chunk) in seconds; token counts.
DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
TOKEN_BUCKETS: tuple[float, ...] = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)



def _no_gaps() -> list[float]:
    return []  # a factory that is list[float] itself would try (and fail) to tag the list it made


def _rank(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of a sorted sequence: always a value that was observed."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class _GapOrder:
    """Where a record keeps its gaps sorted: a slot outside the dataclass fields, so it is not
    compared, shown, copied by ``replace()`` or put in ``asdict()``."""

    __slots__ = ("_sorted",)

    _sorted: tuple[list[float], tuple[float, ...]] | None  # (the gaps list sorted, its sorted copy)


@dataclass(slots=True)
class StreamMetrics(_GapOrder):
    """What ``tap_metrics()`` measured of one stream; times in seconds.

    Marks are offsets from ``origin_at`` (ns on the source's clock): the moment the request was
    sent, or the first mark the source has when it did not record that (``origin`` says which).

    Attributes:
        ttfb: response headers arrived (time to first byte; ``None`` without a request mark).
        first_event: the first provider payload arrived, whatever it carried (a Responses
            ``response.created``, an Anthropic ``message_start``).
        ttft: the first content (text, reasoning, refusal or tool call): the time to first
            token users mean.
        first_text: the first answer text.
        duration: to the last event (``stream.end``, or the last before an error or a cancel).
        events: events seen; ``chunks``: content chunks (a provider message whose content spans
            several events counts once).
        gaps: the gaps between consecutive content chunks, in arrival order.
        input_tokens, output_tokens, cache_*, reasoning_tokens: from the last ``usage`` event,
            ``usage_source`` saying whose count.
        tokens_per_s / chunks_per_s: over the generation window, first to last content.
        finish_reasons: each output's ``finish.reason`` (the provider's word when unmapped).
        restarts: ``stream.restart`` events seen (``retry(after_content="restart")``): marks stay
            measured from the first attempt's request, as the consumer waited.
        outcome: ``completed``, ``error`` or ``cancelled`` (the consumer disposed first).
        error_type: the error's class name, for ``error``.
    """

    stream_id: str | None = None
    provider: str | None = None
    wire: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    server_address: str | None = None
    server_port: int | None = None
    origin_at: int | None = None
    origin: Literal["request", "headers", "first_event"] = "request"
    ttfb: float | None = None
    first_event: float | None = None
    ttft: float | None = None
    first_text: float | None = None
    duration: float | None = None
    events: int = 0
    chunks: int = 0
    gaps: list[float] = field(default_factory=_no_gaps)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_write_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    usage_source: UsageSource | None = None
    tokens_per_s: float | None = None
    chunks_per_s: float | None = None
    finish_reasons: tuple[str, ...] = ()
    restarts: int = 0
    outcome: Outcome = "completed"
    error_type: str | None = None

    def sorted_gaps(self) -> tuple[float, ...]:
        """The gaps in ascending order, sorted once for every sink and :meth:`gap_stats`.

        The sorted copy is kept while ``gaps`` is the same list of the same length: replace the
        list rather than edit its values in place after it was sorted. (A tuple: the garbage
        collector stops tracing a tuple of floats, while it walks a kept list at each collection.)
        """
        gaps = self.gaps
        try:
            cached = self._sorted
        except AttributeError:  # built by StreamMetrics(...), copied or unpickled: not sorted yet
            cached = None
        if cached is not None and cached[0] is gaps and len(cached[1]) == len(gaps):
            return cached[1]
        ordered = tuple(sorted(gaps))
        self._sorted = (gaps, ordered)
        return ordered

    def gap_stats(self) -> dict[str, float | None]:
        """``min``, ``p50``, ``p90``, ``p99``, ``max`` (nearest rank) and ``mean`` of the gaps."""
        gaps = self.sorted_gaps()
        if not gaps:
            return dict.fromkeys(("min", "p50", "p90", "p99", "max", "mean"))
        return {
            "min": gaps[0],
            "p50": _rank(gaps, 0.5),
            "p90": _rank(gaps, 0.9),
            "p99": _rank(gaps, 0.99),
            "max": gaps[-1],
            "mean": math.fsum(gaps) / len(gaps),
        }

    def to_event(self, stream_id: str, seq: int, at: int) -> Metrics:
        """The ``metrics`` event carrying these figures."""
        fields = {name: getattr(self, name) for name in _EVENT_FIELDS}
        fields.update({f"gap_{name}": value for name, value in self.gap_stats().items()})
        return make_event(Metrics, stream_id=stream_id, seq=seq, at=at, gap_count=len(self.gaps), **fields)


# StreamMetrics fields the metrics event carries as they are (the gap figures are summarised).
_EVENT_FIELDS = (
    "ttfb", "first_event", "ttft", "first_text", "duration", "events", "chunks", "output_tokens",
    "usage_source", "tokens_per_s", "chunks_per_s", "finish_reasons", "restarts",
)


@runtime_checkable
class MetricsSink(Protocol):
    """Where ``tap_metrics()`` sends each finished stream's :class:`StreamMetrics`.

    ``record`` is called once per stream, on the thread that delivered its last event; it should
    be quick (hand heavy work to a queue).
    """

    def record(self, metrics: StreamMetrics, /) -> None: ...


class Histogram:
    """Cumulative-bucket histogram with fixed boundaries (Prometheus / OpenTelemetry style)."""

    __slots__ = ("boundaries", "count", "counts", "sum")

    def __init__(self, boundaries: Sequence[float]) -> None:
        self.boundaries = tuple(boundaries)
        self.counts = [0] * (len(self.boundaries) + 1)  # the last bucket is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one value in the first bucket whose upper bound is at least ``value``."""
        self.counts[bisect_left(self.boundaries, value)] += 1
        self.count += 1
        self.sum += value

    def observe_many(self, values: Sequence[float]) -> None:
        """Count many values at once (C loops: a stream's gaps cost little per gap)."""
        if not values:
            return
        counts = self.counts
        for index, n in Counter(map(partial(bisect_left, self.boundaries), values)).items():
            counts[index] += n
        self.count += len(values)
        self.sum += math.fsum(values)

    def observe_sorted(self, values: Sequence[float]) -> None:
        """``observe_many`` for values in ascending order (no NaN): the same counts and sum, with
        one bisection per bucket the values span instead of one per value."""
        n = len(values)
        if not n:
            return
        boundaries = self.boundaries
        counts = self.counts
        index = bisect_left(boundaries, values[0])  # the smallest value's bucket
        last = bisect_left(boundaries, values[-1])  # the largest's
        below = 0  # values counted so far: those at most the previous bound
        while index < last:
            upto = bisect_right(values, boundaries[index], below)
            counts[index] += upto - below
            below = upto
            index += 1
        counts[last] += n - below
        self.count += n
        self.sum += math.fsum(values)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, count of values at most that)`` per bucket, ``inf`` last."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.boundaries, math.inf), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class InMemoryMetrics:
    """A sink that keeps the last ``max_streams`` records and histograms over every stream.

    Histograms (``histograms[name]``) use the OpenTelemetry GenAI advisory boundaries:
    ``duration``, ``ttft``, ``gap`` (one value per gap), ``output_tokens`` and ``tokens_per_s``
    (with duration buckets scaled by 100). Memory is bounded by ``max_streams`` whatever the
    number of streams seen; ``streams`` and ``errors`` count them all.
    """

    def __init__(self, *, max_streams: int = 1000) -> None:
        if max_streams < 1:
            raise ValueError(f"InMemoryMetrics(max_streams=...) expected a positive count, got {max_streams!r}")
        self.records: deque[StreamMetrics] = deque(maxlen=max_streams)
        self.streams = 0
        self.errors = 0
        self.histograms: dict[str, Histogram] = {
            "duration": Histogram(DURATION_BUCKETS),
            "ttft": Histogram(DURATION_BUCKETS),
            "gap": Histogram(DURATION_BUCKETS),
            "output_tokens": Histogram(TOKEN_BUCKETS),
            "tokens_per_s": Histogram(tuple(b * 100 for b in DURATION_BUCKETS)),
        }

    def record(self, metrics: StreamMetrics, /) -> None:
        """Keep one stream's metrics."""
        self.records.append(metrics)
        self.streams += 1
        if metrics.outcome == "error":
            self.errors += 1
        h = self.histograms
        if metrics.duration is not None:
            h["duration"].observe(metrics.duration)
        if metrics.ttft is not None:
            h["ttft"].observe(metrics.ttft)
        if metrics.gaps:
            h["gap"].observe_sorted(metrics.sorted_gaps())
        if metrics.output_tokens is not None:
            h["output_tokens"].observe(metrics.output_tokens)
        if metrics.tokens_per_s is not None:
            h["tokens_per_s"].observe(metrics.tokens_per_s)

    def summary(self) -> str:
        """A text table of the kept streams per provider and model (percentiles nearest-rank)."""
        groups: dict[tuple[str, str], list[StreamMetrics]] = {}
        for m in self.records:
            key = (m.provider or "?", m.response_model or m.request_model or "?")
            groups.setdefault(key, []).append(m)
        header = ("provider", "model", "streams", "errors", "ttft p50", "ttft p90", "gap p50", "gap p99", "tok/s p50")
        rows: list[tuple[str, ...]] = []
        for (provider, model), items in sorted(groups.items()):
            ttft = sorted(m.ttft for m in items if m.ttft is not None)
            gaps = sorted(g for m in items for g in m.gaps)
            speed = sorted(m.tokens_per_s for m in items if m.tokens_per_s is not None)
            rows.append(
                (
                    provider,
                    model,
                    str(len(items)),
                    str(sum(m.outcome == "error" for m in items)),
                    _ms(_rank(ttft, 0.5) if ttft else None),
                    _ms(_rank(ttft, 0.9) if ttft else None),
                    _ms(_rank(gaps, 0.5) if gaps else None),
                    _ms(_rank(gaps, 0.99) if gaps else None),
                    f"{_rank(speed, 0.5):.1f}" if speed else "-",
                )
            )
        note = f"{self.streams} stream(s) seen, {self.errors} failed; the table covers the last {len(self.records)}"
        return _table(header, rows) + "\n" + note


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return "\n".join(lines)


def metrics_rows(metrics: StreamMetrics) -> list[tuple[str, str]]:
    """One stream's metrics as ``(label, value)`` rows: what ``format_metrics`` and the report show."""
    stats = metrics.gap_stats()
    tokens = "-"
    if metrics.output_tokens is not None:
        tokens = f"{metrics.output_tokens} ({metrics.usage_source or 'unknown'})"
    rows = [
        ("time to first byte", _ms(metrics.ttfb)),
        ("first provider event", _ms(metrics.first_event)),
        ("time to first token", _ms(metrics.ttft)),
        ("first text", _ms(metrics.first_text)),
        ("duration", _ms(metrics.duration)),
        ("events / content chunks", f"{metrics.events} / {metrics.chunks}"),
        (
            "inter-chunk gap",
            f"p50 {_ms(stats['p50'])}, p90 {_ms(stats['p90'])}, p99 {_ms(stats['p99'])}, max {_ms(stats['max'])}",
        ),
        ("output tokens", tokens),
        ("tokens/s", "-" if metrics.tokens_per_s is None else f"{metrics.tokens_per_s:.1f}"),
        ("chunks/s", "-" if metrics.chunks_per_s is None else f"{metrics.chunks_per_s:.1f}"),
        ("outcome", metrics.outcome + (f" ({metrics.error_type})" if metrics.error_type else "")),
    ]
    if metrics.finish_reasons:
        rows.append(("finish", ", ".join(metrics.finish_reasons)))
    return rows


ORIGIN_NAMES: dict[str, str] = {"request": "request sent", "headers": "headers", "first_event": "first event"}


def format_metrics(metrics: StreamMetrics) -> str:
    """One stream's metrics as a two-column text table (what ``rxstream demo`` prints)."""
    return _table((f"metric (from {ORIGIN_NAMES[metrics.origin]})", "value"), metrics_rows(metrics))


class _Tracker:
    """One stream's measurement between events (the current stream's hot counters are the tap's)."""

    __slots__ = (
        "events",
        "finishes",
        "first_stamp",
        "first_text",
        "gaps",
        "last_ev",
        "last_seq",
        "last_stamp",
        "restarts",
        "start",
        "stream_id",
        "usage",
    )

    def __init__(self, stream_id: str | None = None) -> None:
        self.events = 0  # events seen that were not content chunks (each of those is stamped)
        # Content chunks' arrivals (ns): the first, the last, and each gap (s) as it comes, so
        # that the end of a stream has no per-chunk work left but sorting for percentiles.
        self.first_stamp: int | None = None
        self.last_stamp: int | None = None
        self.gaps: list[float] = []
        self.first_text: int | None = None
        self.last_seq = -1
        self.last_ev: Any = None
        self.start: StreamStart | None = None
        self.stream_id = stream_id
        self.usage: Any = None
        self.finishes: list[str] = []
        self.restarts = 0

    def result(self, outcome: Outcome, error: Exception | None, end_at: int | None) -> StreamMetrics:
        first = self.first_stamp
        last = self.last_stamp
        chunks = 0 if first is None else len(self.gaps) + 1
        m = StreamMetrics(stream_id=self.stream_id, events=self.events + chunks, chunks=chunks, outcome=outcome)
        if error is not None:
            m.error_type = type(error).__name__
        origin: int | None = None
        start = self.start
        if start is not None:
            m.provider = start.provider
            m.wire = start.wire
            request = start.request
            model = request.get("model") if request is not None else None
            m.request_model = model if isinstance(model, str) else None
            m.response_model = start.model
            m.server_address = start.server_address
            m.server_port = start.server_port
            if start.request_sent_at is not None:
                origin = start.request_sent_at
                m.ttfb = (start.at - origin) / 1e9
            else:
                origin = start.at
                m.origin = "first_event" if start.first_event_at in (None, start.at) else "headers"
            if start.first_event_at is not None:
                m.first_event = (start.first_event_at - origin) / 1e9
        # The last event seen: content chunks are only stamped, other events kept.
        last_at: int | None = self.last_ev.at if self.last_ev is not None else None
        if last is not None and (last_at is None or last > last_at):
            last_at = last
        if origin is None:
            origin = first if first is not None else last_at
            m.origin = "first_event"
        m.origin_at = origin
        if origin is None:  # no event, or only empty reasoning deltas: nothing to measure from
            return m
        if first is not None:
            m.ttft = (first - origin) / 1e9
        if self.first_text is not None:
            m.first_text = (self.first_text - origin) / 1e9
        end = end_at if end_at is not None else last_at
        if end is not None:
            m.duration = (end - origin) / 1e9
        m.gaps = self.gaps  # the tracker ends with this record
        window = 0.0 if first is None or last is None else (last - first) / 1e9
        if window > 0:
            m.chunks_per_s = (chunks - 1) / window
        usage = self.usage
        if usage is not None:
            m.input_tokens = usage.input_tokens
            m.output_tokens = usage.output_tokens
            m.cache_read_input_tokens = usage.cache_read_input_tokens
            m.cache_write_input_tokens = usage.cache_write_input_tokens
            m.reasoning_tokens = usage.reasoning_tokens
            m.usage_source = usage.source
            if window > 0 and usage.output_tokens is not None:
                m.tokens_per_s = usage.output_tokens / window
        m.finish_reasons = tuple(self.finishes)
        m.restarts = self.restarts
        return m


_NOBODY = _Tracker()

SinkArg = MetricsSink | Iterable[MetricsSink] | None


def _sinks(sink: SinkArg) -> tuple[MetricsSink, ...]:
    if sink is None:
        return ()
    given: Any = sink  # checked here: callers may pass anything
    if callable(getattr(given, "record", None)):
        return (given,)
    if not isinstance(given, Iterable):
        return _checked((given,))
    return _checked(tuple(cast("Iterable[Any]", given)))


def _checked(candidates: tuple[Any, ...]) -> tuple[MetricsSink, ...]:
    for candidate in candidates:
        if not callable(getattr(candidate, "record", None)):
            raise TypeError(
                f"tap_metrics() expected a metrics sink (an object with record(metrics)) or a list of them, "
                f"got {type(candidate).__name__}"
            )
    return candidates


class _Tap(abc.ObserverBase[Any], abc.DisposableBase):
    """One subscription of ``tap_metrics()``: the observer it subscribes upstream with and the
    disposable it returns downstream, in one object.

    One object rather than a dozen closures, a ``SingleAssignmentDisposable`` and a
    ``Disposable`` (each of those with its own ``RLock``): ``detach()`` and ``attach()`` give the
    same dispose-before-assignment guarantee without them. One tracker per stream_id: a merge of
    several streams is measured stream by stream. The current stream's hot counters live in this
    object, one attribute read away rather than two; they go back to its tracker when another
    stream's event arrives or a stream is recorded.
    """

    __slots__ = (
        "cur",
        "current_id",
        "detached",
        "disposed",
        "emit",
        "events",
        "gaps",
        "last_ev",
        "last_seq",
        "last_stamp",
        "now",
        "observer",
        "sinks",
        "stopped",
        "trackers",
        "upstream",
        "want_text",
    )

    def __init__(
        self,
        observer: abc.ObserverBase[Event],
        sinks: tuple[MetricsSink, ...],
        emit: bool,
        now: Callable[[], int] | None,
    ) -> None:
        self.observer = observer
        self.sinks = sinks
        self.emit = emit
        self.now = now
        self.trackers: dict[str, _Tracker] = {}
        self.cur = _NOBODY  # replaced at the first event; never written to
        self.current_id: Any = None
        self.events = 0
        self.last_seq = -1
        self.last_ev: Any = None
        self.want_text = True
        self.gaps = _NOBODY.gaps
        self.last_stamp: int | None = None
        self.stopped = False
        # The upstream subscription, and whether it is to be disposed (by a dispose() or a failing
        # sink) even before source.subscribe() returned it (a synchronous source).
        self.upstream: abc.DisposableBase | None = None
        self.detached = False
        # Taken by the first dispose(): one cancel record even when two threads dispose at once.
        self.disposed = Lock()

    def attach(self, source: Observable[Event], scheduler: abc.SchedulerBase | None) -> _Tap:
        subscription = source.subscribe(self, scheduler=scheduler)
        self.upstream = subscription
        if self.detached:  # disposed, or a sink failed, while subscribing
            self.detach()
        return self

    def on_next(self, value: Any) -> None:
        if self.stopped:
            return
        d = value.__dict__
        if d["stream_id"] is not self.current_id:
            self.switch(d["stream_id"])
        kind = d["type"]
        if kind in CONTENT_TYPES:
            seq = d["seq"]
            if seq != self.last_seq and (kind != "reasoning.delta" or d["text"]):
                at = d["at"]  # a new chunk: its gap from the previous one, in seconds
                last = self.last_stamp
                if last is not None:
                    self.gaps.append((at - last) / 1e9)
                else:
                    self.cur.first_stamp = at
                self.last_stamp = at
                self.last_seq = seq
            else:
                self.events += 1  # counted here only: each stamped chunk is counted by its gap
            if self.want_text and kind == "text.delta":
                self.cur.first_text = d["at"]
                self.want_text = False
            self.observer.on_next(value)
            return
        self.events += 1
        self.last_ev = value
        cur = self.cur
        if kind == "usage":
            cur.usage = value
        elif kind == "finish":
            cur.finishes.append(d["reason"] or d["raw_reason"] or "unknown")
        elif kind == "stream.start":
            # After a retry's stream.restart the new attempt's start keeps the first one's
            # origin: the consumer waited for both.
            if cur.start is None:
                cur.start = value
        elif kind == "stream.restart":
            cur.restarts += 1
            self.last_seq = -1  # the new attempt numbers its messages from the start again
        elif kind == "stream.end":
            self.save()
            t = self.trackers.pop(self.current_id)
            self.current_id = None
            if not self.end(t, value):
                return
        self.observer.on_next(value)

    def save(self) -> None:
        cur = self.cur
        cur.events = self.events
        cur.last_seq = self.last_seq
        cur.last_ev = self.last_ev
        cur.last_stamp = self.last_stamp

    def switch(self, sid: str) -> None:
        self.flush_current()
        t = self.trackers.get(sid)
        if t is None:
            t = self.trackers[sid] = _Tracker(sid)
        self.cur = t
        self.current_id = sid
        self.events = t.events
        self.last_seq = t.last_seq
        self.last_ev = t.last_ev
        self.last_stamp = t.last_stamp
        self.gaps = t.gaps
        self.want_text = t.first_text is None

    def flush_current(self) -> None:
        if self.current_id is not None:
            self.save()

    def detach(self) -> None:
        # Set the flag, then read the subscription (attach() does the converse): whichever runs
        # last disposes it, and a second dispose of a reactivex subscription does nothing.
        self.detached = True
        upstream = self.upstream
        if upstream is not None:
            self.upstream = None
            upstream.dispose()

    def fail(self, exc: Exception) -> None:
        self.stopped = True
        self.detach()
        self.observer.on_error(exc)

    def end(self, t: _Tracker, ev: Any) -> bool:
        """Record a stream that completed; emit its metrics event. False if a sink failed."""
        m = t.result("completed", None, ev.at if ev is not None else None)
        try:
            for s in self.sinks:
                s.record(m)
        except Exception as exc:  # noqa: BLE001 - a user's sink, reported per Rx grammar
            self.fail(exc)
            return False
        if self.emit:
            if ev is not None:
                self.observer.on_next(m.to_event(ev.stream_id, ev.seq, ev.at))
            elif t.stream_id is not None and (t.last_ev is not None or t.last_stamp is not None):
                # After the stream's last event: content is only stamped, not kept.
                seq = max(t.last_seq, t.last_ev.seq if t.last_ev is not None else 0)
                at = max(t.last_stamp or 0, t.last_ev.at if t.last_ev is not None else 0)
                self.observer.on_next(m.to_event(t.stream_id, seq, at))
        return True

    def on_error(self, error: Exception) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.flush_current()
        at = self.now() if self.now is not None else None
        # A failure before any event (an HTTP 429, a refused connection) is a stream too.
        trackers = self.trackers
        for t in trackers.values() if trackers else (_Tracker(),):
            try:
                m = t.result("error", error, at)
                for s in self.sinks:
                    s.record(m)
            except Exception as exc:  # noqa: BLE001 - the upstream error is what the consumer needs
                error.add_note(f"tap_metrics: a sink failed recording this error: {type(exc).__name__}: {exc}")
        trackers.clear()
        self.observer.on_error(error)

    def on_completed(self) -> None:
        if self.stopped:
            return
        self.flush_current()
        trackers = self.trackers
        if trackers:
            for t in list(trackers.values()):
                if not self.end(t, None):
                    return
            trackers.clear()
        self.stopped = True
        self.observer.on_completed()

    def cancel(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.flush_current()
        at = self.now() if self.now is not None else None
        for t in self.trackers.values():
            try:
                m = t.result("cancelled", None, at)
                for s in self.sinks:
                    s.record(m)
            except Exception:  # noqa: BLE001 - nobody left to tell but the log
                _log.exception("tap_metrics: a sink failed recording a cancelled stream")
        self.trackers.clear()

    def dispose(self) -> None:
        if not self.disposed.acquire(False):
            return
        self.cancel()
        self.detach()


def tap_metrics(
    sink: SinkArg = None,
    /,
    *,
    emit: bool = False,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[Event]], Observable[Event]]:
    """Measure each stream as it passes (events unchanged) and hand the figures to sinks.

    Everything is read from the events' own arrival stamps: ``stream.start``'s marks (request
    sent, headers, first provider event), the first content event (text, reasoning, refusal or a
    tool call: a ``response.created`` or ``message_start`` is not content, so time to first token
    is never the time to a metadata event), the first text, the gaps between consecutive content
    chunks, the last ``usage`` and each ``finish``. Place it *before* ``batch()`` / ``smooth()``
    (it measures what arrived, not the re-paced output) and after ``aggregate_usage()`` (so
    tokens per second has a count when the provider sent none). With ``retry()``: before it,
    each attempt is measured as its own stream (failed attempts recorded as errors); after it,
    what the consumer saw (one stream, ``restarts`` counted, marks from the first request).

    .. marble::
        :alt: tap_metrics
        -s-a-b-u-e-|
        [ tap_metrics(sink, emit=True) ]
        -s-a-b-u-(m,e)-|

    (``s`` stream.start, ``a`` ``b`` text deltas, ``u`` usage, ``e`` stream.end, ``m`` the
    ``metrics`` event, with ``e``'s ``seq`` and ``at``; without ``emit`` the output is the input.
    Each sink's ``record`` is called once per stream: at ``stream.end`` (or completion), on an
    upstream error (``outcome="error"``) or when the consumer disposes first
    (``outcome="cancelled"``).)

    Args:
        sink: a :class:`MetricsSink` (``InMemoryMetrics``, ``OpenTelemetryMetrics``,
            ``PrometheusMetrics`` or your own object with ``record(metrics)``), a list of them,
            or ``None`` (with ``emit=True``: measure for the event only).
        emit: add a ``metrics`` event before ``stream.end``; ``collect()`` puts it on
            ``StreamResult.metrics``.
        scheduler: the clock that stamps a failure or a cancel, which carry no arrival stamp:
            pass the replay's scheduler in virtual time, nothing for live sources (their
            duration then ends at the last event received).

    Returns:
        An operator over rxstream events.

    Errors:
        Upstream errors pass through unchanged after the stream is recorded. A sink that raises
        at ``stream.end`` fails the stream with that exception (everything before it delivered);
        one that raises while recording an upstream error adds a note to that error; while
        recording a cancel, it is logged on the ``rxstream.metrics`` logger.
    """
    sinks = _sinks(sink)
    now: Callable[[], int] | None = None
    if scheduler is not None:
        clock = scheduler

        def clock_now() -> int:
            value: datetime = clock.now
            return stamp_ns(value)

        now = clock_now

    def operator(source: Observable[Event]) -> Observable[Event]:
        def subscribe(observer: abc.ObserverBase[Event], subscribe_scheduler: abc.SchedulerBase | None = None) -> abc.DisposableBase:
            return _Tap(observer, sinks, emit, now).attach(source, subscribe_scheduler)

        return Observable(subscribe)

    return operator
