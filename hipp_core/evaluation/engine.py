"""The one evaluation path: POPE and ScienceQA metrics for any model adapter (dense, masked, pruned, recovered).

Default scoring reads the logits at the answer position in one batched forward (yes vs no; option letters):
exact for the answer's first token and never stopped by a rambling reply. On the embedded models, which answer
in one word and stop, it is only 1.07-1.12x faster than decoding (benchmarks/eval_throughput.py); the gap grows
with the length of a real chat model's reply. `scoring="generate"` decodes and parses answers the way POPE's and
LLaVA's evaluation scripts do, for real chat models.

Every POPE score comes with an image-free baseline (the same questions over a blank image), so a report
shows how much of the score comes from looking rather than from language priors.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image

from hipp_core.data.prompts import LETTERS, pope_prompt, sqa_prompt
from hipp_core.data.records import POPE_CATEGORIES, PopeItem, SQAItem
from hipp_core.data.world import BACKGROUND
from hipp_core.errors import HippError
from hipp_core.models.adapters import ModelAdapter

Progress = Callable[[str, int, int], None]
SCORINGS = ("logits", "generate")
BENCHES = ("pope", "sqa", "all")


@dataclass(frozen=True)
class PopeMetrics:
    n: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    yes_ratio: float  # pruned VLMs drift towards "yes"; this shows it
    balanced_accuracy: float  # (TPR + TNR) / 2: the robustness objective


@dataclass(frozen=True)
class SQAMetrics:
    n: int
    accuracy: float
    n_image: int
    accuracy_image: float
    n_text: int
    accuracy_text: float


@dataclass
class EvalResult:
    model_id: str
    split: str
    scoring: str
    pope: dict[str, PopeMetrics] = field(default_factory=dict)
    pope_image_free: dict[str, PopeMetrics] = field(default_factory=dict)
    sqa: SQAMetrics | None = None
    sqa_image_free: SQAMetrics | None = None
    seconds: float = 0.0
    questions: int = 0
    cached: bool = False  # True when the plan store answered instead of the model

    @property
    def pope_balanced_accuracy(self) -> float | None:
        """Mean over POPE categories: the hallucination-robustness score used in rewards."""
        if not self.pope:
            return None
        return sum(m.balanced_accuracy for m in self.pope.values()) / len(self.pope)

    def to_json(self) -> dict:
        return asdict(self)

    def to_metrics(self) -> dict[str, float]:
        """Flat `part.category.field` numbers: what the plan store keeps and Pareto queries read."""
        flat: dict[str, float] = {"questions": self.questions}
        for part, per_cat in (("pope", self.pope), ("pope_free", self.pope_image_free)):
            for cat, m in per_cat.items():
                flat.update({f"{part}.{cat}.{k}": v for k, v in asdict(m).items()})
        for part, m in (("sqa", self.sqa), ("sqa_free", self.sqa_image_free)):
            if m is not None:
                flat.update({f"{part}.{k}": v for k, v in asdict(m).items()})
        if self.pope:
            flat["pope_balanced_accuracy"] = self.pope_balanced_accuracy
        return flat

    @classmethod
    def from_metrics(
        cls, model_id: str, split: str, scoring: str, metrics: dict[str, float], seconds: float, cached: bool
    ) -> EvalResult:
        result = cls(model_id, split, scoring, seconds=seconds, questions=int(metrics["questions"]), cached=cached)
        nested: dict[str, dict] = {}
        for key, value in metrics.items():
            part, _, rest = key.partition(".")
            if rest:
                nested.setdefault(part, {})[rest] = value
        for part, target in (("pope", result.pope), ("pope_free", result.pope_image_free)):
            cats: dict[str, dict] = {}
            for rest, value in nested.get(part, {}).items():
                cat, _, name = rest.partition(".")
                cats.setdefault(cat, {})[name] = value
            order = sorted(cats, key=lambda c: (POPE_CATEGORIES.index(c) if c in POPE_CATEGORIES else 99, c))
            target.update({c: PopeMetrics(**_ints(cats[c], "n")) for c in order})
        if "sqa" in nested:
            result.sqa = SQAMetrics(**_ints(nested["sqa"], "n", "n_image", "n_text"))
        if "sqa_free" in nested:
            result.sqa_image_free = SQAMetrics(**_ints(nested["sqa_free"], "n", "n_image", "n_text"))
        return result

    @classmethod
    def from_json(cls, data: dict) -> EvalResult:
        data = dict(data)
        for key in ("pope", "pope_image_free"):
            data[key] = {k: PopeMetrics(**v) for k, v in data.get(key, {}).items()}
        for key in ("sqa", "sqa_image_free"):
            data[key] = SQAMetrics(**data[key]) if data.get(key) else None
        return cls(**data)


def _ints(values: dict, *names: str) -> dict:
    return {k: int(v) if k in names else v for k, v in values.items()}


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


def sqa_metrics(predictions: Sequence[int], items: Sequence[SQAItem]) -> SQAMetrics:
    correct = [p == it.answer for p, it in zip(predictions, items)]
    img = [c for c, it in zip(correct, items) if it.image is not None]
    txt = [c for c, it in zip(correct, items) if it.image is None]
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0
    return SQAMetrics(len(items), mean(correct), len(img), mean(img), len(txt), mean(txt))


def parse_pope_answer(text: str) -> str:
    """POPE's rule (LLaVA's eval_pope.py): first sentence, commas dropped; 'no'/'not' anywhere means no."""
    text = text.split(".")[0].replace(",", "")
    words = text.split()
    return "no" if any(w in ("No", "no", "not", "NO", "Not") for w in words) else "yes"


def parse_choice(text: str, choices: Sequence[str]) -> int:
    """Letter first ("B", "B.", "The answer is B"), then the option text; -1 when nothing matches."""
    text = text.strip()
    match = re.match(r"^\(?([A-E])\b", text) or re.search(r"answer is \(?([A-E])\b", text)
    if match and LETTERS.index(match.group(1)) < len(choices):
        return LETTERS.index(match.group(1))
    lowered = text.lower()
    hits = [i for i, c in enumerate(choices) if c.lower() in lowered]
    return hits[0] if len(hits) == 1 else -1


def open_image(path: Path, blank: bool) -> Image.Image:
    with Image.open(path) as im:
        image = im.convert("RGB")
    return Image.new("RGB", image.size, BACKGROUND) if blank else image


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


@torch.no_grad()
def _answer(
    adapter: ModelAdapter,
    texts: list[str],
    images: list[Image.Image | None],
    candidates: list[list[list[int]]] | None,
    generate: bool,
) -> list:
    """Per row: index of the best candidate (logit scoring), or the decoded text (generation).

    Both pad on the left, so every row's answer position is the last one: scoring then asks the model for that one
    position's logits (`logits_to_keep=1`) and keeps no KV cache, which it would never read: at 7B scale the
    full-sequence logits and the cache are a large share of the scoring forward's peak memory."""
    model = adapter.model
    enc = adapter.encode(texts, images, padding_side="left")  # on the model's device, pixels in its dtype
    if generate:
        out = model.generate(**enc.inputs, max_new_tokens=16, do_sample=False)
        new = out[:, enc.inputs["input_ids"].shape[1] :]
        return adapter.tokenizer.batch_decode(new, skip_special_tokens=True)
    positions = adapter.padded_positions(enc.inputs)
    logits = model(**enc.inputs, **positions, use_cache=False, logits_to_keep=1).logits
    final = logits[:, -1].float().cpu()  # one transfer; the per-candidate maxima below then cost no GPU syncs
    picks = []
    for row, options in zip(final, candidates):
        scores = [row[ids].max().item() for ids in options]
        picks.append(max(range(len(scores)), key=scores.__getitem__))
    return picks


@dataclass(frozen=True)
class _Question:
    text: str
    image: Path | None
    options: list[list[int]]  # candidate token ids per answer, for logit scoring


def _score(
    adapter: ModelAdapter,
    stage: str,
    questions: Sequence[_Question],
    decide: Callable[[int, object], object],
    scoring: str,
    blank: bool,
    batch_size: int,
    progress: Progress | None,
) -> list:
    """Batched answers to `questions`; `decide(i, raw)` turns question i's raw answer (an option index, or the
    decoded text under generation) into a prediction."""
    preds: list = []
    for idx in _batches(len(questions), batch_size):
        batch = [questions[i] for i in idx]
        images = [open_image(q.image, blank) if q.image is not None else None for q in batch]
        raw = _answer(adapter, [q.text for q in batch], images, [q.options for q in batch], scoring == "generate")
        preds += [decide(i, r) for i, r in zip(idx, raw)]
        if progress:
            progress(stage, len(preds), len(questions))
    return preds


def score_pope(
    adapter: ModelAdapter,
    items: Sequence[PopeItem],
    scoring: str = "logits",
    blank: bool = False,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> list[str]:
    yes_no = adapter.first_token_ids(["yes", "no"], any_case=True)
    questions = [_Question(pope_prompt(it.text), it.image, yes_no) for it in items]

    def decide(i: int, raw) -> str:
        return parse_pope_answer(raw) if scoring == "generate" else ("yes", "no")[raw]

    return _score(adapter, "pope", questions, decide, scoring, blank, batch_size, progress)


def score_sqa(
    adapter: ModelAdapter,
    items: Sequence[SQAItem],
    scoring: str = "logits",
    blank: bool = False,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> list[int]:
    letters = adapter.first_token_ids(list(LETTERS))
    questions = [
        _Question(sqa_prompt(it.question, it.choices, it.hint), it.image, letters[: len(it.choices)]) for it in items
    ]

    def decide(i: int, raw) -> int:
        return parse_choice(raw, items[i].choices) if scoring == "generate" else raw

    return _score(adapter, "sqa", questions, decide, scoring, blank, batch_size, progress)


def evaluate(
    adapter: ModelAdapter,
    model_id: str,
    pope: dict[str, list[PopeItem]] | None,
    sqa: list[SQAItem] | None,
    split: str,
    scoring: str = "logits",
    image_free: bool = True,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> EvalResult:
    if scoring not in SCORINGS:
        raise HippError(f"unknown scoring {scoring!r}; use one of {', '.join(SCORINGS)}")
    if not pope and not sqa:
        raise HippError("nothing to evaluate: no POPE questions and no ScienceQA problems were loaded")
    t0 = time.perf_counter()
    result = EvalResult(model_id=model_id, split=split, scoring=scoring)
    for category, items in (pope or {}).items():
        labels = [it.label for it in items]
        result.pope[category] = pope_metrics(score_pope(adapter, items, scoring, False, batch_size, progress), labels)
        if image_free:
            preds = score_pope(adapter, items, scoring, True, batch_size, progress)
            result.pope_image_free[category] = pope_metrics(preds, labels)
        result.questions += len(items)
    if sqa:
        result.sqa = sqa_metrics(score_sqa(adapter, sqa, scoring, False, batch_size, progress), sqa)
        if image_free:
            result.sqa_image_free = sqa_metrics(score_sqa(adapter, sqa, scoring, True, batch_size, progress), sqa)
        result.questions += len(sqa)
    result.seconds = round(time.perf_counter() - t0, 3)
    return result
