"""``promptless label PROGRAM DATA``: label unlabelled inputs with a teacher program.

    promptless label myapp.classify:program events.jsonl --model local/qwen2.5-coder-1.5b --out labelled.jsonl
    promptless label myapp/qa.py:build questions.jsonl --fields answer --max-lm-calls 500 --run-dir runs/label

PROGRAM (the teacher) is ``module:attribute`` (or ``path/to/file.py:attribute``) naming a Module instance, a
Module class (made with no arguments) or a zero-argument factory, as for ``promptless eval``. DATA is a
JSON-lines file of objects; the inputs are ``--inputs a,b``, or else the program's input fields, and any other
field (a gold label, an id) is ignored. Each line of --out holds the inputs and the teacher's output fields
(``--fields a,b`` keeps some of them): training data for a smaller student (``promptless optimize STUDENT
labelled.jsonl ...``). With --run-dir, the same command after a crash or a budget stop continues where it
stopped and pays for nothing twice.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from promptless.cli import common


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = common.command_parser(subparsers, "label", doc=__doc__,
                                   help="label the inputs of a JSONL file with a teacher program (module:attribute)")
    common.add_program_arguments(parser, "data", "a JSONL file of inputs, one object per line")
    common.add_model_argument(parser, "the teacher's LM")
    parser.add_argument("--out", required=True, metavar="FILE.jsonl", help="where to write the labelled examples")
    parser.add_argument("--fields", default=None, metavar="A,B",
                        help="the teacher's output fields to keep (default: the output fields of its last predictor)")
    parser.add_argument("--inputs", default=None, metavar="A,B",
                        help="the input fields of each line (default: the program's input fields)")
    common.add_load_argument(parser)
    parser.add_argument("--max-lm-calls", "--max-calls", dest="max_calls", type=common.positive_int, default=None,
                        metavar="N", help="LM-call budget; stops and writes what was labelled so far")
    parser.add_argument("--max-cost", type=common.positive_float, default=None, metavar="X",
                        help="cost budget (as the LM reports it)")
    parser.add_argument("--run-dir", default=None, metavar="DIR",
                        help="checkpoint folder: rerun the same command (with a larger budget) to continue")
    common.add_threads_argument(parser)
    parser.add_argument("--limit", type=common.positive_int, default=None, metavar="N", help="only the first N inputs")
    parser.add_argument("--no-progress", action="store_true", help="no live progress line")
    common.add_no_cache_argument(parser)
    parser.set_defaults(func=run_label)


def _names(text: str | None, option: str) -> list[str] | None:
    from promptless.errors import ConfigurationError

    if text is None:
        return None
    names = [k.strip() for k in text.split(",") if k.strip()]
    if not names:
        raise ConfigurationError(f"{option} names no field; give field names separated by commas, e.g. {option} a,b")
    return names


def run_label(args: argparse.Namespace) -> int:
    from promptless.cli.common import (
        check_has_lm,
        infer_inputs,
        load_program,
        make_lm,
        normalize_model,
        read_examples,
        uses_local,
    )
    from promptless.errors import ConfigurationError
    from promptless.modules import Module
    from promptless.optimize.label import label
    from promptless.settings import context

    program = load_program(args.program)
    if not isinstance(program, Module):
        raise ConfigurationError(
            f"PROGRAM {args.program} is a plain function; the teacher must be a pl.Module whose predictors call an LM"
        )
    if args.load:
        program.load(args.load)
    fields = _names(args.fields, "--fields")
    inputs = _names(args.inputs, "--inputs") or infer_inputs(program)
    if not inputs:
        raise ConfigurationError(f"cannot tell the input fields of {args.program}; pass --inputs field1,field2")
    if Path(args.out).suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        raise ConfigurationError(f"--out must name a .jsonl file, got {args.out!r}")
    if Path(args.out).resolve() == Path(args.data).resolve():
        raise ConfigurationError("--out is the DATA file itself; write the labels to another file")
    examples = read_examples(args.data, inputs, "DATA")
    if args.limit is not None:
        examples = examples[: args.limit]

    settings: dict[str, Any] = {}
    model = normalize_model(args.model) if args.model else ""
    if model:
        settings["lm"] = make_lm(model, no_cache=args.no_cache)
    else:
        check_has_lm(program)
    local = getattr(settings.get("lm"), "provider", "") == "local" or uses_local(program)
    threads = args.threads or (1 if local else 4)

    print(f"labelling {len(examples)} inputs" + (f" with {model}" if model else "")
          + (f", budget {args.max_calls} LM calls" if args.max_calls else ""), flush=True)
    with context(**settings):
        result = label(program, examples, fields=fields, max_lm_calls=args.max_calls, max_cost=args.max_cost,
                       run_dir=args.run_dir, num_threads=threads, progress=False if args.no_progress else None)
    try:
        path = result.to_jsonl(args.out)
    except OSError as exc:
        raise ConfigurationError(f"--out: cannot write {args.out}: {exc.strerror or exc}") from None
    print(f"labelled: {len(result)} of {result.n_inputs} inputs, written to {path}")
    calls = f"LM calls: {result.calls}"
    if result.replayed_calls:
        calls += f" ({result.replayed_calls} made by an earlier run of this --run-dir, {result.fresh_calls} new)"
    print(calls + (f", cost {result.cost:.4f}" if result.cost else "") + f", time: {result.seconds:.1f} s")
    if result.failed:
        print(f"failed: {common.failure_lines([f.error for f in result.failed], result.n_inputs)}")
    print(f"stopped: {result.stopped}" + (f" ({result.pending} inputs not labelled)" if result.pending else ""))
    if result.stopped == "budget":
        hint = (f"rerun with --run-dir {result.run_dir} and a larger --max-lm-calls to continue"
                if result.run_dir else "rerun with --run-dir DIR and a larger --max-lm-calls to continue")
        print(f"the budget ran out: {hint}", file=sys.stderr)
    elif any(not f.stored for f in result.failed):
        print("some inputs failed with an LM error that may pass: rerun the same command with --run-dir to try "
              "them again", file=sys.stderr)
    if not result.examples:
        print("error: nothing was labelled", file=sys.stderr)
        return 1
    return 0


__all__ = ["register", "run_label"]
