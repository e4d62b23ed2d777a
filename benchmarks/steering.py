"""Why the preference does or does not steer the plan: the trade-off plans against what GRPO sees (Steering issue).

Prints JSON (and, with --save, writes benchmarks/results/steering.json). Per model, at the trade-off budget:
- the pair, chosen on dev from `benchmarks/results/tradeoff.json`'s NSGA-II front: the plan with the best dev
  robustness (A) and the one with the best dev utility (B), rebuilt from the units they keep (the rebuilt plan ids
  are checked against the recorded ones);
- do the rewards separate them by preference? A and B scored on the questions GRPO's rewards read (dev, `--limit`
  per set, GRPO's by default), rewarded under the robustness-heavy and the utility-heavy preference: A should win the first and B the
  second. The margins are set beside the spread of rewards inside a GRPO group at the same preference and budget
  (`--samples` plans drawn from the trained policy), which is the scale an advantage is measured in;
- do the objectives pull apart among the plans GRPO samples at all? the Spearman correlation of utility and robustness
  over the policy's samples: near 1, every preference ranks the samples alike and no reward can teach a
  preference-dependent plan;
- does GRPO ever sample them? the layout distance (mean absolute difference of the kept share of each attention and
  MLP block) from each sampled plan, and from the deterministic plan of each preference, to A and to B, next to the
  distance between A and B themselves.
Nothing here reads the test split.

    python benchmarks/steering.py [--models embedded embedded:qwen2_5_vl] [--samples 8] [--save]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from policy_quality import ROBUST, UTILITY
from results_io import emit, load
from scipy.stats import spearmanr

from hipp_core.api import planner
from hipp_core.blueprint import Blueprint, LayerShape, blueprint_from_layers, select_units
from hipp_core.config import quiet_libraries, set_threads
from hipp_core.errors import HippError
from hipp_core.evaluation.backends import make_evaluator
from hipp_core.grpo import GRPOConfig, objectives, reward
from hipp_core.objectives import NAMES
from hipp_core.policy import Planner

PREFERENCES = {"robust": ROBUST, "utility": UTILITY}


def rebuild(plans: Planner, row: dict) -> Blueprint:
    """A trade-off plan from the counts it keeps per layer; the units are the ones the planner's scores pick, as
    when it was made, so the plan id must come out the same."""
    layers = [
        select_units(shape, kv, q // kv, mlp, score)
        for shape, score, (kv, q, mlp) in zip(plans.shapes, plans.scores, row["kept"], strict=True)
    ]
    bp = blueprint_from_layers(
        plans.model_id,
        plans.family,
        plans.shapes,
        row["achieved"],
        layers,
        plans.m,
        plans.policy.config.s_max,
        "search",
        None,
        "wanda",
    )
    if bp.plan_id != row["plan_id"]:
        raise HippError(
            f"plan {row['plan_id']} of tradeoff.json does not rebuild on this model (got {bp.plan_id}); rerun "
            "benchmarks/tradeoff.py on the checkpoint you diagnose"
        )
    return bp


def kept_shares(blueprint: Blueprint, shapes: list[LayerShape]) -> np.ndarray:
    """Per block (every layer's attention, then every layer's MLP), the share of its units the plan keeps."""
    attention = [len(p.heads) / s.n_heads for p, s in zip(blueprint.layers, shapes, strict=True)]
    mlp = [len(p.mlp) / s.intermediate for p, s in zip(blueprint.layers, shapes, strict=True)]
    return np.array(attention + mlp)


def distance(a: Blueprint, b: Blueprint, shapes: list[LayerShape]) -> float:
    return round(float(np.abs(kept_shares(a, shapes) - kept_shares(b, shapes)).mean()), 4)


def run_model(entry: dict, samples: int, seed: int, limit: int | None) -> dict:
    spec, budget = entry["model"], entry["sparsity"]
    plans = planner(spec)
    if not plans.trained:
        raise HippError(f"no trained policy for {spec}; run `hipp train-policy {spec}` (or policy_quality.py) first")
    front = entry["plans"]
    if any("kept" not in row for row in front):
        raise HippError(
            f"tradeoff.json's plans of {spec} predate the kept layouts steering rebuilds: rerun tradeoff.py"
        )
    rows = {
        "A_robust": max(front, key=lambda r: r["dev"]["robustness"]),
        "B_utility": max(front, key=lambda r: r["dev"]["utility"]),
    }
    if rows["A_robust"] is rows["B_utility"]:
        return {"model": spec, "budget": budget, "note": "one front plan is best on both objectives: nothing to steer"}
    pair = {name: rebuild(plans, row) for name, row in rows.items()}
    config = GRPOConfig()
    evaluator = make_evaluator(spec, config.split, limit)
    dense = evaluator.evaluate([None])[0]

    def scored(blueprints: list[Blueprint]) -> list[np.ndarray]:
        return [objectives(r, dense, bp.achieved) for bp, r in zip(blueprints, evaluator.evaluate(blueprints))]

    pair_obj = dict(zip(pair, scored(list(pair.values())), strict=True))
    margins = {
        "robust": reward(pair_obj["A_robust"], ROBUST, config.reward)
        - reward(pair_obj["B_utility"], ROBUST, config.reward),
        "utility": reward(pair_obj["B_utility"], UTILITY, config.reward)
        - reward(pair_obj["A_robust"], UTILITY, config.reward),
    }
    policy, sampled_objs, mean_plans = {}, [], {}
    for name, w in PREFERENCES.items():
        w_t = torch.tensor([w] * samples, dtype=torch.float32)
        drawn = plans.policy.act(plans.state(), w_t, torch.full((samples,), budget), seed=seed)
        sampled = [plans.make(s, w, "policy") for s in drawn]
        mean_plan = mean_plans[name] = plans.blueprint(w, budget)
        objs = scored([mean_plan, *sampled])
        rewards = np.array([reward(o, w, config.reward) for o in objs[1:]])
        sampled_objs += objs[1:]
        policy[name] = {
            "mean_plan": {
                "plan_id": mean_plan.plan_id,
                **_named(objs[0]),
                "distance_to_A": distance(mean_plan, pair["A_robust"], plans.shapes),
                "distance_to_B": distance(mean_plan, pair["B_utility"], plans.shapes),
            },
            "samples": {
                "distinct": len({bp.plan_id for bp in sampled}),
                "reward_std": round(float(rewards.std()), 4),
                "utility_range": _range([o[0] for o in objs[1:]]),
                "robustness_range": _range([o[1] for o in objs[1:]]),
                "closest_to_A": min(distance(bp, pair["A_robust"], plans.shapes) for bp in sampled),
                "closest_to_B": min(distance(bp, pair["B_utility"], plans.shapes) for bp in sampled),
            },
            "reward_margin": round(float(margins[name]), 4),
            "margin_over_reward_std": round(float(margins[name] / max(rewards.std(), 1e-9)), 2),
        }
    evaluator.close()
    return {
        "model": spec,
        "budget": budget,
        "reward_questions": {"split": config.split, "limit": limit, "reward": config.reward},
        "pair": {
            name: {"plan_id": pair[name].plan_id, "tradeoff_dev": rows[name]["dev"], **_named(pair_obj[name])}
            for name in pair
        },
        "pair_distance": distance(pair["A_robust"], pair["B_utility"], plans.shapes),
        "policy_mean_plans_distance": distance(mean_plans["robust"], mean_plans["utility"], plans.shapes),
        "policy": policy,
        "samples_utility_robustness_spearman": _spearman([o[0] for o in sampled_objs], [o[1] for o in sampled_objs]),
        "policy_id": plans.policy_id,
        "samples": samples,
        "seed": seed,
    }


def _named(obj: np.ndarray) -> dict:
    return {name: round(float(v), 4) for name, v in zip(NAMES, obj, strict=True)}


def _spearman(x: list[float], y: list[float]) -> float | None:
    """None when either side is constant (no ranking to compare)."""
    if len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return round(float(spearmanr(x, y).statistic), 3)


def _range(values: list[float]) -> list[float]:
    return [round(float(min(values)), 4), round(float(max(values)), 4)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["embedded", "embedded:qwen2_5_vl"])
    parser.add_argument("--samples", type=int, default=GRPOConfig().group_size, help="policy plans per preference")
    parser.add_argument("--limit", type=int, default=GRPOConfig().limit, help="questions per set (GRPO's rewards)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)
    quiet_libraries()
    threads = set_threads(args.threads)
    saved = {m["model"]: m for m in (load("tradeoff") or {"models": []})["models"]}
    missing = [spec for spec in args.models if spec not in saved]
    if missing:
        raise SystemExit(f"benchmarks/results/tradeoff.json has no entry for {', '.join(missing)}: run tradeoff.py")
    report = {
        "threads": threads,
        "models": [run_model(saved[spec], args.samples, args.seed, args.limit) for spec in args.models],
    }
    emit("steering", report, args.save)


if __name__ == "__main__":
    main()
