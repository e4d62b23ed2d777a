"""Unit importance criteria: registered classes under one base, each reading its own scores from the stored
calibration record; unknown names are refused with the available ones; every criterion makes a valid plan."""

import numpy as np
import pytest

from hipp_core import importance
from hipp_core.blueprint import make_blueprint
from hipp_core.calibrate import CalibrationFeatures
from hipp_core.errors import HippError
from tests.conftest import tiny_adapter

SOURCES = {"wanda": "wanda", "magnitude": "magnitude", "synflow": "synflow"}  # criterion → its calibration fields


def _features(n_layers: int = 3, heads: int = 8, kv: int = 2, mlp: int = 96) -> CalibrationFeatures:
    """A calibration record whose score fields are all different, so a criterion reading the wrong one shows."""
    rng = np.random.default_rng(0)

    def per_layer(width: int) -> list[list[float]]:
        return rng.random((n_layers, width)).tolist()

    return CalibrationFeatures(
        model_id="m",
        samples=4,
        v_attn=[0.1] * n_layers,
        v_flow=[0.0] * n_layers,
        act_norm=[1.0] * n_layers,
        head_wanda=per_layer(heads),
        kv_wanda=per_layer(kv),
        mlp_wanda=per_layer(mlp),
        head_magnitude=per_layer(heads),
        kv_magnitude=per_layer(kv),
        mlp_magnitude=per_layer(mlp),
        head_synflow=per_layer(heads),
        mlp_synflow=per_layer(mlp),
        outlier_ratio=[0.01] * n_layers,
    )


def test_the_three_criteria_are_registered_under_one_base():
    assert importance.names() == sorted(SOURCES)
    for name in importance.names():
        criterion = importance.get(name)
        assert isinstance(criterion, importance.Importance) and criterion.name == name and criterion.help


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_each_criterion_reads_its_own_scores_from_the_stored_record(name):
    features = CalibrationFeatures.from_json(_features().to_json())  # the stored format, as read back from disk
    scores = importance.unit_scores(features, name)
    field = SOURCES[name]
    assert len(scores) == features.n_layers
    for layer, s in enumerate(scores):
        assert np.array_equal(s.head, getattr(features, f"head_{field}")[layer])
        assert np.array_equal(s.mlp, getattr(features, f"mlp_{field}")[layer])


@pytest.mark.parametrize("bad", ["snip", "", ["wanda"]])
def test_unknown_criterion_is_refused_with_the_available_ones(bad):
    with pytest.raises(HippError, match=r"^unknown unit criterion .*; available: magnitude, synflow, wanda$"):
        importance.unit_scores(_features(), bad)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_criterion_keeps_the_units_it_scores_highest(name):
    shapes = tiny_adapter("llava").layer_shapes()
    features = _features()
    scores = importance.unit_scores(features, name)
    bp = make_blueprint("m", "llava", shapes, 0.3, np.ones(len(shapes)), scores, 8, source="baseline", criterion=name)
    for plan, s in zip(bp.layers, scores):
        kept = np.asarray(s.mlp)[list(plan.mlp)]
        dropped = np.delete(np.asarray(s.mlp), list(plan.mlp))
        assert dropped.size == 0 or kept.min() >= dropped.max()
    assert bp.criterion == name
