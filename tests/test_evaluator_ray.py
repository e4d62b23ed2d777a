"""The Ray evaluator backend: same store keys and numbers as in process, cache respected, worker deaths survived.

A local two-CPU Ray cluster with two workers on the embedded LLaVA: a trained model, so different plans score
differently (a random tiny checkpoint answers the same to every question, which would hide a worker that ignored
the plan). The whole file takes under a minute, most of it the workers importing torch.
"""

import dataclasses
import re
import sys

import numpy as np
import pytest
from conftest import random_blueprint

from hipp_core.errors import HippError
from hipp_core.evaluation.backends import make_evaluator
from hipp_core.models.loading import load_model
from plan_store import PlanStore

SPEC = "embedded"
LIMIT = 6  # questions per POPE category and of ScienceQA: enough that different plans score differently


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="error", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_store(tmp_path_factory) -> PlanStore:
    return PlanStore(tmp_path_factory.mktemp("ray") / "plans.duckdb")


class SharedEvaluator:
    """The module's two-worker evaluator, started on first use. Its workers hold both of the cluster's CPUs, so a test
    that needs them free stops it and the next test that uses it starts it again: the tests pass in any order."""

    def __init__(self, store: PlanStore) -> None:
        self.store = store
        self.running = None

    def get(self):
        if self.running is None:
            self.running = make_evaluator(SPEC, "dev", LIMIT, self.store, backend="ray", num_workers=2)
        return self.running

    def stop(self) -> None:
        if self.running is not None:
            self.running.close()
            self.running = None


@pytest.fixture(scope="module")
def shared_evaluator(ray_cluster, ray_store):
    shared = SharedEvaluator(ray_store)
    yield shared
    shared.stop()


@pytest.fixture
def evaluator(shared_evaluator):
    return shared_evaluator.get()


@pytest.fixture
def free_cluster(shared_evaluator, ray_cluster):
    """The cluster with none of its CPUs held by the shared evaluator's workers."""
    shared_evaluator.stop()
    return ray_cluster


def plans(seed: int, n: int) -> list:
    """`n` distinct random plans for the embedded model."""
    loaded, rng = load_model(SPEC), np.random.default_rng(seed)
    return [dataclasses.replace(random_blueprint(loaded.adapter, rng), model_id=loaded.model_id) for _ in range(n)]


def in_process(blueprints, store: PlanStore):
    return make_evaluator(SPEC, "dev", LIMIT, store).evaluate(blueprints)


def test_bad_worker_settings_fail_once_with_a_message(free_cluster, tmp_path):
    store = PlanStore(tmp_path / "plans.duckdb")
    with pytest.raises(HippError, match="exceeds the cluster's 2 CPUs"):
        make_evaluator(SPEC, "dev", LIMIT, store, backend="ray", num_workers=3)
    missing = tmp_path / "missing"
    with pytest.raises(HippError, match=rf"could not load {re.escape(str(missing))}: .*does not exist"):
        make_evaluator(str(missing), "dev", LIMIT, store, backend="ray", num_workers=1)
    with pytest.raises(HippError, match="--address must be local, auto or ray://"):
        make_evaluator(SPEC, "dev", LIMIT, store, backend="ray", address="10.0.0.1:6379")
    if not free_cluster.cluster_resources().get("GPU"):
        with pytest.raises(HippError, match="--device cuda was asked for but the ray cluster has no GPUs"):
            make_evaluator(SPEC, "dev", LIMIT, store, backend="ray", num_workers=1, device="cuda")


def test_workers_score_in_the_requested_dtype_under_its_key(free_cluster, tmp_path):
    """The workers get the settings, resolve them on their machine and report them: the results land under the
    bfloat16 key, with the numbers the in-process backend gets in bfloat16. Its worker needs a CPU the shared
    evaluator's workers would otherwise hold."""
    from hipp_core.models.device import dtype_runs

    if not dtype_runs("cpu", "bfloat16"):
        pytest.skip("this CPU cannot compute in bfloat16")
    store = PlanStore(tmp_path / "plans.duckdb")
    settings = {"device": "cpu", "dtype": "bfloat16"}
    remote = make_evaluator(SPEC, "dev", 2, store, backend="ray", num_workers=1, **settings)
    try:
        [result] = remote.evaluate([None])
        key = remote._key(None)
    finally:
        remote.close()
    assert key.bench.endswith(":cpu-bfloat16") and store.get_evaluation(key) is not None
    [local] = make_evaluator(SPEC, "dev", 2, PlanStore(tmp_path / "local.duckdb"), **settings).evaluate([None])
    assert local.to_metrics() == result.to_metrics()


def test_ray_results_equal_in_process_ones_under_the_same_keys(evaluator, tmp_path):
    batch = [None, *plans(seed=1, n=3)]
    local_store = PlanStore(tmp_path / "local.duckdb")
    local = in_process(batch, local_store)
    remote = evaluator.evaluate(batch)
    assert [r.to_metrics() for r in remote] == [r.to_metrics() for r in local]
    assert len({str(r.to_metrics()) for r in remote}) > 1, "plans should score differently, or masking went unseen"
    assert not any(r.cached for r in remote)
    for blueprint, result in zip(batch, local, strict=True):
        key = evaluator._key(blueprint)
        assert local_store.get_evaluation(key).metrics == result.to_metrics()  # in-process key == ray key
        assert evaluator.store.get_evaluation(key).metrics == result.to_metrics()


def test_cached_plans_are_not_sent_to_workers(evaluator):
    first, second, third = plans(seed=2, n=3)
    in_process([first], evaluator.store)  # scored by the other backend, same store
    sent = evaluator.sent
    results = evaluator.evaluate([first, second, second])
    assert evaluator.sent - sent == 1  # `first` came from the store, `second` once though asked twice
    assert [r.cached for r in results] == [True, False, False]
    again = evaluator.evaluate([second, first, third])
    assert evaluator.sent - sent == 2 and [r.cached for r in again] == [True, True, False]
    assert again[0].to_metrics() == results[1].to_metrics()


def test_a_killed_worker_loses_no_plan(evaluator, ray_cluster, tmp_path):
    batch = plans(seed=3, n=4)
    replaced = evaluator.replaced

    def kill_a_worker(stage: str, done: int, total: int) -> None:
        if done == 1:  # one plan back, others queued or in flight: the killed worker had or will get one
            ray_cluster.kill(evaluator.actors[0])

    results = evaluator.evaluate(batch, progress=kill_a_worker)
    assert evaluator.replaced > replaced
    local = in_process(batch, PlanStore(tmp_path / "local.duckdb"))
    assert [r.to_metrics() for r in results] == [r.to_metrics() for r in local]


def test_options_a_backend_does_not_take_are_refused():
    with pytest.raises(HippError, match="local evaluator backend does not take address"):
        make_evaluator(SPEC, backend="local", address="auto")
    assert make_evaluator(SPEC, backend="local", address=None, num_workers=None).spec == SPEC


def test_missing_ray_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets when the extra is not installed
    monkeypatch.delitem(sys.modules, "hipp_core.evaluation.ray_backend", raising=False)
    with pytest.raises(HippError, match=r"needs `pip install \.\[distributed\]`"):
        make_evaluator(SPEC, backend="ray")
