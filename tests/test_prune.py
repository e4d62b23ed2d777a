"""Masked view and physical materialization agree; pruned models really shrink and still generate."""

import numpy as np
import pytest
import torch

from hipp_core.blueprint import UnitScores, count_params, make_blueprint
from hipp_core.data.world import blank_image
from hipp_core.models.adapters import adapter_class
from hipp_core.models.zoo import DecoderSize, build_model, build_processor
from hipp_core.prune import masked, materialize

SIZE = DecoderSize(hidden=64, layers=3, heads=8, kv_heads=2, intermediate=96)


@pytest.fixture(scope="module", params=["llava", "qwen2_5_vl"])
def adapter(request):
    processor = build_processor(request.param)
    model = build_model(request.param, processor, seed=1, size=SIZE).eval()
    return adapter_class(request.param)(model, processor)


def _random_blueprint(adapter, rng):
    shapes = adapter.layer_shapes()
    scores = [UnitScores(head=rng.random(s.n_heads), mlp=rng.random(s.intermediate)) for s in shapes]
    alpha = rng.dirichlet(np.ones(len(shapes)))
    return make_blueprint("m", adapter.model_type, shapes, float(rng.uniform(0.1, 0.6)), alpha, scores, m=8)


def _inputs(adapter):
    texts = ["Is there a red circle in the image?", "How many corners does a square have?"]
    return adapter.encode(texts, [blank_image(), None]).inputs


@torch.no_grad()
def test_masked_equals_physical_across_random_blueprints(adapter):
    rng = np.random.default_rng(0)
    inputs = _inputs(adapter)
    dense = adapter.model(**inputs).logits
    for _ in range(6):
        blueprint = _random_blueprint(adapter, rng)
        with masked(adapter, blueprint):
            reference = adapter.model(**inputs).logits
        pruned = materialize(adapter, blueprint)
        physical = pruned.model(**inputs).logits
        assert (reference - physical).abs().max().item() <= 1e-4
        assert not torch.allclose(reference, dense)  # the plan really changed the model
        assert sum(p.numel() for layer in pruned.decoder_layers for p in layer.parameters()) == count_params(
            adapter.layer_shapes(), blueprint.layers
        )
    assert torch.equal(adapter.model(**inputs).logits, dense)  # masks are gone, dense untouched


@torch.no_grad()
def test_physical_model_generates_with_dynamic_cache(adapter):
    blueprint = _random_blueprint(adapter, np.random.default_rng(1))
    pruned = materialize(adapter, blueprint)
    enc = pruned.encode(["Is there a red circle in the image?"], [blank_image()], padding_side="left").inputs
    out = pruned.model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert enc["input_ids"].shape[1] < out.shape[1] <= enc["input_ids"].shape[1] + 4
    shapes = pruned.layer_shapes()
    for plan, shape in zip(blueprint.layers, shapes):
        assert (shape.n_heads, shape.n_kv_heads, shape.intermediate) == (
            len(plan.heads),
            len(plan.kv_groups),
            len(plan.mlp),
        )
