"""`import promptless` stays light: no heavy dependency, no file, no thread."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ["asyncio", "httpx", "pydantic", "rich", "optuna", "llama_cpp", "numpy", "json_repair", "sqlite3"]


def test_import_pulls_in_no_heavy_module():
    code = (
        "import sys, json, promptless; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.check_output([sys.executable, "-c", code], text=True)
    assert json.loads(out) == []


def test_public_names_resolve():
    import promptless as pl

    for name in pl.__all__:
        assert getattr(pl, name) is not None, name


# What `import promptless` may load: the core only. The rest loads on first use of one of its names.
CORE = ("promptless", "promptless._version", "promptless.errors", "promptless.types", "promptless.data",
        "promptless.values", "promptless.signature", "promptless.settings", "promptless.callbacks", "promptless.history",
        "promptless.lm", "promptless.adapters", "promptless.modules")
ON_FIRST_USE = ("promptless.optimize", "promptless.evaluate", "promptless.cli", "promptless.tools",
                "promptless.retrieve", "promptless.embeddings", "promptless.sandbox", "promptless.persist",
                "promptless.datasets", "promptless.tasks", "promptless.lm.openai", "promptless.lm.local",
                "promptless.lm.cache", "promptless.media")


def _loaded_after(code: str) -> list[str]:
    out = subprocess.check_output(
        [sys.executable, "-c", f"import sys, json; {code}; "
                               "print(json.dumps(sorted(m for m in sys.modules if m.startswith('promptless'))))"],
        text=True)
    return json.loads(out)


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_import_loads_the_core_only():
    loaded = _loaded_after("import promptless")
    assert [m for m in loaded if _under(m, ON_FIRST_USE)] == []
    # the core's own modules are the only ones loaded, and they stay few (31 when this was written)
    assert [m for m in loaded if m != "promptless" and not _under(m, CORE[1:])] == []
    assert len(loaded) <= 40, loaded


def test_lazy_names_load_their_room_on_first_use():
    loaded = _loaded_after("import promptless as pl; pl.MIPROv2; pl.evaluate.exact_match")
    assert "promptless.optimize.mipro" in loaded and "promptless.evaluate.metrics" in loaded
    assert not any(_under(m, ("promptless.cli", "promptless.retrieve")) for m in loaded)


def test_lazy_names_are_the_classes_their_modules_define():
    import promptless as pl
    from promptless.embeddings import Embedder
    from promptless.evaluate import Evaluate, EvaluationResult
    from promptless.optimize import MIPROv2, OptimizationResult
    from promptless.optimize.calibrate import Calibrate
    from promptless.optimize.gepa import GEPA
    from promptless.retrieve import Retriever
    from promptless.tools import Tool

    assert (pl.MIPROv2, pl.GEPA, pl.Calibrate, pl.OptimizationResult) == (MIPROv2, GEPA, Calibrate, OptimizationResult)
    assert (pl.Evaluate, pl.EvaluationResult, pl.Tool, pl.Retriever, pl.Embedder) == (
        Evaluate, EvaluationResult, Tool, Retriever, Embedder)
    assert pl.evaluate.exact_match is not None and pl.datasets.CATEGORIES[0] == "Wars and Conflicts"
    assert set(pl.__all__) <= set(dir(pl))
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        pl.NoSuchThing  # noqa: B018
