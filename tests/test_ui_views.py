"""The dashboard's view-models without Streamlit: URL state, the matched-sparsity front, plan labels, the attention /
MLP split of a plan, the table of all plans, parallel coordinates and their brushing, nearest plans by sparsity, what
a preference changes against its neighbours on the simplex."""

import numpy as np
import pandas as pd
import pytest

from hipp_core import ui_links
from hipp_core.blueprint import Blueprint, LayerPlan, LayerShape, count_params
from hipp_core.errors import HippError
from hipp_core.ui_pareto import (
    BY_COLUMN,
    DenseCounts,
    dense_job_params,
    front_mask,
    readable_label,
    unit_split,
)
from hipp_core.ui_plans import brushed_plans, filter_plans, parallel_data, plans_table
from hipp_core.ui_preference import preference_neighbours
from hipp_core.ui_state import nearest_plans

SPARSITY, POPE, SQA = BY_COLUMN["sparsity"], BY_COLUMN["pope_balanced_accuracy"], BY_COLUMN["sqa.accuracy"]


# -- URL state ----------------------------------------------------------------------------------------------------
def test_url_values_round_trip_and_malformed_ones_fall_back_to_none():
    assert ui_links.parse_preference(ui_links.format_preference((0.5, 0.3, 0.2))) == pytest.approx((0.5, 0.3, 0.2))
    assert ui_links.parse_preference("2,1,1") == pytest.approx((0.5, 0.25, 0.25))  # put back on the simplex
    for bad in (None, "", "1,2", "a,b,c", "-1,1,1", "0,0,0", "nan,1,1", "1,1,1,1"):
        assert ui_links.parse_preference(bad) is None, bad
    assert ui_links.parse_fraction("0.45") == 0.45
    assert ui_links.parse_fraction("1.5") is None and ui_links.parse_fraction("x") is None
    assert ui_links.parse_plan_ids("ABCDEF12,nothex!,abcdef12,0123456789") == ["abcdef12", "0123456789"]
    assert ui_links.parse_choice("sparsity", ["sparsity", "sqa.accuracy"]) == "sparsity"
    assert ui_links.parse_choice("drop table", ["sparsity"]) is None


# -- the front ----------------------------------------------------------------------------------------------------
def _cloud(rows: list[tuple[str, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["plan_id", "sparsity", "pope_balanced_accuracy", "sqa.accuracy"])


def test_a_plan_beaten_at_matched_sparsity_leaves_the_front_even_if_marginally_sparser():
    # The case: a baseline at 45.63% beside a policy plan at 45.56% that is 22 points better.
    cloud = _cloud([("base", 0.4563, 0.50, 0.5), ("policy", 0.4556, 0.72, 0.5), ("far", 0.70, 0.40, 0.5)])
    assert front_mask(cloud, [SPARSITY, POPE]).tolist() == [False, True, True]
    assert front_mask(cloud, [SPARSITY, POPE], tolerance=0.0).tolist() == [True, True, True]  # the old rule


def test_without_a_sparsity_axis_plans_only_compete_within_the_tolerance():
    cloud = _cloud([("a", 0.30, 0.70, 0.70), ("b", 0.305, 0.60, 0.60), ("c", 0.60, 0.50, 0.50)])
    # c is worse on both accuracies but prunes twice as much: nothing at its budget beats it.
    assert front_mask(cloud, [POPE, SQA]).tolist() == [True, False, True]


def test_rows_lacking_a_value_are_never_on_the_front():
    cloud = _cloud([("a", 0.3, 0.7, np.nan), ("b", 0.3, 0.6, 0.6)])
    assert front_mask(cloud, [POPE, SQA]).tolist() == [False, True]


# -- labels, split, dense reference -------------------------------------------------------------------------------
def test_plan_labels_say_source_preference_and_sparsity():
    assert (
        readable_label("policy", (0.5, 0.3, 0.2), 0.4556, "a1b2c3d4e5") == "policy · w 0.50/0.30/0.20 · 45.6% · a1b2c3"
    )
    assert readable_label("uniform", None, 0.3, "ffeedd0011") == "uniform · 30.0% · ffeedd"


def test_unit_split_separates_attention_from_mlp():
    blueprint = {
        "layers": [
            {"kv_groups": [0, 1], "heads": [0, 1, 2, 3], "mlp": list(range(48))},
            {"kv_groups": [1], "heads": [2], "mlp": list(range(12))},
        ]
    }
    split = unit_split(blueprint, DenseCounts(heads=4, kv_heads=2, intermediate=48))
    assert split["attention"].tolist() == pytest.approx([0.0, 1 - 2 / 6])
    assert split["mlp"].tolist() == pytest.approx([0.0, 0.75])


def test_dense_reference_job_only_for_measurements_a_job_can_repeat():
    row = {"scoring": "logits", "bench": "all:shapesworld-v3:no-image-free", "split": "dev", "limit": 100.0}
    assert dense_job_params("embedded:llava", row) == {
        "spec": "embedded:llava",
        "plan_id": None,
        "split": "dev",
        "limit": 100,
    }
    assert dense_job_params("x", row | {"limit": np.nan})["limit"] is None
    assert dense_job_params("x", row | {"scoring": "generate"}) is None
    assert dense_job_params("x", row | {"bench": "all:shapesworld-v3:with-image-free"}) is None


# -- table and parallel coordinates -------------------------------------------------------------------------------
def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "plan_id": ["aaaaaa01", "bbbbbb02", "cccccc03"],
            "label": [
                "policy · w 0.80/0.10/0.10 · 30.0% · aaaaaa",
                "uniform · 30.0% · bbbbbb",
                "policy · 60.0% · cccccc",
            ],
            "source": ["policy", "uniform", "policy"],
            "mode": ["masked"] * 3,
            "w:utility": [0.8, np.nan, 0.2],
            "w:robustness": [0.1, np.nan, 0.2],
            "w:compression": [0.1, np.nan, 0.6],
            "sparsity": [0.3, 0.3, 0.6],
            "pope.random.balanced_accuracy": [0.9, 0.7, 0.6],
            "sqa.accuracy": [0.8, 0.5, 0.4],
            "yes_ratio": [0.5, 0.6, 0.7],
            "measurement": ["dev"] * 3,
        }
    )


def test_plans_table_keeps_numbers_and_filters_by_source_sparsity_and_text():
    table = plans_table(_frame())
    assert list(table.columns[:4]) == ["plan", "source", "mode", "w utility"]
    assert table["ScienceQA"].dtype == float  # sorted numerically, written exactly to CSV
    assert filter_plans(table, ["uniform"])["id"].tolist() == ["bbbbbb02"]
    assert filter_plans(table, sparsity=(0.5, 1.0))["id"].tolist() == ["cccccc03"]
    assert filter_plans(table, text="W 0.80")["id"].tolist() == ["aaaaaa01"]
    csv = filter_plans(table, text="aaaaaa").to_csv(index=False).splitlines()
    assert csv[0].startswith("plan,source,mode,w utility") and len(csv) == 2 and ",0.8," in csv[1]


def test_parallel_lines_skip_missing_weights_and_brushing_intersects_axes():
    data = parallel_data(_frame())
    assert data.axes == [
        "w utility",
        "w robustness",
        "w compression",
        "sparsity",
        "POPE random",
        "ScienceQA",
        "yes-ratio",
    ]
    baseline = [x for x, p in zip(data.point_x, data.point_plan) if p == "bbbbbb02"]
    assert baseline == [3, 4, 5, 6], "a plan without a preference starts at the sparsity axis"
    assert data.line_x.count(None) >= 3  # one break per plan at least
    # A box over the POPE axis around 0.6–0.7 selects b and c; a second box over sparsity ≥ 0.5 narrows to c.
    assert brushed_plans([(4, "bbbbbb02"), (4, "cccccc03")]) == ["bbbbbb02", "cccccc03"]
    assert brushed_plans([(4, "bbbbbb02"), (4, "cccccc03"), (3, "cccccc03")]) == ["cccccc03"]
    assert brushed_plans([]) == []


def test_nearest_plans_match_on_sparsity_too():
    evaluated = pd.DataFrame(
        {
            "plan": ["p-low", "p-high"],
            "w:utility": [0.5, 0.5],
            "w:robustness": [0.3, 0.3],
            "w:compression": [0.2, 0.25],
            "sparsity": [0.10, 0.50],
        }
    )
    assert nearest_plans(evaluated, (0.5, 0.3, 0.2))["plan"].tolist()[0] == "p-low"
    assert nearest_plans(evaluated, (0.5, 0.3, 0.2), sparsity=0.5)["plan"].tolist()[0] == "p-high"


# -- what a preference changes ------------------------------------------------------------------------------------
SHAPE = LayerShape(64, 16, 4, 2, 128, False, False, False, 128)  # attention 12,288 params, MLP 128 channels


class FakePlanner:
    """Plans with a known difference: a robustness weight above 0.48 keeps one KV group (2 of 4 query heads) in layer
    1 and 64 instead of 96 MLP channels in layer 3; every other preference gives the base plan. Records its calls."""

    def __init__(self, steered: bool = True) -> None:
        self.shapes = [SHAPE] * 4
        self.steered = steered
        self.calls: list[tuple] = []

    def blueprint(self, preference, sparsity=None, equal_counts=False) -> Blueprint:
        self.calls.append((tuple(preference), sparsity, equal_counts))
        robust = self.steered and preference[1] > 0.48
        full = LayerPlan((0, 1), (0, 1, 2, 3), tuple(range(96)))
        layers = [full, LayerPlan((0,), (0, 1), tuple(range(96))) if robust else full, full]
        layers.append(LayerPlan((0, 1), (0, 1, 2, 3), tuple(range(64 if robust else 96))))
        kept = count_params(self.shapes, layers)
        achieved = 1 - kept / count_params(self.shapes)
        return Blueprint("fake", "llava", 0.2, (0.0,) * 4, tuple(layers), achieved, "policy", "wanda", 8, 0.9)


def test_neighbours_show_which_layers_and_unit_kinds_a_preference_changes():
    planner = FakePlanner()
    found = preference_neighbours(planner, (0.3, 0.4, 0.3), sparsity=0.25, equal_counts=True)
    assert [c.label for c in found.changes] == [
        f"{name} {sign}0.1" for name in ("utility", "robustness", "compression") for sign in ("+", "−")
    ]
    assert {call[1:] for call in planner.calls} == {(0.25, True)}, "every neighbour at the same lock and counts"
    (robust,) = found.changed
    assert robust.label == "robustness +0.1" and robust.preference == pytest.approx((0.5 * 3 / 6, 0.5, 0.5 * 3 / 6))
    assert robust.heads == (0, 2, 0, 0) and robust.kv_groups == (0, 1, 0, 0) and robust.mlp == (0, 0, 0, 32)
    assert robust.attention_fraction == pytest.approx((0, 0.5, 0, 0))  # half the heads with their KV group
    assert robust.mlp_fraction == pytest.approx((0, 0, 0, 0.25))  # 32 of 128 channels
    attention, channel = 6144, 3 * 64  # half of layer 1's attention; gate, up and down weights of one channel
    assert robust.achieved == pytest.approx((attention + 32 * channel) / count_params(planner.shapes))
    # The base plan removes 32 MLP channels per layer and no attention; the neighbour 32 more and half a layer's.
    assert robust.attention_share == pytest.approx(attention / (attention + 5 * 32 * channel))
    assert robust.describe().startswith(
        "robustness +0.1: 2 more query heads removed in layer 1; 1 more KV group removed in layer 1; "
        "32 more MLP channels removed in layer 3; sparsity +"
    )
    assert found.summary() == "1 of 6 neighbouring preferences (each weight ±0.1) change the plan at sparsity 25%."
    frame = found.frame()
    assert frame.shape == (12, 4) and frame.loc["robustness +0.1 · attention", 1] == pytest.approx(0.5)
    assert np.count_nonzero(frame.to_numpy()) == 2
    assert (
        found.hover_text()[5][3]
        == "robustness +0.1 · MLP, layer 3: +25.0% of its parameters removed (+32 MLP channels)"
    )


def test_neighbours_that_all_give_the_same_plan_say_no_change():
    found = preference_neighbours(FakePlanner(steered=False), (0.3, 0.4, 0.3))
    assert len(found.changes) == 6 and not found.changed and found.lines() == []
    assert found.summary().startswith("No change: this policy gives the same plan for every neighbouring preference")
    assert not found.frame().to_numpy().any()


def test_neighbours_off_the_simplex_are_skipped():
    planner = FakePlanner()
    shown = planner.blueprint((1.0, 0.0, 0.0))
    found = preference_neighbours(planner, (1.0, 0.0, 0.0), shown=shown)
    assert found.skipped == ["utility +0.1", "robustness −0.1", "compression −0.1"]
    assert [c.label for c in found.changes] == ["utility −0.1", "robustness +0.1", "compression +0.1"]
    assert len(planner.calls) == 1 + 3, "the plan on show is not planned again; skipped neighbours are not planned"
    assert all(min(c.preference) >= 0 and sum(c.preference) == pytest.approx(1) for c in found.changes)
    with pytest.raises(HippError, match="step"):
        preference_neighbours(planner, (0.3, 0.4, 0.3), step=0.0)
