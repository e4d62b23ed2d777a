"""Masked view and physical materialization agree; pruned models really shrink and still generate."""

import numpy as np
import pytest
import torch

from hipp_core.blueprint import count_params
from hipp_core.data.world import blank_image
from hipp_core.prune import masked, materialize
from tests.conftest import random_blueprint, tiny_adapter


@pytest.fixture(scope="module", params=["llava", "qwen2_5_vl"])
def adapter(request):
    return tiny_adapter(request.param)


def _inputs(adapter):
    texts = ["Is there a red circle in the image?", "How many corners does a square have?"]
    return adapter.encode(texts, [blank_image(), None]).inputs


@torch.no_grad()
def test_masked_equals_physical_across_random_blueprints(adapter):
    rng = np.random.default_rng(0)
    inputs = _inputs(adapter)
    dense = adapter.model(**inputs).logits
    for _ in range(6):
        blueprint = random_blueprint(adapter, rng)
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
    blueprint = random_blueprint(adapter, np.random.default_rng(1))
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
