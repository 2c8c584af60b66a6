"""The cold HTTP source: one provider request per subscription, its body as ProviderChunks.

The only module that talks to httpx. Every httpx failure is translated at this boundary into the
rxstream error tree; API keys live only in request headers and never reach an event, a repr, a
log line or an error message (URLs in messages are redacted).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ssl
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson
import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxstream._chunk import ProviderChunk, StreamOpen, Wire
from rxstream._errors import (
    AuthenticationError,
    BadRequestError,
    HTTPStatusError,
    ProtocolError,
    ProviderUnavailableError,
    RateLimitError,
    RxStreamError,
    StreamTimeoutError,
    TransportError,
)
from rxstream._gate import CURRENT_GATE
from rxstream._limits import Limits, check_limits
from rxstream.sources._payloads import Framing, PayloadDecoder

__all__ = ["CURRENT_SOURCE_HOOK", "HttpRequest", "SourceHook", "http_source", "redact_url"]

REQUEST_ID_HEADERS = ("x-request-id", "request-id", "apim-request-id", "x-amzn-requestid", "x-goog-request-id")
_SECRET_PARAMS = frozenset({"key", "api-key", "api_key", "apikey", "token", "access_token", "sig", "signature"})


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A provider request, ready to send.

    ``headers`` may hold the API key. The open chunk reports ``info`` (what was asked, without
    secrets), or the body as sent when ``info`` is ``None``.
    """

    url: str
    body: dict[str, Any]
    headers: Mapping[str, str]
    wire: Wire
    provider: str
    framing: Framing = "sse"
    params: Mapping[str, str] = field(default_factory=dict[str, str])
    method: str = "POST"
    info: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"HttpRequest({self.method} {redact_url(self.url)}, wire={self.wire!r}, provider={self.provider!r})"


class SourceHook(Protocol):
    """Sees and steers the HTTP sources an operator subscribes to (``retry(after_content=
    "resume")`` logs what a stream delivered, then resumes it with another request).

    A source subscribed while :data:`CURRENT_SOURCE_HOOK` holds a hook passes its request and
    subscriber to :meth:`attach`, then sends the request returned, to the subscriber returned.
    """

    def attach(
        self, request: HttpRequest, observer: abc.ObserverBase[ProviderChunk]
    ) -> tuple[HttpRequest, abc.ObserverBase[ProviderChunk]]: ...


CURRENT_SOURCE_HOOK: ContextVar[SourceHook | None] = ContextVar("rxstream_source_hook", default=None)
"""The hook of the operator subscribing right now, read at subscription (like the read gate)."""


def redact_url(url: str) -> str:
    """The URL with user info and secret-looking query parameters replaced by ``REDACTED``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "REDACTED@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = [(k, "REDACTED" if k.lower() in _SECRET_PARAMS else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _request_id(headers: httpx.Headers) -> str | None:
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def _retry_after(headers: httpx.Headers) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms:
        with contextlib.suppress(ValueError):  # malformed: fall back to retry-after
            return float(ms) / 1000.0
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        if when is None:
            return None
        return max(0.0, when.timestamp() - time.time())


def _error_details(body: bytes) -> tuple[str | None, str | None, Any]:
    """(message, code, parsed body) from a provider's error body, whatever its shape."""
    try:
        parsed: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return (text[:500] or None), None, text
    node: Any = parsed
    if isinstance(node, list) and node:  # Gemini wraps errors in a one-element array
        node = node[0]  # pyright: ignore[reportUnknownVariableType]
    if isinstance(node, dict):
        error: Any = node.get("error", node)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        if isinstance(error, dict):
            message = error.get("message")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            code = error.get("code") or error.get("status") or error.get("type")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            return (
                message if isinstance(message, str) else None,
                None if code is None else str(code),  # pyright: ignore[reportUnknownArgumentType]
                parsed,
            )
        if isinstance(error, str):
            return error, None, parsed
    return None, None, parsed


def status_error(
    status: int, headers: httpx.Headers, body: bytes, *, provider: str, url: str, method: str = "POST"
) -> HTTPStatusError:
    """The typed error for a non-2xx answer, keeping status, request id and the error body."""
    message, code, parsed = _error_details(body)
    request_id = _request_id(headers)
    text = (
        f"{provider} answered HTTP {status} to {method} {redact_url(url)}"
        + (f": {message}" if message else "")
        + (f" (code {code})" if code else "")
        + (f" [request id {request_id}]" if request_id else "")
    )
    if status in (401, 403):
        return AuthenticationError(text, status=status, request_id=request_id, body=parsed, code=code)
    if status == 429:
        return RateLimitError(
            text, status=status, request_id=request_id, body=parsed, code=code, retry_after=_retry_after(headers)
        )
    if status >= 500 or status == 529:
        return ProviderUnavailableError(
            text, status=status, request_id=request_id, body=parsed, code=code, retry_after=_retry_after(headers)
        )
    if status in (400, 404, 422):
        return BadRequestError(text, status=status, request_id=request_id, body=parsed, code=code)
    return HTTPStatusError(text, status=status, request_id=request_id, body=parsed, code=code)


def _content_type_ok(framing: Framing, content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    if framing == "sse":
        return kind == "text/event-stream"
    if framing == "json":
        return kind in ("application/json", "text/json", "application/x-ndjson")
    return kind in ("application/x-ndjson", "application/jsonl", "application/json", "text/plain")


def http_source(
    request: HttpRequest,
    *,
    client: httpx.AsyncClient | None = None,
    timeout: float | httpx.Timeout | None = None,
    limits: Limits | None = None,
) -> Observable[ProviderChunk]:
    """A cold observable: each subscription sends ``request`` once and streams its body.

    Runs on the running asyncio loop (subscribe from async code). The first item is the open
    chunk (request, status, headers, request id, ``request_sent_at``/``headers_at`` marks on the
    monotonic clock), then one chunk per decoded payload. Disposing cancels the task and closes
    the response; a second subscriber sends a second (paid) request: fan out with ``share()``.
    When ``aiter(..., overflow="block")`` subscribes, the source waits for the consumer before
    each read of the body. ``limits`` bounds what the body decoder buffers (SSE line and event,
    JSON-array element size and nesting; default :class:`~rxstream.Limits`); the body of an
    error answer is read up to ``max_json_element_bytes``. Subscribed under a
    :class:`SourceHook` (``retry(after_content="resume")``), it sends the request the hook
    returns, to the observer it returns.

    Errors:
        ``AuthenticationError`` (401/403), ``RateLimitError`` (429, ``retry_after``),
        ``BadRequestError`` (400/404/422), ``ProviderUnavailableError`` (5xx, 529),
        ``HTTPStatusError`` (other non-2xx), ``ProtocolError`` (wrong content type, bytes not of
        the framing), ``TransportError`` (connection failed or dropped),
        ``StreamTimeoutError`` (httpx timeout), ``LimitExceededError`` (a line, event or
        element over its limit). Everything decoded before a fault is delivered first.

    Raises:
        ValueError: at call time, for ``limits`` that is not a :class:`~rxstream.Limits`.
    """
    chosen = check_limits(limits, "http_source")

    def subscribe(observer: abc.ObserverBase[ProviderChunk], _: abc.SchedulerBase | None = None) -> abc.DisposableBase:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            observer.on_error(
                RuntimeError(
                    "rxstream HTTP sources run on the running asyncio loop: subscribe from async code "
                    "(await collect(obs), async for ev in aiter(obs)) or use run(obs)"
                )
            )
            return Disposable()
        gate = CURRENT_GATE.get()
        sent, target = request, observer
        hook = CURRENT_SOURCE_HOOK.get()
        if hook is not None:
            try:
                sent, target = hook.attach(request, observer)
            except Exception as exc:  # noqa: BLE001 - reported per Rx grammar
                observer.on_error(exc)
                return Disposable()
        watched = _Watched(target)
        task = loop.create_task(_stream(sent, watched, client, timeout, gate, chosen))

        def cancel() -> None:
            # Once the stream delivered its end, the task is only closing the response: a
            # cancel then (an observer disposes its subscription on error) would interrupt that
            # and leave the connection open.
            if not watched.ended:
                task.cancel()

        return Disposable(cancel)

    return reactivex.create(subscribe)


class _Watched(abc.ObserverBase[ProviderChunk]):
    """The subscriber, and whether the stream delivered its end to it."""

    __slots__ = ("_observer", "ended", "on_next")

    def __init__(self, observer: abc.ObserverBase[ProviderChunk]) -> None:
        self._observer = observer
        self.ended = False
        # An instance slot, not a method: the per-chunk path stays one call (the slot also
        # stands for ObserverBase's abstract on_next).
        self.on_next = observer.on_next

    def on_error(self, error: Exception) -> None:
        self.ended = True
        self._observer.on_error(error)

    def on_completed(self) -> None:
        self.ended = True
        self._observer.on_completed()


async def _stream(
    request: HttpRequest,
    observer: abc.ObserverBase[ProviderChunk],
    client: httpx.AsyncClient | None,
    timeout: float | httpx.Timeout | None,
    gate: Any,
    limits: Limits,
) -> None:
    http = client if client is not None else httpx.AsyncClient(
        timeout=timeout if timeout is not None else 600.0, verify=_ssl_context()
    )
    response: httpx.Response | None = None
    now = time.monotonic_ns
    headers_seen = False
    try:
        built = http.build_request(
            request.method,
            request.url,
            json=None if request.method == "GET" else request.body,
            headers=dict(request.headers),
            params=dict(request.params) if request.params else None,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        sent_at = now()
        response = await http.send(built, stream=True)
        headers_seen = True
        headers_at = now()
        if response.status_code >= 300:
            body = await _read_at_most(response, limits.max_json_element_bytes)
            raise status_error(
                response.status_code,
                response.headers,
                body,
                provider=request.provider,
                url=request.url,
                method=request.method,
            )
        content_type = response.headers.get("content-type", "")
        if not _content_type_ok(request.framing, content_type):
            head = await _read_at_most(response, 200)
            expected = "text/event-stream" if request.framing == "sse" else "application/json"
            raise ProtocolError(
                f"{request.provider} answered {content_type or 'no content type'} to {request.method} "
                f"{redact_url(request.url)}: expected {expected}; body starts {head!r}"
            )
        opened = StreamOpen(
            provider=request.provider,
            request=request.info if request.info is not None else request.body,
            status=response.status_code,
            headers=dict(response.headers),
            request_id=_request_id(response.headers),
            url=redact_url(request.url),
            request_sent_at=sent_at,
            headers_at=headers_at,
        )
        emit = observer.on_next
        wire = request.wire
        emit(ProviderChunk("open", wire, None, None, headers_at, opened))
        decoder = PayloadDecoder(request.framing, limits=limits)
        async for piece in response.aiter_bytes():
            at = now()
            for event, data in decoder.feed(piece):
                emit(ProviderChunk("data", wire, event, data, at))
                # Backpressure per payload, not per read: one read can hold hundreds of
                # payloads, and the consumer's bound is its buffer plus one payload's events.
                if gate is not None and not gate.is_open:
                    await gate.wait()
            if decoder.failure is not None:
                raise decoder.failure
        at = now()
        for event, data in decoder.flush():
            emit(ProviderChunk("data", wire, event, data, at))
        if decoder.failure is not None:
            raise decoder.failure
    except asyncio.CancelledError:
        raise
    except RxStreamError as exc:
        observer.on_error(exc)
        return
    except httpx.TimeoutException as exc:
        kind = "idle" if headers_seen else "first_event"
        error = StreamTimeoutError(
            f"{request.provider}: no {'data' if headers_seen else 'response'} from {request.method} "
            f"{redact_url(request.url)} within the HTTP timeout ({type(exc).__name__})",
            kind=kind,
            seconds=_timeout_seconds(timeout, http),
        )
        error.__cause__ = exc
        observer.on_error(error)
        return
    except httpx.HTTPError as exc:
        where = "while streaming the body" if headers_seen else "before any answer"
        error = TransportError(
            f"{request.provider}: connection to {redact_url(request.url)} failed {where}: "
            f"{type(exc).__name__}: {exc}"
        )
        error.__cause__ = exc
        observer.on_error(error)
        return
    except Exception as exc:  # noqa: BLE001 - a downstream observer raised: report, do not leak the task error
        observer.on_error(exc)
        return
    finally:
        if response is not None:
            await response.aclose()
        if client is None:
            await http.aclose()
    observer.on_completed()


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    """The start of a body that is not the stream (an error answer): never all of an endless one."""
    parts: list[bytes] = []
    size = 0
    async for piece in response.aiter_bytes():
        parts.append(piece)
        size += len(piece)
        if size >= limit:
            break
    return b"".join(parts)[:limit]


_SSL: list[ssl.SSLContext] = []


def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs tens of milliseconds: a subscription that owns its client must
    # not pay it on every request. httpx's own factory, so SSL_CERT_FILE / SSL_CERT_DIR still apply.
    if not _SSL:
        _SSL.append(httpx.create_ssl_context())
    return _SSL[0]


def _timeout_seconds(timeout: float | httpx.Timeout | None, http: httpx.AsyncClient) -> float:
    if isinstance(timeout, (int, float)):
        return float(timeout)
    chosen = timeout if isinstance(timeout, httpx.Timeout) else http.timeout
    return float(chosen.read or chosen.connect or 0.0)
