"""The chat marker protocol's vocabulary, in one place for everything that writes or reads it.

A field's value is framed by a header line, ``[[ ## name ## ]]``, and a reply ends with
``[[ ## completed ## ]]``. ``header`` writes a header; ``HEADER`` finds one in a reply, in any case or
spacing and with one to three ``#`` (what small models write); ``label_key`` is the key two header labels
are compared by. ``field_spec`` describes an output field for the GBNF grammars in ``grammar.py``
(``marker_grammar`` for this protocol, ``json_grammar`` for the JSON adapter).

The chat adapter (``chat.py``) renders and parses whole prompts with these; label scoring
(``modules/scored.py``) begins a reply up to a field's value with ``header``; an OpenAI-compatible LM scoring
labels finds that value again in a generated reply with ``HEADER`` and ``label_key`` (``lm/logprobs.py``).
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from .parsing import is_optional, is_structured, literal_choices

if TYPE_CHECKING:
    from ..signature import Field

#: A field as the grammars see it: ``(name, kind, choices)``; see ``grammar.py`` for the kinds.
FieldSpec = tuple[str, str, "list[str] | None"]

#: The label of the header that ends a reply.
COMPLETED = "completed"

#: A header as models write it: ``[[ ## name ## ]]``, tolerant of case, spacing and the number of ``#``.
HEADER = re.compile(r"\[\[\s*#{1,3}\s*([^\W\d][\w \-]*?)\s*#{0,3}\s*\]\]")


def header(name: str) -> str:
    """The header line that frames field ``name``: ``[[ ## name ## ]]``."""
    return f"[[ ## {name} ## ]]"


@functools.lru_cache(maxsize=4096)
def label_key(name: str) -> str:
    """The key header labels are matched by: runs of spaces and hyphens as one ``_``, case folded."""
    return re.sub(r"[\s\-]+", "_", name.strip()).casefold()


def field_spec(f: Field) -> FieldSpec:
    """The grammar's spec of output field ``f``; an Optional field's kind ends in ``?`` so the model may
    also say None."""
    optional, inner = is_optional(f.annotation)
    q = "?" if optional else ""
    choices = literal_choices(inner)
    if choices is not None:
        return (f.name, "literal" + q, [str(c) for c in choices])
    if inner is int:
        return (f.name, "int" + q, None)
    if inner is float:
        return (f.name, "float" + q, None)
    if inner is bool:
        return (f.name, "bool" + q, None)
    if is_structured(inner):
        return (f.name, "json", None)
    return (f.name, "str" + q, None)


__all__ = ["COMPLETED", "HEADER", "FieldSpec", "field_spec", "header", "label_key"]
