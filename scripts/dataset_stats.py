"""Print split sizes and the label distribution of the historic-events set as Markdown.

    python scripts/dataset_stats.py [path/to/historic_events.jsonl]

The tables in docs/dataset.md are this script's output.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "src" / "promptless" / "datasets" / "historic_events.jsonl"
SPLITS = ("train", "dev", "test")


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT
    sys.path.insert(0, str(ROOT / "src"))
    from promptless.datasets import CATEGORIES

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    counts = {s: Counter(r["category"] for r in rows if r["split"] == s) for s in SPLITS}
    total = Counter(r["category"] for r in rows)
    sizes = Counter(r["split"] for r in rows)

    print("| split | events |")
    print("|---|---:|")
    for s in SPLITS:
        print(f"| {s} | {sizes[s]} |")
    print(f"| all | {len(rows)} |")
    print()
    print("| category | train | dev | test | all | share |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in CATEGORIES:
        cells = " | ".join(str(counts[s][c]) for s in SPLITS)
        print(f"| {c} | {cells} | {total[c]} | {100 * total[c] / len(rows):.1f}% |")
    cells = " | ".join(str(sizes[s]) for s in SPLITS)
    print(f"| **total** | {cells} | {len(rows)} | 100% |")
    no_year = sum(r["year"] is None for r in rows)
    bc = sum(r["year"] is not None and r["year"] < 0 for r in rows)
    print()
    print(f"Events without a year: {no_year}; BC years: {bc}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
