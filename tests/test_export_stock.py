"""`--format stock` exports: plain transformers loads them with no remote code and they reproduce the masked model,
padded or not; they are smaller on disk than the dense checkpoint, keep its dtype, and the CLI says what padding
costs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import hipp_core
from hipp_core import export
from hipp_core.blueprint import Blueprint, LayerPlan, LayerShape, UnitScores, blueprint_from_layers, make_blueprint
from hipp_core.errors import HippError
from hipp_core.export import export_pruned
from hipp_core.models.loading import checkpoint_dtype, load_model
from hipp_core.prune import masked
from hipp_core.stock import StockLayout, stock_layout, stock_sizes
from plan_store import PlanStore
from tests.conftest import assert_plain_transformers_loads, invoke, tiny_adapter, uneven_blueprint

STOCK_CLASSES = {"llava": "LlavaForConditionalGeneration", "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration"}


@pytest.fixture(scope="module", params=["llava", "qwen2_5_vl"])
def adapter(request):
    """3 layers, 8 query heads in 2 KV groups of head size 8, 96 MLP channels. Biases are made non-zero, so a padded
    Qwen head only contributes nothing if padding zeroes its q/k/v biases too."""
    adapter = tiny_adapter(request.param)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in adapter.decoder_layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                if proj.bias is not None:
                    proj.bias.copy_(torch.randn(proj.bias.shape, generator=gen) * 0.5)
    return adapter


def equal_plan(adapter) -> Blueprint:
    shapes = adapter.layer_shapes()
    rng = np.random.default_rng(1)
    scores = [UnitScores(rng.random(s.n_heads), rng.random(s.intermediate)) for s in shapes]
    stock_heads = adapter.stock_head_counts()
    alpha = [0.2, 1.0, 3.0]
    return make_blueprint(
        "tiny", adapter.model_type, shapes, 0.4, alpha, scores, 8, equal_counts=True, stock_heads=stock_heads
    )


@torch.no_grad()
def masked_reference(adapter, blueprint) -> dict:
    inputs = export._check_inputs(adapter)
    with masked(adapter, blueprint):
        logits = adapter.model(**inputs).logits
    return {"inputs": inputs, "logits": logits, "lm_head": adapter.model.lm_head.weight}


@pytest.mark.parametrize("kind", ["equal", "uneven"])
def test_stock_export_loads_without_remote_code_and_matches_masked_model(adapter, kind, tmp_path):
    blueprint = equal_plan(adapter) if kind == "equal" else uneven_blueprint(adapter)
    path = export_pruned(adapter, blueprint, tmp_path / "stock", spec="embedded", export_format="stock")
    assert_plain_transformers_loads(
        path, tmp_path, masked_reference(adapter, blueprint), trust_remote_code=False, tolerance=1e-4
    )

    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == [STOCK_CLASSES[adapter.model_type]] and "auto_map" not in config
    assert "prune_plan" not in config["text_config"] and not (path / export.MODELING_FILE).exists()
    sizes = stock_sizes(adapter, blueprint)
    text = config["text_config"]
    declared = (text["num_attention_heads"], text["num_key_value_heads"], text["intermediate_size"], text["head_dim"])
    layout = sizes.layout
    assert declared == (layout.n_heads, layout.n_kv_heads, layout.intermediate, 8)
    if kind == "equal":
        plan = blueprint.layers[0]
        assert sizes.padded == 0 and (layout.n_heads, layout.n_kv_heads, layout.intermediate) == (
            plan.n_q,
            plan.n_kv,
            plan.n_mlp,
        )
    else:  # 2 groups of 3 heads: Qwen's stock attention needs 8 query heads, Llama's a count that divides 64
        assert (layout.n_heads, layout.n_kv_heads, layout.intermediate) == (8, 2, 64) and sizes.padded > 0

    loaded = hipp_core.load_pruned(path)
    assert type(loaded.model).__name__ == STOCK_CLASSES[adapter.model_type]
    assert sum(p.numel() for p in loaded.model.parameters()) == sizes.model_stock
    card = (path / "README.md").read_text()
    assert "Format **stock**" in card and "trust_remote_code" not in card and "compile=True" in card


def _safetensors_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def test_exports_keep_the_checkpoint_dtype_and_are_smaller_on_disk(tmp_path):
    """A bfloat16 checkpoint, computed in float32 after loading, is written back in bfloat16 in both formats, and
    both exports are smaller than the dense checkpoint whenever the plan removes something."""
    dense_dir = tmp_path / "dense-bf16"
    source = tiny_adapter("qwen2_5_vl")
    source.model.to(torch.bfloat16).save_pretrained(dense_dir)
    source.processor.save_pretrained(dense_dir)
    loaded = load_model(str(dense_dir))
    assert loaded.model.dtype == torch.float32 and checkpoint_dtype(dense_dir) == torch.bfloat16
    for kind, plan in (("equal", equal_plan(loaded.adapter)), ("uneven", uneven_blueprint(loaded.adapter))):
        plan = Blueprint.from_json({**plan.to_json(), "model_id": loaded.model_id})
        for export_format in ("exact", "stock"):
            out = export_pruned(
                loaded.adapter,
                plan,
                tmp_path / f"{kind}-{export_format}",
                spec=str(dense_dir),
                export_format=export_format,
            )
            assert checkpoint_dtype(out) == torch.bfloat16
            assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
            assert _safetensors_bytes(out) < _safetensors_bytes(dense_dir), (kind, export_format)


def _plan_file(model_dir: Path, layers: list[LayerPlan], out: Path) -> Path:
    loaded = load_model(str(model_dir))
    shapes = loaded.adapter.layer_shapes()
    plan = blueprint_from_layers(loaded.model_id, "llava", shapes, 0.3, layers, 8, 0.9, "manual", None, "wanda")
    out.write_text(json.dumps(plan.to_json()))
    return out


def test_cli_reports_what_padding_gives_back(tiny_llava, tmp_path):
    """tiny_llava: 2 layers of 4 query heads in 2 KV groups and 48 MLP channels. Keeping all heads in one layer and
    all channels in the other pads the stock export back to the dense size, and the CLI must say so."""
    full_heads = LayerPlan((0, 1), (0, 1, 2, 3), tuple(range(8)))
    full_mlp = LayerPlan((1,), (2,), tuple(range(48)))
    plan = _plan_file(tiny_llava, [full_heads, full_mlp], tmp_path / "dense-again.json")
    result = invoke("export", str(tiny_llava), "--plan", str(plan), "-o", str(tmp_path / "a"), "--format", "stock")
    assert result.returncode == 0, result.output
    assert "as large as the dense model" in result.output and "--equal-counts" in result.output

    half = LayerPlan((0,), (0, 1), tuple(range(24)))
    plan = _plan_file(tiny_llava, [half, full_mlp], tmp_path / "uneven.json")
    result = invoke("export", str(tiny_llava), "--plan", str(plan), "-o", str(tmp_path / "b"), "--format", "stock")
    assert result.returncode == 0, result.output
    assert "padding gives back" in result.output and "exactly pruned" in result.output

    result = invoke("export", str(tiny_llava), "--plan", str(plan), "-o", str(tmp_path / "c"), "--format", "gguf")
    assert result.returncode == 2 and "unknown export format 'gguf'" in result.output
    assert not (tmp_path / "c").exists()


def _kept(n_kv: int, per_group: int, intermediate: int = 64, hidden: int = 4096) -> LayerShape:
    return LayerShape(hidden, 128, n_kv * per_group, n_kv, intermediate, False, False, False, 2 * hidden)


def test_stock_layout_is_the_smallest_the_family_accepts():
    llava_7b = tuple(n for n in range(1, 4097) if 4096 % n == 0)  # Llama configs: heads must divide the hidden size
    # uniform 0.25 on LLaVA-1.5-7B keeps 24 of 32 MHA heads: no Llama config has 24 heads at hidden 4096
    assert stock_layout([_kept(24, 1)] * 3, llava_7b) == StockLayout(32, 32, 64, 128)
    assert stock_layout([_kept(16, 1), _kept(8, 1, 128)], llava_7b) == StockLayout(16, 16, 128, 128)
    # Qwen2.5-VL-7B (28 query heads in 4 groups): the count is fixed, KV groups are the fewest that divide it
    assert stock_layout([_kept(3, 7)], (28,)) == StockLayout(28, 4, 64, 128)
    assert stock_layout([_kept(2, 7), _kept(1, 3)], (28,)) == StockLayout(28, 2, 64, 128)
    assert stock_layout([_kept(3, 7), _kept(1, 2)]) == StockLayout(21, 3, 64, 128)  # no constraint: 3 groups of 7
    with pytest.raises(HippError, match="no stock layout"):
        stock_layout([_kept(4, 8)], (28,))


def test_a_recovered_artifact_exports_in_stock_format(tiny_llava, tmp_path):
    """`export_plan(..., artifact=...)` pads a finished exact export (what recovery leaves) into the stock format
    instead of copying it, and refuses an unknown format before writing anything."""
    from hipp_core import api

    spec = str(tiny_llava)
    uneven = [LayerPlan((0, 1), (0, 1, 2, 3), tuple(range(16))), LayerPlan((1,), (2,), tuple(range(40)))]
    plan = Blueprint.from_json(json.loads(_plan_file(tiny_llava, uneven, tmp_path / "plan.json").read_text()))
    loaded = load_model(spec)
    artifact = export_pruned(loaded.adapter, plan, tmp_path / "recovered", spec=spec)
    PlanStore().put_model(loaded.model_id, spec, "llava", loaded.model.config.to_dict())  # as evaluation would
    with pytest.raises(HippError, match="unknown export format"):
        api.export_plan(spec, plan, tmp_path / "bad", artifact=artifact, export_format="onnx")
    out = api.export_plan(spec, plan, tmp_path / "stock", artifact=artifact, export_format="stock")
    assert json.loads((out / "config.json").read_text())["architectures"] == [STOCK_CLASSES["llava"]]
    exact, stock = hipp_core.load_pruned(artifact), hipp_core.load_pruned(out)
    inputs = export._check_inputs(exact.adapter)
    with torch.no_grad():
        diff = (exact.model(**inputs).logits - stock.model(**inputs).logits).abs().max().item()
    assert diff <= 1e-4 and not (tmp_path / "bad").exists()
