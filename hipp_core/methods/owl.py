"""OWL (outlier-weighted layerwise sparsity, Yin et al. 2023): layers with more activation outliers are pruned less.

Each layer's outlier ratio (the share of weights whose |W|·‖X‖ exceeds M times the layer mean) is measured at
calibration; OWL maps it linearly to a per-layer sparsity in [ρ − λ, ρ + λ], decreasing with the ratio, and the
water-filling then rescales that to the budget exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hipp_core.blueprint import Blueprint
from hipp_core.calibrate import CalibrationFeatures
from hipp_core.errors import HippError
from hipp_core.methods.base import CriterionConfig, ModelContext, allocation_blueprint, option, register


@dataclass(frozen=True)
class OwlConfig(CriterionConfig):
    lam: float = option(0.08, "OWL's λ: how far a layer's sparsity may move from the average, before rescaling")

    def check(self) -> None:
        super().check()
        if isinstance(self.lam, bool) or not isinstance(self.lam, int | float) or not 0 <= self.lam < 1:
            raise HippError(f"lam must be a number in [0, 1), got {self.lam!r}")


def allocate(features: CalibrationFeatures, budget: float, lam: float = OwlConfig.lam) -> np.ndarray:
    """α over layers: ρ + λ at the fewest outliers down to ρ − λ at the most (floored just above zero)."""
    d = np.asarray(features.outlier_ratio, dtype=float)
    spread = d.max() - d.min()
    normalized = (d - d.min()) / spread if spread > 0 else np.zeros_like(d)
    return np.clip(budget + lam * (1 - 2 * normalized), 1e-3, None)


@register("owl", "heuristic", OwlConfig, "outlier-weighted: layers with more activation outliers are pruned less (OWL)")
def plan(context: ModelContext, config: OwlConfig, sparsity: float) -> Blueprint:
    return allocation_blueprint(context, sparsity, allocate(context.features, sparsity, config.lam), config)
