"""Fault injection over the emulator (real HTTP on loopback), every wire: retry(), timeout(), and nothing lost."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from reactivex import Observable, abc
from reactivex import operators as ops
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxstream._chunk import Wire
from rxstream._consume import collect
from rxstream._errors import ProtocolError, ProviderError, RxStreamError, TransportError
from rxstream._events import StreamRestart
from rxstream._result import StreamResult
from rxstream.operators import normalize
from rxstream.operators._retry import AfterContent, is_retryable, retry
from rxstream.operators._timeout import timeout
from rxstream.sources import anthropic_messages, gemini, openai_chat, openai_responses
from rxstream.testing import Fault, ProviderEmulator
from tests.conftest import RECORDINGS

_T = TypeVar("_T")

WIRES: list[Wire] = ["openai.chat", "openai.responses", "anthropic.messages", "gemini"]

RECORDING: dict[Wire, str] = {
    "openai.chat": "openai-chat-text-1.sse",
    "openai.responses": "openai-responses-text-1.sse",
    "anthropic.messages": "anthropic-messages-text-2.sse",
    "gemini": "gemini-generatecontent-text-1.sse",
}
GEMINI_ARRAY = "gemini-generatecontent-jsonarray-text-1.json"
BACKGROUND = "openai-responses-background-1.sse"  # a real background response: sequence numbers from 0
ANTHROPIC_TOOLS = "anthropic-messages-toolcall-1.sse"
SPACED = "anthropic-messages-spaced.sse"  # written below: a delta that ends in a space
SPACED_TEXT = "The answer is forty-two."
# Events sent before the fault: after some text went out (and before the end), or before any.
AFTER_CONTENT: dict[Wire, int] = {"openai.chat": 10, "openai.responses": 7, "anthropic.messages": 6, "gemini": 2}
BEFORE_CONTENT: dict[Wire, int] = {"openai.chat": 1, "openai.responses": 4, "anthropic.messages": 3, "gemini": 0}
FULL_TEXT: dict[Wire, int] = {"openai.chat": 159, "openai.responses": 31, "anthropic.messages": 117, "gemini": 32}


class Fixed:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


class DelayRecorder(AsyncIOScheduler):
    """The running loop's scheduler that records every delay asked of it and waits none of it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.requested: list[float] = []

    def schedule_relative(self, duetime: Any, action: Any, state: Any = None) -> abc.DisposableBase:
        self.requested.append(self.to_seconds(duetime))
        return super().schedule_relative(0.0, action, state)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only the recordings these tests stream: the emulator loads them at every start."""
    folder = tmp_path_factory.mktemp("fault-recordings")
    for name in [*RECORDING.values(), GEMINI_ARRAY, BACKGROUND, ANTHROPIC_TOOLS]:
        shutil.copy(RECORDINGS / name, folder / name)
    (folder / SPACED).write_text(spaced_recording())
    return folder


def spaced_recording() -> str:
    """An Anthropic text turn whose second delta ends with a space (what a prefill trims)."""

    def event(name: str, payload: dict[str, Any]) -> str:
        return f"event: {name}\ndata: {json.dumps(payload)}\n\n"

    usage = {"input_tokens": 12, "output_tokens": 1}
    message: dict[str, Any] = {"id": "msg_spaced", "type": "message", "role": "assistant", "model": "claude-sonnet-4", "content": [], "stop_reason": None, "usage": usage}
    deltas = ["The answer", " is ", "forty", "-two."]
    return "".join(
        [
            event("message_start", {"type": "message_start", "message": message}),
            event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            *(event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": d}}) for d in deltas),
            event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}),
            event("message_stop", {"type": "message_stop"}),
        ]
    )


def source(emu: ProviderEmulator, wire: Wire, *, recording: str | None = None, sse: bool = True, **params: Any) -> Observable[Any]:
    headers = {"x-rxstream-recording": recording or RECORDING[wire]}
    if wire == "openai.chat":
        return openai_chat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], api_key="sk-test", base_url=f"{emu.base_url}/v1", headers=headers, **params)
    if wire == "openai.responses":
        return openai_responses(model="gpt-4o", input="hi", api_key="sk-test", base_url=f"{emu.base_url}/v1", headers=headers, **params)
    if wire == "anthropic.messages":
        return anthropic_messages(model="claude-sonnet-4", messages=[{"role": "user", "content": "hi"}], api_key="sk-test", base_url=emu.base_url, headers=headers, **params)
    return gemini(model="gemini-2.0-flash", contents="hi", api_key="sk-test", base_url=emu.base_url, headers=headers, sse=sse, **params)


class Outcome:
    """What the consumer saw: every event delivered, and the result (or the error and its partial)."""

    def __init__(self, events: list[Any], result: StreamResult | None, error: Exception | None) -> None:
        self.events = events
        self.result = result
        self.error = error

    @property
    def final(self) -> StreamResult:
        if self.result is not None:
            return self.result
        assert isinstance(self.error, RxStreamError) and self.error.partial is not None, self.error
        return self.error.partial

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def restarts(self) -> list[StreamRestart]:
        return [e for e in self.events if isinstance(e, StreamRestart)]


async def consume(stream: Observable[Any]) -> Outcome:
    events: list[Any] = []
    try:
        result = await collect(stream.pipe(ops.do_action(events.append)))
    except RxStreamError as exc:
        return Outcome(events, None, exc)
    return Outcome(events, result, None)


def check_nothing_lost(outcome: Outcome, full: str) -> None:
    """Every delivered delta is in the final (or partial) result: the text after the last
    ``stream.restart`` is the result's text, and what a restart replaced was the same answer's
    beginning (the emulator replays one recording)."""
    segments: list[str] = [""]
    for event in outcome.events:
        if event.type == "stream.restart":
            segments.append("")
        elif event.type == "text.delta":
            segments[-1] += event.text
    outputs = outcome.final.outputs
    assert segments[-1] == (outputs[0].text if outputs else "")
    for replaced in segments[:-1]:
        assert replaced and full.startswith(replaced)
    assert outcome.types().count("stream.start") == len(segments)
    assert full.startswith(segments[-1])


def run(main: Callable[[], Any]) -> Any:
    return asyncio.run(main())


_baseline: dict[tuple[Wire, str | None], tuple[list[str], str]] = {}


def baseline(recordings: Path, wire: Wire, recording: str | None = None, sse: bool = True) -> tuple[list[str], str]:
    """The event types and text of the wire's recording streamed without a fault."""
    key = (wire, recording)
    if key not in _baseline:

        async def main() -> Outcome:
            async with ProviderEmulator(recordings) as emu:
                return await consume(source(emu, wire, recording=recording, sse=sse).pipe(normalize()))

        clean = run(main)
        assert clean.result is not None and clean.result.completed
        _baseline[key] = (clean.types(), clean.result.outputs[0].text)
    return _baseline[key]


def fault_run(
    recordings: Path,
    wire: Wire,
    faults: list[Fault],
    *operators: Callable[[Observable[Any]], Observable[Any]],
    pace: Any = "fast",
    **params: Any,
) -> tuple[Outcome, ProviderEmulator]:
    async def main() -> tuple[Outcome, ProviderEmulator]:
        async with ProviderEmulator(recordings, faults=faults, pace=pace) as emu:
            stream = source(emu, wire, **params).pipe(normalize())
            for operator in operators:
                stream = operator(stream)
            return await consume(stream), emu

    return run(main)


def quick(after_content: AfterContent = "fail", **options: Any) -> Callable[[Observable[Any]], Observable[Any]]:
    options.setdefault("backoff", 0.01)
    options.setdefault("rng", Fixed(0.5))
    return retry(after_content=after_content, **options)


def statuses(emu: ProviderEmulator) -> list[int]:
    return [r.status for r in emu.requests]


def retry_protocol_errors(error: Exception) -> bool:
    return is_retryable(error) or isinstance(error, ProtocolError)


@pytest.fixture(params=WIRES)
def wire(request: pytest.FixtureRequest) -> Iterator[Wire]:
    yield request.param


# -- 429 then success ---------------------------------------------------------------------------------


def test_a_429_then_success_is_one_clean_stream_after_the_retry_after_the_provider_asked(recordings: Path, wire: Wire) -> None:
    types, text = baseline(recordings, wire)

    async def main() -> tuple[Outcome, ProviderEmulator, list[float], float]:
        recorder = DelayRecorder(asyncio.get_running_loop())
        faults = [Fault(status=429, retry_after=1.5, times=1)]
        async with ProviderEmulator(recordings, faults=faults) as emu:
            began = time.monotonic()
            stream = source(emu, wire).pipe(normalize(), retry(backoff=0.2, rng=Fixed(0.5), scheduler=recorder))
            outcome = await consume(stream)
            return outcome, emu, recorder.requested, time.monotonic() - began

    outcome, emu, requested, took = run(main)
    # The wait asked of the scheduler is the provider's retry-after (1.5 s, above the 0.1 s jittered backoff),
    # and nobody slept it: the recorder runs the retry at once.
    assert requested == [1.5] and took < 1.5
    assert statuses(emu) == [429, 200]
    assert outcome.error is None and outcome.result is not None and outcome.result.completed
    assert outcome.types() == types and outcome.result.outputs[0].text == text
    assert len({e.stream_id for e in outcome.events}) == 1
    check_nothing_lost(outcome, text)


@pytest.mark.parametrize("status", [503, 529])
def test_an_overloaded_answer_with_retry_after_is_honoured_too(recordings: Path, status: int) -> None:
    """Anthropic's 529 and a 503 may carry retry-after as well: the wait asked is at least that."""

    async def main() -> tuple[Outcome, ProviderEmulator, list[float]]:
        recorder = DelayRecorder(asyncio.get_running_loop())
        async with ProviderEmulator(recordings, faults=[Fault(status=status, retry_after=2.5, times=1)]) as emu:
            stream = source(emu, "anthropic.messages").pipe(normalize(), retry(backoff=0.2, rng=Fixed(0.5), scheduler=recorder))
            return await consume(stream), emu, recorder.requested

    outcome, emu, requested = run(main)
    assert requested == [2.5] and statuses(emu) == [status, 200]
    assert outcome.error is None and outcome.result is not None and outcome.result.completed


def test_a_retry_after_beyond_max_delay_is_not_waited_for(recordings: Path) -> None:
    outcome, emu = fault_run(recordings, "openai.chat", [Fault(status=429, retry_after=90, times=1)], quick())
    assert statuses(emu) == [429] and outcome.error is not None
    assert "more than max_delay=30 s" in outcome.error.__notes__[-1]


# -- a dropped connection ---------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["fail", "restart"])
def test_a_drop_before_content_is_retried_invisibly(recordings: Path, wire: Wire, policy: AfterContent) -> None:
    types, text = baseline(recordings, wire)
    outcome, emu = fault_run(recordings, wire, [Fault(drop_after=BEFORE_CONTENT[wire], times=1)], quick(policy))
    assert outcome.error is None and outcome.types() == types
    assert outcome.final.outputs[0].text == text and outcome.final.completed
    assert statuses(emu) == [200, 200]
    first = emu.requests[0].outcome
    assert first is not None and first.dropped and first.events_sent == BEFORE_CONTENT[wire]
    check_nothing_lost(outcome, text)


def test_a_drop_after_content_with_fail_ends_with_the_error_and_keeps_the_delivered_text(recordings: Path, wire: Wire) -> None:
    _, text = baseline(recordings, wire)
    outcome, emu = fault_run(recordings, wire, [Fault(drop_after=AFTER_CONTENT[wire], times=1)], quick("fail"))
    assert isinstance(outcome.error, TransportError) and statuses(emu) == [200]
    partial = outcome.final
    assert 0 < len(partial.outputs[0].text) < len(text) and not partial.completed
    assert "after_content='fail'" in outcome.error.__notes__[-1]
    check_nothing_lost(outcome, text)


def test_a_drop_after_content_with_restart_streams_the_answer_again_after_stream_restart(recordings: Path, wire: Wire) -> None:
    types, text = baseline(recordings, wire)
    outcome, emu = fault_run(recordings, wire, [Fault(drop_after=AFTER_CONTENT[wire], times=1)], quick("restart"))
    assert outcome.error is None and statuses(emu) == [200, 200]
    (restart,) = outcome.restarts()
    assert restart.attempt == 2 and "TransportError" in restart.reason
    after = outcome.types()[outcome.types().index("stream.restart") + 1 :]
    assert after == types  # the new attempt's whole stream
    assert outcome.final.completed and outcome.final.outputs[0].text == text
    seqs = [e.seq for e in outcome.events]
    assert seqs == sorted(seqs)
    check_nothing_lost(outcome, text)


def test_restarts_that_all_fail_leave_the_first_attempts_text_in_the_partial(recordings: Path) -> None:
    wire: Wire = "anthropic.messages"
    _, text = baseline(recordings, wire)
    faults = [Fault(drop_after=AFTER_CONTENT[wire], times=1), Fault(status=503)]
    outcome, emu = fault_run(recordings, wire, faults, quick("restart", attempts=3))
    assert statuses(emu) == [200, 503, 503]
    assert outcome.error is not None and not outcome.restarts()
    assert 0 < len(outcome.final.outputs[0].text) < len(text)
    notes = outcome.error.__notes__
    assert [n.split(" failed")[0] for n in notes] == [f"rxstream.retry: attempt {i} of 3" for i in (1, 2, 3)]
    check_nothing_lost(outcome, text)


# -- the provider's own error event -----------------------------------------------------------------------


def test_an_in_stream_overload_before_content_is_retried_invisibly(recordings: Path, wire: Wire) -> None:
    types, text = baseline(recordings, wire)
    outcome, emu = fault_run(recordings, wire, [Fault(error_after=BEFORE_CONTENT[wire], times=1)], quick("fail"))
    assert outcome.error is None and outcome.types() == types and outcome.final.outputs[0].text == text
    assert statuses(emu) == [200, 200]
    assert "finish" not in outcome.types()[: outcome.types().index("text.delta")]
    check_nothing_lost(outcome, text)


def test_an_in_stream_overload_after_content(recordings: Path, wire: Wire) -> None:
    types, text = baseline(recordings, wire)
    fault = Fault(error_after=AFTER_CONTENT[wire], times=1)
    failed, _ = fault_run(recordings, wire, [fault], quick("fail"))
    assert isinstance(failed.error, ProviderError) and is_retryable(failed.error)
    # The provider's error closes the output as normalize() says: finish(reason="error") is kept.
    assert failed.final.outputs[0].finish_reason == "error"
    check_nothing_lost(failed, text)
    restarted, emu = fault_run(recordings, wire, [fault], quick("restart"))
    assert restarted.error is None and statuses(emu) == [200, 200]
    (restart,) = restarted.restarts()
    assert "ProviderError" in restart.reason
    # The failed attempt's finish(reason="error") never reaches the consumer of a restarted stream.
    assert [e.reason for e in restarted.events if e.type == "finish"] == ["stop"]
    assert restarted.types()[restarted.types().index("stream.restart") + 1 :] == types
    check_nothing_lost(restarted, text)


# -- a stall ---------------------------------------------------------------------------------------------------


def test_a_stall_is_caught_by_idle_and_restarted(recordings: Path, wire: Wire) -> None:
    _, text = baseline(recordings, wire)
    fault = Fault(stall_after=AFTER_CONTENT[wire], stall_seconds=20, times=1)
    began = time.monotonic()
    outcome, emu = fault_run(recordings, wire, [fault], timeout(idle=0.2), quick("restart"))
    assert time.monotonic() - began < 10
    assert outcome.error is None and outcome.final.completed and outcome.final.outputs[0].text == text
    (restart,) = outcome.restarts()
    assert "StreamTimeoutError" in restart.reason and "idle" in restart.reason
    stalled = emu.requests[0].outcome
    assert stalled is not None and stalled.closed_by_client and not stalled.finished
    check_nothing_lost(outcome, text)


def test_a_stall_before_content_is_caught_by_first_content_and_retried_invisibly(recordings: Path) -> None:
    wire: Wire = "openai.responses"
    types, text = baseline(recordings, wire)
    fault = Fault(stall_after=BEFORE_CONTENT[wire], stall_seconds=20, times=1)
    outcome, emu = fault_run(recordings, wire, [fault], timeout(first_content=0.3), quick("fail"))
    assert outcome.error is None and outcome.types() == types
    first = emu.requests[0].outcome
    assert first is not None and first.closed_by_client
    check_nothing_lost(outcome, text)


# -- bytes that are not the wire format ----------------------------------------------------------------------


def test_a_line_that_is_no_sse_field_is_ignored(recordings: Path, wire: Wire) -> None:
    types, text = baseline(recordings, wire)
    outcome, emu = fault_run(recordings, wire, [Fault(garbage_after=AFTER_CONTENT[wire])], quick("restart"))
    assert outcome.error is None and outcome.types() == types and outcome.final.outputs[0].text == text
    assert statuses(emu) == [200]
    check_nothing_lost(outcome, text)


def test_a_garbage_line_in_a_json_array_body_is_a_protocol_error_not_retried(recordings: Path) -> None:
    _, text = baseline(recordings, "gemini", GEMINI_ARRAY, sse=False)
    outcome, emu = fault_run(recordings, "gemini", [Fault(garbage_after=2)], quick("restart"), recording=GEMINI_ARRAY, sse=False)
    assert isinstance(outcome.error, ProtocolError) and statuses(emu) == [200]
    assert outcome.final.outputs[0].text  # what arrived before it is kept
    check_nothing_lost(outcome, text)


def test_an_invalid_json_payload_is_not_retried_by_default(recordings: Path, wire: Wire) -> None:
    _, text = baseline(recordings, wire)
    outcome, emu = fault_run(recordings, wire, [Fault(malformed_after=AFTER_CONTENT[wire])], quick("restart"))
    assert isinstance(outcome.error, ProtocolError) and statuses(emu) == [200]
    assert "not retryable" in outcome.error.__notes__[-1]
    assert 0 < len(outcome.final.outputs[0].text) < len(text)
    check_nothing_lost(outcome, text)


def test_an_invalid_json_payload_is_restarted_when_retry_on_says_so(recordings: Path, wire: Wire) -> None:
    _, text = baseline(recordings, wire)
    fault = Fault(malformed_after=AFTER_CONTENT[wire], times=1)
    outcome, emu = fault_run(recordings, wire, [fault], quick("restart", retry_on=retry_protocol_errors))
    assert outcome.error is None and statuses(emu) == [200, 200] and len(outcome.restarts()) == 1
    assert outcome.final.outputs[0].text == text
    check_nothing_lost(outcome, text)


def test_a_truncated_body(recordings: Path, wire: Wire) -> None:
    _, text = baseline(recordings, wire)
    fault = Fault(truncate_after=AFTER_CONTENT[wire], times=1)
    failed, emu = fault_run(recordings, wire, [fault], quick("restart"))
    assert isinstance(failed.error, ProtocolError) and statuses(emu) == [200]
    first = emu.requests[0].outcome
    assert first is not None and first.finished and not first.dropped  # the server ended the body itself
    check_nothing_lost(failed, text)
    recovered, emu = fault_run(recordings, wire, [fault], quick("restart", retry_on=retry_protocol_errors))
    assert recovered.error is None and recovered.final.outputs[0].text == text and statuses(emu) == [200, 200]
    check_nothing_lost(recovered, text)


def test_a_truncated_json_array_body(recordings: Path) -> None:
    _, text = baseline(recordings, "gemini", GEMINI_ARRAY, sse=False)
    fault = Fault(truncate_after=99, times=1)
    outcome, emu = fault_run(recordings, "gemini", [fault], quick("fail"), recording=GEMINI_ARRAY, sse=False)
    assert isinstance(outcome.error, ProtocolError) and "truncated" in str(outcome.error)
    assert outcome.final.outputs[0].text == text and statuses(emu) == [200]
    check_nothing_lost(outcome, text)


# -- disposal ------------------------------------------------------------------------------------------------------


def test_disposing_cancels_the_backoff_and_no_second_request_is_sent(recordings: Path) -> None:
    async def main() -> ProviderEmulator:
        async with ProviderEmulator(recordings, faults=[Fault(status=503, times=1)]) as emu:
            stream = source(emu, "openai.chat").pipe(normalize(), retry(backoff=60, rng=Fixed(1.0)))
            subscription = stream.subscribe(lambda _: None, lambda _: None)
            for _ in range(200):
                if emu.requests:
                    break
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)
            subscription.dispose()
            await asyncio.sleep(0.1)
            return emu

    emu = run(main)
    assert statuses(emu) == [503]


def test_disposing_closes_the_attempt_in_flight(recordings: Path) -> None:
    async def main() -> tuple[ProviderEmulator, list[Any]]:
        async with ProviderEmulator(recordings, faults=[Fault(status=503, times=1)], pace=20.0) as emu:
            seen: list[Any] = []
            stream = source(emu, "openai.chat").pipe(normalize(), retry(backoff=0.01, rng=Fixed(0)))
            subscription = stream.subscribe(seen.append, lambda _: None)
            for _ in range(400):
                if any(e.type == "text.delta" for e in seen):
                    break
                await asyncio.sleep(0.005)
            subscription.dispose()
            for _ in range(200):
                second = emu.requests[-1].outcome
                if second is not None and second.closed_by_client:
                    break
                await asyncio.sleep(0.005)
            return emu, seen

    emu, seen = run(main)
    assert statuses(emu) == [503, 200]
    second = emu.requests[1].outcome
    assert second is not None and second.closed_by_client and not second.finished
    assert seen and seen[0].type == "stream.start"


def identity(value: _T) -> _T:
    return value


# -- resume --------------------------------------------------------------------------------------------------------


def delivered_texts(outcome: Outcome) -> str:
    return "".join(e.text for e in outcome.events if e.type == "text.delta")


def test_a_background_response_resumes_after_the_last_sequence_number_without_repeating_anything(recordings: Path) -> None:
    types, text = baseline(recordings, "openai.responses", BACKGROUND)
    outcome, emu = fault_run(
        recordings, "openai.responses", [Fault(drop_after=8, times=1)], quick("resume"), recording=BACKGROUND, background=True
    )
    assert outcome.error is None and outcome.final.completed
    # Each delta once: what was delivered before the drop and after the resume is the answer.
    assert delivered_texts(outcome) == outcome.final.outputs[0].text == text == "2 + 2 equals 4."
    assert outcome.types() == types and not outcome.restarts()
    post, resumed = emu.requests
    assert (post.method, post.status) == ("POST", 200) and post.body["background"] is True
    assert post.outcome is not None and post.outcome.dropped
    response_id = outcome.final.response_id
    assert response_id is not None and response_id.startswith("resp_")
    assert (resumed.method, resumed.path, resumed.status) == ("GET", f"/v1/responses/{response_id}", 200)
    assert dict(resumed.query) == {"stream": "true", "starting_after": "7"}
    assert len({e.stream_id for e in outcome.events}) == 1
    seqs = [e.seq for e in outcome.events]
    assert seqs == sorted(seqs)
    check_nothing_lost(outcome, text)


def test_a_resumed_background_response_that_drops_again_resumes_again(recordings: Path) -> None:
    _, text = baseline(recordings, "openai.responses", BACKGROUND)
    faults = [Fault(drop_after=8, times=1), Fault(drop_after=3, times=1)]
    seen: list[Any] = []
    outcome, emu = fault_run(
        recordings, "openai.responses", faults, quick("resume", on_retry=seen.append), recording=BACKGROUND, background=True
    )
    assert outcome.error is None and delivered_texts(outcome) == outcome.final.outputs[0].text == text
    assert [r.method for r in emu.requests] == ["POST", "GET", "GET"]
    assert [r.query.get("starting_after") for r in emu.requests[1:]] == ["7", "10"]
    assert [n.action for n in seen] == ["resume", "resume"]
    check_nothing_lost(outcome, text)


def test_a_responses_stream_that_is_not_in_background_restarts_and_says_why(recordings: Path) -> None:
    _, text = baseline(recordings, "openai.responses", BACKGROUND)
    outcome, emu = fault_run(recordings, "openai.responses", [Fault(drop_after=8, times=1)], quick("resume"), recording=BACKGROUND)
    (restart,) = outcome.restarts()
    assert "resume not possible (an OpenAI Responses stream resumes only as a background response" in restart.reason
    assert restart.reason.endswith("restarted") and outcome.final.outputs[0].text == text
    assert [r.method for r in emu.requests] == ["POST", "POST"]
    check_nothing_lost(outcome, text)


def test_a_failed_background_response_is_restarted_not_resumed(recordings: Path) -> None:
    _, text = baseline(recordings, "openai.responses", BACKGROUND)
    outcome, emu = fault_run(
        recordings, "openai.responses", [Fault(error_after=8, times=1)], quick("resume"), recording=BACKGROUND, background=True
    )
    (restart,) = outcome.restarts()
    assert "the response itself failed" in restart.reason and outcome.final.outputs[0].text == text
    assert [r.method for r in emu.requests] == ["POST", "POST"]
    check_nothing_lost(outcome, text)


def test_an_expired_background_response_fails_with_what_was_delivered(recordings: Path) -> None:
    # The resume request itself is refused (404: the emulator, like OpenAI, no longer has it).
    _, text = baseline(recordings, "openai.responses", BACKGROUND)
    faults = [Fault(drop_after=8, times=1), Fault(status=404, path="/v1/responses/")]
    outcome, emu = fault_run(recordings, "openai.responses", faults, quick("resume"), recording=BACKGROUND, background=True)
    assert outcome.error is not None and [r.status for r in emu.requests] == [200, 404]
    assert "answered HTTP 404 to GET" in str(outcome.error)
    assert outcome.final.outputs[0].text == "2 + "
    check_nothing_lost(outcome, text)


def test_an_anthropic_text_turn_is_continued_by_a_prefilled_assistant_turn(recordings: Path) -> None:
    wire: Wire = "anthropic.messages"
    _, text = baseline(recordings, wire)
    outcome, emu = fault_run(recordings, wire, [Fault(drop_after=AFTER_CONTENT[wire], times=1)], quick("resume"))
    assert outcome.error is None and not outcome.restarts()
    assert delivered_texts(outcome) == outcome.final.outputs[0].text == text
    first, second = emu.requests
    delivered = "The weather in San Francisco, CA is currently:"
    assert second.body["messages"] == [*first.body["messages"], {"role": "assistant", "content": delivered}]
    assert outcome.types().count("stream.start") == 1 and outcome.final.completed
    assert outcome.final.outputs[0].finish_reason == "stop"
    check_nothing_lost(outcome, text)


def test_a_prefill_drops_the_trailing_space_and_the_continuation_does_not_repeat_it(recordings: Path) -> None:
    outcome, emu = fault_run(recordings, "anthropic.messages", [Fault(drop_after=4, times=1)], quick("resume"), recording=SPACED)
    assert outcome.error is None
    assert emu.requests[1].body["messages"][-1] == {"role": "assistant", "content": "The answer is"}
    assert delivered_texts(outcome) == outcome.final.outputs[0].text == SPACED_TEXT
    # Usage adds both requests' reports: each reported 12 input tokens, 1 then 9 output tokens.
    usage = outcome.final.usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (24, 10)
    check_nothing_lost(outcome, SPACED_TEXT)


def test_an_anthropic_overload_mid_stream_is_continued(recordings: Path) -> None:
    wire: Wire = "anthropic.messages"
    _, text = baseline(recordings, wire)
    outcome, emu = fault_run(recordings, wire, [Fault(error_after=AFTER_CONTENT[wire], times=1)], quick("resume"))
    assert outcome.error is None and not outcome.restarts()
    assert delivered_texts(outcome) == outcome.final.outputs[0].text == text
    assert [e.reason for e in outcome.events if e.type == "finish"] == ["stop"]  # the overload's finish(error) is gone
    assert emu.requests[1].body["messages"][-1]["role"] == "assistant"
    check_nothing_lost(outcome, text)


@pytest.mark.parametrize(
    ("recording", "params", "why"),
    [
        (None, {"thinking": {"type": "enabled", "budget_tokens": 1024}}, "extended thinking is on"),
        (ANTHROPIC_TOOLS, {}, "not text only"),
    ],
    ids=["thinking", "tool-use"],
)
def test_anthropic_turns_a_prefill_cannot_continue_are_restarted(recordings: Path, recording: str | None, params: dict[str, Any], why: str) -> None:
    wire: Wire = "anthropic.messages"
    _, text = baseline(recordings, wire, recording)
    drop = 7 if recording == ANTHROPIC_TOOLS else AFTER_CONTENT[wire]  # ANTHROPIC_TOOLS: inside the tool_use block
    outcome, emu = fault_run(recordings, wire, [Fault(drop_after=drop, times=1)], quick("resume"), recording=recording, **params)
    (restart,) = outcome.restarts()
    assert why in restart.reason and restart.reason.endswith("restarted")
    assert emu.requests[1].body["messages"] == emu.requests[0].body["messages"]
    assert outcome.final.outputs[0].text == text
    check_nothing_lost(outcome, text)


@pytest.mark.parametrize("wire", ["openai.chat", "gemini"])
def test_wires_without_a_resume_restart_and_say_so(recordings: Path, wire: Wire) -> None:
    _, text = baseline(recordings, wire)
    outcome, _ = fault_run(recordings, wire, [Fault(drop_after=AFTER_CONTENT[wire], times=1)], quick("resume"))
    (restart,) = outcome.restarts()
    assert f"resume not possible ({wire} offers no way to resume a stream), restarted" in restart.reason
    assert outcome.final.outputs[0].text == text
    check_nothing_lost(outcome, text)


def test_a_stalled_background_response_caught_by_idle_is_resumed(recordings: Path) -> None:
    _, text = baseline(recordings, "openai.responses", BACKGROUND)
    fault = Fault(stall_after=8, stall_seconds=20, times=1)
    outcome, emu = fault_run(
        recordings, "openai.responses", [fault], timeout(idle=0.2), quick("resume"), recording=BACKGROUND, background=True
    )
    assert outcome.error is None and delivered_texts(outcome) == outcome.final.outputs[0].text == text
    stalled, resumed = emu.requests
    assert stalled.outcome is not None and stalled.outcome.closed_by_client
    assert resumed.method == "GET" and resumed.query.get("starting_after") == "7"
    check_nothing_lost(outcome, text)
