"""The ``anthropic.messages`` wire: Anthropic Messages API streams and Anthropic-compatible servers.

Wire quirks handled:

- ``ping`` is content-free noise and dropped; ``message_stop`` carries nothing.
- Content already inside ``message_start.message.content`` (programmatic tool calling resumes a
  paused turn that way, followed at once by ``message_stop``) was never streamed: it is emitted
  as deltas, tool inputs serialised compactly.
- A ``tool_use`` that streams no argument text (its only ``input_json_delta`` is ``""``, or none
  at all) takes its arguments from the start block's ``input`` at block stop: ``"{}"`` for a
  tool without parameters, the whole object for a call the start block already completed.
- A ``tool_use`` whose ``caller`` is the code-execution tool is a client call all the same: the
  container pauses until the client sends its ``tool_result``.
- Server-executed blocks (``server_tool_use``, ``mcp_tool_use``, ``*_tool_result``,
  ``compaction``...) are provider events; a server tool's ``input_json_delta`` fragments become
  one event with the whole input at block stop.
- Usage: input counts cache reads and writes (each part may be missing); ``output_tokens`` is
  cumulative within a message; a compatible server re-reporting a larger ``input_tokens`` in
  ``message_delta`` wins; compaction ``iterations`` are added, since the top-level counts leave
  them out.
- Several messages in one stream are output 0: usage summed, the last message's stop reason
  wins, and only the last message's calls make ``stop`` a ``tool_calls``.
- An ``error`` event ends the stream with :class:`ProviderError` after what came before it.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rxstream._chunk import Wire
from rxstream._events import FinishReason
from rxstream._limits import Limits
from rxstream.operators._wires._base import CallState, Normalizer
from rxstream.operators._wires._read import as_dict as _obj
from rxstream.operators._wires._read import as_int as _int
from rxstream.operators._wires._read import as_list as _list
from rxstream.operators._wires._read import as_str as _str
from rxstream.operators._wires._read import dumps_compact as _dumps

__all__ = ["AnthropicMessagesNormalizer"]

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}

_INPUT_PARTS = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


def _plus(value: int | None, extra: int) -> int | None:
    if value is None:
        return extra or None
    return value + extra


class _Block:
    """A content block that needs its stop: a client call, or a server tool's input to join."""

    __slots__ = ("block", "call", "index", "input", "parts", "size")

    def __init__(self, index: int | None, block: dict[str, Any], call: CallState | None) -> None:
        self.index = index
        self.block = block
        self.call = call
        self.input: Any = block.get("input")
        self.parts: list[str] = []
        self.size = 0


class AnthropicMessagesNormalizer(Normalizer):
    """Normalizer of Anthropic Messages streams (``message_start`` ... ``message_stop``)."""

    wire: ClassVar[Wire] = "anthropic.messages"

    def __init__(
        self,
        *,
        stream_id: str,
        provider_events: bool = False,
        include_raw: bool = False,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(stream_id=stream_id, provider_events=provider_events, include_raw=include_raw, limits=limits)
        self._metas: dict[Any, dict[str, Any]] = {}
        self._message = 0
        self._message_id: str | None = None
        self._blocks: dict[tuple[int, int | None], _Block] = {}
        # calls of output 0 announced before the current message began
        # the current message's last reported usage parts: input, cache read, cache write
        self._input_parts: list[int | None] = [None, None, None]

    # -- identity -----------------------------------------------------------------------------

    def _identity(self, data: Any) -> tuple[str | None, str | None]:
        payload = _obj(data)
        message = _obj(payload.get("message")) if payload is not None else None
        if message is None:
            return None, None
        self._message_id = _str(message.get("id"))
        return _str(message.get("model")), self._message_id

    def _guess_provider(self, model: str | None) -> str | None:
        message_id = self._message_id
        if model is None or message_id is None:
            return None
        if not model.startswith("claude") or not message_id.startswith("msg_"):
            return None
        # Anthropic ids are base58 ("msg_01..."); some compatible servers serve Claude names with
        # "msg_" + a uuid's 32 hex digits.
        suffix = message_id[4:]
        if len(suffix) == 32 and all(c in "0123456789abcdef" for c in suffix):
            return None
        return "anthropic"

    def _block_meta(self, index: Any) -> dict[str, Any]:
        # One meta mapping per block, shared by its delta events (meta is read-only by
        # convention): a dict per delta is a measurable share of the per-chunk cost.
        meta = self._metas[index] = {"block_index": index}
        return meta

    # -- dispatch -----------------------------------------------------------------------------

    def _handle(self, event: str | None, data: Any) -> None:
        if data.__class__ is not dict:
            self._provider_event(event or "unknown", data)
            return
        kind = data.get("type") or event
        if kind == "content_block_delta":
            delta = data.get("delta")
            if delta.__class__ is not dict:
                self._provider_event("content_block_delta", data)
                return
            dtype = delta.get("type")
            index = data.get("index")
            if index.__class__ is not int:
                # It keys the block's meta: anything but an integer reads as absent.
                index = _int(index)
            if dtype == "text_delta":
                text = delta.get("text")
                if text and text.__class__ is str:
                    self._text(0, text, None, self._metas.get(index) or self._block_meta(index))
            elif dtype == "input_json_delta":
                self._input_delta(_int(index), delta.get("partial_json"), data)
            elif dtype == "thinking_delta":
                text = delta.get("thinking")
                if text and text.__class__ is str:
                    self._reasoning(0, text, None, self._metas.get(index) or self._block_meta(index))
            elif dtype == "signature_delta":
                signature = _str(delta.get("signature"))
                if signature:
                    self._reasoning(0, "", signature, {"block_index": index})
            elif dtype == "citations_delta":
                self._cite(index, delta.get("citation"))
            else:
                self._provider_event(_str(dtype) or "content_block_delta", data, {"block_index": index})
        elif kind == "content_block_start":
            block = _obj(data.get("content_block"))
            if block is None:
                self._provider_event("content_block_start", data)
            else:
                self._block_start(_int(data.get("index")), block)
        elif kind == "content_block_stop":
            self._block_stop(_int(data.get("index")))
        elif kind == "ping":
            return  # a keep-alive: content-free, never an event
        elif kind == "message_stop":
            if self._blocks:
                self._end_open_blocks()
        elif kind == "message_delta":
            self._message_delta(data)
        elif kind == "message_start":
            self._message_start(data)
        elif kind == "error":
            self._error(data)
        else:
            self._provider_event(_str(kind) or "unknown", data)

    # -- messages -----------------------------------------------------------------------------

    def _message_start(self, data: dict[str, Any]) -> None:
        if self._blocks:
            self._end_open_blocks()
        self._message += 1
        self._message_boundary()
        self._input_parts = [None, None, None]
        message = _obj(data.get("message")) or {}
        usage = _obj(message.get("usage"))
        if usage is not None:
            self._report_usage(usage, new_message=True)
        else:
            self.usage.new_message()
        raw_reason = _str(message.get("stop_reason"))
        self._finish_reason(0, raw_reason, self._map_reason(raw_reason))
        container = message.get("container")
        if container is not None:
            self._provider_event("container", container)
        # Content inside message_start was never streamed: each block opens and closes at once.
        for index, block in enumerate(_list(message.get("content")) or ()):
            payload = _obj(block)
            if payload is not None:
                self._block_start(index, payload)
                self._block_stop(index)

    def _message_delta(self, data: dict[str, Any]) -> None:
        delta = _obj(data.get("delta"))
        if delta is not None:
            raw_reason = _str(delta.get("stop_reason"))
            if raw_reason is not None:
                self._finish_reason(0, raw_reason, self._map_reason(raw_reason))
            container = delta.get("container")
            if container is not None:
                self._provider_event("container", container)
        usage = _obj(data.get("usage"))
        if usage is not None:
            self._report_usage(usage)

    @staticmethod
    def _map_reason(raw_reason: str | None) -> FinishReason | None:
        if raw_reason is None:
            return None
        return _FINISH.get(raw_reason, "other")

    def _report_usage(self, usage: dict[str, Any], *, new_message: bool = False) -> None:
        parts = self._input_parts
        for i, name in enumerate(_INPUT_PARTS):
            value = _int(usage.get(name))
            if value is not None:
                parts[i] = value
        known = [p for p in parts if p is not None]
        # Compaction iterations are billed but left out of the top-level counts.
        extra_in = extra_read = extra_write = extra_out = 0
        for item in _list(usage.get("iterations")) or ():
            step = _obj(item)
            if step is not None and step.get("type") == "compaction":
                extra_in += _int(step.get("input_tokens")) or 0
                extra_read += _int(step.get("cache_read_input_tokens")) or 0
                extra_write += _int(step.get("cache_creation_input_tokens")) or 0
                extra_out += _int(step.get("output_tokens")) or 0
        details = _obj(usage.get("output_tokens_details"))
        values: dict[str, int | None] = {
            "input_tokens": _plus(sum(known) if known else None, extra_in + extra_read + extra_write),
            "output_tokens": _plus(_int(usage.get("output_tokens")), extra_out),
            "cache_read_input_tokens": _plus(parts[1], extra_read),
            "cache_write_input_tokens": _plus(parts[2], extra_write),
            "reasoning_tokens": _int(details.get("thinking_tokens")) if details is not None else None,
        }
        self._usage(values, usage, new_message=new_message)

    def _error(self, data: dict[str, Any]) -> None:
        error = _obj(data.get("error")) or {}
        error_type = _str(error.get("type"))
        message = _str(error.get("message")) or error_type or "unknown error"
        self._fail(message, code=error_type, error_type=error_type, body=data)

    # -- blocks -------------------------------------------------------------------------------

    def _block_start(self, index: int | None, block: dict[str, Any]) -> None:
        btype = block.get("type")
        meta: dict[str, Any] = {"block_index": index}
        if btype == "text":
            text = _str(block.get("text"))
            if text:
                self._text(0, text, None, meta)
            for citation in _list(block.get("citations")) or ():
                self._cite(index, citation)
        elif btype == "thinking":
            text = _str(block.get("thinking")) or ""
            signature = _str(block.get("signature")) or None
            if text or signature:
                self._reasoning(0, text, signature, meta)
        elif btype == "redacted_thinking":
            meta["redacted_data"] = block.get("data")
            self._reasoning(0, "", None, meta)
        elif btype == "tool_use":
            caller = block.get("caller")
            if caller is not None:
                meta["caller"] = caller
            key = (self._message, index)
            call = self._tool_start(0, key, _str(block.get("id")), _str(block.get("name")) or "", meta)
            self._blocks[key] = _Block(index, block, call)
        elif self.provider_events:
            if "input" in block:
                # a server tool's input streams as fragments: one event with all of it at stop
                self._blocks[(self._message, index)] = _Block(index, block, None)
            else:
                self._provider_event(_str(btype) or "content_block", block, meta)

    def _input_delta(self, index: int | None, partial: Any, data: dict[str, Any]) -> None:
        block = self._blocks.get((self._message, index))
        if block is None:
            self._provider_event("input_json_delta", data, {"block_index": index})
        elif partial and partial.__class__ is str:
            if block.call is not None:
                self._tool_args(block.call, partial, self._metas.get(index) or self._block_meta(index))
            else:
                # A server tool's input is held until its block stops: bounded like arguments.
                block.size += len(partial)
                if block.size > self._max_arguments:
                    raise self._arguments_error(block.size, f"the input of server tool block {index}")
                block.parts.append(partial)

    def _block_stop(self, index: int | None) -> None:
        block = self._blocks.pop((self._message, index), None)
        if block is not None:
            self._end_block(block)

    def _end_open_blocks(self) -> None:
        blocks = list(self._blocks.values())
        self._blocks.clear()
        for block in blocks:
            self._end_block(block)

    def _end_block(self, block: _Block) -> None:
        call = block.call
        meta: dict[str, Any] = {"block_index": block.index}
        if call is not None:
            value = block.input
            if call.streamed == 0 and value is not None:
                # Nothing streamed: the start block's input is the whole of the arguments.
                self._tool_args(call, value if value.__class__ is str else _dumps(value), meta)
            self._tool_done(call)
            return
        data = dict(block.block)
        if block.parts:
            text = "".join(block.parts)
            try:
                data["input"] = json.loads(text)
            except ValueError:
                data["input_json"] = text
        self._provider_event(_str(data.get("type")) or "content_block", data, meta)

    def _cite(self, index: Any, citation: Any) -> None:
        source = _obj(citation)
        if source is None:
            return
        kind = _str(source.get("type"))
        start = source.get("start_char_index", source.get("start_page_number", source.get("start_block_index")))
        end = source.get("end_char_index", source.get("end_page_number", source.get("end_block_index")))
        url = _str(source.get("url"))
        if url is None and kind == "search_result_location":
            url = _str(source.get("source"))
        meta: dict[str, Any] = {"block_index": index}
        for name in ("document_index", "search_result_index", "file_id"):
            value = source.get(name)
            if value is not None:
                meta[name] = value
        self._citation(
            0,
            meta,
            kind=kind,
            url=url,
            title=_str(source.get("title")) or _str(source.get("document_title")),
            cited_text=_str(source.get("cited_text")),
            start_index=_int(start),
            end_index=_int(end),
        )

    # -- end of stream ------------------------------------------------------------------------

