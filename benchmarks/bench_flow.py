"""Event flow: what batch() and smooth() cost per delta, against the same pipeline without them.

batch: 100,000 single-character text deltas of one output (plus stream.start, finish and
stream.end) pushed synchronously through ``batch()`` into a list, against the same events into
a list with no operator. Rounds alternate the two; the figure is the median of the per-round
ratios (the machine is noisy), with the overhead per delta in microseconds. Variants: the
default (``max_interval=0.05`` on a thread timer, which fires while the source runs),
``max_chars=64`` (most runs end by size), and ``max_interval=None`` (no timer, no lock). For
scale: reactivex's own ``buffer_with_time_or_count(0.05, 64)`` (which batches, but does not
merge).

Each figure is also given in units of an ``ops.map`` with an identity function measured in
the same round, which cancels most of a shared machine's noise.

smooth: the same number of single-character deltas spelling English words (and, with
``--cjk``, Chinese text), re-chunked by ``smooth(delay=None)`` (no pacing: the chunker's
cost) and by ``smooth(delay=0.01)`` in virtual time (a ``TestScheduler`` timer per chunk,
what pacing adds); per delta and per chunk emitted.

    python benchmarks/bench_flow.py [--rounds 15] [--deltas 100000] [--cjk]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import reactivex
from reactivex import operators as ops
from reactivex.testing import TestScheduler

from rxstream._events import Finish, StreamEnd, StreamStart, TextDelta, make_event
from rxstream.operators._batch import batch
from rxstream.operators._smooth import smooth

WORDS = (
    "the quick brown fox jumps over the lazy dog while a streaming model writes one token at a time "
    "and the reader waits for each word to appear on the screen "
)
CJK = "流式响应把每个字都单独发送\uff0c读者在屏幕上等待每一个字出现。模型一次写一个词元。"


def events_of(text: str, count: int) -> list[Any]:
    """``count`` single-character text deltas cycling through ``text``, framed as a stream."""
    start = make_event(StreamStart, stream_id="b", seq=0, at=0, wire="openai.chat")
    body = [
        make_event(TextDelta, stream_id="b", seq=i + 1, at=i + 1, text=text[i % len(text)])
        for i in range(count)
    ]
    n = count + 1
    return [
        start,
        *body,
        make_event(Finish, stream_id="b", seq=n, at=n, reason="stop"),
        make_event(StreamEnd, stream_id="b", seq=n, at=n),
    ]


def timed(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def run_pipe(events: list[Any], operator: Callable[[Any], Any] | None) -> Callable[[], list[Any]]:
    def go() -> list[Any]:
        sink: list[Any] = []
        source = reactivex.from_iterable(events)
        (source.pipe(operator) if operator is not None else source).subscribe(sink.append)
        return sink

    return go


def _identity(event: Any) -> Any:
    return event


def compare(
    label: str, events: list[Any], operator: Callable[[], Callable[[Any], Any]], rounds: int, deltas: int
) -> None:
    """Alternate the pipeline without an operator, with ``ops.map``, and with ``operator``.

    Prints the medians of the per-round ratios to the bare pipeline, of the overhead per delta,
    and of that overhead in units of a map's (the machine's speed cancels out of the last).
    """
    base = run_pipe(events, None)
    ratios: list[float] = []
    extra: list[float] = []
    maps: list[float] = []
    out_count = 0
    for _ in range(rounds):
        plain = timed(base)
        mapped = timed(run_pipe(events, ops.map(_identity)))
        with_op = run_pipe(events, operator())
        began = time.perf_counter()
        out = with_op()
        spent = time.perf_counter() - began
        out_count = len(out)
        ratios.append(spent / plain)
        extra.append((spent - plain) / deltas * 1e6)
        maps.append((spent - plain) / max(mapped - plain, 1e-9))
    print(
        f"  {label:<42} x{statistics.median(ratios):6.2f}  +{statistics.median(extra):6.2f} us/delta"
        f"  = {statistics.median(maps):5.1f} maps  ({out_count:,} events out)"
    )


def bench_batch(rounds: int, deltas: int) -> None:
    events = events_of(WORDS, deltas)
    base = run_pipe(events, None)
    plain = statistics.median(timed(base) for _ in range(rounds))
    print(f"batch: {deltas:,} single-character deltas; no operator {plain / deltas * 1e6:.3f} us/delta")
    print(f"  {'':<42} {'ratio':>7}  {'overhead':>15}  {'in maps':>10}")
    compare("ops.map(identity) (the unit)", events, lambda: ops.map(_identity), rounds, deltas)
    compare("batch() (max_interval=0.05, thread timer)", events, lambda: batch(), rounds, deltas)
    compare("batch(max_chars=64)", events, lambda: batch(max_chars=64), rounds, deltas)
    compare(
        "batch(max_interval=None, max_chars=64)",
        events,
        lambda: batch(max_interval=None, max_chars=64),
        rounds,
        deltas,
    )
    compare("batch(max_interval=None)", events, lambda: batch(max_interval=None), rounds, deltas)
    compare(
        "ops.buffer_with_time_or_count(0.05, 64)",
        events,
        lambda: ops.buffer_with_time_or_count(0.05, 64),
        max(3, rounds // 3),
        deltas,
    )


def bench_smooth(rounds: int, deltas: int, text: str, label: str) -> None:
    events = events_of(text, deltas)
    print(f"smooth, {label}: {deltas:,} single-character deltas")
    compare("smooth(delay=None) (re-chunking only)", events, lambda: smooth(delay=None), rounds, deltas)
    compare(
        "smooth(chunking='sentence', delay=None)",
        events,
        lambda: smooth(chunking="sentence", delay=None),
        rounds,
        deltas,
    )
    # Pacing in virtual time: every delta arrives at one tick, chunks go out 10 ms apart.
    spent: list[float] = []
    chunks = 0
    for _ in range(max(3, rounds // 3)):
        scheduler = TestScheduler()
        sink: list[Any] = []
        source = reactivex.from_iterable(events).pipe(smooth(delay=0.01, scheduler=scheduler))
        began = time.perf_counter()
        source.subscribe(sink.append)
        scheduler.start()
        spent.append(time.perf_counter() - began)
        chunks = sum(1 for e in sink if isinstance(e, TextDelta))
    total = statistics.median(spent)
    print(
        f"  {'smooth(delay=0.01), TestScheduler':<42} {total / deltas * 1e6:5.2f} us/delta"
        f"   {total / chunks * 1e6:5.2f} us/chunk ({chunks:,} chunks)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--deltas", type=int, default=100_000)
    parser.add_argument("--cjk", action="store_true", help="also smooth Chinese text")
    args = parser.parse_args()
    bench_batch(args.rounds, args.deltas)
    bench_smooth(args.rounds, args.deltas, WORDS, "English words")
    if args.cjk:
        bench_smooth(args.rounds, args.deltas, CJK, "Chinese")


if __name__ == "__main__":
    main()
