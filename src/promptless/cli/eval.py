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
import sys
from pathlib import Path
from typing import Any

from promptless.cli import common


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = common.command_parser(subparsers, "eval", doc=__doc__,
                                   help="evaluate a program (module:attribute) on a JSONL data file with a metric")
    common.add_program_arguments(parser, "data", "a JSONL file, one example per line")
    common.add_metric_arguments(parser)
    common.add_model_argument(parser, "the LM to run it with")
    common.add_load_argument(parser)
    common.add_threads_argument(parser)
    parser.add_argument("--limit", type=common.positive_int, default=None, metavar="N", help="only the first N examples")
    parser.add_argument("--max-errors", type=common.non_negative_int, default=None, metavar="N",
                        help="stop once more than N examples fail (default: never; a run where every example "
                        "fails, or that hits an error every example would hit, stops with status 1 anyway)")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="write the results (.json, or .csv if the name ends in .csv)")
    parser.add_argument("--show", type=common.non_negative_int, default=5, metavar="N",
                        help="rows of the results table (0: none)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    common.add_no_cache_argument(parser)
    parser.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from promptless.cli.common import (
        check_has_lm,
        infer_inputs,
        load_metric,
        load_program,
        make_lm,
        read_examples,
        uses_local,
    )
    from promptless.errors import ConfigurationError, EvaluationError
    from promptless.evaluate import Evaluate, display_table
    from promptless.settings import context

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
        check_has_lm(program)
    local = getattr(settings.get("lm"), "provider", "") == "local" or uses_local(program)
    threads = args.threads or (1 if local else 4)

    evaluate = Evaluate(devset=examples, metric=metric, num_threads=threads,
                        display_progress=not args.no_progress, max_errors=args.max_errors)
    with context(**settings):
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


__all__ = ["register", "run_eval"]
