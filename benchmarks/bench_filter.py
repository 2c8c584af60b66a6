"""Per-delta cost of the filters and transforms (only, drop, where, tag, map_text, redact), in maps.

Each case runs 20,000 text deltas through one operator into a no-op observer; the cost over the
source alone is divided by that of an identity ``ops.map`` measured in the same round (rounds
alternate; medians). For deterministic figures run one case under callgrind at two sizes and
divide the difference of the instruction counts by the difference of the sizes:

    python benchmarks/bench_filter.py [--rounds 9] [--deltas 20000]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benchmarks/bench_filter.py --case redact --deltas 10000   # and 20000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import reactivex
from reactivex import operators as ops

from rxstream._events import TextDelta, make_event
from rxstream.operators import drop, map_text, only, redact, tag, where

CASES: dict[str, Callable[[], Callable[[Any], Any]] | None] = {
    "source": None,
    "map": lambda: ops.map(_identity),
    "only": lambda: only("text.delta"),
    "drop": lambda: drop("usage"),
    "where": lambda: where(lambda e: True),
    "tag": lambda: tag(user="u"),
    "map_text": lambda: map_text(str.upper),
    "redact16": lambda: redact(r"sk-\w{8}", max_len=16),
    "redact": lambda: redact(r"sk-\w{8}"),
    "redact1024": lambda: redact(r"sk-\w{8}", max_len=1024),
}


def _identity(event: Any) -> Any:
    return event


def _ignore(_: Any) -> None:
    return None


def events(count: int) -> list[Any]:
    pieces = (" word", " other", " thing")
    return [
        make_event(TextDelta, stream_id="t", seq=i + 1, at=i, text=pieces[i % len(pieces)]) for i in range(count)
    ]


def run(items: list[Any], case: str) -> float:
    make = CASES[case]
    source = reactivex.from_iterable(items)
    stream = source.pipe(make()) if make is not None else source
    began = time.perf_counter()
    stream.subscribe(_ignore)
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--deltas", type=int, default=20_000)
    parser.add_argument("--case", choices=sorted(CASES), help="run one case once (for callgrind)")
    args = parser.parse_args(argv)
    items = events(args.deltas)
    if args.case is not None:
        run(items, args.case)
        return 0
    in_maps: dict[str, list[float]] = {case: [] for case in CASES if case not in ("source", "map")}
    per_delta: dict[str, list[float]] = {case: [] for case in in_maps}
    for _ in range(args.rounds):
        base = run(items, "source")
        unit = run(items, "map") - base
        for case in in_maps:
            added = run(items, case) - base
            in_maps[case].append(added / unit)
            per_delta[case].append(added / len(items) * 1e6)
    print(f"{args.deltas:,} text deltas, {args.rounds} alternating rounds, medians")
    print(f"{'operator':<12} {'us per delta':>13} {'in maps':>9}")
    for case in in_maps:
        print(f"{case:<12} {statistics.median(per_delta[case]):>13.2f} {statistics.median(in_maps[case]):>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
