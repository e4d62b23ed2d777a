"""LLaVA-1.5-7B's architecture, from its config alone (no download): for the scale cost model and the GPU benchmark.

The values are those of llava-hf/llava-1.5-7b-hf's config.json: a CLIP ViT-L/14 at 336 px (576 image tokens) and a
Vicuna-7B (Llama-2-7B) decoder with full multi-head attention (32 KV heads = 32 query heads).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from hipp_core.blueprint import LayerShape
from hipp_core.models.adapters import ModelAdapter, adapter_class

VISION = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
    "projection_dim": 768,
}
TEXT = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "vocab_size": 32064,
    "pad_token_id": 32001,
}
LLAVA = {
    "image_token_id": 32000,
    "image_seq_length": 576,  # (336 / 14)² patches; the CLS token is dropped ("default" select strategy)
    "vision_feature_layer": -2,
    "vision_feature_select_strategy": "default",
    "projector_hidden_act": "gelu",
    "tie_word_embeddings": False,
}
# A dry-run stand-in with the same structure (MHA decoder, CLIP tower, 576 → 4 image tokens), small enough for CPU.
TINY_VISION = {**VISION, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "image_size": 28}
TINY_TEXT = {
    **TEXT,
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
}


def config(tiny: bool = False) -> LlavaConfig:
    vision, text = (TINY_VISION, TINY_TEXT) if tiny else (VISION, TEXT)
    image_tokens = (vision["image_size"] // vision["patch_size"]) ** 2
    return LlavaConfig(
        vision_config=CLIPVisionConfig(**vision),
        text_config=LlamaConfig(**text),
        **{**LLAVA, "image_seq_length": image_tokens},
    )


def build(device: str | torch.device, dtype: torch.dtype, tiny: bool = False, seed: int = 0) -> ModelAdapter:
    """The architecture with random weights behind the LLaVA adapter (no tokenizer: inputs are token ids).

    On the meta device no memory is used, which is all `layer_shapes` needs."""
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built directly in `dtype`: 7B parameters in float32 first would need 28 GB
    try:
        with torch.device(device):
            model = LlavaForConditionalGeneration(config(tiny))
    finally:
        torch.set_default_dtype(previous)
    return adapter_class("llava")(model.eval(), SimpleNamespace(tokenizer=None))


def layer_shapes(tiny: bool = False) -> list[LayerShape]:
    return build("meta", torch.bfloat16, tiny).layer_shapes()
