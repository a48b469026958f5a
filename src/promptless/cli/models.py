"""``promptless models list`` and ``promptless models pull NAME``: named local weights."""

from __future__ import annotations

import argparse
import json
import time


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("models", help="list and fetch named local models (GGUF weights)")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")

    p_list = sub.add_parser("list", help="the named models, their sizes and whether they are cached")
    p_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p_list.set_defaults(func=_list)

    p_pull = sub.add_parser("pull", help="fetch a named model into the cache (checks its SHA-256)")
    p_pull.add_argument("name", help="a model name from `promptless models list`")
    p_pull.add_argument("--force", action="store_true", help="fetch again even if already cached")
    p_pull.add_argument("--quiet", action="store_true", help="no progress bar; print only the path")
    p_pull.set_defaults(func=_pull)

    p_path = sub.add_parser("path", help="print the cache directory, or a model's path")
    p_path.add_argument("name", nargs="?", help="a model name (default: the directory)")
    p_path.set_defaults(func=_path)


def _list(args: argparse.Namespace) -> int:
    from promptless.lm import models

    infos = models.list_models()
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"models ({models.models_dir()})")
    table.add_column("name", style="bold")
    table.add_column("size", justify="right")
    table.add_column("parts", justify="right")
    table.add_column("cached")
    table.add_column("path", overflow="fold")
    for info in infos:
        table.add_row(
            info.name,
            models._format_size(info.size),
            str(info.parts),
            "yes" if info.cached else "no",
            str(info.path) if info.cached else "",
        )
    Console().print(table)
    return 0


def _pull(args: argparse.Namespace) -> int:
    from promptless.lm import models

    spec = models.get_spec(args.name)
    started = time.perf_counter()
    already = models.is_cached(spec.name) and not args.force
    path = models.fetch(spec.name, progress=not args.quiet, force=args.force)
    if args.quiet:
        print(path)
    elif already:
        print(f"{spec.name} is already cached: {path}")
    else:
        print(f"{spec.name}: {path} ({models._format_size(spec.size)}, {time.perf_counter() - started:.1f} s)")
    return 0


def _path(args: argparse.Namespace) -> int:
    from promptless.lm import models

    print(models.model_path(args.name) if args.name else models.models_dir())
    return 0
