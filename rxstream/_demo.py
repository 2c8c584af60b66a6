"""``rxstream demo`` and ``rxstream chat``: the library end to end, offline or with a real key."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO, cast

import httpx
import reactivex
from reactivex import Observable
from reactivex import operators as ops

from rxstream._chunk import ProviderChunk
from rxstream._consume import collect
from rxstream._errors import RxStreamError
from rxstream._events import Event, EventBase, JsonPartial, Usage
from rxstream._result import StreamResult
from rxstream.operators import JsonAssembler, aggregate_usage, normalize, parse_json, tap_metrics
from rxstream.operators._metrics import InMemoryMetrics, StreamMetrics, format_metrics
from rxstream.sources import (
    anthropic_messages,
    gemini,
    openai_chat,
    openai_compatible,
    openai_responses,
    xai_chat,
)

__all__ = ["CHAT_PROVIDERS", "chat_main", "demo_main"]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "GetWeatherArgs",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "country": {"type": "string"},
                "units": {"type": "string"},
            },
            "required": ["city", "country", "units"],
        },
    },
}
ANSWER_FORMAT = {
    "format": {
        "type": "json_schema",
        "name": "Answer",
        "schema": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "country": {"type": "string"},
                "population_millions": {"type": "number"},
                "landmarks": {"type": "array", "items": {"type": "string"}},
            },
        },
    }
}


class _Printer:
    """Prints a stream as it arrives: text plain, reasoning dimmed, tool calls as they are built."""

    def __init__(self, out: TextIO, color: bool, *, fields: bool = False) -> None:
        self.out = out
        # With parse_json() in the pipe: each JSON field when it is final, not the raw text.
        self.fields = fields
        self.assembler = JsonAssembler()
        self.dim = "\x1b[2m" if color else ""
        self.bold = "\x1b[1m" if color else ""
        self.reset = "\x1b[0m" if color else ""
        self.mode = ""
        self.started = time.monotonic()
        self.first_token: float | None = None
        self.events = 0

    def _switch(self, mode: str, label: str) -> None:
        if self.mode != mode:
            if self.mode:
                self.out.write(self.reset + "\n")
            self.out.write(f"{self.bold}{label}{self.reset}{self.dim if mode == 'reasoning' else ''}")
            self.mode = mode

    def __call__(self, event: EventBase) -> None:
        self.events += 1
        data: Any = event
        kind: str = data.type
        if (
            kind in ("text.delta", "reasoning.delta", "refusal.delta", "tool_call.delta")
            and self.first_token is None
        ):
            self.first_token = time.monotonic()
        if kind == "reasoning.delta" and data.text:
            self._switch("reasoning", "  thinking: ")
            self.out.write(data.text)
        elif self.fields and isinstance(event, JsonPartial):
            self._fields(event)
        elif self.fields and kind == "json.value":
            self._line(f"  json:     {json.dumps(data.value, separators=(',', ':'), ensure_ascii=False)}")
            if data.error:
                self._line(f"  invalid:  {data.error}")
        elif kind == "text.delta" and not self.fields:
            self._switch("text", "  answer:   ")
            self.out.write(data.text)
        elif kind == "refusal.delta":
            self._switch("refusal", "  refusal:  ")
            self.out.write(data.text)
        elif kind == "tool_call.start":
            self._switch(f"call{data.call_index}", f"  call:     {data.name}(")
        elif kind == "tool_call.delta":
            self.out.write(data.arguments_delta)
        elif kind == "tool_call.done":
            self.out.write(")")
        self.out.flush()

    def _line(self, line: str) -> None:
        self.close()
        self.out.write(line + "\n")

    def _fields(self, event: JsonPartial) -> None:
        value = self.assembler.feed(event)
        for path in event.completed_paths:
            if not path:
                continue
            field: Any = value
            for key in path:
                field = field[key]
            name = "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in path).lstrip(".")
            self._line(f"  field:    {name} = {json.dumps(field, ensure_ascii=False)}")

    def close(self) -> None:
        if self.mode:
            self.out.write(self.reset + "\n")
            self.mode = ""


@dataclass(frozen=True)
class _Scenario:
    title: str
    recording: str
    build: Callable[[str, dict[str, str], httpx.AsyncClient], Observable[ProviderChunk]]
    parse_json: bool = False


def _scenarios() -> list[_Scenario]:
    key = "demo-key-not-secret"
    user = [{"role": "user", "content": "What's the weather in Edinburgh?"}]
    return [
        _Scenario(
            "OpenAI chat: a tool call built as it streams",
            "openai-chat-toolcall-1",
            lambda base, h, c: openai_chat(
                model="gpt-4o-2024-08-06",
                messages=user,
                tools=[WEATHER_TOOL],
                api_key=key,
                base_url=f"{base}/v1",
                headers=h,
                client=c,
            ),
        ),
        _Scenario(
            "Anthropic: thinking, then the answer",
            "anthropic-messages-thinking-1",
            lambda base, h, c: anthropic_messages(
                model="claude-sonnet-4-20250514",
                messages=[{"role": "user", "content": "How do I cross the street safely?"}],
                thinking={"type": "enabled", "budget_tokens": 1024},
                api_key=key,
                base_url=base,
                headers=h,
                client=c,
            ),
        ),
        _Scenario(
            "xAI: a reasoning model",
            "xai-chat-reasoning-text-1",
            lambda base, h, c: xai_chat(
                model="grok-3-mini",
                messages=[{"role": "user", "content": "What is your name? One word."}],
                api_key=key,
                base_url=f"{base}/v1",
                headers=h,
                client=c,
            ),
        ),
        _Scenario(
            "OpenAI Responses: a structured JSON answer",
            "openai-responses-structured-json-1",
            lambda base, h, c: openai_responses(
                model="gpt-4o-2024-08-06",
                input="Tell me about Paris as JSON.",
                text=ANSWER_FORMAT,
                api_key=key,
                base_url=f"{base}/v1",
                headers=h,
                client=c,
            ),
            parse_json=True,
        ),
    ]


def _table(rows: list[tuple[str, str]], out: TextIO) -> None:
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        out.write(f"    {k.ljust(width)}  {v}\n")


async def _demo(out: TextIO, *, pace: str, color: bool, report: str | None = None) -> int:
    shown: list[tuple[list[EventBase], StreamMetrics]] = []
    captions: list[str | None] = []
    try:
        return await _scenarios_run(out, pace=pace, color=color, shown=shown, captions=captions)
    finally:
        # Written whatever happened: a scenario that failed is on the page with its error.
        if report is not None:
            _write_demo_report(out, report, shown, captions)


def _write_demo_report(
    out: TextIO, report: str, shown: list[tuple[list[EventBase], StreamMetrics]], captions: list[str | None]
) -> None:
    from rxstream._report import write_report

    note = (
        "Each stream is a real HTTP request to rxstream's provider emulator on loopback, replaying a "
        "recorded stream: the timing is real, so the numbers vary from run to run."
    )
    try:
        written = write_report(report, shown, title="rxstream demo", notes=[note], captions=captions)
    except RxStreamError as exc:
        out.write(f"\nreport: {exc.message}\n")
        return
    out.write(f"\nreport: {written} ({len(shown)} streams; open it in a browser, no network needed)\n")


async def _scenarios_run(
    out: TextIO,
    *,
    pace: str,
    color: bool,
    shown: list[tuple[list[EventBase], StreamMetrics]],
    captions: list[str | None],
) -> int:
    from rxstream._tokens import tokenizer_for_model
    from rxstream.testing import ProviderEmulator

    # Load both BPEs aggregate_usage() may count with now: loaded on first use, inside the first
    # scenario, the load (about 200 ms) blocks the loop and shows up as a gap in its timing.
    for model in ("gpt-4o", None):
        tokenizer_for_model(model).count("warm")
    sink = InMemoryMetrics()
    async with ProviderEmulator(pace="fast") as emulator, httpx.AsyncClient(timeout=60) as client:
        out.write(f"rxstream demo: a provider emulator is serving recorded streams on {emulator.base_url}\n")
        out.write(
            "Each scenario is a real HTTP request through sources -> normalize() -> aggregate_usage() -> tap_metrics() -> collect().\n"
        )
        for number, scenario in enumerate(_scenarios(), 1):
            out.write(f"\n{number}. {scenario.title}\n")
            headers = {"x-rxstream-recording": scenario.recording, "x-rxstream-pace": pace}
            printer = _Printer(out, color, fields=scenario.parse_json)
            source = scenario.build(emulator.base_url, headers, client)
            seen: list[EventBase] = []
            kept: list[EventBase] = []
            # tap_metrics() after aggregate_usage() (tokens per second has a count) and last, so
            # the page draws every event the consumer got, parse_json()'s included.
            measure = (tap_metrics(sink), ops.do_action(kept.append))
            if scenario.parse_json:
                stream = source.pipe(
                    normalize(), ops.do_action(seen.append), aggregate_usage(), parse_json(), *measure,
                    ops.do_action(printer),
                )
            else:
                stream = source.pipe(
                    normalize(), ops.do_action(seen.append), aggregate_usage(), *measure, ops.do_action(printer)
                )
            recorded = sink.streams
            try:
                result = await collect(stream)
            except RxStreamError as exc:
                printer.close()
                out.write(f"  failed: {type(exc).__name__}: {exc}\n")
                if sink.streams > recorded:
                    shown.append((kept, sink.records[-1]))
                    captions.append(f"{scenario.title} (failed)")
                return 1
            printer.close()
            metrics = sink.records[-1] if sink.streams > recorded else None
            _summary(result, printer, out, own=_own_count(seen), metrics=metrics)
            if metrics is not None:
                shown.append((kept, metrics))
                captions.append(scenario.title)
    out.write(
        "\nThe same pipeline against a real provider (the key from the environment):\n"
        "    export OPENAI_API_KEY=sk-...\n"
        '    rxstream chat --provider openai --model gpt-4o-mini "Why is the sky blue?"\n'
        "  providers: openai, openai-responses, anthropic (ANTHROPIC_API_KEY), xai (XAI_API_KEY),\n"
        "  gemini (GEMINI_API_KEY), compatible (--base-url, e.g. http://localhost:11434/v1 for Ollama)\n"
    )
    return 0


def _own_count(events: list[EventBase]) -> Usage | None:
    """What aggregate_usage() estimates for these events when the provider's usage is removed."""
    found: list[Usage] = []
    stripped: list[Event] = [cast(Event, e) for e in events if not isinstance(e, Usage)]
    reactivex.from_iterable(stripped).pipe(aggregate_usage()).subscribe(
        lambda e: found.append(e) if isinstance(e, Usage) else None, lambda _: None
    )
    return found[-1] if found else None


def _tokens(usage: Usage | None, own: Usage | None) -> str:
    """The usage line: the numbers, where they came from, and rxstream's own count beside the
    provider's (how good estimates are, shown on every scenario)."""
    if usage is None:
        return "not reported"
    numbers = f"{'?' if usage.input_tokens is None else usage.input_tokens} in / {usage.output_tokens} out"
    if usage.reasoning_tokens:
        numbers += f" ({usage.reasoning_tokens} reasoning)"
    if usage.source == "provider":
        where = "from the provider"
        if own is not None and own.output_tokens is not None:
            where += f" (rxstream's own count: {own.output_tokens} out, {own.estimator})"
    elif usage.source == "estimated":
        where = f"estimated by rxstream ({usage.estimator}): the provider sent none"
    else:
        where = f"mixed: the provider's where it gave them, estimated ({usage.estimator}) for the rest"
    return f"{numbers}, {where}"


def _summary(
    result: StreamResult,
    printer: _Printer,
    out: TextIO,
    *,
    own: Usage | None = None,
    metrics: StreamMetrics | None = None,
) -> None:
    """The scenario's summary; with ``metrics`` (``tap_metrics()``'s, from the events' own
    arrival stamps) their table replaces the printer's wall-clock time to first token."""
    tokens = _tokens(result.usage, own)
    first = result.outputs[0] if result.outputs else None
    rows = [("model", f"{result.model} via {result.provider} ({result.wire})")]
    if metrics is None:
        ttft = "-" if printer.first_token is None else f"{(printer.first_token - printer.started) * 1000:.1f} ms"
        rows += [("time to first token", ttft), ("events", str(printer.events))]
    rows += [("finish", f"{first.finish_reason if first else None}"), ("tokens", tokens)]
    _table(rows, out)
    if metrics is not None:
        out.write("\n" + "".join(f"    {line.rstrip()}\n" for line in format_metrics(metrics).splitlines()))


def demo_main(
    *, pace: str = "400", color: bool | None = None, out: TextIO | None = None, report: str | None = None
) -> int:
    """Run the offline demo; returns the exit status. ``report``: also write every scenario's
    timeline and metrics to this HTML file."""
    import asyncio

    stream = out or sys.stdout
    use_color = stream.isatty() if color is None else color
    return asyncio.run(_demo(stream, pace=pace, color=use_color, report=report))


CHAT_PROVIDERS = ("openai", "openai-responses", "anthropic", "xai", "gemini", "compatible")
_KEYS = {
    "openai": ("OPENAI_API_KEY",),
    "openai-responses": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
}


def _chat_source(provider: str, model: str, prompt: str, base_url: str | None) -> Observable[ProviderChunk]:
    messages = [{"role": "user", "content": prompt}]
    if provider == "openai":
        return openai_chat(model=model, messages=messages, base_url=base_url)
    if provider == "openai-responses":
        return openai_responses(model=model, input=prompt, base_url=base_url)
    if provider == "anthropic":
        return anthropic_messages(model=model, messages=messages, base_url=base_url)
    if provider == "xai":
        return xai_chat(model=model, messages=messages, base_url=base_url)
    if provider == "gemini":
        return gemini(model=model, contents=prompt, base_url=base_url)
    if base_url is None:
        raise ValueError("--provider compatible needs --base-url (e.g. http://localhost:11434/v1)")
    return openai_compatible(
        base_url=base_url, model=model, messages=messages, api_key=os.environ.get("OPENAI_API_KEY")
    )


def chat_main(
    provider: str, model: str, prompt: str, base_url: str | None, *, out: TextIO | None = None
) -> int:
    """Stream one prompt from a real provider; returns the exit status."""
    import asyncio

    stream_out = out or sys.stdout
    if provider in _KEYS and not any(os.environ.get(name) for name in _KEYS[provider]):
        names = " or ".join(_KEYS[provider])
        print(
            f"rxstream chat: no API key for {provider}: set {names} (or try `rxstream demo`, which needs none)",
            file=sys.stderr,
        )
        return 2
    try:
        source = _chat_source(provider, model, prompt, base_url)
    except ValueError as exc:
        print(f"rxstream chat: {exc}", file=sys.stderr)
        return 2
    printer = _Printer(stream_out, stream_out.isatty())

    async def main() -> StreamResult:
        return await collect(source.pipe(normalize(), aggregate_usage(), ops.do_action(printer)))

    try:
        result = asyncio.run(main())
    except RxStreamError as exc:
        printer.close()
        print(f"rxstream chat: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    printer.close()
    _summary(result, printer, stream_out)
    return 0
