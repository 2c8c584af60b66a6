"""Check that an rxstream HTML report really renders, in headless Chromium (Debian's ``chromium``).

Usage::

    python scripts/check_report.py REPORT.html [--screenshot out.png] [--streams N] [--chromium PATH]

What is checked:

1. The file as written: each ``section.stream`` says how many events, marks and metric rows it
   holds (``data-events``, ``data-marks``, ``data-rows``); the file's own elements are counted
   with Python's HTML parser and must agree (and marks equal events unless the stream was
   aggregated). The page must not reference anything over the network.
2. The page as Chromium laid it out: ``--dump-dom`` after load returns the DOM with the
   ``data-rendered`` record the page's inline script writes (per stream: marks in the DOM, marks
   drawn with a non-zero box, table rows, the timeline's size). Each must match step 1, and every
   mark must be drawn.
3. With ``--screenshot``: a PNG of the whole page (window as tall as the page, up to 16,000 px),
   checked to be a PNG of that size.

Exits 0 when everything holds, 1 with one line per failure otherwise, 2 when Chromium cannot be
found or run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
WINDOW_WIDTH = 1280
MAX_HEIGHT = 16000
TIMEOUT_S = 90
_REMOTE = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
_URL_ATTRIBUTES = frozenset({"src", "href", "xlink:href", "action", "srcset", "poster", "data"})


@dataclass
class _Section:
    attrs: dict[str, str]
    marks: int = 0
    rows: int = 0
    svgs: int = 0


class _Counter(HTMLParser):
    """Counts each section's marks, timeline SVGs and metric rows; notes remote references."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[_Section] = []
        self.remote: list[str] = []
        self.rendered: str | None = None
        self._in_tbody = False
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        classes = values.get("class", "").split()
        if tag == "html" and "data-rendered" in values:
            self.rendered = values["data-rendered"]
        for name, value in values.items():
            if name in _URL_ATTRIBUTES and _REMOTE.match(value):
                self.remote.append(f"<{tag} {name}={value!r}>")
            if name == "style" and "url(" in value:
                self.remote.append(f"<{tag} style={value!r}>")
        if tag in ("link", "img", "iframe", "object", "embed"):
            self.remote.append(f"<{tag}>")
        if tag == "style":
            self._in_style = True
        if tag == "section" and "stream" in classes:
            self.sections.append(_Section(values))
        if not self.sections:
            return
        current = self.sections[-1]
        if tag == "svg" and "timeline" in classes:
            current.svgs += 1
        if "mark" in classes:
            current.marks += 1
        if tag == "table" and "metrics" in classes:
            self._in_tbody = False
        if tag == "tbody":
            self._in_tbody = True
        if tag == "tr" and self._in_tbody:
            current.rows += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_tbody = False
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style and ("url(" in data or "@import" in data):
            self.remote.append("a stylesheet with url() or @import")


def _count(page: str) -> _Counter:
    counter = _Counter()
    counter.feed(page)
    counter.close()
    return counter


def _chromium(binary: str, profile: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def _png_size(path: Path) -> tuple[int, int] | None:
    head = path.read_bytes()[:24]
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _int(section: _Section, name: str) -> int | None:
    try:
        return int(section.attrs[name])
    except (KeyError, ValueError):
        return None


def check(report: Path, *, chromium: str, screenshot: Path | None, streams: int | None) -> list[str]:
    """Every failed check, as one line each (empty: the page renders as it says)."""
    failures: list[str] = []
    page = report.read_text(encoding="utf-8")
    written = _count(page)
    if written.remote:
        failures.append(f"the page references the network: {', '.join(written.remote[:5])}")
    if streams is not None and len(written.sections) != streams:
        failures.append(f"expected {streams} stream section(s) in the file, found {len(written.sections)}")
    for number, section in enumerate(written.sections, 1):
        events, marks, rows = (_int(section, f"data-{n}") for n in ("events", "marks", "rows"))
        if events is None or marks is None or rows is None:
            failures.append(f"stream {number}: missing data-events / data-marks / data-rows on its section")
            continue
        if section.marks != marks:
            failures.append(f"stream {number}: data-marks says {marks}, the file holds {section.marks} marks")
        if section.attrs.get("data-aggregated") != "true" and marks != events:
            failures.append(f"stream {number}: {events} events but {marks} marks (not aggregated: one per event)")
        if section.rows != rows:
            failures.append(f"stream {number}: data-rows says {rows}, the metrics table has {section.rows}")
        if events and section.svgs != 1:
            failures.append(f"stream {number}: expected one timeline SVG, found {section.svgs}")

    with tempfile.TemporaryDirectory(prefix="rxstream-check-") as profile:
        url = report.resolve().as_uri()
        try:
            # The screenshot's width: the height recorded below is the layout at that width.
            dumped = _chromium(chromium, profile, f"--window-size={WINDOW_WIDTH},900", "--dump-dom", url)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise _ChromiumError(f"cannot run {chromium}: {exc}") from exc
        if dumped.returncode != 0 or "<html" not in dumped.stdout:
            tail = "\n".join(dumped.stderr.strip().splitlines()[-5:])
            raise _ChromiumError(f"{chromium} --dump-dom failed (exit {dumped.returncode}):\n{tail}")
        dom = _count(dumped.stdout)
        if dom.rendered is None:
            failures.append("Chromium's DOM has no data-rendered record: the page's script did not run")
            return failures
        record: dict[str, Any] = json.loads(dom.rendered)
        laid_out: list[dict[str, Any]] = record["streams"]
        if len(laid_out) != len(written.sections) or len(dom.sections) != len(written.sections):
            failures.append(
                f"the file has {len(written.sections)} stream sections, Chromium laid out {len(laid_out)} "
                f"(its DOM holds {len(dom.sections)})"
            )
        for number, (section, shown) in enumerate(zip(written.sections, laid_out, strict=False), 1):
            marks, rows, events = _int(section, "data-marks"), _int(section, "data-rows"), _int(section, "data-events")
            if shown["marks"] != marks:
                failures.append(f"stream {number}: {marks} marks written, {shown['marks']} in Chromium's DOM")
            if shown["drawn"] != shown["marks"]:
                failures.append(f"stream {number}: only {shown['drawn']} of {shown['marks']} marks drawn with a size")
            if shown["rows"] != rows:
                failures.append(f"stream {number}: {rows} metric rows written, {shown['rows']} laid out")
            if events and (shown["width"] <= 0 or shown["height"] <= 0):
                failures.append(f"stream {number}: the timeline laid out at {shown['width']}x{shown['height']} px")
        if screenshot is not None:
            height = max(200, min(MAX_HEIGHT, int(record.get("height", 0)) + 8))
            screenshot.unlink(missing_ok=True)
            try:
                shot = _chromium(
                    chromium, profile, f"--screenshot={screenshot.resolve()}", f"--window-size={WINDOW_WIDTH},{height}", url
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise _ChromiumError(f"cannot run {chromium}: {exc}") from exc
            size = _png_size(screenshot) if screenshot.exists() else None
            if shot.returncode != 0 or size is None:
                tail = "\n".join(shot.stderr.strip().splitlines()[-5:])
                failures.append(f"no PNG screenshot at {screenshot} (exit {shot.returncode}):\n{tail}")
            elif size != (WINDOW_WIDTH, height):
                failures.append(f"the screenshot is {size[0]}x{size[1]} px, expected {WINDOW_WIDTH}x{height}")
    return failures


class _ChromiumError(Exception):
    """Chromium is missing or would not run."""


def _find_chromium(given: str | None) -> str | None:
    if given:
        return given
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("report", type=Path, help="the HTML report to check")
    parser.add_argument("--screenshot", type=Path, default=None, metavar="PNG", help="also save a full-page PNG here")
    parser.add_argument("--streams", type=int, default=None, metavar="N", help="the number of streams expected")
    parser.add_argument("--chromium", default=None, metavar="PATH", help="the browser (default: chromium on PATH)")
    args = parser.parse_args(argv)
    report: Path = args.report
    if not report.is_file():
        print(f"check_report: no such file: {report}", file=sys.stderr)
        return 2
    chromium = _find_chromium(args.chromium)
    if chromium is None:
        print(
            "check_report: chromium not found (expected /usr/bin/chromium or `chromium` on PATH; "
            "on Debian: apt-get install -y chromium)",
            file=sys.stderr,
        )
        return 2
    try:
        failures = check(report, chromium=chromium, screenshot=args.screenshot, streams=args.streams)
    except _ChromiumError as exc:
        print(f"check_report: {exc}", file=sys.stderr)
        return 2
    if failures:
        for failure in failures:
            print(f"check_report: {report}: {failure}", file=sys.stderr)
        return 1
    shot = f", screenshot {args.screenshot}" if args.screenshot is not None else ""
    print(f"check_report: {report}: renders in Chromium as written{shot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
