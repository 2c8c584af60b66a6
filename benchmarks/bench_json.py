"""parse_json() on tool arguments streamed in fragments: linear growth, and its cost against one json.loads.

Arguments of about 5 KB, 20 KB and 80 KB arrive as an Anthropic tool call in 500, 2,000 and 8,000
``input_json_delta`` fragments. For each size it prints the time of ``normalize()`` alone, of
``normalize() + parse_json()``, the difference (what parse_json adds), one ``json.loads`` of the
final document, and their ratio (median of alternating rounds; target: at most 40x with partial events on); the growth factor
per 4x size (linear work stays near 4x); and, in the same run, the Anthropic SDK's approach:
re-parsing the whole buffer with jiter's partial mode on every fragment (quadratic).
``--document yajl`` measures the pure-Python document (ijson's yajl2_c + a lexer) that
parse_json() uses when the C document (``rxstream._jsonfast``) was not compiled.

    python benchmarks/bench_json.py [--repeat 5] [--document yajl]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import reactivex
from pydantic_core import from_json

from rxstream._chunk import ProviderChunk, StreamOpen
from rxstream.operators import _json, normalize, parse_json
from rxstream.operators._json_stream import YajlDocument

SIZES = ((5_000, 500), (20_000, 2_000), (80_000, 8_000))


def document(size: int) -> str:
    """Records: a list of small objects, dense with short keys, numbers and strings (the hard case)."""
    items: list[dict[str, Any]] = []
    doc: dict[str, Any] = {"query": "find the cheapest \"blue\" widgets\nin stock", "items": items}
    i = 0
    while len(json.dumps(doc)) < size:
        items.append(
            {
                "id": i,
                "name": f"Widget \u00e9 number {i}",
                "price": round(9.99 + i * 0.37, 2),
                "in_stock": i % 3 != 0,
                "tags": ["blue", "small", f"batch-{i % 7}"],
                "note": "line one\nline \"two\" with a tab\t" * (1 + i % 2),
            }
        )
        i += 1
    return json.dumps(doc)


def code_document(size: int) -> str:
    """The other common shape of tool arguments: a file to write, one long string with escapes."""
    lines: list[str] = []
    i = 0
    while sum(len(line) + 1 for line in lines) < size - 60:
        lines.append(f'    if item["price"] > {i}:\t# check "{i}" \u00e9')
        lines.append(f"        total += item['price'] * {i % 7}")
        i += 1
    return json.dumps({"path": "src/pricing.py", "content": "\n".join(lines)}, ensure_ascii=False)


SHAPES: dict[str, Callable[[int], str]] = {"records": document, "code": code_document}


def chunks(text: str, fragments: int) -> list[ProviderChunk]:
    step = max(1, len(text) // fragments)
    pieces = [text[i : i + step] for i in range(0, len(text), step)]
    out = [
        ProviderChunk("open", "anthropic.messages", None, None, 0, StreamOpen()),
        ProviderChunk(
            "data", "anthropic.messages", "message_start",
            {"type": "message_start", "message": {"id": "msg_1", "model": "claude", "content": [], "usage": {"input_tokens": 9, "output_tokens": 1}}},
            1,
        ),
        ProviderChunk(
            "data", "anthropic.messages", "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {}}},
            2,
        ),
    ]
    out.extend(
        ProviderChunk(
            "data", "anthropic.messages", "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": p}},
            3 + n,
        )
        for n, p in enumerate(pieces)
    )
    out.append(ProviderChunk("data", "anthropic.messages", "content_block_stop", {"type": "content_block_stop", "index": 0}, 10**6))
    out.append(
        ProviderChunk(
            "data", "anthropic.messages", "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 100}},
            10**6 + 1,
        )
    )
    return out


def timed(fn: Callable[[], object], repeat: int) -> float:
    times: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run_pipe(items: list[ProviderChunk], with_json: bool) -> int:
    count = 0

    def on_next(_: object) -> None:
        nonlocal count
        count += 1

    source = reactivex.from_iterable(items)
    stream = source.pipe(normalize(), parse_json()) if with_json else source.pipe(normalize())
    stream.subscribe(on_next)
    return count


def sdk_reparse(text: str, fragments: int) -> None:
    step = max(1, len(text) // fragments)
    buffer = ""
    for i in range(0, len(text), step):
        buffer += text[i : i + step]
        from_json(buffer, allow_partial=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument(
        "--document",
        choices=("default", "yajl"),
        default="default",
        help="yajl: measure the pure-Python fallback (ijson + lexer) used when the C document is not built",
    )
    args = parser.parse_args(argv)
    if args.document == "yajl":
        _json.new_document = YajlDocument  # pyright: ignore[reportAttributeAccessIssue]
    print(f"JSON document: {type(_json.new_document()).__name__}")
    for shape, make in SHAPES.items():
        print(f"\n{shape}: {make.__doc__.splitlines()[0] if make.__doc__ else shape}")
        measure(make, args.repeat)
    return 0


def measure(make: Callable[[int], str], repeat: int) -> None:
    print(
        f"{'size':>7} {'frags':>6} {'normalize':>10} {'+parse_json':>12} {'added':>9} "
        f"{'json.loads':>11} {'added/loads':>12} {'SDK re-parse':>13} {'SDK/loads':>10}"
    )
    previous: float | None = None
    growth: list[float] = []
    for size, fragments in SIZES:
        text = make(size)
        items = chunks(text, fragments)
        json_events = run_pipe(items, True)
        assert json_events > run_pipe(items, False), "parse_json must add json events"
        # Alternate the runs and take medians of per-round ratios: this machine's speed drifts.
        bases: list[float] = []
        fulls: list[float] = []
        ratios: list[float] = []
        for _ in range(repeat):
            base_t = timed(lambda i=items: run_pipe(i, False), 1)
            full_t = timed(lambda i=items: run_pipe(i, True), 1)
            loads_t = timed(lambda t=text: [json.loads(t) for _ in range(10)], 1) / 10
            bases.append(base_t)
            fulls.append(full_t)
            ratios.append((full_t - base_t) / loads_t)
        base = statistics.median(bases)
        full = statistics.median(fulls)
        ratio = statistics.median(ratios)
        loads = statistics.median(timed(lambda t=text: json.loads(t), 1) for _ in range(21))
        sdk = timed(lambda t=text, f=fragments: sdk_reparse(t, f), max(1, repeat // 4))
        added = full - base
        print(
            f"{len(text):>7} {fragments:>6} {base * 1e3:>8.2f}ms {full * 1e3:>10.2f}ms {added * 1e3:>7.2f}ms "
            f"{loads * 1e3:>9.3f}ms {ratio:>11.1f}x {sdk * 1e3:>11.1f}ms {sdk / loads:>9.0f}x"
        )
        if previous is not None:
            growth.append(added / previous)
        previous = added
    print("growth of parse_json's cost per 4x size: " + ", ".join(f"{g:.2f}x" for g in growth) + " (linear: ~4x)")


if __name__ == "__main__":
    sys.exit(main())
