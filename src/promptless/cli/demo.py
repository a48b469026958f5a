"""``promptless demo``: classify historic events with an embedded model and report how well it does.

    promptless demo                                   # qwen2.5-coder-1.5b: evaluate, calibrate, evaluate again
    promptless demo --optimizer mipro                 # the second half searches instructions with MIPROv2
    promptless demo --no-optimize                     # only the evaluation
    promptless demo --model local/smollm2-135m --limit 5
    promptless demo --model openai/gpt-4o-mini --threads 8

The run goes in stages over one ``DemoRun`` record: ``prepare`` (the LM, fetched
on first use, the classifier and the data), ``evaluate_stage`` (accuracy, a
table, usage, the results files), then ``optimize_stage`` (``--optimizer calibrate``, the
default: the same signature as a ``pl.Classify`` that scores every label, calibrated by
``pl.Calibrate``; ``--optimizer mipro``: MIPROv2 light, instruction-only; ``--no-optimize``
skips it). A later stage reads what the earlier ones left on the record.

Why calibrate is the default: on the 1.5B it is the optimizer that lifts the classifier on
inputs it never saw (docs/optimizers.md: dev 68.0 -> 71.0, test 60.8 -> 64.5 against the
generated answers, 150 LM calls), where MIPROv2's instruction search keeps zero-shot after
about 260 calls and four times the time.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptless.cli.common import non_negative_int, normalize_model, positive_int

DEFAULT_MODEL = "local/qwen2.5-coder-1.5b"
DEFAULT_OUT = "promptless-demo"
DEFAULT_SHOW = 8
DEFAULT_TRAIN = 60
OPTIMIZERS = ("calibrate", "mipro")
KNN_EMBEDDER = "local/all-MiniLM-L6-v2"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "demo",
        help="classify historic events with a local model and report the accuracy",
        description=(
            "Run the historic-events classifier (a class-based signature with a Literal category and a float "
            "confidence) on one split of the bundled data set, print the accuracy, a table of predictions against "
            "the gold labels, LM calls, tokens and time, and write the results as JSON and CSV. Then optimize "
            "the classifier on the train split (--optimizer calibrate, the default: score every label and learn "
            "the model's label prior with pl.Calibrate; --optimizer mipro: search the instruction with MIPROv2 "
            "light), evaluate it again on the same split, save it as JSON and check that the saved program, "
            "loaded afresh, predicts the same (--no-optimize stops after the first evaluation). A named local "
            "model is fetched on first use."
        ),
    )
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="any LM string: local/<name>, local/<file.gguf>, openai/<model> "
                        f"(default: {DEFAULT_MODEL})")
    parser.add_argument("--split", default="dev", choices=("train", "dev", "test"), help="data split (default: dev)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="only the first N examples of the split (--limit 10 --no-optimize: a first result "
                        "in about a minute)")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="examples run at once (default: 1 for local models, which have one context; 8 otherwise)")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help=f"folder for the results files (default: ./{DEFAULT_OUT}/)")
    parser.add_argument("--show", type=non_negative_int, default=DEFAULT_SHOW, metavar="N",
                        help=f"rows in the predictions table (default: {DEFAULT_SHOW}; 0: none)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar and no predictions as they come")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the LM cache")
    parser.add_argument("--optimize", action=argparse.BooleanOptionalAction, default=True,
                        help="after evaluating, optimize the classifier and evaluate it again (default: yes; "
                        "--no-optimize stops after the first evaluation)")
    parser.add_argument("--optimizer", default=OPTIMIZERS[0], choices=OPTIMIZERS,
                        help="the second half: calibrate (score every label with pl.Classify and learn the "
                        "model's label prior with pl.Calibrate; the default) or mipro (MIPROv2 light, "
                        "instruction-only)")
    parser.add_argument("--knn", action="store_true",
                        help="with --optimizer calibrate: the nearest labelled examples (all-MiniLM-L6-v2 "
                        "embeddings) also vote for a label, with a weight the calibration learns")
    parser.add_argument("--prompt-model", default=None, metavar="MODEL",
                        help="with --optimizer mipro: the LM that writes instructions (default: --model)")
    parser.add_argument("--train-size", type=int, default=DEFAULT_TRAIN, metavar="N",
                        help=f"with --optimize: training examples the optimizer learns from (default: "
                        f"{DEFAULT_TRAIN}); the rest of the train split is its validation set")
    parser.add_argument("--max-calls", type=positive_int, default=None, metavar="N",
                        help="with --optimize: LM-call budget of the optimizer (default: none)")
    parser.add_argument("--run-dir", default=None, metavar="DIR",
                        help="with --optimize: checkpoint folder; the same command resumes an interrupted run")
    parser.set_defaults(func=run_demo)


@dataclass
class DemoRun:
    """Everything one demo run has made so far; each stage reads and adds to it."""

    args: argparse.Namespace
    console: Any
    model: str = ""
    lm: Any = None
    prompt_lm: Any = None  # with --prompt-model
    program: Any = None
    devset: list[Any] = field(default_factory=list)
    threads: int = 1
    out_dir: Path = Path(DEFAULT_OUT)
    load_seconds: float = 0.0
    result: Any = None  # the EvaluationResult of the baseline program
    files: list[Path] = field(default_factory=list)
    optimized: Any = None  # the optimized program (unless --no-optimize)
    optimized_result: Any = None  # its EvaluationResult on the same split


def run_demo(args: argparse.Namespace) -> int:
    """The whole demo; returns the exit code."""
    run = prepare(args)
    evaluate_stage(run)
    if args.optimize:
        code = optimize_stage(run)
        if code:
            return code
    return 0


# -- stages ---------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace) -> DemoRun:
    """Make the LM (fetching and loading a local model, with progress), the classifier and the data."""
    from rich.console import Console

    from promptless.cli.common import make_lm
    from promptless.tasks import load_events, make_classifier

    # --limit, --threads, --show and --max-calls are checked by their argparse types (cli/common.py)
    if getattr(args, "optimize", False):  # checked now, not after a long first evaluation
        check_train_size(args.train_size, len(load_events("train")))
        check_optimizer_options(args)
    console = Console()
    run = DemoRun(args=args, console=console, model=normalize_model(args.model), out_dir=Path(args.out))
    run.devset = load_events(args.split, args.limit)
    is_local = run.model.startswith("local/")
    run.threads = args.threads or (1 if is_local else 8)

    run.lm = make_lm(run.model, no_cache=args.no_cache)  # an OpenAI model without a key stops here
    if getattr(args, "optimize", False) and args.prompt_model:  # made (and checked) before the first evaluation
        run.prompt_lm = make_lm(args.prompt_model, no_cache=args.no_cache)
    if is_local and hasattr(run.lm, "load"):
        console.print(f"Loading [bold]{run.model}[/bold] (fetched on first use) ...")
        started = time.perf_counter()
        run.lm.load()
        run.load_seconds = time.perf_counter() - started
        console.print(f"Model ready in {run.load_seconds:.1f} s: {run.lm.path}", soft_wrap=True)
    run.program = make_classifier(lm=run.lm)
    return run


def evaluate_stage(run: DemoRun) -> None:
    """Evaluate the classifier on the split, print the report and write the results files."""
    from promptless.evaluate import display_table

    args, console = run.args, run.console
    console.print(
        f"Classifying {len(run.devset)} events of the [bold]{args.split}[/bold] split with "
        f"[bold]{run.model}[/bold] ({run.threads} thread{'s' if run.threads != 1 else ''})"
    )
    result = _evaluate(run, run.program, "baseline")
    run.result = result
    if args.show:
        display_table(result, args.show, console=console)
    run.files += write_results(run, result, "baseline")
    print_report(run, result)


def _evaluate(run: DemoRun, program: Any, stage: str) -> Any:
    """The split's evaluation with the predictions shown as they come; a run that cannot give a result (every
    example failed, or an error every example would hit) writes what it has, shows the errors and raises."""
    from promptless.errors import EvaluationError
    from promptless.evaluate import Evaluate, display_table
    from promptless.tasks import category_match

    args = run.args
    evaluate = Evaluate(devset=run.devset, metric=category_match, num_threads=run.threads,
                        display_progress=not args.no_progress, display_predictions=not args.no_progress,
                        display_table=0)
    try:
        return evaluate(program)
    except EvaluationError as exc:
        if exc.result is not None:
            if args.show:
                display_table(exc.result, args.show, console=run.console)
            files = write_results(run, exc.result, stage)
            run.console.print("Partial results: " + ", ".join(str(p) for p in files), soft_wrap=True)
        raise


def optimize_stage(run: DemoRun) -> int:
    """The demo's second half: optimize the classifier on the train split (``--optimizer``: ``calibrate``, the
    default, or ``mipro``); then the same evaluation of the optimized classifier, saved as JSON, loaded into a
    fresh classifier that must predict the same.

    Reads ``run.program``, ``run.lm``, ``run.result``; sets ``run.optimized`` and ``run.optimized_result``.
    The first ``--train-size`` training examples are what the optimizer learns from; the rest of the train
    split is its validation set, so the split evaluated here is never used to choose anything.
    """
    import logging

    from promptless.cli.common import TrialLog
    from promptless.evaluate import display_table
    from promptless.tasks import load_events

    args, console = run.args, run.console
    name = getattr(args, "optimizer", OPTIMIZERS[0])
    train_all = load_events("train")
    n_train = args.train_size
    check_train_size(n_train, len(train_all))
    trainset, valset = train_all[:n_train], train_all[n_train:]
    console.print()
    if name == "calibrate":
        console.print(
            f"[bold]Optimizing[/bold] with pl.Calibrate: the same signature as a pl.Classify, which scores every "
            f"label instead of generating one; the model's label prior is learned from {len(trainset)} training "
            f"examples and checked on {len(valset)} validation examples of the train split"
        )
    else:
        console.print(
            f"[bold]Optimizing[/bold] the instruction with MIPROv2 (light, instruction-only): {len(trainset)} "
            f"training and {len(valset)} validation examples of the train split, prompt model "
            f"[bold]{_prompt_name(run)}[/bold]"
        )
    if args.split == "train":
        console.print("[yellow]Note: the optimizer learns from the train split, the one evaluated here, so the "
                      "score after optimization is optimistic; --split dev or test gives a fair one.[/yellow]")
    if args.run_dir:
        console.print(f"Checkpoints in {args.run_dir}: the same command resumes an interrupted run.")
    elif not args.no_cache:
        console.print("Interrupted? The same command again answers the calls already made from the LM cache "
                      "(--no-optimize skips this half).")
    else:
        console.print("With --no-cache, pass --run-dir DIR to make an interrupted run resumable.")

    handler = TrialLog("  ")
    log = logging.getLogger("promptless.optimize")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        if name == "calibrate":
            optimized, make_fresh, meta = _calibrate(run, trainset, valset)
        else:
            optimized, make_fresh, meta = _mipro(run, trainset, valset)
    finally:
        log.removeHandler(handler)
    opt = optimized.optimization
    run.optimized = optimized

    console.print(f"Evaluating the optimized classifier on the [bold]{args.split}[/bold] split ...")
    result = _evaluate(run, optimized, "optimized")
    run.optimized_result = result
    if args.show:
        display_table(result, args.show, console=console)
    run.files += write_results(run, result, "optimized")
    run.out_dir.mkdir(parents=True, exist_ok=True)
    saved = optimized.save(run.out_dir / "classifier_optimized.json",
                           metadata={**meta, "task_model": run.model, "score": result.score, "split": args.split})
    from promptless.optimize.report import write_report

    report = write_report(opt, run.out_dir / "optimization_report.html")
    run.files += [saved, report]

    # the saved JSON, loaded into a fresh classifier, must predict the same
    fresh = make_fresh().load(saved)
    check = run.devset[: min(10, len(run.devset))]
    before = [r.prediction.get("category") if r.prediction is not None else None for r in result.rows[: len(check)]]
    after = []
    for ex in check:
        try:
            after.append(fresh(**ex.inputs().to_dict()).category)
        except Exception:  # a failure here counts as a different prediction
            after.append(None)
    same = sum(1 for a, b in zip(before, after, strict=True) if a == b)

    console.print()
    base = run.result.score if run.result is not None else None
    lift = "" if base is None else f" ({result.score - base:+.1f} points)"
    console.print(f"[bold]Accuracy on {args.split}: {_pct(base)}% -> {result.score:.1f}%{lift}[/bold]")
    console.print(f"Saved: {saved}; reloaded into a fresh classifier: {same}/{len(check)} predictions identical")
    console.print(f"Report: {report}")
    if same != len(check):
        console.print("[red]the reloaded classifier predicts differently; see the saved JSON[/red]")
        return 1
    return 0


def _prompt_name(run: DemoRun) -> str:
    return normalize_model(run.args.prompt_model) if run.args.prompt_model else run.model


def _mipro(run: DemoRun, trainset: list[Any], valset: list[Any]) -> tuple[Any, Any, dict[str, Any]]:
    """MIPROv2 light, instruction-only, on the demo's classifier; returns the program, a maker of a fresh
    classifier to load it into, and the metadata saved with it."""
    from promptless.cli.common import make_lm
    from promptless.optimize import MIPROv2
    from promptless.tasks import category_match, make_classifier

    args, console = run.args, run.console
    prompt_model = run.lm
    if args.prompt_model:
        prompt_model = run.prompt_lm or make_lm(_prompt_name(run), no_cache=args.no_cache)
    optimizer = MIPROv2(
        category_match, prompt_model=prompt_model, task_model=run.lm, auto="light",
        max_bootstrapped_demos=0, max_labeled_demos=0, num_threads=run.threads,
        max_lm_calls=args.max_calls, run_dir=args.run_dir, progress=False if args.no_progress else None,
    )
    optimized: Any = optimizer.compile(run.program, trainset=trainset, valset=valset)
    opt = optimized.optimization
    by_role = opt.usage.get("calls_by_role", {})
    console.print(
        f"Search: {len(opt.trials)} trials, {opt.calls} LM calls ({by_role.get('task', 0)} task, "
        f"{by_role.get('prompt', 0)} prompt), {opt.seconds:.0f} s; validation score "
        f"{_pct(opt.baseline_score)} -> {_pct(opt.final_score)}"
        + (" (budget reached)" if opt.stopped == "budget" else "")
    )
    for line in _selection_lines(opt):
        console.print("  " + line, soft_wrap=True)
    console.print("Instruction: " + repr(optimized.signature.instructions), soft_wrap=True)
    meta = {"optimizer": "MIPROv2", "auto": "light", "prompt_model": _prompt_name(run)}
    return optimized, lambda: make_classifier(lm=run.lm), meta


def _calibrate(run: DemoRun, trainset: list[Any], valset: list[Any]) -> tuple[Any, Any, dict[str, Any]]:
    """``pl.Calibrate`` over a ``pl.Classify`` of the demo's signature; returns the program, a maker of a fresh
    classifier to load it into, and the metadata saved with it."""
    from promptless.modules.scored import with_label_scoring
    from promptless.optimize.calibrate import Calibrate
    from promptless.tasks import category_match, make_classifier

    args, console = run.args, run.console
    knn: dict[str, Any] = {}
    if getattr(args, "knn", False):
        from promptless.embeddings import Embedder

        knn["knn"] = Embedder(KNN_EMBEDDER)
        console.print(f"The nearest labelled examples vote too ({KNN_EMBEDDER} embeddings, no LM call).")
    optimizer = Calibrate(category_match, max_lm_calls=args.max_calls, run_dir=args.run_dir,
                          num_threads=run.threads, progress=False if args.no_progress else None, **knn)
    from promptless.errors import ScoringNotSupportedError

    try:
        optimized: Any = optimizer.compile(with_label_scoring(run.program), trainset=trainset, valset=valset)
    except ScoringNotSupportedError as exc:  # the LM gives no label scores: say what the demo can do instead
        raise ScoringNotSupportedError(f"{exc}. In the demo: --optimizer mipro") from None
    opt = optimized.optimization
    console.print(f"Calibration: {opt.calls} LM calls (one per example, every label scored), {opt.seconds:.0f} s"
                  + (" (budget reached)" if opt.stopped == "budget" else ""))
    for line in _selection_lines(opt):
        console.print("  " + line, soft_wrap=True)
    predictor = next(iter(optimized.predictors()))
    cal = predictor.calibration or {}
    if cal.get("offsets"):
        offsets = sorted(cal["offsets"].items(), key=lambda kv: kv[1])
        shown = ", ".join(f"{k} {v:+.2f}" for k, v in offsets[:3])
        if len(offsets) > 3:
            shown += "; most raised: " + ", ".join(f"{k} {v:+.2f}" for k, v in offsets[:2:-1][:3])
        console.print(f"Learned: scale {cal.get('scale', 1.0):.2f} on the log-probabilities; offsets, most "
                      f"lowered: {shown}", soft_wrap=True)
        if cal.get("knn"):
            console.print(f"Votes of the {cal['knn']['k']} nearest of {len(cal['knn']['examples'])} labelled "
                          f"examples, weight {cal['knn']['weight']:.2f}")
    else:
        console.print("No calibration kept: the classifier scores its labels as they come.")
    meta = {"optimizer": "Calibrate", "method": optimizer.method, **({"knn": KNN_EMBEDDER} if knn else {})}
    return optimized, lambda: with_label_scoring(make_classifier(lm=run.lm)), meta


def _selection_lines(opt: Any) -> list[str]:
    from promptless.optimize.result import selection_lines

    return selection_lines(getattr(opt, "selection", None))


def check_optimizer_options(args: argparse.Namespace) -> None:
    """``--prompt-model`` writes instructions, which only ``--optimizer mipro`` does; ``--knn`` votes in a
    calibration, which only ``--optimizer calibrate`` fits."""
    from promptless.errors import ConfigurationError

    if getattr(args, "knn", False) and getattr(args, "optimizer", OPTIMIZERS[0]) != "calibrate":
        raise ConfigurationError("--knn is for --optimizer calibrate (the votes are fitted with the calibration); "
                                 "drop --knn, or use --optimizer calibrate")
    if args.prompt_model and getattr(args, "optimizer", OPTIMIZERS[0]) != "mipro":
        raise ConfigurationError(
            "--prompt-model is for --optimizer mipro (the LM that writes instructions); "
            f"--optimizer {args.optimizer} writes none: drop --prompt-model, or add --optimizer mipro"
        )


def check_train_size(n: int, total: int) -> None:
    """``--train-size`` leaves at least one training example for the proposals and one for validation."""
    from promptless.errors import ConfigurationError

    if not 1 <= n < total:
        raise ConfigurationError(f"--train-size must be between 1 and {total - 1}, got {n}")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# -- helpers ------------------------------------------------------------------------------------------


def model_slug(model: str) -> str:
    name = model.split("/", 1)[1] if "/" in model else model
    if name.lower().endswith(".gguf"):
        name = Path(name).stem
    return re.sub(r"[^\w.\-]+", "-", name).strip("-") or "model"


def write_results(run: DemoRun, result: Any, stage: str) -> list[Path]:
    """``<out>/<model>_<split>.json`` (run details and every row) and ``.csv``; returns the paths."""
    run.out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "" if stage == "baseline" else f"_{stage}"
    base = run.out_dir / f"{model_slug(run.model)}_{run.args.split}{suffix}"
    data = {
        "task": "historic_events",
        "stage": stage,
        "model": run.model,
        "split": run.args.split,
        "threads": run.threads,
        "model_load_seconds": round(run.load_seconds, 3),
        "machine": machine_description(),
        **result.to_dict(),
    }
    json_path = base.parent / f"{base.name}.json"  # not with_suffix: model names hold dots (qwen2.5-coder-1.5b)
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    csv_path = result.to_csv(base.parent / f"{base.name}.csv")
    return [json_path, csv_path]


def machine_description() -> str:
    from promptless.lm.local import usable_cores

    return (f"{usable_cores()} cores {platform.machine()}, {platform.system()}, "
            f"Python {platform.python_version()}")


def print_report(run: DemoRun, result: Any) -> None:
    console = run.console
    usage = result.usage
    n = len(result.rows)
    correct = sum(1 for r in result.rows if r.score >= 1)
    console.print()
    console.print(f"[bold]Accuracy: {result.score:.1f}%[/bold] ({correct}/{n} correct)")
    if result.n_errors:
        from rich.markup import escape

        console.print(f"[yellow]Failed, counted as wrong: {escape(result.errors_summary())}[/yellow]", soft_wrap=True)
    calls = f"LM calls: {usage.calls}"
    if usage.cache_hits:
        calls += f" (+ {usage.cache_hits} answered from the cache; --no-cache to run them again)"
    console.print(calls)
    console.print(f"Tokens: {usage.prompt_tokens:,} prompt + {usage.completion_tokens:,} completion "
                  f"= {usage.total_tokens:,}")
    per = result.seconds / n if n else 0.0
    timing = f"Time: {result.seconds:.1f} s ({per:.2f} s per example)"
    if run.load_seconds:
        timing += f", plus {run.load_seconds:.1f} s to load the model"
    console.print(timing)
    console.print("Results written to: " + ", ".join(str(p) for p in run.files[-2:]), soft_wrap=True)
    sys.stdout.flush()


__all__ = ["DemoRun", "evaluate_stage", "normalize_model", "optimize_stage", "prepare", "register", "run_demo"]
