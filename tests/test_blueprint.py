"""Blueprint: water-filling, rounding to GQA-valid units, exact parameter accounting, validation, JSON (docs/design.md, Blueprints).

Models are tiny random ones from the zoo, or real 7B layouts built on the meta device (shapes only, no memory).
"""

import json
import math
from dataclasses import replace
from functools import cache
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)

from hipp_core.blueprint import (
    SPARSITY_TOLERANCE,
    Blueprint,
    LayerPlan,
    LayerShape,
    UnitScores,
    allocate,
    allocate_split,
    count_params,
    decoder_flops,
    make_blueprint,
    realize,
    validate,
    whole_model_params,
)
from hipp_core.errors import HippError
from hipp_core.models.adapters import ModelAdapter, adapter_class
from hipp_core.models.zoo import EMBEDDED_SIZES, DecoderSize, build_model, build_processor
from tests.conftest import TINY

ARCHS = ("llava", "qwen2_5_vl")
WIDE_GQA = DecoderSize(hidden=64, layers=2, heads=8, kv_heads=2, intermediate=96)  # 4 query heads per KV group


@cache
def _processor(arch: str):
    return build_processor(arch)


def _adapter(arch: str, model: nn.Module) -> ModelAdapter:
    """Shape reading needs no tokenizer, so a processor stand-in is enough (and lets meta 7B models in)."""
    return adapter_class(arch)(model, SimpleNamespace(tokenizer=None))


def _tiny(arch: str, size: DecoderSize, meta: bool = False) -> ModelAdapter:
    with torch.device("meta" if meta else "cpu"):
        return _adapter(arch, build_model(arch, _processor(arch), seed=0, size=size))


def _decoder_numel(adapter: ModelAdapter) -> int:
    return sum(p.numel() for layer in adapter.decoder_layers for p in layer.parameters())


def _random_scores(shapes: list[LayerShape], rng: np.random.Generator) -> list[UnitScores]:
    return [UnitScores(rng.random(s.n_heads), rng.random(s.intermediate)) for s in shapes]


def _linear(old: nn.Linear, in_features: int, out_features: int) -> nn.Linear:
    return torch.nn.utils.skip_init(nn.Linear, in_features, out_features, bias=old.bias is not None, device="meta")


def _shrink(adapter: ModelAdapter, layers: list[LayerPlan]) -> None:
    """Replace every projection by one of the pruned size (meta, no weights): only the numels matter here."""
    for layer, plan in zip(adapter.decoder_layers, layers, strict=True):
        attn, mlp = layer.self_attn, layer.mlp
        hidden, q_width, kv_width = attn.q_proj.in_features, plan.n_q * attn.head_dim, plan.n_kv * attn.head_dim
        attn.q_proj = _linear(attn.q_proj, hidden, q_width)
        attn.k_proj = _linear(attn.k_proj, hidden, kv_width)
        attn.v_proj = _linear(attn.v_proj, hidden, kv_width)
        attn.o_proj = _linear(attn.o_proj, q_width, hidden)
        mlp.gate_proj = _linear(mlp.gate_proj, hidden, plan.n_mlp)
        mlp.up_proj = _linear(mlp.up_proj, hidden, plan.n_mlp)
        mlp.down_proj = _linear(mlp.down_proj, plan.n_mlp, hidden)


def _plan(arch: str = "qwen2_5_vl", budget: float = 0.4) -> tuple[Blueprint, list[LayerShape]]:
    shapes = _tiny(arch, WIDE_GQA, meta=True).layer_shapes()
    scores = _random_scores(shapes, np.random.default_rng(1))
    return make_blueprint("tiny", arch, shapes, budget, [1.0, 2.0], scores, m=8), shapes


# -- shapes and exact accounting -------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [TINY, WIDE_GQA], ids=["heads4_kv2", "heads8_kv2"])
@pytest.mark.parametrize("arch", ARCHS)
def test_dense_count_equals_real_decoder_numel(arch, size):
    adapter = _tiny(arch, size)
    shapes = adapter.layer_shapes()
    assert count_params(shapes) == _decoder_numel(adapter)
    assert {(s.n_heads, s.n_kv_heads, s.head_dim, s.intermediate) for s in shapes} == {
        (size.heads, size.kv_heads, size.hidden // size.heads, size.intermediate)
    }
    assert all(s.qkv_bias == (arch == "qwen2_5_vl") and not s.o_bias and not s.mlp_bias for s in shapes)
    assert all(s.fixed_params == 2 * size.hidden for s in shapes)  # the two RMSNorms


@pytest.mark.parametrize("arch", ARCHS)
def test_pruned_modules_have_exactly_the_counted_params(arch):
    adapter = _tiny(arch, WIDE_GQA)
    shapes = adapter.layer_shapes()
    blueprint = make_blueprint(
        "tiny", arch, shapes, 0.45, [1.0, 3.0], _random_scores(shapes, np.random.default_rng(0)), 8
    )
    _shrink(adapter, blueprint.layers)
    assert _decoder_numel(adapter) == count_params(shapes, blueprint.layers)
    pruned = adapter.layer_shapes()  # read back from the smaller modules
    assert [(s.n_kv_heads, s.n_heads, s.intermediate) for s in pruned] == [
        (p.n_kv, p.n_q, p.n_mlp) for p in blueprint.layers
    ]


def test_flops_follow_the_stated_convention():
    shape = LayerShape(128, 32, 4, 2, 344, qkv_bias=True, o_bias=False, mlp_bias=False, fixed_params=256)
    seq = 80
    dense = 2 * seq * 128 * (128 + 2 * 64 + 128 + 3 * 344) + 4 * 128 * seq**2
    assert decoder_flops([shape], None, seq) == dense
    half = LayerPlan(kv_groups=(1,), heads=(2, 3), mlp=tuple(range(172)))  # one KV group and half the channels
    assert 2 * decoder_flops([shape], [half], seq) == dense


def test_whole_model_params_subtract_only_removed_decoder_params():
    blueprint, shapes = _plan()
    removed = count_params(shapes) - count_params(shapes, blueprint.layers)
    assert whole_model_params(shapes, blueprint.layers, 10**6) == 10**6 - removed
    assert removed / count_params(shapes) == pytest.approx(blueprint.achieved)


# -- allocation ------------------------------------------------------------------------------------------------------
def _mixed_shapes() -> list[LayerShape]:
    """Layers of different sizes, so parameter weighting differs from a plain mean."""
    return [LayerShape(64, 16, 4, 2, width, False, False, False, 128) for width in (64, 128, 256, 512, 96)]


def test_water_filling_meets_budget_clips_and_stays_proportional():
    shapes = _mixed_shapes()
    dense = np.array([s.dense_params for s in shapes], dtype=float)
    alpha = np.array([0.05, 0.1, 0.15, 0.2, 0.5])
    s = np.array(allocate(shapes, 0.5, alpha, s_max=0.8))
    assert dense @ s == pytest.approx(0.5 * dense.sum(), rel=1e-12)
    clipped = np.isclose(s, 0.8)
    assert clipped[-1] and np.all(s <= 0.8 + 1e-12)
    ratio = s[~clipped] / alpha[~clipped]
    assert np.allclose(ratio, ratio[0])


def test_water_filling_skips_zero_weight_layers_and_names_the_maximum():
    shapes = _mixed_shapes()
    dense = np.array([s.dense_params for s in shapes], dtype=float)
    assert allocate(shapes, 0.1, [0, 1, 1, 1, 0])[0] == 0.0
    assert allocate(shapes, 0.0, [1, 1, 1, 1, 1]) == [0.0] * 5
    maximum = 0.9 * dense[3] / dense.sum()
    with pytest.raises(HippError, match=f"{maximum:.4f}"):
        allocate(shapes, maximum + 0.01, [0, 0, 0, 1, 0])


def test_allocation_caps_at_one_head_per_layer():
    """TINY layers cannot lose 90%: one head and no MLP is all they can shed, and allocate knows it."""
    shapes = _tiny("llava", TINY, meta=True).layer_shapes()
    floor = shapes[0].params(1, 1, 0) / shapes[0].dense_params
    assert allocate(shapes, 0.85, [1, 1]) == pytest.approx([0.85, 0.85])
    with pytest.raises(HippError, match=f"{1 - floor:.4f}"):
        allocate(shapes, 0.89, [1, 1])


@pytest.mark.parametrize("bad", [[1.0], [1.0, -1.0], [0.0, 0.0], [1.0, math.nan]])
def test_allocation_weights_are_checked(bad):
    with pytest.raises(HippError, match="allocation"):
        allocate(_tiny("llava", TINY, meta=True).layer_shapes(), 0.3, bad)


# -- realization -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_achieved_sparsity_within_half_point_for_random_plans(arch):
    shapes = _tiny(arch, EMBEDDED_SIZES[arch], meta=True).layer_shapes()
    rng = np.random.default_rng(7)
    for _ in range(25):
        budget = rng.uniform(0.05, 0.7)
        alpha = rng.dirichlet(np.full(len(shapes), rng.uniform(0.3, 5.0)))
        scores = _random_scores(shapes, rng) if rng.random() < 0.5 else None
        blueprint = make_blueprint("embedded", arch, shapes, budget, alpha, scores, m=8)
        assert abs(blueprint.achieved - budget) <= SPARSITY_TOLERANCE, (budget, alpha)
        assert max(blueprint.sparsities) <= 0.9


def test_zero_budget_keeps_everything():
    shapes = _tiny("llava", TINY, meta=True).layer_shapes()
    blueprint = make_blueprint("tiny", "llava", shapes, 0.0, [1, 1], None, m=8)
    assert blueprint.layers == tuple(LayerPlan.dense(s) for s in shapes)
    assert blueprint.achieved == 0.0


def test_zero_weight_layer_stays_dense_and_preference_is_normalized():
    shapes = _tiny("llava", WIDE_GQA, meta=True).layer_shapes()
    blueprint = make_blueprint("tiny", "llava", shapes, 0.3, [0, 1], None, m=8, source="policy", preference=(1, 1, 2))
    assert blueprint.layers[0] == LayerPlan.dense(shapes[0]) and blueprint.sparsities[0] == 0.0
    assert blueprint.preference == (0.25, 0.25, 0.5)


def test_kept_heads_are_whole_groups_with_equal_top_heads():
    shapes = _tiny("qwen2_5_vl", WIDE_GQA, meta=True).layer_shapes()
    rng = np.random.default_rng(3)
    for budget in (0.2, 0.4, 0.6):
        scores = _random_scores(shapes, rng)
        blueprint = make_blueprint("tiny", "qwen2_5_vl", shapes, budget, [1, 1], scores, m=8)
        for shape, plan, sc in zip(shapes, blueprint.layers, scores):
            r = shape.group_size
            per_group = [[h for h in plan.heads if h // r == g] for g in plan.kv_groups]
            k = len(per_group[0])
            assert k >= 1 and all(len(heads) == k for heads in per_group)
            assert plan.n_q == k * plan.n_kv
            group_rank = np.argsort(-sc.head.reshape(-1, r).sum(axis=1), kind="stable")
            assert set(plan.kv_groups) == set(group_rank[: plan.n_kv].tolist())
            for g, heads in zip(plan.kv_groups, per_group):
                assert set(heads) == set((g * r + np.argsort(-sc.head[g * r : (g + 1) * r])[:k]).tolist())
            assert set(plan.mlp) == set(np.argsort(-sc.mlp)[: plan.n_mlp].tolist())


def test_without_scores_the_lowest_indices_are_kept():
    shapes = _tiny("llava", WIDE_GQA, meta=True).layer_shapes()
    for plan in realize(shapes, [0.5, 0.7], None, m=8, budget=0.6):
        k = plan.n_q // plan.n_kv
        assert plan.kv_groups == tuple(range(plan.n_kv))
        assert plan.heads == tuple(g * 4 + i for g in range(plan.n_kv) for i in range(k))
        assert plan.mlp == tuple(range(plan.n_mlp))


def test_realize_rejects_scores_of_another_model():
    shapes = _tiny("llava", TINY, meta=True).layer_shapes()
    wrong = [UnitScores(np.ones(8), np.ones(48))] * 2
    with pytest.raises(HippError, match="recompute them for this model"):
        realize(shapes, [0.3, 0.3], wrong, m=8, budget=0.3)


# -- JSON and identity -----------------------------------------------------------------------------------------------
def test_json_round_trip_and_stable_plan_id():
    blueprint, shapes = _plan()
    text = json.dumps(blueprint.to_json())
    again = Blueprint.from_json(json.loads(text))
    assert again == blueprint and again.plan_id == blueprint.plan_id
    assert _plan()[0].plan_id == blueprint.plan_id  # same inputs, same plan, same id
    assert replace(blueprint, source="search", preference=(0.2, 0.3, 0.5)).plan_id == blueprint.plan_id
    assert replace(blueprint, model_id="other").plan_id != blueprint.plan_id
    other = make_blueprint("tiny", "qwen2_5_vl", shapes, 0.4, [1.0, 2.0], None, m=8)
    assert [p.n_mlp for p in other.layers] == [p.n_mlp for p in blueprint.layers]  # same counts, other indices
    assert other.plan_id != blueprint.plan_id
    assert LayerShape.from_json(json.loads(json.dumps(shapes[0].to_json()))) == shapes[0]
    with pytest.raises(HippError, match="true/false"):
        LayerShape.from_json({**shapes[0].to_json(), "qkv_bias": 1})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("layers"), "missing keys"),
        (lambda d: d.update(extra=1), "unknown keys"),
        (lambda d: d.update(budget=math.nan), "finite number"),
        (lambda d: d.update(sparsities=[0.1, "x"]), "finite number"),
        (lambda d: d.update(m=8.0), "integer"),
        (lambda d: d["layers"][0].update(mlp=[0.5]), "list of integers"),
        (lambda d: d.update(layers=[1, 2]), "list of"),
        (lambda d: d.update(model_id=""), "non-empty string"),
    ],
)
def test_from_json_rejects_malformed_blueprints(edit, message):
    data = _plan()[0].to_json()
    edit(data)
    with pytest.raises(HippError, match=message):
        Blueprint.from_json(data)


# -- validation ------------------------------------------------------------------------------------------------------
def _edit_layer(bp: Blueprint, **units) -> Blueprint:
    return replace(bp, layers=(replace(bp.layers[0], **units), *bp.layers[1:]))


def _set_sparsity(bp: Blueprint, value: float) -> Blueprint:
    return replace(bp, sparsities=(value, *bp.sparsities[1:]))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda bp: replace(bp, layers=bp.layers[:1], sparsities=bp.sparsities[:1]), "2 decoder layers"),
        (lambda bp: _edit_layer(bp, kv_groups=(0, 2)), "KV group index 2 is out of range"),
        (lambda bp: _edit_layer(bp, kv_groups=()), "at least one head"),
        (lambda bp: _edit_layer(bp, heads=(*bp.layers[0].heads, 99)), "query head index 99"),
        (lambda bp: _edit_layer(bp, heads=(0, 0, 4, 5)), "without duplicates"),
        (lambda bp: _edit_layer(bp, kv_groups=(0, 1), heads=(0, 1, 4)), "same k >= 1"),
        (lambda bp: _edit_layer(bp, kv_groups=(0,), heads=(0, 4)), "of KV group 1, which it drops"),
        (lambda bp: _edit_layer(bp, mlp=tuple(range(12))), "not a multiple of m=8"),
        (lambda bp: _edit_layer(bp, mlp=(-1, *bp.layers[0].mlp[1:])), "MLP channel index -1"),
        (lambda bp: _set_sparsity(bp, 0.95), "outside \\[0, s_max=0.9\\]"),
        (lambda bp: _set_sparsity(bp, math.nan), "outside"),
        (lambda bp: _set_sparsity(bp, bp.sparsities[0] + 0.01), "kept units give"),
        (lambda bp: replace(bp, achieved=math.nan), "achieved sparsity nan"),
        (lambda bp: replace(bp, budget=1.0), "within \\[0, 1\\)"),
        (lambda bp: replace(bp, budget=-0.1), "within \\[0, 1\\)"),
        (lambda bp: replace(bp, budget=math.nan), "within \\[0, 1\\)"),
        (lambda bp: replace(bp, s_max=math.nan), "s_max nan"),
        (lambda bp: replace(bp, m=0), "positive integer"),
        (lambda bp: replace(bp, source="oracle"), "not one of"),
        (lambda bp: replace(bp, preference=(0.5, 0.5, math.nan)), "summing to 1"),
    ],
)
def test_validate_rejects_with_one_line(corrupt, message):
    blueprint, shapes = _plan()
    with pytest.raises(HippError, match=message) as info:
        validate(corrupt(blueprint), shapes)
    assert "\n" not in str(info.value)


def test_validate_rejects_another_models_plan():
    blueprint, shapes = _plan()
    validate(blueprint, shapes, model_id="tiny")
    with pytest.raises(HippError, match="not 'llava-7b'"):
        validate(blueprint, shapes, model_id="llava-7b")


# -- real 7B layouts on the meta device ------------------------------------------------------------------------------
def _llava_7b() -> nn.Module:
    vision = CLIPVisionConfig(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        image_size=336,
        patch_size=14,
    )
    text = LlamaConfig(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        intermediate_size=11008,
        vocab_size=32064,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        image_token_id=32000,
    )
    with torch.device("meta"):
        return LlavaForConditionalGeneration(config)


def _qwen25_vl_7b() -> nn.Module:
    text = {
        "hidden_size": 3584,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "intermediate_size": 18944,
        "vocab_size": 152064,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
    }
    vision = {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "window_size": 112,
    }
    with torch.device("meta"):
        return Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=text, vision_config=vision))


REAL_7B = {"llava": (_llava_7b, (32, 32, 32, 11008)), "qwen2_5_vl": (_qwen25_vl_7b, (28, 28, 4, 18944))}


@pytest.mark.parametrize("arch", ARCHS)
def test_real_7b_shapes_match_meta_modules(arch):
    build, (layers, heads, kv_heads, intermediate) = REAL_7B[arch]
    adapter = _adapter(arch, build())
    shapes = adapter.layer_shapes()
    assert len(shapes) == layers
    assert {(s.n_heads, s.n_kv_heads, s.head_dim, s.intermediate) for s in shapes} == {
        (heads, kv_heads, 128, intermediate)
    }
    assert [s.dense_params for s in shapes] == [
        sum(p.numel() for p in layer.parameters()) for layer in adapter.decoder_layers
    ]


@pytest.mark.parametrize("budget", [0.2, 0.5])
@pytest.mark.parametrize("arch", ARCHS)
def test_real_7b_blueprints_are_valid_and_exact(arch, budget):
    adapter = _adapter(arch, REAL_7B[arch][0]())
    shapes = adapter.layer_shapes()
    dense_model = sum(p.numel() for p in adapter.model.parameters())
    rng = np.random.default_rng(11)
    alpha = rng.dirichlet(np.full(len(shapes), 2.0))
    blueprint = make_blueprint(arch + "-7b", arch, shapes, budget, alpha, _random_scores(shapes, rng), m=64)
    validate(Blueprint.from_json(json.loads(json.dumps(blueprint.to_json()))), shapes, model_id=arch + "-7b")
    assert abs(blueprint.achieved - budget) <= SPARSITY_TOLERANCE
    assert all(p.n_mlp % 64 == 0 or p.n_mlp == s.intermediate for p, s in zip(blueprint.layers, shapes))
    _shrink(adapter, blueprint.layers)
    assert _decoder_numel(adapter) == count_params(shapes, blueprint.layers)
    assert sum(p.numel() for p in adapter.model.parameters()) == whole_model_params(
        shapes, blueprint.layers, dense_model
    )


# -- attention / MLP split -------------------------------------------------------------------------------------------
def test_split_allocation_meets_budget_and_equal_weights_prune_alike():
    shapes = _mixed_shapes()
    dense = np.array([s.dense_params for s in shapes], dtype=float)
    targets, keeps = allocate_split(shapes, 0.4, np.ones(5), np.ones(5))
    assert dense @ np.array(targets) == pytest.approx(0.4 * dense.sum(), rel=1e-9)
    attn_sparsity = 1 - np.array(keeps)
    assert np.allclose(attn_sparsity, attn_sparsity[0])  # one water level for every block


def test_split_allocation_spares_the_block_with_little_weight():
    shapes = _tiny("llava", EMBEDDED_SIZES["llava"], meta=True).layer_shapes()
    n = len(shapes)
    bp = make_blueprint("m", "llava", shapes, 0.3, np.ones(n), None, 8, alpha_attention=np.full(n, 1e-3))
    assert abs(bp.achieved - 0.3) <= SPARSITY_TOLERANCE
    assert all(plan.n_q == s.n_heads and plan.n_kv == s.n_kv_heads for plan, s in zip(bp.layers, shapes))
    heads_first = make_blueprint("m", "llava", shapes, 0.3, np.full(n, 1e-3), None, 8, alpha_attention=np.ones(n))
    assert sum(p.n_q for p in heads_first.layers) < sum(s.n_heads for s in shapes)
    assert sum(p.n_mlp for p in heads_first.layers) > sum(p.n_mlp for p in bp.layers)


def test_split_allocation_checks_weights_and_reach():
    shapes = _mixed_shapes()
    with pytest.raises(HippError, match="allocation must be 5"):
        allocate_split(shapes, 0.3, np.ones(4), np.ones(5))
    with pytest.raises(HippError, match="all zero"):
        allocate_split(shapes, 0.3, np.zeros(5), np.zeros(5))
    with pytest.raises(HippError, match="exceeds the largest sparsity"):
        allocate_split(shapes, 0.5, np.zeros(5), np.ones(5), s_max=0.5)


# -- equal counts (stock-engine compatible plans) --------------------------------------------------------------------
def _counts(blueprint: Blueprint) -> set[tuple[int, int, int]]:
    return {(plan.n_kv, plan.n_q, plan.n_mlp) for plan in blueprint.layers}


@pytest.mark.parametrize("arch", ARCHS)
def test_equal_counts_keep_one_layer_shape_at_the_budget(arch):
    shapes = _tiny(arch, EMBEDDED_SIZES[arch], meta=True).layer_shapes()
    rng = np.random.default_rng(5)
    for budget in (0.1, 0.25, 0.3, 0.5, 0.7):
        alpha = rng.dirichlet(np.full(len(shapes), 0.5))  # a skewed allocation: equal counts must ignore it
        split = rng.dirichlet(np.ones(len(shapes))) if budget < 0.7 else None
        scores = _random_scores(shapes, rng)
        bp = make_blueprint("m", arch, shapes, budget, alpha, scores, 8, alpha_attention=split, equal_counts=True)
        assert len(_counts(bp)) == 1, _counts(bp)
        assert abs(bp.achieved - budget) <= SPARSITY_TOLERANCE, (budget, bp.achieved)
        assert len({plan.heads for plan in bp.layers} | {plan.mlp for plan in bp.layers}) > 2  # scores still choose
        validate(bp, shapes, "m")


@pytest.mark.parametrize("arch", ARCHS)
def test_equal_counts_on_real_7b_layouts(arch):
    shapes = _adapter(arch, REAL_7B[arch][0]()).layer_shapes()
    for budget in (0.25, 0.5):
        bp = make_blueprint(arch, arch, shapes, budget, np.ones(len(shapes)), None, 64, equal_counts=True)
        assert len(_counts(bp)) == 1 and abs(bp.achieved - budget) <= SPARSITY_TOLERANCE


def test_equal_counts_keep_the_attention_split_of_the_allocation():
    shapes = _tiny("llava", EMBEDDED_SIZES["llava"], meta=True).layer_shapes()
    n = len(shapes)
    shape = shapes[0]
    kept = shape.intermediate - 112  # a budget that MLP widths alone reach exactly
    budget = (shape.mlp_params(shape.intermediate) - shape.mlp_params(kept)) / shape.dense_params
    spare_heads = make_blueprint(
        "m", "llava", shapes, budget, np.ones(n), None, 8, alpha_attention=np.full(n, 1e-3), equal_counts=True
    )
    assert _counts(spare_heads) == {(shape.n_kv_heads, shape.n_heads, kept)}
    assert abs(spare_heads.achieved - budget) <= SPARSITY_TOLERANCE


def test_equal_counts_refuse_layers_of_different_shapes():
    with pytest.raises(HippError, match="one shape") as err:
        make_blueprint("m", "llava", _mixed_shapes(), 0.3, np.ones(5), None, 8, equal_counts=True)
    assert "\n" not in str(err.value)


def test_equal_counts_with_fixed_stock_heads_keep_every_query_head():
    shapes = _tiny("qwen2_5_vl", EMBEDDED_SIZES["qwen2_5_vl"], meta=True).layer_shapes()
    block = shapes[0].mlp_params(8) / shapes[0].dense_params  # only MLP widths can move: the closest reachable
    for budget in (0.25, 0.5):
        bp = make_blueprint(
            "m", "qwen2_5_vl", shapes, budget, np.ones(8), None, 8, equal_counts=True, stock_heads=(shapes[0].n_heads,)
        )
        assert _counts(bp) == {(shapes[0].n_kv_heads, shapes[0].n_heads, bp.layers[0].n_mlp)}
        assert abs(bp.achieved - budget) <= block / 2
    shapes = _adapter("qwen2_5_vl", REAL_7B["qwen2_5_vl"][0]()).layer_shapes()
    bp = make_blueprint("q", "qwen2_5_vl", shapes, 0.5, np.ones(28), None, 64, equal_counts=True, stock_heads=(28,))
    assert _counts(bp) == {(4, 28, bp.layers[0].n_mlp)} and abs(bp.achieved - 0.5) <= SPARSITY_TOLERANCE
