"""The LM response cache: an in-memory LRU in front of a size-bounded SQLite file.

``Cache(path)`` keeps recent entries in memory and every entry on disk, so a
second run of the same program (or another process on the same machine)
answers repeated calls without asking the model again. Values are
``LMResponse.to_dict()`` dicts stored as JSON text; nothing is ever pickled, so
a cache file from elsewhere cannot run code.

Only well-formed replies are stored: at least one completion, every completion
a non-blank string, a usage object of counts, no truncated completion
(``entry_problem`` says what is wrong with a value). A row that cannot be read
back, or that does not pass the same check, is a miss, never an error: it is
dropped from the file and the call goes to the model.

The file is shared safely by threads and processes: SQLite in WAL mode (readers
never block the writer), a busy timeout so writers wait for each other instead
of failing, and one connection per thread (connections are never shared across
threads, and a forked child opens its own).

The file is bounded: ``max_bytes`` (default 1 GiB, or
``$PROMPTLESS_CACHE_MAX_BYTES``, which takes a count of bytes or a size such as
``500M`` or ``2G``, powers of 1024) counts the bytes of the stored keys and
values. When a writer finds the total above the limit it evicts the entries
used least recently until the total is under 90 % of it. "Used" is the last
write or hit, recorded on disk at most once a minute per entry so that hits
stay reads. The file itself is somewhat larger than the entries (SQLite pages,
the index, the WAL); SQLite reuses the pages that eviction frees.

``cache_key(identity, request)`` is the SHA-256 of a canonical JSON of the
LM's ``cache_identity()`` (provider, model, endpoint and the client settings
that change what is sent or produced; never credentials), the messages and
``request.sampling()`` (which includes ``rollout_id``). The key is versioned:
rows written under an older key scheme never match, and a file of an older
layout is emptied when first opened.

``default_cache()`` is the process-wide cache, created on first use (never at
import time) at, in order of preference:

- ``$PROMPTLESS_CACHE_DIR/cache.sqlite3``
- ``$PROMPTLESS_HOME/cache/cache.sqlite3``
- ``~/.cache/promptless/cache.sqlite3``

``PROMPTLESS_CACHE=0`` keeps the default cache in memory only.
``promptless cache info`` and ``promptless cache clear`` show and empty it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..types import LMRequest

logger = logging.getLogger("promptless.lm")

# v1 keyed on the model name only; v2 on the LM's cache_identity() (provider, endpoint, settings).
_KEY_VERSION = 2
# PRAGMA user_version of the file layout; files of an older layout are emptied when opened.
_SCHEMA_VERSION = 2
_BUSY_TIMEOUT_MS = 30_000
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries ("
    "key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL, used REAL NOT NULL, size INTEGER NOT NULL)"
)
_INDEX = "CREATE INDEX IF NOT EXISTS entries_by_use ON entries (used, size)"

DEFAULT_MAX_BYTES = 1 << 30
MAX_BYTES_ENV = "PROMPTLESS_CACHE_MAX_BYTES"
# A hit is written back as "used" at most this often per entry (seconds).
_TOUCH_SECONDS = 60.0
# A writer sums the file's entries after writing this fraction of the limit since its last check.
_CHECK_FRACTION = 16
# Eviction brings the total down to this fraction of the limit.
_LOW_WATER = 0.9

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(?:([kmgt])(?:i?b)?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, *, source: str = MAX_BYTES_ENV) -> int:
    """Bytes from ``"1073741824"``, ``"500M"``, ``"2G"`` or ``"1.5GiB"`` (K, M, G, T are powers of 1024)."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise ConfigurationError(
            f"{source}={text!r} is not a size: give a number of bytes or a number with K, M, G or T "
            f"(powers of 1024), for example {source}=2G; unset it for the default of 1G"
        )
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


def resolve_max_bytes(value: int | str | None = None) -> int:
    """The disk limit: ``value`` if given, else ``$PROMPTLESS_CACHE_MAX_BYTES``, else 1 GiB."""
    if value is None:
        raw = os.environ.get(MAX_BYTES_ENV, "").strip()
        return parse_size(raw) if raw else DEFAULT_MAX_BYTES
    if isinstance(value, str):
        return parse_size(value, source="max_bytes")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            f"max_bytes must be a number of bytes (0 or more) or a size such as '2G', got {value!r}"
        )
    return value


def _canonical(value: Any) -> Any:
    """Make equal requests serialise equally (``temperature=1`` and ``1.0`` alike)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return repr(value)


# One encoder for every key (json.dumps with options builds a new one per call).
_KEY_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)


def cache_key(identity: str | Mapping[str, Any], request: LMRequest) -> str:
    """The cache key of ``request`` sent by an LM: a SHA-256 hex digest.

    ``identity`` is the LM's ``cache_identity()``; a bare string stands for ``{"model": identity}``.
    """
    if isinstance(identity, str):
        identity = {"model": identity}
    payload = {
        "v": _KEY_VERSION,
        "lm": identity,  # plain JSON values (anything else is written as its repr)
        # A message with media adds its content parts (the text alone names an image, it does not hold it).
        "messages": [[m.role, m.content, list(m.parts)] if m.parts else [m.role, m.content]
                     for m in request.messages],
        "sampling": _canonical(request.sampling()),
    }
    return hashlib.sha256(_KEY_ENCODER.encode(payload).encode("utf-8")).hexdigest()


_COUNTS = ("calls", "prompt_tokens", "completion_tokens", "cache_hits")
_AMOUNTS = ("seconds", "cost")


def entry_problem(value: Any) -> str | None:
    """What makes ``value`` unfit to be served as a cached reply, or ``None`` if it is well formed.

    A well-formed value is an ``LMResponse.to_dict()``: ``texts``, a non-empty
    list of non-blank strings (blank only where ``tool_calls`` has that
    completion's calls); ``usage``, an object whose counts are whole
    numbers >= 0 and whose ``seconds``/``cost`` are finite numbers >= 0 (or
    null); ``model``, a string; ``finish_reasons``, a list of strings, none
    of them ``"length"`` (a truncated reply).
    """
    if not isinstance(value, dict):
        return "not a JSON object"
    texts = value.get("texts")
    if not isinstance(texts, list) or not texts:
        return "no completions"
    calls = value.get("tool_calls", [])
    if not isinstance(calls, list) or not all(isinstance(c, list) and all(isinstance(x, dict) for x in c)
                                              for c in calls):
        return "tool_calls is not a list of lists of calls"
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            return "a completion that is not text"
        if not text.strip() and not (i < len(calls) and calls[i]):  # a reply of tool calls only has no text
            return "an empty completion"
    usage = value.get("usage")
    if not isinstance(usage, dict):
        return "usage is not an object"
    for name in _COUNTS:
        count = usage.get(name, 0)
        if type(count) is not int or count < 0:
            return f"usage.{name} is not a count"
    for name in _AMOUNTS:
        amount = usage.get(name)
        if amount is None:
            continue
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) or amount < 0:
            return f"usage.{name} is not an amount"
    if not isinstance(value.get("model"), str):
        return "model is not a string"
    reasons = value.get("finish_reasons")
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        return "finish_reasons is not a list of strings"
    if "length" in reasons:
        return "a truncated completion"
    return None


class Cache:
    """An LRU of ``memory_size`` entries in front of an optional SQLite file of at most ``max_bytes``.

    ``path=None`` keeps the cache in memory only. The file and its folder are
    created on the first read or write, not when the object is made.
    ``max_bytes=None`` reads ``$PROMPTLESS_CACHE_MAX_BYTES`` (default 1 GiB);
    ``0`` keeps nothing on disk.
    """

    def __init__(
        self, path: str | Path | None = None, memory_size: int = 1024, max_bytes: int | str | None = None
    ) -> None:
        self.path: Path | None = Path(path).expanduser() if path is not None else None
        self.memory_size = max(0, int(memory_size))
        self.max_bytes = resolve_max_bytes(max_bytes)
        # key -> [JSON text, when its use was last recorded on disk]
        self._memory: OrderedDict[str, list[Any]] = OrderedDict()
        self._mem_lock = threading.Lock()
        self._conn_lock = threading.Lock()
        self._local = threading.local()
        # Every connection opened, with the thread that owns it, so close() can close them all.
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._pid = os.getpid()
        self._closed = False
        self._touch_seconds = _TOUCH_SECONDS
        # Bytes this object wrote since it last summed the file; None: never summed yet.
        self._written: int | None = None

    # -- connections ----------------------------------------------------------
    def _connect(self) -> sqlite3.Connection | None:
        if self.path is None or self._closed:
            return None
        if self._pid != os.getpid():
            # A forked child: the parent's connections are not ours to use or close.
            with self._conn_lock:
                self._pid = os.getpid()
                self._conns = []
                self._local = threading.local()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(self.path), timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            self._disable(exc)
            return None
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            self._setup(conn)
        except sqlite3.Error as exc:
            conn.close()
            self._disable(exc)
            return None
        except BaseException:
            conn.close()
            raise
        self._local.conn = conn
        with self._conn_lock:
            # Close connections of threads that have ended, so thread churn does not leak them.
            alive = []
            for thread, c in self._conns:
                if thread.is_alive():
                    alive.append((thread, c))
                else:
                    try:
                        c.close()
                    except sqlite3.Error:
                        pass
            alive.append((threading.current_thread(), conn))
            self._conns = alive
        return conn

    def _disable(self, exc: BaseException) -> None:
        """Stop using a file that cannot be opened; say so once."""
        with self._conn_lock:
            already, self._closed = self._closed, True
        if not already:
            logger.warning(
                "LM cache file %s cannot be used (%s); caching in memory only for now. "
                "Run `promptless cache clear` to start afresh, or set PROMPTLESS_CACHE_DIR to another folder.",
                self.path,
                exc,
            )

    @staticmethod
    def _setup(conn: sqlite3.Connection) -> None:
        # Several processes may open a new file at once; switching to WAL takes a
        # lock that busy_timeout does not always cover, so retry briefly.
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                if conn.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
                    Cache._migrate(conn)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Create the layout in a new file; empty a file of an older layout (its keys can never match)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"it was written by a newer promptless (layout {version}, this one reads {_SCHEMA_VERSION})"
                )
            if version < _SCHEMA_VERSION:
                conn.execute("DROP TABLE IF EXISTS entries")
                conn.execute(_SCHEMA)
                conn.execute(_INDEX)
                conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- memory LRU -----------------------------------------------------------
    def _remember(self, key: str, text: str, touched: float) -> None:
        if self.memory_size == 0:
            return
        with self._mem_lock:
            self._memory[key] = [text, touched]
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_size:
                self._memory.popitem(last=False)

    @staticmethod
    def _decode(text: Any) -> dict[str, Any] | None:
        """The well-formed entry in a stored value, or ``None``."""
        if not isinstance(text, str):
            return None
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return None
        return value if entry_problem(value) is None else None

    def _touch(self, key: str, now: float) -> None:
        """Record on disk that ``key`` was just used (best effort: a failure only ages the entry)."""
        try:
            conn = self._connect()
            if conn is not None:
                conn.execute("UPDATE entries SET used = ? WHERE key = ?", (now, key))
        except sqlite3.Error as exc:
            logger.debug("LM cache could not record a hit in %s (%s)", self.path, exc)

    def _drop(self, conn: sqlite3.Connection, key: str, stored: Any) -> None:
        """Delete a damaged row, unless another writer has replaced it meanwhile."""
        try:
            conn.execute("DELETE FROM entries WHERE key = ? AND value = ?", (key, stored))
        except sqlite3.Error as exc:
            logger.debug("LM cache could not drop a damaged row from %s (%s)", self.path, exc)

    # -- public API -----------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        """The value stored under ``key`` (a fresh dict each time), or ``None``."""
        now = time.time()
        stale = False
        with self._mem_lock:
            slot = self._memory.get(key)
            if slot is not None:
                self._memory.move_to_end(key)
                text = slot[0]
                if now - slot[1] >= self._touch_seconds:
                    slot[1] = now
                    stale = True
        if slot is not None:
            if stale:
                self._touch(key, now)
            return json.loads(text)  # type: ignore[no-any-return]
        try:
            conn = self._connect()
            if conn is None:
                return None
            row = conn.execute("SELECT value, used FROM entries WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            logger.warning("LM cache read from %s failed (%s); treating it as a miss", self.path, exc)
            return None
        if row is None:
            return None
        stored, used = row
        value = self._decode(stored)
        if value is None:
            logger.warning("LM cache entry %s in %s is damaged; dropped it and treating it as a miss", key[:12], self.path)
            self._drop(conn, key, stored)
            return None
        if not isinstance(used, (int, float)) or now - used >= self._touch_seconds:
            self._touch(key, now)
            used = now
        self._remember(key, stored, used)
        return value

    def put(self, key: str, value: dict[str, Any]) -> bool:
        """Store ``value`` (an ``LMResponse.to_dict()``) under ``key``; ``False`` if it is not well formed.

        A reply that ``entry_problem`` finds fault with (an empty completion, say)
        is not stored, so the next identical call asks the model again.
        """
        problem = entry_problem(value)
        if problem is not None:
            logger.debug("LM reply not cached: %s", problem)
            return False
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:  # a field outside the format that JSON cannot hold
            logger.debug("LM reply not cached: %s", exc)
            return False
        now = time.time()
        self._remember(key, text, now)
        size = len(key) + len(text.encode("utf-8"))
        if size > self.max_bytes:
            return True  # larger than the whole disk budget: memory only
        try:
            conn = self._connect()
            if conn is None:
                return True
            conn.execute(
                "INSERT OR REPLACE INTO entries (key, value, created, used, size) VALUES (?, ?, ?, ?, ?)",
                (key, text, now, now, size),
            )
            if self._written is None:  # this object's first write: check the limit at once
                self._evict(conn)
            else:
                self._written += size
                if self._written >= self.max_bytes // _CHECK_FRACTION:
                    self._evict(conn)
        except sqlite3.Error as exc:
            logger.warning("LM cache write to %s failed (%s); the reply was not cached on disk", self.path, exc)
        return True

    def _evict(self, conn: sqlite3.Connection) -> int:
        """Bring the file under its limit, least recently used first; the number of entries removed."""
        self._written = 0
        total = conn.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
        if total <= self.max_bytes:
            return 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            total = conn.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
            need = total - int(self.max_bytes * _LOW_WATER)
            victims: list[tuple[str]] = []
            if total > self.max_bytes:
                freed = 0
                cursor = conn.execute("SELECT key, size FROM entries ORDER BY used, key")
                while freed < need:
                    rows = cursor.fetchmany(256)
                    if not rows:
                        break
                    for k, s in rows:
                        victims.append((k,))
                        freed += s if isinstance(s, int) else 0
                        if freed >= need:
                            break
                cursor.close()
                conn.executemany("DELETE FROM entries WHERE key = ?", victims)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if victims:
            logger.info(
                "LM cache %s was over its limit of %d bytes: evicted %d least recently used entries",
                self.path,
                self.max_bytes,
                len(victims),
            )
        return len(victims)

    def clear(self) -> None:
        """Remove every entry, in memory and on disk."""
        with self._mem_lock:
            self._memory.clear()
        conn = self._connect()
        if conn is not None:
            conn.execute("DELETE FROM entries")

    def stats(self) -> dict[str, Any]:
        """What the cache holds: entries and bytes on disk, the limit, the file's size, the memory part."""
        with self._mem_lock:
            memory_entries = len(self._memory)
        conn = self._connect()
        out = _stats(conn, self.path) if conn is not None else _stats(None, None)
        out.update(max_bytes=self.max_bytes, memory_entries=memory_entries)
        return out

    def __len__(self) -> int:
        conn = self._connect()
        if conn is None:
            with self._mem_lock:
                return len(self._memory)
        return int(conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def close(self) -> None:
        """Close every connection; later calls use the memory part only."""
        with self._conn_lock:
            conns, self._conns = self._conns, []
            self._closed = True
            self._local = threading.local()
        for _, conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "memory only"
        return f"Cache({where!r}, memory_size={self.memory_size}, max_bytes={self.max_bytes})"


def _file_bytes(path: Path) -> int:
    """The bytes the cache file, its WAL and its shared-memory file take on disk."""
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def _stats(conn: sqlite3.Connection | None, path: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "path": str(path) if path is not None else None,
        "layout": _SCHEMA_VERSION,
        "entries": 0,
        "bytes": 0,
        "file_bytes": 0,
        "oldest_use": None,
        "newest_use": None,
    }
    if conn is None or path is None:
        return out
    out["layout"] = layout = conn.execute("PRAGMA user_version").fetchone()[0]
    has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'entries'").fetchone()
    if has_table and layout == _SCHEMA_VERSION:
        entries, stored, oldest, newest = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(used), MAX(used) FROM entries"
        ).fetchone()
        out.update(entries=int(entries), bytes=int(stored), oldest_use=oldest, newest_use=newest)
    elif has_table:
        out["entries"] = int(conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
    out["file_bytes"] = _file_bytes(path)
    return out


def file_stats(path: str | Path) -> dict[str, Any] | None:
    """What the cache file at ``path`` holds, read without changing it (``None`` if there is no file).

    ``layout`` is the file's layout version; entries of another layout than
    this promptless's never match. Raises ``sqlite3.DatabaseError`` for a file
    that is not a readable SQLite database.
    """
    path = Path(path).expanduser()
    if not path.exists():
        return None
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_MS / 1000)
    try:
        return _stats(conn, path)
    finally:
        conn.close()


def clear_file(path: str | Path) -> dict[str, Any]:
    """Empty the cache file at ``path`` and give its space back; say what was removed.

    Other processes may keep using the file meanwhile. A file that is not a
    readable cache (damaged, or of a newer layout) is deleted instead.
    Returns ``{"entries": removed, "freed_bytes": ..., "deleted_file": bool}``.
    """
    path = Path(path).expanduser()
    before = _file_bytes(path)
    try:
        conn = sqlite3.connect(str(path), timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error:
        conn = None
    removed = 0
    try:
        if conn is None:
            raise sqlite3.DatabaseError("cannot open")
        layout = conn.execute("PRAGMA user_version").fetchone()[0]
        if layout > _SCHEMA_VERSION:
            raise sqlite3.DatabaseError("a newer layout")
        has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'entries'").fetchone()
        if has_table:
            removed = conn.execute("DELETE FROM entries").rowcount
        try:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:  # another process is writing: the entries are gone anyway
            logger.info("could not compact %s now (%s); SQLite reuses the freed space", path, exc)
        deleted = False
    except sqlite3.DatabaseError:
        if conn is not None:
            conn.close()
            conn = None
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
        deleted = True
    finally:
        if conn is not None:
            conn.close()
    return {"entries": max(removed, 0), "freed_bytes": max(before - _file_bytes(path), 0), "deleted_file": deleted}


_default: Cache | None = None
_default_lock = threading.Lock()


def default_cache_path() -> Path:
    """Where the default cache file lives (see the module docstring)."""
    cache_dir = os.environ.get("PROMPTLESS_CACHE_DIR")
    if cache_dir:
        return Path(cache_dir).expanduser() / "cache.sqlite3"
    home = os.environ.get("PROMPTLESS_HOME")
    if home:
        return Path(home).expanduser() / "cache" / "cache.sqlite3"
    return Path.home() / ".cache" / "promptless" / "cache.sqlite3"


def disk_enabled() -> bool:
    """Whether the default cache keeps a file (``PROMPTLESS_CACHE`` is not 0/false/no/off)."""
    return os.environ.get("PROMPTLESS_CACHE", "1").strip().lower() not in {"0", "false", "no", "off"}


def default_cache() -> Cache:
    """The process-wide cache, created on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Cache(default_cache_path() if disk_enabled() else None)
    return _default


def reset_default_cache() -> None:
    """Close and forget the process-wide cache (the next use reads the environment again)."""
    global _default
    with _default_lock:
        old, _default = _default, None
    if old is not None:
        old.close()


__all__ = [
    "DEFAULT_MAX_BYTES",
    "Cache",
    "cache_key",
    "clear_file",
    "configure_cache",
    "default_cache",
    "default_cache_path",
    "disk_enabled",
    "entry_problem",
    "file_stats",
    "parse_size",
    "reset_default_cache",
    "resolve_max_bytes",
]


def configure_cache(
    enable_disk_cache: bool = True,
    enable_memory_cache: bool = True,
    disk_cache_dir: str | Path | None = None,
    disk_size_limit_bytes: int | str | None = None,
    memory_max_entries: int = 1024,
    restrict_pickle: bool | None = None,
    safe_types: Any = None,
) -> Cache:
    """Replace the process-wide cache, with DSPy's ``configure_cache`` arguments.

    ``disk_cache_dir``: the folder of the file (default as in the module docstring); ``disk_size_limit_bytes``:
    the file's bound (a count or ``"2G"``); ``memory_max_entries``: the in-memory LRU's size. With both kinds
    off, nothing is kept. LMs that have not made a call yet use the new cache; an LM keeps the cache it
    already used (make the LM after this call, or give it ``cache=`` itself). ``restrict_pickle`` is taken
    and has nothing to do: this cache stores JSON and never unpickles.
    """
    global _default
    if safe_types:
        raise ConfigurationError(
            "configure_cache(safe_types=...) has nothing to allow: the promptless cache stores replies as JSON "
            "and never unpickles; leave safe_types out"
        )
    if memory_max_entries is None or memory_max_entries == math.inf:
        memory_max_entries = 1 << 62
    if not isinstance(memory_max_entries, int) or memory_max_entries < 0:
        raise ConfigurationError(f"memory_max_entries must be a whole number >= 0, got {memory_max_entries!r}")
    path: Path | None = None
    max_bytes = disk_size_limit_bytes
    if enable_disk_cache:
        path = Path(disk_cache_dir).expanduser() / "cache.sqlite3" if disk_cache_dir else default_cache_path()
    new = Cache(path, memory_size=memory_max_entries if enable_memory_cache else 0, max_bytes=max_bytes)
    with _default_lock:  # the old cache is not closed: an LM that used it keeps it
        _default = new
    return new
