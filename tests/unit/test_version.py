"""The version lives in promptless/_version.py; pyproject.toml repeats it, and the two must agree."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

import promptless
from promptless._version import __version__

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_and_package_agree_on_the_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["version"] == __version__
    assert promptless.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", __version__), __version__


def test_every_module_takes_the_version_from_version_py():
    """No module reads the version from the package's __init__ (which would import everything first)."""
    src = ROOT / "src" / "promptless"
    offenders = [str(p.relative_to(src)) for p in src.rglob("*.py")
                 if p.name not in ("_version.py", "__init__.py") or p.parent != src
                 if re.search(r"from (promptless|\.+) import __version__", p.read_text(encoding="utf-8"))]
    assert offenders == []
