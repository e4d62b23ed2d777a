"""Several processes on one store file: concurrent writers lose nothing, a SIGKILLed writer leaves every committed row
readable, a held lock turns into a clear error after the timeout, and long computations hold no lock."""

from __future__ import annotations

import itertools
import multiprocessing
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path

import duckdb
import pytest

from plan_store import EvalKey, PlanDraft, PlanStore
from plan_store.errors import StoreError

# Spawned children start clean (no forked DuckDB or lock state), as separate CLI and dashboard processes do.
CTX = multiprocessing.get_context("spawn")
MODEL = "m-shared"
WRITES_PER_PROCESS = 10
BATCH = 5


def eval_key(plan_id: str) -> EvalKey:
    return EvalKey(MODEL, plan_id, "pope", "val", "masked", "logits")


def new_store(tmp_path: Path) -> PlanStore:
    store = PlanStore(tmp_path / "plans.duckdb")
    store.put_model(MODEL, "llava-tiny", "llava", {})
    return store


def _writer(path: str, tag: str, job_id: str, barrier: Barrier) -> None:
    store = PlanStore(path)
    store.start_job(job_id)
    barrier.wait(timeout=60)
    for i in range(WRITES_PER_PROCESS):
        plan = store.put_plan(PlanDraft(MODEL, {"writer": tag, "i": i}, "search", i / WRITES_PER_PROCESS))
        store.put_evaluation(eval_key(plan.plan_id), {"acc": random.random(), "i": i}, 8, 0.1)
        store.update_job(job_id, (i + 1) / WRITES_PER_PROCESS, f"{tag} {i}", log_line=f"{tag} line {i}")
        if i % 3 == 0:
            store.pareto_front(MODEL, [("acc", True), ("sparsity", True)])
    store.finish_job(job_id, "done")


def test_two_processes_write_and_read_concurrently_without_losing_anything(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    jobs = {tag: store.create_job("search", {"writer": tag}) for tag in ("a", "b")}
    barrier = CTX.Barrier(len(jobs))
    workers = [
        CTX.Process(target=_writer, args=(str(store.path), tag, job_id, barrier)) for tag, job_id in jobs.items()
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]

    plans = store.list_plans(MODEL)
    assert sorted((p.blueprint["writer"], p.blueprint["i"]) for p in plans) == sorted(
        itertools.product(jobs, range(WRITES_PER_PROCESS))
    )
    for plan in plans:
        assert store.get_evaluation(eval_key(plan.plan_id)).metrics["i"] == plan.blueprint["i"]
    for tag, job_id in jobs.items():
        job = store.get_job(job_id)
        assert (job.status, job.progress, job.message) == ("done", 1.0, f"{tag} {WRITES_PER_PROCESS - 1}")
        assert job.log_tail.splitlines() == [f"{tag} line {i}" for i in range(WRITES_PER_PROCESS)]


def _committer(path: str, out: Connection) -> None:
    store = PlanStore(path)
    for batch in itertools.count():
        drafts = [PlanDraft(MODEL, {"batch": batch, "i": i, "pad": "x" * 4000}, "search", 0.5) for i in range(BATCH)]
        out.send([plan.plan_id for plan in store.put_plans(drafts)])


def test_sigkill_mid_write_loses_no_committed_row(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    reports, child_end = CTX.Pipe(duplex=False)
    child = CTX.Process(target=_committer, args=(str(store.path), child_end))
    child.start()
    child_end.close()
    committed: list[str] = []
    while len(committed) < 6 * BATCH:
        assert reports.poll(60), "writer reported nothing"
        committed += reports.recv()
    # About one transaction's length: the kill lands while connecting, writing, committing or checkpointing (after
    # a commit the WAL is left for the reopen to replay).
    time.sleep(random.uniform(0, 0.12))
    child.kill()
    child.join(timeout=30)
    while reports.poll():
        try:
            committed += reports.recv()
        except EOFError:
            break
    assert child.exitcode == -9

    reopened = PlanStore(store.path)
    stored = reopened.list_plans(MODEL)
    assert set(committed) <= {p.plan_id for p in stored}
    assert set(Counter(p.blueprint["batch"] for p in stored).values()) == {BATCH}, "a batch was half-written"
    assert reopened.put_plan(PlanDraft(MODEL, {"after": "crash"}, "manual", 0.1)).plan_id


def _hold_lock(path: str, locked: Event, release: Event) -> None:
    conn = duckdb.connect(path)
    locked.set()
    release.wait(timeout=60)
    conn.close()


def test_a_held_lock_times_out_with_a_clear_error_and_is_waited_for(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    locked, release = CTX.Event(), CTX.Event()
    holder = CTX.Process(target=_hold_lock, args=(str(store.path), locked, release))
    holder.start()
    try:
        assert locked.wait(60)
        started = time.monotonic()
        with pytest.raises(StoreError, match="locked by another process") as error:
            PlanStore(store.path, timeout=0.5)
        assert time.monotonic() - started >= 0.5
        assert str(store.path) in str(error.value)

        threading.Timer(0.3, release.set).start()
        assert PlanStore(store.path, timeout=30).get_model(MODEL) is not None
    finally:
        release.set()
        holder.join(timeout=30)


def test_compute_runs_while_other_processes_can_open_the_store(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    plan = store.put_plan(PlanDraft(MODEL, {"heads": [1]}, "manual", 0.2))
    probe_source = "import duckdb, sys; duckdb.connect(sys.argv[1]).close()"

    def compute() -> tuple[dict[str, float], int]:
        probe = subprocess.run(
            [sys.executable, "-c", probe_source, str(store.path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert probe.returncode == 0, probe.stderr
        return {"acc": 0.5}, 4

    record, cached = store.get_or_compute_evaluation(eval_key(plan.plan_id), compute)
    assert (cached, record.metrics) == (False, {"acc": 0.5})
