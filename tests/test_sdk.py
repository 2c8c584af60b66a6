"""sources.from_openai() / from_anthropic(): the official SDKs' stream objects as rxstream sources.

Offline: real SDK clients talk to an httpx ``MockTransport`` serving recording bytes (the OpenAI
SDK takes an ``httpx`` client, the Anthropic SDK an ``httpx2`` one). Every stream's result must
equal the golden summary of the same recording replayed from disk.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
import reactivex
from reactivex import operators as ops
from reactivex.scheduler import HistoricalScheduler

from rxstream import (
    AuthenticationError,
    BadRequestError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    RxStreamError,
    StreamResult,
    TransportError,
    collect,
)
from rxstream._chunk import ProviderChunk
from rxstream._gate import CURRENT_GATE, ReadGate
from rxstream.operators import normalize
from rxstream.sources import load_recording, replay
from rxstream.sources._sdk import from_anthropic, from_openai
from tests.conftest import GOLDEN, RECORDINGS

SSE = "text/event-stream"
CONTENT_FIELDS = ("wire", "model", "response_id", "outputs", "usage", "error")


def _body(name: str) -> bytes:
    """The recording as an SSE body: ``.sse`` files as recorded, ``.jsonl`` payloads re-framed."""
    path = RECORDINGS / name
    if path.suffix == ".sse":
        # Some recordings end without the blank line that dispatches the last event; the SDKs
        # follow the SSE spec and drop such an unterminated event, rxstream's decoder keeps it.
        return path.read_bytes().rstrip(b"\r\n") + b"\n\n"
    lines: list[str] = []
    for chunk in load_recording(path)[1:]:
        kind = chunk.event or (chunk.data.get("type") if chunk.wire != "openai.chat" else None)
        if kind:
            lines.append(f"event: {kind}")
        lines.append("data: " + json.dumps(chunk.data))
        lines.append("")
    return ("\n".join(lines) + "\n").encode()


def _events(body: bytes) -> list[bytes]:
    """The SSE body split into its events, for bodies served one event per read."""
    return [part + b"\n\n" for part in body.split(b"\n\n") if part.strip()]


def _golden(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / (name + ".json")).read_text(encoding="utf-8"))


def _assert_like_golden(result: StreamResult, name: str) -> None:
    summary = result.to_summary()
    golden = _golden(name)
    assert {k: summary[k] for k in CONTENT_FIELDS} == {k: golden[k] for k in CONTENT_FIELDS}


def _replayed(name: str) -> StreamResult:
    return asyncio.run(collect(replay(RECORDINGS / name).pipe(normalize())))


Handler = Callable[[Any], Any]


def _serve(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None, module: Any = httpx
) -> Handler:
    sent = {"content-type": SSE if status < 300 else "application/json", **(headers or {})}

    def handler(request: Any) -> Any:
        return module.Response(status, headers=sent, content=body)

    return handler


def _openai(handler: Handler) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="test",
        base_url="http://test/v1",
        max_retries=0,
        # The SDK is typed for httpx2 and takes a legacy httpx client as well: both are covered.
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),  # pyright: ignore[reportArgumentType]
    )


def _async_openai(handler: Handler) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="test",
        base_url="http://test/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
    )


def _anthropic(handler: Handler) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="test",
        base_url="http://test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def _async_anthropic(handler: Handler) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="test",
        base_url="http://test",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
    )


def _chat(client: Any) -> Any:
    return client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
    )


def _responses(client: Any) -> Any:
    return client.responses.create(model="gpt-5", input="hi", stream=True)


def _messages(client: Any) -> Any:
    return client.messages.create(
        model="claude-sonnet-4", max_tokens=64, messages=[{"role": "user", "content": "hi"}], stream=True
    )


def _run(source: reactivex.Observable[ProviderChunk]) -> StreamResult:
    async def main() -> StreamResult:
        return await collect(source.pipe(normalize()))

    return asyncio.run(main())


def _run_async(
    make: Callable[[], Any], adapt: Callable[..., reactivex.Observable[ProviderChunk]]
) -> StreamResult:
    async def main() -> StreamResult:
        stream = await make()
        return await collect(adapt(stream).pipe(normalize()))

    return asyncio.run(main())


# -- results equal the recordings' goldens --------------------------------------------------------

CHAT = [
    "openai-chat-toolcall-parallel-1.sse",
    "openai-chat-text-1.sse",
    "openai-chat-multichoice-n2-1.sse",
    "azure-chat-text-nousage-1.sse",
    "deepseek-chat-reasoning-toolcall-1.jsonl",
    "openrouter-chat-reasoning-1.sse",
]
RESPONSES = [
    "openai-responses-reasoning-functioncall-1.sse",
    "openai-responses-reasoning-summary-1.sse",
    "openai-responses-functioncall-1.sse",
    "openai-responses-text-1.sse",
]
MESSAGES = [
    "anthropic-messages-thinking-1.sse",
    "anthropic-messages-toolcall-1.sse",
    "anthropic-messages-redacted-thinking-1.sse",
    "anthropic-messages-thinking-toolcall-noargs-1.sse",
    "anthropic-messages-thinking-2.jsonl",
]


@pytest.mark.parametrize("name", CHAT)
def test_openai_chat_stream_gives_the_recording_result(name: str) -> None:
    result = _run(from_openai(_chat(_openai(_serve(_body(name))))))
    _assert_like_golden(result, name)
    assert result.assistant_message() == _replayed(name).assistant_message()


@pytest.mark.parametrize("name", CHAT[:2] + CHAT[4:5])
def test_openai_async_chat_stream_gives_the_recording_result(name: str) -> None:
    client = _async_openai(_serve(_body(name), module=httpx2))
    result = _run_async(lambda: _chat(client), from_openai)
    _assert_like_golden(result, name)


@pytest.mark.parametrize("name", RESPONSES)
def test_openai_responses_stream_gives_the_recording_result(name: str) -> None:
    result = _run(from_openai(_responses(_openai(_serve(_body(name))))))
    _assert_like_golden(result, name)
    assert result.assistant_message() == _replayed(name).assistant_message()


@pytest.mark.parametrize("name", RESPONSES[:2])
def test_openai_async_responses_stream_gives_the_recording_result(name: str) -> None:
    client = _async_openai(_serve(_body(name), module=httpx2))
    _assert_like_golden(_run_async(lambda: _responses(client), from_openai), name)


@pytest.mark.parametrize("name", MESSAGES)
def test_anthropic_stream_gives_the_recording_result(name: str) -> None:
    result = _run(from_anthropic(_messages(_anthropic(_serve(_body(name), module=httpx2)))))
    _assert_like_golden(result, name)
    assert result.assistant_message() == _replayed(name).assistant_message()


@pytest.mark.parametrize("name", MESSAGES[:3])
def test_anthropic_async_stream_gives_the_recording_result(name: str) -> None:
    client = _async_anthropic(_serve(_body(name), module=httpx2))
    _assert_like_golden(_run_async(lambda: _messages(client), from_anthropic), name)


def test_stream_helpers_give_only_the_raw_events() -> None:
    # The helpers' managers and streams add derived events and snapshots: only raw events count.
    name = "anthropic-messages-thinking-1.sse"
    client = _anthropic(_serve(_body(name), module=httpx2))
    manager = client.messages.stream(
        model="claude-sonnet-4", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    _assert_like_golden(_run(from_anthropic(manager)), name)
    with client.messages.stream(model="claude-sonnet-4", max_tokens=64, messages=[]) as opened:
        _assert_like_golden(_run(from_anthropic(opened)), name)
    name = "openai-chat-toolcall-parallel-1.sse"
    _assert_like_golden(
        _run(from_openai(_openai(_serve(_body(name))).chat.completions.stream(model="m", messages=[]))), name
    )
    name = "openai-responses-reasoning-summary-1.sse"
    _assert_like_golden(
        _run(from_openai(_openai(_serve(_body(name))).responses.stream(model="m", input="x"))), name
    )


def test_async_message_stream_manager() -> None:
    name = "anthropic-messages-toolcall-1.sse"
    client = _async_anthropic(_serve(_body(name), module=httpx2))

    async def main() -> StreamResult:
        manager = client.messages.stream(model="claude-sonnet-4", max_tokens=64, messages=[])
        return await collect(from_anthropic(manager).pipe(normalize()))

    _assert_like_golden(asyncio.run(main()), name)


# -- the open chunk -------------------------------------------------------------------------------


def _chunks(source: reactivex.Observable[ProviderChunk]) -> list[ProviderChunk]:
    items: list[ProviderChunk] = []
    errors: list[Exception] = []
    source.subscribe(items.append, errors.append)
    assert errors == []
    return items


def test_open_chunk_has_the_request_and_the_response_head() -> None:
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    client = _openai(_serve(_body("openai-chat-text-1.sse"), headers={"x-request-id": "req_42"}))
    chunks = _chunks(from_openai(_chat(client), request=request, provider="openai"))
    opened = chunks[0]
    assert opened.kind == "open" and opened.wire == "openai.chat" and opened.open is not None
    assert opened.open.request == request and opened.open.provider == "openai"
    assert opened.open.status == 200 and opened.open.request_id == "req_42"
    assert opened.open.url == "http://test/v1/chat/completions"
    assert opened.open.headers["content-type"] == SSE
    assert opened.open.request_sent_at is None  # the request was made before the source existed
    data = [c for c in chunks if c.kind == "data"]
    assert all(c.wire == "openai.chat" and c.event is None for c in data)
    ats = [c.at for c in chunks]
    assert ats == sorted(ats)


def test_payloads_are_the_recorded_ones() -> None:
    # exclude_unset keeps absent fields absent: the wire quirks normalize() handles stay visible.
    name = "anthropic-messages-toolcall-1.sse"
    chunks = _chunks(from_anthropic(_messages(_anthropic(_serve(_body(name), module=httpx2)))))
    recorded = [c for c in load_recording(RECORDINGS / name)[1:] if c.data.get("type") != "ping"]
    assert [(c.event, c.data) for c in chunks[1:]] == [(c.event, c.data) for c in recorded]
    assert chunks[0].open is not None and chunks[0].open.request_id is None  # the mock sent no request-id
    name = "openai-responses-functioncall-1.sse"
    chunks = _chunks(from_openai(_responses(_openai(_serve(_body(name))))))
    assert chunks[0].wire == "openai.responses"
    assert [c.data for c in chunks[1:]] == [c.data for c in load_recording(RECORDINGS / name)[1:]]
    assert [c.event for c in chunks[1:]] == [c.data["type"] for c in chunks[1:]]


def test_a_factory_marks_when_the_request_went_out() -> None:
    client = _anthropic(
        _serve(_body("anthropic-messages-text-1.sse"), headers={"request-id": "req_a"}, module=httpx2)
    )
    opened = _chunks(from_anthropic(lambda: _messages(client)))[0].open
    assert opened is not None and opened.request_id == "req_a"
    assert opened.request_sent_at is not None and opened.headers_at is not None
    assert opened.request_sent_at <= opened.headers_at


# -- errors ---------------------------------------------------------------------------------------

ERROR_BODY = json.dumps(
    {"error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limited"}}
).encode()


@pytest.mark.parametrize(
    ("status", "kind", "sdk_kind"),
    [
        (429, RateLimitError, openai.RateLimitError),
        (401, AuthenticationError, openai.AuthenticationError),
        (500, ProviderUnavailableError, openai.InternalServerError),
        (400, BadRequestError, openai.BadRequestError),
    ],
)
def test_openai_http_errors_are_typed_by_status(
    status: int, kind: type[Exception], sdk_kind: type[Exception]
) -> None:
    client = _openai(_serve(ERROR_BODY, status, {"retry-after-ms": "1500", "x-request-id": "req_e"}))
    with pytest.raises(kind) as caught:
        _run(from_openai(lambda: _chat(client)))
    error = caught.value
    assert isinstance(error.__cause__, sdk_kind)
    assert getattr(error, "status", None) == status and getattr(error, "request_id", None) == "req_e"
    assert f"HTTP {status}" in str(error) and "slow down" in str(error)
    if status == 429:
        assert getattr(error, "retry_after", None) == 1.5


@pytest.mark.parametrize(
    ("status", "kind"), [(429, RateLimitError), (401, AuthenticationError), (529, ProviderUnavailableError)]
)
def test_anthropic_http_errors_are_typed_by_status(status: int, kind: type[Exception]) -> None:
    body = json.dumps(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    ).encode()
    client = _anthropic(_serve(body, status, {"retry-after": "2", "request-id": "req_x"}, module=httpx2))
    with pytest.raises(kind) as caught:
        _run(from_anthropic(lambda: _messages(client)))
    assert isinstance(caught.value.__cause__, anthropic.APIStatusError)
    assert "Overloaded" in str(caught.value) and getattr(caught.value, "request_id", None) == "req_x"
    if status == 429:
        assert getattr(caught.value, "retry_after", None) == 2.0


def test_async_factory_errors_are_typed_too() -> None:
    client = _async_openai(_serve(ERROR_BODY, 429, module=httpx2))

    async def main() -> None:
        await collect(from_openai(lambda: _chat(client)).pipe(normalize()))

    with pytest.raises(RateLimitError):
        asyncio.run(main())


def test_connection_failures_are_transport_errors() -> None:
    def refuse(request: Any) -> Any:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(TransportError, match="connection failed") as caught:
        _run(from_openai(lambda: _chat(_openai(refuse))))
    assert isinstance(caught.value.__cause__, openai.APIConnectionError)

    def refuse2(request: Any) -> Any:
        raise httpx2.ConnectError("connection refused", request=request)

    with pytest.raises(TransportError) as caught2:
        _run(from_anthropic(lambda: _messages(_anthropic(refuse2))))
    assert isinstance(caught2.value.__cause__, anthropic.APIConnectionError)


def _dropping(parts: list[bytes], after: int, error: Exception) -> Iterator[bytes]:
    yield from parts[:after]
    raise error


def test_a_connection_dropped_mid_stream_is_a_transport_error_after_what_came_before() -> None:
    parts = _events(_body("openai-chat-text-1.sse"))

    def handler(request: Any) -> Any:
        return httpx.Response(
            200, headers={"content-type": SSE}, content=_dropping(parts, 4, httpx.ReadError("reset"))
        )

    with pytest.raises(TransportError, match=r"connection failed.*ReadError: reset") as caught:
        _run(from_openai(_chat(_openai(handler))))
    assert isinstance(caught.value.__cause__, openai.APIConnectionError)
    assert caught.value.partial is not None and caught.value.partial.text == "I'm unable to"

    parts = _events(_body("anthropic-messages-text-1.sse"))

    def handler2(request: Any) -> Any:
        return httpx2.Response(
            200, headers={"content-type": SSE}, content=_dropping(parts, 4, httpx2.ReadError("reset"))
        )

    with pytest.raises(TransportError, match="ReadError: reset") as caught2:
        _run(from_anthropic(_messages(_anthropic(handler2))))
    # Older Anthropic SDKs let httpx2's own error through, newer ones (2.17) wrap it in their
    # APIConnectionError: either way it is translated, and the message names the read error.
    assert isinstance(caught2.value.__cause__, httpx2.ReadError | anthropic.APIConnectionError)
    assert caught2.value.partial is not None and caught2.value.partial.text == "Hello"


def test_in_stream_errors_become_provider_errors_after_what_came_before() -> None:
    name = "openai-responses-error-quota-1.sse"
    with pytest.raises(ProviderError, match="exceeded your current quota") as caught:
        _run(from_openai(_responses(_openai(_serve(_body(name))))))
    assert caught.value.code == "insufficient_quota"
    assert (
        caught.value.partial is not None and caught.value.partial.response_id == _golden(name)["response_id"]
    )

    name = "groq-chat-reasoning-error-1.sse"
    with pytest.raises(ProviderError, match="Tool call validation failed") as caught:
        _run(from_openai(_chat(_openai(_serve(_body(name))))))
    assert caught.value.code == "tool_use_failed"
    assert caught.value.partial is not None
    assert caught.value.partial.outputs[0].reasoning == _golden(name)["outputs"][0]["reasoning"]
    assert caught.value.partial.outputs[0].finish_reason == "error"


def test_anthropic_error_event_becomes_a_provider_error() -> None:
    body = b"".join(
        [
            b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
            b'"role":"assistant","model":"claude-x","content":[],"usage":{"input_tokens":3,"output_tokens":1}}}\n\n',
            b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n',
            b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n',
        ]
    )
    with pytest.raises(ProviderError, match="Overloaded") as caught:
        _run(from_anthropic(_messages(_anthropic(_serve(body, module=httpx2)))))
    assert caught.value.code == "overloaded_error"
    assert caught.value.partial is not None and caught.value.partial.text == "Hi"


# -- subscription: once, cold, dispose, backpressure ----------------------------------------------


def test_a_stream_object_can_be_consumed_once() -> None:
    source = from_openai(_chat(_openai(_serve(_body("openai-chat-text-1.sse")))))
    first = _run(source)
    assert first.text
    with pytest.raises(RxStreamError, match="already consumed"):
        _run(source)


def test_a_factory_is_cold_one_request_per_subscription() -> None:
    calls: list[str] = []
    body = _body("anthropic-messages-text-1.sse")

    def handler(request: Any) -> Any:
        calls.append(str(request.url))
        return httpx2.Response(200, headers={"content-type": SSE}, content=body)

    client = _anthropic(handler)
    source = from_anthropic(lambda: _messages(client))
    assert calls == []  # nothing is sent before a subscription
    assert _run(source).text == _run(source).text == "Hello there!"
    assert calls == ["http://test/v1/messages", "http://test/v1/messages"]


class _Body:
    """A sync response body served one SSE event per read, recording how far it was read."""

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts
        self.read = 0
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            for part in self.parts:
                self.read += 1
                yield part
        finally:
            self.closed = True


def _streamed(body: _Body, module: Any = httpx) -> Handler:
    def handler(request: Any) -> Any:
        return module.Response(200, headers={"content-type": SSE}, content=iter(body))

    return handler


def test_disposing_a_sync_stream_stops_reading_and_closes_it() -> None:
    parts = _events(_body("openai-chat-text-1.sse"))
    body = _Body(parts)
    stream = _chat(_openai(_streamed(body)))
    assert not stream.response.is_closed
    taken: list[ProviderChunk] = []
    completed: list[bool] = []
    from_openai(stream).pipe(ops.take(3)).subscribe(taken.append, on_completed=lambda: completed.append(True))
    assert [c.kind for c in taken] == ["open", "data", "data"] and completed == [True]
    assert stream.response.is_closed
    assert body.read < len(parts)


def test_the_end_of_a_sync_stream_closes_it() -> None:
    parts = _events(_body("anthropic-messages-text-1.sse"))
    body = _Body(parts)
    stream = _messages(_anthropic(_streamed(body, httpx2)))
    assert not stream.response.is_closed
    assert _run(from_anthropic(stream)).text == "Hello there!"
    assert stream.response.is_closed and body.read == len(parts) and body.closed


def test_disposing_before_the_first_read_closes_the_stream() -> None:
    body = _Body(_events(_body("anthropic-messages-text-1.sse")))
    stream = _messages(_anthropic(_streamed(body, httpx2)))
    scheduler = HistoricalScheduler()
    received: list[ProviderChunk] = []
    subscription = from_anthropic(stream, scheduler=scheduler).subscribe(received.append)
    assert not stream.response.is_closed
    subscription.dispose()
    scheduler.start()
    assert received == [] and stream.response.is_closed and body.read == 0


def _async_body(parts: list[bytes], hold_after: int, release: asyncio.Event, state: dict[str, Any]) -> Any:
    async def gen() -> AsyncIterator[bytes]:
        try:
            for i, part in enumerate(parts):
                if i == hold_after:
                    await release.wait()
                state["read"] = i + 1
                yield part
        finally:
            state["closed"] = True

    return gen()


def test_cancelling_collect_disposes_and_closes_the_async_stream() -> None:
    parts = _events(_body("openai-chat-text-1.sse"))
    state: dict[str, Any] = {"read": 0, "closed": False}

    async def main() -> None:
        release = asyncio.Event()

        def handler(request: Any) -> Any:
            return httpx2.Response(
                200, headers={"content-type": SSE}, content=_async_body(parts, 3, release, state)
            )

        stream = await _chat(_async_openai(handler))
        seen: list[ProviderChunk] = []
        task = asyncio.create_task(collect(from_openai(stream).pipe(ops.do_action(seen.append), normalize())))
        for _ in range(1000):  # until the open chunk and the three payloads before the hold arrived
            if len(seen) >= 4:
                break
            await asyncio.sleep(0)
        assert len(seen) == 4
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(5):
            await asyncio.sleep(0)
        assert stream.response.is_closed
        assert state["read"] == 3 and state["closed"]
        release.set()

    asyncio.run(main())


def test_disposing_an_async_source_before_its_task_ran() -> None:
    calls: list[int] = []
    body = _body("openai-chat-text-1.sse")

    def handler(request: Any) -> Any:
        calls.append(1)
        return httpx2.Response(
            200, headers={"content-type": SSE}, content=_async_body(_events(body), -1, asyncio.Event(), {})
        )

    async def main() -> None:
        client = _async_openai(handler)
        stream = await _chat(client)
        assert not stream.response.is_closed
        from_openai(stream).subscribe(lambda _: None).dispose()
        # A factory's coroutine is dropped unawaited (no warning), and no request is sent.
        from_openai(lambda: _chat(client)).subscribe(lambda _: None).dispose()
        for _ in range(5):
            await asyncio.sleep(0)
        assert stream.response.is_closed
        assert calls == [1]

    asyncio.run(main())


def test_the_async_source_waits_for_the_gate_between_items() -> None:
    body = _body("openai-chat-text-1.sse")

    async def main() -> None:
        stream = await _chat(_async_openai(_serve(body, module=httpx2)))
        gate = ReadGate()
        gate.close()
        items: list[ProviderChunk] = []
        done = asyncio.get_running_loop().create_future()
        token = CURRENT_GATE.set(gate)
        try:
            from_openai(stream).subscribe(items.append, done.set_exception, lambda: done.set_result(None))
        finally:
            CURRENT_GATE.reset(token)
        for _ in range(20):
            await asyncio.sleep(0)
        assert [c.kind for c in items] == ["open"]  # held before the first payload
        gate.open()
        await done
        assert len(items) == 1 + len([c for c in load_recording(RECORDINGS / "openai-chat-text-1.sse")[1:]])

    asyncio.run(main())


def test_an_async_stream_needs_a_running_loop() -> None:
    client = _async_openai(_serve(_body("openai-chat-text-1.sse"), module=httpx2))
    errors: list[Exception] = []
    from_openai(lambda: _chat(client)).subscribe(on_error=errors.append)
    assert len(errors) == 1 and isinstance(errors[0], RxStreamError)
    assert "running asyncio loop" in str(errors[0])
