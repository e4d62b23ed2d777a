"""Uniform: the same sparsity in every layer, units ranked by the criterion (Wanda-sp unless told otherwise)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hipp_core.blueprint import Blueprint
from hipp_core.methods.base import CriterionConfig, ModelContext, allocation_blueprint, register


@dataclass(frozen=True)
class UniformConfig(CriterionConfig):
    pass


@register("uniform", "heuristic", UniformConfig, "the same sparsity in every layer")
def plan(context: ModelContext, config: UniformConfig, sparsity: float) -> Blueprint:
    return allocation_blueprint(context, sparsity, np.ones(context.features.n_layers), config)
