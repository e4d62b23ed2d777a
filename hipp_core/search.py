"""Search peers of the policy at an equal number of plan evaluations: NSGA-II (pymoo) and random search.

Both search the same decision space as the policy: a budget ρ in the policy's range and an allocation over the 2L
attention / MLP blocks, scored by the same evaluator on the same objectives (utility, robustness, compression,
relative to the dense model). NSGA-II runs through pymoo's ask / tell interface so every evaluation goes through our
evaluator and plan store. With a fixed budget (matched-sparsity comparisons) NSGA-II searches allocations only and
maximizes the quality objectives, compression being the same for every plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.evaluator import Evaluator as PymooEvaluator
from pymoo.core.problem import Problem
from pymoo.indicators.hv import HV
from pymoo.problems.static import StaticProblem

from hipp_core import validation
from hipp_core.blueprint import Blueprint
from hipp_core.errors import HippError
from hipp_core.evaluation.backends import Evaluator
from hipp_core.grpo import objectives
from hipp_core.objectives import OBJECTIVES
from hipp_core.policy import Planner, PlanSample, PolicyConfig

POLICY_RANGE = PolicyConfig()  # searches propose budgets in the same range as the policy's budget head
ALLOCATION_FLOOR = 1e-3  # a block weight of exactly 0 would exempt the block from pruning altogether
# The objectives a fixed budget leaves to search (compression is the budget itself), as indices into `objectives`.
QUALITY = tuple(i for i, o in enumerate(OBJECTIVES) if o.metric is not None)


@dataclass
class SearchPoint:
    blueprint: Blueprint
    objectives: np.ndarray  # (utility, robustness, compression) relative to the dense model


def decode(planner: Planner, x: np.ndarray, source: str = "search", budget: float | None = None) -> Blueprint:
    """A point of [0, 1]^(2L+1) as a plan: x[0] is the budget within the policy's range, the rest block weights.
    With a fixed `budget`, x is a point of [0, 1]^(2L): the block weights alone."""
    if budget is None:
        config = POLICY_RANGE
        budget = config.budget_min + (config.budget_max - config.budget_min) * float(x[0])
        x = x[1:]
    alpha = np.asarray(x, dtype=float) + ALLOCATION_FLOOR
    return planner.make(PlanSample(budget, alpha / alpha.sum(), True), None, source)


def score(planner: Planner, evaluator: Evaluator, blueprints: list[Blueprint], progress=None) -> list[SearchPoint]:
    dense = evaluator.evaluate([None])[0]
    results = evaluator.evaluate(blueprints, progress)
    return [SearchPoint(bp, objectives(r, dense, bp.achieved)) for bp, r in zip(blueprints, results)]


def random_search(
    planner: Planner, evaluator: Evaluator, n_evals: int, seed: int = 0, progress=None
) -> list[SearchPoint]:
    """Budgets uniform in the policy's range, allocations Dirichlet(1) over blocks: the naive peer."""
    _check_evals(n_evals)
    rng = np.random.default_rng(seed)
    L = len(planner.shapes)
    xs = np.column_stack([rng.random(n_evals), rng.dirichlet(np.ones(2 * L), size=n_evals)])
    return score(planner, evaluator, [decode(planner, x) for x in xs], progress)


def nsga2_search(
    planner: Planner,
    evaluator: Evaluator,
    n_evals: int,
    pop_size: int = 32,
    seed: int = 0,
    progress: Callable | None = None,
    budget: float | None = None,
) -> list[SearchPoint]:
    """NSGA-II over (budget, block weights) maximizing the three objectives; stops after `n_evals` evaluations
    (the last generation is cut to fit). Returns every evaluated point, so fronts and hypervolumes compare.

    A fixed `budget` (a decoder sparsity) takes the budget out of the decision space: every plan is proposed at that
    budget and only the quality objectives (`QUALITY`) are maximized; the points still carry all three."""
    _check_evals(n_evals)
    if budget is not None:
        validation.sparsity(budget, POLICY_RANGE.s_max, "the fixed budget")
    L = len(planner.shapes)
    searched = list(QUALITY) if budget is not None else list(range(len(OBJECTIVES)))
    problem = Problem(n_var=2 * L + (1 if budget is None else 0), n_obj=len(searched), xl=0.0, xu=1.0)
    algorithm = NSGA2(pop_size=min(pop_size, n_evals))
    algorithm.setup(problem, seed=seed, termination=("n_gen", 10**9))
    points: list[SearchPoint] = []
    while len(points) < n_evals:
        pop = algorithm.ask()
        xs = pop.get("X")[: n_evals - len(points)]
        pop = pop[: len(xs)]
        batch = score(planner, evaluator, [decode(planner, x, budget=budget) for x in xs])
        points += batch
        # pymoo minimizes: the negated objectives.
        PymooEvaluator().eval(StaticProblem(problem, F=-np.stack([p.objectives[searched] for p in batch])), pop)
        algorithm.tell(infills=pop)
        if progress:
            progress("NSGA-II", len(points), n_evals)
    return points


def hypervolume(points: np.ndarray) -> float:
    """Hypervolume of (utility, robustness, compression) points (maximized, all ≥ 0) against the origin: the
    objectives are already normalized (quality relative to dense, compression a fraction), so no rescaling is
    needed and every method is measured in the same units."""
    pts = np.atleast_2d(np.asarray(points, dtype=float))
    if pts.size == 0:
        return 0.0
    return float(HV(ref_point=np.zeros(3))(-np.clip(pts, 0.0, None)))


def _check_evals(n: int) -> None:
    if n < 1:
        raise HippError(f"the number of evaluations must be at least 1, got {n}")
