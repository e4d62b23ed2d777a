"""Visual sensitivity heuristic: allocation inverse to how much a layer reads the image, no learning.

A layer's sensitivity is its attention mass on image tokens (`v_attn`) plus the visual information it adds to the
answer position (`v_flow`, negative values counted as none), normalised to mean 1; α = 1 / (v + ε), so the layers
that read the image lose the least.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hipp_core.blueprint import Blueprint
from hipp_core.calibrate import CalibrationFeatures
from hipp_core.errors import HippError
from hipp_core.methods.base import CriterionConfig, ModelContext, allocation_blueprint, option, register


@dataclass(frozen=True)
class VisualConfig(CriterionConfig):
    epsilon: float = option(
        0.1, "added to the normalised sensitivity before inverting: bounds how much one layer is spared"
    )

    def check(self) -> None:
        super().check()
        if isinstance(self.epsilon, bool) or not isinstance(self.epsilon, int | float) or not self.epsilon > 0:
            raise HippError(f"epsilon must be a positive number, got {self.epsilon!r}")


def allocate(features: CalibrationFeatures, budget: float, epsilon: float = VisualConfig.epsilon) -> np.ndarray:
    """α over layers, inverse to visual sensitivity (the budget does not change the shape)."""
    v = np.asarray(features.v_attn, dtype=float) + np.clip(np.asarray(features.v_flow, dtype=float), 0, None)
    v = v / v.mean() if v.mean() > 0 else np.ones_like(v)
    return 1.0 / (v + epsilon)


@register(
    "visual",
    "heuristic",
    VisualConfig,
    "allocation inverse to visual sensitivity: layers that read the image are spared",
)
def plan(context: ModelContext, config: VisualConfig, sparsity: float) -> Blueprint:
    return allocation_blueprint(context, sparsity, allocate(context.features, sparsity, config.epsilon), config)
