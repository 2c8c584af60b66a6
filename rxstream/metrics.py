"""Metrics sinks for ``operators.tap_metrics()`` and the per-stream record they receive.

``InMemoryMetrics`` needs nothing more; ``OpenTelemetryMetrics`` and ``PrometheusMetrics`` need
the ``otel`` and ``prometheus`` extras and import them only when first asked for, so importing
this module never imports ``opentelemetry`` or ``prometheus_client``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rxstream.operators._metrics import (
    DURATION_BUCKETS,
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

# name -> (module, the extra that installs what it imports)
_LAZY: dict[str, tuple[str, str]] = {
    "OpenTelemetryMetrics": ("rxstream.operators._metrics_otel", "otel"),
    "PrometheusMetrics": ("rxstream.operators._metrics_prometheus", "prometheus"),
}


def __getattr__(name: str) -> Any:
    found = _LAZY.get(name)
    if found is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, extra = found
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"rxstream.metrics.{name} needs the {extra!r} extra: pip install 'rxstream[{extra}]' ({exc})"
        ) from exc
    value = getattr(module, name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
