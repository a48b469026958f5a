"""``promptless doctor``: what works on this machine and what does not, each with the fix.

    promptless doctor                                   # the installation, the embedded runtime, models, cache
    promptless doctor --lm openai/llama3 --base-url http://127.0.0.1:8080/v1   # plus one real round trip
    promptless doctor --json

Exit status 0 only when everything that was checked works. Key values are never
printed: an API key shows as "set (N characters)".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OK, FAIL, WARN, INFO = "ok", "FAIL", "warn", "info"
_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
_ENV_NAMES = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LITELLM_LOG")
_CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "sve")


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "doctor", help="check this installation: the embedded runtime, models, cache, LM settings"
    )
    parser.add_argument("--lm", metavar="NAME", help="also make one real call to this LM (e.g. openai/gpt-4o-mini)")
    parser.add_argument("--base-url", metavar="URL", help="the server's base URL for --lm (OpenAI-compatible)")
    parser.add_argument("--no-verify", action="store_true", help="do not re-hash cached model files")
    parser.add_argument("--recheck", action="store_true", help="probe the llama.cpp build again even if it passed before")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.base_url and not args.lm:
        print("error: --base-url needs --lm NAME (e.g. --lm openai/<model> --base-url URL)", file=sys.stderr)
        return 2
    checks: list[Check] = []
    for step in (_python, _cpu, _runtime, _models, _cache, _environment):
        checks.extend(step(args))
    if args.lm:
        checks.append(_round_trip(args.lm, args.base_url))
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=2, default=str))
    else:
        _print(checks)
    return 1 if any(c.status == FAIL for c in checks) else 0


def _print(checks: list[Check]) -> None:
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{c.status:>4}  {c.name:<{width}}  {c.detail}")
        if c.fix:
            print(f"{'':>4}  {'':<{width}}  fix: {c.fix}")
    failed = [c.name for c in checks if c.status == FAIL]
    print()
    print("everything checked works" if not failed else f"{len(failed)} problem(s): {', '.join(failed)}")


# -- the checks ---------------------------------------------------------------------------------------
def _python(args: argparse.Namespace) -> list[Check]:
    from promptless._version import __version__

    return [
        Check("python", INFO, f"{platform.python_version()} ({sys.executable})"),
        Check("promptless", INFO, f"{__version__} ({Path(__file__).resolve().parents[1]})"),
    ]


def _cpu(args: argparse.Namespace) -> list[Check]:
    from promptless.lm import preflight

    flags = set(preflight.cpu_flags().split())
    present = [f for f in _CPU_FLAGS if f in flags]
    detail = f"{preflight.cpu_model()}, {platform.machine()}, {os.cpu_count()} cores; flags: {' '.join(present) or 'none'}"
    return [Check("cpu", INFO, detail, data={"flags": present})]


def _runtime(args: argparse.Namespace) -> list[Check]:
    """The llama-cpp-python build: installed, how it was built, and whether it runs on this CPU."""
    from promptless.lm import models, preflight

    version = preflight.installed_version()
    if version is None:
        return [
            Check(
                "llama.cpp runtime",
                WARN,
                "llama-cpp-python is not installed: embedded models (local/...) are unavailable",
                fix="bash scripts/setup.sh, or see docs/lms.md for pip install 'promptless[local]'",
            )
        ]
    stamp_file = Path(sys.prefix) / "promptless-llama-build"
    how = stamp_file.read_text().strip() if stamp_file.exists() else "built outside scripts/install_llama.sh"
    out = [Check("llama-cpp-python", INFO, f"{version}; {how}")]
    model = next((models.resolve(s.name) for s in models.REGISTRY.values() if models.is_cached(s.name)), None)
    if model is None:
        out.append(
            Check(
                "llama.cpp runs here",
                WARN,
                "not checked: no model is cached to run the probe with",
                fix="promptless models pull smollm2-135m",
            )
        )
        return out
    result = preflight.check(model, force=args.recheck)
    if result.ok:
        when = "checked before" if result.cached else f"probe ran in {result.seconds:.1f} s"
        features = result.system_info.replace("CPU : ", "").replace(" = 1", "").replace(" |", "").strip()
        out.append(Check("llama.cpp runs here", OK, f"{model.name}: {when}; compiled for {features}"))
    elif result.ok is None:
        out.append(Check("llama.cpp runs here", WARN, f"could not check: {result.detail}"))
    else:
        out.append(Check("llama.cpp runs here", FAIL, result.detail, fix=preflight.reinstall_command()))
    return out


def _models(args: argparse.Namespace) -> list[Check]:
    import hashlib

    from promptless.lm import models

    out = []
    for info in models.list_models():
        if not info.cached:
            out.append(Check(f"model {info.name}", INFO, "not fetched", fix=f"promptless models pull {info.name}"))
            continue
        if args.no_verify:
            out.append(Check(f"model {info.name}", OK, f"present ({info.path}); not re-hashed"))
            continue
        digest = hashlib.sha256()
        with open(info.path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        size = info.path.stat().st_size
        if digest.hexdigest() == info.sha256 and size == info.size:
            out.append(Check(f"model {info.name}", OK, f"present and verified (SHA-256), {size / 1e6:,.0f} MB"))
        else:
            out.append(
                Check(
                    f"model {info.name}",
                    FAIL,
                    f"{info.path} does not match its checksum",
                    fix=f"promptless models pull {info.name} --force",
                )
            )
    return out


def _cache(args: argparse.Namespace) -> list[Check]:
    from promptless.lm import cache

    if not cache.disk_enabled():
        return [Check("cache", INFO, "on disk: off (PROMPTLESS_CACHE=0); replies are cached in memory only")]
    path = cache.default_cache_path()
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".doctor-"):
            pass
    except OSError as exc:
        return [
            Check(
                "cache",
                FAIL,
                f"{directory} is not writable: {exc}",
                fix="set PROMPTLESS_CACHE_DIR to a writable folder, or PROMPTLESS_CACHE=0",
            )
        ]
    try:
        stats = cache.file_stats(path)
    except Exception as exc:  # a damaged file: say so, the cache itself falls back to memory
        return [Check("cache", FAIL, f"{path} cannot be read: {exc}", fix="promptless cache clear")]
    if not stats:
        return [Check("cache", OK, f"{path} (not created yet), writable")]
    size = stats.get("file_bytes", 0)
    return [Check("cache", OK, f"{path}: {stats.get('entries', 0)} entries, {size / 1e6:,.1f} MB, writable")]


def _environment(args: argparse.Namespace) -> list[Check]:
    names = sorted({n for n in os.environ if n.startswith("PROMPTLESS_")} | {n for n in _ENV_NAMES if n in os.environ})
    if not names:
        return [Check("environment", INFO, "no OPENAI_* or PROMPTLESS_* variables set")]
    out = []
    for name in names:
        value = os.environ[name]
        shown = f"set ({len(value)} characters)" if any(w in name for w in _SECRET_WORDS) else repr(value)
        out.append(Check(f"env {name}", INFO, shown))
    return out


def _round_trip(name: str, base_url: str | None) -> Check:
    import promptless as pl
    from promptless.errors import PromptlessError

    label = f"call {name}" + (f" at {base_url}" if base_url else "")
    kwargs: dict[str, Any] = {"cache": False, "max_tokens": 8, "temperature": 0.0}
    if base_url:
        kwargs["base_url"] = base_url
    try:
        lm = pl.LM(name, **kwargs)
        started = time.monotonic()
        texts = lm("Reply with the single word OK.")
        seconds = time.monotonic() - started
    except PromptlessError as exc:
        return Check(label, FAIL, f"{type(exc).__name__}: {exc}", fix="see docs/lms.md")
    except TypeError as exc:  # an option this backend does not take (base_url for local/...)
        return Check(label, FAIL, f"{exc}", fix="--base-url is for openai/... models only")
    reply = (texts[0] if texts else "").strip().replace("\n", " ")
    return Check(label, OK, f"answered in {seconds:.2f} s: {reply[:60]!r}")
