"""Replay a recorded provider stream through normalize() and print what it delivered.

    python examples/replay_quickstart.py [tests/recordings/anthropic-messages-toolcall-1.sse]
"""

from __future__ import annotations

import asyncio
import sys

from rxstream import RxStreamError, collect, sources
from rxstream import operators as rxs


async def main(path: str) -> int:
    stream = sources.replay(path).pipe(rxs.normalize())
    stream.subscribe(on_next=lambda ev: print(f"{ev.seq:>4} {ev.type}"), on_error=lambda _: None)
    try:
        result = await collect(stream)
    except RxStreamError as exc:
        print(f"stream failed: {exc}")
        if exc.partial is None:
            return 1
        result = exc.partial
    for out in result.outputs:
        print(f"output {out.index}: {out.text!r} finish={out.finish_reason}")
        for call in out.tool_calls:
            print(f"  call {call.name}({call.arguments})")
    print("usage:", result.usage and result.usage.model_dump(exclude={"raw", "meta"}))
    return 0


if __name__ == "__main__":
    default = "tests/recordings/anthropic-messages-toolcall-1.sse"
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else default)))
