"""benchmarks/tradeoff.py end to end on tiny settings: NSGA-II at a fixed budget on dev, its dev front reported on
test in the shape the Trade-off target asks for; and the pair that measures the target."""

import json

import pytest
from conftest import benchmark_module

from hipp_core.blueprint import SPARSITY_TOLERANCE


@pytest.fixture(scope="module")
def tradeoff():
    return benchmark_module("tradeoff")


def test_front_is_reported_on_test_at_the_matched_sparsity(tradeoff, shapes_world, capsys):
    argv = ["--models", "embedded", "--evals", "4", "--pop-size", "4", "--limit", "8", "--test-limit", "8"]
    tradeoff.main(argv)
    report = json.loads(capsys.readouterr().out)
    (model,) = report["models"]
    assert model["model"] == "embedded" and model["sparsity"] == 0.3 and report["seed"] == 0
    assert model["n_evals"] == 4 and 1 <= len(model["plans"]) <= model["distinct_plans_evaluated"] <= 4
    for plan in model["plans"]:
        assert plan["split"] == "test" and len(plan["plan_id"]) == 16
        scores = [plan[k] for k in ("pope_adversarial", "sqa")] + [plan["dev"][k] for k in ("pope_adversarial", "sqa")]
        assert all(0 <= s <= 1 for s in scores), plan
        assert abs(plan["achieved"] - 0.3) <= SPARSITY_TOLERANCE
        assert 0 <= plan["removed_attention_share"] <= 1
        kept = plan["kept"]  # per layer: KV groups, query heads (as many in every kept group), MLP channels
        assert len(kept) == 8 and all(1 <= kv <= 2 and q % kv == 0 and q <= 8 and 0 <= m <= 256 for kv, q, m in kept)
    assert 0 <= model["dense"]["pope_adversarial"] <= 1 and model["dense"]["split"] == "test"
    # The dev front: no reported plan is beaten on both quality objectives by another.
    dev = [(p["dev"]["utility"], p["dev"]["robustness"]) for p in model["plans"]]
    assert not any(a[0] >= b[0] and a[1] >= b[1] and a != b for a in dev for b in dev)
    # dense + search + dense and front again, on dev; a rerun reads every one back and says so.
    calls = 1 + model["n_evals"] + 1 + len(model["plans"])
    assert model["dev_evaluations"]["computed"] >= 1 and sum(model["dev_evaluations"].values()) == calls
    tradeoff.main(argv)
    assert json.loads(capsys.readouterr().out)["models"][0]["dev_evaluations"] == {"computed": 0, "from_store": calls}


def test_best_pair_is_the_largest_min_gap_over_ordered_pairs(tradeoff):
    plans = [
        {"plan_id": "a", "pope_adversarial": 0.80, "sqa": 0.50},
        {"plan_id": "b", "pope_adversarial": 0.70, "sqa": 0.55},  # a beats b by 10 on POPE, b beats a by 5 on SQA
        {"plan_id": "c", "pope_adversarial": 0.60, "sqa": 0.60},  # a-c: min(20, 10) = 10
    ]
    assert tradeoff.best_pair(plans) == {
        "min_gap": 0.1, "pope_plan": "a", "sqa_plan": "c", "target": 0.03, "met": True
    }  # fmt: skip
    close = tradeoff.best_pair(plans[:1] + [{"plan_id": "d", "pope_adversarial": 0.79, "sqa": 0.52}])
    assert close["min_gap"] == pytest.approx(0.01) and close["met"] is False
    assert tradeoff.best_pair(plans[:1])["min_gap"] is None
