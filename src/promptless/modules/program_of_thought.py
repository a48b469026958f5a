"""ProgramOfThought: the model writes Python, a sandbox runs it, the model answers from its output.

Three predictors, each a ``ChainOfThought``:

- ``generate``: inputs -> ``generated_code``;
- ``regenerate``: inputs, ``previous_code``, ``error`` -> ``generated_code``,
  used when the code failed (at most ``max_iters`` runs in all);
- ``answer``: inputs, ``final_generated_code``, ``code_output`` -> the outputs.

The code runs in ``promptless.sandbox.Sandbox`` (a separate process with a
time limit, a memory limit, no network and only a temporary directory; see
that module). What it printed and the value of its last expression form the
``code_output``. When every run fails, the answer step still runs, with the
last error as ``code_output``, so the model can answer or say it cannot.
The prediction carries ``code``, ``code_output`` and ``attempts`` (how many
runs it took) beside the outputs.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..data import Prediction
from ..errors import ParseError
from ..lm.usage import track_usage
from ..signature import InputField, OutputField, Signature, field_dict, make_signature
from .chain_of_thought import ChainOfThought
from .module import Module

if TYPE_CHECKING:
    from ..sandbox import Sandbox, SandboxResult

_FENCE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.S)
CODE_DESC = ("Python code that computes what is needed and prints it (or ends with an expression whose value is "
             "the result). Only computation modules such as math, statistics, datetime, re and json can be imported; "
             "there is no network and no file system.")


def extract_code(text: str) -> str:
    """The Python in a reply: the fenced blocks if any, joined; else the whole text."""
    blocks = _FENCE.findall(text)
    if blocks:
        return "\n\n".join(b.strip("\n") for b in blocks).strip()
    stripped = text.strip()
    if stripped.startswith("```"):  # an unclosed fence
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
    return stripped.strip("`").strip()



class ProgramOfThought(Module):
    """``ProgramOfThought("question -> answer: float", max_iters=3)``."""

    def __init__(
        self,
        signature: str | type[Signature],
        max_iters: int = 3,
        *,
        sandbox: Sandbox | None = None,
        timeout: float = 5.0,
        memory_mb: int = 256,
    ) -> None:
        if max_iters < 1:
            raise ValueError("ProgramOfThought: max_iters must be at least 1")
        self.signature = make_signature(signature)
        self.max_iters = int(max_iters)
        if sandbox is None:
            from ..sandbox import Sandbox

            sandbox = Sandbox(timeout=timeout, memory_mb=memory_mb)
        self._sandbox = sandbox
        sig = self.signature
        ins = list(sig.input_fields.values())
        outs = list(sig.output_fields.values())
        names_in = ", ".join(f"`{f.name}`" for f in ins)
        names_out = ", ".join(f"`{f.name}`" for f in outs)
        code_out = {"generated_code": (str, OutputField(desc=CODE_DESC))}
        task = sig.instructions.strip()
        self.generate = ChainOfThought(make_signature(
            {**field_dict(ins), **code_out},
            f"{task}\n\nWrite Python code that computes what is needed to produce {names_out} from {names_in}. "
            "It will be run and you will see what it prints.",
            name=f"{sig.__name__}Code",
        ))
        self.regenerate = ChainOfThought(make_signature(
            {**field_dict(ins),
             "previous_code": (str, InputField(desc="the code that failed")),
             "error": (str, InputField(desc="what went wrong when it ran")),
             **code_out},
            f"{task}\n\nThe previous code failed with the error shown. Write corrected Python code that computes "
            f"what is needed to produce {names_out} from {names_in}.",
            name=f"{sig.__name__}Fix",
        ))
        self.answer = ChainOfThought(make_signature(
            {**field_dict(ins),
             "final_generated_code": (str, InputField(desc="the code that was run")),
             "code_output": (str, InputField(desc="what the code printed, or its error")),
             **field_dict(outs)},
            f"{task}\n\nGiven the code that was run and its output, produce {names_out}.",
            name=f"{sig.__name__}Answer",
        ))

    @property
    def sandbox(self) -> Sandbox:
        return self._sandbox

    def execute(self, code: str) -> SandboxResult:
        """Run code in this module's sandbox (the seam tests and users can replace)."""
        return self._sandbox.run(code)

    def forward(self, **kwargs: Any) -> Prediction:
        from ..sandbox import SandboxResult

        inputs = {k: v for k, v in kwargs.items() if k in self.signature.input_fields}
        opts = {k: v for k, v in kwargs.items() if k not in inputs}
        code, result = "", None
        attempts = 0
        with track_usage() as usage:
            for attempt in range(self.max_iters):
                try:
                    if attempt == 0 or result is None:
                        step = self.generate(**inputs, **opts)
                    else:
                        step = self.regenerate(**inputs, previous_code=code or "(none)",
                                               error=result.describe(), **opts)
                except ParseError as exc:
                    result = SandboxResult(ok=False, error=f"the reply held no readable code ({_first_line(exc)})",
                                           error_type="ParseError")
                    code = ""
                    attempts += 1
                    continue
                code = extract_code(step.generated_code)
                attempts += 1
                if not code:
                    result = SandboxResult(ok=False, error="the reply held no code", error_type="NoCode")
                    continue
                result = self.execute(code)
                if result.ok:
                    break
            output = result.describe() if result is not None else "Error: no code was run"
            final = self.answer(**inputs, final_generated_code=code or "(none)", code_output=output, **opts)
        data = final.to_dict()
        for key, value in (("code", code), ("code_output", output), ("attempts", attempts)):
            data.setdefault(key, value)
        pred = Prediction(data)
        pred.set_usage(usage.total)
        return pred


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]


__all__ = ["ProgramOfThought", "extract_code"]
