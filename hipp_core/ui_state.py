"""What the dashboard pages compute before drawing: model choice, readiness, preference sliders, one blueprint's
tables, the nearest evaluated plans (the Pareto page's are in `ui_pareto`). Plain data in, plain data (dataclasses, DataFrames) out, no Streamlit, so it is tested directly and
the pages stay drawing code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hipp_core import objectives
from hipp_core.blueprint import Blueprint, LayerShape, count_params, decoder_flops
from hipp_core.ui_pareto import mean_yes_ratio
from plan_store import JobRecord, PlanStore, PolicyRecord

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


def nearest_plans(
    evaluated: pd.DataFrame, preference: Sequence[float], sparsity: float | None = None, k: int = 5
) -> pd.DataFrame:
    """The `k` rows of `evaluated_preferences` nearest `preference` (normalised to the simplex) and, when given,
    `sparsity`: the Euclidean distance over the weights and the sparsity together, so a plan asked for the same
    trade-off but pruned to another budget is not shown as the nearest evidence. What the dashboard shows beside an
    unevaluated blueprint (other plans, marked as such)."""
    if evaluated.empty:
        return evaluated
    w = np.asarray(preference, dtype=float)
    w = w / w.sum()
    columns = [f"w:{name}" for name in objectives.NAMES]
    squared = ((evaluated[columns].to_numpy(dtype=float) - w) ** 2).sum(axis=1)
    if sparsity is not None:
        squared = squared + (evaluated["sparsity"].to_numpy(dtype=float) - sparsity) ** 2
    distance = np.sqrt(squared)
    order = np.argsort(distance, kind="stable")[:k]  # rows are sorted by plan id: ties keep that order
    near = evaluated.iloc[order].drop(columns=columns)
    near.insert(1, "distance", distance[order])
    return near.reset_index(drop=True)
