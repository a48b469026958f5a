"""What ``demo``, ``eval`` and ``optimize`` check and make the same way.

- argparse types for numbers (``positive_int``, ``non_negative_int``, ``positive_float``) and files
  (``existing_file``): a bad value stops at parse time with one line naming the option;
- ``read_examples``: a JSON-lines data file read into Examples, with ``file:line`` in every error;
- ``make_lm`` and ``check_lm``: the LM a ``--model`` names, and a check that it can work at all (an OpenAI
  model with no key fails here, before the first example, not as a 0 % score);
- the argparse set-up the commands share (``command_parser``, ``add_program_arguments``, ``add_metric_arguments``,
  ``add_model_argument``, ...), so that one option reads and helps the same in every command;
- ``load_program``, ``load_metric``, ``infer_inputs``: the user's program and metric from ``module:attribute``;
  ``check_has_lm`` and ``uses_local``: which LM it will run with;
- ``TrialLog``: an optimizer's per-trial log lines on stderr;
- ``failure_lines``: the count per kind of error and the first error of a run, for the reports.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import logging
import sys
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


PROGRAM_HELP = "module:attribute or file.py:attribute (a Module, Module class or factory)"


def command_parser(subparsers: argparse._SubParsersAction, name: str, *, help: str,  # type: ignore[type-arg]
                   doc: str | None) -> argparse.ArgumentParser:
    """A sub-command's parser; its description is the command module's docstring after the first paragraph."""
    return subparsers.add_parser(  # type: ignore[no-any-return]
        name,
        help=help,
        description=doc.split("\n\n", 1)[1] if doc else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_program_arguments(parser: argparse.ArgumentParser, data: str, data_help: str) -> None:
    """The two positionals of a command that runs the user's program on data: PROGRAM and a JSONL file."""
    parser.add_argument("program", help=PROGRAM_HELP)
    parser.add_argument(data, type=existing_file, help=data_help)


def add_metric_arguments(parser: argparse.ArgumentParser) -> None:
    """``--metric``, ``--field`` and ``--inputs``: how examples are read and scored (see ``load_metric``)."""
    parser.add_argument("--metric", default="exact", help="exact, f1, contains, or module:function (default: exact)")
    parser.add_argument("--field", default=None,
                        help="the output field the metric compares (default: every label the prediction has)")
    parser.add_argument("--inputs", default=None, metavar="A,B",
                        help="the input fields of each example (default: the program's input fields)")


def add_model_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--model``: the LM the program runs with (``what`` says which LM it is)."""
    parser.add_argument("--model", default=None, help=f"{what}, e.g. local/qwen2.5-coder-1.5b "
                        "(default: whatever the program or its module configured)")


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="examples run at once (default: 1 for local models, 4 otherwise)")


def add_load_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load", type=existing_file, default=None, metavar="STATE.json",
                        help="load saved program state first")


def add_no_cache_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the LM cache")


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
    import promptless as pl  # through the package, so that a test can stand pl.LM in for a real one

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


# -- the user's program -----------------------------------------------------------------------------------------


def import_target(spec: str, what: str) -> Any:
    from promptless.errors import ConfigurationError

    if ":" not in spec:
        raise ConfigurationError(f"{what} must look like module:attribute or path/to/file.py:attribute, got {spec!r}")
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"{what} must look like module:attribute, got {spec!r}")
    if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise ConfigurationError(f"{what}: no file {path}")
        name = "_promptless_user_" + "".join(c if c.isalnum() else "_" for c in str(path.resolve()))
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ConfigurationError(f"{what}: cannot import {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
    else:
        cwd = str(Path.cwd())
        if cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ConfigurationError(
                f"{what}: cannot import module {module_name!r} ({exc}); run from the folder that holds it, "
                "or give a file path (path/to/file.py:attribute)"
            ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(f"{what}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def load_program(spec: str) -> Any:
    """A Module instance as is; a Module class made with no arguments; a zero-argument factory called."""
    from promptless.errors import ConfigurationError
    from promptless.modules import Module

    obj = import_target(spec, "PROGRAM")
    if isinstance(obj, Module):
        return obj
    if isinstance(obj, type):
        if not issubclass(obj, Module):
            raise ConfigurationError(f"PROGRAM {spec} is a class but not a pl.Module subclass")
        try:
            return obj()
        except TypeError as exc:
            raise ConfigurationError(
                f"PROGRAM {spec}: the class needs arguments ({exc}); point at an instance or a factory instead"
            ) from exc
    if callable(obj):
        if required_params(obj) == 0:
            made = obj()
            if not callable(made):
                raise ConfigurationError(f"PROGRAM {spec}: the factory returned {type(made).__name__}, not a program")
            return made
        return obj  # a plain function taking the inputs as keyword arguments
    raise ConfigurationError(
        f"PROGRAM {spec} is a {type(obj).__name__}; point at a Module, a Module class or a factory"
    )


def load_metric(name: str, field: str | None) -> Any:
    from promptless.errors import ConfigurationError
    from promptless.evaluate.metrics import get_metric

    if ":" in name:
        metric = import_target(name, "--metric")
        if not callable(metric):
            raise ConfigurationError(f"--metric {name} is not callable")
        if field is not None:
            raise ConfigurationError("--field applies to the named metrics only; your metric picks its own fields")
        return metric
    return get_metric(name, field)


def required_params(fn: Any) -> int:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return -1
    return sum(
        1 for p in sig.parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


def infer_inputs(program: Any) -> list[str]:
    """The program's input names: a Predict's signature inputs, else ``forward``'s (or the function's) parameters."""
    from promptless.modules import Module, Predict

    if isinstance(program, Predict):
        return list(program.signature.input_fields)
    fn = program.forward if isinstance(program, Module) else program
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    return [
        p.name for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
    ]


def check_has_lm(program: Any) -> None:
    from promptless import settings
    from promptless.errors import ConfigurationError
    from promptless.modules import Module

    if settings.get("lm") is not None or not isinstance(program, Module):
        return
    if any(p.lm is None for p in program.predictors()):
        raise ConfigurationError(
            "no LM: pass --model (e.g. --model local/qwen2.5-coder-1.5b), or have your module call "
            "pl.configure(lm=...) or give its predictors an lm"
        )


def uses_local(program: Any) -> bool:
    from promptless import settings
    from promptless.modules import Module

    lms = [settings.get("lm")]
    if isinstance(program, Module):
        lms += [p.lm for p in program.predictors()]
    return any(getattr(lm, "provider", "") == "local" for lm in lms if lm is not None)




# -- logs -------------------------------------------------------------------------------------------------------


class TrialLog(logging.Handler):
    """The optimizer's per-trial lines on whatever stderr is at the time (so they print above a live display)."""

    def __init__(self, prefix: str = "") -> None:
        super().__init__(logging.INFO)
        self.prefix = prefix

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.prefix + record.getMessage(), file=sys.stderr, flush=True)
        except Exception:  # pragma: no cover - never let logging break a run
            self.handleError(record)


# -- reports ----------------------------------------------------------------------------------------------------


def failure_lines(errors: list[str], total: int) -> str:
    """``3 of 25 failed (2 ParseError, 1 LMTimeoutError); first error: ParseError: ...`` from error texts."""
    from promptless.evaluate.result import error_kind

    if not errors:
        return ""
    kinds = ", ".join(f"{n} {k}" for k, n in Counter(error_kind(e) for e in errors).most_common())
    first = errors[0].strip().splitlines()[0] if errors[0].strip() else ""
    if len(first) > 500:
        first = first[:499] + "…"
    return f"{len(errors)} of {total} failed ({kinds}); first error: {first}"


__all__ = [
    "PROGRAM_HELP",
    "TrialLog",
    "add_load_argument",
    "add_metric_arguments",
    "add_model_argument",
    "add_no_cache_argument",
    "add_program_arguments",
    "add_threads_argument",
    "check_has_lm",
    "check_lm",
    "command_parser",
    "existing_file",
    "failure_lines",
    "import_target",
    "infer_inputs",
    "load_metric",
    "load_program",
    "make_lm",
    "non_negative_int",
    "normalize_model",
    "positive_float",
    "positive_int",
    "read_examples",
    "required_params",
    "uses_local",
]
