"""The one evaluation path: any registered benchmark (POPE, ScienceQA, MME, ...) on any model adapter (dense,
masked, pruned, recovered).

Default scoring reads the logits at the answer position in one batched forward (yes vs no; option letters):
exact for the answer's first token and never stopped by a rambling reply. `scoring="generate"` decodes and reads
answers the way each benchmark's official script does (`parser`: "official", their exact rules, or "lenient").
What a benchmark asks, how it reads an answer and what it measures live in `evaluation/benchmarks/`.

Every score can come with an image-free baseline (the same questions over a blank image), so a report shows how
much of the score comes from looking rather than from language priors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from hipp_core.answer_parsing import check_parser, parse_choice, parse_pope_answer
from hipp_core.data.answers import MatchedAnswers
from hipp_core.data.world import BACKGROUND
from hipp_core.errors import HippError
from hipp_core.evaluation import benchmarks
from hipp_core.evaluation.benchmarks import WHOLE, Benchmark, ImageFree
from hipp_core.evaluation.benchmarks.pope import PopeMetrics, pope_metrics
from hipp_core.evaluation.benchmarks.sqa import SQAMetrics, sqa_counts
from hipp_core.models.adapters import ModelAdapter

Progress = Callable[[str, int, int], None]
SCORINGS = ("logits", "generate")
FREE = "_free"  # suffix of a benchmark's image-free results, as stored
Tasks = dict[str, dict[str, list]]  # benchmark name -> group -> items


def _benchmark(result_name: str) -> Benchmark:
    """The benchmark behind a results entry (`pope`, or its image-free baseline `pope_free`)."""
    if result_name.endswith(FREE):
        return ImageFree(benchmarks.get(result_name[: -len(FREE)]))
    return benchmarks.get(result_name)


@dataclass
class EvalResult:
    model_id: str
    split: str
    scoring: str
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # benchmark (or `<name>_free`) -> group -> metrics
    seconds: float = 0.0
    questions: int = 0
    cached: bool = False  # True when the plan store answered instead of the model
    parser: str | None = None  # how generated answers were read ("official" / "lenient"); None for logit scoring
    model_name: str | None = None  # the spec or name the model was asked by (not stored: the model record has it)
    notices: list[str] = field(default_factory=list)  # what the user should know about the input (HippNotice)

    # The two benchmarks the objectives read, by their usual names.
    @property
    def pope(self) -> dict[str, PopeMetrics]:
        return self.results.get("pope", {})

    @property
    def pope_image_free(self) -> dict[str, PopeMetrics]:
        return self.results.get("pope" + FREE, {})

    @property
    def sqa(self) -> SQAMetrics | None:
        return self.results.get("sqa", {}).get(WHOLE)

    @property
    def sqa_image_free(self) -> SQAMetrics | None:
        return self.results.get("sqa" + FREE, {}).get(WHOLE)

    @property
    def pope_balanced_accuracy(self) -> float | None:
        """Mean over POPE categories: the hallucination-robustness score used in rewards."""
        return benchmarks.get("pope").summary(self.pope).get("pope_balanced_accuracy")

    def to_metrics(self) -> dict[str, float]:
        """Flat numbers (see `evaluation/benchmarks/base.py`): what the plan store keeps and Pareto queries read."""
        flat: dict[str, float] = {"questions": self.questions}
        for name, groups in self.results.items():
            bench = _benchmark(name)
            flat.update(benchmarks.flatten(bench, groups))
            if not isinstance(bench, ImageFree):
                flat.update(bench.summary(groups))
        return flat

    @classmethod
    def from_metrics(
        cls, model_id: str, split: str, scoring: str, metrics: dict[str, float], seconds: float, cached: bool
    ) -> EvalResult:
        result = cls(model_id, split, scoring, seconds=seconds, questions=int(metrics["questions"]), cached=cached)
        for name in benchmarks.names():
            for bench in (benchmarks.get(name), ImageFree(benchmarks.get(name))):
                groups = benchmarks.unflatten(bench, metrics)
                if groups:
                    result.results[bench.name] = groups
        return result

    def to_json(self) -> dict:
        """Per benchmark its metrics (per group for grouped ones) and `<name>_image_free`; POPE and ScienceQA keys are
        always present (empty when not measured), so readers of `hipp eval --json` find them."""
        data = {k: v for k, v in asdict(self).items() if k != "results"}
        data |= {"pope": {}, "pope_image_free": {}, "sqa": None, "sqa_image_free": None}
        for name, groups in self.results.items():
            bench = _benchmark(name)
            key = name[: -len(FREE)] + "_image_free" if name.endswith(FREE) else name
            data[key] = {g: asdict(m) for g, m in groups.items()} if bench.grouped else asdict(groups[WHOLE])
        return data

    @classmethod
    def from_json(cls, data: dict) -> EvalResult:
        data = dict(data)
        results: dict[str, dict[str, Any]] = {}
        for name in benchmarks.names():
            bench = benchmarks.get(name)
            for key, stored in ((name, name), (f"{name}_image_free", name + FREE)):
                value = data.pop(key, None)
                if not value:
                    continue
                groups = value if bench.grouped else {WHOLE: value}
                results[stored] = {g: bench.metrics_type(**m) for g, m in groups.items()}
        return cls(**data, results=results)


def open_image(path: Path, blank: bool) -> Image.Image:
    with Image.open(path) as im:
        image = im.convert("RGB")
    return Image.new("RGB", image.size, BACKGROUND) if blank else image


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


@torch.no_grad()
def answer_batch(
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
        # stripped as LLaVA's model_vqa*.py strip before writing an answer file, so the parsers see the same text
        return [t.strip() for t in adapter.tokenizer.batch_decode(new, skip_special_tokens=True)]
    positions = adapter.padded_positions(enc.inputs)
    logits = model(**enc.inputs, **positions, use_cache=False, logits_to_keep=1).logits
    final = logits[:, -1].float().cpu()  # one transfer; the per-candidate maxima below then cost no GPU syncs
    picks = []
    for row, options in zip(final, candidates):
        scores = [row[ids].max().item() for ids in options]
        picks.append(max(range(len(scores)), key=scores.__getitem__))
    return picks


def _candidates(adapter: ModelAdapter, questions: Sequence[benchmarks.Question]) -> dict[str, list[int]]:
    """Each answer's token ids after the first question's chat prompt, for logit scoring: an answer's first token
    depends only on where the prompt ends, and every prompt ends with the chat template's generation prompt. Ids two
    answers share are dropped (they could only produce ties); see `models/answers.py`."""
    first = questions[0]
    answers = list(dict.fromkeys(a for q in questions for a in q.answers))
    any_case = any(q.any_case for q in questions)
    ids = adapter.answer_token_ids(first.text, first.image is not None, answers, any_case)
    return dict(zip(answers, ids))


def stage_name(bench_name: str, group: str) -> str:
    """The stage `evaluate` reports a group's progress under (`pope random`, `pope_free adversarial`, `sqa`): what
    job progress (`hipp_core.job_progress`) expects it to report."""
    return f"{bench_name} {group}".strip()


def score(
    adapter: ModelAdapter,
    bench: Benchmark,
    items: Sequence,
    scoring: str = "logits",
    batch_size: int = 32,
    progress: Progress | None = None,
    parser: str = "official",
    stage: str | None = None,
) -> list[int]:
    """The answer each item gets, as an index into its question's answers (-1: a generated answer that reads as
    none of them), in batches of `batch_size`."""
    questions = [bench.question(item) for item in items]
    ids = _candidates(adapter, questions) if scoring == "logits" and questions else {}
    picks: list[int] = []
    for idx in _batches(len(questions), batch_size):
        batch = [questions[i] for i in idx]
        images = [open_image(q.image, q.blank) if q.image is not None else None for q in batch]
        options = [[ids[a] for a in q.answers] for q in batch] if ids else None
        raw = answer_batch(adapter, [q.text for q in batch], images, options, scoring == "generate")
        if scoring == "generate":
            raw = [bench.parse(text, items[i], parser) for i, text in zip(idx, raw)]
        picks += raw
        if progress:
            progress(stage or bench.name, len(picks), len(questions))
    return picks


def evaluate(
    adapter: ModelAdapter,
    model_id: str,
    tasks: Tasks,
    split: str,
    scoring: str = "logits",
    image_free: bool = True,
    batch_size: int = 32,
    progress: Progress | None = None,
    parser: str = "official",
) -> EvalResult:
    """Scores of one model on `tasks` (benchmark name -> group -> items, from `stored.load_benchmark`), each
    benchmark with its image-free baseline unless `image_free` is False; `parser` reads generated answers."""
    if scoring not in SCORINGS:
        raise HippError(f"unknown scoring {scoring!r}; use one of {', '.join(SCORINGS)}")
    check_parser(parser)
    if not any(items for groups in tasks.values() for items in groups.values()):
        raise HippError("nothing to evaluate: no questions were loaded")
    t0 = time.perf_counter()
    result = EvalResult(model_id, split, scoring, parser=parser if scoring == "generate" else None)
    for name, groups in tasks.items():
        bench = benchmarks.get(name)
        for asked in (bench, ImageFree(bench)) if image_free else (bench,):
            for group, items in groups.items():
                stage = stage_name(asked.name, group)
                picks = score(adapter, asked, items, scoring, batch_size, progress, parser, stage)
                result.results.setdefault(asked.name, {})[group] = asked.metrics(items, picks)
        result.questions += sum(len(items) for items in groups.values())
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def score_answer_texts(matched: MatchedAnswers, parser: str, model_id: str, split: str) -> EvalResult:
    """The metrics of answers made elsewhere (`hipp_core.data.answers`), each read with `parser`; no model runs.
    A ScienceQA problem without an answer counts as wrong, as LLaVA's eval_science_qa.py counts it."""
    check_parser(parser)
    t0 = time.perf_counter()
    result = EvalResult(model_id, split, "generate", questions=matched.questions, parser=parser)
    for category, answers in matched.pope.items():
        pope = [parse_pope_answer(t, parser) for t in answers.texts]
        result.results.setdefault("pope", {})[category] = pope_metrics(pope, answers.labels)
    if matched.sqa is not None:
        sqa = matched.sqa
        correct = [
            text is not None and parse_choice(text, problem.choices, parser) == problem.answer
            for text, problem in zip(sqa.texts, sqa.problems)
        ]
        result.results["sqa"] = {WHOLE: sqa_counts(correct, sqa.with_image)}
    result.seconds = round(time.perf_counter() - t0, 3)
    return result
