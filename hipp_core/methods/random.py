"""Best-of-N random allocations: N seeded Dirichlet(1) allocations over layers, each scored on the dev split through
the evaluator interface (masked evaluation, any backend, cached in the plan store), the best one kept.

"Best" is 0.5·ScienceQA accuracy + 0.5·mean POPE balanced accuracy, first best on ties. This is the search baseline
at a budget of N plan evaluations; it never looks at the test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hipp_core import validation
from hipp_core.blueprint import Blueprint
from hipp_core.errors import HippError
from hipp_core.evaluation.backends import BACKENDS, make_evaluator
from hipp_core.methods.base import CriterionConfig, ModelContext, allocation_blueprint, option, register


@dataclass(frozen=True)
class RandomConfig(CriterionConfig):
    n_random: int = option(8, "candidate allocations drawn and evaluated (plan evaluations spent)")
    seed: int = option(0, "seed of the Dirichlet draws: the same seed gives the same candidates")
    limit: int = option(100, "dev questions per POPE category and of ScienceQA behind each candidate's score")
    backend: str = option("local", f"evaluator backend that scores the candidates: {', '.join(BACKENDS)}")
    backend_options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "options of the backend, e.g. address and num_workers for ray"}
    )

    def check(self) -> None:
        super().check()
        validation.count(self.n_random, "n_random")
        validation.count(self.seed, "seed", minimum=0)
        validation.count(self.limit, "limit")
        if self.backend not in BACKENDS:
            raise HippError(f"unknown evaluator backend {self.backend!r}; available: {', '.join(sorted(BACKENDS))}")
        if not isinstance(self.backend_options, dict):
            raise HippError(
                f"backend_options must be a mapping of option names to values, got {self.backend_options!r}"
            )
        if self.equal_counts:
            raise HippError("equal_counts leaves no allocation to choose, so random has nothing to decide; use uniform")


def random_allocations(n_layers: int, count: int, seed: int) -> np.ndarray:
    """Dirichlet(1) allocations, reproducible from the seed."""
    return np.random.default_rng(seed).dirichlet(np.ones(n_layers), size=count)


def selection_score(result) -> float:
    """What the best candidate maximises: utility and robustness weighed equally."""
    return 0.5 * result.sqa.accuracy + 0.5 * result.pope_balanced_accuracy


@register("random", "search", RandomConfig, "best of N random Dirichlet allocations, chosen on the dev split")
def plan(context: ModelContext, config: RandomConfig, sparsity: float) -> Blueprint:
    data, split = context.selection(config.limit)  # refused before any calibration when it overlaps the test files
    alphas = random_allocations(len(context.shapes), config.n_random, config.seed)
    candidates = [allocation_blueprint(context, sparsity, alpha, config) for alpha in alphas]
    placement = {"device": context.device, "dtype": context.dtype, "batch_size": context.batch_size}
    evaluator = make_evaluator(
        context.spec,
        split,
        config.limit,
        context.store,
        config.backend,
        data=data,
        **config.backend_options,
        **placement,
    )
    try:
        results = evaluator.evaluate(candidates, context.progress)
    finally:
        evaluator.close()
    scores = [selection_score(r) for r in results]
    return candidates[scores.index(max(scores))]
