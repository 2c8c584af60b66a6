"""From body bytes to provider payloads: SSE, JSON Lines and Gemini JSON-array framings."""

from __future__ import annotations

from typing import Any, Literal

import orjson

from rxstream._errors import ProtocolError, RxStreamError
from rxstream._limits import DEFAULT_LIMITS, Limits, limit_exceeded
from rxstream.sources._sse import JSONArrayDecoder, ServerSentEvent, SSEDecoder

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

    SSE ``[DONE]`` and empty data are dropped; every other data field must be JSON. On any
    fault (a payload that is not JSON, bytes that are not the framing, a truncated JSON array,
    a size or nesting limit of ``limits``), ``feed``/``flush`` return the payloads decoded
    before it and set ``failure`` to the :class:`ProtocolError` or
    :class:`~rxstream.LimitExceededError`; nothing is decoded after that. What is returned
    before a fault does not depend on how the body was split into pieces.
    """

    __slots__ = ("_count", "_framing", "_json", "_line_parts", "_line_size", "_max", "_sse", "failure")

    def __init__(self, framing: Framing, *, limits: Limits | None = None) -> None:
        chosen = DEFAULT_LIMITS if limits is None else limits
        self._framing = framing
        self._max = chosen.max_json_element_bytes
        self._sse = SSEDecoder(limits=chosen) if framing == "sse" else None
        self._json = JSONArrayDecoder(limits=chosen) if framing == "json" else None
        # The unterminated last line of a JSON Lines body, in pieces (joined once it ends).
        self._line_parts: list[bytes] = []
        self._line_size = 0
        self._count = 0
        self.failure: RxStreamError | None = None

    def feed(self, data: bytes) -> list[tuple[str | None, Any]]:
        """Decode the payloads completed by ``data``."""
        if self.failure is not None:
            return []
        sse = self._sse
        if sse is not None:
            try:
                events = sse.feed(data)
            except RxStreamError as exc:
                return self._framing_fault(exc, self._sse_payloads(sse.salvage))
            return self._sse_payloads(events)
        json = self._json
        if json is not None:
            try:
                items = json.feed(data)
            except RxStreamError as exc:
                self.failure = exc
                items = json.salvage
            return [(None, item) for item in items]
        return self._lines(data, final=False)

    def flush(self) -> list[tuple[str | None, Any]]:
        """End of body: what the last bytes completed (a trailing event without its blank line
        is dispatched); a truncated JSON array sets ``failure``."""
        if self.failure is not None:
            return []
        sse = self._sse
        if sse is not None:
            try:
                events = sse.flush()
            except RxStreamError as exc:
                return self._framing_fault(exc, self._sse_payloads(sse.salvage))
            return self._sse_payloads(events)
        json = self._json
        if json is not None:
            try:
                items = json.flush()
            except RxStreamError as exc:
                self.failure = exc
                items = json.salvage
            return [(None, item) for item in items]
        return self._lines(b"", final=True)

    def _framing_fault(
        self, exc: RxStreamError, before: list[tuple[str | None, Any]]
    ) -> list[tuple[str | None, Any]]:
        # A payload that was not JSON comes before the framing fault that followed it.
        if self.failure is None:
            self.failure = exc
        return before

    def _sse_payloads(self, events: list[ServerSentEvent]) -> list[tuple[str | None, Any]]:
        out: list[tuple[str | None, Any]] = []
        try:
            for ev in events:
                text = ev.data
                # [DONE] and empty data carry no payload.
                if text and text != "[DONE]":
                    out.append((ev.event, _loads(text)))
        except _JSONDecodeError as exc:
            failure = self.failure = self._json_error(events, out)
            failure.__cause__ = exc
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
        out: list[tuple[str | None, Any]] = []
        parts = self._line_parts
        if b"\n" not in data and not final:
            # A line arriving in many pieces is joined once, when it ends: appending each piece
            # to a growing buffer would copy it once per piece.
            parts.append(data)
            self._line_size += len(data)
            if self._line_size > self._max:
                self._line_fault(self._line_size)
            return out
        if parts:
            parts.append(data)
            data = b"".join(parts)
            parts.clear()
        lines = data.split(b"\n")
        rest = b"" if final else lines.pop()
        for line in lines:
            if len(line) > self._max:
                self._line_fault(len(line))
                return out
            if not line.strip():
                continue
            self._count += 1
            try:
                out.append((None, _loads(line)))
            except _JSONDecodeError as exc:
                failure = self.failure = ProtocolError(
                    f"JSON Lines line #{self._count}: expected one JSON payload, got {line[:120]!r}"
                )
                failure.__cause__ = exc
                return out
        if rest:
            parts.append(rest)
            self._line_size = len(rest)
            if len(rest) > self._max:
                self._line_fault(len(rest))
        else:
            self._line_size = 0
        return out

    def _line_fault(self, size: int) -> None:
        self.failure = limit_exceeded(
            "max_json_element_bytes",
            self._max,
            size,
            f"JSON Lines line #{self._count + 1} too long: got at least {size} bytes without a "
            "line break",
            f"a line break within {self._max} bytes",
        )
        self._line_parts.clear()
