"""Questions per second of the evaluation path: logit scoring vs generation, on the embedded models.

Prints JSON. Both modes run in the same process on the same questions, alternated, and the ratio of their
medians is the figure to read (absolute speed depends on the machine and its load).

    python benchmarks/eval_throughput.py [--models embedded,embedded:qwen2_5_vl] [--questions 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from results_io import emit

from hipp_core.api import load_benchmark
from hipp_core.config import quiet_libraries, set_threads
from hipp_core.evaluation import benchmarks
from hipp_core.evaluation.engine import score
from hipp_core.models.loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="embedded,embedded:qwen2_5_vl")
    parser.add_argument("--questions", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--save", action="store_true", help="also write benchmarks/results/eval_throughput.json")
    args = parser.parse_args()
    quiet_libraries()
    threads = set_threads(args.threads)
    items = load_benchmark("pope", "dev", args.questions)["pope"]["adversarial"]
    report = {"questions": len(items), "batch_size": args.batch_size, "threads": threads, "models": {}}
    for spec in args.models.split(","):
        adapter = load_model(spec).adapter
        times: dict[str, list[float]] = {"logits": [], "generate": []}
        agree = None
        for _ in range(args.repeats):
            for scoring, spent in times.items():
                t0 = time.perf_counter()
                preds = score(adapter, benchmarks.get("pope"), items, scoring, batch_size=args.batch_size)
                spent.append(time.perf_counter() - t0)
                if scoring == "logits":
                    logit_preds = preds
                else:
                    agree = sum(a == b for a, b in zip(logit_preds, preds)) / len(items)
        qps = {k: len(items) / statistics.median(v) for k, v in times.items()}
        report["models"][spec] = {
            "logits_questions_per_s": round(qps["logits"], 1),
            "generate_questions_per_s": round(qps["generate"], 1),
            "speedup_logits_over_generate": round(qps["logits"] / qps["generate"], 2),
            "answer_agreement": agree,
        }
    emit("eval_throughput", report, args.save)


if __name__ == "__main__":
    main()
