"""Do POPE and ScienceQA pull apart at a matched sparsity? NSGA-II at a fixed budget, reported on test (Trade-off).

Prints JSON (and, with --save, writes benchmarks/results/tradeoff.json). Per model:
- NSGA-II (`hipp_core.search.nsga2_search` with a fixed budget) searches allocations at decoder sparsity
  `--sparsity` on ShapesWorld `dev` (`--limit` questions per set), maximizing utility (ScienceQA accuracy) and
  robustness (mean POPE balanced accuracy), both relative to the dense model; compression is the budget itself;
- the plans no other evaluated plan dominates on dev (over every plan the run evaluated, not only its last
  population) are re-scored on `test` (`--test-limit` questions per set, default all). Test only reports: nothing
  is chosen on it; each plan lists, per layer, the KV groups, query heads and MLP channels it keeps, so where the
  plans differ can be read (and compared with what the policy samples);
- the trade-off target: two test plans each at least 3 points better than the other on one of POPE adversarial
  balanced accuracy and ScienceQA accuracy. `best_pair` gives the largest min-gap, max over plans (A, B) of
  min(A.pope − B.pope, B.sqa − A.sqa), and whether it reaches 0.03.
Every evaluation goes through the plan store, so a killed run resumes where it stopped.

    python benchmarks/tradeoff.py [--models embedded embedded:qwen2_5_vl] [--sparsity 0.3] [--evals 160]
        [--limit 200] [--save]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from results_io import emit
from tqdm import tqdm

from hipp_core.api import planner
from hipp_core.config import quiet_libraries, set_threads
from hipp_core.evaluation.backends import make_evaluator
from hipp_core.objectives import OBJECTIVES
from hipp_core.search import QUALITY, SearchPoint, nsga2_search
from plan_store.pareto import non_dominated

TARGET_GAP = 0.03  # the "each ≥ 3 points better than the other on one objective"


def _scores(result) -> dict:
    return {
        "pope_adversarial": round(result.pope["adversarial"].balanced_accuracy, 4),
        "pope_mean": round(result.pope_balanced_accuracy, 4),
        "sqa": round(result.sqa.accuracy, 4),
    }


def removed_attention_share(blueprint, shapes) -> float:
    """Of the decoder parameters the plan removes, the share that is attention (the rest is MLP channels)."""
    attention = mlp = 0
    for shape, layer in zip(shapes, blueprint.layers, strict=True):
        attention += shape.attention_params(shape.n_kv_heads, shape.n_heads) - shape.attention_params(
            layer.n_kv, layer.n_q
        )
        mlp += shape.mlp_params(shape.intermediate) - shape.mlp_params(layer.n_mlp)
    removed = attention + mlp
    return round(float(attention / removed), 4) if removed else 0.0


def kept_counts(blueprint) -> list[list[int]]:
    """Per layer: the KV groups, query heads and MLP channels the plan keeps (steering.py rebuilds plans from it)."""
    return [[layer.n_kv, layer.n_q, layer.n_mlp] for layer in blueprint.layers]


def dev_front(points: list[SearchPoint]) -> list[SearchPoint]:
    """The distinct plans no other evaluated plan dominates on the quality objectives, best utility first."""
    distinct = list({p.blueprint.plan_id: p for p in points}.values())
    keep = non_dominated(np.stack([p.objectives[list(QUALITY)] for p in distinct]), [True] * len(QUALITY))
    front = [p for p, k in zip(distinct, keep, strict=True) if k]
    return sorted(front, key=lambda p: tuple(-p.objectives[i] for i in QUALITY))


def best_pair(plans: list[dict]) -> dict:
    """The ordered pair (A, B) of test plans with the largest min(A.pope − B.pope, B.sqa − A.sqa)."""
    best = None
    for a in plans:
        for b in plans:
            if a is b:
                continue
            gap = min(a["pope_adversarial"] - b["pope_adversarial"], b["sqa"] - a["sqa"])
            if best is None or gap > best[0]:
                best = (gap, a["plan_id"], b["plan_id"])
    if best is None:
        return {"min_gap": None, "pope_plan": None, "sqa_plan": None, "target": TARGET_GAP, "met": False}
    gap, a, b = best
    return {"min_gap": round(gap, 4), "pope_plan": a, "sqa_plan": b, "target": TARGET_GAP, "met": gap >= TARGET_GAP}


class _Tally:
    """An evaluator that counts the results the plan store answered: they cost a read, so `search_seconds` of a
    rerun over a warm store says little about the search without this count."""

    def __init__(self, inner) -> None:
        self.inner, self.computed, self.from_store = inner, 0, 0

    def evaluate(self, blueprints, progress=None):
        results = self.inner.evaluate(blueprints, progress)
        read = sum(r.cached for r in results)
        self.from_store += read
        self.computed += len(results) - read
        return results

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


class _Bar:
    """A tqdm bar driven by a `(stage, done, total)` progress callback."""

    def __init__(self, desc: str) -> None:
        self.bar = tqdm(desc=desc, unit="plan")

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def run_model(spec: str, args, threads: int) -> dict:
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    plans = planner(spec)
    dev = _Tally(make_evaluator(spec, "dev", args.limit))
    bar = _Bar(f"{spec} NSGA-II on dev")
    points = nsga2_search(
        plans, dev, args.evals, pop_size=args.pop_size, seed=args.seed, progress=bar, budget=args.sparsity
    )
    bar.close()
    search_seconds = time.perf_counter() - t0
    front = dev_front(points)
    blueprints = [p.blueprint for p in front]
    dense_dev, *front_dev = dev.evaluate([None, *blueprints])
    dev.close()

    test = make_evaluator(spec, "test", args.test_limit)
    bar = _Bar(f"{spec} front on test")
    dense_test, *front_test = test.evaluate([None, *blueprints], bar)
    bar.close()
    test.close()
    rows = [
        {
            "plan_id": bp.plan_id,
            "split": "test",
            **_scores(t),
            "dev": {**_scores(d), **{OBJECTIVES[i].name: round(float(p.objectives[i]), 4) for i in QUALITY}},
            "achieved": round(bp.achieved, 4),
            "removed_attention_share": removed_attention_share(bp, plans.shapes),
            "kept": kept_counts(bp),
        }
        for p, bp, d, t in zip(front, blueprints, front_dev, front_test, strict=True)
    ]
    return {
        "model": spec,
        "sparsity": args.sparsity,
        "plans": rows,
        "dense": {"split": "test", **_scores(dense_test), "dev": _scores(dense_dev)},
        "best_pair": best_pair(rows),
        "n_evals": len(points),
        "distinct_plans_evaluated": len({p.blueprint.plan_id for p in points}),
        "settings": {
            "search_split": "dev",
            "limit": args.limit,
            "test_limit": args.test_limit,
            "pop_size": args.pop_size,
            "seed": args.seed,
            "threads": threads,
        },
        "search_seconds": round(search_seconds, 1),
        "dev_evaluations": {"computed": dev.computed, "from_store": dev.from_store},
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["embedded", "embedded:qwen2_5_vl"])
    parser.add_argument("--sparsity", type=float, default=0.3, help="the fixed decoder sparsity of every plan")
    parser.add_argument("--evals", type=int, default=160, help="NSGA-II plan evaluations on dev per model")
    parser.add_argument("--pop-size", type=int, default=16, help="NSGA-II population")
    parser.add_argument("--limit", type=int, default=200, help="dev questions per set behind each evaluation")
    parser.add_argument("--test-limit", type=int, default=None, help="test questions per set (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)
    quiet_libraries()
    threads = set_threads(args.threads)
    report = {"seed": args.seed, "models": [run_model(spec, args, threads) for spec in args.models]}
    emit("tradeoff", report, args.save)


if __name__ == "__main__":
    main()
