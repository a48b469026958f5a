"""A strong model teaches a small one: qwen2.5-coder-1.5b labels, qwen2.5-coder-0.5b learns from its labels.

    python bench/bench_teacher.py                       # every row
    python bench/bench_teacher.py --rows teacher_train student_teacher
    python bench/bench_teacher.py --limit 3 --out /tmp/teacher_check.json    # a quick check that it runs

The historic-events task (``ClassifyEvent``: eleven labels and a float confidence, greedy). The teacher is the
1.5B's zero-shot generation (``make_classifier``, as ``promptless demo`` runs it); ``pl.label`` labels the first
150 inputs of the train split with it, their gold labels ignored. The student is ``pl.Classify(ClassifyEvent)``
on the 0.5B, calibrated with ``pl.Calibrate(category_match)`` (its defaults: a fit of offsets and scale, kept
only when it beats no calibration by the paired test on the valset):

- ``teacher_train`` / ``teacher_dev`` / ``teacher_test``: the teacher labels train[:150], dev (100), test
  (375); its accuracy against the gold labels (``LabelResult.teacher_accuracy``: no further call).
- ``student_zero_shot``: the 0.5B's ``pl.Classify``, uncalibrated.
- ``student_teacher``: calibrated on the teacher's labels (trainset: the first 60 labelled, valset: the
  other 90).
- ``student_gold``: calibrated on the gold labels of the same 150 inputs (60 / 90), for comparison.
- ``student_teacher_knn`` / ``student_gold_knn``: the same with ``knn=pl.Embedder("local/all-MiniLM-L6-v2")``:
  the nearest labelled examples (labelled by the teacher, or gold) vote beside the student's label scores.

Each student row reports its agreement with the teacher (``LabelResult.agreement`` on the teacher's dev and
test labels) and its accuracy on dev and test, and the LM calls of each step: ``new_calls`` made now,
``cache_hits`` answered from the cache file. Every reply and label score goes through an LM cache of the
bench's own (``~/.cache/promptless/bench_scoring.sqlite3``, shared with ``bench_scoring.py``: greedy replies
are deterministic, so what that bench asked is not asked again), and ``pl.label`` keeps its labels in a run
directory under ``~/.cache/promptless/bench_teacher/``, so a row cut off half-way resumes without asking the
model again. Rows are merged into ``bench/results/teacher.json`` as each finishes; finished rows are skipped
(``--redo`` runs them again).
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
RESULTS = HERE / "results" / "teacher.json"
CACHE = Path("~/.cache/promptless/bench_scoring.sqlite3").expanduser()
RUNS = Path("~/.cache/promptless/bench_teacher").expanduser()
TEACHER, STUDENT = "qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"
N_LABELLED, N_TRAIN = 150, 60
ROWS = ("teacher_train", "teacher_dev", "teacher_test", "student_zero_shot", "student_teacher", "student_gold",
        "student_teacher_knn", "student_gold_knn")


def _machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        name = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")
    except OSError:
        name = ""
    return f"{name or platform.processor()}, {len(os.sched_getaffinity(0))} cores usable, Linux {platform.release()}"


class Results:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def save(self, key: str, value: dict[str, Any], meta: dict[str, Any]) -> None:
        data = self.load()
        data[key] = value
        data.setdefault("_meta", {}).update(meta)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def _usage(usage: Any, seconds: float) -> dict[str, Any]:
    total = usage.total
    return {"new_calls": total.calls, "cache_hits": total.cache_hits, "lm_requests": total.calls + total.cache_hits,
            "model_seconds": round(total.seconds, 1), "wall_seconds": round(seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", nargs="*", default=list(ROWS), choices=ROWS)
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads of each model (default: 2)")
    ap.add_argument("--limit", type=int, default=None,
                    help="only the first N of the labelled inputs, dev and test (a check that the bench runs)")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default: {RESULTS.relative_to(ROOT)})")
    ap.add_argument("--redo", action="store_true", help="run finished rows again")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    import promptless as pl
    from promptless.evaluate import Evaluate
    from promptless.lm.cache import Cache
    from promptless.modules.neighbours import voters_counted
    from promptless.tasks import ClassifyEvent, category_match, load_events, make_classifier

    results = Results(args.out)
    meta = {"machine": _machine(), "python": platform.python_version(), "threads": args.threads,
            "teacher": f"{TEACHER}, zero-shot generation (make_classifier)",
            "student": f"{STUDENT}, pl.Classify(ClassifyEvent), pl.Calibrate(category_match) defaults",
            "labelled": f"train[:{N_LABELLED}] (gold labels ignored); trainset the first {N_TRAIN} labelled, "
                        "valset the rest", "protocol": "ClassifyEvent, greedy, dev 100 / test 375",
            "note": "new_calls: asked of the model now; cache_hits: answered from the bench's LM cache file"}
    try:
        import llama_cpp

        meta["llama_cpp_python"] = llama_cpp.__version__
    except ImportError:
        pass
    limit = args.limit
    suffix = f"-limit{limit}" if limit else ""
    n_labelled = min(N_LABELLED, limit) if limit else N_LABELLED
    n_train = round(n_labelled * N_TRAIN / N_LABELLED)
    inputs = load_events("train")[:n_labelled]
    splits = {"dev": load_events("dev", limit), "test": load_events("test", limit)}

    cache = Cache(CACHE)
    lms: dict[str, Any] = {}

    def lm(name: str) -> Any:  # loaded on first use: a row answered from the run directory loads no model
        if name not in lms:
            lms[name] = pl.LM(f"local/{name}", cache=cache, n_threads=args.threads)
        return lms[name]

    teacher = make_classifier(lm=lm(TEACHER))
    labels: dict[str, Any] = {}

    def teacher_labels(part: str) -> tuple[Any, dict[str, Any]]:
        """The teacher's labels of one part (train150, dev, test), resumed from its run directory."""
        if part not in labels:
            examples = inputs if part == "train" else splits[part]
            t0 = time.perf_counter()
            with pl.track_usage() as usage:
                result = pl.label(teacher, examples, fields=["category"], run_dir=RUNS / f"{part}{suffix}")
            labels[part] = (result, _usage(usage, time.perf_counter() - t0))
        return labels[part]

    done = results.load()

    def skip(key: str) -> bool:
        if key in done and not args.redo:
            print(f"{key}: done already", flush=True)
            return True
        print(f"== {key}", flush=True)
        return False

    for part in ("train", "dev", "test"):
        row = f"teacher_{part}"
        key = row + suffix
        if row not in args.rows or skip(key):
            continue
        result, steps = teacher_labels(part)
        gold = inputs if part == "train" else splits[part]
        acc = result.teacher_accuracy(gold, category_match)
        record = {
            "row": row, "model": TEACHER, "inputs": result.n_inputs, "labelled": len(result),
            "failed": [f.to_dict() for f in result.failed], "label_calls": result.calls,
            "label_replayed_calls": result.replayed_calls, "label": steps,
            "teacher_accuracy": round(acc.score, 2), "teacher_correct": int(sum(acc.scores)), "n": acc.n,
            "labels": dict(Counter(str(ex.category) for ex in result).most_common()),
        }
        results.save(key, record, meta)
        done = results.load()
        print(json.dumps({k: v for k, v in record.items() if k not in ("labels", "failed")}), flush=True)

    def evaluate(program: Any, part: str) -> dict[str, Any]:
        examples = splits[part]
        t0 = time.perf_counter()
        with pl.track_usage() as usage:
            res = Evaluate(devset=examples, metric=category_match, num_threads=1, display_progress=False,
                           max_errors=len(examples))(program)
        out = {"accuracy": round(res.score, 2), "correct": int(sum(res.scores)), "n": res.n, "errors": res.n_errors,
               **_usage(usage, time.perf_counter() - t0)}
        taught, _ = teacher_labels(part)
        t0 = time.perf_counter()
        with pl.track_usage() as usage:  # the same prompts as above: answered from the cache
            agree = taught.agreement(program, category_match)
        out.update({"agreement": round(agree.score, 2), "agreement_n": agree.n,
                    "agreement_steps": _usage(usage, time.perf_counter() - t0),
                    "predicted": dict(Counter(str(r.prediction.get("category")) if r.prediction is not None
                                              else "(error)" for r in res.rows).most_common())})
        return out

    for row in ("student_zero_shot", "student_teacher", "student_gold", "student_teacher_knn", "student_gold_knn"):
        key = row + suffix
        if row not in args.rows or skip(key):
            continue
        record: dict[str, Any] = {"row": row, "model": STUDENT}
        program: Any = pl.Classify(ClassifyEvent, lm=lm(STUDENT))
        if row != "student_zero_shot":
            if row.startswith("student_teacher"):
                taught, steps = teacher_labels("train")
                data = list(taught.examples)
                record["labelling"] = {"labelled": len(taught), "failed": len(taught.failed), **steps}
            else:
                data = list(inputs)
            trainset, valset = data[:n_train], data[n_train:]
            t0 = time.perf_counter()
            with pl.track_usage() as usage:
                knn = {"knn": pl.Embedder("local/all-MiniLM-L6-v2")} if row.endswith("_knn") else {}
                program = pl.Calibrate(category_match, **knn).compile(program, trainset=trainset, valset=valset)
            r = program.optimization
            decision = r.candidates.get("calibration", {}).get("self", {})
            record["calibrate"] = {
                "trainset": len(trainset), "valset": len(valset), "budget_calls": r.calls,
                **_usage(usage, time.perf_counter() - t0), "chosen": decision.get("chosen"),
                "lambda": decision.get("lambda"),
                "selection": {k: r.selection.get(k) for k in ("mode", "decision", "reason", "evidence")},
                "calibration": voters_counted(program.calibration),
            }
            print(f"   calibrate: {record['calibrate']['lm_requests']} requests "
                  f"({record['calibrate']['new_calls']} new); {r.selection.get('decision')}: "
                  f"{r.selection.get('reason')}", flush=True)
        for part in ("dev", "test"):
            record[part] = evaluate(program, part)
            print(f"   {part}: accuracy {record[part]['accuracy']}, agreement with the teacher "
                  f"{record[part]['agreement']} ({record[part]['new_calls']} new calls, "
                  f"{record[part]['cache_hits']} cached)", flush=True)
        results.save(key, record, meta)
        done = results.load()


if __name__ == "__main__":
    main()
