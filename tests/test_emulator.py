"""ProviderEmulator over real loopback HTTP: replay per wire, selection, faults, pacing, lifecycle, CLI."""

from __future__ import annotations

import asyncio
import itertools
import json
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from rxstream import ProtocolError, ProviderError
from rxstream._chunk import ProviderChunk, StreamOpen, Wire
from rxstream.operators import normalize
from rxstream.sources import from_bytes, load_recording, read_payloads
from rxstream.testing import Fault, ProviderEmulator, ReceivedRequest, StreamOutcome
from rxstream.testing._emulator import DEFAULT_RECORDINGS, serve_main
from tests.conftest import GOLDEN, RECORDINGS
from tests.helpers import accumulate, run_chunks, run_recording

T = TypeVar("T")

ENDPOINTS: dict[str, str] = {
    "openai.chat": "/v1/chat/completions",
    "openai.responses": "/v1/responses",
    "anthropic.messages": "/v1/messages",
    "gemini": "/v1beta/models/{model}:streamGenerateContent",
}
SYNTHETIC = "openai-responses-structured-json-1.sse"
CURATED = sorted(p.name for p in DEFAULT_RECORDINGS.iterdir() if p.suffix in {".sse", ".jsonl", ".json"})
GEMINI = [name for name in CURATED if name.startswith("gemini")]
REPO = Path(__file__).resolve().parent.parent


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def url(wire: str, model: str = "any-model", *, sse: bool = True) -> str:
    path = ENDPOINTS[wire].format(model=model)
    return path + "?alt=sse" if wire == "gemini" and sse else path


async def post(
    client: httpx.AsyncClient,
    wire: str,
    *,
    recording: str | None = None,
    model: str = "any-model",
    sse: bool = True,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    sent = dict(headers or {})
    if recording is not None:
        sent["x-rxstream-recording"] = recording
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    return await client.post(url(wire, model, sse=sse), json=body, headers=sent, **kwargs)


async def read_raw(client: httpx.AsyncClient, path: str, **kwargs: Any) -> tuple[bytes, Exception | None]:
    """The body bytes received, and the transport error that ended the read, if any."""
    got = bytearray()
    try:
        async with client.stream("POST", path, json={}, **kwargs) as resp:
            async for piece in resp.aiter_raw():
                got += piece
    except httpx.HTTPError as exc:
        return bytes(got), exc
    return bytes(got), None


def chunks_of(payloads: list[tuple[str | None, Any]], wire: Wire) -> list[ProviderChunk]:
    """What load_recording builds from a body: an open chunk without a request, then the payloads."""
    return [
        ProviderChunk("open", wire, None, None, 0, StreamOpen()),
        *(ProviderChunk("data", wire, event, data, i + 1) for i, (event, data) in enumerate(payloads)),
    ]


def expected_payloads(
    name: str, folder: Path = DEFAULT_RECORDINGS
) -> tuple[Wire, list[tuple[str | None, Any]]]:
    chunks = load_recording(folder / name)
    wire = chunks[0].wire
    assert wire is not None
    return wire, [(c.event, c.data) for c in chunks[1:]]


# -- each endpoint replays its recordings ----------------------------------------------------------


CASES = [(name, True) for name in CURATED] + [(name, False) for name in GEMINI]


@pytest.mark.parametrize(("name", "sse"), CASES, ids=[f"{n}-{'sse' if s else 'array'}" for n, s in CASES])
def test_endpoint_streams_the_recording_and_it_normalizes_to_its_golden(name: str, sse: bool) -> None:
    wire, expected = expected_payloads(name)

    async def go() -> httpx.Response:
        async with ProviderEmulator() as emu, httpx.AsyncClient(base_url=emu.base_url) as client:
            return await post(client, wire, recording=name, sse=sse)

    resp = run(go())
    assert resp.status_code == 200
    array = wire == "gemini" and not sse
    assert resp.headers["content-type"].startswith("application/json" if array else "text/event-stream")
    assert resp.headers["x-request-id" if wire != "anthropic.messages" else "request-id"].startswith("req_")
    got = read_payloads(resp.content, "json" if array else "sse")
    assert [data for _, data in got] == [data for _, data in expected]
    if name.endswith(".sse"):
        assert [event for event, _ in got] == [event for event, _ in expected]
    if array:
        assert (
            resp.content.startswith(b"[{") and resp.content.endswith(b"}\n]") and b"\n,\r\n{" in resp.content
        )
    if wire == "openai.chat":
        assert resp.content.rstrip().endswith(b"data: [DONE]")

    events, error = run_chunks(chunks_of(got, wire))
    summary = accumulate(events, error).to_summary()
    if name == SYNTHETIC:  # no golden in tests/: it must equal the file normalized directly
        assert summary == accumulate(*run_recording(DEFAULT_RECORDINGS / name)).to_summary()
    else:
        assert summary == json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))


def test_jsonl_recordings_get_event_names_for_anthropic_and_responses(tmp_path: Path) -> None:
    for name in ("anthropic-messages-toolcall-noargs-2.jsonl", "azure-responses-text-1.jsonl"):
        shutil.copy(RECORDINGS / name, tmp_path / name)

    async def go() -> list[httpx.Response]:
        async with ProviderEmulator(tmp_path) as emu, httpx.AsyncClient(base_url=emu.base_url) as client:
            return [await post(client, "anthropic.messages"), await post(client, "openai.responses")]

    names = ("anthropic-messages-toolcall-noargs-2.jsonl", "azure-responses-text-1.jsonl")
    for name, resp in zip(names, run(go()), strict=True):
        wire, expected = expected_payloads(name, tmp_path)
        got = read_payloads(resp.content, "sse")
        assert [data for _, data in got] == [data for _, data in expected]
        assert [event for event, _ in got] == [data["type"] for _, data in expected]
        assert b"[DONE]" not in resp.content
        summary = accumulate(*run_chunks(chunks_of(got, wire))).to_summary()
        assert summary == json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))


def test_synthetic_structured_responses_recording_builds_the_json_object() -> None:
    events, error = run_recording(DEFAULT_RECORDINGS / SYNTHETIC)
    result = accumulate(events, error)
    assert error is None
    assert json.loads(result.text) == {
        "city": "Paris",
        "country": "France",
        "population_millions": 2.1,
        "landmarks": ["Eiffel Tower", "Louvre"],
    }
    deltas = [e for e in events if e.type == "text.delta"]  # type: ignore[attr-defined]
    assert len(deltas) == 15
    assert result.outputs[0].finish_reason == "stop"
    assert result.usage is not None and (result.usage.input_tokens, result.usage.output_tokens) == (78, 24)
    payloads = [c.data for c in load_recording(DEFAULT_RECORDINGS / SYNTHETIC)[1:]]
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    assert payloads[0]["response"]["text"]["format"]["type"] == "json_schema"
    assert payloads[0]["response"]["text"]["format"]["name"] == "Answer"


def test_curated_set_and_its_manifest() -> None:
    assert (
        sorted(
            [
                "anthropic-messages-thinking-1.sse",
                "anthropic-messages-toolcall-1.sse",
                "gemini-generatecontent-jsonarray-text-1.json",
                "gemini-generatecontent-partial-args-1.jsonl",
                "gemini-generatecontent-text-1.sse",
                "openai-chat-structured-json-schema-1.sse",
                "openai-chat-text-1.sse",
                "openai-chat-toolcall-1.sse",
                "openai-responses-functioncall-1.sse",
                "openai-responses-structured-json-1.sse",
                "openai-responses-text-1.sse",
                "xai-chat-reasoning-text-1.jsonl",
            ]
        )
        == CURATED
    )
    for name in CURATED:
        if name != SYNTHETIC:
            assert (DEFAULT_RECORDINGS / name).read_bytes() == (RECORDINGS / name).read_bytes(), name
    manifest = (DEFAULT_RECORDINGS / "MANIFEST.md").read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in manifest.splitlines()
        if line.startswith("| `")
    }
    assert set(rows) == set(CURATED)
    assert "| synthetic |" in rows[SYNTHETIC]
    assert all("| synthetic |" not in row for name, row in rows.items() if name != SYNTHETIC)


# -- selection -----------------------------------------------------------------------------------


def test_selection_by_header_then_model_then_first_by_name() -> None:
    async def go() -> list[str | None]:
        async with ProviderEmulator() as emu, httpx.AsyncClient(base_url=emu.base_url) as client:
            calls = [
                post(client, "openai.chat", recording="openai-chat-toolcall-1", model="grok-3-mini"),
                post(client, "openai.chat", recording="openai-chat-text-1.sse"),
                post(client, "openai.chat", model="grok-3"),
                post(client, "openai.chat", model="gpt-4o-2024-08-06"),
                post(client, "openai.chat", model="claude-nothing"),
                post(client, "gemini", model="gemini-2.0-flash"),
                post(client, "gemini", model="gemini-9"),
                post(client, "anthropic.messages", model="claude-sonnet-4"),
            ]
            for call in calls:
                assert (await call).status_code == 200
            return [r.recording for r in emu.requests]

    assert run(go()) == [
        "openai-chat-toolcall-1.sse",  # the header wins over the model
        "openai-chat-text-1.sse",
        "xai-chat-reasoning-text-1.jsonl",  # model prefix
        "openai-chat-structured-json-schema-1.sse",
        "openai-chat-structured-json-schema-1.sse",  # no match: first by name
        "gemini-generatecontent-text-1.sse",  # Gemini's model comes from the path
        "gemini-generatecontent-jsonarray-text-1.json",
        "anthropic-messages-thinking-1.sse",
    ]


def test_unknown_recording_missing_wire_and_unknown_path_are_404(tmp_path: Path) -> None:
    shutil.copy(DEFAULT_RECORDINGS / "openai-chat-text-1.sse", tmp_path / "openai-chat-text-1.sse")

    async def go() -> list[httpx.Response]:
        async with ProviderEmulator(tmp_path) as emu, httpx.AsyncClient(base_url=emu.base_url) as client:
            return [
                await post(client, "openai.chat", recording="nope"),
                await post(client, "anthropic.messages"),
                await post(client, "gemini", recording="nope"),
                await client.post("/v2/nowhere", json={}),
                await client.get("/v1/chat/completions"),
            ]

    unknown, no_wire, gemini, nowhere, wrong_method = run(go())
    assert unknown.status_code == 404
    assert unknown.json()["error"]["recordings"] == ["openai-chat-text-1.sse"]
    assert "nope" in unknown.json()["error"]["message"]
    assert no_wire.status_code == 404
    assert no_wire.json()["type"] == "error" and no_wire.json()["error"]["type"] == "not_found_error"
    assert no_wire.headers["request-id"] == no_wire.json()["request_id"]
    assert gemini.status_code == 404 and gemini.json()["error"]["status"] == "NOT_FOUND"
    assert gemini.json()["error"]["recordings"] == []
    assert nowhere.status_code == 404 and "/v1/chat/completions" in nowhere.json()["error"]["endpoints"]
    assert wrong_method.status_code == 405


def test_prefixed_azure_and_vertex_paths() -> None:
    async def go() -> tuple[list[httpx.Response], list[ReceivedRequest]]:
        async with ProviderEmulator() as emu, httpx.AsyncClient(base_url=emu.base_url) as client:
            responses = [
                await client.post("/openai/v1/chat/completions", json={"model": "grok-3-mini"}),
                await client.post(
                    "/openai/deployments/grok-3-mini/chat/completions?api-version=2024-10-21", json={}
                ),
                await client.post("/openai/v1/responses", json={"model": "gpt-4o"}),
                await client.post(
                    "/v1/projects/p/locations/us/publishers/google/models/gemini-3.1-pro:streamGenerateContent?alt=sse",
                    json={},
                ),
            ]
            return responses, emu.requests

    responses, requests = run(go())
    assert [r.status_code for r in responses] == [200, 200, 200, 200]
    assert [r.recording for r in requests] == [
        "xai-chat-reasoning-text-1.jsonl",
        "xai-chat-reasoning-text-1.jsonl",  # the Azure deployment names the model
        "openai-responses-functioncall-1.sse",
        "gemini-generatecontent-partial-args-1.jsonl",
    ]
    assert [r.wire for r in requests] == ["openai.chat", "openai.chat", "openai.responses", "gemini"]


def test_requests_are_recorded_with_secrets_redacted_and_bodies_uncompressed() -> None:
    secrets = {
        "authorization": "Bearer sk-secret-1",
        "x-api-key": "sk-ant-secret-2",
        "api-key": "azure-secret-3",
        "x-goog-api-key": "goog-secret-4",
    }

    async def go() -> tuple[list[httpx.Response], list[ReceivedRequest], dict[str, Any]]:
        async with ProviderEmulator() as emu, httpx.AsyncClient(base_url=emu.base_url) as client:
            responses = [
                await post(client, "openai.chat", headers={**secrets, "accept-encoding": "gzip, br"}),
                await client.post(url("gemini", "gemini-2.0") + "&key=query-secret-5", json={"contents": []}),
                await post(client, "anthropic.messages"),
            ]
            index = (await client.get("/")).json()
            return responses, emu.requests, index

    responses, requests, index = run(go())
    assert "content-encoding" not in responses[0].headers
    assert read_payloads(responses[0].content, "sse")  # plain SSE bytes
    dump = repr(requests)
    for secret in [*secrets.values(), "query-secret-5"]:
        assert secret.split()[-1] not in dump
    first, gemini, anthropic = requests[:3]
    assert all(first.headers[name] == "[redacted]" for name in secrets)
    assert first.has_auth and gemini.has_auth and not anthropic.has_auth
    assert gemini.query == {"alt": "sse", "key": "[redacted]"}
    assert first.body["model"] == "any-model" and gemini.body == {"contents": []}
    assert first.method == "POST" and first.path == "/v1/chat/completions" and first.status == 200
    assert responses[0].headers["x-request-id"] == first.request_id
    assert requests[3].path == "/" and requests[3].status == 200
    assert index["recordings"]["gemini"] == GEMINI


# -- faults --------------------------------------------------------------------------------------


def test_status_faults_answer_with_the_providers_error_shape() -> None:
    async def go() -> list[httpx.Response]:
        async with ProviderEmulator() as emu, httpx.AsyncClient(base_url=emu.base_url) as client:
            specs = [
                ("openai.chat", "status=429;retry_after=2"),
                ("openai.chat", "status=429;retry_after=0.25"),
                ("anthropic.messages", "status=529"),
                ("openai.responses", "status=500"),
                ("gemini", "status=401"),
                ("openai.chat", "status=400;message=messages must not be empty"),
                ("anthropic.messages", "status=400"),
                ("gemini", "status=400"),
                ("anthropic.messages", "status=429;retry_after=3"),
            ]
            responses = [await post(client, wire, headers={"x-rxstream-fault": spec}) for wire, spec in specs]
            assert [r.status for r in emu.requests] == [r.status_code for r in responses]
            assert emu.requests[0].fault == Fault(status=429, retry_after=2)
            return responses

    rate, rate_ms, overloaded, server, unauth, bad_chat, bad_anthropic, bad_gemini, anthropic_rate = run(go())
    assert rate.status_code == 429
    assert (rate.headers["retry-after"], rate.headers["retry-after-ms"]) == ("2", "2000")
    assert rate.headers["x-request-id"].startswith("req_")
    assert (
        rate.json()["error"]["type"] == "requests" and rate.json()["error"]["code"] == "rate_limit_exceeded"
    )
    assert (rate_ms.headers["retry-after"], rate_ms.headers["retry-after-ms"]) == ("1", "250")
    assert overloaded.status_code == 529
    assert overloaded.json()["type"] == "error" and overloaded.json()["error"]["type"] == "overloaded_error"
    assert overloaded.json()["request_id"] == overloaded.headers["request-id"]
    assert server.status_code == 500 and server.json()["error"]["type"] == "server_error"
    assert "retry-after" not in server.headers
    assert unauth.status_code == 401
    assert unauth.json()["error"]["code"] == 401 and unauth.json()["error"]["status"] == "UNAUTHENTICATED"
    assert bad_chat.json()["error"] == {
        "message": "messages must not be empty",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert bad_anthropic.json()["error"]["type"] == "invalid_request_error"
    assert bad_gemini.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert anthropic_rate.json()["error"]["type"] == "rate_limit_error"
    assert anthropic_rate.headers["retry-after"] == "3"


STREAM_ERROR_CASES = [
    ("openai.chat", "openai-chat-text-1.sse", True),
    ("openai.responses", "openai-responses-text-1.sse", True),
    ("anthropic.messages", "anthropic-messages-toolcall-1.sse", True),
    ("gemini", "gemini-generatecontent-partial-args-1.jsonl", True),
    ("gemini", "gemini-generatecontent-partial-args-1.jsonl", False),
]


@pytest.mark.parametrize(("wire", "name", "sse"), STREAM_ERROR_CASES)
def test_in_stream_error_event_normalizes_to_provider_error(wire: Wire, name: str, sse: bool) -> None:
    async def go() -> httpx.Response:
        async with ProviderEmulator() as emu, httpx.AsyncClient(base_url=emu.base_url) as client:
            return await post(
                client, wire, recording=name, sse=sse, headers={"x-rxstream-fault": "error_after=3"}
            )

    resp = run(go())
    assert resp.status_code == 200
    got = read_payloads(resp.content, "sse" if sse else "json")
    _, expected = expected_payloads(name)
    assert [d for _, d in got[:3]] == [d for _, d in expected[:3]]
    extra = got[3:]
    if wire == "anthropic.messages":
        assert extra == [
            ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        ]
    elif wire == "openai.responses":
        assert [event for event, _ in extra] == ["error", "response.failed"]
        assert extra[1][1]["response"]["status"] == "failed"
    else:
        assert len(extra) == 1 and "error" in extra[0][1]
    if wire == "openai.chat":
        assert b"[DONE]" not in resp.content
    events, error = run_chunks(chunks_of(got, wire))
    assert isinstance(error, ProviderError)
    assert events[0].type == "stream.start"  # type: ignore[attr-defined]
    if wire == "anthropic.messages":
        assert error.code == "overloaded_error"


def test_dropped_connection_is_a_transport_error_after_n_events() -> None:
    async def go() -> list[tuple[bytes, Exception | None]]:
        async with ProviderEmulator() as emu, httpx.AsyncClient(base_url=emu.base_url) as client:
            headers = {"x-rxstream-recording": "openai-chat-text-1"}
            return [
                await read_raw(
                    client, url("openai.chat"), headers={**headers, "x-rxstream-fault": "drop_after=5"}
                ),
                await read_raw(
                    client, url("openai.chat"), headers={**headers, "x-rxstream-fault": "drop_after=0"}
                ),
                await read_raw(
                    client, url("openai.chat"), headers={**headers, "x-rxstream-fault": "drop_after=999"}
                ),
                await read_raw(
                    client, url("gemini", sse=False), headers={"x-rxstream-fault": "drop_after=2"}
                ),
                await read_raw(client, url("openai.chat"), headers=headers),  # the server still serves
            ]

    (five, five_err), (none, none_err), (all_, all_err), (array, array_err), (ok, ok_err) = run(go())
    _, expected = expected_payloads("openai-chat-text-1.sse")
    for err in (five_err, none_err, all_err, array_err):
        assert isinstance(err, httpx.RemoteProtocolError), err
        assert "incomplete chunked read" in str(err)
    assert [d for _, d in read_payloads(five, "sse")] == [d for _, d in expected[:5]]
    assert none == b""
    # A drop past the last event still cuts the body before its end.
    assert [d for _, d in read_payloads(all_, "sse")] == [d for _, d in expected]
    assert array.startswith(b"[") and array.count(b"\n,\r\n") == 1 and not array.endswith(b"]")
    assert ok_err is None and len(read_payloads(ok, "sse")) == len(expected)


def test_stall_longer_than_the_read_timeout_is_a_read_timeout() -> None:
    async def go() -> tuple[tuple[bytes, Exception | None], float, httpx.Response]:
        async with ProviderEmulator() as emu, httpx.AsyncClient(base_url=emu.base_url) as client:
            stalled = await read_raw(
                client,
                url("anthropic.messages"),
                headers={"x-rxstream-fault": "stall_after=2;stall_seconds=0.5"},
                timeout=httpx.Timeout(5, read=0.1),
            )
            began = time.perf_counter()
            waited = await post(
                client, "anthropic.messages", headers={"x-rxstream-fault": "stall_after=2;stall_seconds=0.15"}
            )
            return stalled, time.perf_counter() - began, waited

    (body, err), elapsed, waited = run(go())
    assert isinstance(err, httpx.ReadTimeout)
    assert [e for e, _ in read_payloads(body, "sse")] == ["message_start", "content_block_start"]
    assert elapsed >= 0.14
    _, expected = expected_payloads("anthropic-messages-thinking-1.sse")
    assert len(read_payloads(waited.content, "sse")) == len(expected)


@pytest.mark.parametrize(("wire", "sse"), [("openai.chat", True), ("gemini", False)])
def test_malformed_line_normalizes_to_protocol_error(wire: Wire, sse: bool) -> None:
    name = (
        "openai-chat-text-1.sse" if wire == "openai.chat" else "gemini-generatecontent-jsonarray-text-1.json"
    )

    async def go() -> bytes:
        async with ProviderEmulator() as emu, httpx.AsyncClient(base_url=emu.base_url) as client:
            resp = await post(
                client, wire, recording=name, sse=sse, headers={"x-rxstream-fault": "malformed_after=2"}
            )
            return resp.content

    body = run(go())
    bad = b"data: {not json\n\n" if sse else b"\n,\r\n{not json"
    assert bad in body
    cut = body.index(bad)  # as the network delivers it: the bad line in a chunk of its own
    events: list[Any] = []
    errors: list[Exception] = []
    from_bytes([body[:cut], body[cut:]], framing="sse" if sse else "json", wire=wire).pipe(
        normalize()
    ).subscribe(events.append, errors.append)
    assert len(errors) == 1 and isinstance(errors[0], ProtocolError)
    assert events[0].type == "stream.start"
    if wire == "openai.chat":  # the two payloads before the bad line were delivered
        assert "".join(e.text for e in events if e.type == "text.delta") == "I'm"


def test_constructor_faults_match_path_and_wire_and_run_out_after_times() -> None:
    faults = [
        Fault(status=503, wire="openai.chat", times=1),
        Fault(drop_after=1, path="/v1/messages", times=2),
        Fault(status=500, path="/never"),
    ]

    async def go() -> tuple[list[int], list[Exception | None], list[Fault | None]]:
        async with ProviderEmulator(faults=faults) as emu, httpx.AsyncClient(base_url=emu.base_url) as client:
            statuses = [(await post(client, "openai.chat")).status_code for _ in range(3)]
            statuses.append((await post(client, "openai.responses")).status_code)
            # A per-request header fault replaces the constructor's and does not use it up.
            statuses.append(
                (
                    await post(client, "anthropic.messages", headers={"x-rxstream-fault": "status=401"})
                ).status_code
            )
            drops = [(await read_raw(client, url("anthropic.messages")))[1] for _ in range(3)]
            return statuses, drops, [r.fault for r in emu.requests]

    statuses, drops, applied = run(go())
    assert statuses == [503, 200, 200, 200, 401]
    assert isinstance(drops[0], httpx.RemoteProtocolError) and isinstance(drops[1], httpx.RemoteProtocolError)
    assert drops[2] is None
    assert applied == [faults[0], None, None, None, Fault(status=401), faults[1], faults[1], None]


def test_bad_fault_and_pace_headers_are_400_and_use_nothing_up() -> None:
    async def go() -> tuple[list[httpx.Response], int]:
        async with (
            ProviderEmulator(faults=[Fault(status=500, times=1)]) as emu,
            httpx.AsyncClient(base_url=emu.base_url) as client,
        ):
            bad = [
                await post(client, "openai.chat", headers={"x-rxstream-fault": "explode=1"}),
                await post(client, "openai.chat", headers={"x-rxstream-fault": "status=abc"}),
                await post(client, "openai.chat", headers={"x-rxstream-fault": "drop_after=1;times=2"}),
                await post(client, "anthropic.messages", headers={"x-rxstream-pace": "slow"}),
                await client.post(url("openai.chat"), content=b"{not json"),
            ]
            return bad, (await post(client, "openai.chat")).status_code

    bad, after = run(go())
    assert [r.status_code for r in bad] == [400, 400, 400, 400, 400]
    assert "explode=1" in bad[0].json()["error"]["message"]
    assert "status must be an integer" in bad[1].json()["error"]["message"]
    assert bad[3].json()["error"]["type"] == "invalid_request_error"  # Anthropic shape
    assert "x-rxstream-pace" in bad[3].json()["error"]["message"]
    assert after == 500  # the constructor fault was still unused


def test_fault_parse_and_validation() -> None:
    assert Fault.parse("status=429;retry_after=2") == Fault(status=429, retry_after=2.0)
    assert Fault.parse(" stall_after=2 ; stall_seconds=0.5 ;") == Fault(stall_after=2, stall_seconds=0.5)
    assert Fault.parse("error_after=3;message=boom;wire=gemini;times=1") == Fault(
        error_after=3, message="boom", wire="gemini", times=1
    )
    assert Fault(drop_after=1, path="/v1/messages").matches("/proxy/v1/messages", "anthropic.messages")
    assert not Fault(drop_after=1, wire="gemini").matches("/v1/messages", "anthropic.messages")
    bad: list[dict[str, Any]] = [
        {},
        {"status": 200},
        {"status": 500, "drop_after": 1},
        {"drop_after": -1},
        {"error_after": 1.5},
        {"stall_after": 1, "stall_seconds": 0},
        {"status": 429, "retry_after": -1},
        {"status": 500, "times": 0},
        {"status": 500, "wire": "nope"},
        {"status": True},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            Fault(**kwargs)
    for spec in ("nope=1", "status", "status=abc", "drop_after=1.5", ""):
        with pytest.raises(ValueError):
            Fault.parse(spec)


def test_constructor_validates_its_arguments(tmp_path: Path) -> None:
    invalid: list[dict[str, Any]] = [
        {"pace": "slow"},
        {"pace": 0},
        {"pace": True},
        {"pace": float("inf")},
        {"port": -1},
        {"host": ""},
    ]
    for kwargs in invalid:
        with pytest.raises(ValueError):
            ProviderEmulator(**kwargs)
    with pytest.raises(ValueError, match="recordings"):
        ProviderEmulator(tmp_path / "missing")
    with pytest.raises(ValueError, match="Fault"):
        ProviderEmulator(faults=["status=500"])  # type: ignore[list-item]
    (tmp_path / "unknown.jsonl").write_text('{"hello": 1}\n')
    with pytest.raises(ProtocolError, match="wire"):
        ProviderEmulator(tmp_path)
    (tmp_path / "unknown.jsonl").write_text('{"t": "soon", "data": {}}\n')
    with pytest.raises(ProtocolError, match="cassette"):
        ProviderEmulator(tmp_path)
    assert ProviderEmulator(pace=200).recordings["gemini"] == GEMINI
    emu = ProviderEmulator(DEFAULT_RECORDINGS / "openai-chat-text-1.sse")  # one file works too
    assert emu.recordings["openai.chat"] == ["openai-chat-text-1.sse"] and emu.recordings["gemini"] == []


# -- pacing ----------------------------------------------------------------------------------------


def _chat_chunk(text: str, i: int) -> dict[str, Any]:
    delta = {"index": 0, "delta": {"content": text}, "finish_reason": None}
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": i,
        "model": "paced-model",
        "choices": [delta],
    }


def test_rate_pace_spreads_events(tmp_path: Path) -> None:
    lines = [json.dumps(_chat_chunk(f"w{i} ", i)) for i in range(20)]
    (tmp_path / "paced.jsonl").write_text("\n".join(lines) + "\n")

    async def go() -> tuple[float, bytes, float]:
        async with ProviderEmulator(tmp_path) as emu, httpx.AsyncClient(base_url=emu.base_url) as client:
            began = time.perf_counter()
            resp = await post(client, "openai.chat", headers={"x-rxstream-pace": "200"})
            paced = time.perf_counter() - began
        async with (
            ProviderEmulator(tmp_path, pace=400.0) as emu,
            httpx.AsyncClient(base_url=emu.base_url) as client,
        ):
            began = time.perf_counter()
            await post(client, "openai.chat")
            return paced, resp.content, time.perf_counter() - began

    paced, body, constructor_paced = run(go())
    assert paced >= 20 / 200 * 0.95  # 21 events (with [DONE]) = 20 gaps of 5 ms
    assert constructor_paced >= 20 / 400 * 0.95
    assert [d["choices"][0]["delta"]["content"] for _, d in read_payloads(body, "sse")] == [
        f"w{i} " for i in range(20)
    ]


def test_original_pace_replays_cassette_gaps(tmp_path: Path) -> None:
    rows = [{"t": 0.05 * i, "event": None, "data": _chat_chunk(f"t{i}", i)} for i in range(4)]
    (tmp_path / "cassette.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    async def arrivals(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[list[float], bytes]:
        from rxstream.sources._payloads import PayloadDecoder

        decoder = PayloadDecoder("sse")
        times: list[float] = []
        body = bytearray()
        began = time.perf_counter()
        async with client.stream("POST", url("openai.chat"), json={}, headers=headers) as resp:
            async for piece in resp.aiter_raw():
                body += piece
                times.extend(time.perf_counter() - began for _ in decoder.feed(piece))
        return times, bytes(body)

    async def go() -> tuple[list[float], bytes, list[float]]:
        async with (
            ProviderEmulator(tmp_path, pace="original") as emu,
            httpx.AsyncClient(base_url=emu.base_url) as client,
        ):
            original, body = await arrivals(client, {})
            fast, _ = await arrivals(client, {"x-rxstream-pace": "fast"})
            return original, body, fast

    original, body, fast = run(go())
    assert [d["choices"][0]["delta"]["content"] for _, d in read_payloads(body, "sse")] == [
        "t0",
        "t1",
        "t2",
        "t3",
    ]
    assert body.rstrip().endswith(b"data: [DONE]")  # a chat cassette still ends like a chat stream
    assert len(original) == 4 and len(fast) == 4
    gaps = [b - a for a, b in itertools.pairwise(original)]
    assert all(gap >= 0.04 for gap in gaps), gaps
    assert original[-1] >= 0.14


# -- scale, lifecycle, CLI -------------------------------------------------------------------------


def test_fifty_concurrent_streams_all_complete() -> None:
    plan = [
        ("openai.chat", "openai-chat-toolcall-1.sse", True),
        ("openai.responses", "openai-responses-functioncall-1.sse", True),
        ("anthropic.messages", "anthropic-messages-toolcall-1.sse", True),
        ("gemini", "gemini-generatecontent-text-1.sse", False),
        ("gemini", "gemini-generatecontent-partial-args-1.jsonl", True),
    ] * 10

    async def go() -> list[httpx.Response]:
        async with ProviderEmulator() as emu, httpx.AsyncClient(base_url=emu.base_url) as client:
            return await asyncio.gather(*(post(client, w, recording=n, sse=s) for w, n, s in plan))

    responses = run(go())
    assert len(responses) == 50
    for (_, name, sse), resp in zip(plan, responses, strict=True):
        _, expected = expected_payloads(name)
        assert resp.status_code == 200
        assert [d for _, d in read_payloads(resp.content, "sse" if sse else "json")] == [
            d for _, d in expected
        ]


def test_lifecycle_closes_the_port_and_leaves_no_tasks() -> None:
    async def go() -> None:
        emu = ProviderEmulator()
        with pytest.raises(RuntimeError):
            _ = emu.base_url
        await emu.start()
        with pytest.raises(RuntimeError, match="already running"):
            await emu.start()
        base = emu.base_url
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base)
        async with httpx.AsyncClient(base_url=base) as client:
            assert (await post(client, "openai.chat")).status_code == 200
            # A stream still running when the emulator stops is cut off.
            reader = asyncio.create_task(
                read_raw(client, url("anthropic.messages"), headers={"x-rxstream-pace": "20"})
            )
            while len(emu.requests) < 2:
                await asyncio.sleep(0.01)
            began = time.perf_counter()
            await emu.stop()
            assert time.perf_counter() - began < 2
            body, err = await reader
            assert isinstance(err, httpx.RemoteProtocolError) and body.startswith(b"event: message_start")
        await emu.stop()  # a second stop does nothing
        async with httpx.AsyncClient(base_url=base) as client:
            with pytest.raises(httpx.ConnectError):
                await client.post(url("openai.chat"), json={})
        async with emu, httpx.AsyncClient(base_url=emu.base_url) as client:  # it can start again
            assert (await post(client, "gemini")).status_code == 200
        assert asyncio.all_tasks() == {asyncio.current_task()}

    run(go())


def _read_line(proc: subprocess.Popen[str], pattern: str, timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if re.search(pattern, line):
            return line
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s")


def test_serve_main_serves_until_interrupted() -> None:
    code = (
        "import sys; from rxstream.testing._emulator import serve_main; sys.exit(serve_main(['--port', '0']))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = _read_line(proc, r"http://127\.0\.0\.1:\d+", timeout=15)
        base = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)  # type: ignore[union-attr]
        resp = httpx.post(base + "/v1/messages", json={"model": "claude-sonnet-4"}, timeout=5)
        assert resp.status_code == 200 and resp.headers["request-id"].startswith("req_")
        assert read_payloads(resp.content, "sse")[0][0] == "message_start"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


def test_serve_main_reports_bad_arguments(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert serve_main(["--pace", "bogus"]) == 2
    assert "--pace" in capsys.readouterr().err
    assert serve_main(["--recordings", str(tmp_path / "missing")]) == 1
    assert "rxstream serve:" in capsys.readouterr().err
    assert serve_main(["--fault", "explode=1"]) == 2
    assert serve_main(["--help"]) == 0
    assert "--recordings" in capsys.readouterr().out


def test_the_openai_sdk_retries_the_429_then_streams_the_recording() -> None:
    # One SDK only: importing openai and anthropic together costs ~5 s, past this file's budget.
    import openai

    async def go() -> tuple[str, list[int]]:
        fault = Fault(status=429, retry_after=0.05, times=1, wire="openai.chat")
        async with (
            ProviderEmulator(faults=[fault]) as emu,
            openai.AsyncOpenAI(base_url=emu.base_url + "/v1", api_key="sk-test") as client,
        ):
            stream = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return text, [r.status for r in emu.requests]

    text, statuses = run(go())
    assert json.loads(text) == {"city": "San Francisco", "temperature": 61, "units": "f"}
    assert statuses == [429, 200]  # the SDK waited retry-after and asked again


def test_each_streamed_request_records_how_its_body_went() -> None:
    async def go() -> list[ReceivedRequest]:
        async with ProviderEmulator() as emu, httpx.AsyncClient(base_url=emu.base_url) as client:
            headers = {"x-rxstream-recording": "openai-chat-text-1"}
            await read_raw(client, url("openai.chat"), headers=headers)  # read whole, fast pace
            await read_raw(client, url("openai.chat"), headers={**headers, "x-rxstream-fault": "drop_after=3"})
            await read_raw(client, url("openai.chat"), headers={**headers, "x-rxstream-fault": "error_after=2"})
            # Paced, and the client walks away after the first piece.
            async with client.stream(
                "POST", url("openai.chat"), json={}, headers={**headers, "x-rxstream-pace": "20"}
            ) as resp:
                async for _ in resp.aiter_raw():
                    break
            for _ in range(300):  # the disconnect reaches the server on a later turn of the loop
                outcome = emu.requests[-1].outcome
                if outcome is not None and outcome.closed_by_client:
                    break
                await asyncio.sleep(0.01)
            await post(client, "openai.chat", headers={"x-rxstream-fault": "status=429"})
            return list(emu.requests)

    whole, dropped, errored, walked_away, refused = run(go())
    count = len(expected_payloads("openai-chat-text-1.sse")[1]) + 1  # the recording's [DONE] too
    assert whole.outcome == StreamOutcome(events_sent=count, finished=True)
    assert dropped.outcome == StreamOutcome(events_sent=3, dropped=True)
    assert errored.outcome is not None and errored.outcome.finished and errored.outcome.events_sent == 2
    assert walked_away.outcome is not None and walked_away.outcome.closed_by_client
    assert not walked_away.outcome.finished and 0 < walked_away.outcome.events_sent < count
    assert refused.outcome is None  # answered with a status: nothing streamed
