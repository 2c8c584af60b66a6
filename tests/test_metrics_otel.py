"""OpenTelemetryMetrics: GenAI instrument names, units, bucket boundaries and attributes, checked with the SDK's in-memory reader on timed recordings replayed in virtual time."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, Metric, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from reactivex.testing import TestScheduler

from rxstream.metrics import InMemoryMetrics, MetricsSink, OpenTelemetryMetrics, StreamMetrics
from rxstream.operators import normalize, tap_metrics
from rxstream.operators._metrics_otel import operation_name, provider_name
from rxstream.sources import replay
from rxstream.sources._replay import read_recording
from tests.conftest import RECORDINGS

# The advisory boundaries as the conventions print them (gen-ai-metrics.md): checked against
# these literals, not against rxstream's own constants.
SPEC_SECONDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
SPEC_TOKENS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]

ANTHROPIC = {
    "recording": "anthropic-messages-text-1.sse",
    # message_start, content_block_start, ping, 3 text deltas, block stop, message_delta, message_stop
    "ms": [150.0, 160.0, 170.0, 300.0, 340.0, 400.0, 410.0, 420.0, 430.0],
    "provider": "anthropic",
    "model": "claude-sonnet-4-5",
    "url": "https://api.anthropic.com/v1/messages",
}
GROQ_ERROR = {
    "recording": "groq-chat-reasoning-error-1.sse",  # reasoning deltas, then an error event
    "ms": [100.0 + 10 * i for i in range(95)],
    "provider": "groq",
    "model": "openai/gpt-oss-20b",
    "url": "https://api.groq.com/openai/v1/chat/completions",
}


def timed_cassette(
    directory: Path,
    recording: str,
    ms: Sequence[float],
    *,
    provider: str | None,
    model: str | None,
    url: str | None,
    headers_ms: float = 100.0,
) -> Path:
    """A cassette of a raw recording's payloads at chosen arrival offsets (ms from the request)."""
    tape = read_recording(RECORDINGS / recording)
    data = [c for c in tape.chunks if c.kind == "data"]
    assert len(ms) == len(data), f"{recording} has {len(data)} payloads"
    opened = {
        "provider": provider,
        "request": {"model": model} if model is not None else None,
        "status": 200,
        "headers": {},
        "request_id": "req_1",
        "url": url,
        "request_sent_ms": 0.0,
        "headers_ms": headers_ms,
    }
    rows: list[dict[str, Any]] = [
        {"format": "rxstream.cassette", "version": 1, "timing": True},
        {"kind": "open", "ms": headers_ms, "wire": tape.chunks[0].wire or data[0].wire, "open": opened},
    ]
    for chunk, at in zip(data, ms, strict=True):
        row: dict[str, Any] = {"kind": "data", "ms": at, "data": chunk.data}
        if chunk.event is not None:
            row["event"] = chunk.event
        rows.append(row)
    rows.append({"kind": "complete", "ms": ms[-1] + 1.0})
    path = directory / (recording.rsplit(".", 1)[0] + ".jsonl")
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def cassette_of(directory: Path, case: dict[str, Any]) -> Path:
    return timed_cassette(
        directory, case["recording"], case["ms"], provider=case["provider"], model=case["model"], url=case["url"]
    )


def run_replay(path: Path, *sinks: MetricsSink, disposed: float = 10_000) -> StreamMetrics:
    """Replay a cassette in virtual time through normalize() and tap_metrics(sinks); the record."""
    memory = InMemoryMetrics()
    scheduler = TestScheduler()
    scheduler.start(
        lambda: replay(path, speed=1.0, scheduler=scheduler).pipe(
            normalize(), tap_metrics([*sinks, memory], scheduler=scheduler)
        ),
        disposed=disposed,
    )
    (record,) = memory.records
    return record


class Otel:
    """An SDK meter with an in-memory reader (and a tracer with an in-memory exporter)."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meter = MeterProvider(metric_readers=[self.reader]).get_meter("test")
        self.spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.tracer = provider.get_tracer("test")

    def metrics(self) -> dict[str, Metric]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}

    def points(self, name: str) -> list[Any]:
        return list(self.metrics()[name].data.data_points)

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())


def histogram(points: list[Any]) -> HistogramDataPoint:
    (point,) = points
    return cast(HistogramDataPoint, point)


# -- gen_ai_v1_41, end to end ------------------------------------------------------------------


def test_instruments_have_the_conventions_names_units_and_bucket_boundaries(tmp_path: Path) -> None:
    otel = Otel()
    run_replay(cassette_of(tmp_path, ANTHROPIC), OpenTelemetryMetrics(otel.meter))
    metrics = otel.metrics()
    assert {name: m.unit for name, m in metrics.items()} == {
        "gen_ai.client.operation.duration": "s",
        "gen_ai.client.operation.time_to_first_chunk": "s",
        "gen_ai.client.operation.time_per_output_chunk": "s",
        "gen_ai.client.token.usage": "{token}",
    }
    for name in ("duration", "time_to_first_chunk", "time_per_output_chunk"):
        point = histogram(otel.points(f"gen_ai.client.operation.{name}"))
        assert list(point.explicit_bounds) == SPEC_SECONDS
    for point in otel.points("gen_ai.client.token.usage"):
        assert list(cast(HistogramDataPoint, point).explicit_bounds) == SPEC_TOKENS


def test_recorded_timing_gives_exact_values_and_attributes(tmp_path: Path) -> None:
    otel = Otel()
    record = run_replay(cassette_of(tmp_path, ANTHROPIC), OpenTelemetryMetrics(otel.meter))
    base = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.response.model": "claude-3-opus-latest",  # what message_start says answered
        "server.address": "api.anthropic.com",
        "server.port": 443,
    }
    duration = histogram(otel.points("gen_ai.client.operation.duration"))
    assert dict(duration.attributes or {}) == base  # completed: no error.type
    assert duration.count == 1 and duration.sum == 0.43 == record.duration
    ttfc = histogram(otel.points("gen_ai.client.operation.time_to_first_chunk"))
    assert dict(ttfc.attributes or {}) == base
    # The first text delta arrived at 300 ms; message_start at 150 ms is not a chunk of content.
    assert ttfc.sum == 0.3 and record.first_event == 0.15


def test_one_time_per_output_chunk_record_per_chunk_after_the_first(tmp_path: Path) -> None:
    otel = Otel()
    ms = [120.0, 125.0, 130.0, 140.0] + [400.0 + 7 * i * i for i in range(11)]  # growing gaps
    path = timed_cassette(
        tmp_path,
        "openai-responses-text-1.sse",
        ms,
        provider="openai",
        model="gpt-4o",
        url="https://api.openai.com/v1/responses",
    )
    record = run_replay(path, OpenTelemetryMetrics(otel.meter))
    point = histogram(otel.points("gen_ai.client.operation.time_per_output_chunk"))
    assert record.chunks >= 3
    assert point.count == len(record.gaps) == record.chunks - 1
    assert point.sum == pytest.approx(sum(record.gaps), abs=1e-12)
    # Each gap landed in its own bucket: the histogram holds these gaps, not some other count.
    expected = [0] * (len(SPEC_SECONDS) + 1)
    for gap in record.gaps:
        expected[next((i for i, b in enumerate(SPEC_SECONDS) if gap <= b), len(SPEC_SECONDS))] += 1
    assert list(point.bucket_counts) == expected
    assert point.min == min(record.gaps) and point.max == max(record.gaps)
    ttfc = histogram(otel.points("gen_ai.client.operation.time_to_first_chunk"))
    assert ttfc.sum == record.ttft and record.ttft is not None and record.ttft >= 0.4  # not response.created


def test_token_usage_is_recorded_per_token_type(tmp_path: Path) -> None:
    otel = Otel()
    record = run_replay(cassette_of(tmp_path, ANTHROPIC), OpenTelemetryMetrics(otel.meter))
    by_type = {
        dict(p.attributes)["gen_ai.token.type"]: cast(HistogramDataPoint, p)
        for p in otel.points("gen_ai.client.token.usage")
    }
    assert set(by_type) == {"input", "output"}
    assert (by_type["input"].count, by_type["input"].sum) == (1, record.input_tokens) == (1, 11)
    assert (by_type["output"].count, by_type["output"].sum) == (1, record.output_tokens) == (1, 6)
    assert dict(by_type["output"].attributes or {})["gen_ai.provider.name"] == "anthropic"


def test_a_failed_stream_sets_error_type_on_the_duration_only(tmp_path: Path) -> None:
    otel = Otel()
    record = run_replay(cassette_of(tmp_path, GROQ_ERROR), OpenTelemetryMetrics(otel.meter))
    assert record.outcome == "error" and record.error_type == "ProviderError"
    duration = histogram(otel.points("gen_ai.client.operation.duration"))
    attrs = dict(duration.attributes or {})
    assert attrs["error.type"] == "ProviderError"
    assert attrs["gen_ai.provider.name"] == "groq" and attrs["server.address"] == "api.groq.com"
    # The reasoning arrived before the error: its timing is recorded, without error.type (the
    # conventions do not list it on the chunk metrics).
    ttfc = histogram(otel.points("gen_ai.client.operation.time_to_first_chunk"))
    assert "error.type" not in dict(ttfc.attributes or {})
    assert histogram(otel.points("gen_ai.client.operation.time_per_output_chunk")).count == len(record.gaps) > 0


def test_a_cancelled_stream_is_recorded_with_error_type_cancelled(tmp_path: Path) -> None:
    otel = Otel()
    record = run_replay(cassette_of(tmp_path, ANTHROPIC), OpenTelemetryMetrics(otel.meter), disposed=200.35)
    assert record.outcome == "cancelled" and record.duration == pytest.approx(0.35)
    duration = histogram(otel.points("gen_ai.client.operation.duration"))
    assert dict(duration.attributes or {})["error.type"] == "cancelled"
    # The usage known when it stopped (message_start's) is what is recorded.
    by_type = {dict(p.attributes)["gen_ai.token.type"]: p.sum for p in otel.points("gen_ai.client.token.usage")}
    assert by_type == {"input": record.input_tokens, "output": record.output_tokens} == {"input": 11, "output": 1}


def test_gemini_is_generate_content_on_gcp_gemini(tmp_path: Path) -> None:
    otel = Otel()
    path = timed_cassette(
        tmp_path,
        "gemini-generatecontent-text-1.sse",
        [500.0, 650.0, 700.0],
        provider="google",
        model="gemini-2.5-flash",
        url="https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
    )
    run_replay(path, OpenTelemetryMetrics(otel.meter))
    attrs = dict(histogram(otel.points("gen_ai.client.operation.duration")).attributes or {})
    assert attrs["gen_ai.operation.name"] == "generate_content"
    assert attrs["gen_ai.provider.name"] == "gcp.gemini"
    assert attrs["server.address"] == "generativelanguage.googleapis.com" and attrs["server.port"] == 443


# -- direct records ----------------------------------------------------------------------------


def test_only_attributes_with_values_are_set_and_unmeasured_values_are_not_recorded() -> None:
    otel = Otel()
    sink = OpenTelemetryMetrics(otel.meter)
    sink.record(StreamMetrics(wire="openai.chat", duration=1.5, input_tokens=7))
    metrics = otel.metrics()
    assert set(metrics) == {"gen_ai.client.operation.duration", "gen_ai.client.token.usage"}
    duration = histogram(otel.points("gen_ai.client.operation.duration"))
    assert dict(duration.attributes or {}) == {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"}
    (tokens,) = otel.points("gen_ai.client.token.usage")
    assert dict(tokens.attributes)["gen_ai.token.type"] == "input" and tokens.sum == 7


def test_server_port_is_set_only_beside_an_address() -> None:
    otel = Otel()
    OpenTelemetryMetrics(otel.meter).record(StreamMetrics(provider="openai", server_port=8080, duration=0.2))
    attrs = dict(histogram(otel.points("gen_ai.client.operation.duration")).attributes or {})
    assert "server.port" not in attrs and "server.address" not in attrs


def test_an_error_without_a_class_name_is_other() -> None:
    otel = Otel()
    OpenTelemetryMetrics(otel.meter).record(StreamMetrics(provider="openai", duration=0.2, outcome="error"))
    attrs = dict(histogram(otel.points("gen_ai.client.operation.duration")).attributes or {})
    assert attrs["error.type"] == "_OTHER"


def test_each_record_adds_to_the_same_instruments() -> None:
    otel = Otel()
    sink = OpenTelemetryMetrics(otel.meter)
    for seconds in (0.5, 1.5, 3.0):
        sink.record(StreamMetrics(provider="openai", request_model="gpt-4o", duration=seconds, ttft=seconds / 10))
    duration = histogram(otel.points("gen_ai.client.operation.duration"))
    assert duration.count == 3 and duration.sum == 5.0
    assert histogram(otel.points("gen_ai.client.operation.time_to_first_chunk")).count == 3


@pytest.mark.parametrize(
    ("provider", "wire", "address", "expected"),
    [
        ("openai", "openai.chat", "api.openai.com", "openai"),
        ("anthropic", "anthropic.messages", None, "anthropic"),
        ("google", "gemini", "generativelanguage.googleapis.com", "gcp.gemini"),
        ("google", "gemini", "us-central1-aiplatform.googleapis.com", "gcp.vertex_ai"),
        ("xai", "openai.chat", "api.x.ai", "x_ai"),
        ("Mistral", "openai.chat", None, "mistral_ai"),
        ("azure", "openai.chat", "r.openai.azure.com", "azure.ai.openai"),
        ("deepseek", "openai.chat", None, "deepseek"),
        ("groq", "openai.chat", None, "groq"),
        ("aws-bedrock", "openai.responses", None, "aws.bedrock"),
        ("x_ai", "openai.chat", None, "x_ai"),  # already a well-known value
        ("openrouter", "openai.chat", "openrouter.ai", "openrouter"),  # unknown: passed through
        ("openai-compatible", "openai.chat", "api.groq.com", "groq"),  # generic: the host decides
        ("openai-compatible", "openai.chat", "localhost", "openai-compatible"),
        (None, "openai.chat", "api.deepseek.com", "deepseek"),
        (None, "anthropic.messages", None, "anthropic"),
        (None, "openai.responses", "127.0.0.1", "openai"),  # only the wire is known
        (None, None, None, "unknown"),
    ],
)
def test_provider_names_map_to_the_well_known_values(
    provider: str | None, wire: str | None, address: str | None, expected: str
) -> None:
    assert provider_name(provider, wire, address) == expected


def test_operation_names() -> None:
    assert [operation_name(w) for w in ("openai.chat", "openai.responses", "anthropic.messages", "gemini", None)] == [
        "chat",
        "chat",
        "chat",
        "generate_content",
        "chat",
    ]


# -- gen_ai_latest ---------------------------------------------------------------------------------


def test_latest_conventions_use_the_inference_names_and_token_counters(tmp_path: Path) -> None:
    otel = Otel()
    record = run_replay(cassette_of(tmp_path, ANTHROPIC), OpenTelemetryMetrics(otel.meter, conventions="gen_ai_latest"))
    metrics = otel.metrics()
    assert {name: m.unit for name, m in metrics.items()} == {
        "gen_ai.client.inference.duration": "s",
        "gen_ai.client.inference.time_to_first_chunk": "s",
        "gen_ai.client.inference.time_per_output_chunk": "s",
        "gen_ai.client.inference.usage.input_tokens": "{token}",
        "gen_ai.client.inference.usage.output_tokens": "{token}",
        "gen_ai.client.inference.operation.input_tokens": "{token}",
        "gen_ai.client.inference.operation.output_tokens": "{token}",
    }
    assert histogram(otel.points("gen_ai.client.inference.time_per_output_chunk")).count == len(record.gaps) == 2
    assert list(histogram(otel.points("gen_ai.client.inference.duration")).explicit_bounds) == SPEC_SECONDS
    (usage,) = otel.points("gen_ai.client.inference.usage.output_tokens")
    assert isinstance(usage, NumberDataPoint) and usage.value == 6
    assert dict(usage.attributes or {})["gen_ai.token.modality"] == "unknown"
    operation = histogram(otel.points("gen_ai.client.inference.operation.input_tokens"))
    assert operation.sum == 11 and list(operation.explicit_bounds) == SPEC_TOKENS
    assert "gen_ai.token.modality" not in dict(operation.attributes or {})  # never split by modality


def test_latest_conventions_record_zero_tokens_for_a_failed_stream_without_usage() -> None:
    otel = Otel()
    sink = OpenTelemetryMetrics(otel.meter, conventions="gen_ai_latest")
    sink.record(StreamMetrics(provider="openai", duration=0.1, outcome="error", error_type="RateLimitError"))
    (usage,) = otel.points("gen_ai.client.inference.usage.input_tokens")
    assert usage.value == 0 and dict(usage.attributes)["gen_ai.token.modality"] == "unknown"
    operation = histogram(otel.points("gen_ai.client.inference.operation.output_tokens"))
    assert operation.count == 1 and operation.sum == 0
    assert dict(operation.attributes or {})["error.type"] == "RateLimitError"
    assert dict(histogram(otel.points("gen_ai.client.inference.duration")).attributes or {})["error.type"] == (
        "RateLimitError"
    )


# -- spans -----------------------------------------------------------------------------------------


def test_a_span_per_stream_with_the_measured_times_and_attributes(tmp_path: Path) -> None:
    otel = Otel()
    sink = OpenTelemetryMetrics(otel.meter, spans=True, tracer=otel.tracer, clock=lambda: 1_700_000_000_000_000_000)
    record = run_replay(cassette_of(tmp_path, ANTHROPIC), sink)
    (span,) = otel.finished()
    assert span.name == "chat claude-sonnet-4-5" and span.kind is SpanKind.CLIENT
    assert span.end_time == 1_700_000_000_000_000_000
    assert span.start_time == span.end_time - 430_000_000  # the recorded duration, to the ns
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.response.time_to_first_chunk"] == record.ttft == 0.3
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (11, 6)
    assert tuple(cast(Sequence[str], attrs["gen_ai.response.finish_reasons"])) == ("stop",)
    assert attrs["gen_ai.provider.name"] == "anthropic" and "error.type" not in attrs
    assert span.status.status_code is StatusCode.UNSET


def test_a_failed_stream_span_has_an_error_status(tmp_path: Path) -> None:
    otel = Otel()
    run_replay(cassette_of(tmp_path, GROQ_ERROR), OpenTelemetryMetrics(otel.meter, spans=True, tracer=otel.tracer))
    (span,) = otel.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "ProviderError"
    assert span.name == "chat openai/gpt-oss-20b"


def test_a_span_without_a_duration_only_carries_the_attributes() -> None:
    otel = Otel()
    sink = OpenTelemetryMetrics(otel.meter, spans=True, tracer=otel.tracer, clock=lambda: 5)
    sink.record(StreamMetrics(wire="gemini", input_tokens=3))
    (span,) = otel.finished()
    assert span.name == "generate_content"  # no model known
    assert span.start_time is not None and span.start_time != 5  # the SDK's own clock, not ours
    assert dict(span.attributes or {})["gen_ai.usage.input_tokens"] == 3
    assert "gen_ai.response.time_to_first_chunk" not in dict(span.attributes or {})


def test_no_spans_unless_asked() -> None:
    otel = Otel()
    OpenTelemetryMetrics(otel.meter).record(StreamMetrics(provider="openai", duration=1.0))
    assert otel.finished() == []


# -- configuration, defaults, optional import ---------------------------------------------------


def test_config_is_validated_when_the_sink_is_made() -> None:
    otel = Otel()
    with pytest.raises(ValueError, match="conventions"):
        OpenTelemetryMetrics(otel.meter, conventions=cast(Any, "gen_ai_v1_99"))
    with pytest.raises(ValueError, match="spans=True"):
        OpenTelemetryMetrics(otel.meter, tracer=otel.tracer)
    with pytest.raises(TypeError, match="Meter"):
        OpenTelemetryMetrics(cast(Any, object()))
    with pytest.raises(TypeError, match="Tracer"):
        OpenTelemetryMetrics(otel.meter, spans=True, tracer=cast(Any, "tracer"))


def test_the_global_meter_and_tracer_are_the_defaults() -> None:
    # Without an SDK configured they are no-ops: recording must still work.
    sink = OpenTelemetryMetrics(spans=True)
    assert isinstance(sink, MetricsSink)
    sink.record(StreamMetrics(provider="openai", duration=1.0, ttft=0.2, gaps=[0.01], output_tokens=3))


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


def test_importing_rxstream_metrics_imports_neither_exporter_library() -> None:
    done = _python(
        "import sys, rxstream, rxstream.metrics, rxstream.operators\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('opentelemetry', 'prometheus_client')]\n"
        "assert not loaded, loaded\n"
        "from rxstream.metrics import OpenTelemetryMetrics\n"
        "assert 'opentelemetry' in sys.modules and 'prometheus_client' not in sys.modules\n"
    )
    assert done.returncode == 0, done.stderr


def test_a_missing_extra_is_named() -> None:
    done = _python(
        "import sys\n"
        "sys.modules['opentelemetry'] = None\n"
        "import rxstream.metrics\n"
        "try:\n"
        "    rxstream.metrics.OpenTelemetryMetrics\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'rxstream[otel]'" in done.stdout


def test_an_unknown_name_is_an_attribute_error() -> None:
    import rxstream.metrics

    with pytest.raises(AttributeError, match="NoSuchSink"):
        rxstream.metrics.NoSuchSink  # noqa: B018 - the lookup is the test
