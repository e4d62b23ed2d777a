"""POPE: yes/no object-presence questions per negative-sampling category; balanced accuracy is the robustness score.

Files: the official `*_pope_<category>.json` (a folder or one file; SEEM's pretty-printed arrays too), LLaVA's
`llava_pope_test.jsonl` with the official files as labels, or ShapesPOPE in the same format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hipp_core.answer_parsing import parse_pope_answer
from hipp_core.data.pope import load_pope, load_pope_dir
from hipp_core.data.prompts import pope_prompt
from hipp_core.data.records import POPE_CATEGORIES, PopeItem
from hipp_core.data.source import DataSource
from hipp_core.evaluation.benchmarks.base import Benchmark, Question, register

ANSWERS = ("yes", "no")


@dataclass(frozen=True)
class PopeMetrics:
    n: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    yes_ratio: float  # pruned VLMs drift towards "yes"; this shows it
    balanced_accuracy: float  # (TPR + TNR) / 2: the robustness objective


def pope_metrics(predictions: Sequence[str], labels: Sequence[str]) -> PopeMetrics:
    tp = sum(p == "yes" and y == "yes" for p, y in zip(predictions, labels))
    tn = sum(p == "no" and y == "no" for p, y in zip(predictions, labels))
    fp = sum(p == "yes" and y == "no" for p, y in zip(predictions, labels))
    fn = sum(p != "yes" and y == "yes" for p, y in zip(predictions, labels))
    n = len(labels)
    pos, neg = tp + fn, tn + fp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / pos if pos else 0.0
    tnr = tn / neg if neg else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PopeMetrics(
        n=n,
        accuracy=(tp + tn) / n if n else 0.0,
        precision=precision,
        recall=recall,
        f1=f1,
        yes_ratio=sum(p == "yes" for p in predictions) / n if n else 0.0,
        balanced_accuracy=(recall + tnr) / 2,
    )


@register
class Pope(Benchmark):
    name = "pope"
    grouped = True
    metrics_type = PopeMetrics
    embedded = True
    label = "POPE"
    help = "POPE object-presence yes/no questions (random / popular / adversarial)"

    def load(self, split: str, data: DataSource, embedded_root: Path | None) -> dict[str, list[PopeItem]]:
        path = Path(data.pope) if data.pope else embedded_root / "pope" / split
        if path.is_dir():
            return load_pope_dir(path, data.pope_images)
        items = load_pope(path, data.pope_images or path.parent / "images", label_file=data.pope_labels)
        grouped: dict[str, list[PopeItem]] = {}
        for item in items:
            grouped.setdefault(item.category, []).append(item)
        return grouped

    def reads_embedded(self, data: DataSource) -> bool:
        return data.pope is None

    def group_rank(self, group: str) -> tuple:
        return (POPE_CATEGORIES.index(group) if group in POPE_CATEGORIES else len(POPE_CATEGORIES), group)

    def question(self, item: PopeItem) -> Question:
        return Question(pope_prompt(item.text), item.image, ANSWERS, any_case=True)

    def parse(self, text: str, item: PopeItem, parser: str) -> int:
        return ANSWERS.index(parse_pope_answer(text, parser))

    def metrics(self, items: Sequence[PopeItem], picks: Sequence[int]) -> PopeMetrics:
        return pope_metrics([ANSWERS[p] if p >= 0 else "other" for p in picks], [it.label for it in items])

    def summary(self, groups: Mapping[str, PopeMetrics]) -> dict[str, float]:
        """The mean balanced accuracy over the categories: what the robustness objective reads."""
        if not groups:
            return {}
        return {"pope_balanced_accuracy": sum(m.balanced_accuracy for m in groups.values()) / len(groups)}
