"""LLaVA-1.5-7B and Qwen2.5-VL-7B on one GPU with random bf16 weights: is a physically pruned model faster where
people run it? Prefill, eager decoding and compiled decoding (static cache + torch.compile) of dense vs pruned
models at 0.25 and 0.5 sparsity, next to the decoder FLOPs ratio and the weight-read limit; for LLaVA also the
calibration-like forward and the masked-evaluation throughput that `benchmarks/scale.py --seconds-per-plan-7b` takes.

Prints JSON (and writes benchmarks/results/gpu_7b.json with --save, or --out FILE). The architectures come from
their published configs (benchmarks/configs, via `arch7b.py`); nothing is downloaded, and with random weights only
speed and memory mean anything, never accuracy. Prompts have the real token counts: one 336-px image (576 tokens for
LLaVA, 144 for Qwen2.5-VL) plus `--text-tokens` of text. Plans are uniform (every layer keeps the same units), so the
pruned models are exactly what an equal-counts stock export serves. Eager decode is the median of `--repeats` runs
at each of `--eager-batches` (batch 1 is launch-bound: the GPU waits on the CPU's kernel launches), compiled decode
at each of `--compiled-batches`; see `speedup.py` for how each figure is taken.

With --save, architectures measured earlier on the same kind of GPU stay in the file, so `--archs` can take them one
run at a time; compiling each model and batch size (12 compiles for the full run) dominates the run time.

With no CUDA device it prints {"skipped": ...} and exits 0. `--tiny` runs every step on the CPU with small
stand-ins of the same structure, in seconds: a dry run of this script's logic whose numbers mean nothing (it never
writes benchmarks/results/gpu_7b.json).

    python benchmarks/gpu_7b.py [--archs llava-1.5-7b,qwen2.5-vl-7b] [--sparsities 0.25,0.5] [--repeats 10] [--save]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import arch7b
import torch
import transformers
from results_io import emit, load
from speedup import bandwidth_gb_s, decode_ms_per_token, lm_weight_bytes, prefill_ms, sync, text_ids

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


def timed_forward(adapter: ModelAdapter, inputs: dict, **kwargs) -> float:
    device = inputs["input_ids"].device
    sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        adapter.model(**inputs, **kwargs)
    sync(device)
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


def _ratio(dense: float, pruned: float) -> float | None:
    return round(dense / pruned, 3) if dense > 0 and pruned > 0 else None


def _ms(pair: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in pair.items()}


def physical_speed(adapter: ModelAdapter, blueprint, args, seq: int, bandwidth: float) -> dict:
    """Dense vs the physically pruned copy of `blueprint`: prefill, eager decode per batch, compiled decode per
    batch, beside the decoder FLOPs ratio and the weight-read limit."""
    pruned = materialize(adapter, blueprint)
    models = {"dense": adapter.model, "pruned": pruned.model}
    shapes = adapter.layer_shapes()
    weights = {"dense": lm_weight_bytes(adapter), "pruned": lm_weight_bytes(pruned)}
    limit = {k: v / (bandwidth * 1e9) * 1000 for k, v in weights.items()}
    flops = decoder_flops(shapes, blueprint.layers, seq) / decoder_flops(shapes, None, seq)
    prefill = prefill_ms(models, text_ids(adapter, args.prefill_batch, seq), args.repeats, args.statistic)
    row: dict = {
        "sparsity": blueprint.budget,
        "sparsity_achieved": round(blueprint.achieved, 4),
        "decoder_params_ratio": round(count_params(shapes, blueprint.layers) / count_params(shapes), 4),
        "decoder_flops_ratio": round(flops, 4),
        "flops_speedup": round(1 / flops, 3),
        "weight_read_ms": _ms(limit),
        "weight_read_limit_speedup": _ratio(limit["dense"], limit["pruned"]),
        "prefill_batch": args.prefill_batch,
        "prefill_ms": _ms(prefill),
        "prefill_speedup": _ratio(prefill["dense"], prefill["pruned"]),
    }
    compile_kwargs = {"mode": args.compile_mode, "backend": args.compile_backend}
    for mode, batches in (("eager", args.eager_batches), ("compiled", args.compiled_batches)):
        ms, speedup = {}, {}
        for batch in batches:
            ids = text_ids(adapter, batch, seq, seed=batch)
            per_token = decode_ms_per_token(
                models, ids, args.new_tokens, args.repeats, mode == "compiled", compile_kwargs, args.statistic
            )
            ms[str(batch)] = _ms(per_token)
            speedup[str(batch)] = _ratio(per_token["dense"], per_token["pruned"])
        row[f"decode_{mode}_ms_per_token"] = ms
        row[f"decode_{mode}_speedup"] = speedup
    del pruned, models
    if args.device.type == "cuda":
        torch.cuda.empty_cache()
    return row


TARGETS_AT_HALF = {  # what the pruned model should reach at 0.5 (issue "Pruned models that are really faster")
    "decode_compiled_speedup_batch1": 1.6,
    "decode_eager_speedup_batch64": 1.3,
    "decode_eager_speedup_batch1": 1.0,
    "prefill_speedup": 1.8,
}


def targets(plans: list[dict]) -> dict:
    """The targets at sparsity 0.5 next to what was measured (absent when 0.5 or a batch size was not run)."""
    half = next((p for p in plans if abs(p["sparsity"] - 0.5) < 1e-9), None)
    if half is None:
        return {}
    measured = {
        "decode_compiled_speedup_batch1": half["decode_compiled_speedup"].get("1"),
        "decode_eager_speedup_batch64": half["decode_eager_speedup"].get("64"),
        "decode_eager_speedup_batch1": half["decode_eager_speedup"].get("1"),
        "prefill_speedup": half["prefill_speedup"],
    }
    return {
        k: {"target": t, "measured": measured[k], "met": measured[k] is not None and measured[k] >= t}
        for k, t in TARGETS_AT_HALF.items()
        if measured[k] is not None
    }


def arch_report(arch: str, args, bandwidth: float) -> dict:
    t0 = time.perf_counter()
    _reset_peak(args.device)
    adapter = arch7b.build(arch, args.device, args.dtype, tiny=args.tiny)
    shapes = adapter.layer_shapes()
    seq = arch7b.image_tokens(arch, args.tiny) + args.text_tokens
    report: dict = {
        "params_billion": round(sum(p.numel() for p in adapter.model.parameters()) / 1e9, 4),
        "decoder_layer_params_billion": round(count_params(shapes) / 1e9, 4),
        "language_model_weight_gib": round(lm_weight_bytes(adapter) / 2**30, 3),
        "build_seconds": round(time.perf_counter() - t0, 2),
        "weights_memory_gib": _peak_gib(args.device),
        "tokens_per_prompt": seq,
    }
    m = channel_multiple(max(s.intermediate for s in shapes))
    uniform = [1.0] * len(shapes)

    def plan(sparsity: float):
        return make_blueprint(f"{arch}-random", arch7b.family(arch), shapes, sparsity, uniform, None, m)

    if arch7b.family(arch) == "llava":
        inputs = synthetic_batch(adapter, args.batch, args.text_tokens)
        calib = synthetic_batch(adapter, min(8, args.batch), args.text_tokens)
        report["calibration_forward"] = calibration_forward(adapter, calib, args.device)
        _reset_peak(args.device)
        report["masked_eval"] = masked_eval(adapter, inputs, plan(0.3), args.repeats, args.questions_per_plan)
        report["masked_eval"]["peak_memory_gib"] = _peak_gib(args.device)
        del inputs, calib
    report["plans"] = [physical_speed(adapter, plan(s), args, seq, bandwidth) for s in args.sparsities]
    report["peak_memory_gib"] = _peak_gib(args.device)
    report["targets_at_0.5"] = targets(report["plans"])
    del adapter
    if args.device.type == "cuda":
        torch.cuda.empty_cache()
    return report


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join(arch7b.ARCHS), help="Comma-separated: " + ", ".join(arch7b.ARCHS))
    parser.add_argument("--sparsities", default="0.25,0.5")
    parser.add_argument("--text-tokens", type=int, default=None, help="Text tokens beside the image (default 64).")
    parser.add_argument("--prefill-batch", type=int, default=None, help="Prompts per prefill forward (default 16).")
    parser.add_argument("--eager-batches", default=None, help="Batch sizes of eager decoding (default 1,64).")
    parser.add_argument("--compiled-batches", default=None, help="Batch sizes of compiled decoding (default 1,16).")
    parser.add_argument("--new-tokens", type=int, default=None, help="Decoded tokens per timed run (default 32).")
    parser.add_argument("--repeats", type=int, default=None, help="Timed runs per figure, median (default 10).")
    parser.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor).")
    parser.add_argument("--compile-mode", default="reduce-overhead", help="inductor mode (CUDA graphs by default).")
    parser.add_argument("--batch", type=int, default=None, help="LLaVA masked-scoring batch (default 16).")
    parser.add_argument("--questions-per-plan", type=int, default=400, help="Dev subset: 3 × 100 POPE + 100 SQA.")
    parser.add_argument("--tiny", action="store_true", help="Dry run on CPU with small stand-ins, in seconds.")
    parser.add_argument("--save", action="store_true", help="Write benchmarks/results/gpu_7b.json (not with --tiny).")
    parser.add_argument("--out", type=Path, default=None, help="Also write the report to this file.")
    args = parser.parse_args(argv)
    # full run / --tiny dry run; the dry run compiles with dynamo's eager backend (inductor on CPU takes minutes)
    defaults = {
        "text_tokens": (64, 4),
        "prefill_batch": (16, 2),
        "eager_batches": ("1,64", "1,4"),
        "compiled_batches": ("1,16", "1,2"),
        "new_tokens": (32, 8),
        "repeats": (10, 2),
        "compile_backend": ("inductor", "eager"),
        "batch": (16, 2),
    }
    for key, (full, tiny) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, tiny if args.tiny else full)
    if args.tiny and args.save:
        parser.error("--tiny numbers mean nothing; they are never saved to benchmarks/results (use --out)")
    args.archs = arch7b.parse_archs(parser, args.archs)
    args.sparsities = [float(x) for x in args.sparsities.split(",")]
    args.eager_batches, args.compiled_batches = _ints(args.eager_batches), _ints(args.compiled_batches)
    args.statistic = "min" if args.tiny else "median"  # a shared CPU slows single runs: the fastest is the signal
    args.device = torch.device("cpu" if args.tiny else "cuda")
    args.dtype = torch.float32 if args.tiny else torch.bfloat16
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet_libraries()
    # Every model's forward is one Python function to torch.compile: each model × batch size is a recompile, and
    # past the default limit of 8 torch would silently run the rest eagerly.
    torch._dynamo.config.recompile_limit = 64
    if not args.tiny and not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA device; run on a GPU machine, or pass --tiny for a CPU dry run"}))
        return
    bandwidth = bandwidth_gb_s(args.device, (64 if args.tiny else 4096) * 2**20)
    report: dict = {
        "model": "7B architectures, random weights" + (" (--tiny stand-ins: numbers mean nothing)" * args.tiny),
        "device": torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "cpu",
        "dtype": str(args.dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "memory_bandwidth_gb_s": round(bandwidth, 1),
        "settings": {
            k: getattr(args, k)
            for k in (
                "text_tokens",
                "prefill_batch",
                "eager_batches",
                "compiled_batches",
                "new_tokens",
                "repeats",
                "statistic",
            )
        }
        | {"compile": f"{args.compile_backend}/{args.compile_mode}", "plans": "uniform (equal counts per layer)"},
        "archs": {arch: arch_report(arch, args, bandwidth) for arch in args.archs},
    }
    previous = load("gpu_7b") if args.save else None
    if previous and previous.get("device") == report["device"] and "archs" in previous:
        # one architecture per run fits a short GPU session: the saved file gathers them (same kind of device)
        report["archs"] = {**previous["archs"], **report["archs"]}
    emit("gpu_7b", report, args.save)
    if args.out is not None:
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
