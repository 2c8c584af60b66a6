"""rxstream's operators, to use beside reactivex's own: ``from rxstream import operators as rxs``."""

from rxstream.operators._batch import batch
from rxstream.operators._filter import drop, map_text, only, redact, split_by_stream, tag, where
from rxstream.operators._guard import guard
from rxstream.operators._json import JsonAssembler, parse_json
from rxstream.operators._json_dedupe import dedupe_json
from rxstream.operators._metrics import tap_metrics
from rxstream.operators._normalize import normalize
from rxstream.operators._record import record
from rxstream.operators._retry import RetryAttempt, is_retryable, retry
from rxstream.operators._smooth import smooth
from rxstream.operators._timeout import timeout
from rxstream.operators._usage import aggregate_usage

__all__ = [
    "JsonAssembler",
    "RetryAttempt",
    "aggregate_usage",
    "batch",
    "dedupe_json",
    "drop",
    "guard",
    "is_retryable",
    "map_text",
    "normalize",
    "only",
    "parse_json",
    "record",
    "redact",
    "retry",
    "smooth",
    "split_by_stream",
    "tag",
    "tap_metrics",
    "timeout",
    "where",
]
