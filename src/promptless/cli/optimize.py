"""``promptless optimize PROGRAM TRAIN.jsonl``: optimize your own program on your own data.

    promptless optimize myapp.qa:program train.jsonl --valset dev.jsonl --metric exact --field answer \\
        --model local/qwen2.5-coder-1.5b --optimizer mipro --auto light --out qa_optimized.json --report run.html
    promptless optimize myapp/qa.py:build train.jsonl --optimizer bootstrap --max-calls 200 --run-dir runs/qa

PROGRAM is ``module:attribute`` (or ``path/to/file.py:attribute``) naming a Module instance, a Module class
(made with no arguments) or a zero-argument factory, as for ``promptless eval``. TRAIN and --valset are
JSON-lines files of objects. The optimized program's state is saved as JSON (--out); load it with
``program.load(path)``. With --run-dir, the same command after a crash continues where it stopped.

Optimizers: ``auto`` (the default: ``calibrate`` with the votes of local/all-MiniLM-L6-v2, and with a probe on
the task model's own hidden states when it is a local model, checked by cross-validation over the training
and validation examples together (``--holdout cv``), for a program with label outputs -- ``Literal``,
``Enum`` or ``bool`` -- on an LM that scores labels, ``mipro`` otherwise, and ``mipro`` again when the LM
turns out to give no label scores), ``calibrate`` (pl.Calibrate: every label scored, the model's label prior
learned from the training data, kept only if it beats the program as given; ``--knn`` adds the votes of the
nearest labelled examples, ``--probe`` a logistic regression on the inputs' embeddings), ``mipro`` (MIPROv2: instructions and demos, with
--auto light/medium/heavy), ``bootstrap`` (BootstrapFewShot), ``random`` (BootstrapFewShotWithRandomSearch),
``labeled`` (LabeledFewShot), ``gepa`` (GEPA: reflective instruction evolution; --prompt-model is its
reflection model, --auto or --max-metric-calls its budget).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from promptless.cli import common

OPTIMIZERS = ("auto", "mipro", "bootstrap", "random", "labeled", "gepa", "calibrate")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = common.command_parser(subparsers, "optimize", doc=__doc__,
                                   help="optimize a program (module:attribute) on JSONL training data with a metric")
    common.add_program_arguments(parser, "train", "training examples, a JSONL file")
    parser.add_argument("--optimizer", default="auto", choices=OPTIMIZERS,
                        help="which optimizer (default: auto, which is calibrate for a program with label outputs on "
                        "an LM that scores labels, mipro otherwise)")
    parser.add_argument("--valset", type=common.existing_file, default=None, metavar="DEV.jsonl",
                        help="validation examples (default: MIPROv2 splits the training set; the others score "
                        "nothing, or the training set for random search)")
    common.add_metric_arguments(parser)
    common.add_model_argument(parser, "the task LM")
    parser.add_argument("--prompt-model", default=None,
                        help="the LM that writes instructions (mipro; default: the task LM)")
    parser.add_argument("--auto", default="light", choices=("light", "medium", "heavy", "none"),
                        help="mipro preset (default: light; 'none' needs --num-candidates and --num-trials)")
    parser.add_argument("--num-candidates", type=common.positive_int, default=None, metavar="N",
                        help="mipro: candidates per predictor; random: candidate programs")
    parser.add_argument("--num-trials", type=common.positive_int, default=None, metavar="N", help="mipro: search trials")
    parser.add_argument("--max-bootstrapped-demos", type=common.non_negative_int, default=None, metavar="N",
                        help="demos from the program's own successful runs (default: 4; mipro --auto: 4)")
    parser.add_argument("--max-labeled-demos", type=common.non_negative_int, default=None, metavar="N",
                        help="demos straight from the training data (default: 16, mipro: 4; labeled: k)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the optimizer's)")
    parser.add_argument("--max-metric-calls", type=common.positive_int, default=None, metavar="N",
                        help="gepa: examples scored in all (instead of --auto)")
    parser.add_argument("--holdout", type=_holdout, default=None, metavar="auto|none|F|N",
                        help="the part of the validation set the search does not see, on which its pick must beat "
                        "the starting program: auto (a third, at least 20; the default), a fraction such as 0.5, a "
                        "count, or none (pick on the whole validation set, no check). bootstrap takes auto or "
                        "none; calibrate also cv (the validation set joins the training set, checked by "
                        "cross-validation over all of them)")
    parser.add_argument("--knn", default=None, metavar="EMBEDDER",
                        help="an embedding model such as local/all-MiniLM-L6-v2: calibrate adds the votes of the "
                        "nearest labelled examples to the label scores; random and mipro add a candidate with "
                        "per-input nearest-neighbour demos. auto calibrates with local/all-MiniLM-L6-v2 unless "
                        "--knn names another or none")
    parser.add_argument("--probe", default=None, metavar="EMBEDDER",
                        help="calibrate: an embedding model (such as the task model, local/qwen2.5-coder-1.5b) whose "
                        "embeddings of the inputs a logistic regression learns the labels from, fitted beside the "
                        "label scores. auto uses the task model when it is a local model, unless --probe names "
                        "another or none")
    parser.add_argument("--alpha", type=_alpha, default=None, metavar="A",
                        help="level of the paired test that lets a pick replace the starting program (default 0.1)")
    parser.add_argument("--max-calls", type=common.positive_int, default=None, metavar="N",
                        help="LM-call budget over every model; stops and keeps the best so far")
    parser.add_argument("--max-cost", type=common.positive_float, default=None, metavar="X",
                        help="cost budget (as the LM reports it)")
    parser.add_argument("--run-dir", default=None, metavar="DIR",
                        help="checkpoint folder: rerun the same command to resume after a crash")
    common.add_threads_argument(parser)
    common.add_load_argument(parser)
    parser.add_argument("--out", default="optimized.json", metavar="FILE",
                        help="where to save the optimized program's state (default: optimized.json)")
    parser.add_argument("--save-refused", default=None, metavar="FILE",
                        help="where to save the candidate a held-out check refused, if one did (the search's pick, "
                             "for evaluating on data of your own)")
    parser.add_argument("--report", default=None, metavar="FILE.html", help="write an HTML report of the run")
    parser.add_argument("--result", default=None, metavar="FILE.json", help="write the run's record as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no live progress line")
    parser.add_argument("--quiet", action="store_true", help="no per-trial log lines")
    common.add_no_cache_argument(parser)
    parser.set_defaults(func=run_optimize)


def _holdout(text: str) -> Any:
    t = text.strip().lower()
    if t in ("auto", "cv"):
        return t
    if t in ("none", "off", "0"):
        return "none"
    try:
        value = float(t)
    except ValueError:
        value = -1.0
    if 0 < value < 1:
        return value
    if value >= 1 and value.is_integer():
        return int(value)
    raise argparse.ArgumentTypeError(f"expected auto, none, cv, a fraction between 0 and 1 or a count, got {text!r}")


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a level between 0 and 1 such as 0.1, got {text!r}")
    return value


def build_optimizer(args: argparse.Namespace, metric: Any, *, prompt_model: Any = None, threads: int = 1) -> Any:
    """The optimizer the options name, with the options that apply to it."""
    from promptless.errors import ConfigurationError
    from promptless.optimize import (
        BootstrapFewShot,
        BootstrapFewShotWithRandomSearch,
        LabeledFewShot,
        MIPROv2,
    )
    from promptless.optimize.gepa import GEPA

    common: dict[str, Any] = {"max_lm_calls": args.max_calls, "max_cost": args.max_cost, "run_dir": args.run_dir,
                              "num_threads": threads, "progress": False if args.no_progress else None}
    seed = {} if args.seed is None else {"seed": args.seed}
    holdout, alpha = getattr(args, "holdout", None), getattr(args, "alpha", None)
    selection: dict[str, Any] = {}
    if holdout is not None:
        selection["holdout"] = None if holdout == "none" else holdout
    if alpha is not None:
        selection["alpha"] = alpha
    if selection and args.optimizer == "labeled":
        raise ConfigurationError("--holdout/--alpha: labeled picks demos without scoring anything, so there is "
                                 "nothing to check; use --optimizer bootstrap or random for checked demos")
    common.update(selection)
    knn: dict[str, Any] = {}
    if getattr(args, "knn", None) and args.knn.lower() != "none":
        if args.optimizer not in ("calibrate", "random", "mipro"):
            raise ConfigurationError(f"--knn applies to --optimizer calibrate, random and mipro, not {args.optimizer}")
        knn["knn"] = args.knn  # the optimizer makes the name a pl.Embedder
    probe: dict[str, Any] = {}
    if getattr(args, "probe", None) and args.probe.lower() != "none":
        if args.optimizer != "calibrate":
            raise ConfigurationError(f"--probe applies to --optimizer calibrate, not {args.optimizer}")
        probe["probe"] = args.probe
    max_metric_calls = getattr(args, "max_metric_calls", None)
    if args.optimizer == "gepa":
        budget: dict[str, Any] = ({"max_metric_calls": max_metric_calls} if max_metric_calls
                                  else {} if args.auto == "none" else {"auto": args.auto})
        return GEPA(metric, reflection_lm=prompt_model, **budget, **seed, **common)
    if max_metric_calls:
        raise ConfigurationError("--max-metric-calls applies to --optimizer gepa only")
    if args.optimizer == "calibrate":
        from promptless.optimize.calibrate import Calibrate

        return Calibrate(metric, **knn, **probe, **seed, **common)
    if args.optimizer == "mipro":
        auto = None if args.auto == "none" else args.auto
        return MIPROv2(
            metric, prompt_model=prompt_model, auto=auto, num_candidates=args.num_candidates,
            num_trials=args.num_trials,
            max_bootstrapped_demos=4 if args.max_bootstrapped_demos is None else args.max_bootstrapped_demos,
            max_labeled_demos=4 if args.max_labeled_demos is None else args.max_labeled_demos, **knn, **seed,
            **common,
        )
    demos: dict[str, Any] = {
        "max_bootstrapped_demos": 4 if args.max_bootstrapped_demos is None else args.max_bootstrapped_demos,
        "max_labeled_demos": 16 if args.max_labeled_demos is None else args.max_labeled_demos,
    }
    if args.optimizer == "bootstrap":
        return BootstrapFewShot(metric=metric, **demos, **common)
    if args.optimizer == "random":
        n = 8 if args.num_candidates is None else args.num_candidates
        return BootstrapFewShotWithRandomSearch(metric, num_candidate_programs=n, **demos, **knn, **seed, **common)
    k = 16 if args.max_labeled_demos is None else args.max_labeled_demos
    return LabeledFewShot(k=k, metric=metric, **seed, **common)


def run_optimize(args: argparse.Namespace) -> int:
    from promptless.cli.common import (
        TrialLog,
        check_has_lm,
        infer_inputs,
        load_metric,
        load_program,
        make_lm,
        normalize_model,
        read_examples,
        uses_local,
    )
    from promptless.errors import ConfigurationError, ScoringNotSupportedError
    from promptless.lm.usage import track_usage
    from promptless.modules import Module
    from promptless.modules.scored import Classify
    from promptless.settings import context

    program = load_program(args.program)
    if not isinstance(program, Module):
        raise ConfigurationError(
            f"PROGRAM {args.program} is a plain function; optimizers need a pl.Module with predictors to tune"
        )
    auto = args.optimizer == "auto"
    original = program
    scored, scored_note = (label_scoring(program, args.program) if args.optimizer in ("auto", "calibrate")
                           else (None, ""))
    if auto:
        args.optimizer = "calibrate" if scored is not None else "mipro"
    if args.prompt_model and args.optimizer not in ("mipro", "gepa"):
        raise ConfigurationError(
            "--prompt-model applies to --optimizer mipro and gepa only (the others write no instructions)"
            + ("; auto chose calibrate because the program has label outputs: pass --optimizer mipro to search "
               "instructions with a prompt model" if auto else ""))
    if args.optimizer == "calibrate" and scored is not None and args.load:
        program = scored  # a saved calibration loads into the label-scoring copy; that copy is the start
    elif args.optimizer != "calibrate" or scored is None:
        scored_note = ""
    asked_knn, asked_probe, asked_holdout = args.knn, args.probe, args.holdout
    if auto and args.optimizer == "calibrate" and args.knn is None:
        args.knn = default_votes()
    if args.load:
        program.load(args.load)
    metric = load_metric(args.metric, args.field)
    inputs = [k.strip() for k in args.inputs.split(",") if k.strip()] if args.inputs else infer_inputs(program)
    if not inputs:
        raise ConfigurationError(f"cannot tell the input fields of {args.program}; pass --inputs field1,field2")
    trainset = read_examples(args.train, inputs, "TRAIN")
    valset = read_examples(args.valset, inputs, "--valset") if args.valset else None
    if args.out and Path(args.out).suffix.lower() != ".json":
        raise ConfigurationError(f"--out must name a .json file, got {args.out!r}")

    settings: dict[str, Any] = {}
    model = normalize_model(args.model) if args.model else ""
    if model:
        settings["lm"] = make_lm(model, no_cache=args.no_cache)
    else:
        check_has_lm(program)
    prompt_model = make_lm(args.prompt_model, no_cache=args.no_cache) if args.prompt_model else None
    local = getattr(settings.get("lm"), "provider", "") == "local" or uses_local(program)
    threads = args.threads or (1 if local else 4)
    if auto and args.optimizer == "calibrate":
        if args.probe is None:
            args.probe = default_probe(settings.get("lm"), program)
        if args.holdout is None and valset:
            args.holdout = "cv"  # the valset joins the training set; the check is the cross-validation over all

    run_dir = args.run_dir
    if auto and run_dir:
        args.run_dir = str(Path(run_dir) / args.optimizer)
    optimizer = build_optimizer(args, metric, prompt_model=prompt_model, threads=threads)
    handler = None
    if not args.quiet:
        handler = TrialLog()
        log = logging.getLogger("promptless.optimize")
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    if auto:
        if args.optimizer == "calibrate":
            votes = "" if args.knn.lower() == "none" else f", with the votes of the nearest labelled examples ({args.knn})"
            if args.probe.lower() != "none":
                votes += f"{' and' if votes else ', with'} a probe on the embeddings of {args.probe}"
            if args.holdout == "cv":
                votes += ", checked by cross-validation over the training and validation examples together"
            print(f"auto: calibrate, since the program has label outputs{votes} (--optimizer mipro searches "
                  "instructions and demos instead)", flush=True)
        else:
            print("auto: mipro, since the program has no label output to calibrate", flush=True)
    if scored_note:
        print(scored_note, flush=True)

    def announce() -> None:
        print(f"{type(optimizer).__name__} on {len(trainset)} training examples"
              + (f", {len(valset)} validation examples" if valset else "")
              + (f", task model {model}" if model else "")
              + (f", prompt model {normalize_model(args.prompt_model)}" if args.prompt_model else ""), flush=True)

    announce()
    try:
        with context(**settings):
            try:
                with track_usage() as spent:
                    optimized = optimizer.compile(program, trainset=trainset, valset=valset)
            except ScoringNotSupportedError:
                if not auto or args.optimizer != "calibrate":
                    raise
                # The LM makes labels by generation only: nothing to calibrate, so search instructions instead.
                print("auto: the LM gave no label scores, so there is nothing to calibrate; running mipro instead",
                      flush=True)
                args.optimizer, scored_note, program = "mipro", "", original
                args.knn, args.probe, args.holdout = asked_knn, asked_probe, asked_holdout
                if args.load:
                    program.load(args.load)
                if args.max_calls:
                    args.max_calls = max(1, args.max_calls - spent.total.calls)
                if run_dir:
                    args.run_dir = str(Path(run_dir) / "mipro")
                optimizer = build_optimizer(args, metric, prompt_model=prompt_model, threads=threads)
                announce()
                optimized = optimizer.compile(program, trainset=trainset, valset=valset)
    finally:
        if handler is not None:
            logging.getLogger("promptless.optimize").removeHandler(handler)
    result = optimized.optimization
    print(result.summary())
    failed = validation_failures(result)
    if failed:
        print(f"validation, optimized program: {failed}")
    converted = bool(scored_note) and any(isinstance(p, Classify) for p in optimized.predictors())
    if args.out:
        meta = {"optimizer": result.optimizer, "baseline_score": result.baseline_score,
                "final_score": result.final_score, "lm_calls": result.calls}
        if converted:
            meta["load_into"] = "pl.with_label_scoring(program)"
        path = optimized.save(args.out, metadata=meta)
        how = "pl.with_label_scoring(program)" if converted else "program"
        print(f"optimized program saved to {path} (load it with {how}.load({str(path)!r}))")
    refused = getattr(result, "refused", None)
    if refused is not None and args.save_refused:
        sel = result.selection or {}
        meta = {"optimizer": result.optimizer, "refused": True, "decision": sel.get("decision"),
                "evidence": sel.get("evidence")}
        path = refused.save(args.save_refused, metadata=meta)
        print(f"refused candidate saved to {path} (not what the check kept: evaluate it before you use it)")
    elif refused is not None:
        print("the refused candidate was not saved; add --save-refused FILE to keep it"
              + (" (with the same --run-dir the rerun replays the search at no cost)" if args.run_dir else ""))
    if args.report:
        from promptless.optimize.report import write_report

        print(f"report: {write_report(result, args.report)}")
    if args.result:
        print(f"run record: {result.to_json(args.result)}")
    return 0


#: The embedder whose votes ``--optimizer auto`` adds to a calibration unless told otherwise.
AUTO_EMBEDDER = "local/all-MiniLM-L6-v2"


def _if_it_embeds(name: str, failed: str) -> str:
    """``name`` when that embedder embeds a test text here, else ``"none"``, after printing ``failed`` with the
    error put in for ``{error}``."""
    from promptless.embeddings import Embedder

    try:
        Embedder(name)(["a test text"])
    except Exception as exc:  # any failure means: calibrate without it
        print(failed.format(error=f"{type(exc).__name__}: {exc}"), flush=True)
        return "none"
    return name


def default_votes() -> str:
    """``AUTO_EMBEDDER`` when it embeds a test text here, else ``"none"`` (and a line saying so)."""
    return _if_it_embeds(AUTO_EMBEDDER, f"auto: the embedder {AUTO_EMBEDDER} is not available here ({{error}}); "
                                        "calibrating without the votes of the nearest labelled examples")


def default_probe(lm: Any, program: Any) -> str:
    """The task model's own name (``local/<model>``) when it is a local model that embeds a test text here, else
    ``"none"`` (with a line saying why, when it is local but cannot embed)."""
    lms = [lm] if lm is not None else [p.lm for p in program.predictors() if p.lm is not None]
    names = {f"local/{x.model}" for x in lms if getattr(x, "provider", "") == "local"}
    if len(names) != 1:
        return "none"  # not a local model (or several): the probe is opt-in with --probe
    [name] = names
    return _if_it_embeds(name, f"auto: {name} cannot embed here ({{error}}); calibrating without a probe")


def label_scoring(program: Any, name: str) -> tuple[Any, str]:
    """``program`` with its label steps scoring their labels, and a line saying so; ``(None, "")`` without any.

    A program whose steps are ``pl.Classify`` already is returned as it is, with no line.
    """
    from promptless.modules.scored import Classify, with_label_scoring

    if any(isinstance(p, Classify) for p in program.predictors()):
        return program, ""
    scored = with_label_scoring(program)
    converted = sum(isinstance(p, Classify) for p in scored.predictors())
    if not converted:
        return None, ""
    return scored, (f"calibrate: {converted} label step(s) of {name} score their labels (pl.Classify), and the "
                    "result replaces the program as given only if it beats it on the examples of the check")


def validation_failures(result: Any) -> str:
    """The optimized program's failures on the validation set: count per kind and the first error ("" if none)."""
    from promptless.cli.common import failure_lines

    rows = [row.get("optimized") for row in getattr(result, "per_example", None) or []]
    scored = [r for r in rows if r is not None]
    return failure_lines([r["error"] for r in scored if r.get("error")], len(scored))


__all__ = ["AUTO_EMBEDDER", "OPTIMIZERS", "build_optimizer", "default_probe", "default_votes", "label_scoring", "register", "run_optimize", "validation_failures"]
