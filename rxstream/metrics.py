"""Metrics sinks for ``operators.tap_metrics()`` and the per-stream record they receive.

``InMemoryMetrics`` needs nothing more; ``OpenTelemetryMetrics`` and ``PrometheusMetrics`` need
the ``otel`` and ``prometheus`` extras and import them only when used.
"""

from __future__ import annotations

from rxstream.operators._metrics import (
    DURATION_BUCKETS,
    GAP_BUCKETS,
    TOKEN_BUCKETS,
    Histogram,
    InMemoryMetrics,
    MetricsSink,
    Outcome,
    StreamMetrics,
    format_metrics,
)

__all__ = [
    "DURATION_BUCKETS",
    "GAP_BUCKETS",
    "TOKEN_BUCKETS",
    "Histogram",
    "InMemoryMetrics",
    "MetricsSink",
    "Outcome",
    "StreamMetrics",
    "format_metrics",
]

