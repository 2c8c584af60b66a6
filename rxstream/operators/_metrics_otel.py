"""OpenTelemetryMetrics: each stream's metrics as OpenTelemetry GenAI client instruments, and optionally a span.

Two namings, chosen with ``conventions=``:

``"gen_ai_v1_41"`` (semantic conventions v1.41, ``docs/gen-ai/gen-ai-metrics.md``), histograms:

- ``gen_ai.client.operation.duration`` (``s``): one record per stream, ``error.type`` when it failed;
- ``gen_ai.client.operation.time_to_first_chunk`` (``s``): one per stream that produced content;
- ``gen_ai.client.operation.time_per_output_chunk`` (``s``): one per content chunk after the first;
- ``gen_ai.client.token.usage`` (``{token}``): one per known count, by ``gen_ai.token.type``.

``"gen_ai_latest"`` (the ``open-telemetry/semantic-conventions-genai`` repository, where the GenAI
conventions moved after v1.42: ``docs/gen-ai/client-inference.md`` and
``docs/gen-ai/gen-ai-token-metrics.md``): the same three times as
``gen_ai.client.inference.duration`` / ``.time_to_first_chunk`` / ``.time_per_output_chunk``; token
counters ``gen_ai.client.inference.usage.input_tokens`` / ``.output_tokens`` (by
``gen_ai.token.modality``, ``unknown`` here: rxstream's usage does not split counts by modality)
and per-operation histograms ``gen_ai.client.inference.operation.input_tokens`` /
``.output_tokens``. That naming asks for a token record on every operation, ``0`` when no usage
arrived, so these are the one place a missing value is recorded (as ``0``).

Every instrument carries ``gen_ai.operation.name``, ``gen_ai.provider.name`` and, when known,
``gen_ai.request.model``, ``gen_ai.response.model``, ``server.address`` and ``server.port``.
Time to first chunk is ``StreamMetrics.ttft``: the first *content* (text, reasoning, refusal or a
tool call), as the conventions' authors define a chunk; the first provider event (a Responses
``response.created``, an Anthropic ``message_start``) carries no generated content, and timing it
would report the time to first byte instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal, get_args

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace
from opentelemetry.metrics import Counter, Histogram, Meter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from rxstream import __version__
from rxstream.operators._metrics import DURATION_BUCKETS, TOKEN_BUCKETS, StreamMetrics

__all__ = ["Conventions", "OpenTelemetryMetrics", "operation_name", "provider_name"]

Conventions = Literal["gen_ai_v1_41", "gen_ai_latest"]
Attributes = dict[str, AttributeValue]

# error.type of a stream the consumer disposed before it ended: its duration is cut short, so it
# must not average in with completed streams, and no exception class names it.
CANCELLED = "cancelled"
# The conventions' fallback when an error has no better name.
OTHER_ERROR = "_OTHER"

# gen_ai.provider.name well-known values, and the names rxstream sources (and users) give.
_WELL_KNOWN = (
    "anthropic",
    "aws.bedrock",
    "azure.ai.inference",
    "azure.ai.openai",
    "cohere",
    "deepseek",
    "gcp.gemini",
    "gcp.gen_ai",
    "gcp.vertex_ai",
    "groq",
    "ibm.watsonx.ai",
    "mistral_ai",
    "moonshot_ai",
    "openai",
    "perplexity",
    "x_ai",
)
_PROVIDER_ALIASES: dict[str, str] = {
    **{name: name for name in _WELL_KNOWN},
    "google": "gcp.gemini",
    "gemini": "gcp.gemini",
    "google_ai_studio": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "vertex_ai": "gcp.vertex_ai",
    "vertexai": "gcp.vertex_ai",
    "xai": "x_ai",
    "grok": "x_ai",
    "mistral": "mistral_ai",
    "mistralai": "mistral_ai",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "azure_ai_inference": "azure.ai.inference",
    "bedrock": "aws.bedrock",
    "aws_bedrock": "aws.bedrock",
    "moonshot": "moonshot_ai",
    "watsonx": "ibm.watsonx.ai",
    "ibm_watsonx_ai": "ibm.watsonx.ai",
}
_HOSTS: dict[str, str] = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "gcp.gemini",
    "api.x.ai": "x_ai",
    "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral_ai",
    "api.groq.com": "groq",
    "api.perplexity.ai": "perplexity",
    "api.cohere.com": "cohere",
    "api.cohere.ai": "cohere",
    "api.moonshot.ai": "moonshot_ai",
}
_HOST_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".openai.azure.com", "azure.ai.openai"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    (".amazonaws.com", "aws.bedrock"),
)
# Names that say "some OpenAI-style server" rather than who it is.
_GENERIC = frozenset({"openai_compatible", "openai-compatible"})
_WIRE_PROVIDERS = {"anthropic.messages": "anthropic", "gemini": "gcp.gemini"}


def _host_provider(address: str | None) -> str | None:
    if not address:
        return None
    host = address.lower()
    known = _HOSTS.get(host)
    if known is not None:
        return known
    for suffix, name in _HOST_SUFFIXES:
        if host.endswith(suffix):
            return name
    return None


def provider_name(provider: str | None, wire: str | None = None, server_address: str | None = None) -> str:
    """The ``gen_ai.provider.name`` for a stream: the conventions' well-known value when one applies.

    rxstream's provider names and common spellings map to the well-known values (``google`` is
    ``gcp.gemini``, or ``gcp.vertex_ai`` on an ``aiplatform.googleapis.com`` host; ``xai`` is
    ``x_ai``; ``mistral`` is ``mistral_ai``; ``azure`` is ``azure.ai.openai``...). A name with no
    well-known value passes through unchanged (``openrouter``, ``ollama``). Without a name, or with
    the generic ``openai-compatible``, the server's host decides when it is a known API host;
    without a name, the wire does (``openai.*`` -> ``openai``); else ``unknown``.
    """
    host = _host_provider(server_address)
    if provider is not None and provider not in _GENERIC:
        mapped = _PROVIDER_ALIASES.get(provider.lower().replace("-", "_").replace(" ", "_"))
        if mapped is None:
            return provider
        if mapped == "gcp.gemini" and host == "gcp.vertex_ai":
            return host
        return mapped
    if host is not None:
        return host
    if provider is not None:
        return provider
    if wire is not None:
        return _WIRE_PROVIDERS.get(wire, "openai" if wire.startswith("openai.") else wire)
    return "unknown"


def operation_name(wire: str | None) -> str:
    """The ``gen_ai.operation.name``: ``generate_content`` for Gemini, ``chat`` for the chat,
    Responses and Messages APIs (the conventions' well-known values)."""
    return "generate_content" if wire == "gemini" else "chat"


def error_type(metrics: StreamMetrics) -> str | None:
    """``error.type`` of a stream: its error's class name, ``cancelled``, or ``None`` when it completed."""
    if metrics.outcome == "error":
        return metrics.error_type or OTHER_ERROR
    if metrics.outcome == "cancelled":
        return CANCELLED
    return None


def attributes(metrics: StreamMetrics) -> Attributes:
    """The attributes every instrument shares (``error.type`` aside): only those with a value."""
    out: Attributes = {
        "gen_ai.operation.name": operation_name(metrics.wire),
        "gen_ai.provider.name": provider_name(metrics.provider, metrics.wire, metrics.server_address),
    }
    if metrics.request_model:
        out["gen_ai.request.model"] = metrics.request_model
    if metrics.response_model:
        out["gen_ai.response.model"] = metrics.response_model
    if metrics.server_address:
        out["server.address"] = metrics.server_address
        # The conventions set the port only beside an address.
        if metrics.server_port is not None:
            out["server.port"] = metrics.server_port
    return out


_DURATION_DOC = "GenAI operation duration: request sent to the stream's end."
_TTFC_DOC = "Time to the first content chunk of a streaming response, from the request."
_TPOC_DOC = "Time between consecutive content chunks, one record per chunk after the first."


class _V141:
    """Instruments of the v1.41 naming."""

    def __init__(self, meter: Meter) -> None:
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", "s", _DURATION_DOC, explicit_bucket_boundaries_advisory=DURATION_BUCKETS
        )
        self.ttfc = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            "s",
            _TTFC_DOC,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.tpoc = meter.create_histogram(
            "gen_ai.client.operation.time_per_output_chunk",
            "s",
            _TPOC_DOC,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            "{token}",
            "Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )

    def record_tokens(self, metrics: StreamMetrics, base: Attributes, failed: Attributes) -> None:
        for kind, count in (("input", metrics.input_tokens), ("output", metrics.output_tokens)):
            if count is not None:
                self.tokens.record(count, {**base, "gen_ai.token.type": kind})


class _Latest:
    """Instruments of the newest naming (semantic-conventions-genai)."""

    def __init__(self, meter: Meter) -> None:
        self.duration = meter.create_histogram(
            "gen_ai.client.inference.duration", "s", _DURATION_DOC, explicit_bucket_boundaries_advisory=DURATION_BUCKETS
        )
        self.ttfc = meter.create_histogram(
            "gen_ai.client.inference.time_to_first_chunk",
            "s",
            _TTFC_DOC,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.tpoc = meter.create_histogram(
            "gen_ai.client.inference.time_per_output_chunk",
            "s",
            _TPOC_DOC,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.input_usage: Counter = meter.create_counter(
            "gen_ai.client.inference.usage.input_tokens", "{token}", "Input (prompt) tokens used, cached included."
        )
        self.output_usage: Counter = meter.create_counter(
            "gen_ai.client.inference.usage.output_tokens", "{token}", "Output tokens used, reasoning included."
        )
        self.input_tokens: Histogram = meter.create_histogram(
            "gen_ai.client.inference.operation.input_tokens",
            "{token}",
            "Input (prompt) tokens per inference operation.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.output_tokens: Histogram = meter.create_histogram(
            "gen_ai.client.inference.operation.output_tokens",
            "{token}",
            "Output tokens per inference operation.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )

    def record_tokens(self, metrics: StreamMetrics, base: Attributes, failed: Attributes) -> None:
        # The convention: every operation, failed ones too; 0 when no usage was received.
        inputs = metrics.input_tokens or 0
        outputs = metrics.output_tokens or 0
        usage = {**base, "gen_ai.token.modality": "unknown"}
        self.input_usage.add(inputs, usage)
        self.output_usage.add(outputs, usage)
        self.input_tokens.record(inputs, failed)
        self.output_tokens.record(outputs, failed)


class OpenTelemetryMetrics:
    """A metrics sink recording each stream into OpenTelemetry GenAI client instruments.

    Per stream: one duration record (with ``error.type`` when the stream failed: the error's
    class name such as ``RateLimitError``, or ``cancelled`` when the consumer disposed first), one
    time-to-first-chunk record when content arrived, one time-per-output-chunk record per content
    chunk after the first (``len(metrics.gaps)`` records), and the token usage. A value that was
    not measured is not recorded (except the ``0`` token records ``gen_ai_latest`` asks for).

    With ``spans=True`` each stream also becomes one ``CLIENT`` span named
    ``"{gen_ai.operation.name} {gen_ai.request.model}"``, carrying the same attributes plus
    ``gen_ai.request.stream``, ``gen_ai.response.time_to_first_chunk``, ``gen_ai.usage.*`` and
    ``gen_ai.response.finish_reasons``, with an error status when the stream did not complete.
    The span ends when the sink records (the stream's end) and starts ``duration`` before, so its
    length is the measured one whatever clock the source used; without a duration it only
    carries the attributes.

    Args:
        meter: where to create the instruments (once, here); default
            ``opentelemetry.metrics.get_meter("rxstream", <version>)``.
        conventions: ``"gen_ai_v1_41"`` or ``"gen_ai_latest"`` (see the module docstring).
        spans: also record one span per stream.
        tracer: the tracer for spans; default ``opentelemetry.trace.get_tracer("rxstream", <version>)``.
        clock: ns since the epoch for span times; default ``time.time_ns``.

    Raises:
        ValueError: an unknown ``conventions``, or a ``tracer`` without ``spans=True``.
        TypeError: ``meter`` or ``tracer`` is not one.
    """

    __slots__ = ("_clock", "_instruments", "_tracer", "conventions")

    def __init__(
        self,
        meter: Meter | None = None,
        *,
        conventions: Conventions = "gen_ai_v1_41",
        spans: bool = False,
        tracer: Tracer | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if conventions not in get_args(Conventions):
            raise ValueError(
                f"OpenTelemetryMetrics(conventions=...) expected one of {get_args(Conventions)}, got {conventions!r}"
            )
        if tracer is not None and not spans:
            raise ValueError("OpenTelemetryMetrics(tracer=...) records spans only with spans=True")
        if meter is None:
            meter = otel_metrics.get_meter("rxstream", __version__)
        elif not callable(getattr(meter, "create_histogram", None)):
            raise TypeError(f"OpenTelemetryMetrics() expected an OpenTelemetry Meter, got {type(meter).__name__}")
        if tracer is not None and not callable(getattr(tracer, "start_span", None)):
            raise TypeError(f"OpenTelemetryMetrics(tracer=...) expected an OpenTelemetry Tracer, got {type(tracer).__name__}")
        self.conventions: Conventions = conventions
        self._instruments: _V141 | _Latest = _V141(meter) if conventions == "gen_ai_v1_41" else _Latest(meter)
        self._tracer: Tracer | None = None
        if spans:
            self._tracer = tracer if tracer is not None else otel_trace.get_tracer("rxstream", __version__)
        self._clock: Callable[[], int] = clock if clock is not None else time.time_ns

    def record(self, metrics: StreamMetrics, /) -> None:
        """Record one finished stream."""
        base = attributes(metrics)
        error = error_type(metrics)
        failed = {**base, "error.type": error} if error is not None else base
        ins = self._instruments
        if metrics.duration is not None:
            ins.duration.record(metrics.duration, failed)
        if metrics.ttft is not None:
            ins.ttfc.record(metrics.ttft, base)
        record_gap = ins.tpoc.record
        for gap in metrics.gaps:
            record_gap(gap, base)
        ins.record_tokens(metrics, base, failed)
        if self._tracer is not None:
            self._span(self._tracer, metrics, failed, error)

    def _span(self, tracer: Tracer, metrics: StreamMetrics, attrs: Attributes, error: str | None) -> None:
        span_attrs: dict[str, Any] = dict(attrs)
        span_attrs["gen_ai.request.stream"] = True
        if metrics.ttft is not None:
            span_attrs["gen_ai.response.time_to_first_chunk"] = metrics.ttft
        if metrics.input_tokens is not None:
            span_attrs["gen_ai.usage.input_tokens"] = metrics.input_tokens
        if metrics.output_tokens is not None:
            span_attrs["gen_ai.usage.output_tokens"] = metrics.output_tokens
        if metrics.finish_reasons:
            span_attrs["gen_ai.response.finish_reasons"] = list(metrics.finish_reasons)
        operation = attrs["gen_ai.operation.name"]
        model = metrics.request_model or metrics.response_model
        name = f"{operation} {model}" if model else str(operation)
        end: int | None = None
        start: int | None = None
        if metrics.duration is not None:
            end = self._clock()
            start = end - round(metrics.duration * 1e9)
        span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=span_attrs, start_time=start)
        if error is not None:
            detail = "the consumer disposed the stream before it ended" if error == CANCELLED else error
            span.set_status(Status(StatusCode.ERROR, detail))
        span.end(end_time=end)
