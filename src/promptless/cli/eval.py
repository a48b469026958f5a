"""``promptless eval PROGRAM DATA``: score your own program on your own data.

    promptless eval myapp.qa:program dev.jsonl --metric exact --field answer --model local/qwen2.5-coder-1.5b
    promptless eval myapp/qa.py:build_program dev.jsonl --metric f1 --load optimized.json --out results.json

PROGRAM is ``module:attribute`` (or ``path/to/file.py:attribute``) naming a
Module instance, a Module class (made with no arguments), or a zero-argument
factory returning a program. DATA is a JSON-lines file of objects. The inputs
are ``--inputs a,b``, or else the program's input fields. ``--metric`` is a
named metric (exact, f1, contains) or ``module:function``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from promptless.cli.common import existing_file, non_negative_int, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a program (module:attribute) on a JSONL data file with a metric",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("program", help="module:attribute or file.py:attribute (a Module, Module class or factory)")
    parser.add_argument("data", type=existing_file, help="a JSONL file, one example per line")
    parser.add_argument("--metric", default="exact",
                        help="exact, f1, contains, or module:function (default: exact)")
    parser.add_argument("--field", default=None,
                        help="the output field the metric compares (default: every label the prediction has)")
    parser.add_argument("--inputs", default=None, metavar="A,B",
                        help="the input fields of each example (default: the program's input fields)")
    parser.add_argument("--model", default=None, help="the LM to run it with, e.g. local/qwen2.5-coder-1.5b "
                        "(default: whatever the program or its module configured)")
    parser.add_argument("--load", type=existing_file, default=None, metavar="STATE.json",
                        help="load saved program state first")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="examples run at once (default: 1 for local models, 4 otherwise)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N", help="only the first N examples")
    parser.add_argument("--max-errors", type=non_negative_int, default=None, metavar="N",
                        help="stop once more than N examples fail (default: never; a run where every example "
                        "fails, or that hits an error every example would hit, stops with status 1 anyway)")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="write the results (.json, or .csv if the name ends in .csv)")
    parser.add_argument("--show", type=non_negative_int, default=5, metavar="N",
                        help="rows of the results table (0: none)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the LM cache")
    parser.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    import promptless as pl
    from promptless.cli.common import make_lm, read_examples
    from promptless.errors import ConfigurationError, EvaluationError
    from promptless.evaluate import Evaluate, display_table

    program = load_program(args.program)
    if args.load:
        if not hasattr(program, "load"):
            raise ConfigurationError(f"--load: {args.program} is not a Module, so it has no state to load")
        program.load(args.load)
    metric = load_metric(args.metric, args.field)
    input_keys = [k.strip() for k in args.inputs.split(",") if k.strip()] if args.inputs else infer_inputs(program)
    if not input_keys:
        raise ConfigurationError(
            f"cannot tell the input fields of {args.program}; pass --inputs field1,field2"
        )
    examples = read_examples(args.data, input_keys, "DATA")
    if args.limit is not None:
        examples = examples[: args.limit]

    settings: dict[str, Any] = {}
    if args.model:
        settings["lm"] = make_lm(args.model, no_cache=args.no_cache)
    else:
        _check_has_lm(program)
    local = getattr(settings.get("lm"), "provider", "") == "local" or _uses_local(program)
    threads = args.threads or (1 if local else 4)

    evaluate = Evaluate(devset=examples, metric=metric, num_threads=threads,
                        display_progress=not args.no_progress, max_errors=args.max_errors)
    with pl.context(**settings):
        try:
            result = evaluate(program)
        except EvaluationError as exc:
            partial = exc.result
            if partial is not None:
                if args.show:  # the error column says why, even when no row has a prediction
                    display_table(partial, args.show)
                if args.out:
                    print(f"partial results: {_write(partial, args.out)}", file=sys.stderr)
            raise
    if args.show:
        display_table(result, args.show)
    print(f"score: {result.score:.2f} ({getattr(metric, '__name__', 'metric')}) on {len(result.rows)} examples"
          + (f", {result.n_errors} failed" if result.n_errors else ""))
    if result.n_errors:
        print(f"failed: {result.errors_summary()}")
    u = result.usage
    print(f"LM calls: {u.calls} (+{u.cache_hits} cached), tokens: {u.total_tokens:,}, time: {result.seconds:.1f} s")
    if args.out:
        print(f"results: {_write(result, args.out)}")
    return 0


def _write(result: Any, out: str) -> Path:
    from promptless.errors import ConfigurationError

    try:
        return result.to_csv(out) if out.lower().endswith(".csv") else result.to_json(out)
    except OSError as exc:
        raise ConfigurationError(f"--out: cannot write {out}: {exc.strerror or exc}") from None


# -- loading the user's code ------------------------------------------------------------------------


def _import_target(spec: str, what: str) -> Any:
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

    obj = _import_target(spec, "PROGRAM")
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
        if _required_params(obj) == 0:
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
        metric = _import_target(name, "--metric")
        if not callable(metric):
            raise ConfigurationError(f"--metric {name} is not callable")
        if field is not None:
            raise ConfigurationError("--field applies to the named metrics only; your metric picks its own fields")
        return metric
    return get_metric(name, field)


def _required_params(fn: Any) -> int:
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


def _check_has_lm(program: Any) -> None:
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


def _uses_local(program: Any) -> bool:
    from promptless import settings
    from promptless.modules import Module

    lms = [settings.get("lm")]
    if isinstance(program, Module):
        lms += [p.lm for p in program.predictors()]
    return any(getattr(lm, "provider", "") == "local" for lm in lms if lm is not None)


__all__ = ["infer_inputs", "load_metric", "load_program", "register", "run_eval"]
