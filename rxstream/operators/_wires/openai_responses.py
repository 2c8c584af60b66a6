"""Normalizer for the OpenAI Responses wire (OpenAI, Azure, xAI, DeepSeek, OpenRouter, Bedrock, LM Studio).

Wire quirks handled:

- one output, ``0``, whatever the items; a stream joining several responses (several
  ``response.created``) stays output 0 and its usage is summed, one message per response;
- ``*.done``, ``content_part.done``, ``output_item.done`` and the final ``response.completed``
  output are snapshots: only the part never streamed as deltas is emitted (text, refusal,
  reasoning, tool arguments), so a server that sends no deltas (LM Studio's
  ``function_call_arguments.done``, an ``output_text.done`` with no deltas) still delivers all;
- tool calls are keyed by their ``fc_``/``ct_`` item id, ``call_id`` is the ``call_`` id;
  custom (freeform) tool calls stream their raw ``input`` as arguments; computer / shell /
  apply_patch calls (executed by the caller) become tool calls whose arguments are their action;
- hosted tools (web / file search, code interpreter, image generation, MCP) and their progress
  events are ``provider.event``\\ s, never tool calls;
- annotations become citations once, whether announced by ``annotation.added``, present only in
  a snapshot (or both);
- encrypted reasoning (``encrypted_content``) rides on an empty reasoning delta's ``meta``;
- ``response.incomplete`` maps ``max_output_tokens`` to ``length`` and ``content_filter`` to
  ``content_filter``; request moderation flagged (``response.moderation``) or an Azure
  ``content_filters`` entry blocked turn a completed response into ``content_filter``;
- a top-level ``error`` event (flat or nested ``error: {...}``) and ``response.failed`` end the
  stream with :class:`ProviderError`;
- deltas without ``item_id`` (some compatible servers) are keyed by their ``output_index``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, cast

from rxstream._chunk import Wire
from rxstream._events import FinishReason
from rxstream._limits import Limits
from rxstream.operators._wires._base import CallState, Normalizer
from rxstream.operators._wires._read import as_dict as _dict
from rxstream.operators._wires._read import as_int as _int
from rxstream.operators._wires._read import as_str as _str
from rxstream.operators._wires._read import dumps_compact as _dumps

__all__ = ["OpenAIResponsesNormalizer"]

_TEXT_DELTA = "response.output_text.delta"

# Items the caller executes itself and whose input is an action object, not argument text.
_ACTION_CALLS = {
    "computer_call": "action",
    "local_shell_call": "action",
    "shell_call": "action",
    "apply_patch_call": "operation",
}
_CLIENT_CALLS = frozenset({"function_call", "custom_tool_call"})
_TERMINAL = frozenset({"completed", "incomplete", "failed", "cancelled"})
_INCOMPLETE: dict[str, FinishReason] = {
    "max_output_tokens": "length",
    "max_tokens": "length",
    "content_filter": "content_filter",
}




def _list(value: Any) -> list[Any]:
    return cast("list[Any]", value) if isinstance(value, list) else []




def _code(error: dict[str, Any]) -> str | None:
    code = error.get("code")
    return code if isinstance(code, str) else (None if code is None else str(code))


def _index(value: Any) -> int:
    """A position used in state keys: anything but an int (missing, malformed) is 0."""
    return value if value.__class__ is int else 0




class OpenAIResponsesNormalizer(Normalizer):
    """Turns OpenAI Responses stream events into rxstream events (one output, ``0``)."""

    wire: ClassVar[Wire] = "openai.responses"

    def __init__(
        self,
        *,
        stream_id: str,
        provider_events: bool = False,
        include_raw: bool = False,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(stream_id=stream_id, provider_events=provider_events, include_raw=include_raw, limits=limits)
        self._response = 0
        self._usage_response = -1
        self._item_at: dict[Any, Any] = {}
        self._seen: set[Any] = set()
        self._reasoning_streamed: dict[Any, int] = {}
        self._refusal_streamed: dict[Any, int] = {}
        self._citations: set[tuple[Any, ...]] = set()
        self._encrypted: set[Any] = set()

    # -- identity ---------------------------------------------------------------------------

    def _identity(self, data: Any) -> tuple[str | None, str | None]:
        payload = _dict(data)
        response = _dict(payload.get("response")) if payload is not None else None
        if response is None:
            return None, None
        return _str(response.get("model")), _str(response.get("id"))

    def _response_format(self, data: Any) -> Any:
        payload = _dict(data)
        response = _dict(payload.get("response")) if payload is not None else None
        text = _dict(response.get("text")) if response is not None else None
        return text.get("format") if text is not None else None

    def _guess_provider(self, model: str | None) -> str | None:
        if not model:
            return None
        name = model.lower()
        if name.startswith(("gpt", "chatgpt", "codex", "computer-use")) or (
            len(name) > 1 and name[0] == "o" and name[1].isdigit()
        ):
            return "openai"
        if name.startswith("grok"):
            return "xai"
        if name.startswith("deepseek"):
            return "deepseek"
        return None

    # -- dispatch ---------------------------------------------------------------------------

    def _handle(self, event: str | None, data: Any) -> None:
        if data.__class__ is not dict:
            self._provider_event(event or "unknown", data)
            return
        kind: Any = data.get("type") or event
        if kind == _TEXT_DELTA:
            delta = data.get("delta")
            if delta and delta.__class__ is str:
                item = data.get("item_id")
                if item.__class__ is not str:
                    item = self._item_key(data)
                index = data.get("content_index", 0)
                if index.__class__ is not int:
                    index = 0
                meta: dict[str, Any] = {"item_id": item}
                sequence = data.get("sequence_number")
                if sequence is not None:
                    meta["sequence_number"] = sequence
                logprobs = data.get("logprobs")
                if logprobs:
                    meta["logprobs"] = logprobs
                self._text(0, delta, (item, index), meta)
            return
        handler = self._HANDLERS.get(kind) if kind.__class__ is str else None
        if handler is not None:
            handler(self, data)
        else:
            # Hosted-tool progress (web_search_call.*, code_interpreter_call_code.delta,
            # image_generation_call.partial_image, mcp_*), keepalives and kinds added later.
            self._provider_event(kind if kind.__class__ is str else "unknown", data)

    # -- small helpers ----------------------------------------------------------------------

    def _item_key(self, data: dict[str, Any]) -> Any:
        """The item a payload without ``item_id`` belongs to, by its ``output_index``."""
        index = _index(data.get("output_index"))
        known = self._item_at.get((self._response, index))
        return known if known is not None else ("#", self._response, index)

    @staticmethod
    def _small(data: dict[str, Any], item: Any, **extra: Any) -> dict[str, Any]:
        meta: dict[str, Any] = {"item_id": item}
        sequence = data.get("sequence_number")
        if sequence is not None:
            meta["sequence_number"] = sequence
        if extra:
            meta.update({name: value for name, value in extra.items() if value is not None})
        return meta

    def _ids(self, data: dict[str, Any]) -> Any:
        item = data.get("item_id")
        return item if item.__class__ is str else self._item_key(data)

    # -- response lifecycle -----------------------------------------------------------------

    def _on_created(self, data: dict[str, Any]) -> None:
        self._response += 1
        self._message_boundary()

    def _on_nothing(self, data: dict[str, Any]) -> None:
        return

    def _on_terminal(self, data: dict[str, Any]) -> None:
        kind = _str(data.get("type")) or ""
        response = _dict(data.get("response")) or {}
        self._sweep(response.get("output"))
        usage = _dict(response.get("usage"))
        if usage is not None:
            self._report_usage(usage)
        status = _str(response.get("status"))
        if status not in _TERMINAL:
            # A terminal event whose snapshot still says in_progress (or nothing): trust the event.
            status = kind.removeprefix("response.")
        if kind == "response.failed" or status == "failed":
            error = _dict(response.get("error")) or {}
            message = _str(error.get("message")) or "the response failed"
            self._fail(message, code=_code(error), error_type=_str(error.get("type")), body=error or None)
        flagged = self._moderation(response)
        if status == "completed":
            self._finish_reason(0, "completed", "content_filter" if flagged else "stop")
        elif status == "incomplete":
            details = _dict(response.get("incomplete_details")) or {}
            reason = _str(details.get("reason"))
            mapped = _INCOMPLETE.get(reason, "other") if reason is not None else "other"
            self._finish_reason(0, reason or status, "content_filter" if flagged else mapped)
        else:
            self._finish_reason(0, status or None, "content_filter" if flagged else "other")

    def _report_usage(self, usage: dict[str, Any]) -> None:
        inputs = _dict(usage.get("input_tokens_details")) or {}
        outputs = _dict(usage.get("output_tokens_details")) or {}
        new_message = self._usage_response != self._response
        self._usage_response = self._response
        self._usage(
            {
                "input_tokens": _int(usage.get("input_tokens")),
                "output_tokens": _int(usage.get("output_tokens")),
                "total_tokens": _int(usage.get("total_tokens")),
                "cache_read_input_tokens": _int(inputs.get("cached_tokens")),
                "cache_write_input_tokens": _int(inputs.get("cache_write_tokens")),
                "reasoning_tokens": _int(outputs.get("reasoning_tokens")),
            },
            usage,
            new_message=new_message,
        )

    def _moderation(self, response: dict[str, Any]) -> bool:
        """Pass moderation verdicts through; True when one of them flagged or blocked content."""
        flagged = False
        moderation = _dict(response.get("moderation"))
        if moderation is not None:
            self._provider_event("response.moderation", moderation)
            for side in moderation.values():
                verdict = _dict(side)
                if verdict is not None and verdict.get("flagged") is True:
                    flagged = True
        filters = _list(response.get("content_filters"))
        if filters:
            self._provider_event("response.content_filters", filters)
            for entry in filters:
                verdict = _dict(entry)
                if verdict is not None and verdict.get("blocked") is True:
                    flagged = True
        return flagged

    def _on_error(self, data: dict[str, Any]) -> None:
        nested = _dict(data.get("error"))
        error = nested if nested is not None else data
        message = _str(error.get("message")) or "unknown error"
        self._fail(
            message,
            code=_code(error),
            error_type=_str(error.get("type")) if nested is not None else None,
            body=error,
        )

    # -- items ------------------------------------------------------------------------------

    def _on_item_added(self, data: dict[str, Any]) -> None:
        item = _dict(data.get("item"))
        if item is None:
            self._provider_event("response.output_item.added", data)
            return
        index = _index(data.get("output_index"))
        item_id: Any = _str(item.get("id"))
        if item_id is None:
            item_id = ("#", self._response, index)
        self._item_at[(self._response, index)] = item_id
        self._seen.add(item_id)
        kind = _str(item.get("type"))
        if kind in _CLIENT_CALLS:
            self._start_call(item, item_id, data)
        elif kind not in ("message", "reasoning") and kind not in _ACTION_CALLS:
            self._provider_event("response.output_item.added", data)

    def _on_item_done(self, data: dict[str, Any]) -> None:
        item = _dict(data.get("item"))
        if item is None:
            self._provider_event("response.output_item.done", data)
            return
        item_id: Any = _str(item.get("id"))
        if item_id is None:
            item_id = self._item_key(data)
        self._seen.add(item_id)
        if not self._item_done(item, item_id, data):
            self._provider_event("response.output_item.done", data)

    def _item_done(self, item: dict[str, Any], item_id: Any, data: dict[str, Any]) -> bool:
        """Emit what a complete item holds that was never streamed; False for hosted items."""
        kind = _str(item.get("type"))
        if kind == "message":
            for index, part in enumerate(_list(item.get("content"))):
                self._part_done(_dict(part), item_id, index, data)
        elif kind == "reasoning":
            for index, part in enumerate(_list(item.get("summary"))):
                text = _str((_dict(part) or {}).get("text"))
                if text:
                    self._reasoning_snapshot((item_id, "summary", index), text, data, item_id, index)
            for index, part in enumerate(_list(item.get("content"))):
                text = _str((_dict(part) or {}).get("text"))
                if text:
                    self._reasoning_snapshot((item_id, "content", index), text, data, item_id, None)
            encrypted = item.get("encrypted_content")
            if encrypted and item_id not in self._encrypted:
                self._encrypted.add(item_id)
                self._reasoning(0, "", meta=self._small(data, item_id, encrypted_content=encrypted))
        elif kind in _CLIENT_CALLS:
            call = self._start_call(item, item_id, data)
            full = item.get("arguments") if kind == "function_call" else item.get("input")
            if isinstance(full, str):
                self._tool_snapshot(call, full)
            self._tool_done(call)
        elif kind in _ACTION_CALLS:
            action = item.get(_ACTION_CALLS[kind])
            call = self._tool_start(
                0,
                item_id,
                _str(item.get("call_id")),
                kind.removesuffix("_call"),
                self._small(data, item_id),
            )
            call.meta = {"item_id": item_id}
            if action is not None:
                self._tool_snapshot(call, _dumps(action))
            self._tool_done(call)
        else:
            return False
        return True

    def _sweep(self, output: Any) -> None:
        """A final output's items that no event announced (a server that only sends the end)."""
        for index, entry in enumerate(_list(output)):
            item = _dict(entry)
            if item is None:
                continue
            item_id: Any = _str(item.get("id"))
            if item_id is None:
                item_id = self._item_at.get((self._response, index), ("#", self._response, index))
            if item_id in self._seen:
                continue
            self._seen.add(item_id)
            self._item_done(item, item_id, {})

    # -- content parts ----------------------------------------------------------------------

    def _part_done(self, part: dict[str, Any] | None, item_id: Any, index: Any, data: dict[str, Any]) -> None:
        if part is None:
            return
        kind = part.get("type")
        if kind == "output_text":
            text = _str(part.get("text"))
            if text:
                self._text_snapshot(0, (item_id, index), text, self._small(data, item_id))
            for annotation in _list(part.get("annotations")):
                self._annotation(_dict(annotation), item_id, index, data)
        elif kind == "refusal":
            refusal = _str(part.get("refusal"))
            if refusal:
                self._refusal_snapshot((item_id, index), refusal, data, item_id)
        elif kind == "reasoning_text":
            text = _str(part.get("text"))
            if text:
                self._reasoning_snapshot((item_id, "content", index), text, data, item_id, None)

    def _on_content_part_done(self, data: dict[str, Any]) -> None:
        self._part_done(_dict(data.get("part")), self._ids(data), _index(data.get("content_index")), data)

    def _on_text_done(self, data: dict[str, Any]) -> None:
        text = _str(data.get("text"))
        if text:
            item = self._ids(data)
            self._text_snapshot(0, (item, _index(data.get("content_index"))), text, self._small(data, item))

    def _on_annotation(self, data: dict[str, Any]) -> None:
        self._annotation(
            _dict(data.get("annotation")), self._ids(data), _index(data.get("content_index")), data
        )

    def _annotation(
        self, annotation: dict[str, Any] | None, item_id: Any, index: Any, data: dict[str, Any]
    ) -> None:
        if annotation is None:
            return
        kind = _str(annotation.get("type"))
        url = _str(annotation.get("url"))
        title = _str(annotation.get("title"))
        filename = _str(annotation.get("filename"))
        file_id = _str(annotation.get("file_id"))
        start = _int(annotation.get("start_index"))
        if start is None:
            start = _int(annotation.get("index"))
        end = _int(annotation.get("end_index"))
        seen = (item_id, index, kind, url, title, filename, file_id, start, end)
        if seen in self._citations:
            return
        self._citations.add(seen)
        self._citation(
            0,
            self._small(
                data,
                item_id,
                file_id=file_id,
                filename=filename,
                container_id=_str(annotation.get("container_id")),
            ),
            kind=kind,
            url=url,
            title=title or filename,
            start_index=start,
            end_index=end,
        )

    # -- refusal ----------------------------------------------------------------------------

    def _on_refusal_delta(self, data: dict[str, Any]) -> None:
        delta = _str(data.get("delta"))
        if delta:
            item = self._ids(data)
            key = (item, _index(data.get("content_index")))
            self._refusal_streamed[key] = self._refusal_streamed.get(key, 0) + len(delta)
            self._refusal(0, delta, self._small(data, item))

    def _on_refusal_done(self, data: dict[str, Any]) -> None:
        refusal = _str(data.get("refusal"))
        if refusal:
            item = self._ids(data)
            self._refusal_snapshot((item, _index(data.get("content_index"))), refusal, data, item)

    def _refusal_snapshot(self, key: Any, full: str, data: dict[str, Any], item_id: Any) -> None:
        streamed = self._refusal_streamed.get(key, 0)
        if len(full) > streamed:
            self._refusal_streamed[key] = len(full)
            self._refusal(0, full[streamed:], self._small(data, item_id))

    # -- reasoning --------------------------------------------------------------------------

    def _on_summary_delta(self, data: dict[str, Any]) -> None:
        delta = data.get("delta")
        if delta and delta.__class__ is str:
            item = data.get("item_id")
            if item.__class__ is not str:
                item = self._item_key(data)
            index = _index(data.get("summary_index"))
            key = (item, "summary", index)
            streamed = self._reasoning_streamed
            streamed[key] = streamed.get(key, 0) + len(delta)
            meta: dict[str, Any] = {"item_id": item, "summary_index": index}
            sequence = data.get("sequence_number")
            if sequence is not None:
                meta["sequence_number"] = sequence
            self._reasoning(0, delta, None, meta)

    def _on_summary_done(self, data: dict[str, Any]) -> None:
        text = _str(data.get("text"))
        if text is None:
            text = _str((_dict(data.get("part")) or {}).get("text"))
        if text:
            item = self._ids(data)
            index = _index(data.get("summary_index"))
            self._reasoning_snapshot((item, "summary", index), text, data, item, index)

    def _on_reasoning_delta(self, data: dict[str, Any]) -> None:
        delta = _str(data.get("delta"))
        if delta:
            item = self._ids(data)
            key = (item, "content", _index(data.get("content_index")))
            self._reasoning_streamed[key] = self._reasoning_streamed.get(key, 0) + len(delta)
            self._reasoning(0, delta, meta=self._small(data, item))

    def _on_reasoning_done(self, data: dict[str, Any]) -> None:
        text = _str(data.get("text"))
        if text:
            item = self._ids(data)
            self._reasoning_snapshot(
                (item, "content", _index(data.get("content_index"))), text, data, item, None
            )

    def _reasoning_snapshot(
        self, key: Any, full: str, data: dict[str, Any], item_id: Any, summary_index: Any
    ) -> None:
        streamed = self._reasoning_streamed.get(key, 0)
        if len(full) > streamed:
            self._reasoning_streamed[key] = len(full)
            self._reasoning(0, full[streamed:], meta=self._small(data, item_id, summary_index=summary_index))

    # -- client tool calls ------------------------------------------------------------------

    def _start_call(self, item: dict[str, Any], item_id: Any, data: dict[str, Any]) -> CallState:
        known = self._call(0, item_id)
        call = self._tool_start(
            0, item_id, _str(item.get("call_id")), _str(item.get("name")) or "", self._small(data, item_id)
        )
        if known is None:
            # The done event reuses the call's meta: keep only what holds for the whole call.
            call.meta = {"item_id": item_id}
        return call

    def _args_call(self, data: dict[str, Any]) -> CallState:
        item = self._ids(data)
        call = self._call(0, item)
        if call is None:
            # Arguments for an item never announced: the name may come with output_item.done.
            call = self._tool_start(0, item, None, "", self._small(data, item))
            call.meta = {"item_id": item}
        return call

    def _on_args_delta(self, data: dict[str, Any]) -> None:
        delta = _str(data.get("delta"))
        if delta:
            sequence = data.get("sequence_number")
            self._tool_args(
                self._args_call(data), delta, {"sequence_number": sequence} if sequence is not None else None
            )

    def _on_args_done(self, data: dict[str, Any]) -> None:
        full = data.get("arguments")
        if full is None:
            full = data.get("input")
        call = self._args_call(data)
        if isinstance(full, str):
            self._tool_snapshot(call, full)
        self._tool_done(call)

    _HANDLERS: ClassVar[dict[str, Callable[[OpenAIResponsesNormalizer, dict[str, Any]], None]]] = {
        "response.created": _on_created,
        "response.in_progress": _on_nothing,
        "response.queued": _on_nothing,
        "response.completed": _on_terminal,
        "response.incomplete": _on_terminal,
        "response.failed": _on_terminal,
        "error": _on_error,
        "response.output_item.added": _on_item_added,
        "response.output_item.done": _on_item_done,
        "response.content_part.added": _on_nothing,
        "response.content_part.done": _on_content_part_done,
        "response.output_text.done": _on_text_done,
        "response.output_text.annotation.added": _on_annotation,
        "response.refusal.delta": _on_refusal_delta,
        "response.refusal.done": _on_refusal_done,
        "response.reasoning_summary_part.added": _on_nothing,
        "response.reasoning_summary_part.done": _on_summary_done,
        "response.reasoning_summary_text.delta": _on_summary_delta,
        "response.reasoning_summary_text.done": _on_summary_done,
        "response.reasoning_text.delta": _on_reasoning_delta,
        "response.reasoning_text.done": _on_reasoning_done,
        "response.function_call_arguments.delta": _on_args_delta,
        "response.function_call_arguments.done": _on_args_done,
        "response.custom_tool_call_input.delta": _on_args_delta,
        "response.custom_tool_call_input.done": _on_args_done,
    }
