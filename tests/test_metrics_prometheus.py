"""PrometheusMetrics: the registry's text exposition after timed recordings replayed through tap_metrics(), parsed back."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rxstream.metrics import PrometheusMetrics, StreamMetrics
from tests.test_metrics_otel import ANTHROPIC, GROQ_ERROR, SPEC_SECONDS, cassette_of, run_replay

Sample = tuple[str, dict[str, str], float]


def scrape(registry: CollectorRegistry) -> list[Sample]:
    """Every sample of the text exposition, parsed: (name, labels, value)."""
    text = generate_latest(registry).decode()
    return [(s.name, dict(s.labels), s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The one sample of that name whose labels include these."""
    (found,) = [v for n, ls, v in samples if n == name and labels.items() <= ls.items()]
    return found


def names(samples: list[Sample]) -> set[str]:
    return {n for n, _, _ in samples}


def test_a_replayed_stream_scrapes_with_its_exact_counts_sums_and_labels(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    record = run_replay(cassette_of(tmp_path, ANTHROPIC), PrometheusMetrics(registry))
    samples = scrape(registry)
    labels = {"provider": "anthropic", "model": "claude-sonnet-4-5", "outcome": "completed"}
    assert value(samples, "rxstream_streams_total", **labels) == 1
    assert value(samples, "rxstream_stream_duration_seconds_count", **labels) == 1
    assert value(samples, "rxstream_stream_duration_seconds_sum", **labels) == 0.43
    assert value(samples, "rxstream_time_to_first_byte_seconds_sum", **labels) == 0.1
    # First content at 300 ms, though message_start came at 150 ms.
    assert value(samples, "rxstream_time_to_first_token_seconds_sum", **labels) == 0.3
    assert value(samples, "rxstream_inter_chunk_gap_seconds_count", **labels) == len(record.gaps) == 2
    assert value(samples, "rxstream_inter_chunk_gap_seconds_sum", **labels) == pytest.approx(0.1)
    # Gaps of 40 and 60 ms: buckets are inclusive, so one at le=0.04 and both at le=0.08.
    assert value(samples, "rxstream_inter_chunk_gap_seconds_bucket", le="0.02", **labels) == 0
    assert value(samples, "rxstream_inter_chunk_gap_seconds_bucket", le="0.04", **labels) == 1
    assert value(samples, "rxstream_inter_chunk_gap_seconds_bucket", le="0.08", **labels) == 2
    assert value(samples, "rxstream_inter_chunk_gap_seconds_bucket", le="+Inf", **labels) == 2
    assert value(samples, "rxstream_output_tokens_per_second_sum", **labels) == record.tokens_per_s == 60.0
    assert value(samples, "rxstream_tokens_total", type="input", **labels) == 11
    assert value(samples, "rxstream_tokens_total", type="output", **labels) == 6
    assert not any(n == "rxstream_stream_errors_total" for n, _, _ in samples)  # no child yet: no series


def test_a_failed_stream_counts_by_outcome_and_error_type(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    sink = PrometheusMetrics(registry)
    run_replay(cassette_of(tmp_path, ANTHROPIC), sink)
    failed = run_replay(cassette_of(tmp_path, GROQ_ERROR), sink)
    samples = scrape(registry)
    groq = {"provider": "groq", "model": "openai/gpt-oss-20b"}
    assert value(samples, "rxstream_streams_total", outcome="error", **groq) == 1
    assert value(samples, "rxstream_streams_total", outcome="completed", provider="anthropic") == 1
    assert value(samples, "rxstream_stream_errors_total", error_type="ProviderError", **groq) == 1
    # error_type only on the errors counter: every other series keeps three labels (+ le / type).
    for name, labels, _ in samples:
        assert "error_type" not in labels or name.startswith("rxstream_stream_errors_")
    assert value(samples, "rxstream_inter_chunk_gap_seconds_count", outcome="error", **groq) == len(failed.gaps) > 0


def test_buckets_are_the_conventions_advisory_boundaries(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    run_replay(cassette_of(tmp_path, ANTHROPIC), PrometheusMetrics(registry))
    samples = scrape(registry)
    for metric in ("stream_duration", "time_to_first_byte", "time_to_first_token", "inter_chunk_gap"):
        les = [ls["le"] for n, ls, _ in samples if n == f"rxstream_{metric}_seconds_bucket"]
        assert les == [*(str(b) for b in SPEC_SECONDS), "+Inf"], metric
    les = [float(ls["le"]) for n, ls, _ in samples if n == "rxstream_output_tokens_per_second_bucket"]
    assert les[:-1] == pytest.approx([b * 100 for b in SPEC_SECONDS])


def test_unmeasured_values_are_not_observed() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry).record(StreamMetrics(outcome="cancelled"))
    samples = scrape(registry)
    assert value(samples, "rxstream_streams_total", provider="unknown", model="unknown", outcome="cancelled") == 1
    assert names(samples) & {"rxstream_stream_duration_seconds_count", "rxstream_tokens_total"} == set()


def test_the_model_label_is_the_requested_model_else_the_responding_one() -> None:
    registry = CollectorRegistry()
    sink = PrometheusMetrics(registry)
    sink.record(StreamMetrics(provider="openai", request_model="gpt-4o", response_model="gpt-4o-2024-08-06"))
    sink.record(StreamMetrics(provider="openai", response_model="gpt-4o-2024-08-06"))
    models = {ls["model"] for n, ls, _ in scrape(registry) if n == "rxstream_streams_total"}
    assert models == {"gpt-4o", "gpt-4o-2024-08-06"}


def test_two_sinks_on_one_registry_and_prefix_share_the_series() -> None:
    registry = CollectorRegistry()
    first, second = PrometheusMetrics(registry), PrometheusMetrics(registry)
    for sink in (first, second):
        sink.record(StreamMetrics(provider="openai", request_model="m", duration=1.0))
    samples = scrape(registry)
    assert value(samples, "rxstream_streams_total", provider="openai") == 2
    assert value(samples, "rxstream_stream_duration_seconds_count", provider="openai") == 2


def test_different_prefixes_on_one_registry_are_separate() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry).record(StreamMetrics(provider="a"))
    PrometheusMetrics(registry, prefix="llm").record(StreamMetrics(provider="b"))
    samples = scrape(registry)
    assert value(samples, "rxstream_streams_total") == 1 and value(samples, "llm_streams_total") == 1
    assert value(samples, "llm_streams_total", provider="b") == 1


def test_a_foreign_metric_of_the_same_name_is_a_clear_error_and_leaves_the_registry_as_it_was() -> None:
    registry = CollectorRegistry()
    Counter("rxstream_streams", "someone else's", registry=registry).inc()
    before = names(scrape(registry))
    with pytest.raises(ValueError, match=r"prefix='rxstream'.*another\s+prefix= or registry=") as caught:
        PrometheusMetrics(registry)
    assert isinstance(caught.value.__cause__, ValueError)
    assert names(scrape(registry)) == before  # the histograms made before the clash were removed
    PrometheusMetrics(registry, prefix="rx2").record(StreamMetrics(provider="p"))  # the registry still works


def test_the_default_registry_is_prometheus_clients() -> None:
    sink = PrometheusMetrics(prefix="rxstream_default_registry_test")
    sink.record(StreamMetrics(provider="openai"))
    assert sink.registry is prometheus_client.REGISTRY
    samples = scrape(prometheus_client.REGISTRY)
    assert value(samples, "rxstream_default_registry_test_streams_total", provider="openai") >= 1


@pytest.mark.parametrize("prefix", ["", "1abc", "has-dash", "sp ace", cast(Any, 3)])
def test_a_bad_prefix_is_refused(prefix: Any) -> None:
    with pytest.raises(ValueError, match="prefix"):
        PrometheusMetrics(CollectorRegistry(), prefix=prefix)


def test_a_registry_must_be_a_collector_registry() -> None:
    with pytest.raises(TypeError, match="CollectorRegistry"):
        PrometheusMetrics(cast(Any, {}))


def test_a_negative_token_count_is_skipped_not_raised() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry).record(StreamMetrics(provider="p", input_tokens=-1, output_tokens=4))
    samples = scrape(registry)
    assert value(samples, "rxstream_tokens_total", type="output") == 4
    assert not [ls for n, ls, _ in samples if n == "rxstream_tokens_total" and ls["type"] == "input"]
