"""MultiChainComparison: read M reasoning attempts at a question and answer once.

    cot = pl.ChainOfThought("question -> answer")
    attempts = [cot(question=q, config={"temperature": 1.0, "rollout_id": i}) for i in range(3)]
    mcc = pl.MultiChainComparison("question -> answer", M=3)
    pred = mcc(attempts, question=q)     # pred.rationale, pred.answer

Each attempt is a prediction or dict with the signature's outputs and a
``reasoning`` (or ``rationale``) text. The comparison step sees them as inputs
``reasoning_attempt_1`` ... ``reasoning_attempt_M`` and writes a ``rationale``
(which attempts hold up and why) before the outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..data import Prediction
from ..errors import ConfigurationError
from ..signature import InputField, OutputField, Signature, make_signature
from ..values import render_value
from .module import Module
from .predict import Predict

RATIONALE_DESC = ("Compare the attempts: say which steps hold up and which are wrong, then reason to the answer "
                  "you are most sure of.")


class MultiChainComparison(Module):
    def __init__(self, signature: str | type[Signature], M: int = 3, temperature: float = 0.7,  # noqa: N803
                 **config: Any) -> None:
        if M < 1:
            raise ValueError("MultiChainComparison: M must be at least 1")
        self.signature = make_signature(signature)
        self.M = int(M)
        sig = self.signature
        for i in range(1, self.M + 1):
            sig = sig.append(f"reasoning_attempt_{i}", InputField(desc=f"attempt #{i} at the task"), str)
        sig = sig.prepend("rationale", OutputField(desc=RATIONALE_DESC), str)
        sig = sig.with_instructions(
            sig.instructions.rstrip() + f"\n\nYou are given {self.M} attempts at this task; they may disagree or "
            "be wrong. Compare them, then give the outputs once."
        )
        self.predict = Predict(sig, temperature=temperature, **config)

    def _attempt_text(self, attempt: Any) -> str:
        data = attempt.to_dict() if isinstance(attempt, Prediction) else attempt
        if not isinstance(data, Mapping):
            raise ConfigurationError(
                f"MultiChainComparison: each attempt must be a Prediction or a dict, got {type(attempt).__name__}"
            )
        reasoning = data.get("reasoning", data.get("rationale", ""))
        reasoning = " ".join(str(reasoning).split())
        answers = "; ".join(
            f"{name}: {render_value(data[name])}" for name in self.signature.output_fields if name in data
        ) or "(no answer)"
        return f"«I'm trying to {reasoning.rstrip('.')}. I'm not sure but my prediction is {answers}»"

    def _inputs(self, completions: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        if isinstance(completions, Prediction):
            completions = completions.completions
        completions = list(completions)
        if len(completions) != self.M:
            raise ConfigurationError(
                f"MultiChainComparison(M={self.M}) needs exactly {self.M} attempts, got {len(completions)}; "
                "pass M=len(attempts) when building it"
            )
        extra = {f"reasoning_attempt_{i}": self._attempt_text(c) for i, c in enumerate(completions, 1)}
        return {**kwargs, **extra}

    def forward(self, completions: Sequence[Any], **kwargs: Any) -> Prediction:
        return self.predict(**self._inputs(completions, kwargs))

    async def aforward(self, completions: Sequence[Any], **kwargs: Any) -> Prediction:
        return await self.predict.acall(**self._inputs(completions, kwargs))

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> Prediction:
        return self.forward(completions, **kwargs)


__all__ = ["MultiChainComparison"]
