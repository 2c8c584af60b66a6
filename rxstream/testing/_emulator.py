"""ProviderEmulator: a loopback HTTP server that replays recorded streams in each provider's wire format.

It speaks four endpoints (OpenAI chat completions, OpenAI Responses, Anthropic Messages, Gemini
``streamGenerateContent``), answers each request with a recording of that wire, paced as asked, and
injects faults on demand: an HTTP error status, an in-stream provider error, a dropped connection,
a stall, a payload that is not JSON, a line that is no SSE field, a body cut short. Tests and demos point a real HTTP client (or an official SDK) at
``emu.base_url``. ``serve_main`` is the ``rxstream serve`` command.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import logging
import math
import os
import re
import signal
import socket
import sys
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from uvicorn.server import ServerState

from rxstream._cassette import is_cassette, read_cassette
from rxstream._chunk import WIRES, Wire, detect_wire
from rxstream._errors import ProtocolError, RxStreamError
from rxstream.sources import load_recording
from rxstream.sources._payloads import framing_for_path
from rxstream.sources._sse import SSEDecoder

__all__ = ["Fault", "Pace", "ProviderEmulator", "ReceivedRequest", "serve_main"]

_BATCH_BYTES = 16 * 1024

Pace = Literal["fast", "original"] | float
"""How fast a response streams: ``"fast"`` (no delay: events in writes of about 16 KiB, one
loop turn between writes),
``"original"`` (a cassette's recorded gaps; fast for recordings without timing) or a number of
events per second."""

DEFAULT_RECORDINGS = Path(__file__).parent / "recordings"

RECORDING_HEADER = "x-rxstream-recording"
PACE_HEADER = "x-rxstream-pace"
FAULT_HEADER = "x-rxstream-fault"

_SUFFIXES = frozenset({".sse", ".jsonl", ".ndjson", ".json"})
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key"}
)
_SECRET_QUERY = frozenset({"key", "api_key", "api-key"})
_REDACTED = "[redacted]"
_EVENT_NAMED_WIRES: frozenset[Wire] = frozenset({"anthropic.messages", "openai.responses"})
_GEMINI_PATH = re.compile(r"/models/([^/]+):streamGenerateContent$")
_STORED_RESPONSE = re.compile(r"/responses/([^/]+)$")
_BACKGROUND_KEPT = 256  # background responses kept for their resume endpoint, newest last
_RESPONSES: Wire = "openai.responses"
_DEPLOYMENT = re.compile(r"/deployments/([^/]+)/")

# What `rxstream serve` and the index page list: one route per wire, with the path a client uses.
_ENDPOINTS: tuple[tuple[Wire, str], ...] = (
    ("openai.chat", "/v1/chat/completions"),
    ("openai.responses", "/v1/responses"),
    ("anthropic.messages", "/v1/messages"),
    ("gemini", "/v1beta/models/{model}:streamGenerateContent[?alt=sse]"),
)

# -- faults ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """A failure the emulator injects into matching requests.

    A fault either answers with an HTTP error ``status`` before streaming (with that provider's
    error body), or alters the stream: after ``N`` events it sends a provider error event
    (``error_after``), closes the connection without finishing the body (``drop_after``), pauses
    (``stall_after`` for ``stall_seconds``), sends a payload that is not JSON (``malformed_after``),
    sends a line that is no SSE field (``garbage_after``), or sends the first half of the next event
    and ends the body there, as if it were whole (``truncate_after``).
    ``N`` counts the recording's events already sent (``0`` = before the first); an ``N`` past the
    end of the recording acts after its last event. Stream faults combine (a stall, then a drop);
    at one position the order is stall, malformed payload, garbage line, then error, drop or
    truncation.

    Given to the emulator's constructor, a fault applies to every request whose path contains
    ``path`` and whose endpoint speaks ``wire`` (both optional), for ``times`` requests (``None``:
    forever), the first matching fault only. Per request the ``x-rxstream-fault`` header carries
    one with the syntax of :meth:`parse`, replacing the constructor's for that request.

    Attributes:
        status: answer with this HTTP status (400-599) and a provider-shaped error body.
        retry_after: seconds, sent as ``retry-after`` (whole seconds, rounded up) and
            ``retry-after-ms`` with a ``status`` answer.
        error_after: send the wire's in-stream error event after this many events, then end the
            body normally.
        drop_after: close the connection after this many events, mid-body.
        stall_after: pause ``stall_seconds`` after this many events.
        stall_seconds: how long a stall lasts.
        malformed_after: send ``data: {not json`` after this many events, then carry on.
        garbage_after: send the line ``this line is no SSE field`` after this many events, then
            carry on (an SSE client ignores it, as the SSE standard says; in Gemini's JSON array it
            is a syntax error).
        truncate_after: after this many events, send the first half of the next event's bytes and
            end the body normally (no connection error: the body is just cut short; past the
            recording's end, a JSON array is left unclosed).
        message: the error message, instead of the provider's usual one.
        path: apply only to request paths containing this text.
        wire: apply only to this wire's endpoint.
        times: apply to this many matching requests, then stop (so a retry succeeds).
    """

    status: int | None = None
    retry_after: float | None = None
    error_after: int | None = None
    drop_after: int | None = None
    stall_after: int | None = None
    stall_seconds: float = 1.0
    malformed_after: int | None = None
    garbage_after: int | None = None
    truncate_after: int | None = None
    message: str | None = None
    path: str | None = None
    wire: Wire | None = None
    times: int | None = None

    def __post_init__(self) -> None:
        stream_faults = {
            "error_after": self.error_after,
            "drop_after": self.drop_after,
            "stall_after": self.stall_after,
            "malformed_after": self.malformed_after,
            "garbage_after": self.garbage_after,
            "truncate_after": self.truncate_after,
        }
        for name, value in stream_faults.items():
            if value is not None and (not _is_int(value) or value < 0):
                raise ValueError(f"Fault.{name} must be an integer >= 0, got {value!r}")
        given = [name for name, value in stream_faults.items() if value is not None]
        if self.status is None and not given:
            raise ValueError(
                "a Fault needs status= or one of error_after=, drop_after=, stall_after=, malformed_after=, "
                "garbage_after=, truncate_after="
            )
        if self.status is not None:
            if not _is_int(self.status) or not 400 <= self.status <= 599:
                raise ValueError(f"Fault.status must be an HTTP error status (400-599), got {self.status!r}")
            if given:
                raise ValueError(
                    f"Fault.status answers before streaming, so it cannot be combined with {', '.join(given)}"
                )
        if self.retry_after is not None and (not _is_number(self.retry_after) or self.retry_after < 0):
            raise ValueError(f"Fault.retry_after must be a number of seconds >= 0, got {self.retry_after!r}")
        if not _is_number(self.stall_seconds) or not 0 < self.stall_seconds < math.inf:
            raise ValueError(
                f"Fault.stall_seconds must be a number of seconds > 0, got {self.stall_seconds!r}"
            )
        if self.wire is not None and self.wire not in WIRES:
            raise ValueError(f"Fault.wire must be one of {', '.join(WIRES)}, got {self.wire!r}")
        if self.times is not None and (not _is_int(self.times) or self.times < 1):
            raise ValueError(f"Fault.times must be an integer >= 1 or None, got {self.times!r}")

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """A fault from its compact form: ``key=value`` pairs separated by ``;``, keys being the
        field names, e.g. ``status=429;retry_after=2``, ``error_after=3``, ``drop_after=5``,
        ``stall_after=2;stall_seconds=0.5``, ``malformed_after=4``, ``garbage_after=1``,
        ``truncate_after=6``, ``status=500;times=1``.

        Raises:
            ValueError: an unknown key, a value of the wrong type, or an invalid combination.
        """
        names = [f.name for f in fields(cls)]
        values: dict[str, Any] = {}
        for part in spec.split(";"):
            if not part.strip():
                continue
            key, sep, raw = part.partition("=")
            key, raw = key.strip(), raw.strip()
            if not sep or key not in names:
                raise ValueError(
                    f"fault spec {spec!r}: expected key=value pairs with keys among {', '.join(names)}, got {part!r}"
                )
            values[key] = _convert(key, raw, spec)
        return cls(**values)

    def matches(self, path: str, wire: Wire) -> bool:
        """Whether this fault targets a request to ``path`` on ``wire``'s endpoint."""
        return (self.path is None or self.path in path) and (self.wire is None or self.wire == wire)


_INT_FIELDS = frozenset(
    {"status", "error_after", "drop_after", "stall_after", "malformed_after", "garbage_after", "truncate_after", "times"}
)
_FLOAT_FIELDS = frozenset({"retry_after", "stall_seconds"})


def _convert(key: str, raw: str, spec: str) -> Any:
    try:
        if key in _INT_FIELDS:
            return int(raw)
        if key in _FLOAT_FIELDS:
            return float(raw)
    except ValueError:
        expected = "an integer" if key in _INT_FIELDS else "a number"
        raise ValueError(f"fault spec {spec!r}: {key} must be {expected}, got {raw!r}") from None
    return raw


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _parse_pace(value: object, *, source: str) -> Pace:
    if value == "fast":
        return "fast"
    if value == "original":
        return "original"
    rate: object = value
    if isinstance(value, str):
        try:
            rate = float(value)
        except ValueError:
            rate = None
    if _is_number(rate) and cast(float, rate) > 0:
        return float(cast(float, rate))
    raise ValueError(
        f"{source} must be 'fast', 'original' or a number of events per second > 0, got {value!r}"
    )


# -- requests ----------------------------------------------------------------------------------


@dataclass(slots=True)
class StreamOutcome:
    """How the streamed body of one request went, filled in while it streams.

    Attributes:
        events_sent: recording events handed to the server so far.
        finished: the body ended normally (an in-stream error or a truncation fault included).
        closed_by_client: the client went away (closed or cancelled the response) before the
            body's end: what ``guard()`` and timeouts do to stop spending.
        dropped: the emulator cut the connection itself (a ``drop`` fault, or it is stopping).
    """

    events_sent: int = 0
    finished: bool = False
    closed_by_client: bool = False
    dropped: bool = False


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request the emulator received, as recorded in ``emu.requests``.

    Secrets never appear: the values of ``authorization``, ``x-api-key``, ``api-key``,
    ``x-goog-api-key`` (and a ``key`` query parameter) read ``"[redacted]"``.

    Attributes:
        method: the HTTP method.
        path: the URL path, without the query.
        query: the query parameters.
        headers: the request headers, names lower-cased.
        body: the decoded JSON body (``None`` when there was none).
        wire: the wire of the endpoint hit, ``None`` for a path that is no endpoint.
        request_id: the id sent back in ``x-request-id`` (Anthropic: ``request-id``).
        status: the HTTP status answered.
        recording: the file name of the recording streamed, if any.
        fault: the fault applied, if any.
        outcome: for a streamed answer, how its body went (live: updated while it streams).
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any
    wire: Wire | None
    request_id: str
    status: int
    recording: str | None = None
    fault: Fault | None = None
    outcome: StreamOutcome | None = None

    @property
    def has_auth(self) -> bool:
        """Whether the request carried credentials (a key header or a ``key`` parameter)."""
        return any(name in self.headers for name in _SECRET_HEADERS) or any(
            k in self.query for k in _SECRET_QUERY
        )


def _redacted(pairs: Iterable[tuple[str, str]], secrets: frozenset[str]) -> dict[str, str]:
    return {name.lower(): _REDACTED if name.lower() in secrets else value for name, value in pairs}


# -- recordings --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Item:
    """One event of a recording: its SSE event name, its data text (JSON or ``[DONE]``) and,
    for a cassette, its offset in seconds from the start of the response."""

    event: str | None
    data: str
    at: float | None = None


@dataclass(frozen=True, slots=True)
class _Recording:
    name: str
    wire: Wire
    model: str | None
    response_id: str | None
    items: tuple[_Item, ...]
    timed: bool

    def named(self, wanted: str) -> bool:
        return wanted in (self.name, Path(self.name).stem)


def _as_dict(value: Any) -> dict[str, Any] | None:
    return cast(dict[str, Any], value) if isinstance(value, dict) else None


def _identity(payloads: Iterable[Any]) -> tuple[str | None, str | None]:
    """The recorded model and response id: the first each payload shape names."""
    model: str | None = None
    response_id: str | None = None
    for payload in payloads:
        top = _as_dict(payload)
        if top is None:
            continue
        for holder in (_as_dict(top.get("response")), _as_dict(top.get("message")), top):
            if holder is None:
                continue
            found = holder.get("model") or holder.get("modelVersion")
            if model is None and isinstance(found, str):
                model = found
            rid = holder.get("id") or holder.get("responseId")
            if response_id is None and isinstance(rid, str):
                response_id = rid
        if model is not None and response_id is not None:
            break
    return model, response_id


def _dumps(payload: Any) -> str:
    return orjson.dumps(payload).decode()


def _cassette(body: bytes, name: str) -> list[tuple[float, str | None, Any]] | None:
    """A cassette's rows (offset in seconds from the response head, event name, payload), or
    ``None`` when the JSON Lines file is not one.

    Two kinds: rxstream's own (``rxstream.cassette`` header, written by ``record()``), whose
    payload offsets count from the open chunk (the emulator sends the head at once) and whose
    recorded end is not replayed (the body just ends after the last payload; ``replay()``
    reproduces a recorded error); and lines ``{"t": seconds, "event": name|null, "data":
    payload}`` on every line.
    """
    if is_cassette(body):
        tape = read_cassette(body, name)
        head = next((chunk.at for chunk in tape.chunks if chunk.kind == "open"), 0)
        recorded = [
            (max(0.0, (chunk.at - head) / 1e9) if tape.timed else 0.0, chunk.event, chunk.data)
            for chunk in tape.chunks
            if chunk.kind == "data"
        ]
        if not recorded:
            raise ProtocolError(
                f"{name}: expected a cassette with payloads to serve, got none (the recorded stream "
                f"ended {tape.end or 'cut short'} before its first payload)"
            )
        return recorded
    rows: list[tuple[float, str | None, Any]] = []
    for number, line in enumerate(body.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = _as_dict(orjson.loads(line))
        except orjson.JSONDecodeError:
            return None
        if row is None or "t" not in row or "data" not in row:
            return None
        at, event = row["t"], row.get("event")
        if not _is_number(at):
            raise ProtocolError(f"{name}: cassette line #{number}: expected seconds in t, got {at!r}")
        if event is not None and not isinstance(event, str):
            raise ProtocolError(
                f"{name}: cassette line #{number}: expected a name or null in event, got {event!r}"
            )
        rows.append((float(at), event, row["data"]))
    return rows or None


def _from_cassette(name: str, rows: list[tuple[float, str | None, Any]]) -> _Recording:
    wire: Wire | None = None
    for event, data in ((event, data) for _, event, data in rows[:64]):
        wire = detect_wire(event, data)
        if wire is not None:
            break
    if wire is None:
        raise ProtocolError(
            f"{name}: cannot tell the wire format of this cassette: expected OpenAI chat, OpenAI Responses, "
            "Anthropic Messages or Gemini payloads in data"
        )
    # A string payload is data text as sent (the [DONE] sentinel); anything else is JSON.
    items = [_Item(event, data if isinstance(data, str) else _dumps(data), at) for at, event, data in rows]
    if wire == "openai.chat" and items[-1].data != "[DONE]":
        items.append(_Item(None, "[DONE]", items[-1].at))
    model, response_id = _identity(data for _, _, data in rows)
    return _Recording(name, wire, model, response_id, tuple(items), timed=True)


def _load(path: Path) -> _Recording:
    """Read one recording file into the events the emulator replays."""
    name = path.name
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise ProtocolError(f"cannot read recording {path}: {exc.strerror or exc}") from exc
    framing = framing_for_path(name)
    if framing == "jsonl":
        rows = _cassette(body, name)
        if rows is not None:
            return _from_cassette(name, rows)
    chunks = load_recording(path)  # decodes and sniffs the wire, raising ProtocolError on bad files
    wire = chunks[0].wire
    if wire is None:  # load_recording raises before this; kept for the type checker
        raise ProtocolError(f"{name}: cannot tell the wire format")
    payloads = [chunk.data for chunk in chunks[1:]]
    if framing == "sse":
        # Replay the recorded events themselves: their names, their exact data text, [DONE].
        decoder = SSEDecoder()
        events = [*decoder.feed(body), *decoder.flush()]
        items = [_Item(ev.event, ev.data) for ev in events]
    else:
        named = wire in _EVENT_NAMED_WIRES
        items: list[_Item] = []
        for payload in payloads:
            fields_ = _as_dict(payload) or {}
            kind = fields_.get("type") if named else None
            items.append(_Item(kind if isinstance(kind, str) else None, _dumps(payload)))
        if wire == "openai.chat":
            items.append(_Item(None, "[DONE]"))
    model, response_id = _identity(payloads)
    return _Recording(name, wire, model, response_id, tuple(items), timed=False)


def _load_all(source: Path) -> list[_Recording]:
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES)
    elif source.is_file():
        paths = [source]
    else:
        raise ValueError(
            f"recordings must be a folder of recordings or one recording file, got {str(source)!r}"
        )
    return [_load(p) for p in paths]


class _Refusal(Exception):
    """A request the emulator answers with an error status (not a fault: a bad request)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


class _Catalog:
    """The recordings by wire, and the per-request choice among them."""

    def __init__(self, recordings: Sequence[_Recording]) -> None:
        self.by_wire: dict[Wire, list[_Recording]] = {wire: [] for wire in WIRES}
        for rec in sorted(recordings, key=lambda r: r.name):
            self.by_wire[rec.wire].append(rec)

    def names(self, wire: Wire) -> list[str]:
        return [rec.name for rec in self.by_wire[wire]]

    def select(self, wire: Wire, wanted: str | None, model: str | None) -> _Recording:
        """The recording named ``wanted``, else the first whose model starts with ``model``,
        else the first of the wire; :class:`_Refusal` (404) when there is none."""
        candidates = self.by_wire[wire]
        if wanted is not None:
            for rec in candidates:
                if rec.named(wanted):
                    return rec
            raise _Refusal(
                404,
                f"no {wire} recording named {wanted!r}; available: {', '.join(self.names(wire)) or 'none'}",
                recordings=self.names(wire),
            )
        if not candidates:
            raise _Refusal(404, f"the emulator has no {wire} recording", recordings=[])
        if model:
            for rec in candidates:
                if rec.model is not None and rec.model.startswith(model):
                    return rec
        return candidates[0]


# -- wire shapes -------------------------------------------------------------------------------

_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "The request was invalid."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "permission_denied", "You are not allowed to access this resource."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "The request was invalid."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}
_GEMINI_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission."),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    ),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}


def _error_body(
    wire: Wire | None, status: int, message: str | None, request_id: str, extra: Mapping[str, Any]
) -> Any:
    """The JSON error body ``wire``'s provider answers ``status`` with."""
    if wire == "anthropic.messages":
        kind, text = _ANTHROPIC_ERRORS.get(
            status, ("api_error" if status >= 500 else "invalid_request_error", "Error")
        )
        return {
            "type": "error",
            "error": {"type": kind, "message": message or text, **extra},
            "request_id": request_id,
        }
    if wire == "gemini":
        state, text = _GEMINI_ERRORS.get(
            status, ("INTERNAL" if status >= 500 else "FAILED_PRECONDITION", "Error")
        )
        return {"error": {"code": status, "message": message or text, "status": state, **extra}}
    kind, code, text = _OPENAI_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, "Error")
    )
    return {"error": {"message": message or text, "type": kind, "param": None, "code": code, **extra}}


def _id_header(wire: Wire | None) -> str:
    return "request-id" if wire == "anthropic.messages" else "x-request-id"


def _error_response(
    wire: Wire | None,
    status: int,
    message: str | None,
    request_id: str,
    *,
    retry_after: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    headers = {_id_header(wire): request_id}
    if retry_after is not None:
        headers["retry-after"] = str(math.ceil(retry_after))
        headers["retry-after-ms"] = str(round(retry_after * 1000))
    body = orjson.dumps(_error_body(wire, status, message, request_id, extra or {}))
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _prefill_of(body: Mapping[str, Any]) -> str | None:
    """The text of a final assistant turn of an Anthropic request (a prefill), if any."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = _as_dict(cast(list[Any], messages)[-1])
    if last is None or last.get("role") != "assistant":
        return None
    content = last.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    parts: list[str] = []
    for block in cast(list[Any], content):
        fields_ = _as_dict(block)
        text = fields_.get("text") if fields_ is not None else None
        if not isinstance(text, str):
            return None
        parts.append(text)
    return "".join(parts)


def _text_delta(item: _Item) -> tuple[dict[str, Any], str] | None:
    """An Anthropic ``text_delta`` event's payload and text."""
    try:
        payload = _as_dict(orjson.loads(item.data))
    except orjson.JSONDecodeError:
        return None
    if payload is None or payload.get("type") != "content_block_delta":
        return None
    delta = _as_dict(payload.get("delta"))
    text = delta.get("text") if delta is not None and delta.get("type") == "text_delta" else None
    return (payload, text) if isinstance(text, str) else None


def _continued(rec: _Recording, prefill: str | None) -> _Recording:
    """``rec`` answering a turn prefilled with ``prefill``: its text deltas less the prefill."""
    if not prefill:
        return rec
    deltas = [_text_delta(item) for item in rec.items]
    recorded = "".join(found[1] for found in deltas if found is not None)
    if not recorded.startswith(prefill):
        return rec
    cut = len(prefill)
    items: list[_Item] = []
    for item, found in zip(rec.items, deltas, strict=True):
        if found is not None and cut:
            payload, text = found
            if cut >= len(text):
                cut -= len(text)
                continue
            delta = {**cast(dict[str, Any], payload["delta"]), "text": text[cut:]}
            item = dataclasses.replace(item, data=_dumps({**payload, "delta": delta}))
            cut = 0
        items.append(item)
    return dataclasses.replace(rec, items=tuple(items))


def _sequence_of(item: _Item) -> int:
    """A Responses event's ``sequence_number`` (-1 when it has none)."""
    try:
        payload = _as_dict(orjson.loads(item.data))
    except orjson.JSONDecodeError:
        return -1
    number = payload.get("sequence_number") if payload is not None else None
    return cast(int, number) if _is_int(number) else -1


def _next_sequence(sent: Sequence[_Item]) -> int | None:
    """One past the last Responses ``sequence_number`` sent, when the recording numbers events."""
    for item in reversed(sent):
        try:
            payload = _as_dict(orjson.loads(item.data))
        except orjson.JSONDecodeError:
            continue
        number = payload.get("sequence_number") if payload is not None else None
        if _is_int(number):
            return cast(int, number) + 1
    return None


def _stream_error(
    rec: _Recording, message: str | None, sent: Sequence[_Item]
) -> list[tuple[str | None, str]]:
    """The events ``rec``'s provider sends when it fails mid-stream."""
    if rec.wire == "anthropic.messages":
        error = {"type": "overloaded_error", "message": message or "Overloaded"}
        return [("error", _dumps({"type": "error", "error": error}))]
    if rec.wire == "gemini":
        error = {"code": 503, "message": message or _GEMINI_ERRORS[503][1], "status": "UNAVAILABLE"}
        return [(None, _dumps({"error": error}))]
    text = message or _OPENAI_ERRORS[500][2]
    if rec.wire == "openai.chat":
        return [
            (None, _dumps({"error": {"message": text, "type": "server_error", "param": None, "code": None}}))
        ]
    seq = _next_sequence(sent)
    numbered = {} if seq is None else {"sequence_number": seq}
    failed_numbered = {} if seq is None else {"sequence_number": seq + 1}
    error = {"type": "error", **numbered, "code": "server_error", "message": text, "param": None}
    response: dict[str, Any] = {
        "id": rec.response_id,
        "object": "response",
        "status": "failed",
        "error": {"code": "server_error", "message": text},
        "model": rec.model,
        "output": [],
        "usage": None,
    }
    failed: dict[str, Any] = {"type": "response.failed", **failed_numbered, "response": response}
    return [("error", _dumps(error)), ("response.failed", _dumps(failed))]


class _Framer:
    """Frames one response body: SSE events, or the elements of Gemini's JSON array."""

    __slots__ = ("_array", "_count", "_newline")

    def __init__(self, *, array: bool = False, newline: str = "\n") -> None:
        self._array = array
        self._newline = newline
        self._count = 0

    def item(self, event: str | None, data: str) -> bytes:
        if self._array:
            prefix = "[" if self._count == 0 else "\n,\r\n"
            self._count += 1
            return (prefix + data).encode()
        nl = self._newline
        head = f"event: {event}{nl}" if event else ""
        lines = "".join(f"data: {line}{nl}" for line in data.split("\n"))
        return (head + lines + nl).encode()

    def malformed(self) -> bytes:
        return self.item(None, "{not json")

    def garbage(self) -> bytes:
        if self._array:
            return b"\nthis line is no SSE field\n"
        return f"this line is no SSE field{self._newline}{self._newline}".encode()

    def end(self) -> bytes:
        if not self._array:
            return b""
        return b"[]" if self._count == 0 else b"\n]"


def _route(path: str) -> tuple[Wire | None, str | None]:
    """The wire of the endpoint at ``path`` (any prefix allowed) and the model the path names."""
    if path.endswith("/chat/completions"):
        found = _DEPLOYMENT.search(path)
        return "openai.chat", found.group(1) if found else None
    if path.endswith("/responses"):
        found = _DEPLOYMENT.search(path)
        return "openai.responses", found.group(1) if found else None
    if path.endswith("/messages"):
        return "anthropic.messages", None
    found = _GEMINI_PATH.search(path)
    if found:
        return "gemini", found.group(1)
    return None, None


# -- the server --------------------------------------------------------------------------------


class _ConnectionDrop(Exception):
    """Raised inside a response body to make uvicorn close the connection mid-body."""


class _HideConnectionDrops(logging.Filter):
    """Keeps uvicorn from logging our deliberate drops as application errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _ConnectionDrop)


_DROP_FILTER = _HideConnectionDrops()


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``0``: a free port)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )[0]
    # proto must be IPPROTO_TCP, not 0 (what socket.create_server leaves): asyncio only turns
    # Nagle off (TCP_NODELAY) on accepted sockets that say so, and with Nagle on, every
    # response written in two parts waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, kind, proto)
    try:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen()
    except BaseException:
        sock.close()
        raise
    return sock


async def _settled(state: ServerState, *, timeout: float) -> bool:
    """Wait until the server has no connection and no request task left, at most ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while state.connections or state.tasks:
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.002)
    return True


class ProviderEmulator:
    """A real HTTP server on loopback that streams recorded provider responses, with faults.

    Endpoints (also under any path prefix, e.g. ``/openai/v1/chat/completions`` or Azure's
    ``/openai/deployments/{deployment}/chat/completions?api-version=...``):

    - ``POST /v1/chat/completions``: OpenAI chat completions (``data:`` events, ``[DONE]``).
    - ``POST /v1/responses``: OpenAI Responses (named events).
    - ``POST /v1/messages``: Anthropic Messages (named events; request id in ``request-id``).
    - ``POST /v1beta/models/{model}:streamGenerateContent``: Gemini; with ``?alt=sse`` SSE,
      without it the JSON array streamed element by element.
    - ``GET /v1/responses/{id}?stream=true&starting_after=N``: the events after sequence number
      ``N`` of a background response (a Responses request with ``"background": true``), as
      OpenAI serves them to a client resuming a stream; 404 for an id it does not keep (the
      last 256 background responses are kept).
    - ``GET /``: an index of the endpoints and recordings.

    Every answer streams (whatever the body's ``stream`` says), uncompressed, with the request id
    in ``x-request-id``. Any API key is accepted. Each request is answered with one recording of
    the endpoint's wire: the one the ``x-rxstream-recording`` header names (file name, extension
    optional), else the first whose recorded model starts with the requested model (the body's
    ``model``; Gemini's from the path; Azure's deployment), else the first of the wire by file
    name. ``x-rxstream-pace`` overrides ``pace`` and ``x-rxstream-fault`` (see
    :meth:`Fault.parse`) injects a fault for one request (a resume request included). Unknown
    recordings, wires without one and bad headers are answered 404 / 400 with the provider's
    error shape.

    A background response is the recording with a fresh response id, and a ``sequence_number``
    on every event that had none. An Anthropic request whose last message is a prefilled
    assistant turn is answered as Anthropic does, with the text after the prefill: the
    recording's text less its beginning, when the recorded text starts with the prefill (else
    the recording as it is).

    Recordings are ``.sse`` bodies (their events replayed as recorded), ``.jsonl`` payloads (one
    per line), Gemini ``.json`` arrays, or cassettes whose timing ``pace="original"`` keeps:
    ``.jsonl`` lines ``{"t": seconds, "event": name|null, "data": payload}``, or rxstream
    cassettes written by ``record()`` (payload offsets counted from the recorded response head;
    the recorded end is not replayed: the body ends after the last payload).

    Example::

        async with ProviderEmulator(faults=[Fault(status=429, retry_after=1, times=1)]) as emu:
            client = openai.AsyncOpenAI(base_url=emu.base_url + "/v1", api_key="test")
            ...

    Args:
        recordings: a folder of recordings or one recording file; default: the curated set
            shipped in ``rxstream/testing/recordings``.
        host: the loopback address to bind.
        port: the port; ``0`` picks a free one (read it from :attr:`base_url`).
        pace: ``"fast"``, ``"original"`` or events per second (see :data:`Pace`).
        faults: faults applied to matching requests (see :class:`Fault`).

    Raises:
        ValueError: a bad argument or a missing recordings path.
        ProtocolError: a recording that cannot be read or whose wire cannot be told.
    """

    def __init__(
        self,
        recordings: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        pace: Pace = "fast",
        faults: Sequence[Fault] = (),
    ) -> None:
        if not host:
            raise ValueError(f"host must be an address such as '127.0.0.1', got {host!r}")
        if not _is_int(port) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer in 0-65535 (0 picks a free port), got {port!r}")
        self._pace: Pace = _parse_pace(pace, source="pace")
        faults = tuple(faults)
        for fault in faults:
            if not isinstance(fault, Fault):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise ValueError(f"faults must be Fault instances, got {fault!r}")
        self._faults = faults
        self._remaining: list[int | None] = [fault.times for fault in faults]
        self._catalog = _Catalog(
            _load_all(Path(recordings) if recordings is not None else DEFAULT_RECORDINGS)
        )
        self._host = host
        self._port = port
        self._app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]
        )
        self._background: collections.OrderedDict[str, _Recording] = collections.OrderedDict()
        self._server: uvicorn.Server | None = None
        self._stopping: asyncio.Event | None = None
        self._bound_port: int | None = None
        self.requests: list[ReceivedRequest] = []
        """Every request received, in order of arrival (secrets redacted)."""

    # -- public surface

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server (no trailing slash)."""
        if self._bound_port is None:
            raise RuntimeError(
                "the emulator is not running: use `async with ProviderEmulator(...)` or await start()"
            )
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._bound_port}"

    @property
    def recordings(self) -> dict[Wire, list[str]]:
        """The recordings' file names by wire, in the order selection tries them."""
        return {wire: self._catalog.names(wire) for wire in WIRES}

    async def start(self) -> None:
        """Bind the port and start serving on the running event loop.

        Raises:
            RuntimeError: already running.
            OSError: the address cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        sock = _listen(self._host, self._port)
        try:
            port = cast(int, sock.getsockname()[1])
            config = uvicorn.Config(
                self._app,
                host=self._host,
                port=port,
                log_level="warning",
                log_config=None,  # leave the application's logging configuration alone
                lifespan="off",
                ws="none",
                access_log=False,
            )
            config.load()
            server = uvicorn.Server(config)
            # What Server.serve() does around startup(). serve() is not used: it takes over the
            # process's signal handlers, and its shutdown sleeps a fixed 0.1 s and polls every
            # 0.1 s, too slow for a test kit that starts a server per test.
            server.lifespan = config.lifespan_class(config)
            logging.getLogger("uvicorn.error").addFilter(_DROP_FILTER)
            await server.startup(sockets=[sock])
        except BaseException:
            sock.close()
            raise
        self._stopping = asyncio.Event()
        self._server, self._bound_port = server, port

    async def stop(self) -> None:
        """Stop serving: streams still running are cut (their clients see an incomplete body),
        the port is closed, every connection and request task is finished. Does nothing when
        not running."""
        server, stopping = self._server, self._stopping
        if server is None or stopping is None:
            return
        self._server = None
        self._bound_port = None
        stopping.set()  # every stream ends at its next event or pause
        for listener in server.servers:
            listener.close()
        state = server.server_state
        for connection in list(state.connections):
            connection.shutdown()  # closes idle keep-alive connections, ends the others after their response
        if not await _settled(state, timeout=1.0):
            # A stream blocked writing to a client that stopped reading never reaches its
            # next event: abort those connections (uvicorn then ends their requests quietly).
            for connection in list(state.connections):
                connection.transport.abort()
            await _settled(state, timeout=1.0)
        for listener in server.servers:
            await listener.wait_closed()

    async def __aenter__(self) -> ProviderEmulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- request handling

    async def _handle(self, request: Request) -> Response:
        request_id = f"req_{uuid.uuid4().hex}"
        path = request.url.path
        route_wire, path_model = _route(path)
        # A stored (background) response's resume endpoint speaks the Responses wire.
        stored = _STORED_RESPONSE.search(path) if route_wire is None else None
        wire: Wire | None = _RESPONSES if stored is not None else route_wire
        headers = _redacted(request.headers.items(), _SECRET_HEADERS)
        query = _redacted(request.query_params.items(), _SECRET_QUERY)
        body: Any = None

        def record(
            status: int,
            recording: str | None = None,
            fault: Fault | None = None,
            outcome: StreamOutcome | None = None,
        ) -> None:
            self.requests.append(
                ReceivedRequest(
                    request.method, path, query, headers, body, wire, request_id, status, recording, fault, outcome
                )
            )

        try:
            if wire is None:
                if request.method in ("GET", "HEAD") and path == "/":
                    record(200)
                    return Response(orjson.dumps(self._index()), media_type="application/json")
                raise _Refusal(
                    404,
                    f"no endpoint at {request.method} {path}",
                    endpoints=[route for _, route in _ENDPOINTS],
                )
            if stored is not None:
                if request.method != "GET":
                    raise _Refusal(405, f"{path} accepts GET (a background response's events), got {request.method}")
            elif request.method != "POST":
                raise _Refusal(405, f"{path} accepts POST, got {request.method}")
            else:
                raw = await request.body()
                if raw.strip():
                    try:
                        body = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        raise _Refusal(400, f"expected a JSON request body, got {raw[:80]!r}") from None
            fault, index = self._fault_for(request.headers.get(FAULT_HEADER), path, wire)
            pace = self._pace_for(request.headers.get(PACE_HEADER))
            if fault is not None and fault.status is not None:
                self._consume(index)
                record(fault.status, fault=fault)
                return _error_response(
                    wire, fault.status, fault.message, request_id, retry_after=fault.retry_after
                )
            if stored is not None:
                rec = self._resumed(stored.group(1), request.query_params)
            else:
                model = path_model or self._model_of(body)
                rec = self._catalog.select(wire, request.headers.get(RECORDING_HEADER), model)
                payload = _as_dict(body)
                if wire == "openai.responses" and payload is not None and payload.get("background") is True:
                    rec = self._keep_background(rec)
                elif wire == "anthropic.messages" and payload is not None:
                    rec = _continued(rec, _prefill_of(payload))
        except _Refusal as refusal:
            record(refusal.status)
            return _error_response(wire, refusal.status, refusal.message, request_id, extra=refusal.extra)
        self._consume(index)
        outcome = StreamOutcome()
        record(200, rec.name, fault, outcome)
        if wire == "gemini" and request.query_params.get("alt") != "sse":
            framer, media_type = _Framer(array=True), "application/json; charset=UTF-8"
        else:
            framer = _Framer(newline="\r\n" if wire == "gemini" else "\n")
            media_type = "text/event-stream; charset=utf-8"
        return StreamingResponse(
            self._body(rec, framer, fault, pace, outcome),
            headers={_id_header(wire): request_id, "cache-control": "no-cache"},
            media_type=media_type,
        )

    def _keep_background(self, rec: _Recording) -> _Recording:
        """``rec`` as a background response: a fresh id (so each request can be resumed on its
        own), a ``sequence_number`` on every event; kept for the resume endpoint."""
        fresh = f"resp_{uuid.uuid4().hex}"
        items: list[_Item] = []
        for number, item in enumerate(rec.items):
            data = item.data.replace(rec.response_id, fresh) if rec.response_id else item.data
            try:
                payload = _as_dict(orjson.loads(data))
            except orjson.JSONDecodeError:
                payload = None
            if payload is not None and "sequence_number" not in payload:
                data = _dumps({**payload, "sequence_number": number})
            items.append(dataclasses.replace(item, data=data))
        kept = dataclasses.replace(rec, response_id=fresh, items=tuple(items))
        self._background[fresh] = kept
        while len(self._background) > _BACKGROUND_KEPT:
            self._background.popitem(last=False)
        return kept

    def _resumed(self, response_id: str, query: Mapping[str, str]) -> _Recording:
        """The events of a kept background response after ``starting_after``."""
        rec = self._background.get(response_id)
        if rec is None:
            raise _Refusal(
                404,
                f"no background response with id {response_id!r}: the emulator keeps the last "
                f"{_BACKGROUND_KEPT} responses requested with \"background\": true",
            )
        if query.get("stream") != "true":
            raise _Refusal(400, "the emulator serves a stored response as a stream only: pass stream=true")
        after = query.get("starting_after")
        if after is None:
            return rec
        try:
            last = int(after)
        except ValueError:
            raise _Refusal(400, f"starting_after must be an integer sequence number, got {after!r}") from None
        return dataclasses.replace(rec, items=tuple(item for item in rec.items if _sequence_of(item) > last))

    def _index(self) -> dict[str, Any]:
        return {
            "service": "rxstream ProviderEmulator",
            "endpoints": {
                **{wire: f"POST {route}" for wire, route in _ENDPOINTS},
                "openai.responses (resume)": "GET /v1/responses/{id}?stream=true&starting_after=N",
            },
            "recordings": self.recordings,
            "headers": [RECORDING_HEADER, PACE_HEADER, FAULT_HEADER],
        }

    @staticmethod
    def _model_of(body: Any) -> str | None:
        payload = _as_dict(body)
        model = payload.get("model") if payload is not None else None
        return model if isinstance(model, str) and model else None

    def _fault_for(self, header: str | None, path: str, wire: Wire) -> tuple[Fault | None, int | None]:
        """The fault for this request (the header's, else the first matching constructor fault
        with uses left) and the constructor fault's index, to consume once it applies."""
        if header is not None:
            try:
                fault = Fault.parse(header)
            except ValueError as exc:
                raise _Refusal(400, f"{FAULT_HEADER}: {exc}") from None
            if fault.path is not None or fault.wire is not None or fault.times is not None:
                raise _Refusal(
                    400, f"{FAULT_HEADER}: path, wire and times only apply to the emulator's faults"
                )
            return fault, None
        for index, fault in enumerate(self._faults):
            if self._remaining[index] != 0 and fault.matches(path, wire):
                return fault, index
        return None, None

    def _consume(self, index: int | None) -> None:
        if index is not None:
            left = self._remaining[index]
            if left is not None:
                self._remaining[index] = left - 1

    def _pace_for(self, header: str | None) -> Pace:
        if header is None:
            return self._pace
        try:
            return _parse_pace(header.strip(), source=PACE_HEADER)
        except ValueError as exc:
            raise _Refusal(400, str(exc)) from None

    async def _pause(self, delay: float) -> bool:
        """Wait ``delay`` seconds (at least one loop turn); ``True`` when the emulator is stopping."""
        stopping = self._stopping
        if stopping is None:
            return True
        if delay <= 0:
            await asyncio.sleep(0)
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stopping.wait()
        return stopping.is_set()

    async def _body(
        self, rec: _Recording, framer: _Framer, fault: Fault | None, pace: Pace, outcome: StreamOutcome
    ) -> AsyncIterator[bytes]:
        """The response body, with what became of it recorded in ``outcome``."""
        frames = self._frames(rec, framer, fault, pace, outcome)
        try:
            async for data in frames:
                yield data
            outcome.finished = True
        except _ConnectionDrop:
            outcome.dropped = True
            raise
        except (asyncio.CancelledError, GeneratorExit):
            # The server stopped sending because the client went away.
            outcome.closed_by_client = True
            raise
        finally:
            await frames.aclose()

    async def _frames(
        self, rec: _Recording, framer: _Framer, fault: Fault | None, pace: Pace, outcome: StreamOutcome
    ) -> AsyncGenerator[bytes, None]:
        """The recording's events on ``pace``'s schedule, with ``fault``."""
        items = rec.items
        count = len(items)
        if pace == "fast" or (pace == "original" and not rec.timed):
            schedule = None
        elif pace == "original":
            schedule = [item.at or 0.0 for item in items]
        else:
            schedule = [i / pace for i in range(count)]

        def at(position: int | None) -> int | None:
            return None if position is None else min(position, count)

        stall = at(fault.stall_after) if fault else None
        malformed = at(fault.malformed_after) if fault else None
        garbage = at(fault.garbage_after) if fault else None
        error = at(fault.error_after) if fault else None
        drop = at(fault.drop_after) if fault else None
        truncate = at(fault.truncate_after) if fault else None
        boundaries = {p for p in (stall, malformed, garbage, error, drop, truncate) if p is not None}
        batch: list[bytes] = []
        batch_size = 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(count + 1):
            if i == stall and fault is not None:
                began = loop.time()
                if await self._pause(fault.stall_seconds):
                    raise _ConnectionDrop("the emulator is stopping")
                start += loop.time() - began  # the rest keeps its own gaps after the stall
            if i == malformed:
                yield framer.malformed()
            if i == garbage:
                yield framer.garbage()
            if i == error and fault is not None:
                for event, data in _stream_error(rec, fault.message, items[:i]):
                    yield framer.item(event, data)
                break
            if i == drop:
                raise _ConnectionDrop(f"fault: connection dropped after {i} events")
            if i == truncate:
                if i < count:
                    whole = framer.item(items[i].event, items[i].data)
                    yield whole[: len(whole) // 2]
                return  # the body ends here, cleanly: no closing bracket, no last events
            if i == count:
                break
            item = items[i]
            if schedule is None:
                # As fast as possible: events go out in writes of about 16 KiB, as a busy server's
                # would, flushed before any fault position so faults still land on their event.
                batch.append(framer.item(item.event, item.data))
                batch_size += len(batch[-1])
                if batch_size >= _BATCH_BYTES or i + 1 in boundaries or i + 1 == count:
                    outcome.events_sent += len(batch)
                    yield b"".join(batch)
                    batch.clear()
                    batch_size = 0
                    if await self._pause(0.0):
                        raise _ConnectionDrop("the emulator is stopping")
                continue
            if await self._pause(start + schedule[i] - loop.time()):
                raise _ConnectionDrop("the emulator is stopping")
            outcome.events_sent += 1
            yield framer.item(item.event, item.data)
        end = framer.end()
        if end:
            yield end


# -- the `rxstream serve` command ----------------------------------------------------------------


def _pace_arg(value: str) -> Pace:
    try:
        return _parse_pace(value, source="--pace")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fault_arg(value: str) -> Fault:
    try:
        return Fault.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rxstream serve",
        description="Serve recorded provider streams over HTTP on loopback (OpenAI chat and Responses, "
        "Anthropic Messages, Gemini), with optional faults, until Ctrl-C.",
    )
    parser.add_argument(
        "--recordings", metavar="DIR", default=None, help="a folder of recordings (default: the curated set)"
    )
    parser.add_argument("--port", type=int, default=8765, help="the port (0 picks a free one; default 8765)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--pace", type=_pace_arg, default="fast", help="fast, original (cassette timing) or events per second"
    )
    parser.add_argument(
        "--fault",
        type=_fault_arg,
        action="append",
        default=[],
        metavar="SPEC",
        help="a fault for every matching request, e.g. 'status=429;retry_after=2;times=1' (repeatable)",
    )
    return parser


def _banner(emu: ProviderEmulator, pace: Pace) -> str:
    lines = [f"rxstream emulator listening on {emu.base_url} (pace {pace}; Ctrl-C to stop)"]
    for wire, route in _ENDPOINTS:
        names = emu.recordings[wire]
        lines.append(f"  POST {emu.base_url}{route}")
        lines.append(f"       {wire}: {', '.join(names) if names else 'no recording'}")
    lines.append(
        f"  per request: {RECORDING_HEADER}: NAME, {PACE_HEADER}: fast|original|RATE, {FAULT_HEADER}: SPEC"
    )
    return "\n".join(lines)


async def _serve_forever(emu: ProviderEmulator, pace: Pace) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    installed: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, done.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # no loop signal handlers here (Windows): Ctrl-C raises KeyboardInterrupt instead
    try:
        async with emu:
            print(_banner(emu, pace), flush=True)
            await done.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def serve_main(argv: Sequence[str] | None = None) -> int:
    """``rxstream serve [--recordings DIR] [--port N] [--host H] [--pace P] [--fault SPEC]...``:
    print the base URL and the endpoints, then serve until Ctrl-C (or SIGTERM).

    Returns:
        0 after a clean stop, 1 when the recordings or the address are unusable, 2 on bad usage.
    """
    try:
        args = _serve_parser().parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: argparse already printed why
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    try:
        emu = ProviderEmulator(
            args.recordings, host=args.host, port=args.port, pace=args.pace, faults=args.fault
        )
    except (ValueError, RxStreamError) as exc:
        print(f"rxstream serve: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(_serve_forever(emu, args.pace))
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how the server is meant to stop
    except OSError as exc:
        print(
            f"rxstream serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    return 0
