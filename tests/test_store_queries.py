"""Read queries the dashboard draws from: the whole evaluated cloud, one plan's measurements, policies and
calibrations of a model. Each returns only the asked model's rows, in a stable order."""

from __future__ import annotations

from pathlib import Path

import pytest

from plan_store import DENSE_PLAN_ID, EvalKey, PlanDraft, PlanStore

MODEL, OTHER = "m-0123abcd", "m-other"


def W(utility: float, robustness: float, compression: float) -> dict[str, float]:
    """A preference as the store keeps it: weights keyed by objective name."""
    return {"utility": utility, "robustness": robustness, "compression": compression}


@pytest.fixture
def store(tmp_path: Path) -> PlanStore:
    s = PlanStore(tmp_path / "plans.duckdb")
    s.put_model(MODEL, "llava-tiny", "llava", {"hidden": 32})
    s.put_model(OTHER, "qwen-tiny", "qwen2_5_vl", {"hidden": 32})
    return s


def test_list_evaluations_returns_every_evaluated_plan_with_filters(store: PlanStore) -> None:
    plans = store.put_plans([PlanDraft(MODEL, {"i": i}, "search", i / 10, W(1.0, 1.0, i)) for i in range(3)])
    foreign = store.put_plan(PlanDraft(OTHER, {"i": 9}, "baseline", 0.3))
    for i, plan in enumerate(plans):
        store.put_evaluation(EvalKey(MODEL, plan.plan_id, "all", "dev", "masked", "logits", 10), {"a": i}, 10, 1.0)
    store.put_evaluation(EvalKey(MODEL, plans[0].plan_id, "all", "test", "physical", "logits"), {"a": 7}, 99, 1.0)
    store.put_evaluation(EvalKey(MODEL, DENSE_PLAN_ID, "all", "dev", "dense", "logits", 10), {"a": 1.0}, 10, 1.0)
    store.put_evaluation(EvalKey(OTHER, foreign.plan_id, "all", "dev", "masked", "logits", 10), {"a": 5}, 10, 1.0)

    everything = store.list_evaluations(MODEL)
    assert len(everything) == 4
    assert all(plan.plan_id == ev.key.plan_id and plan.model_id == MODEL for plan, ev in everything)
    dev = store.list_evaluations(MODEL, split="dev")
    assert sorted(ev.metrics["a"] for _, ev in dev) == [0, 1, 2]
    assert [ev.metrics["a"] for _, ev in store.list_evaluations(MODEL, mode="physical")] == [7]
    assert store.list_evaluations(MODEL, bench="pope") == []

    measured = store.plan_evaluations(plans[0].plan_id)
    assert sorted(ev.key.split for ev in measured) == ["dev", "test"]
    assert store.plan_evaluations(plans[1].plan_id)[0].metrics == {"a": 1}
    assert store.plan_evaluations("no-such-plan") == []


def test_latest_policy_and_calibrations_are_per_model(store: PlanStore, tmp_path: Path) -> None:
    assert store.latest_policy(MODEL) is None and store.list_calibrations(MODEL) == []
    store.put_policy("p-old", MODEL, {"hidden": 8}, curve=[{"iter": 0, "reward_mean": 0.1}])
    store.put_policy("p-new", MODEL, {"hidden": 8}, curve=[{"iter": 0, "reward_mean": 0.2}, {"iter": 1}])
    store.put_policy("p-foreign", OTHER, {"hidden": 8})
    assert store.latest_policy(MODEL).policy_id == "p-new"
    assert len(store.latest_policy(MODEL).curve) == 2

    store.put_calibration(MODEL, "pope-calib:n32", payload={"v": [1.0]})
    store.put_calibration(MODEL, "pope-calib:n128", payload_path=tmp_path / "features.json")
    store.put_calibration(OTHER, "pope-calib:n32", payload={"v": [2.0]})
    records = store.list_calibrations(MODEL)
    assert {r.calib_key for r in records} == {"pope-calib:n32", "pope-calib:n128"}
    assert all(r.model_id == MODEL for r in records)


def test_nearest_evaluated_ranks_by_preference_and_keeps_each_plans_largest_evaluation(store: PlanStore) -> None:
    prefs = [W(1.0, 0.0, 0.0), W(0.0, 1.0, 0.0), W(0.5, 0.5, 0.0), W(0.0, 0.0, 1.0)]
    plans = store.put_plans([PlanDraft(MODEL, {"i": i}, "policy", 0.3, w) for i, w in enumerate(prefs)])
    unevaluated = store.put_plan(PlanDraft(MODEL, {"i": 9}, "policy", 0.3, W(0.0, 0.9, 0.1)))
    for i, plan in enumerate(plans):
        store.put_evaluation(EvalKey(MODEL, plan.plan_id, "all", "dev", "masked", "logits", 10), {"a": i}, 10, 1.0)
    store.put_evaluation(EvalKey(MODEL, plans[1].plan_id, "all", "test", "masked", "logits"), {"a": 70}, 900, 1.0)
    near = store.nearest_evaluated(MODEL, W(0.1, 0.9, 0.0), k=2)
    assert [plan.plan_id for plan, _, _ in near] == [plans[1].plan_id, plans[2].plan_id]
    assert near[0][1].metrics == {"a": 70} and near[0][1].sample_count == 900  # the larger measurement wins
    assert near[0][2] == pytest.approx(((0.1**2) * 2) ** 0.5)
    assert unevaluated.plan_id not in {plan.plan_id for plan, _, _ in store.nearest_evaluated(MODEL, W(0, 1, 0), 10)}
    assert len(store.nearest_evaluated(MODEL, W(0, 1, 0), None)) == len(plans)  # k=None: every evaluated plan


def test_version_changes_on_every_write_and_not_on_reads(store: PlanStore) -> None:
    before = store.version()
    store.list_evaluations(MODEL)
    store.latest_policy(MODEL)
    assert store.version() == before
    store.put_plan(PlanDraft(MODEL, {"i": 1}, "policy", 0.3, W(1.0, 0.0, 0.0)))
    after = store.version()
    assert after != before
    store.put_policy("p", MODEL, {"hidden": 8})
    assert store.version() != after


def test_dashboard_ranks_the_cached_evaluated_plans_like_the_store(store: PlanStore) -> None:
    from hipp_core.ui_state import evaluated_preferences, nearest_plans

    prefs = [W(0.2, 0.3, 0.5), W(0.6, 0.2, 0.2), W(0.1, 0.8, 0.1), W(0.4, 0.4, 0.2), W(0.0, 0.0, 1.0)]
    plans = store.put_plans([PlanDraft(MODEL, {"i": i}, "policy", 0.1 * i, w) for i, w in enumerate(prefs)])
    for i, plan in enumerate(plans):
        metrics = {"sqa.accuracy": i / 10, "pope.random.yes_ratio": 0.5}
        store.put_evaluation(EvalKey(MODEL, plan.plan_id, "all", "dev", "masked", "logits", 10), metrics, 10, 1.0)
    table = evaluated_preferences(store, MODEL)
    assert len(table) == len(plans) and evaluated_preferences(store, OTHER).empty
    for w in [(0.3, 0.3, 0.4), (1.0, 0.0, 0.0), (2.0, 6.0, 2.0)]:  # the last one is not normalised
        near = nearest_plans(table, w, k=3)  # the dashboard's sliders give weights in objective order
        expected = store.nearest_evaluated(MODEL, W(*w), 3)
        assert list(near["plan"]) == [plan.plan_id for plan, _, _ in expected]
        assert near["distance"].to_numpy() == pytest.approx([d for _, _, d in expected])
        assert "w0" not in near.columns and near.columns[:2].tolist() == ["plan", "distance"]
    assert nearest_plans(evaluated_preferences(store, OTHER), (1, 1, 1)).empty
