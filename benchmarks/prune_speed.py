"""Measured speed of physically pruned decoders vs dense, beside the FLOPs ratio (embedded LLaVA by default).

Prints JSON. Dense and pruned runs are interleaved in one process and medians reported, because run-to-run noise
on shared CPUs is large (docs/design.md, Speed). Uniform blueprints (Wanda scores) at each sparsity.

    python benchmarks/prune_speed.py [--model embedded] [--sparsities 0.25,0.5] [--batch 32] [--prompt 80]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from results_io import emit

from hipp_core.api import plan_baseline
from hipp_core.blueprint import count_params, decoder_flops
from hipp_core.config import quiet_libraries, set_threads
from hipp_core.models.loading import load_model
from hipp_core.prune import materialize


def _sync(ids: torch.Tensor) -> None:
    """CUDA kernels run asynchronously: a clock read without waiting for them times the launch, not the work."""
    if ids.is_cuda:
        torch.cuda.synchronize(ids.device)


def prefill_seconds(model, ids) -> float:
    """Seconds of one forward of the language model alone over `ids` (no cache)."""
    _sync(ids)
    t0 = time.perf_counter()
    with torch.no_grad():
        model.model.language_model(input_ids=ids, use_cache=False)
    _sync(ids)
    return time.perf_counter() - t0


def decode_seconds(model, ids, new_tokens: int) -> float:
    """Seconds per generated token of the language model alone (greedy, dynamic cache)."""
    lm = model.model.language_model
    with torch.no_grad():
        out = lm(input_ids=ids, use_cache=True)
        cache, token = out.past_key_values, ids[:, -1:]
        _sync(ids)
        t0 = time.perf_counter()
        for _ in range(new_tokens):
            out = lm(input_ids=token, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
        _sync(ids)
    return (time.perf_counter() - t0) / new_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--sparsities", default="0.25,0.5")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=80)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--save", action="store_true", help="also write benchmarks/results/prune_speed.json")
    args = parser.parse_args()
    quiet_libraries()
    threads = set_threads(args.threads)
    loaded = load_model(args.model)
    dense = loaded.adapter
    shapes = dense.layer_shapes()
    vocab = dense.model.config.get_text_config().vocab_size
    ids = torch.randint(0, vocab, (args.batch, args.prompt), generator=torch.Generator().manual_seed(0))
    report = {"model": args.model, "batch": args.batch, "prompt_tokens": args.prompt, "threads": threads, "plans": []}
    for sparsity in (float(s) for s in args.sparsities.split(",")):
        blueprint = plan_baseline(args.model, "uniform", sparsity)
        pruned = materialize(dense, blueprint)
        times = {"dense_prefill": [], "pruned_prefill": [], "dense_decode": [], "pruned_decode": []}
        for _ in range(args.repeats):  # interleaved: both see the same machine load
            times["dense_prefill"].append(prefill_seconds(dense.model, ids))
            times["pruned_prefill"].append(prefill_seconds(pruned.model, ids))
            times["dense_decode"].append(decode_seconds(dense.model, ids, args.new_tokens))
            times["pruned_decode"].append(decode_seconds(pruned.model, ids, args.new_tokens))
        med = {k: statistics.median(v) for k, v in times.items()}
        flops_ratio = decoder_flops(shapes, blueprint.layers, args.prompt) / decoder_flops(shapes, None, args.prompt)
        prefill_ratio = med["pruned_prefill"] / med["dense_prefill"]
        report["plans"].append(
            {
                "sparsity_asked": sparsity,
                "sparsity_achieved": round(blueprint.achieved, 4),
                "decoder_params_ratio": round(count_params(shapes, blueprint.layers) / count_params(shapes), 4),
                "decoder_flops_ratio": round(flops_ratio, 4),
                "prefill_latency_ratio": round(prefill_ratio, 4),
                "decode_tokens_per_s_dense": round(args.batch / med["dense_decode"], 1),
                "decode_tokens_per_s_pruned": round(args.batch / med["pruned_decode"], 1),
                "decode_latency_ratio": round(med["pruned_decode"] / med["dense_decode"], 4),
                "prefill_ratio_within_1.25x_of_flops": prefill_ratio <= 1.25 * flops_ratio,
            }
        )
    emit("prune_speed", report, args.save)


if __name__ == "__main__":
    main()
