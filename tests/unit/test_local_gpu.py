"""LocalLM's n_gpu_layers: checked, resolved against the build's GPU support, and passed to llama.cpp.

A stand-in ``llama_cpp`` module records what ``Llama`` is given; no weights are loaded and no GPU is needed
(the device machine's check in docs/scale.md runs the real build)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from promptless.errors import ConfigurationError
from promptless.lm import local


@pytest.fixture
def fake_llama(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    made: list[dict] = []
    state = {"gpu": False}

    class Llama:
        def __init__(self, **kwargs):
            made.append(kwargs)

        def close(self):
            pass

    module = types.SimpleNamespace(Llama=Llama, llama_supports_gpu_offload=lambda: state["gpu"])
    monkeypatch.setitem(sys.modules, "llama_cpp", module)
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(local._preflight, "ensure", lambda path: None)
    monkeypatch.setattr(local, "_LOADED", {})
    weights = tmp_path / "m.gguf"
    weights.write_bytes(b"GGUF")
    return made, state, str(weights)


def test_default_is_cpu_only(fake_llama):
    made, state, weights = fake_llama
    state["gpu"] = True
    lm = local.LocalLM(weights, cache=False)
    lm.load()
    assert made[-1]["n_gpu_layers"] == 0
    assert "n_gpu_layers" not in lm.cache_identity()


def test_auto_offloads_every_layer_only_when_the_build_can(fake_llama):
    made, state, weights = fake_llama
    local.LocalLM(weights, cache=False, n_gpu_layers="auto").load()
    assert made[-1]["n_gpu_layers"] == 0
    state["gpu"] = True
    lm = local.LocalLM(weights, cache=False, n_gpu_layers="auto")
    lm.load()
    assert made[-1]["n_gpu_layers"] == -1
    assert lm.cache_identity()["n_gpu_layers"] == "auto"
    assert "n_gpu_layers='auto'" in repr(lm)


def test_a_number_is_passed_through_on_a_gpu_build_and_refused_on_a_cpu_build(fake_llama):
    made, state, weights = fake_llama
    with pytest.raises(ConfigurationError, match="DGGML_CUDA=on"):
        local.LocalLM(weights, cache=False, n_gpu_layers=20).load()
    state["gpu"] = True
    local.LocalLM(weights, cache=False, n_gpu_layers=20).load()
    assert made[-1]["n_gpu_layers"] == 20


def test_models_with_other_offload_settings_are_loaded_apart(fake_llama):
    made, state, weights = fake_llama
    state["gpu"] = True
    a = local.LocalLM(weights, cache=False).load()
    b = local.LocalLM(weights, cache=False, n_gpu_layers=-1).load()
    c = local.LocalLM(weights, cache=False).load()
    assert a is c and a is not b and len(made) == 2


@pytest.mark.parametrize("bad", [-2, 1.5, "all", True, None])
def test_bad_values_are_refused_with_the_choices(fake_llama, bad):
    _, _, weights = fake_llama
    with pytest.raises(ConfigurationError, match="n_gpu_layers must be"):
        local.LocalLM(weights, cache=False, n_gpu_layers=bad)


def test_the_option_travels_in_the_lm_spec(fake_llama):
    _, _, weights = fake_llama
    spec = local.LocalLM(weights, cache=False, n_gpu_layers="auto").spec()
    assert spec["kwargs"]["n_gpu_layers"] == "auto"


def test_a_different_n_batch_loads_its_own_model(fake_llama):
    """Two LMs on the same weights share one loaded model only when llama.cpp was built with the same settings:
    an n_batch of its own must reach llama.cpp, not be ignored for the model loaded first."""
    made, _state, weights = fake_llama
    local.LocalLM(weights, cache=False, n_batch=512).load()
    local.LocalLM(weights, cache=False, n_batch=512).load()
    assert len(made) == 1
    local.LocalLM(weights, cache=False, n_batch=64).load()
    assert len(made) == 2 and made[-1]["n_batch"] == 64
