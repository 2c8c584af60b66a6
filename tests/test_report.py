"""The HTML report: structure, positions, escaping, size bounds, and rendering in headless Chromium."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import reactivex

from rxstream._errors import RxStreamError
from rxstream._events import (
    Citation,
    EventBase,
    Finish,
    ReasoningDelta,
    StreamEnd,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    make_event,
)
from rxstream._report import MAX_EVENT_MARKS, pair_streams, render_report, write_report
from rxstream.metrics import InMemoryMetrics, StreamMetrics, format_metrics
from rxstream.operators import tap_metrics

ROOT = Path(__file__).resolve().parent.parent
CHECK_SCRIPT = ROOT / "scripts" / "check_report.py"
MS = 1_000_000


# -- building streams ----------------------------------------------------------------------------


def start(sid: str = "s1", *, at_ms: float = 150, sent_ms: float | None = 0, first_ms: float = 400, **kw: Any) -> Any:
    return make_event(
        StreamStart,
        stream_id=sid,
        seq=0,
        at=round(at_ms * MS),
        provider=kw.get("provider", "acme"),
        wire="openai.chat",
        model=kw.get("model", "m-1"),
        request={"model": "m-1"},
        request_sent_at=None if sent_ms is None else round(sent_ms * MS),
        first_event_at=round(first_ms * MS),
        request_id=kw.get("request_id"),
    )


def text(t: str, seq: int, at_ms: float, sid: str = "s1") -> Any:
    return make_event(TextDelta, stream_id=sid, seq=seq, at=round(at_ms * MS), text=t)


def usage(seq: int, at_ms: float, sid: str = "s1") -> Any:
    return make_event(Usage, stream_id=sid, seq=seq, at=round(at_ms * MS), input_tokens=5, output_tokens=3)


def finish(seq: int, at_ms: float, sid: str = "s1") -> Any:
    return make_event(Finish, stream_id=sid, seq=seq, at=round(at_ms * MS), reason="stop", raw_reason="stop")


def end(seq: int, at_ms: float, sid: str = "s1") -> Any:
    return make_event(StreamEnd, stream_id=sid, seq=seq, at=round(at_ms * MS))


def measured(events: list[Any]) -> tuple[list[EventBase], StreamMetrics]:
    """The events as they passed tap_metrics(), beside the metrics its sink received."""
    sink = InMemoryMetrics()
    passed: list[EventBase] = []
    reactivex.from_iterable(events).pipe(tap_metrics(sink)).subscribe(passed.append)
    assert len(sink.records) == 1
    return passed, sink.records[0]


def short_stream() -> list[Any]:
    # Offsets from the request: headers 150, first payload 400, text at 400/500/600, end 800 ms.
    return [
        start(),
        text("Hel", 1, 400),
        text("lo", 2, 500),
        text(" world", 3, 600),
        usage(4, 700),
        finish(4, 700),
        end(4, 800),
    ]


# -- reading pages ---------------------------------------------------------------------------------


class Page(HTMLParser):
    """Elements with their attributes and text, in document order."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self._open: list[int] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, []))
        if tag not in ("meta", "line", "br", "img", "link", "input"):
            self._open.append(len(self.elements) - 1)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, []))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            index = self._open.pop()
            if self.elements[index][0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for index in self._open:
            self.elements[index][2].append(data)

    def find(self, tag: str, cls: str | None = None) -> list[tuple[dict[str, str], str]]:
        return [
            (attrs, "".join(texts))
            for t, attrs, texts in self.elements
            if t == tag and (cls is None or cls in attrs.get("class", "").split())
        ]


def marks(page: Page) -> list[tuple[dict[str, str], str]]:
    return page.find("rect", "mark")


# -- render_report ---------------------------------------------------------------------------------


def test_one_mark_per_event_in_time_order_at_its_offset() -> None:
    events, metrics = measured(short_stream())
    page = Page(render_report([(events, metrics)], title="t"))
    drawn = marks(page)
    assert len(drawn) == len(events) == 7
    offsets = [float(attrs["data-ms"]) for attrs, _ in drawn]
    assert offsets == [150.0, 400.0, 500.0, 600.0, 700.0, 700.0, 800.0]
    (axis, _), = page.find("line", "axis")
    left, right = float(axis["x1"]), float(axis["x2"])
    for attrs, _ in drawn:
        centre = float(attrs["x"]) + float(attrs["width"]) / 2
        # The scale runs from the request (0) to the end (800 ms, the stream's duration).
        assert centre == pytest.approx(left + float(attrs["data-ms"]) / 800 * (right - left), abs=0.01)
    xs = [float(attrs["x"]) for attrs, _ in drawn]
    assert xs == sorted(xs)


def test_each_mark_has_a_hover_title_with_type_offset_and_preview() -> None:
    events, metrics = measured(short_stream())
    titles = [title for _, title in marks(Page(render_report([(events, metrics)], title="t")))]
    assert titles[0].startswith("stream.start · +150.0 ms")
    assert titles[2] == 'text.delta · +500.0 ms · seq 2 · "lo"'
    assert titles[4].startswith("usage · +700.0 ms") and "in=5 out=3" in titles[4]


def test_the_measured_marks_are_drawn_and_labelled() -> None:
    events, metrics = measured(short_stream())
    page = Page(render_report([(events, metrics)], title="t"))
    labels = [label for _, label in page.find("text", "milestone")]
    assert "request sent 0.0 ms" in labels
    assert "headers 150.0 ms" in labels
    # Three marks on the same pixel share one line and one label.
    assert "first event = first token = first text 400.0 ms" in labels
    assert "end 800.0 ms" in labels
    lines = [float(attrs["x1"]) for attrs, _ in page.find("line", "milestone")]
    (axis, _), = page.find("line", "axis")
    left, right = float(axis["x1"]), float(axis["x2"])
    assert lines == pytest.approx([left + ms / 800 * (right - left) for ms in (0, 150, 400, 800)], abs=0.01)


def test_labels_of_nearby_marks_do_not_overlap() -> None:
    # headers, first event and first token a few ms apart on a 1 s scale: each label its own row
    # or far enough apart.
    events, metrics = measured([start(at_ms=10, first_ms=14), text("a", 1, 20), text("b", 2, 30), end(2, 1000)])
    page = Page(render_report([(events, metrics)], title="t"))
    boxes: list[tuple[float, float, float]] = []
    for attrs, label in page.find("text", "milestone"):
        x, y = float(attrs["x"]), float(attrs["y"])
        width = len(label) * 6.4
        left = x - width if attrs["text-anchor"] == "end" else x
        boxes.append((y, left, left + width))
    assert len(boxes) >= 4
    for i, (y1, a1, b1) in enumerate(boxes):
        for y2, a2, b2 in boxes[i + 1 :]:
            assert y1 != y2 or b1 <= a2 or b2 <= a1, f"labels overlap: {boxes}"


def test_kinds_get_distinct_colours_and_a_legend() -> None:
    sid = "k"
    events, metrics = measured(
        [
            start(sid),
            make_event(ReasoningDelta, stream_id=sid, seq=1, at=410 * MS, text="hmm"),
            text("x", 2, 420, sid),
            make_event(ToolCallStart, stream_id=sid, seq=3, at=430 * MS, call_index=0, name="f"),
            make_event(ToolCallDelta, stream_id=sid, seq=4, at=440 * MS, call_index=0, arguments_delta="{}"),
            make_event(Citation, stream_id=sid, seq=5, at=450 * MS, url="u"),
            usage(6, 460, sid),
            finish(6, 460, sid),
            end(6, 470, sid),
        ]
    )
    page = Page(render_report([(events, metrics)], title="t"))
    colour_of: dict[str, set[str]] = {}
    for attrs, title in marks(page):
        colour_of.setdefault(title.split(" ·")[0], set()).add(attrs["fill"])
    lanes = {
        "reasoning": colour_of["reasoning.delta"],
        "text": colour_of["text.delta"],
        "tool": colour_of["tool_call.start"] | colour_of["tool_call.delta"],
        "usage": colour_of["usage"],
        "finish": colour_of["finish"],
        "other": colour_of["stream.start"] | colour_of["citation"] | colour_of["stream.end"],
    }
    assert all(len(c) == 1 for c in lanes.values()), lanes
    assert len({next(iter(c)) for c in lanes.values()}) == len(lanes)
    legend = "".join(text for _, text in page.find("div", "legend"))
    for label in ("reasoning 1", "text 1", "tool call 2", "usage 1", "finish 1", "other 3"):
        assert label in legend


def test_events_on_the_same_stamp_are_stacked_not_hidden() -> None:
    events, metrics = measured(
        [start(), text("a", 1, 400), text("b", 1, 400), text("c", 1, 400), text("d", 2, 500), end(2, 600)]
    )
    page = Page(render_report([(events, metrics)], title="t"))
    same = [attrs for attrs, title in marks(page) if title.startswith("text.delta · +400.0")]
    assert len(same) == 3
    spans = sorted((float(a["y"]), float(a["y"]) + float(a["height"])) for a in same)
    assert all(float(a["height"]) > 0 for a in same)
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1)), "stacked, not overlapping"


def test_the_table_has_the_rows_of_format_metrics() -> None:
    events, metrics = measured(short_stream())
    page = Page(render_report([(events, metrics)], title="t"))
    lines = format_metrics(metrics).splitlines()
    width = len(lines[1].split(" ")[0])
    expected = [(line[:width].rstrip(), line[width + 2 :].rstrip()) for line in lines[2:]]
    headers = [t for _, t in page.find("th")]
    values = [t for _, t in page.find("td")]
    assert headers[:2] == ["metric (from request sent)", "value"]
    assert list(zip(headers[2:], values, strict=True)) == expected
    (section, _), = page.find("section", "stream")
    assert section["data-rows"] == str(len(expected)) and section["data-events"] == "7"


def test_identity_and_outcome_are_shown() -> None:
    events, metrics = measured([start(request_id="req_42"), text("a", 1, 400), end(1, 500)])
    page = render_report([(events, metrics)], title="t")
    parsed = Page(page)
    facts = dict(zip((t for _, t in parsed.find("dt")), (t for _, t in parsed.find("dd")), strict=True))
    assert facts["provider"] == "acme" and facts["wire"] == "openai.chat" and facts["model"] == "m-1"
    assert facts["stream id"] == "s1" and facts["request id"] == "req_42" and facts["outcome"] == "completed"
    failed = StreamMetrics(stream_id="s1", provider="acme", origin_at=0, outcome="error", error_type="ProviderError")
    badge = Page(render_report([(events, failed)], title="t")).find("span", "badge")
    assert badge[0][1] == "error: ProviderError" and "bad" in badge[0][0]["class"]


def test_everything_from_a_stream_is_escaped() -> None:
    hostile = '</title><script>alert("x")</script><img src=x onerror=alert(1)>'
    sid = 'id"><script>alert(2)</script>'
    events, metrics = measured(
        [
            start(sid, provider="<b>evil</b>", model=hostile),
            text(hostile, 1, 400, sid),
            text("a\x00b\ud800c", 2, 410, sid),
            end(2, 500, sid),
        ]
    )
    page = render_report([(events, metrics)], title=f"title {hostile}", captions=[hostile])
    assert "<script>alert" not in page and "<img" not in page and "<b>evil" not in page
    parsed = Page(page)
    assert [tag for tag, _, _ in parsed.elements if tag in ("script", "img")] == ["script"], "only the page's own"
    assert len(parsed.find("b")) == 2, "only the headline's own bold numbers"
    titles = [title for _, title in marks(parsed)]
    assert any(hostile[:40] in title for title in titles), "the text reads back as it was"
    assert parsed.find("section", "stream")[0][0]["data-stream-id"] == sid
    page.encode("utf-8")  # a lone surrogate would make the page unwritable


def test_no_external_resources_only_escaped_text_mentions_urls() -> None:
    url = "https://cdn.example.com/x.js"
    sid = "u"
    events, metrics = measured(
        [
            start(sid),
            text(f"see {url} and http://example.org/a.png", 1, 400, sid),
            make_event(Citation, stream_id=sid, seq=2, at=410 * MS, url=url, title="src"),
            end(2, 500, sid),
        ]
    )
    page = render_report([(events, metrics)], title="t")
    parsed = Page(page)
    for tag, attrs, _ in parsed.elements:
        assert tag not in ("link", "img", "iframe", "object", "embed", "base"), tag
        for name, value in attrs.items():
            assert "http://" not in value and "https://" not in value, (tag, name, value)
            assert "url(" not in value
    (style, css), = parsed.find("style")
    assert not style and "url(" not in css and "@import" not in css
    (_, script), = parsed.find("script")
    assert "http" not in script and "fetch" not in script and "XMLHttpRequest" not in script
    # Where the URLs do appear: escaped text inside hover titles.
    in_titles = sum(title.count("http") for _, title in parsed.find("title"))
    assert page.count("http") == in_titles == 3


def test_an_untimed_stream_is_drawn_at_offset_zero_and_says_so() -> None:
    events, metrics = measured(
        [start(at_ms=0, sent_ms=None, first_ms=0), text("a", 1, 0), text("b", 2, 0), end(2, 0)]
    )
    page = Page(render_report([(events, metrics)], title="t"))
    assert {attrs["data-ms"] for attrs, _ in marks(page)} == {"0.000"}
    notes = " ".join(t for _, t in page.find("p", "note"))
    assert "same arrival stamp" in notes and "offset 0" in notes
    assert [t for _, t in page.find("text", "axis-title")] == ["ms since the first event"]


def test_a_long_stream_is_aggregated_and_the_page_stays_bounded() -> None:
    def long_stream(n: int) -> list[Any]:
        body = [text("tok", i, 400 + i * 0.05) for i in range(1, n + 1)]
        return [start(), *body, usage(n, 400 + n * 0.05), end(n, 401 + n * 0.05)]

    sizes: list[int] = []
    for n in (20_000, 80_000):
        events, metrics = measured(long_stream(n))
        page = render_report([(events, metrics)], title="t")
        sizes.append(len(page.encode()))
        parsed = Page(page)
        (section, _), = parsed.find("section", "stream")
        drawn = marks(parsed)
        assert section["data-aggregated"] == "true" and section["data-events"] == str(n + 3)
        assert int(section["data-marks"]) == len(drawn) < 1200
        assert sum(int(attrs["data-count"]) for attrs, _ in drawn) == n + 3, "every event is counted once"
        assert any("events · +" in title and "text.delta" in title for _, title in drawn)
    assert max(sizes) < 400_000
    assert sizes[1] < sizes[0] * 1.5, "four times the events, not four times the page"


def test_up_to_the_limit_every_event_has_its_own_mark() -> None:
    n = MAX_EVENT_MARKS - 3
    events, metrics = measured([start(), *(text("t", i, 400 + i * 0.1) for i in range(1, n + 1)), usage(n, 1000), end(n, 1001)])
    assert len(events) == MAX_EVENT_MARKS
    page = Page(render_report([(events, metrics)], title="t"))
    assert len(marks(page)) == MAX_EVENT_MARKS
    assert page.find("section", "stream")[0][0]["data-aggregated"] == "false"


def test_several_streams_one_page_with_captions() -> None:
    first = measured(short_stream())
    second = measured([start("s2"), text("x", 1, 300, "s2"), end(1, 350, "s2")])
    page = Page(render_report([first, second], title="two", notes=["a note"], captions=["First", None]))
    sections = page.find("section", "stream")
    assert [attrs["id"] for attrs, _ in sections] == ["stream-1", "stream-2"]
    headings = [t for _, t in page.find("h2")]
    assert headings[0].startswith("1First") and headings[1].startswith("2acme · m-1")
    assert [t for _, t in page.find("ul", "notes")] == ["a note"]
    assert len(page.find("svg", "timeline")) == 2
    with pytest.raises(ValueError, match="at most one caption per stream"):
        render_report([first], title="t", captions=["a", "b"])


def test_pair_streams_matches_events_to_records_by_stream_id() -> None:
    a, ma = measured(short_stream())
    b, mb = measured([start("s2"), text("x", 1, 300, "s2"), end(1, 350, "s2")])
    interleaved = [e for pair in zip(a, b, strict=False) for e in pair] + a[len(b) :]
    paired = pair_streams(interleaved, [mb, ma])
    assert [(len(events), m.stream_id) for events, m in paired] == [(len(b), "s2"), (len(a), "s1")]
    assert paired[1][0] == a


def test_write_report_says_which_path_it_could_not_write(tmp_path: Path) -> None:
    events, metrics = measured(short_stream())
    written = write_report(tmp_path / "r.html", [(events, metrics)], title="t")
    assert written.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    target = tmp_path / "missing" / "r.html"
    with pytest.raises(RxStreamError, match="cannot write the report") as info:
        write_report(target, [(events, metrics)], title="t")
    assert str(target) in str(info.value) and isinstance(info.value.__cause__, OSError)
