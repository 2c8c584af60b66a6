"""rxstream: any LLM provider's streaming response as one typed, ordered event stream."""

from rxstream import events, operators, sources
from rxstream._chunk import ProviderChunk
from rxstream._consume import EventIterator, EventObserver, aiter, collect, run
from rxstream._errors import (
    AuthenticationError,
    BadRequestError,
    HTTPStatusError,
    JsonError,
    LimitExceededError,
    ProtocolError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    RxStreamError,
    StreamTimeoutError,
    TransportError,
)
from rxstream._limits import Limits
from rxstream._result import ContentPart, OutputResult, StreamResult, ToolCallResult

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ContentPart",
    "EventIterator",
    "EventObserver",
    "HTTPStatusError",
    "JsonError",
    "LimitExceededError",
    "Limits",
    "OutputResult",
    "ProtocolError",
    "ProviderChunk",
    "ProviderError",
    "ProviderUnavailableError",
    "RateLimitError",
    "RxStreamError",
    "StreamResult",
    "StreamTimeoutError",
    "ToolCallResult",
    "TransportError",
    "aiter",
    "collect",
    "events",
    "operators",
    "run",
    "sources",
]
__version__ = "0.1.0"
