"""The objectives a preference weighs, by name, and what each reads from an evaluation.

A preference is one weight per objective. Rewards, the policy's input, the dashboard's sliders and the store all take
their list from `OBJECTIVES`; the store keeps preferences keyed by these names, so adding an objective (one more
entry here, naming the stored metric it reads) leaves stored plans readable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Objective:
    name: str
    metric: str | None  # the stored evaluation metric it reads, relative to the dense model; None: achieved sparsity
    help: str


OBJECTIVES: tuple[Objective, ...] = (
    Objective("utility", "sqa.accuracy", "task accuracy: ScienceQA accuracy relative to the dense model"),
    Objective(
        "robustness",
        "pope_balanced_accuracy",
        "hallucination robustness: mean POPE balanced accuracy over the categories, relative to the dense model",
    ),
    Objective("compression", None, "the share of decoder-layer parameters removed"),
)
NAMES: tuple[str, ...] = tuple(o.name for o in OBJECTIVES)


def by_name(weights: Sequence[float]) -> dict[str, float]:
    """Weights given in `NAMES` order (a CLI's U,R,C, the policy's vector) keyed by objective name."""
    return dict(zip(NAMES, (float(x) for x in weights), strict=True))


def in_order(preference: Mapping[str, float]) -> tuple[float, ...]:
    """A stored preference as a vector in `NAMES` order; an objective it does not weigh counts 0."""
    return tuple(float(preference.get(name, 0.0)) for name in NAMES)


def values(metrics: Mapping[str, float], dense: Mapping[str, float], achieved: float) -> np.ndarray:
    """Each objective's value for a plan: its metric relative to the dense model's on the same questions, or the
    plan's achieved sparsity for compression."""
    return np.array(
        [achieved if o.metric is None else metrics[o.metric] / max(dense[o.metric], 1e-9) for o in OBJECTIVES]
    )
