"""The ``rxstream`` command: demo, chat, serve, replay, record, inspect."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import orjson
from reactivex import Observable
from reactivex.scheduler import HistoricalScheduler

from rxstream._cassette import Cassette
from rxstream._chunk import ProviderChunk
from rxstream._consume import collect
from rxstream._demo import CHAT_PROVIDERS, chat_main, demo_main
from rxstream._errors import RxStreamError
from rxstream._events import (
    EVENT_ADAPTER,
    Event,
    EventBase,
    Finish,
    ProviderEvent,
    ReasoningDelta,
    RefusalDelta,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
)
from rxstream._result import ResultAccumulator, StreamResult
from rxstream.operators import normalize, tap_metrics
from rxstream.operators._metrics import InMemoryMetrics
from rxstream.operators._normalize import StreamNormalizer
from rxstream.sources._replay import play, read_recording

__all__ = ["main", "timeline"]


def _speed(value: str) -> float:
    try:
        speed = float(value)
    except ValueError:
        speed = math.nan
    if not 0 < speed < math.inf:
        raise argparse.ArgumentTypeError(f"expected a number > 0 (1 = recorded pace), got {value!r}")
    return speed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rxstream", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    replay = commands.add_parser(
        "replay",
        help="normalize a cassette or a recorded stream (.sse, .jsonl or Gemini .json) and print what it holds",
    )
    replay.add_argument("path", help="the cassette or recording")
    replay.add_argument("--events", action="store_true", help="print one JSON event per line")
    replay.add_argument(
        "--summary-json", action="store_true", help="print the StreamResult as one JSON object on the last line"
    )
    replay.add_argument(
        "--provider-events", action="store_true", help="include provider messages with no mapping"
    )
    replay.add_argument(
        "--speed",
        type=_speed,
        default=None,
        metavar="X",
        help="replay a cassette with its recorded gaps, X times faster (1 = as recorded; default: at once)",
    )
    replay.add_argument(
        "--report",
        metavar="HTML",
        default=None,
        help="write a self-contained HTML page with the stream's timeline and metrics; without --speed a "
        "cassette with timing is replayed in virtual time, at its recorded offsets without waiting",
    )
    demo = commands.add_parser("demo", help="stream four scenarios from the built-in emulator over real HTTP (no key)")
    demo.add_argument("--pace", default="400", help="events per second, or 'fast' (default: 400)")
    demo.add_argument("--no-color", action="store_true", help="no ANSI colours")
    demo.add_argument(
        "--report", metavar="HTML", default=None, help="write an HTML page with every scenario's timeline and metrics"
    )
    chat = commands.add_parser("chat", help="stream one prompt from a real provider (key from the environment)")
    chat.add_argument("--provider", required=True, choices=CHAT_PROVIDERS)
    chat.add_argument("--model", required=True)
    chat.add_argument("--base-url", default=None)
    chat.add_argument("prompt")
    record = commands.add_parser(
        "record", help="stream one prompt from a real provider and write it to a cassette (key from the environment)"
    )
    record.add_argument("--provider", required=True, choices=CHAT_PROVIDERS)
    record.add_argument("--model", required=True)
    record.add_argument("--base-url", default=None)
    record.add_argument("-o", "--output", required=True, metavar="PATH", help="the cassette to write (.jsonl)")
    record.add_argument("--no-timing", action="store_true", help="record no arrival offsets")
    record.add_argument("prompt")
    inspect = commands.add_parser(
        "inspect", help="print a cassette's timeline: offsets, gaps, provider events, the events they became"
    )
    inspect.add_argument("path", help="the cassette or recording")
    serve = commands.add_parser("serve", help="run the provider emulator for your own tests", add_help=False)
    serve.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _replay(args: argparse.Namespace) -> int:
    path: str = args.path
    try:
        tape = read_recording(path)
    except RxStreamError as exc:
        print(f"rxstream: {exc.message}", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    # A timed replay prints each event when it happens; at once, they are written in one go.
    live = args.speed is not None

    def show(event: EventBase) -> None:
        if args.events:
            out.write(EVENT_ADAPTER.dump_json(event) + b"\n")  # pyright: ignore[reportArgumentType]
            if live:
                out.flush()

    report: str | None = args.report
    sink = InMemoryMetrics()
    kept: list[EventBase] = []
    virtual = report is not None and args.speed is None
    # The report's timeline needs the recorded offsets: without --speed they come from a replay
    # in virtual time (the recorded timing at once); with it, from the timed replay itself.
    clock = HistoricalScheduler() if virtual else None

    def measured(source: Observable[Event]) -> Observable[Event]:
        if report is None:
            return source
        return source.pipe(tap_metrics(sink, scheduler=clock), _tap(kept.append))

    stream = play(tape, speed=1.0 if virtual else args.speed, scheduler=clock).pipe(
        normalize(provider_events=args.provider_events),
        measured,
        _tap(show),
    )
    if clock is not None:
        result = _run_virtual(stream, clock)
    else:
        try:
            result = asyncio.run(collect(stream))
        except RxStreamError as exc:
            if exc.partial is None:
                print(f"rxstream: {path}: {exc.message}", file=sys.stderr)
                return 1
            result = exc.partial
    if args.summary_json:
        out.write(orjson.dumps(result.to_summary()) + b"\n")
    elif not args.events:
        out.write(_human(result).encode() + b"\n")
    out.flush()
    if report is not None:
        return _write_replay_report(report, tape, args.speed, kept, sink)
    return 0


def _run_virtual(stream: Observable[Event], clock: HistoricalScheduler) -> StreamResult:
    """Run a replay scheduled on a virtual clock to its end and accumulate what it delivered."""
    accumulator = ResultAccumulator()
    errors: list[Exception] = []
    stream.subscribe(accumulator.feed, errors.append, scheduler=clock)
    clock.start()
    if not errors:
        return accumulator.result()
    error = errors[0]
    if not isinstance(error, RxStreamError):
        raise error
    return accumulator.result(error=error)


def _write_replay_report(
    report: str, tape: Cassette, speed: float | None, events: list[EventBase], sink: InMemoryMetrics
) -> int:
    from rxstream._report import pair_streams, write_report

    if not tape.timed:
        note = f"{tape.name}: a recording without timing, replayed at once."
    elif speed is None:
        note = (
            f"{tape.name}: a cassette with timing, replayed in virtual time: every event at its recorded "
            "offset, without waiting for it."
        )
    else:
        note = (
            f"{tape.name}: replayed in real time at {speed:g}x the recorded pace: the offsets are the "
            f"replay's own (the recorded ones divided by {speed:g}, plus scheduling delay)."
        )
    streams = pair_streams(events, sink.records)
    try:
        written = write_report(report, streams, title=f"rxstream replay: {Path(tape.name).name}", notes=[note])
    except RxStreamError as exc:
        print(f"rxstream: {exc.message}", file=sys.stderr)
        return 1
    # stderr: stdout stays what --events / --summary-json promise.
    print(f"rxstream: report written to {written} ({len(streams)} stream(s), {len(events)} events)", file=sys.stderr)
    return 0


def _record(args: argparse.Namespace) -> int:
    from rxstream._demo import _KEYS, _chat_source  # pyright: ignore[reportPrivateUsage]
    from rxstream.operators import aggregate_usage
    from rxstream.operators._record import record

    provider: str = args.provider
    names = _KEYS.get(provider, ())
    if names and not any(os.environ.get(name) for name in names):
        print(f"rxstream record: no API key for {provider}: set {' or '.join(names)}", file=sys.stderr)
        return 2
    try:
        source = _chat_source(provider, args.model, args.prompt, args.base_url)
    except ValueError as exc:
        print(f"rxstream record: {exc}", file=sys.stderr)
        return 2
    output: str = args.output
    out = sys.stdout

    def show(event: EventBase) -> None:
        if isinstance(event, TextDelta):
            out.write(event.text)
            out.flush()

    stream = source.pipe(record(output, timing=not args.no_timing), normalize(), aggregate_usage(), _tap(show))
    failure: RxStreamError | None = None
    try:
        asyncio.run(collect(stream))
    except RxStreamError as exc:
        failure = exc
    out.write("\n")
    try:
        tape = read_recording(output)
    except RxStreamError as exc:  # the path could not be written at all
        print(f"rxstream record: {type(failure or exc).__name__}: {(failure or exc).message}", file=sys.stderr)
        return 1
    payloads = sum(chunk.kind == "data" for chunk in tape.chunks)
    took = f" over {tape.end_at / 1e9:.3f} s" if tape.end_at is not None else ""
    out.write(f"recorded {output}: {payloads} payloads{took}, ended {tape.end}\n")
    out.flush()
    if failure is not None:
        print(f"rxstream record: {type(failure).__name__}: {failure.message}", file=sys.stderr)
        return 1
    return 0


def _inspect(args: argparse.Namespace) -> int:
    path: str = args.path
    try:
        tape = read_recording(path)
    except RxStreamError as exc:
        print(f"rxstream: {exc.message}", file=sys.stderr)
        return 1
    sys.stdout.write("\n".join(timeline(tape)) + "\n")
    sys.stdout.flush()
    return 0


# -- inspect --------------------------------------------------------------------------------------

_SHOWN_CHARS = 48


def _clip(text: str) -> str:
    shown = repr(text[:_SHOWN_CHARS])
    return shown + ("..." if len(text) > _SHOWN_CHARS else "")


def _describe(event: EventBase) -> str:
    """One event, short: its type and what matters in it."""
    if isinstance(event, TextDelta | ReasoningDelta | RefusalDelta):
        detail = _clip(event.text) if event.text else ""
        if isinstance(event, ReasoningDelta) and event.signature:
            detail += " (signed)"
        return f"{event.type} {detail}".rstrip()
    if isinstance(event, ToolCallStart):
        return f"tool_call.start {event.name}"
    if isinstance(event, ToolCallDelta):
        return f"tool_call.delta {_clip(event.arguments_delta)}"
    if isinstance(event, ToolCallDone):
        return f"tool_call.done {event.name}"
    if isinstance(event, Finish):
        return f"finish {event.reason} ({event.raw_reason})"
    if isinstance(event, Usage):
        return f"usage in={event.input_tokens} out={event.output_tokens}"
    if isinstance(event, StreamStart):
        return f"stream.start {event.model}"
    if isinstance(event, ProviderEvent):
        return f"provider.event {event.name}"
    kind: object = getattr(event, "type", None)
    return str(kind)


def _payload_name(chunk: ProviderChunk) -> str:
    if chunk.kind == "open":
        return "open"
    if chunk.event:
        return chunk.event
    data: Any = chunk.data
    if isinstance(data, dict):
        payload = cast(dict[str, Any], data)
        for key in ("type", "object"):
            value = payload.get(key)
            if isinstance(value, str):
                return value
        if "error" in payload:
            return "error"
        if "candidates" in payload:
            return "candidates"
        if "usageMetadata" in payload:
            return "usageMetadata"
    return "payload"


def timeline(tape: Cassette) -> list[str]:
    """The lines ``rxstream inspect`` prints: a header, one line per chunk (offset, gap since
    the previous chunk, number, provider event, the events ``normalize()`` made of it), the end,
    and a summary (time to headers, first payload, first text, largest gap)."""
    header = tape.header
    lines: list[str] = []
    if header:
        timing = "timed" if tape.timed else "untimed"
        lines.append(
            f"{tape.name}: {header.get('format')} v{header.get('version')}, recorded "
            f"{header.get('recorded_at', '?')}, {timing}"
        )
    else:
        lines.append(f"{tape.name}: raw recording (no timing)")
    opened = next((c.open for c in tape.chunks if c.open is not None), None)
    if opened is not None and (opened.url or opened.status is not None):
        lines.append(
            f"request: {opened.provider or '?'} {opened.url or ''} -> HTTP {opened.status}, "
            f"request id {opened.request_id}"
        )
    lines.append(f"{'offset ms':>11} {'gap ms':>10} {'#':>4}  {'provider event':<28} events")
    normalizer = StreamNormalizer(wire=None, stream_id="inspect", provider_events=True, include_raw=False)
    previous: int | None = None
    first_payload: int | None = None
    first_text: int | None = None
    widest: tuple[int, int] | None = None
    failed = False
    number = 0
    for chunk in tape.chunks:
        events: list[EventBase] = [] if failed else list(normalizer.feed(chunk))
        if not failed and normalizer.failure is not None:
            failed = True
            events_text = f"normalize() failed: {type(normalizer.failure).__name__}: {normalizer.failure.message}"
        else:
            events_text = ", ".join(_describe(e) for e in events) or "-"
        if tape.timed:
            offset = f"{chunk.at / 1e6:11.3f}"
            gap_ns = None if previous is None else chunk.at - previous
            gap = "" if gap_ns is None else f"+{gap_ns / 1e6:.3f}"
            if gap_ns is not None and chunk.kind == "data" and (widest is None or gap_ns > widest[0]):
                widest = (gap_ns, number + 1)
            previous = chunk.at
        else:
            offset, gap = f"{'-':>11}", ""
        label = "" if chunk.kind == "open" else str(number + 1)
        if chunk.kind == "data":
            number += 1
            if first_payload is None:
                first_payload = chunk.at
            if first_text is None and any(isinstance(e, TextDelta) for e in events):
                first_text = chunk.at
        lines.append(f"{offset} {gap:>10} {label:>4}  {_payload_name(chunk):<28} {events_text}")
    closing: list[EventBase] = []
    if tape.end in ("complete", "dispose") and not failed:
        closing = list(normalizer.flush())
        if normalizer.failure is not None:
            failed = True
    if tape.end == "error" and tape.error is not None:
        end_text = f"error {tape.error.type}: {tape.error.message}"
    elif tape.end is None:
        end_text = "cut short: no end line (the recording stopped)"
    else:
        end_text = ", ".join(_describe(e) for e in closing) or "-"
    end_at = tape.end_at
    if tape.timed and end_at is not None:
        gap = "" if previous is None else f"+{(end_at - previous) / 1e6:.3f}"
        offset = f"{end_at / 1e6:11.3f}"
    else:
        offset, gap = f"{'-':>11}", ""
    lines.append(f"{offset} {gap:>10} {'':>4}  {tape.end or 'cut short':<28} {end_text}")
    summary = [f"{number} payloads"]
    if tape.timed:
        if opened is not None and opened.headers_at is not None:
            summary.append(f"headers at {opened.headers_at / 1e6:.1f} ms")
        if first_payload is not None:
            summary.append(f"first payload at {first_payload / 1e6:.1f} ms")
        if first_text is not None:
            summary.append(f"first text at {first_text / 1e6:.1f} ms")
        if widest is not None:
            summary.append(f"largest gap {widest[0] / 1e6:.1f} ms before #{widest[1]}")
        if end_at is not None:
            summary.append(f"ended at {end_at / 1e6:.1f} ms")
    lines.append("summary: " + "; ".join(summary))
    return lines


def _tap(fn: Any) -> Any:
    from reactivex import operators as ops

    return ops.do_action(fn)


def _human(result: StreamResult) -> str:
    parts = [f"{result.wire} {result.provider or '?'} {result.model or '?'}"]
    for o in result.outputs:
        parts.append(f"output {o.index}: finish={o.finish_reason} ({o.raw_finish_reason})")
        if o.reasoning:
            parts.append(f"  reasoning: {o.reasoning[:200]!r}{'...' if len(o.reasoning) > 200 else ''}")
        if o.text:
            parts.append(f"  text: {o.text[:400]!r}{'...' if len(o.text) > 400 else ''}")
        if o.refusal:
            parts.append(f"  refusal: {o.refusal!r}")
        parts.extend(f"  tool call {c.call_index}: {c.name}({c.arguments}) id={c.id}" for c in o.tool_calls)
    if result.usage is not None:
        u = result.usage
        parts.append(
            f"usage: input={u.input_tokens} output={u.output_tokens} total={u.total_tokens} "
            f"cache_read={u.cache_read_input_tokens} cache_write={u.cache_write_input_tokens} "
            f"reasoning={u.reasoning_tokens}"
        )
    if result.error is not None:
        parts.append(f"error: {type(result.error).__name__}: {result.error.message}")
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rxstream`` console command."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["serve"]:
        from rxstream.testing._emulator import serve_main

        return serve_main(arguments[1:])
    args = _parser().parse_args(arguments)
    if args.command == "replay":
        return _replay(args)
    if args.command == "demo":
        return demo_main(pace=args.pace, color=False if args.no_color else None, report=args.report)
    if args.command == "chat":
        return chat_main(args.provider, args.model, args.prompt, args.base_url)
    if args.command == "record":
        return _record(args)
    if args.command == "inspect":
        return _inspect(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
