from __future__ import annotations

import asyncio
import copy
from typing import Literal

import pytest
from pydantic import BaseModel

import promptless as pl
from promptless.errors import ToolError
from promptless.tools import Tool


def calculator(expression: str, precision: int = 4) -> float:
    """Evaluate an arithmetic expression.

    Args:
        expression: the expression, e.g. 2 * (3 + 4)
        precision: digits after the point
    """
    if "import" in expression:
        raise ValueError("only arithmetic, please")
    return round(eval(expression, {"__builtins__": {}}), precision)


async def lookup(key: str, table: Literal["people", "places"] = "people") -> str:
    """Look a key up in a table.

    :param key: what to look up
    :param table: which table
    """
    await asyncio.sleep(0)
    return f"{table}:{key}"


class Point(BaseModel):
    x: int
    y: int


def distance(a: Point, b: Point) -> float:
    """Distance between two points."""
    return ((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5


def test_name_description_and_schema_come_from_the_function():
    t = Tool(calculator)
    assert t.name == "calculator"
    assert t.desc == "Evaluate an arithmetic expression."
    assert t.args["expression"] == {"type": "string", "description": "the expression, e.g. 2 * (3 + 4)"}
    assert t.args["precision"]["type"] == "integer" and t.args["precision"]["default"] == 4
    assert t.required == ["expression"]
    assert t.schema["required"] == ["expression"]
    assert "calculator" in t.describe() and "Evaluate an arithmetic expression." in t.describe()


def test_sphinx_docstring_literal_and_overrides():
    t = Tool(lookup, name="find", desc="Find things.")
    assert (t.name, t.desc) == ("find", "Find things.")
    assert t.args["key"]["description"] == "what to look up"
    assert t.args["table"]["enum"] == ["people", "places"]
    assert t.is_async


def test_arguments_are_validated_and_converted_before_the_call():
    t = Tool(calculator)
    assert t(expression="2/3", precision="2") == 0.67  # "2" -> 2
    with pytest.raises(ToolError, match=r"expression: Field required.*it takes \{expression: str"):
        t(precision=2)
    with pytest.raises(ToolError, match="expr: unknown argument"):
        t(expression="1", expr="2")
    with pytest.raises(ToolError, match="precision: Input should be a valid integer"):
        t(expression="1", precision="many")


def test_nested_models_are_validated():
    t = Tool(distance)
    assert t(a={"x": 0, "y": 0}, b={"x": 3, "y": 4}) == 5.0
    assert "properties" in t.args["a"]
    with pytest.raises(ToolError, match=r"a\.y"):
        t(a={"x": 0}, b={"x": 3, "y": 4})


def test_run_turns_every_failure_into_an_observation():
    t = Tool(calculator)
    assert t.run({"expression": "1+1"}) == "2"
    assert t.run('{"expression": "2*3"}') == "6"
    assert t.run({"expression": "1/0"}).startswith("Error: tool 'calculator' raised ZeroDivisionError")
    assert t.run({"expression": "import os"}) == "Error: tool 'calculator' raised ValueError: only arithmetic, please"
    assert t.run({"nope": 1}).startswith("Error: tool 'calculator' got bad arguments")
    assert t.run([1, 2]).startswith("Error: tool 'calculator' takes its arguments as a JSON object")


def test_a_bare_value_for_a_one_argument_tool():
    def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    assert Tool(shout).run("hello there") == "HELLO THERE"


def test_async_and_sync_tools_both_ways():
    a, s = Tool(lookup), Tool(calculator)
    assert a(key="ada") == "people:ada"  # no loop running: run to completion
    assert asyncio.run(a.acall(key="rome", table="places")) == "places:rome"
    assert asyncio.run(s.acall(expression="3*3")) == 9

    async def inside_a_loop():
        with pytest.raises(ToolError, match="acall"):
            a(key="x")
        return await a.arun({"key": "y", "table": "bad"})

    assert asyncio.run(inside_a_loop()).startswith("Error: tool 'lookup' got bad arguments (table:")


def test_kwargs_tools_accept_extra_arguments_and_bad_names_are_refused():
    def anything(**kwargs: int) -> int:
        """Sum anything."""
        return sum(kwargs.values())

    assert Tool(anything)(a=1, b=2) == 3
    with pytest.raises(ToolError, match="must be letters"):
        Tool(calculator, name="bad name!")
    with pytest.raises(ToolError, match="needs a function"):
        Tool(42)  # type: ignore[arg-type]


def test_tools_are_shared_by_copies_and_exported():
    t = Tool(calculator)
    assert copy.deepcopy(t) is t
    assert pl.Tool is Tool and pl.ToolError is ToolError
