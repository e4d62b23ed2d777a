"""ScienceQA: multiple choice (2-5 options) answered with the option's letter; accuracy is the utility score.

Files: the released `problems.json` + `pid_splits.json` + `images/<split>/<pid>/`, or ShapesSQA in that format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hipp_core.answer_parsing import parse_choice
from hipp_core.data.prompts import LETTERS, sqa_prompt
from hipp_core.data.records import SQAItem
from hipp_core.data.source import DataSource
from hipp_core.data.sqa import load_sqa
from hipp_core.evaluation.benchmarks.base import WHOLE, Benchmark, Question, register


@dataclass(frozen=True)
class SQAMetrics:
    n: int
    accuracy: float
    n_image: int
    accuracy_image: float
    n_text: int
    accuracy_text: float


def sqa_counts(correct: Sequence[bool], with_image: Sequence[bool]) -> SQAMetrics:
    """Accuracy overall, on the problems with an image and on the rest (the caller says which have one)."""
    img = [c for c, i in zip(correct, with_image) if i]
    txt = [c for c, i in zip(correct, with_image) if not i]
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0
    return SQAMetrics(len(correct), mean(correct), len(img), mean(img), len(txt), mean(txt))


def sqa_metrics(predictions: Sequence[int], items: Sequence[SQAItem]) -> SQAMetrics:
    return sqa_counts([p == it.answer for p, it in zip(predictions, items)], [it.image is not None for it in items])


@register
class ScienceQA(Benchmark):
    name = "sqa"
    grouped = False
    metrics_type = SQAMetrics
    embedded = True
    label = "ScienceQA"
    help = "ScienceQA multiple choice, answered with the option's letter"

    def load(self, split: str, data: DataSource, embedded_root: Path | None) -> dict[str, list[SQAItem]]:
        root = Path(data.sqa) if data.sqa else embedded_root / "sqa"
        return {WHOLE: load_sqa(root, split, data.sqa_images)}

    def reads_embedded(self, data: DataSource) -> bool:
        return data.sqa is None

    def question(self, item: SQAItem) -> Question:
        text = sqa_prompt(item.question, item.choices, item.hint)
        return Question(text, item.image, tuple(LETTERS[: len(item.choices)]))

    def parse(self, text: str, item: SQAItem, parser: str) -> int:
        return parse_choice(text, item.choices, parser)

    def metrics(self, items: Sequence[SQAItem], picks: Sequence[int]) -> SQAMetrics:
        return sqa_metrics(picks, items)
