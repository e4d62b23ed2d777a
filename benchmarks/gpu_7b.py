"""LLaVA-1.5-7B on one GPU with random bf16 weights: calibration-like forward, masked-evaluation throughput, and
physically pruned prefill / decode speed at 0.25 and 0.5 sparsity beside the FLOPs ratio.

Prints JSON (and writes benchmarks/results/gpu_7b.json with --save). The architecture comes from its config
(`llava7b.py`); nothing is downloaded, and with random weights only speed and memory mean anything, never accuracy.
Inputs are synthetic with the real token shapes: 576 image tokens from a 336-px image plus `--text-tokens` of text.
Dense and pruned (or masked) runs alternate in one process and medians are reported. The per-plan figure
(`masked_eval.seconds_per_plan`) is what `benchmarks/scale.py --seconds-per-plan-7b` takes.

With no CUDA device it prints {"skipped": ...} and exits 0. `--tiny` runs every step on the CPU with a small
stand-in of the same structure: a dry run of this script's logic whose numbers mean nothing.

    python benchmarks/gpu_7b.py [--batch 16] [--text-tokens 64] [--questions-per-plan 400] [--tiny] [--save]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import llava7b
import torch
from prune_speed import decode_seconds, prefill_seconds
from results_io import emit

from hipp_core.api import channel_multiple
from hipp_core.blueprint import count_params, decoder_flops, make_blueprint
from hipp_core.config import quiet_libraries
from hipp_core.models.adapters import ModelAdapter
from hipp_core.prune import masked, materialize


def synthetic_batch(adapter: ModelAdapter, batch: int, text_tokens: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Token ids with the image placeholder run at the front (as LLaVA's template puts it) and random pixels."""
    config = adapter.model.config
    device, dtype = next(adapter.model.parameters()).device, next(adapter.model.parameters()).dtype
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, config.image_token_id, (batch, 1 + config.image_seq_length + text_tokens), generator=gen)
    ids[:, 1 : 1 + config.image_seq_length] = config.image_token_id
    size = config.vision_config.image_size
    pixels = torch.randn(batch, 3, size, size, generator=gen)
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "pixel_values": pixels.to(device=device, dtype=dtype),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_forward(adapter: ModelAdapter, inputs: dict, **kwargs) -> float:
    device = inputs["input_ids"].device
    _sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        adapter.model(**inputs, **kwargs)
    _sync(device)
    return time.perf_counter() - t0


def calibration_forward(adapter: ModelAdapter, inputs: dict, device: torch.device) -> dict:
    """What `hipp calibrate` costs per batch: eager attention returning every layer's attention map."""
    adapter.model.set_attn_implementation("eager")
    try:
        timed_forward(adapter, inputs, output_attentions=True, output_hidden_states=True)  # warm-up
        _reset_peak(device)
        seconds = timed_forward(adapter, inputs, output_attentions=True, output_hidden_states=True)
        peak = _peak_gib(device)
    finally:
        adapter.model.set_attn_implementation("sdpa")
    return {"batch": len(inputs["input_ids"]), "seconds": round(seconds, 3), "peak_memory_gib": peak}


def masked_eval(adapter: ModelAdapter, inputs: dict, blueprint, repeats: int, questions_per_plan: int) -> dict:
    """Dense vs masked scoring forwards (logits over the whole sequence, as `hipp_core.evaluation.engine` computes them)."""
    dense, hooked = [], []
    timed_forward(adapter, inputs)  # warm-up: kernels, allocator
    for _ in range(repeats):
        dense.append(timed_forward(adapter, inputs))
        with masked(adapter, blueprint):
            hooked.append(timed_forward(adapter, inputs))
    batch = len(inputs["input_ids"])
    per_question = statistics.median(hooked) / batch
    return {
        "sparsity": round(blueprint.achieved, 4),
        "batch": batch,
        "dense_seconds_per_batch": round(statistics.median(dense), 4),
        "masked_seconds_per_batch": round(statistics.median(hooked), 4),
        "masked_over_dense": round(statistics.median(hooked) / statistics.median(dense), 3),
        "questions_per_second": round(1 / per_question, 1),
        "questions_per_plan": questions_per_plan,
        "seconds_per_plan": round(per_question * questions_per_plan, 2),
        "plans_per_minute": round(60 / (per_question * questions_per_plan), 2),
    }


def physical_speed(adapter: ModelAdapter, blueprint, ids: torch.Tensor, new_tokens: int, repeats: int) -> dict:
    """Prefill and decode of the language model, pruned copy vs dense, beside the decoder FLOPs ratio."""
    pruned = materialize(adapter, blueprint)
    shapes = adapter.layer_shapes()
    times: dict[str, list[float]] = {
        k: [] for k in ("dense_prefill", "pruned_prefill", "dense_decode", "pruned_decode")
    }
    prefill_seconds(adapter.model, ids)  # warm-up
    prefill_seconds(pruned.model, ids)
    for _ in range(repeats):
        times["dense_prefill"].append(prefill_seconds(adapter.model, ids))
        times["pruned_prefill"].append(prefill_seconds(pruned.model, ids))
        times["dense_decode"].append(decode_seconds(adapter.model, ids, new_tokens))
        times["pruned_decode"].append(decode_seconds(pruned.model, ids, new_tokens))
    med = {k: statistics.median(v) for k, v in times.items()}
    seq = ids.shape[1]
    del pruned
    if ids.is_cuda:
        torch.cuda.empty_cache()
    return {
        "sparsity_achieved": round(blueprint.achieved, 4),
        "decoder_params_ratio": round(count_params(shapes, blueprint.layers) / count_params(shapes), 4),
        "decoder_flops_ratio": round(
            decoder_flops(shapes, blueprint.layers, seq) / decoder_flops(shapes, None, seq), 4
        ),
        "prefill_speedup": round(med["dense_prefill"] / med["pruned_prefill"], 3),
        "decode_speedup": round(med["dense_decode"] / med["pruned_decode"], 3),
        "decode_tokens_per_s_dense": round(len(ids) / med["dense_decode"], 1),
        "decode_tokens_per_s_pruned": round(len(ids) / med["pruned_decode"], 1),
    }


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="Questions per scoring forward.")
    parser.add_argument("--text-tokens", type=int, default=64, help="Text tokens beside the image tokens.")
    parser.add_argument("--questions-per-plan", type=int, default=400, help="Dev subset: 3 × 100 POPE + 100 SQA.")
    parser.add_argument("--sparsities", default="0.25,0.5")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="Dry run on CPU with a small stand-in model.")
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args()
    quiet_libraries()
    if not args.tiny and not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA device; run on a GPU machine, or pass --tiny for a CPU dry run"}))
        return
    device = torch.device("cpu" if args.tiny else "cuda")
    dtype = torch.float32 if args.tiny else torch.bfloat16
    t0 = time.perf_counter()
    adapter = llava7b.build(device, dtype, tiny=args.tiny)
    shapes = adapter.layer_shapes()
    report: dict = {
        "model": "llava-1.5-7b architecture, random weights" + (" (--tiny stand-in: numbers mean nothing)" * args.tiny),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "params_billion": round(sum(p.numel() for p in adapter.model.parameters()) / 1e9, 4),
        "decoder_layer_params_billion": round(count_params(shapes) / 1e9, 4),
        "build_seconds": round(time.perf_counter() - t0, 2),
        "weights_memory_gib": _peak_gib(device),
        "tokens_per_question": 1 + adapter.model.config.image_seq_length + args.text_tokens,
    }
    inputs = synthetic_batch(adapter, args.batch, args.text_tokens)
    report["calibration_forward"] = calibration_forward(adapter, synthetic_batch(adapter, 8, args.text_tokens), device)
    m = channel_multiple(max(s.intermediate for s in shapes))
    uniform = [1.0] * len(shapes)

    def plan(sparsity: float):
        return make_blueprint("llava-1.5-7b-random", "llava", shapes, sparsity, uniform, None, m)

    _reset_peak(device)
    report["masked_eval"] = masked_eval(adapter, inputs, plan(0.3), args.repeats, args.questions_per_plan)
    report["masked_eval"]["peak_memory_gib"] = _peak_gib(device)
    ids = inputs["input_ids"]
    report["physical"] = [
        physical_speed(adapter, plan(float(s)), ids, args.new_tokens, args.repeats) for s in args.sparsities.split(",")
    ]
    emit("gpu_7b", report, args.save)


if __name__ == "__main__":
    main()
