"""Provider sources: request building, auth and defaults for each supported API.

Each function returns a cold ``Observable[ProviderChunk]`` (see :func:`http_source`): one HTTP
request per subscription, streaming forced on, the API key taken from ``api_key=`` or the
provider's usual environment variable and sent only in a header. ``limits=``
(:class:`~rxstream.Limits`) bounds what the body decoder buffers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import httpx
from reactivex import Observable

from rxstream._chunk import ProviderChunk, Wire
from rxstream._limits import Limits
from rxstream.sources._http import HttpRequest, http_source

__all__ = [
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
