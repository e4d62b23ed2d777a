"""The README.md of an export: what was pruned, the per-layer plan, stored scores, and how to load and run it in the
export's format (exact: remote code or hipp; stock: plain transformers)."""

from __future__ import annotations

import torch
import transformers

from hipp_core.blueprint import Blueprint
from hipp_core.models import pruned_modeling
from hipp_core.stock import StockSizes


def model_card(
    blueprint: Blueprint,
    spec: str,
    counts: dict[str, int],
    metrics: dict | None,
    max_diff: float,
    name: str,
    sizes: StockSizes | None = None,
) -> str:
    """The card of an export named `name`; `sizes` is given for the stock format, None for the exact one."""
    sections = [
        _summary(blueprint, spec, counts, sizes),
        _layers(blueprint),
        _metrics(metrics) if metrics else "",
        _usage_stock(name, blueprint.family, sizes) if sizes else _usage_exact(name),
        _qwen_note() if blueprint.family == "qwen2_5_vl" else "",
        _decoding(name, stock=sizes is not None),
        _checked(max_diff),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _summary(bp: Blueprint, spec: str, counts: dict[str, int], sizes: StockSizes | None) -> str:
    decoder = f"{counts['decoder_dense']:,} → {counts['decoder_pruned']:,}"
    model_removed = 1 - counts["model_pruned"] / counts["model_dense"]
    whole = f"{counts['model_dense']:,} → {counts['model_pruned']:,} ({model_removed:.2%} removed)"
    rows = [
        ("Base model", f"`{spec}`"),
        ("Family", f"`{bp.family}`"),
        ("Format", "stock (plain transformers, no remote code)" if sizes else "exact (pruned shapes, remote code)"),
        ("Plan id", f"`{bp.plan_id}`"),
        ("Plan source / unit criterion", f"{bp.source} / {bp.criterion}"),
        ("Sparsity budget (requested)", f"{bp.budget:.2%}"),
        ("Achieved decoder sparsity", f"{bp.achieved:.2%}"),
        ("Decoder-layer parameters", decoder),
        ("Whole-model parameters", whole),
    ]
    if sizes is not None:
        rows.append(("Whole-model parameters in this (padded) checkpoint", f"{sizes.model_stock:,}"))
    if bp.preference is not None:
        rows.append(("Preference (utility, robustness, compression)", ", ".join(f"{w:.3f}" for w in bp.preference)))
    table = _table(("Property", "Value"), rows)
    return (
        "---\nlibrary_name: transformers\ntags:\n- hipp-prune\n- pruned\n---\n\n"
        f"# {bp.family} with a structurally pruned language backbone\n\n"
        "Query heads (whole GQA groups or heads within them) and MLP channels were removed from the language decoder "
        "layers with HiPP-Prune; the vision tower, projector, embeddings and lm_head are unchanged. Sparsity is the "
        "fraction of decoder-layer parameters removed.\n\n" + table
    )


def _layers(bp: Blueprint) -> str:
    rows = [
        (str(i), str(plan.n_q), str(plan.n_kv), str(plan.n_mlp), f"{s:.2%}")
        for i, (plan, s) in enumerate(zip(bp.layers, bp.sparsities))
    ]
    header = ("Layer", "Query heads kept", "KV groups kept", "MLP channels kept", "Sparsity")
    return "## Per-layer plan\n\nThe kept indices are in `plan.json`.\n\n" + _table(header, rows)


def _metrics(metrics: dict) -> str:
    rows = [(str(k), f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in metrics.items()]
    return "## Metrics\n\n" + _table(("Metric", "Value"), rows)


def _usage_exact(name: str) -> str:
    return (
        "## How to load\n\n"
        "Format **exact**: the decoder layers have their pruned shapes (listed in `config.text_config.prune_plan`), "
        "which the stock class cannot load; `pruned_modeling.py` (torch and transformers only) rebuilds them. Do not "
        "load this checkpoint with `ignore_mismatched_sizes=True`: it would silently re-initialise the pruned "
        "weights. For a checkpoint that loads without remote code, export with `hipp export --format stock`.\n\n"
        "```python\nfrom transformers import AutoModelForImageTextToText, AutoProcessor\n\n"
        f'model = AutoModelForImageTextToText.from_pretrained("./{name}", trust_remote_code=True)\n'
        f'processor = AutoProcessor.from_pretrained("./{name}")\n```\n\n'
        "With HiPP-Prune installed, no remote code is needed:\n\n"
        f'```python\nfrom hipp_core import load_pruned\n\nloaded = load_pruned("./{name}")  # .model, .processor, .adapter\n```'
    )


def _usage_stock(name: str, family: str, sizes: StockSizes) -> str:
    stock_class = pruned_modeling.stock_parent(pruned_modeling.PRUNED_CLASSES[family]).__name__
    padding = (
        "Layers that keep fewer units than the largest are zero-padded up to it: zero rows and columns change no "
        f"output, but they are stored and computed. This checkpoint holds {sizes.model_stock:,} parameters where the "
        f"exactly pruned model has {sizes.model_pruned:,} (dense: {sizes.model_dense:,}), so padding gives back "
        f"{sizes.given_back:.1%} of the saving; plans made with `--equal-counts` need no padding."
        if sizes.padded
        else "Every layer keeps the same numbers of units, so nothing is padded."
    )
    return (
        "## How to load\n\n"
        f"Format **stock**: a plain `{stock_class}` checkpoint with a stock config (every decoder layer has "
        f"{sizes.layout.n_heads} query heads, {sizes.layout.n_kv_heads} KV heads of size {sizes.layout.head_dim} and "
        f"{sizes.layout.intermediate} MLP channels), loaded without remote code by transformers and by engines that "
        f"support the architecture. {padding}\n\n"
        "```python\nfrom transformers import AutoModelForImageTextToText, AutoProcessor\n\n"
        f'model = AutoModelForImageTextToText.from_pretrained("./{name}")\n'
        f'processor = AutoProcessor.from_pretrained("./{name}")\n```'
    )


def _qwen_note() -> str:
    return (
        "In transformers 5, `AutoProcessor` for Qwen2.5-VL also builds a video processor, which needs torchvision; "
        "without it, load the image processor and tokenizer on their own or use `hipp_core.load_pruned`."
    )


def _decoding(name: str, stock: bool) -> str:
    remote = "" if stock else ", trust_remote_code=True"
    return (
        "## Fast decoding\n\n"
        "Eager decoding launches one kernel per operation and token, so at small batch a pruned model decodes no "
        "faster than the dense one. Decode with a static KV cache and a compiled forward instead (on CUDA, transformers "
        "then compiles the decoding step and replays it as a CUDA graph; the first call compiles):\n\n"
        "```python\n"
        f'model = AutoModelForImageTextToText.from_pretrained("./{name}"{remote}, device_map="cuda")\n'
        'out = model.generate(**inputs, max_new_tokens=64, cache_implementation="static")\n```\n\n'
        "With HiPP-Prune, on any device:\n\n"
        "```python\nimport torch\nfrom hipp_core import load_pruned\n\n"
        f'loaded = load_pruned("./{name}", device="cuda", dtype=torch.bfloat16, compile=True)\n'
        "out = loaded.model.generate(**inputs, max_new_tokens=64)  # static cache + torch.compile\n```"
        + (
            ""
            if stock
            else "\n\nThe static cache sizes each layer's keys and values from the pruned layer itself (per-layer "
            "KV-head counts); the pruned classes also report those counts when `generate` sets up the cache "
            "before the first step (`prefill_chunk_size`)."
        )
    )


def _checked(max_diff: float) -> str:
    return (
        "Checked at export: reloaded, this checkpoint reproduced the pruned model's logits on a fixed image question "
        f"and text-only question (max |difference| {max_diff:.2g}; written with transformers "
        f"{transformers.__version__}, torch {torch.__version__})."
    )


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
