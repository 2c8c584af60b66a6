"""The rxstream command: replay with --events and --summary-json, exit codes, error lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
