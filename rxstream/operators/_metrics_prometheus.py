"""PrometheusMetrics: each stream's metrics as prometheus_client histograms and counters.

Exported (``{prefix}`` is ``rxstream`` by default), labelled ``provider``, ``model`` and
``outcome`` (``completed``, ``error`` or ``cancelled``):

- ``{prefix}_stream_duration_seconds`` histogram: request sent to the stream's end;
- ``{prefix}_time_to_first_byte_seconds`` histogram: request sent to the response headers;
- ``{prefix}_time_to_first_token_seconds`` histogram: request sent to the first content (text,
  reasoning, refusal or tool call; never a metadata event);
- ``{prefix}_inter_chunk_gap_seconds`` histogram: one observation per gap between consecutive
  content chunks;
- ``{prefix}_output_tokens_per_second`` histogram: output tokens over the generation window;
- ``{prefix}_tokens_total`` counter, with a ``type`` label (``input`` / ``output``);
- ``{prefix}_streams_total`` counter;
- ``{prefix}_stream_errors_total`` counter labelled ``provider``, ``model`` and ``error_type``
  (the error's class name) instead: error types stay off the other series to bound their
  cardinality.

Buckets are the OpenTelemetry GenAI conventions' advisory boundaries (the duration ones for
every time, so both sinks bucket alike); tokens per second use them scaled by 100.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from weakref import WeakKeyDictionary

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from rxstream.operators._metrics import DURATION_BUCKETS, StreamMetrics

__all__ = ["PrometheusMetrics"]

_LABELS = ("provider", "model", "outcome")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
TOKENS_PER_SECOND_BUCKETS: tuple[float, ...] = tuple(b * 100 for b in DURATION_BUCKETS)
UNKNOWN = "unknown"


class _Collectors:
    """The collectors of one prefix on one registry, shared by every sink using that pair."""

    __slots__ = ("duration", "errors", "gap", "streams", "tokens", "tokens_per_s", "ttfb", "ttft")

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        made: list[Histogram | Counter] = []

        def histogram(name: str, doc: str, buckets: Sequence[float], unit: str = "seconds") -> Histogram:
            h = Histogram(f"{prefix}_{name}", doc, _LABELS, unit=unit, registry=registry, buckets=buckets)
            made.append(h)
            return h

        def counter(name: str, doc: str, labels: Sequence[str]) -> Counter:
            c = Counter(f"{prefix}_{name}", doc, labels, registry=registry)
            made.append(c)
            return c

        try:
            self.duration = histogram("stream_duration_seconds", "Request sent to the stream's end.", DURATION_BUCKETS)
            self.ttfb = histogram(
                "time_to_first_byte_seconds", "Request sent to the response headers.", DURATION_BUCKETS
            )
            self.ttft = histogram(
                "time_to_first_token_seconds",
                "Request sent to the first content (text, reasoning, refusal or tool call).",
                DURATION_BUCKETS,
            )
            self.gap = histogram(
                "inter_chunk_gap_seconds",
                "Gap between consecutive content chunks, one observation per chunk after the first.",
                DURATION_BUCKETS,
            )
            self.tokens_per_s = histogram(
                "output_tokens_per_second",
                "Output tokens per second over the generation window (first to last content).",
                TOKENS_PER_SECOND_BUCKETS,
                unit="",
            )
            self.tokens = counter("tokens", "Tokens used, by type (input, output).", (*_LABELS, "type"))
            self.streams = counter("streams", "Streams measured, by outcome.", _LABELS)
            self.errors = counter("stream_errors", "Streams that failed, by error type.", ("provider", "model", "error_type"))
        except ValueError as exc:
            # Leave the registry as it was: a half-registered set would block the next attempt.
            for collector in made:
                registry.unregister(collector)
            raise ValueError(
                f"PrometheusMetrics(prefix={prefix!r}) cannot register its metrics: the registry already has "
                f"a metric of the same name that no PrometheusMetrics sink registered ({exc}); pass another "
                f"prefix= or registry="
            ) from exc


_shared: WeakKeyDictionary[CollectorRegistry, dict[str, _Collectors]] = WeakKeyDictionary()
_shared_lock = threading.Lock()


def _collectors(registry: CollectorRegistry, prefix: str) -> _Collectors:
    with _shared_lock:
        by_prefix = _shared.get(registry)
        if by_prefix is None:
            by_prefix = _shared[registry] = {}
        found = by_prefix.get(prefix)
        if found is None:
            found = by_prefix[prefix] = _Collectors(registry, prefix)
        return found


class PrometheusMetrics:
    """A metrics sink recording each stream into Prometheus histograms and counters.

    See the module docstring for the metric names; ``provider`` is rxstream's provider name
    (``openai``, ``anthropic``, ``google``...), ``model`` the requested model (the response's
    when the request is unknown), ``unknown`` when neither is known. Values that were not
    measured are not observed. Sinks created with the same ``registry`` and ``prefix`` share
    one set of collectors, so creating a second one (a second pipeline, a reloaded module)
    counts into the same series instead of failing on duplicate names.

    Args:
        registry: where to register; default ``prometheus_client.REGISTRY`` (what
            ``start_http_server`` and ``make_asgi_app`` expose).
        prefix: the metric name prefix.

    Raises:
        ValueError: ``prefix`` is not a valid Prometheus metric name, or the registry already
            holds one of these names registered by something else.
        TypeError: ``registry`` is not a ``CollectorRegistry``.
    """

    __slots__ = ("_c", "prefix", "registry")

    def __init__(self, registry: CollectorRegistry | None = None, *, prefix: str = "rxstream") -> None:
        if not isinstance(prefix, str) or not _NAME.fullmatch(prefix):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(
                f"PrometheusMetrics(prefix=...) expected a metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*), got {prefix!r}"
            )
        if registry is None:
            registry = REGISTRY
        elif not isinstance(registry, CollectorRegistry):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"PrometheusMetrics() expected a prometheus_client CollectorRegistry, got {type(registry).__name__}")
        self.registry = registry
        self.prefix = prefix
        self._c = _collectors(registry, prefix)

    def record(self, metrics: StreamMetrics, /) -> None:
        """Record one finished stream."""
        c = self._c
        provider = metrics.provider or UNKNOWN
        model = metrics.request_model or metrics.response_model or UNKNOWN
        labels = (provider, model, metrics.outcome)
        c.streams.labels(*labels).inc()
        if metrics.outcome == "error":
            c.errors.labels(provider, model, metrics.error_type or UNKNOWN).inc()
        if metrics.duration is not None:
            c.duration.labels(*labels).observe(metrics.duration)
        if metrics.ttfb is not None:
            c.ttfb.labels(*labels).observe(metrics.ttfb)
        if metrics.ttft is not None:
            c.ttft.labels(*labels).observe(metrics.ttft)
        if metrics.gaps:
            observe = c.gap.labels(*labels).observe
            for gap in metrics.gaps:
                observe(gap)
        if metrics.tokens_per_s is not None:
            c.tokens_per_s.labels(*labels).observe(metrics.tokens_per_s)
        for kind, count in (("input", metrics.input_tokens), ("output", metrics.output_tokens)):
            # A counter only goes up; a provider's negative count would raise mid-stream.
            if count is not None and count >= 0:
                c.tokens.labels(*labels, kind).inc(count)
