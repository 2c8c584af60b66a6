"""Sources: where provider chunks come from (recordings now; HTTP providers alongside)."""

from rxstream._chunk import ProviderChunk, StreamOpen, detect_wire
from rxstream.sources._replay import from_bytes, load_recording, read_payloads, replay

__all__ = ["ProviderChunk", "StreamOpen", "detect_wire", "from_bytes", "load_recording", "read_payloads", "replay"]
