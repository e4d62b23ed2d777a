"""Views of every evaluated plan at once, as analysts know them from optuna-dashboard or TensorBoard HParams: a
table of all plans (sorted and filtered by the page, downloadable as CSV) and parallel coordinates (one line per plan
across preference weights, sparsity, POPE per category, ScienceQA and yes-ratio) whose brushing selects plans."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hipp_core import objectives
from hipp_core.data.records import POPE_CATEGORIES

TABLE_COLUMNS = {  # cloud_frame column -> table heading, in order
    "label": "plan",
    "source": "source",
    "mode": "mode",
    **{f"w:{name}": f"w {name}" for name in objectives.NAMES},
    "sparsity": "sparsity",
    "pope_balanced_accuracy": "POPE mean",
    **{f"pope.{c}.balanced_accuracy": f"POPE {c}" for c in POPE_CATEGORIES},
    "sqa.accuracy": "ScienceQA",
    "yes_ratio": "yes-ratio",
    "front": "non-dominated",
    "plan_id": "id",
    "measurement": "measurement",
}


def plans_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluated plan of a `cloud_frame` (with its `front` column when the page computed it), the
    columns people sort and filter on, numbers left as numbers so sorting is numeric and the CSV exact."""
    present = {column: name for column, name in TABLE_COLUMNS.items() if column in frame}
    return frame[list(present)].rename(columns=present).reset_index(drop=True)


def filter_plans(
    table: pd.DataFrame,
    sources: Iterable[str] | None = None,
    sparsity: tuple[float, float] = (0.0, 1.0),
    text: str = "",
) -> pd.DataFrame:
    """Rows whose source is one of `sources` (all when None), whose sparsity lies in the band, and whose plan label or
    id contains `text` (case-insensitive)."""
    keep = table["sparsity"].between(sparsity[0] - 1e-9, sparsity[1] + 1e-9)
    if sources is not None:
        keep &= table["source"].isin(list(sources))
    if text.strip():
        needle = text.strip().lower()
        keep &= table["plan"].str.lower().str.contains(needle, regex=False) | table["id"].str.contains(
            needle, regex=False
        )
    return table[keep].reset_index(drop=True)


# -- parallel coordinates ---------------------------------------------------------------------------------------
PARALLEL_AXES = (  # every axis is a fraction in [0, 1], so all share one scale
    *((f"w:{name}", f"w {name}") for name in objectives.NAMES),
    ("sparsity", "sparsity"),
    *((f"pope.{c}.balanced_accuracy", f"POPE {c}") for c in POPE_CATEGORIES),
    ("sqa.accuracy", "ScienceQA"),
    ("yes_ratio", "yes-ratio"),
)


@dataclass(frozen=True)
class ParallelData:
    axes: list[str]  # axis titles, left to right (x = 0, 1, ...)
    line_x: list[float | None]  # every plan's polyline, separated by None (one trace draws them all)
    line_y: list[float | None]
    point_x: list[int]  # one point per plan and axis with a value: what brushing selects
    point_y: list[float]
    point_plan: list[str]


def parallel_data(frame: pd.DataFrame, plan_ids: Sequence[str] | None = None) -> ParallelData:
    """The polylines and points of the plans in `frame` (only `plan_ids` when given, in frame order). A plan made
    without a preference (a baseline) has no weight values: its line starts at the sparsity axis."""
    columns = [(c, title) for c, title in PARALLEL_AXES if c in frame]
    rows = frame if plan_ids is None else frame[frame["plan_id"].isin(list(plan_ids))]
    values = rows[[c for c, _ in columns]].to_numpy(dtype=float)
    line_x: list[float | None] = []
    line_y: list[float | None] = []
    point_x, point_y, point_plan = [], [], []
    for plan_id, row in zip(rows["plan_id"], values):
        for x, y in enumerate(row):
            if math.isfinite(y):
                line_x.append(x)
                line_y.append(float(y))
                point_x.append(x)
                point_y.append(float(y))
                point_plan.append(plan_id)
            else:
                line_x.append(None)
                line_y.append(None)
        line_x.append(None)
        line_y.append(None)
    return ParallelData([title for _, title in columns], line_x, line_y, point_x, point_y, point_plan)


def brushed_plans(points: Iterable[tuple[int, str]]) -> list[str]:
    """The plans a brush selects, from the selected (axis, plan) points: those selected on every axis the brush
    touches (a box over one axis keeps the plans whose line crosses it; boxes over further axes narrow it down)."""
    by_axis: dict[int, set[str]] = {}
    order: list[str] = []
    for axis, plan_id in points:
        by_axis.setdefault(int(axis), set()).add(plan_id)
        order.append(plan_id)
    if not by_axis:
        return []
    chosen = set.intersection(*by_axis.values())
    return [p for p in dict.fromkeys(order) if p in chosen]


def line_colours(frame: pd.DataFrame, column: str = "pope_balanced_accuracy", bins: int = 5) -> np.ndarray:
    """A colour bin (0 .. bins−1) per row by `column`, for drawing the lines in a few traces instead of one per
    plan; rows without a value get bin 0."""
    if column not in frame:
        return np.zeros(len(frame), dtype=int)
    values = frame[column].to_numpy(dtype=float)
    return np.clip(np.nan_to_num(values, nan=0.0) * bins, 0, bins - 1).astype(int)
