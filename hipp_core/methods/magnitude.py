"""Magnitude-uniform: the uniform allocation with units ranked by weight magnitude alone (no activations)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hipp_core.blueprint import Blueprint
from hipp_core.methods.base import CriterionConfig, ModelContext, allocation_blueprint, option, register


@dataclass(frozen=True)
class MagnitudeConfig(CriterionConfig):
    criterion: str = option("magnitude", "unit criterion; magnitude is what makes this baseline what it is")


@register("magnitude", "heuristic", MagnitudeConfig, "uniform allocation, units ranked by weight magnitude alone")
def plan(context: ModelContext, config: MagnitudeConfig, sparsity: float) -> Blueprint:
    return allocation_blueprint(context, sparsity, np.ones(context.features.n_layers), config)
