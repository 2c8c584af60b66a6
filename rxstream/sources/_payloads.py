"""From body bytes to provider payloads: SSE, JSON Lines and Gemini JSON-array framings."""

from __future__ import annotations

from typing import Any, Literal

import orjson

from rxstream._errors import LimitExceededError, ProtocolError
from rxstream.sources._sse import DEFAULT_MAX_BYTES, JSONArrayDecoder, ServerSentEvent, SSEDecoder

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

    SSE ``[DONE]`` and empty data are dropped; every other data field must be JSON. When one
    is not, ``feed``/``flush`` return the payloads decoded before it and set ``failure`` to a
    :class:`ProtocolError` naming the event and what arrived; nothing is decoded after that.
    Framing faults (a truncated JSON array, a size limit) raise.
    """

    __slots__ = ("_count", "_framing", "_json", "_line_buf", "_max", "_sse", "failure")

    def __init__(self, framing: Framing, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._framing = framing
        self._max = max_bytes
        self._sse = SSEDecoder(max_line_bytes=max_bytes, max_event_bytes=max_bytes) if framing == "sse" else None
        self._json = JSONArrayDecoder(max_item_bytes=max_bytes) if framing == "json" else None
        self._line_buf = b""
        self._count = 0
        self.failure: ProtocolError | None = None

    def feed(self, data: bytes) -> list[tuple[str | None, Any]]:
        """Decode the payloads completed by ``data``."""
        if self._sse is not None:
            return self._sse_payloads(self._sse.feed(data)) if self.failure is None else []
        if self._json is not None:
            return [(None, item) for item in self._json.feed(data)]
        return self._lines(data, final=False)

    def flush(self) -> list[tuple[str | None, Any]]:
        """End of body: what the last bytes completed (a trailing event without its blank line
        is dispatched); a truncated JSON array raises :class:`ProtocolError`."""
        if self._sse is not None:
            return self._sse_payloads(self._sse.flush()) if self.failure is None else []
        if self._json is not None:
            return [(None, item) for item in self._json.flush()]
        return self._lines(b"", final=True)

    def _sse_payloads(self, events: list[ServerSentEvent]) -> list[tuple[str | None, Any]]:
        out: list[tuple[str | None, Any]] = []
        try:
            for ev in events:
                text = ev.data
                # [DONE] and empty data carry no payload.
                if text and text != "[DONE]":
                    out.append((ev.event, _loads(text)))
        except _JSONDecodeError as exc:
            self.failure = self._json_error(events, out)
            self.failure.__cause__ = exc
        self._count += len(events)
        return out

    def _json_error(self, events: list[ServerSentEvent], decoded: list[tuple[str | None, Any]]) -> ProtocolError:
        # Find the event that failed: the first one after those decoded.
        payloads = [ev for ev in events if ev.data and ev.data != "[DONE]"]
        bad = payloads[len(decoded)]
        number = self._count + events.index(bad) + 1
        name = f" {bad.event!r}" if bad.event else ""
        return ProtocolError(f"SSE event{name} #{number}: expected a JSON payload in data, got {bad.data[:120]!r}")

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
        if self.failure is not None:
            return out
        for line in lines:
            if not line.strip():
                continue
            self._count += 1
            try:
                out.append((None, _loads(line)))
            except _JSONDecodeError as exc:
                self.failure = ProtocolError(
                    f"JSON Lines line #{self._count}: expected one JSON payload, got {line[:120]!r}"
                )
                self.failure.__cause__ = exc
                break
        return out
