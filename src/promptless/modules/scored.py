"""Classify: choose a label by scoring every allowed value under the prompt, instead of sampling free text.

    classify = pl.Classify(ClassifyEvent)          # category: Literal[...], confidence: float
    pred = classify(event="Battle of Hastings, 1066")
    pred.category                                 # the most likely label
    pred.confidence                               # its probability, among the allowed labels
    pred.label_probs                              # {"Wars and Conflicts": 0.81, ...}, summing to 1
    pred.decided_by                               # "scores", "first-token" or "generation"

The prompt is exactly what the chat adapter renders for ``Predict`` (instructions, demos, inputs), with the
assistant's reply begun up to the label's value (``[[ ## category ## ]]`` and a line break). The LM scores
each allowed value (a ``Literal``'s values, an ``Enum``'s values, ``True``/``False``) followed by the line
break that ends it; the probabilities are those scores normalised over the allowed values.

Output fields before the label (a ``reasoning`` field, say) are generated first, as ``Predict`` would, and
the label is scored after them. A float output field named ``confidence`` is filled with the chosen label's
probability (``confidence=`` names another field, or ``None``). Other output fields after the label are
refused: they would be generated for a label the model did not choose.

Calibration (``pl.Calibrate``) rescales the log-probabilities and adds a learned offset per label before
they are normalised (``scale * logp + offset``); the values live in ``classify.calibration`` and are saved
and loaded with the program (the predictor's ``"extra"`` state in the JSON file). A backend that cannot
score (``ScoringNotSupportedError``) makes the label by generation instead (``fallback=True``, the
default), and the prediction says so.
"""

from __future__ import annotations

import logging
import math
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from .. import settings
from ..adapters.chat import ChatAdapter
from ..adapters.parsing import coercer, is_optional, literal_choices
from ..adapters.protocol import header
from ..data import Prediction
from ..errors import ConfigurationError, ParseError, ScoringNotSupportedError
from ..lm.usage import track_usage
from ..signature import Signature
from ..values import render_value
from .predict import _SAMPLING_KEYS, Predict

logger = logging.getLogger("promptless.classify")

#: What follows a value in the chat marker format (the blank line before the next header). Scoring it with the
#: value makes a label that is the beginning of another ("Yes" and "Yes, mostly") a finished answer, not a prefix.
VALUE_END = "\n\n"
_DECIDED = {"full": "scores", "first-token": "first-token", "generation": "generation"}


def label_choices(annotation: Any) -> list[Any] | None:
    """The values a label field allows, in order (``None`` last for an Optional one); None: not a label."""
    optional, inner = is_optional(annotation)
    if inner is bool:
        values: list[Any] = [True, False]
    else:
        found = literal_choices(inner)
        if found is None:
            return None
        values = list(found)
    if optional:
        values.append(None)
    return values


def softmax(values: Sequence[float]) -> list[float]:
    m = max(values)
    exps = [math.exp(v - m) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


class ScoredPrediction(Prediction):
    """A ``Prediction`` that also carries how its label was chosen: ``label_probs`` (calibrated, summing to 1),
    ``label_logprobs`` (the LM's raw scores), ``decided_by`` and the ``offsets`` applied."""

    __slots__ = ("_scoring",)

    def __init__(self, base: Any = None, **kwargs: Any) -> None:
        super().__init__(base, **kwargs)
        object.__setattr__(self, "_scoring", {})

    @property
    def scoring(self) -> dict[str, Any]:
        return self._scoring

    @property
    def label_probs(self) -> dict[str, float] | None:
        return self._scoring.get("label_probs")

    @property
    def label_logprobs(self) -> dict[str, float] | None:
        return self._scoring.get("label_logprobs")

    @property
    def decided_by(self) -> str | None:
        return self._scoring.get("decided_by")

    def copy(self, **kwargs: Any) -> ScoredPrediction:
        new = super().copy(**kwargs)
        object.__setattr__(new, "_scoring", dict(self._scoring))
        return new  # type: ignore[return-value]


class _Plan:
    """What one signature asks of Classify: the label field, its values, the confidence field, the rest."""

    def __init__(self, signature: type[Signature], field: str | None, confidence: str | None) -> None:
        outputs = signature.output_fields
        labels = [n for n, f in outputs.items() if label_choices(f.annotation) is not None]
        where = f"Classify({signature.signature_string()})"
        if field is None:
            if not labels:
                raise ConfigurationError(
                    f"{where}: no output field is a label (a Literal, an Enum or a bool); Classify chooses among "
                    "allowed values. Give the label field one of those types, or use pl.Predict"
                )
            if len(labels) > 1:
                raise ConfigurationError(
                    f"{where}: several output fields are labels ({', '.join(labels)}); say which one to score "
                    f"with field=..., e.g. Classify(..., field={labels[0]!r})"
                )
            field = labels[0]
        if field not in outputs:
            raise ConfigurationError(f"{where}: {field!r} is not an output field; outputs: {', '.join(outputs)}")
        choices = label_choices(outputs[field].annotation)
        if choices is None:
            raise ConfigurationError(
                f"{where}: the output field {field!r} is not a label (a Literal, an Enum or a bool)"
            )
        if confidence == "auto":
            confidence = "confidence" if "confidence" in outputs and field != "confidence" else None
        if confidence is not None:
            if confidence not in outputs or confidence == field:
                raise ConfigurationError(
                    f"{where}: confidence={confidence!r} is not another output field; outputs: {', '.join(outputs)}"
                )
            inner = is_optional(outputs[confidence].annotation)[1]
            if inner not in (float, typing.Any):
                raise ConfigurationError(
                    f"{where}: the confidence field {confidence!r} must be a float (it gets the label's probability)"
                )
        names = list(outputs)
        at = names.index(field)
        after = [n for n in names[at + 1 :] if n != confidence]
        if after:
            raise ConfigurationError(
                f"{where}: the output field(s) {', '.join(after)} come after the label {field!r}; Classify scores "
                "the label and cannot generate what follows it for a label the model did not choose. Put them "
                "before the label (like a reasoning field), or use pl.Predict"
            )
        self.field = field
        self.confidence = confidence
        self.before = [n for n in names[:at] if n != confidence]
        self.values = choices
        self.texts = [render_value(v) for v in choices]
        if len(set(self.texts)) != len(self.texts):
            raise ConfigurationError(f"{where}: the label {field!r} has values that are written the same: {self.texts}")
        to_value = coercer(outputs[field].annotation)
        self.typed = [v if v is None else to_value(t) for v, t in zip(choices, self.texts, strict=True)]


class Classify(Predict):
    """``Predict`` for a label output, decided by scoring every allowed value (see the module docstring).

    ``field``: the label output (default: the one Literal/Enum/bool output). ``confidence``: the float output
    that gets the label's probability ("auto": a field named ``confidence``; None: none). ``fallback``: when
    the LM cannot score, generate the label instead (True) or raise ``ScoringNotSupportedError`` (False).
    Sampling options (``temperature``, ...) apply to the generated fields before the label only.
    """

    def __init__(self, signature: str | type[Signature], *, field: str | None = None,
                 confidence: str | None = "auto", fallback: bool = True, lm: Any = None, adapter: Any = None,
                 **config: Any) -> None:
        self.field = field
        self.confidence_field = confidence
        self.fallback = fallback
        self._plans: dict[type[Signature], _Plan] = {}
        #: Learned by pl.Calibrate: {"offsets": {label text: added log-probability}, "method": ..., ...}.
        self.calibration: dict[str, Any] | None = None
        #: The embedder of a calibration that adds nearest-neighbour votes (pl.Calibrate(knn=...)); not saved:
        #: built again from the calibration's ``knn["embedder"]`` name when left None.
        self.knn_embedder: Any = None
        #: The embedder of a calibration with a linear probe (pl.Calibrate(probe=...)); not saved: built again
        #: from the calibration's ``probe["embedder"]`` name when left None.
        self.probe_embedder: Any = None
        self._vote_pools: dict[Any, Any] = {}
        super().__init__(signature, lm=lm, adapter=adapter, **config)
        self.plan(self.signature)  # refuse an unsuitable signature now, not on the first call

    @classmethod
    def from_predict(cls, predictor: Predict, **options: Any) -> Classify:
        """A ``Classify`` that asks what ``predictor`` asks (its signature with its current instructions, its
        demos, LM, adapter, callbacks and sampling options) and scores the label instead of generating it.
        ``options``: ``field``, ``confidence``, ``fallback``. Raises ``ConfigurationError`` when the signature
        has no label output ``Classify`` can score."""
        new = cls(predictor.signature, lm=predictor.lm, adapter=predictor.adapter,
                  callbacks=list(predictor.callbacks), **dict(predictor.config), **options)
        new._base_signature = predictor._base_signature
        new.demos = list(predictor.demos)
        return new

    def plan(self, signature: type[Signature] | None = None) -> _Plan:
        sig = signature or self.signature
        found = self._plans.get(sig)
        if found is None:
            found = self._plans[sig] = _Plan(sig, self.field, self.confidence_field)
        return found

    @property
    def labels(self) -> list[str]:
        """The allowed values of the label, as they are written in the prompt (and keyed in ``label_probs``)."""
        return list(self.plan().texts)

    @property
    def offsets(self) -> dict[str, float]:
        """The calibration offsets in use (label text -> added log-probability); empty when uncalibrated."""
        cal = self.calibration or {}
        return {str(k): float(v) for k, v in (cal.get("offsets") or {}).items()}

    def reset(self) -> None:
        super().reset()
        self.calibration = None

    # -- the state saved besides instructions, demos and config (see persist.py) --------------------------
    def extra_state(self) -> dict[str, Any]:
        return {"calibration": self.calibration} if self.calibration else {}

    def check_extra_state(self, state: Any) -> dict[str, Any]:
        """``state`` checked against this classifier's labels (ValueError says what is wrong)."""
        if not isinstance(state, dict):
            raise ValueError("its extra state must be an object")
        unknown = set(state) - {"calibration"}
        if unknown:
            raise ValueError(f"extra state has unknown part(s) {', '.join(sorted(unknown))}; Classify keeps calibration")
        cal = state.get("calibration")
        if cal is None:
            return {"calibration": None}
        offsets = cal.get("offsets") if isinstance(cal, dict) else None
        if not isinstance(offsets, dict):
            raise ValueError("calibration must be an object with \"offsets\": {label: number}")
        labels = set(self.plan().texts)
        strange = [k for k in offsets if k not in labels]
        if strange:
            raise ValueError(
                f"calibration has offsets for {strange}, which are not labels of {self.plan().field!r} "
                f"({sorted(labels)}); it was learned for another classifier"
            )
        for k, v in offsets.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"calibration offset for {k!r} must be a finite number, got {v!r}")
        scale = cal.get("scale", 1.0)
        # any finite scale loads: the fit may learn one <= 0 where the label scores run against the gold labels
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise ValueError(f"calibration scale must be a finite number, got {scale!r}")
        if cal.get("knn") is not None:
            from .neighbours import check_knn_state

            check_knn_state(cal["knn"], self.plan().texts)
        if cal.get("probe") is not None:
            from .probe import check_probe_state

            check_probe_state(cal["probe"], self.plan().texts)
        return {"calibration": dict(cal)}

    def set_extra_state(self, state: Mapping[str, Any]) -> None:
        self.calibration = state.get("calibration") or None

    #: The vote embedder is a resource (a loaded model) and the embedded pools a cache: copies share them.
    _SHARED_ON_COPY = (*Predict._SHARED_ON_COPY, "knn_embedder", "probe_embedder", "_vote_pools")

    def __deepcopy__(self, memo: dict[int, Any]) -> Classify:
        new = super().__deepcopy__(memo)
        new.__dict__["_plans"] = self._plans  # derived from immutable signatures: shared
        return new  # type: ignore[return-value]

    # -- calling ------------------------------------------------------------------------------------------
    def forward(self, **kwargs: Any) -> Prediction:
        call = self._prepare(kwargs)
        with track_usage() as usage:
            pred = self._decide(call.lm, call.adapter, call.signature, call.demos, call.inputs, call.config,
                                self.calibration or {})
        pred.set_usage(usage.total)
        trace = settings.get("trace")
        if trace is not None:
            trace.append((self, call.inputs, pred))
        return pred

    async def aforward(self, **kwargs: Any) -> Prediction:
        import asyncio
        import contextvars

        ctx = contextvars.copy_context()
        return await asyncio.to_thread(lambda: ctx.run(lambda: self.forward(**kwargs)))

    def _decide(self, lm: Any, adapter: Any, signature: type[Signature], demos: list[Any],
                inputs: dict[str, Any], config: dict[str, Any], calibration: Mapping[str, Any]) -> ScoredPrediction:
        plan = self.plan(signature)
        if not isinstance(adapter, ChatAdapter):
            raise ConfigurationError(
                f"Classify scores labels in the chat marker format; the adapter in use is {type(adapter).__name__}. "
                "Use the default pl.ChatAdapter, or pl.Predict with this adapter"
            )
        messages = adapter.format(signature, demos, inputs)
        before: dict[str, Any] = {}
        if plan.before:
            before = self._generate_before(lm, adapter, signature, demos, inputs, plan, messages, config)
        prefix = "".join(f"{header(n)}\n{render_value(v)}{VALUE_END}" for n, v in before.items())
        prefix += f"{header(plan.field)}\n"
        try:
            scores = lm.score_continuations(messages, prefix, [t + VALUE_END for t in plan.texts])
        except ScoringNotSupportedError:
            if not self.fallback:
                raise
            logger.info("Classify: %s cannot score labels; generating the label instead", lm)
            return self._generated(adapter(lm, signature, demos, inputs, **config), plan, "generation")
        if scores.logprobs is None:
            parsed = None
            if scores.text:
                try:
                    parsed = [adapter.parse(signature, scores.text)]
                except Exception:  # the reply the scores would have come from does not parse: ask normally
                    parsed = None
            if parsed is None:
                parsed = adapter(lm, signature, demos, inputs, **config)
            return self._generated(parsed, plan, "generation")
        raw = [float(x) for x in scores.logprobs]
        offsets = {str(k): float(v) for k, v in (calibration.get("offsets") or {}).items()}
        scale = float(calibration.get("scale", 1.0))
        adjusted = [scale * lp + offsets.get(t, 0.0) for lp, t in zip(raw, plan.texts, strict=True)]
        votes = probed = None
        knn, probe = calibration.get("knn"), calibration.get("probe")
        if knn or probe:
            from .neighbours import knn_text

            text = knn_text(list(signature.input_fields), inputs)  # what the votes and the probe embed
        if knn:
            votes = self._vote_pool(knn, plan.texts).votes(text)
            weight = float(knn["weight"])
            adjusted = [x + weight * v for x, v in zip(adjusted, votes, strict=True)]
        if probe:
            from .neighbours import embedder_from_spec
            from .probe import probe_logprobs

            if self.probe_embedder is None:
                self.probe_embedder = embedder_from_spec(str(probe["embedder"]), option="probe")
            vector = self.probe_embedder([text])[0]
            probed = probe_logprobs(probe, [vector])[0]
            weight = float(probe["weight"])
            adjusted = [x + weight * v for x, v in zip(adjusted, probed, strict=True)]
        probs = softmax(adjusted)
        best = max(range(len(probs)), key=lambda i: (probs[i], -i))
        values = dict(before)
        values[plan.field] = plan.typed[best]
        if plan.confidence is not None:
            values[plan.confidence] = probs[best]
        ordered = {n: values[n] for n in signature.output_fields if n in values}
        pred = ScoredPrediction(ordered)
        pred.scoring.update(
            label_probs=dict(zip(plan.texts, probs, strict=True)),
            label_logprobs=dict(zip(plan.texts, raw, strict=True)),
            decided_by=_DECIDED.get(scores.method, scores.method),
            offsets=offsets,
            tokens=dict(zip(plan.texts, scores.tokens, strict=False)),
            unlisted=[plan.texts[i] for i in scores.unlisted],
        )
        if votes is not None:
            pred.scoring["neighbour_votes"] = dict(zip(plan.texts, votes, strict=True))
        if probed is not None:
            pred.scoring["probe"] = dict(zip(plan.texts, probed, strict=True))
        return pred

    def _vote_pool(self, knn: Mapping[str, Any], labels: Sequence[str]) -> Any:
        """The embedded examples of a calibration's nearest-neighbour votes, built once per calibration."""
        from .neighbours import VotePool, embedder_from_spec

        if self.knn_embedder is None:
            self.knn_embedder = embedder_from_spec(str(knn["embedder"]))
        key = (id(self.knn_embedder), hash(tuple((str(e["text"]), str(e["label"])) for e in knn.get("examples") or ())),
               knn.get("k"), knn.get("temperature"), knn.get("floor"))
        pool = self._vote_pools.get(key)
        if pool is None:
            pool = self._vote_pools.setdefault(key, VotePool(knn, labels, self.knn_embedder))
        return pool

    def _generate_before(self, lm: Any, adapter: ChatAdapter, signature: type[Signature], demos: list[Any],
                         inputs: dict[str, Any], plan: _Plan, messages: list[Any],
                         config: dict[str, Any]) -> dict[str, Any]:
        """The output fields before the label, generated as Predict would and cut at the label's header. A
        reply that does not parse is asked again the way Predict asks (the adapter's grammar retry or its
        fallback), and the fields before the label are taken from that whole reply."""
        partial = signature
        for name in list(signature.output_fields):
            if name not in plan.before:
                partial = partial.delete(name)
        params = {k: v for k, v in config.items() if k in _SAMPLING_KEYS and k != "n"}
        stop = [*(params.pop("stop", None) or []), header(plan.field)]
        resp = lm.request(messages, stop=stop, **params)
        try:
            return adapter.parse(partial, resp.text)
        except ParseError:
            whole = adapter(lm, signature, demos, inputs, **config)[0]
            return {n: whole[n] for n in plan.before}

    def _generated(self, completions: list[dict[str, Any]], plan: _Plan, how: str) -> ScoredPrediction:
        pred = ScoredPrediction(dict(completions[0]) if completions else {})
        object.__setattr__(pred, "_completions", [dict(c) for c in completions])
        pred.scoring.update(label_probs=None, label_logprobs=None, decided_by=how, offsets={})
        return pred

    def __repr__(self) -> str:
        cal = " calibrated" if self.calibration else ""
        return f"Classify({self.signature.signature_string()}, demos={len(self.demos)}{cal})"


def with_label_scoring(program: Any) -> Any:
    """A copy of ``program`` in which every ``pl.Predict`` (or ``ChainOfThought``) with a label output (a
    ``Literal``, an ``Enum`` or a ``bool``) is a ``pl.Classify`` with the same signature, instructions, demos, LM
    and options: the label is scored instead of generated, so ``pl.Calibrate`` can learn from it. Predictors
    without a label output, and those ``Classify`` cannot take (an output after the label), stay as they are;
    the program itself is not changed. A program saved after calibration loads into
    ``with_label_scoring(build())``."""
    from .module import Module

    def convert(value: Any) -> Any:
        if isinstance(value, Predict) and not isinstance(value, Classify):
            try:
                return Classify.from_predict(value)
            except (ConfigurationError, TypeError, ValueError):
                return value
        return value

    if isinstance(program, Predict):
        return convert(program.deepcopy())
    if not isinstance(program, Module):
        raise ConfigurationError(f"with_label_scoring takes a pl.Module, got {type(program).__name__}")
    copy = program.deepcopy()
    for _, module in list(copy.named_sub_modules()):
        if isinstance(module, Predict):
            continue
        for key, value in list(vars(module).items()):
            if key.startswith("_"):
                continue
            if isinstance(value, Predict):
                setattr(module, key, convert(value))
            elif isinstance(value, list):
                value[:] = [convert(v) for v in value]
            elif isinstance(value, dict):
                for k in list(value):
                    value[k] = convert(value[k])
    return copy


__all__ = ["VALUE_END", "Classify", "ScoredPrediction", "label_choices", "softmax", "with_label_scoring"]
