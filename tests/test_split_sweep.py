"""benchmarks/split_sweep.py on tiny settings: plans at one budget that move removals between attention and MLPs,
scored on dev, with the probe's trade read off them; a rerun reads every evaluation back from the store."""

import pytest
from conftest import benchmark_module

from hipp_core.blueprint import SPARSITY_TOLERANCE


@pytest.fixture(scope="module")
def split_sweep():
    return benchmark_module("split_sweep")


def test_shares_move_removals_from_mlp_to_attention_and_reruns_read_back(split_sweep, shapes_world):
    report = split_sweep.sweep("embedded", 0.3, [0.0, 0.6], limit=4, layers=True)
    first, last = report["plans"]
    assert report["split"] == "dev" and [p["attention_share"] for p in report["plans"]] == [0.0, 0.6]
    assert all(abs(p["achieved"] - 0.3) <= SPARSITY_TOLERANCE for p in report["plans"])
    assert first["heads_kept"] == 1.0 > last["heads_kept"] and first["mlp_kept"] < last["mlp_kept"]
    assert all(0 <= p[k] <= 1 for p in report["plans"] for k in ("pope_adversarial", "sqa", "sqa_image", "sqa_text"))
    assert len(report["per_layer"]) == 2 * 8  # attention, then MLP, of each of the 8 layers
    assert {r["kind"] for r in report["per_layer"]} == {"attention", "mlp"}
    # dense + 2 shares + 16 single-layer cuts, every one computed once and read back on the rerun
    assert report["evaluations"] == {"computed": 19, "from_store": 0}
    again = split_sweep.sweep("embedded", 0.3, [0.0, 0.6], limit=4, layers=True)
    assert again["evaluations"] == {"computed": 0, "from_store": 19} and again["plans"] == report["plans"]
