"""The 7B architectures the GPU benchmark and the scale model use, built from their published config.json files in
benchmarks/configs (no download, random weights): LLaVA-1.5-7B (CLIP ViT-L/14 at 336 px, Vicuna-7B decoder with 32
query = 32 KV heads) and Qwen2.5-VL-7B (28 query / 4 KV heads, qkv bias).

`tiny=True` gives a stand-in of the same structure small enough for a CPU dry run (numbers mean nothing).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import torch
from transformers import CONFIG_MAPPING, AutoModelForImageTextToText, PreTrainedConfig

from hipp_core.blueprint import LayerShape
from hipp_core.models.adapters import ModelAdapter, adapter_class

CONFIGS = Path(__file__).parent / "configs"
ARCHS = {  # name → (family, config file)
    "llava-1.5-7b": ("llava", "llava-1.5-7b-hf.config.json"),
    "qwen2.5-vl-7b": ("qwen2_5_vl", "qwen2.5-vl-7b-instruct.config.json"),
}
IMAGE_SIDE = 336  # pixels of the benchmark's image: LLaVA's native size; Qwen2.5-VL's token count follows it

# Small sizes with the same structure (LLaVA: MHA, Qwen: GQA with 2 heads per group and qkv bias).
_TINY_TEXT = {
    "llava": {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4},
    "qwen2_5_vl": {
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]},  # sums to head_dim / 2 = 16
    },
}
_TINY_VISION = {
    "llava": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "image_size": 28},
    "qwen2_5_vl": {
        "depth": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 2,
        "out_hidden_size": 128,
        "fullatt_block_indexes": [1],
    },
}


def parse_archs(parser, text: str) -> list[str]:
    """The comma-separated `--archs` of a benchmark script; an unknown name is the parser's error."""
    archs = text.split(",")
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        parser.error(f"unknown --archs {unknown}; use {', '.join(ARCHS)}")
    return archs


def family(arch: str) -> str:
    return ARCHS[arch][0]


def raw_config(arch: str, tiny: bool = False) -> dict:
    fam, name = ARCHS[arch]
    data = json.loads((CONFIGS / name).read_text())
    if tiny:
        data = copy.deepcopy(data)
        text = data.setdefault("text_config", {}) if fam == "llava" else data  # Qwen keeps its text keys at the top
        text.update(_TINY_TEXT[fam])
        data["vision_config"].update(_TINY_VISION[fam])
        for holder in (data, text):  # a 1,100-word vocabulary: special ids move to 1000 + their last two digits
            for key, value in holder.items():
                if key.endswith(("_token_id", "_token_index")) and isinstance(value, int) and value >= 1000:
                    holder[key] = 1000 + value % 100
            if "vocab_size" in holder:
                holder["vocab_size"] = 1100
    if fam == "llava":  # the published config predates `image_seq_length`; one token per patch, CLS dropped
        vision = data["vision_config"]
        data["image_seq_length"] = (vision["image_size"] // vision["patch_size"]) ** 2
    return data


def config(arch: str, tiny: bool = False) -> PreTrainedConfig:
    data = raw_config(arch, tiny)
    return CONFIG_MAPPING[data["model_type"]].from_dict(data)


def image_tokens(arch: str, tiny: bool = False) -> int:
    """Language-model tokens one IMAGE_SIDE-pixel image becomes."""
    cfg = config(arch, tiny)
    if family(arch) == "llava":
        return cfg.image_seq_length
    return (IMAGE_SIDE // cfg.vision_config.patch_size // cfg.vision_config.spatial_merge_size) ** 2


def build(arch: str, device: str | torch.device, dtype: torch.dtype, tiny: bool = False, seed: int = 0) -> ModelAdapter:
    """The architecture with random weights behind its family adapter (no tokenizer: inputs are token ids). On the
    meta device no memory is used, which is all `layer_shapes` needs."""
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built directly in `dtype`: 7B parameters in float32 first would need 28 GB
    try:
        with torch.device(device):
            model = AutoModelForImageTextToText.from_config(config(arch, tiny), dtype=dtype)  # not the config's
    finally:
        torch.set_default_dtype(previous)
    return adapter_class(family(arch))(model.eval(), SimpleNamespace(tokenizer=None))


def layer_shapes(arch: str, tiny: bool = False) -> list[LayerShape]:
    return build(arch, "meta", torch.bfloat16, tiny).layer_shapes()
