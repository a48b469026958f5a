"""Label votes of the nearest labelled examples: a feature ``pl.Calibrate(knn=...)`` adds to a classifier's scores.

A small model's label scores and an embedding's nearest neighbours are wrong on different inputs: the model
knows what the words mean, the neighbours know which label the user's own data gives to inputs like this one.
``label_votes`` turns the ``k`` nearest labelled examples (cosine similarity of the embedded inputs) into one
number per label: ``log(share + floor)``, where each neighbour's share of the vote is weighted by
``exp(similarity / temperature)`` and ``floor`` keeps a label no neighbour has from minus infinity. Calibration
adds ``weight * votes`` to ``scale * logprob + offset`` (the weight is fitted with the offsets, and pulled
towards 0, so votes that do not help are given none).

The examples (input text and label) are saved with the calibration; the embedder is named by its model
(``"local/all-MiniLM-L6-v2"``) and built again on load, or attached by hand (``classify.knn_embedder = ...``)
when it is a function of your own.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import ConfigurationError
from ..values import render_value

#: Defaults: the neighbours that vote, the temperature of their similarity weights, the floor of a vote's share.
VOTE_K = 10
VOTE_TEMPERATURE = 0.1
VOTE_FLOOR = 0.02


def knn_text(input_fields: Sequence[str], inputs: Mapping[str, Any]) -> str:
    """The text embedded for a classifier's inputs: the value alone for one input field, else one
    ``name: value`` line per input field, in order. (A name repeated in front of every short text pulls the
    mean-pooled embeddings of all of them together: on the historic-events dev split the votes alone chose the
    gold label for 69 of 100 events with the bare text, 60 with ``event:`` in front.)"""
    present = [k for k in input_fields if k in inputs]
    if len(present) == 1:
        return render_value(inputs[present[0]])
    return "\n".join(f"{k}: {render_value(inputs[k])}" for k in present)


def unit(vector: Any) -> list[float]:
    """``vector`` as a list of floats of length 1 (a zero vector stays zero)."""
    values = [float(x) for x in vector]
    norm = math.sqrt(sum(x * x for x in values))
    return [x / norm for x in values] if norm > 0 else values


def label_votes(query: Sequence[float], pool: Sequence[Sequence[float]], labels: Sequence[int], n_labels: int, *,
                k: int = VOTE_K, temperature: float = VOTE_TEMPERATURE, floor: float = VOTE_FLOOR,
                exclude: int | None = None) -> list[float]:
    """``log(share + floor)`` per label over the ``k`` pool vectors nearest to ``query`` (unit vectors; the pool
    entry ``exclude`` left out, for an example of the pool itself). An empty pool gives equal votes."""
    sims = similarities([query], pool)[0]
    return votes_from_similarities(sims, labels, n_labels, k=k, temperature=temperature, floor=floor,
                                   exclude=exclude)


def similarities(queries: Sequence[Sequence[float]], pool: Sequence[Sequence[float]]) -> list[list[float]]:
    """Dot products of every query with every pool vector (cosines, for unit vectors); numpy when installed."""
    if not queries or not pool:
        return [[] for _ in queries]
    try:
        import numpy as np
    except ImportError:
        return [[sum(a * b for a, b in zip(q, v, strict=True)) for v in pool] for q in queries]
    product: list[list[float]] = (np.asarray(queries, dtype=np.float64) @ np.asarray(pool, dtype=np.float64).T).tolist()
    return product


def votes_from_similarities(sims: Sequence[float], labels: Sequence[int], n_labels: int, *, k: int = VOTE_K,
                            temperature: float = VOTE_TEMPERATURE, floor: float = VOTE_FLOOR,
                            exclude: int | None = None) -> list[float]:
    """``label_votes`` from the cosine similarities of the query to each pool entry."""
    ranked = sorted(((float(x), i) for i, x in enumerate(sims) if i != exclude), key=lambda t: (-t[0], t[1]))
    share = [0.0] * n_labels
    for sim, i in ranked[:k]:
        share[labels[i]] += math.exp((sim - 1.0) / temperature)  # shifted by the largest possible similarity
    total = sum(share)
    if total <= 0:
        return [math.log(1.0 / n_labels + floor)] * n_labels
    return [math.log(x / total + floor) for x in share]


def embedder_spec(embedder: Any) -> str:
    """The name an embedder is saved under: ``provider/model`` for a ``pl.Embedder``, else the function's name."""
    provider, model = getattr(embedder, "provider", None), getattr(embedder, "model", None)
    if isinstance(provider, str) and isinstance(model, str) and provider in ("local", "openai"):
        return f"{provider}/{model}"
    target = embedder
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{getattr(target, '__module__', '') or ''}.{name}".lstrip(".")


def as_embedder(knn: Any, who: str, option: str = "knn") -> Any:
    """An optimizer's ``knn=`` (or ``probe=``) option as an embedder: ``None``, a callable texts -> vectors, or a
    name such as ``"local/all-MiniLM-L6-v2"`` (made a ``pl.Embedder``); anything else is refused, naming ``who``
    asked."""
    if knn is None or callable(knn):
        return knn
    if isinstance(knn, str):
        from ..embeddings import Embedder

        return Embedder(knn)
    raise ConfigurationError(
        f"{who}: {option} must be an embedder (pl.Embedder('local/all-MiniLM-L6-v2'), its name as a string, or a "
        f"function list[str] -> vectors), got {type(knn).__name__}")


def embedder_from_spec(spec: str, option: str = "knn") -> Callable[[list[str]], Any]:
    """The embedder a saved calibration names, built again (``local/...`` or ``openai/...``)."""
    if spec.startswith(("local/", "openai/")):
        from ..embeddings import Embedder

        return Embedder(spec)
    what = "votes with" if option == "knn" else "probes"
    raise ConfigurationError(
        f"this classifier's calibration {what} the embedder {spec!r}, a function promptless cannot build "
        f"again: attach it before calling, classify.{option}_embedder = your_embedder"
    )


class VotePool:
    """The labelled examples of a saved calibration, embedded once (on first use), answering ``votes(text)``."""

    def __init__(self, knn: Mapping[str, Any], labels: Sequence[str], embedder: Any) -> None:
        self.k = int(knn.get("k", VOTE_K))
        self.temperature = float(knn.get("temperature", VOTE_TEMPERATURE))
        self.floor = float(knn.get("floor", VOTE_FLOOR))
        examples = list(knn.get("examples") or [])
        index = {t: i for i, t in enumerate(labels)}
        self.texts = [str(e["text"]) for e in examples]
        self.labels = [index[str(e["label"])] for e in examples]
        self.n_labels = len(labels)
        self.embedder = embedder
        self._vectors: list[list[float]] | None = None
        self._matrix: Any = None  # the pool as a numpy array, False without numpy
        self._lock = threading.Lock()

    def vectors(self) -> list[list[float]]:
        with self._lock:
            if self._vectors is None:
                self._vectors = [unit(v) for v in self.embedder(self.texts)] if self.texts else []
            return self._vectors

    def votes(self, text: str) -> list[float]:
        pool = self.vectors()
        query = unit(self.embedder([text])[0])
        if self._matrix is None and pool:
            try:  # numpy, when it is installed: one product instead of a Python loop over a large pool
                import numpy as np

                self._matrix = np.asarray(pool, dtype=np.float64)
            except ImportError:
                self._matrix = False
        if self._matrix is not None and self._matrix is not False:
            sims: Sequence[float] = (self._matrix @ query).tolist()
        else:
            sims = similarities([query], pool)[0]
        return votes_from_similarities(sims, self.labels, self.n_labels, k=self.k, temperature=self.temperature,
                                       floor=self.floor)


def voters_counted(calibration: Any) -> Any:
    """A calibration with its voting examples counted instead of listed, and its probe's regression weights
    left out (the number of dimensions kept), for logs and results files."""
    if not isinstance(calibration, dict):
        return calibration
    out = dict(calibration)
    if isinstance(out.get("knn"), dict):
        knn = {k: v for k, v in out["knn"].items() if k != "examples"}
        out["knn"] = {**knn, "examples": len(out["knn"].get("examples") or [])}
    if isinstance(out.get("probe"), dict):
        probe = {k: v for k, v in out["probe"].items() if k not in ("mean", "spread", "coef", "intercept")}
        out["probe"] = {**probe, "dimensions": len(out["probe"].get("mean") or [])}
    return out


def check_knn_state(knn: Any, labels: Sequence[str]) -> None:
    """A saved calibration's ``"knn"`` part checked against the classifier's labels (ValueError says what)."""
    if not isinstance(knn, dict):
        raise ValueError("calibration \"knn\" must be an object with weight, k, embedder and examples")
    weight = knn.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise ValueError(f"calibration knn weight must be a finite number, got {weight!r}")
    k = knn.get("k", VOTE_K)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"calibration knn k must be a whole number >= 1, got {k!r}")
    for key in ("temperature", "floor"):
        v = knn.get(key, 1.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"calibration knn {key} must be a number > 0, got {v!r}")
    if not isinstance(knn.get("embedder"), str):
        raise ValueError("calibration knn needs \"embedder\": the name of the embedding model it was fitted with")
    examples = knn.get("examples")
    if not isinstance(examples, list):
        raise ValueError("calibration knn needs \"examples\": a list of {\"text\": ..., \"label\": ...}")
    allowed = set(labels)
    for e in examples:
        if not isinstance(e, dict) or not isinstance(e.get("text"), str) or e.get("label") not in allowed:
            raise ValueError(f"calibration knn example {e!r} must be {{\"text\": str, \"label\": one of the labels}}")


__all__ = ["VOTE_FLOOR", "VOTE_K", "VOTE_TEMPERATURE", "VotePool", "check_knn_state", "embedder_from_spec",
           "embedder_spec", "knn_text", "label_votes", "similarities", "unit", "voters_counted",
           "votes_from_similarities"]
