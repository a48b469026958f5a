"""The package's import structure: layers that only import downwards, and no import circle.

Every import in src/promptless is read with ``ast``: module-level ones, the lazy ones inside functions and the
``if TYPE_CHECKING:`` ones alike, since each says that one module needs another. Importing ``a.b.c`` also runs
the package ``a.b``'s ``__init__``, so such an import counts as an import of the package too (unless the
importer lives inside it). ``LAYERS`` is the table docs/architecture.md shows; a test keeps the two the same.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "promptless"
DOC = ROOT / "docs" / "architecture.md"

# Bottom to top. An entry names a module or a package (the package, and everything in it); a module belongs to
# its longest entry. "__init__" is the package's own __init__.py (the public names).
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("types", "data", "values", "media", "_version"),
    ("signature", "history"),
    ("settings", "persist", "callbacks"),
    ("adapters",),
    ("lm",),
    ("tools", "sandbox", "retrieve", "embeddings", "minilm"),
    ("executors",),
    ("modules", "streaming"),
    ("evaluate",),
    ("optimize",),
    ("datasets", "tasks", "otel", "utils"),
    ("__init__",),
    ("cli", "__main__"),
]


def _module_names() -> dict[str, Path]:
    names = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


MODULES = _module_names()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str) -> set[str]:
    """The package modules ``name`` imports, anywhere in its file, with the packages those imports run."""
    path = MODULES[name]
    package = name if _is_package(name) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != "promptless" and not target.startswith("promptless."):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name == "promptless" or a.name.startswith("promptless."))
    for target in list(found):  # importing a.b.c runs a.b's __init__ first
        parts = target.split(".")
        for i in range(2, len(parts)):
            parent = ".".join(parts[:i])
            if not (name == parent or name.startswith(parent + ".")):
                found.add(parent)
    found.discard(name)
    return {t for t in found if t in MODULES}


GRAPH = {name: _imports(name) for name in MODULES}


def _layer_of(name: str) -> int:
    short = "__init__" if name == "promptless" else name.removeprefix("promptless.")
    best, best_len = -1, -1
    for rank, entries in enumerate(LAYERS):
        for entry in entries:
            if (short == entry or short.startswith(entry + ".")) and len(entry) > best_len:
                best, best_len = rank, len(entry)
    return best


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_import_reader_sees_lazy_and_type_checking_imports():
    # modules/module.py imports persist only inside methods; adapters/chat.py names Field under TYPE_CHECKING
    assert "promptless.persist" in GRAPH["promptless.modules.module"]
    assert "promptless.signature" in GRAPH["promptless.adapters.chat"]
    # an import of adapters.protocol runs the adapters package's __init__ as well
    assert "promptless.adapters" in GRAPH["promptless.lm.logprobs"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_has_a_layer():
    assert [name for name in MODULES if _layer_of(name) < 0] == []


def test_no_import_circle():
    assert _cycles(GRAPH) == []


def test_imports_only_go_down():
    upward = [
        f"{name} (layer {_layer_of(name)}) imports {target} (layer {_layer_of(target)})"
        for name, targets in sorted(GRAPH.items()) for target in sorted(targets)
        if _layer_of(target) > _layer_of(name)
    ]
    assert upward == []


def test_docs_architecture_shows_the_same_layers():
    """docs/architecture.md's layer table lists the same entries, in the same order, as LAYERS."""
    rows = re.findall(r"^\|\s*(\d+)\s*\|([^|]*)\|", DOC.read_text(encoding="utf-8"), re.M)
    documented = [tuple(re.findall(r"`([\w.]+)/?(?:\*)?`", cell)) for _, cell in rows]
    assert [int(n) for n, _ in rows] == list(range(len(rows)))
    assert documented == LAYERS
