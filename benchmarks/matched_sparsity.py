"""Every baseline and the Torch-Pruning peer at matched decoder sparsity, scored on ShapesWorld `dev`.

Prints JSON (and writes benchmarks/results/matched_sparsity.json with --save): per model, method and sparsity, the
achieved sparsity, POPE balanced accuracy and yes-ratio per category, and ScienceQA accuracy, all from the masked
evaluation on the whole dev split. `random` is best-of-N on a dev subset (`--select-limit` questions per set), as
`hipp plan baseline --method random` does, then scored on the whole dev split like the others.

The "allocation matters" check of the Pruning-engine issue is `spread_adversarial_at_0.3`: the range of the
heuristics' adversarial balanced accuracies at 30% sparsity (target >= 0.03 on embedded LLaVA).

    python benchmarks/matched_sparsity.py [--models embedded embedded:qwen2_5_vl] [--sparsities 0.2 0.3 0.4 0.5]
"""

from __future__ import annotations

import argparse
import time

from results_io import emit
from tqdm import tqdm

from hipp_core.api import baseline_names, evaluate_model, method_names, plan_baseline, planning_method
from hipp_core.config import quiet_libraries, set_threads
from hipp_core.errors import HippError


def row(spec: str, method: str, sparsity: float, seed: int, n_random: int, select_limit: int) -> dict:
    t0 = time.perf_counter()
    wanted = {"n_random": n_random, "seed": seed, "limit": select_limit}  # for the methods that search on dev
    takes = {o.name for o in planning_method(method).options()}
    try:
        blueprint = plan_baseline(spec, method, sparsity, options={k: v for k, v in wanted.items() if k in takes})
    except HippError as err:  # the peer cannot reach every budget on every architecture: report, do not crash
        return {"method": method, "sparsity": sparsity, "error": str(err)}
    result = evaluate_model(spec, "all", "dev", image_free=False, blueprint=blueprint)
    return {
        "method": method,
        "sparsity": sparsity,
        "achieved": round(blueprint.achieved, 4),
        "plan_id": blueprint.plan_id,
        "pope_balanced_accuracy": {c: round(m.balanced_accuracy, 4) for c, m in result.pope.items()},
        "pope_yes_ratio": {c: round(m.yes_ratio, 4) for c, m in result.pope.items()},
        "sqa_accuracy": round(result.sqa.accuracy, 4),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["embedded", "embedded:qwen2_5_vl"])
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.2, 0.3, 0.4, 0.5])
    parser.add_argument("--n-random", type=int, default=8)
    parser.add_argument("--select-limit", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args()
    quiet_libraries()
    threads = set_threads(args.threads)
    peers = method_names("peer")
    ours = [m for m in baseline_names() if m not in peers]  # every registered baseline that is not the peer
    report: dict = {"split": "dev", "threads": threads, "seed": args.seed, "n_random": args.n_random, "models": {}}
    jobs = [(spec, method, s) for spec in args.models for s in args.sparsities for method in (*ours, *peers)]
    rows: dict[str, list[dict]] = {spec: [] for spec in args.models}
    for spec, method, s in tqdm(jobs, desc="plans", unit="plan"):
        rows[spec].append(row(spec, method, s, args.seed, args.n_random, args.select_limit))
    for spec in args.models:
        dense = evaluate_model(spec, "all", "dev", image_free=False)
        at_03 = [
            r["pope_balanced_accuracy"]["adversarial"]
            for r in rows[spec]
            if r["sparsity"] == 0.3 and r["method"] in ours and "error" not in r
        ]
        report["models"][spec] = {
            "dense": {
                "pope_balanced_accuracy": {c: round(m.balanced_accuracy, 4) for c, m in dense.pope.items()},
                "sqa_accuracy": round(dense.sqa.accuracy, 4),
            },
            "plans": rows[spec],
            "spread_adversarial_at_0.3": round(max(at_03) - min(at_03), 4) if at_03 else None,
        }
    emit("matched_sparsity", report, args.save)


if __name__ == "__main__":
    main()
