"""The SynFlow stability gate audited on `calib`: does a plan's stability predict how good it is?

GRPO gates (does not evaluate) a plan whose weakest layer keeps less than τ of its SynFlow saliency, and audits a
share of the gated plans: a false gate is an audited plan whose reward beats its group's median. This script measures
the same thing on `calib` (never on dev or test, which GRPO and the reports use), for plans drawn as random search
draws them (budgets across the policy's range, Dirichlet allocations): each plan is evaluated, its stability computed,
and for every τ of a grid the false-gate rate is counted with the whole sample as the group (each plan's reward at
its own random preference against the median reward of every sampled plan at that preference). Also the Spearman
correlation of stability with each quality objective, and the largest τ of the grid whose false-gate rate is at most
the steering issue's 0.25 with at least MIN_GATED plans gated, or None: no threshold of the grid is worth keeping.

Prints JSON (and writes benchmarks/results/gate_audit.json with --save).

    python benchmarks/gate_audit.py [--models embedded embedded:qwen2_5_vl] [--plans 96] [--threads 1] [--save]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from results_io import emit
from scipy.stats import spearmanr

from hipp_core.api import planner
from hipp_core.config import quiet_libraries, set_threads
from hipp_core.evaluation.backends import make_evaluator
from hipp_core.grpo import GRPOConfig, reward, stability
from hipp_core.search import random_search

TAUS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
TARGET_FALSE_GATE = 0.25
MIN_GATED = 5  # a rate over fewer gated plans says nothing


def _rho(x, y) -> float | None:
    rho = spearmanr(x, y).statistic
    return None if np.isnan(rho) else round(float(rho), 3)


def thresholds(stab: np.ndarray, fine: np.ndarray) -> list[dict]:
    """Per τ of the grid: how many plans the gate skips (stability below τ), and the share of those that were fine."""
    table = []
    for tau in TAUS:
        gated = stab < tau
        rate = round(float(fine[gated].mean()), 3) if gated.any() else None
        table.append({"tau": tau, "gated": int(gated.sum()), "false_gate_rate": rate})
    return table


def largest_tau_meeting_target(table: list[dict]) -> float | None:
    meets = [t["tau"] for t in table if t["gated"] >= MIN_GATED and t["false_gate_rate"] <= TARGET_FALSE_GATE]
    return max(meets) if meets else None


def audit(spec: str, n_plans: int, seed: int, limit: int | None) -> dict:
    t0 = time.perf_counter()
    plans = planner(spec)
    evaluator = make_evaluator(spec, "calib", limit)
    points = random_search(plans, evaluator, n_plans, seed=seed)
    evaluator.close()
    objs = np.stack([p.objectives for p in points])  # utility, robustness, compression relative to dense
    stab = np.array([stability(p.blueprint, plans.features) for p in points])
    prefs = np.random.default_rng([seed, 1]).dirichlet(np.ones(3), size=len(points))
    # Plan i "would have been fine" when its reward at its preference beats the sample's median at that preference.
    fine = np.array([reward(objs[i], w) > np.median([reward(o, w) for o in objs]) for i, w in enumerate(prefs)])
    table = thresholds(stab, fine)
    return {
        "model": spec,
        "split": "calib",
        "limit": limit,
        "plans": len(points),
        "distinct_plans": len({p.blueprint.plan_id for p in points}),
        "stability_range": [round(float(stab.min()), 3), round(float(stab.max()), 3)],
        "spearman_stability_vs": {
            "utility": _rho(stab, objs[:, 0]),
            "robustness": _rho(stab, objs[:, 1]),
            "compression": _rho(stab, objs[:, 2]),
        },
        "thresholds": table,
        "default_tau": GRPOConfig().gate_tau,
        "largest_tau_meeting_target": largest_tau_meeting_target(table),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["embedded", "embedded:qwen2_5_vl"])
    parser.add_argument("--plans", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=GRPOConfig().limit, help="questions per set, as GRPO's reward")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)
    quiet_libraries()
    threads = set_threads(args.threads)
    report = {
        "threads": threads,
        "seed": args.seed,
        "target_false_gate_rate": TARGET_FALSE_GATE,
        "models": [audit(spec, args.plans, args.seed, args.limit) for spec in args.models],
    }
    emit("gate_audit", report, args.save)


if __name__ == "__main__":
    main()
