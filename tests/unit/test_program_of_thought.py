from __future__ import annotations

import os

import pytest

import promptless as pl
from promptless.modules.program_of_thought import extract_code


def reply(**fields) -> str:
    return "\n\n".join(f"[[ ## {k} ## ]]\n{v}" for k, v in fields.items()) + "\n\n[[ ## completed ## ]]"


def pot_lm(codes: list[str], answer: str = "42"):
    """Code replies in order for the generate/regenerate steps; the answer step echoes what it was shown."""
    queue = list(codes)
    seen: dict[str, list[str]] = {"answer_prompts": []}

    def fn(messages):
        system = messages[0].content
        if "[[ ## generated_code ## ]]" in system:
            if "Reply with a single JSON object" in system:
                return "{}"
            return queue.pop(0)
        seen["answer_prompts"].append(messages[-1].content)
        return reply(reasoning="from the output", answer=answer)

    lm = pl.ScriptedLM(fn)
    return lm, seen


def code_reply(code: str) -> str:
    return reply(reasoning="compute it", generated_code=f"```python\n{code}\n```")


def _no_sandbox() -> str | None:
    if os.name != "posix":
        return "the sandbox needs a POSIX system"
    from promptless.sandbox import namespaces_available

    return namespaces_available()


_why_not = _no_sandbox()
posix_only = pytest.mark.skipif(_why_not is not None, reason=f"no isolated sandbox here: {_why_not}")


@posix_only
def test_code_runs_and_its_output_reaches_the_answer_step():
    lm, seen = pot_lm([code_reply("print(6 * 7)")])
    pot = pl.ProgramOfThought("question -> answer: int", max_iters=3)
    pred = pot(question="What is 6 times 7?", lm=lm)
    assert pred.answer == 42 and pred.code == "print(6 * 7)" and pred.code_output == "42" and pred.attempts == 1
    assert "[[ ## code_output ## ]]\n42" in seen["answer_prompts"][0]
    assert [n for n, _ in pot.named_predictors()] == ["generate", "regenerate", "answer"]
    assert pred.usage.calls == 2


@posix_only
def test_errors_are_fed_back_and_fixed():
    lm, _ = pot_lm([code_reply("print(1/0)"), code_reply("print(40 + 2)")])
    pred = pl.ProgramOfThought("question -> answer: int", max_iters=3)(question="q", lm=lm)
    assert pred.attempts == 2 and pred.code_output == "42"
    fix_prompt = lm.requests[1].messages[-1].content
    assert "[[ ## previous_code ## ]]\nprint(1/0)" in fix_prompt
    assert "ZeroDivisionError: division by zero (line 1)" in fix_prompt


@posix_only
def test_escape_attempts_are_errors_fed_back_not_crashes():
    lm, _seen = pot_lm([code_reply("import os\nprint(os.listdir('/'))"),
                       code_reply("print(open('/etc/passwd').read())"),
                       code_reply("while True:\n    pass")], answer="0")
    pot = pl.ProgramOfThought("question -> answer: int", max_iters=3, timeout=0.5)
    pred = pot(question="q", lm=lm)
    assert pred.attempts == 3
    assert "time limit" in pred.code_output  # the last error reaches the answer step
    assert "import of 'os' is not allowed" in lm.requests[1].messages[-1].content
    assert "opening '/etc/passwd' is not allowed" in lm.requests[2].messages[-1].content


def test_bounded_retries_with_a_replaced_executor():
    from promptless.sandbox import SandboxResult

    lm, _seen = pot_lm([code_reply("bad()")] * 10, answer="7")
    pot = pl.ProgramOfThought("question -> answer: int", max_iters=2)
    ran = []
    pot.execute = lambda code: ran.append(code) or SandboxResult(ok=False, error="NameError: bad", error_type="E")
    pred = pot(question="q", lm=lm)
    assert len(ran) == 2 and pred.attempts == 2 and pred.answer == 7
    assert pred.code_output == "Error: NameError: bad"


def test_replies_without_code_are_retried():
    from promptless.sandbox import SandboxResult

    lm, _ = pot_lm([reply(reasoning="hmm", generated_code="```python\n```"),
                    "no markers at all",
                    code_reply("print(5)")], answer="5")
    pot = pl.ProgramOfThought("question -> answer: int", max_iters=3)
    pot.execute = lambda code: SandboxResult(ok=True, stdout="5\n")
    pred = pot(question="q", lm=lm)
    assert pred.attempts == 3 and pred.code == "print(5)"
    assert "the reply held no code" in lm.requests[1].messages[-1].content


def test_extract_code():
    assert extract_code("```python\nx = 1\n```\ntext\n```\ny = 2\n```") == "x = 1\n\ny = 2"
    assert extract_code("print(1)") == "print(1)"
    assert extract_code("```python\nprint(2)") == "print(2)"
