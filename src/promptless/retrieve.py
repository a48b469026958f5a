"""Retriever: the k corpus entries most similar to a query, by cosine similarity of embeddings.

    retrieve = pl.Retriever(pl.Embedder("local/all-MiniLM-L6-v2"), corpus=texts, k=3)
    hits = retrieve("When did the Normans invade England?")
    hits.passages    # the 3 closest entries, best first
    hits.indices     # their positions in the corpus
    hits.scores      # their cosine similarities

The corpus is a list of strings, or of Examples / dicts with ``key=`` naming
the field to embed (the entries themselves are returned). It is embedded once,
when the retriever is built, and held in memory: with numpy as one normalised
matrix (a query is one matrix-vector product), without it as plain lists.
Ties keep corpus order.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from typing import Any

from .data import Example, Prediction
from .errors import ConfigurationError


def _text(item: Any, key: str | None) -> str:
    if isinstance(item, str):
        return item
    if key is not None:
        try:
            return str(item[key])
        except (KeyError, TypeError):
            raise ConfigurationError(f"Retriever: corpus entry {item!r} has no field {key!r}"[:300]) from None
    if isinstance(item, (Example, dict)):
        raise ConfigurationError("Retriever: the corpus holds records; pass key='field' naming the text to embed")
    return str(item)


def _normalise(v: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v] if norm else [0.0 for _ in v]


class Retriever:
    def __init__(
        self,
        embedder: Callable[[list[str]], Any],
        corpus: Sequence[Any],
        k: int = 5,
        *,
        key: str | None = None,
        use_numpy: bool | None = None,
    ) -> None:
        if k < 1:
            raise ConfigurationError("Retriever: k must be at least 1")
        self.embedder = embedder
        self.corpus = list(corpus)
        self.k = int(k)
        self.key = key
        texts = [_text(item, key) for item in self.corpus]
        vectors = embedder(texts) if texts else []
        if len(vectors) != len(texts):
            raise ConfigurationError(f"Retriever: the embedder returned {len(vectors)} vectors for {len(texts)} texts")
        self._np: Any = None
        if use_numpy is not False:
            try:
                import numpy as np

                self._np = np
            except ImportError:
                if use_numpy:
                    raise ConfigurationError("Retriever(use_numpy=True) needs numpy: pip install numpy") from None
        if self._np is not None:
            np = self._np
            m = np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1) if texts else np.zeros((0, 1), np.float32)
            norms = np.linalg.norm(m, axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            self._matrix = m / norms
        else:
            self._matrix = [_normalise(v) for v in vectors]

    def scores(self, query: str) -> list[float]:
        """Cosine similarity of the query to every corpus entry, in corpus order."""
        q = self.embedder([query])[0]
        if self._np is not None:
            np = self._np
            qv = np.asarray(q, dtype=np.float32)
            n = float(np.linalg.norm(qv)) or 1.0
            return (self._matrix @ (qv / n)).tolist() if len(self.corpus) else []
        qn = _normalise(q)
        return [sum(a * b for a, b in zip(row, qn, strict=True)) for row in self._matrix]

    def __call__(self, query: str, k: int | None = None) -> Prediction:
        k = min(self.k if k is None else int(k), len(self.corpus))
        sims = self.scores(query) if self.corpus else []
        best = heapq.nsmallest(k, range(len(sims)), key=lambda i: (-sims[i], i))
        return Prediction(
            passages=[self.corpus[i] for i in best],
            indices=best,
            scores=[float(sims[i]) for i in best],
        )

    forward = __call__

    def __deepcopy__(self, memo: dict[int, Any]) -> Retriever:
        return self  # read-only after construction: copies of a program share it

    def __repr__(self) -> str:
        return f"Retriever(k={self.k}, corpus={len(self.corpus)} entries, embedder={self.embedder!r})"


__all__ = ["Retriever"]
