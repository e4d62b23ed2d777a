"""The Pareto page's view-models: the cloud of evaluated plans, its objectives, the matched-sparsity front, readable
plan labels, the dense reference, and the side-by-side comparison of selected plans. Plain data in and out, no
Streamlit, so it is tested directly."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hipp_core import objectives
from hipp_core.data.records import POPE_CATEGORIES
from plan_store import DENSE_PLAN_ID, EvalKey, EvaluationRecord, PlanRecord, PlanStore

# Two plans count as the same budget when their sparsities differ by at most this much (one percentage point):
# plans are rounded to whole units, so a requested 45% lands anywhere near it, and a baseline 0.07 points sparser
# must not escape a plan that beats it by 20 points of accuracy.
SPARSITY_TOLERANCE = 0.01


@dataclass(frozen=True)
class Objective:
    label: str
    column: str  # column of `cloud_frame`
    sense: str  # "max", "min", or "half" (best at 0.5: a yes-ratio away from it is a bias)
    bounded: bool = True  # a fraction in [0, 1]: its axis always spans that range, however few points there are

    def score(self, values: pd.Series) -> np.ndarray:
        """Values turned into higher-is-better numbers for dominance."""
        x = values.to_numpy(dtype=float)
        return {"max": x, "min": -x, "half": -np.abs(x - 0.5)}[self.sense]

    @property
    def axis_range(self) -> tuple[float, float] | None:
        return (-0.02, 1.02) if self.bounded else None


BASE_OBJECTIVES = (
    Objective("utility (ScienceQA accuracy)", "sqa.accuracy", "max"),
    Objective("mean POPE balanced accuracy", "pope_balanced_accuracy", "max"),
    *(Objective(f"robustness: POPE {c}", f"pope.{c}.balanced_accuracy", "max") for c in POPE_CATEGORIES),
    Objective("yes-ratio (mean over POPE splits; best at 0.5)", "yes_ratio", "half"),
    Objective("sparsity", "sparsity", "max"),
)
BY_COLUMN = {o.column: o for o in BASE_OBJECTIVES}


def mean_yes_ratio(metrics: dict[str, float]) -> float | None:
    values = [v for k, v in metrics.items() if k.startswith("pope.") and k.endswith(".yes_ratio")]
    return float(np.mean(values)) if values else None


def measurement(ev: EvaluationRecord) -> str:
    """A label for what was measured: only points with the same label are comparable."""
    limit = f"first {ev.key.limit}" if ev.key.limit else "all questions"
    return f"{ev.key.split} · {limit} · {ev.key.scoring} · {ev.key.bench}"


def readable_label(source: str, preference: Sequence[float] | None, sparsity: float, plan_id: str) -> str:
    """`policy · w 0.50/0.30/0.20 · 45.6% · a1b2c3`: where a plan came from, what it was asked for, how much it
    prunes, and enough of its id to tell two apart."""
    parts = [source]
    if preference is not None:
        parts.append("w " + "/".join(f"{x:.2f}" for x in preference))
    return " · ".join([*parts, f"{sparsity:.1%}", plan_id[:6]])


def source_name(plan: PlanRecord) -> str:
    """Where a plan came from: `policy`, or a baseline named by the unit criterion that chose its units (the store
    keeps no method name), e.g. `baseline/magnitude`."""
    criterion = plan.blueprint.get("criterion") if plan.source != "policy" else None
    return f"{plan.source}/{criterion}" if criterion else plan.source


def plan_label(plan: PlanRecord) -> str:
    w = None if plan.preference is None else objectives.in_order(plan.preference)
    return readable_label(source_name(plan), w, plan.sparsity, plan.plan_id)


def cloud_frame(pairs: Sequence[tuple[PlanRecord, EvaluationRecord]]) -> pd.DataFrame:
    """One row per evaluation of a plan: identity, label, preference (one `w:<objective>` column each, NaN for
    plans made without one), mode, measurement and every metric."""
    rows = []
    for plan, ev in pairs:
        w = None if plan.preference is None else objectives.in_order(plan.preference)
        rows.append(
            {
                "plan_id": plan.plan_id,
                "label": readable_label(source_name(plan), w, plan.sparsity, plan.plan_id),
                "source": source_name(plan),
                "mode": ev.key.mode,
                "measurement": measurement(ev),
                "bench": ev.key.bench,
                "split": ev.key.split,
                "scoring": ev.key.scoring,
                "limit": ev.key.limit,
                "robustness weight": np.nan if w is None else plan.preference.get("robustness", 0.0),
                "preference": "" if w is None else ", ".join(f"{x:.2f}" for x in w),
                **{f"w:{n}": np.nan if w is None else x for n, x in zip(objectives.NAMES, w or [None] * 3)},
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
    return found + [Objective(f"latency: {c}", c, "min", bounded=False) for c in latency]


def front_mask(
    frame: pd.DataFrame, axes: Sequence[Objective], tolerance: float = SPARSITY_TOLERANCE, block: int = 512
) -> np.ndarray:
    """Which rows no other row dominates on `axes` at matched sparsity.

    Plan j dominates plan i when it is no worse on every axis and better on one, and their budgets match: with
    sparsity among the axes, j may be sparser or at most `tolerance` less sparse (and counts as sparser only beyond
    `tolerance`); without it, the two sparsities must lie within `tolerance` of each other, so a plan is never
    beaten by one that simply prunes less. Rows lacking a value are never on the front."""
    mask = np.zeros(len(frame), dtype=bool)
    complete = frame[[o.column for o in axes]].notna().all(axis=1).to_numpy()
    if not complete.any():
        return mask
    rows = frame[complete]
    others = [o for o in axes if o.column != "sparsity"]
    scores = np.column_stack([o.score(rows[o.column]) for o in others]) if others else np.zeros((len(rows), 0))
    s = rows["sparsity"].to_numpy(dtype=float)
    on_axis = len(others) < len(axes)
    dominated = np.zeros(len(rows), dtype=bool)
    for start in range(0, len(rows), block):  # [j, i]: does row j dominate row i of this block?
        b = slice(start, start + block)
        no_worse = (scores[:, None, :] >= scores[None, b, :]).all(axis=2)
        better = (scores[:, None, :] > scores[None, b, :]).any(axis=2)
        gap = s[:, None] - s[None, b]
        if on_axis:
            matched, sparser = gap >= -tolerance, gap > tolerance
        else:
            matched, sparser = np.abs(gap) <= tolerance, np.zeros_like(gap, dtype=bool)
        dominated[b] = (no_worse & matched & (better | sparser)).any(axis=0)
    mask[complete] = ~dominated
    return mask


# -- the dense reference ----------------------------------------------------------------------------------------
def dense_point(store: PlanStore, model_id: str, row: dict) -> dict[str, float] | None:
    """The dense model's metrics under the same measurement as `row` (a `cloud_frame` row), if it was evaluated:
    the reference every plan is compared with. Sparsity 0 and the mean yes-ratio are added like for plans."""
    record = store.get_evaluation(dense_key(model_id, row))
    if record is None:
        return None
    return {**record.metrics, "sparsity": 0.0, "yes_ratio": mean_yes_ratio(record.metrics)}


def dense_key(model_id: str, row: dict) -> EvalKey:
    limit = None if pd.isna(row["limit"]) else int(row["limit"])
    return EvalKey(model_id, DENSE_PLAN_ID, row["bench"], row["split"], "dense", row["scoring"], limit)


def dense_job_params(spec: str, row: dict) -> dict | None:
    """The evaluate job that measures the dense model on the questions of `row`'s measurement, when a job can (the
    job scores every benchmark by logits without the blank-image pass, as policy training does); else None."""
    if row["scoring"] != "logits" or not (row["bench"].startswith("all:") and row["bench"].endswith(":no-image-free")):
        return None
    limit = None if pd.isna(row["limit"]) else int(row["limit"])
    return {"spec": spec, "plan_id": None, "split": row["split"], "limit": limit}


# -- comparing selected plans -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DenseCounts:
    heads: int
    kv_heads: int
    intermediate: int


def dense_counts(checkpoint: Path) -> DenseCounts:
    """Query heads, KV heads and MLP channels of one dense decoder layer, from the checkpoint's config."""
    config = json.loads((Path(checkpoint) / "config.json").read_text())
    text = config.get("text_config") or config
    heads = int(text["num_attention_heads"])
    return DenseCounts(heads, int(text.get("num_key_value_heads") or heads), int(text["intermediate_size"]))


def unit_split(blueprint: dict, dense: DenseCounts) -> pd.DataFrame:
    """Per layer of a stored blueprint: the fraction of attention parameters removed (q and o scale with the query
    heads kept, k and v with the KV groups) and the fraction of MLP channels removed."""
    rows = []
    for i, layer in enumerate(blueprint["layers"]):
        kept_attention = (len(layer["heads"]) + len(layer["kv_groups"])) / (dense.heads + dense.kv_heads)
        rows.append(
            {"layer": i, "attention": 1.0 - kept_attention, "mlp": 1.0 - len(layer["mlp"]) / dense.intermediate}
        )
    return pd.DataFrame(rows)


COMPARED = (
    ("ScienceQA", "sqa.accuracy"),
    ("POPE mean", "pope_balanced_accuracy"),
    *((f"POPE {c}", f"pope.{c}.balanced_accuracy") for c in POPE_CATEGORIES),
    ("yes-ratio", "yes_ratio"),
)


def comparison(
    store: PlanStore, frame: pd.DataFrame, plan_ids: Sequence[str], dense: DenseCounts
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For the selected plans: per-layer attention and MLP sparsity (long: plan label, layer, part, fraction) and
    one table row per plan with its metrics in the measurement `frame` holds (blank where it was not measured)."""
    allocation, table = [], []
    for plan_id in plan_ids:
        plan = store.get_plan(plan_id)
        if plan is None:
            continue
        label = plan_label(plan)
        split = unit_split(plan.blueprint, dense)
        for part in ("attention", "mlp"):
            allocation += [
                {"plan": label, "layer": r.layer, "part": part, "removed": getattr(r, part)} for r in split.itertuples()
            ]
        row = frame[frame["plan_id"] == plan_id]
        metrics = row.iloc[0].to_dict() if len(row) else {}
        w = None if plan.preference is None else objectives.in_order(plan.preference)
        table.append(
            {
                "plan": label,
                "id": plan_id,
                "source": source_name(plan),
                "preference (U, R, C)": "" if w is None else ", ".join(f"{x:.2f}" for x in w),
                "sparsity": plan.sparsity,
                "mode": metrics.get("mode", "not in this measurement"),
                **{name: _value(metrics.get(column)) for name, column in COMPARED},
            }
        )
    return pd.DataFrame(allocation), pd.DataFrame(table)


def _value(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)
