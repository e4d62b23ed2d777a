"""LoRA recovery: adapters only on the language decoder, merged away, resumable to the same weights, shipped as an
export that hipp and plain transformers reload exactly, and a CLI that validates its numbers."""

import json
import os
import random

import numpy as np
import pytest
import torch

from hipp_core import api
from hipp_core.blueprint import UnitScores, make_blueprint
from hipp_core.config import set_threads
from hipp_core.data.instructions import load_instructions
from hipp_core.data.world import render, sample_scene
from hipp_core.errors import HippError, collecting_notices
from hipp_core.export import _check_inputs, load_pruned
from hipp_core.models.loading import load_model
from hipp_core.prune import materialize
from hipp_core.recover import (
    RecoveryConfig,
    add_lora,
    check_recovery_data,
    instruction_advice,
    instruction_batches,
    shapes_world_batches,
    train_lora,
)
from plan_store import PlanStore
from tests.conftest import assert_plain_transformers_loads, invoke, random_blueprint, tiny_adapter

FAST = RecoveryConfig(steps=4, batch_size=4, warmup=1, checkpoint_every=2, lr=5e-3)


class Killed(Exception):
    pass


@pytest.fixture(autouse=True, scope="module")
def threads():
    """Training beside other work: more torch threads than free cores runs many times slower (docs/design.md, The embedded testbed)."""
    previous = torch.get_num_threads()
    set_threads()
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module", params=["llava", "qwen2_5_vl"])
def pruned_pair(request):
    """(dense adapter, blueprint) for a random plan of a tiny random model."""
    dense = tiny_adapter(request.param)
    return dense, random_blueprint(dense, np.random.default_rng(0), 0.4)


def _params(adapter) -> int:
    return sum(p.numel() for p in adapter.model.parameters())


@torch.no_grad()
def _logits(adapter, inputs) -> torch.Tensor:
    return adapter.model(**inputs).logits


def test_lora_touches_only_language_decoder_projections(pruned_pair):
    dense, blueprint = pruned_pair
    pruned = materialize(dense, blueprint)
    peft_model = add_lora(pruned, FAST)
    wrapped = {name.rsplit(".lora_A", 1)[0] for name, _ in peft_model.named_modules() if name.endswith(".lora_A")}
    assert wrapped, "no LoRA adapters were added"
    prefix = "base_model.model.model.language_model.layers."
    assert all(name.startswith(prefix) for name in wrapped), sorted(wrapped)
    layers = len(blueprint.layers)
    projections = {f"{prefix}{i}.{p}" for i in range(layers) for p in ("self_attn.q_proj", "self_attn.k_proj")}
    assert projections <= wrapped  # every decoder layer got adapters
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and n.startswith(prefix) for n in trainable)


def test_merged_model_keeps_pruned_size_and_changes_logits(pruned_pair, tmp_path):
    dense, blueprint = pruned_pair
    pruned = materialize(dense, blueprint)
    inputs = _check_inputs(pruned)
    before, size = _logits(pruned, inputs), _params(pruned)
    train_lora(pruned, FAST, shapes_world_batches(FAST), tmp_path / "ckpt.pt")
    assert _params(pruned) == size < _params(dense)
    assert not [n for n, _ in pruned.model.named_modules() if "lora" in n]
    assert (_logits(pruned, inputs) - before).abs().max().item() > 1e-4


def test_resume_after_interrupt_equals_unbroken_run(pruned_pair, tmp_path):
    dense, blueprint = pruned_pair
    unbroken = materialize(dense, blueprint)
    train_lora(unbroken, FAST, shapes_world_batches(FAST), tmp_path / "a.pt")

    def die_at_step_3(stage, done, total, metrics=None):
        if done == 3:
            raise Killed

    broken = materialize(dense, blueprint)
    with pytest.raises(Killed):
        train_lora(broken, FAST, shapes_world_batches(FAST), tmp_path / "b.pt", die_at_step_3)
    assert torch.load(tmp_path / "b.pt", weights_only=True)["step"] == 2
    resumed = materialize(dense, blueprint)  # as in a new process: LoRA state comes from the checkpoint only
    train_lora(resumed, FAST, shapes_world_batches(FAST), tmp_path / "b.pt")
    want, got = unbroken.model.state_dict(), resumed.model.state_dict()
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-6, msg=name)


def _instruction_file(tmp_path, items):
    render(sample_scene(random.Random(0))).save(tmp_path / "scene.png")
    path = tmp_path / "instruct.json"
    path.write_text(json.dumps(items))
    return path


GOOD = {
    "id": "a1",
    "image": "scene.png",
    "conversations": [
        {"from": "human", "value": "<image>\nIs there a red circle in the image?"},
        {"from": "gpt", "value": "No"},
        {"from": "human", "value": "How many objects are there?"},
        {"from": "gpt", "value": "2"},
    ],
}


def test_instruction_file_trains(tmp_path):
    items = load_instructions(_instruction_file(tmp_path, [GOOD, {**GOOD, "id": "t", "image": None}]))
    assert len(items) == 4 and items[0].prompt == "Is there a red circle in the image?" and items[0].answer == "No"
    assert items[0].image == tmp_path / "scene.png" and items[3].image is None
    adapter = tiny_adapter("llava")
    loss, qa_loss, _ = instruction_batches(items, FAST)(adapter, 1)
    assert torch.isfinite(loss) and loss.item() == qa_loss.item() > 0


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ({"id": 1}, "must hold a non-empty JSON list"),
        ([GOOD, {"id": "b2", "image": "scene.png"}], "item 1 (id 'b2'), field 'conversations'"),
        ([GOOD, {**GOOD, "image": "missing.png"}], "item 1 (id 'a1'), field 'image'"),
        ([{**GOOD, "conversations": GOOD["conversations"][1:]}], "field 'conversations[0].from'"),
        ([{**GOOD, "conversations": [*GOOD["conversations"][:3], {"from": "gpt", "value": " "}]}], "[3].value"),
        ([{**GOOD, "conversations": GOOD["conversations"][:3]}], "a human turn has no gpt answer"),
        ([GOOD, "text"], "item 1 is a str"),
    ],
)
def test_malformed_instruction_file_is_one_line_error(tmp_path, items, expected):
    path = _instruction_file(tmp_path, items)
    with pytest.raises(HippError) as err:
        load_instructions(path)
    message = str(err.value)
    assert expected in message and str(path) in message and "\n" not in message


def _plan_for(spec: str, seed: int = 0):
    loaded = load_model(spec)
    shapes = loaded.adapter.layer_shapes()
    rng = np.random.default_rng(seed)
    scores = [UnitScores(head=rng.random(s.n_heads), mlp=rng.random(s.intermediate)) for s in shapes]
    alpha = rng.dirichlet(np.ones(len(shapes)))
    return make_blueprint(loaded.model_id, loaded.family, shapes, 0.4, alpha, scores, m=8)


@pytest.mark.parametrize("family", ["tiny_llava", "tiny_qwen"])
def test_recovered_artifact_reloads_everywhere_and_is_cached(family, request, tmp_path):
    spec = str(request.getfixturevalue(family))
    blueprint = _plan_for(spec)
    store = PlanStore()
    stages: list[str] = []
    result = api.recover(
        spec, blueprint, steps=3, rank=4, store=store, limit=4, progress=lambda s, *a, **k: stages.append(s)
    )
    assert "recover" in stages and result.steps == 3 and not result.cached
    assert [n for n in result.notices if "ShapesWorld train" in n and "hipp recover --data" in n]  # a local checkpoint
    assert set(result.before.pope) == set(result.after.pope) == {"random", "popular", "adversarial"}
    assert [(a.kind, a.path) for a in store.list_artifacts(blueprint.plan_id)] == [
        ("recovered", str(result.artifact_dir))
    ]

    loaded = load_pruned(result.artifact_dir)
    pruned = materialize(load_model(spec).adapter, blueprint)
    assert _params(loaded.adapter) == _params(pruned)
    inputs = _check_inputs(loaded.adapter)
    reference = _logits(loaded.adapter, inputs)
    assert (reference - _logits(pruned, inputs)).abs().max().item() > 1e-4  # trained, not just re-exported
    assert_plain_transformers_loads(result.artifact_dir, tmp_path, {"inputs": inputs, "logits": reference})

    stages.clear()
    again = api.recover(
        spec, blueprint, steps=3, rank=4, store=store, limit=4, progress=lambda s, *a, **k: stages.append(s)
    )
    assert again.cached and again.after.cached and "recover" not in stages
    assert again.artifact_dir == result.artifact_dir and again.after.pope == result.after.pope
    if family == "tiny_llava":  # another setting is another recovery (once: the key does not depend on the family)
        other = api.recover(spec, blueprint, steps=3, rank=4, seed=1, store=store, limit=4)
        assert not other.cached and other.artifact_dir != result.artifact_dir


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"steps": 0}, "--steps must be a whole number of at least 1"),
        ({"rank": 257}, "--rank must be a whole number between 1 and 256"),
        ({"lr": 0.0}, "--lr must be a positive finite number"),
        ({"lr": float("nan")}, "--lr must be a positive finite number"),
    ],
)
def test_recover_validates_numbers_at_the_boundary(kwargs, expected):
    with pytest.raises(HippError, match=expected):
        api.recover("embedded", None, **kwargs)


def test_recovery_data_is_required_for_own_test_data_and_noticed_otherwise(tmp_path):
    check_recovery_data("embedded:qwen2_5_vl", None, own_test_data=True)  # the embedded models train on ShapesWorld
    check_recovery_data(str(tmp_path), tmp_path / "turns.json", own_test_data=True)
    with pytest.raises(HippError, match=r"must not train on ShapesWorld: pass --recover-data FILE, a LLaVA-format"):
        check_recovery_data(str(tmp_path), None, own_test_data=True, advice=instruction_advice("--recover-data"))
    with collecting_notices() as notices:
        check_recovery_data(str(tmp_path), None, own_test_data=False)
    expected = f"{tmp_path} is recovered on ShapesWorld train, the embedded testbed's toy data; for a real model, "
    where = "hipp recover --data, hipp pipeline --recover-data, the Instruction file of Export or Pareto"
    assert notices == [expected + f"train on its own LLaVA-format instructions ({where})"]


def test_cli_recover_runs_and_rejects_bad_rank(tmp_path, tiny_llava, isolated_store):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(_plan_for(str(tiny_llava), seed=3).to_json()))
    args = ["recover", str(tiny_llava), "--plan", str(plan), "--steps", "2", "--rank", "2", "--limit", "4"]
    result = invoke(*args, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["steps"] == 2 and not report["cached"] and (isolated_store / "recovered").is_dir()
    assert os.path.isdir(report["artifact_dir"]) and report["after"]["pope"]
    bad = invoke("recover", str(tiny_llava), "--plan", str(plan), "--rank", "0")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "--rank must be a whole number between 1 and 256" in bad.stderr


def test_accumulation_trains_each_step_on_the_samples_of_one_large_batch(monkeypatch):
    """batch 2 × accumulation 2 sees, per update, exactly the samples batch 4 sees, in two micro-batches."""
    drawn: list[list[str]] = []
    monkeypatch.setattr(
        "hipp_core.recover.samples_loss", lambda adapter, samples, w: drawn.append(samples) or (0, 0, 0)
    )
    split = RecoveryConfig(steps=3, batch_size=2, grad_accum=2)
    whole = RecoveryConfig(steps=3, batch_size=4)
    for micro in (0, 1):
        shapes_world_batches(split)(None, 2, micro)
    shapes_world_batches(whole)(None, 2, 0)
    texts = [[(s.text, s.answer) for s in samples] for samples in drawn]
    assert len(texts[0]) == len(texts[1]) == 2 and texts[0] + texts[1] == texts[2]


def test_grad_checkpointing_recomputes_activations_and_trains_the_same_weights(pruned_pair, tmp_path):
    dense, blueprint = pruned_pair
    calls, merged = [], []
    for checkpointing in (False, True):
        pruned = materialize(dense, blueprint)
        attention = pruned.decoder_layers[0].self_attn  # checkpointing wraps the layer's forward, not its hooks
        count = [0]
        handle = attention.register_forward_hook(lambda *a, count=count: count.__setitem__(0, count[0] + 1))
        cfg = RecoveryConfig(**{**FAST.__dict__, "grad_checkpointing": checkpointing})
        train_lora(pruned, cfg, shapes_world_batches(cfg), tmp_path / f"ckpt-{checkpointing}.pt")
        handle.remove()
        calls.append(count[0])
        merged.append({k: v.clone() for k, v in pruned.model.state_dict().items()})
        assert not pruned.decoder_layers[0].gradient_checkpointing  # switched off again before the merge
    assert calls[1] == 2 * calls[0] == 2 * FAST.steps  # every layer ran again in each backward pass
    assert all(torch.allclose(merged[0][k], merged[1][k], atol=1e-6) for k in merged[0])


def test_recovery_key_changes_with_what_changes_the_weights_only():
    import hashlib

    from hipp_core.recover import RECIPE_VERSION, recovery_key

    cfg = RecoveryConfig()
    old = {"v": RECIPE_VERSION, "model": "m", "plan": "p", "data": "d", "steps": 300, "rank": 8, "lr": 2e-3}
    old |= {"seed": 0, "batch_size": 16, "alpha_per_rank": 2.0, "warmup": 20, "checkpoint_every": 50}
    old |= {"caption_weight": 0.5}  # the settings a recovery was keyed by before accumulation and devices
    assert recovery_key("m", "p", cfg, "d") == hashlib.sha256(json.dumps(old).encode()).hexdigest()[:16]
    same = RecoveryConfig(grad_checkpointing=True)
    assert recovery_key("m", "p", same, "d") == recovery_key("m", "p", cfg, "d")
    others = [
        recovery_key("m", "p", RecoveryConfig(batch_size=8, grad_accum=2), "d"),
        recovery_key("m", "p", RecoveryConfig(batch_size=8), "d"),
        recovery_key("m", "p", cfg, "d", ":cuda-bfloat16"),
    ]
    assert len({recovery_key("m", "p", cfg, "d"), *others}) == 4


def test_accumulated_recovery_runs_stores_and_is_found_again(tiny_llava):
    spec, store = str(tiny_llava), PlanStore()
    blueprint = _plan_for(spec, seed=5)
    settings = {"steps": 2, "rank": 2, "batch_size": 2, "grad_accum": 2, "limit": 4, "store": store}
    first = api.recover(spec, blueprint, **settings)
    assert not first.cached and first.steps == 2
    assert [a.path for a in store.list_artifacts(blueprint.plan_id)] == [str(first.artifact_dir)]
    again = api.recover(spec, blueprint, grad_checkpointing=True, **settings)  # same weights, so the stored ones
    assert again.cached and again.artifact_dir == first.artifact_dir


@pytest.mark.parametrize(
    ("option", "message"),
    [("--batch-size=0", "--batch-size must be a whole number from 1"), ("--grad-accum=0", "--grad-accum must be")],
)
def test_cli_recover_refuses_bad_batch_settings_in_one_line(option, message, tmp_path, tiny_llava):
    from typer.testing import CliRunner

    from hipp_core.cli import app

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(_plan_for(str(tiny_llava), seed=3).to_json()))
    result = CliRunner().invoke(app, ["recover", str(tiny_llava), "--plan", str(plan), option])
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0 and message in result.stderr
