"""Calibration features: ranges, determinism, unit scores that see exactly the weights a unit owns."""

import pytest
import torch

from hipp_core.api import load_benchmark
from hipp_core.calibrate import CalibrationFeatures, calibrate
from tests.conftest import tiny_adapter


def _adapter(arch: str, attn: str = "eager"):
    adapter = tiny_adapter(arch, seed=2)
    adapter.model.set_attn_implementation(attn)
    return adapter


@pytest.fixture(scope="module")
def items():
    return load_benchmark("pope", "calib", 12)["pope"]["adversarial"]


@pytest.mark.parametrize("arch", ["llava", "qwen2_5_vl"])
def test_features_are_deterministic_and_in_range(arch, items):
    adapter = _adapter(arch)
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    a = calibrate(adapter, "m", items, batch_size=5)
    b = calibrate(adapter, "m", items, batch_size=5)
    assert a == b
    assert all(torch.equal(before[k], v) for k, v in adapter.model.state_dict().items())  # SynFlow restored weights
    assert a.n_layers == 3 and all(0.0 <= v <= 1.0 for v in a.v_attn)
    assert 0.0 < sum(a.v_flow) <= 1.0  # image share of the last position after the last layer
    assert [len(h) for h in a.head_wanda] == [8] * 3 and [len(k) for k in a.kv_wanda] == [2] * 3
    assert [len(m) for m in a.mlp_synflow] == [96] * 3
    assert sum(a.synflow_share()) == pytest.approx(1.0)
    assert CalibrationFeatures.from_json(a.to_json()) == a


def test_unit_scores_see_only_their_own_weights(items):
    adapter = _adapter("llava")
    parts = adapter.layer_parts(1)
    hd = adapter.layer_shapes()[1].head_dim
    with torch.no_grad():
        parts.q.weight[3 * hd : 4 * hd] = 0
        parts.o.weight[:, 3 * hd : 4 * hd] = 0
        parts.gate.weight[5] = 0
        parts.up.weight[5] = 0
        parts.down.weight[:, 5] = 0
    f = calibrate(adapter, "m", items[:4], batch_size=4)
    for scores in (f.head_wanda, f.head_magnitude, f.head_synflow):
        assert scores[1][3] == 0.0 and min(scores[1][:3] + scores[1][4:]) > 0
    for scores in (f.mlp_wanda, f.mlp_magnitude, f.mlp_synflow):
        assert scores[1][5] == 0.0 and scores[1][4] > 0


def test_sdpa_model_is_calibrated_in_eager_and_switched_back(items):
    """One model copy: calibration switches an sdpa model to eager attention in place, gets exactly what a model
    loaded in eager gets, and leaves every part of it (vision tower included) on sdpa again."""
    sdpa, eager = _adapter("llava", "sdpa"), _adapter("llava", "eager")
    assert calibrate(sdpa, "m", items[:4], batch_size=2) == calibrate(eager, "m", items[:4], batch_size=2)
    configs = (sdpa.model.config, sdpa.model.config.text_config, sdpa.model.config.vision_config)
    assert [c._attn_implementation for c in configs] == ["sdpa"] * 3


def test_calibration_leaves_the_shared_model_without_new_hooks(items):
    """transformers hooks a model the first time attention maps are asked of it; calibration removes them again, so
    the model every other command shares is as loaded (and still pickles, as the Torch-Pruning peer needs)."""
    import pickle

    adapter = _adapter("qwen2_5_vl", "sdpa")
    hooks = lambda: sorted((name, len(m._forward_hooks)) for name, m in adapter.model.named_modules())
    before = hooks()
    calibrate(adapter, "m", items[:2], batch_size=2)
    assert hooks() == before
    pickle.dumps(adapter.language_model)
