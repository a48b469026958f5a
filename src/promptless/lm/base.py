"""The LM seam.

A backend implements one method, ``complete(request) -> LMResponse`` (and
optionally ``acomplete`` for native async). Everything else that every LM
needs lives here once: merging default sampling parameters, the cache, usage
totals, the bounded call history and the concurrency limit.

Callers use ``lm.request(messages, **params)`` (an ``LMResponse``) or, as in
DSPy, ``lm(prompt)`` / ``lm(messages=[...])`` (a list of strings).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, ScoringNotSupportedError
from ..types import LMRequest, LMResponse, Message, Usage
from . import usage as _usage
from .calllog import format_calls, record

if TYPE_CHECKING:
    from .cache import Cache

_REQUEST_FIELDS = {"temperature", "max_tokens", "n", "stop", "seed", "response_format", "grammar", "rollout_id",
                   "tools", "tool_choice"}

_cache_key_fn: Any = None  # cache.cache_key, once the first key is made


def to_messages(messages: Any = None, prompt: str | None = None) -> list[Message]:
    if prompt is not None:
        if messages is not None:
            raise ConfigurationError("pass either prompt or messages, not both")
        return [Message("user", prompt)]
    if messages is None:
        raise ConfigurationError("an LM call needs a prompt string or a list of messages")
    out: list[Message] = []
    for m in messages:
        if isinstance(m, Message):
            out.append(m)
        elif isinstance(m, dict) and "role" in m and "content" in m:
            out.append(_message(m))
        else:
            raise ConfigurationError(f"a message must be a Message or a dict with role and content, got {m!r}")
    return out


def _message(m: dict[str, Any]) -> Message:
    """A message given as a dict; content as OpenAI content parts keeps them (with their text as content)."""
    content = m["content"]
    if isinstance(content, list) and all(isinstance(p, dict) and "type" in p for p in content):
        text = "".join(str(p.get("text", "")) if p["type"] == "text" else f"<{p['type']}>" for p in content)
        return Message(str(m["role"]), text, tuple(dict(p) for p in content))
    return Message(str(m["role"]), str(content))


class BaseLM:
    """Base class of every LM backend."""

    provider: str = "base"

    def __init__(
        self,
        model: str,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        cache: bool | Cache = True,
        history_size: int = 200,
        max_concurrency: int | None = None,
        **defaults: Any,
    ) -> None:
        self.model = model
        self.defaults: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
        unknown = set(defaults) - _REQUEST_FIELDS
        if unknown:
            raise ConfigurationError(
                f"unknown LM option(s) {', '.join(sorted(unknown))}; "
                f"sampling options are: {', '.join(sorted(_REQUEST_FIELDS))}"
            )
        self.defaults.update(defaults)
        self._cache_setting = cache
        self._cache: Cache | None = None
        self.history: deque[dict[str, Any]] = deque(maxlen=history_size)
        self.usage = Usage()
        self._lock = threading.Lock()
        self.max_concurrency = max_concurrency
        self._sem = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None
        self._asems: dict[int, Any] = {}  # one asyncio.Semaphore per event loop

    # -- to implement -------------------------------------------------------
    def complete(self, request: LMRequest) -> LMResponse:  # pragma: no cover - abstract
        raise NotImplementedError

    async def acomplete(self, request: LMRequest) -> LMResponse:
        import asyncio

        return await asyncio.to_thread(self.complete, request)

    # -- shared machinery ---------------------------------------------------
    @property
    def kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.defaults.items() if v is not None}

    @property
    def cache(self) -> Cache | None:
        if self._cache_setting is False:
            return None
        if self._cache is None:
            from .cache import Cache, default_cache

            self._cache = self._cache_setting if isinstance(self._cache_setting, Cache) else default_cache()
        return self._cache

    def build_request(self, messages: list[Message], params: dict[str, Any]) -> LMRequest:
        merged = {k: v for k, v in self.defaults.items() if v is not None}
        extra = {}
        for k, v in params.items():
            if k in _REQUEST_FIELDS:
                if v is not None:
                    merged[k] = v
            else:
                extra[k] = v
        if extra:
            raise ConfigurationError(
                f"unknown LM option(s) {', '.join(sorted(extra))}; "
                f"sampling options are: {', '.join(sorted(_REQUEST_FIELDS))}"
            )
        if isinstance(merged.get("stop"), str):
            merged["stop"] = [merged["stop"]]
        return LMRequest(messages=messages, **merged)

    def cache_identity(self) -> dict[str, Any]:
        """What, besides the request itself, decides the reply: part of every cache key.

        The provider and model here; backends add where the request goes (without
        credentials) and the client settings that change what is sent or produced.
        A backend that names no ``provider`` is told apart by its class.
        """
        identity: dict[str, Any] = {"provider": self.provider, "model": self.model}
        if self.provider == BaseLM.provider:
            identity["class"] = f"{type(self).__module__}.{type(self).__qualname__}"
        return identity

    def _cache_key(self, request: LMRequest) -> str:
        global _cache_key_fn
        if _cache_key_fn is None:  # imported on first use: the cache module pulls in sqlite3
            from .cache import cache_key

            _cache_key_fn = cache_key
        return _cache_key_fn(self.cache_identity(), request)

    def _lookup(self, request: LMRequest, use_cache: bool) -> tuple[str | None, LMResponse | None]:
        cache = self.cache if use_cache else None
        if cache is None:
            return None, None
        key = self._cache_key(request)
        hit = cache.get(key)
        if hit is None:
            return key, None
        try:
            resp = LMResponse.from_dict(hit)
        except (KeyError, TypeError, ValueError, AttributeError):  # a row of another shape: treat as a miss
            return key, None
        if len(resp.texts) != request.n:  # not the number of completions asked for
            return key, None
        resp.cached = True
        resp.usage = Usage(calls=0, cache_hits=1, prompt_tokens=0, completion_tokens=0)
        return key, resp

    def _finish(self, request: LMRequest, resp: LMResponse, key: str | None, started: float) -> LMResponse:
        if not resp.cached:
            resp.usage.seconds = time.perf_counter() - started
            if resp.usage.calls == 0:
                resp.usage.calls = 1
            # The cache stores only well-formed replies (no empty completion); see cache.entry_problem.
            if key is not None and not resp.truncated and len(resp.texts) == request.n:
                cache = self.cache
                if cache is not None:
                    cache.put(key, resp.to_dict())
        with self._lock:
            self.usage.add(resp.usage)
        _usage.record(self.model, resp.usage)
        entry = {
            "model": self.model,
            "messages": request.messages,
            "request": request,
            "outputs": list(resp.texts),
            "usage": resp.usage,
            "cached": resp.cached,
            "timestamp": time.time(),
        }
        record(self.history, entry)
        return resp

    def request(
        self, messages: Any = None, *, prompt: str | None = None, cache: bool = True, **params: Any
    ) -> LMResponse:
        """One call: cache lookup, then the backend, then bookkeeping."""
        request = self.build_request(to_messages(messages, prompt), params)
        started = time.perf_counter()
        key, hit = self._lookup(request, cache)
        if hit is not None:
            return self._finish(request, hit, key, started)
        if self._sem is not None:
            with self._sem:
                resp = self.complete(request)
        else:
            resp = self.complete(request)
        return self._finish(request, resp, key, started)

    async def arequest(
        self, messages: Any = None, *, prompt: str | None = None, cache: bool = True, **params: Any
    ) -> LMResponse:
        request = self.build_request(to_messages(messages, prompt), params)
        started = time.perf_counter()
        key, hit = self._lookup(request, cache)
        if hit is not None:
            return self._finish(request, hit, key, started)
        if self.max_concurrency:
            import asyncio

            loop_id = id(asyncio.get_running_loop())
            sem = self._asems.get(loop_id)
            if sem is None:
                sem = self._asems[loop_id] = asyncio.Semaphore(self.max_concurrency)
            async with sem:
                resp = await self.acomplete(request)
        else:
            resp = await self.acomplete(request)
        return self._finish(request, resp, key, started)

    def __call__(self, prompt: str | None = None, messages: Sequence[Any] | None = None, **params: Any) -> list[str]:
        return self.request(messages, prompt=prompt, **params).texts

    async def acall(self, prompt: str | None = None, messages: Sequence[Any] | None = None, **params: Any) -> list[str]:
        return (await self.arequest(messages, prompt=prompt, **params)).texts

    def score_continuations(self, messages: Any, prefix: str, candidates: Sequence[str], **options: Any) -> Any:
        """The log-probability of each candidate text continuing an assistant reply begun with ``prefix``
        (a ``ContinuationScores``; see ``lm/logprobs.py``). Backends that give log-probabilities implement it;
        the others raise ``ScoringNotSupportedError``."""
        raise not_supported(self)

    def inspect_history(self, n: int = 1) -> str:
        text = format_calls(list(self.history)[-n:])
        print(text)
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r})"


def not_supported(lm: Any) -> ScoringNotSupportedError:
    """The error a backend that gives no token log-probabilities raises from ``score_continuations``."""
    return ScoringNotSupportedError(
        f"{type(lm).__name__} ({getattr(lm, 'model', '?')}) cannot score label values: it gives no token "
        "log-probabilities. Use a local model (LM('local/...')) or an OpenAI-compatible server that returns "
        "logprobs, or let pl.Classify generate the label (fallback=True, the default)."
    )
