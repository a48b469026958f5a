"""ChainOfThought: Predict with a ``reasoning`` output written before the others."""

from __future__ import annotations

from typing import Any

from ..signature import OutputField, Signature, make_signature
from .predict import Predict

REASONING_DESC = "Think it through step by step before giving the other outputs."


class ChainOfThought(Predict):
    def __init__(self, signature: str | type[Signature], *, rationale_desc: str = REASONING_DESC, **kwargs: Any) -> None:
        base = make_signature(signature)
        extended = base.prepend("reasoning", OutputField(desc=rationale_desc), str)
        super().__init__(extended, **kwargs)
