"""Per-event overhead of tap_metrics() with each sink, against the same pipeline without it.

Every recording in tests/recordings is normalized once per round (one subscription per stream,
as in production), with and without ``tap_metrics(sink)`` after ``normalize()``; the extra time
is divided by the number of events. Cases alternate within a round; medians over rounds. The
ratio column is that extra time over the cost of the pipeline without it (normalize() plus the
consumer), measured in the same round. The recordings are short (48 events on average), so each
stream's fixed cost (one more subscription, the record, the sink) weighs on that figure; the last
columns run one OpenAI chat stream of 20,000 chunks (bench_normalize's body) the same way: the
per-event cost. ``map`` is an identity ``ops.map`` in the same place, the cost of any one more
operator (most of it reactivex's per-subscription and per-item plumbing). Target: under 1
microsecond per event with the in-memory sink.

    python benchmarks/bench_metrics.py [--rounds 15] [--repeat 4] [--long 20000]

Timings on a shared machine move; instruction counts do not. ``--case X`` runs the recordings
once through case X, ``--long-case X`` the long stream alone; under callgrind, the difference
between two sizes divided by the extra streams or events, minus the same for ``base``, is the
case's own cost per stream or per event:

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benchmarks/bench_metrics.py --case memory --repeat 1         # and --repeat 5: 4 more passes
    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benchmarks/bench_metrics.py --long-case memory --long 2000   # and --long 12000: 10,000 more chunks
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import reactivex
from reactivex import operators as ops

from rxstream._chunk import ProviderChunk
from rxstream.metrics import InMemoryMetrics
from rxstream.operators import normalize, tap_metrics
from rxstream.sources import from_bytes, load_recording

RECORDINGS = Path(__file__).resolve().parent.parent / "tests" / "recordings"


def _otel() -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from rxstream.metrics import OpenTelemetryMetrics

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return OpenTelemetryMetrics(provider.get_meter("bench"))


def _prometheus() -> Any:
    from prometheus_client import CollectorRegistry

    from rxstream.metrics import PrometheusMetrics

    return PrometheusMetrics(CollectorRegistry())


# Each case makes a sink once per round (as an application does at start-up) and returns what
# builds the operators after normalize() for each stream.
CASES: dict[str, Callable[[], Callable[[], list[Any]]]] = {
    "base": lambda: list,
    "map": lambda: lambda: [ops.map(_identity)],
    "none+emit": lambda: lambda: [tap_metrics(emit=True)],
    "memory": lambda: (lambda sink: lambda: [tap_metrics(sink)])(InMemoryMetrics()),
    "memory+emit": lambda: (lambda sink: lambda: [tap_metrics(sink, emit=True)])(InMemoryMetrics()),
    "otel": lambda: (lambda sink: lambda: [tap_metrics(sink)])(_otel()),
    "prometheus": lambda: (lambda sink: lambda: [tap_metrics(sink)])(_prometheus()),
}


def _identity(event: Any) -> Any:
    return event


def streams(repeat: int) -> list[list[ProviderChunk]]:
    paths = sorted(p for p in RECORDINGS.iterdir() if p.suffix in {".sse", ".jsonl", ".json"})
    loaded = [load_recording(p) for p in paths]
    return [chunks for _ in range(repeat) for chunks in loaded]


def run(all_chunks: list[list[ProviderChunk]], case: str) -> tuple[float, int]:
    make = CASES[case]()
    count = 0

    def consume(_: Any) -> None:
        nonlocal count
        count += 1

    def ignore(_: Exception) -> None:
        return None

    began = time.perf_counter()
    for chunks in all_chunks:
        reactivex.from_iterable(chunks).pipe(normalize(), *make()).subscribe(consume, ignore)
    return time.perf_counter() - began, count


def long_stream(count: int) -> list[ProviderChunk]:
    """One OpenAI chat stream of ``count`` chunks (bench_normalize's body), decoded once."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_normalize import openai_body  # pyright: ignore[reportMissingImports, reportUnknownVariableType]

    chunks: list[ProviderChunk] = []
    from_bytes([openai_body(count)], wire="openai.chat").subscribe(chunks.append)
    return chunks


def run_long(chunks: list[ProviderChunk], case: str) -> float:
    operators = CASES[case]()()
    began = time.perf_counter()
    reactivex.from_iterable(chunks).pipe(normalize(), *operators).subscribe(_identity)
    return time.perf_counter() - began


def available(case: str) -> bool:
    try:
        CASES[case]()
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=4, help="times each recording runs per round")
    parser.add_argument("--long", type=int, default=20_000, help="text deltas in the one-stream measurement")
    parser.add_argument("--case", choices=sorted(CASES), help="run the recordings once through one case")
    parser.add_argument("--long-case", choices=sorted(CASES), help="run the one long stream once through one case")
    args = parser.parse_args(argv)
    if args.long_case is not None:
        run_long(long_stream(args.long), args.long_case)
        return 0
    all_chunks = streams(args.repeat)
    if args.case is not None:
        run(all_chunks, args.case)
        return 0
    cases = [c for c in CASES if c != "base" and available(c)]
    _, events = run(all_chunks, "base")
    added: dict[str, list[float]] = {c: [] for c in cases}
    ratio: dict[str, list[float]] = {c: [] for c in cases}
    bases: list[float] = []
    for _ in range(args.rounds):
        base, _ = run(all_chunks, "base")
        bases.append(base)
        for case in cases:
            took, _ = run(all_chunks, case)
            added[case].append((took - base) / events * 1e6)
            ratio[case].append((took - base) / base)
    long_chunks = long_stream(args.long)
    long_added: dict[str, list[float]] = {c: [] for c in cases}
    long_ratio: dict[str, list[float]] = {c: [] for c in cases}
    for _ in range(args.rounds):
        base = run_long(long_chunks, "base")
        for case in cases:
            took = run_long(long_chunks, case) - base
            long_added[case].append(took / len(long_chunks) * 1e6)
            long_ratio[case].append(took / base)
    base_us = statistics.median(bases) / events * 1e6
    print(
        f"{len(all_chunks)} streams, {events:,} events per round ({args.rounds} alternating rounds, medians); "
        f"normalize() + consumer alone: {base_us:.2f} us per event"
    )
    print(f"{'':<16} {'recordings':>28} {'one long stream':>28}")
    print(f"{'tap_metrics sink':<16} {'added us/event':>15} {'vs pipeline':>12} {'added us/event':>15} {'vs pipeline':>12}")
    for case in cases:
        print(
            f"{case:<16} {statistics.median(added[case]):>15.3f} {statistics.median(ratio[case]):>11.1%} "
            f"{statistics.median(long_added[case]):>15.3f} {statistics.median(long_ratio[case]):>11.1%}"
        )
    print(
        f"(recordings: {events / len(all_chunks):.0f} events per stream on average, so each stream's fixed cost counts; "
        f"one long stream: {args.long:,} OpenAI chat chunks through normalize(), the per-event cost)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
