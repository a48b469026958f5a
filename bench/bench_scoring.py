"""Label scoring and calibration on the historic-events task: zero-shot generation against pl.Classify.

    python bench/bench_scoring.py                                   # qwen2.5-coder-1.5b, every row, dev and test
    python bench/bench_scoring.py --model qwen2.5-coder-0.5b
    python bench/bench_scoring.py --rows scored cf --splits dev     # some rows only
    python bench/bench_scoring.py --redo                            # run finished rows again
    python bench/bench_scoring.py --task periods                    # the second task (below)

The protocol of docs/optimizers.md: the classifier ``ClassifyEvent`` (Literal category, float confidence),
no demos, the default instruction; the first 60 examples of the train split are the only training data
(the calibration fit); the dev split (100) and the test split (375, nothing was tuned on it) are scored.
Greedy decoding. Rows:

- ``generation``: ``pl.Predict`` as ``promptless demo`` runs it (free reply, parsed; the grammar only for a
  reply that does not parse).
- ``scored``: ``pl.Classify``: every label scored under the same prompt, the likeliest one chosen.
- ``cf``: ``scored`` after ``pl.Calibrate(method="content_free")`` (3 calls: "N/A", "", "[MASK]").
- ``fit``: ``scored`` after ``pl.Calibrate(method="fit", fit_scale=False)`` on the 60 training examples:
  offsets only.
- ``both``: ``scored`` after ``pl.Calibrate(method="both", fit_scale=False)``: content-free offsets, then the
  fit pulled towards them.
- ``fit_scale``: ``pl.Calibrate()`` as it is by default: offsets and one scale factor fitted.
- ``val``: the optimizer table's protocol: ``pl.Calibrate()`` fitted on the 60, checked on the next 90 of the
  train split (the valset), refitted on the 150.
- ``val_knn``: the same with ``knn=pl.Embedder("local/all-MiniLM-L6-v2")``: the votes of the 10 nearest
  labelled examples fitted beside the label scores.
- ``val_probe``: ``val`` with ``probe=pl.Embedder("local/<the task model>")``: a logistic regression on the
  task model's own mean-pooled hidden states of the input, its label log-probabilities fitted beside the label
  scores (``modules/probe.py``).
- ``val_knn_probe``: ``val`` with both the votes and the probe.
- ``cv_knn_probe``: the votes and the probe with no valset: the 150 (144) examples of the train split are all
  training examples, and the check is the cross-validation over them (each example predicted by a calibration
  fitted on the other folds), the fit then made on all of them.

``--task periods`` runs the same rows on the historic-periods task (``promptless.tasks.DateEvent``: the event
without its year, one of five periods; 144 / 96 / 354 examples, so the valset is the train split's last 84),
a task nothing here was tuned on; its keys start with ``periods/``.

Every row is merged into ``bench/results/scoring.json`` as soon as it finishes, so an interrupted run
continues with the next row when started again. LM replies and label scores are cached in a file of this
bench's own (``~/.cache/promptless/bench_scoring.sqlite3``): a row cut off half-way resumes without
asking the model again, and the calibrated rows reuse the ``scored`` row's label scores (the offsets are
applied after scoring, so they ask the model exactly what ``scored`` asked). ``lm_requests`` counts what an
uncached run asks; ``seconds`` is the time spent in fresh model calls (a calibrated row's evaluation is the
``scored`` row's time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "scoring.json"
CACHE = Path("~/.cache/promptless/bench_scoring.sqlite3").expanduser()
N_TRAIN = 60
ROWS = ("scored", "cf", "fit", "both", "fit_scale", "generation", "val", "val_knn", "val_probe", "val_knn_probe",
        "cv_knn_probe")
N_VAL = 90
METHODS = {"cf": {"method": "content_free"}, "fit": {"method": "fit", "fit_scale": False},
           "both": {"method": "both", "fit_scale": False}, "fit_scale": {"method": "fit", "fit_scale": True},
           "val": {}, "val_knn": {}, "val_probe": {}, "val_knn_probe": {}, "cv_knn_probe": {}}



def _load() -> dict[str, Any]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def _machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        name = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")
    except OSError:
        name = ""
    return f"{name or platform.processor()}, {len(os.sched_getaffinity(0))} cores usable, Linux {platform.release()}"


def _save(key: str, value: dict[str, Any], meta: dict[str, Any]) -> None:
    data = _load()
    data[key] = value
    data.setdefault("_meta", {}).update(meta)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--task", default="events", choices=("events", "periods"))
    ap.add_argument("--rows", nargs="*", default=list(ROWS), choices=ROWS)
    ap.add_argument("--splits", nargs="*", default=["dev", "test"], choices=["dev", "test"])
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads (1: the cores are shared)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N examples of each split")
    ap.add_argument("--redo", action="store_true")
    ap.add_argument("--timing", type=int, default=0, metavar="N",
                    help="instead: time Classify against Predict on the first N dev examples, LM cache off, "
                         "llama.cpp threads = the usable cores (run it on a quiet machine)")
    args = ap.parse_args()
    if args.timing:
        timing(args.model, args.timing)
        return

    sys.path.insert(0, str(ROOT / "src"))
    import promptless as pl
    from promptless.evaluate import Evaluate
    from promptless.lm.cache import Cache
    from promptless.modules.neighbours import voters_counted
    from promptless.tasks import ClassifyEvent, DateEvent, category_match, load_events, load_periods, period_match

    signature, metric, load, field = ((ClassifyEvent, category_match, load_events, "category") if args.task == "events"
                                      else (DateEvent, period_match, load_periods, "period"))

    meta = {"machine": _machine(), "python": platform.python_version(), "threads": args.threads,
            "train": f"train[:{N_TRAIN}]", "protocol": "ClassifyEvent (periods: DateEvent), zero-shot, greedy",
            "note": "2 cores shared with other work while measuring: seconds are noisy"}
    try:
        import llama_cpp

        meta["llama_cpp_python"] = llama_cpp.__version__
    except ImportError:
        pass
    cache = Cache(CACHE)
    lm = pl.LM(f"local/{args.model}", cache=cache, n_threads=args.threads)
    t0 = time.perf_counter()
    lm.load()
    print(f"loaded {args.model} in {time.perf_counter() - t0:.1f} s ({args.threads} thread(s))", flush=True)
    train = load("train")[:N_TRAIN]
    val = load("train")[N_TRAIN:N_TRAIN + N_VAL]
    splits = {s: load(s, args.limit) for s in args.splits}

    def evaluate(program: Any, examples: list[Any]) -> dict[str, Any]:
        with pl.track_usage() as usage:
            result = Evaluate(devset=examples, metric=metric, num_threads=1, display_progress=False,
                              max_errors=len(examples))(program)
        predicted = Counter(str(r.prediction.get(field)) if r.prediction is not None else "(error)"
                            for r in result.rows)
        correct_by_gold: Counter[str] = Counter()
        gold = Counter(str(r.example[field]) for r in result.rows)
        decided: Counter[str] = Counter()
        for r in result.rows:
            if r.score:
                correct_by_gold[str(r.example[field])] += 1
            decided[str(getattr(r.prediction, "decided_by", None) or "generation")] += 1
        total = usage.total
        return {"accuracy": round(result.score, 2), "n": result.n, "correct": int(sum(result.scores)),
                "errors": result.n_errors, "lm_requests": total.calls + total.cache_hits, "new_calls": total.calls,
                "seconds": round(total.seconds, 1), "wall_seconds": round(result.seconds, 1),
                "prompt_tokens": total.prompt_tokens, "completion_tokens": total.completion_tokens,
                "predicted": dict(predicted.most_common()), "gold": dict(gold.most_common()),
                "correct_by_gold": dict(correct_by_gold), "decided_by": dict(decided)}

    done = _load()
    calibrated: dict[str, Any] = {}
    for split, examples in splits.items():
        for row in args.rows:
            key = (("periods/" if args.task == "periods" else "") + f"{args.model}/{row}/{split}"
                   + (f"/limit{args.limit}" if args.limit else ""))
            if key in done and not args.redo:
                print(f"{key}: done already ({done[key]['eval']['accuracy']})", flush=True)
                continue
            print(f"== {key}", flush=True)
            record: dict[str, Any] = {"row": row, "split": split, "model": args.model, "task": args.task}
            if row == "generation":
                program: Any = pl.Predict(signature, lm=lm)
            else:
                program = pl.Classify(signature, lm=lm)
                if row in METHODS:
                    if row not in calibrated:
                        t1 = time.perf_counter()
                        options = dict(METHODS[row])
                        if row in ("val_knn", "val_knn_probe", "cv_knn_probe"):
                            options["knn"] = pl.Embedder("local/all-MiniLM-L6-v2")
                        if row in ("val_probe", "val_knn_probe", "cv_knn_probe"):
                            options["probe"] = pl.Embedder(f"local/{args.model}")
                        extra = {"valset": val} if row.startswith("val") else {}
                        fit_on = train + val if row.startswith("cv") else train
                        with pl.track_usage() as usage:
                            calibrated[row] = pl.Calibrate(metric, progress=False, **options).compile(
                                program, trainset=fit_on, **extra)
                        r = calibrated[row].optimization
                        decision = r.candidates["calibration"]["self"]
                        calibrated[row].calibrate_record = {
                            "calls": usage.total.calls, "lm_requests": usage.total.calls + usage.total.cache_hits,
                            "seconds": round(usage.total.seconds, 1),
                            "wall_seconds": round(time.perf_counter() - t1, 1),
                            "chosen": decision.get("chosen"), "lambda": decision.get("lambda"),
                            "selection": {k: r.selection.get(k) for k in ("mode", "decision", "reason", "evidence")},
                            "calibration": voters_counted(calibrated[row].calibration),
                            "candidate": voters_counted(decision.get("candidate")),
                        }
                    program = calibrated[row]
                    record["calibrate"] = program.calibrate_record
            record["eval"] = evaluate(program, examples)
            _save(key, record, meta)
            done = _load()
            print(json.dumps({k: v for k, v in record["eval"].items()
                              if k not in ("predicted", "gold", "correct_by_gold")}), flush=True)
            if "calibrate" in record:
                c = record["calibrate"]
                print(f"   calibrate: {c['lm_requests']} requests, chosen {c['chosen']} (lambda {c['lambda']}); "
                      f"{c['selection']['decision']}: {c['selection']['reason']}", flush=True)


def timing(model: str, n: int) -> None:
    """Seconds per example of pl.Classify and pl.Predict on the same examples, the model's cache off."""
    sys.path.insert(0, str(ROOT / "src"))
    import promptless as pl
    from promptless.tasks import ClassifyEvent, load_events, make_classifier

    cores = len(os.sched_getaffinity(0))
    lm = pl.LM(f"local/{model}", cache=False, n_threads=cores)
    lm.load()
    examples = load_events("dev", n)
    record: dict[str, Any] = {"examples": n, "threads": cores, "load_average": os.getloadavg()[0]}
    for name, program in (("scored", pl.Classify(ClassifyEvent, lm=lm)), ("generation", make_classifier(lm=lm))):
        lm("warm up")  # the first call of a process pays one-off costs
        with pl.track_usage() as usage:
            t0 = time.perf_counter()
            for ex in examples:
                program(event=ex.event)
            seconds = time.perf_counter() - t0
        record[name] = {"seconds": round(seconds, 1), "per_example": round(seconds / n, 2),
                        "calls": usage.total.calls}
        print(name, record[name], flush=True)
    record["load_average_after"] = os.getloadavg()[0]
    _save(f"{model}/timing", record, {"machine": _machine()})


if __name__ == "__main__":
    main()
