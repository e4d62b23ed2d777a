"""Export a pruned model as a self-contained Hugging Face checkpoint, and load such an export back.

An export is a normal checkpoint directory (safetensors weights, config, processor and tokenizer) plus `plan.json`
(the blueprint) and a model card, in one of two formats:

- `exact` (default): the decoder layers keep their pruned shapes, which no stock class can load: a stock
  `from_pretrained` raises a size mismatch, and `ignore_mismatched_sizes=True` would silently re-initialise the pruned
  weights. The shapes are therefore recorded in `config.text_config.prune_plan` and rebuilt by the classes in
  `models/pruned_modeling.py` (shipped as `pruned_modeling.py`): other tools load them with `trust_remote_code=True`,
  hipp itself imports them (`load_pruned`), so it never runs code from a checkpoint.
- `stock`: every layer has one set of sizes (`hipp_core.stock`: zero-padded unless the plan keeps equal counts), the
  config is a stock one and names the family's own class, so plain transformers and inference servers load it with
  no remote code at all.

Weights are written in the dtype of the checkpoint the dense model came from. An export is only published after a
reload reproduces the pruned model's logits, and it is written into a temporary sibling directory that is renamed
into place at the end, so a failure or a kill never leaves a half-written export at `out_dir`.
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

from hipp_core.blueprint import Blueprint, count_params, validate, whole_model_params
from hipp_core.data.world import render, sample_scene
from hipp_core.errors import HippError
from hipp_core.model_card import model_card
from hipp_core.models import pruned_modeling
from hipp_core.models.adapters import ModelAdapter
from hipp_core.models.decoding import use_compiled_decoding
from hipp_core.models.device import AUTO, to_model
from hipp_core.models.loading import LoadedModel, checkpoint_dtype, inspect_checkpoint, load_model, prune_plan
from hipp_core.prune import check_pruned, materialize
from hipp_core.stock import pad_to_stock, stock_sizes

PRUNED_CLASSES = pruned_modeling.PRUNED_CLASSES
# Auto classes an export declares in `auto_map`: both load the pruned class with trust_remote_code=True.
AUTO_CLASSES = ("AutoModelForImageTextToText", "AutoModelForCausalLM")
MODELING_FILE = "pruned_modeling.py"
PLAN_FILE = "plan.json"
LOGIT_TOLERANCE = 1e-5  # a reload runs the same weights through the same code: anything above is a loading bug
# A stock export runs padded matmuls, whose sums round in another order: 1e-4 in float32. In 16-bit a rounding step
# is ~1e-2 relative and compounds over layers, so there the check only catches a wrong layout (tests prove exactness).
STOCK_TOLERANCE = 1e-4
FORMATS = ("exact", "stock")
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
    export_format: str = "exact",
    dtype: torch.dtype | None = None,
) -> Path:
    """Materialize `blueprint` on the (dense) model behind `adapter` and write it to `out_dir` as a checkpoint any
    transformers install can load; return the directory. `spec` names the base model in the model card. An existing
    `out_dir` is replaced only with `overwrite` and only once the new export has passed its reload check.

    `export_format` is `exact` (pruned shapes, loaded with `trust_remote_code=True`) or `stock` (one padded layout,
    a stock class and config, no remote code). Weights are written in `dtype`, by default the dtype of the checkpoint
    `adapter` was loaded from (else the model's own); the model is rounded to it before the reference logits are
    taken, so the reload check compares like with like.

    `pruned` writes an already-pruned model of `blueprint` instead (e.g. one fine-tuned after pruning by
    `hipp_core.recover`; its weights are rounded to `dtype` in place); `adapter` stays the dense model the plan and
    the parameter counts refer to."""
    out_dir = Path(out_dir).expanduser().absolute()
    if not isinstance(spec, str) or not spec:
        raise HippError(f"spec must name the base model (e.g. `embedded` or a checkpoint path), got {spec!r}")
    check_format(export_format)
    check_target(out_dir, overwrite)
    _check_blueprint(adapter, blueprint)
    counts = _param_counts(adapter, blueprint)
    sizes = stock_sizes(adapter, blueprint) if export_format == "stock" else None
    dtype = dtype or source_dtype(adapter) or adapter.model.dtype
    own_copy = pruned is None
    if own_copy:
        pruned = materialize(adapter, blueprint)
    else:
        check_pruned(pruned, blueprint)
    model = pruned.model.eval()
    _round_to(model, dtype)
    inputs = _check_inputs(pruned)
    reference = _logits(model, inputs)
    settings = {"device": model.device, "dtype": model.dtype, "attn_implementation": model.config._attn_implementation}
    tolerance = LOGIT_TOLERANCE
    if export_format == "stock":
        pruned, _ = pad_to_stock(pruned, inplace=own_copy)  # a model the caller handed in keeps its shapes
        model = pruned.model
        tolerance = _stock_tolerance(model.dtype, reference)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        _write_checkpoint(tmp, pruned, blueprint, export_format, dtype)
        del pruned, model  # free the materialized copy before the reload: at 7B scale memory is what runs out
        max_diff = _verify(tmp, inputs, reference, settings, tolerance)
        _write_model_card(tmp, model_card(blueprint, spec, counts, metrics, max_diff, out_dir.name, sizes))
        _publish(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def check_format(export_format: str) -> None:
    if export_format not in FORMATS:
        raise HippError(f"unknown export format {export_format!r}; use one of {', '.join(FORMATS)}")


def check_target(out_dir: Path, overwrite: bool) -> None:
    """Refuse to touch an existing path unless asked, and never replace anything but a previous export."""
    if not out_dir.exists():
        return
    if not overwrite:
        raise HippError(f"{out_dir} already exists; choose another directory or pass overwrite=True to replace it")
    if not is_export(out_dir):
        raise HippError(f"{out_dir} exists and is not a HiPP-Prune export; refusing to replace it, choose another path")


def is_export(path: Path) -> bool:
    """An export of either format: exact ones carry `prune_plan` in their config, stock ones only their plan file."""
    exported = prune_plan(path) is not None or (path / PLAN_FILE).is_file()
    return path.is_dir() and (path / "config.json").is_file() and exported


def source_dtype(adapter: ModelAdapter) -> torch.dtype | None:
    """The dtype of the checkpoint the model behind `adapter` was loaded from (None for a model built in memory)."""
    source = Path(adapter.model.name_or_path or "")
    return checkpoint_dtype(source) if str(source) not in ("", ".") and source.is_dir() else None


@torch.no_grad()
def _round_to(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Round the weights to what `dtype` can hold, keeping the compute dtype: a bfloat16 checkpoint computed in
    float32 is unchanged by this, a float32 fine-tune written as bfloat16 is checked as what it will be."""
    if dtype == model.dtype:
        return
    for tensor in model.parameters():  # not the buffers: rotary frequencies are recomputed on load, never saved
        if tensor.is_floating_point():
            tensor.copy_(tensor.to(dtype))


def _stock_tolerance(dtype: torch.dtype, reference: torch.Tensor) -> float:
    if dtype in (torch.float32, torch.float64):
        return STOCK_TOLERANCE
    return 16 * torch.finfo(dtype).eps * max(1.0, reference.abs().max().item())


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
    return model(**to_model(inputs, model), use_cache=False).logits.float().cpu()


def _write_checkpoint(tmp: Path, pruned: ModelAdapter, blueprint: Blueprint, export_format: str, dtype) -> None:
    """Weights (in `dtype`), config, processor and plan; for the exact format also the modeling file.
    `save_pretrained` writes the model's class name into `architectures`; the config is rewritten afterwards to name
    the pruned class and where to find it (exact), or the stock class (stock: the model may be a pruned class)."""
    model = pruned.model
    pruned_class = _pruned_class(pruned.model_type)
    if export_format == "exact":
        model.config.text_config.prune_plan = [
            {"n_heads": s.n_heads, "n_kv_heads": s.n_kv_heads, "intermediate": s.intermediate}
            for s in pruned.layer_shapes()
        ]
    # lossless: the weights were rounded to `dtype` before the reference logits were taken
    weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.save_pretrained(tmp, state_dict=weights)
    del weights
    config_file = tmp / "config.json"
    config = json.loads(config_file.read_text())
    config["dtype"] = str(dtype).removeprefix("torch.")
    config.pop("auto_map", None)
    if export_format == "exact":
        config["architectures"] = [pruned_class.__name__]
        config["auto_map"] = {auto: f"{Path(MODELING_FILE).stem}.{pruned_class.__name__}" for auto in AUTO_CLASSES}
        shutil.copyfile(pruned_modeling.__file__, tmp / MODELING_FILE)
    else:
        config["architectures"] = [pruned_modeling.stock_parent(pruned_class).__name__]
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    pruned.processor.save_pretrained(tmp)
    (tmp / PLAN_FILE).write_text(json.dumps(blueprint.to_json(), indent=2) + "\n")


def _verify(
    tmp: Path, inputs: dict[str, torch.Tensor], reference: torch.Tensor, settings: dict, tolerance: float
) -> float:
    """Reload the written export the way users will and require the pruned model's logits back (within
    `tolerance`); also require the saved processor to encode the check prompts exactly as the original one did."""
    try:
        loaded = load_pruned(tmp, **settings)
    except HippError as exc:
        raise HippError(f"the written export does not reload ({exc}); export aborted, nothing was written") from None
    again = _check_inputs(loaded.adapter)
    if again.keys() != inputs.keys() or not all(torch.equal(again[k], inputs[k]) for k in inputs):
        raise HippError("the exported processor encodes prompts differently from the model's own; export aborted")
    max_diff = (_logits(loaded.model, inputs) - reference).abs().max().item()
    if not max_diff <= tolerance:  # also catches NaN
        raise HippError(
            f"the exported model does not reproduce the pruned one (max |logit diff| {max_diff:.3g} > "
            f"{tolerance:g}); export aborted, nothing was written"
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
def _write_model_card(tmp: Path, card: str) -> None:
    (tmp / "README.md").write_text(card)


# -- loading ----------------------------------------------------------------------------------------------------------
def load_pruned(
    path: str | Path,
    device: str | torch.device = AUTO,
    dtype: str | torch.dtype | None = AUTO,
    attn_implementation: str = "sdpa",
    compile: bool = False,
) -> LoadedModel:
    """Load an export of either format with hipp's own copy of the pruned classes (no `trust_remote_code`,
    safetensors only), refusing any missing, unexpected or mis-shaped weight; on `device` in `dtype` as `load_model`
    resolves them.

    `compile=True` returns a private copy of the model whose `generate` decodes with a static KV cache and a
    `torch.compile`d forward (compiled on its first call), on any device."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise HippError(f"{path} is not a directory; pass the folder an export was written to")
    inspect_checkpoint(path)
    if not is_export(path):
        raise HippError(
            f"{path} is not a HiPP-Prune export (no text_config.prune_plan in config.json and no {PLAN_FILE}); "
            "load it as a model"
        )
    loaded = load_model(str(path), device, dtype, attn_implementation, fresh=compile)
    if compile:
        use_compiled_decoding(loaded.model)
    return loaded
