"""Plans scored per minute in process and on 1 vs 2 Ray workers (CPU, embedded model), and a GRPO wall-time model
for LLaVA-1.5-7B on N GPUs built on the measured per-plan costs.

Prints JSON (and writes benchmarks/results/scale.json with --save). Every backend scores the same distinct random
blueprints into its own fresh plan store under a temporary HIPP_HOME, so nothing is answered from a cache; each
Ray worker gets one CPU and one torch thread, and so does the in-process run. Cluster start and model loading are
timed apart from the scoring. On a 2-core machine shared with other work the 2-worker figure is bounded by the
cores, not by the backend: read the ratio with `cpu_count` next to it.

The 7B figures are a model, not a measurement: seconds per 7B plan = questions per plan × decoder FLOPs per question
(`hipp_core.blueprint.decoder_flops` of the real architecture built on the meta device) ÷ an assumed GPU throughput,
for float32 weights (what the Ray workers load today) and for bf16. Pass `--seconds-per-plan-7b` with a figure
measured by benchmarks/gpu_7b.py to add a scenario built on a measurement.

    python benchmarks/scale.py [--plans 8] [--limit 100] [--save]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import arch7b
import numpy as np
from results_io import emit

from hipp_core.api import channel_multiple, load_benchmark
from hipp_core.blueprint import Blueprint, UnitScores, decoder_flops, make_blueprint
from hipp_core.config import quiet_libraries, set_threads
from hipp_core.evaluation import benchmarks
from hipp_core.evaluation.backends import make_evaluator
from hipp_core.evaluation.engine import open_image
from hipp_core.grpo import GRPOConfig
from hipp_core.models.loading import load_model
from plan_store import PlanStore

# Assumptions of the 7B model (stated, not measured here; every one is a command-line option).
H100_FP32_PEAK_TFLOPS = 67  # an H100 SXM without tensor cores: plain float32, PyTorch's default (TF32 off)
H100_BF16_PEAK_TFLOPS = 989  # its dense bf16 tensor-core peak
ASSUMED_TFLOPS_FP32 = 40  # ≈60% of the FP32 peak: large float32 GEMMs run near peak, the rest of a forward does not
ASSUMED_TFLOPS_BF16 = 300  # ≈30% of the bf16 peak sustained by batched transformers prefill (padding, non-matmul work)
ASSUMED_TEXT_TOKENS_7B = 64  # a POPE / ScienceQA prompt in LLaVA's chat template, beside the 576 image tokens
ASSUMED_LOAD_SECONDS_7B = 60.0  # 14-28 GB of safetensors from local disk onto a GPU, per worker, in parallel


def random_blueprints(spec: str, n: int, seed: int) -> list[Blueprint]:
    """`n` distinct plans (random budget in [0.2, 0.6], Dirichlet allocation, random unit scores): the cost of
    scoring a plan does not depend on which units it keeps, so no calibration is needed."""
    loaded, rng = load_model(spec), np.random.default_rng(seed)
    shapes = loaded.adapter.layer_shapes()
    m = channel_multiple(max(s.intermediate for s in shapes))
    plans: dict[str, Blueprint] = {}
    while len(plans) < n:
        scores = [UnitScores(head=rng.random(s.n_heads), mlp=rng.random(s.intermediate)) for s in shapes]
        alpha = rng.dirichlet(np.ones(len(shapes)))
        bp = make_blueprint(loaded.model_id, loaded.family, shapes, rng.uniform(0.2, 0.6), alpha, scores, m)
        plans[bp.plan_id] = bp
    return list(plans.values())


def score(evaluator, warm: list[Blueprint], plans: list[Blueprint]) -> dict:
    """Warm every worker with one plan each, then time the measured set."""
    evaluator.evaluate(warm)
    t0 = time.perf_counter()
    results = evaluator.evaluate(plans)
    wall = time.perf_counter() - t0
    assert not any(r.cached for r in results), "a measured plan came from the cache"
    worker_seconds = statistics.mean(r.seconds for r in results)
    return {
        "plans": len(plans),
        "wall_seconds": round(wall, 2),
        "plans_per_minute": round(60 * len(plans) / wall, 2),
        "seconds_per_plan_in_worker": round(worker_seconds, 3),
    }


def in_process(spec: str, limit: int, warm: list, plans: list, home: Path) -> dict:
    evaluator = make_evaluator(spec, "dev", limit, PlanStore(home / "local.duckdb"))
    t0 = time.perf_counter()
    evaluator.evaluate([None])  # loads the model and the questions
    startup = time.perf_counter() - t0
    return {"startup_seconds": round(startup, 2), **score(evaluator, warm[:1], plans)}


def on_ray(spec: str, limit: int, workers: int, warm: list, plans: list, home: Path) -> dict:
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, logging_level="error", log_to_driver=False)
    cluster = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        store = PlanStore(home / f"ray{workers}.duckdb")
        evaluator = make_evaluator(spec, "dev", limit, store, backend="ray", num_workers=workers)
        startup = time.perf_counter() - t0
        row = score(evaluator, warm[:workers], plans)
        evaluator.close()
    finally:
        ray.shutdown()
    overhead = row["wall_seconds"] * workers / len(plans) - row["seconds_per_plan_in_worker"]
    return {
        "workers": workers,
        "cluster_start_seconds": round(cluster, 2),
        "worker_startup_seconds": round(startup, 2),
        **row,
        "driver_overhead_seconds_per_plan": round(overhead, 3),  # dispatch, transfer, store write; may be < 0 noise
    }


def tokens_per_question(spec: str, limit: int) -> float:
    """Mean prompt length (image tokens included) of the dev questions on `spec`, as the model sees them."""
    adapter = load_model(spec).adapter
    tasks = load_benchmark("all", "dev", limit)
    asked = [benchmarks.get(name).question(it) for name, groups in tasks.items() for g in groups.values() for it in g]
    texts = [q.text for q in asked]
    images = [open_image(q.image, False) if q.image is not None else None for q in asked]
    return float(adapter.encode(texts, images).inputs["attention_mask"].sum(1).float().mean())


def grpo_hours(per_plan: float, overhead: float, load: float, plans: int, batch: int) -> dict:
    """Workers load in parallel, then every iteration scores its plans in ceil(batch / N) rounds (the policy update
    waits for the whole batch), each round one plan per GPU."""
    iters = math.ceil(plans / batch)
    rows = {}
    for n in (1, 2, 4, 8):
        seconds = load + iters * math.ceil(batch / n) * (per_plan + overhead)
        rows[f"{n}_gpu"] = {"hours": round(seconds / 3600, 2), "plans_per_minute": round(60 * plans / seconds, 2)}
    return rows


def cost_model(args, questions: int, embedded: dict, overhead: float) -> dict:
    """Predicted GRPO wall time for LLaVA-1.5-7B on 1-8 GPUs, per throughput scenario."""
    seq_7b = arch7b.image_tokens("llava-1.5-7b") + args.text_tokens_7b
    flops_7b = decoder_flops(arch7b.layer_shapes("llava-1.5-7b"), None, seq_7b)
    grpo = GRPOConfig()
    batch = args.batch or grpo.prefs_per_iter * grpo.group_size
    plans = args.plans_per_run or grpo.iters * batch
    overhead = max(overhead, 0.0)
    fp32_share = args.tflops_fp32 / H100_FP32_PEAK_TFLOPS
    bf16_share = args.tflops_bf16 / H100_BF16_PEAK_TFLOPS
    scenarios = {
        "float32_as_run": (
            args.tflops_fp32,
            (
                "what the code runs today (load_model's float32 weights on the Ray GPU workers); assumed "
                f"≈{fp32_share:.0%} of an H100 SXM's {H100_FP32_PEAK_TFLOPS} TFLOP/s FP32 peak"
            ),
        ),
        "bfloat16": (
            args.tflops_bf16,
            (
                "needs a dtype option the loaders do not expose yet; assumed "
                f"≈{bf16_share:.0%} of an H100 SXM's {H100_BF16_PEAK_TFLOPS} TFLOP/s bf16 dense peak"
            ),
        ),
    }
    rows = {}
    for name, (tflops, note) in scenarios.items():
        per_plan = questions * flops_7b / (tflops * 1e12)
        rows[name] = {"assumed_tflops": tflops, "note": note, "seconds_per_plan": round(per_plan, 2)}
    if args.seconds_per_plan_7b:
        rows["given"] = {"note": "--seconds-per-plan-7b", "seconds_per_plan": args.seconds_per_plan_7b}
    for row in rows.values():
        row["grpo_wall_time"] = grpo_hours(row["seconds_per_plan"], overhead, args.load_seconds_7b, plans, batch)
    return {
        "assumptions": {
            "tokens_per_question_7b": seq_7b,
            "tokens_note": f"576 image tokens + {args.text_tokens_7b} text tokens (assumed)",
            "load_seconds_per_worker_7b": args.load_seconds_7b,
            "flops_note": "decoder layers only, both models (vision tower and lm_head add ~6% at 7B)",
        },
        "embedded_decoder_gflops_per_question": round(embedded["flops"] / 1e9, 4),
        "llava7b_decoder_tflops_per_question": round(flops_7b / 1e12, 3),
        "flops_ratio_7b_over_embedded": round(flops_7b / embedded["flops"]),
        "embedded_achieved_gflops_per_s_cpu": round(questions * embedded["flops"] / embedded["seconds"] / 1e9, 3),
        "driver_overhead_seconds_per_plan": round(overhead, 3),
        "questions_per_plan": questions,
        "plans_per_grpo_run": plans,
        "plans_per_grpo_iteration": batch,
        "plans_note": "upper bound: plans the stability gate rejects or the store already holds are not scored",
        "scenarios": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--plans", type=int, default=8, help="Measured plans per backend.")
    parser.add_argument("--limit", type=int, default=100, help="Dev questions per POPE category and of ScienceQA.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tflops-fp32", type=float, default=ASSUMED_TFLOPS_FP32, help="Assumed float32 GPU rate.")
    parser.add_argument("--tflops-bf16", type=float, default=ASSUMED_TFLOPS_BF16, help="Assumed bf16 GPU rate.")
    parser.add_argument("--text-tokens-7b", type=int, default=ASSUMED_TEXT_TOKENS_7B)
    parser.add_argument("--load-seconds-7b", type=float, default=ASSUMED_LOAD_SECONDS_7B)
    parser.add_argument("--seconds-per-plan-7b", type=float, default=None, help="Measured (gpu_7b.py) per-plan cost.")
    parser.add_argument("--plans-per-run", type=int, default=None, help="Default: GRPOConfig iters × batch.")
    parser.add_argument("--batch", type=int, default=None, help="Plans per GRPO iteration (default: B × G).")
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="hipp-scale-"))
    os.environ["HIPP_HOME"] = str(home)  # a fresh plan store: nothing measured may come from a cache
    os.environ["HIPP_THREADS"] = "1"  # inherited by the Ray workers: one thread per worker, as in process
    quiet_libraries()
    threads = set_threads(1)
    plans = random_blueprints(args.model, args.plans + 2, args.seed)
    warm, measured = plans[:2], plans[2:]
    local = in_process(args.model, args.limit, warm, measured, home)
    one = on_ray(args.model, args.limit, 1, warm, measured, home)
    two = on_ray(args.model, args.limit, 2, warm, measured, home)
    tasks = load_benchmark("all", "dev", args.limit)
    questions = sum(len(items) for groups in tasks.values() for items in groups.values())
    seq = tokens_per_question(args.model, args.limit)
    embedded = {
        "flops": decoder_flops(load_model(args.model).adapter.layer_shapes(), None, round(seq)),
        "seconds": local["seconds_per_plan_in_worker"],
    }
    report = {
        "model": args.model,
        "cpu_count": os.cpu_count(),
        "threads_per_worker": threads,
        "questions_per_plan": questions,
        "tokens_per_question": round(seq, 1),
        "in_process": local,
        "ray_1_worker": one,
        "ray_2_workers": two,
        "ray_2_over_1_plans_per_minute": round(two["plans_per_minute"] / one["plans_per_minute"], 3),
        "ray_1_over_in_process_plans_per_minute": round(one["plans_per_minute"] / local["plans_per_minute"], 3),
        "cost_model_7b": cost_model(args, questions, embedded, one["driver_overhead_seconds_per_plan"]),
    }
    emit("scale", report, args.save)


if __name__ == "__main__":
    main()
