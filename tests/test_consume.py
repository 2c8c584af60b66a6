"""collect(): the accumulated StreamResult, failures with .partial, cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import reactivex
from reactivex.disposable import Disposable

from rxstream import ProtocolError, ProviderError, collect
from rxstream.operators import normalize
from rxstream.sources import replay
from tests.conftest import RECORDINGS


def test_collect_returns_the_accumulated_result() -> None:
    result = asyncio.run(collect(replay(RECORDINGS / "anthropic-messages-toolcall-1.sse").pipe(normalize())))
    assert result.completed
    assert result.wire == "anthropic.messages" and result.model == "claude-sonnet-4-20250514"
    assert result.response_id == "msg_019Q1hrJbZG26Fb9BQhrkHEr"
    assert result.text == "I'll check the current weather in Paris for you."
    (call,) = result.tool_calls
    assert (call.id, call.name, call.arguments) == ("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", '{"location": "Paris"}')
    assert result.outputs[0].finish_reason == "tool_calls"
    assert result.usage is not None and (result.usage.input_tokens, result.usage.output_tokens) == (377, 65)
    assert result.error is None


def test_collect_raises_with_the_partial_result() -> None:
    stream = replay(RECORDINGS / "groq-chat-reasoning-error-1.sse").pipe(normalize())
    with pytest.raises(ProviderError) as caught:
        asyncio.run(collect(stream))
    partial = caught.value.partial
    assert partial is not None and partial.error is caught.value
    assert partial.outputs[0].reasoning.startswith("We need")
    assert partial.outputs[0].finish_reason == "error"
    assert not partial.completed


def test_collect_on_an_unreadable_recording_is_a_protocol_error(tmp_path: Any) -> None:
    bad = tmp_path / "x.sse"
    bad.write_bytes(b"data: {oops\n\n")
    with pytest.raises(ProtocolError, match="expected a JSON payload"):
        asyncio.run(collect(replay(bad).pipe(normalize())))


def test_cancelling_collect_disposes_the_subscription() -> None:
    disposed: list[bool] = []

    def subscribe(_observer: Any, _scheduler: Any = None) -> Disposable:
        return Disposable(lambda: disposed.append(True))

    async def main() -> None:
        task = asyncio.create_task(collect(reactivex.create(subscribe)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert disposed == [True]


def test_result_summary_has_nulls_only_where_the_provider_gave_nothing() -> None:
    result = asyncio.run(collect(replay(RECORDINGS / "openai-chat-text-nousage-1.sse").pipe(normalize())))
    summary = result.to_summary()
    assert summary["usage"] is None and summary["error"] is None
    out = summary["outputs"][0]
    assert out["text"] == "This is a test." and out["reasoning"] == "" and out["refusal"] == ""
    assert out["tool_calls"] == [] and out["finish_reason"] == "stop"
