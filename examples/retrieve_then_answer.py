"""Retrieve, then answer: a two-step pipeline over the bundled historic events, optimized with BootstrapFewShot.

    python examples/retrieve_then_answer.py --model scripted                 # seconds, no model
    python examples/retrieve_then_answer.py --model local/qwen2.5-coder-1.5b --optimize

The question names an event and asks how many years before 2000 it happened.
Step 1 (``Predict``) writes a search query; a ``Retriever`` over all 625
events finds the closest ``k``; step 2 (``ChainOfThought``) reads them and
answers with a number. Both steps are predictors, so BootstrapFewShot gives
each of them demos taken from runs that got the answer right.

The retriever embeds with the local all-MiniLM-L6-v2 model (numpy; its
weights are fetched once from the package index) and, where that is not
possible, with a small built-in word-hashing vectorizer (``--embedder hash``).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import re
import time

import promptless as pl
from promptless.datasets import historic_events

BASE_YEAR = 2000


class RetrieveThenAnswer(pl.Module):
    def __init__(self, retriever: pl.Retriever) -> None:
        self.retrieve = retriever
        self.query = pl.Predict(pl.Signature(
            "question -> search_query",
            "Write a short search query that finds the historic event the question is about.",
        ))
        self.answer = pl.ChainOfThought(pl.Signature(
            "question, context: list[str] -> answer: int",
            "Answer the question using the dated events in the context. Answer with a single integer.",
        ))

    def forward(self, question: str) -> pl.Prediction:
        query = self.query(question=question).search_query
        context = self.retrieve(query).passages
        pred = self.answer(question=question, context=context)
        return pl.Prediction(answer=pred.answer, reasoning=pred.reasoning, search_query=query, context=context)


# -- data ------------------------------------------------------------------------------------------


def strip_year(event: str) -> str:
    return re.sub(r",\s*-?\d{1,4}(\s*(BC|AD))?\s*$", "", event).strip()


def questions(split: str, n: int) -> list[pl.Example]:
    out = []
    for ex in historic_events(split):
        if ex.year is None or not 1000 <= ex.year < BASE_YEAR:
            continue
        question = f"How many years before the year {BASE_YEAR} did this happen: {strip_year(ex.event)}?"
        out.append(pl.Example(question=question, answer=BASE_YEAR - ex.year).with_inputs("question"))
        if len(out) == n:
            break
    return out


def exact_answer(example: pl.Example, pred: pl.Prediction, trace: object = None) -> bool:
    return int(pred.answer) == int(example.answer)


# -- embeddings ------------------------------------------------------------------------------------


def hash_vectors(texts: list[str], dims: int = 512) -> list[list[float]]:
    """A bag of hashed words and word pairs: no model, good enough for near-verbatim queries."""
    out = []
    for text in texts:
        words = re.findall(r"[a-z0-9]+", text.lower())
        vec = [0.0] * dims
        for token in words + [a + " " + b for a, b in itertools.pairwise(words)]:
            vec[int(hashlib.md5(token.encode()).hexdigest(), 16) % dims] += 1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        out.append([v / norm for v in vec])
    return out


def make_embedder(kind: str) -> pl.Embedder:
    if kind in ("auto", "local"):
        try:
            embedder = pl.Embedder("local/all-MiniLM-L6-v2")
            embedder(["a first text loads the model"])
            return embedder
        except pl.PromptlessError as exc:
            if kind == "local":
                raise
            print(f"(all-MiniLM-L6-v2 unavailable, using word hashing: {exc})")
    return pl.Embedder(hash_vectors)


# -- a scripted stand-in for a model ------------------------------------------------------------------


def scripted_lm() -> pl.ScriptedLM:
    def reply(messages):
        system, last = messages[0].content, messages[-1].content
        if "search_query" in system:
            q = last.split("did this happen:", 1)[-1].split("?", 1)[0].strip()
            return f"[[ ## search_query ## ]]\n{q}\n\n[[ ## completed ## ]]"
        years = re.findall(r", (\d{3,4})\"", last)
        answer = BASE_YEAR - int(years[0]) if years else 0
        return (f"[[ ## reasoning ## ]]\nThe first event matches; {BASE_YEAR} minus its year.\n\n"
                f"[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]")

    return pl.ScriptedLM(reply)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local/qwen2.5-coder-1.5b", help="an LM string, or 'scripted'")
    parser.add_argument("--lm-threads", type=int, default=None, help="CPU threads of a local model (default: all)")
    parser.add_argument("--embedder", default="auto", choices=("auto", "local", "hash"))
    parser.add_argument("--k", type=int, default=3, help="passages retrieved per question")
    parser.add_argument("--dev", type=int, default=12, help="dev questions scored before and after")
    parser.add_argument("--train", type=int, default=12, help="training questions for BootstrapFewShot")
    parser.add_argument("--optimize", action="store_true", help="optimize with BootstrapFewShot and score again")
    parser.add_argument("--save", default=None, help="save the optimized program's state to this .json file")
    args = parser.parse_args()

    options = {"n_threads": args.lm_threads} if args.lm_threads and args.model.startswith("local/") else {}
    lm = scripted_lm() if args.model == "scripted" else pl.LM(args.model, **options)
    pl.configure(lm=lm)

    t0 = time.perf_counter()
    corpus = [ex.event for split in ("train", "dev", "test") for ex in historic_events(split)]
    embedder = make_embedder(args.embedder)
    retriever = pl.Retriever(embedder, corpus, k=args.k)
    print(f"indexed {len(corpus)} events with {embedder!r} in {time.perf_counter() - t0:.1f} s")

    dev, train = questions("dev", args.dev), questions("train", args.train)
    program = RetrieveThenAnswer(retriever)
    evaluate = pl.Evaluate(devset=dev, metric=exact_answer, display_progress=False, display_table=0)

    with pl.track_usage() as usage:
        t0 = time.perf_counter()
        before = evaluate(program)
    print(f"before: {before.score:.1f}% on {len(dev)} dev questions  "
          f"({usage.calls} LM calls, {time.perf_counter() - t0:.0f} s)")

    if args.optimize:
        from promptless.optimize import BootstrapFewShot

        with pl.track_usage() as usage:
            t0 = time.perf_counter()
            optimizer = BootstrapFewShot(metric=exact_answer, max_bootstrapped_demos=3, max_labeled_demos=0,
                                         progress=False)
            optimized = optimizer.compile(program, trainset=train)
            compile_s, compile_calls = time.perf_counter() - t0, usage.calls
        for name, p in optimized.named_predictors():
            print(f"  {name}: {len(p.demos)} demos")
        with pl.track_usage() as usage:
            t0 = time.perf_counter()
            after = evaluate(optimized)
        print(f"optimize: {compile_calls} LM calls, {compile_s:.0f} s")
        print(f"after:  {after.score:.1f}% on {len(dev)} dev questions  "
              f"({usage.calls} LM calls, {time.perf_counter() - t0:.0f} s)")
        if args.save:
            optimized.save(args.save)
            print(f"saved to {args.save}")


if __name__ == "__main__":
    main()
