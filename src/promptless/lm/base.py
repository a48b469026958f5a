"""The LM seam.

A backend implements one method, ``complete(request) -> LMResponse`` (and
optionally ``acomplete`` for native async). Everything else that every LM
needs lives here once: merging default sampling parameters, the cache, usage
totals, the bounded call history and the concurrency limit.

Callers use ``lm.request(messages, **params)`` (an ``LMResponse``) or, as in
DSPy, ``lm(prompt)`` / ``lm(messages=[...])`` (a list of strings).

``LM`` is the class users name: ``LM("openai/gpt-4o-mini")`` makes the backend the
prefix picks (every backend is an ``LM``), and a subclass of ``LM`` or ``BaseLM``
is an LM of the user's own, written as in DSPy: override ``forward(prompt=None,
messages=None, **kwargs)`` to return an OpenAI-shaped chat completion (or a list of
texts), or ``__call__`` to return a list of texts. A subclass of ``LM`` that
overrides neither calls the backend its model string names (so ``super().forward``
and ``super().__call__`` reach it).

Each call reports to the callbacks (``callbacks.py``) as an ``lm`` call, and, inside
``pl.streamify``, hands its reply text to the stream as it is generated.
"""

from __future__ import annotations

import copy as _copy
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ..callbacks import with_callbacks
from ..errors import ConfigurationError, ScoringNotSupportedError
from ..types import LMRequest, LMResponse, Message, Usage
from . import usage as _usage
from .calllog import format_calls, record

if TYPE_CHECKING:
    from .cache import Cache

_REQUEST_FIELDS = {"temperature", "max_tokens", "n", "stop", "seed", "response_format", "grammar", "rollout_id",
                   "tools", "tool_choice", "parallel_tool_calls"}

_cache_key_fn: Any = None  # cache.cache_key, once the first key is made

# Where ``pl.streamify`` listens: an object whose ``open(lm)`` gives a writer with ``write(text)`` and
# ``close()`` for one reply (``streaming.py`` sets it; None: nobody is listening).
STREAM_SINK: ContextVar[Any] = ContextVar("promptless_stream_sink", default=None)

# The LM whose own ``__call__`` (a user's override) is running here: its requests go to the backend.
_IN_OWN_CALL: ContextVar[tuple[int, ...]] = ContextVar("promptless_in_own_call", default=())

# The LM whose ``__call__`` override is running here, and the requests its ``super().__call__`` has made.
_RECORDED: ContextVar[tuple[Any, list[Any]] | None] = ContextVar("promptless_recorded", default=None)

# ``LM("provider/model", ...)`` when called on ``LM`` itself: set by ``lm/__init__.py`` (the backends live above).
_DISPATCH: list[Callable[..., Any]] = []


class LMOutputs(list):  # type: ignore[type-arg]
    """What an LM call's ``on_lm_end`` callbacks get: the completion texts (a list, as in DSPy), with the
    call's ``usage`` (a ``Usage``), the ``model`` that answered and whether the reply was ``cached``."""

    usage: Usage
    model: str
    cached: bool


def _outputs(resp: LMResponse) -> LMOutputs:
    out = LMOutputs(resp.texts)
    out.usage, out.model, out.cached = resp.usage, resp.model, resp.cached
    return out


def _lm_inputs(lm: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``inputs`` an ``on_lm_start`` callback gets: ``prompt``, ``messages`` (dicts) and ``kwargs``."""
    params = dict(kwargs)
    messages = args[0] if args else params.pop("messages", None)
    prompt = params.pop("prompt", None)
    params.pop("cache", None)
    if messages is not None:
        messages = [m.to_dict() if isinstance(m, Message) else m for m in messages]
    return {"prompt": prompt, "messages": messages, "kwargs": params}


class _Reply(dict):  # type: ignore[type-arg]
    """A dict read with attributes too (``reply.choices[0].message.content``): what ``forward`` returns."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return _Reply({k: _wrap(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def chat_completion(resp: LMResponse) -> Any:
    """``resp`` as an OpenAI chat completion (what DSPy's ``forward`` returns), read by key or attribute."""
    return _wrap({
        "object": "chat.completion",
        "model": resp.model,
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": text},
             "finish_reason": resp.finish_reasons[i] if i < len(resp.finish_reasons) else "stop"}
            for i, text in enumerate(resp.texts)
        ],
        "usage": {"prompt_tokens": resp.usage.prompt_tokens, "completion_tokens": resp.usage.completion_tokens,
                  "total_tokens": resp.usage.total_tokens},
    })


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def response_from(value: Any, model: str) -> LMResponse:
    """An ``LMResponse`` from what a user's ``forward`` or ``__call__`` returned: an OpenAI-shaped chat
    completion (an object or a dict), a list of texts (or of ``{"text": ...}`` dicts), or one text."""
    if isinstance(value, LMResponse):
        return value
    if isinstance(value, str):
        return LMResponse(texts=[value], usage=Usage(calls=1), model=model, finish_reasons=["stop"])
    if isinstance(value, (list, tuple)):
        texts = []
        for item in value:
            text = _get(item, "text") if not isinstance(item, str) else item
            if not isinstance(text, str):
                raise ConfigurationError(
                    f"an LM's forward/__call__ returned a list holding {type(item).__name__}; return strings, "
                    "dicts with 'text', or an OpenAI-style chat completion"
                )
            texts.append(text)
        return LMResponse(texts=texts, usage=Usage(calls=1), model=model, finish_reasons=["stop"] * len(texts))
    choices = _get(value, "choices")
    if not choices:
        raise ConfigurationError(
            f"an LM's forward returned {type(value).__name__} without choices; return an OpenAI-style chat "
            "completion (choices[i].message.content, usage, model) or a list of texts"
        )
    texts, finish = [], []
    for choice in choices:
        message = _get(choice, "message")
        content = _get(message, "content") if message is not None else _get(choice, "text")
        texts.append(content if isinstance(content, str) else "")
        finish.append(str(_get(choice, "finish_reason") or "stop"))
    usage = Usage(calls=1)
    raw = _get(value, "usage")
    if raw is not None:
        try:
            usage.prompt_tokens = int(_get(raw, "prompt_tokens") or 0)
            usage.completion_tokens = int(_get(raw, "completion_tokens") or 0)
        except (TypeError, ValueError):
            pass
    answered = _get(value, "model")
    return LMResponse(texts=texts, usage=usage, model=answered if isinstance(answered, str) and answered else model,
                      finish_reasons=finish)


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


class _InitArgs:
    """The arguments an LM was made with; its repr shows none of them (they may hold an API key)."""

    __slots__ = ("args", "kwargs")

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.args = tuple(args)
        self.kwargs = dict(kwargs)

    def __getstate__(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return self.args, self.kwargs

    def __setstate__(self, state: tuple[tuple[Any, ...], dict[str, Any]]) -> None:
        self.args, self.kwargs = state

    def __repr__(self) -> str:
        return f"<LM arguments: {len(self.args)} positional, {len(self.kwargs)} by name>"


def _message(m: dict[str, Any]) -> Message:
    """A message given as a dict; content as OpenAI content parts keeps them (with their text as content)."""
    content = m["content"]
    if isinstance(content, list) and all(isinstance(p, dict) and "type" in p for p in content):
        text = "".join(str(p.get("text", "")) if p["type"] == "text" else f"<{p['type']}>" for p in content)
        return Message(str(m["role"]), text, tuple(dict(p) for p in content))
    return Message(str(m["role"]), str(content))


class BaseLM:
    """Base class of every LM: a backend implements ``complete``; a user's own LM ``forward`` or ``__call__``."""

    provider: str = "base"
    #: The model string ``pl.LM`` was given (``"openai/gpt-4o-mini"``), when it made this LM.
    model_id: str | None = None
    _init_args: _InitArgs

    def __new__(cls, *args: Any, **kwargs: Any) -> BaseLM:
        self = super().__new__(cls)
        # how this LM was made, so that another process (a Ray worker) can make its own: see ``spec``
        self._init_args = _InitArgs(args, kwargs)
        return self

    def spec(self) -> dict[str, Any]:
        """How to make this LM again in another process: its class, the arguments it was made with (a ``Cache``
        object left out), and whether it caches. No client, connection or loaded model is part of it; a Ray
        worker builds its own LM from this (``executors/ray_executor.py``). An ``api_key=`` given here is part of
        it (a worker needs it); one read from the environment is not, and each worker reads its own."""
        init = getattr(self, "_init_args", None)
        args, kwargs = (init.args, dict(init.kwargs)) if init is not None else ((), {})
        kwargs.pop("cache", None)
        return {"class": type(self), "args": tuple(args), "kwargs": kwargs, "cache": self._cache_setting is not False}

    def __init__(
        self,
        model: str,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        cache: bool | Cache = True,
        history_size: int = 200,
        max_concurrency: int | None = None,
        callbacks: Sequence[Any] | None = None,
        model_type: str = "chat",
        num_retries: int | None = None,
        **defaults: Any,
    ) -> None:
        self.model = model
        self.model_type = model_type
        self.num_retries = num_retries
        self.callbacks: list[Any] = list(callbacks or [])
        self.defaults: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
        unknown = set(defaults) - _REQUEST_FIELDS
        if unknown and not self._user_defined():
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
    def complete(self, request: LMRequest) -> LMResponse:
        """The backend's one call. A user's own LM writes ``forward`` or ``__call__`` instead."""
        raise NotImplementedError(
            f"{type(self).__name__} implements no call: define forward(self, prompt=None, messages=None, **kwargs) "
            "returning an OpenAI-style chat completion or a list of texts (as for DSPy), or complete(self, request) "
            "returning an LMResponse"
        )

    async def acomplete(self, request: LMRequest) -> LMResponse:
        import asyncio
        import contextvars

        ctx = contextvars.copy_context()
        return await asyncio.to_thread(ctx.run, self.complete, request)

    def stream_complete(self, request: LMRequest, on_chunk: Callable[[str], None]) -> LMResponse:
        """``complete``, handing the first completion's text to ``on_chunk`` piece by piece as it is generated.
        Backends that can stream override it; this one hands over the whole text at the end."""
        resp = self._backend(request)
        if resp.texts:
            on_chunk(resp.texts[0])
        return resp

    # -- a user's own LM, written as for DSPy -----------------------------------
    def forward(self, prompt: str | None = None, messages: Any = None, **kwargs: Any) -> Any:
        """One call, answered as an OpenAI chat completion (``.choices[0].message.content``, ``.usage``,
        ``.model``). Override it to make an LM of your own; calling it on a backend asks the backend."""
        request = self.build_request(to_messages(messages, prompt), kwargs, strict=False)
        return chat_completion(self.complete(request))

    async def aforward(self, prompt: str | None = None, messages: Any = None, **kwargs: Any) -> Any:
        request = self.build_request(to_messages(messages, prompt), kwargs, strict=False)
        return chat_completion(await self.acomplete(request))

    def _user_defined(self) -> bool:
        """Whether replies come from the user's ``forward`` or ``__call__`` rather than a backend's ``complete``."""
        cls = type(self)
        return cls.forward is not BaseLM.forward or cls.__call__ is not BaseLM.__call__

    def _forward_kwargs(self, request: LMRequest) -> dict[str, Any]:
        out = {k: v for k, v in request.sampling().items() if k not in ("extra", "rollout_id")}
        out.update(request.extra)
        return out

    def _backend(self, request: LMRequest) -> LMResponse:
        """What a request that the cache did not answer runs: the user's ``forward`` or ``__call__`` when there
        is one, else ``complete``."""
        if type(self).forward is not BaseLM.forward:
            msgs = [m.to_dict() for m in request.messages]
            return response_from(self.forward(prompt=None, messages=msgs, **self._forward_kwargs(request)),
                                 self.model)
        return self.complete(request)

    def _own_call_answers(self) -> bool:
        """Whether the user's ``__call__`` answers this request (it overrides ``__call__`` and not ``forward``,
        and is not already running: its ``super().__call__`` reaches the backend)."""
        cls = type(self)
        return (cls.__call__ is not BaseLM.__call__ and cls.forward is BaseLM.forward
                and id(self) not in _IN_OWN_CALL.get())

    def _via_own_call(self, messages: Any, prompt: str | None, params: dict[str, Any]) -> LMResponse:
        msgs = to_messages(messages, prompt)
        request = self.build_request(msgs, params)
        started = time.perf_counter()
        inner: list[LMResponse] = []
        token = _IN_OWN_CALL.set((*_IN_OWN_CALL.get(), id(self)))
        box = _RECORDED.set((self, inner))
        try:
            out = self(messages=[m.to_dict() for m in msgs], **self._forward_kwargs(request))
        finally:
            _RECORDED.reset(box)
            _IN_OWN_CALL.reset(token)
        resp = response_from(out, self.model)
        if not inner:  # the user's code answered by itself: count and log it here
            return self._finish(request, resp, None, started)
        usage = Usage(calls=0)
        for r in inner:  # already counted and logged by the requests its super().__call__ made
            usage.add(r.usage)
        resp.usage = usage
        return resp

    async def _abackend(self, request: LMRequest) -> LMResponse:
        cls = type(self)
        if cls.aforward is not BaseLM.aforward:
            msgs = [m.to_dict() for m in request.messages]
            return response_from(await self.aforward(prompt=None, messages=msgs, **self._forward_kwargs(request)),
                                 self.model)
        if self._user_defined():
            import asyncio
            import contextvars

            ctx = contextvars.copy_context()
            return await asyncio.to_thread(ctx.run, self._backend, request)
        return await self.acomplete(request)

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

    def build_request(self, messages: list[Message], params: dict[str, Any], *, strict: bool | None = None) -> LMRequest:
        """The request for ``messages``: this LM's defaults under ``params``. Options that are not sampling
        options are refused, except by a user's own LM (they reach its ``forward`` as keyword arguments)."""
        merged = {k: v for k, v in self.defaults.items() if v is not None and k in _REQUEST_FIELDS}
        extra = {k: v for k, v in self.defaults.items() if v is not None and k not in _REQUEST_FIELDS}
        for k, v in params.items():
            if k in _REQUEST_FIELDS:
                if v is not None:
                    merged[k] = v
            else:
                extra[k] = v
        if strict is None:
            strict = not self._user_defined()
        if extra and strict:
            raise ConfigurationError(
                f"unknown LM option(s) {', '.join(sorted(extra))}; "
                f"sampling options are: {', '.join(sorted(_REQUEST_FIELDS))}"
            )
        if isinstance(merged.get("stop"), str):
            merged["stop"] = [merged["stop"]]
        return LMRequest(messages=messages, extra=extra, **merged)

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
        _usage.record(self.usage_key, resp.usage)
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
        box = _RECORDED.get()
        if box is not None and box[0] is self:
            box[1].append(resp)
        return resp

    @property
    def usage_key(self) -> str:
        """The name usage is counted under: the model string ``pl.LM`` was given (``"openai/gpt-4o-mini"``),
        else ``model``."""
        return self.model_id or self.model

    def _use_cache(self, cache: bool) -> bool:
        # A user's own LM answers from its own code, which the shared cache must not stand in for.
        return cache and not self._user_defined()

    @with_callbacks("lm", inputs=_lm_inputs, outputs=_outputs)
    def request(
        self, messages: Any = None, *, prompt: str | None = None, cache: bool = True, **params: Any
    ) -> LMResponse:
        """One call: cache lookup, then the backend, then bookkeeping."""
        if self._own_call_answers():
            return self._via_own_call(messages, prompt, params)
        request = self.build_request(to_messages(messages, prompt), params)
        started = time.perf_counter()
        key, hit = self._lookup(request, self._use_cache(cache))
        sink = STREAM_SINK.get()
        if hit is not None:
            if sink is not None and hit.texts:  # a cached reply reaches the stream in one piece
                writer = sink.open(self)
                try:
                    writer.write(hit.texts[0])
                finally:
                    writer.close()
            return self._finish(request, hit, key, started)
        if self._sem is not None:
            with self._sem:
                resp = self._run(request, sink)
        else:
            resp = self._run(request, sink)
        return self._finish(request, resp, key, started)

    def _run(self, request: LMRequest, sink: Any) -> LMResponse:
        if sink is None or request.n != 1:
            return self._backend(request)
        writer = sink.open(self)
        try:
            if self._user_defined():
                return BaseLM.stream_complete(self, request, writer.write)
            return self.stream_complete(request, writer.write)
        finally:
            writer.close()

    @with_callbacks("lm", inputs=_lm_inputs, outputs=_outputs)
    async def arequest(
        self, messages: Any = None, *, prompt: str | None = None, cache: bool = True, **params: Any
    ) -> LMResponse:
        if self._own_call_answers() or STREAM_SINK.get() is not None:
            import asyncio
            import contextvars

            ctx = contextvars.copy_context()
            return await asyncio.to_thread(ctx.run, lambda: self.request(messages, prompt=prompt, cache=cache,
                                                                         **params))
        request = self.build_request(to_messages(messages, prompt), params)
        started = time.perf_counter()
        key, hit = self._lookup(request, self._use_cache(cache))
        if hit is not None:
            return self._finish(request, hit, key, started)
        if self.max_concurrency:
            import asyncio

            loop_id = id(asyncio.get_running_loop())
            sem = self._asems.get(loop_id)
            if sem is None:
                sem = self._asems[loop_id] = asyncio.Semaphore(self.max_concurrency)
            async with sem:
                resp = await self._abackend(request)
        else:
            resp = await self._abackend(request)
        return self._finish(request, resp, key, started)

    def __call__(self, prompt: str | None = None, messages: Sequence[Any] | None = None, **params: Any) -> list[str]:
        return list(self.request(messages, prompt=prompt, **params).texts)

    async def acall(self, prompt: str | None = None, messages: Sequence[Any] | None = None, **params: Any) -> list[str]:
        return list((await self.arequest(messages, prompt=prompt, **params)).texts)

    def copy(self, **kwargs: Any) -> BaseLM:
        """A copy of this LM with other sampling defaults (``lm.copy(temperature=0.7)``); the copy keeps its
        own history and usage and shares the cache and connections."""
        new = _copy.copy(self)
        new.defaults = dict(self.defaults)
        for k, v in kwargs.items():
            if k not in _REQUEST_FIELDS and not self._user_defined():
                raise ConfigurationError(
                    f"lm.copy() takes sampling options ({', '.join(sorted(_REQUEST_FIELDS))}), not {k!r}"
                )
            new.defaults[k] = v
        new.history = deque(maxlen=self.history.maxlen)
        new.usage = Usage()
        new._lock = threading.Lock()
        new.callbacks = list(self.callbacks)
        return new

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


# The options ``BaseLM.__init__`` itself takes; a subclass of ``LM`` passes the others to its backend.
_BASE_OPTIONS = frozenset({"temperature", "max_tokens", "cache", "history_size", "max_concurrency", "callbacks",
                           "model_type", "num_retries"}) | _REQUEST_FIELDS


class _LMType(type):
    """``LM(...)`` on ``LM`` itself picks the backend from the model string; on a subclass it makes that class."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is LM:
            return _DISPATCH[0](*args, **kwargs)
        return super().__call__(*args, **kwargs)


class LM(BaseLM, metaclass=_LMType):
    """An LM named by a ``"provider/model"`` string: ``LM("openai/gpt-4o-mini")``, ``LM("local/smollm2-135m")``.

    Calling ``LM`` makes the backend the prefix picks (``lm/__init__.py``); every backend is an ``LM``. A
    subclass is an LM of your own: override ``forward`` (or ``__call__``) as in DSPy, or nothing, and the
    backend the model string names answers (built on first use, from the options ``BaseLM`` does not take:
    ``api_key=``, ``api_base=``, ``num_retries=``, ...)."""

    provider = "lm"

    def __init__(self, model: str, **kwargs: Any) -> None:
        if type(self).complete is not LM.complete:  # a backend: it takes its own options
            super().__init__(model, **kwargs)
            return
        base = {k: v for k, v in kwargs.items() if k in _BASE_OPTIONS}
        rest = {k: v for k, v in kwargs.items() if k not in _BASE_OPTIONS}
        self._backend_options: dict[str, Any] = {**rest, **{k: kwargs[k] for k in ("num_retries", "model_type")
                                                          if k in kwargs}}
        if self._user_defined():  # as in DSPy, the other options reach forward() as keyword arguments
            base.update(rest)
        super().__init__(model, **base)
        self._delegate: BaseLM | None = None

    @property
    def backend(self) -> BaseLM:
        """The backend this subclass's model string names (made on first use; its own cache off)."""
        if self.__dict__.get("_delegate") is None:
            options = dict(self.__dict__.get("_backend_options", {}))
            options["cache"] = False
            self._delegate = _DISPATCH[0](self.model, **options)
        return self._delegate  # type: ignore[return-value]

    def _is_backend(self) -> bool:
        return type(self).complete is not LM.complete

    def complete(self, request: LMRequest) -> LMResponse:
        return self.backend.complete(request)

    async def acomplete(self, request: LMRequest) -> LMResponse:
        if self._is_backend():
            return await BaseLM.acomplete(self, request)
        return await self.backend.acomplete(request)

    def stream_complete(self, request: LMRequest, on_chunk: Callable[[str], None]) -> LMResponse:
        if self._is_backend() or self._user_defined():
            return BaseLM.stream_complete(self, request, on_chunk)
        return self.backend.stream_complete(request, on_chunk)

    def cache_identity(self) -> dict[str, Any]:
        if self._is_backend():
            return BaseLM.cache_identity(self)
        identity = dict(self.backend.cache_identity())
        identity["class"] = f"{type(self).__module__}.{type(self).__qualname__}"
        return identity

    def score_continuations(self, messages: Any, prefix: str, candidates: Sequence[str], **options: Any) -> Any:
        if self._is_backend():
            return BaseLM.score_continuations(self, messages, prefix, candidates, **options)
        return self.backend.score_continuations(messages, prefix, candidates, **options)

    def __getattr__(self, name: str) -> Any:
        # What adapters ask of an LM (supports_grammar, supports_structured_output, ...) is the backend's.
        if name.startswith("supports_") and self.__dict__.get("_backend_options") is not None:
            return getattr(self.backend, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def not_supported(lm: Any) -> ScoringNotSupportedError:
    """The error a backend that gives no token log-probabilities raises from ``score_continuations``."""
    return ScoringNotSupportedError(
        f"{type(lm).__name__} ({getattr(lm, 'model', '?')}) cannot score label values: it gives no token "
        "log-probabilities. Use a local model (LM('local/...')) or an OpenAI-compatible server that returns "
        "logprobs, or let pl.Classify generate the label (fallback=True, the default)."
    )
