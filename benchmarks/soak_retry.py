"""Soak: 1,000 streams with random faults through retry(after_content="restart") against one emulator.

Every stream asks the emulator (one server, one asyncio loop, real HTTP on loopback) for a random
recording of a random wire, under a random fault drawn from a seeded generator: none, a 429 with a
short retry-after, a 503 or 529, a dropped connection, the provider's in-stream error, a stall
(caught by ``timeout()``), a payload that is not JSON (not retryable: the stream fails), or a fault
that outlasts every attempt. Faults hit a stream's first request (or its first two, or all of them),
through a path prefix of its own. Each stream runs ``normalize() -> timeout() -> retry()`` into
``collect()``; a completed stream must equal the recording streamed without a fault (text, tool
calls, finish reasons), and a failed one must keep every delivered delta in its partial result.

Reports completed, retried, restarted and failed streams, then memory per window of 100 streams:
tracemalloc's peak in the window, what is still allocated after it (gc'd), and the process RSS.
Flat numbers across windows are what bounded means: nothing per stream outlives its stream.

    python benchmarks/soak_retry.py [--streams 1000] [--concurrency 20] [--seed 7] [--no-tracemalloc]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import random
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reactivex import Observable
from reactivex import operators as ops

from rxstream import collect
from rxstream._chunk import Wire
from rxstream._errors import RxStreamError
from rxstream._result import StreamResult
from rxstream.operators import normalize
from rxstream.operators._retry import RetryAttempt, retry
from rxstream.operators._timeout import timeout
from rxstream.sources import anthropic_messages, gemini, openai_chat, openai_responses
from rxstream.testing import Fault, ProviderEmulator
from rxstream.testing._emulator import DEFAULT_RECORDINGS

WINDOW = 100
ATTEMPTS = 3

# (weight, kind): what each stream's requests meet.
FAULT_KINDS: list[tuple[int, str]] = [
    (34, "none"),
    (8, "rate_limit"),
    (8, "unavailable"),
    (14, "drop"),
    (10, "in_stream_error"),
    (8, "stall"),
    (6, "drop_twice"),
    (6, "malformed"),
    (6, "always_unavailable"),
]


@dataclass
class Plan:
    number: int
    wire: Wire
    recording: str
    kind: str
    fault: Fault | None


@dataclass
class Tally:
    completed: int = 0
    failed: int = 0
    retried: int = 0
    restarted: int = 0
    mismatched: int = 0
    lost: int = 0
    failures: collections.Counter[str] = field(default_factory=collections.Counter[str])
    by_kind: collections.Counter[str] = field(default_factory=collections.Counter[str])


def recordings_by_wire() -> dict[Wire, list[Path]]:
    found: dict[Wire, list[Path]] = {}
    prefixes: dict[str, Wire] = {
        "openai-chat": "openai.chat",
        "xai-chat": "openai.chat",
        "openai-responses": "openai.responses",
        "anthropic-messages": "anthropic.messages",
        "gemini-generatecontent": "gemini",
    }
    for path in sorted(DEFAULT_RECORDINGS.iterdir()):
        if path.suffix not in {".sse", ".jsonl"}:  # the JSON-array one needs sse=False: left out
            continue
        for prefix, wire in prefixes.items():
            if path.name.startswith(prefix):
                found.setdefault(wire, []).append(path)
    return found


def event_count(path: Path) -> int:
    from rxstream.sources import load_recording

    return len(load_recording(path)) - 1


def make_plans(streams: int, seed: int) -> list[Plan]:
    rng = random.Random(seed)
    by_wire = recordings_by_wire()
    sizes = {p.name: event_count(p) for paths in by_wire.values() for p in paths}
    wires = sorted(by_wire)
    weights = [w for w, _ in FAULT_KINDS]
    kinds = [k for _, k in FAULT_KINDS]
    plans: list[Plan] = []
    for number in range(streams):
        wire = rng.choice(wires)
        path = rng.choice(by_wire[wire])
        kind = rng.choices(kinds, weights)[0]
        where = f"/s{number}/"
        at = rng.randrange(0, sizes[path.name] + 1)
        fault: Fault | None = {
            "none": None,
            "rate_limit": Fault(status=429, retry_after=0.02, path=where, times=1),
            "unavailable": Fault(status=rng.choice([500, 503, 529]), path=where, times=rng.choice([1, 2])),
            "drop": Fault(drop_after=at, path=where, times=1),
            "in_stream_error": Fault(error_after=at, path=where, times=1),
            "stall": Fault(stall_after=at, stall_seconds=5.0, path=where, times=1),
            "drop_twice": Fault(drop_after=at, path=where, times=2),
            "malformed": Fault(malformed_after=at, path=where, times=1),
            "always_unavailable": Fault(status=503, path=where),
        }[kind]
        plans.append(Plan(number, wire, path.name, kind, fault))
    return plans


def source(base: str, plan: Plan) -> Observable[Any]:
    root = f"{base}/s{plan.number}"
    headers = {"x-rxstream-recording": plan.recording}
    if plan.wire == "openai.chat":
        return openai_chat(model="m", messages=[{"role": "user", "content": "hi"}], api_key="k", base_url=f"{root}/v1", headers=headers)
    if plan.wire == "openai.responses":
        return openai_responses(model="m", input="hi", api_key="k", base_url=f"{root}/v1", headers=headers)
    if plan.wire == "anthropic.messages":
        return anthropic_messages(model="m", messages=[{"role": "user", "content": "hi"}], api_key="k", base_url=root, headers=headers)
    return gemini(model="m", contents="hi", api_key="k", base_url=root, headers=headers)


def shape(result: StreamResult) -> list[tuple[str, list[tuple[str | None, str]], str | None]]:
    """What must survive any fault: each output's text, tool calls and finish reason."""
    return [(o.text, [(c.name, c.arguments) for c in o.tool_calls], o.finish_reason) for o in result.outputs]


def delivered_text(events: list[Any]) -> str:
    """The text of output 0 since the last stream.restart: what the consumer holds."""
    text: list[str] = []
    for event in events:
        if event.type == "stream.restart":
            text = []
        elif event.type == "text.delta" and event.output == 0:
            text.append(event.text)
    return "".join(text)


async def one(base: str, plan: Plan, expected: dict[str, Any], tally: Tally) -> None:
    notices: list[RetryAttempt] = []
    events: list[Any] = []
    stream = source(base, plan).pipe(
        normalize(),
        timeout(first_content=2.0, idle=0.15),
        retry(attempts=ATTEMPTS, backoff=0.01, max_delay=0.5, after_content="restart", on_retry=notices.append),
        ops.do_action(events.append),
    )
    tally.by_kind[plan.kind] += 1
    try:
        result = await collect(stream)
    except RxStreamError as exc:
        tally.failed += 1
        tally.failures[f"{plan.kind}: {type(exc).__name__}"] += 1
        partial = exc.partial
        held = partial.outputs[0].text if partial is not None and partial.outputs else ""
        if held != delivered_text(events):
            tally.lost += 1
        result = None
    else:
        tally.completed += 1
        if shape(result) != expected[plan.recording]:
            tally.mismatched += 1
        if result.outputs and result.outputs[0].text != delivered_text(events):
            tally.lost += 1
    if any(n.action != "fail" for n in notices):
        tally.retried += 1
    if any(e.type == "stream.restart" for e in events):
        tally.restarted += 1


async def baselines(plans: list[Plan]) -> dict[str, Any]:
    expected: dict[str, Any] = {}
    async with ProviderEmulator() as emu:
        for plan in plans:
            if plan.recording not in expected:
                expected[plan.recording] = shape(await collect(source(emu.base_url, plan).pipe(normalize())))
    return expected


def rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, where /proc is missing


async def main(streams: int, concurrency: int, seed: int, trace: bool) -> int:
    plans = make_plans(streams, seed)
    expected = await baselines(plans)
    faults = [p.fault for p in plans if p.fault is not None]
    tally = Tally()
    rows: list[tuple[int, float | None, float | None, float, float]] = []
    if trace:
        tracemalloc.start()
    began = time.perf_counter()
    async with ProviderEmulator(faults=faults) as emu:
        gate = asyncio.Semaphore(concurrency)

        async def guarded(plan: Plan) -> None:
            async with gate:
                await one(emu.base_url, plan, expected, tally)

        for first in range(0, streams, WINDOW):
            window = plans[first : first + WINDOW]
            window_began = time.perf_counter()
            if trace:
                tracemalloc.reset_peak()
            await asyncio.gather(*(guarded(p) for p in window))
            # The emulator keeps a log of every request it served: the test kit's, not the
            # client's, memory. Cleared so the figures show what streaming itself keeps.
            emu.requests.clear()
            peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
            gc.collect()
            current = tracemalloc.get_traced_memory()[0] / 2**20 if trace else None
            rows.append((first + len(window), peak, current, rss_mib(), time.perf_counter() - window_began))
    took = time.perf_counter() - began
    if trace:
        tracemalloc.stop()

    print(f"soak: {streams} streams, concurrency {concurrency}, seed {seed}, attempts {ATTEMPTS}, after_content='restart'")
    print(f"  took {took:.1f} s ({streams / took:.0f} streams/s)")
    print(f"  completed {tally.completed}, failed {tally.failed}; retried {tally.retried} (of which restarted after content {tally.restarted})")
    print(f"  completed streams differing from the fault-free recording: {tally.mismatched}")
    print(f"  streams whose result lost a delivered delta: {tally.lost}")
    print("  faults drawn: " + ", ".join(f"{k} {n}" for k, n in sorted(tally.by_kind.items())))
    print("  failures: " + (", ".join(f"{k} x{n}" for k, n in sorted(tally.failures.items())) or "none"))
    print()
    print("  streams | tracemalloc peak in window (MiB) | still allocated after window (MiB) |  RSS (MiB) | window s")
    for done, peak, current, rss, seconds in rows:
        shown_peak = f"{peak:10.2f}" if peak is not None else "       n/a"
        shown_current = f"{current:10.2f}" if current is not None else "       n/a"
        print(f"  {done:7d} | {shown_peak:>32} | {shown_current:>34} | {rss:10.1f} | {seconds:8.2f}")
    if trace and len(rows) >= 3:
        # Skip the first window: imports, caches and the connection pool warm up there.
        currents = [r[2] or 0.0 for r in rows[1:]]
        peaks = [r[1] or 0.0 for r in rows[1:]]
        print()
        print(
            f"  after warm-up: still allocated {min(currents):.2f}-{max(currents):.2f} MiB, "
            f"window peaks {min(peaks):.2f}-{max(peaks):.2f} MiB, "
            f"RSS {rows[1][3]:.1f} -> {rows[-1][3]:.1f} MiB"
        )
    return 0 if tally.mismatched == 0 and tally.lost == 0 else 1


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--streams", type=int, default=1000, help="streams to run (default 1000)")
    parser.add_argument("--concurrency", type=int, default=20, help="streams at once (default 20)")
    parser.add_argument("--seed", type=int, default=7, help="the fault generator's seed (default 7)")
    parser.add_argument("--no-tracemalloc", action="store_true", help="RSS only: faster, no Python-level figures")
    args = parser.parse_args(argv)
    if args.streams < 1 or args.concurrency < 1:
        parser.error("--streams and --concurrency must be at least 1")
    return asyncio.run(main(args.streams, args.concurrency, args.seed, not args.no_tracemalloc))


if __name__ == "__main__":
    sys.exit(cli())
