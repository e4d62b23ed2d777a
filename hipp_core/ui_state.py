"""What the dashboard pages compute before drawing: model choice, readiness, preference sliders, plan tables, the
Pareto cloud. Plain data in, plain data (dataclasses, DataFrames) out, no Streamlit, so it is tested directly and
the pages stay drawing code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hipp_core import objectives
from hipp_core.blueprint import Blueprint, LayerShape, count_params, decoder_flops
from plan_store import EvaluationRecord, JobRecord, PlanRecord, PlanStore, PolicyRecord, non_dominated

EMBEDDED_CHOICES = {"Embedded LLaVA": "embedded:llava", "Embedded Qwen2.5-VL": "embedded:qwen2_5_vl"}
LOCAL_CHOICE = "Local checkpoint directory"
DEFAULT_SPEC = "embedded:llava"
PREFERENCE_NAMES = objectives.NAMES
FLOPS_SEQ_LEN = 128  # reference sequence length for FLOPs: about one image plus a question on the embedded models


# -- model choice and readiness ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelChoice:
    spec: str
    model_id: str
    family: str
    path: Path


def check_model(spec: str) -> ModelChoice:
    """Validate a model spec without loading weights (config, safetensors, family); HippError says what is wrong."""
    from hipp_core.errors import HippError
    from hipp_core.models.loading import checkpoint_id, inspect_checkpoint, resolve_spec

    if not spec or not spec.strip():
        raise HippError("type the path of a local Hugging Face checkpoint directory (config.json + *.safetensors)")
    path = resolve_spec(spec.strip())
    family = inspect_checkpoint(path)
    return ModelChoice(spec.strip(), checkpoint_id(path), family, path)


@dataclass(frozen=True)
class Readiness:
    calibrated: bool
    policy: PolicyRecord | None  # the most recently updated one
    plans: int
    evaluations: int
    active_jobs: list[JobRecord]


def readiness(store: PlanStore, choice: ModelChoice) -> Readiness:
    from hipp_core.policies import policy_record

    active = [j for j in store.list_jobs(limit=200) if j.status in ("queued", "running")]
    return Readiness(
        calibrated=bool(store.list_calibrations(choice.model_id)),
        policy=policy_record(choice.model_id, choice.path, store),
        plans=len(store.list_plans(choice.model_id)),
        evaluations=len(store.list_evaluations(choice.model_id)),
        active_jobs=[j for j in active if j.params.get("spec") == choice.spec],
    )


# -- preference sliders -----------------------------------------------------------------------------------------
def rebalance(weights: Sequence[float], index: int, value: float) -> tuple[float, float, float]:
    """Set weight `index` to `value` and share the rest (1 − value) between the other two in their current
    proportion (equally when both are 0): three sliders that always stay on the simplex."""
    value = min(1.0, max(0.0, float(value)))
    others = [i for i in range(3) if i != index]
    current = [max(0.0, float(weights[i])) for i in others]
    total = sum(current)
    shares = [c / total for c in current] if total > 1e-12 else [0.5, 0.5]
    result = [0.0, 0.0, 0.0]
    result[index] = value
    for i, share in zip(others, shares, strict=True):
        result[i] = (1.0 - value) * share
    return (result[0], result[1], result[2])


# -- one blueprint ----------------------------------------------------------------------------------------------
def layer_table(blueprint: Blueprint, shapes: Sequence[LayerShape]) -> pd.DataFrame:
    """Per layer: attention and MLP sparsity (fractions of their parameters removed), overall sparsity, kept units."""
    rows = []
    for i, (shape, plan, s) in enumerate(zip(shapes, blueprint.layers, blueprint.sparsities, strict=True)):
        dense_attn = shape.attention_params(shape.n_kv_heads, shape.n_heads)
        rows.append(
            {
                "layer": i,
                "attention": 1.0 - shape.attention_params(plan.n_kv, plan.n_q) / dense_attn,
                "mlp": 1.0 - plan.n_mlp / shape.intermediate if shape.intermediate else 0.0,
                "sparsity": s,
                "heads kept": f"{plan.n_q}/{shape.n_heads}",
                "kv groups kept": f"{plan.n_kv}/{shape.n_kv_heads}",
                "mlp channels kept": f"{plan.n_mlp}/{shape.intermediate}",
            }
        )
    return pd.DataFrame(rows).set_index("layer")


def kept_grid(blueprint: Blueprint, shapes: Sequence[LayerShape], mlp_bins: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """What is kept, layer by layer: heads [L, max heads] as 1/0 (NaN where a layer has fewer heads) and MLP
    channels [L, bins] as the kept fraction of each block of consecutive channels (a 7B layer has 11k of them)."""
    heads = np.full((len(shapes), max(s.n_heads for s in shapes)), np.nan)
    bins = min(mlp_bins, max(s.intermediate for s in shapes)) or 1
    mlp = np.zeros((len(shapes), bins))
    for i, (shape, plan) in enumerate(zip(shapes, blueprint.layers, strict=True)):
        heads[i, : shape.n_heads] = 0.0
        heads[i, list(plan.heads)] = 1.0
        kept = np.zeros(shape.intermediate)
        kept[list(plan.mlp)] = 1.0
        mlp[i] = [chunk.mean() if len(chunk) else 0.0 for chunk in np.array_split(kept, bins)]
    return heads, mlp


@dataclass(frozen=True)
class PlanSize:
    params_dense: int
    params_kept: int
    flops_dense: int
    flops_kept: int
    sparsity: float


def plan_size(blueprint: Blueprint, shapes: Sequence[LayerShape], seq_len: int = FLOPS_SEQ_LEN) -> PlanSize:
    """Decoder-layer parameters and forward FLOPs, dense and kept (the vision tower and embeddings are never pruned)."""
    return PlanSize(
        params_dense=count_params(shapes),
        params_kept=count_params(shapes, blueprint.layers),
        flops_dense=decoder_flops(shapes, None, seq_len),
        flops_kept=decoder_flops(shapes, blueprint.layers, seq_len),
        sparsity=blueprint.achieved,
    )


HEADLINE = {"ScienceQA acc": "sqa.accuracy", "POPE bal. acc (mean)": "pope_balanced_accuracy"}


def headline(metrics: dict[str, float]) -> dict[str, float | None]:
    """The numbers every table shows for an evaluation."""
    return {name: metrics.get(key) for name, key in HEADLINE.items()} | {"yes-ratio (mean)": mean_yes_ratio(metrics)}


def mean_yes_ratio(metrics: dict[str, float]) -> float | None:
    values = [v for k, v in metrics.items() if k.startswith("pope.") and k.endswith(".yes_ratio")]
    return float(np.mean(values)) if values else None


def evaluated_preferences(store: PlanStore, model_id: str) -> pd.DataFrame:
    """Every evaluated plan that has a preference, each with its largest evaluation: one store query, which the
    dashboard runs once per store version (`PlanStore.version`); `nearest_plans` then ranks it on every slider move
    without touching the store. Rows are sorted by plan id; one `w:<objective>` column per objective holds the
    preference, the rest are for display."""
    everything = objectives.by_name([1.0] * len(objectives.NAMES))
    rows = [
        {
            "plan": plan.plan_id,
            **{f"w:{name}": x for name, x in zip(objectives.NAMES, objectives.in_order(plan.preference))},
            "preference (U, R, C)": ", ".join(f"{x:.2f}" for x in objectives.in_order(plan.preference)),
            "sparsity": plan.sparsity,
            **headline(ev.metrics),
            "measured on": f"{ev.key.split} · {ev.sample_count} q · {ev.key.mode}",
        }
        for plan, ev, _ in store.nearest_evaluated(model_id, everything, None)
    ]
    frame = pd.DataFrame(rows)
    return frame.sort_values("plan", ignore_index=True) if rows else frame


def nearest_plans(evaluated: pd.DataFrame, preference: Sequence[float], k: int = 5) -> pd.DataFrame:
    """The `k` rows of `evaluated_preferences` nearest `preference` (normalised to the simplex), with the distance:
    what the dashboard shows as evidence for an unevaluated blueprint (other plans, marked as such)."""
    if evaluated.empty:
        return evaluated
    w = np.asarray(preference, dtype=float)
    w = w / w.sum()
    columns = [f"w:{name}" for name in objectives.NAMES]
    distance = np.sqrt(((evaluated[columns].to_numpy(dtype=float) - w) ** 2).sum(axis=1))
    order = np.argsort(distance, kind="stable")[:k]  # rows are sorted by plan id: ties keep that order
    near = evaluated.iloc[order].drop(columns=columns)
    near.insert(1, "distance", distance[order])
    return near.reset_index(drop=True)


# -- the Pareto cloud -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Objective:
    label: str
    column: str  # column of `cloud_frame`
    sense: str  # "max", "min", or "half" (best at 0.5: a yes-ratio away from it is a bias)

    def score(self, values: pd.Series) -> np.ndarray:
        """Values turned into higher-is-better numbers for dominance."""
        x = values.to_numpy(dtype=float)
        return {"max": x, "min": -x, "half": -np.abs(x - 0.5)}[self.sense]


BASE_OBJECTIVES = (
    Objective("utility (ScienceQA accuracy)", "sqa.accuracy", "max"),
    Objective("mean POPE balanced accuracy", "pope_balanced_accuracy", "max"),
    Objective("robustness: POPE random", "pope.random.balanced_accuracy", "max"),
    Objective("robustness: POPE popular", "pope.popular.balanced_accuracy", "max"),
    Objective("robustness: POPE adversarial", "pope.adversarial.balanced_accuracy", "max"),
    Objective("yes-ratio (mean over POPE splits; best at 0.5)", "yes_ratio", "half"),
    Objective("sparsity", "sparsity", "max"),
)


def measurement(ev: EvaluationRecord) -> str:
    """A label for what was measured: only points with the same label are comparable."""
    limit = f"first {ev.key.limit}" if ev.key.limit else "all questions"
    return f"{ev.key.split} · {limit} · {ev.key.scoring} · {ev.key.bench}"


def cloud_frame(pairs: Sequence[tuple[PlanRecord, EvaluationRecord]]) -> pd.DataFrame:
    """One row per evaluation of a plan: identity, preference, mode, measurement and every objective column."""
    rows = []
    for plan, ev in pairs:
        w = None if plan.preference is None else objectives.in_order(plan.preference)
        rows.append(
            {
                "plan_id": plan.plan_id,
                "source": plan.source,
                "mode": ev.key.mode,
                "measurement": measurement(ev),
                "bench": ev.key.bench,
                "split": ev.key.split,
                "scoring": ev.key.scoring,
                "limit": ev.key.limit,
                "robustness weight": np.nan if w is None else plan.preference.get("robustness", 0.0),
                "preference": "" if w is None else ", ".join(f"{x:.2f}" for x in w),
                "sparsity": plan.sparsity,
                "yes_ratio": mean_yes_ratio(ev.metrics),
                **{k: v for k, v in ev.metrics.items() if isinstance(v, int | float)},
            }
        )
    return pd.DataFrame(rows)


def objectives_for(frame: pd.DataFrame) -> list[Objective]:
    """The objectives the cloud has values for; latency metrics (lower is better) when evaluations recorded them."""
    found = [o for o in BASE_OBJECTIVES if o.column in frame and frame[o.column].notna().any()]
    latency = sorted(c for c in frame.columns if "latency" in c and frame[c].notna().any())
    return found + [Objective(f"latency: {c}", c, "min") for c in latency]


def front_mask(frame: pd.DataFrame, objectives: Sequence[Objective]) -> np.ndarray:
    """Which rows no other row dominates under `objectives` (rows lacking a value are never on the front)."""
    mask = np.zeros(len(frame), dtype=bool)
    complete = frame[[o.column for o in objectives]].notna().all(axis=1).to_numpy()
    if complete.any():
        points = np.column_stack([o.score(frame.loc[complete, o.column]) for o in objectives])
        mask[complete] = non_dominated(points, [True] * len(objectives))
    return mask


def comparison(store: PlanStore, frame: pd.DataFrame, plan_ids: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For the selected plans: per-layer sparsity [layer × plan] and headline metrics [metric × plan] (from the rows
    of `frame`, the measurement being compared)."""
    allocation, metrics = {}, {}
    for plan_id in plan_ids:
        plan = store.get_plan(plan_id)
        if plan is None:
            continue
        allocation[plan_id] = plan.blueprint["sparsities"]
        row = frame[frame["plan_id"] == plan_id].iloc[0].to_dict() if (frame["plan_id"] == plan_id).any() else {}
        metrics[plan_id] = {
            "source": plan.source,
            "preference (U, R, C)": row.get("preference", ""),
            "mode": row.get("mode", ""),
            "sparsity": f"{plan.sparsity:.1%}",
            **{o.label: _number(row.get(o.column)) for o in BASE_OBJECTIVES if o.column != "sparsity"},
        }
    alloc = pd.DataFrame(allocation)
    alloc.index.name = "layer"
    return alloc, pd.DataFrame(metrics)  # display text: plans as columns mix words and numbers in each column


def _number(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.3f}"


def plan_label(plan: PlanRecord) -> str:
    w = "" if plan.preference is None else " · w=" + "/".join(f"{x:.2f}" for x in objectives.in_order(plan.preference))
    return f"{plan.plan_id} · {plan.source} · {plan.sparsity:.1%}{w}"


def dense_point(store: PlanStore, model_id: str, row: dict) -> dict[str, float] | None:
    """The dense model's metrics under the same measurement as `row` (a `cloud_frame` row), if it was evaluated:
    the reference every plan is compared with. Sparsity 0 and the mean yes-ratio are added like for plans."""
    from plan_store import DENSE_PLAN_ID, EvalKey

    limit = None if pd.isna(row["limit"]) else int(row["limit"])
    key = EvalKey(model_id, DENSE_PLAN_ID, row["bench"], row["split"], "dense", row["scoring"], limit)
    record = store.get_evaluation(key)
    if record is None:
        return None
    return {**record.metrics, "sparsity": 0.0, "yes_ratio": mean_yes_ratio(record.metrics)}
