"""dashboards/rxstream-grafana.json: the structure Grafana imports, and every query checked against what PrometheusMetrics exports."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from rxstream.metrics import PrometheusMetrics
from tests.test_metrics_otel import ANTHROPIC, GROQ_ERROR, cassette_of, run_replay

DASHBOARD = Path(__file__).parent.parent / "dashboards" / "rxstream-grafana.json"

# A small PromQL checker (there is no promtool here): what a panel query may contain.
FUNCTIONS = frozenset(
    {"histogram_quantile", "rate", "irate", "increase", "sum", "avg", "min", "max", "count", "topk", "clamp_min"}
)
KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"})
RANGES = re.compile(r"\$__rate_interval|\$__interval|\$__range|\d+(ms|s|m|h|d|w|y)")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
RANGE = re.compile(r"\[([^\[\]]*)\]")
SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^{}]*)\}")
MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*""\s*')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
LEFTOVER = re.compile(r"[\s()+\-*/%^,.0-9<>=!]|\"\"")


@dataclass
class Query:
    """What a PromQL expression uses, and what is wrong with it."""

    metrics: list[str] = field(default_factory=list[str])
    matched: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])  # (metric, label)
    grouping: list[str] = field(default_factory=list[str])
    problems: list[str] = field(default_factory=list[str])


def balanced(expr: str) -> str | None:
    """The first bracket or quote problem, or None."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch == '"':
            end = STRING.match(expr, i)
            if end is None:
                return f"unterminated string at {i}"
            i = end.end()
            continue
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return f"unbalanced {ch!r} at {i}"
        i += 1
    return f"unclosed {stack[-1]!r}" if stack else None


def parse(expr: str) -> Query:
    """Pull the metric names, matcher labels and grouping labels out of an expression."""
    q = Query()
    problem = balanced(expr)
    if problem is not None:
        q.problems.append(problem)
        return q
    rest = STRING.sub('""', expr)
    for window in RANGE.findall(rest):
        if not RANGES.fullmatch(window.strip()):
            q.problems.append(f"range [{window}] is not a duration or a Grafana interval")
    rest = RANGE.sub(" ", rest)

    def selector(m: re.Match[str]) -> str:
        name, body = m.group(1), m.group(2)
        if name is None:
            q.problems.append(f"selector {{{body}}} names no metric")
            return " "
        q.metrics.append(name)
        for matcher in filter(str.strip, body.split(",")):
            found = MATCHER.fullmatch(matcher)
            if found is None:
                q.problems.append(f"bad label matcher {matcher.strip()!r}")
            else:
                q.matched.append((name, found.group(1)))
        return " "

    rest = SELECTOR.sub(selector, rest)
    for labels in GROUPING.findall(rest):
        q.grouping.extend(label.strip() for label in labels.split(",") if label.strip())
    rest = GROUPING.sub(" ", rest)
    for m in IDENT.finditer(rest):
        word = m.group()
        if rest[m.end() :].lstrip().startswith("("):
            if word not in FUNCTIONS:
                q.problems.append(f"unknown function {word}()")
        elif word not in KEYWORDS:
            q.metrics.append(word)
    leftover = LEFTOVER.sub("", IDENT.sub("", rest))
    if leftover:
        q.problems.append(f"unexpected characters {leftover!r}")
    return q


def check(expr: str, exported: dict[str, set[str]]) -> list[str]:
    """Problems of one expression against the exported metric names and their labels."""
    q = parse(expr)
    problems = list(q.problems)
    problems.extend(f"metric {name} is not exported" for name in q.metrics if name not in exported)
    for name, label in q.matched:
        if name in exported and label not in exported[name]:
            problems.append(f"{name} has no label {label}")
    # Strict for binary queries (each side's labels would do), which the dashboard keeps to one
    # metric per query anyway.
    common: set[str] = set()
    for i, n in enumerate(n for n in q.metrics if n in exported):
        common = set(exported[n]) if i == 0 else common & exported[n]
    problems.extend(
        f"grouping label {label} is not on every metric of the query" for label in q.grouping if label not in common
    )
    return problems


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Every sample name PrometheusMetrics exports, with its labels, after a completed and a failed stream."""
    registry = CollectorRegistry()
    sink = PrometheusMetrics(registry)
    directory = tmp_path_factory.mktemp("cassettes")
    run_replay(cassette_of(directory, ANTHROPIC), sink)
    run_replay(cassette_of(directory, GROQ_ERROR), sink)
    out: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(DASHBOARD.read_text()))


def panels_of(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in cast(list[dict[str, Any]], dashboard["panels"]):
        out.append(panel)
        out.extend(cast(list[dict[str, Any]], panel.get("panels", [])))  # a collapsed row's own
    return out


def targets_of(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for p in panels_of(dashboard) for t in cast(list[dict[str, Any]], p.get("targets", []))]


# -- structure ---------------------------------------------------------------------------------------


def test_the_dashboard_has_what_grafana_needs_to_import_it(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] == 42  # the last version of the classic JSON model
    assert dashboard["title"] and dashboard["uid"] and dashboard["id"] is None
    (source,) = dashboard["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == ("DS_PROMETHEUS", "datasource", "prometheus")
    panels = panels_of(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    for panel in panels:
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) and grid[k] >= 0 for k in ("x", "y", "w", "h")), panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["type"] and panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for t in panel["targets"]:
            assert isinstance(t["expr"], str) and t["expr"].strip(), panel["title"]
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}"


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in cast(list[dict[str, Any]], dashboard["panels"]):
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_the_panels_the_issue_asks_for_are_there(dashboard: dict[str, Any]) -> None:
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels_of(dashboard)}

    def quantiles(metric: str) -> set[str]:
        return {
            m.group(1)
            for e in exprs.values()
            for m in re.finditer(rf"histogram_quantile\(([0-9.]+), [^;]*?{metric}_bucket", e)
        }

    assert {"0.5", "0.9", "0.99"} <= quantiles("rxstream_time_to_first_token_seconds")
    assert {"0.5", "0.99"} <= quantiles("rxstream_inter_chunk_gap_seconds")
    assert quantiles("rxstream_stream_duration_seconds")
    assert quantiles("rxstream_output_tokens_per_second")
    assert any("sum by (outcome)" in e and "rxstream_streams_total" in e for e in exprs.values())
    assert any("sum by (provider, error_type)" in e and "rxstream_stream_errors_total" in e for e in exprs.values())


def test_provider_and_model_variables_filter_every_query(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"provider", "model"} <= set(variables)
    for v in variables.values():
        assert v["type"] == "query" and v["datasource"]["uid"] == "${DS_PROMETHEUS}"
    for t in targets_of(dashboard):
        assert 'provider=~"$provider"' in t["expr"] and 'model=~"$model"' in t["expr"], t["expr"]


# -- queries against the exported metrics ------------------------------------------------------------


def test_every_query_uses_exported_metrics_and_their_labels(
    dashboard: dict[str, Any], exported: dict[str, set[str]]
) -> None:
    targets = targets_of(dashboard)
    assert len(targets) >= 10
    for t in targets:
        assert check(t["expr"], exported) == [], t["expr"]
        # A legend names labels the query's result keeps: the grouping ones.
        grouping = set(parse(t["expr"]).grouping)
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")):
            assert label in grouping, (label, t["expr"])


def test_variable_queries_use_exported_metrics_and_labels(
    dashboard: dict[str, Any], exported: dict[str, set[str]]
) -> None:
    for v in dashboard["templating"]["list"]:
        query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        found = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
        assert found is not None, query
        selector, label = found.groups()
        assert check(selector, exported) == [], query
        (metric,) = parse(selector).metrics
        assert label in exported[metric], query


def test_the_exported_names_cover_the_histogram_and_counter_suffixes(exported: dict[str, set[str]]) -> None:
    # The fixture is only as good as what the sink registered: make sure both streams showed up.
    for suffix in ("_bucket", "_sum", "_count"):
        assert f"rxstream_inter_chunk_gap_seconds{suffix}" in exported
    assert exported["rxstream_stream_errors_total"] == {"provider", "model", "error_type"}
    assert exported["rxstream_tokens_total"] == {"provider", "model", "outcome", "type"}
    assert exported["rxstream_time_to_first_token_seconds_bucket"] == {"provider", "model", "outcome", "le"}


# -- the checker itself --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("rate(rxstream_nope_total[5m])", "metric rxstream_nope_total is not exported"),
        ("sum by (region) (rate(rxstream_streams_total[5m]))", "grouping label region"),
        ('rate(rxstream_streams_total{colour="red"}[5m])', "rxstream_streams_total has no label colour"),
        ("sum by (le) (rate(rxstream_stream_duration_seconds_sum[5m]))", "grouping label le"),
        ("histogram_quantile(0.5, sum by (le) (rate(rxstream_stream_duration_seconds_bucket[5m]))", "unclosed '('"),
        ("rate(rxstream_streams_total[5m]))", "unbalanced ')'"),
        ("rat(rxstream_streams_total[5m])", "unknown function rat()"),
        ("rate(rxstream_streams_total[$provider])", "range [$provider]"),
        ('rate(rxstream_streams_total{provider=~"$provider}[5m])', "unterminated string"),
        ("rate(rxstream_streams_total{provider=~$provider}[5m])", "bad label matcher"),
        ('rate({provider="x"}[5m])', "names no metric"),
        ("rate(rxstream_streams_total[5m]) $bad", "unexpected characters"),
    ],
)
def test_the_checker_catches_broken_queries(expr: str, problem: str, exported: dict[str, set[str]]) -> None:
    problems = check(expr, exported)
    assert any(problem in p for p in problems), problems


def test_the_checker_accepts_a_good_query(exported: dict[str, set[str]]) -> None:
    quantile = (
        "histogram_quantile(0.9, sum by (le, provider) (rate(rxstream_time_to_first_token_seconds_bucket"
        '{provider=~"$provider", model!="x", outcome="completed"}[$__rate_interval])))'
    )
    ratio = (
        'sum by (provider) (rate(rxstream_streams_total{outcome="error"}[5m]))'
        " / on (provider) group_left sum by (provider) (rate(rxstream_streams_total[1h]))"
    )
    assert check(quantile, exported) == [] and check(ratio, exported) == []
    assert parse(quantile).metrics == ["rxstream_time_to_first_token_seconds_bucket"]
    assert parse(quantile).grouping == ["le", "provider"]
    q = parse(ratio)
    assert q.metrics == ["rxstream_streams_total", "rxstream_streams_total"]
    assert q.matched == [("rxstream_streams_total", "outcome")]
    assert sorted(q.grouping) == ["provider", "provider", "provider"]
