"""ProviderChunk: what a source emits, and wire detection from a first payload."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["WIRES", "ProviderChunk", "StreamOpen", "Wire", "detect_wire"]

Wire = Literal["openai.chat", "openai.responses", "anthropic.messages", "gemini"]
WIRES: tuple[Wire, ...] = ("openai.chat", "openai.responses", "anthropic.messages", "gemini")


@dataclass(slots=True)
class StreamOpen:
    """What a source knows before the first payload: the request and the response head.

    ``request`` is what was asked (model, messages or prompt, response format, tools) with
    secrets removed, or ``None`` for a raw replay. Marks are ns on the source's clock.
    """

    provider: str | None = None
    request: dict[str, Any] | None = None
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict[str, str])
    request_id: str | None = None
    url: str | None = None
    request_sent_at: int | None = None
    headers_at: int | None = None


@dataclass(slots=True)
class ProviderChunk:
    """One item of a source: the open chunk first, then one per decoded provider payload.

    Attributes:
        kind: ``"open"`` for the first item, ``"data"`` for payloads.
        wire: the wire format, or ``None`` when the source could not tell (``normalize()``
            then detects it).
        event: the SSE ``event:`` name, or ``None``.
        data: the decoded JSON payload (``None`` on the open chunk).
        at: ns on the source's clock when it arrived.
        open: the request and response head, on the open chunk only.
    """

    kind: Literal["open", "data"]
    wire: Wire | None
    event: str | None
    data: Any
    at: int
    open: StreamOpen | None = None


_ANTHROPIC_TYPES = frozenset(
    {
        "message_start",
        "message_delta",
        "message_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "ping",
    }
)


def detect_wire(event: str | None, data: Any) -> Wire | None:
    """Tell the wire family from one payload (and its SSE event name), or ``None`` if it
    cannot be told from this payload alone (a bare error object, a ping)."""
    if not isinstance(data, dict):
        return None
    payload: dict[str, Any] = data  # pyright: ignore[reportUnknownVariableType]
    kind = payload.get("type")
    if isinstance(kind, str):
        if kind.startswith("response."):
            return "openai.responses"
        if kind in _ANTHROPIC_TYPES and kind != "ping":
            return "anthropic.messages"
    if "candidates" in payload or "usageMetadata" in payload or "promptFeedback" in payload:
        return "gemini"
    if "choices" in payload or payload.get("object") == "chat.completion.chunk":
        return "openai.chat"
    if event is not None and event.startswith("response."):
        return "openai.responses"
    if event in _ANTHROPIC_TYPES and event != "ping":
        return "anthropic.messages"
    return None
