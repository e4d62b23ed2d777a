"""The Python API: what the CLI and the dashboard call. Each function validates its inputs at the boundary."""

from __future__ import annotations

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
from hipp_core.data.records import PopeItem, SQAItem
from hipp_core.data.source import SHAPESWORLD_KEY, DataSource, data_key, for_model, load_questions, load_tuning
from hipp_core.errors import HippError
from hipp_core.evaluate import EvalResult, Progress, evaluate
from hipp_core.evaluator import make_evaluator
from hipp_core.export import check_target, copy_export, export_pruned
from hipp_core.grpo import GRPOConfig, GRPOTrainer, load_policy, policy_id_for
from hipp_core.models.loading import EMBEDDED_ALIASES, LoadedModel, inspect_checkpoint, load_model, resolve_spec
from hipp_core.peers import torch_pruning_blueprint
from hipp_core.policy import Planner, check_preference, check_sparsity
from hipp_core.prune import check_pruned, masked, materialize
from hipp_core.recover import RecoveryConfig, RecoveryResult, recover_plan
from plan_store import DENSE_PLAN_ID, EvalKey, PlanDraft, PlanStore
from plan_store.records import PolicyRecord


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
    return load_questions(DataSource(pope_dir, pope_images, pope_labels, sqa_dir), bench, split, limit)


def bench_key(bench: str, image_free: bool, data: str) -> str:
    """What the questions were: `data` is their `hipp_core.data.source.data_key` (ShapesWorld by version, real files
    by content)."""
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


def calibrate_model(
    spec: str,
    samples: int = 128,
    batch_size: int = 16,
    progress: Progress | None = None,
    store: PlanStore | None = None,
    data: DataSource | None = None,
) -> tuple[CalibrationFeatures, bool]:
    """Per-layer features of a model, computed once and then read back (second value True).

    They come from ShapesWorld `calib` for an embedded model, else from the POPE questions `data` names (refused
    when it shares an image with `data.test_pope`); a local checkpoint given no data is refused. Samples cycle
    through the POPE categories, so absent-object questions (where hallucination happens) are as common as present
    ones. Stored under the data's `data_key`.
    """
    if not 1 <= samples <= 100_000:
        raise HippError(f"--samples must be between 1 and 100000, got {samples}")
    if batch_size < 1:
        raise HippError(f"batch size must be at least 1, got {batch_size}")
    key, ordered = calibration_questions(spec, samples, data)
    loaded = load_model(spec, attn_implementation="eager")  # attention weights are needed; sdpa returns none
    store = store or PlanStore()
    store.put_model(loaded.model_id, spec, loaded.family, loaded.model.config.to_dict())
    record = store.get_calibration(loaded.model_id, key)
    if record is not None and record.payload_path and Path(record.payload_path).exists():
        return CalibrationFeatures.from_json(json.loads(Path(record.payload_path).read_text())), True
    features = calibrate(loaded.adapter, loaded.model_id, ordered, batch_size, progress)
    path = cache_dir() / "calibration" / f"{loaded.model_id}-{key.replace(':', '-')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    features.save(path)
    store.put_calibration(loaded.model_id, key, payload_path=path)
    return features, False


def calibration_questions(spec: str, samples: int, data: DataSource | None) -> tuple[str, list[PopeItem]]:
    """The store key of `spec`'s calibration on `data` and the questions it reads; no model is loaded."""
    resolve_spec(spec)  # a bad spec fails as such before any question about its data
    source = for_model(data, spec in EMBEDDED_ALIASES, spec, "calibration", ("pope",))
    pope, _ = load_tuning(source, "pope", "calib", None, "the calibration questions")
    ordered = [item for group in zip(*pope.values()) for item in group][:samples]
    return f"pope-calib:{data_key(source, {'calib': ordered}, [])}:n{samples}", ordered


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
    data: DataSource | None = None,
) -> Blueprint:
    """A baseline blueprint at `sparsity`. `random` draws `n_random` Dirichlet(1) allocations (seeded) and keeps
    the best on the dev split (of ShapesWorld, or of the user's `data`) by 0.5·ScienceQA accuracy + 0.5·mean POPE
    balanced accuracy (masked evaluation, on the evaluator `backend`, first best on ties). Calibration and selection
    read `data` as `calibrate_model` and `train_policy` do.
    `torch-pruning` is the external peer (`hipp_core.peers`): the library's own choice at the same sparsity."""
    if not (isinstance(sparsity, float | int) and 0.0 < sparsity < 0.9):
        raise HippError(f"--sparsity must be between 0 and 0.9 (exclusive), got {sparsity}")
    if method == PEER:
        loaded = load_model(spec)
        m = channel_multiple(max(s.intermediate for s in loaded.adapter.layer_shapes()))
        return torch_pruning_blueprint(loaded.adapter, loaded.model_id, loaded.family, sparsity, m)
    if method != "random":
        baseline = baselines.get(method)
    if n_random < 1:
        raise HippError(f"--n-random must be at least 1, got {n_random}")
    if method == "random":  # refuse missing or overlapping selection data before minutes of calibration
        source, split, _ = reward_data(spec, data, limit, "the plan-selection questions")
    store = store or PlanStore()
    features = model_features(spec, store, samples, data)
    loaded = load_model(spec)
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
    evaluator = make_evaluator(spec, split, limit, store, backend, data=source, **(backend_options or {}))
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
    data: DataSource | None = None,
) -> Planner:
    """What blueprints of `spec` need, loaded once: shapes, calibration (computed on first use), Wanda unit scores,
    and the model's most recently trained policy if there is one (`planner.trained`). Training a policy asks for
    none: it brings its own, and a stored one that an older version wrote must not stop it.

    Its calibration comes from `model_features`."""
    store = store or PlanStore()
    features = model_features(spec, store, samples, data)
    loaded = load_model(spec)
    record = policy_record(loaded.model_id, loaded.path, store) if with_policy else None
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
    if record is not None and record.checkpoint_path:
        result.policy, _ = load_policy(Path(record.checkpoint_path))
        result.policy_id = record.policy_id
    return result


def model_features(
    spec: str, store: PlanStore, samples: int = 128, data: DataSource | None = None
) -> CalibrationFeatures:
    """The calibration blueprints of `spec` build on: on `data` when given, ShapesWorld for an embedded model, and
    for a local checkpoint given no data the one its trained policy was trained on (refused when it has none)."""
    if spec not in EMBEDDED_ALIASES and not (data and (data.real or data.shapesworld)):
        loaded = load_model(spec)
        record = policy_record(loaded.model_id, loaded.path, store)
        if record is not None:
            return policy_calibration(spec, record, store)
    return calibrate_model(spec, samples, store=store, data=data)[0]


def policy_calibration(spec: str, record: PolicyRecord, store: PlanStore) -> CalibrationFeatures:
    """The calibration a policy was trained on (its config names it; none named: ShapesWorld, asked for by name)."""
    key = record.config.get("calibration", "")
    if not key:
        return calibrate_model(spec, store=store, data=DataSource(shapesworld=True))[0]
    stored = store.get_calibration(record.model_id, key)
    if stored is None or not stored.payload_path or not Path(stored.payload_path).exists():
        raise HippError(
            f"the calibration policy {record.policy_id} was trained on ({key}) is no longer stored; pass the data "
            "options it was trained with (--pope-dir ...) to calibrate again"
        )
    return CalibrationFeatures.from_json(json.loads(Path(stored.payload_path).read_text()))


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
    data: DataSource | None = None,
    samples: int = 128,
) -> PolicyRecord:
    """Train (or continue training) the preference-conditioned policy of `spec` with plan-level GRPO on dev:
    ShapesWorld `dev` for an embedded model, else the POPE and ScienceQA questions `data` names (refused when they
    share an image or a problem with the test files `data` names; a local checkpoint given no data is refused).

    The run is identified by its configuration (iterations aside): rerunning the same command after a kill resumes
    from the last checkpoint, and asking for more iterations continues a finished run. `resume=False` starts over.
    """
    config = config or GRPOConfig()
    overrides = {k: v for k, v in (("iters", iters), ("group_size", group_size)) if v is not None}
    if overrides:
        config = replace(config, **overrides)  # re-validated by __post_init__
    source, split, key = reward_data(spec, data, config.limit, "the reward questions", config.split)
    if source.real:  # the run is then identified by the content of its data, reward and calibration questions
        calibration, _ = calibration_questions(spec, samples, source)
        config = replace(config, split=split, data=key, calibration=calibration)
    store = store or PlanStore()
    plans = planner(spec, store, samples, with_policy=False, data=source)
    evaluator = make_evaluator(spec, split, config.limit, store, backend, data=source, **(backend_options or {}))
    checkpoint = policy_checkpoint_path(policy_id_for(plans.model_id, config))
    trainer = GRPOTrainer(plans, evaluator, store, config, checkpoint, progress)
    try:
        if resume:
            trainer.resume()
        trainer.run()
    finally:
        evaluator.close()
    return store.get_policy(trainer.policy_id)


def reward_data(
    spec: str, data: DataSource | None, limit: int | None, what: str, split: str = "dev"
) -> tuple[DataSource, str, str]:
    """The data plans of `spec` are rewarded on, the split read (the user's ScienceQA split, else ShapesWorld's
    `split`) and its `data_key`, checked apart from the test files before any model is loaded."""
    resolve_spec(spec)
    source = for_model(data, spec in EMBEDDED_ALIASES, spec, "rewards", ("pope", "sqa"))
    if not source.real:
        return source, split, SHAPESWORLD_KEY
    split = source.tuning_split
    pope, sqa = load_tuning(source, "all", split, limit, what)
    return source, split, data_key(source, pope, sqa)


def policy_blueprint(
    spec: str, preference: Sequence[float], sparsity: float | None = None, store: PlanStore | None = None
) -> Blueprint:
    """The trained policy's blueprint for `preference` (U, R, C); `sparsity` overrides its budget."""
    return planner(spec, store).blueprint(preference, sparsity)


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
) -> RecoveryResult:
    """LoRA-recover the physically pruned model of `blueprint` on ShapesWorld `train` (or the LLaVA-format
    instruction file `data`), merge, and store it as the plan's `recovered` artifact (an export: plain transformers
    loads it). Returns the pruned and recovered scores on the test split (`limit` questions per set, None = all).
    The same (model, plan, steps, rank, data, seed, lr) again returns the stored artifact without training; a killed
    run, rerun, resumes from its last checkpoint."""
    config = RecoveryConfig(steps=steps, rank=rank, lr=lr, seed=seed)
    return recover_plan(spec, blueprint, config, Path(data) if data else None, store, progress, limit)


# -- export ---------------------------------------------------------------------------------------------------------
def export_plan(
    spec: str,
    blueprint: Blueprint,
    out_dir: Path,
    overwrite: bool = False,
    artifact: Path | None = None,
    store: PlanStore | None = None,
) -> Path:
    """Write `blueprint` of `spec` as a checkpoint plain transformers loads: pruned from the dense weights, or, with
    `artifact`, the plan's recovered checkpoint copied into place. Either way atomically, recorded as the plan's
    `exported` artifact, and the model card carries the plan's stored scores."""
    store = store or PlanStore()
    if artifact is not None:
        copy_export(Path(artifact), Path(out_dir), overwrite)
    else:
        loaded = load_model(spec)
        metrics = card_metrics(store, blueprint.plan_id)
        export_pruned(loaded.adapter, blueprint, Path(out_dir), spec=spec, metrics=metrics, overwrite=overwrite)
    store.put_plan(plan_draft(blueprint))
    store.put_artifact(blueprint.plan_id, "exported", out_dir)
    return Path(out_dir)


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
    data: DataSource | None = None,
) -> PipelineResult:
    """calibrate → policy (trained if the model has none) → blueprint → materialize + LoRA recovery → evaluate on
    test → export, each stage reusing what the store already holds. Calibration and rewards read `data` (see
    `train_policy`). The target directory and the data are checked first, so a long run never ends on a refusal."""
    preference = check_preference(preference)
    if sparsity is not None:
        check_sparsity(sparsity)
    out_dir = Path(out_dir).expanduser().absolute()
    check_target(out_dir, overwrite)
    if not out_dir.parent.is_dir():
        raise HippError(f"the parent folder {out_dir.parent} does not exist; create it first or choose another path")
    reward_data(spec, data, GRPOConfig().limit, "the reward questions")
    store = store or PlanStore()
    stages: list[tuple[str, bool, float]] = []

    def stage(name: str, fn):
        t0 = time.perf_counter()
        value, reused = fn()
        stages.append((name, reused, time.perf_counter() - t0))
        return value

    stage("calibrate", lambda: calibrate_model(spec, progress=progress, store=store, data=data))
    plans = planner(spec, store, data=data)
    if not plans.trained:
        stage("train policy", lambda: (train_policy(spec, iters, store=store, progress=progress, data=data), False))
        plans = planner(spec, store, data=data)
    else:
        stages.append(("train policy", True, 0.0))
    blueprint = stage("blueprint", lambda: (plans.blueprint(preference, sparsity), False))
    dense = stage("evaluate dense", lambda: _cached(evaluate_model(spec, split="test", limit=limit, store=store)))
    recovery = stage(
        "materialize + recover + evaluate",
        lambda: _cached(recover(spec, blueprint, steps, rank, store=store, progress=progress, limit=limit)),
    )
    export_dir = stage(
        "export", lambda: (export_plan(spec, blueprint, out_dir, overwrite, recovery.artifact_dir, store), False)
    )
    return PipelineResult(blueprint, dense, recovery, export_dir, stages)


def _cached(result):
    return result, bool(result.cached)
