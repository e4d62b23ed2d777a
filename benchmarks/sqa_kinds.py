"""Where ShapesSQA accuracy is lost: per question kind, and for the fact kinds whether the fact is known or only the
option letter is missed.

A multiple-choice answer needs two things: the answer itself (a fact, a count, a colour) and the option letter that
names it. Three measurements tell them apart, per embedded model, on a tuning split (`dev` by default; `test` is
for reporting, so nothing is chosen on it):
- accuracy per ShapesSQA kind (the `category` field of the problems file);
- open recall of the fact table, the one-word training target ("Where does the red circle live?" → "forest"),
  scored by logits over the kind's values, against the multiple-choice accuracy of the same kind;
- the letter drill ("Which option is the red circle?", the object among 2 to 5 options), which needs nothing but
  the letter step.
Known facts with fact questions near chance locate the loss in the letter step, not in the MLPs that store facts
(docs/design.md, The embedded testbed).

    python benchmarks/sqa_kinds.py [--split dev] [--models embedded,embedded:qwen2_5_vl] [--pointer 300] [--save]
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from collections.abc import Sequence

from results_io import emit

from hipp_core.config import quiet_libraries, set_threads
from hipp_core.data import build as data_build
from hipp_core.data.prompts import LETTERS, pope_prompt, sqa_prompt
from hipp_core.data.questions import FACT_QUESTIONS, FACT_VALUES, facts, multiple_choice
from hipp_core.data.world import OBJECTS
from hipp_core.evaluation import benchmarks
from hipp_core.evaluation.engine import answer_batch, score
from hipp_core.evaluation.stored import load_benchmark
from hipp_core.models.adapters import ModelAdapter
from hipp_core.models.loading import load_model

MODELS = ("embedded", "embedded:qwen2_5_vl")
SEED = 5  # of the letter-drill questions


def picks(
    adapter: ModelAdapter,
    texts: Sequence[str],
    answers: Sequence[str],
    counts: Sequence[int] | None = None,
    batch_size: int = 64,
) -> list[int]:
    """For each text-only prompt, the index of the answer whose first token scores highest after it, among the first
    `counts[i]` answers (default: all): `hipp eval`'s logit scoring, over each question's own options. Every prompt
    ends where the first one does, with the chat template's generation prompt."""
    ids = adapter.answer_token_ids(texts[0], False, list(answers), False)
    counts = counts or [len(answers)] * len(texts)
    out = []
    for start in range(0, len(texts), batch_size):
        rows = range(start, min(len(texts), start + batch_size))
        options = [ids[: counts[i]] for i in rows]
        out += answer_batch(adapter, [texts[i] for i in rows], [None] * len(rows), options, generate=False)
    return out


def kind_accuracy(adapter: ModelAdapter, split: str) -> dict[str, dict]:
    """ShapesSQA accuracy per kind on `split`, with the number of questions and the chance level (the mean of one
    over the number of options)."""
    problems = json.loads((data_build.build() / "sqa" / "problems.json").read_text())
    items = [item for group in load_benchmark("sqa", split)["sqa"].values() for item in group]
    chosen = score(adapter, benchmarks.get("sqa"), items)
    right: dict[str, list[bool]] = defaultdict(list)
    chance: dict[str, list[float]] = defaultdict(list)
    for item, pick in zip(items, chosen):
        kind = problems[item.pid]["category"]
        right[kind].append(pick == item.answer)
        chance[kind].append(1 / len(item.choices))
    return {
        kind: {"accuracy": round(sum(r) / len(r), 4), "chance": round(sum(chance[kind]) / len(r), 4), "n": len(r)}
        for kind, r in sorted(right.items())
    }


def fact_recall(adapter: ModelAdapter) -> dict[str, float]:
    """Open one-word recall of each fact kind over all objects, scored among the kind's values."""
    table = facts()
    recall = {}
    for kind, values in FACT_VALUES.items():
        texts = [pope_prompt(FACT_QUESTIONS[kind].format(obj)) for obj in OBJECTS]
        chosen = picks(adapter, texts, values)
        recall[kind] = round(sum(values[p] == table[kind][o] for p, o in zip(chosen, OBJECTS)) / len(OBJECTS), 4)
    return recall


def letter_drill(adapter: ModelAdapter, n: int) -> float:
    """Accuracy on `n` seeded letter-drill questions ("Which option is the red circle?")."""
    rng = random.Random(SEED)
    questions = [multiple_choice(None, "pointer", rng) for _ in range(n)]
    texts = [sqa_prompt(q.question, q.choices, q.hint) for q in questions]
    options = LETTERS[: max(len(q.choices) for q in questions)]
    chosen = picks(adapter, texts, options, [len(q.choices) for q in questions])
    return round(sum(p == q.answer for p, q in zip(chosen, questions)) / n, 4)


def run_model(spec: str, split: str, pointer: int) -> dict:
    adapter = load_model(spec).adapter
    kinds = kind_accuracy(adapter, split)
    recall = fact_recall(adapter)
    return {
        "model": spec,
        "split": split,
        "kinds": kinds,
        "fact_recall_open": recall,
        "fact_multiple_choice": {kind: kinds[kind]["accuracy"] for kind in recall if kind in kinds},
        "letter_drill": letter_drill(adapter, pointer),
        "letter_drill_questions": pointer,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="dev", help="a tuning split (dev or calib); test only reports")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--pointer", type=int, default=300, help="letter-drill questions")
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)
    quiet_libraries()
    threads = set_threads()
    models = [run_model(spec, args.split, args.pointer) for spec in args.models.split(",")]
    emit("sqa_kinds", {"threads": threads, "seed": SEED, "models": models}, args.save)


if __name__ == "__main__":
    main()
