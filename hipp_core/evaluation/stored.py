"""Stored scoring: a model spec (dense or under a blueprint) scored on a question set, through the plan store.

Every evaluator backend (in this process, on Ray workers) and the API use these pieces, so a plan scored anywhere
lands in the store under the same key with the same numbers, and asking again reads it back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hipp_core.blueprint import Blueprint, LayerShape, validate
from hipp_core.data.records import PopeItem, SQAItem
from hipp_core.data.source import SHAPESWORLD_KEY, DataSource, data_key, load_questions
from hipp_core.errors import HippError
from hipp_core.evaluation.engine import EvalResult, Progress, evaluate
from hipp_core.models.loading import LoadedModel, load_model
from hipp_core.prune import check_pruned, masked, materialize
from plan_store import DENSE_PLAN_ID, EvalKey, PlanDraft, PlanStore


def load_benchmark(
    bench: str = "all",
    split: str = "test",
    limit: int | None = None,
    pope_dir: Path | None = None,
    sqa_dir: Path | None = None,
    pope_images: Path | None = None,
    pope_labels: Path | None = None,
) -> tuple[dict[str, list[PopeItem]], list[SQAItem]]:
    """POPE questions per category and ScienceQA problems; ShapesWorld unless a real directory is given.

    `pope_dir` is a folder of official `*_pope_<category>.json` files, or one question file: an official one,
    or LLaVA's `llava_pope_test.jsonl` together with `pope_labels` (the folder of official files that hold
    its labels). `pope_images` defaults to `images/` beside the questions.
    `limit` keeps the first N questions per POPE category and the first N problems: POPE files interleave
    yes and no per image, so a prefix stays balanced.
    """
    return load_questions(DataSource(pope_dir, pope_images, pope_labels, sqa_dir), bench, split, limit)


def bench_key(bench: str, image_free: bool, data: str) -> str:
    """What the questions were: `data` is their `hipp_core.data.source.data_key` (ShapesWorld by version, the
    user's files by content, never by path or modification time)."""
    return f"{bench}:{data}:{'with-image-free' if image_free else 'no-image-free'}"


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
) -> EvalResult:
    """Evaluate a model spec (`embedded`, `embedded:qwen2_5_vl`, a local checkpoint or an export), dense or under
    a blueprint: `masked` (hooks on the dense weights, for scoring many plans) or `physical` (a pruned copy).

    Results are kept in the plan store under (model hash, plan, benchmark, split, mode, scoring, limit); asking
    again returns the stored result (`result.cached`) without touching the model.
    """
    if batch_size < 1:
        raise HippError(f"batch size must be at least 1, got {batch_size}")
    if blueprint is not None and mode not in ("masked", "physical"):
        raise HippError(f"plan evaluation mode must be masked or physical, got {mode!r}")
    loaded = load_model(spec)
    pope, sqa = load_benchmark(bench, split, limit, pope_dir, sqa_dir, pope_images, pope_labels)
    store = store or PlanStore()
    store.put_model(loaded.model_id, spec, loaded.family, loaded.model.config.to_dict())
    plan_id = DENSE_PLAN_ID
    if blueprint is not None:
        check_plan(blueprint, loaded.model_id, loaded.adapter.layer_shapes(), spec)
        plan_id = store.put_plan(plan_draft(blueprint)).plan_id
    data = data_key(DataSource(pope_dir, pope_images, pope_labels, sqa_dir), pope, sqa)
    key = eval_key(loaded.model_id, plan_id, bench_key(bench, image_free, data), split, limit, scoring, mode)

    return stored_score(
        store,
        key,
        lambda: score_plan(loaded, pope, sqa, split, blueprint, scoring, image_free, batch_size, progress, mode),
    )


# The pieces of `evaluate_model` that every evaluator backend shares, so a plan scored in this process and one
# scored on a Ray worker land in the plan store under the same key with the same numbers.


def check_plan(blueprint: Blueprint, model_id: str, shapes: list[LayerShape], spec: str) -> None:
    """Refuse a blueprint made for another model, or one that does not fit this model's layers."""
    if blueprint.model_id != model_id:
        raise HippError(f"the plan was made for model {blueprint.model_id}, not {spec} ({model_id})")
    validate(blueprint, shapes, model_id)


def plan_draft(blueprint: Blueprint) -> PlanDraft:
    return PlanDraft(
        blueprint.model_id, blueprint.to_json(), blueprint.source, blueprint.achieved, blueprint.preference
    )


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
    pope: dict[str, list[PopeItem]],
    sqa: list[SQAItem],
    split: str,
    blueprint: Blueprint | None,
    scoring: str = "logits",
    image_free: bool = True,
    batch_size: int = 32,
    progress: Progress | None = None,
    mode: str = "masked",
) -> EvalResult:
    """Score one plan (None = dense) on an already loaded model and question set; no store involved."""

    def run(adapter) -> EvalResult:
        return evaluate(adapter, loaded.model_id, pope, sqa, split, scoring, image_free, batch_size, progress)

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
) -> EvalResult:
    """Evaluate a recovered model of `blueprint` (a `hipp_core.recover` artifact, loaded with `load_pruned`) on
    ShapesWorld, stored in mode `recovered` under the dense model and the plan. The store's key has no field for
    how a plan was recovered, so the recovered weights' id goes into the benchmark key: two recoveries of one plan
    are two measurements."""
    if batch_size < 1:
        raise HippError(f"batch size must be at least 1, got {batch_size}")
    loaded = load_model(spec)
    check_plan(blueprint, loaded.model_id, loaded.adapter.layer_shapes(), spec)
    check_pruned(recovered.adapter, blueprint)
    pope, sqa = load_benchmark(bench, split, limit)
    store = store or PlanStore()
    store.put_model(loaded.model_id, spec, loaded.family, loaded.model.config.to_dict())
    plan_id = store.put_plan(plan_draft(blueprint)).plan_id
    bench_id = f"{bench_key(bench, image_free, SHAPESWORLD_KEY)}:recovered-{recovered.model_id}"
    key = eval_key(loaded.model_id, plan_id, bench_id, split, limit, scoring, "recovered")

    return stored_score(
        store, key, lambda: score_plan(recovered, pope, sqa, split, None, scoring, image_free, batch_size, progress)
    )
