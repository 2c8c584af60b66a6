"""The ``rxstream`` command: demo, chat, serve, replay."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from rxstream._consume import collect
from rxstream._demo import CHAT_PROVIDERS, chat_main, demo_main
from rxstream._errors import RxStreamError
from rxstream._events import EVENT_ADAPTER, EventBase
from rxstream._result import StreamResult
from rxstream.operators import normalize
from rxstream.sources import load_recording

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rxstream", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    replay = commands.add_parser(
        "replay",
        help="normalize a recorded stream (.sse, .jsonl or Gemini .json) and print what it holds",
    )
    replay.add_argument("path", help="the recording")
    replay.add_argument("--events", action="store_true", help="print one JSON event per line")
    replay.add_argument(
        "--summary-json", action="store_true", help="print the StreamResult as one JSON object on the last line"
    )
    replay.add_argument(
        "--provider-events", action="store_true", help="include provider messages with no mapping"
    )
    demo = commands.add_parser("demo", help="stream four scenarios from the built-in emulator over real HTTP (no key)")
    demo.add_argument("--pace", default="400", help="events per second, or 'fast' (default: 400)")
    demo.add_argument("--no-color", action="store_true", help="no ANSI colours")
    chat = commands.add_parser("chat", help="stream one prompt from a real provider (key from the environment)")
    chat.add_argument("--provider", required=True, choices=CHAT_PROVIDERS)
    chat.add_argument("--model", required=True)
    chat.add_argument("--base-url", default=None)
    chat.add_argument("prompt")
    serve = commands.add_parser("serve", help="run the provider emulator for your own tests", add_help=False)
    serve.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _replay(args: argparse.Namespace) -> int:
    path: str = args.path
    try:
        chunks = load_recording(path)
    except RxStreamError as exc:
        print(f"rxstream: {exc.message}", file=sys.stderr)
        return 1
    import reactivex

    lines: list[bytes] = []

    def show(event: EventBase) -> None:
        if args.events:
            lines.append(EVENT_ADAPTER.dump_json(event))  # pyright: ignore[reportArgumentType]

    stream = reactivex.from_iterable(chunks).pipe(
        normalize(provider_events=args.provider_events),
    )
    stream = stream.pipe(_tap(show))
    try:
        result = asyncio.run(collect(stream))
    except RxStreamError as exc:
        if exc.partial is None:
            print(f"rxstream: {path}: {exc.message}", file=sys.stderr)
            return 1
        result = exc.partial
    out = sys.stdout.buffer
    for line in lines:
        out.write(line + b"\n")
    if args.summary_json:
        out.write(orjson.dumps(result.to_summary()) + b"\n")
    elif not args.events:
        out.write(_human(result).encode() + b"\n")
    out.flush()
    return 0


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
        return demo_main(pace=args.pace, color=False if args.no_color else None)
    if args.command == "chat":
        return chat_main(args.provider, args.model, args.prompt, args.base_url)
    return 2


if __name__ == "__main__":
    sys.exit(main())
