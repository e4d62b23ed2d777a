"""The job worker: `python -m hipp_core.job_runner JOB_ID` runs one recorded job through the API, in its own session.

`hipp_core.jobs` declares the kinds and checks their parameters (below the API, so pages can submit through it);
this module holds what each kind does, which is calling the API, so it sits above it, beside the CLI.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hipp_core import api
from hipp_core.errors import USER_ERRORS, HippError
from hipp_core.job_progress import Step, Tracker, evaluation_steps
from hipp_core.jobs import SETTINGS, JobCancelled, Reporter, blueprint_of, kind
from plan_store import PlanStore

JobProgress = Callable[..., None]  # (stage, done, total, metrics=None): what the API's long functions call
JobRun = Callable[[dict[str, Any], PlanStore, JobProgress], str]  # returns the one-line summary of the result

RUNNERS: dict[str, JobRun] = {}
JobSteps = Callable[[dict[str, Any]], list[Step]]  # what a kind's progress will report, for one overall figure
STEPS: dict[str, JobSteps] = {}


def runs(name: str) -> Callable[[JobRun], JobRun]:
    def wrap(run: JobRun) -> JobRun:
        kind(name)  # a runner for a kind nobody declared is a bug
        RUNNERS[name] = run
        return run

    return wrap


def run_job(job_id: str, store: PlanStore) -> str:
    """Run one job in this process to its end; returns its final status. A job that is not this process's to run
    (finished, cancelled while queued, or running under another pid) is left alone."""
    job = store.get_job(job_id)
    if job is None:
        raise HippError(f"no job {job_id!r} in plan store {store.path}")
    if job.status == "queued":
        try:
            job = store.start_job(job_id)
        except USER_ERRORS:
            job = store.get_job(job_id)
    if job.status != "running" or job.pid != os.getpid():
        return job.status
    reporter = Reporter(store, job_id)
    reporter.log(f"{job.kind} started in process {os.getpid()} with {job.params}")
    try:
        job_kind = kind(job.kind)
        # Checked again here: the model, the plan or the export target may have changed since the job was submitted.
        params = job_kind.check(dict(job.params), store)
        reporter.tracker = Tracker(expected_steps(job_kind.name, params))
        summary = RUNNERS[job_kind.name](params, store, reporter)
        reporter.update(1.0, summary, summary, check_cancel=False)  # the work is done and stored: keep it
    except JobCancelled:
        reporter.log("cancelled on request")
        return store.finish_job(job_id, "cancelled").status
    except USER_ERRORS as exc:
        error = _one_line(str(exc))
        reporter.log(f"failed: {error}")
        return store.finish_job(job_id, "failed", error).status
    except Exception as exc:  # noqa: BLE001 -- a bug, not a user error: traceback to the log, one line to the store
        reporter.log("failed with a traceback:\n" + traceback.format_exc())
        return store.finish_job(job_id, "failed", f"{type(exc).__name__}: {_one_line(str(exc))}").status
    return store.finish_job(job_id, "done").status


def expected_steps(kind_name: str, params: dict[str, Any]) -> list[Step]:
    """The steps a job of this kind will report; none (each stage's own fraction) when they cannot be known."""
    steps = STEPS.get(kind_name)
    if steps is None:
        return []
    try:
        return steps(params)
    except USER_ERRORS:  # the work itself reports the problem; progress falls back to per-stage fractions
        return []


def _one_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no message"


def _settings(params: dict[str, Any]) -> dict[str, str]:
    """The checked job's device and dtype, as the API takes them."""
    return {name: params[name] for name in SETTINGS}


def _data(params: dict[str, Any]) -> api.DataSource | None:
    """The checked job's `data` as the API takes it; None (the model's default) when it names none."""
    return api.data_source(params["data"]) if params.get("data") else None


def _eval_data(params: dict[str, Any]) -> api.DataSource | None:
    """The test data a job's own-data evaluations read (None: ShapesWorld `test`)."""
    data = _data(params)
    return data.report_source() if data is not None else None


def steps_of(name: str) -> Callable[[JobSteps], JobSteps]:
    def wrap(steps: JobSteps) -> JobSteps:
        kind(name)
        STEPS[name] = steps
        return steps

    return wrap


@runs("evaluate")
def _run_evaluate(params: dict[str, Any], store: PlanStore, progress: JobProgress) -> str:
    plan = store.get_plan(params["plan_id"]) if params["plan_id"] else None
    source, split = api.evaluation_data(params["spec"], _data(params), params["split"], params["limit"])
    # Without the image-free pass, like policy training: its evaluations and these share one Pareto cloud.
    result = api.evaluate_model(
        params["spec"],
        "all",
        limit=params["limit"],
        image_free=False,
        store=store,
        blueprint=blueprint_of(plan) if plan else None,
        mode=params["mode"],
        progress=progress,
        **api.evaluation_options(source, split),
        **_settings(params),
    )
    what = f"plan {plan.plan_id}" if plan else "dense model"
    where = params["split"] if source is None else f"{params['split']} (POPE {source.pope.name}, ScienceQA {split})"
    sqa = f"{result.sqa.accuracy:.3f}" if result.sqa else "-"
    return f"{what} on {where}: POPE balanced accuracy {result.pope_balanced_accuracy:.3f}, ScienceQA {sqa}"


@runs("calibrate")
def _run_calibrate(params: dict[str, Any], store: PlanStore, progress: JobProgress) -> str:
    features, cached = api.calibrate_model(
        params["spec"], params["samples"], progress=progress, store=store, data=_data(params), **_settings(params)
    )
    return f"{features.n_layers} layers calibrated on {features.samples} samples" + (" (cached)" if cached else "")


@runs("train-policy")
def _run_train(params: dict[str, Any], store: PlanStore, progress: JobProgress) -> str:
    record = api.train_policy(
        params["spec"],
        iters=params["iters"],
        group_size=params["group_size"],
        resume=params["resume"],
        backend=params.get("backend", "local"),
        backend_options={"address": params.get("address"), "num_workers": params.get("num_workers")},
        store=store,
        progress=progress,
        data=_data(params),
        **_settings(params),
    )
    return f"policy {record.policy_id} trained for {len(record.curve)} iterations"


@runs("plan")
def _run_plan(params: dict[str, Any], store: PlanStore, progress: JobProgress) -> str:
    blueprint = api.plan_baseline(
        params["spec"],
        params["method"],
        params["sparsity"],
        samples=params["samples"],
        store=store,
        progress=progress,
        options=params["options"],
        data=_data(params),
        **_settings(params),
    )
    api.save_plan(blueprint, store)
    return f"{params['method']}: plan {blueprint.plan_id}, {blueprint.achieved:.1%} of decoder parameters removed"


@runs("materialize")
def _run_materialize(params: dict[str, Any], store: PlanStore, progress: JobProgress) -> str:
    plan = store.get_plan(params["plan_id"])
    progress("materialize", 0, 1)
    path, reused = api.materialize_plan(params["spec"], blueprint_of(plan), store, **_settings(params))
    progress("materialize", 1, 1)
    return f"plan {plan.plan_id} {'is already materialized' if reused else 'materialized'} at {path}"


@runs("recover")
def _run_recover(params: dict[str, Any], store: PlanStore, progress: JobProgress) -> str:
    plan = store.get_plan(params["plan_id"])
    instructions = params.get("instructions")  # jobs stored before it existed have none
    result = api.recover(
        params["spec"],
        blueprint_of(plan),
        steps=params["steps"],
        rank=params["rank"],
        data=Path(instructions) if instructions else None,
        seed=params["seed"],
        store=store,
        progress=progress,
        limit=params["limit"],
        eval_data=_eval_data(params),
        **_settings(params),
    )
    before, after = result.before.pope_balanced_accuracy, result.after.pope_balanced_accuracy
    message = (
        f"plan {plan.plan_id} recovered in {result.steps} steps: POPE balanced accuracy {before:.3f} → {after:.3f}"
    )
    return " ".join([message, *(f"Notice: {n}" for n in result.notices)])


@runs("export")
def _run_export(params: dict[str, Any], store: PlanStore, progress: JobProgress) -> str:
    plan = store.get_plan(params["plan_id"])
    progress("export", 0, 1)
    artifact = Path(params["artifact"]) if params["artifact"] else None
    out_dir = api.export_plan(
        params["spec"],
        blueprint_of(plan),
        Path(params["out_dir"]),
        params["overwrite"],
        artifact,
        store,
        params["export_format"],
        **_settings(params),
    )
    progress("export", 1, 1)
    done = (
        f"{'recovered' if artifact else 'pruned'} plan {plan.plan_id} exported to {out_dir} ({params['export_format']})"
    )
    if params["export_format"] == "stock":
        done += "; " + api.stock_sizes(params["spec"], blueprint_of(plan)).describe()
    return done


# -- what each kind's progress reports, in order ------------------------------------------------------------------
LORA_STEP_COST = 4  # one LoRA step (forward and backward over a batch) counted as this many questions per sample


@steps_of("evaluate")
def _evaluate_steps(params: dict[str, Any]) -> list[Step]:
    source, split = api.evaluation_data(params["spec"], _data(params), params["split"], params["limit"])
    return evaluation_steps(api.load_benchmark("all", split, params["limit"], source), image_free=False)


@steps_of("recover")
def _recover_steps(params: dict[str, Any]) -> list[Step]:
    test = _eval_data(params)
    tasks = api.load_benchmark("all", api.evaluation_options(test)["split"], params["limit"], test)
    lora = params["steps"] * api.RecoveryConfig().batch_size * LORA_STEP_COST
    return [
        *evaluation_steps(tasks, image_free=True, phase="before recovery"),
        Step("recover", "LoRA recovery", params["steps"], lora),
        *evaluation_steps(tasks, image_free=True, phase="after recovery"),
    ]


@steps_of("train-policy")
def _train_steps(params: dict[str, Any]) -> list[Step]:
    iters = params["iters"] or api.GRPOConfig().iters
    return [Step("calibrate", "calibration", 128, 1), Step("GRPO", "policy training", iters, 50, inner=("plans",))]


# -- entry point ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hipp_core.job_runner", description="Run one recorded HiPP-Prune job."
    )
    parser.add_argument("job_id")
    parser.add_argument("--store", type=Path, default=None, help="Plan store file (default $HIPP_HOME/plans.duckdb).")
    args = parser.parse_args(argv)
    from hipp_core.config import quiet_libraries, set_threads

    quiet_libraries()
    set_threads()
    try:
        status = run_job(args.job_id, PlanStore(args.store))
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if status in ("done", "cancelled") else 1


if __name__ == "__main__":
    sys.exit(main())
