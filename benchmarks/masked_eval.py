"""Cost of scoring a plan with the masked view vs the dense model, and plans scored per minute on dev.

Prints JSON. Dense and masked evaluations alternate in one process; the ratio of medians is the figure
(target ≤ 1.15). The dev subset is the one rewards use: `--limit` questions per POPE category and of ScienceQA.

    python benchmarks/masked_eval.py [--model embedded] [--limit 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from results_io import emit

from hipp_core.api import load_benchmark, plan_baseline
from hipp_core.config import quiet_libraries, set_threads
from hipp_core.evaluation.engine import evaluate
from hipp_core.models.loading import load_model
from hipp_core.prune import masked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--save", action="store_true", help="also write benchmarks/results/masked_eval.json")
    args = parser.parse_args()
    quiet_libraries()
    threads = set_threads(args.threads)
    loaded = load_model(args.model)
    tasks = load_benchmark("all", "dev", args.limit)
    blueprint = plan_baseline(args.model, "uniform", 0.4)
    dense_t, masked_t = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        evaluate(loaded.adapter, loaded.model_id, tasks, "dev", image_free=False)
        dense_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with masked(loaded.adapter, blueprint):
            evaluate(loaded.adapter, loaded.model_id, tasks, "dev", image_free=False)
        masked_t.append(time.perf_counter() - t0)
    questions = sum(len(items) for groups in tasks.values() for items in groups.values())
    ratio = statistics.median(masked_t) / statistics.median(dense_t)
    emit(
        "masked_eval",
        {
            "model": args.model,
            "threads": threads,
            "questions_per_plan": questions,
            "dense_seconds_median": round(statistics.median(dense_t), 3),
            "masked_seconds_median": round(statistics.median(masked_t), 3),
            "masked_over_dense": round(ratio, 3),
            "meets_target_1.15": ratio <= 1.15,
            "plans_per_minute": round(60 / statistics.median(masked_t), 1),
        },
        args.save,
    )


if __name__ == "__main__":
    main()
