"""Compiled decoding on pruned models: `load_pruned(..., compile=True)` decodes with a static cache and
torch.compile, and a static cache holds layers with different KV-head counts."""

import pytest
import torch

from hipp_core.export import export_pruned, load_pruned
from tests.conftest import tiny_adapter, uneven_blueprint

PROMPTS = ["Is there a red circle in the image?", "How many corners does a square have?"]


@pytest.fixture(scope="module")
def uneven_export(tmp_path_factory):
    adapter = tiny_adapter("llava")
    blueprint = uneven_blueprint(adapter)
    assert len({plan.n_kv for plan in blueprint.layers}) > 1
    return export_pruned(adapter, blueprint, tmp_path_factory.mktemp("export") / "uneven", spec="embedded")


def _greedy(model, inputs, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False, **kwargs)


def test_static_cache_initialised_before_the_first_step_takes_per_layer_kv_heads(uneven_export):
    """`prefill_chunk_size` makes generate initialise the static cache from the model's declared shapes before any
    key arrives; the dense config would size every layer for 2 KV heads and the 1-head layer would fail."""
    loaded = load_pruned(uneven_export)
    assert loaded.model._get_static_cache_init_shape() == ([2, 1, 2], 8)
    inputs = loaded.adapter.encode(PROMPTS, [None, None], padding_side="left").inputs
    dynamic = _greedy(loaded.model, inputs, disable_compile=True)
    chunked = _greedy(loaded.model, inputs, cache_implementation="static", prefill_chunk_size=4, disable_compile=True)
    assert torch.equal(chunked, dynamic)


def test_compiled_greedy_generation_equals_eager_on_uneven_kv_heads(uneven_export):
    """torch.compile (inductor) on CPU takes ~20 s here: the compiled decoding step must give the same tokens as the
    eager loop with a dynamic cache, on an image question and a text-only one."""
    from PIL import Image

    eager = load_pruned(uneven_export)
    compiled = load_pruned(uneven_export, compile=True)
    assert compiled.model is not eager.model and eager.model.generation_config.cache_implementation is None
    inputs = eager.adapter.encode(PROMPTS, [Image.new("RGB", (64, 64), "red"), None], padding_side="left").inputs
    expected = _greedy(eager.model, inputs)
    assert torch.equal(_greedy(compiled.model, inputs), expected)
    assert hasattr(compiled.model, "_compiled_call")  # the decoding steps ran through torch.compile
    assert not hasattr(eager.model, "_compiled_call")


def test_copies_do_not_inherit_a_compiled_forward():
    """`generate` caches the compiled forward on the model, bound to it; a pruned copy that kept it would decode
    with the dense weights (and fail on the first differently sized cache)."""
    from hipp_core.prune import materialize

    adapter = tiny_adapter("llava")
    adapter.model._compiled_call = adapter.model.__call__  # what generate leaves behind after compiled decoding
    pruned = materialize(adapter, uneven_blueprint(adapter))
    assert not hasattr(pruned.model, "_compiled_call") and not hasattr(adapter.clone().model, "_compiled_call")
    assert hasattr(adapter.model, "_compiled_call")
