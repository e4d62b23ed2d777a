"""Whether a checkpoint's safetensors weights can be loaded, decided from their headers alone (no tensor is read).

A folder passes `inspect_checkpoint`'s config checks with any file named `model.safetensors` in it; a truncated
download or a junk file then fails minutes later, inside a job, with a SafetensorError. Each shard's header is small
(kilobytes at 7B), so checking it up front costs milliseconds: the header must agree with the file (checked by the
safetensors library) and the tensors it names with the model's config.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from safetensors import SafetensorError, safe_open

from hipp_core.errors import HippError

DECODER_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
VISION = ("vision", "visual")  # vision towers have numbered layers or blocks of their own


def read_shapes(shard: Path) -> dict[str, list[int]]:
    """The shape of every tensor a safetensors file declares. The safetensors library reads only the header and
    checks it against the file (a junk file, a header larger than the file, a truncated shard all fail), so no
    tensor is read; HippError says which file is wrong and why."""
    try:
        with safe_open(shard, framework="pt") as f:
            return {name: f.get_slice(name).get_shape() for name in f.keys()}  # noqa: SIM118 (not iterable)
    except (SafetensorError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HippError(
            f"{shard} is not a valid safetensors file ({reason}); download or export the checkpoint again"
        ) from None


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
    shapes: dict[str, list[int]] = {}
    for shard in sorted(path.glob("*.safetensors")):
        shapes |= read_shapes(shard)
    text = config.get("text_config") or config
    hidden, layers = text.get("hidden_size"), text.get("num_hidden_layers")
    embeddings = [
        shape
        for name, shape in shapes.items()
        if name.endswith("embed_tokens.weight") and not any(v in name for v in VISION)
    ]
    if isinstance(hidden, int) and embeddings and embeddings[0][-1] != hidden:
        raise HippError(
            f"{path}: the token embeddings are {embeddings[0][-1]} wide but config.json says hidden_size {hidden}; "
            "the weights and the config are from different models"
        )
    found = {
        int(m.group(1)) for name in shapes if not any(v in name for v in VISION) and (m := DECODER_LAYER.search(name))
    }
    if isinstance(layers, int) and found != set(range(layers)):
        have = f"{len(found)} decoder layers" if found else "no decoder layer weights"
        raise HippError(
            f"{path}: the weights hold {have} but config.json says num_hidden_layers {layers}; "
            "the checkpoint is incomplete or its config is from another model"
        )
