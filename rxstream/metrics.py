"""Metrics sinks for ``operators.tap_metrics()`` and the per-stream record they receive.

``InMemoryMetrics`` needs nothing more; ``OpenTelemetryMetrics`` and ``PrometheusMetrics`` need
the ``otel`` and ``prometheus`` extras and import them only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from rxstream.operators._metrics_otel import OpenTelemetryMetrics
    from rxstream.operators._metrics_prometheus import PrometheusMetrics

__all__ = [
    "DURATION_BUCKETS",
    "GAP_BUCKETS",
    "TOKEN_BUCKETS",
    "Histogram",
    "InMemoryMetrics",
    "MetricsSink",
    "OpenTelemetryMetrics",
    "Outcome",
    "PrometheusMetrics",
    "StreamMetrics",
    "format_metrics",
]


def __getattr__(name: str) -> Any:
    # The exporters' sinks import their optional dependencies: only when asked for.
    if name == "OpenTelemetryMetrics":
        from rxstream.operators._metrics_otel import OpenTelemetryMetrics

        return OpenTelemetryMetrics
    if name == "PrometheusMetrics":
        from rxstream.operators._metrics_prometheus import PrometheusMetrics

        return PrometheusMetrics
    raise AttributeError(f"module 'rxstream.metrics' has no attribute {name!r}")
