"""A linear probe: a logistic regression on an input's embedding, a feature ``pl.Calibrate(probe=...)`` adds to
a classifier's label scores.

A small model's label scores say what the model answers when asked; its hidden states often know more than
that answer shows. ``probe=pl.Embedder("local/qwen2.5-coder-1.5b")`` embeds each input with the task model's
own hidden states (mean-pooled, llama.cpp's embedding mode), and a multinomial logistic regression learns the
user's labels from them on the training set. Its label log-probabilities are one more feature of the
calibration: ``scale * logp + offset + weight * votes + probe_weight * probe``, the weight fitted with the
rest and pulled towards 0, so a probe that does not help is given none. On the training set each example's
probe feature comes from a regression fitted on the other folds (never on itself), like the votes.

The regression: features standardised by the training set's mean and spread, then
``mean cross-entropy + ||W||^2 / (2 C n)`` (scikit-learn's ``C`` convention: ``C`` is the inverse strength of
the penalty on the sum of the losses; the bias is not penalised). It is solved exactly in the span of the
training examples (an L2 penalty keeps the weights there): the standardised features are reduced to their
``n`` singular directions, a limited-memory BFGS minimises the loss there, and the weights are mapped back.
``C`` is chosen by the cross-validated log-likelihood of the gold labels. Needs numpy.

What is saved with the calibration: the embedder's name, the mean and spread of each feature, the weights and
the biases (a few tens of thousands of numbers for a 1.5B model's 1,536 dimensions).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigurationError

#: The inverse penalty strengths tried, and the folds of the cross-validation that chooses one and that gives
#: each training example a probe feature not fitted on it.
PROBE_CS = (0.25, 1.0, 4.0)
PROBE_FOLDS = 5
#: The smallest log-probability a probe gives a label (a label the training set never shows).
PROBE_FLOOR = math.log(1e-4)


def _np() -> Any:
    try:
        import numpy as np
    except ImportError:
        raise ConfigurationError("Calibrate(probe=...) needs numpy; install it with: pip install numpy") from None
    return np


def _log_softmax(z: Any) -> Any:
    np = _np()
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def _lbfgs(fun: Any, x0: Any, *, max_iter: int = 500, memory: int = 10, tol: float = 1e-7) -> Any:
    """Minimise a smooth convex ``fun(x) -> (value, gradient)`` by limited-memory BFGS with a backtracking
    (Armijo) line search."""
    np = _np()
    x = x0.copy()
    f, g = fun(x)
    s_list: list[Any] = []
    y_list: list[Any] = []
    for _ in range(max_iter):
        if float(np.abs(g).max()) < tol:
            break
        q = g.copy()
        alphas = []
        for s, y in zip(reversed(s_list), reversed(y_list), strict=True):
            rho = 1.0 / float(y @ s)
            a = rho * float(s @ q)
            alphas.append((rho, a))
            q -= a * y
        if y_list:
            q *= float(s_list[-1] @ y_list[-1]) / float(y_list[-1] @ y_list[-1])
        for (s, y), (rho, a) in zip(zip(s_list, y_list, strict=True), reversed(alphas), strict=True):
            q += (a - rho * float(y @ q)) * s
        d = -q
        slope = float(g @ d)
        if slope >= 0:  # not a descent direction: start again from the gradient
            s_list.clear()
            y_list.clear()
            d, slope = -g, -float(g @ g)
        t = 1.0 if s_list else min(1.0, 1.0 / max(float(np.abs(g).sum()), 1e-12))
        while True:
            x_new = x + t * d
            f_new, g_new = fun(x_new)
            if f_new <= f + 1e-4 * t * slope or t < 1e-12:
                break
            t /= 2
        s, y = x_new - x, g_new - g
        if float(s @ y) > 1e-12:
            s_list.append(s)
            y_list.append(y)
            if len(s_list) > memory:
                s_list.pop(0)
                y_list.pop(0)
        done = abs(f - f_new) <= 1e-12 * max(1.0, abs(f))
        x, f, g = x_new, f_new, g_new
        if done:
            break
    return x


def _fit_reduced(z: Any, labels: Any, n_labels: int, c: float) -> tuple[Any, Any]:
    """Weights ``(r x L)`` and biases ``(L,)`` of the penalised multinomial regression on the reduced features
    ``z`` (n x r)."""
    np = _np()
    n, r = z.shape
    onehot = np.zeros((n, n_labels))
    onehot[np.arange(n), labels] = 1.0
    alpha = 1.0 / (c * n)

    def fun(x: Any) -> tuple[float, Any]:
        w = x[:r * n_labels].reshape(r, n_labels)
        b = x[r * n_labels:]
        logp = _log_softmax(z @ w + b)
        value = -float((logp * onehot).sum()) / n + 0.5 * alpha * float((w * w).sum())
        err = (np.exp(logp) - onehot) / n
        grad = np.concatenate([(z.T @ err + alpha * w).ravel(), err.sum(axis=0)])
        return value, grad

    x = _lbfgs(fun, np.zeros(r * n_labels + n_labels))
    return x[:r * n_labels].reshape(r, n_labels), x[r * n_labels:]


def fit_probe(vectors: Sequence[Sequence[float]], labels: Sequence[int], n_labels: int, *, c: float) -> dict[str, Any]:
    """The probe fitted on ``vectors`` (one per example) and their gold ``labels`` (indices): a state with the
    standardisation (``mean``, ``spread``), ``coef`` (dimensions x labels) and ``intercept``, as numpy arrays."""
    np = _np()
    x = np.asarray(vectors, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    mean = x.mean(axis=0)
    spread = x.std(axis=0) + 1e-6
    xs = (x - mean) / spread
    u, s, vt = np.linalg.svd(xs, full_matrices=False)  # xs = u s vt: the weights live in the rows' span
    keep = s > s.max() * 1e-9 if s.size else s > 0
    z = u[:, keep] * s[keep]
    w_red, bias = _fit_reduced(z, y, n_labels, c)
    coef = vt[keep].T @ w_red
    return {"mean": mean, "spread": spread, "coef": coef, "intercept": bias}


def probe_logprobs(state: Mapping[str, Any], vectors: Sequence[Sequence[float]]) -> list[list[float]]:
    """The probe's label log-probabilities for each vector (floored at ``PROBE_FLOOR`` and normalised again)."""
    np = _np()
    x = np.asarray(vectors, dtype=np.float64)
    mean, spread = np.asarray(state["mean"], dtype=np.float64), np.asarray(state["spread"], dtype=np.float64)
    z = ((x - mean) / spread) @ np.asarray(state["coef"], dtype=np.float64) + np.asarray(state["intercept"],
                                                                                        dtype=np.float64)
    logp = np.maximum(_log_softmax(z), PROBE_FLOOR)
    out: list[list[float]] = _log_softmax(logp).tolist()
    return out


def _folds(n: int, k: int, seed: int) -> list[list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    k = max(2, min(k, n))
    return [order[i::k] for i in range(k)]


def held_out_probe(vectors: Sequence[Sequence[float]], labels: Sequence[int], n_labels: int, *, c: float,
                   seed: int = 0, folds: int = PROBE_FOLDS) -> list[list[float]]:
    """Each example's probe log-probabilities from a probe fitted on the other folds."""
    out: list[list[float]] = [[] for _ in labels]
    for group in _folds(len(labels), folds, seed):
        held = set(group)
        rest = [i for i in range(len(labels)) if i not in held]
        if not group:
            continue
        if not rest:  # nothing to fit on: no preference
            for i in group:
                out[i] = [-math.log(n_labels)] * n_labels
            continue
        state = fit_probe([vectors[i] for i in rest], [labels[i] for i in rest], n_labels, c=c)
        for i, row in zip(group, probe_logprobs(state, [vectors[i] for i in group]), strict=True):
            out[i] = row
    return out


def choose_c(vectors: Sequence[Sequence[float]], labels: Sequence[int], n_labels: int, *, seed: int = 0,
             cs: Sequence[float] = PROBE_CS) -> tuple[float, list[list[float]]]:
    """The ``C`` of ``cs`` with the best cross-validated log-likelihood of the gold labels, and the held-out
    log-probabilities it gave every example (the training set's probe feature)."""
    best: tuple[float, float, list[list[float]]] | None = None
    for c in cs:
        held = held_out_probe(vectors, labels, n_labels, c=c, seed=seed)
        loglik = sum(row[y] for row, y in zip(held, labels, strict=True))
        if best is None or loglik > best[0]:
            best = (loglik, c, held)
    assert best is not None
    return best[1], best[2]


def probe_state(state: Mapping[str, Any], *, weight: float, c: float, embedder: str,
                labels: Sequence[str]) -> dict[str, Any]:
    """The ``"probe"`` part of a saved calibration (plain lists, rounded)."""
    def rounded(values: Any) -> Any:
        return [float(f"{float(v):.6g}") for v in values]

    return {"weight": round(weight, 6), "C": c, "embedder": embedder, "labels": list(labels),
            "mean": rounded(state["mean"]), "spread": rounded(state["spread"]),
            "coef": [rounded(row) for row in state["coef"].tolist()], "intercept": rounded(state["intercept"])}


def check_probe_state(probe: Any, labels: Sequence[str]) -> None:
    """A saved calibration's ``"probe"`` part checked for shape and values (ValueError says what is wrong)."""
    if not isinstance(probe, dict):
        raise ValueError("calibration \"probe\" must be an object with weight, embedder, mean, spread, coef, intercept")
    weight = probe.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise ValueError(f"calibration probe weight must be a finite number, got {weight!r}")
    if not isinstance(probe.get("embedder"), str):
        raise ValueError("calibration probe needs \"embedder\": the name of the embedding model it was fitted with")
    if probe.get("labels") is not None and list(probe["labels"]) != list(labels):
        raise ValueError(f"calibration probe was fitted for the labels {probe['labels']!r}, not {list(labels)!r}")

    def numbers(key: str, length: int | None) -> list[Any]:
        values = probe.get(key)
        if not isinstance(values, list) or (length is not None and len(values) != length):
            raise ValueError(f"calibration probe {key} must be a list of {length if length is not None else 'some'} "
                             "numbers")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"calibration probe {key} holds {v!r}, not a finite number")
        return values

    dims = len(numbers("mean", None))
    numbers("spread", dims)
    numbers("intercept", len(labels))
    coef = probe.get("coef")
    if not isinstance(coef, list) or len(coef) != dims:
        raise ValueError(f"calibration probe coef must be {dims} rows (one per dimension) of {len(labels)} numbers")
    for row in coef:
        if not isinstance(row, list) or len(row) != len(labels) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in row):
            raise ValueError(f"calibration probe coef rows must be {len(labels)} finite numbers each")


__all__ = ["PROBE_CS", "PROBE_FLOOR", "check_probe_state", "choose_c", "fit_probe", "held_out_probe",
           "probe_logprobs", "probe_state"]
