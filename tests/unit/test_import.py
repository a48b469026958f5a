"""`import promptless` stays light: no heavy dependency, no file, no thread."""

from __future__ import annotations

import json
import subprocess
import sys

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
