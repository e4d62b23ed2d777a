"""PlanStore in one process: records round-trip, results are written once, Pareto fronts are exact, jobs follow their
lifecycle, exports re-import idempotently, and files that are not ours are refused without being touched."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plan_store import (
    DENSE_PLAN_ID,
    LOG_TAIL_LINES,
    EvalKey,
    EvaluationDraft,
    PlanDraft,
    PlanStore,
    non_dominated,
    schema,
)
from plan_store.errors import StoreError

MODEL = "m-0123abcd"


def W(utility: float, robustness: float, compression: float) -> dict[str, float]:
    """A preference as the store keeps it: weights keyed by objective name."""
    return {"utility": utility, "robustness": robustness, "compression": compression}


@pytest.fixture
def store(tmp_path: Path) -> PlanStore:
    s = PlanStore(tmp_path / "plans.duckdb")
    s.put_model(MODEL, "llava-tiny", "llava", {"hidden": 32})
    return s


def key(plan_id: str, bench: str = "pope", mode: str = "masked", limit: int | None = 64) -> EvalKey:
    return EvalKey(MODEL, plan_id, bench, "val", mode, "logits", limit)


def brute_force_front(points: list[list[float]], maximize: list[bool]) -> list[bool]:
    def dominates(a: list[float], b: list[float]) -> bool:
        no_worse = all((x >= y) if up else (x <= y) for x, y, up in zip(a, b, maximize))
        better = any((x > y) if up else (x < y) for x, y, up in zip(a, b, maximize))
        return no_worse and better

    return [not any(dominates(q, p) for q in points) for p in points]


def directory_snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


# models, plans, calibrations, policies, artifacts


def test_model_and_calibration_round_trip(store: PlanStore) -> None:
    model = store.get_model(MODEL)
    assert (model.spec, model.family, model.config) == ("llava-tiny", "llava", {"hidden": 32})
    assert model.created_at.tzinfo is not None
    assert store.get_model("nope") is None

    assert store.put_calibration(MODEL, "c4-128", payload={"scale": [1.0, 2.0]}).payload == {"scale": [1.0, 2.0]}
    again = store.put_calibration(MODEL, "c4-128", payload_path="/elsewhere.pt")
    assert (again.payload, again.payload_path) == ({"scale": [1.0, 2.0]}, None)
    assert store.get_calibration(MODEL, "c4-128") == again
    assert store.get_calibration(MODEL, "other") is None
    with pytest.raises(ValueError):
        store.put_calibration(MODEL, "x")
    with pytest.raises(StoreError, match="put_model"):
        store.put_calibration("unknown-model", "x", payload={})


def test_plans_are_content_addressed(store: PlanStore) -> None:
    first = store.put_plan(PlanDraft(MODEL, {"heads": [3, 1], "mlp": 0.5}, "policy", 0.4, W(2.0, 1.0, 1.0)))
    same = store.put_plan(PlanDraft(MODEL, {"mlp": 0.5, "heads": [3, 1]}, "search", 0.4))
    assert same == first
    assert first.preference == W(0.5, 0.25, 0.25)
    assert store.get_plan(first.plan_id) == first
    assert store.get_plan("missing") is None
    other = store.put_plans([PlanDraft(MODEL, {"heads": [1]}, "baseline", 0.1)])[0]
    assert [p.plan_id for p in store.list_plans(MODEL)] == [first.plan_id, other.plan_id]
    assert store.list_plans("other-model") == []
    with pytest.raises(StoreError, match="put_model"):
        store.put_plan(PlanDraft("unknown-model", {}, "manual", 0.0))


@pytest.mark.parametrize(
    "draft",
    [
        lambda: PlanDraft(MODEL, {}, "guess", 0.1),
        lambda: PlanDraft(MODEL, {}, "manual", 1.5),
        lambda: PlanDraft(MODEL, {}, "manual", 0.1, W(-1.0, 1.0, 1.0)),
        lambda: PlanDraft(MODEL, {"x": float("nan")}, "manual", 0.1),
    ],
)
def test_bad_plan_drafts_are_user_errors(draft) -> None:
    with pytest.raises(StoreError):
        draft()


def test_plans_near_preference(store: PlanStore) -> None:
    prefs = {"a": W(1.0, 0.0, 0.0), "b": W(0.0, 1.0, 0.0), "c": W(0.6, 0.4, 0.0), "d": W(0.0, 0.0, 1.0)}
    plans = {name: store.put_plan(PlanDraft(MODEL, {"n": name}, "policy", 0.3, w)) for name, w in prefs.items()}
    store.put_plan(PlanDraft(MODEL, {"n": "baseline"}, "baseline", 0.3))
    near = store.plans_near_preference(MODEL, W(9.0, 1.0, 0.0), k=2)
    assert [p.plan_id for p, _ in near] == [plans["a"].plan_id, plans["c"].plan_id]
    assert near[0][1] == pytest.approx(np.hypot(0.1, 0.1))
    assert len(store.plans_near_preference(MODEL, W(1.0, 1.0, 1.0), k=10)) == 4
    with pytest.raises(StoreError):
        store.plans_near_preference(MODEL, W(0.0, 0.0, 0.0), k=1)


def test_policies_are_replaced_artifacts_are_not(store: PlanStore) -> None:
    store.put_policy("pol-1", MODEL, {"lr": 0.1}, "/ckpt/1.pt", [{"step": 1.0, "reward": 0.2}])
    updated = store.put_policy("pol-1", MODEL, {"lr": 0.1}, "/ckpt/2.pt", [{"step": 1.0}, {"step": 2.0}])
    assert store.get_policy("pol-1") == updated
    assert (updated.checkpoint_path, len(updated.curve)) == ("/ckpt/2.pt", 2)
    assert store.get_policy("pol-2") is None

    plan = store.put_plan(PlanDraft(MODEL, {"heads": [1]}, "manual", 0.2))
    a = store.put_artifact(plan.plan_id, "materialized", "/out/a")
    assert store.put_artifact(plan.plan_id, "materialized", "/out/a") == a
    b = store.put_artifact(plan.plan_id, "exported", "/out/b.safetensors")
    assert store.list_artifacts(plan.plan_id) == [a, b]
    with pytest.raises(StoreError):
        store.put_artifact(plan.plan_id, "thrown-away", "/x")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="put_plan"):
        store.put_artifact("missing", "exported", "/x")


# evaluations


def test_evaluation_is_written_once(store: PlanStore) -> None:
    plan = store.put_plan(PlanDraft(MODEL, {"heads": [2]}, "manual", 0.3))
    k = key(plan.plan_id)
    assert store.get_evaluation(k) is None
    first = store.put_evaluation(k, {"acc": 0.8}, 64, 2.5)
    assert store.put_evaluation(k, {"acc": 0.1}, 64, 9.0) == first
    assert store.get_evaluation(k) == first
    assert store.get_evaluation(key(plan.plan_id, limit=None)) is None
    assert first.key == k and first.metrics == {"acc": 0.8}


def test_get_or_compute_runs_compute_once(store: PlanStore) -> None:
    plan = store.put_plan(PlanDraft(MODEL, {"heads": [2]}, "manual", 0.3))
    calls = []

    def compute() -> tuple[dict[str, float], int]:
        calls.append(1)
        # A connection held during compute would make this second store operation time out.
        PlanStore(store.path, timeout=0.5).list_jobs()
        time.sleep(0.05)  # long enough to measure: the record keeps how long the computation took
        return {"acc": 0.75, "nan_metric": float("nan")}, 50

    started = time.perf_counter()
    record, cached = store.get_or_compute_evaluation(key(plan.plan_id), compute)
    elapsed = time.perf_counter() - started
    assert (cached, record.sample_count, record.metrics["acc"]) == (False, 50, 0.75)
    assert np.isnan(record.metrics["nan_metric"]) and 0.05 <= record.seconds <= elapsed
    again, cached = store.get_or_compute_evaluation(key(plan.plan_id), compute)
    assert (cached, again, len(calls)) == (True, record, 1)


def test_first_committed_result_wins_a_compute_race(store: PlanStore) -> None:
    plan = store.put_plan(PlanDraft(MODEL, {"heads": [2]}, "manual", 0.3))
    rival = PlanStore(store.path)

    def compute() -> tuple[dict[str, float], int]:
        rival.put_evaluation(key(plan.plan_id), {"acc": 0.6}, 64, 1.0)  # another worker finishes first
        return {"acc": 0.61}, 64

    record, cached = store.get_or_compute_evaluation(key(plan.plan_id), compute)
    assert (cached, record.metrics) == (False, {"acc": 0.6})


def test_failed_compute_stores_nothing(store: PlanStore) -> None:
    plan = store.put_plan(PlanDraft(MODEL, {"heads": [2]}, "manual", 0.3))

    def boom() -> tuple[dict[str, float], int]:
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError):
        store.get_or_compute_evaluation(key(plan.plan_id), boom)
    assert store.get_evaluation(key(plan.plan_id)) is None


def test_dense_and_invalid_keys(store: PlanStore) -> None:
    dense = EvalKey(MODEL, DENSE_PLAN_ID, "pope", "val", "dense", "generate")
    assert store.put_evaluation(dense, {"acc": 0.9}, 100, 1.0).key == dense
    with pytest.raises(StoreError):
        EvalKey(MODEL, DENSE_PLAN_ID, "pope", "val", "masked", "logits")
    with pytest.raises(StoreError):
        EvalKey(MODEL, "p1", "pope", "val", "dense", "logits")
    with pytest.raises(StoreError):
        EvalKey(MODEL, "p1", "pope", "val", "masked", "beam")  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        EvalKey(MODEL, "p1", "pope", "val", "masked", "logits", 0)
    with pytest.raises(StoreError, match="put_plan"):
        store.put_evaluation(key("missing"), {"acc": 0.5}, 1, 1.0)


# Pareto fronts


def test_pareto_front_keeps_ties_and_respects_filters(store: PlanStore) -> None:
    # (accuracy up, latency down, sparsity)
    points = {"a": (0.9, 10.0, 0.2), "b": (0.8, 5.0, 0.5), "tie": (0.8, 5.0, 0.6), "dominated": (0.7, 6.0, 0.4)}
    ids = {}
    for name, (acc, lat, sparsity) in points.items():
        plan = store.put_plan(PlanDraft(MODEL, {"n": name}, "search", sparsity))
        ids[plan.plan_id] = name
        store.put_evaluation(key(plan.plan_id), {"acc": acc, "latency": lat}, 64, 1.0)
        store.put_evaluation(key(plan.plan_id, bench="gqa"), {"acc": 1.0 - acc, "latency": lat}, 64, 1.0)
    unscored = store.put_plan(PlanDraft(MODEL, {"n": "no-latency"}, "search", 0.9))
    ids[unscored.plan_id] = "no-latency"
    store.put_evaluation(key(unscored.plan_id), {"acc": 0.5}, 64, 1.0)
    store.put_evaluation(EvalKey(MODEL, DENSE_PLAN_ID, "pope", "val", "dense", "logits", 64), {"acc": 2.0}, 64, 1.0)

    def names(front) -> list[str]:  # ties on every objective come in plan_id order, so compare sorted
        return sorted(ids[p.plan.plan_id] for p in front)

    objectives = [("acc", True), ("latency", False)]
    front = store.pareto_front(MODEL, objectives, bench="pope")
    assert names(front) == ["a", "b", "tie"]
    assert front[0].values == (0.9, 10.0) and front[0].evaluation.key.bench == "pope"
    assert names(store.pareto_front(MODEL, objectives, (0.3, 0.55), bench="pope")) == ["b"]
    assert names(store.pareto_front(MODEL, [("acc", True), ("sparsity", True)], bench="pope")) == [
        "a",
        "no-latency",
        "tie",
    ]
    assert names(store.pareto_front(MODEL, objectives, bench="gqa")) == ["b", "dominated", "tie"]
    assert store.pareto_front(MODEL, objectives, mode="physical") == []
    with pytest.raises(StoreError):
        store.pareto_front(MODEL, [])
    with pytest.raises(StoreError):
        store.pareto_front(MODEL, objectives, (0.6, 0.2))


objective_value = st.one_of(st.integers(-2, 2).map(float), st.floats(-10, 10, allow_nan=False, allow_infinity=False))
point_sets = st.integers(1, 3).flatmap(
    lambda k: st.tuples(
        st.lists(st.booleans(), min_size=k, max_size=k),
        st.lists(st.lists(objective_value, min_size=k, max_size=k), max_size=12),
    )
)


@settings(max_examples=100, deadline=None, database=None)
@given(point_sets)
def test_non_dominated_matches_brute_force(case: tuple[list[bool], list[list[float]]]) -> None:
    maximize, points = case
    mask = non_dominated(np.array(points, dtype=float).reshape(len(points), len(maximize)), maximize)
    assert mask.tolist() == brute_force_front(points, maximize)


def test_non_dominated_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        non_dominated(np.zeros((3, 2)), [True])
    with pytest.raises(ValueError):
        non_dominated(np.array([[np.nan]]), [True])


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> PlanStore:
    s = PlanStore(tmp_path_factory.mktemp("pareto") / "plans.duckdb")
    s.put_model(MODEL, "llava-tiny", "llava", {})
    return s


@settings(max_examples=20, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(point_sets)
def test_pareto_front_via_store_matches_brute_force(
    shared_store: PlanStore, case: tuple[list[bool], list[list[float]]]
) -> None:
    maximize, points = case
    bench = uuid.uuid4().hex  # isolates this example's evaluations inside the shared store
    drafts = [PlanDraft(MODEL, {"bench": bench, "i": i}, "search", 0.5) for i in range(len(points))]
    plans = shared_store.put_plans(drafts)
    shared_store.put_evaluations(
        [
            EvaluationDraft(key(plan.plan_id, bench=bench), {f"m{j}": v for j, v in enumerate(p)}, 64, 1.0)
            for plan, p in zip(plans, points)
        ]
    )
    objectives = [(f"m{j}", up) for j, up in enumerate(maximize)]
    front = shared_store.pareto_front(MODEL, objectives, bench=bench)
    expected = {plan.plan_id for plan, keep in zip(plans, brute_force_front(points, maximize)) if keep}
    assert {p.plan.plan_id for p in front} == expected
    assert len(front) == len(expected)


# jobs


def test_job_lifecycle(store: PlanStore) -> None:
    job_id = store.create_job("train", {"epochs": 3})
    job = store.get_job(job_id)
    assert (job.status, job.progress, job.params, job.pid) == ("queued", 0.0, {"epochs": 3}, None)
    with pytest.raises(StoreError, match="queued"):
        store.update_job(job_id, 0.1, "early")

    assert store.start_job(job_id, pid=4242).status == "running"
    with pytest.raises(StoreError, match="running"):
        store.start_job(job_id)
    for i in range(3):
        job = store.update_job(job_id, i / 10, f"step {i}", log_line=f"early {i}")
    assert job.log_tail.splitlines() == ["early 0", "early 1", "early 2"]
    assert store.update_job(job_id, 0.5, "no log line").log_tail == job.log_tail
    job = store.update_job(job_id, 0.6, "almost", log_line="\n".join(f"line {i}" for i in range(LOG_TAIL_LINES + 10)))
    assert job.log_tail.splitlines() == [f"line {i}" for i in range(10, LOG_TAIL_LINES + 10)]
    assert (job.progress, job.message, job.cancel_requested) == (0.6, "almost", False)
    with pytest.raises(ValueError):
        store.update_job(job_id, 1.5, "too far")

    assert store.request_cancel(job_id).status == "running"
    assert store.cancel_requested(job_id)
    assert store.update_job(job_id, 0.7, "noticed").cancel_requested
    done = store.finish_job(job_id, "cancelled")
    assert (done.status, done.progress) == ("cancelled", 0.7) and done.finished_at >= done.started_at
    with pytest.raises(StoreError, match="cancelled"):
        store.finish_job(job_id, "done")
    assert store.request_cancel(job_id).status == "cancelled"
    assert store.get_job("missing") is None
    with pytest.raises(StoreError, match="no job"):
        store.cancel_requested("missing")


def test_queued_cancel_and_listing(store: PlanStore) -> None:
    first = store.create_job("eval", {})
    second = store.create_job("train", {})
    assert store.request_cancel(first).status == "cancelled"
    with pytest.raises(StoreError):
        store.start_job(first)
    store.start_job(second)
    assert store.finish_job(second, "done").progress == 1.0
    with pytest.raises(ValueError):
        store.finish_job(second, "running")  # type: ignore[arg-type]
    assert [j.job_id for j in store.list_jobs()] == [second, first]
    assert [j.job_id for j in store.list_jobs(status="done")] == [second]
    assert len(store.list_jobs(limit=1)) == 1


def test_reap_dead_jobs(store: PlanStore) -> None:
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    alive, dead = store.create_job("train", {}), store.create_job("train", {})
    store.start_job(alive)
    store.start_job(dead, pid=dead_pid.pid)
    assert store.reap_dead_jobs() == [dead]
    assert store.get_job(dead).status == "failed" and str(dead_pid.pid) in store.get_job(dead).error
    assert store.get_job(alive).status == "running"
    assert store.reap_dead_jobs() == []


# parquet export and import


def test_export_import_is_idempotent_and_never_overwrites(store: PlanStore, tmp_path: Path) -> None:
    plans = store.put_plans([PlanDraft(MODEL, {"i": i}, "search", i / 10, W(1.0, 1.0, i)) for i in range(3)])
    store.put_evaluations(
        [EvaluationDraft(key(p.plan_id), {"acc": 0.5 + i / 10}, 64, 1.0) for i, p in enumerate(plans)]
    )
    store.put_evaluation(EvalKey(MODEL, DENSE_PLAN_ID, "pope", "val", "dense", "logits"), {"acc": 0.99}, 10, 1.0)
    exported = store.export_parquet(tmp_path / "export")
    assert sorted(p.name for p in exported) == ["evaluations.parquet", "models.parquet", "plans.parquet"]

    other = PlanStore(tmp_path / "other.duckdb")
    other.put_model(MODEL, "llava-tiny", "llava", {"hidden": 32})
    other.put_plan(PlanDraft(MODEL, {"i": 0}, "search", 0.0, W(1.0, 1.0, 0.0)))
    mine = other.put_evaluation(key(plans[0].plan_id), {"acc": 0.01}, 64, 1.0)

    summary = other.import_parquet(tmp_path / "export")
    assert (summary.models_added, summary.plans_added, summary.evaluations_added, summary.skipped) == (0, 2, 3, 3)
    again = other.import_parquet(tmp_path / "export")
    assert (again.models_added, again.plans_added, again.evaluations_added, again.skipped) == (0, 0, 0, 8)
    assert other.get_evaluation(key(plans[0].plan_id)) == mine
    assert sorted(p.plan_id for p in other.list_plans(MODEL)) == sorted(p.plan_id for p in plans)
    for p in plans[1:]:
        assert other.get_plan(p.plan_id) == p
        assert other.get_evaluation(key(p.plan_id)) == store.get_evaluation(key(p.plan_id))

    with pytest.raises(StoreError, match="not a plan store export"):
        other.import_parquet(tmp_path / "nowhere")
    (tmp_path / "export" / "plans.parquet").write_bytes(b"not parquet")
    with pytest.raises(StoreError, match="plans.parquet"):
        other.import_parquet(tmp_path / "export")
    assert len(other.list_plans(MODEL)) == len(plans)


# opening files


def test_default_path_follows_hipp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPP_HOME", str(tmp_path / "home"))
    assert PlanStore().path == (tmp_path / "home" / "plans.duckdb").resolve()
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["plans.duckdb"]


def foreign_duckdb(path: Path) -> None:
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE measurements (x INTEGER)")
    conn.execute("INSERT INTO measurements VALUES (1), (2)")
    conn.close()


def newer_store(path: Path) -> None:
    PlanStore(path)
    conn = duckdb.connect(str(path))
    conn.execute("INSERT INTO schema_version VALUES (99, 'from the future', now())")
    conn.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40), "cannot open plan store"),
        (lambda p: p.write_bytes(b""), "cannot open plan store"),
        (foreign_duckdb, "not a HiPP plan store"),
        (newer_store, "schema version 99"),
    ],
    ids=["not-duckdb", "empty", "foreign-duckdb", "newer-schema"],
)
def test_refuses_files_that_are_not_ours_without_touching_them(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "plans.duckdb"
    make(path)
    before = directory_snapshot(tmp_path)
    with pytest.raises(StoreError, match=message) as error:
        PlanStore(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert directory_snapshot(tmp_path) == before


def test_migrations_apply_in_order_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "plans.duckdb"
    PlanStore(path).put_model(MODEL, "s", "f", {})
    latest = schema.latest_version()
    added = schema.Migration(latest + 1, "add notes", ("ALTER TABLE plans ADD COLUMN notes VARCHAR",))
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, added))
    PlanStore(path)
    PlanStore(path)  # re-running the new migration would fail: the column exists
    conn = duckdb.connect(str(path), read_only=True)
    versions = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert versions == [(v,) for v in range(1, latest + 2)]
    assert "notes" in [row[0] for row in conn.execute("DESCRIBE plans").fetchall()]
    conn.close()
    assert PlanStore(path).put_plan(PlanDraft(MODEL, {"heads": [1]}, "manual", 0.1)).model_id == MODEL


def test_threads_in_one_process_share_the_store(store: PlanStore) -> None:
    plan = store.put_plan(PlanDraft(MODEL, {"heads": [1]}, "manual", 0.1))

    def work(t: int) -> None:
        for i in range(3):
            store.put_evaluation(key(plan.plan_id, bench=f"b{t}-{i}"), {"acc": i}, 1, 0.1)
            store.pareto_front(MODEL, [("acc", True)])

    with ThreadPoolExecutor(max_workers=3) as pool:
        for future in [pool.submit(work, t) for t in range(3)]:
            future.result()
    assert all(store.get_evaluation(key(plan.plan_id, bench=f"b{t}-{i}")) for t in range(3) for i in range(3))


def version_one_store(path: Path) -> None:
    """A store as the first schema wrote it: preferences as three positional weights w0, w1, w2."""
    conn = duckdb.connect(str(path))
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        for statement in schema.MIGRATIONS[0].statements:
            cur.execute(statement)
        cur.execute("INSERT INTO schema_version VALUES (1, 'create all tables', now())")
        cur.execute("INSERT INTO models VALUES (?, 's', 'llava', '{}', now())", [MODEL])
        cur.execute(
            "INSERT INTO plans VALUES ('p1', ?, '{\"layers\": [1]}', 'policy', 0.2, 0.7, 0.1, 0.3, now()), "
            "('p2', ?, '{\"layers\": [2]}', 'baseline', NULL, NULL, NULL, 0.3, now())",
            [MODEL, MODEL],
        )
        cur.execute("COMMIT")
    conn.close()


def test_version_one_preferences_are_migrated_to_objective_names(tmp_path: Path) -> None:
    path = tmp_path / "plans.duckdb"
    version_one_store(path)
    store = PlanStore(path)
    plans = {p.plan_id: p for p in store.list_plans(MODEL)}
    assert plans["p1"].preference == pytest.approx(W(0.2, 0.7, 0.1)) and plans["p2"].preference is None
    assert [p.plan_id for p, _ in store.plans_near_preference(MODEL, W(0.2, 0.7, 0.1), k=5)] == ["p1"]
    # an export written by the old schema imports into the new one with the same meaning
    old_export = tmp_path / "old-export"
    conn = duckdb.connect(str(tmp_path / "old.duckdb"))
    for statement in schema.MIGRATIONS[0].statements:
        conn.execute(statement)
    conn.execute("INSERT INTO models VALUES ('m-other', 's', 'llava', '{}', now())")
    conn.execute("INSERT INTO plans VALUES ('q1', 'm-other', '{}', 'policy', 0.5, 0.25, 0.25, 0.4, now())")
    old_export.mkdir()
    for table in ("models", "plans", "evaluations"):
        conn.execute(f"COPY {table} TO '{old_export / (table + '.parquet')}' (FORMAT parquet)")
    conn.close()
    store.import_parquet(old_export)
    assert store.get_plan("q1").preference == pytest.approx(W(0.5, 0.25, 0.25))
