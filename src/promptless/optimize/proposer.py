"""Instruction proposals: a prompt model writes candidate instructions for each predictor, grounded in
the data, the program, the step's signature, worked examples, the current instruction and a writing tip.

Every proposal is cleaned to the instruction itself (``clean_instruction``): small models wrap it in
"Sure! Here's a new instruction...", quotes, markdown headers, marker blocks and trailing explanations.
Empty, overlong and duplicate proposals are dropped, so the candidates are the original instruction
(always candidate 0) and the distinct proposals that survive.

The grounding costs no LM call by default: the data summary is computed from the training set (sizes,
label distribution), and the program description from its predictors. ``data_summary="lm"`` asks the
prompt model for a summary instead (one call). For an output that is a label (``Literal``, ``Enum``,
``bool``) the proposals also see what each label covers (``label_guide``: a few short training inputs per
label) and, with feedback, which labels the program now answers too often and too rarely, and which it
confuses (``confusion_text``, from the baseline's answers on the search examples).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..data import Example
from ..errors import BudgetExceededError, ConfigurationError, PromptlessError
from ..signature import InputField, OutputField, Signature

if TYPE_CHECKING:
    from ..modules.module import Module, Predictor
    from .run import Run

TIPS: tuple[str, ...] = (
    "Fix the mistakes shown: say what the program gets wrong now (the labels it answers too often or misses, "
    "where shown) and how to get it right.",
    "For each allowed output value, say in a few words which inputs belong to it, so similar values are told apart.",
    "Name the clues in the input that decide the answer, and which output each clue points to.",
    "Keep it short and plain: one or two sentences a small model cannot misread.",
    "Open with a persona that suits the task, e.g. 'You are an expert ...', then state the task.",
    "Write it as a short numbered procedure to follow before answering.",
)


class ProposeInstruction(Signature):
    """You write the instruction (the task description) for one step of a language-model program.
    Study the program, the step's inputs and outputs, the data and the worked examples, then write a better
    instruction for this step, one that helps a small model produce the correct outputs. Follow the tip.
    Reply with the text of the new instruction only: no preamble, no quotes, no explanation after it."""

    program: str = InputField(desc="what the program does, step by step")
    step: str = InputField(desc="the step to write the instruction for: its inputs and outputs")
    data_summary: str = InputField(desc="what the training data looks like")
    examples: str = InputField(desc="worked examples of this step: inputs and correct outputs")
    labels: str = InputField(desc="for a label output: what each allowed label covers, with training inputs "
                             "that have it")
    current_instruction: str = InputField(desc="the step's instruction now")
    mistakes: str = InputField(desc="how the program does with the current instruction, and where it goes wrong")
    tip: str = InputField(desc="how to write the new instruction")
    proposed_instruction: str = OutputField(desc="the new instruction, and nothing else")


class SummarizeData(Signature):
    """Describe this data set in two or three sentences: what the inputs are, what the outputs are, and any
    pattern that decides the outputs. Reply with the description only."""

    examples: str = InputField(desc="examples from the data set")
    summary: str = OutputField(desc="two or three sentences")


# -- cleaning ------------------------------------------------------------------------------------------

_MARKER = re.compile(r"\[\[\s*#{1,3}\s*([A-Za-z_][\w \-]*?)\s*#{0,3}\s*\]\]")
_FENCE = re.compile(r"```[a-zA-Z]*\n?(.*?)```", re.S)
_AFFIRM = re.compile(
    r"^(?:sure|certainly|okay|ok|of course|absolutely|great|alright|got it|no problem|understood)\b"
    , re.I)
_META = re.compile(r"\b(?:help|here|happy|glad|can|will|instruction|prompt|version|task|below|following)\b", re.I)
_INTRO = re.compile(
    r"^(?:here(?:'s|’s| is| are)|below is|the following is|i(?:'ve| have) (?:written|created|crafted))\b"
    r"[^\n]*?(?::|\.(?=\s|$)|$)\s*", re.I)
_LABEL = re.compile(
    r"^\**\s*(?:the\s+)?(?:new|improved|revised|proposed|updated|final|better|rewritten|suggested)?\s*"
    r"(?:instruction|instructions|prompt|task(?: description)?)\s*(?:\((?:[^)]{0,40})\))?\s*"
    r"(?:is|would be|reads|could be)?\s*\**\s*[:\-–—]\s*\**\s*",
    re.I)
_BOLD_LABEL = re.compile(r"^\*\*[^*\n]{1,60}:\*\*\s*|^\*\*[^*\n]{1,60}\*\*:\s*")
_HEADER_LINE = re.compile(r"^\s{0,3}#{1,6}\s+.*$", re.M)
_TRAILER_HEADER = re.compile(
    r"^\s{0,3}(?:#{1,6}\s*|\*\*)\s*(?:explanation|rationale|notes?|reasoning|why)\b.*$", re.M | re.I)
_TRAILER = re.compile(
    r"\n\s*(?:\**\s*)(?:this (?:new |improved |revised |updated )?(?:instruction|prompt|version)\b|"
    r"explanation\b|rationale\b|note\b|notes\b|reasoning\b|why this\b|i hope\b|let me know\b|feel free\b|"
    r"by following\b|the (?:new |above )?instruction above\b|this should\b|these instructions\b)",
    re.I)
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "`": "`", "«": "»"}


def _strip_wrapping(text: str) -> str:
    changed = True
    while changed and len(text) >= 2:
        changed = False
        for open_q, close_q in _QUOTES.items():
            if text.startswith(open_q) and text.endswith(close_q) and text.count(open_q) <= 2 + (open_q == close_q):
                inner = text[len(open_q): len(text) - len(close_q)].strip()
                if inner and open_q not in inner and (open_q == close_q or close_q not in inner):
                    text, changed = inner, True
        for wrap in ("**", "__", "*", "_"):
            if len(text) > 2 * len(wrap) and text.startswith(wrap) and text.endswith(wrap) \
                    and wrap not in text[len(wrap):-len(wrap)]:
                text, changed = text[len(wrap):-len(wrap)].strip(), True
    return text


def clean_instruction(text: str) -> str:
    """The instruction itself, with the wrapping small models put around it removed (may be empty)."""
    t = (text or "").replace("\r\n", "\n").strip()
    # marker blocks: keep the proposed instruction's block if there is one, else the first non-empty segment
    markers = list(_MARKER.finditer(t))
    if markers:
        start = None
        for i, mk in enumerate(markers):
            if re.sub(r"[\s\-]+", "_", mk.group(1).strip()).casefold() in ("proposed_instruction", "instruction",
                                                                            "new_instruction"):
                end = markers[i + 1].start() if i + 1 < len(markers) else len(t)
                start = t[mk.end():end]
                break
        if start is not None:
            t = start
        else:
            segments = [s for s in _MARKER.split(t)[::2] if s.strip()]
            t = segments[0] if segments else ""
    # a fenced block holding most of the text is the instruction
    fence = _FENCE.search(t)
    if fence and len(fence.group(1).strip()) >= 0.4 * len(_FENCE.sub("", t).strip() or "x"):
        t = fence.group(1)
    t = t.replace("```", "").strip()
    # an explanation section under its own header ends the instruction; other header lines go
    m = _TRAILER_HEADER.search(t)
    if m and t[: m.start()].strip():
        t = t[: m.start()]
    t = _HEADER_LINE.sub("", t).strip()
    # preambles, repeatedly ("Sure! Here's a new instruction...: Instruction: ...")
    for _ in range(6):
        before = t
        m = _AFFIRM.match(t)
        if m:  # "Sure! ...", "Okay, here's the new instruction:" but not "Great care is needed: ..."
            rest = t[m.end():]
            sentence = re.match(r"[^\n.!:]{0,60}[.!:]", rest)
            if sentence and _META.search(sentence.group(0)):
                t = rest[sentence.end():].lstrip()
            elif rest[:1] in (",", ".", "!", "") or rest[:2] == " !":
                t = rest.lstrip(",.! ").lstrip()
        m = _INTRO.match(t)
        if m and re.search(r"instruction|prompt|version|task|description|rewrite", m.group(0), re.I):
            t = t[m.end():].lstrip()
        t = _LABEL.sub("", t, count=1).lstrip()
        t = _BOLD_LABEL.sub("", t, count=1).lstrip()
        t = _strip_wrapping(t.strip())
        if t == before:
            break
    # trailing explanations ("This instruction ...", "Note: ...")
    m = _TRAILER.search(t)
    if m and m.start() > 0:
        t = t[: m.start()]
    t = _strip_wrapping(t.strip())
    t = "\n".join(line.rstrip() for line in t.splitlines())
    t = re.sub(r"\n{3,}", "\n\n", t).strip()
    return t


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().rstrip(".").casefold()


def shorten(text: str, max_chars: int) -> str:
    """``text`` cut after its last full sentence within ``max_chars`` (if that keeps at least half of it)."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    cut = max(head.rfind(". "), head.rfind(".\n"), head.rfind("; "))
    return head[: cut + 1].strip() if cut >= max_chars // 2 else text


def accept_instruction(text: str, existing: list[str], *, min_chars: int = 12, max_chars: int = 2500) -> str | None:
    """The reason to reject a cleaned proposal, or None to keep it."""
    if not text.strip():
        return "empty"
    if len(text) < min_chars:
        return "too short"
    if len(text) > max_chars:
        return "too long"
    if _norm(text) in {_norm(e) for e in existing}:
        return "duplicate"
    if "[[" in text and "##" in text:
        return "contains reply markers"
    return None


# -- grounding ----------------------------------------------------------------------------------------------


def describe_step(name: str, predictor: Predictor) -> str:
    from ..adapters.parsing import literal_choices

    sig = predictor.signature
    lines = [f"step {name!r}"]
    for kind, fields in (("inputs", sig.input_fields), ("outputs", sig.output_fields)):
        lines.append(f"{kind}:")
        for f in fields.values():
            text = f"- {f.name} ({f.type_name if literal_choices(f.annotation) is None else 'one label'})"
            if f.desc:
                text += f": {f.desc}"
            choices = literal_choices(f.annotation)
            if choices is not None:
                text += "; one of: " + "; ".join(str(c) for c in choices)
            lines.append(text)
    return "\n".join(lines)


def describe_program(program: Module) -> str:
    preds = program.named_predictors()
    doc = (type(program).__doc__ or "").strip() if type(program).__module__ != "promptless.modules.predict" else ""
    from ..modules.predict import Predict

    if isinstance(program, Predict):
        sig = program.signature
        head = f"A program of one step that maps {', '.join(sig.input_fields)} -> {', '.join(sig.output_fields)}."
    else:
        head = f"A program ({type(program).__name__}) of {len(preds)} step(s)."
        if doc and not doc.startswith("Base class"):
            head += " " + " ".join(doc.split())[:400]
    steps = [f"- {name}: {p.signature.signature_string()}" for name, p in preds]
    return head + ("\nSteps:\n" + "\n".join(steps) if len(preds) > 1 else "")


def stats_summary(trainset: list[Example], program: Module) -> str:
    """A data summary computed from the examples: size, input lengths, label distribution."""
    outputs = {n for _, p in program.named_predictors() for n in p.signature.output_fields}
    inputs = sorted({k for ex in trainset for k in (ex.input_keys or ())})
    lines = [f"{len(trainset)} training examples."]
    for k in inputs:
        lengths = [len(str(ex.get(k, "")).split()) for ex in trainset if k in ex]
        if lengths:
            lines.append(f"Input {k!r}: about {round(sum(lengths) / len(lengths))} words on average.")
    label_keys = [k for k in dict.fromkeys(k for ex in trainset for k in ex.labels()) if k in outputs]
    for k in label_keys:
        values = [str(ex.get(k)) for ex in trainset if k in ex]
        counts = Counter(values)
        if len(counts) <= 25:
            dist = ", ".join(f"{v} ({c})" for v, c in counts.most_common())
            lines.append(f"Output {k!r} takes {len(counts)} distinct values; counts: {dist}.")
        else:
            lengths = [len(v.split()) for v in values]
            lines.append(f"Output {k!r}: free text, about {round(sum(lengths) / max(1, len(lengths)))} words.")
    return " ".join(lines)


def mistakes_text(examples: list[Any], rows: list[dict[str, Any] | None], *, seed: int = 0, limit: int = 6) -> str:
    """How the program did on scored examples: right / wrong counts, how its answers are spread against the
    correct ones (for label-like outputs), and a few of its mistakes."""
    from ..values import render_value

    pairs = [(ex, row) for ex, row in zip(examples, rows, strict=True) if row is not None]
    if not pairs:
        return "(not known)"
    right = sum(1 for _, row in pairs if float(row.get("score") or 0) >= 1)
    lines = [f"With the current instruction the program gets {right} of {len(pairs)} examples right."]
    outputs = [row.get("output") or {} for _, row in pairs]
    keys = [k for k in dict.fromkeys(k for ex, _ in pairs for k in ex.labels()) if any(k in o for o in outputs)]
    for k in keys:
        answered = Counter(str(o.get(k)) for o in outputs if k in o)
        correct = Counter(str(ex.get(k)) for ex, _ in pairs if k in ex)
        if len(correct) <= 25 and len(answered) <= 25:
            lines.append(f"Its answers for {k!r}: " + ", ".join(f"{v} ({c})" for v, c in answered.most_common())
                         + ". The correct answers: " + ", ".join(f"{v} ({c})" for v, c in correct.most_common())
                         + ".")
    wrong = [(ex, row) for ex, row in pairs if float(row.get("score") or 0) < 1]
    random.Random(seed).shuffle(wrong)
    if wrong:
        lines.append("Some mistakes:")
    for ex, row in wrong[:limit]:
        shown = "; ".join(f"{k}: {render_value(v)}" for k, v in ex.inputs().items())
        if row.get("error"):
            lines.append(f"- {shown} -> failed ({str(row['error'])[:120]})")
            continue
        out = row.get("output") or {}
        got = ", ".join(f"{k} {render_value(out.get(k))!s}" for k in keys if k in out) or "(no answer)"
        want = ", ".join(f"{k} {render_value(ex.get(k))}" for k in keys) or render_value(ex.labels().to_dict())
        lines.append(f"- {shown} -> answered {got}; correct: {want}")
    return "\n".join(lines)


def _label_fields(predictor: Predictor) -> dict[str, list[Any]]:
    """The predictor's label outputs (Literal, Enum, bool) and their allowed values."""
    from ..adapters.parsing import is_optional, literal_choices

    out: dict[str, list[Any]] = {}
    for name, f in predictor.signature.output_fields.items():
        choices = literal_choices(f.annotation)
        if choices is None and is_optional(f.annotation)[1] is bool:
            choices = [True, False]
        if choices:
            out[name] = list(choices)
    return out


def _label_text(value: Any) -> str:
    from ..values import render_value

    return render_value(value).strip().casefold()


def label_guide(program: Module, trainset: list[Example], *, seed: int = 0, per_label: int = 2,
                max_chars: int = 90) -> dict[str, str]:
    """Per predictor with a label output that the training examples have: one line per allowed label, with how
    many training examples have it and up to ``per_label`` of their (shortest-first among a seeded sample)
    inputs, cut to ``max_chars``. No LM call."""
    from ..values import render_value

    out: dict[str, str] = {}
    for pname, predictor in program.named_predictors():
        blocks = []
        for field_name, choices in _label_fields(predictor).items():
            having = [ex for ex in trainset if field_name in ex]
            if not having:
                continue
            lines = [f"{field_name}: what each label covers, from the {len(having)} training examples"]
            rng = random.Random(f"{seed}/labels/{pname}/{field_name}")
            inputs = [n for n in predictor.signature.input_fields]
            for value in choices:
                members = [ex for ex in having if _label_text(ex[field_name]) == _label_text(value)]
                if not members:
                    lines.append(f"- {render_value(value)}: no training example")
                    continue
                sample = rng.sample(members, min(len(members), 4 * per_label))
                sample.sort(key=lambda ex: sum(len(render_value(ex[n])) for n in inputs if n in ex))
                shown = []
                for ex in sample[:per_label]:
                    text = "; ".join(render_value(ex[n]) for n in inputs if n in ex).replace("\n", " ")
                    shown.append(json_quote(text if len(text) <= max_chars else text[: max_chars - 3] + "..."))
                lines.append(f"- {render_value(value)} ({len(members)}): e.g. {', '.join(shown)}")
            blocks.append("\n".join(lines))
        if blocks:
            out[pname] = "\n\n".join(blocks)
    return out


def json_quote(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


def confusion_text(program: Module, examples: list[Any], rows: list[dict[str, Any] | None], *,
                   min_gap: int = 2, top: int = 5) -> str:
    """For the program's label outputs: which labels its answers over- and under-use against the correct ones
    (by at least ``min_gap``), and its most common confusions (correct -> answered). "" when no output is a label
    or nothing was scored."""
    from ..values import render_value

    fields: dict[str, list[Any]] = {}
    for _, predictor in program.named_predictors():
        for name, choices in _label_fields(predictor).items():
            fields.setdefault(name, choices)
    pairs = [(ex, row) for ex, row in zip(examples, rows, strict=True) if row is not None]
    lines: list[str] = []
    for name, choices in fields.items():
        scored = [(ex, row) for ex, row in pairs if name in ex]
        if not scored:
            continue
        names = {_label_text(c): render_value(c) for c in choices}
        answered: Counter[str] = Counter()
        correct: Counter[str] = Counter()
        confused: Counter[tuple[str, str]] = Counter()
        for ex, row in scored:
            gold = _label_text(ex[name])
            out = row.get("output") or {}
            got = _label_text(out[name]) if name in out and out[name] is not None else "(no answer)"
            correct[gold] += 1
            answered[got] += 1
            if got != gold:
                confused[(gold, got)] += 1
        gaps = [(k, answered[k] - correct[k]) for k in dict.fromkeys([*names, *correct, *answered])]
        over = sorted([(k, d) for k, d in gaps if d >= min_gap], key=lambda x: -x[1])
        under = sorted([(k, d) for k, d in gaps if d <= -min_gap], key=lambda x: x[1])

        def show(k: str, names: dict[str, str] = names) -> str:
            return names.get(k, k)

        head = f"Labels of {name!r} on these {len(scored)} examples (answered / correct):"
        if not over and not under:
            lines.append(head + " no label is answered much more or less often than it is correct.")
        else:
            if over:
                lines.append(head + " over-predicted: " + ", ".join(
                    f"{show(k)} ({answered[k]} / {correct[k]})" for k, _ in over) + ".")
                head = ""
            if under:
                lines.append((head + " " if head else "") + "Under-predicted: " + ", ".join(
                    f"{show(k)} ({answered[k]} / {correct[k]})" for k, _ in under) + ".")
        if confused:
            lines.append("Most common confusions (correct -> answered): " + ", ".join(
                f"{show(g)} -> {show(a)} ({c})" for (g, a), c in confused.most_common(top)) + ".")
    return "\n".join(lines)


def format_examples(examples: list[Any], predictor: Predictor, limit: int = 3) -> str:
    from ..values import render_value

    names = list(predictor.signature.input_fields) + list(predictor.signature.output_fields)
    blocks = []
    for ex in examples:
        present = [n for n in names if n in ex]
        if not present or not any(n in ex for n in predictor.signature.output_fields):
            continue
        blocks.append("\n".join(f"{n}: {render_value(ex[n])}" for n in present))
        if len(blocks) >= limit:
            break
    return "\n\n".join(blocks) if blocks else "(no worked examples available)"


def varied(examples: list[Any], predictor: Predictor) -> list[Any]:
    """The examples reordered so that different output values come first (one of each, then the rest)."""
    outputs = list(predictor.signature.output_fields)
    seen: set[str] = set()
    first: list[Any] = []
    rest: list[Any] = []
    for ex in examples:
        key = repr([ex.get(n) for n in outputs if n in ex])
        (rest if key in seen else first).append(ex)
        seen.add(key)
    return first + rest


class InstructionProposer:
    """Proposes ``n - 1`` instructions per predictor (candidate 0 is the current one), stored in the run."""

    def __init__(
        self,
        run: Run,
        program: Module,
        trainset: list[Example],
        *,
        seed: int = 0,
        tips: tuple[str, ...] = TIPS,
        init_temperature: float = 0.5,
        data_summary: str | bool = "stats",
        examples_per_proposal: int | None = None,
        max_chars: int = 2500,
        max_tokens: int = 450,
        feedback: str = "",
        program_aware: bool = True,
        fewshot_aware: bool = True,
        summary_examples: int = 8,
        labels: dict[str, str] | None = None,
    ) -> None:
        if data_summary not in ("stats", "lm", False, None):
            raise ConfigurationError(f"data_summary must be 'stats', 'lm' or False, got {data_summary!r}")
        self.run = run
        self.program = program
        self.trainset = trainset
        self.seed = seed
        self.tips = tuple(tips) or ("",)
        self.init_temperature = init_temperature
        self.data_summary_mode = data_summary
        self.examples_per_proposal = examples_per_proposal
        self.max_chars = max_chars
        self.max_tokens = max_tokens
        self.feedback = feedback
        self.program_aware = program_aware  # describe the program to the prompt model
        self.fewshot_aware = fewshot_aware  # show it worked examples
        self.summary_examples = summary_examples  # examples it reads for data_summary="lm"
        self.labels = dict(labels or {})  # predictor name -> label_guide text
        self.rejected: list[dict[str, str]] = []
        self._summary: str | None = None

    def data_summary(self) -> str:
        if self._summary is not None:
            return self._summary
        if not self.data_summary_mode:
            self._summary = "(not given)"
        elif self.data_summary_mode == "stats" or not self.trainset:
            self._summary = stats_summary(self.trainset, self.program)
        else:
            self._summary = self.run.cached("proposal", f"data-summary/{self.seed}", self._lm_summary)["summary"]
        return self._summary

    def _lm_summary(self) -> dict[str, str]:
        from ..modules.predict import Predict

        sample = random.Random(self.seed).sample(self.trainset, min(self.summary_examples, len(self.trainset)))
        text = "\n\n".join("\n".join(f"{k}: {v}" for k, v in ex.items()) for ex in sample)
        stats = stats_summary(self.trainset, self.program)
        try:
            pred = Predict(SummarizeData, lm=self.run.prompt_lm(), temperature=0.0, max_tokens=200)(examples=text)
            summary = clean_instruction(str(pred.summary)) or stats
        except BudgetExceededError:
            raise
        except PromptlessError:
            summary = stats
        return {"summary": stats + " " + summary if summary != stats else stats}

    def temperature(self, i: int, n: int) -> float:
        low = max(0.7, min(1.0, self.init_temperature))
        return round(low + (1.0 - low) * ((i - 1) / max(1, n - 2)), 3)

    def _ask(self, name: str, predictor: Predictor, i: int, n: int) -> dict[str, Any]:
        from ..modules.predict import Predict

        rng = random.Random(f"{self.seed}/{name}/{i}")
        tips = [t for t in self.tips if self.feedback or "mistake" not in t.lower()] or [""]
        tip = tips[(i - 1 + self.seed) % len(tips)]
        pool = list(self.trainset)
        rng.shuffle(pool)
        limit = self.examples_per_proposal
        if limit is None:  # one example per label for label-like outputs (up to 12), else 5
            labels = {repr([ex.get(n) for n in predictor.signature.output_fields if n in ex]) for ex in pool}
            limit = min(12, max(5, len(labels)))
        examples = format_examples(varied(pool, predictor), predictor, limit) if self.fewshot_aware \
            else "(not given)"
        proposer = Predict(
            ProposeInstruction,
            lm=self.run.prompt_lm(),
            temperature=self.temperature(i, n),
            rollout_id=f"propose/{self.seed}/{name}/{i}",
            seed=int(hashlib.sha256(f"{self.seed}/{name}/{i}".encode()).hexdigest()[:8], 16),
            max_tokens=self.max_tokens,
        )
        try:
            pred = proposer(
                program=describe_program(self.program) if self.program_aware else "(not given)",
                step=describe_step(name, predictor),
                data_summary=self.data_summary(),
                examples=examples,
                labels=self.labels.get(name) or "(not given)",
                current_instruction=predictor.signature.instructions,
                mistakes=self.feedback or "(not known)",
                tip=tip or "(none)",
            )
            raw = str(pred.proposed_instruction)
        except BudgetExceededError:
            raise
        except PromptlessError as exc:  # an unreadable reply is one lost proposal, not a failed run
            raw = ""
            return {"raw": raw, "tip": tip, "error": f"{type(exc).__name__}: {exc}"[:400]}
        return {"raw": raw, "tip": tip, "error": None}

    def propose(self, name: str, predictor: Predictor, n: int) -> list[str]:
        """``[current instruction] + up to n - 1 cleaned, distinct proposals``."""
        original = predictor.signature.instructions
        out = [original]
        for i in range(1, n):
            def ask(i: int = i) -> dict[str, Any]:
                return self._ask(name, predictor, i, n)

            rec = self.run.cached("proposal", f"instruction/{self.seed}/{name}/{i}/{n}", ask)
            cleaned = shorten(clean_instruction(rec.get("raw", "")), self.max_chars)
            why = accept_instruction(cleaned, out, max_chars=self.max_chars)
            if why is None:
                out.append(cleaned)
            else:
                self.rejected.append({"predictor": name, "raw": rec.get("raw", "")[:500], "reason": why})
        return out


__all__ = [
    "TIPS",
    "InstructionProposer",
    "ProposeInstruction",
    "accept_instruction",
    "clean_instruction",
    "confusion_text",
    "describe_program",
    "describe_step",
    "label_guide",
    "mistakes_text",
    "shorten",
    "stats_summary",
]
