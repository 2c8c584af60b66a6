"""Provider sources: request building, auth and defaults for each supported API, and resuming them.

Each function returns a cold ``Observable[ProviderChunk]`` (see :func:`http_source`): one HTTP
request per subscription, streaming forced on, the API key taken from ``api_key=`` or the
provider's usual environment variable and sent only in a header. ``limits=``
(:class:`~rxstream.Limits`) bounds what the body decoder buffers. :class:`ResumeLink` rebuilds
the request of a stream that failed after content, for ``retry(after_content="resume")``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

import httpx
from reactivex import Observable, abc

from rxstream._chunk import ProviderChunk, Wire
from rxstream._limits import Limits
from rxstream.sources._http import HttpRequest, http_source

__all__ = [
    "ResumeLink",
    "ResumePlan",
    "anthropic_messages",
    "gemini",
    "openai_chat",
    "openai_compatible",
    "openai_responses",
    "xai_chat",
]

OPENAI_BASE_URL = "https://api.openai.com/v1"
XAI_BASE_URL = "https://api.x.ai/v1"
ANTHROPIC_BASE_URL = "https://api.anthropic.com"
GEMINI_BASE_URL = "https://generativelanguage.googleapis.com"
ANTHROPIC_VERSION = "2023-06-01"


def _key(api_key: str | None, *env_names: str, required: bool = True) -> str | None:
    if api_key:
        return api_key
    for name in env_names:
        value = os.environ.get(name)
        if value:
            return value
    if required:
        raise ValueError(f"no API key: pass api_key= or set {' or '.join(env_names)}")
    return None


def _source(
    *,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    extra_headers: Mapping[str, str] | None,
    wire: Wire,
    provider: str,
    client: httpx.AsyncClient | None,
    timeout: float | httpx.Timeout | None,
    params: Mapping[str, str] | None = None,
    framing: Literal["sse", "json"] = "sse",
    info: dict[str, Any] | None = None,
    limits: Limits | None = None,
) -> Observable[ProviderChunk]:
    if extra_headers:
        headers.update(extra_headers)
    headers.setdefault("accept", "application/json" if framing == "json" else "text/event-stream")
    request = HttpRequest(
        url=url,
        body=body,
        headers=headers,
        wire=wire,
        provider=provider,
        framing=framing,
        params=params or {},
        info=info,
    )
    return http_source(request, client=client, timeout=timeout, limits=limits)


def _chat_body(
    model: str, messages: Sequence[Mapping[str, Any]], include_usage: bool, params: dict[str, Any]
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": list(messages), **params, "stream": True}
    if include_usage:
        options = dict(body.get("stream_options") or {})
        options.setdefault("include_usage", True)
        body["stream_options"] = options
    return body


def _chat(
    *,
    root: str,
    auth: dict[str, str],
    provider: str,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    include_usage: bool,
    params: dict[str, Any],
    headers: Mapping[str, str] | None,
    client: httpx.AsyncClient | None,
    timeout: float | httpx.Timeout | None,
    query: Mapping[str, str] | None = None,
    limits: Limits | None = None,
) -> Observable[ProviderChunk]:
    """One Chat Completions request to any OpenAI-style server."""
    return _source(
        url=f"{root.rstrip('/')}/chat/completions",
        body=_chat_body(model, messages, include_usage, params),
        headers=auth,
        extra_headers=headers,
        wire="openai.chat",
        provider=provider,
        client=client,
        timeout=timeout,
        params=query,
        limits=limits,
    )


def openai_chat(
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    api_key: str | None = None,
    base_url: str | None = None,
    client: httpx.AsyncClient | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | httpx.Timeout | None = None,
    include_usage: bool = True,
    limits: Limits | None = None,
    **params: Any,
) -> Observable[ProviderChunk]:
    """OpenAI Chat Completions, streamed (``POST {base_url}/chat/completions``).

    ``params`` are the API's own request fields (``tools``, ``response_format``, ``temperature``,
    ...). Usage is requested (``stream_options.include_usage``) unless ``include_usage=False``.
    The key comes from ``api_key`` or ``OPENAI_API_KEY``; ``base_url`` from the argument,
    ``OPENAI_BASE_URL`` or the public API. Cold: each subscription is one (paid) request; share
    it with ``share()``.

    Errors:
        ``ValueError`` at call time when no key is found; then those of :func:`http_source`.
    """
    key = _key(api_key, "OPENAI_API_KEY")
    return _chat(
        root=base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL,
        auth={"authorization": f"Bearer {key}"},
        provider="openai",
        model=model,
        messages=messages,
        include_usage=include_usage,
        params=params,
        headers=headers,
        client=client,
        timeout=timeout,
        limits=limits,
    )


def xai_chat(
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    api_key: str | None = None,
    base_url: str | None = None,
    client: httpx.AsyncClient | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | httpx.Timeout | None = None,
    include_usage: bool = True,
    limits: Limits | None = None,
    **params: Any,
) -> Observable[ProviderChunk]:
    """xAI (Grok) chat completions, OpenAI-compatible (``POST https://api.x.ai/v1/chat/completions``).

    The key comes from ``api_key`` or ``XAI_API_KEY``. Otherwise as :func:`openai_chat`.

    Errors:
        ``ValueError`` at call time when no key is found; then those of :func:`http_source`.
    """
    key = _key(api_key, "XAI_API_KEY")
    return _chat(
        root=base_url or XAI_BASE_URL,
        auth={"authorization": f"Bearer {key}"},
        provider="xai",
        model=model,
        messages=messages,
        include_usage=include_usage,
        params=params,
        headers=headers,
        client=client,
        timeout=timeout,
        limits=limits,
    )


def openai_compatible(
    *,
    base_url: str,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    api_key: str | None = None,
    api_key_env: str | None = None,
    provider: str = "openai-compatible",
    auth: Literal["bearer", "api-key", "none"] = "bearer",
    api_version: str | None = None,
    client: httpx.AsyncClient | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | httpx.Timeout | None = None,
    include_usage: bool = True,
    limits: Limits | None = None,
    **params: Any,
) -> Observable[ProviderChunk]:
    """Any OpenAI-compatible chat server: Ollama, vLLM, Groq, Mistral, DeepSeek, OpenRouter, Azure.

    ``POST {base_url}/chat/completions``. The key is optional (local servers need none): from
    ``api_key`` or the environment variable ``api_key_env`` names. Azure: ``auth="api-key"`` sends
    it in an ``api-key`` header and ``api_version`` adds the ``api-version`` query, with
    ``base_url`` the deployment URL (``https://R.openai.azure.com/openai/deployments/D``). Servers
    that reject ``stream_options`` take ``include_usage=False``.

    Errors:
        Those of :func:`http_source`.
    """
    key = _key(api_key, api_key_env, required=False) if api_key_env else api_key
    auth_headers: dict[str, str] = {}
    if key and auth == "bearer":
        auth_headers["authorization"] = f"Bearer {key}"
    elif key and auth == "api-key":
        auth_headers["api-key"] = key
    return _chat(
        root=base_url,
        auth=auth_headers,
        provider=provider,
        model=model,
        messages=messages,
        include_usage=include_usage,
        params=params,
        headers=headers,
        client=client,
        timeout=timeout,
        query={"api-version": api_version} if api_version else None,
        limits=limits,
    )


def openai_responses(
    *,
    model: str,
    input: str | Sequence[Mapping[str, Any]],
    api_key: str | None = None,
    base_url: str | None = None,
    provider: str = "openai",
    client: httpx.AsyncClient | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | httpx.Timeout | None = None,
    limits: Limits | None = None,
    **params: Any,
) -> Observable[ProviderChunk]:
    """The OpenAI Responses API, streamed (``POST {base_url}/responses``).

    ``params`` are the API's own fields (``instructions``, ``tools``, ``text``, ``reasoning``, ...).
    The key comes from ``api_key`` or ``OPENAI_API_KEY``. Compatible servers (Azure, xAI,
    DeepSeek, OpenRouter, LM Studio) take ``base_url=`` and ``provider=``.

    Errors:
        ``ValueError`` at call time when no key is found; then those of :func:`http_source`.
    """
    key = _key(api_key, "OPENAI_API_KEY")
    root = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL).rstrip("/")
    body: dict[str, Any] = {
        "model": model,
        "input": input if isinstance(input, str) else list(input),
        **params,
        "stream": True,
    }
    return _source(
        url=f"{root}/responses",
        body=body,
        headers={"authorization": f"Bearer {key}"},
        extra_headers=headers,
        wire="openai.responses",
        provider=provider,
        client=client,
        timeout=timeout,
        limits=limits,
    )


def anthropic_messages(
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    max_tokens: int = 1024,
    api_key: str | None = None,
    base_url: str | None = None,
    version: str = ANTHROPIC_VERSION,
    client: httpx.AsyncClient | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | httpx.Timeout | None = None,
    limits: Limits | None = None,
    **params: Any,
) -> Observable[ProviderChunk]:
    """Anthropic Messages, streamed (``POST {base_url}/v1/messages``).

    ``params`` are the API's own fields (``system``, ``tools``, ``thinking``, ``temperature``,
    ...). The key comes from ``api_key`` or ``ANTHROPIC_API_KEY`` and goes in ``x-api-key``.

    Errors:
        ``ValueError`` at call time when no key is found; then those of :func:`http_source`.
    """
    key = _key(api_key, "ANTHROPIC_API_KEY")
    root = (base_url or os.environ.get("ANTHROPIC_BASE_URL") or ANTHROPIC_BASE_URL).rstrip("/")
    body: dict[str, Any] = {
        "model": model,
        "messages": list(messages),
        "max_tokens": max_tokens,
        **params,
        "stream": True,
    }
    return _source(
        url=f"{root}/v1/messages",
        body=body,
        headers={"x-api-key": key or "", "anthropic-version": version},
        extra_headers=headers,
        wire="anthropic.messages",
        provider="anthropic",
        client=client,
        timeout=timeout,
        limits=limits,
    )


def gemini(
    *,
    model: str,
    contents: str | Sequence[Mapping[str, Any]],
    api_key: str | None = None,
    base_url: str | None = None,
    sse: bool = True,
    client: httpx.AsyncClient | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | httpx.Timeout | None = None,
    limits: Limits | None = None,
    **params: Any,
) -> Observable[ProviderChunk]:
    """Google Gemini ``streamGenerateContent`` (``?alt=sse`` by default; ``sse=False`` streams the
    JSON-array body).

    ``contents`` is the API's list of contents, or a plain prompt string. ``params`` are the API's
    own fields (``generationConfig``, ``systemInstruction``, ``tools``, ...). The key comes from
    ``api_key``, ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY`` and goes in the ``x-goog-api-key``
    header, never in the URL.

    Errors:
        ``ValueError`` at call time when no key is found; then those of :func:`http_source`.
    """
    key = _key(api_key, "GEMINI_API_KEY", "GOOGLE_API_KEY")
    root = (base_url or os.environ.get("GEMINI_BASE_URL") or GEMINI_BASE_URL).rstrip("/")
    if isinstance(contents, str):
        body_contents: list[Any] = [{"role": "user", "parts": [{"text": contents}]}]
    else:
        body_contents = list(contents)
    body: dict[str, Any] = {"contents": body_contents, **params}
    return _source(
        url=f"{root}/v1beta/models/{model}:streamGenerateContent",
        body=body,
        headers={"x-goog-api-key": key or ""},
        extra_headers=headers,
        wire="gemini",
        provider="google",
        client=client,
        timeout=timeout,
        params={"alt": "sse"} if sse else None,
        framing="sse" if sse else "json",
        info={"model": model, **body},
        limits=limits,
    )


# -- resuming a stream that failed after content (retry(after_content="resume")) ----------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ResumePlan:
    """How the next subscription continues a stream: the request to send, and what it gives.

    ``"replay"``: the provider serves the rest of the same response (an OpenAI background
    response after a sequence number); the source first re-emits the chunks it delivered, so
    ``normalize()`` rebuilds its state, and ``retry()`` drops the events they give again.
    ``"continue"``: a new response continues the delivered text (an Anthropic prefilled
    assistant turn); ``retry()`` drops its ``stream.start`` and joins it to the stream.
    """

    mode: Literal["replay", "continue"]
    request: HttpRequest


class ResumeLink:
    """The :class:`~rxstream.sources._http.SourceHook` of one ``retry(after_content="resume")``
    subscription: logs the chunks of the HTTP source upstream, and resumes it when told.

    ``retry()`` calls :meth:`begin` before each attempt (with the plan to carry out, or ``None``
    for a fresh request), then :meth:`plan` when an attempt fails after content.
    """

    def __init__(self) -> None:
        self._request: HttpRequest | None = None
        self._chunks: list[ProviderChunk] = []
        self._next: ResumePlan | None = None
        self.attached = 0
        """HTTP sources subscribed during the current attempt (resume needs exactly one)."""
        self.completed = False
        """The source's response ended whole (what failed came after it: nothing to resume)."""

    def begin(self, plan: ResumePlan | None) -> None:
        """A new attempt starts: it carries out ``plan``, or sends the request afresh."""
        self._next = plan
        self.attached = 0
        self.completed = False
        if plan is None:
            self._chunks = []

    def attach(
        self, request: HttpRequest, observer: abc.ObserverBase[ProviderChunk]
    ) -> tuple[HttpRequest, abc.ObserverBase[ProviderChunk]]:
        self.attached += 1
        plan, self._next = self._next, None
        if plan is None:
            self._request = request
            return request, _Logged(observer, self._chunks, self)
        if plan.mode == "replay":
            return plan.request, _Replayed(observer, self._chunks, self)
        return plan.request, _Logged(observer, self._chunks, self)

    def plan(self, *, text: str, text_only: bool, provider_error: bool) -> ResumePlan | str:
        """How to resume after a failure, or why it cannot be resumed.

        Args:
            text: the answer text delivered so far (output 0).
            text_only: whether every content event delivered was answer text.
            provider_error: whether the provider itself reported the failure in the stream.
        """
        request = self._request
        if request is None or self.attached != 1:
            return (
                "no rxstream HTTP source upstream to resume"
                if request is None or self.attached == 0
                else f"{self.attached} HTTP sources upstream: resume needs exactly one"
            )
        if self.completed:
            return "the HTTP source's response had ended: the failure came after it"
        if request.wire == "openai.responses":
            return _resume_response(request, self._chunks, provider_error)
        if request.wire == "anthropic.messages":
            return _prefill_turn(request, self._chunks, text, text_only)
        return f"{request.wire} offers no way to resume a stream"


class _Logged(abc.ObserverBase[ProviderChunk]):
    """Passes chunks on and keeps them (a resume needs what was delivered)."""

    __slots__ = ("_chunks", "_link", "_observer")

    def __init__(self, observer: abc.ObserverBase[ProviderChunk], chunks: list[ProviderChunk], link: ResumeLink) -> None:
        self._observer = observer
        self._chunks = chunks
        self._link = link

    def on_next(self, value: ProviderChunk) -> None:
        self._chunks.append(value)
        self._observer.on_next(value)

    def on_error(self, error: Exception) -> None:
        self._observer.on_error(error)

    def on_completed(self) -> None:
        self._link.completed = True
        self._observer.on_completed()


class _Replayed(_Logged):
    """At the resumed response's head, re-emits the chunks delivered before (their open chunk
    first) instead of its own open chunk; then passes and keeps the new chunks."""

    __slots__ = ("_replayed",)

    def __init__(self, observer: abc.ObserverBase[ProviderChunk], chunks: list[ProviderChunk], link: ResumeLink) -> None:
        super().__init__(observer, chunks, link)
        self._replayed = False

    def on_next(self, value: ProviderChunk) -> None:
        if not self._replayed:
            self._replayed = True
            for chunk in list(self._chunks):
                self._observer.on_next(chunk)
            if value.kind == "open":
                return
        super().on_next(value)


def _payload(chunk: ProviderChunk) -> dict[str, Any] | None:
    data: Any = chunk.data
    return cast(dict[str, Any], data) if chunk.kind == "data" and isinstance(data, dict) else None


def _resume_response(request: HttpRequest, chunks: Sequence[ProviderChunk], provider_error: bool) -> ResumePlan | str:
    """``GET {url}/{id}?stream=true&starting_after=N``: the rest of a background response."""
    if request.body.get("background") is not True:
        return "an OpenAI Responses stream resumes only as a background response: send background=True"
    if provider_error:
        return "the response itself failed: resuming it would end the same way"
    response_id: str | None = None
    last: int | None = None
    for chunk in chunks:
        payload = _payload(chunk)
        if payload is None:
            continue
        number = payload.get("sequence_number")
        if isinstance(number, int) and not isinstance(number, bool):
            last = number
        response: Any = payload.get("response")
        if response_id is None and isinstance(response, dict):
            found: Any = cast(dict[str, Any], response).get("id")
            if isinstance(found, str) and found:
                response_id = found
    if response_id is None:
        return "no response id arrived before the failure"
    if last is None:
        return "no sequence_number arrived before the failure"
    resumed = dataclasses.replace(
        request,
        url=f"{request.url.rstrip('/')}/{response_id}",
        method="GET",
        body={},
        params={**request.params, "stream": "true", "starting_after": str(last)},
        info=request.info if request.info is not None else request.body,
    )
    return ResumePlan("replay", resumed)


def _prefill_turn(request: HttpRequest, chunks: Sequence[ProviderChunk], text: str, text_only: bool) -> ResumePlan | str:
    """The request again with the delivered text as a prefilled assistant turn."""
    thinking: Any = request.body.get("thinking")
    if isinstance(thinking, dict) and cast(dict[str, Any], thinking).get("type") not in (None, "disabled"):
        return "extended thinking is on, and Anthropic accepts no prefilled assistant turn with it"
    if not text_only:
        return "the turn is not text only (reasoning or a tool call was delivered): a prefill cannot continue it"
    for chunk in chunks:
        payload = _payload(chunk)
        if payload is not None and payload.get("type") == "content_block_start":
            block: Any = payload.get("content_block")
            if not isinstance(block, dict) or cast(dict[str, Any], block).get("type") != "text":
                return "the turn has a block that is not text (a tool use): a prefill cannot continue it"
    messages: list[Any] = list(request.body.get("messages") or [])
    prefill = text
    if messages and isinstance(messages[-1], dict) and cast(dict[str, Any], messages[-1]).get("role") == "assistant":
        # The request already prefilled the turn: the answer continues that text.
        own = _plain_text(cast(dict[str, Any], messages[-1]).get("content"))
        if own is None:
            return "the request ends with an assistant turn that is not plain text"
        prefill = own + text
        messages.pop()
    # Anthropic rejects a final assistant turn that ends in whitespace.
    prefill = prefill.rstrip()
    if not prefill:
        return "no text was delivered to continue from"
    messages.append({"role": "assistant", "content": prefill})
    body = {**request.body, "messages": messages}
    return ResumePlan("continue", dataclasses.replace(request, body=body))


def _plain_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for block in cast(list[Any], content):
            if not isinstance(block, dict) or cast(dict[str, Any], block).get("type") != "text":
                return None
            part: Any = cast(dict[str, Any], block).get("text")
            if not isinstance(part, str):
                return None
            parts.append(part)
        return "".join(parts)
    return None
