"""Secrets: the API key never appears in any artefact of a run, the failing runs included.

Every wire's source talks to the emulator over loopback with a distinctive key, through
``record()``, ``normalize()``, ``tap_metrics(emit=True)`` and ``collect()``, once cleanly and once
per kind of fault. Then every artefact the client side produced is searched for the key: events
(repr and JSON), the result (repr and summary), the error (message, repr, notes, the cause chain,
the formatted traceback, the partial result), the cassette, the HTML report, the metrics record,
the reprs of the source and its open chunk, and every log record at DEBUG from every logger
(httpx, httpcore, uvicorn, rxstream). The request as it went on the wire (an httpx event hook)
legitimately holds the key: it is checked to, so the search is known to work.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from reactivex import Observable

from rxstream._consume import collect
from rxstream._errors import RxStreamError
from rxstream._report import render_report
from rxstream.metrics import InMemoryMetrics
from rxstream.operators import normalize, record, tap_metrics
from rxstream.sources import (
    anthropic_messages,
    gemini,
    openai_chat,
    openai_compatible,
    openai_responses,
    xai_chat,
)
from rxstream.testing import Fault, ProviderEmulator
from tests.conftest import RECORDINGS

KEY = "sk-rxs-SECRET-7f3a9c2e51d04b8b"

Factory = Callable[..., Observable[Any]]

SOURCES: dict[str, tuple[str, Factory]] = {
    "openai_chat": (
        "openai-chat-text-1.sse",
        lambda base, client: openai_chat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], api_key=KEY,
                                 base_url=base + "/v1", client=client),
    ),
    "xai_chat": (
        "openai-chat-text-1.sse",
        lambda base, client: xai_chat(model="grok-3", messages=[{"role": "user", "content": "hi"}], api_key=KEY,
                              base_url=base + "/v1", client=client),
    ),
    "azure (api-key header)": (
        "openai-chat-text-1.sse",
        lambda base, client: openai_compatible(base_url=base + "/v1", model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                       api_key=KEY, auth="api-key", client=client),
    ),
    "openai_responses": (
        "openai-responses-text-1.sse",
        lambda base, client: openai_responses(model="gpt-4o", input="hi", api_key=KEY, base_url=base + "/v1", client=client),
    ),
    "anthropic_messages": (
        "anthropic-messages-text-1.sse",
        lambda base, client: anthropic_messages(model="claude-sonnet-4", messages=[{"role": "user", "content": "hi"}],
                                        api_key=KEY, base_url=base, client=client),
    ),
    "gemini": (
        "gemini-generatecontent-text-1.sse",
        lambda base, client: gemini(model="gemini-2.0-flash", contents="hi", api_key=KEY, base_url=base + "/v1beta", client=client),
    ),
}

FAULTS: dict[str, Fault | None] = {
    "clean": None,
    "401": Fault(status=401),
    "429": Fault(status=429, retry_after=2),
    "500": Fault(status=500),
    "in-stream error": Fault(error_after=2),
    "dropped": Fault(drop_after=2),
    "malformed line": Fault(malformed_after=1),
}


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.lines.append(repr(record.args))
        if record.exc_info:
            self.lines.append("".join(traceback.format_exception(*record.exc_info)))


def _error_texts(error: BaseException | None) -> list[str]:
    texts: list[str] = []
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        texts += [str(error), repr(error), *getattr(error, "__notes__", [])]
        texts += [repr(getattr(error, name, None)) for name in ("body", "headers", "request_id", "url", "partial")]
        texts.append("".join(traceback.format_exception(error)))
        error = error.__cause__ or error.__context__
    return texts


@pytest.mark.parametrize("fault_name", list(FAULTS))
@pytest.mark.parametrize("source_name", list(SOURCES))
def test_the_key_is_in_no_artefact_of_a_run(source_name: str, fault_name: str, tmp_path: Path) -> None:
    recording, factory = SOURCES[source_name]
    fault = FAULTS[fault_name]
    cassette = tmp_path / "run.jsonl"
    capture = _Capture()
    capture.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)

    async def run() -> tuple[list[Any], Any, BaseException | None, list[str], str]:
        events: list[Any] = []
        sent: list[str] = []

        async def keep_headers(request: httpx.Request) -> None:
            sent.append(json.dumps(dict(request.headers)) + str(request.url))

        async with (
            ProviderEmulator(RECORDINGS / recording, pace="fast", faults=[fault] if fault else []) as emu,
            httpx.AsyncClient(event_hooks={"request": [keep_headers]}) as client,
        ):
            source = factory(emu.base_url, client)
            sink = InMemoryMetrics()
            pipeline = source.pipe(record(cassette), normalize(), tap_metrics(sink, emit=True))
            pipeline_reprs = [repr(source), repr(pipeline)]
            error: BaseException | None = None
            result: Any = None
            try:
                result = await collect(pipeline.pipe(_tap(events)))
            except RxStreamError as exc:
                error = exc
            server_side = "".join(sent)
            report = render_report([(events, m) for m in sink.records], title="run")
            pipeline_reprs += [repr(m) for m in sink.records]
            return events, result, error, pipeline_reprs, server_side + "\n" + report

    try:
        events, result, error, reprs, extra = asyncio.run(run())
    finally:
        root.removeHandler(capture)
        root.setLevel(previous)
    server_side, report = extra.split("\n", 1)
    assert KEY in server_side  # the key did reach the server: the search below can find it
    if fault is None:
        assert error is None and result is not None and result.text
    else:
        assert error is not None, f"{fault_name}: the run should have failed"
    artefacts: dict[str, list[str]] = {
        "events": [repr(e) for e in events] + [e.model_dump_json() for e in events],
        "result": [repr(result), json.dumps(result.to_summary(), default=str)] if result is not None else [],
        "error": _error_texts(error),
        "partial": [repr(getattr(error, "partial", None))],
        "cassette": [cassette.read_text(encoding="utf-8")] if cassette.exists() else [],
        "report": [report],
        "reprs": reprs,
        "logs": capture.lines,
    }
    assert artefacts["cassette"] and artefacts["logs"], "nothing to search: the run left no cassette or logs"
    leaks = {name: [t[:300] for t in texts if KEY in t] for name, texts in artefacts.items()}
    assert not any(leaks.values()), f"the key leaked into: { {k: v for k, v in leaks.items() if v} }"
    # Nor a recognisable part of it (a truncated header, a masked form that keeps most of it).
    fragment = KEY[7:23]
    assert not any(fragment in t for texts in artefacts.values() for t in texts)


def _tap(events: list[Any]) -> Callable[[Observable[Any]], Observable[Any]]:
    from reactivex import operators as ops

    return ops.do_action(events.append)


def test_cli_record_and_its_failures_never_print_or_write_the_key(tmp_path: Path) -> None:
    """`rxstream record` with the key in the environment, clean and against a 401."""
    from tests.test_cli import record_in_process

    for faults in ([], [Fault(status=401)], [Fault(drop_after=3)]):
        cassette = tmp_path / f"run{len(faults)}.jsonl"
        code, out, err = record_in_process(
            ["record", "--provider", "openai", "--model", "gpt-4o", "--base-url", "{base}/v1", "-o", str(cassette), "Hi"],
            "OPENAI_API_KEY", faults=faults,
        )
        from tests.test_cli import RECORD_KEY

        texts = [out, err, cassette.read_text(encoding="utf-8") if cassette.exists() else ""]
        assert not any(RECORD_KEY in t for t in texts), (code, out, err)
        assert texts[2], "the cassette was not written"
    assert io.StringIO  # the module's imports are all used
