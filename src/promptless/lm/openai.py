"""OpenAI and OpenAI-compatible servers (vLLM, llama.cpp's server, Ollama, ...).

``OpenAILM("gpt-4o-mini")`` talks to the OpenAI API with ``OPENAI_API_KEY``;
``OpenAILM("qwen", base_url="http://127.0.0.1:8080/v1")`` talks to a local
server, which needs no key (no Authorization header is sent without one).

Calls go through pooled httpx clients (one sync, one async per event loop),
created on first use; ``close()`` or ``with OpenAILM(...) as lm:`` releases
them. Failures become the errors in ``promptless.errors``; the retryable ones
(timeouts, dropped connections, 408/409/429/5xx, malformed replies) are
retried by ``retry`` (a ``RetryPolicy``). The API key never appears in an
error message, a log line or ``repr(lm)``; a key that cannot be sent as it is
(a trailing newline, a non-ASCII character) is a ``ConfigurationError`` at
construction.

``timeout`` is a deadline for the whole HTTP request (connecting, sending,
waiting and reading the reply), not a bound on each read: a reply that trickles
in byte by byte ends at the deadline as an ``LMTimeoutError``.

Structured output: a JSON schema (``request.response_format``) is sent as
``response_format: {"type": "json_schema", ...}``. A server that refuses that
(llama-cpp-python's server answers 500, vLLM and Ollama 400 when they cannot
take a schema) is not failing for a moment: its refusal is read once, the LM
remembers it for that server and model, and the same call is sent at once in
the next form the server may take: ``{"type": "json_object", "schema": ...}``,
then a GBNF ``grammar`` built from the schema, then the prompt alone. A
refused ``grammar`` field is dropped the same way. No refused request is sent
twice.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import re
import threading
import time
import weakref
from typing import Any

import httpcore
import httpx

from ..errors import (
    ConfigurationError,
    LMConnectionError,
    LMError,
    LMResponseError,
    LMTimeoutError,
)
from ..types import LMRequest, LMResponse, Usage
from ._http import (
    CHAT_PATH,
    CONTEXT_RE,
    DEFAULT_BASE_URL,
    Secret,
    auth_headers,
    base_url_from,
    display_url,
    redact,
    server_message,
    server_param,
    status_error,
)
from .base import LM
from .retry import RetryPolicy

logger = logging.getLogger("promptless.lm")

# The forms a JSON schema is sent in, most precise first; a server's refusal moves an LM down this list.
STRUCTURED_OUTPUT_MODES = ("json_schema", "json_object", "grammar", "none")

# Statuses with which servers refuse a request field they do not take: 400/422 (vLLM, Ollama, OpenAI,
# LM Studio), 500 (llama-cpp-python's server wraps its validation error in a 500), 501.
_REFUSAL_STATUSES = frozenset({400, 422, 500, 501})
_REFUSAL_RE = {
    "response_format": re.compile(
        r"response[_ ]?format|json[_ ]?schema|json[_ ]?object|\bschema\b|invalid format|guided|structured output",
        re.IGNORECASE,
    ),
    "grammar": re.compile(r"(?<![a-z])grammar", re.IGNORECASE),
    # llama.cpp's server without --jinja, vLLM without --enable-auto-tool-choice, models without a tool template
    "tools": re.compile(r"(?<![a-z])tools?(?![a-z])|tool[_ ]choice|function[_ ]call|--jinja", re.IGNORECASE),
}


class _RefusedError(Exception):
    """A server refused a request field (``feature``); ``error`` is what the caller sees if nothing is left."""

    def __init__(self, feature: str, error: LMError, body: dict[str, Any]) -> None:
        super().__init__(feature)
        self.feature = feature
        self.error = error
        self.body = body


def check_api_key(value: Any, source: str) -> str | None:
    """``value`` if it can be sent as a bearer token, ``None`` for no key; else a ``ConfigurationError``.

    The message names the problem and where the key came from, never any part of the key.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"the API key from {source} must be a string, not {type(value).__name__}")
    problem = None
    if value != value.strip():
        edge = "ends" if value[-1].isspace() else "starts"
        ch = value[-1] if edge == "ends" else value[0]
        what = "a newline" if ch in "\r\n" else "a space" if ch == " " else "whitespace"
        problem = f"{edge} with {what} (often left by reading the key from a file): remove it"
    elif any(ord(ch) > 126 for ch in value):
        problem = "holds a non-ASCII character (a typographic quote or dash pasted with it?): copy the key again"
    elif any(ord(ch) < 33 or ord(ch) == 127 for ch in value):
        problem = "holds whitespace or a control character inside it: copy the key again"
    if problem:
        raise ConfigurationError(f"the API key from {source} {problem}. The key is not shown here.")
    return value


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ConfigurationError(f"headers must map strings to strings; header {name!r} does not")
        if not name or any(ord(ch) <= 32 or ord(ch) > 126 or ch == ":" for ch in name):
            raise ConfigurationError(f"header name {name!r} is not a valid HTTP header name")
        if value != value.strip() or any(ord(ch) < 32 or ord(ch) > 126 for ch in value):
            raise ConfigurationError(
                f"the value of header {name!r} has whitespace at an end, a control character or a non-ASCII "
                "character, which HTTP cannot carry; the value is not shown here"
            )
    return headers


# -- the request deadline ----------------------------------------------------------------
# httpx's timeouts bound each network operation, so a reply that sends a byte just often enough never
# times out. The sync client's connection pool gets a network backend whose every connect, read and write
# waits at most until the deadline of the request in progress (a context variable set around the
# request); the async client runs the request under asyncio.wait_for.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("promptless_request_deadline", default=None)


def _bound(timeout: float | None, error: type[Exception]) -> float | None:
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise error("the request ran past its deadline (timeout=... bounds the whole request)")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bound(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bound(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _bound(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, _bound(timeout, httpcore.ConnectTimeout), local_address,
                                         socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, _bound(timeout, httpcore.ConnectTimeout), socket_options)
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _install_deadline(client: httpx.Client) -> int:
    """Put the deadline backend under every connection pool of ``client``; the number of pools changed.

    httpx builds its pools itself (with the environment's proxies), so the backend is swapped in after.
    A transport given by the caller (``httpx.MockTransport``) has no pool and is left as it is.
    """
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    changed = 0
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend) and not isinstance(backend, _DeadlineBackend):
            pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
            changed += 1
    return changed


def schema_grammar(schema: Any) -> str | None:
    """A GBNF grammar for the JSON object ``schema`` describes, or ``None`` when it is not a flat object.

    Each property becomes a field of ``grammar.json_grammar``: strings, integers, numbers, booleans,
    string enums (labels), any of them or null (``Optional``), and anything else as any JSON value.
    """
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return None
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        return None
    from ..adapters.grammar import json_grammar

    specs: list[tuple[str, str, list[str] | None]] = []
    for name, prop in props.items():
        optional = False
        if isinstance(prop, dict) and isinstance(prop.get("anyOf"), list):
            options = [p for p in prop["anyOf"] if not (isinstance(p, dict) and p.get("type") == "null")]
            optional = len(options) < len(prop["anyOf"])
            prop = options[0] if len(options) == 1 else {}
        kind, choices = _grammar_kind(prop)
        specs.append((str(name), kind + ("?" if optional and kind != "json" else ""), choices))
    try:
        return json_grammar(specs)
    except ConfigurationError:
        return None


def _grammar_kind(prop: Any) -> tuple[str, list[str] | None]:
    if not isinstance(prop, dict):
        return "json", None
    enum = prop.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        return "literal", list(enum)
    if "const" in prop and isinstance(prop["const"], str):
        return "literal", [prop["const"]]
    kind = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}.get(str(prop.get("type")))
    return (kind, None) if kind and enum is None else ("json", None)


class OpenAILM(LM):
    """A chat model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    Options besides the ``BaseLM`` ones (``temperature``, ``max_tokens``,
    ``cache``, ``max_concurrency``, ...):

    - ``base_url``: the API root, default ``$OPENAI_BASE_URL`` or the OpenAI API.
    - ``api_key``: default ``$OPENAI_API_KEY``; none for a local server.
    - ``timeout``: seconds one HTTP request may take from start to end (default 120).
    - ``retry``: a ``RetryPolicy``; ``False`` for a single attempt.
    - ``price``: ``(input_per_million, output_per_million)`` in your currency,
      to fill ``usage.cost``.
    - ``supports_structured_output``: send JSON schemas the adapters ask for
      (default True: as ``json_schema``, stepping down on the server's first
      refusal); ``False`` never sends them; one of ``STRUCTURED_OUTPUT_MODES``
      (``"json_object"``, ...) starts there.
    - ``supports_grammar``: the server takes a GBNF ``grammar`` field (llama.cpp's
      servers do); adapters then send one built from the signature, so even a
      tiny model can only reply in the expected format (default False).
    - ``supports_function_calling``: a ``pl.ToolCalls`` output is filled through
      the server's native function calling (``tools`` in the request,
      ``tool_calls`` in the reply; default True). A server that refuses
      ``tools`` is remembered, and the adapters use the text protocol for it.
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
        supports_structured_output: bool | str = True,
        supports_grammar: bool = False,
        supports_function_calling: bool = True,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        self.base_url = base_url_from(base_url)
        if api_key is not None:
            key = check_api_key(api_key, "api_key=")
        else:
            key = check_api_key(os.environ.get("OPENAI_API_KEY"), "$OPENAI_API_KEY")
        self._key = Secret(key)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigurationError(f"timeout must be a number of seconds above 0, got {timeout!r}")
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
        if supports_structured_output is True:
            mode = STRUCTURED_OUTPUT_MODES[0]
        elif supports_structured_output is False:
            mode = "none"
        elif supports_structured_output in STRUCTURED_OUTPUT_MODES:
            mode = str(supports_structured_output)
        else:
            raise ConfigurationError(
                f"supports_structured_output must be True, False or one of {', '.join(STRUCTURED_OUTPUT_MODES)}; "
                f"got {supports_structured_output!r}"
            )
        self.supports_structured_output = mode != "none"
        self._first_mode = mode
        # What each model at this base_url was found to refuse: the structured-output mode it takes now,
        # and whether it refused a grammar field. Learned from the server's first refusal, kept for this LM.
        self._modes: dict[str, str] = {}
        self._no_grammar: set[str] = set()
        self._learn_lock = threading.Lock()
        self.supports_grammar = supports_grammar
        self._function_calling = bool(supports_function_calling)
        self._no_tools: set[str] = set()  # models at this base_url that refused a tools field
        self.extra_headers = _check_headers(dict(headers or {}))
        self._transport = transport
        self._client: httpx.Client | None = None
        self._aclients: dict[int, tuple[weakref.ref[asyncio.AbstractEventLoop], httpx.AsyncClient]] = {}
        self._client_lock = threading.Lock()

    @property
    def supports_function_calling(self) -> bool:
        """Whether adapters may ask this LM for native tool calls (off once its server refused ``tools``)."""
        return self._function_calling and self.model not in self._no_tools

    # -- plumbing ---------------------------------------------------------------
    @property
    def has_api_key(self) -> bool:
        return bool(self._key)

    def _headers(self) -> dict[str, str]:
        return auth_headers(self._key, self.extra_headers)

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
                    client = httpx.Client(
                        base_url=self.base_url,
                        headers=self._headers(),
                        timeout=httpx.Timeout(self.timeout),
                        limits=self._limits(),
                        transport=transport,
                    )
                    _install_deadline(client)
                    self._client = client
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
        return f"OpenAILM({self.model!r}, base_url={display_url(self.base_url)!r})"

    def cache_identity(self) -> dict[str, Any]:
        """Provider, model, the endpoint (no user info, query or fragment) and what changes the body sent."""
        identity = super().cache_identity()
        shown = self.__dict__.get("_cache_base_url")  # (base_url, its display form): urlsplit costs µs per call
        if shown is None or shown[0] != self.base_url:
            shown = self.__dict__["_cache_base_url"] = (self.base_url, display_url(self.base_url).rstrip("/"))
        identity["base_url"] = shown[1]
        # The configured way schemas are sent (json_schema, json_object, grammar, none): it shapes the reply.
        identity["structured_output"] = getattr(self, "_first_mode", self.supports_structured_output)
        # Extra headers may route or change the request; those that may carry credentials are left out.
        headers = {
            k.lower(): v
            for k, v in self.extra_headers.items()
            if not any(word in k.lower() for word in ("auth", "key", "token", "secret", "cookie", "session"))
        }
        if headers:
            identity["headers"] = headers
        return identity

    def redact(self, text: str) -> str:
        """``text`` with the API key (and any bearer token) masked."""
        return redact(text, self._key)

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
        model = str(request.extra.get("model", self.model))
        grammar_ok = model not in self._no_grammar
        if request.grammar is not None and grammar_ok:
            body["grammar"] = request.grammar  # llama.cpp's servers read this; others ignore or refuse it
        schema = request.response_format
        if schema is not None and self.supports_structured_output:
            mode = self.structured_output_mode(model)
            if mode == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": schema, "strict": False},
                }
            elif mode == "json_object":  # llama-cpp-python's server constrains the reply to the schema
                body["response_format"] = {"type": "json_object", "schema": schema}
            elif mode == "grammar" and grammar_ok and "grammar" not in body:
                grammar = schema_grammar(schema)
                if grammar is not None:
                    body["grammar"] = grammar
        if request.tools:
            body["tools"] = [dict(t) for t in request.tools]
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
            if request.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        body.update(request.extra)
        return body

    def structured_output_mode(self, model: str | None = None) -> str:
        """How a JSON schema is sent to ``model`` (default: this LM's) now: one of ``STRUCTURED_OUTPUT_MODES``."""
        if not self.supports_structured_output:
            return "none"
        return self._modes.get(model or self.model, self._first_mode)

    def _refusal(self, body: dict[str, Any], response: httpx.Response) -> str | None:
        """The request field this error reply refuses (``"response_format"`` or ``"grammar"``), if any."""
        if response.status_code not in _REFUSAL_STATUSES:
            return None
        sent = [f for f in ("response_format", "grammar", "tools") if f in body]
        if not sent:
            return None
        message, code = server_message(response)
        param = server_param(response)
        text = " ".join(x for x in (message, code or "", param or "") if x)
        if CONTEXT_RE.search(text):
            return None
        for feature in sent:
            if param == feature or _REFUSAL_RE[feature].search(text):
                return feature
        return None

    def _learn(self, body: dict[str, Any], refused: _RefusedError) -> None:
        """Remember what the server refused, so that neither this request nor a later one asks it again."""
        model = str(body.get("model"))
        if refused.feature == "tools":
            with self._learn_lock:
                self._no_tools.add(model)
            logger.info("%s refused native tool calls for model %r (%s); the adapters use their text protocol "
                        "for it from now on", display_url(self.base_url), model, _first_line(str(refused.error)))
            error = refused.error
            error.retryable = False
            error.refused = "tools"
            raise error
        with self._learn_lock:
            before = self.structured_output_mode(model)
            if refused.feature == "grammar":
                self._no_grammar.add(model)
                if before == "grammar":
                    self._modes[model] = "none"
            else:
                sent = body["response_format"].get("type") if isinstance(body["response_format"], dict) else None
                step = STRUCTURED_OUTPUT_MODES.index(sent) + 1 if sent in STRUCTURED_OUTPUT_MODES else len(
                    STRUCTURED_OUTPUT_MODES) - 1
                if step == STRUCTURED_OUTPUT_MODES.index("grammar") and model in self._no_grammar:
                    step += 1
                if step > STRUCTURED_OUTPUT_MODES.index(before):  # another thread may have gone further already
                    self._modes[model] = STRUCTURED_OUTPUT_MODES[step]
            after = self.structured_output_mode(model)
        what = "a grammar field" if refused.feature == "grammar" else f"response_format {body['response_format']!r:.60}"
        logger.info(
            "%s refused %s for model %r (%s); sending %s from now on, without asking again",
            display_url(self.base_url), what, model, _first_line(str(refused.error)),
            "no grammar" if refused.feature == "grammar" and after != "none" else
            ("the prompt alone" if after == "none" else f"the schema as {after}"),
        )

    def _where(self) -> str:
        return f"POST {display_url(self.base_url + CHAT_PATH)}"

    def _error(self, response: httpx.Response) -> LMError:
        """The error for a non-2xx reply."""
        return status_error(
            response, where=self._where(), model=self.model, key=self._key, base_url=self.base_url,
            too_long="The prompt does not fit the model's context window: shorten the inputs, use fewer "
                     "demonstrations, or lower max_tokens.",
            rate_limited="lower max_concurrency or wait",
        )

    def _parse(self, response: httpx.Response) -> LMResponse:
        if not 200 <= response.status_code < 300:
            raise self._error(response)
        problem = None
        try:
            data = response.json()
        except (ValueError, RecursionError) as exc:  # not JSON, or nested past what the parser takes
            problem = f"{type(exc).__name__}: {str(exc)[:100]}"
        if problem is not None:  # raised outside the except block: no server text rides along as __context__
            raise LMResponseError(
                f"{response.status_code} from {self._where()} for model {self.model!r} was not valid JSON "
                f"({problem}); body starts: {self.redact(response.text[:200])!r}",
                status=response.status_code,
                model=self.model,
            )
        return self.parse_reply(data, status=response.status_code)

    def _bad_reply(self, status: int, what: str) -> LMResponseError:
        return LMResponseError(
            f"{status} from {self._where()} for model {self.model!r} does not follow the chat completions "
            f"protocol: {what}",
            status=status,
            model=self.model,
        )

    def parse_reply(self, data: Any, *, status: int = 200) -> LMResponse:
        """An ``LMResponse`` from a decoded ``/chat/completions`` reply."""
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices:
            try:
                shown = json.dumps(data)[:200]
            except (TypeError, ValueError, RecursionError):
                shown = type(data).__name__
            raise LMResponseError(
                f"{status} from {self._where()} for model {self.model!r} has no choices; "
                f"reply starts: {self.redact(shown)!r}",
                status=status,
                model=self.model,
            )
        keyed: list[tuple[int, int, dict[str, Any]]] = []
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                raise self._bad_reply(status, f"choice {position} is a {type(choice).__name__}, not an object")
            index = choice.get("index", position)
            if isinstance(index, bool) or not isinstance(index, int):
                raise self._bad_reply(
                    status, f"choice {position} has index {self.redact(repr(index)[:40])}, not a whole number"
                )
            keyed.append((index, position, choice))
        texts: list[str] = []
        finish: list[str] = []
        calls: list[list[dict[str, Any]]] = []
        for _, _, choice in sorted(keyed, key=lambda item: (item[0], item[1])):
            message = choice.get("message")
            if not isinstance(message, dict):
                raise LMResponseError(
                    f"{status} from {self._where()} for model {self.model!r}: a choice has no message",
                    status=status,
                    model=self.model,
                )
            content = message.get("content")
            texts.append(content if isinstance(content, str) else "")
            calls.append(self._tool_calls(message.get("tool_calls"), status))
            reason = choice.get("finish_reason")
            finish.append(reason if isinstance(reason, str) else "")
        usage = Usage(calls=1)
        raw_usage = data.get("usage")
        if isinstance(raw_usage, dict):
            usage.prompt_tokens = _int(raw_usage.get("prompt_tokens"))
            usage.completion_tokens = _int(raw_usage.get("completion_tokens"))
        if self.price is not None:
            usage.cost = (usage.prompt_tokens * self.price[0] + usage.completion_tokens * self.price[1]) / 1e6
        model = data.get("model")
        return LMResponse(
            texts=texts, usage=usage, model=model if isinstance(model, str) and model else self.model,
            finish_reasons=finish, tool_calls=calls if any(calls) else [],
        )

    def _tool_calls(self, raw: Any, status: int) -> list[dict[str, Any]]:
        """A reply message's ``tool_calls`` as ``{"id", "name", "args"}``; ``args`` is the decoded JSON object
        (the arguments text as it came when it is not one: reading it is the adapter's to refuse)."""
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise self._bad_reply(status, f"tool_calls is a {type(raw).__name__}, not a list")
        out = []
        for i, call in enumerate(raw):
            fn = call.get("function") if isinstance(call, dict) else None
            name = fn.get("name") if isinstance(fn, dict) else None
            if not isinstance(name, str) or not name:
                raise self._bad_reply(status, f"tool call {i} has no function name")
            args: Any = fn.get("arguments") if isinstance(fn, dict) else None
            if isinstance(args, str):
                try:
                    decoded = json.loads(args) if args.strip() else {}
                except (ValueError, RecursionError):
                    from ..adapters.parsing import parse_json_text

                    try:
                        decoded = parse_json_text(args)
                    except (ValueError, RecursionError):
                        decoded = None
                args = decoded if isinstance(decoded, dict) else args
            elif args is None:
                args = {}
            call_id = call.get("id")
            out.append({"id": call_id if isinstance(call_id, str) else None, "name": name, "args": args})
        return out

    def _transport_error(self, exc: httpx.TransportError) -> LMError:
        what = self.redact(str(exc)) or type(exc).__name__
        kw: dict[str, Any] = {"model": self.model}
        if isinstance(exc, httpx.TimeoutException):
            return LMTimeoutError(
                f"no reply within {self.timeout:g} s from {self._where()} for model {self.model!r} "
                f"({type(exc).__name__}: {what}); timeout=... bounds the whole request, reply included: raise it "
                "for slow models or long replies",
                **kw,
            )
        return LMConnectionError(
            f"connection to {self._where()} failed for model {self.model!r} ({type(exc).__name__}: {what}); "
            "check that the server is running and base_url is right",
            **kw,
        )

    # -- the seam -------------------------------------------------------------------
    def _once(self, body: dict[str, Any]) -> LMResponse:
        """One HTTP request under the deadline ``timeout`` sets; a refused request field raises ``_RefusedError``."""
        token = _DEADLINE.set(time.monotonic() + self.timeout)
        failure: httpx.TransportError | None = None
        try:
            response = self.client.post(CHAT_PATH, json=body)
        except httpx.TransportError as exc:
            failure = exc
        finally:
            _DEADLINE.reset(token)
        if failure is not None:  # raised outside the except block: the httpx error is not kept as __context__
            raise self._transport_error(failure)
        return self._reply(body, response)

    async def _aonce(self, body: dict[str, Any]) -> LMResponse:
        failure: httpx.TransportError | None = None
        try:
            response = await asyncio.wait_for(self._aclient().post(CHAT_PATH, json=body), timeout=self.timeout)
        except httpx.TransportError as exc:
            failure = exc
        except asyncio.TimeoutError:
            failure = httpx.ReadTimeout("the request ran past its deadline (timeout=... bounds the whole request)")
        if failure is not None:
            raise self._transport_error(failure)
        return self._reply(body, response)

    def _reply(self, body: dict[str, Any], response: httpx.Response) -> LMResponse:
        if not 200 <= response.status_code < 300:
            feature = self._refusal(body, response)
            if feature is not None:
                raise _RefusedError(feature, self._error(response), body)
        return self._parse(response)

    def _send(self, request: LMRequest) -> LMResponse:
        """The request in the best form the server takes; a refusal is learned and the call sent again at once,
        in the next form. The identical request is never sent twice for a refusal. A refused ``tools`` field
        is learned and raised: the prompt was written for native tool calls, so the adapter asks again in its
        text protocol."""
        refused: list[_RefusedError] = []
        while True:
            body = self._next_body(request, refused)
            try:
                return self._once(body)
            except _RefusedError as exc:
                refused.append(exc)
            self._learn(body, refused[-1])

    async def _asend(self, request: LMRequest) -> LMResponse:
        refused: list[_RefusedError] = []
        while True:
            body = self._next_body(request, refused)
            try:
                return await self._aonce(body)
            except _RefusedError as exc:
                refused.append(exc)
            self._learn(body, refused[-1])

    def _next_body(self, request: LMRequest, refused: list[_RefusedError]) -> dict[str, Any]:
        body = self.payload(request)
        if refused and (body == refused[-1].body or len(refused) > len(STRUCTURED_OUTPUT_MODES)):
            error = refused[-1].error
            error.retryable = False  # a refusal does not pass by asking again
            raise error
        return body

    def complete(self, request: LMRequest) -> LMResponse:
        return self.retry.run(lambda: self._send(request))

    async def acomplete(self, request: LMRequest) -> LMResponse:
        return await self.retry.arun(lambda: self._asend(request))

    # -- streaming (server-sent events) -----------------------------------------------
    def stream_complete(self, request: LMRequest, on_chunk: Any) -> LMResponse:
        """The call with ``"stream": true``: each piece of the reply's text goes to ``on_chunk`` as the server
        sends it. Failures are retried as for ``complete`` until the first piece has gone out, not after."""
        sent = [False]

        def chunk(text: str) -> None:
            sent[0] = True
            on_chunk(text)

        def attempt() -> LMResponse:
            try:
                return self._stream_send(request, chunk)
            except LMError as exc:
                if sent[0]:
                    exc.retryable = False  # the caller has seen part of this reply: asking again would repeat it
                raise

        return self.retry.run(attempt)

    def _stream_send(self, request: LMRequest, chunk: Any) -> LMResponse:
        refused: list[_RefusedError] = []
        while True:
            body = self._next_body(request, refused)
            try:
                return self._stream_once(body, chunk)
            except _RefusedError as exc:
                refused.append(exc)
            self._learn(body, refused[-1])

    def _stream_once(self, body: dict[str, Any], chunk: Any) -> LMResponse:
        sent = {**body, "stream": True}
        if not self.__dict__.get("_no_stream_options"):
            sent["stream_options"] = {"include_usage": True}
        token = _DEADLINE.set(time.monotonic() + self.timeout)
        failure: httpx.TransportError | None = None
        try:
            with self.client.stream("POST", CHAT_PATH, json=sent) as response:
                if not 200 <= response.status_code < 300:
                    response.read()
                    if "stream_options" in sent and response.status_code in (400, 422) and \
                            "stream_options" in response.text:
                        self._no_stream_options = True  # a server that refuses it: usage is then not counted
                        return self._stream_once(body, chunk)
                    feature = self._refusal(body, response)
                    if feature is not None:
                        raise _RefusedError(feature, self._error(response), body)
                    raise self._error(response)
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    response.read()  # a server that answers in one piece
                    resp = self._parse(response)
                    if resp.texts:
                        chunk(resp.texts[0])
                    return resp
                return self._read_events(response, chunk)
        except httpx.TransportError as exc:
            failure = exc
        finally:
            _DEADLINE.reset(token)
        assert failure is not None
        raise self._transport_error(failure)

    def _read_events(self, response: httpx.Response, chunk: Any) -> LMResponse:
        """The reply from a stream of ``data: {...}`` events (chat completion chunks), ending at ``[DONE]``."""
        parts: list[str] = []
        finish = ""
        usage = Usage(calls=1)
        counted = False
        model = self.model
        for raw in response.iter_lines():
            line = raw.strip()
            if not line.startswith("data:"):
                continue  # blank lines between events, comments (":"), event names
            data = line[5:].strip()
            if data == "[DONE]":
                break
            problem = None
            try:
                event = json.loads(data)
            except (ValueError, RecursionError) as exc:
                problem = f"{type(exc).__name__}: {str(exc)[:100]}"
            if problem is not None:
                raise LMResponseError(
                    f"a streamed event from {self._where()} for model {self.model!r} was not valid JSON ({problem}); "
                    f"it starts: {self.redact(data[:200])!r}", status=response.status_code, model=self.model)
            if not isinstance(event, dict):
                continue
            if "error" in event:
                shown = json.dumps(event["error"])[:300]
                raise LMResponseError(
                    f"{self._where()} reported an error in the middle of a streamed reply for model "
                    f"{self.model!r}: {self.redact(shown)}", status=response.status_code, model=self.model)
            for choice in event.get("choices") or ():
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or {}
                content = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(content, str) and content:
                    parts.append(content)
                    chunk(content)
                if isinstance(choice.get("finish_reason"), str):
                    finish = choice["finish_reason"]
            raw_usage = event.get("usage")
            if isinstance(raw_usage, dict):
                counted = True
                usage.prompt_tokens = _int(raw_usage.get("prompt_tokens"))
                usage.completion_tokens = _int(raw_usage.get("completion_tokens"))
            if isinstance(event.get("model"), str) and event["model"]:
                model = event["model"]
        if not counted:  # a server that sends no usage when streaming (llama-cpp-python's): one token a piece
            usage.completion_tokens = len(parts)
        if self.price is not None:
            usage.cost = (usage.prompt_tokens * self.price[0] + usage.completion_tokens * self.price[1]) / 1e6
        return LMResponse(texts=["".join(parts)], usage=usage, model=model, finish_reasons=[finish or "stop"])

    def score_continuations(self, messages: Any, prefix: str, candidates: Any, **options: Any) -> Any:
        """Candidates scored from the reply's ``top_logprobs`` at the first token that tells them apart, or
        ``method="generation"`` with the reply when the server gives none (``lm/logprobs.py``)."""
        from .logprobs import run_scoring, score_openai

        top = int(options.pop("top_logprobs", 20))
        return run_scoring(self, messages, prefix, candidates,
                           lambda msgs, pre, cands: score_openai(self, msgs, pre, cands, top_logprobs=top),
                           options={"top_logprobs": top}, **options)

def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 200 else line[:200] + "..."


def _int(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError, OverflowError):
        return 0


__all__ = ["DEFAULT_BASE_URL", "STRUCTURED_OUTPUT_MODES", "OpenAILM", "check_api_key", "schema_grammar"]
