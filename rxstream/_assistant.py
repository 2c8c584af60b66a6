"""The assistant turn of a finished stream, rebuilt in each wire's own request format.

A tool loop sends the model's turn back with the tool results. What must go back differs per wire,
and getting it wrong is a 400 on the next request:

- ``openai.chat``: text, refusal and tool calls with their raw argument text. Reasoning text is
  left out unless asked (``include_reasoning=True`` adds ``reasoning_content``: DeepSeek's
  thinking mode requires it back during tool calls, while its older reasoner and strict servers
  such as Groq reject unknown message fields).
- ``anthropic.messages``: every block in stream order; ``thinking`` blocks with their signature
  and ``redacted_thinking`` blocks unchanged must precede the ``tool_use`` they led to.
  ``tool_use.input`` is the parsed arguments object. Server-tool blocks (code execution, web
  search, MCP) are not content rxstream keeps and are not rebuilt.
- ``gemini``: parts in stream order, every ``thoughtSignature`` on the part it came with (a
  function call's, the trailing empty text part's); unsigned thought summaries are left out
  unless asked, since Gemini reads nothing from them. A signature that came on a part rxstream
  does not keep (code execution) goes back on an empty text part at its place.
- ``openai.responses``: a list of input items. Reasoning items go back with their summary,
  reasoning text and ``encrypted_content``; the API then requires the items that followed them to
  carry their own ids, and rejects those ids when their reasoning item is missing, so item ids are
  sent exactly when at least one reasoning item is. A reasoning item that cannot be resolved (the
  request said ``store: false`` and no encrypted content came, or the server gave it no id) is
  left out. Hosted-tool items (web search, code interpreter, MCP) are not kept and not rebuilt:
  to continue such a turn, send ``previous_response_id`` instead.

Adjacent text of one turn goes back as one part; Anthropic text blocks split only by server-tool
blocks or citations are joined (reading every text event's block index would cost the hot path).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rxstream._errors import JsonError

if TYPE_CHECKING:
    from rxstream._result import OutputResult, StreamResult, ToolCallResult

__all__ = ["build_assistant_message"]

# Responses calls the caller executes whose arguments are an action object, by the name the
# normalizer gives them, and the field the action goes in.
_ACTION_ITEMS = {"computer": "action", "local_shell": "action", "shell": "action", "apply_patch": "operation"}


def build_assistant_message(result: StreamResult, output: int, *, include_reasoning: bool) -> Any:
    """The assistant turn of ``result``'s output ``output`` (see ``StreamResult.assistant_message``)."""
    builder = _BUILDERS.get(result.wire or "")
    if builder is None:
        raise ValueError(
            f"cannot rebuild the assistant turn: expected a result of a known wire "
            f"({', '.join(sorted(_BUILDERS))}), got wire {result.wire!r}"
        )
    return builder(result, result.output(output), include_reasoning)


def _arguments_object(call: ToolCallResult) -> dict[str, Any]:
    """A call's raw argument text parsed into the object Anthropic and Gemini take back."""
    try:
        value = json.loads(call.arguments)
    except ValueError as exc:
        raise JsonError(
            f"tool call #{call.call_index} ({call.name!r}, id {call.id!r}): expected its arguments "
            f"to be a JSON object, got text that does not parse: {call.arguments[:200]!r}"
        ) from exc
    if not isinstance(value, dict):
        raise JsonError(
            f"tool call #{call.call_index} ({call.name!r}, id {call.id!r}): expected its arguments "
            f"to be a JSON object, got {type(value).__name__} {call.arguments[:200]!r}"
        )
    return value  # pyright: ignore[reportUnknownVariableType]


def _call(out: OutputResult, index: int | None) -> ToolCallResult:
    return next(c for c in out.tool_calls if c.call_index == index)


# -- openai.chat ----------------------------------------------------------------------------------


def _openai_chat(result: StreamResult, out: OutputResult, include_reasoning: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": out.text or None}
    if out.refusal:
        message["refusal"] = out.refusal
    if include_reasoning and out.reasoning:
        message["reasoning_content"] = out.reasoning
    if out.tool_calls:
        calls: list[dict[str, Any]] = []
        for call in out.tool_calls:
            entry: dict[str, Any] = {
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            if call.id is not None:
                entry = {"id": call.id, **entry}
            calls.append(entry)
        message["tool_calls"] = calls
    return message


# -- anthropic.messages ---------------------------------------------------------------------------


def _anthropic(result: StreamResult, out: OutputResult, include_reasoning: bool) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    for part in out.parts:
        if part.kind == "text":
            blocks.append({"type": "text", "text": part.text})
        elif part.kind == "reasoning":
            if "redacted_data" in part.meta:
                blocks.append({"type": "redacted_thinking", "data": part.meta["redacted_data"]})
            else:
                blocks.append({"type": "thinking", "thinking": part.text, "signature": part.signature or ""})
        elif part.kind == "tool_call":
            call = _call(out, part.call_index)
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": _arguments_object(call),
            }
            caller = call.meta.get("caller")
            if caller is not None:
                block["caller"] = caller
            blocks.append(block)
        elif part.text:
            # Anthropic has no refusal deltas; a compatible server's would be visible text.
            blocks.append({"type": "text", "text": part.text})
    return {"role": "assistant", "content": blocks}


# -- gemini ---------------------------------------------------------------------------------------


def _gemini(result: StreamResult, out: OutputResult, include_reasoning: bool) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    for part in out.parts:
        entry: dict[str, Any]
        if part.kind == "text":
            entry = {"text": part.text}
            if part.signature:
                entry["thoughtSignature"] = part.signature
        elif part.kind == "reasoning":
            if "part" in part.meta:
                # A signature that came on a non-thought part with nothing visible.
                if not part.signature:
                    continue
                entry = {"text": "", "thoughtSignature": part.signature}
            elif part.signature:
                entry = {"text": part.text, "thought": True, "thoughtSignature": part.signature}
            elif include_reasoning and part.text:
                entry = {"text": part.text, "thought": True}
            else:
                continue
        elif part.kind == "tool_call":
            call = _call(out, part.call_index)
            function: dict[str, Any] = {"name": call.name, "args": _arguments_object(call)}
            if call.id is not None:
                function["id"] = call.id
            entry = {"functionCall": function}
            signature = call.meta.get("thought_signature")
            if signature:
                entry["thoughtSignature"] = signature
        else:
            if not part.text:
                continue
            entry = {"text": part.text}
        parts.append(entry)
    return {"role": "model", "parts": parts}


# -- openai.responses -----------------------------------------------------------------------------


def _responses(result: StreamResult, out: OutputResult, include_reasoning: bool) -> list[dict[str, Any]]:
    stored = not (result.request is not None and result.request.get("store") is False)
    # Group the parts into items: consecutive parts of one item id make one item.
    groups: list[tuple[str, Any, list[Any]]] = []
    for part in out.parts:
        if part.kind == "tool_call":
            call = _call(out, part.call_index)
            groups.append(("call", call.meta.get("item_id"), [call]))
            continue
        kind = "reasoning" if part.kind == "reasoning" else "message"
        item = part.meta.get("item_id")
        if groups and groups[-1][0] == kind and (groups[-1][1] == item or item is None):
            groups[-1][2].append(part)
        else:
            groups.append((kind, item, [part]))
    reasoning = [_reasoning_item(item, parts, stored) for kind, item, parts in groups if kind == "reasoning"]
    with_ids = any(entry is not None for entry in reasoning)
    items: list[dict[str, Any]] = []
    reasoning_at = 0
    for kind, item, parts in groups:
        item_id = item if with_ids and isinstance(item, str) else None
        if kind == "reasoning":
            entry = reasoning[reasoning_at]
            reasoning_at += 1
            if entry is not None:
                items.append(entry)
        elif kind == "call":
            items.append(_call_item(parts[0], item if isinstance(item, str) else None, item_id))
        else:
            items.append(_message_item(parts, item_id))
    return items


def _reasoning_item(item: Any, parts: list[Any], stored: bool) -> dict[str, Any] | None:
    if not isinstance(item, str):
        return None
    summary: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    encrypted: Any = None
    for part in parts:
        meta = part.meta
        if meta.get("encrypted_content"):
            encrypted = meta["encrypted_content"]
        if part.text:
            if "summary_index" in meta:
                summary.append({"type": "summary_text", "text": part.text})
            else:
                content.append({"type": "reasoning_text", "text": part.text})
    if encrypted is None and not stored:
        return None
    entry: dict[str, Any] = {"type": "reasoning", "id": item, "summary": summary}
    if content:
        entry["content"] = content
    if encrypted is not None:
        entry["encrypted_content"] = encrypted
    return entry


def _message_item(parts: list[Any], item_id: str | None) -> dict[str, Any]:
    if item_id is None:
        text = "".join(p.text for p in parts if p.kind == "text")
        refusal = "".join(p.text for p in parts if p.kind == "refusal")
        return {"type": "message", "role": "assistant", "content": text or refusal}
    content: list[dict[str, Any]] = []
    for part in parts:
        if part.kind == "refusal":
            content.append({"type": "refusal", "refusal": part.text})
        elif content and content[-1]["type"] == "output_text":
            content[-1]["text"] += part.text
        else:
            content.append({"type": "output_text", "text": part.text, "annotations": []})
    return {"type": "message", "id": item_id, "role": "assistant", "status": "completed", "content": content}


def _call_item(call: ToolCallResult, known_id: str | None, item_id: str | None) -> dict[str, Any]:
    action_field = _ACTION_ITEMS.get(call.name)
    if known_id is not None and known_id.startswith("ct"):
        entry: dict[str, Any] = {
            "type": "custom_tool_call",
            "call_id": call.id,
            "name": call.name,
            "input": call.arguments,
        }
    elif action_field is not None and known_id is not None and not known_id.startswith("fc"):
        # Action calls (computer, shell, apply_patch) always name their item.
        entry = {"type": f"{call.name}_call", "id": known_id, "call_id": call.id, "status": "completed"}
        entry[action_field] = _arguments_object(call)
        return entry
    else:
        entry = {"type": "function_call", "call_id": call.id, "name": call.name, "arguments": call.arguments}
    if item_id is not None:
        entry["id"] = item_id
    return entry


_BUILDERS: dict[str, Callable[[StreamResult, OutputResult, bool], Any]] = {
    "anthropic.messages": _anthropic,
    "gemini": _gemini,
    "openai.chat": _openai_chat,
    "openai.responses": _responses,
}
