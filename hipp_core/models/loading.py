"""Model specs → loaded models: `embedded`, `embedded:<arch>`, or a local Hugging Face checkpoint directory.

A user's checkpoint never runs code of its own here: no `trust_remote_code`, weights from safetensors only.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor
from transformers.utils import is_torchvision_available

from hipp_core.errors import HippError, json_problem
from hipp_core.models.adapters import ModelAdapter, adapter_class, supported_families
from hipp_core.models.device import AUTO, CPU_FLOAT32, Placement, resolve
from hipp_core.models.qwen_processor import Qwen2_5_VLImageProcessorOnly
from hipp_core.models.weights_check import check_weights
from hipp_core.models.zoo import ARCHS, retrained_dir, shipped_dir

EMBEDDED_ALIASES = {"embedded": "llava", **{f"embedded:{a}": a for a in ARCHS}}


@dataclass
class LoadedModel:
    spec: str
    path: Path
    family: str
    model_id: str  # hash of config and weights: the key every cached result is stored under
    adapter: ModelAdapter
    placement: Placement = CPU_FLOAT32  # the resolved device and dtype the weights were loaded to

    @property
    def model(self):
        return self.adapter.model

    @property
    def processor(self):
        return self.adapter.processor


def resolve_spec(spec: str) -> Path:
    """The directory a model spec names. A retrained embedded model in the cache wins over the shipped one."""
    if spec in EMBEDDED_ALIASES:
        arch = EMBEDDED_ALIASES[spec]
        for candidate in (retrained_dir(arch), shipped_dir(arch)):
            if (candidate / "config.json").exists():
                return candidate
        raise HippError(f"embedded model {arch!r} is not built; run `hipp zoo build --arch {arch}`")
    if spec.startswith("embedded"):
        raise HippError(f"unknown embedded model {spec!r}; use one of {', '.join(EMBEDDED_ALIASES)}")
    path = Path(spec).expanduser()
    if not path.exists():
        raise HippError(
            f"model directory {path} does not exist; pass `embedded`, `embedded:qwen2_5_vl` or a local checkpoint"
        )
    if not path.is_dir():
        raise HippError(f"{path} is a file; pass a Hugging Face checkpoint directory (config.json + *.safetensors)")
    return path.resolve()


def inspect_checkpoint(path: Path) -> str:
    """Validate a checkpoint directory without loading weights (config, safetensors headers, decoder shapes); return
    its family."""
    config_file = path / "config.json"
    if not config_file.exists():
        found = ", ".join(sorted(p.name for p in path.iterdir())[:6]) or "nothing"
        raise HippError(f"{path} has no config.json (found: {found}); not a Hugging Face checkpoint directory")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise HippError(f"{config_file} is not valid JSON ({json_problem(exc)})") from None
    model_type = config.get("model_type", "<missing>")
    if _original_llava(config):
        raise HippError(
            f"{path} is a checkpoint of the original LLaVA repository (model_type {model_type!r}, "
            f"{', '.join(config.get('architectures') or []) or 'no architectures'}); convert it to the llava-hf "
            "layout with transformers' convert_llava_weights_to_hf.py (src/transformers/models/llava/ in the "
            "transformers repository), then pass the converted folder"
        )
    if "vision_config" not in config:
        raise HippError(
            f"{path} holds a text-only model (model_type {model_type!r}); "
            f"supported vision-language families: {', '.join(supported_families())}"
        )
    if model_type not in supported_families():
        raise HippError(
            f"{path} holds a {model_type!r} model, which is not supported; "
            f"supported families: {', '.join(supported_families())}"
        )
    if not list(path.glob("*.safetensors")):
        others = [p.name for p in path.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".ckpt"}]
        hint = f" (found {', '.join(others[:3])}; convert them to safetensors)" if others else ""
        raise HippError(f"{path} has no *.safetensors weights{hint}; this tool only reads safetensors")
    check_weights(path, config)
    return model_type


def _original_llava(config: dict) -> bool:
    """haotian-liu/LLaVA's own layout (LlavaLlamaForCausalLM, a Llama config plus mm_* fields): a vision-language
    model that only its repository's code loads, not a text-only one."""
    architectures = config.get("architectures") or []
    named = any(isinstance(a, str) and re.fullmatch(r"Llava\w*ForCausalLM", a) for a in architectures)
    typed = str(config.get("model_type", "")).startswith("llava") and "vision_config" not in config
    return named or typed or "mm_vision_tower" in config


def checkpoint_id(path: Path) -> str:
    """Content hash of config and weights, fast at 7B scale: safetensors headers (names, shapes, offsets) plus
    the first and last MiB of every shard, instead of reading tens of GB."""
    h = hashlib.sha256((path / "config.json").read_bytes())
    for shard in sorted(path.glob("*.safetensors")):
        size = shard.stat().st_size
        with shard.open("rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            h.update(f.read(min(header_len, 100_000_000)))
            h.update(f.read(1 << 20))
            f.seek(max(0, size - (1 << 20)))
            h.update(f.read())
        h.update(f"{shard.name}:{size}".encode())
    return h.hexdigest()[:16]


def safetensors_header(shard: Path) -> dict:
    """The JSON header of a safetensors file: tensor name → {dtype, shape, data_offsets}, plus `__metadata__`."""
    with shard.open("rb") as f:
        length = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(length))


def load_processor(path: Path, family: str):
    if family == "qwen2_5_vl" and not (is_torchvision_available() and has_video_processor(path)):
        # The stock Qwen2.5-VL processor needs torchvision and a video processor config for its video half, which
        # the image-only processors of the embedded models and the benchmarks' checkpoints do not save; see
        # qwen_processor.py.
        return Qwen2_5_VLImageProcessorOnly.from_pretrained(path)
    return AutoProcessor.from_pretrained(path)


def has_video_processor(path: Path) -> bool:
    """Whether transformers finds a video processor config in `path`, where it looks for one: its own file, the
    legacy image processor file, or a `video_processor` entry of processor_config.json."""
    if (path / "video_preprocessor_config.json").exists() or (path / "preprocessor_config.json").exists():
        return True
    try:
        return "video_processor" in json.loads((path / "processor_config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False


def load_model(
    spec: str,
    device: str | torch.device | None = AUTO,
    dtype: str | torch.dtype | None = AUTO,
    attn_implementation: str = "sdpa",
    fresh: bool = False,
) -> LoadedModel:
    """Load (once per process and placement) a model spec for inference on `device` in `dtype` (`auto`: the GPU in
    bfloat16 when there is one, else the CPU in float32; see `models.device`). Callers must not modify the returned
    model in place, or must restore it (as calibration does with its attention implementation); `fresh` loads a
    private copy (outside the per-process cache) that they may change."""
    path = resolve_spec(spec)
    placement = resolve(device, dtype)
    load = _load_cached.__wrapped__ if fresh else _load_cached
    return load(str(path), spec, placement, attn_implementation)


_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def checkpoint_dtype(path: Path) -> torch.dtype | None:
    """The floating dtype most of a checkpoint's weights are stored in, read from its safetensors headers (no
    weights are read); None when there is no such checkpoint at `path`."""
    sizes: dict[torch.dtype, int] = {}
    for shard in sorted(Path(path).glob("*.safetensors")):
        for name, info in safetensors_header(shard).items():
            dtype = _SAFETENSORS_DTYPES.get(info.get("dtype")) if name != "__metadata__" else None
            if dtype is not None:
                start, end = info["data_offsets"]
                sizes[dtype] = sizes.get(dtype, 0) + end - start
    return max(sizes, key=sizes.get) if sizes else None


def prune_plan(path: Path) -> list | None:
    """An export's per-layer pruned shapes (`config.text_config.prune_plan`), None for a dense checkpoint."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    text_config = config.get("text_config")
    return text_config.get("prune_plan") if isinstance(text_config, dict) else None


def _model_class(path: Path, family: str):
    """Stock classes for dense checkpoints; our own pruned classes (imported, never run from the checkpoint) for
    exports, whose decoder shapes no stock class can build."""
    if not prune_plan(path):
        return AutoModelForImageTextToText
    from hipp_core.models import pruned_modeling

    return pruned_modeling.PRUNED_CLASSES[family]


@lru_cache(maxsize=4)
def _load_cached(path_str: str, spec: str, placement: Placement, attn_implementation: str) -> LoadedModel:
    path = Path(path_str)
    family = inspect_checkpoint(path)
    try:
        model, info = _model_class(path, family).from_pretrained(
            path,
            dtype=placement.torch_dtype,
            attn_implementation=attn_implementation,
            use_safetensors=True,
            output_loading_info=True,
        )
        processor = load_processor(path, family)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HippError(f"could not load {path}: {first}") from None
    # transformers fills missing weights with random values and drops unexpected ones, with only a warning;
    # a pruning tool must refuse both.
    wrong = {k: sorted(info.get(k, [])) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(wrong.values()):
        kind, keys = next((k, v) for k, v in wrong.items() if v)
        raise HippError(
            f"{path} does not match its config: {len(keys)} {kind.replace('_', ' ')} (e.g. {keys[0]}); "
            "re-download or re-export the checkpoint"
        )
    model.to(placement.device).eval()
    adapter = adapter_class(family)(model, processor)
    return LoadedModel(spec, path, family, checkpoint_id(path), adapter, placement)
