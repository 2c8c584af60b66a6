"""Sources: where provider chunks come from: live provider APIs over httpx, and recordings."""

from rxstream._chunk import ProviderChunk, StreamOpen, detect_wire
from rxstream.sources._http import HttpRequest, http_source
from rxstream.sources._providers import (
    anthropic_messages,
    gemini,
    openai_chat,
    openai_compatible,
    openai_responses,
    xai_chat,
)
from rxstream.sources._replay import from_bytes, load_recording, play, read_payloads, read_recording, replay
from rxstream.sources._sdk import from_anthropic, from_openai

__all__ = [
    "HttpRequest",
    "ProviderChunk",
    "StreamOpen",
    "anthropic_messages",
    "detect_wire",
    "from_anthropic",
    "from_bytes",
    "from_openai",
    "gemini",
    "http_source",
    "load_recording",
    "openai_chat",
    "openai_compatible",
    "openai_responses",
    "play",
    "read_payloads",
    "read_recording",
    "replay",
    "xai_chat",
]
