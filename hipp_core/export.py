"""Export a pruned model as a self-contained Hugging Face checkpoint, and load such an export back.

An export is a normal checkpoint directory (safetensors weights, config, processor and tokenizer) plus
`pruned_modeling.py`, `plan.json` (the blueprint) and a model card. The decoder layers have pruned shapes, which no
stock class can load: a stock `from_pretrained` raises a size mismatch, and `ignore_mismatched_sizes=True` would
silently re-initialise the pruned weights. The shapes are therefore recorded in `config.text_config.prune_plan` and
rebuilt by the classes in `models/pruned_modeling.py`: other tools load them from the export with
`trust_remote_code=True`, hipp itself imports them (`load_pruned`), so it never runs code from a checkpoint.

An export is only published after a reload reproduces the pruned model's logits, and it is written into a temporary
sibling directory that is renamed into place at the end, so a failure or a kill never leaves a half-written export
at `out_dir`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import uuid
from pathlib import Path

import torch
import transformers

from hipp_core.blueprint import Blueprint, count_params, validate, whole_model_params
from hipp_core.data.world import render, sample_scene
from hipp_core.errors import HippError
from hipp_core.models import pruned_modeling
from hipp_core.models.adapters import ModelAdapter
from hipp_core.models.loading import LoadedModel, inspect_checkpoint, load_model, prune_plan
from hipp_core.prune import check_pruned, materialize

PRUNED_CLASSES = pruned_modeling.PRUNED_CLASSES
# Auto classes an export declares in `auto_map`: both load the pruned class with trust_remote_code=True.
AUTO_CLASSES = ("AutoModelForImageTextToText", "AutoModelForCausalLM")
MODELING_FILE = "pruned_modeling.py"
PLAN_FILE = "plan.json"
LOGIT_TOLERANCE = 1e-5  # a reload runs the same weights through the same code: anything above is a loading bug
_CHECK_PROMPTS = ("Is there a red circle in the image?", "How many corners does a square have?")


# -- export -----------------------------------------------------------------------------------------------------------
def export_pruned(
    adapter: ModelAdapter,
    blueprint: Blueprint,
    out_dir: str | Path,
    *,
    spec: str,
    metrics: dict | None = None,
    overwrite: bool = False,
    pruned: ModelAdapter | None = None,
) -> Path:
    """Materialize `blueprint` on the (dense) model behind `adapter` and write it to `out_dir` as a checkpoint any
    transformers install can load; return the directory. `spec` names the base model in the model card. An existing
    `out_dir` is replaced only with `overwrite` and only once the new export has passed its reload check.

    `pruned` writes an already-pruned model of `blueprint` instead (e.g. one fine-tuned after pruning by
    `hipp_core.recover`); `adapter` stays the dense model the plan and the parameter counts refer to."""
    out_dir = Path(out_dir).expanduser().absolute()
    if not isinstance(spec, str) or not spec:
        raise HippError(f"spec must name the base model (e.g. `embedded` or a checkpoint path), got {spec!r}")
    check_target(out_dir, overwrite)
    _check_blueprint(adapter, blueprint)
    counts = _param_counts(adapter, blueprint)
    if pruned is None:
        pruned = materialize(adapter, blueprint)
    else:
        check_pruned(pruned, blueprint)
    model = pruned.model.eval()
    inputs = _check_inputs(pruned)
    reference = _logits(model, inputs)
    settings = {"device": model.device, "dtype": model.dtype, "attn_implementation": model.config._attn_implementation}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        _write_checkpoint(tmp, pruned, blueprint)
        del pruned, model  # free the materialized copy before the reload: at 7B scale memory is what runs out
        max_diff = _verify(tmp, inputs, reference, settings)
        _write_model_card(tmp, blueprint, spec, counts, metrics, max_diff, out_dir.name)
        _publish(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def check_target(out_dir: Path, overwrite: bool) -> None:
    """Refuse to touch an existing path unless asked, and never replace anything but a previous export."""
    if not out_dir.exists():
        return
    if not overwrite:
        raise HippError(f"{out_dir} already exists; choose another directory or pass overwrite=True to replace it")
    if not (out_dir.is_dir() and prune_plan(out_dir) is not None):
        raise HippError(f"{out_dir} exists and is not a HiPP-Prune export; refusing to replace it, choose another path")


def _check_blueprint(adapter: ModelAdapter, blueprint: Blueprint) -> None:
    if blueprint.family != adapter.model_type:
        raise HippError(f"blueprint is for a {blueprint.family!r} model, this one is {adapter.model_type!r}")
    _pruned_class(adapter.model_type)
    validate(blueprint, adapter.layer_shapes())


def _pruned_class(family: str) -> type:
    try:
        return PRUNED_CLASSES[family]
    except KeyError:
        raise HippError(
            f"exporting {family!r} models is not supported; supported: {', '.join(PRUNED_CLASSES)}"
        ) from None


def _param_counts(adapter: ModelAdapter, blueprint: Blueprint) -> dict[str, int]:
    """Dense and pruned parameter counts of the decoder layers and of the whole model, for the model card."""
    shapes = adapter.layer_shapes()
    dense_total = sum(p.numel() for p in adapter.model.parameters())
    return {
        "decoder_dense": count_params(shapes),
        "decoder_pruned": count_params(shapes, blueprint.layers),
        "model_dense": dense_total,
        "model_pruned": whole_model_params(shapes, blueprint.layers, dense_total),
    }


def _check_inputs(adapter: ModelAdapter) -> dict[str, torch.Tensor]:
    """A fixed batch of one image question and one text-only question: a reload must reproduce both paths."""
    image = render(sample_scene(random.Random(0)))
    return adapter.encode(list(_CHECK_PROMPTS), [image, None]).inputs


@torch.no_grad()
def _logits(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**{k: v.to(model.device) for k, v in inputs.items()}).logits.float().cpu()


def _write_checkpoint(tmp: Path, pruned: ModelAdapter, blueprint: Blueprint) -> None:
    """Weights, config, modeling file, processor and plan. `save_pretrained` writes the stock class name into
    `architectures`; the config is rewritten afterwards to name the pruned class and where to find it."""
    model = pruned.model
    model.config.text_config.prune_plan = [
        {"n_heads": s.n_heads, "n_kv_heads": s.n_kv_heads, "intermediate": s.intermediate}
        for s in pruned.layer_shapes()
    ]
    model.save_pretrained(tmp)
    class_name = _pruned_class(pruned.model_type).__name__
    config_file = tmp / "config.json"
    config = json.loads(config_file.read_text())
    config["architectures"] = [class_name]
    config["auto_map"] = {auto: f"{Path(MODELING_FILE).stem}.{class_name}" for auto in AUTO_CLASSES}
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(pruned_modeling.__file__, tmp / MODELING_FILE)
    pruned.processor.save_pretrained(tmp)
    (tmp / PLAN_FILE).write_text(json.dumps(blueprint.to_json(), indent=2) + "\n")


def _verify(tmp: Path, inputs: dict[str, torch.Tensor], reference: torch.Tensor, settings: dict) -> float:
    """Reload the written export the way users will and require the pruned model's logits back; also require the
    saved processor to encode the check prompts exactly as the original one did."""
    try:
        loaded = load_pruned(tmp, **settings)
    except HippError as exc:
        raise HippError(f"the written export does not reload ({exc}); export aborted, nothing was written") from None
    again = _check_inputs(loaded.adapter)
    if again.keys() != inputs.keys() or not all(torch.equal(again[k], inputs[k]) for k in inputs):
        raise HippError("the exported processor encodes prompts differently from the model's own; export aborted")
    max_diff = (_logits(loaded.model, inputs) - reference).abs().max().item()
    if not max_diff <= LOGIT_TOLERANCE:  # also catches NaN
        raise HippError(
            f"the exported model does not reproduce the pruned one (max |logit diff| {max_diff:.3g} > "
            f"{LOGIT_TOLERANCE:g}); export aborted, nothing was written"
        )
    return max_diff


def _publish(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    """Rename the verified export into place. A previous export is first moved aside and deleted only after the new
    one is in place, so at every moment one complete export exists (at `out_dir` or, briefly, beside it)."""
    check_target(out_dir, overwrite)  # the path may have appeared while the export was being written
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.old")
    os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        os.replace(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def copy_export(source: Path, out_dir: Path, overwrite: bool = False) -> Path:
    """Put a finished export (e.g. a recovered checkpoint) at `out_dir`: copied beside it under a temporary name,
    then published like a fresh export, so a kill leaves either nothing or the whole copy."""
    check_target(out_dir, overwrite)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        _publish(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# -- model card -------------------------------------------------------------------------------------------------------
def _write_model_card(
    tmp: Path,
    blueprint: Blueprint,
    spec: str,
    counts: dict[str, int],
    metrics: dict | None,
    max_diff: float,
    name: str,
) -> None:
    sections = [
        _card_summary(blueprint, spec, counts),
        _card_layers(blueprint),
        _card_metrics(metrics) if metrics else "",
        _card_usage(name, blueprint.family, max_diff),
    ]
    (tmp / "README.md").write_text("\n\n".join(s for s in sections if s) + "\n")


def _card_summary(bp: Blueprint, spec: str, counts: dict[str, int]) -> str:
    decoder = f"{counts['decoder_dense']:,} → {counts['decoder_pruned']:,}"
    model_removed = 1 - counts["model_pruned"] / counts["model_dense"]
    whole = f"{counts['model_dense']:,} → {counts['model_pruned']:,} ({model_removed:.2%} removed)"
    rows = [
        ("Base model", f"`{spec}`"),
        ("Family", f"`{bp.family}`"),
        ("Plan id", f"`{bp.plan_id}`"),
        ("Plan source / unit criterion", f"{bp.source} / {bp.criterion}"),
        ("Sparsity budget (requested)", f"{bp.budget:.2%}"),
        ("Achieved decoder sparsity", f"{bp.achieved:.2%}"),
        ("Decoder-layer parameters", decoder),
        ("Whole-model parameters", whole),
    ]
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


def _card_layers(bp: Blueprint) -> str:
    rows = [
        (str(i), str(plan.n_q), str(plan.n_kv), str(plan.n_mlp), f"{s:.2%}")
        for i, (plan, s) in enumerate(zip(bp.layers, bp.sparsities))
    ]
    header = ("Layer", "Query heads kept", "KV groups kept", "MLP channels kept", "Sparsity")
    return "## Per-layer plan\n\nThe kept indices are in `plan.json`.\n\n" + _table(header, rows)


def _card_metrics(metrics: dict) -> str:
    rows = [(str(k), f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in metrics.items()]
    return "## Metrics\n\n" + _table(("Metric", "Value"), rows)


def _card_usage(name: str, family: str, max_diff: float) -> str:
    qwen_note = (
        "\n\nIn transformers 5, `AutoProcessor` for Qwen2.5-VL also builds a video processor, which needs torchvision; "
        "without it, load the image processor and tokenizer on their own or use `hipp_core.load_pruned`."
        if family == "qwen2_5_vl"
        else ""
    )
    return (
        "## How to load\n\n"
        "The decoder layers have pruned shapes (listed in `config.text_config.prune_plan`), which the stock class "
        "cannot load; `pruned_modeling.py` (torch and transformers only) rebuilds them. Do not load this checkpoint "
        "with `ignore_mismatched_sizes=True`: it would silently re-initialise the pruned weights.\n\n"
        "```python\nfrom transformers import AutoModelForImageTextToText, AutoProcessor\n\n"
        f'model = AutoModelForImageTextToText.from_pretrained("./{name}", trust_remote_code=True)\n'
        f'processor = AutoProcessor.from_pretrained("./{name}")\n```\n\n'
        "With HiPP-Prune installed, no remote code is needed:\n\n"
        f'```python\nfrom hipp_core import load_pruned\n\nloaded = load_pruned("./{name}")  # .model, .processor, .adapter\n```'
        f"{qwen_note}\n\n"
        f"Checked at export: reloaded, this checkpoint reproduced the pruned model's logits on a fixed image question and "
        f"text-only question (max |difference| {max_diff:.2g}; written with transformers {transformers.__version__}, "
        f"torch {torch.__version__})."
    )


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- loading ----------------------------------------------------------------------------------------------------------
def load_pruned(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    attn_implementation: str = "sdpa",
) -> LoadedModel:
    """Load an export with hipp's own copy of the pruned classes (no `trust_remote_code`, safetensors only),
    refusing any missing, unexpected or mis-shaped weight."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise HippError(f"{path} is not a directory; pass the folder an export was written to")
    inspect_checkpoint(path)
    if not prune_plan(path):
        raise HippError(
            f"{path} is not a HiPP-Prune export (no text_config.prune_plan in config.json); load it as a model"
        )
    return load_model(str(path), str(device), dtype, attn_implementation)
