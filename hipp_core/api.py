"""The Python API: what the CLI, the dashboard, background jobs and benchmarks call, and nothing else does.

A facade: each function validates its inputs at the boundary and calls the library below it (evaluation, the
planning methods, recovery, export, the plan store); no module of the library imports this one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

# What the CLI and the dashboard use besides the functions below, re-exported so that they import nothing but this
# module: errors, the dashboard's view helpers, job submission, the store's record types.
from hipp_core import (
    importance,
    jobs,
    methods,
    status,  # noqa: F401
    ui_links,  # noqa: F401  (what pages keep in their URL)
    validation,
)
from hipp_core.blueprint import Blueprint
from hipp_core.config import (
    set_threads,  # noqa: F401
)
from hipp_core.data import build as data_build
from hipp_core.data.instructions import load_instructions
from hipp_core.data.pope_build import PopeBuildConfig, build_pope  # noqa: F401  (re-exported for the CLI)
from hipp_core.data.source import DataSource
from hipp_core.data.source_params import describe as describe_data  # noqa: F401  (re-exported for the pages)
from hipp_core.data.source_params import from_params as data_source  # noqa: F401
from hipp_core.data.source_params import to_params as data_params  # noqa: F401
from hipp_core.data.world import SPLITS  # noqa: F401
from hipp_core.errors import (
    USER_ERRORS,  # noqa: F401
    HippError,
    json_problem,
)
from hipp_core.evaluation import benchmarks
from hipp_core.evaluation.backends import make_evaluator
from hipp_core.evaluation.engine import EvalResult, Progress
from hipp_core.evaluation.stored import (  # noqa: F401  (re-exported: the API's evaluation functions)
    bench_key,
    evaluate_model,
    evaluate_recovered,
    evaluation_options,
    load_benchmark,
    load_tuning,
    plan_draft,
    score_answers,
)
from hipp_core.export import (
    PLAN_FILE,  # noqa: F401
    check_format,
    check_target,
    copy_export,
    export_pruned,
    load_pruned,
)
from hipp_core.grpo import GRPOConfig, GRPOTrainer, policy_id_for
from hipp_core.job_progress import JobProgress
from hipp_core.job_progress import describe as _describe_progress
from hipp_core.jobs import DATA_KINDS as JOB_DATA_KINDS  # noqa: F401
from hipp_core.jobs import find_jobs  # noqa: F401
from hipp_core.methods import Method, channel_multiple  # noqa: F401  (re-exported)
from hipp_core.models import zoo
from hipp_core.models.device import AUTO, DTYPES, Placement, dtype_runs, resolve, resolve_device
from hipp_core.models.loading import EMBEDDED_ALIASES, checkpoint_dtype, load_model, resolve_spec  # noqa: F401  (re-exported)
from hipp_core.policies import BUNDLED_POLICY, policy_checkpoint_path, policy_record  # noqa: F401  (re-exported)
from hipp_core.policy import Planner
from hipp_core.recover import RecoveryConfig, RecoveryResult, check_recovery_data, instruction_advice, recover_plan
from hipp_core.stock import StockSizes
from hipp_core.stock import stock_sizes as _stock_sizes
from hipp_core.tuning import (  # noqa: F401  (re-exported: calibration and tuning data)
    CALIBRATION_BATCH,
    calibrate_model,
    calibration_batch,
    calibration_questions,
    evaluation_data,
    model_features,
    policy_calibration,
    reward_data,
)
from hipp_core.ui_pareto import (  # noqa: F401
    SPARSITY_TOLERANCE,
    Objective,
    cloud_frame,
    comparison,
    dense_counts,
    dense_job_params,
    dense_point,
    front_mask,
    objectives_for,
    plan_label,
)
from hipp_core.ui_plans import (  # noqa: F401
    brushed_plans,
    filter_plans,
    line_colours,
    parallel_data,
    plans_table,
)
from hipp_core.ui_preference import PreferenceNeighbours, preference_neighbours  # noqa: F401
from hipp_core.ui_state import (  # noqa: F401
    DEFAULT_SPEC,
    EMBEDDED_CHOICES,
    FLOPS_SEQ_LEN,
    LOCAL_CHOICE,
    PREFERENCE_NAMES,
    ModelChoice,
    check_model,
    evaluated_preferences,
    headline,
    kept_grid,
    layer_table,
    mean_yes_ratio,
    nearest_plans,
    plan_size,
    readiness,
    rebalance,
)
from plan_store import JobRecord, PlanRecord, PlanStore, default_store_path  # noqa: F401
from plan_store.records import PolicyRecord


def placement(device: str = AUTO, dtype: str = AUTO) -> Placement:
    """Where models run with these settings, resolved and checked: an absent GPU or a dtype this machine cannot
    compute in is a `HippError` (what the dashboard's Home page shows before storing the choice)."""
    return resolve(device, dtype)


def ensure_data(progress: Progress | None = None, root: Path | None = None, force: bool = False) -> Path:
    """The embedded ShapesWorld benchmark, built on first use (seconds) and cached under `$HIPP_CACHE` (or `root`);
    `force` rebuilds it."""
    return data_build.build(root, force=force, progress=progress)


@dataclass(frozen=True)
class ZooModel:
    arch: str
    path: Path | None  # the checkpoint in use: a retrain in the cache wins over the shipped one; None if missing
    info: dict  # its training record (hipp_train.json): parameters, train_config, seconds, threads_by_run
    trained_now: bool = False

    @property
    def train_seconds(self) -> float | None:
        return zoo.train_seconds(self.info)

    @property
    def train_threads(self) -> list[int]:
        return zoo.train_threads(self.info)


def zoo_status() -> list[ZooModel]:
    """Where each embedded model is loaded from and how it was trained."""
    rows = []
    for arch in zoo.ARCHS:
        used = next((d for d in (zoo.retrained_dir(arch), zoo.shipped_dir(arch)) if (d / "config.json").exists()), None)
        rows.append(ZooModel(arch, used, (zoo.train_info(used) if used else None) or {}))
    return rows


def zoo_build(
    arch: str = "all",
    retrain: bool = False,
    steps: int | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    device: str = AUTO,
) -> list[ZooModel]:
    """Make sure the embedded models exist: the shipped checkpoints, or (`retrain`) a reproducible retrain into
    `$HIPP_CACHE/zoo` that resumes after a kill, on a GPU when one is visible (`device`)."""
    archs = zoo.ARCHS if arch == "all" else (arch,)
    if any(a not in zoo.ARCHS for a in archs):
        raise HippError(f"unknown --arch {arch!r}; use {', '.join(zoo.ARCHS)} or all")
    validation.optional_count(steps, "--steps")
    validation.optional_count(threads, "--threads")
    device = resolve_device(device)  # an unusable device fails here, before anything is built
    rows = []
    for a in archs:
        target = zoo.retrained_dir(a) if retrain else zoo.shipped_dir(a)
        if not retrain and (target / "config.json").exists():
            rows.append(ZooModel(a, target, zoo.train_info(target) or {}))
            continue
        cfg = zoo.recipe(a) if steps is None else replace(zoo.recipe(a), steps=steps)
        info = zoo.train_embedded(a, target, cfg, progress, threads, device)
        rows.append(ZooModel(a, target, info, trained_now=True))
    return rows


def read_plan(path: Path) -> Blueprint:
    """A blueprint JSON file written by `hipp plan ...`, `hipp blueprint -o` or the dashboard."""
    path = Path(path)
    try:
        return Blueprint.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise HippError(f"plan file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise HippError(f"{path} is not valid JSON ({json_problem(exc)})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise HippError(
            f"{path} is not a blueprint ({type(exc).__name__}: {exc}); write one with `hipp plan`"
        ) from None


def list_benchmarks() -> list[benchmarks.Benchmark]:
    """Every registered benchmark, in registry order."""
    return [benchmarks.get(name) for name in benchmarks.names()]


def method_names(kind: str | None = None) -> list[str]:
    """The registered planning methods (`hipp_core.methods`), optionally only one kind: heuristic, search, peer or
    policy."""
    if kind is not None and kind not in methods.KINDS:
        raise HippError(f"unknown method kind {kind!r}; use one of {', '.join(methods.KINDS)}")
    return methods.names(kind)


def baseline_names() -> list[str]:
    """The methods a policy plan is compared against: every registered method but the policy itself."""
    return [name for name in methods.names() if methods.get(name).kind != "policy"]


def criteria() -> dict[str, str]:
    """The registered unit importance criteria (`hipp_core.importance`) and what each scores."""
    return {name: importance.get(name).help for name in importance.names()}


def planning_method(name: str) -> Method:
    """A registered planning method: its help, kind and settings (`options()`); unknown names list the others."""
    return methods.get(name)


def plan_baseline(
    spec: str,
    method: str,
    sparsity: float,
    criterion: str | None = None,
    samples: int = 128,
    n_random: int | None = None,
    seed: int | None = None,
    limit: int | None = None,
    store: PlanStore | None = None,
    progress: Progress | None = None,
    backend: str | None = None,
    backend_options: dict | None = None,
    options: dict | None = None,
    data: DataSource | None = None,
    equal_counts: bool = False,
    device: str = AUTO,
    dtype: str = AUTO,
    batch_size: int = 32,
) -> Blueprint:
    """The blueprint of the registered planning `method` (`method_names()`) at `sparsity`, on the calibration of
    `samples` questions. Its settings come from `options` (the method's config fields; text values are parsed) or
    the keyword shorthands; settings left at None take the method's defaults, and one the method does not take is
    refused. E.g. `random` draws `n_random` Dirichlet(1) allocations (seeded) and keeps the best on the dev split
    of ShapesWorld or of the user's `data` (`limit` questions per set, on the evaluator `backend`); `torch-pruning`
    is the external peer. Calibration and selection read `data` as `calibrate_model` and `train_policy` do.
    `equal_counts` keeps the same unit counts in every layer (stock engines load the plan unpadded), giving up the
    method's allocation; methods with nothing left to decide refuse it. The model runs on `device` in `dtype`, at
    most `batch_size` questions per forward pass (calibration: at most `CALIBRATION_BATCH`)."""
    validation.sparsity(sparsity)
    validation.count(batch_size, "--batch-size")
    chosen = methods.get(method)
    backend_options = {k: v for k, v in (backend_options or {}).items() if v is not None} or None
    shorthands = {"criterion": criterion, "n_random": n_random, "seed": seed, "limit": limit, "backend": backend}
    shorthands["equal_counts"] = equal_counts or None  # asked of a method only when wanted: not every one takes it
    settings = {k: v for k, v in {**shorthands, "backend_options": backend_options}.items() if v is not None}
    config = chosen.configure({**settings, **(options or {})})
    store = store or PlanStore()
    context = _context(spec, store, samples, progress, data, device, dtype, batch_size)
    return chosen.plan(context, sparsity, config)


def _context(
    spec: str,
    store: PlanStore,
    samples: int = 128,
    progress: Progress | None = None,
    data: DataSource | None = None,
    device: str = AUTO,
    dtype: str = AUTO,
    batch_size: int = 32,
) -> methods.ModelContext:
    """What a planning method reads about `spec`: the model (on `device` in `dtype`), its stored calibration on first
    use (`model_features`), and the data plans are selected on (`reward_data`, checked apart from the test files)."""
    calibration = lambda: model_features(
        spec, store, samples, data, progress, calibration_batch(batch_size), device, dtype
    )
    selection = lambda limit: reward_data(spec, data, limit, "the plan-selection questions")[:2]
    return methods.ModelContext(spec, store, calibration, selection, progress, device, dtype, batch_size)


# -- the policy -----------------------------------------------------------------------------------------------------
def planner(
    spec: str,
    store: PlanStore | None = None,
    samples: int = 128,
    with_policy: bool = True,
    data: DataSource | None = None,
    device: str = AUTO,
    dtype: str = AUTO,
    batch_size: int = CALIBRATION_BATCH,
) -> Planner:
    """What blueprints of `spec` need, loaded once: shapes, calibration (computed on first use, on `device` in
    `dtype`, at most `batch_size` questions per forward pass), Wanda unit scores, and the model's most recently
    trained policy if there is one (`planner.trained`). Training a policy asks for none: it brings its own, and a
    stored one that an older version wrote must not stop it. Its calibration comes from `model_features`."""
    validation.count(batch_size, "--batch-size")
    context = _context(spec, store or PlanStore(), samples, None, data, device, dtype, batch_size)
    return methods.policy.planner(context, with_policy)


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
    device: str = AUTO,
    dtype: str = AUTO,
    batch_size: int = 32,
) -> PolicyRecord:
    """Train (or continue training) the preference-conditioned policy of `spec` with plan-level GRPO on dev:
    ShapesWorld `dev` for an embedded model, else the POPE and ScienceQA questions `data` names (refused when they
    share an image or a problem with the test files `data` names; a local checkpoint given no data is refused).
    Rewards are scored on `device` in `dtype` (on Ray: each worker resolves them on its own machine), at most
    `batch_size` questions per forward pass.

    The run is identified by its configuration (iterations aside): rerunning the same command after a kill resumes
    from the last checkpoint, and asking for more iterations continues a finished run. `resume=False` starts over.
    """
    config = config or GRPOConfig()
    overrides = {k: v for k, v in (("iters", iters), ("group_size", group_size)) if v is not None}
    if overrides:
        config = replace(config, **overrides)  # re-validated by __post_init__
    source, split, key = reward_data(spec, data, config.limit, "the reward questions", config.split)
    if source.real:  # the run is then identified by the content of its data, reward and calibration questions
        calibration, _ = calibration_questions(spec, samples, source, resolve(device, dtype).key_suffix)
        config = replace(config, split=split, data=key, calibration=calibration)
    store = store or PlanStore()
    settings = {"device": device, "dtype": dtype}
    plans = planner(
        spec, store, samples, with_policy=False, data=source, batch_size=calibration_batch(batch_size), **settings
    )
    options = {**(backend_options or {}), **settings, "batch_size": batch_size}
    evaluator = make_evaluator(spec, split, config.limit, store, backend, data=source, **options)
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
    equal_counts: bool = False,
    device: str = AUTO,
    dtype: str = AUTO,
) -> Blueprint:
    """The trained policy's blueprint for `preference` (U, R, C); `sparsity` overrides its budget; `equal_counts`
    keeps the same unit counts in every layer (for stock engines, at the cost of the per-layer allocation)."""
    return planner(spec, store, device=device, dtype=dtype).blueprint(preference, sparsity, equal_counts)


# -- recovery -------------------------------------------------------------------------------------------------------


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
    eval_data: DataSource | None = None,
) -> RecoveryResult:
    """LoRA-recover the physically pruned model of `blueprint` on ShapesWorld `train` (or the LLaVA-format
    instruction file `data`), merge, and store it as the plan's `recovered` artifact (an export in the base
    checkpoint's dtype: plain transformers loads it). Returns the pruned and recovered scores on the test data
    `eval_data` names (a `DataSource.report_source`; None: ShapesWorld `test`), `limit` questions per set (None =
    all), `eval_batch_size` per forward pass. Each step trains on `batch_size` ×
    `grad_accum` samples, in `grad_accum` micro-batches of `batch_size`; `grad_checkpointing` trades compute for
    memory. The same (model, plan, steps, rank, data, seed, lr, batch, accumulation, device type and dtype) again
    returns the stored artifact without training; a killed run, rerun, resumes from its last checkpoint."""
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
        eval_data=eval_data,
    )


# -- export ---------------------------------------------------------------------------------------------------------
def export_plan(
    spec: str,
    blueprint: Blueprint,
    out_dir: Path,
    overwrite: bool = False,
    artifact: Path | None = None,
    store: PlanStore | None = None,
    export_format: str = "exact",
    device: str = AUTO,
    dtype: str = AUTO,
) -> Path:
    """Write `blueprint` of `spec` as a checkpoint plain transformers loads: pruned from the dense weights, or, with
    `artifact`, the plan's recovered checkpoint (copied into place, or padded into the `stock` format). Either way
    atomically, in the dtype of `spec`'s own checkpoint, recorded as the plan's `exported` artifact, and the model
    card carries the plan's stored scores. `export_format` is `exact` or `stock` (see `hipp_core.export`); the
    model is loaded on `device` (in `export_load_dtype`)."""
    check_format(export_format)
    store = store or PlanStore()
    if artifact is not None and export_format == "exact":
        copy_export(Path(artifact), Path(out_dir), overwrite)
    else:
        load_dtype = export_load_dtype(spec, device, dtype)
        loaded = load_model(spec, device, load_dtype)
        if blueprint.model_id != loaded.model_id:
            raise HippError(
                f"the plan was made for model {blueprint.model_id}, but {spec} is {loaded.model_id}; "
                "make the plan for this model"
            )
        store.put_model(loaded.model_id, spec, loaded.family, loaded.model.config.to_dict())
        metrics = card_metrics(store, blueprint.plan_id)
        recovered = None if artifact is None else load_pruned(artifact, device, load_dtype).adapter
        export_pruned(
            loaded.adapter,
            blueprint,
            Path(out_dir),
            spec=spec,
            metrics=metrics,
            overwrite=overwrite,
            pruned=recovered,
            export_format=export_format,
        )
    store.put_plan(plan_draft(blueprint))
    store.put_artifact(blueprint.plan_id, "exported", out_dir)
    return Path(out_dir)


def export_load_dtype(spec: str, device: str = AUTO, dtype: str = AUTO) -> str:
    """The dtype to load `spec` in for an export, which is written in the checkpoint's own dtype whatever the model
    computes in. With `dtype` auto that is the checkpoint's dtype too, where the device computes in it (else
    float32), so no weight is rounded on the way: a float32 checkpoint loaded in bfloat16 would be written back as
    rounded float32."""
    if dtype != AUTO:
        return dtype
    stored = str(checkpoint_dtype(resolve_spec(spec))).removeprefix("torch.")  # "None" when there are no weights
    name = stored if stored in DTYPES else "float32"
    return name if dtype_runs(resolve_device(device), name) else "float32"


def disk_size(path: Path) -> int:
    """Bytes of the files under `path` (an export's size on disk)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def stock_sizes(spec: str, blueprint: Blueprint) -> StockSizes:
    """Parameters of the dense model `spec`, of its exactly pruned `blueprint` and of a `stock` export of it: what
    zero padding to one layout gives back of the saving (nothing for equal-count plans). From shapes alone."""
    return _stock_sizes(load_model(spec).adapter, blueprint)


def materialize_plan(
    spec: str, blueprint: Blueprint, store: PlanStore | None = None, device: str = AUTO, dtype: str = AUTO
) -> tuple[Path, bool]:
    """The physically pruned checkpoint of `blueprint`, built once inside the store's folder (in the checkpoint's
    dtype, like an export) and recorded as the plan's `materialized` artifact; the second value says it already
    existed."""
    store = store or PlanStore()
    done = [a for a in store.list_artifacts(blueprint.plan_id) if a.kind == "materialized" and Path(a.path).is_dir()]
    if done:
        return Path(done[0].path), True
    target = store.path.parent / "artifacts" / blueprint.plan_id / "materialized"
    loaded = load_model(spec, device, export_load_dtype(spec, device, dtype))
    store.put_model(loaded.model_id, spec, loaded.family, loaded.model.config.to_dict())
    # overwrite=True only replaces an earlier export of this plan that never got recorded (killed before put_artifact)
    path = export_pruned(loaded.adapter, blueprint, target, spec=spec, overwrite=True)
    store.put_plan(plan_draft(blueprint))
    store.put_artifact(blueprint.plan_id, "materialized", path)
    return path, False


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
    equal_counts: bool = False,
    export_format: str = "exact",
    device: str = AUTO,
    dtype: str = AUTO,
    batch_size: int = 32,
    recover_data: Path | None = None,
) -> PipelineResult:
    """calibrate → policy (trained if the model has none) → blueprint → materialize + LoRA recovery → evaluate on
    test → export, each stage reusing what the store already holds, all on `device` in `dtype`. Calibration and
    rewards read `data` (see `train_policy`); the dense, pruned and recovered models are scored on its test files
    (`DataSource.report_source`; ShapesWorld `test` for ShapesWorld); LoRA trains on the LLaVA-format instruction
    file `recover_data` (None: ShapesWorld `train`, refused for a local checkpoint tuned on its own data).
    `batch_size` bounds every forward pass: scoring's batch, and at most that for calibration and LoRA training
    (their defaults are smaller). The target directory and all data are checked first, so a long run never ends on
    a refusal. `equal_counts` asks the policy for a plan with the same unit counts in every layer; `export_format` is
    `exact` or `stock` (see `hipp_core.export`)."""
    preference = validation.preference(preference)
    if sparsity is not None:
        validation.sparsity(sparsity)
    out_dir = Path(out_dir).expanduser().absolute()
    check_format(export_format)
    check_target(out_dir, overwrite)
    if not out_dir.parent.is_dir():
        raise HippError(f"the parent folder {out_dir.parent} does not exist; create it first or choose another path")
    validation.count(batch_size, "--batch-size")
    reward_data(spec, data, GRPOConfig().limit, "the reward questions")
    test = _pipeline_test_data(spec, data, recover_data, limit)
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

    stage(
        "calibrate",
        lambda: calibrate_model(spec, batch_size=cal_batch, progress=progress, store=store, data=data, **settings),
    )
    plans = planner(spec, store, data=data, batch_size=cal_batch, **settings)
    if not plans.trained:
        train = lambda: train_policy(
            spec, iters, store=store, progress=progress, data=data, batch_size=batch_size, **settings
        )
        stage("train policy", lambda: (train(), False))
        plans = planner(spec, store, data=data, batch_size=cal_batch, **settings)
    else:
        stages.append(("train policy", True, 0.0))
    blueprint = stage("blueprint", lambda: (plans.blueprint(preference, sparsity, equal_counts), False))
    dense = stage(
        "evaluate dense",
        lambda: _cached(
            evaluate_model(
                spec, limit=limit, batch_size=batch_size, store=store, **evaluation_options(test), **settings
            )
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
                recover_data,
                store=store,
                progress=progress,
                limit=limit,
                batch_size=train_batch,
                eval_batch_size=batch_size,
                eval_data=test,
                **settings,
            )
        ),
    )
    export_dir = stage(
        "export",
        lambda: (
            export_plan(spec, blueprint, out_dir, overwrite, recovery.artifact_dir, store, export_format, **settings),
            False,
        ),
    )
    return PipelineResult(blueprint, dense, recovery, export_dir, stages)


def _pipeline_test_data(
    spec: str, data: DataSource | None, recover_data: Path | None, limit: int | None
) -> DataSource | None:
    """The test data a pipeline reports on (None: ShapesWorld `test`), read once to check it, and its instruction
    file checked too: a local checkpoint tuned on its own data is never recovered on ShapesWorld."""
    test = data.report_source() if data is not None else None
    if test is not None:  # refused before any stage; otherwise recovery itself notices a local checkpoint
        check_recovery_data(spec, recover_data, True, instruction_advice("--recover-data"))
    if recover_data is not None:
        load_instructions(recover_data)
    if test is not None:
        load_benchmark("all", evaluation_options(test)["split"], limit, test)
    return test


def _cached(result):
    return result, bool(result.cached)


# -- the store and jobs, for the dashboard --------------------------------------------------------------------------
def open_store(path: str | Path | None = None) -> PlanStore:
    """A handle on the plan store (default `$HIPP_HOME/plans.duckdb`); it holds no connection between calls."""
    return PlanStore(path)


def save_plan(blueprint: Blueprint, store: PlanStore | None = None) -> PlanRecord:
    """Keep a blueprint in the store (a no-op when the same plan is already there)."""
    return (store or PlanStore()).put_plan(plan_draft(blueprint))


def submit_job(kind: str, params: dict, store: PlanStore | None = None) -> str:
    """Validate `params` for a background job of `kind`, record it and start its detached worker; the job id."""
    return jobs.submit(kind, params, store)


def cancel_job(job_id: str, store: PlanStore | None = None) -> JobRecord:
    """Ask a job to stop: a queued one is cancelled at once, a running one at its next progress report."""
    return (store or PlanStore()).request_cancel(job_id)


def job_progress(job: JobRecord) -> JobProgress:
    """A job's overall percentage, phase and category, and time left, as pages show it."""
    return _describe_progress(job.status, job.progress, job.message, job.started_at)


def job_log(job_id: str, store: PlanStore | None = None, lines: int = 40) -> str:
    """The last `lines` lines of a job's log file (its worker's output: a failed job's traceback ends up there)."""
    path = jobs.log_path(store or PlanStore(), job_id)
    if not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 200_000))
        text = f.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
