"""``promptless cache info`` and ``promptless cache clear``: the LM response cache on disk."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("cache", help="show or empty the LM response cache")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    sub = parser.add_subparsers(dest="cache_command", metavar="ACTION")

    p_info = sub.add_parser("info", help="where the cache file is, what it holds and its size limit")
    p_info.add_argument("--path", type=Path, help="a cache file (default: the one LMs use, see below)")
    p_info.add_argument("--json", action="store_true", help="print JSON instead of text")
    p_info.set_defaults(func=_info)

    p_clear = sub.add_parser("clear", help="remove every cached reply (the next calls go to the models)")
    p_clear.add_argument("--path", type=Path, help="a cache file (default: the one LMs use)")
    p_clear.set_defaults(func=_clear)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - unreachable


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _info(args: argparse.Namespace) -> int:
    from promptless.errors import ConfigurationError
    from promptless.lm import cache

    path = (args.path or cache.default_cache_path()).expanduser()
    limit = cache.resolve_max_bytes()
    limit_from = cache.MAX_BYTES_ENV if os.environ.get(cache.MAX_BYTES_ENV, "").strip() else "default"
    disk = cache.disk_enabled()
    try:
        stats = cache.file_stats(path)
    except sqlite3.DatabaseError as exc:
        raise ConfigurationError(
            f"{path} is not a readable cache file ({exc}); `promptless cache clear` deletes it"
        ) from None
    record: dict[str, Any] = {
        "path": str(path),
        "exists": stats is not None,
        "disk_cache": disk,
        "max_bytes": limit,
        "max_bytes_from": limit_from,
        "entries": 0,
        "bytes": 0,
        "file_bytes": 0,
        "oldest_use": None,
        "newest_use": None,
        "layout": cache._SCHEMA_VERSION,
    }
    if stats is not None:
        record.update({k: stats[k] for k in ("entries", "bytes", "file_bytes", "oldest_use", "newest_use", "layout")})
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    print(f"cache file  {path}")
    if not disk:
        print("disk cache  off (PROMPTLESS_CACHE=0): LMs keep replies in memory only")
    if stats is None:
        print("entries     none yet (no file; LMs create it on their first call)")
    elif record["layout"] != cache._SCHEMA_VERSION:
        print(
            f"entries     {record['entries']:,} of an older layout ({record['layout']}), which never match; "
            "they are removed when promptless next opens the file"
        )
    else:
        print(f"entries     {record['entries']:,} ({_size(record['bytes'])} of keys and replies)")
        print(f"file        {_size(record['file_bytes'])} on disk, with SQLite's pages, index and WAL")
        if record["entries"]:
            print(f"last used   oldest entry {_when(record['oldest_use'])}, newest {_when(record['newest_use'])}")
    source = f"from {cache.MAX_BYTES_ENV}" if limit_from != "default" else f"default; set {cache.MAX_BYTES_ENV} to change"
    print(f"limit       {_size(limit)} ({source}); the least recently used entries go first")
    print("clear it    promptless cache clear; turn it off: PROMPTLESS_CACHE=0, or LM(..., cache=False)")
    return 0


def _clear(args: argparse.Namespace) -> int:
    from promptless.lm import cache

    path = (args.path or cache.default_cache_path()).expanduser()
    if not path.exists():
        print(f"nothing to clear: no cache file at {path}")
        return 0
    done = cache.clear_file(path)
    if done["deleted_file"]:
        print(f"deleted {path}: it was not a readable cache file ({_size(done['freed_bytes'])} freed)")
    else:
        print(f"cleared {path}: {done['entries']:,} entries removed, {_size(done['freed_bytes'])} freed")
    return 0
