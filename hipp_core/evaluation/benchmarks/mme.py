"""MME (perception and cognition yes/no pairs), scored as its eval_tool scores it: per subtask, accuracy over the
questions and accuracy+ over the images (both questions right), score = 100·(acc + acc+); perception and cognition
are sums over their subtasks. Real files only (`--data mme=DIR`): ShapesWorld has no MME split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hipp_core.answer_parsing import check_parser
from hipp_core.data.mme import MMEItem, load_mme
from hipp_core.data.source import DataSource
from hipp_core.errors import HippError
from hipp_core.evaluation.benchmarks.base import Benchmark, Question, register

ANSWERS = ("yes", "no")
PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


@dataclass(frozen=True)
class MMEMetrics:
    n: int
    n_images: int
    accuracy: float
    accuracy_plus: float  # share of images whose every question is answered right
    score: float  # 100 · (accuracy + accuracy_plus), MME's per-subtask score


def parse_mme_answer(text: str, parser: str = "official") -> str:
    """eval_tool's rule: the lower-cased answer is "yes" or "no", else its first four characters decide ("yes" before
    "no"), else "other" (counted wrong). `lenient` first strips spaces and punctuation around the answer."""
    text = text.lower()
    if check_parser(parser) == "lenient":
        text = text.strip().strip(".,!?;:'\"")
    if text in ANSWERS:
        return text
    prefix = text[:4]
    return "yes" if "yes" in prefix else "no" if "no" in prefix else "other"


def mme_metrics(items: Sequence[MMEItem], predictions: Sequence[str]) -> MMEMetrics:
    right = [p == it.label for p, it in zip(predictions, items)]
    per_image: dict[Path, list[bool]] = {}
    for ok, item in zip(right, items):
        per_image.setdefault(item.image, []).append(ok)
    accuracy = sum(right) / len(right) if right else 0.0
    plus = sum(all(v) for v in per_image.values()) / len(per_image) if per_image else 0.0
    return MMEMetrics(len(items), len(per_image), accuracy, plus, 100 * (accuracy + plus))


@register
class MME(Benchmark):
    name = "mme"
    grouped = True
    metrics_type = MMEMetrics
    label = "MME"
    help = "MME yes/no pairs per subtask; score = 100·(accuracy + accuracy+)"

    def load(self, split: str, data: DataSource, embedded_root: Path | None) -> dict[str, list[MMEItem]]:
        if "mme" not in data.folders:
            raise HippError("MME needs its files: pass --data mme=DIR (the MME_Benchmark_release_version folder)")
        return load_mme(data.folders["mme"])

    def question(self, item: MMEItem) -> Question:
        return Question(item.question, item.image, ANSWERS, any_case=True)

    def parse(self, text: str, item: MMEItem, parser: str) -> int:
        answer = parse_mme_answer(text, parser)
        return ANSWERS.index(answer) if answer in ANSWERS else -1

    def metrics(self, items: Sequence[MMEItem], picks: Sequence[int]) -> MMEMetrics:
        return mme_metrics(items, [ANSWERS[p] if p >= 0 else "other" for p in picks])

    def summary(self, groups: Mapping[str, MMEMetrics]) -> dict[str, float]:
        """Perception and cognition totals over the subtasks present, as MME reports them."""
        totals = {}
        for key, kinds in (("mme_perception", PERCEPTION), ("mme_cognition", COGNITION)):
            present = [m.score for name, m in groups.items() if name in kinds]
            if present:
                totals[key] = sum(present)
        return totals
