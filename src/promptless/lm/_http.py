"""What the OpenAI-compatible HTTP clients share: ``openai.py`` (chat completions, and label scoring through
``logprobs.py``) and ``../embeddings.py`` (the embeddings endpoint).

- where requests go: ``DEFAULT_BASE_URL``, ``base_url_from`` (the argument, else ``$OPENAI_BASE_URL``, checked),
  the endpoints' paths;
- keys: ``Secret`` holds one so that ``repr`` and ``vars`` never show it; ``auth_headers`` sends it; ``redact``
  masks it (and any bearer token) in a text; ``display_url`` is a URL as messages show it, without the user
  info, query and fragment that may hold credentials;
- failures: ``server_message`` and ``server_param`` read an OpenAI-style error body (or a plain-text one),
  ``retry_after`` how long a reply asks to wait, and ``status_error`` maps a non-2xx reply to its ``LMError``
  class with a message that says what to do.

Private to the package: the names may change.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import (
    ConfigurationError,
    ContextWindowError,
    LMAuthenticationError,
    LMBadRequestError,
    LMError,
    LMNotFoundError,
    LMRateLimitError,
    LMServerError,
    LMTimeoutError,
)
from .retry import parse_retry_after

if TYPE_CHECKING:
    import httpx

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: The chat completions endpoint, below the server's base URL.
CHAT_PATH = "/chat/completions"
#: The embeddings endpoint, below the server's base URL.
EMBEDDINGS_PATH = "/embeddings"

#: What servers say when a prompt does not fit the context window.
CONTEXT_RE = re.compile(
    r"context[ _]length|maximum context|context window|context size|too many tokens|context_length_exceeded|"
    r"prompt is too long",
    re.IGNORECASE,
)
_BEARER_RE = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)


class Secret:
    """Holds the API key so that ``repr``/``vars`` of the client never show it."""

    __slots__ = ("value",)

    def __init__(self, value: str | None) -> None:
        self.value = value or None

    def __repr__(self) -> str:
        return "_Secret('***')" if self.value else "_Secret(None)"

    def __bool__(self) -> bool:
        return bool(self.value)


def base_url_from(base_url: str | None) -> str:
    """The server's base URL: ``base_url``, else ``$OPENAI_BASE_URL``, else OpenAI's; without a trailing ``/``."""
    base = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    if not base.startswith(("http://", "https://")):
        raise ConfigurationError(f"base_url must start with http:// or https://, got {display_url(base)!r}")
    return base.rstrip("/")


def auth_headers(key: Secret, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The headers of a JSON request: ``extra``, and the key as a bearer token when there is one."""
    headers = {"Content-Type": "application/json", **(extra or {})}
    if key.value:
        headers["Authorization"] = f"Bearer {key.value}"
    return headers


def redact(text: str, key: Secret | None) -> str:
    """``text`` with the API key (and any bearer token) masked."""
    if key is not None and key.value:
        text = text.replace(key.value, "***")
    return _BEARER_RE.sub(r"\1***", text)


def display_url(url: str) -> str:
    """``url`` without user info, query or fragment (which may hold credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _error_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


def server_message(response: httpx.Response) -> tuple[str, str | None]:
    """The server's error message and code, from an OpenAI-style error body or plain text."""
    data = _error_body(response)
    if data is None:
        text = response.text.strip()
        return (text[:500] + ("..." if len(text) > 500 else "")), None
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        msg = err.get("message") or err.get("detail") or err.get("error") or ""
        code = err.get("code") or err.get("type")
        return str(msg)[:1000], (str(code) if code is not None else None)
    return str(err)[:1000], None


def server_param(response: httpx.Response) -> str | None:
    """The request field an OpenAI-style error names (``"param": "response_format"``), if any."""
    data = _error_body(response)
    err = data.get("error", data) if isinstance(data, dict) else None
    param = err.get("param") if isinstance(err, dict) else None
    return param if isinstance(param, str) else None


def retry_after(response: httpx.Response) -> float | None:
    """The seconds the reply asks to wait before trying again (``Retry-After-Ms``, else ``Retry-After``)."""
    ms = response.headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    return parse_retry_after(response.headers.get("retry-after"))


def status_error(response: httpx.Response, *, where: str, model: str, key: Secret, base_url: str,
                 what: str = "model", too_long: str, rate_limited: str) -> LMError:
    """The error for a non-2xx reply from ``where`` (``POST <url>``) about ``what`` ``model``.

    One class per kind of failure (the retry policy and ``Evaluate`` tell them apart): a prompt too long for
    the context (``ContextWindowError``, saying ``too_long``), another refused request, credentials, an unknown
    model or URL, a timeout, a rate limit (with the wait the server asks for, and never retried when the
    account has no quota left; saying ``rate_limited``), a server failure. The key never appears."""
    status = response.status_code
    server_msg, code = server_message(response)
    server_msg = redact(server_msg, key)
    reason = response.reason_phrase or ""
    head = f"{status} {reason}".strip()
    detail = f"server said: {server_msg}" if server_msg else "the server gave no error message"
    base = f"{head} from {where} for {what} {model!r}; {detail}"
    kw: dict[str, Any] = {"status": status, "model": model}
    if status == 400 or status == 413 or status == 422:
        if CONTEXT_RE.search(server_msg) or code == "context_length_exceeded":
            return ContextWindowError(f"{base}. {too_long}", **kw)
        return LMBadRequestError(base + ". The server rejected the request as sent.", **kw)
    if status in (401, 403):
        hint = (
            "no API key was set: set OPENAI_API_KEY or pass api_key=..."
            if not key
            else "check OPENAI_API_KEY / api_key (and that the key may use this model)"
        )
        return LMAuthenticationError(f"{base}. {hint}", **kw)
    if status == 404:
        return LMNotFoundError(
            f"{base}. Unknown model or wrong base_url: check the model name and that base_url "
            f"({display_url(base_url)}) is the API root (usually ending in /v1).",
            **kw,
        )
    if status == 408:
        return LMTimeoutError(base + ". The server timed out the request.", **kw)
    if status == 429:
        err = LMRateLimitError(f"{base}. Rate limited; {rate_limited}.", retry_after=retry_after(response), **kw)
        if code == "insufficient_quota":
            err.retryable = False  # out of credit: waiting will not help
        return err
    if status == 409 or status >= 500:
        return LMServerError(base + ". The server failed; this is usually temporary.", **kw)
    return LMBadRequestError(base, **kw)


__all__ = [
    "CHAT_PATH",
    "CONTEXT_RE",
    "DEFAULT_BASE_URL",
    "EMBEDDINGS_PATH",
    "Secret",
    "auth_headers",
    "base_url_from",
    "display_url",
    "redact",
    "retry_after",
    "server_message",
    "server_param",
    "status_error",
]
