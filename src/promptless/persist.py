"""Versioned JSON state of a program: per predictor, its instructions, field
descriptions, demos and config. Loading checks everything before changing
anything, so a bad file leaves the program exactly as it was. Nothing is
ever unpickled.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ._version import __version__
from .data import Example
from .errors import PersistError, SignatureError
from .values import MAX_DEPTH, load_json, to_jsonable, value_problem

if TYPE_CHECKING:
    from .signature import Signature


class Predictor(Protocol):
    """What persistence reads and writes of a predictor (``Predict`` is one): its signature, demos and config.

    A predictor that keeps more state (``pl.Classify``'s calibration) also has ``extra_state()``,
    ``check_extra_state(state)`` and ``set_extra_state(state)``; they are looked up with ``getattr``."""

    signature: type[Signature]
    demos: list[Example]
    config: dict[str, Any]


class Program(Protocol):
    """What persistence needs of a program (a ``Module``): its predictors by name."""

    def named_predictors(self) -> Sequence[tuple[str, Predictor]]: ...

FORMAT = "promptless.program"
FORMAT_VERSION = 1
# A saved file nests a few levels (the file, "predictors", one predictor, "demos", one demo) above the values
# of its demos, which may themselves nest MAX_DEPTH levels.
_FILE_DEPTH = MAX_DEPTH + 10


def dump_predictor(p: Predictor) -> dict[str, Any]:
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


def _extra_of(p: Predictor) -> dict[str, Any]:
    dump = getattr(p, "extra_state", None)
    return dump() if callable(dump) else {}


def _plan_extra(pred: Predictor, entry: Any, where: str) -> dict[str, Any]:
    """The extra state a saved entry gives this predictor (checked by the predictor), or PersistError."""
    extra = entry.get("extra", {}) if isinstance(entry, dict) else {}
    if not isinstance(extra, dict):
        raise PersistError(f"{where}: \"extra\" must be an object, got {type(extra).__name__}")
    check = getattr(pred, "check_extra_state", None)
    if check is None:
        if extra:
            raise PersistError(f"{where} holds state this kind of predictor does not keep ({', '.join(extra)})")
        return {}
    try:
        return dict(check(extra))
    except (TypeError, ValueError) as exc:
        raise PersistError(f"{where}: {exc}") from None


def program_state(program: Program, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "promptless_version": __version__,
        "program": type(program).__qualname__,
        "predictors": {name: dump_predictor(p) for name, p in program.named_predictors()},
        "metadata": to_jsonable(metadata or {}),
    }


def save(program: Program, path: str | Path, *, save_program: bool = False,
         metadata: dict[str, Any] | None = None) -> Path:
    if save_program:
        raise PersistError(
            "whole-program saving (pickling code) is not supported: it is unsafe to load. "
            "Save the state with program.save(path) and rebuild the program in code before program.load(path)."
        )
    p = Path(path)
    if p.suffix.lower() != ".json":
        raise PersistError(f"save writes JSON; give a path ending in .json, not {p.name!r}")
    for name, pred in program.named_predictors():
        for i, demo in enumerate(pred.demos):
            for key, value in (demo.items() if isinstance(demo, (Example, dict)) else dict(demo).items()):
                problem = value_problem(value)
                if problem:
                    raise PersistError(
                        f"cannot save predictor {name!r}: the value of {key!r} in its demo {i} cannot be "
                        f"written as JSON: {problem}"
                    )
    problem = value_problem(metadata)
    if problem:
        raise PersistError(f"cannot save the program: its metadata cannot be written as JSON: {problem}")
    try:
        text = json.dumps(program_state(program, metadata), indent=2, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PersistError(
            f"cannot save the program: its state holds a value that is not plain data ({exc}); "
            "demos, config and metadata may hold text, numbers, booleans, None, lists and dicts"
        ) from None
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".promptless-", suffix=".json", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.write("\n")
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


_NO_PICKLE = ("promptless never unpickles (a pickle can run any code when it is loaded). In DSPy, save the "
              "program's state as JSON instead: program.save(\"program.json\") (save_program=False), and load "
              "that file here into the same program built in code.")


def read_state(path: str | Path) -> dict[str, Any]:
    """The saved state in a file: one ``save`` wrote (checked), or one DSPy's ``Module.save`` wrote as JSON
    (returned as read, with ``"format": "dspy"``, for ``apply_state``)."""
    p = Path(path)
    if p.suffix.lower() in (".pkl", ".pickle") or (p.is_dir() and (p / "program.pkl").exists()):
        raise PersistError(f"{p} is a pickle. {_NO_PICKLE}")
    if not p.exists():
        raise PersistError(f"no saved program at {p}")
    if p.is_dir():
        raise PersistError(f"{p} is a directory; give the path of the .json file that program.save() wrote")
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PersistError(f"cannot read {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PersistError(f"{p} is not UTF-8 text ({exc}); was it written by program.save()?") from None
    try:
        data = load_json(text, _FILE_DEPTH)
    except ValueError as exc:  # JSONDecodeError, nesting too deep, an integer too long
        raise PersistError(f"{p} is not valid JSON ({exc}); was it written by program.save()?") from None
    if isinstance(data, dict) and "format" not in data and looks_like_dspy(data):
        return {**data, "format": DSPY_FORMAT}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PersistError(f"{p} is not a saved promptless program (no \"format\": \"{FORMAT}\") nor a DSPy "
                           "program's state saved as JSON")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PersistError(f"{p}: format_version is missing or not a positive integer")
    if version > FORMAT_VERSION:
        raise PersistError(
            f"{p} uses format version {version}, newer than this promptless ({__version__}) reads "
            f"(up to {FORMAT_VERSION}); upgrade promptless"
        )
    return data


def apply_state(program: Program, data: dict[str, Any], source: str = "state") -> None:
    """Validate ``data["predictors"]`` against the program, then apply it all at once.

    Every part is checked before anything changes (the entry's shape, each field's name, kind, type,
    description and prefix, the demos, the config's options and values), so a state that fails leaves the
    program exactly as it was and a state that loads leaves every predictor callable.
    """
    if not isinstance(data, dict):
        raise PersistError(f"{source}: the state must be an object, got {type(data).__name__}")
    if data.get("format") == DSPY_FORMAT or (
            "predictors" not in data and "format" not in data and looks_like_dspy(data)):
        data = {"predictors": dspy_predictors(program, data, source)}
    saved = data.get("predictors")
    if not isinstance(saved, dict):
        raise PersistError(f"{source}: \"predictors\" must be an object")
    ours = dict(program.named_predictors())
    if set(saved) != set(ours):
        raise PersistError(
            f"{source} holds the state of another program: it has predictors {sorted(saved)}, "
            f"this {type(program).__name__} has {sorted(ours)}"
        )
    planned = [(pred, *_plan_predictor(pred, saved[name], f"{source}: predictor {name!r}"))
               for name, pred in ours.items()]
    extras = [_plan_extra(pred, saved[name], f"{source}: predictor {name!r}") for name, pred in ours.items()]
    for (pred, sig, demos, config), extra in zip(planned, extras, strict=True):
        pred.signature = sig
        pred.demos = demos
        pred.config = config
        if hasattr(pred, "set_extra_state"):
            pred.set_extra_state(extra)


def _plan_predictor(pred: Predictor, entry: Any, where: str) -> tuple[Any, list[Example], dict[str, Any]]:
    """The signature, demos and config a saved entry gives this predictor, or PersistError saying what is wrong."""
    if not isinstance(entry, dict):
        raise PersistError(f"{where}: its entry must be an object, got {type(entry).__name__}")
    sig_state = entry.get("signature")
    if not isinstance(sig_state, dict):
        raise PersistError(f"{where}: \"signature\" must be an object with \"instructions\" and \"fields\"")
    instructions = sig_state.get("instructions")
    fields = sig_state.get("fields")
    if not isinstance(instructions, str):
        raise PersistError(f"{where}: \"instructions\" must be a string")
    if not isinstance(fields, list):
        raise PersistError(f"{where}: \"fields\" must be a list")
    for i, f in enumerate(fields):
        if not isinstance(f, dict):
            raise PersistError(f"{where}: field entry {i} must be an object, got {type(f).__name__}")
    names = [(f.get("name"), f.get("kind")) for f in fields]
    expected = [(f.name, f.kind) for f in pred.signature.fields.values()]
    if names != expected:
        raise PersistError(
            f"{where} was saved with fields {names}, but this program's has {expected}; "
            "it is the state of another program"
        )
    updates: list[tuple[str, str, str | None]] = []
    for f in fields:
        current = pred.signature.fields[f["name"]]
        fw = f"{where}, field {current.name!r}"
        saved_type = f.get("type", current.type_name)
        if saved_type != current.type_name:
            raise PersistError(
                f"{fw} was saved with type {saved_type!r}, but this program's is {current.type_name!r}; "
                "the state is of another version of the program"
            )
        desc = f.get("desc", "")
        prefix = f.get("prefix")
        if not isinstance(desc, str):
            raise PersistError(f"{fw}: \"desc\" must be a string, got {type(desc).__name__}")
        if prefix is not None and not isinstance(prefix, str):
            raise PersistError(f"{fw}: \"prefix\" must be a string or null, got {type(prefix).__name__}")
        if desc != current.desc or prefix != current.prefix:
            updates.append((current.name, desc, prefix))
    try:
        sig = pred.signature.with_instructions(instructions)
        for fname, desc, prefix in updates:
            sig = sig.with_updated_fields(fname, desc=desc, prefix=prefix)
    except SignatureError as exc:
        raise PersistError(f"{where}: {exc}") from None

    demos_raw = entry.get("demos", [])
    if not isinstance(demos_raw, list):
        raise PersistError(f"{where}: \"demos\" must be a list")
    input_names = [n for n, k in names if k == "input"]
    demos = []
    for i, d in enumerate(demos_raw):
        if not isinstance(d, dict):
            raise PersistError(f"{where}: demo {i} must be an object, got {type(d).__name__}")
        for key, value in d.items():
            problem = value_problem(value)
            if problem:
                raise PersistError(f"{where}: the value of {key!r} in demo {i} cannot be used: {problem}")
        ex = Example(d)
        present = [str(n) for n in input_names if n in d]
        demos.append(ex.with_inputs(*present) if present else ex)
    return sig, demos, _check_config(entry.get("config", {}), where)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# What each per-call option may hold (None always means "not set").
_CONFIG_RULES: dict[str, tuple[Any, str]] = {
    "temperature": (lambda v: (_is_int(v) or isinstance(v, float)) and math.isfinite(v) and v >= 0,
                    "a number of at least 0"),
    "max_tokens": (lambda v: _is_int(v) and v >= 1, "an integer of at least 1"),
    "n": (lambda v: _is_int(v) and v >= 1, "an integer of at least 1"),
    "stop": (lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
             "a string or a list of strings"),
    "seed": (_is_int, "an integer"),
    "rollout_id": (lambda v: _is_int(v) or isinstance(v, str), "an integer or a string"),
}


def _check_config(config: Any, where: str) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise PersistError(f"{where}: \"config\" must be an object, got {type(config).__name__}")
    unknown = sorted(set(config) - set(_CONFIG_RULES))
    if unknown:
        raise PersistError(
            f"{where}: config has unknown option(s) {', '.join(unknown)}; the options are "
            f"{', '.join(_CONFIG_RULES)}"
        )
    for key, value in config.items():
        ok, what = _CONFIG_RULES[key]
        if value is not None and not ok(value):
            raise PersistError(f"{where}: config option {key!r} must be {what}, got {value!r}")
    return dict(config)


# -- DSPy's saved state ----------------------------------------------------------------------------------------
#
# DSPy's ``Module.save("x.json")`` writes {predictor name: state, ..., "metadata": {"dependency_versions": ...}},
# one predictor's state being {"traces", "train", "demos", "signature": {"instructions", "fields": [{"prefix",
# "description"}, ...]}, "lm": null or the LM's settings} (and "fields" in recent versions). The fields are listed
# by position, in the signature's order. ``dspy_predictors`` turns that into this module's "predictors" entries
# for the same program written with promptless, so that ``apply_state`` checks and applies it like any other.

DSPY_FORMAT = "dspy"
_DSPY_KEYS = frozenset({"traces", "train", "demos", "signature", "lm", "fields", "extended_signature"})
# DSPy's ChainOfThought holds its Predict as ``.predict``; promptless's ChainOfThought is the predictor itself.
# And promptless's ProgramOfThought names its steps differently.
_DSPY_RENAMES = {"code_generate": "generate", "code_regenerate": "regenerate", "generate_output": "answer"}
# LM settings DSPy saves that mean the same here: the per-call options sent with every call.
_DSPY_LM_OPTIONS = {"temperature": "temperature", "max_tokens": "max_tokens", "max_completion_tokens": "max_tokens",
                    "n": "n", "stop": "stop", "seed": "seed", "rollout_id": "rollout_id"}


def _single(data: dict[str, Any]) -> bool:
    """Whether a state is DSPy's state of one ``Predict`` saved on its own (its keys at the top)."""
    return "signature" in data and set(data) <= _DSPY_KEYS | {"metadata", "format"} and (
        "traces" in data or "train" in data or "lm" in data)


def looks_like_dspy(data: dict[str, Any]) -> bool:
    """Whether a state is DSPy's: one Predict's, or every entry but "metadata" an object with a "signature"
    and only DSPy's keys of a predictor's state."""
    if _single(data):
        return True
    entries = [v for k, v in data.items() if k != "metadata"]
    return bool(entries) and all(
        isinstance(v, dict) and "signature" in v and set(v) <= _DSPY_KEYS for v in entries
    ) and ("metadata" in data or any("traces" in v or "train" in v for v in entries))


def _our_name(dspy_name: str, ours: dict[str, Any]) -> str:
    """The promptless predictor name a DSPy predictor name stands for in the same program."""
    if dspy_name in ours:
        return dspy_name
    parts = dspy_name.split(".")
    if parts[-1] == "predict":
        parts = parts[:-1] or ["self"]
    parts = [_DSPY_RENAMES.get(part, part) for part in parts]
    return ".".join(parts)


def default_prefix(name: str) -> str:
    """The prefix DSPy gives a field it was not given one for: its name in words, title-cased, and a colon
    (``question_text`` -> ``Question Text:``, ``userID`` -> ``User ID:``)."""
    import re

    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name))
    words = re.sub(r"(\d)([a-zA-Z])", r"\1_\2", re.sub(r"([a-zA-Z])(\d)", r"\1_\2", words))
    return " ".join(w if w.isupper() else w.capitalize() for w in words.split("_")) + ":"


def dspy_predictors(program: Program, data: dict[str, Any], source: str) -> dict[str, Any]:
    """DSPy's saved state as this module's "predictors" entries for ``program``, or PersistError naming what
    does not carry over (another program's predictors, a field count that differs, state promptless has no
    place for)."""
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise PersistError(f"{source}: DSPy's \"metadata\" must be an object, got {type(metadata).__name__}")
    if _single(data):
        data = {"self": {k: v for k, v in data.items() if k not in ("metadata", "format")}}
    ours = dict(program.named_predictors())
    mapped: dict[str, tuple[str, Any]] = {}
    for dspy_name, entry in data.items():
        if dspy_name in ("metadata", "format"):
            continue
        name = _our_name(dspy_name, ours)
        if name in mapped:
            raise PersistError(f"{source}: DSPy predictors {mapped[name][0]!r} and {dspy_name!r} both map to "
                               f"this program's {name!r}")
        mapped[name] = (dspy_name, entry)
    extra = sorted(d for n, (d, _) in mapped.items() if n not in ours)
    lacking = sorted(set(ours) - set(mapped))
    if extra or lacking:
        parts = []
        if extra:
            parts.append(f"the file has predictor(s) {', '.join(map(repr, extra))} that this program lacks")
        if lacking:
            parts.append(f"this program's predictor(s) {', '.join(map(repr, lacking))} are not in the file")
        raise PersistError(
            f"{source} is DSPy's saved state of another program shape: {'; '.join(parts)}. The program must be "
            f"built like the one DSPy saved (its predictors here: {sorted(ours)}; in the file: "
            f"{sorted(d for d, _ in mapped.values())})"
        )
    return {name: _dspy_entry(ours[name], dspy_name, entry, f"{source}: DSPy predictor {dspy_name!r}")
            for name, (dspy_name, entry) in mapped.items()}


def _dspy_entry(pred: Predictor, dspy_name: str, entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise PersistError(f"{where}: its state must be an object, got {type(entry).__name__}")
    if "extended_signature" in entry:
        raise PersistError(f"{where} was saved by DSPy 2.5 or older (\"extended_signature\"); load it in a newer "
                           "DSPy and save it again")
    for key in ("traces", "train"):
        if entry.get(key):
            raise PersistError(f"{where} holds {key!r} records, which promptless has no place for; save the "
                               f"program in DSPy with {key} emptied (predictor.{key} = [])")
    if entry.get("fields"):
        raise PersistError(f"{where} holds per-field decision settings (\"fields\"), which promptless does not "
                           "have; save the program in DSPy without them")
    sig = entry.get("signature")
    if not isinstance(sig, dict) or not isinstance(sig.get("fields"), list):
        raise PersistError(f"{where}: \"signature\" must be an object with \"instructions\" and \"fields\"")
    saved_fields = sig["fields"]
    current = list(pred.signature.fields.values())
    if len(saved_fields) != len(current):
        raise PersistError(
            f"{where} was saved with {len(saved_fields)} fields, but this program's predictor has {len(current)} "
            f"({', '.join(f.name for f in current)}); it is the state of another signature"
        )
    fields = []
    for i, (f, saved) in enumerate(zip(current, saved_fields, strict=True)):
        if not isinstance(saved, dict):
            raise PersistError(f"{where}: field entry {i} must be an object, got {type(saved).__name__}")
        desc, prefix = saved.get("description"), saved.get("prefix")
        if desc is None or desc == f"${{{f.name}}}":  # DSPy's placeholder for "no description"
            desc = f.desc
        if prefix is None or prefix == default_prefix(f.name):
            prefix = f.prefix
        fields.append({"name": f.name, "kind": f.kind, "type": f.type_name, "desc": desc, "prefix": prefix})
    demos = entry.get("demos", [])
    if not isinstance(demos, list):
        raise PersistError(f"{where}: \"demos\" must be a list")
    config = dict(pred.config)
    lm = entry.get("lm")
    if lm is not None:
        if not isinstance(lm, dict):
            raise PersistError(f"{where}: \"lm\" must be an object or null, got {type(lm).__name__}")
        for key, ours in _DSPY_LM_OPTIONS.items():
            if lm.get(key) is not None:
                config[ours] = lm[key]
        if lm.get("model"):
            import logging

            logging.getLogger("promptless").warning(
                "%s was saved with its own LM (%s); its sampling settings are loaded, the model is not: it "
                "uses the LM set here (pl.configure(lm=...), or predictor.lm)", where, lm["model"])
    return {
        "signature": {"instructions": sig.get("instructions"), "fields": fields},
        "demos": [{k: v for k, v in d.items() if k != "augmented"} if isinstance(d, dict) else d for d in demos],
        "config": config,
    }


def load(program: Program, path: str | Path) -> None:
    data = read_state(path)
    apply_state(program, data, source=str(path))
