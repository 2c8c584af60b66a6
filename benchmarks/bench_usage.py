"""Live token counting: its cost per delta against one tiktoken encode, and how good the estimates are.

Cost (default): 10,000 text deltas (the recorded providers' own deltas, repeated) are counted
by ``TokenCounter`` alone, and streamed as events through ``aggregate_usage(live=True)``,
``aggregate_usage()`` and ``guard(max_output_tokens=...)`` (minus the same events through no
operator). Each is printed per delta and as a ratio to one ``encode_ordinary`` of the whole
text in the same run (rounds alternate; medians of the per-round ratios: the machine is
noisy). The target is about 2 us per delta.

Quality (``--quality``): every recording in tests/recordings whose provider reported usage is
replayed with its usage events removed, so ``aggregate_usage()`` must estimate the output
tokens; the estimate is compared with the provider's count, per provider family and kind of
stream. ``--list`` adds one line per recording.

    python benchmarks/bench_usage.py [--rounds 15]
    python benchmarks/bench_usage.py --quality [--list]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import reactivex
from reactivex import operators as ops

from rxstream._errors import RxStreamError
from rxstream._events import (
    Event,
    EventBase,
    Finish,
    ReasoningDelta,
    StreamEnd,
    StreamStart,
    TextDelta,
    ToolCallStart,
    Usage,
    make_event,
)
from rxstream._tokens import TokenCounter, tokenizer_for_model
from rxstream.operators import aggregate_usage, guard, normalize
from rxstream.operators._lift import lift
from rxstream.sources import load_recording

ROOT = Path(__file__).resolve().parent.parent / "tests" / "recordings"
DELTAS = 10_000
MODEL = "gpt-4o-2024-08-06"


# -- cost ----------------------------------------------------------------------------------------


def recorded_deltas(count: int) -> list[str]:
    """``count`` text deltas as providers sent them: every recording's, in order, repeated."""
    pieces: list[str] = []
    for path in sorted(ROOT.iterdir()):
        if path.suffix not in {".sse", ".jsonl", ".json"}:
            continue
        events: list[Any] = []
        reactivex.from_iterable(load_recording(path)).pipe(normalize(stream_id="b")).subscribe(
            events.append, lambda _: None
        )
        pieces.extend(e.text for e in events if isinstance(e, TextDelta) and e.text)
    out: list[str] = []
    while len(out) < count:
        out.extend(pieces[: count - len(out)])
    return out


def events_of(deltas: list[str]) -> list[EventBase]:
    start = make_event(StreamStart, stream_id="b", seq=0, at=0, wire="openai.chat", model=MODEL)
    body = [make_event(TextDelta, stream_id="b", seq=i + 1, at=i + 1, text=d) for i, d in enumerate(deltas)]
    n = len(deltas) + 1
    return [start, *body, make_event(Finish, stream_id="b", seq=n, at=n, reason="stop"),
            make_event(StreamEnd, stream_id="b", seq=n, at=n)]


class _Pass:
    """A core that does nothing: the cost floor of any lifted operator."""

    failure: RxStreamError | None = None

    def feed(self, item: EventBase) -> list[EventBase]:
        return [item]

    def flush(self) -> list[EventBase]:
        return []


def timed(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def run_pipe(events: list[EventBase], operator: Callable[[Any], Any] | None) -> Callable[[], object]:
    def go() -> object:
        sink: list[Any] = []
        source = reactivex.from_iterable(events)
        (source.pipe(operator) if operator is not None else source).subscribe(sink.append)
        return sink

    return go


def cost(rounds: int) -> int:
    tokenizer = tokenizer_for_model(MODEL)
    deltas = recorded_deltas(DELTAS)
    whole = "".join(deltas)
    events = events_of(deltas)
    count = tokenizer.count

    def counter_only() -> object:
        counter = TokenCounter(tokenizer)
        for d in deltas:
            counter.add(d)
        return counter.tokens()

    tokens = count(whole)
    assert counter_only() == tokens, "the incremental count must equal the whole text's"
    cases: dict[str, Callable[[], object]] = {
        "TokenCounter.add (counting only)": counter_only,
        "aggregate_usage(live=True)": run_pipe(events, aggregate_usage(live=True, every_tokens=100)),
        "aggregate_usage()": run_pipe(events, aggregate_usage()),
        "guard(max_output_tokens=10**9)": run_pipe(events, guard(max_output_tokens=10**9)),
        "(a pass-through lift(): the floor)": run_pipe(events, lift(_Pass)),
    }
    baseline = run_pipe(events, None)
    ratios: dict[str, list[float]] = {name: [] for name in cases}
    per_delta: dict[str, list[float]] = {name: [] for name in cases}
    encodes: list[float] = []
    names = list(cases)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        encode = min(timed(lambda: count(whole)) for _ in range(3))
        base = min(timed(baseline) for _ in range(3))
        encodes.append(encode)
        for name in order:
            spent = min(timed(cases[name]) for _ in range(3))
            if name != "TokenCounter.add (counting only)":
                spent -= base
            ratios[name].append(spent / encode)
            per_delta[name].append(spent / len(deltas) * 1e6)
    print(f"{len(deltas)} deltas, {len(whole)} characters, {tokens} tokens ({tokenizer.name}); {rounds} rounds")
    print(f"one encode_ordinary of the whole text: {statistics.median(encodes) * 1e3:.2f} ms "
          f"({statistics.median(encodes) / len(deltas) * 1e6:.3f} us per delta)")
    print(f"{'':34} {'us/delta':>9} {'x whole encode':>15}")
    for name in names:
        print(f"{name:34} {statistics.median(per_delta[name]):9.3f} {statistics.median(ratios[name]):15.2f}")
    print("(operators: minus the same events through no operator; medians over rounds)")
    return 0


# -- quality -------------------------------------------------------------------------------------

_HOSTED = ("code-execution", "code-interpreter", "web-search", "file-search", "image-generation", "mcp")


def _family(name: str, model: str | None) -> str:
    vendor = name.split("-", 1)[0]
    if vendor == "openai":
        if model and model.startswith("gpt-4o"):
            return "OpenAI gpt-4o family"
        return "OpenAI other (gpt-4, gpt-5, o-series)"
    return {"azure": "Azure OpenAI", "anthropic": "Anthropic", "gemini": "Google Gemini"}.get(vendor, "other vendors")


def _reasoning_model(model: str | None) -> bool:
    name = (model or "").rsplit("/", 1)[-1].removeprefix("openai.")
    return name.startswith(("gpt-5", "o1", "o3", "o4"))


def _kind(name: str, events: list[Any], provider: Usage, model: str | None) -> str:
    if any(h in name for h in _HOSTED):
        return "hosted tools"
    if any(isinstance(e, ToolCallStart) for e in events):
        return "tool calls"
    if any(isinstance(e, ReasoningDelta) and e.text for e in events):
        return "reasoning (streamed)"
    if provider.reasoning_tokens or _reasoning_model(model) or any(isinstance(e, ReasoningDelta) for e in events):
        # Reasoning the model did but did not stream: encrypted, redacted or summarised away.
        return "reasoning (hidden)"
    return "text"


def quality_rows() -> list[dict[str, Any]]:
    """One row per recording with a provider output count: the estimate with usage removed."""
    rows: list[dict[str, Any]] = []
    for path in sorted(ROOT.iterdir()):
        if path.suffix not in {".sse", ".jsonl", ".json"}:
            continue
        chunks = load_recording(path)
        events: list[Any] = []
        reactivex.from_iterable(chunks).pipe(normalize(stream_id="q")).subscribe(events.append, lambda _: None)
        reports = [e for e in events if isinstance(e, Usage)]
        if not reports or reports[-1].output_tokens is None:
            continue
        provider = reports[-1]
        estimated: list[Event] = []
        reactivex.from_iterable(chunks).pipe(
            normalize(stream_id="q"), ops.filter(lambda e: not isinstance(e, Usage)), aggregate_usage()
        ).subscribe(estimated.append, lambda _: None)
        final = next(e for e in estimated if isinstance(e, Usage))
        start = next((e for e in events if isinstance(e, StreamStart)), None)
        model = start.model if start is not None else None
        truth = provider.output_tokens or 0
        guess = final.output_tokens or 0
        rows.append(
            {
                "name": path.name,
                "model": model,
                "family": _family(path.name, model),
                "kind": _kind(path.name, events, provider, model),
                "provider": truth,
                "estimate": guess,
                "error": guess - truth,
                "relative": (guess - truth) / truth if truth else 0.0,
                "ok": abs(guess - truth) <= max(3, 0.1 * truth),
                "estimator": final.estimator,
            }
        )
    return rows


def _summary(label: str, rows: list[dict[str, Any]]) -> str:
    rel = [abs(r["relative"]) * 100 for r in rows]
    signed = [r["relative"] * 100 for r in rows]
    ok = sum(1 for r in rows if r["ok"])
    return (
        f"| {label} | {len(rows)} | {statistics.median(signed):+.0f}% | {statistics.median(rel):.0f}% | "
        f"{max(rel):.0f}% | {ok}/{len(rows)} |"
    )


def quality(listing: bool) -> int:
    rows = quality_rows()
    estimator = rows[0]["estimator"] if rows else None
    print(f"Output-token estimates with the provider's usage removed ({len(rows)} recordings, estimator {estimator}).")
    print("Error = (estimate - provider) / provider; 'within' = within 10% or 3 tokens, whichever is larger.\n")
    print("| group | n | median error | median abs error | max abs error | within |")
    print("|---|---|---|---|---|---|")
    for family in sorted({r["family"] for r in rows}):
        print(_summary(family, [r for r in rows if r["family"] == family]))
    print("|  |  |  |  |  |  |")
    for kind in ("text", "tool calls", "reasoning (streamed)", "reasoning (hidden)", "hosted tools"):
        group = [r for r in rows if r["kind"] == kind]
        if group:
            print(_summary(f"kind: {kind}", group))
    print("|  |  |  |  |  |  |")
    for family in sorted({r["family"] for r in rows}):
        for kind in ("text", "tool calls", "reasoning (streamed)", "reasoning (hidden)", "hosted tools"):
            group = [r for r in rows if r["family"] == family and r["kind"] == kind]
            if group:
                label = f"{family}, {kind}"
                if family == "OpenAI gpt-4o family" and kind == "text":
                    label = f"**{label}** (the 10% / 3-token target)"
                print(_summary(label, group))
    if listing:
        print("\n| recording | model | kind | provider | estimate | error |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['name']} | {r['model']} | {r['kind']} | {r['provider']} | {r['estimate']} | "
                  f"{r['error']:+d} ({r['relative'] * 100:+.0f}%) |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds (cost)")
    parser.add_argument("--quality", action="store_true", help="estimate quality on the recordings")
    parser.add_argument("--list", action="store_true", help="with --quality: one line per recording")
    args = parser.parse_args(argv)
    if args.quality:
        return quality(args.list)
    return cost(args.rounds)


if __name__ == "__main__":
    sys.exit(main())
