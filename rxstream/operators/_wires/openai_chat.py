"""Normalizer for the OpenAI Chat Completions stream and every OpenAI-compatible server.

Wire quirks handled:

- ``output`` is the choice ``index`` (``n > 1`` interleaves choices); a choice without one is 0.
- Usage on a ``choices: []`` chunk or on a chunk that still has choices, ``"usage": null`` on
  every chunk, Groq's copy in ``x_groq.usage`` (read only when ``usage`` is absent), Perplexity's
  cumulative usage on every chunk (the base assigns within the message, emits on change).
- Usage fields: ``prompt_tokens_details.cached_tokens`` or DeepSeek's ``prompt_cache_hit_tokens``
  are the cache reads, OpenRouter's ``cache_write_tokens`` the cache writes. When
  ``total_tokens == prompt + completion + reasoning`` (reasoning > 0) the server left reasoning
  out of ``completion_tokens`` (xAI): it is added to ``output_tokens``. The rule is arithmetic,
  not a provider name, so any server that counts that way is read right.
- ``finish_reason`` absent, null until the end, never sent, or sent twice; it closes the
  choice's open tool calls.
- Tool calls sent whole in one chunk (Groq, Mistral), without ``index`` (Mistral: keyed by id,
  else by position in the chunk's list), with the id repeated or ``""`` later, with the whole
  header re-sent (OpenRouter: the name is never concatenated), ``arguments: null``, a new id
  at a used index (a server restarting its indexes: a new call), the legacy ``function_call``.
- Reasoning as ``reasoning_content`` (DeepSeek, xAI, Alibaba), ``reasoning`` (+ ``channel`` in
  meta, Groq gpt-oss), ``reasoning_details`` (OpenRouter; its text only when no reasoning string
  came in the same delta, since OpenRouter sends both), or typed content parts (Magistral).
- ``refusal`` deltas; empty ``content`` / null ``refusal`` / role-only deltas emit nothing.
- The choice's ``logprobs`` and Azure's ``content_filter_results`` ride in the delta's meta;
  Azure's ``prompt_filter_results`` preamble (empty id and model) is a provider event, and
  ``stream.start`` waits for the first payload that names the model.
- An ``error`` object in a chunk (OpenRouter, after that chunk's usage) or an SSE ``error``
  event (Groq) fails the stream after the rest of that chunk is processed.
- Perplexity ``citations`` / ``search_results`` and ``url_citation`` annotations become
  ``citation`` events, each source once; a choice's ``message`` snapshot is never re-emitted.
- Text that looks like a tool call (old Ollama ``<tool_call>`` text) stays text.

Payload containers are tested with ``x.__class__ is dict`` on the hot path: decoded JSON holds
exact builtins, and unlike ``isinstance`` the test keeps the payload typed ``Any`` under pyright
strict instead of narrowing it to ``dict[Unknown, Unknown]``.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rxstream._chunk import Wire
from rxstream._events import FinishReason
from rxstream._limits import Limits
from rxstream.operators._wires._base import CallState, Normalizer
from rxstream.operators._wires._read import as_int as _int
from rxstream.operators._wires._read import dumps_compact

__all__ = ["OpenAIChatNormalizer"]

Payload = Any
"""A decoded JSON value from the provider, read tolerantly."""

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "error": "error",
    # spellings of OpenAI-compatible servers that mean the same thing
    "eos": "stop",
    "eos_token": "stop",
    "stop_sequence": "stop",
    "end_turn": "stop",
    "max_tokens": "length",
}

_MODEL_PROVIDERS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("gpt", "o1", "o3", "o4", "chatgpt"), "openai"),
    (("grok",), "xai"),
    (("deepseek",), "deepseek"),
    (("mistral", "magistral", "ministral", "codestral", "devstral", "pixtral"), "mistral"),
    (("qwen",), "alibaba"),
    (("sonar",), "perplexity"),
)





def _text_of(value: Any) -> str | None:
    return value if value.__class__ is str and value else None


def _is_preamble(data: Any) -> bool:
    """A content-free chunk that names no model (Azure's ``prompt_filter_results`` first chunk)."""
    return (
        data.__class__ is dict
        and data.get("choices") == []
        and not data.get("model")
        and not data.get("id")
        and data.get("usage") is None
        and data.get("error") is None
    )


class OpenAIChatNormalizer(Normalizer):
    """``openai.chat``: Chat Completions chunks (``choices[].delta``) from any compatible server."""

    wire: ClassVar[Wire] = "openai.chat"

    def __init__(
        self,
        *,
        stream_id: str,
        provider_events: bool = False,
        include_raw: bool = False,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(stream_id=stream_id, provider_events=provider_events, include_raw=include_raw, limits=limits)
        # (output, provider index | call id | position) -> the call currently at that slot
        self._slots: dict[tuple[int, Any], CallState] = {}
        self._call_keys = 0
        self._cited: set[Any] = set()
        self._last_citations: Any = None
        self._hint: str | None = None

    # -- identity --------------------------------------------------------------------------

    def _defer_start(self, data: Any) -> bool:
        # Azure's first chunk has an empty id and model (only prompt filter results): the next
        # chunk names them.
        if _is_preamble(data):
            if data.get("prompt_filter_results") is not None:
                self._hint = "azure"
            return True
        return False

    def _identity(self, data: Any) -> tuple[str | None, str | None]:
        if data.__class__ is not dict:
            return None, None
        if self._hint is None:
            self._hint = self._provider_hint(data)
        return _text_of(data.get("model")), _text_of(data.get("id"))

    @staticmethod
    def _provider_hint(data: Payload) -> str | None:
        if _text_of(data.get("provider")):
            return "openrouter"  # OpenRouter names its upstream there
        if "x_groq" in data:
            return "groq"
        if "citations" in data or "search_results" in data:
            return "perplexity"
        if data.get("system_fingerprint") == "fp_ollama":
            return "ollama"
        if "prompt_filter_results" in data:
            return "azure"
        choices = data.get("choices")
        first: Payload = choices[0] if choices.__class__ is list and choices else None
        if first.__class__ is dict and "content_filter_results" in first:
            return "azure"  # Azure's per-choice filter results (its preamble may have been skipped)
        return None

    def _guess_provider(self, model: str | None) -> str | None:
        if self._hint is not None:
            return self._hint
        if not model or "/" in model:
            # "vendor/model" names a model hosted by a router or inference host, not its vendor
            return None
        lowered = model.lower()
        for prefixes, provider in _MODEL_PROVIDERS:
            if lowered.startswith(prefixes):
                return provider
        return None

    # -- payloads --------------------------------------------------------------------------

    def _handle(self, event: str | None, data: Any) -> None:
        if data.__class__ is not dict:
            if event == "error":
                self._error(data)
            self._provider_event(event or "unknown", data)
            return
        choices = data.get("choices")
        if choices.__class__ is list:
            for choice in choices:
                if choice.__class__ is not dict:
                    continue
                delta = choice.get("delta")
                if delta.__class__ is dict and len(delta) == 1 and choice.get("finish_reason") is None:
                    # the hot path, {"content": "..."} mid-stream: no other probes
                    content = delta.get("content")
                    if content.__class__ is str:
                        index = choice.get("index")
                        self._text(
                            index if index.__class__ is int else 0, content, None, self._content_meta(choice)
                        )
                        continue
                self._choice(choice)
        usage = data.get("usage")
        if usage is None:
            x_groq = data.get("x_groq")
            if x_groq.__class__ is dict:
                usage = x_groq.get("usage")
        if usage.__class__ is dict:
            self._report_usage(usage)
        citations = data.get("citations")
        search_results = data.get("search_results")
        if citations or search_results:
            self._sources(citations, search_results)
        filters = data.get("prompt_filter_results")
        if filters is not None:
            self._provider_event("prompt_filter_results", filters)
        error = data.get("error")
        if error is not None or event == "error":
            self._error(error if error is not None else data)
        known = choices is not None or usage is not None or filters is not None
        if not known and not (citations or search_results):
            self._provider_event(event or _text_of(data.get("object")) or "unknown", data)

    def _choice(self, choice: Payload) -> None:
        index = choice.get("index")
        output = index if index.__class__ is int else 0
        delta = choice.get("delta")
        if delta.__class__ is dict and delta:
            self._delta(output, choice, delta)
        # a choice's "message" is the server's running snapshot (Perplexity): never re-emitted
        finish = choice.get("finish_reason")
        if finish.__class__ is str and finish:
            self._finish_reason(output, finish, _FINISH_REASONS.get(finish, "other"))
            self._close_calls(output)

    def _delta(self, output: int, choice: Payload, delta: Payload) -> None:
        reasoning = delta.get("reasoning_content")
        if reasoning.__class__ is str and reasoning:
            self._reasoning(output, reasoning)
        else:
            reasoning = delta.get("reasoning")
            if reasoning.__class__ is str and reasoning:
                channel = delta.get("channel")
                self._reasoning(output, reasoning, None, {"channel": channel} if channel else None)
            else:
                reasoning = None
        details = delta.get("reasoning_details")
        if details.__class__ is list and details:
            self._reasoning_details(output, details, with_text=reasoning is None)
        content = delta.get("content")
        if content:
            if content.__class__ is str:
                self._text(output, content, None, self._content_meta(choice))
            elif content.__class__ is list:
                self._content_parts(output, content, choice)
        refusal = delta.get("refusal")
        if refusal.__class__ is str and refusal:
            self._refusal(output, refusal, self._content_meta(choice))
        tool_calls = delta.get("tool_calls")
        if tool_calls.__class__ is list:
            for position, tool_call in enumerate(tool_calls):
                if tool_call.__class__ is dict:
                    index = tool_call.get("index")
                    call_id = _text_of(tool_call.get("id"))
                    slot = index if index.__class__ is int else (call_id or position)
                    self._tool_call(output, slot, call_id, tool_call.get("function"))
        function_call = delta.get("function_call")
        if function_call.__class__ is dict:
            self._tool_call(output, "function_call", None, function_call)
        annotations = delta.get("annotations")
        if annotations.__class__ is list:
            self._annotations(output, annotations)

    @staticmethod
    def _content_meta(choice: Payload) -> dict[str, Any] | None:
        logprobs = choice.get("logprobs")
        filters = choice.get("content_filter_results")
        if logprobs is None and not filters:
            return None
        meta: dict[str, Any] = {}
        if logprobs is not None:
            meta["logprobs"] = logprobs
        if filters:
            meta["content_filter_results"] = filters
        return meta

    def _content_parts(self, output: int, parts: Payload, choice: Payload) -> None:
        """Typed content parts (Magistral): ``text`` parts and ``thinking`` parts."""
        for part in parts:
            if part.__class__ is str:
                self._text(output, part, None, self._content_meta(choice))
                continue
            if part.__class__ is not dict:
                continue
            kind = part.get("type")
            if kind == "text":
                text = _text_of(part.get("text"))
                if text:
                    self._text(output, text, None, self._content_meta(choice))
            elif kind == "thinking":
                thinking = part.get("thinking")
                if thinking.__class__ is list:
                    text = "".join(
                        sub["text"]
                        for sub in thinking
                        if sub.__class__ is dict and sub.get("text").__class__ is str
                    )
                else:
                    text = thinking if thinking.__class__ is str else ""
                self._reasoning(output, text, _text_of(part.get("signature")))
            else:
                self._provider_event(f"content.{kind}" if kind.__class__ is str else "content", part)

    def _reasoning_details(self, output: int, details: Payload, *, with_text: bool) -> None:
        """OpenRouter's structured reasoning; its text duplicates a ``reasoning`` string when both came."""
        for detail in details:
            if detail.__class__ is not dict:
                continue
            kind = detail.get("type")
            signature = _text_of(detail.get("signature"))
            if kind == "reasoning.text" or kind == "reasoning.summary":
                text: Payload = detail.get("text" if kind == "reasoning.text" else "summary")
                self._reasoning(output, text if with_text and text.__class__ is str else "", signature)
            elif kind == "reasoning.encrypted":
                data = _text_of(detail.get("data"))
                if data:
                    meta: dict[str, Any] = {"encrypted": data}
                    if detail.get("format"):
                        meta["format"] = detail["format"]
                    self._reasoning(output, "", signature, meta)
            else:
                self._provider_event("reasoning_details", detail)

    def _tool_call(self, output: int, slot: Any, call_id: str | None, function: Any) -> None:
        if function.__class__ is not dict:
            function = {}
        name = _text_of(function.get("name"))
        arguments = function.get("arguments")
        key = (output, slot)
        call = self._slots.get(key)
        if call is not None and call_id and call.call_id and call_id != call.call_id:
            # a new id at a used index: the server restarted its indexes, this is another call
            self._tool_done(call)
            call = None
        if call is None:
            if not name and not call_id:
                # a bare fragment at an unknown slot continues the output's latest call
                call = self._latest_open_call(output)
                if call is None and not arguments:
                    return
            if call is None:
                self._call_keys += 1
                call = self._tool_start(output, self._call_keys, call_id, name or "")
            self._slots[key] = call
        else:
            # a re-sent header: keep the first name (never concatenate), fill what was missing
            if call_id and not call.call_id:
                call.call_id = call_id
            if name and not call.name:
                call.name = name
        if arguments:
            if arguments.__class__ is str:
                self._tool_args(call, arguments)
            elif arguments.__class__ is dict or arguments.__class__ is list:
                self._tool_snapshot(call, dumps_compact(arguments))

    def _latest_open_call(self, output: int) -> CallState | None:
        state = self._outputs.get(output)
        if state is None or not state.calls:
            return None
        call = state.calls[-1]
        return None if call.done else call

    # -- usage, sources, errors -------------------------------------------------------------

    def _report_usage(self, usage: Payload) -> None:
        prompt = _int(usage.get("prompt_tokens"))
        completion = _int(usage.get("completion_tokens"))
        total = _int(usage.get("total_tokens"))
        cache_read = cache_write = reasoning = None
        prompt_details = usage.get("prompt_tokens_details")
        if prompt_details.__class__ is dict:
            cache_read = _int(prompt_details.get("cached_tokens"))
            cache_write = _int(prompt_details.get("cache_write_tokens"))
        if cache_read is None:
            cache_read = _int(usage.get("prompt_cache_hit_tokens"))
        completion_details = usage.get("completion_tokens_details")
        if completion_details.__class__ is dict:
            reasoning = _int(completion_details.get("reasoning_tokens"))
        output = completion
        if (
            reasoning
            and prompt is not None
            and completion is not None
            and total == prompt + completion + reasoning
        ):
            # reasoning was counted outside completion_tokens (xAI): output includes it here
            output = completion + reasoning
        self._usage(
            {
                "input_tokens": prompt,
                "output_tokens": output,
                "total_tokens": total,
                "cache_read_input_tokens": cache_read,
                "cache_write_input_tokens": cache_write,
                "reasoning_tokens": reasoning,
            },
            usage,
        )

    def _sources(self, citations: Any, search_results: Any) -> None:
        """Perplexity repeats its sources on every chunk: each URL becomes one citation."""
        if citations == self._last_citations and not search_results:
            return
        self._last_citations = citations
        cited = self._cited
        if search_results.__class__ is list:
            for result in search_results:
                if result.__class__ is not dict:
                    continue
                url = _text_of(result.get("url"))
                if url is None or url in cited:
                    continue
                cited.add(url)
                meta = {k: result[k] for k in ("date", "last_updated") if result.get(k)}
                self._citation(0, meta or None, kind="url", url=url, title=_text_of(result.get("title")))
        if citations.__class__ is list:
            for url in citations:
                if url.__class__ is str and url and url not in cited:
                    cited.add(url)
                    self._citation(0, kind="url", url=url)

    def _annotations(self, output: int, annotations: Payload) -> None:
        for annotation in annotations:
            if annotation.__class__ is not dict:
                continue
            cite = annotation.get("url_citation")
            if annotation.get("type") != "url_citation" or cite.__class__ is not dict:
                self._provider_event("annotation", annotation)
                continue
            url = _text_of(cite.get("url"))
            start, end = _int(cite.get("start_index")), _int(cite.get("end_index"))
            key = (output, url, start, end)
            if key in self._cited:
                continue
            self._cited.add(key)
            self._citation(
                output, kind="url", url=url, title=_text_of(cite.get("title")), start_index=start, end_index=end
            )

    def _error(self, error: Any) -> None:
        """An error inside the 200 stream: fail after what the chunk carried was emitted."""
        body = error
        if error.__class__ is dict and error.get("error").__class__ is dict:
            error = error["error"]  # an SSE error event's payload wraps the object
        if error.__class__ is not dict:
            self._fail(str(error) or "unknown error", body=body)
            return
        message = _text_of(error.get("message")) or json.dumps(error, ensure_ascii=False)[:500]
        code = error.get("code")
        status = _int(error.get("status_code")) or _int(error.get("status"))
        if status is None and code.__class__ is int and 100 <= code < 600:
            status = code
        self._fail(
            message,
            code=str(code) if code is not None else None,
            error_type=_text_of(error.get("type")),
            status=status,
            body=error,
        )
