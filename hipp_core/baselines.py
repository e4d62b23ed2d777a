"""Heuristic allocators that the learned policy must beat at matched sparsity.

Each baseline is a registered function from calibration features to a per-layer allocation α (any positive
weights; `blueprint.allocate` water-fills them to the budget) and names the unit criterion it uses. Adding one is
one decorated function (a small registry that lists what is available when a name is wrong).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hipp_core.blueprint import UnitScores
from hipp_core.calibrate import CalibrationFeatures
from hipp_core.errors import HippError

OWL_LAMBDA = 0.08  # OWL's bound on how far a layer's sparsity may move from the average (Yin et al. 2023)


@dataclass(frozen=True)
class Baseline:
    name: str
    allocate: Callable[[CalibrationFeatures, float], np.ndarray]  # (features, budget) -> α over layers
    criterion: str  # unit scores that pick which heads / channels are kept
    help: str


_REGISTRY: dict[str, Baseline] = {}


def register(name: str, criterion: str, help: str):
    def wrap(fn: Callable[[CalibrationFeatures, float], np.ndarray]):
        _REGISTRY[name] = Baseline(name, fn, criterion, help)
        return fn

    return wrap


def get(name: str) -> Baseline:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise HippError(f"unknown baseline {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    return sorted(_REGISTRY)


def unit_scores(features: CalibrationFeatures, criterion: str) -> list[UnitScores]:
    if criterion == "wanda":
        heads, mlps = features.head_wanda, features.mlp_wanda
    elif criterion == "magnitude":
        heads, mlps = features.head_magnitude, features.mlp_magnitude
    else:
        raise HippError(f"unknown unit criterion {criterion!r}; use wanda or magnitude")
    return [UnitScores(head=np.asarray(h), mlp=np.asarray(m)) for h, m in zip(heads, mlps)]


@register("uniform", "wanda", "the same sparsity in every layer")
def _uniform(features: CalibrationFeatures, budget: float) -> np.ndarray:
    return np.ones(features.n_layers)


@register("magnitude", "magnitude", "uniform allocation, units ranked by weight magnitude alone")
def _magnitude(features: CalibrationFeatures, budget: float) -> np.ndarray:
    return np.ones(features.n_layers)


@register("owl", "wanda", "outlier-weighted: layers with more activation outliers are pruned less (OWL)")
def _owl(features: CalibrationFeatures, budget: float) -> np.ndarray:
    d = np.asarray(features.outlier_ratio, dtype=float)
    spread = d.max() - d.min()
    normalized = (d - d.min()) / spread if spread > 0 else np.zeros_like(d)
    # OWL: s_l ∈ [ρ − λ, ρ + λ], decreasing with the outlier ratio; water-filling then rescales to the budget.
    return np.clip(budget + OWL_LAMBDA * (1 - 2 * normalized), 1e-3, None)


@register("visual", "wanda", "allocation inverse to visual sensitivity: layers that read the image are spared")
def _visual(features: CalibrationFeatures, budget: float) -> np.ndarray:
    v = np.asarray(features.v_attn, dtype=float) + np.clip(np.asarray(features.v_flow, dtype=float), 0, None)
    v = v / v.mean() if v.mean() > 0 else np.ones_like(v)
    return 1.0 / (v + 0.1)


def random_allocations(n_layers: int, count: int, seed: int) -> np.ndarray:
    """Dirichlet(1) allocations for the best-of-N random baseline, reproducible from the seed."""
    return np.random.default_rng(seed).dirichlet(np.ones(n_layers), size=count)
