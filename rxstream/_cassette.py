"""Cassettes: rxstream's file format for a recorded provider stream with its timing (write and read).

A cassette is JSON Lines. The first line names the format and its version; then one line per
:class:`ProviderChunk` in arrival order, the open chunk first; then one terminal line saying how
the stream ended::

    {"format": "rxstream.cassette", "version": 1, "timing": true, "recorded_at": "2025-06-01T12:00:00.000000+00:00", "rxstream": "0.1.0"}
    {"kind": "open", "ms": 212.5, "wire": "openai.chat", "open": {"provider": "openai", "request": {...}, "status": 200, "headers": {...}, "request_id": "req_1", "url": "https://api.openai.com/v1/chat/completions", "request_sent_ms": 0.0, "headers_ms": 212.5}}
    {"kind": "data", "ms": 480.113, "data": {...}}
    {"kind": "data", "ms": 480.113, "event": "content_block_delta", "data": {...}}
    {"kind": "complete", "ms": 1502.0}

``ms`` is the arrival offset in milliseconds (microsecond precision) from the moment the request
was sent (the open chunk's ``request_sent_at`` mark, else the first chunk's arrival), on the
source's own clock. ``wire`` appears on a line only when it differs from the line before;
``event`` only when the payload had an SSE event name. The terminal line is ``complete``,
``error`` (``type``, ``message``, the error's typed ``fields`` such as ``status`` or
``retry_after``, and its ``cause``) or ``dispose`` (the consumer stopped the stream); a cassette
with no terminal line was cut short. Written with ``timing=False``, lines carry no ``ms`` and the
header says ``"timing": false``.

Secrets never reach a cassette: request headers are not recorded at all, secret-named fields of
the request (``api_key``, ``authorization``, ``key``, ``token``...), secret response headers
(``set-cookie``...), ``Bearer``/``Basic`` credentials and secret query parameters of any URL
(``key=``, ``api-key=``, ``sig=``...) read ``[redacted]``.
"""

from __future__ import annotations

import inspect
import io
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Literal, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from rxstream import _errors
from rxstream._chunk import WIRES, ProviderChunk, StreamOpen, Wire
from rxstream._errors import ProtocolError, RxStreamError

__all__ = [
    "CASSETTE_FORMAT",
    "CASSETTE_VERSION",
    "Cassette",
    "CassetteEnd",
    "CassetteTarget",
    "CassetteWriter",
    "RecordedError",
    "is_cassette",
    "read_cassette",
    "redact",
]

CASSETTE_FORMAT = "rxstream.cassette"
CASSETTE_VERSION = 1
REDACTED = "[redacted]"

CassetteEnd = Literal["complete", "error", "dispose"]
CassetteTarget = str | os.PathLike[str] | IO[bytes] | IO[str]

# Names compared lower-cased with "-" read as "_". Only string values are redacted, so a tool
# parameter schema named "token" or "key" (a dict) is kept.
_SECRET_NAMES = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "x_api_key",
        "api_key",
        "apikey",
        "x_goog_api_key",
        "key",
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "client_secret",
        "secret",
        "password",
        "cookie",
        "set_cookie",
        "sig",
        "signature",
    }
)
_CREDENTIAL_SCHEMES = ("bearer ", "basic ")
_ERROR_FIELDS = (
    "status",
    "request_id",
    "code",
    "error_type",
    "retry_after",
    "body",
    "limit",
    "value",
    "kind",
    "seconds",
)
_US = 1000  # ns per microsecond


def _secret_name(name: str) -> bool:
    return name.lower().replace("-", "_") in _SECRET_NAMES


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = REDACTED + "@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = [(k, REDACTED if _secret_name(k) else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="[]")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_string(value: str) -> str:
    lowered = value[:8].lower()
    if lowered.startswith(_CREDENTIAL_SCHEMES):
        return value.split(" ", 1)[0] + " " + REDACTED
    if lowered.startswith(("http://", "https://")) and ("?" in value or "@" in value):
        return _redact_url(value)
    return value


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with secrets replaced by ``[redacted]``: string values of
    secret-named keys, ``Bearer``/``Basic`` credentials, secret query parameters and user info
    of URLs. Other values are returned as they are (not copied)."""
    if isinstance(value, str):
        return _redact_string(value)
    if isinstance(value, Mapping):
        mapping = cast(Mapping[Any, Any], value)
        return {
            k: REDACTED if isinstance(k, str) and isinstance(v, str) and _secret_name(k) else redact(v)
            for k, v in mapping.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in cast(list[Any], value)]
    return value


def _json_default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, set | frozenset):
        return list(cast(set[Any], value))
    return repr(value)


def _dumps(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row, default=_json_default) + b"\n"


def _ms(ns: int) -> float:
    """ns -> ms rounded to the microsecond (read back exactly by :func:`_ns_of_ms`)."""
    return ((ns + 500) // _US) / 1000


def _ns_of_ms(ms: float) -> int:
    return round(ms * 1000) * _US


# -- writing -----------------------------------------------------------------------------------


class CassetteWriter:
    """Writes one cassette to a path or an open file, buffered.

    Lines collect in memory and go to the file in one ``write`` when ``buffer_bytes`` have
    built up, and on the terminal line (``complete``/``fail``/``dispose``), which also flushes
    the file and closes it when the writer opened it. A file given open is left open.

    Raises:
        RxStreamError: the path cannot be opened, or a write fails (cause attached).
    """

    __slots__ = (
        "_buffer",
        "_clock",
        "_closed",
        "_file",
        "_last_at",
        "_last_seen",
        "_limit",
        "_name",
        "_origin",
        "_owned",
        "_size",
        "_started",
        "_text",
        "_timing",
        "_wire",
        "chunks",
        "writes",
    )

    def __init__(self, target: CassetteTarget, *, timing: bool = True, buffer_bytes: int = 64 * 1024) -> None:
        self._timing = timing
        self._limit = buffer_bytes
        self._clock = time.monotonic_ns
        self._started = self._clock()
        self._buffer: list[bytes] = []
        self._size = 0
        self._closed = False
        self._origin: int | None = None
        self._last_at = 0
        self._last_seen = self._started
        self._wire: Wire | None = None
        self.chunks = 0
        self.writes = 0
        if isinstance(target, str | os.PathLike):
            self._name = os.fspath(target)
            try:
                self._file: IO[Any] = open(self._name, "wb")  # noqa: SIM115 - closed by the terminal line
            except OSError as exc:
                raise _write_error(self._name, exc, "open") from exc
            self._owned = True
            self._text = False
        else:
            self._name = str(getattr(target, "name", None) or "<file>")
            self._file = target
            self._owned = False
            self._text = isinstance(target, io.TextIOBase)
        from rxstream import __version__

        header = {
            "format": CASSETTE_FORMAT,
            "version": CASSETTE_VERSION,
            "timing": timing,
            "recorded_at": datetime.now(UTC).isoformat(),
            "rxstream": __version__,
        }
        self._append(_dumps(header))

    @property
    def name(self) -> str:
        """The path written to, or the open file's name."""
        return self._name

    def chunk(self, chunk: ProviderChunk) -> None:
        """Add one chunk's line (the first chunk sets the time origin)."""
        row: dict[str, Any] = {"kind": chunk.kind}
        if self._timing:
            if self._origin is None:
                opened = chunk.open
                sent = opened.request_sent_at if opened is not None else None
                self._origin = sent if sent is not None and sent <= chunk.at else chunk.at
            row["ms"] = _ms(chunk.at - self._origin)
            self._last_at = chunk.at
            self._last_seen = self._clock()
        if chunk.wire != self._wire:
            row["wire"] = self._wire = chunk.wire
        if chunk.kind == "open":
            row["open"] = self._open(chunk.open)
        else:
            if chunk.event is not None:
                row["event"] = chunk.event
            row["data"] = chunk.data
        self.chunks += 1
        self._append(_dumps(row))

    def complete(self) -> None:
        """The stream completed: write the ``complete`` line, flush, close."""
        self._end({"kind": "complete"})

    def fail(self, error: BaseException) -> None:
        """The stream failed: write the ``error`` line, flush, close."""
        message = error.message if isinstance(error, RxStreamError) else str(error)
        row: dict[str, Any] = {"kind": "error", "type": type(error).__name__, "message": message}
        fields = {
            name: getattr(error, name) for name in _ERROR_FIELDS if getattr(error, name, None) is not None
        }
        if fields:
            row["fields"] = redact(fields)
        cause = error.__cause__
        if cause is not None:
            row["cause"] = f"{type(cause).__name__}: {cause}"
        self._end(row)

    def dispose(self) -> None:
        """The consumer stopped the stream: write the ``dispose`` line, flush, close."""
        self._end({"kind": "dispose"})

    def close(self) -> None:
        """Close without a terminal line (what a crash leaves: a cassette cut short)."""
        if self._closed:
            return
        self._closed = True
        if self._owned:
            self._file.close()

    def _open(self, opened: StreamOpen | None) -> dict[str, Any] | None:
        if opened is None:
            return None
        origin = self._origin

        def mark(at: int | None) -> float | None:
            return None if at is None or origin is None else _ms(at - origin)

        return {
            "provider": opened.provider,
            "request": redact(opened.request),
            "status": opened.status,
            "headers": {
                k: REDACTED if _secret_name(k) else _redact_string(v) for k, v in opened.headers.items()
            },
            "request_id": opened.request_id,
            "url": _redact_url(opened.url) if opened.url is not None else None,
            "request_sent_ms": mark(opened.request_sent_at),
            "headers_ms": mark(opened.headers_at),
        }

    def _end(self, row: dict[str, Any]) -> None:
        if self._closed:
            return
        if self._timing:
            # The source's clock is not ours (it may be virtual): the end is the last arrival
            # plus the time that passed since, on the monotonic clock.
            since = self._clock() - self._last_seen
            base = self._last_at - self._origin if self._origin is not None else 0
            row = {"kind": row.pop("kind"), "ms": _ms(base + since), **row}
        self._append(_dumps(row))
        try:
            self._write()
            flush = getattr(self._file, "flush", None)
            if callable(flush):
                flush()
        except (OSError, ValueError) as exc:
            raise _write_error(self._name, exc, "write") from exc
        finally:
            self.close()

    def _append(self, line: bytes) -> None:
        if self._closed:
            return
        self._buffer.append(line)
        self._size += len(line)
        if self._size >= self._limit:
            try:
                self._write()
            except (OSError, ValueError) as exc:
                self.close()
                raise _write_error(self._name, exc, "write") from exc

    def _write(self) -> None:
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._size = 0
        self.writes += 1
        self._file.write(data.decode() if self._text else data)


def _write_error(name: str, exc: Exception, what: str) -> RxStreamError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    error = RxStreamError(f"record(): cannot {what} the cassette {name}: {reason}")
    error.__cause__ = exc
    return error


# -- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedError:
    """The error a recorded stream ended with, rebuilt as a fresh exception on each replay."""

    type: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict[str, Any])
    cause: str | None = None

    def build(self) -> RxStreamError:
        """The error as an exception: the recorded rxstream error class with its typed fields;
        an error of another kind (a consumer's bug while recording) as :class:`RxStreamError`
        naming it."""
        cls = getattr(_errors, self.type, None)
        if isinstance(cls, type) and issubclass(cls, RxStreamError):
            accepted = inspect.signature(cls.__init__).parameters
            kwargs = {k: v for k, v in self.fields.items() if k in accepted and k != "message"}
            try:
                error = cls(self.message, **kwargs)
            except TypeError:
                error = RxStreamError(f"{self.type}: {self.message}")
        else:
            error = RxStreamError(f"the recorded stream failed with {self.type}: {self.message}")
        if self.cause is not None:
            error.add_note(f"recorded cause: {self.cause}")
        return error


@dataclass(slots=True)
class Cassette:
    """A recording read into memory: what :func:`rxstream.sources.replay` plays.

    Attributes:
        name: where it was read from (for messages).
        header: the first line (empty for a raw recording).
        chunks: the chunks in order, ``at`` being the recorded offset in ns from the origin
            (the payload's ordinal when ``timed`` is false); the open chunk's marks are
            offsets too.
        timed: whether offsets were recorded.
        end: how the stream ended; ``None`` when the cassette was cut short.
        end_at: the terminal's offset in ns (``None`` when untimed or cut short).
        error: the recorded error when ``end == "error"``.
    """

    name: str
    header: dict[str, Any]
    chunks: list[ProviderChunk]
    timed: bool
    end: CassetteEnd | None
    end_at: int | None = None
    error: RecordedError | None = None


def is_cassette(body: bytes) -> bool:
    """Whether ``body`` is a cassette (its first line names the format)."""
    start = len(body) - len(body.lstrip())
    end = body.find(b"\n", start)
    first = body[start:] if end < 0 else body[start:end]
    if not first.startswith(b"{") or CASSETTE_FORMAT.encode() not in first:
        return False
    try:
        header: Any = orjson.loads(first)
    except orjson.JSONDecodeError:
        return False
    return isinstance(header, dict) and cast(dict[str, Any], header).get("format") == CASSETTE_FORMAT


_ENDS: frozenset[str] = frozenset({"complete", "error", "dispose"})


def read_cassette(body: bytes, name: str = "<cassette>") -> Cassette:
    """Parse a cassette.

    A last line without its line break that is not valid JSON is what an interrupted write
    leaves: the cassette is then read as cut short (``end=None``), not refused.

    Raises:
        ProtocolError: not a cassette, a newer version, or a line that is not one of the
            format's (the message names the line and what arrived).
    """
    lines = body.split(b"\n")
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise ProtocolError(f"{name}: expected a cassette, got an empty file")
    number, first = numbered[0]
    try:
        header_value: Any = orjson.loads(first)
    except orjson.JSONDecodeError:
        header_value = None
    if (
        not isinstance(header_value, dict)
        or cast(dict[str, Any], header_value).get("format") != CASSETTE_FORMAT
    ):
        raise ProtocolError(
            f'{name}: expected a cassette header line {{"format": "{CASSETTE_FORMAT}", ...}}, got {first[:120]!r}'
        )
    header = cast(dict[str, Any], header_value)
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ProtocolError(
            f"{name}: expected an integer version >= 1 in the cassette header, got {version!r}"
        )
    if version > CASSETTE_VERSION:
        raise ProtocolError(
            f"{name}: cassette version {version} was written by a newer rxstream; this one reads "
            f"version {CASSETTE_VERSION}"
        )
    timed = header.get("timing", True) is not False
    chunks: list[ProviderChunk] = []
    wire: Wire | None = None
    end: CassetteEnd | None = None
    end_at: int | None = None
    error: RecordedError | None = None
    cut_short_at = len(lines) if not body.endswith(b"\n") else None
    for number, line in numbered[1:]:
        try:
            row_value: Any = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if number == cut_short_at:
                break  # an interrupted write: read what came before as cut short
            raise ProtocolError(
                f"{name}: cassette line #{number}: expected a JSON object, got {line[:120]!r}"
            ) from exc
        if not isinstance(row_value, dict):
            raise ProtocolError(
                f"{name}: cassette line #{number}: expected a JSON object, got {line[:120]!r}"
            )
        row = cast(dict[str, Any], row_value)
        if end is not None:
            raise ProtocolError(
                f"{name}: cassette line #{number}: expected nothing after the {end!r} line, got {line[:120]!r}"
            )
        kind = row.get("kind")
        at = _offset(row, name, number) if timed else len(chunks)
        if "wire" in row:
            wire = _wire(row["wire"], name, number)
        if kind == "data":
            event = row.get("event")
            if event is not None and not isinstance(event, str):
                raise ProtocolError(
                    f"{name}: cassette line #{number}: expected a name or null in event, got {event!r}"
                )
            chunks.append(ProviderChunk("data", wire, event, row.get("data"), at))
        elif kind == "open":
            chunks.append(
                ProviderChunk("open", wire, None, None, at, _stream_open(row.get("open"), name, number))
            )
        elif kind in _ENDS:
            end = cast(CassetteEnd, kind)
            end_at = at if timed else None
            if kind == "error":
                error = _recorded_error(row, name, number)
        else:
            raise ProtocolError(
                f"{name}: cassette line #{number}: expected kind open, data, complete, error or dispose, got {kind!r}"
            )
    return Cassette(name, header, chunks, timed, end, end_at, error)


def _offset(row: dict[str, Any], name: str, number: int) -> int:
    ms = row.get("ms")
    if not isinstance(ms, int | float) or isinstance(ms, bool):
        raise ProtocolError(
            f"{name}: cassette line #{number}: expected an offset in milliseconds in ms, got {ms!r}"
        )
    return _ns_of_ms(ms)


def _wire(value: Any, name: str, number: int) -> Wire | None:
    if value is None or value in WIRES:
        return value
    raise ProtocolError(
        f"{name}: cassette line #{number}: expected one of {', '.join(WIRES)} or null in wire, got {value!r}"
    )


def _stream_open(value: Any, name: str, number: int) -> StreamOpen | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError(
            f"{name}: cassette line #{number}: expected an object in open, got {value!r}"[:300]
        )
    opened = cast(dict[str, Any], value)

    def mark(key: str) -> int | None:
        ms = opened.get(key)
        return _ns_of_ms(ms) if isinstance(ms, int | float) and not isinstance(ms, bool) else None

    headers = opened.get("headers")
    return StreamOpen(
        provider=opened.get("provider"),
        request=opened.get("request"),
        status=opened.get("status"),
        headers=cast(dict[str, str], headers) if isinstance(headers, dict) else {},
        request_id=opened.get("request_id"),
        url=opened.get("url"),
        request_sent_at=mark("request_sent_ms"),
        headers_at=mark("headers_ms"),
    )


def _recorded_error(row: dict[str, Any], name: str, number: int) -> RecordedError:
    kind, message = row.get("type"), row.get("message")
    if not isinstance(kind, str) or not isinstance(message, str):
        raise ProtocolError(
            f"{name}: cassette line #{number}: expected an error's type and message as strings, got "
            f"{kind!r} and {message!r}"[:300]
        )
    fields = row.get("fields")
    cause = row.get("cause")
    return RecordedError(
        kind,
        message,
        cast(dict[str, Any], fields) if isinstance(fields, dict) else {},
        cause if isinstance(cause, str) else None,
    )
