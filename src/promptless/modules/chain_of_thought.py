"""ChainOfThought: Predict with a ``reasoning`` output written before the others.

A signature that declares its own ``reasoning`` output keeps it (its type, description and place), so
``ChainOfThought`` over it asks for the same fields as ``Predict`` would."""

from __future__ import annotations

from typing import Any

from ..errors import SignatureError
from ..signature import OutputField, Signature, make_signature
from .predict import Predict

REASONING_DESC = "Think it through step by step before giving the other outputs."


class ChainOfThought(Predict):
    def __init__(self, signature: str | type[Signature], *, rationale_desc: str = REASONING_DESC,
                 rationale_field: Any = None, rationale_field_type: Any = str, **kwargs: Any) -> None:
        base = make_signature(signature)
        declared = base.fields.get("reasoning")
        if declared is not None:
            if declared.is_input:
                raise SignatureError(
                    f"ChainOfThought({base.signature_string()}): 'reasoning' is an input of this signature, but "
                    "ChainOfThought adds an output of that name; rename the input, or use pl.Predict"
                )
            extended = base  # the declared field, with its own type and description, where it was declared
        else:
            field = rationale_field if rationale_field is not None else OutputField(desc=rationale_desc)
            extended = base.prepend("reasoning", field, rationale_field_type)
        super().__init__(extended, **kwargs)

    @property
    def predict(self) -> ChainOfThought:
        """The predictor that makes the call: this one (DSPy's ``cot.predict``, kept for code written for it).
        ``cot.predict.demos`` and ``cot.demos`` are the same list."""
        return self
