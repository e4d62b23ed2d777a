"""Exports reload exactly (with hipp, and with plain transformers in a process that never imports hipp), are
published atomically, and never replace an existing directory unless asked."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import hipp_core
from hipp_core import export
from hipp_core.blueprint import Blueprint, count_params, whole_model_params
from hipp_core.errors import HippError
from hipp_core.export import export_pruned, load_pruned
from hipp_core.prune import materialize
from tests.conftest import assert_plain_transformers_loads, random_blueprint, tiny_adapter


@pytest.fixture(scope="module", params=["llava", "qwen2_5_vl"])
def adapter(request):
    return tiny_adapter(request.param)


def _blueprint(adapter, seed: int = 0, budget: float = 0.4) -> Blueprint:
    return random_blueprint(adapter, np.random.default_rng(seed), budget)


@pytest.fixture(scope="module")
def exported(adapter, tmp_path_factory):
    blueprint = _blueprint(adapter)
    out = tmp_path_factory.mktemp("export") / f"{adapter.model_type}-pruned"
    path = export_pruned(adapter, blueprint, out, spec="embedded", metrics={"pope_balanced_accuracy": 0.8125})
    return blueprint, path


@torch.no_grad()
def _reference(adapter, blueprint) -> tuple[dict, torch.Tensor, torch.nn.Module]:
    pruned = materialize(adapter, blueprint)
    inputs = export._check_inputs(pruned)
    return inputs, pruned.model(**inputs).logits, pruned.model


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@torch.no_grad()
def test_load_pruned_reproduces_materialized_model(adapter, exported):
    blueprint, path = exported
    inputs, reference, pruned_model = _reference(adapter, blueprint)
    loaded = hipp_core.load_pruned(path)
    assert loaded.family == adapter.model_type
    assert (loaded.model(**inputs).logits - reference).abs().max().item() <= 1e-5
    shapes = adapter.layer_shapes()
    decoder = sum(p.numel() for layer in loaded.adapter.decoder_layers for p in layer.parameters())
    assert decoder == count_params(shapes, blueprint.layers)
    dense_total = sum(p.numel() for p in adapter.model.parameters())
    assert sum(p.numel() for p in loaded.model.parameters()) == whole_model_params(
        shapes, blueprint.layers, dense_total
    )
    got, want = loaded.model.state_dict(), pruned_model.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert Blueprint.from_json(json.loads((path / "plan.json").read_text())) == blueprint
    assert not hasattr(adapter.model.config.text_config, "prune_plan")  # the dense model was left alone


def test_model_card_names_plan_sparsity_and_metrics(exported):
    blueprint, path = exported
    card = (path / "README.md").read_text()
    assert blueprint.plan_id in card
    assert f"{blueprint.achieved:.2%}" in card
    assert "pope_balanced_accuracy | 0.8125" in card
    assert "trust_remote_code=True" in card and "load_pruned" in card


def test_plain_transformers_loads_export_without_hipp(adapter, exported, tmp_path):
    blueprint, path = exported
    inputs, reference, pruned_model = _reference(adapter, blueprint)
    reference_data = {"inputs": inputs, "logits": reference, "lm_head": pruned_model.lm_head.weight}
    assert_plain_transformers_loads(path, tmp_path, reference_data)


@pytest.mark.parametrize("failure", ["model card", "reload check"])
def test_failure_mid_export_leaves_nothing(adapter, tmp_path, monkeypatch, failure):
    def refuse(*args, **kwargs):
        raise OSError("disk full")

    if failure == "model card":
        monkeypatch.setattr(export, "_write_model_card", refuse)
        expected = OSError
    else:
        monkeypatch.setattr(export, "LOGIT_TOLERANCE", -1.0)  # no reload can pass: the check must abort
        expected = HippError
    parent = tmp_path / "exports"
    with pytest.raises(expected):
        export_pruned(adapter, _blueprint(adapter), parent / "out", spec="embedded")
    assert list(parent.iterdir()) == []  # neither out_dir nor the temporary directory


def test_existing_directory_is_kept_unless_overwrite(adapter, exported, tmp_path):
    first, source = exported
    out = tmp_path / "out"
    shutil.copytree(source, out)
    before = _snapshot(out)
    second = _blueprint(adapter, seed=5, budget=0.3)
    assert second.plan_id != first.plan_id
    with pytest.raises(HippError, match="already exists") as err:
        export_pruned(adapter, second, out, spec="embedded")
    assert "\n" not in str(err.value)
    assert _snapshot(out) == before

    export_pruned(adapter, second, out, spec="embedded", overwrite=True)
    assert json.loads((out / "plan.json").read_text())["layers"] == [p.to_json() for p in second.layers]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary or moved-aside directory left

    other = tmp_path / "not-an-export"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(HippError, match="not a HiPP-Prune export"):
        export_pruned(adapter, second, other, spec="embedded", overwrite=True)
    assert _snapshot(other) == {"notes.txt": b"keep me"}


def test_load_pruned_refuses_incomplete_or_foreign_checkpoints(exported, tiny_llava, tmp_path):
    _, source = exported
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    weights = load_file(broken / "model.safetensors")
    lm_head = next(k for k in weights if k.endswith("lm_head.weight"))
    del weights[lm_head]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(HippError, match="missing keys"):
        load_pruned(broken)
    with pytest.raises(HippError, match="not a HiPP-Prune export") as err:
        load_pruned(tiny_llava)
    assert "\n" not in str(err.value)
