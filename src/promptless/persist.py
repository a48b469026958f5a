"""Versioned JSON state of a program: per predictor, its instructions, field
descriptions, demos and config. Loading checks everything before changing
anything, so a bad file leaves the program exactly as it was. Nothing is
ever unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .adapters.parsing import to_jsonable
from .data import Example
from .errors import PersistError

if TYPE_CHECKING:
    from .modules.module import Module
    from .modules.predict import Predict

FORMAT = "promptless.program"
FORMAT_VERSION = 1


def dump_predictor(p: Predict) -> dict[str, Any]:
    sig = p.signature
    return {
        "signature": {
            "instructions": sig.instructions,
            "fields": [
                {"name": f.name, "kind": f.kind, "type": f.type_name, "desc": f.desc, "prefix": f.prefix}
                for f in sig.fields.values()
            ],
        },
        "demos": [to_jsonable(d.to_dict() if isinstance(d, Example) else dict(d)) for d in p.demos],
        "config": to_jsonable(dict(p.config)),
        # A predictor's own learned state beyond these (pl.Classify's calibration), when it keeps any.
        **({"extra": to_jsonable(extra)} if (extra := _extra_of(p)) else {}),
    }


def _extra_of(p: Predict) -> dict[str, Any]:
    dump = getattr(p, "extra_state", None)
    return dump() if callable(dump) else {}


def _plan_extra(pred: Predict, entry: Any, where: str) -> dict[str, Any]:
    """The extra state a saved entry gives this predictor (checked by the predictor), or PersistError."""
    extra = entry.get("extra", {}) if isinstance(entry, dict) else {}
    check = getattr(pred, "check_extra_state", None)
    if check is None:
        if extra:
            raise PersistError(f"{where} holds state this kind of predictor does not keep ({', '.join(extra)})")
        return {}
    try:
        return dict(check(extra))
    except (TypeError, ValueError) as exc:
        raise PersistError(f"{where}: {exc}") from None


def program_state(program: Module, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "promptless_version": __version__,
        "program": type(program).__qualname__,
        "predictors": {name: dump_predictor(p) for name, p in program.named_predictors()},
        "metadata": to_jsonable(metadata or {}),
    }


def save(program: Module, path: str | Path, *, save_program: bool = False,
         metadata: dict[str, Any] | None = None) -> Path:
    if save_program:
        raise PersistError(
            "whole-program saving (pickling code) is not supported: it is unsafe to load. "
            "Save the state with program.save(path) and rebuild the program in code before program.load(path)."
        )
    p = Path(path)
    if p.suffix.lower() != ".json":
        raise PersistError(f"save writes JSON; give a path ending in .json, not {p.name!r}")
    state = program_state(program, metadata)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".promptless-", suffix=".json", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


def read_state(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise PersistError(f"no saved program at {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PersistError(f"{p} is not valid JSON ({exc}); was it written by program.save()?") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PersistError(f"{p} is not a saved promptless program (no \"format\": \"{FORMAT}\")")
    version = data.get("format_version")
    if not isinstance(version, int):
        raise PersistError(f"{p}: format_version is missing or not an integer")
    if version > FORMAT_VERSION:
        raise PersistError(
            f"{p} uses format version {version}, newer than this promptless ({__version__}) reads "
            f"(up to {FORMAT_VERSION}); upgrade promptless"
        )
    return data


def apply_state(program: Module, data: dict[str, Any], source: str = "state") -> None:
    """Validate ``data["predictors"]`` against the program, then apply it all at once."""
    saved = data.get("predictors")
    if not isinstance(saved, dict):
        raise PersistError(f"{source}: \"predictors\" must be an object")
    ours = dict(program.named_predictors())
    if set(saved) != set(ours):
        raise PersistError(
            f"{source} holds the state of another program: it has predictors {sorted(saved)}, "
            f"this {type(program).__name__} has {sorted(ours)}"
        )
    planned: list[tuple[Predict, Any, list[Example], dict[str, Any]]] = []
    for name, pred in ours.items():
        entry = saved[name]
        try:
            sig_state = entry["signature"]
            fields = sig_state["fields"]
            instructions = sig_state["instructions"]
            demos_raw = entry.get("demos", [])
            config = entry.get("config", {})
            if not isinstance(instructions, str) or not isinstance(fields, list) or not isinstance(demos_raw, list):
                raise TypeError
        except (KeyError, TypeError):
            raise PersistError(f"{source}: predictor {name!r} has a malformed entry") from None
        names = [(f.get("name"), f.get("kind")) for f in fields if isinstance(f, dict)]
        expected = [(f.name, f.kind) for f in pred.signature.fields.values()]
        if names != expected:
            raise PersistError(
                f"{source}: predictor {name!r} was saved with fields {names}, but this program's has {expected}; "
                "it is the state of another program"
            )
        sig = pred.signature.with_instructions(instructions)
        for f in fields:
            current = sig.fields[f["name"]]
            if f.get("desc", "") != current.desc or f.get("prefix") != current.prefix:
                sig = sig.with_updated_fields(f["name"], desc=f.get("desc", ""), prefix=f.get("prefix"))
        input_names = [n for n, k in names if k == "input"]
        demos = []
        for d in demos_raw:
            if not isinstance(d, dict):
                raise PersistError(f"{source}: predictor {name!r} has a demo that is not an object")
            ex = Example(d)
            present = [str(n) for n in input_names if n in d]
            demos.append(ex.with_inputs(*present) if present else ex)
        if not isinstance(config, dict):
            raise PersistError(f"{source}: predictor {name!r} config must be an object")
        planned.append((pred, sig, demos, config))
    extras = [_plan_extra(pred, saved[name], f"{source}: predictor {name!r}") for name, pred in ours.items()]
    for (pred, sig, demos, config), extra in zip(planned, extras, strict=True):
        pred.signature = sig
        pred.demos = demos
        pred.config = dict(config)
        if hasattr(pred, "set_extra_state"):
            pred.set_extra_state(extra)


def load(program: Module, path: str | Path) -> None:
    data = read_state(path)
    apply_state(program, data, source=str(path))
