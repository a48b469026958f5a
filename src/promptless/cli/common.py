"""What ``demo``, ``eval`` and ``optimize`` check and make the same way.

- argparse types for numbers (``positive_int``, ``non_negative_int``, ``positive_float``) and files
  (``existing_file``): a bad value stops at parse time with one line naming the option;
- ``read_examples``: a JSON-lines data file read into Examples, with ``file:line`` in every error;
- ``make_lm`` and ``check_lm``: the LM a ``--model`` names, and a check that it can work at all (an OpenAI
  model with no key fails here, before the first example, not as a 0 % score);
- ``failure_lines``: the count per kind of error and the first error of a run, for the reports.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

# -- argparse types ---------------------------------------------------------------------------------------------


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    """A whole number of 1 or more (``--limit``, ``--threads``, ``--max-calls``)."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number of 0 or more (``--show``, ``--max-errors``, demo counts)."""
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_float(text: str) -> float:
    """A number above 0 (``--max-cost``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def existing_file(text: str) -> str:
    """A path to a file that exists (data files, saved state)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"not a file: {text}")
    return text


# -- data -------------------------------------------------------------------------------------------------------


def read_examples(path: str | Path, inputs: list[str], what: str) -> list[Any]:
    """The JSON objects of a JSON-lines file as Examples with ``inputs`` marked.

    Every problem is a ``ConfigurationError`` naming ``what`` (the argument), the file and the line: a missing
    or unreadable file, a line that is not JSON or not an object, an example without an input field, no
    examples at all. Blank lines are skipped.
    """
    from promptless.data import Example
    from promptless.errors import ConfigurationError

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"{what}: no such file: {p}") from None
    except IsADirectoryError:
        raise ConfigurationError(f"{what}: {p} is a folder, not a JSONL file") from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{what}: {p} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigurationError(f"{what}: cannot read {p}: {exc.strerror or exc}") from None
    examples: list[Any] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"{p}:{lineno}: not valid JSON ({exc.msg}, column {exc.colno}); each line must be one JSON object"
            ) from None
        if not isinstance(row, dict):
            raise ConfigurationError(
                f"{p}:{lineno}: a JSON {type(row).__name__}, not an object; each line must be one JSON object "
                'such as {"question": "...", "answer": "..."}'
            )
        missing = [k for k in inputs if k not in row]
        if missing:
            raise ConfigurationError(
                f"{p}:{lineno}: the example has no field(s) {', '.join(missing)} "
                f"(its fields: {', '.join(row) or 'none'}); fix the data or pass --inputs"
            )
        examples.append(Example(row).with_inputs(*inputs))
    if not examples:
        raise ConfigurationError(f"{what}: {p} holds no examples (one JSON object per line)")
    return examples


# -- LMs --------------------------------------------------------------------------------------------------------


def normalize_model(model: str) -> str:
    """``smollm2-135m`` (a bare known name) becomes ``local/smollm2-135m``; anything else is kept."""
    if "/" not in model:
        from promptless.lm import models

        if model in models.REGISTRY:
            return f"local/{model}"
    return model


def make_lm(model: str, *, no_cache: bool = False, check: bool = True) -> Any:
    """The LM ``--model`` names (bare local names allowed), checked with ``check_lm``."""
    import promptless as pl

    lm = pl.LM(normalize_model(model), **({"cache": False} if no_cache else {}))
    if check:
        check_lm(lm)
    return lm


def check_lm(lm: Any) -> None:
    """Refuse an LM that cannot answer anything: the OpenAI API itself with no API key."""
    from promptless.errors import ConfigurationError

    try:
        from promptless.lm.openai import DEFAULT_BASE_URL, OpenAILM
    except ImportError:  # pragma: no cover - the client is part of the package
        return
    if isinstance(lm, OpenAILM) and lm.base_url == DEFAULT_BASE_URL.rstrip("/") and not lm.has_api_key:
        raise ConfigurationError(
            f"openai/{lm.model} needs an API key: set OPENAI_API_KEY (or OPENAI_BASE_URL for another "
            "OpenAI-compatible server), or use the embedded model, e.g. --model local/qwen2.5-coder-1.5b"
        )


# -- reports ----------------------------------------------------------------------------------------------------


def failure_lines(errors: list[str], total: int) -> str:
    """``3 of 25 failed (2 ParseError, 1 LMTimeoutError); first error: ParseError: ...`` from error texts."""
    from promptless.evaluate.evaluate import error_kind

    if not errors:
        return ""
    kinds = ", ".join(f"{n} {k}" for k, n in Counter(error_kind(e) for e in errors).most_common())
    first = errors[0].strip().splitlines()[0] if errors[0].strip() else ""
    if len(first) > 500:
        first = first[:499] + "…"
    return f"{len(errors)} of {total} failed ({kinds}); first error: {first}"


__all__ = [
    "check_lm",
    "existing_file",
    "failure_lines",
    "make_lm",
    "non_negative_int",
    "normalize_model",
    "positive_float",
    "positive_int",
    "read_examples",
]
