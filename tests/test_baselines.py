"""Baseline allocators: valid plans at the asked sparsity, each following its own rule; plan evaluation is cached."""

import numpy as np
import pytest

from hipp_core import baselines
from hipp_core.api import calibrate_model, evaluate_model, plan_baseline
from hipp_core.blueprint import allocate
from hipp_core.data.source import DataSource
from hipp_core.errors import HippError
from hipp_core.models.loading import load_model

SHAPESWORLD = DataSource(shapesworld=True)  # the tiny random checkpoint is a local one: ShapesWorld by name


@pytest.mark.parametrize("method", ["uniform", "owl", "visual", "magnitude"])
def test_heuristics_give_valid_plans_at_the_budget(method, tiny_llava):
    bp = plan_baseline(str(tiny_llava), method, 0.3, samples=6, data=SHAPESWORLD)
    assert bp.source == "baseline" and bp.criterion == baselines.get(method).criterion
    assert abs(bp.achieved - 0.3) < 0.06  # two tiny layers: one MLP block is several points
    assert bp.model_id == load_model(str(tiny_llava)).model_id


def test_visual_allocation_spares_the_layers_that_read_the_image(tiny_llava):
    features, _ = calibrate_model(str(tiny_llava), samples=6, data=SHAPESWORLD)
    shapes = load_model(str(tiny_llava)).adapter.layer_shapes()
    s = allocate(shapes, 0.3, baselines.get("visual").allocate(features, 0.3))
    v = np.asarray(features.v_attn) + np.clip(features.v_flow, 0, None)
    assert (s[0] - s[1]) * (v[0] - v[1]) <= 0  # more visual → less pruned


def test_owl_stays_within_its_band_before_rescaling():
    from types import SimpleNamespace

    f = SimpleNamespace(outlier_ratio=[0.01, 0.02, 0.05, 0.03], n_layers=4)
    alpha = baselines.get("owl").allocate(f, 0.4)
    assert np.all(alpha <= 0.4 + baselines.OWL_LAMBDA + 1e-9) and np.all(alpha >= 0.4 - baselines.OWL_LAMBDA - 1e-9)
    assert np.argmin(alpha) == 2  # most outliers → least pruned


def test_random_best_of_n_is_seeded_and_its_evaluations_are_cached(tiny_llava):
    a = plan_baseline(str(tiny_llava), "random", 0.3, samples=6, n_random=2, limit=4, data=SHAPESWORLD)
    b = plan_baseline(str(tiny_llava), "random", 0.3, samples=6, n_random=2, limit=4, data=SHAPESWORLD)
    assert a.plan_id == b.plan_id
    again = evaluate_model(str(tiny_llava), "all", "dev", 4, image_free=False, blueprint=a)
    assert again.cached  # scored while searching, read back now
    physical = evaluate_model(str(tiny_llava), "all", "dev", 4, image_free=False, blueprint=a, mode="physical")
    assert not physical.cached
    assert physical.pope_balanced_accuracy == pytest.approx(again.pope_balanced_accuracy, abs=1e-9)


def test_bad_baseline_requests_are_refused(tiny_llava):
    with pytest.raises(HippError, match="available: magnitude, owl, uniform, visual"):
        plan_baseline(str(tiny_llava), "lottery", 0.3)
    with pytest.raises(HippError, match="between 0 and 0.9"):
        plan_baseline(str(tiny_llava), "uniform", 0.95)
