"""Sources over the official SDKs' stream objects: ``from_openai()`` and ``from_anthropic()``.

The SDKs have already decoded the wire into typed objects; each object is turned back into the
payload it came from (``model_dump(mode="json", exclude_unset=True, by_alias=True)`` gives back
exactly the fields the provider sent, so quirks such as a missing ``finish_reason`` stay visible to
``normalize()``), one ``ProviderChunk`` per object. SDK exceptions are translated at this boundary
into the rxstream error tree with the SDK's exception as the cause; an error the provider reported
inside the 200 stream (which both SDKs raise) becomes the error payload it was, so ``normalize()``
reports it as a :class:`ProviderError` after everything before it, as for any other source.

The SDKs are optional dependencies (the ``sdk`` extra): they are imported when a source is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.scheduler import CurrentThreadScheduler

from rxstream._chunk import ProviderChunk, StreamOpen, Wire
from rxstream._errors import ProtocolError, RxStreamError, TransportError
from rxstream._gate import CURRENT_GATE, ReadGate
from rxstream.sources._http import REQUEST_ID_HEADERS, redact_url, status_error

__all__ = ["from_anthropic", "from_openai"]

_DUMP: dict[str, Any] = {"mode": "json", "exclude_unset": True, "by_alias": True, "warnings": False}

# Events the Anthropic ``MessageStream`` helper derives from the raw ones (never on the wire).
_ANTHROPIC_HELPER_EVENTS = frozenset(
    {"text", "citation", "thinking", "signature", "input_json", "compaction"}
)
# Fields the SDK helpers add to raw events (snapshots of what was accumulated so far).
_HELPER_FIELDS = {
    "content_block_stop": "content_block",
    "message_stop": "message",
}


class _Sdk(ABC):
    """What one SDK needs: its name, its wire for a stream, payloads of its objects, its errors."""

    name: str

    @abstractmethod
    def wire_of(self, stream: Any) -> Wire | None:
        """The wire a stream object speaks, when it can be told before the first item."""

    @abstractmethod
    def payload(self, obj: Any) -> tuple[Wire, str | None, Any] | None:
        """(wire, event name, payload) of one yielded object, or ``None`` for a helper's own event."""

    @abstractmethod
    def translate(
        self, exc: Exception, wire: Wire | None, provider: str | None
    ) -> RxStreamError | ProviderChunk:
        """The rxstream error for an SDK exception, or the payload of an in-stream error."""


def _missing(name: str) -> ImportError:
    return ImportError(f"rxstream.sources.from_{name}() needs the {name} SDK: pip install 'rxstream[sdk]'")


def _dump(obj: Any) -> Any:
    if isinstance(obj, dict):
        return obj  # pyright: ignore[reportUnknownVariableType]
    return obj.model_dump(**_DUMP)


def _foreign(exc: Exception, sdk: str, provider: str | None) -> RxStreamError:
    """An exception neither SDK classified: a transport failure of httpx, bad JSON, or a bug."""
    who = provider or sdk
    module = type(exc).__module__.split(".", 1)[0]
    if module in ("httpx", "httpx2", "httpcore", "anyio"):
        error: RxStreamError = TransportError(
            f"{who}: the connection failed while streaming: {type(exc).__name__}: {exc}"
        )
    elif isinstance(exc, ValueError):
        error = ProtocolError(f"{who}: the stream carried a payload the {sdk} SDK could not decode: {exc}")
    else:
        error = ProtocolError(f"{who}: the {sdk} SDK stream failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def _connection_error(exc: Exception, timeout: type[Exception], who: str) -> RxStreamError:
    what = "timed out" if isinstance(exc, timeout) else "failed"
    cause = exc.__cause__
    detail = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
    return TransportError(f"{who}: the connection {what}: {exc}{detail}")


def _http_error(exc: Any, sdk: str, provider: str | None) -> RxStreamError:
    """A non-2xx answer the SDK raised, typed by status as the HTTP sources type it."""
    response = exc.response
    body = exc.body
    raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
    try:
        url = str(response.request.url)
    except (AttributeError, RuntimeError):
        url = "<unknown url>"
    error = status_error(exc.status_code, response.headers, raw, provider=provider or sdk, url=url)
    error.__cause__ = exc
    return error


class _OpenAI(_Sdk):
    name = "openai"

    def __init__(self) -> None:
        try:
            import openai
        except ImportError as exc:
            raise _missing("openai") from exc
        self.errors = openai

    def wire_of(self, stream: Any) -> Wire | None:
        response = getattr(stream, "response", None)
        try:
            path = response.request.url.path if response is not None else ""
        except (AttributeError, RuntimeError):
            path = ""
        if path.endswith("/responses"):
            return "openai.responses"
        if path.endswith("/completions"):
            return "openai.chat"
        return None

    def payload(self, obj: Any) -> tuple[Wire, str | None, Any] | None:
        kind = getattr(obj, "type", None)
        if kind == "chunk" and hasattr(obj, "chunk"):
            obj = obj.chunk  # the chat helper's wrapper around each raw chunk
            kind = None
        if kind is None or getattr(obj, "object", None) == "chat.completion.chunk":
            return "openai.chat", None, _dump(obj)
        if not isinstance(kind, str) or not (kind.startswith("response.") or kind == "error"):
            return None  # the chat helper's derived events (content.delta, ...)
        data = _dump(obj)
        data.pop("snapshot", None)
        data.pop("parsed", None)
        return "openai.responses", kind, data

    def translate(
        self, exc: Exception, wire: Wire | None, provider: str | None
    ) -> RxStreamError | ProviderChunk:
        errors = self.errors
        if isinstance(exc, errors.APIStatusError):
            return _http_error(exc, self.name, provider)
        if isinstance(exc, errors.APIConnectionError):
            error: RxStreamError = _connection_error(exc, errors.APITimeoutError, provider or self.name)
        elif isinstance(exc, errors.APIResponseValidationError):
            error = ProtocolError(
                f"{provider or self.name}: the answer did not match the SDK's schema: {exc}"
            )
        elif isinstance(exc, errors.APIError):
            # An error payload inside the 200 stream, which the SDK raises instead of yielding.
            body: Any = exc.body if exc.body is not None else {"message": exc.message}
            if wire == "openai.responses":
                return ProviderChunk(
                    "data", wire, "error", {"type": "error", "error": body}, time.monotonic_ns()
                )
            return ProviderChunk("data", wire or "openai.chat", "error", {"error": body}, time.monotonic_ns())
        else:
            return _foreign(exc, self.name, provider)
        error.__cause__ = exc
        return error


class _Anthropic(_Sdk):
    name = "anthropic"

    def __init__(self) -> None:
        try:
            import anthropic
        except ImportError as exc:
            raise _missing("anthropic") from exc
        self.errors = anthropic

    def wire_of(self, stream: Any) -> Wire | None:
        return "anthropic.messages"

    def payload(self, obj: Any) -> tuple[Wire, str | None, Any] | None:
        kind = getattr(obj, "type", None)
        if kind in _ANTHROPIC_HELPER_EVENTS:
            return None
        data = _dump(obj)
        extra = _HELPER_FIELDS.get(kind) if isinstance(kind, str) else None
        if extra is not None:
            data.pop(extra, None)
        return "anthropic.messages", kind if isinstance(kind, str) else None, data

    def translate(
        self, exc: Exception, wire: Wire | None, provider: str | None
    ) -> RxStreamError | ProviderChunk:
        errors = self.errors
        if isinstance(exc, errors.APIStatusError):
            if 200 <= exc.status_code < 300:
                # An ``error`` event inside the 200 stream, which the SDK raises.
                body: Any = exc.body
                if not isinstance(body, dict):
                    body = {"type": "error", "error": {"type": "error", "message": str(body or exc.message)}}
                return ProviderChunk("data", "anthropic.messages", "error", body, time.monotonic_ns())
            return _http_error(exc, self.name, provider)
        if isinstance(exc, errors.APIConnectionError):
            error: RxStreamError = _connection_error(exc, errors.APITimeoutError, provider or self.name)
        elif isinstance(exc, errors.APIResponseValidationError):
            error = ProtocolError(
                f"{provider or self.name}: the answer did not match the SDK's schema: {exc}"
            )
        else:
            return _foreign(exc, self.name, provider)
        error.__cause__ = exc
        return error


def from_openai(
    stream: Any,
    *,
    request: dict[str, Any] | None = None,
    provider: str | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Observable[ProviderChunk]:
    """Provider chunks from an OpenAI SDK stream (Chat Completions or Responses, sync or async).

    ``stream`` is what ``client.chat.completions.create(..., stream=True)`` or
    ``client.responses.create(..., stream=True)`` returns (``Stream`` / ``AsyncStream``, or the
    ``.stream(...)`` helpers' streams and managers), or a zero-argument callable that makes one
    (``lambda: client.chat.completions.create(..., stream=True)``; for the async client it returns
    the coroutine). A stream object holds one HTTP response and can be consumed once: a second
    subscription ends with an :class:`RxStreamError` saying so. A callable makes the source cold:
    one request per subscription (a second subscriber pays for a second request; fan out with
    ``share()``), and the request's own failures (status, connection) arrive typed through
    ``on_error`` instead of being raised by the SDK in your code.

    The first item is the open chunk (``request`` as given, with secrets removed by you; status,
    headers and request id of the SDK's response; the wire from the endpoint), then one data chunk
    per SDK object. Sync streams are read on ``scheduler`` (default: the subscribing thread,
    synchronously); async streams in a task on the running asyncio loop, waiting for the consumer
    between items when ``aiter(..., overflow="block")`` subscribes. Disposing stops reading and
    closes the SDK stream (a sync stream read on another thread stops at its next item); so does
    the end of the stream, whatever ended it.

    Args:
        stream: the SDK stream, stream helper (manager), or a callable that creates one.
        request: what was asked, for the open chunk and ``stream.start`` (remove secrets).
        provider: who answers, when it is not what the model name says (a compatible server
            behind ``base_url``); ``normalize()`` guesses from the model otherwise.
        scheduler: where a sync stream is read (default: synchronously on subscribe).

    Errors:
        ``AuthenticationError`` / ``BadRequestError`` / ``RateLimitError`` (``retry_after``) /
        ``ProviderUnavailableError`` / ``HTTPStatusError`` for the SDK's ``APIStatusError``
        by status, ``TransportError`` for ``APIConnectionError`` (timeouts included),
        ``ProtocolError`` for answers the SDK could not read; the SDK exception is the cause.
        An error the provider sent inside the stream is passed on as its payload, which
        ``normalize()`` turns into :class:`ProviderError`.
    """
    return _sdk_source(_OpenAI(), stream, request=request, provider=provider, scheduler=scheduler)


def from_anthropic(
    stream: Any,
    *,
    request: dict[str, Any] | None = None,
    provider: str | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Observable[ProviderChunk]:
    """Provider chunks from an Anthropic SDK stream (Messages, sync or async).

    ``stream`` is what ``client.messages.create(..., stream=True)`` returns (``Stream`` /
    ``AsyncStream`` of raw events), a ``client.messages.stream(...)`` manager or the
    ``MessageStream`` it opens (only its raw events are used, never its derived ``text`` /
    ``thinking`` / ... events or snapshots), or a zero-argument callable that makes one. A stream
    object can be consumed once: a second subscription ends with an :class:`RxStreamError`; a
    callable makes the source cold (one request per subscription) and reports the request's own
    failures through ``on_error``.

    Items, threading, backpressure, disposal and errors are as for :func:`from_openai`; an
    ``error`` event inside the stream (``overloaded_error``...) is passed on as its payload, which
    ``normalize()`` turns into :class:`ProviderError`. ``ping`` events never reach the source (the
    SDK drops them).
    """
    return _sdk_source(_Anthropic(), stream, request=request, provider=provider, scheduler=scheduler)


# -- the shared source ----------------------------------------------------------------------------


class _Run:
    """One subscription's state, shared by the reader and ``dispose``."""

    __slots__ = ("acted", "cancelled", "lock", "pending", "reading", "started", "stream", "task")

    def __init__(self) -> None:
        self.acted = False
        self.cancelled = False
        self.reading = False
        self.started = False
        self.stream: Any = None
        self.pending: Any = None
        self.task: asyncio.Task[None] | None = None
        self.lock = threading.Lock()


def _is_async(obj: Any) -> bool:
    return (
        inspect.isawaitable(obj)
        or hasattr(obj, "__aiter__")
        or (hasattr(obj, "__aenter__") and not hasattr(obj, "__iter__"))
    )


def _sdk_source(
    sdk: _Sdk,
    stream: Any,
    *,
    request: dict[str, Any] | None,
    provider: str | None,
    scheduler: abc.SchedulerBase | None,
) -> Observable[ProviderChunk]:
    factory: Callable[[], Any] | None = stream if callable(stream) else None
    consumed = False

    def subscribe(
        observer: abc.ObserverBase[ProviderChunk], sched: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        nonlocal consumed
        if factory is None:
            if consumed:
                observer.on_error(
                    RxStreamError(
                        f"this {sdk.name} SDK stream was already consumed by an earlier subscription: a stream "
                        "object holds one HTTP response and can be read once; pass a callable that creates "
                        f"the stream (lambda: client....create(..., stream=True)) for a source that can be "
                        "subscribed again"
                    )
                )
                return Disposable()
            consumed = True
        run = _Run()
        gate = CURRENT_GATE.get()
        run_on = scheduler or sched or CurrentThreadScheduler.singleton()

        def action(_: abc.SchedulerBase, __: Any = None) -> None:
            with run.lock:
                if run.cancelled:
                    return
                run.acted = True
            sent_at = time.monotonic_ns() if factory is not None else None
            try:
                obtained = factory() if factory is not None else stream
            except Exception as exc:  # noqa: BLE001 - the SDK's request failed: typed through on_error
                _fail(observer, sdk.translate(exc, None, provider), request, provider)
                return
            if _is_async(obtained):
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    if inspect.iscoroutine(obtained):
                        obtained.close()
                    observer.on_error(
                        RxStreamError(
                            f"an async {sdk.name} SDK stream is read on the running asyncio loop: subscribe "
                            "from async code (await collect(obs), async for ev in aiter(obs))"
                        )
                    )
                    return
                run.pending = obtained
                run.task = loop.create_task(
                    _read_async(sdk, run, obtained, observer, gate, request, provider, sent_at)
                )
            else:
                _read_sync(sdk, run, obtained, observer, request, provider, sent_at)

        scheduled = run_on.schedule(action)

        def dispose() -> None:
            with run.lock:
                if run.cancelled:
                    return
                run.cancelled = True
                reading = run.reading
                acted = run.acted
            scheduled.dispose()
            task = run.task
            if not acted:
                # Never read: a stream object given to the source is closed here, or nobody would.
                if factory is None:
                    _close_soon(stream)
            elif task is not None:
                task.cancel()
                if not run.started:
                    # The task never ran: nothing it would have closed is open yet but its input.
                    _close_soon(run.pending)
            elif run.stream is not None and not reading:
                _close_soon(run.stream)

        return Disposable(dispose)

    return reactivex.create(subscribe)


def _fail(
    observer: abc.ObserverBase[ProviderChunk],
    outcome: RxStreamError | ProviderChunk,
    request: dict[str, Any] | None,
    provider: str | None,
) -> None:
    """Report a failure to make the stream: a typed error, or (an in-stream error the SDK raised
    while opening) the error payload after an open chunk that knows only the request."""
    if isinstance(outcome, ProviderChunk):
        opened = StreamOpen(provider=provider, request=request)
        observer.on_next(ProviderChunk("open", outcome.wire, None, None, outcome.at, opened))
        observer.on_next(outcome)
        observer.on_completed()
    else:
        observer.on_error(outcome)


def _open_chunk(
    sdk: _Sdk, stream: Any, request: dict[str, Any] | None, provider: str | None, sent_at: int | None
) -> ProviderChunk:
    now = time.monotonic_ns()
    response = getattr(stream, "response", None)
    headers: dict[str, str] = {}
    status: int | None = None
    url: str | None = None
    if response is not None:
        # SDK helper streams and mocks may lack parts of a response: the open chunk then has less.
        with contextlib.suppress(AttributeError, RuntimeError, TypeError):
            headers = dict(response.headers)
            status = response.status_code
            url = redact_url(str(response.request.url))
    request_id = next((headers[name] for name in REQUEST_ID_HEADERS if headers.get(name)), None)
    opened = StreamOpen(
        provider=provider,
        request=request,
        status=status,
        headers=headers,
        request_id=request_id,
        url=url,
        request_sent_at=sent_at,
        headers_at=now if sent_at is not None else None,
    )
    return ProviderChunk("open", sdk.wire_of(stream), None, None, now, opened)


def _enter(obtained: Any) -> Any:
    """The stream itself, entering a helper's manager (``messages.stream(...)``) when given one."""
    if not hasattr(obtained, "__iter__") and hasattr(obtained, "__enter__"):
        return obtained.__enter__()
    return obtained


def _read_sync(
    sdk: _Sdk,
    run: _Run,
    obtained: Any,
    observer: abc.ObserverBase[ProviderChunk],
    request: dict[str, Any] | None,
    provider: str | None,
    sent_at: int | None,
) -> None:
    try:
        stream = _enter(obtained)
    except Exception as exc:  # noqa: BLE001 - the helper's request failed
        _fail(observer, sdk.translate(exc, None, provider), request, provider)
        return
    run.stream = stream
    with run.lock:
        if run.cancelled:
            _close_soon(stream)
            return
        run.reading = True
    emit = observer.on_next
    now = time.monotonic_ns
    try:
        opened = _open_chunk(sdk, stream, request, provider, sent_at)
        wire = opened.wire
        emit(opened)
        iterator = iter(stream)
        while not run.cancelled:
            try:
                obj = next(iterator)
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 - translated at the boundary
                outcome = sdk.translate(exc, wire, provider)
                if isinstance(outcome, ProviderChunk):
                    emit(outcome)
                    break
                observer.on_error(outcome)
                return
            item = sdk.payload(obj)
            if item is not None:
                wire = item[0]
                emit(ProviderChunk("data", item[0], item[1], item[2], now()))
        if not run.cancelled:
            observer.on_completed()
    finally:
        run.reading = False
        _close_sync(stream)


async def _read_async(
    sdk: _Sdk,
    run: _Run,
    obtained: Any,
    observer: abc.ObserverBase[ProviderChunk],
    gate: ReadGate | None,
    request: dict[str, Any] | None,
    provider: str | None,
    sent_at: int | None,
) -> None:
    run.started = True
    stream: Any = None
    emit = observer.on_next
    now = time.monotonic_ns
    try:
        try:
            stream = await obtained if inspect.isawaitable(obtained) else obtained
            if not hasattr(stream, "__aiter__") and hasattr(stream, "__aenter__"):
                stream = await stream.__aenter__()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the SDK's request failed: typed through on_error
            _fail(observer, sdk.translate(exc, None, provider), request, provider)
            return
        run.stream = stream
        opened = _open_chunk(sdk, stream, request, provider, sent_at)
        wire = opened.wire
        emit(opened)
        iterator = stream.__aiter__()
        while True:
            if gate is not None:
                await gate.wait()
            try:
                obj = await iterator.__anext__()
            except StopAsyncIteration:
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - translated at the boundary
                outcome = sdk.translate(exc, wire, provider)
                if isinstance(outcome, ProviderChunk):
                    emit(outcome)
                    break
                observer.on_error(outcome)
                return
            item = sdk.payload(obj)
            if item is not None:
                wire = item[0]
                emit(ProviderChunk("data", item[0], item[1], item[2], now()))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a downstream observer raised: report, do not leak the task error
        observer.on_error(exc)
        return
    finally:
        if stream is not None:
            await _close_async(stream)
    observer.on_completed()


# Closing is best effort: the stream's outcome was already reported, a failure to close adds nothing.


def _close_sync(stream: Any) -> None:
    close = getattr(stream, "close", None)
    if close is None:
        return
    with contextlib.suppress(Exception):
        result = close()
        if inspect.isawaitable(result):
            _close_soon_awaitable(result)


async def _close_async(stream: Any) -> None:
    close = getattr(stream, "close", None)
    if close is None:
        return
    with contextlib.suppress(Exception):
        result = close()
        if inspect.isawaitable(result):
            await result


def _close_soon(obj: Any) -> None:
    """Close a stream (or drop an unawaited coroutine) that no reader will close."""
    if obj is None:
        return
    if inspect.iscoroutine(obj):
        obj.close()
        return
    _close_sync(obj)


# Closing tasks started from synchronous code, kept referenced until they finish.
_CLOSING: set[asyncio.Task[None]] = set()


def _close_soon_awaitable(result: Any) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        if inspect.iscoroutine(result):
            result.close()
        return
    task = loop.create_task(_await(result))
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


async def _await(result: Any) -> None:
    with contextlib.suppress(Exception):
        await result
