"""Background jobs: long work (evaluate, calibrate, train-policy, plan, materialize, recover, export) in a detached
worker.

The dashboard must neither block on minutes of work nor lose it when a browser tab closes or the server restarts, so
`submit` validates the parameters, records a job in the plan store and starts `python -m hipp_core.job_runner JOB_ID`
in a new session. The worker (`hipp_core.job_runner`, above the API it calls) reports progress through the store
(throttled, `Reporter`), stops itself when a cancel is requested, and finishes the job as done, failed (one-line
error) or cancelled. The store is the only shared state: any page, the CLI (`hipp jobs list`) or a restarted
dashboard reads the same rows; `PlanStore.reap_dead_jobs` fails a job whose worker died without finishing. Each
worker also appends to `<store dir>/jobs/<job_id>.log` (tracebacks included).

This module sits below the API (which offers `submit` to the pages): it knows each kind's parameters, not its work.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hipp_core.errors import USER_ERRORS, HippError
from hipp_core.evaluation.backends import BACKENDS
from hipp_core.job_progress import Tracker
from plan_store import JobRecord, PlanRecord, PlanStore

JobCheck = Callable[[dict[str, Any], PlanStore], dict[str, Any]]  # complete, validated params or HippError

REPORT_INTERVAL_S = 0.5  # at most ~2 store writes a second: progress stays live without hogging the store's lock
ACTIVE = ("queued", "running")


class JobCancelled(Exception):
    """Raised inside a worker's progress callback once a cancel was requested, to unwind the running API call."""


@dataclass(frozen=True)
class JobKind:
    name: str
    help: str
    check: JobCheck


KINDS: dict[str, JobKind] = {}


def register(name: str, help: str) -> Callable[[JobCheck], JobCheck]:
    """Declare a job kind by its parameter check; `hipp_core.job_runner` registers the work it runs."""

    def wrap(check: JobCheck) -> JobCheck:
        KINDS[name] = JobKind(name, help, check)
        return check

    return wrap


def kind(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise HippError(f"unknown job kind {name!r}; available: {', '.join(KINDS)}") from None


# -- submitting ---------------------------------------------------------------------------------------------------
def submit(kind_name: str, params: dict[str, Any], store: PlanStore | None = None) -> str:
    """Validate `params` for the kind, record the job and start its detached worker; returns the job id."""
    store = store or PlanStore()
    checked = kind(kind_name).check(dict(params), store)
    job_id = store.create_job(kind_name, checked)
    pid = _spawn(job_id, store)
    try:
        store.start_job(job_id, pid)
    except USER_ERRORS:
        pass  # the worker already marked itself running under the same pid, or the job was cancelled meanwhile
    return job_id


def log_path(store: PlanStore, job_id: str) -> Path:
    return store.path.parent / "jobs" / f"{job_id}.log"


def _spawn(job_id: str, store: PlanStore) -> int:
    """Start the worker in its own session: closing the tab or stopping Streamlit does not signal it."""
    log = log_path(store, job_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hipp_core.job_runner", job_id, "--store", str(store.path)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def find_jobs(store: PlanStore, kind_name: str, active_only: bool = True, **params: Any) -> list[JobRecord]:
    """Jobs of a kind whose params include `params` (newest first): what a page asks before offering a button."""
    return [
        job
        for job in store.list_jobs(limit=500)
        if job.kind == kind_name
        and (job.status in ACTIVE or not active_only)
        and all(job.params.get(k) == v for k, v in params.items())
    ]


# -- the worker ---------------------------------------------------------------------------------------------------
class Reporter:
    """The progress callback a worker hands to the API: throttled store updates, a log file, and the cancel check."""

    def __init__(
        self, store: PlanStore, job_id: str, interval: float = REPORT_INTERVAL_S, tracker: Tracker | None = None
    ) -> None:
        self.store, self.job_id, self.interval = store, job_id, interval
        self.tracker = tracker or Tracker([])  # the job's expected steps: one overall fraction, labelled by phase
        self.log_file = log_path(store, job_id)
        self.stage: str | None = None
        self.last = float("-inf")
        self.last_line: str | None = None

    def __call__(self, stage: str, done: int, total: int, metrics: dict | None = None) -> None:
        now = time.monotonic()
        fraction, label = self.tracker.update(stage, done, total)  # every report: the tracker follows the stages
        line = None
        if stage != self.stage:
            self.stage, line = stage, f"{label.rpartition(':')[0] or stage}: started"
        elif done < total and now - self.last < self.interval:
            return
        message = label + "".join(f"  {k}={_fmt(v)}" for k, v in (metrics or {}).items())
        if done >= total and line is None:
            line = message
        self.update(fraction, message, line)
        self.last = now

    def update(self, progress: float, message: str, line: str | None = None, check_cancel: bool = True) -> None:
        if line == self.last_line:  # a stage reporting its end twice is logged once
            line = None
        if line is not None:
            self.log(line)
            self.last_line = line
        job = self.store.update_job(self.job_id, progress, message, line)
        if check_cancel and job.cancel_requested:
            raise JobCancelled

    def log(self, line: str) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("a") as f:
            f.write(f"{datetime.now(UTC):%H:%M:%S} {line}\n")


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


# -- parameter checks -------------------------------------------------------------------------------------------
def _known(params: dict[str, Any], allowed: tuple[str, ...], kind_name: str) -> None:
    extra = sorted(set(params) - set(allowed))
    if extra:
        raise HippError(f"{kind_name} job got unknown parameters {', '.join(extra)}; allowed: {', '.join(allowed)}")


def _spec(params: dict[str, Any]) -> str:
    from hipp_core.models.loading import resolve_spec

    spec = params.get("spec")
    if not isinstance(spec, str) or not spec:
        raise HippError("a job needs `spec`: `embedded`, `embedded:qwen2_5_vl` or a local checkpoint directory")
    resolve_spec(spec)
    return spec


def _model_id(spec: str) -> str:
    from hipp_core.models.loading import checkpoint_id, resolve_spec

    return checkpoint_id(resolve_spec(spec))


def _plan(params: dict[str, Any], store: PlanStore, spec: str) -> PlanRecord:
    plan_id = params.get("plan_id")
    plan = store.get_plan(plan_id) if isinstance(plan_id, str) else None
    if plan is None:
        raise HippError(f"plan {plan_id!r} is not in the plan store; save the plan first")
    model_id = _model_id(spec)
    if plan.model_id != model_id:
        raise HippError(f"plan {plan_id} was made for model {plan.model_id}, not {spec} ({model_id}); pick its model")
    return plan


def _int(
    params: dict[str, Any], name: str, default: int | None, low: int, high: int, optional: bool = False
) -> int | None:
    """A bounded whole number; None only where it means something (`optional`, or no default)."""
    value = params.get(name, default)
    if value is None and (optional or default is None):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise HippError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return value


def _choice(params: dict[str, Any], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = params.get(name, default)
    if value not in allowed:
        raise HippError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _bool(params: dict[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise HippError(f"{name} must be true or false, got {value!r}")
    return value


SETTINGS = ("device", "dtype")  # every job that runs a model takes them, like the CLI's --device / --dtype


def _settings(params: dict[str, Any]) -> dict[str, str]:
    """Device and dtype (default auto), checked on this machine (the worker runs here): an absent GPU or a dtype the
    CPU cannot compute in is refused at submit time, with the loader's message."""
    from hipp_core.models.device import AUTO, resolve

    chosen = {name: params.get(name, AUTO) for name in SETTINGS}
    for name, value in chosen.items():
        if not isinstance(value, str) or not value.strip():
            raise HippError(f"{name} must be a name such as auto, got {value!r}")
    resolve(chosen["device"], chosen["dtype"])
    return chosen


DATA_KINDS = ("calibrate", "train-policy", "plan", "recover", "evaluate")  # the kinds that take a `data` parameter


def _data(params: dict[str, Any], spec: str, uses: str | None = None, needs: tuple[str, ...] = ()) -> dict[str, Any]:
    """The job's `data` (a `DataSource` as JSON; none: ShapesWorld for an embedded model), checked as the CLI checks
    its data options, every path named existing. With `uses`, a local checkpoint given no data, or data lacking a
    benchmark `needs` names, is refused now rather than by the worker."""
    from hipp_core.data.source import for_model
    from hipp_core.data.source_params import from_params, to_params
    from hipp_core.models.loading import EMBEDDED_ALIASES

    raw = params.get("data")
    source = None if raw is None else from_params(raw)
    if uses is not None:
        for_model(source, spec in EMBEDDED_ALIASES, spec, uses, needs)
    return to_params(source) if source is not None else {}


def blueprint_of(plan: PlanRecord):
    from hipp_core.blueprint import Blueprint

    return Blueprint.from_json(plan.blueprint)


# -- evaluate ---------------------------------------------------------------------------------------------------
@register("evaluate", "Score a plan (or the dense model) on dev or test: ShapesWorld, or the tuning data's own files.")
def _check_evaluate(params: dict[str, Any], store: PlanStore) -> dict[str, Any]:
    from hipp_core.data.source import for_model
    from hipp_core.data.source_params import from_params
    from hipp_core.data.world import SPLITS
    from hipp_core.models.loading import EMBEDDED_ALIASES
    from hipp_core.tuning import own_split

    _known(params, ("spec", "plan_id", "split", "limit", "mode", "data", *SETTINGS), "evaluate")
    spec = _spec(params)
    plan_id = params.get("plan_id")
    if plan_id is not None:
        plan_id = _plan(params, store, spec).plan_id
    data = _data(params, spec)
    source = from_params(data) if data else None
    if source is not None and source.real:  # the worker reads the files and checks them apart (`evaluation_data`)
        for_model(source, spec in EMBEDDED_ALIASES, spec, "evaluation", ("pope", "sqa"))
        split = params.get("split", "dev")
        if own_split(source, split) == "test":
            source.report_source()  # own POPE data without its test file is refused now, in one line
    else:
        split = _choice(params, "split", "dev", tuple(SPLITS))
    return {
        "spec": spec,
        "plan_id": plan_id,
        "split": split,
        "data": data,
        "limit": _int(params, "limit", 100, 1, 1_000_000, optional=True),  # None: the whole split
        "mode": _choice(params, "mode", "masked", ("masked", "physical")),
        **_settings(params),
    }


# -- calibrate --------------------------------------------------------------------------------------------------
@register("calibrate", "Per-layer visual sensitivity, activation statistics and unit scores.")
def _check_calibrate(params: dict[str, Any], store: PlanStore) -> dict[str, Any]:
    _known(params, ("spec", "samples", "data", *SETTINGS), "calibrate")
    spec = _spec(params)
    return {
        "spec": spec,
        "samples": _int(params, "samples", 128, 1, 100_000),
        "data": _data(params, spec, "calibration", ("pope",)),
        **_settings(params),
    }


# -- train-policy -----------------------------------------------------------------------------------------------
@register("train-policy", "Train the preference-conditioned policy with plan-level GRPO.")
def _check_train(params: dict[str, Any], store: PlanStore) -> dict[str, Any]:
    allowed = ("spec", "iters", "group_size", "resume", "backend", "address", "num_workers", "data", *SETTINGS)
    _known(params, allowed, "train-policy")
    address = params.get("address")
    if address is not None and not (isinstance(address, str) and address.strip()):
        raise HippError(f"address must be local, auto or ray://host:port, got {address!r}")
    spec = _spec(params)
    return {
        "spec": spec,
        "data": _data(params, spec, "rewards", ("pope", "sqa")),
        "iters": _int(params, "iters", None, 1, 100_000),
        "group_size": _int(params, "group_size", None, 2, 1024),
        "resume": _bool(params, "resume", True),
        "backend": _choice(params, "backend", "local", tuple(BACKENDS)),
        "address": address,
        "num_workers": _int(params, "num_workers", None, 1, 4096),
        **_settings(params),
    }


# -- plan -------------------------------------------------------------------------------------------------------
@register("plan", "Make a plan with a registered planning method at a given sparsity and keep it in the store.")
def _check_plan(params: dict[str, Any], store: PlanStore) -> dict[str, Any]:
    from hipp_core import methods, validation

    _known(params, ("spec", "method", "sparsity", "options", "samples", "data", *SETTINGS), "plan")
    method = methods.get(params.get("method"))
    options = params.get("options") or {}
    if not isinstance(options, dict):
        raise HippError(f"options must be a mapping of the method's settings to values, got {options!r}")
    method.configure(options)  # refuses a setting the method does not take, or a value out of range
    spec = _spec(params)
    return {
        "spec": spec,
        "method": method.name,
        "sparsity": validation.sparsity(params.get("sparsity")),
        "options": options,
        "samples": _int(params, "samples", 128, 1, 100_000),
        # What the method's calibration and selection read; whether it needs any is the method's to say, when it runs.
        "data": _data(params, spec),
        **_settings(params),
    }


# -- materialize ------------------------------------------------------------------------------------------------
@register("materialize", "Build the physically pruned checkpoint of a plan inside the store.")
def _check_plan_job(params: dict[str, Any], store: PlanStore) -> dict[str, Any]:
    _known(params, ("spec", "plan_id", *SETTINGS), "materialize")
    spec = _spec(params)
    return {"spec": spec, "plan_id": _plan(params, store, spec).plan_id, **_settings(params)}


# -- recover ----------------------------------------------------------------------------------------------------
@register("recover", "LoRA recovery of a pruned plan, merged, evaluated before and after.")
def _check_recover(params: dict[str, Any], store: PlanStore) -> dict[str, Any]:
    from hipp_core.data.instructions import load_instructions
    from hipp_core.data.source_params import from_params
    from hipp_core.recover import check_recovery_data

    allowed = ("spec", "plan_id", "steps", "rank", "seed", "limit", "data", "instructions", *SETTINGS)
    _known(params, allowed, "recover")
    spec = _spec(params)
    data = _data(params, spec)
    test = from_params(data).report_source() if data else None  # own data: refused now without its test files
    instructions = params.get("instructions") or None
    if instructions is not None:
        instructions = Path(str(instructions).strip()).expanduser().absolute()
        load_instructions(instructions)  # a missing or malformed file is refused now, in one line
    if test is not None:  # refused now; without own data the worker's run says in its message what it trained on
        advice = "name its LLaVA-format instruction file (the Instruction file field of the Export or Pareto page)"
        check_recovery_data(spec, instructions, own_test_data=True, advice=advice)
    return {
        "data": data,
        "instructions": str(instructions) if instructions else None,
        "spec": spec,
        "plan_id": _plan(params, store, spec).plan_id,
        "steps": _int(params, "steps", 300, 1, 100_000),
        "rank": _int(params, "rank", 8, 1, 1024),
        "seed": _int(params, "seed", 0, 0, 2**31 - 1),
        "limit": _int(params, "limit", None, 1, 1_000_000),  # test questions per set before / after; None = all
        **_settings(params),
    }


# -- export -----------------------------------------------------------------------------------------------------
def check_export_target(out_dir: str, overwrite: bool) -> Path:
    """Where an export may go: an absolute path whose parent folder exists; an existing path only with `overwrite`,
    and then only a previous HiPP-Prune export (an export never overwrites unless asked)."""
    from hipp_core.models.loading import prune_plan

    if not isinstance(out_dir, str) or not out_dir.strip():
        raise HippError("give the directory to export to, e.g. /tmp/llava-pruned")
    path = Path(out_dir.strip()).expanduser()
    if not path.is_absolute():
        raise HippError(f"{out_dir} is a relative path; give an absolute directory such as /tmp/{path.name}")
    if not path.parent.is_dir():
        raise HippError(f"the parent folder {path.parent} does not exist; create it first or choose another path")
    if path.exists():
        if not overwrite:
            raise HippError(f"{path} already exists; choose a new directory or tick overwrite to replace an export")
        if not (path.is_dir() and prune_plan(path) is not None):
            raise HippError(f"{path} exists and is not a HiPP-Prune export; refusing to replace it")
    return path


@register("export", "Write a pruned (or recovered) plan as a checkpoint plain transformers loads.")
def _check_export(params: dict[str, Any], store: PlanStore) -> dict[str, Any]:
    from hipp_core.export import check_format
    from hipp_core.models.loading import prune_plan

    _known(params, ("spec", "plan_id", "out_dir", "overwrite", "artifact", "export_format", *SETTINGS), "export")
    export_format = params.get("export_format", "exact")
    check_format(export_format)
    spec = _spec(params)
    plan = _plan(params, store, spec)
    overwrite = _bool(params, "overwrite", False)
    out_dir = check_export_target(params.get("out_dir"), overwrite)
    artifact = params.get("artifact")
    if artifact is not None:
        recovered = {a.path for a in store.list_artifacts(plan.plan_id) if a.kind == "recovered"}
        if artifact not in recovered:
            raise HippError(f"{artifact} is not a recovered artifact of plan {plan.plan_id}; run a recover job first")
        if not Path(artifact).is_dir() or prune_plan(Path(artifact)) is None:
            raise HippError(f"recovered artifact {artifact} is missing or not an export; run the recover job again")
    return {
        "spec": spec,
        "plan_id": plan.plan_id,
        "out_dir": str(out_dir),
        "overwrite": overwrite,
        "artifact": artifact,
        "export_format": export_format,
        **_settings(params),
    }
