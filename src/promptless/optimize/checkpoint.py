"""The run store: everything an optimization run paid LM calls for, in one SQLite file.

A run directory (``run_dir=``) holds ``run.sqlite`` with two tables:

- ``meta``: the run's identity (optimizer, settings, program and data fingerprints).
  Resuming with other settings is refused rather than mixing two runs.
- ``records``: one row per paid-for result, keyed by ``(kind, key)``:
  ``score`` (one candidate program on one example: its score, output and error),
  ``trace`` (a bootstrapped teacher trace), ``proposal`` (an instruction
  candidate, a demo set, a data summary) and ``trial`` (a finished trial, for
  reports and for watching a run from outside) and ``lost`` (calls paid for
  whose result was never stored: an example cut off by the budget). Each row
  keeps the LM calls and cost it took.

Every key is deterministic (fingerprints of programs and examples, seeds and
indices), so an optimizer written as a deterministic replay resumes for free:
after a crash or ``kill -9`` the same ``compile`` call with the same
``run_dir`` walks the same steps, and every step already stored is answered
from the file instead of the LMs. The same table is the in-run memo that keeps
an identical candidate from being scored twice on the same example.

Rows loaded from an earlier process are charged to the budget when first
reused (``take_previous_cost``), and ``lost`` rows when the run resumes, so a
resumed run stops where an uninterrupted one would. Without ``run_dir`` the
store lives in memory.

Each write is its own transaction (WAL mode), so a kill loses at most the rows
being written at that instant.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError

DB_NAME = "run.sqlite"
SCHEMA_VERSION = 1


@dataclass
class Record:
    value: Any
    calls: int = 0
    cost: float = 0.0
    previous: bool = False  # written by an earlier process and not yet charged to this run's budget


class RunStore:
    """Records of one run, in ``run_dir/run.sqlite`` (or in memory when ``run_dir`` is None)."""

    def __init__(self, run_dir: str | Path | None = None) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.path: str = str(self.run_dir / DB_NAME)
        else:
            self.path = ":memory:"
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, "
                "calls INTEGER NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0, seq INTEGER NOT NULL, "
                "PRIMARY KEY (kind, key))"
            )
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(
                f"cannot open the run store {self.path} ({exc}); pass another run_dir or delete this one"
            ) from None
        self._records: dict[tuple[str, str], Record] = {}
        self._seq = 0
        self.fresh_calls = 0  # calls held by the records this process wrote
        self.fresh_cost = 0.0
        for kind, key, value, calls, cost, seq in self._db.execute(
            "SELECT kind, key, value, calls, cost, seq FROM records ORDER BY seq"
        ):
            self._records[(kind, key)] = Record(json.loads(value), int(calls), float(cost), previous=True)
            self._seq = max(self._seq, int(seq))

    # -- identity ------------------------------------------------------------------
    def check_identity(self, identity: dict[str, Any]) -> bool:
        """Store the run's identity, or check it against the stored one. True when resuming."""
        text = json.dumps(identity, sort_keys=True, default=str)
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta (key, value) VALUES ('identity', ?)", (text,))
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
                return bool(self._records)
        stored = json.loads(row[0])
        if stored != json.loads(text):
            diff = sorted(k for k in set(stored) | set(identity) if stored.get(k) != json.loads(text).get(k))
            raise ConfigurationError(
                f"the run directory {self.run_dir} holds another run (it differs in: {', '.join(diff)}). "
                "Resume it with the same optimizer settings, program and data, or pass a new run_dir."
            )
        return True

    # -- records ---------------------------------------------------------------------
    def get(self, kind: str, key: str) -> Record | None:
        with self._lock:
            return self._records.get((kind, key))

    def has(self, kind: str, key: str) -> bool:
        with self._lock:
            return (kind, key) in self._records

    def put(self, kind: str, key: str, value: Any, *, calls: int = 0, cost: float = 0.0) -> None:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
        with self._lock:
            self._seq += 1
            self._db.execute(
                "INSERT OR REPLACE INTO records (kind, key, value, calls, cost, seq) VALUES (?, ?, ?, ?, ?, ?)",
                (kind, key, text, int(calls), float(cost), self._seq),
            )
            self._records[(kind, key)] = Record(json.loads(text), int(calls), float(cost))
            self.fresh_calls += int(calls)
            self.fresh_cost += float(cost)

    def take_previous_cost(self, kind: str, key: str) -> tuple[int, float]:
        """The calls and cost of a record written by an earlier process, once (then zero)."""
        with self._lock:
            rec = self._records.get((kind, key))
            if rec is None or not rec.previous:
                return 0, 0.0
            rec.previous = False
            return rec.calls, rec.cost

    def items(self, kind: str) -> list[tuple[str, Record]]:
        """The records of one kind, in the order they were written."""
        with self._lock:
            return [(k, r) for (kd, k), r in self._records.items() if kd == kind]

    def count(self, kind: str) -> int:
        with self._lock:
            return sum(1 for (kd, _) in self._records if kd == kind)

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:  # pragma: no cover
                pass


def count_trials(run_dir: str | Path) -> int:
    """How many trials a run directory holds (for watching a run from another process)."""
    path = Path(run_dir) / DB_NAME
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT COUNT(*) FROM records WHERE kind = 'trial'").fetchone()
        return int(row[0])
    except sqlite3.Error:
        return 0
    finally:
        db.close()


__all__ = ["DB_NAME", "Record", "RunStore", "count_trials"]
