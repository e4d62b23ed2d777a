"""How good the trained policy is, against search and heuristics, on the embedded models (Policy issue).

Prints JSON (and, with --save, writes benchmarks/results/policy_quality.json and a markdown table beside it).
Per model it trains (or resumes) the policy with GRPO on dev, then measures:
- hypervolume of (utility, robustness, compression) on dev, relative to the dense model, reference point at the
  origin (`hipp_core.search.hypervolume`), for: the policy's deterministic blueprints over a 66-point preference
  grid; NSGA-II and random search at the number of distinct plans GRPO evaluated; each heuristic across
  sparsities 0.1–0.6;
- matched sparsity 0.2 / 0.3 / 0.4 / 0.5 on the TEST split (reporting only): the policy with its budget overridden,
  robustness-heavy and utility-heavy, against the best heuristic at that sparsity (chosen on dev, by the mean of
  ScienceQA accuracy and POPE balanced accuracy) and the Torch-Pruning peer;
- controllability: the robustness weight swept at a fixed budget (utility weight = 0.9 - robustness, compression
  0.1), each plan scored on TEST (reporting only; nothing is chosen on it), with the Spearman correlations of the
  robustness weight with adversarial POPE and of the utility weight with ScienceQA; and the compression weight
  against achieved sparsity;
- the stability gate's counters from training; invocation latency p50 / p99; GRPO wall time.

    python benchmarks/policy_quality.py [--models embedded embedded:qwen2_5_vl] [--iters 16] [--save]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from results_io import emit, load, write
from scipy.stats import spearmanr

from hipp_core.api import evaluate_model, method_names, plan_baseline, planner, train_policy
from hipp_core.config import quiet_libraries, set_threads
from hipp_core.errors import HippError
from hipp_core.evaluation.backends import make_evaluator
from hipp_core.grpo import GRPOConfig, load_policy, objectives
from hipp_core.search import hypervolume, nsga2_search, random_search

ROBUST, UTILITY = (0.1, 0.8, 0.1), (0.8, 0.1, 0.1)  # the steering issue's robustness- and utility-heavy preferences
MATCHED = (0.2, 0.3, 0.4, 0.5)
HEURISTIC_SPARSITIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
FIXED_BUDGET = 0.3
STEER_POINTS = 10  # robustness weights 0, 0.1, ..., 0.9 in the controllability sweep


def simplex_grid(steps: int = 10) -> list[tuple[float, float, float]]:
    """The 66 preferences with weights in tenths."""
    return [(i / steps, j / steps, (steps - i - j) / steps) for i in range(steps + 1) for j in range(steps + 1 - i)]


def _metrics(result) -> dict:
    return {
        "pope_balanced_accuracy": {c: round(m.balanced_accuracy, 4) for c, m in result.pope.items()},
        "pope_yes_ratio": {c: round(m.yes_ratio, 4) for c, m in result.pope.items()},
        "sqa_accuracy": round(result.sqa.accuracy, 4),
    }


def run_model(spec: str, args) -> dict:
    t0 = time.perf_counter()
    options = {"address": args.address, "num_workers": args.num_workers}
    record = train_policy(
        spec, config=GRPOConfig(iters=args.iters, seed=args.seed), backend=args.backend, backend_options=options
    )
    _, ckpt = load_policy(Path(record.checkpoint_path))
    state = json.loads(ckpt["state"])
    curve = state["curve"]
    n_evals = len(state["scored"])
    plans = planner(spec)
    if plans.policy_id != record.policy_id:  # the planner takes the store's newest policy: it must be this one
        raise SystemExit(f"planner loaded policy {plans.policy_id}, not the one just trained ({record.policy_id})")
    evaluator = make_evaluator(spec, "dev", GRPOConfig().limit, backend=args.backend, **options)
    dense = evaluator.evaluate([None])[0]

    def objs(blueprints) -> np.ndarray:
        results = evaluator.evaluate(blueprints)
        return np.stack([objectives(r, dense, bp.achieved) for bp, r in zip(blueprints, results)])

    grid = [plans.blueprint(w) for w in simplex_grid()]
    policy_points = objs(grid)
    nsga = nsga2_search(plans, evaluator, n_evals, seed=args.seed)
    rand = random_search(plans, evaluator, n_evals, seed=args.seed)
    heuristic_points, heuristic_dev = {}, {}
    for name in method_names("heuristic"):
        bps = [plan_baseline(spec, name, s) for s in HEURISTIC_SPARSITIES]
        pts = objs(bps)
        heuristic_points[name] = pts
        heuristic_dev[name] = dict(zip(HEURISTIC_SPARSITIES, bps, strict=True))
    hv = {
        "policy_grid": hypervolume(policy_points),
        "nsga2": hypervolume(np.stack([p.objectives for p in nsga])),
        "random_search": hypervolume(np.stack([p.objectives for p in rand])),
        **{f"heuristic_{k}": hypervolume(v) for k, v in heuristic_points.items()},
    }

    # Matched sparsity on test: the best heuristic per sparsity is chosen on dev, never on test.
    matched = []
    for s in MATCHED:
        idx = HEURISTIC_SPARSITIES.index(s)
        dev_score = {
            k: 0.5 * v[idx, 0] * dense.sqa.accuracy + 0.5 * v[idx, 1] * dense.pope_balanced_accuracy
            for k, v in heuristic_points.items()
        }
        best = max(dev_score, key=dev_score.get)
        rows = {
            "policy_robust": plans.blueprint(ROBUST, s),
            "policy_utility": plans.blueprint(UTILITY, s),
            f"best_heuristic ({best})": heuristic_dev[best][s],
        }
        for peer in method_names("peer"):
            try:
                rows[peer] = plan_baseline(spec, peer, s)
            except HippError as err:
                rows[peer] = str(err)
        entry = {"sparsity": s}
        for name, bp in rows.items():
            if isinstance(bp, str):
                entry[name] = {"error": bp}
                continue
            result = evaluate_model(spec, "all", "test", image_free=False, blueprint=bp)
            entry[name] = {"achieved": round(bp.achieved, 4), **_metrics(result)}
        matched.append(entry)

    steering = controllability(spec, plans)
    comp_ws = [((1 - c) / 2, (1 - c) / 2, c) for c in np.linspace(0, 1, 11)]
    comp_sparsity = [plans.blueprint(w).achieved for w in comp_ws]
    rho_c = _spearman([w[2] for w in comp_ws], comp_sparsity)

    evaluator.close()
    latencies = []
    rng = np.random.default_rng(args.seed)
    for w in rng.dirichlet(np.ones(3), size=200):
        t = time.perf_counter()
        plans.blueprint(w)
        latencies.append((time.perf_counter() - t) * 1000)
    last = curve[-1]
    return {
        "policy_id": plans.policy_id,  # the policy every plan below came from (the one just trained)
        "grpo": {
            "iterations": last["iter"],
            "distinct_plans_evaluated": n_evals,
            "wall_seconds": round(sum(c["seconds"] for c in curve), 1),
            "evaluations_from_store": last.get("from_store"),  # read back, not computed: cheap in wall_seconds
            "reward_mean_first_last": [round(curve[0]["reward_mean"], 4), round(last["reward_mean"], 4)],
            "front_size": last["front_size"],
        },
        "hypervolume_dev": {k: round(v, 4) for k, v in hv.items()},
        "policy_beats_nsga2": hv["policy_grid"] >= hv["nsga2"],
        "policy_beats_all_heuristics_and_random": all(
            hv["policy_grid"] > v for k, v in hv.items() if k.startswith("heuristic") or k == "random_search"
        ),
        "matched_test": matched,
        "controllability": {
            **steering,
            "spearman_compression_weight_vs_sparsity": rho_c,
            "sparsity_by_compression_weight": [round(x, 4) for x in comp_sparsity],
        },
        "gate": {
            "gated_plans_not_evaluated": last["gated"] - last["audited"],
            "audited": last["audited"],
            "false_gates": last["false_gates"],
            "false_gate_rate": round(last["false_gates"] / last["audited"], 3) if last["audited"] else None,
            "tau": GRPOConfig().gate_tau,
        },
        "invocation_ms": {
            "p50": round(statistics.median(latencies), 2),
            "p99": round(float(np.percentile(latencies, 99)), 2),
        },
        "benchmark_seconds": round(time.perf_counter() - t0, 1),
    }


def controllability(spec: str, plans) -> dict:
    """The robustness weight swept at FIXED_BUDGET with the compression weight at 0.1: each plan on test, the
    Spearman correlations, and the steering issue's check of the robustness- against the utility-heavy plan."""
    weights = [(round(0.9 - r / STEER_POINTS, 2), round(r / STEER_POINTS, 2), 0.1) for r in range(STEER_POINTS)]
    rows = []
    for w in weights:
        bp = plans.blueprint(w, FIXED_BUDGET)
        result = evaluate_model(spec, "all", "test", image_free=False, blueprint=bp)
        rows.append(
            {
                "preference": w,
                "plan_id": bp.plan_id,
                "achieved": round(bp.achieved, 4),
                "pope_adversarial": round(result.pope["adversarial"].balanced_accuracy, 4),
                "pope_mean": round(result.pope_balanced_accuracy, 4),
                "sqa": round(result.sqa.accuracy, 4),
            }
        )
    by_pref = {tuple(r["preference"]): r for r in rows}
    robust, utility = by_pref[ROBUST], by_pref[UTILITY]
    return {
        "budget": FIXED_BUDGET,
        "split": "test",
        "sweep": rows,
        "distinct_plans": len({r["plan_id"] for r in rows}),
        "spearman_robustness_weight_vs_pope_adversarial": _spearman(
            [r["preference"][1] for r in rows], [r["pope_adversarial"] for r in rows]
        ),
        "spearman_utility_weight_vs_sqa": _spearman([r["preference"][0] for r in rows], [r["sqa"] for r in rows]),
        "robust_minus_utility_pope_adversarial": round(robust["pope_adversarial"] - utility["pope_adversarial"], 4),
        "utility_minus_robust_sqa": round(utility["sqa"] - robust["sqa"], 4),
    }


def _spearman(x, y) -> float | None:
    """None when one side is constant (the correlation is undefined, e.g. a policy that ignores the weight)."""
    rho = spearmanr(x, y).statistic
    return None if np.isnan(rho) else round(float(rho), 3)


def _gate_line(g: dict) -> str:
    if not g["tau"]:
        return "Stability gate off (τ = 0, the default; benchmarks/gate_audit.py says why)."
    return (
        f"Gate (τ = {g['tau']}): {g['gated_plans_not_evaluated']} evaluations saved, false-gate rate "
        f"{g['false_gate_rate']} ({g['audited']} audited)."
    )


def markdown(report: dict) -> str:
    lines = []
    for spec, r in report["models"].items():
        lines += [f"#### {spec}", "", "| method | hypervolume (dev) |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in r["hypervolume_dev"].items()]
        lines += [
            "",
            "| sparsity | plan | POPE bal. acc. rand / pop / adv | yes-ratio adv | SQA acc. |",
            "|---|---|---|---|---|",
        ]
        for entry in r["matched_test"]:
            for name, m in entry.items():
                if name == "sparsity":
                    continue
                if "error" in m:
                    lines.append(f"| {entry['sparsity']} | {name} | {m['error']} | | |")
                    continue
                b = m["pope_balanced_accuracy"]
                lines.append(
                    f"| {entry['sparsity']} | {name} | {b['random']:.3f} / {b['popular']:.3f} / "
                    f"{b['adversarial']:.3f} | {m['pope_yes_ratio']['adversarial']:.2f} | {m['sqa_accuracy']:.3f} |"
                )
        c, g, ms = r["controllability"], r["gate"], r["invocation_ms"]
        lines += [
            "",
            (
                f"Controllability at budget {c['budget']} on test: {c['distinct_plans']} distinct plan(s) over "
                f"{len(c['sweep'])} robustness weights; Spearman robustness weight vs adversarial POPE "
                f"{c['spearman_robustness_weight_vs_pope_adversarial']}, utility weight vs ScienceQA "
                f"{c['spearman_utility_weight_vs_sqa']}; robustness-heavy minus utility-heavy adversarial POPE "
                f"{c['robust_minus_utility_pope_adversarial']:+.4f}, utility-heavy minus robustness-heavy ScienceQA "
                f"{c['utility_minus_robust_sqa']:+.4f} (targets: ≥ +0.02 each). "
                f"Compression weight vs sparsity: {c['spearman_compression_weight_vs_sparsity']}. "
                + _gate_line(g)
                + f" Invocation p50 {ms['p50']} ms, p99 {ms['p99']} ms. GRPO: {r['grpo']['wall_seconds']} s, "
                f"{r['grpo']['distinct_plans_evaluated']} distinct plans."
            ),
            "",
        ]
    return "\n".join(lines)


PRINTED = ("grpo", "hypervolume_dev", "matched_test", "controllability", "gate", "invocation_ms")


def merged(report: dict, saved: dict | None) -> dict:
    """`report` with the saved report's other models added, but only entries that have every section the markdown
    prints: an older one would fail after the whole run. Fields that only record (such as `policy_id`) may be
    missing: dropping a model's results for those would lose a measurement that is still valid."""
    old = (saved or {}).get("models", {})
    kept = {spec: e for spec, e in old.items() if set(e) >= set(PRINTED) and "budget" in e.get("controllability", {})}
    dropped = sorted(set(old) - set(kept) - set(report["models"]))
    if dropped:
        print(f"dropped saved results in an older format for {', '.join(dropped)}: rerun them", file=sys.stderr)
    return {**report, "models": {**kept, **report["models"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["embedded", "embedded:qwen2_5_vl"])
    parser.add_argument("--iters", type=int, default=GRPOConfig().iters)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--backend", default="local", help="evaluator backend for GRPO and the search peers")
    parser.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    parser.add_argument("--num-workers", type=int, default=None, help="Ray workers (with --backend ray)")
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args()
    quiet_libraries()
    threads = set_threads(args.threads)
    report = {"threads": threads, "seed": args.seed, "models": {spec: run_model(spec, args) for spec in args.models}}
    if args.save:  # models run separately (e.g. in parallel) merge into one report
        report = merged(report, load("policy_quality"))
        write("policy_quality.md", markdown(report) + "\n")
    emit("policy_quality", report, args.save, merge=False)  # merged above, older formats left out


if __name__ == "__main__":
    main()
