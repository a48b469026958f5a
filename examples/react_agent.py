"""A ReAct agent with two tools, a calculator and a lookup in a local table, optimized with BootstrapFewShot.

    python examples/react_agent.py --model scripted                 # seconds, no model
    python examples/react_agent.py --model local/qwen2.5-coder-1.5b --optimize

Each question needs two facts from the table and one calculation ("What is
the combined population of France and Spain, in millions?"). The agent looks
the facts up, calls the calculator and finishes; the extract step writes the
number. The table is the truth: an answer from the model's own memory is
scored wrong when it differs. BootstrapFewShot gives both predictors (the
step and the extract) demos from runs that got the answer right.
"""

from __future__ import annotations

import argparse
import ast
import json
import operator
import re
import time

import promptless as pl

COUNTRIES: dict[str, dict[str, float | str]] = {
    "France": {"capital": "Paris", "population_millions": 68.2, "area_km2": 551_695},
    "Spain": {"capital": "Madrid", "population_millions": 48.1, "area_km2": 505_990},
    "Germany": {"capital": "Berlin", "population_millions": 84.5, "area_km2": 357_592},
    "Italy": {"capital": "Rome", "population_millions": 58.9, "area_km2": 302_073},
    "Portugal": {"capital": "Lisbon", "population_millions": 10.5, "area_km2": 92_230},
    "Poland": {"capital": "Warsaw", "population_millions": 36.7, "area_km2": 312_696},
    "Sweden": {"capital": "Stockholm", "population_millions": 10.6, "area_km2": 450_295},
    "Norway": {"capital": "Oslo", "population_millions": 5.6, "area_km2": 385_207},
    "Greece": {"capital": "Athens", "population_millions": 10.4, "area_km2": 131_957},
    "Austria": {"capital": "Vienna", "population_millions": 9.1, "area_km2": 83_879},
    "Ireland": {"capital": "Dublin", "population_millions": 5.3, "area_km2": 70_273},
    "Finland": {"capital": "Helsinki", "population_millions": 5.6, "area_km2": 338_455},
}

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}


def calculator(expression: str) -> float:
    """Evaluate an arithmetic expression with + - * / ** and parentheses, e.g. (68.2 + 48.1) / 2.

    Args:
        expression: the arithmetic expression; numbers only, no names or units
    """

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        raise ValueError(f"only numbers and + - * / ** are allowed, not {ast.unparse(node)!r}")

    value = ev(ast.parse(expression.replace(",", "").replace("_", ""), mode="eval").body)
    return round(float(value), 4)


def lookup(country: str, field: str) -> str:
    """Look up a fact about a European country in the local table.

    Args:
        country: the country's name, e.g. France
        field: one of capital, population_millions, area_km2
    """
    row = COUNTRIES.get(country.strip().title())
    if row is None:
        raise KeyError(f"no country {country!r}; the table has: {', '.join(COUNTRIES)}")
    if field not in row:
        raise KeyError(f"no field {field!r}; the fields are: {', '.join(row)}")
    return str(row[field])


class CountryQuestion(pl.Signature):
    """Answer a question about European countries. Use the tools: facts must come from the table."""

    question: str = pl.InputField()
    answer: float = pl.OutputField(desc="the number asked for")


# -- questions -------------------------------------------------------------------------------------------

TEMPLATES = [
    ("What is the combined population of {a} and {b}, in millions?",
     lambda a, b: a["population_millions"] + b["population_millions"]),
    ("How many more square kilometres does {a} cover than {b}?", lambda a, b: a["area_km2"] - b["area_km2"]),
    ("What is the total area of {a} and {b} in square kilometres?", lambda a, b: a["area_km2"] + b["area_km2"]),
    ("By how many millions does the population of {a} exceed that of {b}?",
     lambda a, b: a["population_millions"] - b["population_millions"]),
]


def make_questions(pairs: list[tuple[str, str]], offset: int) -> list[pl.Example]:
    out = []
    for i, (a, b) in enumerate(pairs):
        if COUNTRIES[a]["area_km2"] < COUNTRIES[b]["area_km2"]:
            a, b = b, a
        if COUNTRIES[a]["population_millions"] < COUNTRIES[b]["population_millions"] and (i + offset) % 4 == 3:
            a, b = b, a
        text, fn = TEMPLATES[(i + offset) % len(TEMPLATES)]
        out.append(pl.Example(question=text.format(a=a, b=b), answer=round(fn(COUNTRIES[a], COUNTRIES[b]), 2))
                   .with_inputs("question"))
    return out


DEV_PAIRS = [("France", "Spain"), ("Germany", "Italy"), ("Portugal", "Poland"), ("Sweden", "Norway"),
             ("Greece", "Austria"), ("Ireland", "Finland"), ("Spain", "Italy"), ("France", "Germany"),
             ("Poland", "Sweden"), ("Norway", "Finland")]
TRAIN_PAIRS = [("Italy", "Greece"), ("Austria", "Ireland"), ("Germany", "Poland"), ("Spain", "Portugal"),
               ("France", "Sweden"), ("Finland", "Greece"), ("Norway", "Austria"), ("Portugal", "Ireland")]


def close_enough(example: pl.Example, pred: pl.Prediction, trace: object = None) -> bool:
    gold = float(example.answer)
    return abs(float(pred.answer) - gold) <= max(0.01, abs(gold) * 0.005)


# -- a scripted stand-in for a model -------------------------------------------------------------------------


def scripted_lm() -> pl.ScriptedLM:
    """Looks up what the question names, computes, finishes: the policy a good model follows."""

    def fields(question: str) -> tuple[list[str], str, str]:
        names = sorted((c for c in COUNTRIES if c in question), key=question.index)
        field = "area_km2" if "square" in question or "area" in question else "population_millions"
        op = "-" if ("more" in question or "exceed" in question) else "+"
        return names, field, op

    def step(thought: str, tool: str, args: dict) -> str:
        return (f"[[ ## next_thought ## ]]\n{thought}\n\n[[ ## next_tool_name ## ]]\n{tool}\n\n"
                f"[[ ## next_tool_args ## ]]\n{json.dumps(args)}\n\n[[ ## completed ## ]]")

    def reply(messages):
        system, last = messages[0].content, messages[-1].content
        question = last.split("[[ ## question ## ]]\n", 1)[1].split("\n", 1)[0]
        names, field, op = fields(question)
        seen = re.findall(r"observation: (.*)", last)
        if "next_tool_name" in system:
            if len(seen) < len(names):
                return step(f"I need the {field} of {names[len(seen)]}.", "lookup",
                            {"country": names[len(seen)], "field": field})
            if len(seen) == len(names):
                return step("Now compute.", "calculator", {"expression": f" {op} ".join(seen[:len(names)])})
            return step("I have the answer.", "finish", {})
        return (f"[[ ## reasoning ## ]]\nThe calculator gave {seen[-2] if len(seen) > 1 else '?'}.\n\n"
                f"[[ ## answer ## ]]\n{seen[-2] if len(seen) > 1 else 0}\n\n[[ ## completed ## ]]")

    return pl.ScriptedLM(reply)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local/qwen2.5-coder-1.5b", help="an LM string, or 'scripted'")
    parser.add_argument("--lm-threads", type=int, default=None, help="CPU threads of a local model (default: all)")
    parser.add_argument("--dev", type=int, default=10, help="dev questions scored before and after (at most 10)")
    parser.add_argument("--train", type=int, default=8, help="training questions for BootstrapFewShot (at most 8)")
    parser.add_argument("--max-iters", type=int, default=5)
    parser.add_argument("--optimize", action="store_true", help="optimize with BootstrapFewShot and score again")
    parser.add_argument("--teacher", choices=("self", "scripted"), default="self",
                        help="who makes the traces BootstrapFewShot keeps: the model itself (default), or the "
                        "scripted policy (hand-written demonstrations, for a model that solves none zero-shot)")
    parser.add_argument("--show", action="store_true", help="print the last agent run as the model saw it")
    args = parser.parse_args()

    options = {"n_threads": args.lm_threads} if args.lm_threads and args.model.startswith("local/") else {}
    lm = scripted_lm() if args.model == "scripted" else pl.LM(args.model, **options)
    pl.configure(lm=lm)
    agent = pl.ReAct(CountryQuestion, tools=[calculator, lookup], max_iters=args.max_iters)
    dev = make_questions(DEV_PAIRS, 0)[: args.dev]
    train = make_questions(TRAIN_PAIRS, 1)[: args.train]
    evaluate = pl.Evaluate(devset=dev, metric=close_enough, display_progress=False)

    with pl.track_usage() as usage:
        t0 = time.perf_counter()
        before = evaluate(agent)
    print(f"before: {before.score:.1f}% on {len(dev)} dev questions  "
          f"({usage.calls} LM calls, {time.perf_counter() - t0:.0f} s)")
    for row in before.rows[:3]:
        pred = row.prediction
        steps = [pred.trajectory.get(f"tool_name_{i}") for i in range(args.max_iters)] if pred is not None else []
        answer = getattr(pred, "answer", None)
        print(f"  {row.example.question} -> {answer} (gold {row.example.answer}); tools: {[s for s in steps if s]}")

    if args.optimize:
        from promptless.optimize import BootstrapFewShot

        with pl.track_usage() as usage:
            t0 = time.perf_counter()
            optimizer = BootstrapFewShot(metric=close_enough, max_bootstrapped_demos=2, max_labeled_demos=0,
                                         progress=False)
            teacher = None
            if args.teacher == "scripted":
                teacher = agent.deepcopy()
                teacher.set_lm(scripted_lm())
            optimized = optimizer.compile(agent, trainset=train, teacher=teacher)
            compile_s, compile_calls = time.perf_counter() - t0, usage.calls
        for name, p in optimized.named_predictors():
            print(f"  {name}: {len(p.demos)} demos")
        with pl.track_usage() as usage:
            t0 = time.perf_counter()
            after = evaluate(optimized)
        print(f"optimize: {compile_calls} LM calls, {compile_s:.0f} s")
        print(f"after:  {after.score:.1f}% on {len(dev)} dev questions  "
              f"({usage.calls} LM calls, {time.perf_counter() - t0:.0f} s)")
    if args.show:
        pl.inspect_history(n=1)


if __name__ == "__main__":
    main()
