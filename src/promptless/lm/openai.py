"""OpenAI and OpenAI-compatible servers (vLLM, llama.cpp's server, Ollama, ...).

``OpenAILM("gpt-4o-mini")`` talks to the OpenAI API with ``OPENAI_API_KEY``;
``OpenAILM("qwen", base_url="http://127.0.0.1:8080/v1")`` talks to a local
server, which needs no key (no Authorization header is sent without one).

Calls go through pooled httpx clients (one sync, one async per event loop),
created on first use; ``close()`` or ``with OpenAILM(...) as lm:`` releases
them. Failures become the errors in ``promptless.errors``; the retryable ones
(timeouts, dropped connections, 408/409/429/5xx, malformed replies) are
retried by ``retry`` (a ``RetryPolicy``). The API key never appears in an
error message, a log line or ``repr(lm)``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import weakref
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..errors import (
    ConfigurationError,
    ContextWindowError,
    LMAuthenticationError,
    LMBadRequestError,
    LMConnectionError,
    LMError,
    LMNotFoundError,
    LMRateLimitError,
    LMResponseError,
    LMServerError,
    LMTimeoutError,
)
from ..types import LMRequest, LMResponse, Usage
from .base import BaseLM
from .retry import RetryPolicy, parse_retry_after

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_PATH = "/chat/completions"

_CONTEXT_RE = re.compile(
    r"context[ _]length|maximum context|context window|context size|too many tokens|context_length_exceeded|"
    r"prompt is too long",
    re.IGNORECASE,
)
_BEARER_RE = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)


class _Secret:
    """Holds the API key so that ``repr``/``vars`` of the LM never show it."""

    __slots__ = ("value",)

    def __init__(self, value: str | None) -> None:
        self.value = value or None

    def __repr__(self) -> str:
        return "_Secret('***')" if self.value else "_Secret(None)"

    def __bool__(self) -> bool:
        return bool(self.value)


def _display_url(url: str) -> str:
    """``url`` without user info, query or fragment (which may hold credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class OpenAILM(BaseLM):
    """A chat model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    Options besides the ``BaseLM`` ones (``temperature``, ``max_tokens``,
    ``cache``, ``max_concurrency``, ...):

    - ``base_url``: the API root, default ``$OPENAI_BASE_URL`` or the OpenAI API.
    - ``api_key``: default ``$OPENAI_API_KEY``; none for a local server.
    - ``timeout``: seconds for one HTTP request (default 120).
    - ``retry``: a ``RetryPolicy``; ``False`` for a single attempt.
    - ``price``: ``(input_per_million, output_per_million)`` in your currency,
      to fill ``usage.cost``.
    - ``supports_structured_output``: send ``response_format`` JSON schemas
      (default True; turn off for servers that reject them).
    - ``supports_grammar``: the server takes a GBNF ``grammar`` field (llama.cpp's
      servers do); adapters then send one built from the signature, so even a
      tiny model can only reply in the expected format (default False).
    - ``headers``: extra HTTP headers.
    - ``transport``: an httpx transport (e.g. ``httpx.MockTransport``) for
      tests; used by the async client too when it supports async.
    """

    provider = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        retry: RetryPolicy | bool = True,
        price: tuple[float, float] | None = None,
        supports_structured_output: bool = True,
        supports_grammar: bool = False,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        base = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        if not base.startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must start with http:// or https://, got {_display_url(base)!r}")
        self.base_url = base.rstrip("/")
        self._key = _Secret(api_key if api_key is not None else os.environ.get("OPENAI_API_KEY"))
        self.timeout = float(timeout)
        if retry is True:
            retry = RetryPolicy()
        elif retry is False or retry is None:
            retry = RetryPolicy.never()
        self.retry: RetryPolicy = retry
        if price is not None:
            if len(price) != 2:
                raise ConfigurationError("price must be (input_per_million_tokens, output_per_million_tokens)")
            price = (float(price[0]), float(price[1]))
        self.price = price
        self.supports_structured_output = supports_structured_output
        self.supports_grammar = supports_grammar
        self.extra_headers = dict(headers or {})
        self._transport = transport
        self._client: httpx.Client | None = None
        self._aclients: dict[int, tuple[weakref.ref[asyncio.AbstractEventLoop], httpx.AsyncClient]] = {}
        self._client_lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------
    @property
    def has_api_key(self) -> bool:
        return bool(self._key)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.extra_headers}
        if self._key.value:
            headers["Authorization"] = f"Bearer {self._key.value}"
        return headers

    def _limits(self) -> httpx.Limits:
        n = self.max_concurrency or 64
        return httpx.Limits(max_connections=n, max_keepalive_connections=n)

    @property
    def client(self) -> httpx.Client:
        """The pooled sync client, created on first use."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    transport = self._transport if isinstance(self._transport, httpx.BaseTransport) else None
                    self._client = httpx.Client(
                        base_url=self.base_url,
                        headers=self._headers(),
                        timeout=httpx.Timeout(self.timeout),
                        limits=self._limits(),
                        transport=transport,
                    )
        return self._client

    def _aclient(self) -> httpx.AsyncClient:
        """The async client of the running event loop (an async client cannot cross loops)."""
        loop = asyncio.get_running_loop()
        with self._client_lock:
            entry = self._aclients.get(id(loop))
            if entry is not None and entry[0]() is loop:
                return entry[1]
            # Forget clients of loops that are gone.
            self._aclients = {k: v for k, v in self._aclients.items() if v[0]() is not None}
            transport = self._transport if isinstance(self._transport, httpx.AsyncBaseTransport) else None
            client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=self._headers(),
                timeout=httpx.Timeout(self.timeout),
                limits=self._limits(),
                transport=transport,
            )
            self._aclients[id(loop)] = (weakref.ref(loop), client)
            return client

    def close(self) -> None:
        """Release the HTTP connections. The LM can still be used afterwards (it reconnects)."""
        with self._client_lock:
            client, self._client = self._client, None
            aclients, self._aclients = self._aclients, {}
        if client is not None:
            client.close()
        for ref, aclient in aclients.values():
            loop = ref()
            if loop is None or loop.is_closed():
                continue
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            try:
                if running is loop:
                    loop.create_task(aclient.aclose())
                elif not loop.is_running():
                    loop.run_until_complete(aclient.aclose())
            except Exception:  # best effort: the connections go with the client when it is collected
                pass

    async def aclose(self) -> None:
        """Release the HTTP connections, from async code."""
        loop = asyncio.get_running_loop()
        with self._client_lock:
            entry = self._aclients.pop(id(loop), None)
        if entry is not None:
            await entry[1].aclose()
        self.close()

    def __enter__(self) -> OpenAILM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> OpenAILM:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"OpenAILM({self.model!r}, base_url={_display_url(self.base_url)!r})"

    def redact(self, text: str) -> str:
        """``text`` with the API key (and any bearer token) masked."""
        key = self._key.value
        if key:
            text = text.replace(key, "***")
        return _BEARER_RE.sub(r"\1***", text)

    # -- request and reply --------------------------------------------------------
    def payload(self, request: LMRequest) -> dict[str, Any]:
        """The JSON body of the ``/chat/completions`` request."""
        body: dict[str, Any] = {"model": self.model, "messages": [m.to_dict() for m in request.messages]}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.n != 1:
            body["n"] = request.n
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        if request.response_format is not None and self.supports_structured_output:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": request.response_format, "strict": False},
            }
        if request.grammar is not None:
            body["grammar"] = request.grammar  # llama.cpp's server reads this; others ignore or reject it
        body.update(request.extra)
        return body

    def _where(self) -> str:
        return f"POST {_display_url(self.base_url + _PATH)}"

    def _error(self, response: httpx.Response) -> LMError:
        """The error for a non-2xx reply."""
        status = response.status_code
        server_msg, code = _server_message(response)
        server_msg = self.redact(server_msg)
        reason = response.reason_phrase or ""
        head = f"{status} {reason}".strip()
        detail = f"server said: {server_msg}" if server_msg else "the server gave no error message"
        base = f"{head} from {self._where()} for model {self.model!r}; {detail}"
        kw: dict[str, Any] = {"status": status, "model": self.model}
        if status == 400 or status == 413 or status == 422:
            if _CONTEXT_RE.search(server_msg) or code == "context_length_exceeded":
                return ContextWindowError(
                    base + ". The prompt does not fit the model's context window: shorten the inputs, "
                    "use fewer demonstrations, or lower max_tokens.",
                    **kw,
                )
            return LMBadRequestError(base + ". The server rejected the request as sent.", **kw)
        if status in (401, 403):
            hint = (
                "no API key was set: set OPENAI_API_KEY or pass api_key=..."
                if not self._key
                else "check OPENAI_API_KEY / api_key (and that the key may use this model)"
            )
            return LMAuthenticationError(f"{base}. {hint}", **kw)
        if status == 404:
            return LMNotFoundError(
                f"{base}. Unknown model or wrong base_url: check the model name and that base_url "
                f"({_display_url(self.base_url)}) is the API root (usually ending in /v1).",
                **kw,
            )
        if status == 408:
            return LMTimeoutError(base + ". The server timed out the request.", **kw)
        if status == 429:
            retry_after = _retry_after(response)
            err = LMRateLimitError(
                base + ". Rate limited; lower max_concurrency or wait.", retry_after=retry_after, **kw
            )
            if code == "insufficient_quota":
                err.retryable = False  # out of credit: waiting will not help
            return err
        if status == 409 or status >= 500:
            return LMServerError(base + ". The server failed; this is usually temporary.", **kw)
        return LMBadRequestError(base, **kw)

    def _parse(self, response: httpx.Response) -> LMResponse:
        if not 200 <= response.status_code < 300:
            raise self._error(response)
        try:
            data = response.json()
        except ValueError as exc:
            raise LMResponseError(
                f"{response.status_code} from {self._where()} for model {self.model!r} was not valid JSON "
                f"({exc}); body starts: {self.redact(response.text[:200])!r}",
                status=response.status_code,
                model=self.model,
            ) from None
        return self.parse_reply(data, status=response.status_code)

    def parse_reply(self, data: Any, *, status: int = 200) -> LMResponse:
        """An ``LMResponse`` from a decoded ``/chat/completions`` reply."""
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices:
            raise LMResponseError(
                f"{status} from {self._where()} for model {self.model!r} has no choices; "
                f"reply starts: {self.redact(json.dumps(data)[:200])!r}",
                status=status,
                model=self.model,
            )
        texts: list[str] = []
        finish: list[str] = []
        ordered = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
        for choice in ordered:
            message = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(message, dict):
                raise LMResponseError(
                    f"{status} from {self._where()} for model {self.model!r}: a choice has no message",
                    status=status,
                    model=self.model,
                )
            content = message.get("content")
            texts.append(content if isinstance(content, str) else "")
            finish.append(str(choice.get("finish_reason") or ""))
        usage = Usage(calls=1)
        raw_usage = data.get("usage")
        if isinstance(raw_usage, dict):
            usage.prompt_tokens = _int(raw_usage.get("prompt_tokens"))
            usage.completion_tokens = _int(raw_usage.get("completion_tokens"))
        if self.price is not None:
            usage.cost = (usage.prompt_tokens * self.price[0] + usage.completion_tokens * self.price[1]) / 1e6
        return LMResponse(texts=texts, usage=usage, model=str(data.get("model") or self.model), finish_reasons=finish)

    def _transport_error(self, exc: httpx.TransportError) -> LMError:
        what = self.redact(str(exc)) or type(exc).__name__
        kw: dict[str, Any] = {"model": self.model}
        if isinstance(exc, httpx.TimeoutException):
            return LMTimeoutError(
                f"no reply within {self.timeout:g} s from {self._where()} for model {self.model!r} "
                f"({type(exc).__name__}: {what}); raise timeout=... for slow models",
                **kw,
            )
        return LMConnectionError(
            f"connection to {self._where()} failed for model {self.model!r} ({type(exc).__name__}: {what}); "
            "check that the server is running and base_url is right",
            **kw,
        )

    # -- the seam -------------------------------------------------------------------
    def _once(self, body: dict[str, Any]) -> LMResponse:
        try:
            response = self.client.post(_PATH, json=body)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from None
        return self._parse(response)

    async def _aonce(self, body: dict[str, Any]) -> LMResponse:
        try:
            response = await self._aclient().post(_PATH, json=body)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from None
        return self._parse(response)

    def complete(self, request: LMRequest) -> LMResponse:
        body = self.payload(request)
        return self.retry.run(lambda: self._once(body))

    async def acomplete(self, request: LMRequest) -> LMResponse:
        body = self.payload(request)
        return await self.retry.arun(lambda: self._aonce(body))


def _server_message(response: httpx.Response) -> tuple[str, str | None]:
    """The server's error message and code, from an OpenAI-style error body or plain text."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
        return (text[:500] + ("..." if len(text) > 500 else "")), None
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        msg = err.get("message") or err.get("detail") or err.get("error") or ""
        code = err.get("code") or err.get("type")
        return str(msg)[:1000], (str(code) if code is not None else None)
    return str(err)[:1000], None


def _retry_after(response: httpx.Response) -> float | None:
    ms = response.headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    return parse_retry_after(response.headers.get("retry-after"))


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


__all__ = ["DEFAULT_BASE_URL", "OpenAILM"]
