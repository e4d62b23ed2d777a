"""Local checkpoints load through the family adapters; every bad directory gives one clear line."""

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig

from hipp_core.errors import HippError
from hipp_core.models.loading import load_model, resolve_spec
from hipp_core.models.tokenizer import build_tokenizer, corpus
from tests.conftest import invoke, run_cli


@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl"])
def test_tokenizer_covers_every_text_without_unknowns(family, tmp_path):
    tok = build_tokenizer(family)
    for text in corpus()[:2000]:
        assert tok.unk_token_id not in tok(text).input_ids, text
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("Is there a red circle ?").input_ids == tok("Is there a red circle ?").input_ids


@pytest.mark.parametrize("fixture", ["tiny_llava", "tiny_qwen"])
def test_local_checkpoint_loads_and_answers(fixture, request):
    path = request.getfixturevalue(fixture)
    loaded = load_model(str(path))
    assert loaded.family == ("llava" if fixture == "tiny_llava" else "qwen2_5_vl")
    assert len(loaded.adapter.decoder_layers) == 2
    from hipp_core.data.world import blank_image

    enc = loaded.adapter.encode(
        ["Is there a red circle in the image?", "How many corners does a square have?"], [blank_image(), None]
    )
    n_image_tokens = int((enc.inputs["input_ids"] == loaded.model.config.image_token_id).sum())
    assert n_image_tokens == 16
    with torch.no_grad():
        logits = loaded.model(**enc.inputs).logits
    assert logits.shape[0] == 2 and torch.isfinite(logits).all()
    assert load_model(str(path)).model_id == loaded.model_id and len(loaded.model_id) == 16


def _expect(spec: str, *fragments: str) -> None:
    with pytest.raises(HippError) as info:
        resolve_spec(spec) if not fragments[0].startswith("load:") else load_model(spec)
    msg = str(info.value)
    assert "\n" not in msg
    for f in fragments:
        assert f.removeprefix("load:") in msg, msg


def test_bad_directories_give_one_line_errors(tmp_path, tiny_llava):
    _expect(str(tmp_path / "nope"), "does not exist")
    (tmp_path / "empty").mkdir()
    _expect(str(tmp_path / "empty"), "load:no config.json")
    text_only = tmp_path / "llama"
    text_only.mkdir()
    LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(text_only)
    _expect(str(text_only), "load:text-only", "llava", "qwen2_5_vl")
    other = tmp_path / "idefics"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "idefics3", "vision_config": {}}))
    _expect(str(other), "load:'idefics3'", "not supported", "llava")
    no_weights = tmp_path / "noweights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((tiny_llava / "config.json").read_text())
    _expect(str(no_weights), "load:no *.safetensors")
    torch.save({}, no_weights / "pytorch_model.bin")
    _expect(str(no_weights), "load:pytorch_model.bin", "convert")
    _expect("embedded:gpt", "unknown embedded model")


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "llava", "architectures": ["LlavaLlamaForCausalLM"], "mm_vision_tower": "openai/clip"},
        {"model_type": "llava", "hidden_size": 4096},  # no vision_config, no architectures
        {"model_type": "llama", "architectures": ["LlavaLlamaForCausalLM"]},
    ],
)
def test_original_llava_checkpoint_is_told_to_convert_not_called_text_only(tmp_path, config):
    (tmp_path / "config.json").write_text(json.dumps(config))
    _expect(str(tmp_path), "load:original LLaVA repository", "llava-hf layout", "convert_llava_weights_to_hf.py")
    with pytest.raises(HippError) as info:
        load_model(str(tmp_path))
    assert "text-only" not in str(info.value)


def test_corrupt_weights_are_reported_not_traced(tmp_path, tiny_llava):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_llava.iterdir():
        if not f.name.endswith(".safetensors") and f.name != "model.safetensors.index.json":
            (broken / f.name).write_bytes(f.read_bytes())
    save_file({"nothing": torch.zeros(1)}, broken / "model.safetensors")
    # A real process: whatever transformers prints while it fails to load must not add lines to the error.
    result = run_cli("eval", str(broken), "--limit", "2", "--json")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and str(broken) in result.stderr


def test_cli_missing_model_is_one_line_exit_2(tmp_path):
    result = invoke("eval", str(tmp_path / "missing"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:") and "does not exist" in result.stderr


def test_qwen_folder_without_a_video_processor_loads_image_only_where_torchvision_exists(monkeypatch, tmp_path):
    """With torchvision installed, the stock Qwen2.5-VL processor insists on a video processor config, which the
    embedded model's image-only processor never saved: the image-only class must load it there too."""
    from hipp_core.models import loading
    from hipp_core.models.qwen_processor import Qwen2_5_VLImageProcessorOnly
    from hipp_core.models.zoo import shipped_dir

    folder = shipped_dir("qwen2_5_vl")
    assert not loading.has_video_processor(folder)
    monkeypatch.setattr(loading, "is_torchvision_available", lambda: True)
    assert type(loading.load_processor(folder, "qwen2_5_vl")) is Qwen2_5_VLImageProcessorOnly
    # where transformers finds a video processor config, the stock class is used (it reads the legacy file too)
    for name, text in (("video_preprocessor_config.json", "{}"), ("preprocessor_config.json", "{}")):
        (tmp_path / name).write_text(text)
        assert loading.has_video_processor(tmp_path)
        (tmp_path / name).unlink()
    (tmp_path / "processor_config.json").write_text(json.dumps({"image_processor": {}, "video_processor": {}}))
    assert loading.has_video_processor(tmp_path)
