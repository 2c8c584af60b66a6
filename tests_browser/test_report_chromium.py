"""The HTML report rendered in headless Chromium (Debian's ``chromium``): run by CI after the suite.

These need a browser, which the README's test command does not install, so they live outside
``tests/``: ``apt-get install -y chromium && python -m pytest -q tests_browser``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rxstream._report import render_report
from tests.conftest import RECORDINGS
from tests.test_report import CHECK_SCRIPT, Page, marks, measured, short_stream


def chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    if found is None:
        pytest.fail(
            "chromium is not installed: the report is checked in headless Chromium "
            "(Debian: apt-get install -y chromium; CI installs it)"
        )
    return found


def timed_cassette(path: Path) -> list[float]:
    """A cassette of a recorded Anthropic stream with known offsets; returns the payload offsets (ms)."""
    from rxstream.sources import load_recording

    chunks = [c for c in load_recording(RECORDINGS / "anthropic-messages-text-1.sse") if c.kind == "data"]
    offsets = [400.0 + 37.5 * i + (i % 3) * 1.25 for i in range(len(chunks))]
    rows: list[dict[str, Any]] = [
        {"format": "rxstream.cassette", "version": 1, "timing": True},
        {
            "kind": "open",
            "ms": 150.0,
            "wire": "anthropic.messages",
            "open": {"provider": "anthropic", "request": {"model": "claude"}, "status": 200, "headers": {},
                     "request_id": "req_7", "url": "https://api.anthropic.com/v1/messages",
                     "request_sent_ms": 0.0, "headers_ms": 150.0},
        },
    ]
    rows += [
        {"kind": "data", "ms": ms, "event": chunk.event, "data": chunk.data}
        for ms, chunk in zip(offsets, chunks, strict=True)
    ]
    rows.append({"kind": "complete", "ms": offsets[-1] + 20})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return offsets


def check(report: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK_SCRIPT), str(report), "--chromium", chromium(), *args],
        capture_output=True, text=True, timeout=240, check=False,
    )


def test_a_replayed_cassette_report_renders_in_chromium(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rxstream.cli import main

    cassette = tmp_path / "run.jsonl"
    offsets = timed_cassette(cassette)
    report = tmp_path / "report.html"
    assert main(["replay", str(cassette), "--report", str(report), "--summary-json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.splitlines()[-1])["error"] is None
    assert f"report written to {report}" in captured.err
    page = Page(report.read_text(encoding="utf-8"))
    # Virtual time: the recorded offsets, exactly, without waiting for them.
    drawn = sorted({float(attrs["data-ms"]) for attrs, _ in marks(page)})
    assert set(drawn) <= {150.0, *offsets} and len(drawn) >= len(offsets) // 2
    assert drawn[0] == 150.0 and drawn[-1] == offsets[-1]
    table = dict(zip([t for _, t in page.find("th")][2:], [t for _, t in page.find("td")], strict=True))
    assert table["time to first byte"] == "150.0 ms" and table["first provider event"] == "400.0 ms"
    screenshot = tmp_path / "report.png"
    run = check(report, "--streams", "1", "--screenshot", str(screenshot))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "renders in Chromium as written" in run.stdout
    head = screenshot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(head[16:20], "big") == 1280


def test_the_check_fails_clearly_when_the_page_does_not_hold_what_it_says(tmp_path: Path) -> None:
    events, metrics = measured(short_stream())
    page = render_report([(events, metrics)], title="t")
    broken = tmp_path / "broken.html"
    # One mark fewer than the section announces, and a remote stylesheet.
    cut = page.index('<rect class="mark"')
    page = page[:cut] + page[page.index("</rect>", cut) + len("</rect>") :]
    page = page.replace("<title>t</title>", '<title>t</title><link rel="stylesheet" href="https://cdn.example.com/a.css">', 1)
    broken.write_text(page, encoding="utf-8")
    run = check(broken, "--streams", "2")
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert any("references the network" in line and "<link>" in line for line in lines), lines
    assert any("expected 2 stream section(s)" in line for line in lines), lines
    assert any("data-marks says 7, the file holds 6" in line for line in lines), lines
    assert any("7 marks written, 6 in Chromium's DOM" in line for line in lines), lines
    missing = check(tmp_path / "nope.html")
    assert missing.returncode == 2 and "no such file" in missing.stderr
