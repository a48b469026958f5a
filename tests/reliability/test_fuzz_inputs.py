"""Bad input only ever meets a documented error: signatures, call inputs, LM replies and saved files.

Each fuzzer states one promise:

- a signature string or class is either refused at construction with ``SignatureError``, or it works: a call
  through ``ScriptedLM`` answering with a well-formed reply returns the values the reply holds;
- an LM reply, read by the chat or the JSON adapter, gives values or ``ParseError``, never another exception;
- a saved file loads, and then the program can be called, or it raises ``PersistError`` and the program is left
  exactly as it was.

The catalogue below the fuzzers holds every case the hardening probe found, each written out.

The fuzzers are the ``slow`` tier: by default each runs a modest number of examples (the whole file takes about
20 s on 2 cores), ``pytest -m "not slow"`` leaves them out (the catalogue alone, a few seconds), and
``PROMPTLESS_FUZZ_EXAMPLES=5000 pytest -m slow tests/reliability`` is the long run.
"""

from __future__ import annotations

import collections.abc
import copy
import enum
import json
import os
import string
import typing
from typing import Any, Literal, Optional, Union

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import promptless as pl
from promptless.adapters.chat import ChatAdapter
from promptless.adapters.json import JSONAdapter
from promptless.errors import ConfigurationError, ParseError, PersistError, SignatureError
from promptless.lm.fake import ScriptedLM
from promptless.values import MAX_DEPTH

_EXAMPLES = int(os.environ.get("PROMPTLESS_FUZZ_EXAMPLES", "0") or 0)


def fuzz(default: int) -> Any:
    """Hypothesis settings for one fuzzer: ``default`` examples, or PROMPTLESS_FUZZ_EXAMPLES when set."""
    return settings(
        max_examples=_EXAMPLES or default,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(BaseModel):
    x: int
    label: str


# -- well-formed values for a type (the reply a good LM would give) ------------------------------------------

_UNKNOWN = object()


def sample(ann: Any, nested: bool = False) -> Any:
    """A value of this type that survives being written into a reply and read back, or _UNKNOWN.

    A union inside a list or dict is _UNKNOWN: pydantic reads ``["blue"]`` as ``list[Color | str]`` either way.
    """
    if ann is str:
        return "some text"
    if ann is int:
        return 7
    if ann is float:
        return 0.5
    if ann is bool:
        return True
    if ann is Any:
        return "anything"
    if ann is type(None):
        return None
    if ann is Color:
        return Color.BLUE
    if ann is Point:
        return Point(x=1, label="p")
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Literal:
        return args[0]
    if origin is Union:
        if type(None) in args:
            return None
        return _UNKNOWN if nested else sample(args[0])
    if ann in (list, set, frozenset, tuple, dict):
        return ann()
    if origin in (list, set, frozenset):
        item = sample(args[0], True)
        return _UNKNOWN if item is _UNKNOWN else origin([item])
    if origin is tuple:
        if not args:
            return ()
        if len(args) == 2 and args[1] is Ellipsis:
            item = sample(args[0], True)
            return _UNKNOWN if item is _UNKNOWN else (item,)
        items = tuple(sample(a, True) for a in args)
        return _UNKNOWN if _UNKNOWN in items else items
    if origin is dict:
        key, value = sample(args[0], True), sample(args[1], True)
        if key is _UNKNOWN or value is _UNKNOWN or isinstance(key, bool) or key is None:
            return _UNKNOWN
        if args[0] is Any or key is True or key is False:
            key = "k"
        return {key: value}
    return _UNKNOWN


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (a != a and b != b)
    return bool(a == b)


def assert_call_works(sig: type[pl.Signature]) -> None:
    """A call with well-formed replies, in both formats, returns exactly the values they hold."""
    values = {n: sample(f.annotation) for n, f in sig.output_fields.items()}
    inputs = {n: "input text" for n in sig.input_fields}
    known = all(v is not _UNKNOWN for v in values.values())
    for adapter in (ChatAdapter(fallback=False), JSONAdapter()):
        if known:
            reply = adapter.format_outputs(sig, values)
        else:
            reply = adapter.format_outputs(sig, {n: "x" for n in sig.output_fields})
        lm = ScriptedLM([reply])
        try:
            pred = pl.Predict(sig, lm=lm, adapter=adapter)(**inputs)
        except ParseError:
            if known:
                raise
            continue
        assert len(lm.requests) == 1
        if known:
            for name, value in values.items():
                assert _same(pred[name], value), (adapter.name, name, pred[name], value, reply)


# -- signature strings -----------------------------------------------------------------------------------------

_NAMES = st.one_of(
    st.sampled_from(["q", "a", "b", "answer", "x1", "A", "lm", "config", "signature", "self", "demos", "completed",
                     "class", "_hidden", "1a", "a b", "n", "temperature", "réponse", "ß", "match"]),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True),
)
_LITERAL_VALUES = st.one_of(
    st.text(string.ascii_letters + " _-", min_size=0, max_size=8).map(repr),
    st.integers(-5, 5).map(str),
    st.sampled_from(["True", "False", "None", "0.5", "-2", "b'x'", "x", "[1]", "()"]),
)
_TYPE_ATOMS = st.sampled_from(["str", "int", "float", "bool", "Any", "None", "list", "dict", "tuple", "set",
                               "List", "Dict", "Tuple", "Optional", "Union", "Literal", "3", "'str'", "Frob",
                               "()", "...", "typing.List", "-1", "int()", "lambda: 0"])


def _type_exprs() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(_TYPE_ATOMS, st.lists(inner, min_size=0, max_size=3)).map(
                lambda t: f"{t[0]}[{', '.join(t[1])}]"),
            st.tuples(inner, inner).map(lambda t: f"{t[0]} | {t[1]}"),
            st.lists(_LITERAL_VALUES, min_size=0, max_size=3).map(lambda vs: f"Literal[{', '.join(vs)}]"),
        )

    return st.recursive(_TYPE_ATOMS, extend, max_leaves=6)


_FIELD = st.tuples(_NAMES, st.one_of(st.none(), _type_exprs())).map(
    lambda t: t[0] if t[1] is None else f"{t[0]}: {t[1]}")
_SIDE = st.lists(_FIELD, min_size=0, max_size=3).map(", ".join)
_SPECS = st.one_of(
    st.tuples(_SIDE, _SIDE).map(lambda t: f"{t[0]} -> {t[1]}"),
    st.text(max_size=40),
    st.tuples(_SIDE, st.text(max_size=10), _SIDE).map(lambda t: f"{t[0]} -{t[1]}> {t[2]}"),
)


@pytest.mark.slow
@fuzz(300)
@given(_SPECS)
def test_fuzz_signature_strings(spec: str) -> None:
    try:
        sig = pl.Signature(spec)
    except SignatureError:
        return
    assert_call_works(sig)


# -- signature classes --------------------------------------------------------------------------------------

_T = typing.TypeVar("_T")
_GOOD_ANNOTATIONS = [str, int, float, bool, Any, Color, Point, list[int], dict[str, float], Optional[int],  # noqa: UP045
                     Literal["a", "b"], tuple[int, str], set[str], list[Point], Union[int, str]]  # noqa: UP007
_BAD_ANNOTATIONS = [3, "x", None, type, type[int], typing.Callable, collections.abc.Callable, typing.Callable[[int], int],
                    Literal, Optional, Union, dict.__class_getitem__(str), list.__class_getitem__((int, str)),
                    typing.ClassVar[int], typing.Final, _T, Ellipsis, typing.NoReturn, b"x", [int],
                    set.__class_getitem__(list[int]), dict.__class_getitem__((list[int], str)),
                    enum.Enum("Empty", {}), object(), Literal[b"x"], typing.Generic]


def _annotations() -> st.SearchStrategy[Any]:
    atoms = st.sampled_from(_GOOD_ANNOTATIONS + _BAD_ANNOTATIONS)

    def extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        def build(kind: str, a: Any, b: Any) -> Any:
            try:
                if kind == "list":
                    return list[a]
                if kind == "dict":
                    return dict[a, b]
                if kind == "opt":
                    return Optional[a]  # noqa: UP045
                if kind == "union":
                    return Union[a, b]  # noqa: UP007
                if kind == "tuple":
                    return tuple[a, ...]
                return set[a]
            except TypeError:  # typing itself refuses the combination: keep the element
                return a

        return st.builds(build, st.sampled_from(["list", "dict", "opt", "union", "tuple", "set"]), inner, inner)

    return st.recursive(atoms, extend, max_leaves=4)


def _make_class(fields: list[tuple[str, str, Any]], doc: Any = "Do it.") -> type[pl.Signature]:
    namespace: dict[str, Any] = {"__annotations__": {}, "__doc__": doc, "__module__": __name__}
    for name, kind, ann in fields:
        namespace["__annotations__"][name] = ann
        namespace[name] = pl.InputField() if kind == "input" else pl.OutputField()
    return type("Fuzzed", (pl.Signature,), namespace)


@pytest.mark.slow
@fuzz(300)
@given(st.lists(st.tuples(_NAMES, st.sampled_from(["input", "output"]), _annotations()), min_size=1, max_size=4))
def test_fuzz_signature_classes(fields: list[tuple[str, str, Any]]) -> None:
    try:
        sig = _make_class(fields)
    except SignatureError:
        return
    assert_call_works(sig)


@pytest.mark.slow
@fuzz(200)
@given(_annotations(), st.sampled_from(["with_updated_fields", "append", "insert"]))
def test_fuzz_signature_edits(ann: Any, how: str) -> None:
    base = pl.Signature("question -> answer")
    try:
        if how == "with_updated_fields":
            sig = base.with_updated_fields("answer", type_=ann)
        elif how == "append":
            sig = base.append("extra", pl.OutputField(), ann)
        else:
            sig = base.insert(0, "extra", pl.InputField(), ann)
    except SignatureError:
        return
    assert_call_works(sig)


# -- replies -----------------------------------------------------------------------------------------------

class Everything(pl.Signature):
    """Do everything."""

    text: str = pl.InputField()
    count: int = pl.OutputField()
    ratio: float = pl.OutputField()
    flag: bool = pl.OutputField()
    label: Literal["a", "b", None] = pl.OutputField()
    color: Color = pl.OutputField()
    items: list[str] = pl.OutputField()
    table: dict[str, list[int]] = pl.OutputField()
    maybe: Optional[int] = pl.OutputField()  # noqa: UP045
    point: Point = pl.OutputField()
    anything: Any = pl.OutputField()
    either: Union[int, list[float]] = pl.OutputField()  # noqa: UP007
    pair: tuple[int, str] = pl.OutputField()
    tags: set[str] = pl.OutputField()


REPLY_SIGNATURES = [
    Everything,
    pl.Signature("q -> answer"),
    pl.Signature("q -> n: int"),
    pl.Signature("q -> anything: Any"),
    pl.Signature("q -> nested: list[dict[str, Any]]"),
    pl.Signature("q -> label: Literal['yes', 'no']"),
]

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _deep(depth: int, opener: str = "[") -> str:
    closer = {"[": "]", "{": "}"}[opener]
    if opener == "{":
        return '{"a": ' * depth + "1" + "}" * depth
    return opener * depth + closer * depth


def _reply_text(sig: type[pl.Signature]) -> st.SearchStrategy[str]:
    names = [*sig.output_fields, "completed", "other", "COUNT", "Items"]
    block = st.tuples(st.sampled_from(names), st.one_of(st.text(max_size=30), _JSON.map(json.dumps))).map(
        lambda t: f"[[ ## {t[0]} ## ]]\n{t[1]}\n")
    deep = st.tuples(st.integers(MAX_DEPTH - 2, 3 * MAX_DEPTH), st.sampled_from(["[", "{"])).map(
        lambda t: _deep(*t))
    very_deep = st.sampled_from([_deep(20_000), _deep(20_000, "{"), "[" * 50_000, '{"a":' * 30_000])
    return st.one_of(
        st.text(max_size=200),
        st.lists(block, max_size=6).map("".join),
        st.dictionaries(st.sampled_from(names), _JSON, max_size=6).map(json.dumps),
        st.dictionaries(st.sampled_from(names), st.one_of(_JSON, deep), max_size=3).map(
            lambda d: "{" + ", ".join(f'"{k}": {v if isinstance(v, str) and v[:1] in "[{" else json.dumps(v)}'
                                      for k, v in d.items()) + "}"),
        deep, very_deep,
        st.tuples(st.sampled_from(names), st.one_of(deep, very_deep)).map(lambda t: f"[[ ## {t[0]} ## ]]\n{t[1]}"),
        st.text(max_size=60).map(lambda t: f"```json\n{t}\n```"),
    )


@pytest.mark.parametrize("sig", REPLY_SIGNATURES, ids=lambda s: s.signature_string()[:40])
@pytest.mark.slow
@fuzz(150)
@given(data=st.data())
def test_fuzz_replies_meet_only_parse_error(sig: type[pl.Signature], data: st.DataObject) -> None:
    reply = data.draw(_reply_text(sig))
    for adapter in (ChatAdapter(fallback=False), JSONAdapter()):
        try:
            values = adapter.parse(sig, reply)
        except ParseError:
            continue
        assert set(values) == set(sig.output_fields)


@pytest.mark.slow
@fuzz(100)
@given(st.lists(_reply_text(Everything), min_size=1, max_size=3))
def test_fuzz_replies_through_a_call(replies: list[str]) -> None:
    """The whole call (the chat adapter, its JSON fallback) only ever raises ParseError for a bad reply."""
    lm = ScriptedLM(replies)
    try:
        pl.Predict(Everything, lm=lm)(text="t")
    except ParseError:
        pass


# -- saved files ------------------------------------------------------------------------------------------

class Classify(pl.Signature):
    """Classify the event."""

    event: str = pl.InputField(desc="what happened")
    category: Literal["War", "Peace"] = pl.OutputField()
    confidence: float = pl.OutputField()


class Program(pl.Module):
    def __init__(self) -> None:
        self.classify = pl.Predict(Classify)
        self.summarize = pl.ChainOfThought("event, category -> summary")

    def forward(self, event: str) -> Any:
        c = self.classify(event=event)
        return self.summarize(event=event, category=c.category)


GOOD_REPLIES = {
    "classify": "[[ ## category ## ]]\nWar\n\n[[ ## confidence ## ]]\n0.9\n\n[[ ## completed ## ]]",
    "summarize": "[[ ## reasoning ## ]]\nr\n\n[[ ## summary ## ]]\ns\n\n[[ ## completed ## ]]",
}


def _trained() -> Program:
    p = Program()
    p.classify.demos = [pl.Example(event="Battle", category="War", confidence=0.8).with_inputs("event")]
    p.classify.signature = p.classify.signature.with_instructions("Pick one.").with_updated_fields(
        "confidence", desc="0 to 1")
    p.classify.config = {"temperature": 0.0, "n": 1}
    p.summarize.demos = [pl.Example(event="e", category="War", reasoning="r", summary="s")]
    return p


def _state(tmp_path: Any) -> dict[str, Any]:
    path = _trained().save(tmp_path / "base.json")
    return json.loads(path.read_text())


def _call(program: Program) -> None:
    def reply(messages: list[Any]) -> str:
        system = messages[0].content
        return GOOD_REPLIES["classify"] if "category (label)" in system.split("Output fields:")[1] \
            else GOOD_REPLIES["summarize"]

    program.set_lm(ScriptedLM(reply))
    out = program(event="Siege")
    assert out.summary == "s"


def _assert_load_holds(tmp_path: Any, content: str | bytes) -> None:
    """Loading gives PersistError and leaves the program untouched, or loads and the program still works."""
    path = tmp_path / "fuzzed.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    program = _trained()
    before = program.dump_state()
    try:
        program.load(path)
    except PersistError:
        assert program.dump_state() == before
        return
    _call(program)


_SMALL_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def _mutated_state(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    state = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        node, parent, key = state, None, None
        # walk down to a random node
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            parent, key = node, draw(st.sampled_from(keys))
            node = node[key]
        action = draw(st.sampled_from(["replace", "delete", "add", "deepen"]))
        if parent is None:
            if action == "replace":
                state = draw(_SMALL_JSON)
            continue
        if action == "replace":
            parent[key] = draw(_SMALL_JSON)
        elif action == "delete":
            del parent[key]
        elif action == "add" and isinstance(node, dict):
            node[draw(st.sampled_from(["extra", "n", "desc", "type", "name", "temperature"]))] = draw(_SMALL_JSON)
        elif action == "add" and isinstance(node, list):
            node.append(draw(_SMALL_JSON))
        else:
            value: Any = 1
            for _ in range(draw(st.sampled_from([MAX_DEPTH - 1, MAX_DEPTH + 1, 5000]))):
                value = [value]
            parent[key] = value
    return state


@pytest.mark.slow
@fuzz(200)
@given(data=st.data())
def test_fuzz_saved_files(tmp_path_factory: Any, data: st.DataObject) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    state = data.draw(_mutated_state(_state(tmp)))
    try:
        text = json.dumps(state)
    except RecursionError:
        assume(False)
    _assert_load_holds(tmp, text)


@pytest.mark.slow
@fuzz(150)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200),
                 _SMALL_JSON.map(lambda v: json.dumps({"format": "promptless.program", "format_version": 1,
                                                       "predictors": v}))))
def test_fuzz_saved_file_bytes(tmp_path_factory: Any, content: Any) -> None:
    _assert_load_holds(tmp_path_factory.mktemp("bytes"), content)


# -- the catalogue: every case the probe found ---------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    "a -> b: dict[str]", "a -> b: Literal", "a -> b: Optional", "a -> b: 3", "a -> b: int | Union",
    "a -> b: list[()]", "a: dict[str] -> b", "a -> b: None", "a -> b: list[int, str]", "a -> b: 'int'",
    "a -> b: tuple[()]", "a -> b: Literal[()]", "a -> b: set[list[int]]", "a -> b: dict[list[int], str]",
])
def test_bad_signature_strings_are_refused_at_construction(spec: str) -> None:
    with pytest.raises(SignatureError) as info:
        pl.Signature(spec)
    assert "field" in str(info.value)


@pytest.mark.parametrize("instructions", [3, b"Answer.", ["Answer."], {"text": "Answer."}])
def test_non_string_instructions_are_refused(instructions: Any) -> None:
    with pytest.raises(SignatureError, match="instructions must be a string"):
        pl.Signature("a -> b", instructions)
    with pytest.raises(SignatureError, match="instructions must be a string"):
        pl.Signature(Classify, instructions)


@pytest.mark.parametrize("ann", [type, type[int], typing.Callable, collections.abc.Callable,
                                 typing.Callable[[int], int], collections.abc.Callable[[], str]],
                         ids=str)
@pytest.mark.parametrize("kind", ["input", "output"])
def test_fields_typed_type_or_callable_are_refused(ann: Any, kind: str) -> None:
    fields = [("q", "input", str), ("a", "output", str), ("f", kind, ann)]
    with pytest.raises(SignatureError, match=r"cannot hold a (class|function)"):
        _make_class(fields)


def test_with_updated_fields_checks_the_new_type() -> None:
    base = pl.Signature("q -> a")
    with pytest.raises(SignatureError, match="'notatype' is text, not a type"):
        base.with_updated_fields("a", type_="notatype")
    with pytest.raises(SignatureError, match="is not a type"):
        base.with_updated_fields("a", type_=3)
    with pytest.raises(SignatureError, match="desc must be a string"):
        base.with_updated_fields("a", desc=5)
    with pytest.raises(SignatureError, match="cannot hold a class"):
        base.append("t", pl.OutputField(), type)
    assert base.with_updated_fields("a", type_=int).output_fields["a"].annotation is int


def test_output_types_need_a_json_schema_but_input_types_do_not() -> None:
    class Opaque:  # a plain class: fine to render as an input, impossible to read from a reply
        pass

    with pytest.raises(SignatureError, match="has no JSON schema"):
        _make_class([("q", "input", str), ("a", "output", Opaque)])
    sig = _make_class([("q", "input", Opaque), ("a", "output", str)])
    lm = ScriptedLM(["[[ ## a ## ]]\nfine\n\n[[ ## completed ## ]]"])
    assert pl.Predict(sig, lm=lm)(q=Opaque()).a == "fine"


@pytest.mark.parametrize("name", ["signature", "config", "lm", "self"])
def test_inputs_named_like_call_keywords_are_refused_at_construction(name: str) -> None:
    with pytest.raises(SignatureError, match=f"cannot be named '{name}'.*keyword of the predictor call"):
        pl.Signature(f"{name}, question -> answer")
    with pytest.raises(SignatureError, match=f"cannot be named '{name}'"):
        _make_class([(name, "input", str), ("answer", "output", str)])
    # the same name as an output is fine: outputs are never call keywords
    lm = ScriptedLM([f"[[ ## {name} ## ]]\nok\n\n[[ ## completed ## ]]"])
    assert pl.Predict(f"question -> {name}", lm=lm)(question="q")[name] == "ok"


@pytest.mark.parametrize("name", ["temperature", "n", "max_tokens", "args", "kwargs"])
def test_inputs_named_like_sampling_options_reach_the_prompt(name: str) -> None:
    lm = ScriptedLM(["[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"])
    assert pl.Predict(f"{name}, question -> answer", lm=lm)(**{name: "VALUE", "question": "q"}).answer == "ok"
    assert f"[[ ## {name} ## ]]\nVALUE" in lm.requests[0].messages[-1].content


@pytest.mark.parametrize("sig", ["q -> items: list[int]", "q -> anything: Any", "q -> table: dict[str, Any]",
                                 "q -> answer: Optional[list[str]]"])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 3000, 100_000])
@pytest.mark.parametrize("opener", ["[", "{"])
def test_deeply_nested_replies_are_parse_errors(sig: str, depth: int, opener: str) -> None:
    s = pl.Signature(sig)
    (name,) = s.output_fields
    body = _deep(depth, opener)
    with pytest.raises(ParseError, match="nested"):
        ChatAdapter(fallback=False).parse(s, f"[[ ## {name} ## ]]\n{body}\n\n[[ ## completed ## ]]")
    with pytest.raises(ParseError):
        JSONAdapter().parse(s, f'{{"{name}": {body}}}')
    lm = ScriptedLM([f"[[ ## {name} ## ]]\n{body}", f'{{"{name}": {body}}}'])
    with pytest.raises(ParseError):
        pl.Predict(s, lm=lm)(q="x")


def test_replies_nested_up_to_the_limit_are_read() -> None:
    s = pl.Signature("q -> anything: Any")
    value: Any = 1
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    text = json.dumps(value)
    assert ChatAdapter().parse(s, f"[[ ## anything ## ]]\n{text}")["anything"] == value


def test_recursive_inputs_are_refused_with_a_clear_error() -> None:
    lm = ScriptedLM(["[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"])
    predict = pl.Predict("context: list[Any], question -> answer", lm=lm)
    loop: list[Any] = ["a"]
    loop.append(loop)
    with pytest.raises(ConfigurationError, match=r"input 'context'.*contains itself"):
        predict(context=loop, question="q")
    table: dict[str, Any] = {}
    table["self"] = [table]
    with pytest.raises(ConfigurationError, match="contains itself"):
        predict(context=[table], question="q")
    assert lm.requests == []
    shared = ["x"]
    assert predict(context=[shared, shared], question="q").answer == "ok"  # shared, not recursive: fine


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000, 100_000])
def test_oversized_inputs_are_refused_with_a_clear_error(depth: int) -> None:
    lm = ScriptedLM(["[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"])
    predict = pl.Predict("context: list[Any], question -> answer", lm=lm)
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    with pytest.raises(ConfigurationError, match=f"nested more than {MAX_DEPTH} levels"):
        predict(context=value, question="q")
    with pytest.raises(ConfigurationError, match="integer of more than"):
        predict(context=[10 ** 5000], question="q")
    assert lm.requests == []


def test_deeply_nested_saved_file_is_a_persist_error(tmp_path: Any) -> None:
    state = _state(tmp_path)
    state["predictors"]["classify"]["demos"][0]["event"] = "PLACEHOLDER"
    text = json.dumps(state).replace('"PLACEHOLDER"', "[" * 5000 + '"x"' + "]" * 5000)
    _assert_refused(tmp_path, text, "nested")
    _assert_refused(tmp_path, "[" * 100_000, "nested")
    state["predictors"]["classify"]["demos"][0]["event"] = _nest(MAX_DEPTH + 1)
    _assert_refused(tmp_path, json.dumps(state), "nested more than")


def _nest(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def _assert_refused(tmp_path: Any, content: str, fragment: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    program = _trained()
    before = program.dump_state()
    with pytest.raises(PersistError) as info:
        program.load(path)
    assert fragment in str(info.value)
    assert program.dump_state() == before


def test_load_of_a_directory_is_a_persist_error(tmp_path: Any) -> None:
    (tmp_path / "saved.json").mkdir()
    program = _trained()
    before = program.dump_state()
    with pytest.raises(PersistError, match="is a directory"):
        program.load(tmp_path / "saved.json")
    assert program.dump_state() == before


def _edit(state: dict[str, Any], fn: Any) -> str:
    state = copy.deepcopy(state)
    fn(state["predictors"]["classify"])
    return json.dumps(state)


@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda e: e["signature"]["fields"].append(5), "field entry 3 must be an object"),
    (lambda e: e["signature"]["fields"].__setitem__(0, "event"), "field entry 0 must be an object"),
    (lambda e: e["config"].update(bogus=1), "unknown option(s) bogus"),
    (lambda e: e.__setitem__("config", {"n": 0}), "'n' must be an integer of at least 1"),
    (lambda e: e.__setitem__("config", {"n": "2"}), "'n' must be an integer"),
    (lambda e: e.__setitem__("config", {"temperature": -1}), "'temperature' must be a number"),
    (lambda e: e.__setitem__("config", {"temperature": "hot"}), "'temperature' must be a number"),
    (lambda e: e.__setitem__("config", {"max_tokens": 0}), "'max_tokens' must be an integer of at least 1"),
    (lambda e: e.__setitem__("config", {"stop": [1]}), "'stop' must be a string or a list of strings"),
    (lambda e: e.__setitem__("config", {"seed": 1.5}), "'seed' must be an integer"),
    (lambda e: e.__setitem__("config", {"rollout_id": [1]}), "'rollout_id' must be an integer or a string"),
    (lambda e: e.__setitem__("config", [1]), "\"config\" must be an object"),
    (lambda e: e["signature"]["fields"][0].__setitem__("desc", 5), "\"desc\" must be a string"),
    (lambda e: e["signature"]["fields"][0].__setitem__("desc", ["a"]), "\"desc\" must be a string"),
    (lambda e: e["signature"]["fields"][1].__setitem__("prefix", {}), "\"prefix\" must be a string or null"),
    (lambda e: e["signature"]["fields"][2].__setitem__("type", "int"), "saved with type 'int'"),
    (lambda e: e["signature"].__setitem__("instructions", 7), "\"instructions\" must be a string"),
    (lambda e: e["signature"].__setitem__("fields", {}), "\"fields\" must be a list"),
    (lambda e: e.__setitem__("signature", []), "\"signature\" must be an object"),
    (lambda e: e.__setitem__("demos", {}), "\"demos\" must be a list"),
    (lambda e: e["demos"].append("x"), "demo 1 must be an object"),
])
def test_bad_saved_state_is_refused_before_touching_the_program(tmp_path: Any, edit: Any, fragment: str) -> None:
    _assert_refused(tmp_path, _edit(_state(tmp_path), edit), fragment)


def test_load_state_of_a_bad_entry_leaves_the_program_untouched(tmp_path: Any) -> None:
    state = _state(tmp_path)["predictors"]
    other = next(name for name in state if name != "classify")
    state[other] = 5
    program = _trained()
    before = program.dump_state()
    with pytest.raises(PersistError):
        program.load_state(state)
    assert program.dump_state() == before


def test_a_good_file_still_round_trips(tmp_path: Any) -> None:
    program = _trained()
    path = program.save(tmp_path / "good.json")
    fresh = Program().load(path)
    assert fresh.dump_state() == program.dump_state()
    assert fresh.classify.config == {"temperature": 0.0, "n": 1}
    _call(fresh)


def test_save_refuses_what_load_would_refuse(tmp_path: Any) -> None:
    program = _trained()
    loop: list[Any] = []
    loop.append(loop)
    program.classify.demos = [pl.Example(event=loop, category="War", confidence=0.5)]
    with pytest.raises(PersistError, match="contains itself"):
        program.save(tmp_path / "loop.json")
    program.classify.demos = [pl.Example(event=object(), category="War", confidence=0.5)]
    with pytest.raises(PersistError, match="not plain data"):
        program.save(tmp_path / "object.json")
    assert not list(tmp_path.iterdir())


# -- found by the fuzzers ---------------------------------------------------------------------------------------

def test_union_members_are_tried_in_the_declared_order() -> None:
    """``Union[str, int] == Union[int, str]`` in typing; a cache keyed on that served one's reader for the other."""
    reply = "[[ ## v ## ]]\n7\n\n[[ ## completed ## ]]"
    assert ChatAdapter().parse(pl.Signature("q -> v: Union[str, int]"), reply)["v"] == "7"
    assert ChatAdapter().parse(pl.Signature("q -> v: Union[int, str]"), reply)["v"] == 7


def test_enum_dict_keys_are_written_by_value() -> None:
    sig = _make_class([("q", "input", str), ("table", "output", dict[Color, int])])
    reply = ChatAdapter().format_outputs(sig, {"table": {Color.BLUE: 1}})
    assert '{"blue": 1}' in reply
    assert ChatAdapter().parse(sig, reply)["table"] == {Color.BLUE: 1}


def test_json_null_reads_as_a_literal_none() -> None:
    sig = pl.Signature("q -> v: Literal['a', None]")
    assert JSONAdapter().parse(sig, '{"v": null}') == {"v": None}


@pytest.mark.parametrize("spec", ["q -> école", "q -> a, A", "q -> value, VALUE, Value"])
def test_non_ascii_and_case_distinct_output_names_are_read(spec: str) -> None:
    sig = pl.Signature(spec)
    values = {name: f"value of {name}" for name in sig.output_fields}
    reply = ChatAdapter().format_outputs(sig, values)
    assert ChatAdapter().parse(sig, reply) == values
