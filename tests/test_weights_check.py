"""A checkpoint's weights are checked from their safetensors headers before anything uses it: junk, truncated or
mismatched weights are refused with one line naming the file, instead of failing later inside a job."""

import json
import shutil
from pathlib import Path

import pytest

from hipp_core.errors import HippError
from hipp_core.models.loading import inspect_checkpoint
from hipp_core.models.weights_check import read_shapes


@pytest.fixture
def copy(tiny_llava, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_llava, tmp_path / "ckpt"))


def _shards(path: Path) -> list[Path]:
    return sorted(path.glob("*.safetensors"))


def test_real_checkpoints_pass_both_families(tiny_llava, tiny_qwen):
    assert inspect_checkpoint(tiny_llava) == "llava"
    assert inspect_checkpoint(tiny_qwen) == "qwen2_5_vl"
    assert any(name.endswith("embed_tokens.weight") for s in _shards(tiny_llava) for name in read_shapes(s))


def test_junk_model_safetensors_is_refused_naming_the_file(copy):
    for shard in _shards(copy):
        shard.unlink()
    (copy / "model.safetensors.index.json").unlink(missing_ok=True)
    (copy / "model.safetensors").write_bytes(b"this is not a tensor file at all, just junk text" * 10)
    with pytest.raises(HippError, match=r"model\.safetensors is not a valid safetensors file \(.*header"):
        inspect_checkpoint(copy)


def test_truncated_shard_is_refused(copy):
    shard = _shards(copy)[-1]
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(HippError, match=r"not a valid safetensors file \(.*not fully covered"):
        inspect_checkpoint(copy)


def test_missing_shard_named_by_the_index_is_refused(copy):
    index = json.loads((copy / "model.safetensors.index.json").read_text())
    shard = min(index["weight_map"].values())
    (copy / shard).unlink()
    with pytest.raises(HippError, match=f"missing weight shards its index names: {shard}"):
        inspect_checkpoint(copy)


def test_config_of_another_model_is_refused(copy):
    config = json.loads((copy / "config.json").read_text())
    config["text_config"]["num_hidden_layers"] += 2
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(HippError, match="hold 2 decoder layers but config.json says num_hidden_layers 4"):
        inspect_checkpoint(copy)
    config["text_config"]["num_hidden_layers"] -= 2
    config["text_config"]["hidden_size"] *= 2
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(HippError, match="embeddings are 32 wide but config.json says hidden_size 64"):
        inspect_checkpoint(copy)
