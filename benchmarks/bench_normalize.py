"""Per-chunk cost of decode -> normalize -> collect, as a ratio against a floor measured in the same run.

Floor: one plain Python loop over the same bytes that finds each ``data:`` line, decodes it with
orjson (the fastest JSON decoder rxstream depends on) and builds one small object holding its text.
Measured: ``sources.from_bytes`` (16 KiB reads through the SSE decoder) -> ``normalize()`` ->
``collect()``. Target: at most 2.5x the floor. Floor and pipeline runs alternate; the figure is the
median of the per-pair ratios (and the ratio of the two minimums beside it), since absolute times
on shared machines move by 20-80% between runs.

    python benchmarks/bench_normalize.py [--chunks 10000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from rxstream import collect
from rxstream.operators import normalize
from rxstream.sources import from_bytes

READ = 16 * 1024
WORDS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".", "\n", " é", " 雪"]


def openai_body(n: int) -> bytes:
    head = (
        '{"id":"chatcmpl-ABfw8AOXnoa2kzy11vVTSjuQhHCQr","object":"chat.completion.chunk","created":1727346176,'
        '"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_7568d46099","choices":[{"index":0,'
    )
    parts = [f'data: {head}"delta":{{"role":"assistant","content":"","refusal":null}},"logprobs":null,"finish_reason":null}}],"usage":null}}\n\n']
    for i in range(n - 3):
        text = orjson.dumps(WORDS[i % len(WORDS)]).decode()
        parts.append(f'data: {head}"delta":{{"content":{text}}},"logprobs":null,"finish_reason":null}}],"usage":null}}\n\n')
    parts.append(f'data: {head}"delta":{{}},"logprobs":null,"finish_reason":"stop"}}],"usage":null}}\n\n')
    parts.append(
        'data: {"id":"chatcmpl-ABfw8AOXnoa2kzy11vVTSjuQhHCQr","object":"chat.completion.chunk","created":1727346176,'
        '"model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":9997,"total_tokens":10009,'
        '"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}\n\n'
    )
    parts.append("data: [DONE]\n\n")
    return "".join(parts).encode()


def anthropic_body(n: int) -> bytes:
    parts = [
        'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_019Q1hrJbZG26Fb9BQhrkHEr","type":"message",'
        '"role":"assistant","model":"claude-sonnet-4-20250514","content":[],"stop_reason":null,"stop_sequence":null,'
        '"usage":{"input_tokens":377,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}\n\n',
        'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
    ]
    for i in range(n - 5):
        text = orjson.dumps(WORDS[i % len(WORDS)]).decode()
        parts.append(
            f'event: content_block_delta\ndata: {{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":{text}}}}}\n\n'
        )
    parts.append('event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n')
    parts.append(
        'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
        '"usage":{"output_tokens":9995}}\n\n'
    )
    parts.append('event: message_stop\ndata: {"type":"message_stop"}\n\n')
    return "".join(parts).encode()


class _Small:
    __slots__ = ("text",)

    def __init__(self, text: Any) -> None:
        self.text = text


def floor_openai(body: bytes) -> int:
    loads = orjson.loads
    out: list[_Small] = []
    for line in body.split(b"\n"):
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            d = loads(line[6:])
            choices = d["choices"]
            out.append(_Small(choices[0]["delta"].get("content") if choices else None))
    return len(out)


def floor_anthropic(body: bytes) -> int:
    loads = orjson.loads
    out: list[_Small] = []
    for line in body.split(b"\n"):
        if line.startswith(b"data: "):
            d = loads(line[6:])
            delta = d.get("delta")
            out.append(_Small(delta.get("text") if delta else None))
    return len(out)


def pipeline(body: bytes, wire: Any) -> int:
    pieces = [body[i : i + READ] for i in range(0, len(body), READ)]
    result = asyncio.run(collect(from_bytes(pieces, wire=wire).pipe(normalize(stream_id="bench"))))
    return len(result.text)


def timed(fn: Callable[[], int]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(n: int, repeat: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, body, floor, wire in (
        ("openai.chat", openai_body(n), floor_openai, "openai.chat"),
        ("anthropic.messages", anthropic_body(n), floor_anthropic, "anthropic.messages"),
    ):
        pipeline(body, wire)  # warm up imports and caches
        floor(body)
        # Floor and pipeline alternate, so both see the same machine noise; each pair gives a
        # ratio, and the median pair ratio is reported (absolute numbers move a lot here).
        floor_times: list[float] = []
        pipe_times: list[float] = []
        for _ in range(repeat):
            floor_times.append(timed(lambda b=body, f=floor: f(b)))
            pipe_times.append(timed(lambda b=body, w=wire: pipeline(b, w)))
        ratios = sorted(p / f for p, f in zip(pipe_times, floor_times, strict=True))
        rows.append(
            {
                "stream": name,
                "chunks": n,
                "bytes": len(body),
                "floor_us": min(floor_times) / n * 1e6,
                "rxstream_us": min(pipe_times) / n * 1e6,
                "ratio": statistics.median(ratios),
                "ratio_of_minimums": min(pipe_times) / min(floor_times),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--max-ratio", type=float, default=None, help="exit 1 when a ratio exceeds this")
    args = parser.parse_args(argv)
    rows = run(args.chunks, args.repeat)
    print(
        f"{'stream':<20} {'chunks':>7} {'floor us/chunk':>15} {'rxstream us/chunk':>18} "
        f"{'ratio (median of pairs)':>24} {'ratio of minimums':>18}"
    )
    worst = 0.0
    for r in rows:
        print(
            f"{r['stream']:<20} {r['chunks']:>7} {r['floor_us']:>15.2f} {r['rxstream_us']:>18.2f} "
            f"{r['ratio']:>23.2f}x {r['ratio_of_minimums']:>17.2f}x"
        )
        worst = max(worst, r["ratio"])
    if args.max_ratio is not None and worst > args.max_ratio:
        print(f"ratio {worst:.2f}x exceeds --max-ratio {args.max_ratio}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
