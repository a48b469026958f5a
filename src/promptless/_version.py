"""The package's version, in a module of its own so that any module can read it without importing the package.

pyproject.toml repeats it (a static version, for tools that read it without running Python);
tests/unit/test_version.py checks that the two agree.
"""

__version__ = "0.1.0"
