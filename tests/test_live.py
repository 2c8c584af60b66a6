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


FAULT = "x-rxstream-fault"


def _live_failure(fault: str, build: Any = None, timeout: float | None = None) -> tuple[Exception, Any]:
    async def main() -> tuple[Exception, Any]:
        async with ProviderEmulator(RECORDINGS) as emulator, httpx.AsyncClient(timeout=timeout) as client:
            headers = {FAULT: fault, "x-rxstream-recording": "openai-chat-text-1"}
            make = build or (
                lambda base, c, h: openai_chat(model="gpt-4o", messages=[], api_key=KEY, base_url=f"{base}/v1", client=c, headers=h)
            )
            try:
                await collect(make(emulator.base_url, client, headers).pipe(normalize()))
            except Exception as exc:  # noqa: BLE001 - the test inspects it
                return exc, emulator.requests[-1]
            raise AssertionError("the fault did not fail the stream")

    return asyncio.run(main())


def test_http_errors_from_a_live_server_are_typed() -> None:
    from rxstream import AuthenticationError, BadRequestError, ProviderUnavailableError, RateLimitError

    err, _ = _live_failure("status=429;retry_after=2")
    assert isinstance(err, RateLimitError) and err.retry_after == 2.0 and err.request_id and err.body
    assert KEY not in str(err)
    err, _ = _live_failure("status=401")
    assert isinstance(err, AuthenticationError) and err.status == 401
    err, _ = _live_failure("status=400")
    assert isinstance(err, BadRequestError) and err.status == 400 and err.message
    for status in (500, 529):
        err, _ = _live_failure(f"status={status}")
        assert isinstance(err, ProviderUnavailableError) and err.status == status


def test_stream_faults_from_a_live_server() -> None:
    from rxstream import ProtocolError, ProviderError, StreamTimeoutError, TransportError

    err, _ = _live_failure("error_after=3")
    assert isinstance(err, ProviderError) and err.partial is not None and err.partial.text
    err, _ = _live_failure("drop_after=4")
    assert isinstance(err, TransportError) and err.partial is not None and err.partial.text
    err, _ = _live_failure("malformed_after=2")
    assert isinstance(err, ProtocolError) and "{not json" in str(err)
    err, _ = _live_failure("stall_after=2;stall_seconds=1.0", timeout=0.2)
    assert isinstance(err, StreamTimeoutError) and err.kind == "idle"


def test_anthropic_overloaded_live() -> None:
    from rxstream import ProviderUnavailableError

    err, request = _live_failure(
        "status=529",
        lambda base, c, h: anthropic_messages(model="claude", messages=[], api_key=KEY, base_url=base, client=c, headers=h),
    )
    assert isinstance(err, ProviderUnavailableError) and err.code == "overloaded_error"
    assert request.has_auth and KEY not in json.dumps(request.headers)


def test_open_chunk_from_a_live_server() -> None:
    async def main() -> list[Any]:
        async with ProviderEmulator(RECORDINGS) as emulator, httpx.AsyncClient() as client:
            items: list[Any] = []
            done = asyncio.get_running_loop().create_future()
            openai_chat(
                model="gpt-4o",
                messages=[{"role": "user", "content": "hi"}],
                tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
                api_key=KEY,
                base_url=f"{emulator.base_url}/v1",
                client=client,
                headers={"x-rxstream-recording": "openai-chat-text-1"},
            ).subscribe(items.append, done.set_exception, lambda: done.set_result(None))
            await done
            return items

    items = asyncio.run(main())
    opened = items[0].open
    assert opened.status == 200 and opened.request_id and opened.provider == "openai"
    assert opened.request["messages"] == [{"role": "user", "content": "hi"}] and opened.request["tools"]
    assert opened.url.endswith("/v1/chat/completions")
    assert KEY not in repr(items) and KEY not in json.dumps(opened.headers)
