"""Limits: each hard limit ends the stream with a clear LimitExceededError, after everything before it."""

from __future__ import annotations

import dataclasses
import resource
import time
from typing import Any

import pytest
import reactivex

import rxstream
from rxstream import LimitExceededError, Limits
from rxstream._chunk import ProviderChunk
from rxstream._events import EVENT_ADAPTER
from rxstream.operators import normalize, parse_json
from rxstream.operators._json_stream import PythonDocument, YajlDocument
from rxstream.sources import from_bytes, replay
from rxstream.sources._payloads import Framing, PayloadDecoder
from rxstream.sources._sse import JSONArrayDecoder
from tests.conftest import RECORDINGS, recording_paths
from tests.helpers import run_recording


def run(source: reactivex.Observable[Any]) -> tuple[list[Any], Exception | None]:
    items: list[Any] = []
    errors: list[Exception] = []
    source.subscribe(items.append, errors.append)
    return items, errors[0] if errors else None


def decode(framing: Framing, pieces: list[bytes], limits: Limits) -> tuple[list[Any], Exception | None]:
    decoder = PayloadDecoder(framing, limits=limits)
    out: list[Any] = []
    for piece in pieces:
        out.extend(decoder.feed(piece))
    out.extend(decoder.flush())
    return [data for _, data in out], decoder.failure


def every_split(data: bytes) -> list[list[bytes]]:
    """The whole body, one byte at a time, and 7 bytes at a time."""
    return [[data], [data[i : i + 1] for i in range(len(data))], [data[i : i + 7] for i in range(0, len(data), 7)]]


def assert_names_the_limit(error: Exception | None, limit: str, value: int) -> LimitExceededError:
    assert isinstance(error, LimitExceededError), error
    assert error.limit == limit and error.value == value
    assert error.actual is not None and error.actual > value
    # What was expected, what arrived, and how to raise it.
    assert "expected" in error.message and "got" in error.message
    assert f"{limit}={value}" in error.message and f"rxstream.Limits({limit}=...)" in error.message
    return error


# -- the Limits value ----------------------------------------------------------------------------


def test_defaults_are_documented_values() -> None:
    limits = Limits()
    assert limits.max_sse_line_bytes == limits.max_sse_event_bytes == 16 * 1024 * 1024
    assert limits.max_json_element_bytes == limits.max_tool_arguments_bytes == 16 * 1024 * 1024
    assert (limits.max_json_depth, limits.max_outputs, limits.max_tool_calls) == (128, 128, 1024)
    for field in dataclasses.fields(Limits):
        assert f"``{field.name}``" in (Limits.__doc__ or ""), f"{field.name} missing from the docstring table"
    assert rxstream.Limits is Limits and "Limits" in rxstream.__all__


def test_limits_are_frozen_and_validated() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Limits().max_outputs = 3  # type: ignore[misc]
    for bad in (0, -1, True, 1.5, "8"):
        with pytest.raises(ValueError, match="max_outputs"):
            Limits(max_outputs=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Limits(16)  # type: ignore[misc]  # keyword-only


def test_operators_and_sources_check_limits_at_call_time() -> None:
    for make in (
        lambda: normalize(limits=5),  # type: ignore[arg-type]
        lambda: parse_json(limits={"max_json_depth": 3}),  # type: ignore[arg-type]
        lambda: from_bytes([b""], limits="x"),  # type: ignore[arg-type]
        lambda: replay(RECORDINGS / "openai-chat-text-1.sse", limits=1),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError, match=r"expected an rxstream\.Limits or None"):
            make()


# -- decoders --------------------------------------------------------------------------------------


def test_sse_line_limit_delivers_the_events_before_it_at_any_split() -> None:
    # Regression (issue 8 fuzzing): a read holding whole events and then an over-long line lost
    # those events; so did a read holding events and then invalid UTF-8.
    body = b'data: {"a": 1}\n\ndata: {"b": 2}\n\ndata: "' + b"x" * 100 + b'"\n\n'
    for pieces in every_split(body):
        payloads, error = decode("sse", pieces, Limits(max_sse_line_bytes=50))
        assert payloads == [{"a": 1}, {"b": 2}]
        assert_names_the_limit(error, "max_sse_line_bytes", 50)
    for pieces in every_split(b'data: {"a": 1}\n\ndata: "\xff"\n\n'):
        payloads, error = decode("sse", pieces, Limits())
        assert payloads == [{"a": 1}] and isinstance(error, rxstream.ProtocolError)


def test_sse_event_limit_counts_every_data_line() -> None:
    body = b"data: 1\n\n" + b"data: 11111\n" * 10 + b"\n"
    for pieces in every_split(body):
        payloads, error = decode("sse", pieces, Limits(max_sse_event_bytes=40))
        assert payloads == [1]
        assert_names_the_limit(error, "max_sse_event_bytes", 40)


def test_sse_line_limit_stops_buffering_a_line_that_never_ends() -> None:
    decoder = PayloadDecoder("sse", limits=Limits(max_sse_line_bytes=4096))
    fed = 0
    while decoder.failure is None:
        decoder.feed(b"x" * 1000)
        fed += 1000
        assert fed < 10_000
    assert fed == 5000


def test_json_array_element_limit() -> None:
    body = b'[{"a": 1},{"t": "' + b"x" * 300 + b'"}]'
    for pieces in every_split(body):
        payloads, error = decode("json", pieces, Limits(max_json_element_bytes=100))
        assert payloads == [{"a": 1}]
        assert_names_the_limit(error, "max_json_element_bytes", 100)


def test_json_lines_line_limit() -> None:
    body = b'{"a": 1}\n{"t": "' + b"x" * 300 + b'"}\n'
    for pieces in every_split(body):
        payloads, error = decode("jsonl", pieces, Limits(max_json_element_bytes=100))
        assert payloads == [{"a": 1}]
        assert_names_the_limit(error, "max_json_element_bytes", 100)


def test_json_lines_long_line_in_small_pieces_is_joined_once() -> None:
    # Regression (issue 8 review): each piece was appended to a growing buffer, so a long line
    # read in small pieces cost its length times the number of pieces.
    line = b'{"t": "' + b"x" * 2_000_000 + b'"}\n'
    pieces = [line[i : i + 64] for i in range(0, len(line), 64)]
    started = time.process_time()
    payloads, error = decode("jsonl", pieces, Limits())
    assert error is None and payloads == [{"t": "x" * 2_000_000}]
    assert time.process_time() - started < 5  # quadratic: about 30 GB copied


@pytest.mark.parametrize("depth", [127, 128, 129, 100_000])
def test_json_array_nesting_is_bounded_before_ijson_sees_it(depth: int) -> None:
    # Regression (issue 8 fuzzing): ijson keeps a prefix string per open container, as long as
    # its depth: 16 KB of '[' took 650 MB, 200 KB exhausted memory.
    element = b'{"a": ' + b"[" * depth + b"]" * depth + b"}"
    body = b'[{"x": 1},' + element + b',{"y": 2}]'
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (4 * 1024**3, hard))
    try:
        for pieces in every_split(body) if depth < 1000 else [[body]]:
            payloads, error = decode("json", pieces, Limits())
            if depth < 128:  # the element's object is one more level
                assert error is None and len(payloads) == 3
            else:
                assert payloads == [{"x": 1}]
                assert_names_the_limit(error, "max_json_depth", 128)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_json_array_brackets_inside_strings_do_not_count() -> None:
    body = b'[{"a": "' + b"[{" * 50_000 + b'"},{"b": [[[1]]]}]'
    for limits in (Limits(), Limits(max_json_depth=4)):
        decoder = JSONArrayDecoder(limits=limits)
        assert decoder.feed(body) + decoder.flush() == [{"a": "[{" * 50_000}, {"b": [[[1]]]}]


# -- normalize() -----------------------------------------------------------------------------------


def chat(*choices: dict[str, Any]) -> ProviderChunk:
    payload = {"id": "c-1", "object": "chat.completion.chunk", "model": "m", "choices": list(choices)}
    return ProviderChunk("data", "openai.chat", None, payload, 1)


def call_delta(index: int, arguments: str, *, output: int = 0, name: str | None = None) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": arguments}
    if name is not None:
        function["name"] = name
    call = {"index": index, "function": function, **({"id": f"call_{index}", "type": "function"} if name else {})}
    return {"index": output, "delta": {"tool_calls": [call]}, "finish_reason": None}


def normalized(chunks: list[ProviderChunk], limits: Limits) -> tuple[list[Any], Exception | None]:
    return run(reactivex.from_iterable(chunks).pipe(normalize(stream_id="s", limits=limits)))


def test_tool_arguments_limit_per_call() -> None:
    chunks = [
        chat(call_delta(0, '{"a": ', name="f")),
        chat(call_delta(0, '"xxxxxxxx"')),
        chat(call_delta(1, '{"b": 1}', name="g")),
        chat(call_delta(1, "x" * 20)),
    ]
    events, error = normalized(chunks, Limits(max_tool_arguments_bytes=20))
    deltas = [(e.call_index, e.arguments_delta) for e in events if e.type == "tool_call.delta"]
    # Call 0 stays within 20 characters; call 1 would reach 28: that delta is not emitted.
    assert deltas == [(0, '{"a": '), (0, '"xxxxxxxx"'), (1, '{"b": 1}')]
    error = assert_names_the_limit(error, "max_tool_arguments_bytes", 20)
    assert error.actual == 28 and "call 1 ('g')" in error.message


def test_outputs_limit() -> None:
    chunks = [chat(*({"index": i, "delta": {"content": f"t{i}"}, "finish_reason": None} for i in range(5)))]
    events, error = normalized(chunks, Limits(max_outputs=3))
    assert [e.text for e in events if e.type == "text.delta"] == ["t0", "t1", "t2"]
    assert_names_the_limit(error, "max_outputs", 3)


def test_tool_calls_limit_counts_every_output() -> None:
    chunks = [chat(call_delta(0, "{}", name="f", output=n % 2)) for n in range(2)]
    chunks += [chat(call_delta(1, "{}", name="f", output=n % 2)) for n in range(2)]
    events, error = normalized(chunks, Limits(max_tool_calls=3))
    assert len([e for e in events if e.type == "tool_call.start"]) == 3
    assert_names_the_limit(error, "max_tool_calls", 3)


def test_anthropic_server_tool_input_counts_as_arguments() -> None:
    def sse(kind: str, **data: Any) -> ProviderChunk:
        return ProviderChunk("data", "anthropic.messages", kind, {"type": kind, **data}, 1)

    chunks = [
        sse("message_start", message={"id": "msg_1", "model": "claude", "usage": {"input_tokens": 1}}),
        sse("content_block_start", index=0, content_block={"type": "server_tool_use", "id": "s", "name": "web", "input": {}}),
        *[sse("content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": "x" * 10}) for _ in range(5)],
    ]
    events, error = run(
        reactivex.from_iterable(chunks).pipe(normalize(stream_id="s", provider_events=True, limits=Limits(max_tool_arguments_bytes=35)))
    )
    assert events[0].type == "stream.start"
    assert_names_the_limit(error, "max_tool_arguments_bytes", 35)


def test_default_limits_pass_every_recording() -> None:
    for path in recording_paths():
        _, error = run_recording(path, limits=Limits())
        assert not isinstance(error, LimitExceededError), path.name


# -- parse_json() ------------------------------------------------------------------------------------


def text_stream(*texts: str) -> list[ProviderChunk]:
    chunks = [chat({"index": 0, "delta": {"content": t}, "finish_reason": None}) for t in texts]
    return [*chunks, chat({"index": 0, "delta": {}, "finish_reason": "stop"})]


def parsed(texts: list[str], limits: Limits | None = None) -> tuple[list[Any], Exception | None]:
    source = reactivex.from_iterable(text_stream(*texts))
    return run(source.pipe(normalize(stream_id="s"), parse_json(targets="text", limits=limits)))


@pytest.mark.parametrize("depth", [128, 129])
def test_parse_json_default_depth(depth: int) -> None:
    text = '{"a": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"
    events, error = parsed([text[:200], text[200:]])
    if depth == 128:
        assert error is None
        value = next(e for e in events if e.type == "json.value")
        assert value.error is None and value.truncated is False
    else:
        assert_names_the_limit(error, "max_json_depth", 128)
        assert [e.type for e in events] == ["stream.start", "text.delta"]


def test_parse_json_depth_fails_after_the_delta_that_crossed_it() -> None:
    events, error = parsed(['{"a": [', "[[", "1]]]}"], Limits(max_json_depth=3))
    texts = [e.text for e in events if e.type == "text.delta"]
    assert texts == ['{"a": [', "[["]  # the crossing delta is delivered, then the error
    assert events[-1].type == "text.delta"
    error = assert_names_the_limit(error, "max_json_depth", 3)
    assert "position 8" in error.message


def test_a_value_at_the_depth_limit_survives_copies_and_serialisation() -> None:
    # The json.value of a truncated target deep-copies the value, and every event must go
    # through pydantic's JSON both ways (cassettes): 128 levels stay clear of both limits.
    events, error = parsed(['{"a": ' + "[" * 127])
    assert error is None
    value = next(e for e in events if e.type == "json.value")
    assert value.truncated is True
    for event in events:
        assert EVENT_ADAPTER.validate_json(EVENT_ADAPTER.dump_json(event)) == event


@pytest.mark.parametrize("cut", [1, 5, 6, 7, 50])
def test_both_documents_fail_at_the_same_place(cut: int) -> None:
    text = '{"k": "[[[[", "a": [[{"b": [[[1]]]}]]}'
    outcomes: list[str] = []
    for doc in (YajlDocument(max_depth=4), PythonDocument(max_depth=4)):
        try:
            doc.feed(text[:cut])
            doc.feed(text[cut:])
            outcomes.append("no error")
        except LimitExceededError as exc:
            outcomes.append(exc.message)
    assert outcomes[0] == outcomes[1] != "no error"
    assert "position 27" in outcomes[0]
