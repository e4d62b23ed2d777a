"""The Python API: what the CLI and the dashboard call. Each function validates its inputs at the boundary."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from hipp_core import baselines
from hipp_core.blueprint import Blueprint, LayerShape, make_blueprint, validate
from hipp_core.calibrate import CalibrationFeatures, calibrate
from hipp_core.config import cache_dir, home_dir
from hipp_core.data import build as data_build
from hipp_core.data.pope import load_pope, load_pope_dir
from hipp_core.data.records import PopeItem, SQAItem
from hipp_core.data.sqa import load_sqa
from hipp_core.data.world import SPLITS
from hipp_core.errors import HippError
from hipp_core.evaluate import BENCHES, EvalResult, Progress, evaluate
from hipp_core.evaluator import make_evaluator
from hipp_core.export import check_target, copy_export, export_pruned
from hipp_core.grpo import GRPOConfig, GRPOTrainer, load_policy, policy_id_for
from hipp_core.models.device import AUTO, Placement, dtype_runs, resolve, resolve_device
from hipp_core.models.loading import LoadedModel, checkpoint_dtype, inspect_checkpoint, load_model, resolve_spec
from hipp_core.peers import torch_pruning_blueprint
from hipp_core.policy import Planner, check_preference, check_sparsity
from hipp_core.prune import check_pruned, masked, materialize
from hipp_core.recover import RecoveryConfig, RecoveryResult, recover_plan
from plan_store import DENSE_PLAN_ID, EvalKey, PlanDraft, PlanStore
from plan_store.records import PolicyRecord


def placement(device: str = AUTO, dtype: str = AUTO) -> Placement:
    """Where models run with these settings, resolved and checked: an absent GPU or a dtype this machine cannot
    compute in is a `HippError` (what the dashboard's Home page shows before storing the choice)."""
    return resolve(device, dtype)


def ensure_data(progress: Progress | None = None) -> Path:
    """The embedded ShapesWorld benchmark, built on first use (seconds) and cached under `$HIPP_CACHE`."""
    return data_build.build(progress=progress)


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
    root = ensure_data() if embedded else Path()
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


CALIBRATION_BATCH = 16  # calibration keeps every layer's attention maps: the default batch is half scoring's


def calibrate_model(
    spec: str,
    samples: int = 128,
    batch_size: int = CALIBRATION_BATCH,
    progress: Progress | None = None,
    store: PlanStore | None = None,
    device: str = AUTO,
    dtype: str = AUTO,
) -> tuple[CalibrationFeatures, bool]:
    """Per-layer features of a model on ShapesWorld `calib`, computed once and then read back (second value True).

    Samples cycle through the POPE categories of the calib split, so absent-object questions (where
    hallucination happens) are as common as present ones. The model is the one every other command of this process
    uses (`load_model(spec, device, dtype)`), switched to eager attention while calibrating.
    """
    if not 1 <= samples <= 100_000:
        raise HippError(f"--samples must be between 1 and 100000, got {samples}")
    if batch_size < 1:
        raise HippError(f"batch size must be at least 1, got {batch_size}")
    loaded = load_model(spec, device, dtype)
    store = store or PlanStore()
    store.put_model(loaded.model_id, spec, loaded.family, loaded.model.config.to_dict())
    key = f"pope-calib:shapesworld-v{data_build.VERSION}:n{samples}{loaded.placement.key_suffix}"
    record = store.get_calibration(loaded.model_id, key)
    if record is not None and record.payload_path and Path(record.payload_path).exists():
        return CalibrationFeatures.from_json(json.loads(Path(record.payload_path).read_text())), True
    pope, _ = load_benchmark("pope", "calib")
    ordered = [item for group in zip(*pope.values()) for item in group][:samples]
    features = calibrate(loaded.adapter, loaded.model_id, ordered, batch_size, progress)
    path = cache_dir() / "calibration" / f"{loaded.model_id}-{key.replace(':', '-')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    features.save(path)
    store.put_calibration(loaded.model_id, key, payload_path=path)
    return features, False


def channel_multiple(intermediate: int) -> int:
    """MLP widths are kept in multiples of 64 at real scale (matmul-friendly), of 8 for the embedded models."""
    return 64 if intermediate >= 4096 else 8


PEER = "torch-pruning"  # the external peer, offered beside the heuristics wherever a baseline method is named


def plan_baseline(
    spec: str,
    method: str,
    sparsity: float,
    criterion: str | None = None,
    samples: int = 128,
    n_random: int = 8,
    seed: int = 0,
    limit: int = 100,
    store: PlanStore | None = None,
    progress: Progress | None = None,
    backend: str = "local",
    backend_options: dict | None = None,
    device: str = AUTO,
    dtype: str = AUTO,
    batch_size: int = 32,
) -> Blueprint:
    """A baseline blueprint at `sparsity`. `random` draws `n_random` Dirichlet(1) allocations (seeded) and keeps
    the best on the dev split by 0.5·ScienceQA accuracy + 0.5·mean POPE balanced accuracy (masked evaluation, on
    the evaluator `backend`, first best on ties).
    `torch-pruning` is the external peer (`hipp_core.peers`): the library's own choice at the same sparsity.
    `batch_size` is the most questions per forward pass, of scoring and (at most `CALIBRATION_BATCH`) calibration."""
    if not (isinstance(sparsity, float | int) and 0.0 < sparsity < 0.9):
        raise HippError(f"--sparsity must be between 0 and 0.9 (exclusive), got {sparsity}")
    settings = {"device": device, "dtype": dtype}
    if method == PEER:
        loaded = load_model(spec, **settings)
        m = channel_multiple(max(s.intermediate for s in loaded.adapter.layer_shapes()))
        return torch_pruning_blueprint(loaded.adapter, loaded.model_id, loaded.family, sparsity, m)
    if method != "random":
        baseline = baselines.get(method)
    if n_random < 1:
        raise HippError(f"--n-random must be at least 1, got {n_random}")
    check_batch_size(batch_size)
    store = store or PlanStore()
    features, _ = calibrate_model(spec, samples, calibration_batch(batch_size), store=store, **settings)
    loaded = load_model(spec, **settings)
    shapes = loaded.adapter.layer_shapes()
    m = channel_multiple(max(s.intermediate for s in shapes))
    criterion = criterion or ("wanda" if method == "random" else baseline.criterion)
    scores = baselines.unit_scores(features, criterion)

    def blueprint_for(alpha) -> Blueprint:
        return make_blueprint(
            loaded.model_id, loaded.family, shapes, sparsity, alpha, scores, m, source="baseline", criterion=criterion
        )

    if method != "random":
        return blueprint_for(baseline.allocate(features, sparsity))
    candidates = [blueprint_for(alpha) for alpha in baselines.random_allocations(len(shapes), n_random, seed)]
    options = {**(backend_options or {}), **settings, "batch_size": batch_size}
    evaluator = make_evaluator(spec, "dev", limit, store, backend, **options)
    try:
        results = evaluator.evaluate(candidates, progress)
    finally:
        evaluator.close()
    score = [0.5 * r.sqa.accuracy + 0.5 * r.pope_balanced_accuracy for r in results]
    return candidates[score.index(max(score))]


BUNDLED_POLICY = "hipp_policy.pt"


# -- the policy -----------------------------------------------------------------------------------------------------
def planner(
    spec: str,
    store: PlanStore | None = None,
    samples: int = 128,
    with_policy: bool = True,
    device: str = AUTO,
    dtype: str = AUTO,
    batch_size: int = CALIBRATION_BATCH,
) -> Planner:
    """What blueprints of `spec` need, loaded once: shapes, calibration (computed on first use, on `device` in
    `dtype`, at most `batch_size` questions per forward pass), Wanda unit scores, and the model's most recently
    trained policy if there is one (`planner.trained`). Training a policy asks for none: it brings its own, and a
    stored one that an older version wrote must not stop it."""
    check_batch_size(batch_size)
    store = store or PlanStore()
    features, _ = calibrate_model(spec, samples, calibration_batch(batch_size), store=store, device=device, dtype=dtype)
    loaded = load_model(spec, device, dtype)
    shapes = loaded.adapter.layer_shapes()
    result = Planner(
        spec=spec,
        model_id=loaded.model_id,
        family=loaded.family,
        shapes=shapes,
        features=features,
        scores=baselines.unit_scores(features, "wanda"),
        m=channel_multiple(max(s.intermediate for s in shapes)),
    )
    record = policy_record(loaded.model_id, loaded.path, store) if with_policy else None
    if record is not None and record.checkpoint_path:
        result.policy, _ = load_policy(Path(record.checkpoint_path))
        result.policy_id = record.policy_id
    return result


def policy_record(model_id: str, path: Path, store: PlanStore) -> PolicyRecord | None:
    """The policy blueprints of this model come from: the most recently trained one in the store, else a policy
    shipped inside the checkpoint directory (`hipp_policy.pt`, as the embedded models have) that was trained for
    exactly these weights, registered in the store on first use. No model is loaded."""
    record = store.latest_policy(model_id)
    bundled = Path(path) / BUNDLED_POLICY
    if record is not None or not bundled.exists():
        return record
    _, ckpt = load_policy(bundled)
    if ckpt.get("model_id") != model_id:
        return None
    if store.get_model(model_id) is None:  # the store may not have met this model yet
        config = json.loads((Path(path) / "config.json").read_text())
        store.put_model(model_id, str(path), inspect_checkpoint(Path(path)), config)
    config = json.loads(ckpt["config"])
    curve = json.loads(ckpt["state"])["curve"]
    return store.put_policy(policy_id_for(model_id, GRPOConfig.from_json(config)), model_id, config, bundled, curve)


def policy_checkpoint_path(policy_id: str) -> Path:
    """Trained policies are user state (they cost evaluations), so they live beside the store, not in the cache."""
    return home_dir() / "policies" / f"{policy_id}.pt"


def train_policy(
    spec: str,
    iters: int | None = None,
    group_size: int | None = None,
    resume: bool = True,
    config: GRPOConfig | None = None,
    backend: str = "local",
    backend_options: dict | None = None,
    store: PlanStore | None = None,
    progress: Progress | None = None,
    device: str = AUTO,
    dtype: str = AUTO,
    batch_size: int = 32,
) -> PolicyRecord:
    """Train (or continue training) the preference-conditioned policy of `spec` with plan-level GRPO on dev, its
    rewards scored on `device` in `dtype` (on Ray: each worker resolves them on its own machine), at most
    `batch_size` questions per forward pass.

    The run is identified by its configuration (iterations aside): rerunning the same command after a kill resumes
    from the last checkpoint, and asking for more iterations continues a finished run. `resume=False` starts over.
    """
    config = config or GRPOConfig()
    overrides = {k: v for k, v in (("iters", iters), ("group_size", group_size)) if v is not None}
    if overrides:
        config = replace(config, **overrides)  # re-validated by __post_init__
    store = store or PlanStore()
    settings = {"device": device, "dtype": dtype}
    plans = planner(spec, store, with_policy=False, batch_size=calibration_batch(batch_size), **settings)
    options = {**(backend_options or {}), **settings, "batch_size": batch_size}
    evaluator = make_evaluator(spec, config.split, config.limit, store, backend, **options)
    checkpoint = policy_checkpoint_path(policy_id_for(plans.model_id, config))
    trainer = GRPOTrainer(plans, evaluator, store, config, checkpoint, progress)
    try:
        if resume:
            trainer.resume()
        trainer.run()
    finally:
        evaluator.close()
    return store.get_policy(trainer.policy_id)


def policy_blueprint(
    spec: str,
    preference: Sequence[float],
    sparsity: float | None = None,
    store: PlanStore | None = None,
    device: str = AUTO,
    dtype: str = AUTO,
) -> Blueprint:
    """The trained policy's blueprint for `preference` (U, R, C); `sparsity` overrides its budget."""
    return planner(spec, store, device=device, dtype=dtype).blueprint(preference, sparsity)


def check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise HippError(f"--batch-size must be a whole number of at least 1, got {batch_size!r}")


def calibration_batch(batch_size: int) -> int:
    """Calibration's batch inside a command whose `--batch-size` bounds every forward pass: the calibration default,
    or less when the user asked for less (a smaller GPU)."""
    return min(CALIBRATION_BATCH, batch_size)


# -- recovery -------------------------------------------------------------------------------------------------------


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


def recover(
    spec: str,
    blueprint: Blueprint,
    steps: int = 300,
    rank: int = 8,
    data: Path | None = None,
    seed: int = 0,
    lr: float = 2e-3,
    store: PlanStore | None = None,
    progress: Progress | None = None,
    limit: int | None = None,
    batch_size: int = RecoveryConfig.batch_size,
    grad_accum: int = 1,
    grad_checkpointing: bool = False,
    device: str = AUTO,
    dtype: str = AUTO,
    eval_batch_size: int = 32,
) -> RecoveryResult:
    """LoRA-recover the physically pruned model of `blueprint` on ShapesWorld `train` (or the LLaVA-format
    instruction file `data`), merge, and store it as the plan's `recovered` artifact (an export in the base
    checkpoint's dtype: plain transformers loads it). Returns the pruned and recovered scores on the test split
    (`limit` questions per set, None = all; `eval_batch_size` per forward pass). Each step trains on `batch_size` × `grad_accum` samples, `grad_accum`
    micro-batches of `batch_size`; `grad_checkpointing` trades compute for memory. The same (model, plan, steps,
    rank, data, seed, lr, batch, accumulation, device type and dtype) again returns the stored artifact without
    training; a killed run, rerun, resumes from its last checkpoint."""
    config = RecoveryConfig(
        steps=steps,
        rank=rank,
        lr=lr,
        seed=seed,
        batch_size=batch_size,
        grad_accum=grad_accum,
        grad_checkpointing=grad_checkpointing,
    )
    data = Path(data) if data else None
    return recover_plan(
        spec,
        blueprint,
        config,
        data,
        store,
        progress,
        limit,
        device=device,
        dtype=dtype,
        eval_batch_size=eval_batch_size,
    )


# -- export ---------------------------------------------------------------------------------------------------------
def export_plan(
    spec: str,
    blueprint: Blueprint,
    out_dir: Path,
    overwrite: bool = False,
    artifact: Path | None = None,
    store: PlanStore | None = None,
    device: str = AUTO,
    dtype: str = AUTO,
) -> Path:
    """Write `blueprint` of `spec` as a checkpoint plain transformers loads: pruned from the dense weights, or, with
    `artifact`, the plan's recovered checkpoint copied into place. Either way atomically, in the dtype of `spec`'s
    own checkpoint (`export_dtypes`), recorded as the plan's `exported` artifact, and the model card carries the
    plan's stored scores."""
    store = store or PlanStore()
    if artifact is not None:
        copy_export(Path(artifact), Path(out_dir), overwrite)
    else:
        load_dtype, written = export_dtypes(spec, device, dtype)
        loaded = load_model(spec, device, load_dtype)
        metrics = card_metrics(store, blueprint.plan_id)
        export_pruned(
            loaded.adapter, blueprint, Path(out_dir), spec=spec, metrics=metrics, overwrite=overwrite, dtype=written
        )
    store.put_plan(plan_draft(blueprint))
    store.put_artifact(blueprint.plan_id, "exported", out_dir)
    return Path(out_dir)


def export_dtypes(spec: str, device: str = AUTO, dtype: str = AUTO) -> tuple[str, str]:
    """(dtype to load `spec` in, dtype to write) for an export. The weights are written in the checkpoint's own dtype,
    so a bfloat16 checkpoint does not come back as float32 at twice its size. With `dtype` auto the model is also
    loaded in that dtype, where the device computes in it, so no weight is rounded on the way (a float32
    checkpoint loaded in bfloat16 would be written back as rounded float32)."""
    written = checkpoint_dtype(resolve_spec(spec))
    if dtype != AUTO:
        return dtype, written
    return (written if dtype_runs(resolve_device(device), written) else "float32"), written


def disk_size(path: Path) -> int:
    """Bytes of the files under `path` (an export's size on disk)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def card_metrics(store: PlanStore, plan_id: str) -> dict[str, float] | None:
    """The plan's headline scores for the model card, from its largest stored evaluation per split."""
    best: dict[str, tuple] = {}
    for ev in store.plan_evaluations(plan_id):
        if ev.key.mode in ("masked", "physical") and ev.sample_count >= best.get(ev.key.split, (0, None))[0]:
            best[ev.key.split] = (ev.sample_count, ev)
    metrics = {}
    for split, (_, ev) in sorted(best.items()):
        for name in ("pope_balanced_accuracy", "sqa.accuracy"):
            if name in ev.metrics:
                metrics[f"{split} {name} (n={ev.sample_count})"] = float(ev.metrics[name])
    return metrics or None


# -- the whole pipeline ---------------------------------------------------------------------------------------------
@dataclass
class PipelineResult:
    blueprint: Blueprint
    dense: EvalResult  # test split, same questions as the rest
    recovery: RecoveryResult  # pruned (physically) and recovered scores on test, and the recovered checkpoint
    export_dir: Path
    stages: list[tuple[str, bool, float]]  # (stage, reused from the store, seconds)


def pipeline(
    spec: str,
    preference: Sequence[float],
    sparsity: float | None,
    out_dir: Path,
    steps: int = 300,
    rank: int = 8,
    iters: int | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    store: PlanStore | None = None,
    progress: Progress | None = None,
    device: str = AUTO,
    dtype: str = AUTO,
    batch_size: int = 32,
) -> PipelineResult:
    """calibrate → policy (trained if the model has none) → blueprint → materialize + LoRA recovery → evaluate on
    test → export, each stage reusing what the store already holds, all on `device` in `dtype`. `batch_size` bounds
    every forward pass: scoring's batch, and at most that for calibration and LoRA training (their defaults are
    smaller). The target directory is checked first, so a long run never ends on a refused path."""
    preference = check_preference(preference)
    if sparsity is not None:
        check_sparsity(sparsity)
    out_dir = Path(out_dir).expanduser().absolute()
    check_target(out_dir, overwrite)
    if not out_dir.parent.is_dir():
        raise HippError(f"the parent folder {out_dir.parent} does not exist; create it first or choose another path")
    check_batch_size(batch_size)
    store = store or PlanStore()
    stages: list[tuple[str, bool, float]] = []
    settings = {"device": device, "dtype": dtype}
    cal_batch = calibration_batch(batch_size)
    train_batch = min(RecoveryConfig.batch_size, batch_size)

    def stage(name: str, fn):
        t0 = time.perf_counter()
        value, reused = fn()
        stages.append((name, reused, time.perf_counter() - t0))
        return value

    stage("calibrate", lambda: calibrate_model(spec, batch_size=cal_batch, progress=progress, store=store, **settings))
    plans = planner(spec, store, batch_size=cal_batch, **settings)
    if not plans.trained:
        train = lambda: train_policy(spec, iters, store=store, progress=progress, batch_size=batch_size, **settings)
        stage("train policy", lambda: (train(), False))
        plans = planner(spec, store, batch_size=cal_batch, **settings)
    else:
        stages.append(("train policy", True, 0.0))
    blueprint = stage("blueprint", lambda: (plans.blueprint(preference, sparsity), False))
    dense = stage(
        "evaluate dense",
        lambda: _cached(
            evaluate_model(spec, split="test", limit=limit, batch_size=batch_size, store=store, **settings)
        ),
    )
    recovery = stage(
        "materialize + recover + evaluate",
        lambda: _cached(
            recover(
                spec,
                blueprint,
                steps,
                rank,
                store=store,
                progress=progress,
                limit=limit,
                batch_size=train_batch,
                eval_batch_size=batch_size,
                **settings,
            )
        ),
    )
    export_dir = stage(
        "export",
        lambda: (export_plan(spec, blueprint, out_dir, overwrite, recovery.artifact_dir, store, **settings), False),
    )
    return PipelineResult(blueprint, dense, recovery, export_dir, stages)


def _cached(result):
    return result, bool(result.cached)
