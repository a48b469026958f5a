"""KNNFewShot: for each input, the k most similar training examples become the demos.

    knn = KNNFewShot(k=3, trainset=train, vectorizer=pl.Embedder("local/all-MiniLM-L6-v2"))
    program = knn.compile(pl.ChainOfThought("event -> category"))
    program(event="Battle of Hastings, 1066")   # demos: the 3 training events closest to this one

``compile`` embeds the training examples' inputs once and returns a
``KNNProgram``, which on each call embeds the call's inputs, picks the ``k``
nearest training examples by cosine similarity and runs a copy of the student
with those examples as the demos of every predictor (the student itself is
never changed, so calls may run in parallel). Inputs are embedded as
``"name: value"`` lines over the input fields, in a fixed order.

With ``valset`` and ``metric`` the program is scored before and after, like
the other optimizers. The demos are picked per call, so ``program.save()``
stores no demos: keep the trainset and compile again to rebuild.

The searches use the same per-input demos as one of their candidates
(``knn_candidate``): ``MIPROv2(knn=embedder)`` and
``BootstrapFewShotWithRandomSearch(knn=embedder)``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..data import Example
from ..errors import ConfigurationError, PromptlessError
from ..modules.module import Module
from .base import Optimizer, score_candidate
from .fingerprint import examples_fingerprint
from .run import Run

logger = logging.getLogger("promptless.optimize")


def input_text(values: Any, keys: Sequence[str]) -> str:
    """The text embedded for a set of inputs: one ``name: value`` line per input field, in ``keys`` order."""
    from ..values import render_value

    return "\n".join(f"{k}: {render_value(values[k])}" for k in keys if k in values)


class KNNProgram(Module):
    """The student with per-call demos: the k training examples nearest to the call's inputs."""

    def __init__(self, student: Module, trainset: list[Example], vectorizer: Callable[[list[str]], Any],
                 k: int) -> None:
        from ..retrieve import Retriever

        self.program = student
        self.k = k
        keys: list[str] = []
        for ex in trainset:
            for key in sorted(ex.input_keys or ()):
                if key not in keys:
                    keys.append(key)
        if not keys:
            raise ConfigurationError("KNNFewShot: the trainset examples have no inputs marked; use .with_inputs(...)")
        self._keys = keys
        self._trainset = list(trainset)
        texts = [input_text(ex, keys) for ex in trainset]
        self._index = Retriever(vectorizer, texts, k=max(1, k))

    def __deepcopy__(self, memo: dict[int, Any]) -> KNNProgram:
        """A copy with its own program; the index, the training examples and the embedder are shared (they
        never change, and an embedder may hold a loaded model)."""
        new = object.__new__(KNNProgram)
        for key, value in vars(self).items():
            setattr(new, key, copy.deepcopy(value, memo) if key == "program" else value)
        return new

    def with_program(self, program: Module) -> KNNProgram:
        """The same index around another program (another instruction, say): nothing is embedded again."""
        new = copy.copy(self)
        new.program = program
        return new

    def fingerprint_state(self) -> dict[str, Any]:
        """What, besides its predictors, makes this program what it is (for the optimizers' memo)."""
        return {"knn": self.k, "trainset": examples_fingerprint(self._trainset),
                "vectorizer": vectorizer_name(self._index.embedder)}

    def neighbours(self, **inputs: Any) -> list[Example]:
        """The k training examples nearest to these inputs, nearest first."""
        hits = self._index(input_text(inputs, self._keys), k=self.k)
        return [self._trainset[i] for i in hits.indices]

    def _with_demos(self, inputs: dict[str, Any]) -> Module:
        demos = self.neighbours(**inputs)
        copy = self.program.deepcopy()
        for p in copy.predictors():
            p.demos = list(demos)
        return copy

    def forward(self, **kwargs: Any) -> Any:
        return self._with_demos(kwargs)(**kwargs)

    async def aforward(self, **kwargs: Any) -> Any:
        return await self._with_demos(kwargs).acall(**kwargs)


class KNNFewShot(Optimizer):
    """``KNNFewShot(k, trainset, vectorizer=embedder).compile(student)``: nearest training examples as demos."""

    def __init__(self, k: int, trainset: Sequence[Example], vectorizer: Callable[[list[str]], Any], *,
                 metric: Any = None, **common: Any) -> None:
        super().__init__(metric=metric, **common)
        if not isinstance(k, int) or k < 1:
            raise ConfigurationError(f"KNNFewShot: k must be a whole number >= 1, got {k!r}")
        if vectorizer is None or not callable(vectorizer):
            raise ConfigurationError("KNNFewShot needs vectorizer=pl.Embedder(...) (or a function texts -> vectors)")
        self.k = k
        self.trainset = list(trainset)
        self.vectorizer = vectorizer

    def settings_identity(self) -> dict[str, Any]:
        return {**super().settings_identity(), "k": self.k, "vectorizer": vectorizer_name(self.vectorizer)}

    def compile(self, student: Module, trainset: Sequence[Example] | None = None, **kwargs: Any) -> Module:
        return super().compile(student, trainset if trainset is not None else self.trainset, **kwargs)

    def _compile(self, run: Run, student: Module, trainset: list[Example], valset: list[Example],
                 teacher: Module | None, **kwargs: Any) -> Module:
        if kwargs:
            raise TypeError(f"KNNFewShot.compile() got unexpected option(s): {', '.join(sorted(kwargs))}")
        program = KNNProgram(student.deepcopy(), trainset, self.vectorizer, self.k)
        if valset and self.metric is not None:
            self._score_baseline(run, student, valset)
            if run.stopped != "budget":
                score_candidate(run, program, valset, {"k": self.k})
        return program


def vectorizer_name(vectorizer: Any) -> str:
    """A name for an embedder that is the same in every process (for run identities and fingerprints): an
    Embedder's model name, else the function's qualified name."""
    model = getattr(vectorizer, "model", None)
    if isinstance(model, str):
        return f"{type(vectorizer).__name__}({model})"
    target = model if callable(model) else vectorizer
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{getattr(target, '__module__', '') or ''}.{name}".lstrip(".")


def knn_candidate(student: Module, trainset: list[Example], vectorizer: Any, k: int) -> tuple[KNNProgram | None, str]:
    """The search candidate with per-input nearest-neighbour demos, and a note for the result. When the training
    examples cannot be embedded (no embedder installed, a server that refuses) the candidate is left out and the
    note says why; the search goes on without it."""
    if not trainset:
        return None, "left out: no training examples to take neighbours from"
    try:
        program = KNNProgram(student, trainset, vectorizer, k)
    except (PromptlessError, ImportError, OSError) as exc:
        logger.warning("the nearest-neighbour demo candidate is left out: %s", exc)
        return None, f"left out: the training examples could not be embedded ({type(exc).__name__}: {exc})"[:400]
    return program, f"k={k} nearest of {len(trainset)} training examples, by {vectorizer_name(vectorizer)}"


__all__ = ["KNNFewShot", "KNNProgram", "input_text", "knn_candidate", "vectorizer_name"]
