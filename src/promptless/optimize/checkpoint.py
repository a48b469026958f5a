"""The run store: everything an optimization run paid LM calls for, in one SQLite file.

A run directory (``run_dir=``) holds ``run.sqlite`` with three tables:

- ``meta``: the run's identity (optimizer, settings, program and data fingerprints) and the store's schema.
  Resuming with other settings is refused rather than mixing two runs.
- ``records``: one row per paid-for result, keyed by ``(kind, key)``:
  ``score`` (one candidate program on one example: its score, output and error),
  ``trace`` (a bootstrapped teacher trace), ``proposal`` (an instruction
  candidate, a demo set, a data summary) and ``trial`` (a finished trial, for
  reports and for watching a run from outside). Each row keeps the LM calls
  and cost it took.
- ``calls``: the journal of LM calls. A row is written *before* each call is
  made (one call, not yet settled), settled with the call's real cost after
  it (0 calls for a cache hit), and claimed by the record that holds its
  result when that record is written (in the same transaction).

Every key is deterministic (fingerprints of programs and examples, seeds and
indices), so an optimizer written as a deterministic replay resumes for free:
after a crash or ``kill -9`` the same ``compile`` call with the same
``run_dir`` walks the same steps, and every step already stored is answered
from the file instead of the LMs. The same table is the in-run memo that keeps
an identical candidate from being scored twice on the same example.

Rows loaded from an earlier process are charged to the budget when first
reused (``take_previous_cost``), so a resumed run stops where an uninterrupted
one would. The journal's unclaimed rows are calls whose result no record holds:
calls in flight at a kill, an example cut off by the budget, a step that
failed. A resumed run charges them at once, even though it makes the calls
again, and its budget also holds against everything the journal says earlier
processes spent, so ``max_lm_calls`` bounds the calls made by all the
processes of a run together. Without ``run_dir`` the store lives in memory.

Each write is its own transaction (WAL mode), so a kill loses at most the rows
being written at that instant; a reservation is on disk before its call starts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError

DB_NAME = "run.sqlite"
SCHEMA_VERSION = 2  # 2: the calls journal


@dataclass
class Record:
    value: Any
    calls: int = 0
    cost: float = 0.0
    previous: bool = False  # written by an earlier process and not yet charged to this run's budget
    seen: bool = True  # written or replayed by this process (a resumed run's replay has reached it)


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
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS calls (id INTEGER PRIMARY KEY AUTOINCREMENT, role TEXT NOT NULL, "
                "calls INTEGER NOT NULL DEFAULT 1, cost REAL NOT NULL DEFAULT 0, settled INTEGER NOT NULL DEFAULT 0, "
                "claimed INTEGER NOT NULL DEFAULT 0)"
            )
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(
                f"cannot open the run store {self.path} ({exc}); pass another run_dir or delete this one"
            ) from None
        self._records: dict[tuple[str, str], Record] = {}
        self._seq = 0
        for kind, key, value, calls, cost, seq in self._db.execute(
            "SELECT kind, key, value, calls, cost, seq FROM records ORDER BY seq"
        ):
            self._records[(kind, key)] = Record(json.loads(value), int(calls), float(cost), previous=True,
                                                seen=False)
            self._seq = max(self._seq, int(seq))
        # what earlier processes spent: in all, and on calls no record holds (in flight at a kill, cut off, failed)
        total = self._db.execute("SELECT COALESCE(SUM(calls), 0), COALESCE(SUM(cost), 0) FROM calls").fetchone()
        lost = self._db.execute(
            "SELECT COALESCE(SUM(calls), 0), COALESCE(SUM(cost), 0), COALESCE(SUM(1 - settled), 0) FROM calls "
            "WHERE claimed = 0"
        ).fetchone()
        self.previous_calls, self.previous_cost = int(total[0]), float(total[1])
        self.unclaimed_calls, self.unclaimed_cost, self.in_flight = int(lost[0]), float(lost[1]), int(lost[2])

    # -- identity ------------------------------------------------------------------
    def check_identity(self, identity: dict[str, Any], also: dict[str, set[str]] | None = None) -> bool:
        """Store the run's identity, or check it against the stored one. True when resuming. ``also``: per part,
        older forms of the same value (a fingerprint computed as earlier versions did) that match it too."""
        text = json.dumps(identity, sort_keys=True, default=str)
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
            schema = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is not None and (schema is None or schema[0] != str(SCHEMA_VERSION)):
                raise ConfigurationError(
                    f"the run directory {self.run_dir} was made by another version of promptless (run store "
                    f"schema {schema[0] if schema else '?'}, this version reads {SCHEMA_VERSION}) and cannot be "
                    "resumed; pass a new run_dir"
                )
            if row is None:
                self._db.execute("INSERT INTO meta (key, value) VALUES ('identity', ?)", (text,))
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
                return bool(self._records)
        stored = json.loads(row[0])
        current = json.loads(text)
        for key, older in (also or {}).items():
            if stored.get(key) in older:
                stored[key] = current.get(key)
        if stored != current:
            diff = sorted(k for k in set(stored) | set(identity) if stored.get(k) != current.get(k))
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

    def put(self, kind: str, key: str, value: Any, *, calls: int = 0, cost: float = 0.0,
            claim: Sequence[int] = ()) -> None:
        """Store a record, and mark the journal rows of the calls it holds (``claim``) in the same transaction."""
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
        with self._lock:
            self._seq += 1
            self._db.execute("BEGIN")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO records (kind, key, value, calls, cost, seq) VALUES (?, ?, ?, ?, ?, ?)",
                    (kind, key, text, int(calls), float(cost), self._seq),
                )
                if claim:
                    self._db.executemany("UPDATE calls SET claimed = 1 WHERE id = ?", [(int(t),) for t in claim])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._records[(kind, key)] = Record(json.loads(text), int(calls), float(cost))

    # -- the calls journal -----------------------------------------------------------
    def reserve_call(self, role: str) -> int:
        """Write down one call before it is made; returns its ticket."""
        with self._lock:
            cur = self._db.execute("INSERT INTO calls (role) VALUES (?)", (role,))
            return int(cur.lastrowid or 0)

    def settle_call(self, ticket: int, calls: int, cost: float) -> None:
        """What the call with this ticket really cost (0 calls for a cache hit)."""
        with self._lock:
            self._db.execute("UPDATE calls SET calls = ?, cost = ?, settled = 1 WHERE id = ?",
                             (int(calls), float(cost), int(ticket)))

    def take_previous_cost(self, kind: str, key: str) -> tuple[int, float]:
        """The calls and cost of a record written by an earlier process, once (then zero); the record is then
        seen by this process."""
        with self._lock:
            rec = self._records.get((kind, key))
            if rec is None:
                return 0, 0.0
            rec.seen = True
            if not rec.previous:
                return 0, 0.0
            rec.previous = False
            return rec.calls, rec.cost

    def get_seen(self, kind: str, key: str) -> Record | None:
        """The record if this process wrote it or has replayed it (``take_previous_cost``), else None: what a
        resumed run may look at without seeing past the point its replay has reached."""
        with self._lock:
            rec = self._records.get((kind, key))
            return rec if rec is not None and rec.seen else None

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


def _count(run_dir: str | Path, sql: str) -> int:
    path = Path(run_dir) / DB_NAME
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute(sql).fetchone()
        return int(row[0] or 0)
    except sqlite3.Error:
        return 0
    finally:
        db.close()


def count_trials(run_dir: str | Path) -> int:
    """How many trials a run directory holds (for watching a run from another process)."""
    return _count(run_dir, "SELECT COUNT(*) FROM records WHERE kind = 'trial'")


def count_calls(run_dir: str | Path) -> int:
    """How many LM calls the run's processes have made or have in flight (for watching a run from outside)."""
    return _count(run_dir, "SELECT SUM(calls) FROM calls")


__all__ = ["DB_NAME", "Record", "RunStore", "count_calls", "count_trials"]
