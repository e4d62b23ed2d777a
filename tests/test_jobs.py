"""Background jobs: parameters are refused at submit with one line, workers run detached and report through the store,
cancel is honoured, failures are recorded as one line, dead workers are reaped, and the CLI lists and cancels."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import copy_home, hipp_home, invoke

from hipp_core import job_runner, jobs
from hipp_core.data.source import DataSource
from hipp_core.errors import HippError
from hipp_core.ui_state import check_model
from plan_store import PlanStore


@pytest.fixture(scope="module")
def planned(tiny_llava, tmp_path_factory) -> tuple[Path, str]:
    """A store holding the tiny LLaVA and one uniform plan for it, made once for the module."""
    from hipp_core import api

    with hipp_home(tmp_path_factory.mktemp("planned")) as home:
        blueprint = api.plan_baseline(str(tiny_llava), "uniform", 0.3, data=DataSource(shapesworld=True))
        return home, PlanStore().put_plan(api.plan_draft(blueprint)).plan_id


@pytest.fixture
def plan_id(planned) -> str:
    """The module's plan, in this test's own store."""
    home, plan_id = planned
    copy_home(home)
    return plan_id


def wait(store: PlanStore, job_id: str, seconds: float = 120) -> str:
    deadline = time.time() + seconds
    while (status := store.get_job(job_id).status) in jobs.ACTIVE and time.time() < deadline:
        time.sleep(0.3)
    return status


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("compile", {}, "unknown job kind 'compile'; available: evaluate"),
        ("evaluate", {"spec": "embedded", "limit": 0}, "limit must be a whole number from 1"),
        ("evaluate", {"spec": "embedded", "split": "val"}, "split must be one of train, calib, dev, test"),
        ("evaluate", {"spec": "embedded", "plan_id": "nope"}, "plan 'nope' is not in the plan store"),
        ("evaluate", {"spec": "embedded", "bench": "pope"}, "unknown parameters bench"),
        ("calibrate", {"spec": "/no/such/model"}, "does not exist"),
        ("recover", {"spec": "embedded", "plan_id": None}, "is not in the plan store"),
        ("train-policy", {"spec": "embedded", "group_size": 1}, "group_size must be a whole number from 2"),
        ("evaluate", {"spec": "embedded", "device": "gpu"}, "unknown device 'gpu'"),
        ("calibrate", {"spec": "embedded", "dtype": "int8"}, "unknown dtype 'int8'"),
        ("calibrate", {"spec": "embedded", "dtype": None}, "dtype must be a name such as auto, got None"),
        # the job's data is checked as the CLI checks its data options, and every path it names must exist
        (
            "calibrate",
            {"spec": "embedded", "data": {"split": "val"}},
            "--split val picks a ScienceQA split; pass --sqa",
        ),
        (
            "plan",
            {"spec": "embedded", "method": "uniform", "sparsity": 0.3, "data": {"shapesworld": True, "sqa": "/"}},
            "--shapesworld and --pope-dir / --sqa-dir exclude each other",
        ),
        (
            "train-policy",
            {"spec": "embedded", "data": {"pope": "/no/such/pope"}},
            "--pope-dir /no/such/pope does not exist; check the path",
        ),
        (
            "recover",
            {"spec": "embedded", "data": {"test_pope": ["/no/test.json"], "pope": "/"}},
            "--test-pope /no/test.json does not exist",
        ),
        ("calibrate", {"spec": "embedded", "data": {"pope_dir": "/"}}, "unknown data options pope_dir; the known"),
        ("calibrate", {"spec": "embedded", "data": "/data/pope"}, "data must be a mapping of data options"),
        ("train-policy", {"spec": "embedded", "data": {"pope": "/"}}, "ScienceQA questions of your own are needed"),
    ],
)
def test_submit_refuses_bad_parameters_in_one_line(kind, params, message):
    store = PlanStore()
    before = len(store.list_jobs())
    with pytest.raises(HippError, match=message) as err:
        jobs.submit(kind, params, store)
    assert "\n" not in str(err.value)
    assert len(store.list_jobs()) == before, "a refused job is not recorded"


@pytest.mark.parametrize("kind", ["evaluate", "calibrate", "train-policy", "plan", "materialize", "recover", "export"])
def test_every_model_job_takes_device_and_dtype(kind, tiny_llava, plan_id, tmp_path):
    params = {"spec": str(tiny_llava), "device": "cpu", "dtype": "float32"}
    if kind in ("materialize", "recover", "export"):
        params["plan_id"] = plan_id
    if kind == "plan":
        params |= {"method": "uniform", "sparsity": 0.3}
    if kind in jobs.DATA_KINDS:
        params["data"] = {"shapesworld": True}  # the tiny checkpoints are local ones: ShapesWorld by name
    if kind == "export":
        params["out_dir"] = str(tmp_path / "out")
    checked = jobs.kind(kind).check(params, PlanStore())
    assert (checked["device"], checked["dtype"]) == ("cpu", "float32")
    defaults = jobs.kind(kind).check({k: v for k, v in params.items() if k not in ("device", "dtype")}, PlanStore())
    assert (defaults["device"], defaults["dtype"]) == ("auto", "auto")


@pytest.mark.parametrize(("kind", "uses"), [("calibrate", "calibration"), ("train-policy", "rewards")])
def test_a_local_checkpoints_tuning_jobs_without_data_are_refused_at_submit(kind, uses, tiny_llava):
    store = PlanStore()
    with pytest.raises(HippError, match=f"is a local checkpoint, so its {uses} must come from your own data"):
        jobs.submit(kind, {"spec": str(tiny_llava)}, store)
    assert not store.list_jobs(), "refused before anything is recorded, not by the worker"
    checked = jobs.kind(kind).check({"spec": str(tiny_llava), "data": {"shapesworld": True}}, store)
    assert checked["data"] == {"shapesworld": True}


def test_job_data_is_kept_as_absolute_paths_and_reads_back_as_the_same_source(tmp_path, monkeypatch):
    from hipp_core.data.source_params import from_params, to_params

    for name in ("dev", "images", "sqa"):
        (tmp_path / name).mkdir()
    (tmp_path / "test.json").write_text("")
    monkeypatch.chdir(tmp_path)  # relative paths are kept absolute: the worker may run elsewhere
    raw = {"pope": "dev", "pope_images": "images", "sqa": "sqa", "split": "minival", "test_pope": ["test.json"]}
    checked = jobs.kind("train-policy").check({"spec": "embedded", "data": raw}, PlanStore())["data"]
    assert checked == {
        "pope": str(tmp_path / "dev"),
        "pope_images": str(tmp_path / "images"),
        "sqa": str(tmp_path / "sqa"),
        "split": "minival",
        "test_pope": [str(tmp_path / "test.json")],
    }
    assert json.loads(json.dumps(checked)) == checked
    source = from_params(checked)
    assert (source.pope, source.tuning_split, source.test_pope) == (
        tmp_path / "dev",
        "minival",
        (tmp_path / "test.json",),
    )
    assert to_params(source) == checked


def test_export_target_is_validated_and_never_overwritten_unasked(tiny_llava, plan_id, tmp_path):
    spec = str(tiny_llava)
    base = {"spec": spec, "plan_id": plan_id}
    with pytest.raises(HippError, match="relative path"):
        jobs.submit("export", base | {"out_dir": "exports/x"})
    with pytest.raises(HippError, match="parent folder .* does not exist"):
        jobs.submit("export", base | {"out_dir": str(tmp_path / "a" / "b")})
    (tmp_path / "mine").mkdir()
    with pytest.raises(HippError, match="already exists"):
        jobs.submit("export", base | {"out_dir": str(tmp_path / "mine")})
    with pytest.raises(HippError, match="not a HiPP-Prune export; refusing"):
        jobs.submit("export", base | {"out_dir": str(tmp_path / "mine"), "overwrite": True})
    with pytest.raises(HippError, match="not a recovered artifact"):
        jobs.submit("export", base | {"out_dir": str(tmp_path / "new"), "artifact": str(tmp_path / "mine")})
    with pytest.raises(HippError, match="unknown export format 'gguf'; use one of exact, stock"):
        jobs.submit("export", base | {"out_dir": str(tmp_path / "new"), "export_format": "gguf"})


def test_evaluate_job_runs_detached_and_lands_in_the_store(tiny_llava, plan_id):
    store = PlanStore()
    job_id = jobs.submit("evaluate", {"spec": str(tiny_llava), "plan_id": plan_id, "limit": 4}, store)
    job = store.get_job(job_id)
    assert job.status == "running" and job.pid != os.getpid()
    assert wait(store, job_id) == "done", store.get_job(job_id).error
    job = store.get_job(job_id)
    assert job.progress == 1.0 and job.message.startswith(f"plan {plan_id} on dev: POPE balanced accuracy")
    evaluations = store.list_evaluations(check_model(str(tiny_llava)).model_id, split="dev", mode="masked")
    assert any(ev.key.plan_id == plan_id and ev.key.limit == 4 for _, ev in evaluations)
    log = jobs.log_path(store, job_id).read_text()
    assert "evaluate started in process" in log and job.message in log


def test_evaluate_job_progress_is_one_rising_figure_named_by_category(tiny_llava, plan_id):
    store = PlanStore()
    params = {"spec": str(tiny_llava), "plan_id": plan_id, "split": "calib", "limit": 64}
    job_id = store.create_job("evaluate", params)
    store.start_job(job_id)
    seen: list[tuple[float, str]] = []
    real_update = store.update_job

    def recording(job_id, progress, message, log_line=None):
        seen.append((progress, message))
        return real_update(job_id, progress, message, log_line)

    store.update_job = recording
    assert job_runner.run_job(job_id, store) == "done", store.get_job(job_id).error
    reports = seen[:-1]  # the last write is the summary
    fractions = [p for p, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0, "one figure for the whole job, never backwards"
    assert {m.split(":")[0] for _, m in reports} == {"POPE random", "POPE popular", "POPE adversarial", "ScienceQA"}
    popular = next(p for p, m in reports if m == "POPE popular: 64/64")
    assert abs(popular - 0.5) < 0.01  # two of four equal parts


def test_cancel_request_stops_a_running_job(tiny_llava, plan_id):
    store = PlanStore()
    job_id = store.create_job("evaluate", {"spec": str(tiny_llava), "plan_id": plan_id, "split": "dev", "limit": 3})
    store.start_job(job_id)
    store.request_cancel(job_id)
    assert job_runner.run_job(job_id, store) == "cancelled"
    assert "cancelled on request" in jobs.log_path(store, job_id).read_text()


def test_failure_is_recorded_as_one_line(tmp_path):
    store = PlanStore()
    missing = str(tmp_path / "deleted-model")
    job_id = store.create_job("calibrate", {"spec": missing, "samples": 4})  # valid when submitted, gone since
    assert job_runner.run_job(job_id, store) == "failed"
    job = store.get_job(job_id)
    assert "does not exist" in job.error and "\n" not in job.error
    assert job_runner.run_job(job_id, store) == "failed", "a finished job is never run again"


def test_progress_reports_are_throttled_but_stage_changes_and_ends_are_kept():
    store = PlanStore()
    job_id = store.create_job("evaluate", {})
    store.start_job(job_id)
    writes: list[str] = []
    real_update = store.update_job

    def counting(job_id, progress, message, log_line=None):
        writes.append(message)
        return real_update(job_id, progress, message, log_line)

    store.update_job = counting
    report = jobs.Reporter(store, job_id)
    for i in range(1, 2001):
        report("pope", i, 2000)
    report("sqa", 0, 10, {"acc": 0.5})
    assert 2 <= len(writes) <= 6, writes
    assert writes[-2] == "POPE: 2000/2000" and writes[-1] == "ScienceQA: 0/10  acc=0.500"
    job = store.get_job(job_id)
    assert job.log_tail.splitlines() == ["POPE: started", "POPE: 2000/2000", "ScienceQA: started"]
    store.finish_job(job_id, "done")


def test_a_killed_worker_is_reaped_as_failed(tiny_llava):
    store = PlanStore()
    job_id = jobs.submit("calibrate", {"spec": str(tiny_llava), "samples": 64, "data": {"shapesworld": True}}, store)
    pid = store.get_job(job_id).pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 30
    while store.get_job(job_id).status == "running" and time.time() < deadline:
        store.reap_dead_jobs()
        time.sleep(0.2)
    job = store.get_job(job_id)
    assert job.status == "failed" and str(pid) in job.error


def test_cli_lists_and_cancels_jobs():
    store = PlanStore()
    job_id = store.create_job("evaluate", {"spec": "embedded"})
    listed = invoke("jobs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert any(row["job_id"] == job_id and row["status"] == "queued" for row in json.loads(listed.stdout))
    cancelled = invoke("jobs", "cancel", job_id)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    assert store.get_job(job_id).status == "cancelled"
    missing = invoke("jobs", "cancel", "no-such-job")
    assert missing.returncode == 2 and "no job 'no-such-job'" in missing.stderr


def test_log_lives_beside_the_store(tmp_path):
    store = PlanStore(tmp_path / "elsewhere" / "plans.duckdb")
    assert jobs.log_path(store, "abc") == Path(tmp_path / "elsewhere" / "jobs" / "abc.log")
