"""retry(): re-send a failed request, invisibly before any content, by policy once content was delivered."""

from __future__ import annotations

import datetime
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, cast, get_args

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable

from rxstream._errors import (
    HTTPStatusError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    RxStreamError,
    StreamTimeoutError,
    TransportError,
)
from rxstream._events import (
    CONTENT_TYPES,
    Event,
    Finish,
    StreamRestart,
    StreamStart,
    TextDelta,
    Usage,
    event_builder,
)
from rxstream._gate import CURRENT_GATE
from rxstream.operators._batch import seconds_of, timer_scheduler

if TYPE_CHECKING:
    from contextvars import ContextVar

    from rxstream.sources._http import SourceHook
    from rxstream.sources._providers import ResumeLink, ResumePlan

__all__ = ["AfterContent", "RetryAttempt", "RetryCore", "RetryPolicy", "Uniform", "is_retryable", "retry"]

logger = logging.getLogger("rxstream.retry")

AfterContent = Literal["fail", "restart", "resume"]
"""What ``retry()`` does with a failure once content was delivered downstream."""

_AFTER_CONTENT: Final[tuple[str, ...]] = get_args(AfterContent)

# What counts as content: what a consumer shows or acts on, so a failure after it can no longer
# be hidden; a completed tool call too (a consumer may already be executing it).
_CONTENT: Final = CONTENT_TYPES | {"tool_call.done"}

# Provider error codes and types (lower-cased) that say "try again later": Anthropic, OpenAI
# (chat and Responses), Gemini / Vertex status names, and the rate-limit spellings in use.
_RETRYABLE_CODES: Final = frozenset(
    {
        "overloaded_error",
        "overloaded",
        "api_error",
        "server_error",
        "internal_error",
        "internal",
        "unavailable",
        "service_unavailable",
        "deadline_exceeded",
        "resource_exhausted",
        "rate_limit_error",
        "rate_limit_exceeded",
        "rate_limited",
        "too_many_requests",
        "timeout",
    }
)
# Statuses worth retrying that are neither 429 nor 5xx: request timeout, conflict (a lock).
_RETRYABLE_STATUSES: Final = frozenset({408, 409})
_MAX_REASON = 300

_RESTART = event_builder(StreamRestart)


class Uniform(Protocol):
    """A source of jitter: ``random()`` returns a float in ``[0, 1)`` (``random.Random`` is one)."""

    def random(self) -> float: ...


def is_retryable(error: BaseException) -> bool:
    """``retry()``'s default ``retry_on``: whether ``error`` is a failure worth a second request.

    Retryable: :class:`TransportError` (connection failed or dropped), :class:`RateLimitError`
    (429), :class:`ProviderUnavailableError` (5xx, 529), another :class:`HTTPStatusError` with
    status 408 or 409, :class:`StreamTimeoutError` (``timeout()``, an HTTP read timeout), and a
    :class:`ProviderError` whose status is 429, 408 or 5xx or whose code or type says overloaded,
    server / API error, unavailable, deadline exceeded, resource exhausted or rate limited.
    Everything else is not: authentication and bad requests (400, 401, 403, 404, 422), other
    provider errors (an invalid request, a content policy), :class:`ProtocolError`,
    :class:`JsonError`, :class:`LimitExceededError`, and any exception that is not an
    :class:`RxStreamError` (a bug does not go away by asking again).
    """
    if isinstance(error, TransportError | StreamTimeoutError | RateLimitError | ProviderUnavailableError):
        return True
    if isinstance(error, HTTPStatusError):
        return error.status in _RETRYABLE_STATUSES or error.status >= 500
    if isinstance(error, ProviderError):
        status = error.status
        if status is not None and (status >= 500 or status == 429 or status in _RETRYABLE_STATUSES):
            return True
        return any(
            isinstance(word, str) and word.lower() in _RETRYABLE_CODES for word in (error.code, error.error_type)
        )
    return False


@dataclass(frozen=True, slots=True)
class RetryAttempt:
    """What ``retry()`` decided about one failed attempt (given to ``on_retry``, and logged).

    Attributes:
        attempt: the number of the attempt that failed (1 is the first request).
        attempts: the most attempts allowed.
        error: the attempt's error.
        action: ``"retry"`` (nothing was delivered: the next attempt replaces this one
            invisibly), ``"restart"`` (content was delivered: the next attempt's stream follows a
            ``stream.restart``), ``"resume"`` (the next request continues where this one
            stopped), or ``"fail"`` (no further attempt: the stream ends with ``error``).
        delay: seconds until the next attempt, ``None`` for ``"fail"``.
        content_delivered: whether content had reached the consumer when the attempt failed.
        reason: why, in words (the ``stream.restart`` reason for a restart, why a failure is
            final for ``"fail"``).
    """

    attempt: int
    attempts: int
    error: Exception
    action: Literal["retry", "restart", "resume", "fail"]
    delay: float | None
    content_delivered: bool
    reason: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to retry and how long to wait: ``retry()``'s validated configuration.

    The wait before retry ``k`` (1 for the first) is drawn uniformly from
    ``[0, min(max_delay, backoff * 2 ** (k - 1))]`` ("full jitter": concurrent clients that
    failed together do not come back together), raised to the provider's ``retry_after`` when
    that is larger. A ``retry_after`` above ``max_delay`` ends the retries: waiting less than
    the provider asked would only fail again.
    """

    attempts: int = 3
    backoff: float = 0.5
    max_delay: float = 30.0
    retry_on: Callable[[Exception], bool] = is_retryable
    after_content: AfterContent = "fail"

    def ceiling(self, retry_number: int) -> float:
        """The most the jittered wait before retry ``retry_number`` (1-based) can be."""
        # The exponent is bounded so a large attempt count never overflows a float.
        return min(self.max_delay, self.backoff * 2.0 ** min(retry_number - 1, 64))

    def delay(self, retry_number: int, error: Exception, uniform: Uniform) -> float | None:
        """Seconds to wait before retry ``retry_number``, or ``None`` when the provider asked for
        a longer wait than ``max_delay`` allows."""
        wait = uniform.random() * self.ceiling(retry_number)
        asked = _retry_after(error)
        if asked is not None:
            if asked > self.max_delay:
                return None
            wait = max(wait, asked)
        return wait


def _retry_after(error: Exception) -> float | None:
    value: object = getattr(error, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _is_content(event: Any) -> bool:
    kind = event.type
    return kind in _CONTENT and (kind != "reasoning.delta" or bool(event.text))


@dataclass(frozen=True, slots=True)
class Step:
    """What the shell does after a failed attempt: deliver ``deliver``, then either end with
    ``error`` or start the next attempt after ``delay`` seconds."""

    deliver: list[Event]
    error: Exception | None
    delay: float
    notice: RetryAttempt


_USAGE_FIELDS: Final = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_input_tokens",
    "cache_write_input_tokens",
    "reasoning_tokens",
)


def _plus(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else a + b


class RetryCore:
    """The pure core of ``retry()``: what each attempt's events become downstream.

    ``feed`` takes the current attempt's events, ``complete`` its completion, ``fail`` its error
    (a :class:`Step`), ``begin`` starts the next attempt. The non-content prefix of an attempt
    (``stream.start``, usage, pings) is held until the attempt's first content: a failure before
    it drops the prefix, and the consumer sees one ``stream.start``. Once content went out, a
    failure either ends the stream (``after_content="fail"``), marks a restart, emitted as
    ``stream.restart`` just before the replacing attempt's first content (its whole stream, its
    ``stream.start`` included, follows: until a replacement delivers content, what the consumer
    has stays valid, and a final failure still carries it), or resumes (``"resume"``, with a
    ``link`` to the HTTP source). A ``finish`` with reason ``error`` (what ``normalize()`` emits
    just before a provider error) is held until the next event, so a retried failure leaves no
    trace of it. Events of later attempts are re-stamped with the first attempt's ``stream_id``,
    and a new response's ``seq`` shifted past the last delivered one, so the consumer sees one
    stream whose ``seq`` never decreases.

    Resuming: a ``"replay"`` attempt re-receives every event the failed one received (the source
    replays its chunks through ``normalize()``): they are dropped, after checking that the last
    of them is the last one received before; a mismatch (an operator between ``normalize()``
    and ``retry()`` that is not a pure function of the chunks) turns the resume into a restart
    of the whole replayed stream. A ``"continue"`` attempt is a new response continuing the
    text: its ``stream.start`` is dropped, the whitespace that the prefill trimmed is not
    repeated (as much of it as the continuation starts with), and its usage is added to what
    the earlier request reported.
    """

    def __init__(self, policy: RetryPolicy, uniform: Uniform, link: ResumeLink | None = None) -> None:
        self._policy = policy
        self._uniform = uniform
        self.attempt = 1
        self.content_delivered = False
        self._live = False  # this attempt's content went out: events pass
        self._held: list[Event] = []
        self._tail: list[Event] = []  # finish(error) waiting to see whether an error follows
        self._restart: str | None = None  # the reason of a restart to announce
        self._stream_id: str | None = None
        self._rewrite = False
        self._seq_base = 0
        self.last: Event | None = None  # the last event delivered
        # Events may go straight through (the shell's fast path): this attempt is live, needs no
        # re-stamping or tracking, and no finish(error) is waiting.
        self.open = False
        self._fast = link is None
        self._history: list[str] = []
        # -- resume (only with a link)
        self.link = link
        self.plan: ResumePlan | None = None  # what the next (then current) attempt carries out
        self._received = 0
        self._last_received: Event | None = None
        self._skip = 0
        self._skip_total = 0
        self._skip_expect: tuple[str, int] | None = None
        self._skipped: list[Event] = []
        self._continuing = False
        self._overlap = ""  # whitespace the prefill trimmed, which the consumer already has
        self._base_usage: Event | None = None
        self._text: list[str] = []
        self._text_only = True
        self._last_usage: Event | None = None

    # -- events

    def feed(self, event: Event) -> list[Event]:
        """One event of the current attempt: what goes downstream now."""
        if self._stream_id is None:
            self._stream_id = event.stream_id
        if self._rewrite:
            event = self._restamp(event)
        if self.link is not None:
            return self._feed_tracked(event)
        return self._pass(event)

    def _pass(self, event: Event) -> list[Event]:
        if self._live:
            if event.__class__ is Finish and cast(Finish, event).reason == "error":
                self._tail.append(event)
                self.open = False
                return []
            self.last = event
            if self._tail:
                out = [*self._tail, event]
                self._tail = []
                self.open = self._fast
                return out
            return [event]
        if not _is_content(event):
            self._held.append(event)
            return []
        return self._release([*self._held, event])

    def complete(self) -> list[Event]:
        """The attempt completed: what goes downstream before ``on_completed``."""
        if self._skip:
            self._restart = "resume: the resumed stream ended before repeating what was delivered; restarted"
            out = self._release(self._skipped)
        elif self._live:
            out, self._tail = self._tail, []
        else:
            out = self._release(self._held)
        if self.link is not None:
            self._track(out)
        return out

    def _release(self, events: list[Event]) -> list[Event]:
        self._held = []
        self._live = True
        self.open = self._fast
        self.content_delivered = True
        if self._restart is not None and events:
            first = events[0]
            seq = self.last.seq if self.last is not None else first.seq
            marker: Event = _RESTART(first.stream_id, seq, first.at, {}, attempt=self.attempt, reason=self._restart)
            events = [marker, *events]
            self._text, self._text_only, self._last_usage = [], True, None
        self._restart = None
        if events:
            self.last = events[-1]
        return events

    def _restamp(self, event: Event) -> Event:
        update: dict[str, Any] = {}
        if event.stream_id != self._stream_id:
            update["stream_id"] = self._stream_id
        if self._seq_base:
            update["seq"] = event.seq + self._seq_base
        return event.model_copy(update=update) if update else event

    # -- resume

    def _feed_tracked(self, event: Event) -> list[Event]:
        self._received += 1
        self._last_received = event
        if self._skip:
            self._skipped.append(event)
            self._skip -= 1
            if self._skip:
                return []
            skipped, self._skipped = self._skipped, []
            if (event.type, event.seq) == self._skip_expect:
                # The replay matched: what follows is new. The logical stream is live again.
                self._live = True
                return []
            self._restart = "resume: the resumed stream did not repeat what was delivered; restarted"
            out = self._release(skipped)
            self._track(out)
            return out
        if self._continuing:
            joined = self._join(event)
            if joined is None:
                return []
            event = joined
        out = self._pass(event)
        self._track(out)
        return out

    def _join(self, event: Event) -> Event | None:
        """An event of a continuing response, as part of the stream it continues."""
        cls = event.__class__
        if cls is StreamStart:
            return None
        if cls is Usage:
            base = self._base_usage
            if base is None:
                return event
            return event.model_copy(update={f: _plus(getattr(base, f), getattr(event, f)) for f in _USAGE_FIELDS})
        if self._overlap and cls is TextDelta and cast(TextDelta, event).output == 0:
            # The continuation usually starts with the whitespace the prefill trimmed off, which
            # the consumer already has: drop as much of it as repeats.
            text, overlap = cast(TextDelta, event).text, self._overlap
            same = 0
            while same < len(text) and same < len(overlap) and text[same] == overlap[same]:
                same += 1
            if same == len(text):
                self._overlap = overlap[same:]
                return None
            self._overlap = ""
            return event.model_copy(update={"text": text[same:]}) if same else event
        return event

    def _track(self, events: list[Event]) -> None:
        """What a resume needs to know of the delivered stream: output 0's text, whether it is all
        text, the last usage."""
        for event in events:
            cls = event.__class__
            if cls is TextDelta:
                delta = cast(TextDelta, event)
                if delta.output == 0:
                    self._text.append(delta.text)
                else:
                    self._text_only = False
            elif cls is Usage:
                self._last_usage = event
            elif _is_content(event):
                self._text_only = False

    def _resume_plan(self, error: Exception) -> ResumePlan | str:
        link = self.link
        if link is None:
            return "no link to the source"
        return link.plan(
            text="".join(self._text), text_only=self._text_only, provider_error=isinstance(error, ProviderError)
        )

    # -- failure

    def fail(self, error: Exception) -> Step:
        """The current attempt failed with ``error``: retry it, or end the stream.

        Raises:
            Exception: what a user ``retry_on`` raised (the shell reports it).
        """
        policy = self._policy
        attempt = self.attempt
        live = self._live
        delivered = self.content_delivered
        final_reason: str | None = None
        if not policy.retry_on(error):
            final_reason = "not retryable (retry_on said no)"
        elif attempt >= policy.attempts:
            final_reason = f"no attempts left (attempts={policy.attempts})"
        elif live and policy.after_content == "fail":
            final_reason = "content was already delivered and after_content='fail'"
        delay: float | None = None
        if final_reason is None:
            delay = policy.delay(attempt, error, self._uniform)
            if delay is None:
                asked = _retry_after(error)
                final_reason = (
                    f"the provider asked to wait {asked:g} s, more than max_delay={policy.max_delay:g} s "
                    "(raise retry(max_delay=...) to wait that long)"
                )
        if final_reason is not None or delay is None:
            return self._final(error, final_reason or "no delay")
        action: Literal["retry", "restart", "resume"] = "restart" if delivered else "retry"
        reason = f"attempt {attempt} failed after content was delivered: {_describe(error)}"
        plan: ResumePlan | None = None
        if delivered and policy.after_content == "resume" and (live or self._restart is None):
            resumed = self._resume_plan(error)
            if isinstance(resumed, str):
                reason = f"{reason}; resume not possible ({resumed}), restarted"
            else:
                plan, action = resumed, "resume"
        if plan is None and live:
            self._restart = reason
        self._prepare(plan)
        self._history.append(
            f"rxstream.retry: attempt {attempt} of {policy.attempts} failed with {_describe(error)}; "
            f"retried after {delay:.3f} s" + ("" if action == "retry" else f" ({action})")
        )
        logger.info(
            "attempt %d of %d failed (%s); %s in %.3f s",
            attempt, policy.attempts, _describe(error), _VERB[action], delay,
        )
        if action == "retry":
            reason = "no content was delivered yet: retried invisibly"
        notice = RetryAttempt(attempt, policy.attempts, error, action, delay, delivered, reason)
        return Step([], None, delay, notice)

    def _final(self, error: Exception, reason: str) -> Step:
        policy = self._policy
        # The consumer sees this attempt's held prefix only when it is the whole story: not once
        # content of an earlier attempt went out (a second stream.start would corrupt it).
        deliver = self._tail if self._live else ([] if self.content_delivered else self._held)
        self._held, self._tail, self._skipped = [], [], []
        for line in self._history:
            error.add_note(line)
        error.add_note(f"rxstream.retry: attempt {self.attempt} of {policy.attempts} failed; not retried: {reason}")
        notice = RetryAttempt(self.attempt, policy.attempts, error, "fail", None, self.content_delivered, reason)
        logger.info("attempt %d of %d failed (%s); giving up: %s", self.attempt, policy.attempts, _describe(error), reason)
        return Step(deliver, error, 0.0, notice)

    def _prepare(self, plan: ResumePlan | None) -> None:
        """Set up what the next attempt's events must go through."""
        was_replay = self.plan is not None and self.plan.mode == "replay"
        if plan is not None and plan.mode == "replay":
            if not (was_replay and self._skip):
                # Everything the failed attempt received comes again first (a replay that was
                # cut before its end keeps the count it had).
                last = self._last_received
                self._skip_total = self._received
                self._skip_expect = (last.type, last.seq) if last is not None else None
        elif plan is not None:
            self._base_usage = self._last_usage
            text = "".join(self._text)
            self._overlap = text[len(text.rstrip()) :]
        self.plan = plan

    def begin(self) -> None:
        """Start the next attempt: its events replace whatever the failed one held back."""
        self.attempt += 1
        plan = self.plan
        self._live = False
        self.open = self._fast = False
        self._held, self._tail, self._skipped = [], [], []
        self._rewrite = True
        self._received = 0
        self._skip = self._skip_total if plan is not None and plan.mode == "replay" else 0
        self._continuing = plan is not None and plan.mode == "continue"
        if (plan is None or plan.mode == "continue") and self.last is not None:
            # A new response numbers its messages from 0 again; a replayed one continues.
            self._seq_base = self.last.seq + 1
        if self.link is not None:
            self.link.begin(plan)


_VERB: Final = {"retry": "retrying", "restart": "restarting", "resume": "resuming"}


def _wrap(exc: Exception, error: Exception) -> RxStreamError:
    wrapped = RxStreamError(f"retry(): retry_on raised {type(exc).__name__}: {exc} while judging {_describe(error)}")
    wrapped.__cause__ = exc
    return wrapped


def _instance_of(classes: tuple[type[BaseException], ...]) -> Callable[[Exception], bool]:
    def predicate(error: Exception) -> bool:
        return isinstance(error, classes)

    return predicate


def _policy_args(
    attempts: object, backoff: object, max_delay: object, retry_on: object, after_content: object
) -> RetryPolicy:
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"retry(attempts=...) expected an int >= 1 (1 = no retry), got {attempts!r}")
    backoff_s = seconds_of("retry", "backoff", backoff, allow_zero=True)
    max_delay_s = seconds_of("retry", "max_delay", max_delay, allow_zero=True)
    if backoff_s is None or max_delay_s is None:
        raise ValueError("retry(backoff=..., max_delay=...) expected numbers of seconds, got None")
    if after_content not in _AFTER_CONTENT:
        raise ValueError(f"retry(after_content=...) expected one of {', '.join(map(repr, _AFTER_CONTENT))}, got {after_content!r}")
    predicate: Callable[[Exception], bool]
    if retry_on is None:
        predicate = is_retryable
    elif isinstance(retry_on, tuple):
        classes: tuple[Any, ...] = retry_on  # pyright: ignore[reportUnknownVariableType]
        if not classes or not all(isinstance(c, type) and issubclass(c, BaseException) for c in classes):
            raise ValueError(f"retry(retry_on=...) expected a non-empty tuple of exception classes, got {retry_on!r}")
        predicate = _instance_of(classes)
    elif callable(retry_on):
        predicate = retry_on  # pyright: ignore[reportAssignmentType]
    else:
        raise ValueError(
            f"retry(retry_on=...) expected a predicate (error) -> bool, a tuple of exception classes or None, got {retry_on!r}"
        )
    return RetryPolicy(attempts, backoff_s, max_delay_s, predicate, after_content)  # pyright: ignore[reportArgumentType]


def retry(
    *,
    attempts: int = 3,
    backoff: float | datetime.timedelta = 0.5,
    max_delay: float | datetime.timedelta = 30.0,
    retry_on: Callable[[Exception], bool] | tuple[type[BaseException], ...] | None = None,
    after_content: AfterContent = "fail",
    scheduler: abc.SchedulerBase | None = None,
    rng: Uniform | None = None,
    on_retry: Callable[[RetryAttempt], object] | None = None,
) -> Callable[[Observable[Event]], Observable[Event]]:
    """Re-subscribe upstream (re-send the request: sources are cold) when an attempt fails.

    Put it after ``normalize()`` (and after ``timeout()``, whose errors it retries):
    ``source.pipe(normalize(), timeout(idle=30), retry(after_content="restart"))``.

    Before any content (text, reasoning, a refusal, a tool call) reached the consumer, a
    retryable failure is retried invisibly: each attempt's ``stream.start`` and other
    non-content events are held until its first content, so the consumer sees one
    ``stream.start`` and the failure shows only in the ``rxstream.retry`` log and ``on_retry``.
    After content, ``after_content`` decides:

    - ``"fail"``: the stream ends with the error; everything delivered stays delivered
      (``collect()`` puts it in the error's ``.partial``);
    - ``"restart"``: the request is sent again, and when the new attempt delivers content,
      ``stream.restart(attempt=n, reason=...)`` comes first, then the new attempt's whole
      stream, ``stream.start`` included (``collect()`` and the operators reset at it). If every
      retry fails first, the stream ends with the error and what was delivered stays valid;
    - ``"resume"``: the stream continues without repeating what was delivered, where the
      provider allows it. An OpenAI Responses *background* response (``background=True`` in
      the request) is fetched again after its last ``sequence_number`` received
      (``GET /responses/{id}?stream=true&starting_after=N``); the source replays what it had
      received through ``normalize()`` first, so tool calls and items in progress carry on.
      An Anthropic text-only turn is continued by a new request whose last message is the
      delivered text (trailing whitespace trimmed) as a prefilled assistant turn; the
      continuation's ``stream.start`` is dropped, the whitespace the prefill trimmed is not
      repeated, and its usage is added to the first request's. Not possible, so restarted,
      with ``stream.restart.reason`` saying why: another wire, a source that is not an
      rxstream HTTP source (or several of them upstream), a Responses request without
      ``background=True``, a response that failed by itself (its provider error), an
      Anthropic turn with extended thinking, reasoning or a tool call. Operators between
      ``normalize()`` and ``retry()`` must give the same events for the same chunks
      (``timeout()`` does); a replay that does not turns into a restart.

    Every attempt's events carry the first attempt's ``stream_id``; a new response's ``seq``
    continues past the last delivered one. The wait before retry ``k`` is drawn from
    ``[0, min(max_delay, backoff * 2 ** (k - 1))]`` ("full jitter"), and is at least the
    provider's ``retry-after`` (``retry_after`` of a 429, 503 or 529); a ``retry-after`` above
    ``max_delay`` is not waited for: the stream fails.

    .. marble::
        :alt: retry
        attempt 1   -s-#
        attempt 2       -s-a-----b-|
        [ retry(backoff=1) ]
                    -------(s,a)-b-|

    (``s`` stream.start, ``a`` ``b`` text deltas, ``#`` a retryable error before content; the
    second attempt starts after the wait (here the whole 1 s ceiling was drawn), its
    ``stream.start`` held until ``a``. With ``after_content="restart"``, a failure after ``a``
    gives ``-s-a-#`` then, at the next attempt's first content, ``(r,s,a)``: ``r`` the
    ``stream.restart``.)

    Args:
        attempts: the most attempts in all, the first request included (1: never retry).
        backoff: seconds (or a ``timedelta``) of the first retry's wait ceiling, doubled per retry.
        max_delay: the largest wait ceiling, and the longest ``retry-after`` honoured.
        retry_on: which errors to retry: a predicate ``(error) -> bool`` or a tuple of exception
            classes, replacing the default :func:`is_retryable` (extend it with
            ``lambda e: is_retryable(e) or isinstance(e, ProtocolError)``).
        after_content: ``"fail"``, ``"restart"`` or ``"resume"`` (see above).
        scheduler: the timers for the waits: default the subscribe-time scheduler (a trampoline
            is skipped), then the running asyncio loop's, then a thread timer.
        rng: the jitter source (``random.Random(seed)`` for a reproducible run); default the
            ``random`` module.
        on_retry: called with a :class:`RetryAttempt` after every failed attempt (retried or
            final), before the wait: the hook for retry counters in metrics.

    Returns:
        An operator over rxstream events; all state is per subscription. Re-subscribing
        upstream is what retries it: upstream must be cold (every rxstream source is), not
        ``share()``d.

    Errors:
        The last attempt's error once it is not retryable, the attempts are used up, content
        was delivered and ``after_content="fail"``, or the provider's ``retry-after`` exceeds
        ``max_delay``. Its notes (``add_note``) list every earlier attempt's error with its
        attempt number and the wait that followed, then why it was final. A ``retry_on`` or
        ``on_retry`` that raises ends the stream with :class:`RxStreamError` (cause attached).
        Disposing cancels a pending wait and the attempt in flight (a live source closes its
        request).

    Raises:
        ValueError: at call time, for ``attempts`` not an int >= 1, a negative or non-numeric
            ``backoff`` / ``max_delay``, an unknown ``after_content``, a ``retry_on`` that is
            neither a predicate nor a tuple of exception classes, or an ``rng`` / ``on_retry``
            of the wrong kind.
    """
    policy = _policy_args(attempts, backoff, max_delay, retry_on, after_content)
    make_link: Callable[[], ResumeLink] | None = None
    hook: ContextVar[SourceHook | None] | None = None
    if after_content == "resume":
        # Imported here: only resuming needs the sources' side (and httpx).
        from rxstream.sources._http import CURRENT_SOURCE_HOOK
        from rxstream.sources._providers import ResumeLink

        make_link, hook = ResumeLink, CURRENT_SOURCE_HOOK
    if rng is not None and not callable(getattr(rng, "random", None)):
        raise ValueError(f"retry(rng=...) expected an object with a random() method (random.Random), got {rng!r}")
    if on_retry is not None and not callable(on_retry):
        raise ValueError(f"retry(on_retry=...) expected a callable or None, got {on_retry!r}")
    uniform: Uniform = rng if rng is not None else random.Random()

    def operator(source: Observable[Event]) -> Observable[Event]:
        def subscribe(
            observer: abc.ObserverBase[Event], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            clock = timer_scheduler(scheduler, subscribe_scheduler)
            link = make_link() if make_link is not None else None
            core = RetryCore(policy, uniform, link)
            lock = threading.RLock()
            upstream = SerialDisposable()
            timer = SerialDisposable()
            gate = CURRENT_GATE.get()  # a re-subscription from a timer must still see the reader's gate
            stopped = False

            def stop() -> None:
                nonlocal stopped
                stopped = True
                timer.dispose()
                upstream.dispose()

            def attach(number: int) -> None:
                def on_next(event: Event) -> None:
                    if core.open and event.__class__ is not Finish and number == core.attempt and not stopped:
                        # The common case: a live first attempt, events pass as they are.
                        core.last = event
                        observer.on_next(event)
                        return
                    # No lock: an attempt's events come one at a time, and its end before the
                    # timer of the next attempt is armed; the lock orders ends, timers, disposal.
                    if stopped or number != core.attempt:
                        return
                    try:
                        out = core.feed(event)
                    except Exception as exc:  # noqa: BLE001 - reported per Rx grammar
                        with lock:
                            stop()
                            observer.on_error(exc)
                        return
                    for item in out:
                        observer.on_next(item)

                def on_error(error: Exception) -> None:
                    with lock:
                        if stopped or number != core.attempt:
                            return
                        failed(error)

                def on_completed() -> None:
                    with lock:
                        if stopped or number != core.attempt:
                            return
                        out = core.complete()
                        stop()
                        for item in out:
                            observer.on_next(item)
                        observer.on_completed()

                token = CURRENT_GATE.set(gate)
                hooked = hook.set(link) if hook is not None else None
                try:
                    subscription = source.subscribe(on_next, on_error, on_completed, scheduler=subscribe_scheduler)
                finally:
                    if hook is not None and hooked is not None:
                        hook.reset(hooked)
                    CURRENT_GATE.reset(token)
                with lock:
                    if stopped:
                        subscription.dispose()
                    elif number == core.attempt:
                        upstream.disposable = subscription

            def failed(error: Exception) -> None:
                try:
                    step = core.fail(error)
                except Exception as exc:  # noqa: BLE001 - a user retry_on raised
                    stop()
                    observer.on_error(_wrap(exc, error))
                    return
                if on_retry is not None:
                    try:
                        on_retry(step.notice)
                    except Exception as exc:  # noqa: BLE001 - user code
                        stop()
                        wrapped = RxStreamError(f"retry(): on_retry raised {type(exc).__name__}: {exc}")
                        wrapped.__cause__ = exc
                        observer.on_error(wrapped)
                        return
                for item in step.deliver:
                    observer.on_next(item)
                if step.error is not None:
                    stop()
                    observer.on_error(step.error)
                    return
                upstream.disposable = Disposable()  # the failed attempt is over: release it
                timer.disposable = clock.schedule_relative(datetime.timedelta(seconds=step.delay), next_attempt)

            def next_attempt(_: abc.SchedulerBase, __: Any = None) -> None:
                with lock:
                    if stopped:
                        return
                    core.begin()
                    number = core.attempt
                attach(number)

            attach(1)

            def dispose() -> None:
                nonlocal stopped
                with lock:
                    stopped = True

            return CompositeDisposable(Disposable(dispose), timer, upstream)

        return Observable(subscribe)

    return operator
