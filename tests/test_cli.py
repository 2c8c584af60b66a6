"""The rxstream command: replay with --events and --summary-json, exit codes, error lines."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from tests.conftest import RECORDINGS

SUMMARY_KEYS = {"wire", "provider", "model", "outputs", "usage", "error"}
OUTPUT_KEYS = {"index", "text", "reasoning", "refusal", "tool_calls", "finish_reason"}
USAGE_KEYS = {
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_input_tokens",
    "cache_write_input_tokens",
    "reasoning_tokens",
    "source",
}


def rxstream(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rxstream.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_summary_json_on_last_line() -> None:
    run = rxstream("replay", str(RECORDINGS / "openai-chat-toolcall-1.sse"), "--summary-json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["wire"] == "openai.chat"
    out = summary["outputs"][0]
    assert out.keys() >= OUTPUT_KEYS
    assert out["finish_reason"] == "tool_calls"
    assert out["text"] == "" and out["reasoning"] == "" and out["refusal"] == ""
    call = out["tool_calls"][0]
    assert set(call) == {"id", "name", "arguments"}
    assert call["name"] == "GetWeatherArgs"
    assert json.loads(call["arguments"]) == {"city": "Edinburgh", "country": "UK", "units": "c"}
    assert summary["usage"].keys() >= USAGE_KEYS
    assert summary["error"] is None


def test_events_prints_one_json_event_per_line() -> None:
    run = rxstream("replay", str(RECORDINGS / "anthropic-messages-text-1.sse"), "--events", "--summary-json")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    events = [json.loads(line) for line in lines[:-1]]
    assert events[0]["type"] == "stream.start" and events[-1]["type"] == "stream.end"
    assert all("seq" in e and "stream_id" in e for e in events)
    text = "".join(e["text"] for e in events if e["type"] == "text.delta")
    assert text == json.loads(lines[-1])["outputs"][0]["text"]


def test_failed_stream_still_exits_zero_with_error_set() -> None:
    run = rxstream("replay", str(RECORDINGS / "groq-chat-reasoning-error-1.sse"), "--summary-json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["error"]["type"] == "ProviderError"
    assert summary["error"]["code"]
    assert summary["outputs"][0]["reasoning"], "reasoning received before the error must be kept"
    assert summary["outputs"][0]["finish_reason"] == "error"


def test_missing_file_is_one_line_on_stderr(tmp_path: Path) -> None:
    missing = tmp_path / "nope.sse"
    run = rxstream("replay", str(missing))
    assert run.returncode != 0
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "Traceback" not in run.stderr


def test_undecodable_file_is_one_line_on_stderr(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"choices": []}\nthis is not json\n')
    run = rxstream("replay", str(bad), "--summary-json")
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "JSON" in lines[0]
    assert "Traceback" not in run.stderr


def test_truncated_gemini_array_is_one_line_on_stderr(tmp_path: Path) -> None:
    whole = (RECORDINGS / "gemini-generatecontent-jsonarray-text-1.json").read_bytes()
    cut = tmp_path / "cut.json"
    cut.write_bytes(whole[: len(whole) // 2])
    run = rxstream("replay", str(cut))
    assert run.returncode != 0
    assert len(run.stderr.strip().splitlines()) == 1 and str(cut) in run.stderr


def test_human_output_by_default() -> None:
    run = rxstream("replay", str(RECORDINGS / "openai-chat-text-1.sse"))
    assert run.returncode == 0
    assert "openai.chat" in run.stdout and "text:" in run.stdout and "usage:" in run.stdout


def test_demo_runs_offline_over_real_http() -> None:
    run = rxstream("demo", "--pace", "fast", "--no-color")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "1. OpenAI chat" in out and "4. OpenAI Responses" in out
    assert 'GetWeatherArgs({"city":"Edinburgh","country":"UK","units":"c"})' in out
    assert "thinking:" in out and "Here are the basic steps for safely crossing the street" in out
    assert "answer:   Grok" in out
    assert '"city":"Paris"' in out
    assert "time to first token" in out and "76 in / 24 out, from the provider" in out
    assert "rxstream chat --provider openai" in out
    assert "\x1b[" not in out, "--no-color means no ANSI codes"
    # After each scenario's usage line, tap_metrics()'s table (real timing: the structure, not values).
    tables = out.split("metric (from request sent)")
    assert len(tables) == 5
    for before, table in itertools.pairwise(tables):
        assert before.rstrip().splitlines()[-1].lstrip().startswith("tokens ")
        rows = [line.strip() for line in table.splitlines()[2:14]]
        assert [row.split("  ")[0] for row in rows[:11]] == [
            "time to first byte", "first provider event", "time to first token", "first text", "duration",
            "events / content chunks", "inter-chunk gap", "output tokens", "tokens/s", "chunks/s", "outcome",
        ]
        assert rows[0].endswith(" ms") and rows[10].endswith("completed") and rows[11].startswith("finish")


def test_chat_without_a_key_says_which_variable(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    run = subprocess.run(
        [sys.executable, "-m", "rxstream.cli", "chat", "--provider", "anthropic", "--model", "claude", "hi"],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )
    assert run.returncode == 2
    assert "ANTHROPIC_API_KEY" in run.stderr and "rxstream demo" in run.stderr and "Traceback" not in run.stderr


def test_chat_streams_from_a_compatible_server() -> None:
    import asyncio
    import io

    from rxstream._demo import chat_main
    from rxstream.testing import ProviderEmulator

    async def main() -> tuple[int, str]:
        async with ProviderEmulator(RECORDINGS) as emulator:
            out = io.StringIO()
            code = await asyncio.to_thread(
                chat_main, "compatible", "qwen2.5:0.5b", "Which ocean?", f"{emulator.base_url}/v1", out=out
            )
            return code, out.getvalue()

    code, out = asyncio.run(main())
    assert code == 0
    assert "answer:   Atlantic Sea." in out and "qwen2.5:0.5b" in out


# -- record, replay --speed, inspect ---------------------------------------------------------------

RECORD_KEY = "sk-cli-SECRET-0042"
RECORD_TARGETS = [
    ("openai", "gpt-4o", "/v1", "OPENAI_API_KEY"),
    ("openai-responses", "gpt-4o", "/v1", "OPENAI_API_KEY"),
    ("anthropic", "claude-sonnet-4", "", "ANTHROPIC_API_KEY"),
    ("gemini", "gemini-2.5-flash", "", "GEMINI_API_KEY"),
    ("compatible", "qwen2.5:0.5b", "/v1", "OPENAI_API_KEY"),
]


def record_in_process(
    argv: list[str], env_name: str, pace: str = "200", faults: list[Any] | None = None
) -> tuple[int, str, str]:
    """`rxstream record ...` against a fresh emulator (its base URL appended to --base-url)."""
    import asyncio
    import contextlib
    import io
    import os

    from rxstream.cli import main
    from rxstream.testing import ProviderEmulator

    async def go() -> tuple[int, str, str]:
        async with ProviderEmulator(RECORDINGS, pace=cast(Any, pace), faults=faults or []) as emu:
            args = [a.replace("{base}", emu.base_url) for a in argv]
            out, err = io.StringIO(), io.StringIO()

            def call() -> int:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    return main(args)

            saved = os.environ.get(env_name)
            os.environ[env_name] = RECORD_KEY
            try:
                code = await asyncio.to_thread(call)
            finally:
                if saved is None:
                    del os.environ[env_name]
                else:
                    os.environ[env_name] = saved
            return code, out.getvalue(), err.getvalue()

    return asyncio.run(go())


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """The command run in this process (faster than a subprocess), as a CompletedProcess."""
    from rxstream.cli import main

    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)


@pytest.mark.parametrize(("provider", "model", "suffix", "env_name"), RECORD_TARGETS)
def test_record_then_replay_and_inspect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: str, model: str, suffix: str, env_name: str
) -> None:
    cassette = tmp_path / "run.jsonl"
    code, out, err = record_in_process(
        ["record", "--provider", provider, "--model", model, "--base-url", "{base}" + suffix, "-o", str(cassette), "Hi"],
        env_name,
    )
    assert code == 0, err
    assert f"recorded {cassette}: " in out and "ended complete" in out
    body = cassette.read_text()
    assert RECORD_KEY not in body and "SECRET" not in body
    rows = [json.loads(line) for line in body.splitlines()]
    assert rows[0]["format"] == "rxstream.cassette" and rows[-1]["kind"] == "complete"

    at_once = cli(capsys, "replay", str(cassette), "--events", "--summary-json")
    timed = cli(capsys, "replay", str(cassette), "--speed", "1", "--events", "--summary-json")
    assert at_once.returncode == 0 and timed.returncode == 0, timed.stderr

    def shape(run: subprocess.CompletedProcess[str]) -> list[Any]:
        *events, summary = run.stdout.strip().splitlines()
        return [{k: v for k, v in json.loads(e).items() if k not in ("at", "stream_id", "request_sent_at", "first_event_at")} for e in events] + [summary]

    assert shape(timed) == shape(at_once)
    summary = json.loads(at_once.stdout.strip().splitlines()[-1])
    assert summary["error"] is None and summary["outputs"]
    text = summary["outputs"][0]["text"]
    assert text[:20] in out, "record prints the answer as it streams"

    inspected = cli(capsys, "inspect", str(cassette))
    assert inspected.returncode == 0, inspected.stderr
    lines = inspected.stdout.splitlines()
    assert lines[0].startswith(f"{cassette}: rxstream.cassette v1") and "timed" in lines[0]
    assert lines[1].startswith("request: ") and "HTTP 200" in lines[1]
    timeline = [line for line in lines if line.strip()[:1].isdigit()]
    assert len(timeline) == len(rows) - 1  # one line per chunk, and the end
    assert any(" +" in line for line in timeline), "gaps are shown"
    assert "stream.start" in inspected.stdout and "complete" in timeline[-1] and "stream.end" in timeline[-1]
    assert any("text.delta" in line or "tool_call" in line for line in timeline)
    assert lines[-1].startswith("summary: ") and "payloads" in lines[-1] and "first payload at" in lines[-1]


def test_replay_speed_keeps_the_recorded_duration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    rows: list[dict[str, Any]] = [
        {"format": "rxstream.cassette", "version": 1, "timing": True},
        {"kind": "open", "ms": 0.0, "wire": "openai.chat", "open": None},
    ]
    for i in range(5):
        delta = {"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}
        rows.append({"kind": "data", "ms": 60.0 * (i + 1), "data": {"object": "chat.completion.chunk", "choices": [delta]}})
    rows.append({"kind": "complete", "ms": 300.0})
    cassette = tmp_path / "slow.jsonl"
    cassette.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    # Real time is the point: 300 ms recorded, played at half speed.
    began = time.perf_counter()
    fast = cli(capsys, "replay", str(cassette), "--summary-json")
    fast_took = time.perf_counter() - began
    began = time.perf_counter()
    timed = cli(capsys, "replay", str(cassette), "--speed", "0.5", "--summary-json")
    timed_took = time.perf_counter() - began
    assert fast.stdout == timed.stdout and json.loads(fast.stdout)["outputs"][0]["text"] == "w0 w1 w2 w3 w4 "
    assert timed_took >= 0.6 and fast_took < timed_took


def test_record_of_a_dropped_stream_leaves_a_cassette_ending_with_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rxstream.testing import Fault

    cassette = tmp_path / "dropped.jsonl"
    code, out, err = record_in_process(
        ["record", "--provider", "openai", "--model", "gpt-4o", "--base-url", "{base}/v1", "-o", str(cassette), "Hi"],
        "OPENAI_API_KEY",
        pace="fast",
        faults=[Fault(drop_after=3)],
    )
    assert code == 1 and "TransportError" in err and "ended error" in out
    assert json.loads(cassette.read_text().splitlines()[-1])["kind"] == "error"
    inspected = cli(capsys, "inspect", str(cassette))
    assert inspected.returncode == 0
    assert "error TransportError" in inspected.stdout.splitlines()[-2]
    replayed = cli(capsys, "replay", str(cassette), "--summary-json")
    assert replayed.returncode == 0 and json.loads(replayed.stdout.splitlines()[-1])["error"]["type"] == "TransportError"


def test_record_without_a_key_says_which_variable(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    run = subprocess.run(
        [sys.executable, "-m", "rxstream.cli", "record", "--provider", "gemini", "--model", "g", "-o", str(tmp_path / "c.jsonl"), "hi"],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )
    assert run.returncode == 2 and "GEMINI_API_KEY" in run.stderr and not (tmp_path / "c.jsonl").exists()


def test_inspect_a_raw_recording_and_refuse_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = cli(capsys, "inspect", str(RECORDINGS / "openai-chat-toolcall-1.sse"))
    assert run.returncode == 0, run.stderr
    assert "raw recording (no timing)" in run.stdout and "tool_call.start GetWeatherArgs" in run.stdout
    assert "finish tool_calls" in run.stdout
    missing = cli(capsys, "inspect", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1 and "Traceback" not in missing.stderr
    bad_speed = rxstream("replay", str(RECORDINGS / "openai-chat-text-1.sse"), "--speed", "0")
    assert bad_speed.returncode == 2 and "--speed" in bad_speed.stderr


# -- --report ----------------------------------------------------------------------------------------


def _report_marks(path: Path) -> list[tuple[dict[str, str], str]]:
    from tests.test_report import Page, marks

    return marks(Page(path.read_text(encoding="utf-8")))


def _small_cassette(path: Path, gaps_ms: float = 10.0) -> list[float]:
    rows: list[dict[str, Any]] = [
        {"format": "rxstream.cassette", "version": 1, "timing": True},
        {"kind": "open", "ms": 5.0, "wire": "openai.chat",
         "open": {"provider": "openai", "request": {"model": "gpt"}, "status": 200, "headers": {},
                  "request_id": "r", "url": None, "request_sent_ms": 0.0, "headers_ms": 5.0}},
    ]
    offsets = [20.0 + gaps_ms * i for i in range(5)]
    for i, ms in enumerate(offsets):
        delta = {"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}
        rows.append({"kind": "data", "ms": ms, "data": {"object": "chat.completion.chunk", "choices": [delta]}})
    rows.append({"kind": "complete", "ms": offsets[-1] + 1})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return offsets


def test_replay_report_keeps_what_events_and_summary_print(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recording = str(RECORDINGS / "openai-chat-toolcall-1.sse")
    plain = cli(capsys, "replay", recording, "--events", "--summary-json")
    report = tmp_path / "raw.html"
    reported = cli(capsys, "replay", recording, "--events", "--summary-json", "--report", str(report))
    assert reported.returncode == 0, reported.stderr

    def shape(run: subprocess.CompletedProcess[str]) -> list[Any]:
        *events, summary = run.stdout.strip().splitlines()
        return [{k: v for k, v in json.loads(e).items() if k not in ("at", "stream_id", "request_sent_at", "first_event_at")} for e in events] + [summary]

    assert shape(reported) == shape(plain), "stdout is still one JSON event per line, then the summary"
    assert reported.stderr.strip() == f"rxstream: report written to {report} (1 stream(s), {len(plain.stdout.splitlines()) - 1} events)"
    page = report.read_text(encoding="utf-8")
    assert "a recording without timing" in page and "same arrival stamp" in page
    assert {attrs["data-ms"] for attrs, _ in _report_marks(report)} == {"0.000"}


def test_replay_report_with_speed_measures_the_timed_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cassette = tmp_path / "small.jsonl"
    offsets = _small_cassette(cassette)
    report = tmp_path / "fast.html"
    # Real time is the point of --speed: 60 ms recorded, played 4x faster.
    run = cli(capsys, "replay", str(cassette), "--speed", "4", "--report", str(report))
    assert run.returncode == 0, run.stderr
    assert "text: 'w0 w1 w2 w3 w4 '" in run.stdout
    page = report.read_text(encoding="utf-8")
    assert "replayed in real time at 4x the recorded pace" in page
    texts = [float(attrs["data-ms"]) for attrs, title in _report_marks(report) if title.startswith("text.delta")]
    assert texts == sorted(texts) and len(texts) == 5
    for drawn, recorded in zip(texts, offsets, strict=True):
        assert recorded / 4 - 0.01 <= drawn < recorded / 4 + 500


def test_replay_report_in_virtual_time_shows_the_recorded_offsets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    cassette = tmp_path / "slow.jsonl"
    offsets = _small_cassette(cassette, gaps_ms=5_000.0)
    report = tmp_path / "slow.html"
    began = time.perf_counter()
    run = cli(capsys, "replay", str(cassette), "--report", str(report))
    assert run.returncode == 0, run.stderr
    assert time.perf_counter() - began < 10, "20 s recorded, not waited for"
    texts = [float(attrs["data-ms"]) for attrs, title in _report_marks(report) if title.startswith("text.delta")]
    assert texts == offsets
    assert "replayed in virtual time" in report.read_text(encoding="utf-8")


def test_replay_report_of_a_failed_stream_and_an_unwritable_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recording = str(RECORDINGS / "groq-chat-reasoning-error-1.sse")
    report = tmp_path / "failed.html"
    run = cli(capsys, "replay", recording, "--summary-json", "--report", str(report))
    assert run.returncode == 0 and json.loads(run.stdout.splitlines()[-1])["error"]["type"] == "ProviderError"
    assert "error: ProviderError" in report.read_text(encoding="utf-8")
    bad = cli(capsys, "replay", recording, "--report", str(tmp_path / "no" / "such" / "dir.html"))
    assert bad.returncode == 1
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write the report" in lines[0] and "Traceback" not in bad.stderr


def test_demo_report_has_every_scenario(tmp_path: Path) -> None:
    import io

    from rxstream._demo import demo_main
    from tests.test_report import Page

    report = tmp_path / "demo.html"
    out = io.StringIO()
    assert demo_main(pace="fast", color=False, out=out, report=str(report)) == 0
    assert f"report: {report} (4 streams" in out.getvalue()
    page = Page(report.read_text(encoding="utf-8"))
    sections = page.find("section", "stream")
    assert len(sections) == 4
    headings = [text for _, text in page.find("h2")]
    assert headings[0].startswith("1OpenAI chat: a tool call") and headings[3].startswith("4OpenAI Responses")
    printed = [int(n) for n in re.findall(r"events / content chunks\s+(\d+) /", out.getvalue())]
    assert [int(attrs["data-events"]) for attrs, _ in sections] == printed
    assert all(attrs["data-marks"] == attrs["data-events"] for attrs, _ in sections)
