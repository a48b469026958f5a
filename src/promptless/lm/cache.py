"""The LM response cache: an in-memory LRU in front of a SQLite file.

``Cache(path)`` keeps recent entries in memory and every entry on disk, so a
second run of the same program (or another process on the same machine)
answers repeated calls without asking the model again. Values are
``LMResponse.to_dict()`` dicts stored as JSON text; nothing is ever pickled, so
a cache file from elsewhere cannot run code. A row that cannot be read back is
a miss, never an error: the cache must not break a call.

The file is shared safely by threads and processes: SQLite in WAL mode (readers
never block the writer), a busy timeout so writers wait for each other instead
of failing, and one connection per thread (connections are never shared across
threads, and a forked child opens its own).

``cache_key(model, request)`` is the SHA-256 of a canonical JSON of the model
name, the messages and ``request.sampling()`` (which includes ``rollout_id``).

``default_cache()`` is the process-wide cache, created on first use (never at
import time) at, in order of preference:

- ``$PROMPTLESS_CACHE_DIR/cache.sqlite3``
- ``$PROMPTLESS_HOME/cache/cache.sqlite3``
- ``~/.cache/promptless/cache.sqlite3``

``PROMPTLESS_CACHE=0`` keeps the default cache in memory only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..types import LMRequest

logger = logging.getLogger("promptless.lm")

_KEY_VERSION = 1
_BUSY_TIMEOUT_MS = 30_000
_SCHEMA = "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"


def _canonical(value: Any) -> Any:
    """Make equal requests serialise equally (``temperature=1`` and ``1.0`` alike)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return repr(value)


def cache_key(model: str, request: LMRequest) -> str:
    """The cache key of a request to ``model``: a SHA-256 hex digest."""
    payload = {
        "v": _KEY_VERSION,
        "model": model,
        "messages": [[m.role, m.content] for m in request.messages],
        "sampling": _canonical(request.sampling()),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Cache:
    """An LRU of ``memory_size`` entries in front of an optional SQLite file.

    ``path=None`` keeps the cache in memory only. The file and its folder are
    created on the first read or write, not when the object is made.
    """

    def __init__(self, path: str | Path | None = None, memory_size: int = 1024) -> None:
        self.path: Path | None = Path(path).expanduser() if path is not None else None
        self.memory_size = max(0, int(memory_size))
        self._memory: OrderedDict[str, str] = OrderedDict()
        self._mem_lock = threading.Lock()
        self._conn_lock = threading.Lock()
        self._local = threading.local()
        # Every connection opened, with the thread that owns it, so close() can close them all.
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._pid = os.getpid()
        self._closed = False

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
                "Delete the file or set PROMPTLESS_CACHE_DIR to another folder to start afresh.",
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
                conn.execute(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    # -- memory LRU -----------------------------------------------------------
    def _remember(self, key: str, text: str) -> None:
        if self.memory_size == 0:
            return
        with self._mem_lock:
            self._memory[key] = text
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_size:
                self._memory.popitem(last=False)

    @staticmethod
    def _decode(text: Any) -> dict[str, Any] | None:
        if not isinstance(text, str):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    # -- public API -----------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        """The value stored under ``key`` (a fresh dict each time), or ``None``."""
        with self._mem_lock:
            text = self._memory.get(key)
            if text is not None:
                self._memory.move_to_end(key)
        if text is not None:
            return json.loads(text)
        try:
            conn = self._connect()
            if conn is None:
                return None
            row = conn.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            logger.warning("LM cache read from %s failed (%s); treating it as a miss", self.path, exc)
            return None
        if row is None:
            return None
        value = self._decode(row[0])
        if value is None:
            logger.warning("LM cache entry %s in %s is corrupt; treating it as a miss", key[:12], self.path)
            return None
        self._remember(key, row[0])
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store ``value`` (a JSON-serialisable dict) under ``key``."""
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        self._remember(key, text)
        try:
            conn = self._connect()
            if conn is None:
                return
            conn.execute(
                "INSERT OR REPLACE INTO entries (key, value, created) VALUES (?, ?, ?)", (key, text, time.time())
            )
        except sqlite3.Error as exc:
            logger.warning("LM cache write to %s failed (%s); the reply was not cached on disk", self.path, exc)

    def clear(self) -> None:
        """Remove every entry, in memory and on disk."""
        with self._mem_lock:
            self._memory.clear()
        conn = self._connect()
        if conn is not None:
            conn.execute("DELETE FROM entries")

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
        return f"Cache({where!r}, memory_size={self.memory_size})"


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


def _disk_enabled() -> bool:
    return os.environ.get("PROMPTLESS_CACHE", "1").strip().lower() not in {"0", "false", "no", "off"}


def default_cache() -> Cache:
    """The process-wide cache, created on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Cache(default_cache_path() if _disk_enabled() else None)
    return _default


def reset_default_cache() -> None:
    """Close and forget the process-wide cache (the next use reads the environment again)."""
    global _default
    with _default_lock:
        old, _default = _default, None
    if old is not None:
        old.close()


__all__ = ["Cache", "cache_key", "default_cache", "default_cache_path", "reset_default_cache"]
