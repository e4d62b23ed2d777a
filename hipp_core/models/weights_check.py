"""Whether a checkpoint's safetensors weights can be loaded, decided from their headers alone (no tensor is read).

A folder passes `inspect_checkpoint`'s config checks with any file named `model.safetensors` in it; a truncated
download or a junk file then fails minutes later, inside a job, with a SafetensorError. Each shard's header is small
(kilobytes at 7B), so checking it up front costs milliseconds: the header is JSON naming every tensor with its dtype,
shape and byte range, and those must agree with each other, with the file's size and with the model's config.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from hipp_core.errors import HippError

MAX_HEADER_BYTES = 100_000_000  # the safetensors format's own limit
DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
DECODER_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
VISION = ("vision", "visual")  # vision towers have numbered layers or blocks of their own


def read_header(shard: Path) -> dict[str, dict]:
    """The tensors a safetensors file declares, checked for consistency with the file; HippError says what is wrong."""
    size = shard.stat().st_size

    def refuse(problem: str) -> HippError:
        return HippError(
            f"{shard} is not a valid safetensors file ({problem}); download or export the checkpoint again"
        )

    if size < 8:
        raise refuse(f"{size} bytes, shorter than the 8-byte header length")
    with shard.open("rb") as f:
        length = int.from_bytes(f.read(8), "little")
        if length > min(size - 8, MAX_HEADER_BYTES):
            raise refuse(f"its header claims {length:,} bytes in a file of {size:,}")
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise refuse("its header is not JSON") from None
    if not isinstance(header, dict):
        raise refuse("its header is not a JSON object")
    data_bytes = size - 8 - length
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
            itemsize = DTYPE_BYTES[dtype]
            count = math.prod(int(n) for n in shape)
        except (KeyError, TypeError, ValueError):
            raise refuse(f"tensor {name!r} has no valid dtype, shape and data_offsets") from None
        if not 0 <= start <= end <= data_bytes:
            raise refuse(f"tensor {name!r} lies outside the file (bytes {start}-{end} of {data_bytes:,})")
        if end - start != count * itemsize:
            raise refuse(f"tensor {name!r} of shape {shape} ({dtype}) has {end - start} bytes, not {count * itemsize}")
        tensors[name] = info
    return tensors


def check_weights(path: Path, config: dict) -> None:
    """Every `*.safetensors` shard in `path` readable, the shards an index names present, and the decoder's
    embedding width and layer count those of `config` (the text part of a vision-language config)."""
    index = path / "model.safetensors.index.json"
    if index.exists():
        try:
            named = set(json.loads(index.read_text()).get("weight_map", {}).values())
        except (json.JSONDecodeError, AttributeError):
            raise HippError(f"{index} is not a valid safetensors index; download the checkpoint again") from None
        missing = sorted(name for name in named if not (path / name).is_file())
        if missing:
            raise HippError(f"{path} is missing weight shards its index names: {', '.join(missing[:3])}")
    tensors: dict[str, dict] = {}
    for shard in sorted(path.glob("*.safetensors")):
        tensors |= read_header(shard)
    text = config.get("text_config") or config
    hidden, layers = text.get("hidden_size"), text.get("num_hidden_layers")
    embeddings = [
        info["shape"]
        for name, info in tensors.items()
        if name.endswith("embed_tokens.weight") and not any(v in name for v in VISION)
    ]
    if isinstance(hidden, int) and embeddings and embeddings[0][-1] != hidden:
        raise HippError(
            f"{path}: the token embeddings are {embeddings[0][-1]} wide but config.json says hidden_size {hidden}; "
            "the weights and the config are from different models"
        )
    found = {
        int(m.group(1)) for name in tensors if not any(v in name for v in VISION) and (m := DECODER_LAYER.search(name))
    }
    if isinstance(layers, int) and found != set(range(layers)):
        have = f"{len(found)} decoder layers" if found else "no decoder layer weights"
        raise HippError(
            f"{path}: the weights hold {have} but config.json says num_hidden_layers {layers}; "
            "the checkpoint is incomplete or its config is from another model"
        )
