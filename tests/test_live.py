"""Live sources end to end over real loopback HTTP against the ProviderEmulator."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from rxstream import aiter, collect
from rxstream.operators import normalize
from rxstream.sources import anthropic_messages, gemini, openai_chat, openai_responses, xai_chat
from rxstream.testing import ProviderEmulator
from tests.conftest import GOLDEN, RECORDINGS

KEY = "sk-live-test-SECRET-42"


def long_chat_body(n: int) -> bytes:
    head = '{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,'
    parts = [f'data: {head}"delta":{{"content":"w{i} "}},"finish_reason":null}}]}}\n\n' for i in range(n - 1)]
    parts.append(f'data: {head}"delta":{{}},"finish_reason":"stop"}}]}}\n\n')
    parts.append("data: [DONE]\n\n")
    return "".join(parts).encode()


def test_slow_consumer_is_bounded_and_loses_nothing(tmp_path: Path) -> None:
    n = 10_000
    (tmp_path / "long-chat.sse").write_bytes(long_chat_body(n))

    async def main() -> tuple[list[Any], int]:
        async with ProviderEmulator(tmp_path) as emulator, httpx.AsyncClient() as client:
            source = openai_chat(model="gpt-4o", messages=[], api_key=KEY, base_url=f"{emulator.base_url}/v1", client=client)
            events: list[Any] = []
            stream = aiter(source.pipe(normalize()), max_buffer=64, overflow="block")
            async for event in stream:
                events.append(event)
                if len(events) % 50 == 0:
                    await asyncio.sleep(0.001)  # the consumer is slower than loopback
            return events, stream.peak_buffered

    events, peak = asyncio.run(main())
    assert peak <= 64, f"peak buffered {peak} > max_buffer"
    texts = [e.text for e in events if e.type == "text.delta"]
    assert texts == [f"w{i} " for i in range(n - 1)], "every delta, in order"
    assert events[0].type == "stream.start" and events[-1].type == "stream.end"
    assert [e.seq for e in events] == sorted(e.seq for e in events)


CASES = [
    ("openai-chat-toolcall-1.sse", lambda base, c, h: openai_chat(model="gpt-4o-2024-08-06", messages=[], api_key=KEY, base_url=f"{base}/v1", client=c, headers=h)),
    ("xai-chat-reasoning-text-1.jsonl", lambda base, c, h: xai_chat(model="grok-3-mini", messages=[], api_key=KEY, base_url=f"{base}/v1", client=c, headers=h)),
    ("openai-responses-functioncall-1.sse", lambda base, c, h: openai_responses(model="gpt-4o-2024-08-06", input="x", api_key=KEY, base_url=f"{base}/v1", client=c, headers=h)),
    ("anthropic-messages-thinking-1.sse", lambda base, c, h: anthropic_messages(model="claude-sonnet-4-20250514", messages=[], api_key=KEY, base_url=base, client=c, headers=h)),
    ("gemini-generatecontent-partial-args-1.jsonl", lambda base, c, h: gemini(model="gemini-3.1-pro-preview", contents="x", api_key=KEY, base_url=base, client=c, headers=h)),
    ("gemini-generatecontent-jsonarray-text-1.json", lambda base, c, h: gemini(model="gemini-3.6-flash", contents="x", api_key=KEY, base_url=base, client=c, sse=False, headers=h)),
]


def test_every_wire_live_matches_its_golden() -> None:
    async def main() -> list[tuple[str, Any, Any]]:
        out: list[tuple[str, Any, Any]] = []
        async with ProviderEmulator(RECORDINGS) as emulator, httpx.AsyncClient() as client:
            for name, build in CASES:
                source = build(emulator.base_url, client, {"x-rxstream-recording": name})
                result = await collect(source.pipe(normalize()))
                out.append((name, result, emulator.requests[-1]))
        return out

    for name, result, request in asyncio.run(main()):
        golden = json.loads((GOLDEN / (name + ".json")).read_text())
        summary = result.to_summary()
        assert summary["outputs"] == golden["outputs"], name
        assert summary["usage"] == golden["usage"], name
        assert result.request_id, f"{name}: the request id header must reach the result"
        assert request.has_auth and KEY not in json.dumps(request.headers)


def test_dispose_closes_the_connection_on_the_server_side(tmp_path: Path) -> None:
    (tmp_path / "long-chat.sse").write_bytes(long_chat_body(5_000))

    async def main() -> tuple[int, int]:
        async with ProviderEmulator(tmp_path, pace=500.0) as emulator, httpx.AsyncClient() as client:
            source = openai_chat(model="gpt-4o", messages=[], api_key=KEY, base_url=f"{emulator.base_url}/v1", client=client)
            got: list[Any] = []
            subscription = source.pipe(normalize()).subscribe(got.append)
            while len(got) < 5:
                await asyncio.sleep(0.005)
            subscription.dispose()
            await asyncio.sleep(0.05)
            seen = len(got)
            await asyncio.sleep(0.3)  # at 500 events/s, ~150 more would arrive if still reading
            return seen, len(got)

    seen, after = asyncio.run(main())
    assert after == seen, "nothing arrives after dispose: the response was closed"
    assert seen < 100
