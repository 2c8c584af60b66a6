"""The one error tree every rxstream failure belongs to.

::

    RxStreamError                      base; `.partial` holds the StreamResult so far when a stream dies
    ├── ProtocolError                  bytes that are not the wire format (bad SSE, bad JSON, wrong content type)
    ├── LimitExceededError             a size or count limit (line, event, arguments, nesting); names the limit
    ├── ProviderError                  the provider said so inside a 200 stream (error event, response.failed)
    ├── HTTPStatusError                a non-2xx answer; status, request id, provider error body
    │   ├── AuthenticationError        401, 403
    │   ├── BadRequestError            400, 404, 422
    │   ├── RateLimitError             429; retry_after
    │   └── ProviderUnavailableError   5xx, 529; retry_after
    ├── TransportError                 connection failed or dropped
    ├── StreamTimeoutError             first event / first content / idle / total; `kind`
    └── JsonError                      JSON in the content that cannot be parsed or validated

Foreign exceptions (httpx, ijson, pydantic, orjson) are translated at the boundary with
``raise ... from exc``; none reaches a subscriber untranslated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rxstream._result import StreamResult

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "HTTPStatusError",
    "JsonError",
    "LimitExceededError",
    "ProtocolError",
    "ProviderError",
    "ProviderUnavailableError",
    "RateLimitError",
    "RxStreamError",
    "StreamTimeoutError",
    "TransportError",
]


class RxStreamError(Exception):
    """Base of every error rxstream raises or delivers through ``on_error``.

    ``partial`` is set by the consumers (``collect()``) to the ``StreamResult`` accumulated
    before the fault, so nothing received is lost.
    """

    partial: StreamResult | None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.partial = None


class ProtocolError(RxStreamError):
    """Raised when bytes are not the expected wire format: malformed SSE or JSON payloads,
    a truncated JSON-array body, an unexpected content type, an undetectable wire."""


class LimitExceededError(RxStreamError):
    """Raised when a configured size or count limit is crossed (an SSE line or event, a JSON
    array element, tool arguments, nesting, outputs, tool calls).

    ``limit`` names the limit (a field of :class:`rxstream.Limits`, e.g.
    ``"max_sse_line_bytes"``), ``value`` its configured bound, ``actual`` what arrived (at
    least that much: counting stops at the first unit over the bound), or None when unknown.
    """

    def __init__(self, message: str, *, limit: str, value: int, actual: int | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value
        self.actual = actual


class ProviderError(RxStreamError):
    """Raised when the provider reports an error inside a successful (200) stream: an SSE
    ``error`` event, an ``error`` object in a chunk, ``response.failed``.

    ``code`` is the provider's error code or type, ``body`` its error payload untouched.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        error_type: str | None = None,
        status: int | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.error_type = error_type
        self.status = status
        self.body = body


class HTTPStatusError(RxStreamError):
    """Raised when the provider answers with a non-2xx status before streaming.

    Keeps ``status``, ``request_id`` and the provider's error ``body``; ``code`` is the
    provider's error code when its body names one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        request_id: str | None = None,
        body: Any = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id
        self.body = body
        self.code = code


class AuthenticationError(HTTPStatusError):
    """Raised on 401 and 403: a missing, wrong or unauthorised API key."""


class BadRequestError(HTTPStatusError):
    """Raised on 400, 404 and 422: the provider rejected the request; the message carries
    the provider's own explanation."""


class RateLimitError(HTTPStatusError):
    """Raised on 429. ``retry_after`` (seconds) comes from ``retry-after-ms`` or
    ``retry-after`` when the provider sent one."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 429,
        request_id: str | None = None,
        body: Any = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id, body=body, code=code)
        self.retry_after = retry_after


class ProviderUnavailableError(HTTPStatusError):
    """Raised on 5xx and 529 (Anthropic's overloaded): worth retrying later. ``retry_after``
    (seconds) comes from ``retry-after-ms`` or ``retry-after`` when the provider sent one."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        request_id: str | None = None,
        body: Any = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id, body=body, code=code)
        self.retry_after = retry_after


class TransportError(RxStreamError):
    """Raised when the connection cannot be made or drops mid-stream."""


class StreamTimeoutError(RxStreamError):
    """Raised when a deadline passes. ``kind`` is ``first_event``, ``first_content``,
    ``idle`` or ``total``; ``seconds`` the deadline that passed."""

    def __init__(self, message: str, *, kind: str, seconds: float) -> None:
        super().__init__(message)
        self.kind = kind
        self.seconds = seconds


class JsonError(RxStreamError):
    """Raised when JSON inside the content (answer text, tool arguments) cannot be parsed or
    does not validate against the requested schema."""
