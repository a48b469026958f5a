"""Any provider LiteLLM knows, through the optional ``litellm`` extra.

``LM("litellm/anthropic/claude-3-5-haiku-latest")`` makes a ``LiteLLMLM`` for
the model ``anthropic/claude-3-5-haiku-latest``. LiteLLM is imported on the
first call, not before: install it with ``pip install 'promptless[litellm]'``.
Its retries are turned off; promptless retries with its own ``RetryPolicy``.
"""

from __future__ import annotations

import importlib
from typing import Any

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
from .base import LM
from .retry import RetryPolicy

INSTALL_HINT = "LiteLLM models need the litellm extra: pip install 'promptless[litellm]'"

# LiteLLM exception class names, most specific first, and the promptless error each becomes.
_ERROR_MAP: list[tuple[str, type[LMError]]] = [
    ("ContextWindowExceededError", ContextWindowError),
    ("AuthenticationError", LMAuthenticationError),
    ("PermissionDeniedError", LMAuthenticationError),
    ("NotFoundError", LMNotFoundError),
    ("RateLimitError", LMRateLimitError),
    ("Timeout", LMTimeoutError),
    ("APIConnectionError", LMConnectionError),
    ("BadRequestError", LMBadRequestError),
    ("ServiceUnavailableError", LMServerError),
    ("InternalServerError", LMServerError),
    ("APIError", LMServerError),
]


def _import_litellm() -> Any:
    try:
        return importlib.import_module("litellm")
    except ImportError as exc:
        raise ConfigurationError(INSTALL_HINT) from exc


class LiteLLMLM(LM):
    """A model called through ``litellm.completion``.

    ``api_key``, ``base_url`` and ``timeout`` are passed to LiteLLM; the
    sampling options and cache behave as for every LM.
    """

    provider = "litellm"
    supports_function_calling = True  # LiteLLM passes tools to every provider that takes them

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 120.0,
        retry: RetryPolicy | bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        from .openai import check_api_key

        self._api_key = check_api_key(api_key, "api_key=")
        self.base_url = base_url
        self.timeout = float(timeout)
        if retry is True:
            retry = RetryPolicy()
        elif retry is False or retry is None:
            retry = RetryPolicy.never()
        self.retry: RetryPolicy = retry

    def __repr__(self) -> str:
        return f"LiteLLMLM({self.model!r})"

    def cache_identity(self) -> dict[str, Any]:
        """Provider, model and the ``api_base`` requests go to (without user info, query or fragment)."""
        identity = super().cache_identity()
        if self.base_url:
            from urllib.parse import urlsplit

            parts = urlsplit(self.base_url)
            host = parts.netloc.rpartition("@")[2].lower()
            identity["api_base"] = f"{parts.scheme}://{host}{parts.path}".rstrip("/")
        return identity

    def _arguments(self, request: LMRequest) -> dict[str, Any]:
        args: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_dict() for m in request.messages],
            "timeout": self.timeout,
            "num_retries": 0,
        }
        for name in ("temperature", "max_tokens", "stop", "seed"):
            value = getattr(request, name)
            if value is not None:
                args[name] = value
        if request.n != 1:
            args["n"] = request.n
        if request.tools:
            args["tools"] = [dict(t) for t in request.tools]
            if request.tool_choice is not None:
                args["tool_choice"] = request.tool_choice
        if request.response_format is not None:
            args["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": request.response_format, "strict": False},
            }
        if self._api_key:
            args["api_key"] = self._api_key
        if self.base_url:
            args["api_base"] = self.base_url
        args.update(request.extra)
        return args

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _map_error(self, litellm: Any, exc: Exception) -> Exception:
        for name, target in _ERROR_MAP:
            cls = getattr(litellm, name, None)
            if isinstance(cls, type) and isinstance(exc, cls):
                message = f"LiteLLM call to model {self.model!r} failed: {self._redact(str(exc))}"
                status = getattr(exc, "status_code", None)
                kw: dict[str, Any] = {"model": self.model, "status": status if isinstance(status, int) else None}
                if target is LMRateLimitError:
                    retry_after = getattr(exc, "retry_after", None)
                    return LMRateLimitError(
                        message, retry_after=retry_after if isinstance(retry_after, (int, float)) else None, **kw
                    )
                return target(message, **kw)
        return exc

    def _to_response(self, reply: Any, litellm: Any) -> LMResponse:
        choices = _get(reply, "choices")
        if not choices:
            raise LMResponseError(f"LiteLLM reply for model {self.model!r} has no choices", model=self.model)
        texts: list[str] = []
        finish: list[str] = []
        calls: list[list[dict[str, Any]]] = []
        for choice in choices:
            message = _get(choice, "message")
            content = _get(message, "content") if message is not None else None
            texts.append(content if isinstance(content, str) else "")
            finish.append(str(_get(choice, "finish_reason") or ""))
            calls.append(_tool_calls(_get(message, "tool_calls") if message is not None else None))
        usage = Usage(calls=1)
        raw = _get(reply, "usage")
        if raw is not None:
            usage.prompt_tokens = int(_get(raw, "prompt_tokens") or 0)
            usage.completion_tokens = int(_get(raw, "completion_tokens") or 0)
        try:
            cost = litellm.completion_cost(completion_response=reply)
            usage.cost = float(cost) if cost is not None else None
        except Exception:  # unknown price: leave cost unset
            usage.cost = None
        model = str(_get(reply, "model") or self.model)
        return LMResponse(texts=texts, usage=usage, model=model, finish_reasons=finish,
                          tool_calls=calls if any(calls) else [])

    def complete(self, request: LMRequest) -> LMResponse:
        litellm = _import_litellm()
        args = self._arguments(request)

        def once() -> LMResponse:
            mapped: Exception | None = None
            try:
                reply = litellm.completion(**args)
            except Exception as exc:
                mapped = self._map_error(litellm, exc)
                if mapped is exc:
                    raise
            if mapped is not None:  # raised outside the except block: LiteLLM's exception is not kept as context
                raise mapped
            return self._to_response(reply, litellm)

        return self.retry.run(once)

    async def acomplete(self, request: LMRequest) -> LMResponse:
        litellm = _import_litellm()
        args = self._arguments(request)

        async def once() -> LMResponse:
            mapped: Exception | None = None
            try:
                reply = await litellm.acompletion(**args)
            except Exception as exc:
                mapped = self._map_error(litellm, exc)
                if mapped is exc:
                    raise
            if mapped is not None:
                raise mapped
            return self._to_response(reply, litellm)

        return await self.retry.arun(once)


def _tool_calls(raw: Any) -> list[dict[str, Any]]:
    """LiteLLM's tool calls (objects or dicts in OpenAI's shape) as ``{"id", "name", "args"}``."""
    import json

    out = []
    for call in raw or []:
        fn = _get(call, "function")
        name = _get(fn, "name") if fn is not None else None
        if not isinstance(name, str) or not name:
            continue
        args: Any = _get(fn, "arguments")
        if isinstance(args, str):
            try:
                decoded = json.loads(args) if args.strip() else {}
            except ValueError:
                decoded = None
            args = decoded if isinstance(decoded, dict) else args
        call_id = _get(call, "id")
        out.append({"id": call_id if isinstance(call_id, str) else None, "name": name,
                    "args": args if args is not None else {}})
    return out


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


__all__ = ["INSTALL_HINT", "LiteLLMLM"]
