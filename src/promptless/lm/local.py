"""A llama.cpp model running inside this process (``LM("local/<name or path>")``).

    >>> lm = LocalLM("smollm2-135m")            # a named model, fetched once
    >>> lm = LocalLM("/models/my-model.gguf")  # or any GGUF file
    >>> lm("Say hi")

Needs the ``local`` extra (``pip install 'promptless[local]'``); llama.cpp is
imported the first time a model is loaded, never on ``import promptless``.
Before the first load of a model in a process, a preflight (``lm/preflight.py``)
checks in a child process that the installed llama.cpp build can run on this
CPU, so that a build made for another machine raises ``RuntimeBuildError``
instead of killing this process.

The weights are loaded once per process and shared by every ``LocalLM`` with
the same file, context size and thread count; calls to one model take turns
(it has one context). Replies use the model's own chat template. Decoding is
greedy (temperature 0) unless asked otherwise, and a request's ``grammar``
(GBNF) or ``response_format`` (a JSON schema) constrains what can be sampled.

Consecutive calls that share a prompt prefix (the same instructions and
demonstrations, a different final question) reuse the evaluated prefix: only
the new tokens are processed.

``n_gpu_layers`` offloads layers to a GPU: 0 (the default) runs on the CPU; ``"auto"`` offloads every layer
when the installed build has GPU support (``llama_supports_gpu_offload()``) and none otherwise; -1 or a number
asks for that many and is an error on a build without GPU support. The CUDA build: ``CMAKE_ARGS="-DGGML_CUDA=on"
bash scripts/install_llama.sh .venv/bin/python`` (docs/scale.md). ``prefix_reuse=False`` turns that off, so that
every call evaluates its whole prompt. Greedy replies are repeatable either
way, but not always identical between the two settings: llama.cpp computes a
short suffix with other kernels than a whole prompt, and the tiny rounding
difference can tip a near-tie between two tokens.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, ContextWindowError, LMError, ModelFetchError
from ..types import LMRequest, LMResponse, Usage
from . import models as _models
from . import preflight as _preflight
from .base import LM

INSTALL_HINT = "pip install 'promptless[local]'"
DEFAULT_N_CTX = 4096
MIN_N_CTX = 256
DEFAULT_MAX_TOKENS = 512


def usable_cores() -> int:
    """The CPU cores this process may run on (not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ConfigurationError(f"local models need llama-cpp-python: {INSTALL_HINT} ({exc})") from exc
    return llama_cpp


@dataclass
class _Loaded:
    """One model in memory, the lock that serializes its use, and its compiled grammars."""

    llama: Any
    path: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    grammars: dict[str, Any] = field(default_factory=dict)


_LOADED: dict[tuple[str, int, int, int, int], _Loaded] = {}
_LOADED_LOCK = threading.Lock()


def gpu_offload_supported() -> bool:
    """Whether the installed llama.cpp build can offload layers to a GPU (CUDA, Metal, Vulkan, ...)."""
    llama_cpp = _import_llama_cpp()
    probe = getattr(llama_cpp, "llama_supports_gpu_offload", None)
    return bool(probe()) if probe is not None else False


GPU_BUILD_HINT = ("build llama-cpp-python with GPU support: CMAKE_ARGS='-DGGML_CUDA=on' bash scripts/install_llama.sh "
                  ".venv/bin/python (NVIDIA; see docs/scale.md), or use n_gpu_layers=0 or 'auto'")


def resolve_gpu_layers(n_gpu_layers: int | str) -> int:
    """The ``n_gpu_layers`` llama.cpp gets: ``"auto"`` is every layer (-1) on a build that can offload, else 0; a
    number other than 0 on a build that cannot is a ``ConfigurationError`` (llama.cpp would run on the CPU and
    say nothing)."""
    if n_gpu_layers == "auto":
        return -1 if gpu_offload_supported() else 0
    assert isinstance(n_gpu_layers, int)
    if n_gpu_layers != 0 and not gpu_offload_supported():
        raise ConfigurationError(
            f"n_gpu_layers={n_gpu_layers}: the installed llama.cpp build cannot offload to a GPU; {GPU_BUILD_HINT}"
        )
    return n_gpu_layers


def _load(path: Path, n_ctx: int, n_threads: int, n_batch: int, verbose: bool, n_gpu_layers: int = 0) -> _Loaded:
    key = (str(path.resolve()), n_ctx, n_threads, n_batch, n_gpu_layers)
    with _LOADED_LOCK:
        loaded = _LOADED.get(key)
        if loaded is not None:
            return loaded
        llama_cpp = _import_llama_cpp()
        _preflight.ensure(path)  # a build that cannot run here fails in a child process, not in this one
        try:
            llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                n_batch=n_batch,
                n_gpu_layers=n_gpu_layers,
                verbose=verbose,
            )
        except ValueError as exc:
            raise ModelFetchError(f"llama.cpp could not load {path}: {exc}") from exc
        if not _LOADED:
            # Free the weights while llama.cpp is still importable, not during interpreter teardown.
            atexit.register(unload_all)
        loaded = _LOADED[key] = _Loaded(llama=llama, path=path)
        return loaded


def unload_all() -> None:
    """Free every model loaded in this process (the next call loads again)."""
    with _LOADED_LOCK:
        items = list(_LOADED.values())
        _LOADED.clear()
    for loaded in items:
        with loaded.lock, contextlib.suppress(Exception):
            loaded.llama.close()


def _schema_of(response_format: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema in a response format (OpenAI's shapes or a bare schema); None: any JSON."""
    kind = response_format.get("type")
    if kind == "json_schema" and isinstance(response_format.get("json_schema"), dict):
        inner = response_format["json_schema"]
        schema = inner.get("schema")
        return schema if isinstance(schema, dict) else None
    if kind == "json_object":
        schema = response_format.get("schema")
        return schema if isinstance(schema, dict) else None
    return response_format


class LocalLM(LM):
    """A GGUF model run by llama.cpp in this process."""

    provider = "local"

    def __init__(
        self,
        model: str,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        n_batch: int = 512,
        prefix_reuse: bool = True,
        grammar: bool = True,
        verbose: bool = False,
        n_gpu_layers: int | str = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("temperature", 0.0)
        kwargs.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
        super().__init__(model, **kwargs)
        if model not in _models.REGISTRY:
            path = Path(model).expanduser()
            if not path.is_file():
                raise ModelFetchError(
                    f"{model!r} is neither a known model nor an existing .gguf file; "
                    f"known models: {', '.join(_models.REGISTRY)}"
                )
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigurationError(f"local models need llama-cpp-python, which is not installed: {INSTALL_HINT}")
        if n_ctx < MIN_N_CTX:  # llama.cpp rounds smaller contexts up, which llama-cpp-python mishandles
            raise ConfigurationError(f"n_ctx={n_ctx} is too small: use at least {MIN_N_CTX} (default {DEFAULT_N_CTX})")
        if n_gpu_layers != "auto" and (isinstance(n_gpu_layers, bool) or not isinstance(n_gpu_layers, int)
                                       or n_gpu_layers < -1):
            raise ConfigurationError(
                f"n_gpu_layers must be 0 (CPU only, the default), a number of layers, -1 (all) or 'auto' (all when "
                f"the llama.cpp build can offload to a GPU, else none), got {n_gpu_layers!r}"
            )
        self.n_gpu_layers = n_gpu_layers
        self.n_ctx = n_ctx
        self.n_threads = n_threads or usable_cores()
        self.n_batch = n_batch
        self.prefix_reuse = prefix_reuse
        self.use_grammar = grammar
        self.verbose = verbose
        self._loaded: _Loaded | None = None

    @property
    def supports_grammar(self) -> bool:
        """Whether adapters may send a GBNF grammar (constrained decoding is on)."""
        return self.use_grammar

    @property
    def path(self) -> Path:
        """The GGUF file (a named model is fetched on first use)."""
        return _models.resolve(self.model)

    def cache_identity(self) -> dict[str, Any]:
        """Provider, the weights (a named model's SHA-256, or a file's path, size and mtime), and the
        settings that change what is produced: context size, batch size, constrained decoding, prefix reuse."""
        identity = super().cache_identity()
        spec = _models.REGISTRY.get(self.model)
        if spec is not None:
            identity["weights"] = spec.sha256
        else:
            path = Path(self.model).expanduser()
            try:
                st = path.stat()
                identity["weights"] = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
            except OSError:
                identity["weights"] = {"path": str(path)}
        identity.update(n_ctx=self.n_ctx, n_batch=self.n_batch, grammar=self.use_grammar, prefix_reuse=self.prefix_reuse)
        gpu = getattr(self, "n_gpu_layers", 0)
        if gpu != 0:  # GPU kernels round differently: their replies are kept apart (CPU keys unchanged)
            identity["n_gpu_layers"] = gpu
        return identity

    def load(self) -> Any:
        """Load the weights now (otherwise the first call does) and return the ``llama_cpp.Llama``."""
        if self._loaded is None:
            self._loaded = _load(self.path, self.n_ctx, self.n_threads, self.n_batch, self.verbose,
                                 resolve_gpu_layers(self.n_gpu_layers))
        return self._loaded.llama

    @property
    def llama(self) -> Any:
        return self.load()

    # -- constrained decoding ------------------------------------------------
    def _grammar(self, loaded: _Loaded, text: str) -> Any:
        """A ``LlamaGrammar`` for GBNF text, checked by llama.cpp's parser once per text."""
        compiled = loaded.grammars.get(text)
        if compiled is not None:
            return compiled
        llama_cpp = _import_llama_cpp()
        from llama_cpp.llama_grammar import LlamaGrammar

        vocab = getattr(getattr(loaded.llama, "_model", None), "vocab", None)
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, text.encode("utf-8"), b"root")
        if not sampler:
            raise ConfigurationError(
                "llama.cpp rejected the GBNF grammar (its parser printed the reason on stderr):\n" + text[:2000]
            )
        llama_cpp.llama_sampler_free(sampler)
        compiled = loaded.grammars[text] = LlamaGrammar.from_string(text, verbose=False)
        return compiled

    def _grammar_for(self, loaded: _Loaded, request: LMRequest) -> Any:
        if not self.use_grammar:
            return None
        if request.grammar:
            return self._grammar(loaded, request.grammar)
        if request.response_format:
            from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

            schema = _schema_of(request.response_format)
            cache_key = "schema:" + json.dumps(schema, sort_keys=True)
            text = loaded.grammars.get(cache_key)
            if text is None:
                try:
                    text = json_schema_to_gbnf(json.dumps(schema)) if schema is not None else JSON_GBNF
                except Exception:  # a schema llama.cpp cannot translate: fall back to any JSON
                    text = JSON_GBNF
                loaded.grammars[cache_key] = text
            return self._grammar(loaded, text)
        return None

    # -- the call ------------------------------------------------------------
    def _refuse_what_it_cannot_take(self, request: LMRequest) -> None:
        """Media and native tool calls need a model and server that take them: say which, before loading."""
        kinds = sorted({str(p.get("type")) for m in request.messages for p in m.media})
        if kinds:
            named = {"image_url": "an image (pl.Image)", "input_audio": "audio (pl.Audio)", "file": "a file (pl.File)"}
            what = ", ".join(named.get(k, f"a {k} part") for k in kinds)
            raise ConfigurationError(
                f"LM('local/{self.model}') runs a text-only llama.cpp model in this process and cannot take {what}. "
                "Send media to a model that reads it over the OpenAI-compatible API: pl.LM('openai/<model>', "
                "base_url=...) for a vision or audio model served by llama.cpp's llama-server (with its --mmproj "
                "projector), vLLM or Ollama, or by a hosted provider."
            )
        if request.tools:
            raise ConfigurationError(
                f"LM('local/{self.model}') has no native tool calling: leave tools= out of the request (a "
                "pl.ToolCalls output is read from the reply text with this LM), or serve the model with "
                "llama.cpp's llama-server --jinja and use pl.LM('openai/<model>', base_url=...)."
            )

    def _llama_error(self, exc: Exception) -> LMError:
        """What a llama.cpp failure means for the caller: a prompt too long for the context, or a failed call."""
        if isinstance(exc, ValueError) and "exceed context window" in str(exc):
            return ContextWindowError(
                f"{exc}; shorten the prompt (fewer demos) or load the model with a larger n_ctx "
                f"(LocalLM({self.model!r}, n_ctx=...), now {self.n_ctx})",
                model=self.model,
            )
        return LMError(f"llama.cpp failed: {exc}", model=self.model)

    def complete(self, request: LMRequest) -> LMResponse:
        self._refuse_what_it_cannot_take(request)
        self.load()
        loaded = self._loaded
        assert loaded is not None
        messages = [m.to_dict() for m in request.messages]
        temperature = 0.0 if request.temperature is None else float(request.temperature)
        max_tokens = DEFAULT_MAX_TOKENS if request.max_tokens is None else int(request.max_tokens)
        texts: list[str] = []
        reasons: list[str] = []
        usage = Usage(calls=1)
        with loaded.lock:
            grammar = self._grammar_for(loaded, request)
            llama_cpp = _import_llama_cpp()
            for i in range(max(1, request.n)):
                if not self.prefix_reuse:
                    loaded.llama.reset()
                seed = request.seed + i if request.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
                try:
                    reply = loaded.llama.create_chat_completion(
                        messages=messages,
                        temperature=temperature,
                        max_tokens=max_tokens,
                        stop=list(request.stop or []),
                        seed=seed,
                        grammar=grammar,
                    )
                except (ValueError, RuntimeError) as exc:
                    raise self._llama_error(exc) from exc
                choice = reply["choices"][0]
                texts.append(choice["message"].get("content") or "")
                reasons.append(choice.get("finish_reason") or "stop")
                counts = reply.get("usage") or {}
                if i == 0:
                    usage.prompt_tokens = int(counts.get("prompt_tokens", 0))
                usage.completion_tokens += int(counts.get("completion_tokens", 0))
        return LMResponse(texts=texts, usage=usage, model=self.model, finish_reasons=reasons)

    def stream_complete(self, request: LMRequest, on_chunk: Any) -> LMResponse:
        """One completion generated with ``create_chat_completion(stream=True)``, each piece of text handed to
        ``on_chunk`` as llama.cpp produces it. llama.cpp reports no token counts when streaming: the completion
        is counted one token a piece, the prompt as the context's length less the completion."""
        if request.n != 1:
            return self.complete(request)
        self.load()
        loaded = self._loaded
        assert loaded is not None
        parts: list[str] = []
        finish = "stop"
        with loaded.lock:
            grammar = self._grammar_for(loaded, request)
            llama_cpp = _import_llama_cpp()
            if not self.prefix_reuse:
                loaded.llama.reset()
            try:
                pieces = loaded.llama.create_chat_completion(
                    messages=[m.to_dict() for m in request.messages],
                    temperature=0.0 if request.temperature is None else float(request.temperature),
                    max_tokens=DEFAULT_MAX_TOKENS if request.max_tokens is None else int(request.max_tokens),
                    stop=list(request.stop or []),
                    seed=request.seed if request.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED,
                    grammar=grammar,
                    stream=True,
                )
                for piece in pieces:
                    choice = piece["choices"][0]
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        parts.append(text)
                        on_chunk(text)
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
            except (ValueError, RuntimeError) as exc:
                raise self._llama_error(exc) from exc
            completion = len(parts)
            prompt = max(0, int(getattr(loaded.llama, "n_tokens", 0)) - completion)
        usage = Usage(calls=1, prompt_tokens=prompt, completion_tokens=completion)
        return LMResponse(texts=["".join(parts)], usage=usage, model=self.model, finish_reasons=[finish])

    def score_continuations(self, messages: Any, prefix: str, candidates: Any, **options: Any) -> Any:
        """Every token of every candidate scored after the prompt, which is evaluated once (``lm/logprobs.py``)."""
        from .logprobs import run_scoring, score_llama

        def backend(msgs: Any, pre: str, cands: list[str]) -> Any:
            self.load()
            assert self._loaded is not None
            with self._loaded.lock:
                return score_llama(self._loaded.llama, msgs, pre, cands, reuse_prefix=self.prefix_reuse,
                                   model=self.model)

        return run_scoring(self, messages, prefix, candidates, backend, **options)

    def __repr__(self) -> str:
        layers = getattr(self, "n_gpu_layers", 0)
        gpu = f", n_gpu_layers={layers!r}" if layers != 0 else ""
        return f"LocalLM({self.model!r}, n_ctx={self.n_ctx}, n_threads={self.n_threads}{gpu})"


__all__ = ["DEFAULT_MAX_TOKENS", "DEFAULT_N_CTX", "GPU_BUILD_HINT", "INSTALL_HINT", "LocalLM", "gpu_offload_supported",
           "resolve_gpu_layers", "unload_all", "usable_cores"]
