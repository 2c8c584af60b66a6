"""Many concurrent live streams: the provider emulator over loopback -> normalize() -> collect().

200 concurrent streams of 2,000 chunks each (OpenAI chat wire) by default; prints aggregate
chunks per second, the per-chunk cost, and the peak RSS of this process (which holds the client
side and the emulator server side, both on one asyncio loop), against a baseline measured in the
same run: the same requests read raw with httpx (no decoding, no rxstream).

    python benchmarks/bench_http.py [--streams 200] [--chunks 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

import httpx
from reactivex import Observable

from rxstream import collect
from rxstream.events import Event
from rxstream.operators import normalize
from rxstream.sources import openai_chat
from rxstream.testing import ProviderEmulator

sys.path.insert(0, str(Path(__file__).parent))
from bench_normalize import openai_body


def peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def raw_read(client: httpx.AsyncClient, url: str) -> int:
    async with client.stream(
        "POST", url, json={"model": "gpt-4o", "messages": [], "stream": True}, headers={"authorization": "Bearer x"}
    ) as response:
        total = 0
        async for piece in response.aiter_bytes():
            total += len(piece)
        return total


async def main(streams: int, chunks: int) -> int:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "bench-chat.sse").write_bytes(openai_body(chunks))
        async with ProviderEmulator(folder, pace="fast") as emulator:
            limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
            url = f"{emulator.base_url}/v1/chat/completions"
            # A fresh client per phase: a pooled keep-alive connection the server has since
            # timed out would fail the next phase's first request.
            async with httpx.AsyncClient(limits=limits, timeout=120) as client:
                await raw_read(client, url)  # warm up
                t0 = time.perf_counter()
                sizes = await asyncio.gather(*(raw_read(client, url) for _ in range(streams)))
                raw_s = time.perf_counter() - t0
            assert all(size == sizes[0] for size in sizes)
            async with httpx.AsyncClient(limits=limits, timeout=120) as client:

                def stream() -> Observable[Event]:
                    return openai_chat(
                        model="gpt-4o", messages=[], api_key="bench", base_url=f"{emulator.base_url}/v1", client=client
                    ).pipe(normalize())

                await collect(stream())  # warm up
                t0 = time.perf_counter()
                results = await asyncio.gather(*(collect(stream()) for _ in range(streams)))
                rx_s = time.perf_counter() - t0
    texts = {r.text for r in results}
    assert len(texts) == 1 and all(r.completed for r in results), "every stream must complete identically"
    total = streams * chunks
    print(f"{streams} concurrent streams x {chunks} chunks = {total:,} chunks over loopback")
    print(f"  raw httpx read (baseline): {raw_s:6.2f} s  {total / raw_s:>10,.0f} chunks/s")
    print(f"  rxstream normalize+collect:{rx_s:6.2f} s  {total / rx_s:>10,.0f} chunks/s  ({rx_s / raw_s:.2f}x the raw read)")
    print(f"  peak RSS of this process (client + emulator): {peak_rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=2000)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.streams, args.chunks)))
