"""HTTP sources over httpx.MockTransport: requests as sent, open chunk, error mapping, disposal, secrets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from rxstream import (
    AuthenticationError,
    BadRequestError,
    HTTPStatusError,
    LimitExceededError,
    Limits,
    ProtocolError,
    ProviderUnavailableError,
    RateLimitError,
    StreamTimeoutError,
    TransportError,
    collect,
)
from rxstream._chunk import ProviderChunk
from rxstream.operators import normalize
from rxstream.sources import (
    anthropic_messages,
    gemini,
    openai_chat,
    openai_compatible,
    openai_responses,
    xai_chat,
)
from rxstream.sources._http import redact_url
from tests.conftest import GOLDEN, RECORDINGS

KEY = "sk-test-SECRET-1234567890"
SSE = {"content-type": "text/event-stream", "x-request-id": "req_abc"}


def recorded(name: str, headers: dict[str, str] | None = None, seen: list[httpx.Request] | None = None) -> httpx.MockTransport:
    body = (RECORDINGS / name).read_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(200, headers=headers or SSE, content=body)

    return httpx.MockTransport(handler)


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.MockTransport:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.MockTransport(
        lambda _: httpx.Response(status, headers={"content-type": "application/json", **(headers or {})}, content=content)
    )


async def _collect_with(transport: httpx.AsyncBaseTransport, build: Callable[[httpx.AsyncClient], Any]) -> Any:
    async with httpx.AsyncClient(transport=transport) as client:
        return await collect(build(client).pipe(normalize()))


def golden(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / (name + ".json")).read_text())


def content_of(summary: dict[str, Any]) -> Any:
    return [summary["outputs"], summary["usage"], summary["model"], summary["wire"]]


def chunks_of(transport: httpx.AsyncBaseTransport, build: Callable[[httpx.AsyncClient], Any]) -> list[ProviderChunk]:
    async def main() -> list[ProviderChunk]:
        items: list[ProviderChunk] = []
        done = asyncio.get_running_loop().create_future()
        async with httpx.AsyncClient(transport=transport) as client:
            build(client).subscribe(items.append, done.set_exception, lambda: done.set_result(None))
            await done
        return items

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("openai-chat-toolcall-1.sse", lambda c: openai_chat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], api_key=KEY, client=c)),
        ("openai-responses-functioncall-1.sse", lambda c: openai_responses(model="gpt-4o", input="hi", api_key=KEY, client=c)),
        ("anthropic-messages-thinking-1.sse", lambda c: anthropic_messages(model="claude-sonnet-4", messages=[{"role": "user", "content": "hi"}], api_key=KEY, client=c)),
        ("gemini-generatecontent-toolcall-1.sse", lambda c: gemini(model="gemini-3-pro-preview", contents="hi", api_key=KEY, client=c)),
        ("gemini-generatecontent-jsonarray-text-1.json", lambda c: gemini(model="gemini-3.6-flash", contents="hi", api_key=KEY, client=c, sse=False)),
    ],
)
def test_each_wire_streams_to_the_golden_result(name: str, build: Any) -> None:
    headers = {"content-type": "application/json"} if name.endswith(".json") else SSE
    result = asyncio.run(_collect_with(recorded(name, headers), build))
    assert content_of(result.to_summary()) == content_of(golden(name))
    assert result.request_id == "req_abc" or name.endswith(".json")


def test_request_as_sent_and_open_chunk() -> None:
    seen: list[httpx.Request] = []
    items = chunks_of(
        recorded("openai-chat-text-1.sse", seen=seen),
        lambda c: openai_chat(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            api_key=KEY,
            client=c,
            base_url="https://example.test/v1/",
            temperature=0.2,
        ),
    )
    (request,) = seen
    assert str(request.url) == "https://example.test/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["accept"] == "text/event-stream"
    body = json.loads(request.content)
    assert body == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    opened = items[0]
    assert opened.kind == "open" and opened.open is not None
    assert opened.open.request == body and opened.open.status == 200 and opened.open.request_id == "req_abc"
    assert opened.open.provider == "openai"
    assert opened.open.request_sent_at is not None and opened.open.headers_at is not None
    assert opened.open.request_sent_at <= opened.open.headers_at <= items[1].at
    assert all(c.kind == "data" and c.wire == "openai.chat" for c in items[1:])


def test_include_usage_can_be_turned_off() -> None:
    seen: list[httpx.Request] = []
    chunks_of(
        recorded("openai-chat-text-1.sse", seen=seen),
        lambda c: openai_compatible(
            base_url="http://ollama.test/v1", model="m", messages=[], client=c, include_usage=False
        ),
    )
    body = json.loads(seen[0].content)
    assert "stream_options" not in body and body["stream"] is True
    assert "authorization" not in seen[0].headers


def test_azure_api_key_header_and_api_version_query() -> None:
    seen: list[httpx.Request] = []
    chunks_of(
        recorded("azure-chat-text-usage-1.sse", seen=seen),
        lambda c: openai_compatible(
            base_url="https://r.openai.azure.com/openai/deployments/gpt4",
            model="gpt-4",
            messages=[],
            api_key=KEY,
            auth="api-key",
            api_version="2024-10-21",
            provider="azure",
            client=c,
        ),
    )
    request = seen[0]
    assert request.headers["api-key"] == KEY and "authorization" not in request.headers
    assert request.url.params["api-version"] == "2024-10-21"
    assert request.url.path == "/openai/deployments/gpt4/chat/completions"


def test_gemini_key_goes_in_a_header_never_the_url() -> None:
    seen: list[httpx.Request] = []
    chunks_of(
        recorded("gemini-generatecontent-text-1.sse", seen=seen),
        lambda c: gemini(model="gemini-2.0-flash", contents="hi", api_key=KEY, client=c),
    )
    request = seen[0]
    assert KEY not in str(request.url)
    assert request.headers["x-goog-api-key"] == KEY
    assert request.url.path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    assert request.url.params["alt"] == "sse"
    assert json.loads(request.content) == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def test_anthropic_headers() -> None:
    seen: list[httpx.Request] = []
    chunks_of(
        recorded("anthropic-messages-text-1.sse", seen=seen),
        lambda c: anthropic_messages(model="claude", messages=[], api_key=KEY, client=c, system="be brief"),
    )
    request = seen[0]
    assert request.headers["x-api-key"] == KEY and request.headers["anthropic-version"] == "2023-06-01"
    body = json.loads(request.content)
    assert body["max_tokens"] == 1024 and body["system"] == "be brief" and body["stream"] is True


def test_xai_defaults() -> None:
    seen: list[httpx.Request] = []
    chunks_of(
        recorded("openai-chat-text-1.sse", seen=seen),
        lambda c: xai_chat(model="grok-3-mini", messages=[], api_key=KEY, client=c),
    )
    assert str(seen[0].url) == "https://api.x.ai/v1/chat/completions"


def test_missing_key_is_a_clear_error_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        openai_chat(model="m", messages=[])
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(ValueError, match="GEMINI_API_KEY or GOOGLE_API_KEY"):
        gemini(model="m", contents="x")


def test_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    seen: list[httpx.Request] = []
    chunks_of(recorded("anthropic-messages-text-1.sse", seen=seen), lambda c: anthropic_messages(model="c", messages=[], client=c))
    assert seen[0].headers["x-api-key"] == KEY


def failure(transport: httpx.AsyncBaseTransport, build: Callable[[httpx.AsyncClient], Any] | None = None) -> Exception:
    make = build or (lambda c: openai_chat(model="m", messages=[], api_key=KEY, client=c, base_url="https://u:p@x.test/v1?key=abc"))
    with pytest.raises(Exception) as caught:
        asyncio.run(_collect_with(transport, make))
    return caught.value


def test_status_errors_are_typed_and_keep_what_the_provider_said() -> None:
    body = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}
    err = failure(answer(401, body, {"x-request-id": "req_401"}))
    assert isinstance(err, AuthenticationError)
    assert err.status == 401 and err.request_id == "req_401" and err.code == "invalid_api_key" and err.body == body
    assert "Incorrect API key provided" in str(err)
    assert isinstance(failure(answer(403, body)), AuthenticationError)

    limited = failure(answer(429, {"error": {"message": "slow down"}}, {"retry-after-ms": "1500", "retry-after": "9"}))
    assert isinstance(limited, RateLimitError) and limited.retry_after == 1.5
    limited = failure(answer(429, {"error": {"message": "slow down"}}, {"retry-after": "7"}))
    assert isinstance(limited, RateLimitError) and limited.retry_after == 7.0

    bad = failure(answer(400, {"error": {"message": "Unknown parameter: 'foo'.", "param": "foo"}}))
    assert isinstance(bad, BadRequestError) and "Unknown parameter: 'foo'." in str(bad)
    assert isinstance(failure(answer(404, {"error": {"message": "no such model"}})), BadRequestError)
    assert isinstance(failure(answer(422, {"detail": "x"})), BadRequestError)

    for status in (500, 502, 503, 529):
        assert isinstance(failure(answer(status, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})), ProviderUnavailableError)
    other = failure(answer(409, b"conflict"))
    assert type(other) is HTTPStatusError and other.status == 409 and "conflict" in str(other)


def test_anthropic_and_gemini_error_shapes() -> None:
    err = failure(
        answer(529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        lambda c: anthropic_messages(model="c", messages=[], api_key=KEY, client=c),
    )
    assert isinstance(err, ProviderUnavailableError) and err.code == "overloaded_error" and "Overloaded" in str(err)
    err = failure(
        answer(400, [{"error": {"code": 400, "message": "API key not valid", "status": "INVALID_ARGUMENT"}}]),
        lambda c: gemini(model="g", contents="x", api_key=KEY, client=c),
    )
    assert isinstance(err, BadRequestError) and "API key not valid" in str(err) and err.code == "400"


def test_errors_never_show_keys_or_credentials() -> None:
    err = failure(answer(401, {"error": {"message": "bad key"}}))
    text = str(err) + repr(err)
    assert KEY not in text and "u:p@" not in text and "key=abc" not in text
    assert "REDACTED@x.test" in text


def test_wrong_content_type_is_a_protocol_error() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, headers={"content-type": "text/html"}, content=b"<html>login</html>"))
    err = failure(transport)
    assert isinstance(err, ProtocolError)
    assert "text/html" in str(err) and "text/event-stream" in str(err) and "login" in str(err)


class _Endless(httpx.AsyncByteStream):
    """A body that never ends (a misbehaving server); counts the pieces read."""

    def __init__(self) -> None:
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < 2000:  # a guard: the test fails on a body read to its end
            self.sent += 1
            yield b"x" * 1024


@pytest.mark.parametrize(("status", "content_type"), [(500, "application/json"), (200, "text/html")])
def test_a_body_that_is_not_the_stream_is_read_only_so_far(status: int, content_type: str) -> None:
    # Regression (issue 8 fuzzing): an error answer or a wrong content type was read whole.
    stream = _Endless()
    transport = httpx.MockTransport(lambda _: httpx.Response(status, headers={"content-type": content_type}, stream=stream))
    limits = Limits(max_json_element_bytes=10 * 1024)
    err = failure(transport, lambda c: openai_chat(model="m", messages=[], api_key=KEY, client=c, limits=limits))
    assert isinstance(err, ProviderUnavailableError if status == 500 else ProtocolError)
    assert stream.sent <= 10
    assert "xxxx" in str(err)


def test_limits_reach_the_body_decoder() -> None:
    body = b"data: " + b"x" * 100 + b"\n\n"
    transport = httpx.MockTransport(lambda _: httpx.Response(200, headers=SSE, content=body))
    err = failure(transport, lambda c: openai_chat(model="m", messages=[], api_key=KEY, client=c, limits=Limits(max_sse_line_bytes=50)))
    assert isinstance(err, LimitExceededError) and err.limit == "max_sse_line_bytes" and err.value == 50
    with pytest.raises(ValueError, match="Limits"):
        openai_chat(model="m", messages=[], api_key=KEY, limits=50)  # type: ignore[arg-type]


def test_connection_failure_is_a_transport_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    err = failure(httpx.MockTransport(refuse))
    assert isinstance(err, TransportError) and "before any answer" in str(err)
    assert isinstance(err.__cause__, httpx.ConnectError)


def test_timeout_is_a_stream_timeout_error() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    err = failure(httpx.MockTransport(slow))
    assert isinstance(err, StreamTimeoutError) and err.kind == "first_event"


class _Body(httpx.AsyncByteStream):
    """A body that yields pieces, can fail midway, and records whether it was closed."""

    def __init__(self, pieces: list[bytes], fail_after: int | None = None, hang: bool = False) -> None:
        self.pieces = pieces
        self.fail_after = fail_after
        self.hang = hang
        self.closed = False
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            if self.fail_after is not None and self.sent >= self.fail_after:
                raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
            self.sent += 1
            yield piece
            await asyncio.sleep(0)
        if self.hang:
            await asyncio.sleep(3600)

    async def aclose(self) -> None:
        self.closed = True


def _pieces(name: str) -> list[bytes]:
    body = (RECORDINGS / name).read_bytes()
    return [body[i : i + 200] for i in range(0, len(body), 200)]


def test_connection_dropped_midway_delivers_what_came_before() -> None:
    stream = _Body(_pieces("openai-chat-text-1.sse"), fail_after=10)
    transport = httpx.MockTransport(lambda _: httpx.Response(200, headers=SSE, stream=stream))
    err = failure(transport)
    assert isinstance(err, TransportError) and "while streaming the body" in str(err)
    assert err.partial is not None  # text received before the drop is kept
    assert err.partial.text.startswith("I'm unable to provide real-time")
    assert stream.closed


def test_dispose_midway_cancels_and_closes_the_response() -> None:
    stream = _Body(_pieces("openai-chat-text-1.sse")[:5], hang=True)
    transport = httpx.MockTransport(lambda _: httpx.Response(200, headers=SSE, stream=stream))

    async def main() -> list[Any]:
        events: list[Any] = []
        async with httpx.AsyncClient(transport=transport) as client:
            source = openai_chat(model="m", messages=[], api_key=KEY, client=client).pipe(normalize())
            subscription = source.subscribe(events.append)
            while not stream.sent or not any(e.type == "text.delta" for e in events):
                await asyncio.sleep(0.001)
            subscription.dispose()
            for _ in range(20):
                await asyncio.sleep(0)
                if stream.closed:
                    break
        return events

    events = asyncio.run(main())
    assert stream.closed, "disposing must close the HTTP response"
    assert events[0].type == "stream.start" and events[-1].type != "stream.end"


def test_each_subscription_is_its_own_request() -> None:
    seen: list[httpx.Request] = []
    transport = recorded("openai-chat-text-1.sse", seen=seen)

    async def main() -> tuple[str, str]:
        async with httpx.AsyncClient(transport=transport) as client:
            source = openai_chat(model="m", messages=[], api_key=KEY, client=client).pipe(normalize())
            first = await collect(source)
            second = await collect(source)
            return first.text, second.text

    first, second = asyncio.run(main())
    assert first == second and len(seen) == 2


def test_subscribing_without_a_running_loop_says_what_to_do() -> None:
    errors: list[Exception] = []
    openai_chat(model="m", messages=[], api_key=KEY).subscribe(on_error=errors.append)
    assert isinstance(errors[0], RuntimeError) and "collect" in str(errors[0])


def test_redact_url() -> None:
    assert redact_url("https://user:pw@h.test/p?api-key=1&x=2&key=3") == "https://REDACTED@h.test/p?api-key=REDACTED&x=2&key=REDACTED"
    assert redact_url("http://127.0.0.1:8000/v1/chat") == "http://127.0.0.1:8000/v1/chat"


def test_request_repr_hides_the_key() -> None:
    from rxstream.sources._http import HttpRequest

    request = HttpRequest(url="https://x.test/v1", body={}, headers={"authorization": f"Bearer {KEY}"}, wire="openai.chat", provider="openai")
    assert KEY not in repr(request)


def test_events_carry_no_key() -> None:
    async def main() -> list[Any]:
        events: list[Any] = []
        async with httpx.AsyncClient(transport=recorded("openai-chat-text-1.sse")) as client:
            done = asyncio.get_running_loop().create_future()
            openai_chat(model="m", messages=[], api_key=KEY, client=client).pipe(normalize(include_raw=True)).subscribe(
                events.append, done.set_exception, lambda: done.set_result(None)
            )
            await done
        return events

    events = asyncio.run(main())
    dumped = "".join(e.model_dump_json() for e in events)
    assert KEY not in dumped and events[0].request["model"] == "m"
