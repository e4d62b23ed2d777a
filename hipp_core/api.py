"""The Python API: what the CLI and the dashboard call. Each function validates its inputs at the boundary."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from hipp_core import baselines
from hipp_core.blueprint import Blueprint, make_blueprint, validate
from hipp_core.calibrate import CalibrationFeatures, calibrate
from hipp_core.config import cache_dir
from hipp_core.data import build as data_build
from hipp_core.data.pope import load_pope, load_pope_dir
from hipp_core.data.records import PopeItem, SQAItem
from hipp_core.data.sqa import load_sqa
from hipp_core.data.world import SPLITS
from hipp_core.errors import HippError
from hipp_core.evaluate import BENCHES, EvalResult, Progress, evaluate
from hipp_core.models.loading import load_model
from hipp_core.prune import masked, materialize
from plan_store import DENSE_PLAN_ID, EvalKey, PlanDraft, PlanStore


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


def bench_key(bench: str, image_free: bool, paths: list[Path | None]) -> str:
    """What the questions were: ShapesWorld by version, or real files by path and modification time."""
    given = [Path(p).expanduser().absolute() for p in paths if p is not None]
    if given:
        stamp = "|".join(f"{p}:{p.stat().st_mtime_ns if p.exists() else 0}" for p in given)
        source = "files-" + hashlib.sha256(stamp.encode()).hexdigest()[:12]
    else:
        source = f"shapesworld-v{data_build.VERSION}"
    return f"{bench}:{source}:{'with-image-free' if image_free else 'no-image-free'}"


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
        if blueprint.model_id != loaded.model_id:
            raise HippError(f"the plan was made for model {blueprint.model_id}, not {spec} ({loaded.model_id})")
        validate(blueprint, loaded.adapter.layer_shapes(), loaded.model_id)
        draft = PlanDraft(
            loaded.model_id, blueprint.to_json(), blueprint.source, blueprint.achieved, blueprint.preference
        )
        plan_id = store.put_plan(draft).plan_id
    key = EvalKey(
        model_id=loaded.model_id,
        plan_id=plan_id,
        bench=bench_key(bench, image_free, [pope_dir, sqa_dir, pope_images, pope_labels]),
        split=split,
        mode="dense" if blueprint is None else mode,
        scoring=scoring,
        limit=limit,
    )

    def compute() -> tuple[dict[str, float], int]:
        def run(adapter) -> EvalResult:
            return evaluate(adapter, loaded.model_id, pope, sqa, split, scoring, image_free, batch_size, progress)

        if blueprint is None:
            result = run(loaded.adapter)
        elif mode == "masked":
            with masked(loaded.adapter, blueprint):
                result = run(loaded.adapter)
        else:
            result = run(materialize(loaded.adapter, blueprint))
        return result.to_metrics(), result.questions

    record, cached = store.get_or_compute_evaluation(key, compute)
    return EvalResult.from_metrics(loaded.model_id, split, scoring, record.metrics, record.seconds, cached)


def calibrate_model(
    spec: str,
    samples: int = 128,
    batch_size: int = 16,
    progress: Progress | None = None,
    store: PlanStore | None = None,
) -> tuple[CalibrationFeatures, bool]:
    """Per-layer features of a model on ShapesWorld `calib`, computed once and then read back (second value True).

    Samples cycle through the POPE categories of the calib split, so absent-object questions (where
    hallucination happens) are as common as present ones.
    """
    if not 1 <= samples <= 100_000:
        raise HippError(f"--samples must be between 1 and 100000, got {samples}")
    if batch_size < 1:
        raise HippError(f"batch size must be at least 1, got {batch_size}")
    loaded = load_model(spec, attn_implementation="eager")  # attention weights are needed; sdpa returns none
    store = store or PlanStore()
    store.put_model(loaded.model_id, spec, loaded.family, loaded.model.config.to_dict())
    key = f"pope-calib:shapesworld-v{data_build.VERSION}:n{samples}"
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
) -> Blueprint:
    """A baseline blueprint at `sparsity`. `random` draws `n_random` Dirichlet(1) allocations (seeded) and keeps
    the best on the dev split by 0.5·ScienceQA accuracy + 0.5·mean POPE balanced accuracy (masked evaluation)."""
    if not (isinstance(sparsity, float | int) and 0.0 < sparsity < 0.9):
        raise HippError(f"--sparsity must be between 0 and 0.9 (exclusive), got {sparsity}")
    if method != "random":
        baseline = baselines.get(method)
    if n_random < 1:
        raise HippError(f"--n-random must be at least 1, got {n_random}")
    store = store or PlanStore()
    features, _ = calibrate_model(spec, samples, store=store)
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
    best, best_score = None, -1.0
    for alpha in baselines.random_allocations(len(shapes), n_random, seed):
        candidate = blueprint_for(alpha)
        result = evaluate_model(
            spec, "all", "dev", limit, image_free=False, store=store, blueprint=candidate, progress=progress
        )
        score = 0.5 * result.sqa.accuracy + 0.5 * result.pope_balanced_accuracy
        if score > best_score:
            best, best_score = candidate, score
    return best
