"""benchmarks/steering.py on tiny settings: the trade-off pair rebuilds from its recorded counts, and its reward
margins under each preference are set beside the spread of the policy's own samples."""

import pytest
from conftest import benchmark_module

from hipp_core.api import plan_baseline, planner
from hipp_core.errors import HippError


@pytest.fixture(scope="module")
def entry():
    """A trade-off entry as tradeoff.py writes it, of two plans at 0.3: uniform (called the robust one on dev)
    and the shipped policy's utility-heavy plan."""
    tradeoff = benchmark_module("tradeoff")
    plans = [plan_baseline("embedded", "uniform", 0.3), planner("embedded").blueprint((0.8, 0.1, 0.1), 0.3)]
    dev = [{"robustness": 1.0, "utility": 0.7}, {"robustness": 0.8, "utility": 0.9}]
    rows = [
        {"plan_id": bp.plan_id, "achieved": bp.achieved, "kept": tradeoff.kept_counts(bp), "dev": d}
        for bp, d in zip(plans, dev, strict=True)
    ]
    return {"model": "embedded", "sparsity": 0.3, "plans": rows}


def test_pair_rebuilds_and_is_measured_against_the_policy(shapes_world, entry, monkeypatch):
    report = benchmark_module("steering").run_model(entry, samples=3, seed=0, limit=8)
    pair = report["pair"]
    assert pair["A_robust"]["plan_id"] == entry["plans"][0]["plan_id"]
    assert pair["B_utility"]["plan_id"] == entry["plans"][1]["plan_id"]
    rho = report["samples_utility_robustness_spearman"]
    assert rho is None or -1 <= rho <= 1
    assert 0 < report["pair_distance"] <= 1 and 0 <= report["policy_mean_plans_distance"] <= 1
    utility_plan = report["policy"]["utility"]["mean_plan"]
    assert utility_plan["plan_id"] == pair["B_utility"]["plan_id"] and utility_plan["distance_to_B"] == 0
    assert utility_plan["distance_to_A"] == report["pair_distance"]
    for side in ("robust", "utility"):
        policy = report["policy"][side]
        assert 1 <= policy["samples"]["distinct"] <= 3 and policy["samples"]["reward_std"] >= 0
        low, high = policy["samples"]["robustness_range"]
        assert 0 <= low <= high
        assert 0 <= policy["samples"]["closest_to_A"] <= 1
        assert abs(policy["mean_plan"]["compression"] - 0.3) <= 0.005

    readme = benchmark_module("readme")
    monkeypatch.setattr(readme, "load", lambda name: {"models": [report]} if name == "steering" else None)
    (row,) = [line for line in readme.steering() if line.startswith("| embedded |")]
    margins = (
        f"{report['policy']['robust']['reward_margin']:+.4f} / {report['policy']['utility']['reward_margin']:+.4f}"
    )
    assert margins in row and f"{report['pair_distance']:.3f}" in row


def test_a_plan_that_does_not_rebuild_is_refused(shapes_world, entry):
    broken = {**entry, "plans": [{**row, "plan_id": "0" * 16} for row in entry["plans"]]}
    with pytest.raises(HippError, match="does not rebuild on this model"):
        benchmark_module("steering").run_model(broken, samples=1, seed=0, limit=8)
