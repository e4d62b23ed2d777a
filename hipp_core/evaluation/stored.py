"""Stored scoring: a model spec (dense or under a blueprint) scored on a question set, through the plan store.

Every evaluator backend (in this process, on Ray workers) and the API use these pieces, so a plan scored anywhere
lands in the store under the same key with the same numbers, and asking again reads it back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path

from hipp_core import objectives, validation
from hipp_core.answer_parsing import check_parser
from hipp_core.blueprint import Blueprint, LayerShape, validate
from hipp_core.data import build as data_build
from hipp_core.data.answers import default_name, read_answers
from hipp_core.data.overlap import check_apart, pope_references
from hipp_core.data.source import SHAPESWORLD_KEY, DataSource, data_key
from hipp_core.data.sqa import load_sqa
from hipp_core.data.world import SPLITS
from hipp_core.errors import HippError, collecting_notices
from hipp_core.evaluation import benchmarks
from hipp_core.evaluation.engine import EvalResult, Progress, Tasks, evaluate, score_answer_texts
from hipp_core.models.device import AUTO
from hipp_core.models.loading import LoadedModel, load_model
from hipp_core.prune import check_pruned, masked, materialize
from plan_store import DENSE_PLAN_ID, EvalKey, PlanDraft, PlanStore


def load_benchmark(
    bench: str = "all", split: str = "test", limit: int | None = None, data: DataSource | None = None
) -> Tasks:
    """Items per benchmark and group: `bench` is `all` (every benchmark ShapesWorld has: POPE and ScienceQA), one
    registered name or several joined by commas. Each reads the real files `data` names, else ShapesWorld's.

    POPE: `data.pope` is a folder of official `*_pope_<category>.json` files, or one question file: an official one,
    or LLaVA's `llava_pope_test.jsonl` together with `pope_labels` (the folder of official files that hold its
    labels). `pope_images` defaults to `images/` beside the questions, `sqa_images` to `images/` in `data.sqa`.
    `limit` keeps the first N items of each group: POPE files interleave yes and no per image, so a prefix stays
    balanced.
    """
    data = data or DataSource()
    validation.optional_count(limit, "--limit")
    selected = benchmarks.select(bench)
    embedded = [b for b in selected if b.reads_embedded(data)]
    if embedded and split not in SPLITS:
        names = ", ".join(b.name for b in embedded)
        raise HippError(f"ShapesWorld ({names}) has no split {split!r}; use one of {', '.join(SPLITS)}")
    root = data_build.build() if embedded else None
    return {b.name: {group: items[:limit] for group, items in b.load(split, data, root).items()} for b in selected}


def load_tuning(data: DataSource, bench: str, split: str, limit: int | None, what: str) -> Tasks:
    """`load_benchmark` for calibration or rewards (`what` names them in messages): refused (one line) when the
    user's data shares an image or a problem with the test files `data` names."""
    tasks = load_benchmark(bench, split, limit, data)
    if data.real:
        pope = [item for items in tasks.get("pope", {}).values() for item in items] if data.pope is not None else []
        sqa = [item for items in tasks.get("sqa", {}).values() for item in items] if data.sqa is not None else []
        test_sqa = load_sqa(Path(data.sqa), data.report_split, data.sqa_images) if sqa else []
        check_apart(what, pope, sqa, pope_references(data.test_pope), test_sqa)
    return tasks


def bench_key(bench: str, image_free: bool, data: str = SHAPESWORLD_KEY, placement: str = "") -> str:
    """What the questions were: `data` is their `hipp_core.data.source.data_key` (ShapesWorld by version, the
    user's files by content, never by path or modification time); then where the model ran (`placement`, a
    `Placement.key_suffix`: empty for float32 on the CPU, so every result stored before devices and dtypes were
    options is still found under its old key)."""
    return f"{bench}:{data}:{'with-image-free' if image_free else 'no-image-free'}{placement}"


def evaluation_options(data: DataSource | None, split: str = "test") -> dict:
    """`evaluate_model`'s data keywords for reading `data` (a `DataSource.report_source`, or any source whose own
    `split` is set; None: ShapesWorld `split`), so a command's test evaluations all read the same questions."""
    if data is None:
        return {"split": split}
    return {
        "pope_dir": data.pope,
        "pope_images": data.pope_images,
        "pope_labels": data.pope_labels,
        "sqa_dir": data.sqa,
        "sqa_images": data.sqa_images,
        "folders": dict(data.folders),
        "split": data.split or "test",
    }


def evaluate_model(
    spec: str,
    bench: str = "all",
    split: str = "test",
    limit: int | None = None,
    scoring: str = "logits",
    image_free: bool = True,
    pope_dir: Path | None = None,
    sqa_dir: Path | None = None,
    pope_images: Path | None = None,
    pope_labels: Path | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
    store: PlanStore | None = None,
    blueprint: Blueprint | None = None,
    mode: str = "masked",
    parser: str = "official",
    sqa_images: Path | None = None,
    folders: Mapping[str, Path] | None = None,
    device: str = AUTO,
    dtype: str = AUTO,
) -> EvalResult:
    """Evaluate a model spec (`embedded`, `embedded:qwen2_5_vl`, a local checkpoint or an export), dense or under
    a blueprint: `masked` (hooks on the dense weights, for scoring many plans) or `physical` (a pruned copy), on
    `device` in `dtype` (`auto`: the GPU in bfloat16 when there is one, else the CPU in float32).
    Generated answers (`scoring="generate"`) are read with `parser`: the official scripts' rules, or lenient.

    Results are kept in the plan store under (model hash, plan, benchmark, split, mode, scoring, limit; the parser
    and the device type and dtype are part of the benchmark key); asking again returns the stored result
    (`result.cached`) without touching the model. Notices about the input (e.g. no pid_splits.json) come back in
    `result.notices`. `folders` names the folders of benchmarks without options of their own (e.g.
    {"mme": Path(...)}).
    """
    validation.count(batch_size, "--batch-size")
    if blueprint is not None and mode not in ("masked", "physical"):
        raise HippError(f"plan evaluation mode must be masked or physical, got {mode!r}")
    check_parser(parser)
    loaded = load_model(spec, device, dtype)
    data = DataSource(pope_dir, pope_images, pope_labels, sqa_dir, sqa_images, folders=dict(folders or {}))
    with collecting_notices() as notices:
        tasks = load_benchmark(bench, split, limit, data)
    store = store or PlanStore()
    store.put_model(loaded.model_id, spec, loaded.family, loaded.model.config.to_dict())
    plan_id = DENSE_PLAN_ID
    if blueprint is not None:
        check_plan(blueprint, loaded.model_id, loaded.adapter.layer_shapes(), spec)
        plan_id = store.put_plan(plan_draft(blueprint)).plan_id
    data_id = data_key(data, tasks)
    bench_id = bench_key(bench, image_free, data_id, loaded.placement.key_suffix)
    bench_id += f":parser-{parser}" if scoring == "generate" else ""
    key = eval_key(loaded.model_id, plan_id, bench_id, split, limit, scoring, mode)

    result = stored_score(
        store,
        key,
        lambda: score_plan(loaded, tasks, split, blueprint, scoring, image_free, batch_size, progress, mode, parser),
    )
    result.parser = parser if scoring == "generate" else None
    result.model_name, result.notices = spec, notices
    return result


def score_answers(
    answers: Path,
    questions: Path | None = None,
    pope_labels: Path | None = None,
    sqa_dir: Path | None = None,
    name: str | None = None,
    parser: str = "official",
    split: str = "test",
    sqa_images: Path | None = None,
    store: PlanStore | None = None,
) -> EvalResult:
    """Score an answer file made elsewhere (POPE's `{question, answer}` lines, or LLaVA's answer files for POPE or
    ScienceQA; see `hipp_core.data.answers`) with the metrics of `evaluate_model`, and store the result as a dense
    evaluation (scoring "generate") of the model `name`, registered under a digest of the name. The benchmark key
    names the answer and reference files by content hash, and the parser. Nothing is stored unless all is read."""
    check_parser(parser)
    with collecting_notices() as notices:
        matched = read_answers(answers, questions, pope_labels, sqa_dir, split, sqa_images)
    name = (name if name is not None else default_name(matched, answers)).strip()
    if not name:
        raise HippError("--name must not be empty; it names the model whose answers these are")
    model_id = hashlib.sha256(f"answers:{name}".encode()).hexdigest()[:16]
    result = score_answer_texts(matched, parser, model_id, split)
    store = store or PlanStore()
    store.put_model(model_id, name, "answers", {"answers_of": name})
    bench_id = f"{matched.bench}:{matched.content_key()}:parser-{parser}"
    key = eval_key(model_id, DENSE_PLAN_ID, bench_id, split, None, "generate", "dense")
    stored = stored_score(store, key, lambda: result)
    stored.parser, stored.model_name, stored.notices = parser, name, notices
    return stored


# The pieces of `evaluate_model` that every evaluator backend shares, so a plan scored in this process and one
# scored on a Ray worker land in the plan store under the same key with the same numbers.


def check_plan(blueprint: Blueprint, model_id: str, shapes: list[LayerShape], spec: str) -> None:
    """Refuse a blueprint made for another model, or one that does not fit this model's layers."""
    if blueprint.model_id != model_id:
        raise HippError(f"the plan was made for model {blueprint.model_id}, not {spec} ({model_id})")
    validate(blueprint, shapes, model_id)


def plan_draft(blueprint: Blueprint) -> PlanDraft:
    """A blueprint as the store keeps it; its preference (a vector in objective order) keyed by objective name."""
    preference = None if blueprint.preference is None else objectives.by_name(blueprint.preference)
    return PlanDraft(blueprint.model_id, blueprint.to_json(), blueprint.source, blueprint.achieved, preference)


def eval_key(
    model_id: str, plan_id: str, bench: str, split: str, limit: int | None, scoring: str, mode: str
) -> EvalKey:
    """The store key of one evaluation; `bench` is a `bench_key`. The dense model is always mode `dense`."""
    return EvalKey(
        model_id=model_id,
        plan_id=plan_id,
        bench=bench,
        split=split,
        mode="dense" if plan_id == DENSE_PLAN_ID else mode,
        scoring=scoring,
        limit=limit,
    )


def stored_score(store: PlanStore, key: EvalKey, score: Callable[[], EvalResult]) -> EvalResult:
    """The evaluation under `key`: read from the store, or computed by `score()` and stored first."""

    def compute() -> tuple[dict[str, float], int]:
        result = score()
        return result.to_metrics(), result.questions

    record, cached = store.get_or_compute_evaluation(key, compute)
    return EvalResult.from_metrics(key.model_id, key.split, key.scoring, record.metrics, record.seconds, cached)


def score_plan(
    loaded: LoadedModel,
    tasks: Tasks,
    split: str,
    blueprint: Blueprint | None,
    scoring: str = "logits",
    image_free: bool = True,
    batch_size: int = 32,
    progress: Progress | None = None,
    mode: str = "masked",
    parser: str = "official",
) -> EvalResult:
    """Score one plan (None = dense) on an already loaded model and question set; no store involved."""

    def run(adapter) -> EvalResult:
        return evaluate(adapter, loaded.model_id, tasks, split, scoring, image_free, batch_size, progress, parser)

    if blueprint is None:
        return run(loaded.adapter)
    if mode == "masked":
        with masked(loaded.adapter, blueprint):
            return run(loaded.adapter)
    return run(materialize(loaded.adapter, blueprint))


def evaluate_recovered(
    spec: str,
    blueprint: Blueprint,
    recovered: LoadedModel,
    bench: str = "all",
    split: str = "test",
    limit: int | None = None,
    scoring: str = "logits",
    image_free: bool = True,
    batch_size: int = 32,
    progress: Progress | None = None,
    store: PlanStore | None = None,
    data: DataSource | None = None,
) -> EvalResult:
    """Evaluate a recovered model of `blueprint` (a `hipp_core.recover` artifact, loaded with `load_pruned`) on the
    files `data` names (None: ShapesWorld), stored in mode `recovered` under the dense model and the plan. The
    store's key has no field for how a plan was recovered, so the recovered weights' id goes into the benchmark key:
    two recoveries of one plan are two measurements. It runs where `recovered` was loaded; the dense model is read
    for its id and shapes there too."""
    validation.count(batch_size, "--batch-size")
    placement = recovered.placement
    loaded = load_model(spec, placement.device, placement.dtype)
    check_plan(blueprint, loaded.model_id, loaded.adapter.layer_shapes(), spec)
    check_pruned(recovered.adapter, blueprint)
    tasks = load_benchmark(bench, split, limit, data)
    store = store or PlanStore()
    store.put_model(loaded.model_id, spec, loaded.family, loaded.model.config.to_dict())
    plan_id = store.put_plan(plan_draft(blueprint)).plan_id
    data_id = data_key(data, tasks)
    bench_id = f"{bench_key(bench, image_free, data_id, placement.key_suffix)}:recovered-{recovered.model_id}"
    key = eval_key(loaded.model_id, plan_id, bench_id, split, limit, scoring, "recovered")

    return stored_score(
        store, key, lambda: score_plan(recovered, tasks, split, None, scoring, image_free, batch_size, progress)
    )
