"""What is ready on this machine: embedded models, the benchmark, where state lives. Read by Home and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hipp_core.config import cache_dir, home_dir
from hipp_core.data.build import default_root, is_built
from hipp_core.models.zoo import ARCHS, retrained_dir, shipped_dir, train_info


@dataclass(frozen=True)
class ModelStatus:
    spec: str
    path: Path | None  # None when neither a retrained nor a shipped checkpoint exists
    origin: str  # "retrained", "shipped" or "missing"
    parameters: int | None
    train_steps: int | None


def embedded_models() -> list[ModelStatus]:
    rows = []
    for arch in ARCHS:
        spec = f"embedded:{arch}"
        for origin, path in (("retrained", retrained_dir(arch)), ("shipped", shipped_dir(arch))):
            if (path / "config.json").exists():
                info = train_info(path) or {}
                steps = info.get("train_config", {}).get("steps")
                rows.append(ModelStatus(spec, path, origin, info.get("parameters"), steps))
                break
        else:
            rows.append(ModelStatus(spec, None, "missing", None, None))
    return rows


def stored_test_scores(path: Path) -> dict[str, float] | None:
    """The model's full ShapesWorld test evaluation if the plan store already holds it (nothing is computed)."""
    from hipp_core.evaluation.stored import bench_key
    from hipp_core.models.loading import checkpoint_id
    from plan_store import DENSE_PLAN_ID, EvalKey, PlanStore

    key = EvalKey(checkpoint_id(path), DENSE_PLAN_ID, bench_key("all", True), "test", "dense", "logits", None)
    record = PlanStore().get_evaluation(key)
    return record.metrics if record else None


def benchmark_ready() -> bool:
    return is_built(default_root())


def locations() -> dict[str, Path]:
    return {"cache ($HIPP_CACHE)": cache_dir(), "state ($HIPP_HOME)": home_dir(), "benchmark": default_root()}
