"""Loading classes for structurally pruned vision-language models exported by HiPP-Prune.

This file is copied into every export as `pruned_modeling.py`, so that any tool can load the export with plain
transformers (`AutoModelForImageTextToText.from_pretrained(path, trust_remote_code=True)`). It therefore imports
only torch and transformers.

A pruned decoder keeps the dense config (Qwen2.5-VL derives head_dim from the head counts, so those must stay);
what changed is recorded in `config.text_config.prune_plan`, one {"n_heads", "n_kv_heads", "intermediate"} per
decoder layer. Each class lets its parent build the dense model, then swaps the seven projections of every decoder
layer for empty ones of the pruned shapes, so the checkpoint loads exactly, with no mismatched size.

A static KV cache (compiled decoding) sizes each layer's key/value tensors from the first keys it receives, which is
right for pruned layers; only its eager initialisation (used by `generate` with `prefill_chunk_size`) reads one KV-head
count from the config, so the classes report the per-layer counts there.

Transformers 5 renames old checkpoint keys (e.g. LLaVA's `language_model.lm_head`) only for its own classes; for a
class defined outside it the renaming is skipped, and the unrenamed weights would be silently re-initialised. So
each class registers, under its own name, the conversion its parent class gets.
"""

from __future__ import annotations

import warnings

from torch import nn
from transformers import LlavaForConditionalGeneration, Qwen2_5_VLForConditionalGeneration
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping


def _empty_linear(like: nn.Linear, in_features: int, out_features: int) -> nn.Linear:
    """A Linear of the pruned shape on `like`'s device and dtype (meta while from_pretrained builds the model)."""
    with warnings.catch_warnings():  # a layer pruned to zero MLP channels has zero-element weights, on purpose
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        return nn.Linear(
            in_features,
            out_features,
            bias=like.bias is not None,
            device=like.weight.device,
            dtype=like.weight.dtype,
        )


def _reshape_decoder(layers: nn.ModuleList, prune_plan: list[dict]) -> None:
    """Give every decoder layer the projection shapes of its pruned counterpart. Attention infers its head count
    from tensor shapes; only the query heads per KV head (`num_key_value_groups`, read by repeat_kv) must be set."""
    if len(prune_plan) != len(layers):
        raise ValueError(f"prune_plan has {len(prune_plan)} entries but the model has {len(layers)} decoder layers")
    for layer, kept in zip(layers, prune_plan):
        attn, mlp = layer.self_attn, layer.mlp
        hidden = attn.q_proj.in_features
        q_width = kept["n_heads"] * attn.head_dim
        kv_width = kept["n_kv_heads"] * attn.head_dim
        channels = kept["intermediate"]
        attn.q_proj = _empty_linear(attn.q_proj, hidden, q_width)
        attn.k_proj = _empty_linear(attn.k_proj, hidden, kv_width)
        attn.v_proj = _empty_linear(attn.v_proj, hidden, kv_width)
        attn.o_proj = _empty_linear(attn.o_proj, q_width, hidden)
        attn.num_key_value_groups = kept["n_heads"] // kept["n_kv_heads"]
        mlp.gate_proj = _empty_linear(mlp.gate_proj, hidden, channels)
        mlp.up_proj = _empty_linear(mlp.up_proj, hidden, channels)
        mlp.down_proj = _empty_linear(mlp.down_proj, channels, hidden)


def _prune_plan(config) -> list[dict]:
    plan = getattr(config.text_config, "prune_plan", None)
    if not plan:
        raise ValueError("config.text_config.prune_plan is missing: this is not a HiPP-Prune export")
    return plan


class _PerLayerCacheShapes:
    """Per-layer KV-head counts for a static cache that `generate` initialises before the first forward: the parent
    reads one count from the config, which keeps the dense value, and the cache would then refuse the pruned keys."""

    def _get_static_cache_init_shape(self):
        shape = super()._get_static_cache_init_shape()
        if shape is None:
            return None
        return [kept["n_kv_heads"] for kept in _prune_plan(self.config)], shape[1]


class HippPrunedLlavaForConditionalGeneration(_PerLayerCacheShapes, LlavaForConditionalGeneration):
    """LLaVA whose language decoder layers have the shapes listed in `config.text_config.prune_plan`."""

    def __init__(self, config):
        super().__init__(config)
        _reshape_decoder(self.model.language_model.layers, _prune_plan(config))


class HippPrunedQwen2_5_VLForConditionalGeneration(_PerLayerCacheShapes, Qwen2_5_VLForConditionalGeneration):
    """Qwen2.5-VL whose language decoder layers have the shapes listed in `config.text_config.prune_plan`."""

    def __init__(self, config):
        super().__init__(config)
        _reshape_decoder(self.model.language_model.layers, _prune_plan(config))


def stock_parent(cls: type) -> type:
    """The transformers class a pruned class extends (the one a stock config names)."""
    return next(base for base in cls.__mro__[1:] if hasattr(base, "config_class"))


def _inherit_checkpoint_conversion(cls: type) -> None:
    """Register for `cls` the key conversion transformers applies to its parent: looked up by class name first,
    then by model type, as transformers does for its own classes."""
    parent = stock_parent(cls)
    conversion = get_checkpoint_conversion_mapping(parent.__name__) or get_checkpoint_conversion_mapping(
        parent.config_class.model_type
    )
    if conversion is not None:
        register_checkpoint_conversion_mapping(cls.__name__, conversion, overwrite=True)


for _cls in (HippPrunedLlavaForConditionalGeneration, HippPrunedQwen2_5_VLForConditionalGeneration):
    _inherit_checkpoint_conversion(_cls)

PRUNED_CLASSES = {
    "llava": HippPrunedLlavaForConditionalGeneration,
    "qwen2_5_vl": HippPrunedQwen2_5_VLForConditionalGeneration,
}
