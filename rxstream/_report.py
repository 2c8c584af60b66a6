"""The HTML report: one self-contained page with each stream's timeline and its metrics table.

``render_report`` draws, per stream, every event at its arrival offset from the stream's origin
(``StreamMetrics.origin_at``) in one lane per kind, the marks ``tap_metrics()`` measured (request
sent, headers, first provider event, first token, first text, end) as labelled vertical lines, the
rows of :func:`~rxstream.operators._metrics.format_metrics` (``metrics_rows``) as a table, and who answered and how the
stream ended. The page needs nothing but itself: inline CSS and SVG, system fonts, no URL it would
fetch, and a few lines of inline script that only record the laid-out sizes (what
``scripts/check_report.py`` reads back from headless Chromium).

Everything that comes from a stream (text, names, ids) is HTML-escaped. Size is bounded: past
:data:`MAX_EVENT_MARKS` events a stream's marks are aggregated per column of pixels, so a page
stays under about a megabyte per stream whatever the stream's length.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rxstream._errors import RxStreamError
from rxstream._events import EventBase, StreamStart
from rxstream.operators._metrics import ORIGIN_NAMES, StreamMetrics, metrics_rows

__all__ = ["MAX_EVENT_MARKS", "pair_streams", "render_report", "write_report"]

MAX_EVENT_MARKS = 5000
"""Above this many events a stream's timeline draws one mark per kind and pixel column."""

# (key, legend label, colour): the Okabe-Ito palette, told apart with the common colour-vision
# deficiencies; lanes are drawn in this order.
_KINDS: tuple[tuple[str, str, str], ...] = (
    ("reasoning", "reasoning", "#CC79A7"),
    ("text", "text", "#0072B2"),
    ("refusal", "refusal", "#D55E00"),
    ("tool", "tool call", "#E69F00"),
    ("json", "json", "#009E73"),
    ("usage", "usage", "#56B4E9"),
    ("finish", "finish", "#1F2937"),
    ("other", "other", "#9CA3AF"),
)
_KIND_OF = {
    "text.delta": "text",
    "reasoning.delta": "reasoning",
    "refusal.delta": "refusal",
    "tool_call.start": "tool",
    "tool_call.delta": "tool",
    "tool_call.done": "tool",
    "json.partial": "json",
    "json.value": "json",
    "usage": "usage",
    "finish": "finish",
}

# Geometry of the timeline (SVG user units, drawn 1:1 at the page's width).
_WIDTH = 1040
_LEFT = 118  # lane labels live left of this
_RIGHT = 28
_PLOT = _WIDTH - _LEFT - _RIGHT
_TOP = 6
_LABEL_ROW = 16
_LANE_PAD = 4
_LANE_MIN = 18
_LANE_MAX = 120
_AXIS = 40
_BUCKET = 3  # px: marks closer than this stack instead of hiding each other
_AGG_BUCKET = 2
_FONT_PX = 11
_CHAR_PX = 6.4  # an average glyph of the 11 px system sans, for label collision

_PREVIEW_CHARS = 60
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def _esc(value: object) -> str:
    """Text safe in HTML content and attributes: escaped, control characters and lone
    surrogates (which no UTF-8 file can hold) shown as U+FFFD."""
    return html.escape(_CONTROL.sub("\ufffd", str(value)), quote=True)


def _n(value: float) -> str:
    """A coordinate, short."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def _clip(text: str) -> str:
    shown = json.dumps(text[:_PREVIEW_CHARS], ensure_ascii=False)
    return shown + ("…" if len(text) > _PREVIEW_CHARS else "")


def _preview(event: EventBase) -> str:
    """What matters in one event, short (the mark's hover text after its type and offset)."""
    kind: str = getattr(event, "type", "")
    data: Any = event
    if kind in ("text.delta", "reasoning.delta", "refusal.delta"):
        return _clip(data.text) if data.text else ("(signature)" if getattr(data, "signature", None) else "")
    if kind == "tool_call.start":
        return f"{data.name} #{data.call_index}"
    if kind == "tool_call.delta":
        return _clip(data.arguments_delta)
    if kind == "tool_call.done":
        return f"{data.name}({_clip(data.arguments)})"
    if kind == "usage":
        return f"in={data.input_tokens} out={data.output_tokens} ({data.source})"
    if kind == "finish":
        return f"{data.reason} ({data.raw_reason})"
    if kind == "stream.start":
        return f"{data.provider or '?'} {data.model or '?'}"
    if kind in ("json.partial", "json.value"):
        return _clip(json.dumps(data.value, ensure_ascii=False, default=str))
    if kind == "provider.event":
        return str(data.name)
    if kind == "citation":
        return str(data.url or data.title or "")
    return ""


@dataclass(slots=True)
class _Lane:
    key: str
    label: str
    colour: str
    count: int = 0
    height: float = _LANE_MIN
    # By pixel column: the offsets (ms) of its events, or when aggregated [count, first ms, last ms, {type: count}].
    columns: dict[int, list[Any]] = field(default_factory=dict[int, list[Any]])


class _Timeline:
    """The geometry of one stream's timeline: the scale, the lanes, the milestone labels."""

    def __init__(self, events: Sequence[EventBase], metrics: StreamMetrics) -> None:
        origin = metrics.origin_at if metrics.origin_at is not None else (events[0].at if events else 0)
        self.offsets = [max(0.0, (e.at - origin) / 1e6) for e in events]
        last = max(self.offsets, default=0.0)
        duration = (metrics.duration or 0.0) * 1000
        end = max(last, duration)
        self.untimed = end <= 0
        self.span = end if end > 0 else 1.0
        self.aggregated = len(events) > MAX_EVENT_MARKS
        self.events = events
        self.metrics = metrics
        lanes = {key: _Lane(key, label, colour) for key, label, colour in _KINDS}
        self.lane_of = [lanes[_KIND_OF.get(getattr(e, "type", ""), "other")] for e in events]
        for lane in self.lane_of:
            lane.count += 1
        self.lanes = [lane for lane in lanes.values() if lane.count]
        self.milestones = self._milestones()

    def x(self, offset_ms: float) -> float:
        return _LEFT + offset_ms / self.span * _PLOT

    def _milestones(self) -> list[tuple[float, str]]:
        """(x, label) per mark, marks on the same pixel merged, placed later in label rows."""
        m = self.metrics
        marks: list[tuple[str, float]] = []
        if m.origin == "request":
            marks.append(("request sent", 0.0))
        elif m.origin == "headers":
            marks.append(("headers", 0.0))
        for name, value in (
            ("headers", m.ttfb),
            ("first event", m.first_event),
            ("first token", m.ttft),
            ("first text", m.first_text),
            ({"completed": "end", "error": "error", "cancelled": "cancelled"}[m.outcome], m.duration),
        ):
            if value is not None and not (name == "headers" and m.origin == "headers"):
                marks.append((name, value * 1000))
        merged: list[tuple[float, list[tuple[str, float]]]] = []
        for name, ms in sorted(marks, key=lambda mark: mark[1]):
            x = self.x(ms)
            if merged and abs(merged[-1][0] - x) < 1:
                merged[-1][1].append((name, ms))
            else:
                merged.append((x, [(name, ms)]))
        out: list[tuple[float, str]] = []
        for x, group in merged:
            values = {f"{ms:.1f}" for _, ms in group}
            if len(values) == 1:
                label = " = ".join(name for name, _ in group) + f" {values.pop()} ms"
            else:
                label = " · ".join(f"{name} {ms:.1f}" for name, ms in group) + " ms"
            out.append((x, label))
        return out


def _ticks(span: float) -> tuple[list[float], int]:
    """Round tick values over [0, span] (about six) and the decimals their labels need."""
    raw = span / 6
    magnitude = 10 ** math.floor(math.log10(raw))
    step = magnitude
    for multiple in (1, 2, 2.5, 5, 10):
        step = multiple * magnitude
        if step >= raw:
            break
    count = int(span / step + 1e-9)
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > 1e-9 * step:
        decimals += 1
    return [i * step for i in range(count + 1)], decimals


def _label_rows(milestones: list[tuple[float, str]]) -> list[tuple[float, str, int, str]]:
    """(x, label, row, anchor): each label in the first row where it overlaps nothing."""
    ends: list[float] = []
    placed: list[tuple[float, str, int, str]] = []
    for x, label in milestones:
        width = len(label) * _CHAR_PX
        if x + 3 + width > _WIDTH - 2:
            left, right, anchor = x - 3 - width, x, "end"
        else:
            left, right, anchor = x, x + 3 + width, "start"
        row = next((r for r, end in enumerate(ends) if end + 8 <= left), len(ends))
        if row == len(ends):
            ends.append(right)
        else:
            ends[row] = right
        placed.append((x, label, row, anchor))
    return placed


def _svg(t: _Timeline, index: int) -> tuple[str, int]:
    """The timeline's SVG and its number of marks."""
    placed = _label_rows(t.milestones)
    rows = max((row for _, _, row, _ in placed), default=-1) + 1
    lanes_top = _TOP + rows * _LABEL_ROW + 6
    out: list[str] = []
    marks = 0

    bucket_px = _AGG_BUCKET if t.aggregated else _BUCKET
    # Per event (per-event mode): its lane, column, level in the column's stack, hover title.
    placed_events: list[tuple[_Lane, int, int, float, str]] = []
    for event, offset, lane in zip(t.events, t.offsets, t.lane_of, strict=True):
        column = int((t.x(offset) - _LEFT) // bucket_px)
        entries = lane.columns.get(column)
        kind: str = getattr(event, "type", "?")
        if t.aggregated:
            if entries is None:
                lane.columns[column] = [1, offset, offset, {kind: 1}]
            else:
                entries[0] += 1
                entries[2] = offset
                entries[3][kind] = entries[3].get(kind, 0) + 1
        else:
            title = f"{kind} · +{offset:.1f} ms · seq {event.seq}"
            preview = _preview(event)
            if preview:
                title += f" · {preview}"
            if entries is None:
                entries = lane.columns[column] = []
            placed_events.append((lane, column, len(entries), offset, title))
            entries.append(offset)
    for lane in t.lanes:
        if t.aggregated:
            lane.height = 36
        elif not t.untimed:
            # Untimed, every event is in one column: a taller lane would only show one taller bar.
            deepest = max(len(v) for v in lane.columns.values())
            lane.height = min(_LANE_MAX, max(_LANE_MIN, deepest * 5))
    bottom = lanes_top + sum(lane.height + 2 * _LANE_PAD for lane in t.lanes)
    height = math.ceil(bottom + _AXIS)
    origin_name = {"request": "the request was sent", "headers": "the response headers", "first_event": "the first event"}
    aria = f"Timeline of stream {index}: {sum(lane.count for lane in t.lanes)} events over {t.span:.1f} ms"
    out.append(
        f'<svg class="timeline" viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" height="{height}" '
        f'role="img" aria-label="{_esc(aria)}">'
    )
    # Lanes: a band each, labelled on the left with the kind and its count.
    top = lanes_top
    bands: list[tuple[_Lane, float]] = []
    for number, lane in enumerate(t.lanes):
        band = lane.height + 2 * _LANE_PAD
        if number % 2 == 0:
            out.append(f'<rect class="band" x="{_LEFT}" y="{_n(top)}" width="{_PLOT}" height="{_n(band)}"/>')
        out.append(
            f'<text class="lane" x="{_LEFT - 10}" y="{_n(top + band / 2 + 4)}" text-anchor="end">'
            f'{_esc(lane.label)} <tspan class="count">{lane.count:,}</tspan></text>'
        )
        bands.append((lane, top))
        top += band
    # Grid and axis.
    ticks, decimals = ([0.0], 0) if t.untimed else _ticks(t.span)
    for value in ticks:
        x = _n(t.x(value))
        out.append(f'<line class="grid" x1="{x}" x2="{x}" y1="{_n(lanes_top)}" y2="{_n(bottom)}"/>')
        out.append(f'<line class="tick" x1="{x}" x2="{x}" y1="{_n(bottom)}" y2="{_n(bottom + 5)}"/>')
        out.append(f'<text class="tick" x="{x}" y="{_n(bottom + 17)}" text-anchor="middle">{value:,.{decimals}f}</text>')
    out.append(f'<line class="axis" x1="{_LEFT}" x2="{_LEFT + _PLOT}" y1="{_n(bottom)}" y2="{_n(bottom)}"/>')
    out.append(
        f'<text class="axis-title" x="{_LEFT + _PLOT}" y="{_n(bottom + 34)}" text-anchor="end">'
        f"ms since {origin_name[t.metrics.origin]}</text>"
    )
    # Milestone lines under the marks (so no mark hides behind one), labels in rows above the lanes.
    for x, _, row, _ in placed:
        y = _TOP + (row + 1) * _LABEL_ROW - 4
        out.append(f'<line class="milestone" x1="{_n(x)}" x2="{_n(x)}" y1="{_n(y + 3)}" y2="{_n(bottom)}"/>')
    for x, label, row, anchor in placed:
        y = _TOP + (row + 1) * _LABEL_ROW - 4
        tx = x + 3 if anchor == "start" else x - 3
        out.append(
            f'<text class="milestone" x="{_n(tx)}" y="{_n(y)}" text-anchor="{anchor}">{_esc(label)}</text>'
        )
    # Events, in time order (document order is the stream's order, as a reader scans it).
    floors = {lane.key: lane_top + _LANE_PAD + lane.height for lane, lane_top in bands}
    if t.aggregated:
        cells = sorted(
            (column, number, lane, cell)
            for number, lane in enumerate(t.lanes)
            for column, cell in lane.columns.items()
        )
        most = {lane.key: max(cell[0] for cell in lane.columns.values()) for lane in t.lanes}
        for column, _, lane, (n, lo, hi, kinds) in cells:
            h = max(2.0, lane.height * math.sqrt(n / most[lane.key]))
            what = ", ".join(f"{c} {k}" for k, c in sorted(kinds.items(), key=lambda kc: -kc[1]))
            title = f"{n} events · +{lo:.1f} to +{hi:.1f} ms · {what}"
            out.append(
                f'<rect class="mark agg" fill="{lane.colour}" x="{_n(_LEFT + column * _AGG_BUCKET)}" '
                f'y="{_n(floors[lane.key] - h)}" width="{_AGG_BUCKET}" height="{_n(h)}" data-count="{n}" '
                f'data-ms="{lo:.3f}"><title>{_esc(title)}</title></rect>'
            )
            marks += 1
    for lane, column, level, offset, title in placed_events:
        k = len(lane.columns[column])
        gap = 1.0 if lane.height / k >= 3 else 0.0
        h = (lane.height - (k - 1) * gap) / k
        y = floors[lane.key] - (level + 1) * h - level * gap
        out.append(
            f'<rect class="mark" fill="{lane.colour}" x="{_n(t.x(offset) - 1.5)}" y="{_n(y)}" '
            f'width="3" height="{_n(h)}" data-ms="{offset:.3f}"><title>{_esc(title)}</title></rect>'
        )
        marks += 1
    out.append("</svg>")
    return "".join(out), marks


def _metric_rows(metrics: StreamMetrics) -> tuple[tuple[str, str], list[tuple[str, str]]]:
    """The header and rows ``format_metrics`` prints (one source for both)."""
    return (f"metric (from {ORIGIN_NAMES[metrics.origin]})", "value"), metrics_rows(metrics)


def _outcome(m: StreamMetrics) -> str:
    if m.outcome == "completed":
        return '<span class="badge ok">completed</span>'
    if m.outcome == "error":
        return f'<span class="badge bad">error: {_esc(m.error_type or "?")}</span>'
    return '<span class="badge off">cancelled</span>'


def _section(index: int, caption: str | None, events: Sequence[EventBase], m: StreamMetrics) -> str:
    start = next((e for e in events if isinstance(e, StreamStart)), None)
    model = m.response_model or m.request_model
    heading = caption or f"{m.provider or '?'} · {model or '?'}"
    identity: list[tuple[str, str]] = [
        ("provider", m.provider or "?"),
        ("wire", m.wire or "?"),
        ("model", model or "?"),
    ]
    if m.request_model and m.response_model and m.request_model != m.response_model:
        identity.append(("requested model", m.request_model))
    identity.append(("stream id", m.stream_id or "?"))
    if start is not None and start.request_id:
        identity.append(("request id", start.request_id))
    if start is not None and start.response_id:
        identity.append(("response id", start.response_id))
    if m.server_address:
        identity.append(("server", m.server_address + (f":{m.server_port}" if m.server_port else "")))
    outcome = m.outcome + (f" ({m.error_type})" if m.error_type else "")
    identity.append(("outcome", outcome))
    if m.finish_reasons:
        identity.append(("finish", ", ".join(m.finish_reasons)))
    header, rows = _metric_rows(m)
    parts: list[str] = []
    timeline = _Timeline(events, m) if events else None
    svg, marks = _svg(timeline, index) if timeline is not None else ("", 0)
    parts.append(
        f'<section class="stream" id="stream-{index}" data-stream-id="{_esc(m.stream_id or "")}" '
        f'data-events="{len(events)}" data-marks="{marks}" data-rows="{len(rows)}" '
        f'data-aggregated="{"true" if timeline is not None and timeline.aggregated else "false"}">'
    )
    parts.append(f'<h2><span class="num">{index}</span>{_esc(heading)} {_outcome(m)}</h2>')
    parts.append(
        f'<p class="headline">{_esc(m.provider or "?")} · {_esc(m.wire or "?")} · {_esc(model or "?")} · '
        f"time to first token <b>{_esc(_ms(m.ttft))}</b> · duration <b>{_esc(_ms(m.duration))}</b> · "
        f"{m.events:,} events, {m.chunks:,} content chunks</p>"
    )
    if timeline is None:
        parts.append('<p class="note">No events: nothing to draw.</p>')
    else:
        if timeline.untimed and len(events) > 1:
            parts.append(
                f'<p class="note">All {len(events)} events carry the same arrival stamp: the recording has no '
                "timing (a raw <code>.sse</code>/<code>.jsonl</code>/<code>.json</code> body, or a cassette "
                "recorded without it), so every event is drawn at offset 0 and the gaps are zero.</p>"
            )
        if timeline.aggregated:
            parts.append(
                f'<p class="note">{len(events):,} events: more than {MAX_EVENT_MARKS:,}, so each mark is every '
                f"event of its kind within {_AGG_BUCKET} px (its height grows with their number; hover for the "
                "count).</p>"
            )
        legend = "".join(
            f'<span class="key"><i style="background:{lane.colour}"></i>{_esc(lane.label)} {lane.count:,}</span>'
            for lane in timeline.lanes
        )
        parts.append(
            f'<div class="legend">{legend}<span class="key"><i class="dash"></i>measured marks</span></div>'
        )
        parts.append(f'<div class="plot">{svg}</div>')
    table = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
    facts = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in identity)
    parts.append(
        '<div class="details">'
        f'<table class="metrics"><thead><tr><th>{_esc(header[0])}</th><th>{_esc(header[1])}</th></tr></thead>'
        f"<tbody>{table}</tbody></table>"
        f'<dl class="identity">{facts}</dl>'
        "</div></section>"
    )
    return "".join(parts)


_CSS = """
:root{color-scheme:light}
*{box-sizing:border-box}
body{margin:0;background:#f3f4f6;color:#111827;
 font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","DejaVu Sans",sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px 20px 40px}
header h1{font-size:22px;margin:0 0 4px}
header p{margin:0 0 4px;color:#4b5563}
.notes{margin:8px 0 0;padding-left:18px;color:#374151}
section.stream{background:#fff;border:1px solid #e5e7eb;border-radius:10px;padding:16px 20px 18px;margin:20px 0;
 box-shadow:0 1px 2px rgba(0,0,0,.04)}
h2{font-size:17px;margin:0 0 2px;display:flex;align-items:center;gap:10px;flex-wrap:wrap}
h2 .num{display:inline-flex;align-items:center;justify-content:center;min-width:24px;height:24px;border-radius:12px;
 background:#111827;color:#fff;font-size:13px}
.badge{font-size:12px;font-weight:600;padding:2px 8px;border-radius:10px}
.badge.ok{background:#dcfce7;color:#166534}.badge.bad{background:#fee2e2;color:#991b1b}
.badge.off{background:#e5e7eb;color:#374151}
.headline{margin:2px 0 10px;color:#4b5563}.headline b{color:#111827}
.note{margin:6px 0 10px;padding:6px 10px;background:#fffbeb;border-left:3px solid #f59e0b;color:#78350f}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;margin:4px 0 6px;font-size:13px;color:#374151}
.legend .key{display:inline-flex;align-items:center;gap:6px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px}
.legend i.dash{width:0;height:14px;border-left:2px dashed #374151;border-radius:0}
.plot{overflow-x:auto}
svg.timeline{display:block;max-width:100%;height:auto}
svg text{font-family:inherit;font-size:11px;fill:#374151}
svg text.lane{font-size:12px;fill:#111827}svg tspan.count{fill:#6b7280;font-size:11px}
svg text.tick{fill:#4b5563;font-variant-numeric:tabular-nums}
svg text.axis-title{fill:#6b7280;font-style:italic}
svg text.milestone{fill:#111827;font-weight:600;paint-order:stroke;stroke:#fff;stroke-width:3px}
svg .band{fill:#f8fafc}
svg line.grid{stroke:#e5e7eb;stroke-width:1}
svg line.axis,svg line.tick{stroke:#6b7280;stroke-width:1}
svg line.milestone{stroke:#374151;stroke-width:1.2;stroke-dasharray:4 3;opacity:.85}
svg rect.mark:hover{stroke:#111827;stroke-width:1}
.details{display:grid;grid-template-columns:minmax(0,1.2fr) minmax(0,1fr);gap:12px 28px;margin-top:12px}
table.metrics{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
table.metrics th,table.metrics td{text-align:left;padding:4px 10px;border-bottom:1px solid #f1f5f9;vertical-align:top}
table.metrics thead th{border-bottom:2px solid #e5e7eb;color:#4b5563;font-weight:600;white-space:nowrap}
table.metrics tbody th{font-weight:500;color:#374151;white-space:nowrap}
dl.identity{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:4px 14px;margin:0;align-content:start}
dl.identity dt{color:#6b7280}dl.identity dd{margin:0;overflow-wrap:anywhere}
code{font-size:12px}
@media (max-width:760px){.details{grid-template-columns:1fr}}
"""

# Records what the browser laid out (sections, marks drawn with a size, table rows) on the root
# element, where ``chromium --dump-dom`` shows it: the check that the page renders, not only parses.
_SELF_CHECK = """
(function(){var out=[];document.querySelectorAll("section.stream").forEach(function(s){
var svg=s.querySelector("svg.timeline"),box=svg?svg.getBoundingClientRect():{width:0,height:0};
var marks=s.querySelectorAll("svg.timeline .mark"),drawn=0;
marks.forEach(function(m){var b=m.getBoundingClientRect();if(b.width>0&&b.height>0)drawn++;});
out.push({marks:marks.length,drawn:drawn,rows:s.querySelectorAll("table.metrics tbody tr").length,
width:Math.round(box.width),height:Math.round(box.height)});});
document.documentElement.setAttribute("data-rendered",JSON.stringify({streams:out,
height:Math.ceil(document.documentElement.scrollHeight)}));})();
"""


def render_report(
    streams: Sequence[tuple[Sequence[EventBase], StreamMetrics]],
    *,
    title: str,
    notes: Sequence[str] = (),
    captions: Sequence[str | None] = (),
) -> str:
    """One self-contained HTML page showing each stream's timeline and metrics.

    Per stream: a timeline (SVG) with every event at its arrival offset from the stream's origin
    (``metrics.origin_at``), one lane and colour per kind (reasoning, text, refusal, tool call,
    json, usage, finish, other), events on the same pixel stacked, a hover title on each mark
    (type, offset, seq, a short preview); the marks ``tap_metrics()`` measured as labelled dashed
    lines; the rows of ``format_metrics`` as a table; who answered and how the stream ended.
    Streams of more than :data:`MAX_EVENT_MARKS` events draw one mark per kind and pixel column.

    Args:
        streams: ``(events, metrics)`` per stream, in the order to show them: the events that
            passed ``tap_metrics()`` and the :class:`StreamMetrics` its sink received.
        title: the page's title.
        notes: lines shown under the title (how the streams were obtained, say).
        captions: a heading per stream (``None`` or missing: provider and model).

    Returns:
        The page as a string (UTF-8 safe: unencodable characters are replaced).

    Raises:
        ValueError: more captions than streams.
    """
    if len(captions) > len(streams):
        raise ValueError(
            f"render_report(captions=...) expected at most one caption per stream ({len(streams)}), "
            f"got {len(captions)}"
        )
    from rxstream import __version__

    sections = [
        _section(i, captions[i - 1] if i <= len(captions) else None, events, metrics)
        for i, (events, metrics) in enumerate(streams, 1)
    ]
    count = f"{len(streams)} stream{'s' if len(streams) != 1 else ''}"
    note_items = "".join(f"<li>{_esc(note)}</li>" for note in notes)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<header><h1>{_esc(title)}</h1>"
        f"<p>{count} · rxstream {_esc(__version__)} · hover a mark for the event; this page needs no network</p>"
        + (f'<ul class="notes">{note_items}</ul>' if note_items else "")
        + "</header>"
        + "".join(sections)
        + f"</main><script>{_SELF_CHECK}</script></body></html>\n"
    )


def pair_streams(
    events: Iterable[EventBase], records: Iterable[StreamMetrics]
) -> list[tuple[list[EventBase], StreamMetrics]]:
    """Each measured stream's events (matched by ``stream_id``) beside its metrics, in the
    records' order: ``render_report``'s input from one event list and a sink's records."""
    by_id: dict[str, list[EventBase]] = {}
    for event in events:
        by_id.setdefault(event.stream_id, []).append(event)
    return [(by_id.get(m.stream_id or "", []), m) for m in records]


def write_report(
    path: str | os.PathLike[str],
    streams: Sequence[tuple[Sequence[EventBase], StreamMetrics]],
    *,
    title: str,
    notes: Sequence[str] = (),
    captions: Sequence[str | None] = (),
) -> Path:
    """Render the page (see :func:`render_report`) and write it to ``path`` as UTF-8.

    Returns:
        The path written.

    Raises:
        RxStreamError: the file cannot be written (the ``OSError`` attached as the cause).
    """
    page = render_report(streams, title=title, notes=notes, captions=captions)
    target = Path(path)
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise RxStreamError(f"cannot write the report {target}: {exc.strerror or exc}") from exc
    return target
