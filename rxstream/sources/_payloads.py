"""From body bytes to provider payloads: SSE, JSON Lines and Gemini JSON-array framings."""

from __future__ import annotations

from typing import Any, Literal

import orjson

from rxstream._errors import LimitExceededError, ProtocolError
from rxstream.sources._sse import DEFAULT_MAX_BYTES, JSONArrayDecoder, SSEDecoder

__all__ = ["Framing", "PayloadDecoder", "framing_for_path"]

Framing = Literal["sse", "jsonl", "json"]

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


def framing_for_path(path: str) -> Framing:
    """The framing of a recording, by file extension (``.sse``, ``.jsonl``, ``.json``)."""
    lowered = path.lower()
    if lowered.endswith(".jsonl") or lowered.endswith(".ndjson"):
        return "jsonl"
    if lowered.endswith(".json"):
        return "json"
    return "sse"


class PayloadDecoder:
    """Pure ``feed(bytes) -> [(event name, payload)]`` / ``flush()`` over one framing.

    SSE ``[DONE]`` and empty data are dropped; every other data field must be JSON
    (:class:`ProtocolError` otherwise, naming the event and what arrived).
    """

    __slots__ = ("_count", "_framing", "_json", "_line_buf", "_max", "_sse")

    def __init__(self, framing: Framing, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._framing = framing
        self._max = max_bytes
        self._sse = SSEDecoder(max_line_bytes=max_bytes, max_event_bytes=max_bytes) if framing == "sse" else None
        self._json = JSONArrayDecoder(max_item_bytes=max_bytes) if framing == "json" else None
        self._line_buf = b""
        self._count = 0

    def feed(self, data: bytes) -> list[tuple[str | None, Any]]:
        """Decode the payloads completed by ``data``."""
        if self._sse is not None:
            out: list[tuple[str | None, Any]] = []
            for ev in self._sse.feed(data):
                self._payload(ev.event, ev.data, out)
            return out
        if self._json is not None:
            return [(None, item) for item in self._json.feed(data)]
        return self._lines(data, final=False)

    def flush(self) -> list[tuple[str | None, Any]]:
        """End of body: what the last bytes completed (a trailing event without its blank line
        is dispatched); a truncated JSON array raises :class:`ProtocolError`."""
        if self._sse is not None:
            out: list[tuple[str | None, Any]] = []
            for ev in self._sse.flush():
                self._payload(ev.event, ev.data, out)
            return out
        if self._json is not None:
            return [(None, item) for item in self._json.flush()]
        return self._lines(b"", final=True)

    def _payload(self, event: str | None, data: str, out: list[tuple[str | None, Any]]) -> None:
        self._count += 1
        if not data or data == "[DONE]":
            return
        try:
            out.append((event, _loads(data)))
        except _JSONDecodeError as exc:
            name = f" {event!r}" if event else ""
            raise ProtocolError(
                f"SSE event{name} #{self._count}: expected a JSON payload in data, got {data[:120]!r}"
            ) from exc

    def _lines(self, data: bytes, *, final: bool) -> list[tuple[str | None, Any]]:
        buf = self._line_buf + data if self._line_buf else data
        lines = buf.split(b"\n")
        if final:
            self._line_buf = b""
        else:
            self._line_buf = lines.pop()
            if len(self._line_buf) > self._max:
                raise LimitExceededError(
                    f"JSON Lines line exceeds max_bytes={self._max} (got {len(self._line_buf)} bytes "
                    "without a line break)",
                    limit="max_bytes",
                    value=self._max,
                )
        out: list[tuple[str | None, Any]] = []
        for line in lines:
            if not line.strip():
                continue
            self._count += 1
            try:
                out.append((None, _loads(line)))
            except _JSONDecodeError as exc:
                raise ProtocolError(
                    f"JSON Lines line #{self._count}: expected one JSON payload, got {line[:120]!r}"
                ) from exc
        return out
