"""The embedded model zoo: tiny LLaVA and Qwen2.5-VL built from configs, trained by the project, shipped.

Sizes (docs/design.md, The embedded testbed): a Llama-style decoder of 8 layers (hidden 128, 8 query / 2 KV heads, so GQA is
real) over a 2-layer vision tower whose 16 output tokens are the 16 cells of a ShapesWorld image.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLImageProcessor,
)

from hipp_core.config import SHIPPED_ZOO_DIR, cache_dir, set_threads
from hipp_core.data.world import CELL, IMAGE_SIZE
from hipp_core.models.adapters import adapter_class
from hipp_core.models.device import AUTO, resolve_device
from hipp_core.models.qwen_processor import Qwen2_5_VLImageProcessorOnly
from hipp_core.models.tokenizer import SPECIALS, build_tokenizer
from hipp_core.models.train import Progress, TrainConfig, TrainTime, train_decoder, train_probe

ARCHS = ("llava", "qwen2_5_vl")
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


@dataclass(frozen=True)
class DecoderSize:
    hidden: int = 128
    layers: int = 8  # >= 8 so per-layer allocation has room to matter
    heads: int = 8  # a layer can keep 8, 6, 4, 3, 2 or 1 query heads (every kept KV group keeps as many)
    kv_heads: int = 2  # fewer KV than query heads: pruning must respect GQA groups
    intermediate: int = 256  # a multiple of 8, the embedded models' channel rounding
    head_dim: int | None = None  # None: hidden // heads (the only width Qwen2.5-VL allows)
    rope_theta: float | None = None  # None: the family's base (LLaVA 1e5, see EMBEDDED_SIZES; Qwen2.5-VL 1e4)


# The shipped checkpoints' decoders. LLaVA lays the 16 image tokens out in one row of 1-D positions; a slower RoPE base
# leaves more of the 16-dim heads' rotary pairs free to look up content anywhere in the image (docs/design.md,
# "Embedded models", also for the 32-dim heads at base 1e4 that were tried).
EMBEDDED_SIZES = {"llava": DecoderSize(rope_theta=1e5), "qwen2_5_vl": DecoderSize()}


def train_info(path: Path) -> dict | None:
    """What `train_embedded` recorded about a trained checkpoint (recipe, seeds, time), if anything."""
    info = path / "hipp_train.json"
    return json.loads(info.read_text()) if info.exists() else None


def train_seconds(info: dict) -> float | None:
    """Training time of a checkpoint over every run that resumed it (records from before resumed runs were summed
    give their last run's)."""
    return info.get("seconds", info.get("seconds_this_run"))


def train_threads(info: dict) -> list[int]:
    """The torch thread count of each run that trained the checkpoint."""
    return info.get("threads_by_run") or ([info["torch_threads"]] if "torch_threads" in info else [])


def shipped_dir(arch: str) -> Path:
    return SHIPPED_ZOO_DIR / arch


def retrained_dir(arch: str) -> Path:
    return cache_dir() / "zoo" / arch


def build_processor(
    arch: str,
    tokenizer: PreTrainedTokenizerFast | None = None,
    image_side: int = IMAGE_SIZE,
    patch_size: int | None = None,
    max_pixels: int | None = None,
):
    """The family's processor around the embedded word-level tokenizer, or around `tokenizer` (which must carry a
    chat template): the tests use a real checkpoint's vocabulary this way. The defaults fit the embedded vision
    towers; other towers (the 7B benchmarks' checkpoints) give their `patch_size`, the `image_side` images are
    resized to (LLaVA) or scaled up to at least (Qwen2.5-VL, whose images may grow to `max_pixels`)."""
    tokenizer = build_tokenizer(arch) if tokenizer is None else tokenizer
    if arch == "llava":
        image_processor = CLIPImageProcessor(
            size={"shortest_edge": image_side},
            crop_size={"height": image_side, "width": image_side},
            image_mean=CLIP_MEAN,
            image_std=CLIP_STD,
        )
        return LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=patch_size or CELL,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,  # the CLS token, dropped by the "default" strategy
            chat_template=tokenizer.chat_template,
        )
    if arch == "qwen2_5_vl":
        pixels = image_side * image_side  # embedded: keep 64x64 as is, 8x8 patches of 8 px merged 2x2 into 16 cells
        image_processor = Qwen2VLImageProcessor(
            patch_size=patch_size or CELL // 2,
            merge_size=2,
            temporal_patch_size=2,
            size={"shortest_edge": pixels, "longest_edge": max(pixels, max_pixels or pixels)},
            image_mean=CLIP_MEAN,
            image_std=CLIP_STD,
        )
        return Qwen2_5_VLImageProcessorOnly(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template
        )
    raise ValueError(f"unknown embedded architecture {arch!r}; expected one of {', '.join(ARCHS)}")


def build_model(arch: str, processor, seed: int = 0, size: DecoderSize | None = None):
    """A freshly initialised embedded model whose token ids agree with `processor`'s tokenizer; `size` defaults to
    the shipped model's."""
    size = size or EMBEDDED_SIZES.get(arch, DecoderSize())
    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIALS[arch]}
    torch.manual_seed(seed)
    text = {
        "vocab_size": len(tok),
        "hidden_size": size.hidden,
        "intermediate_size": size.intermediate,
        "num_hidden_layers": size.layers,
        "num_attention_heads": size.heads,
        "num_key_value_heads": size.kv_heads,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
    }
    if arch == "llava":
        if size.head_dim is not None:
            text["head_dim"] = size.head_dim
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": size.rope_theta or 1e5}
        vision = CLIPVisionConfig(
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=IMAGE_SIZE,
            patch_size=CELL,
            projection_dim=64,
        )
        config = LlavaConfig(
            vision_config=vision,
            text_config=LlamaConfig(**text),
            image_token_id=ids["<image>"],
            image_seq_length=(IMAGE_SIZE // CELL) ** 2,
            vision_feature_select_strategy="default",
            vision_feature_layer=-1,
            projector_hidden_act="gelu",
        )
        model = LlavaForConditionalGeneration(config)
    elif arch == "qwen2_5_vl":
        head_dim = size.hidden // size.heads
        if size.head_dim not in (None, head_dim):  # its attention derives the width from hidden_size alone
            raise ValueError(f"Qwen2.5-VL's heads are hidden // heads = {head_dim} wide, not {size.head_dim}")
        half = head_dim // 2
        section = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]  # temporal, height, width
        vision = {
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 256,
            "num_heads": 4,
            "out_hidden_size": size.hidden,
            "patch_size": CELL // 2,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": IMAGE_SIZE,  # one window covers the image: every block sees all cells
            "fullatt_block_indexes": [1],
        }
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": size.rope_theta or 1e4,
            "mrope_section": section,
        }
        config = Qwen2_5_VLConfig(
            text_config=text,
            vision_config=vision,
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
            tie_word_embeddings=False,
        )
        model = Qwen2_5_VLForConditionalGeneration(config)
    else:
        raise ValueError(f"unknown embedded architecture {arch!r}; expected one of {', '.join(ARCHS)}")
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model


def recipe(arch: str) -> TrainConfig:
    """The recipe each shipped checkpoint was trained with, so that `hipp zoo build --retrain` reproduces it.
    Qwen2.5-VL's tower reads every cell after 400 probe steps; LLaVA's needs 800 (see `TrainConfig.probe_steps`).
    LLaVA learns the fact questions only in a text phase of their own (docs/design.md, The embedded testbed)."""
    return replace(TrainConfig(), text_steps=1000) if arch == "llava" else replace(TrainConfig(), probe_steps=400)


def train_embedded(
    arch: str,
    out_dir: Path,
    cfg: TrainConfig | None = None,
    progress: Progress | None = None,
    threads: int | None = None,
    device: str = AUTO,
    batch_workers: int | None = None,
) -> dict:
    """Build, train and save one embedded model; resumable (a checkpoint lives beside `out_dir`), also on another
    device than the one that wrote the checkpoint. Always float32: the shipped checkpoints are float32 and a GPU run
    of the same recipe differs from a CPU run in rounding alone (the order of its sums), so not bit for bit. `threads` serves the CPU share of each
    step (rendering and encoding the batch), about half of a step on a GPU: there `batch_workers` processes
    (default 2; none on the CPU, where they would take the training's cores) prepare the batches ahead."""
    cfg = cfg or recipe(arch)
    n_threads = set_threads(threads)
    device = resolve_device(device)
    if batch_workers is None:
        batch_workers = 0 if device == "cpu" else 2
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir.parent / f".{out_dir.name}.train.pt"
    processor = build_processor(arch)
    model = build_model(arch, processor, seed=cfg.seed).to(device)
    adapter = adapter_class(arch)(model, processor)
    t0 = time.perf_counter()
    probe_acc = None
    if not checkpoint.exists():
        probe_acc = train_probe(adapter, cfg, progress)
    spent = train_decoder(adapter, cfg, checkpoint, progress, TrainTime(now=time.perf_counter() - t0), batch_workers)
    info = {
        "arch": arch,
        "train_config": asdict(cfg),
        "probe_cell_accuracy": probe_acc,  # None when this run resumed after the probe
        "seconds": round(spent.earlier + spent.now, 1),  # every run that resumed the checkpoint
        "seconds_this_run": round(time.perf_counter() - t0, 1),
        "torch_threads": n_threads,
        "batch_workers": batch_workers,
        "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        "threads_by_run": spent.to_json()["threads"],
        "torch_version": torch.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    tmp = out_dir.parent / f".{out_dir.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    (tmp / "hipp_train.json").write_text(json.dumps(info, indent=2))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    checkpoint.unlink(missing_ok=True)
    return info
