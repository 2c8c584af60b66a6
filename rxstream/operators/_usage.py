"""aggregate_usage(): exactly one final, provenance-tagged usage per stream, estimating what the provider did not give."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reactivex import Observable

from rxstream._errors import RxStreamError
from rxstream._events import (
    Event,
    EventBase,
    ReasoningDelta,
    RefusalDelta,
    StreamEnd,
    StreamRestart,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
    UsageSource,
    event_builder,
)
from rxstream._tokens import (
    PARALLEL_CALLS_OVERHEAD,
    TOOL_CALL_OVERHEAD,
    TokenCounter,
    Tokenizer,
    estimate_request_tokens,
    token_counter,
    tokenizer_for_model,
    tokenizer_from_counter,
)
from rxstream.operators._lift import lift

__all__ = ["UsageCore", "UsageTally", "aggregate_usage"]

_USAGE = event_builder(Usage)


class _Call:
    """One tool call's output: its name and the arguments counted as they stream."""

    __slots__ = ("counter", "name", "streamed")

    def __init__(self, counter: TokenCounter, name: str) -> None:
        self.counter = counter
        self.name = name
        self.streamed = False


class UsageTally:
    """What is known of one stream's usage: the provider's last report and local counts.

    Shared by ``aggregate_usage()`` and ``guard()``. Output is counted per text (each output's
    answer, reasoning and refusal, each tool call's arguments), plus per call its name and
    :data:`TOOL_CALL_OVERHEAD`, and :data:`PARALLEL_CALLS_OVERHEAD` per output with several
    calls. The input is estimated from the request in ``stream.start`` only when asked for (it
    can be long).

    Exact counts cost an encode, so callers watching a threshold read :meth:`predicted`
    instead: the last exact count (``counted``) plus the characters added since (``fresh``)
    times the tokens per character seen so far (``ratio``), and count only when it is near.
    """

    def __init__(self, tokenizer: Tokenizer | None = None) -> None:
        self._fixed = tokenizer
        self._tokenizer: Tokenizer | None = tokenizer
        self.model: str | None = None
        self.request: dict[str, Any] | None = None
        self.provider: Usage | None = None
        self.counted = 0
        self.fresh = 0
        self.ratio = 1.0
        self._chars = 0
        self._input: int | None = None
        self._input_done = False
        self.texts: dict[int, TokenCounter] = {}
        self._reasoning: dict[int, TokenCounter] = {}
        self._refusals: dict[int, TokenCounter] = {}
        self._calls: dict[tuple[int, int], _Call] = {}

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer estimates use (the user's, else the model's)."""
        tokenizer = self._tokenizer
        if tokenizer is None:
            tokenizer = self._tokenizer = tokenizer_for_model(self.model)
        return tokenizer

    def start(self, event: StreamStart) -> None:
        """A stream begins: its model picks the tokenizer, its request is the input."""
        self.model = event.model
        self.request = event.request
        if self._fixed is None:
            self._tokenizer = None
        self._input_done = False

    def reset(self) -> None:
        """Everything before a ``stream.restart`` is void (the request stays)."""
        self.provider = None
        self.counted = 0
        self.fresh = 0
        self._chars = 0
        self.texts = {}
        self._reasoning = {}
        self._refusals = {}
        self._calls = {}

    def predicted(self) -> float:
        """The output tokens so far, extrapolated from the last exact count (no encoding)."""
        return self.counted + self.fresh * self.ratio

    # -- content ---------------------------------------------------------------------------

    def text_counter(self, output: int) -> TokenCounter:
        """The counter of ``output``'s answer text (callers add to it and to ``fresh``)."""
        counter = self.texts.get(output)
        if counter is None:
            counter = self.texts[output] = token_counter(self.tokenizer)
        return counter

    def text(self, output: int, text: str) -> None:
        counter = self.texts.get(output)
        if counter is None:
            counter = self.text_counter(output)
        counter.add(text)
        self.fresh += len(text)

    def reasoning(self, output: int, text: str) -> None:
        counter = self._reasoning.get(output)
        if counter is None:
            counter = self._reasoning[output] = token_counter(self.tokenizer)
        counter.add(text)
        self.fresh += len(text)

    def refusal(self, output: int, text: str) -> None:
        counter = self._refusals.get(output)
        if counter is None:
            counter = self._refusals[output] = token_counter(self.tokenizer)
        counter.add(text)
        self.fresh += len(text)

    def call(self, output: int, call_index: int, name: str) -> _Call:
        key = (output, call_index)
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = _Call(token_counter(self.tokenizer), name)
            self.counted += TOOL_CALL_OVERHEAD
            self.fresh += len(name)
        elif not call.name:
            call.name = name
        return call

    def arguments(self, output: int, call_index: int, text: str) -> None:
        call = self._calls.get((output, call_index))
        if call is None:
            call = self.call(output, call_index, "")
        call.counter.add(text)
        call.streamed = True
        self.fresh += len(text)

    def call_done(self, event: ToolCallDone) -> None:
        call = self.call(event.output, event.call_index, event.name)
        if not call.streamed and event.arguments:
            # Arguments that only came whole with the done event (never as deltas).
            self.arguments(event.output, event.call_index, event.arguments)

    # -- counts ----------------------------------------------------------------------------

    def output_tokens(self, *, final: bool = False) -> int:
        """The estimated output tokens so far (exact counts of what streamed); updates
        ``counted``, ``ratio`` and ``fresh``."""
        total = 0
        for group in (self.texts, self._reasoning, self._refusals):
            for counter in group.values():
                total += counter.final_tokens() if final else counter.tokens()
        if self._calls:
            count = self.tokenizer.count
            per_output: dict[int, int] = {}
            for (output, _), call in self._calls.items():
                per_output[output] = per_output.get(output, 0) + 1
                total += TOOL_CALL_OVERHEAD + (count(call.name) if call.name else 0)
                total += call.counter.final_tokens() if final else call.counter.tokens()
            total += PARALLEL_CALLS_OVERHEAD * sum(1 for n in per_output.values() if n > 1)
        chars = self._chars = self._chars + self.fresh
        if chars >= 16:
            self.ratio = max(total, 1) / chars
        self.fresh = 0
        self.counted = total
        return total

    def reasoning_tokens(self, *, final: bool = False) -> int | None:
        """Estimated reasoning tokens: None when no reasoning text streamed."""
        if not self._reasoning:
            return None
        return sum(c.final_tokens() if final else c.tokens() for c in self._reasoning.values())

    def input_tokens(self) -> int | None:
        """Estimated input tokens of the request (None when it is unknown); counted once."""
        if not self._input_done:
            request = self.request
            self._input = None if request is None else estimate_request_tokens(request, self.tokenizer.count)
            self._input_done = True
        return self._input

    def usage(
        self, cause: EventBase, *, final: bool, complete: bool, estimate: bool = True, counted: int | None = None
    ) -> Usage:
        """The usage so far: the provider's numbers, and estimates for what it did not give.

        ``complete``: the stream ended as the provider meant it to, so its last report is its
        final word. Otherwise (a running count, a stream cut short) the output is the larger
        of the provider's last cumulative figure and the local count (providers report output
        rarely mid-stream). ``final`` sets the event's flag; ``counted`` is an output count the
        caller just made (not counted again).
        """
        p = self.provider
        provided = False
        estimated = False
        p_in = p.input_tokens if p is not None else None
        p_out = p.output_tokens if p is not None else None
        input_tokens = p_in
        if p_in is not None:
            provided = True
        elif estimate:
            input_tokens = self.input_tokens()
            estimated = input_tokens is not None
        output_tokens = p_out
        reasoning = p.reasoning_tokens if p is not None else None
        if reasoning is not None:
            provided = True
        if estimate and (p_out is None or not complete):
            if counted is None:
                counted = self.output_tokens(final=final)
            if p_out is None or counted > p_out:
                output_tokens = counted
                p_out = None
                estimated = True
                if reasoning is None:
                    reasoning = self.reasoning_tokens(final=final)
        if p_out is not None:
            provided = True
        total: int | None
        if not estimated:
            total = p.total_tokens if p is not None else None
        elif input_tokens is not None and output_tokens is not None:
            total = input_tokens + output_tokens
        else:
            total = None
        cache_read = p.cache_read_input_tokens if p is not None else None
        cache_write = p.cache_write_input_tokens if p is not None else None
        if cache_read is not None or cache_write is not None:
            provided = True
        source: UsageSource = "mixed" if estimated and provided else "estimated" if estimated else "provider"
        return _USAGE(
            cause.stream_id,
            cause.seq,
            cause.at,
            {},
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=total,
            cache_read_input_tokens=cache_read,
            cache_write_input_tokens=cache_write,
            reasoning_tokens=reasoning,
            source=source,
            estimator=self.tokenizer.name if estimated else None,
            final=final,
            raw=p.raw if p is not None else None,
        )


class UsageCore:
    """The pure core of ``aggregate_usage()``.

    Every event passes except usage: the provider's reports are kept (the last one is the
    stream's cumulative total) and dropped; one final ``usage`` goes out just before
    ``stream.end`` (or at completion without one, or before an upstream error once the stream
    started). An incoming ``final=True`` usage (from ``guard()`` or another ``aggregate_usage()``
    upstream) is the final one: it passes unchanged and nothing is added. With ``live``, a
    running ``usage`` (``final=False``) follows the delta at which the local output count is
    found to have reached the next multiple of ``every_tokens``: the count is made exact when an
    extrapolation (tokens per character so far) says the multiple is near, so a running usage
    can come a few deltas late where the text gets denser; its numbers are exact for the text
    up to its delta.
    """

    failure: RxStreamError | None = None

    def __init__(
        self,
        *,
        tokenizer: Tokenizer | None = None,
        estimate: bool = True,
        live: bool = False,
        every_tokens: int = 100,
    ) -> None:
        self._tally = UsageTally(tokenizer)
        self._estimate = estimate
        self._every = every_tokens
        self._live = live
        self._next: float = every_tokens if live else float("inf")
        self._done = False
        self._seen: EventBase | None = None
        self._handlers: dict[type[Any], Callable[[Any], list[Event]]] = {
            ReasoningDelta: self._on_reasoning if estimate else self._pass,
            RefusalDelta: self._on_refusal if estimate else self._pass,
            ToolCallStart: self._on_call_start if estimate else self._pass,
            ToolCallDelta: self._on_arguments if estimate else self._pass,
            ToolCallDone: self._on_call_done if estimate else self._pass,
            Usage: self._on_usage,
            StreamStart: self._on_start,
            StreamRestart: self._on_restart,
            StreamEnd: self._on_end,
        }
        self._after: Callable[[Any], list[Event]] = self._counted if live else self._pass

    def feed(self, event: Any) -> list[Event]:
        """Pass ``event`` on, with the usage events it causes."""
        cls = event.__class__
        if cls is TextDelta and self._estimate:
            # The hot path, inlined: one dict probe, one append, one comparison.
            self._seen = event
            tally = self._tally
            counter = tally.texts.get(event.output)
            if counter is None:
                counter = tally.text_counter(event.output)
            text = event.text
            counter.add(text)
            tally.fresh += len(text)
            if tally.counted + tally.fresh * tally.ratio < self._next or self._done:
                return [event]
            return self._counted(event)
        self._seen = event
        handler = self._handlers.get(cls)
        if handler is None:
            return [event]
        return handler(event)

    def flush(self) -> list[Event]:
        """A stream that completes without ``stream.end`` still gets its final usage."""
        seen = self._seen
        if seen is None or self._done:
            return []
        self._done = True
        return [self._tally.usage(seen, final=True, complete=True, estimate=self._estimate)]

    # -- handlers --------------------------------------------------------------------------

    @staticmethod
    def _pass(event: Any) -> list[Event]:
        return [event]

    def _counted(self, event: Any) -> list[Event]:
        tally = self._tally
        if self._done or tally.counted + tally.fresh * tally.ratio < self._next:
            return [event]
        counted = tally.output_tokens()
        if counted < self._next:
            return [event]
        self._next = (counted // self._every + 1) * self._every
        return [event, tally.usage(event, final=False, complete=False, counted=counted)]

    def _on_reasoning(self, event: ReasoningDelta) -> list[Event]:
        if not event.text:
            return [event]
        self._tally.reasoning(event.output, event.text)
        return self._after(event)

    def _on_refusal(self, event: RefusalDelta) -> list[Event]:
        self._tally.refusal(event.output, event.text)
        return self._after(event)

    def _on_call_start(self, event: ToolCallStart) -> list[Event]:
        self._tally.call(event.output, event.call_index, event.name)
        return self._after(event)

    def _on_arguments(self, event: ToolCallDelta) -> list[Event]:
        self._tally.arguments(event.output, event.call_index, event.arguments_delta)
        return self._after(event)

    def _on_call_done(self, event: ToolCallDone) -> list[Event]:
        self._tally.call_done(event)
        return self._after(event)

    def _on_usage(self, event: Usage) -> list[Event]:
        if event.final:
            if self._done:
                return []
            self._done = True
            return [event]
        if event.source == "provider":
            self._tally.provider = event
        return []

    def _on_start(self, event: StreamStart) -> list[Event]:
        self._tally.start(event)
        return [event]

    def _on_restart(self, event: StreamRestart) -> list[Event]:
        self._tally.reset()
        self._next = self._every if self._live else float("inf")
        self._done = False
        return [event]

    def _on_end(self, event: StreamEnd) -> list[Event]:
        if self._done:
            return [event]
        self._done = True
        return [self._tally.usage(event, final=True, complete=True, estimate=self._estimate), event]

    def abort(self, error: Exception) -> list[Event]:
        """Upstream failed: a stream that started still reports what it spent, before the error."""
        del error  # the usage so far is the same whatever the error
        seen = self._seen
        if self._done or seen is None:
            return []
        self._done = True
        return [self._tally.usage(seen, final=True, complete=False, estimate=self._estimate)]


def _wrap(exc: Exception) -> Exception:
    error = RxStreamError(f"aggregate_usage(): counting tokens raised {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def aggregate_usage(
    *,
    counter: object = None,
    estimate: bool = True,
    live: bool = False,
    every_tokens: int = 100,
) -> Callable[[Observable[Event]], Observable[Event]]:
    """Give every stream exactly one final, consistent usage, saying where each number came from.

    Every event passes unchanged and in order, except ``usage``: the provider's reports (the
    cumulative totals ``normalize()`` emits) are dropped, and one ``usage`` with ``final=True``
    goes out just before ``stream.end``, with the ``stream_id``, ``seq`` and ``at`` of
    ``stream.end``. Its numbers are the provider's last report; what the provider did not give
    is estimated (``estimate=True``):

    - output tokens: the text, reasoning, refusal and tool-call arguments that streamed,
      counted exactly across delta boundaries, plus per tool call its name and
      ``TOOL_CALL_OVERHEAD`` (7) tokens, and ``PARALLEL_CALLS_OVERHEAD`` (11) per output with
      several calls (both measured on OpenAI's counts, see ``rxstream._tokens``);
      ``reasoning_tokens`` from the reasoning text when the output is estimated;
    - input tokens: the request in ``stream.start`` (messages, system prompt, instructions,
      tools as JSON), with the OpenAI cookbook's 3 tokens per message and 3 for the reply;
      ``None`` when the request is unknown (a raw replay);
    - ``total_tokens``: input plus output once both are known; cache counts are never estimated.

    ``source`` is ``"provider"`` when every number came from the provider, ``"estimated"`` when
    none did, ``"mixed"`` otherwise; ``estimator`` names what counted (``tiktoken:o200k_base``,
    ``tiktoken:cl100k_base``, ``chars/4`` or the counter's name) and is None when nothing was
    estimated; ``raw`` is the provider's last usage object, untouched. The tokenizer follows the
    model (``o200k_base`` for gpt-4o, gpt-4.1, gpt-5 and the o-series, ``cl100k_base``
    otherwise) when tiktoken has it without a download, else the bundled offline
    ``cl100k_base``, else characters / 4 (see ``rxstream._tokens``). The first stream of a
    process loads the BPE (about 0.3 s).

    With ``live=True``, a running ``usage`` (``final=False``, same fields, exact for the text so
    far) follows the delta at which the local output count reaches each multiple of
    ``every_tokens`` (found by extrapolation, then counted: where the text's tokens per
    character rise, a few deltas late). A ``final=True`` usage arriving from upstream
    (``guard()``) is taken as the final one. A stream that fails after its first event gets
    its final usage (what was spent so far) just before the error. ``stream.restart`` starts
    the count again.

    .. marble::
        :alt: aggregate_usage
        -s-a-u-b-v-f-e-----|
        [ aggregate_usage() ]
        -s-a---b---f-(w,e)-|

    (``s`` stream.start, ``a`` / ``b`` text deltas, ``u`` / ``v`` the provider's cumulative
    reports, ``f`` finish, ``e`` stream.end, ``w`` the one final usage: ``v``'s numbers.)

    Args:
        counter: counts tokens instead of the model's tiktoken BPE: a ``Callable[[str], int]``,
            an object with ``encode(text)`` (``len()`` of the result is the count) or a tiktoken
            ``Encoding``. A plain counter's final count is one call on each whole text.
        estimate: estimate what the provider did not give (else those numbers stay None and
            nothing is counted).
        live: emit running usage events while the text streams.
        every_tokens: output tokens between running usage events.

    Errors:
        A ``counter`` that raises, or returns something other than an int >= 0, fails the
        stream with :class:`RxStreamError` (cause attached). Upstream errors pass unchanged,
        after the final usage when the stream had started.

    Raises:
        ValueError: at call time, for a ``counter`` that is none of the above, non-bool flags,
            ``live=True`` with ``estimate=False``, or ``every_tokens`` not a positive int.
    """
    tokenizer = tokenizer_from_counter(counter) if counter is not None else None
    if not isinstance(estimate, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"aggregate_usage(estimate=...) expected a bool, got {estimate!r}")
    if not isinstance(live, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"aggregate_usage(live=...) expected a bool, got {live!r}")
    if isinstance(every_tokens, bool) or not isinstance(every_tokens, int) or every_tokens <= 0:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"aggregate_usage(every_tokens=...) expected an int > 0, got {every_tokens!r}")
    if live and not estimate:
        raise ValueError("aggregate_usage(live=True) counts tokens locally: it needs estimate=True")

    def make_core() -> UsageCore:
        return UsageCore(tokenizer=tokenizer, estimate=estimate, live=live, every_tokens=every_tokens)

    return lift(make_core, wrap_error=_wrap)
