"""Stored scoring: a model spec (dense or under a blueprint) scored on a question set, through the plan store.

Every evaluator backend (in this process, on Ray workers) and the API use these pieces, so a plan scored anywhere
lands in the store under the same key with the same numbers, and asking again reads it back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from hipp_core.blueprint import Blueprint, LayerShape, validate
from hipp_core.data import build as data_build
from hipp_core.data.pope import load_pope, load_pope_dir
from hipp_core.data.records import PopeItem, SQAItem
from hipp_core.data.sqa import load_sqa
from hipp_core.data.world import SPLITS
from hipp_core.errors import HippError
from hipp_core.evaluation.engine import BENCHES, EvalResult, Progress, evaluate
from hipp_core.models.device import AUTO
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
    if bench not in BENCHES:
        raise HippError(f"unknown benchmark {bench!r}; use one of {', '.join(BENCHES)}")
    if limit is not None and limit < 1:
        raise HippError(f"--limit must be a positive number of questions, got {limit}")
    need_pope, need_sqa = bench in ("pope", "all"), bench in ("sqa", "all")
    embedded = (need_pope and pope_dir is None) or (need_sqa and sqa_dir is None)
    if embedded and split not in SPLITS:
        raise HippError(f"ShapesWorld has no split {split!r}; use one of {', '.join(SPLITS)}")
    root = data_build.build() if embedded else Path()
    pope: dict[str, list[PopeItem]] = {}
    sqa: list[SQAItem] = []
    if need_pope:
        pope = _load_pope(Path(pope_dir) if pope_dir else root / "pope" / split, pope_images, pope_labels)
        pope = {c: items[:limit] for c, items in pope.items()}
    if need_sqa:
        sqa = load_sqa(Path(sqa_dir) if sqa_dir else root / "sqa", split)[:limit]
    return pope, sqa


def _load_pope(path: Path, images: Path | None, labels: Path | None) -> dict[str, list[PopeItem]]:
    if path.is_dir():
        return load_pope_dir(path, images)
    items = load_pope(path, images or path.parent / "images", label_file=labels)
    grouped: dict[str, list[PopeItem]] = {}
    for item in items:
        grouped.setdefault(item.category, []).append(item)
    return grouped


def bench_key(bench: str, image_free: bool, paths: list[Path | None], placement: str = "") -> str:
    """What the questions were: ShapesWorld by version, or real files by path and modification time; then where the
    model ran (`placement`, a `Placement.key_suffix`: empty for float32 on the CPU, so every result stored before
    devices and dtypes were options is still found under its old key)."""
    given = [Path(p).expanduser().absolute() for p in paths if p is not None]
    if given:
        stamp = "|".join(f"{p}:{p.stat().st_mtime_ns if p.exists() else 0}" for p in given)
        source = "files-" + hashlib.sha256(stamp.encode()).hexdigest()[:12]
    else:
        source = f"shapesworld-v{data_build.VERSION}"
    return f"{bench}:{source}:{'with-image-free' if image_free else 'no-image-free'}{placement}"


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
    device: str = AUTO,
    dtype: str = AUTO,
) -> EvalResult:
    """Evaluate a model spec (`embedded`, `embedded:qwen2_5_vl`, a local checkpoint or an export), dense or under
    a blueprint: `masked` (hooks on the dense weights, for scoring many plans) or `physical` (a pruned copy), on
    `device` in `dtype` (`auto`: the GPU in bfloat16 when there is one, else the CPU in float32).

    Results are kept in the plan store under (model hash, plan, benchmark and placement, split, mode, scoring,
    limit); asking again returns the stored result (`result.cached`) without touching the model.
    """
    if batch_size < 1:
        raise HippError(f"batch size must be at least 1, got {batch_size}")
    if blueprint is not None and mode not in ("masked", "physical"):
        raise HippError(f"plan evaluation mode must be masked or physical, got {mode!r}")
    loaded = load_model(spec, device, dtype)
    pope, sqa = load_benchmark(bench, split, limit, pope_dir, sqa_dir, pope_images, pope_labels)
    store = store or PlanStore()
    store.put_model(loaded.model_id, spec, loaded.family, loaded.model.config.to_dict())
    plan_id = DENSE_PLAN_ID
    if blueprint is not None:
        check_plan(blueprint, loaded.model_id, loaded.adapter.layer_shapes(), spec)
        plan_id = store.put_plan(plan_draft(blueprint)).plan_id
    paths = [pope_dir, sqa_dir, pope_images, pope_labels]
    bench_id = bench_key(bench, image_free, paths, loaded.placement.key_suffix)
    key = eval_key(loaded.model_id, plan_id, bench_id, split, limit, scoring, mode)

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
    are two measurements. It runs where `recovered` was loaded; the dense model is read for its id and shapes
    there too."""
    if batch_size < 1:
        raise HippError(f"batch size must be at least 1, got {batch_size}")
    placement = recovered.placement
    loaded = load_model(spec, placement.device, placement.dtype)
    check_plan(blueprint, loaded.model_id, loaded.adapter.layer_shapes(), spec)
    check_pruned(recovered.adapter, blueprint)
    pope, sqa = load_benchmark(bench, split, limit)
    store = store or PlanStore()
    store.put_model(loaded.model_id, spec, loaded.family, loaded.model.config.to_dict())
    plan_id = store.put_plan(plan_draft(blueprint)).plan_id
    bench_id = f"{bench_key(bench, image_free, [], placement.key_suffix)}:recovered-{recovered.model_id}"
    key = eval_key(loaded.model_id, plan_id, bench_id, split, limit, scoring, "recovered")

    return stored_score(
        store, key, lambda: score_plan(recovered, pope, sqa, split, None, scoring, image_free, batch_size, progress)
    )
