"""The Torch-Pruning peer: its choice becomes a valid Blueprint at matched sparsity, and the conversion is faithful
(our masked evaluation of the Blueprint reproduces the module Torch-Pruning actually pruned)."""

import time
from dataclasses import replace

import pytest
import torch

from hipp_core.blueprint import count_params, validate
from hipp_core.errors import HippError
from hipp_core.models.zoo import DecoderSize
from hipp_core.peers import CRITERION, peer_spec, run_torch_pruning, torch_pruning_blueprint
from hipp_core.prune import masked
from tests.conftest import tiny_adapter

pytest.importorskip("torch_pruning")

GQA = DecoderSize(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=96)
MHA = replace(GQA, kv_heads=4)
SPARSITY, M = 0.3, 8


@pytest.fixture(
    scope="module",
    params=[("llava", GQA), ("llava", MHA), ("qwen2_5_vl", MHA)],
    ids=lambda p: f"{p[0]}-{'mha' if p[1].kv_heads == p[1].heads else 'gqa'}",
)
def case(request):
    arch, size = request.param
    adapter = tiny_adapter(arch, size=size)
    return adapter, torch_pruning_blueprint(adapter, "tiny", arch, SPARSITY, M, timeout_s=60)


def _hidden(language_model, ids):
    return language_model(input_ids=ids, use_cache=False).last_hidden_state


def test_peer_returns_a_valid_blueprint_at_matched_sparsity(case):
    adapter, blueprint = case
    shapes = adapter.layer_shapes()
    validate(blueprint, shapes, "tiny")
    assert (blueprint.source, blueprint.criterion, blueprint.budget) == ("baseline", CRITERION, SPARSITY)
    # The peer moves MLP widths one m-block at a time and heads only whole, so the closest it can land on ρ is half
    # an m-block of one layer: 1536 / 2 of 61,696 (GQA) or 69,888 (MHA) decoder parameters, about 1.2 points here.
    half_block = max(s.mlp_params(M) - s.mlp_params(0) for s in shapes) / 2 / count_params(shapes)
    assert abs(blueprint.achieved - SPARSITY) <= half_block
    for plan, shape in zip(blueprint.layers, shapes):
        assert plan.n_mlp % M == 0 and plan.n_mlp < shape.intermediate
        if shape.n_kv_heads == shape.n_heads:  # MHA: floor(0.3 · 4) = 1 head goes, with its own k/v head
            assert plan.n_q == 3 and plan.kv_groups == plan.heads
        else:  # GQA: Torch-Pruning cannot build its graph with heads prunable, so attention stays dense
            assert (plan.kv_groups, plan.heads) == ((0, 1), (0, 1, 2, 3))


@torch.no_grad()
def test_blueprint_reproduces_what_torch_pruning_kept(case):
    adapter, blueprint = case
    pruned, plans = run_torch_pruning(adapter.language_model, peer_spec(adapter, SPARSITY, M))
    assert blueprint.layers == tuple(plans)  # the child process and this run agree: magnitude ranking is deterministic
    for layer, plan in zip(pruned.layers, plans):
        assert layer.mlp.gate_proj.out_features == plan.n_mlp
        assert layer.self_attn.q_proj.out_features == plan.n_q * layer.self_attn.head_dim
        assert layer.self_attn.o_proj.out_features == adapter.layer_shapes()[0].hidden  # hidden size untouched
    ids = torch.randint(0, len(adapter.tokenizer), (2, 12), generator=torch.Generator().manual_seed(0))
    dense = _hidden(adapter.language_model, ids)
    with masked(adapter, blueprint):
        ours = _hidden(adapter.language_model, ids)
    theirs = _hidden(pruned, ids)
    assert (ours - theirs).abs().max().item() <= 1e-4
    assert (dense - theirs).abs().max().item() > 1e-2  # the plan really changed the model
    # The check has power: the same counts with other channels (the first ones) give a different model.
    other = replace(blueprint, layers=tuple(replace(p, mlp=tuple(range(p.n_mlp))) for p in blueprint.layers))
    assert other.layers != blueprint.layers
    with masked(adapter, other):
        assert (_hidden(adapter.language_model, ids) - theirs).abs().max().item() > 1e-3


def test_gqa_heads_fail_fast_with_the_documented_error():
    adapter = tiny_adapter("llava", size=GQA)
    # The child imports torch, transformers and Torch-Pruning first: ~2 s alone, over 10 s beside a second test worker
    # and other load; the timeout must leave the graph phase reachable.
    timeout = 25
    start = time.monotonic()
    try:
        blueprint = torch_pruning_blueprint(adapter, "tiny", "llava", SPARSITY, M, heads=True, timeout_s=timeout)
    except HippError as exc:  # Torch-Pruning 1.6.0: get_pruning_group never finishes under GQA
        message = str(exc)
        assert "\n" not in message
        assert "could not build its dependency graph for a GQA decoder (4 query / 2 KV heads) within 25 s" in message
        assert "heads=False" in message
    else:  # a Torch-Pruning that handles GQA must still give a valid plan
        validate(blueprint, adapter.layer_shapes(), "tiny")
    assert time.monotonic() - start < timeout + 10


def test_unreachable_sparsity_is_refused_before_running_the_library():
    adapter = tiny_adapter("llava", size=GQA)  # MLP only: at most 1 − (attention + m channels) / dense is reachable
    with pytest.raises(HippError, match=r"beyond what the Torch-Pruning peer can remove here, 0\.5477"):
        peer_spec(adapter, 0.85, M)
    assert peer_spec(adapter, SPARSITY, M, heads=False).kept_heads == (4, 4)
