"""`PlanStore`: the durable, shared record of models, plans, evaluations, policies, artifacts and jobs.

Results are expensive, so rows describing a result (models, plans, evaluations, calibrations, artifacts) are written
once and never overwritten: a second write of the same key returns what is already stored. Policies and jobs are
live state and are updated in place. Every public method is one short transaction (see `db.py`).
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from . import transfer
from .db import Database
from .errors import StoreError
from .jobs import append_log, process_alive
from .pareto import non_dominated
from .records import (
    ARTIFACT_KINDS,
    DENSE_PLAN_ID,
    TERMINAL_JOB_STATUSES,
    ArtifactKind,
    ArtifactRecord,
    CalibrationRecord,
    EvalKey,
    EvalMode,
    EvaluationDraft,
    EvaluationRecord,
    ImportSummary,
    JobRecord,
    JobStatus,
    ModelRecord,
    ParetoPoint,
    PlanDraft,
    PlanRecord,
    PolicyRecord,
    Preference,
    Scoring,
    canonical_json,
    digest,
    normalize_preference,
    utc,
)

_PLAN_COLUMNS = ("plan_id", "model_id", "blueprint_json", "source", "sparsity", "preference_json", "created_at")
_EVAL_KEY_COLUMNS = ("model_id", "plan_id", "bench", "split", "mode", "scoring", "sample_limit")
_EVAL_COLUMNS = (*_EVAL_KEY_COLUMNS, "metrics_json", "sample_count", "seconds", "created_at")
_JOB_COLUMNS = (
    "job_id", "kind", "status", "progress", "message", "log_tail", "error", "pid", "params_json", "cancel_requested",
    "created_at", "started_at", "finished_at",
)  # fmt: skip
_DEFAULT_TIMEOUT_S = 30.0


def home_dir() -> Path:
    """User state that is not re-creatable (the store, trained policies); `$HIPP_HOME`, default ~/.hipp."""
    return Path(os.environ.get("HIPP_HOME", Path.home() / ".hipp")).expanduser()


def default_store_path() -> Path:
    return home_dir() / "plans.duckdb"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _select(columns: tuple[str, ...], alias: str = "") -> str:
    return ", ".join(f"{alias}.{c}" if alias else c for c in columns)


def _insert(conn: duckdb.DuckDBPyConnection, table: str, row: dict[str, Any], conflict: str = "") -> None:
    """Columns are named so an insert stays valid after a later migration adds a column. `conflict` is '' (fail),
    'OR IGNORE' (first write wins) or 'OR REPLACE'."""
    marks = ", ".join(["?"] * len(row))
    conn.execute(f"INSERT {conflict} INTO {table} ({', '.join(row)}) VALUES ({marks})", list(row.values()))


def _preference_distance(target: Preference, column: str) -> tuple[str, list[Any]]:
    """SQL for the Euclidean distance between a stored preference (JSON in `column`) and `target`, with its
    parameters; an objective one side lacks weighs 0 there."""
    terms = [f"(coalesce(CAST(json_extract({column}, ?) AS DOUBLE), 0) - ?) ** 2" for _ in target]
    params: list[Any] = [x for name, weight in target.items() for x in (f"$.{name}", weight)]
    return f"sqrt({' + '.join(terms)})", params


def _key_params(key: EvalKey) -> list[Any]:
    return [key.model_id, key.plan_id, key.bench, key.split, key.mode, key.scoring, key.sample_limit]


def _plan_from_row(row: tuple) -> PlanRecord:
    plan_id, model_id, blueprint_json, source, sparsity, preference_json, created_at = row
    return PlanRecord(
        plan_id=plan_id,
        model_id=model_id,
        blueprint=json.loads(blueprint_json),
        source=source,
        sparsity=sparsity,
        preference=None if preference_json is None else json.loads(preference_json),
        created_at=utc(created_at),
    )


def _evaluation_from_row(row: tuple) -> EvaluationRecord:
    model_id, plan_id, bench, split, mode, scoring, limit, metrics_json, sample_count, seconds, created_at = row
    return EvaluationRecord(
        key=EvalKey(model_id, plan_id, bench, split, mode, scoring, limit or None),
        metrics=json.loads(metrics_json),
        sample_count=sample_count,
        seconds=seconds,
        created_at=utc(created_at),
    )


def _job_from_row(row: tuple) -> JobRecord:
    job_id, kind, status, progress, message, log_tail, error, pid, params_json, cancel, created, started, finished = row
    return JobRecord(
        job_id=job_id,
        kind=kind,
        status=status,
        progress=progress,
        message=message,
        log_tail=log_tail,
        error=error,
        pid=pid,
        params=json.loads(params_json),
        cancel_requested=cancel,
        created_at=utc(created),
        started_at=utc(started),
        finished_at=utc(finished),
    )


def _objective_value(name: str, plan: PlanRecord, evaluation: EvaluationRecord) -> float | None:
    """`sparsity` is the plan's own column; any other name is a metric. Missing or non-numeric values disqualify the
    evaluation, since an unknown value can be neither on nor off the front."""
    value = plan.sparsity if name == "sparsity" else evaluation.metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


class PlanStore:
    """Handle to a store file. Holds no connection between calls, so it is cheap to keep and safe to share."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = _DEFAULT_TIMEOUT_S) -> None:
        self.path = Path(path).expanduser().resolve() if path is not None else default_store_path().resolve()
        self._db = Database(self.path, timeout)

    def version(self) -> tuple[int, ...]:
        """A token that changes whenever the file is written, read without opening a connection (DuckDB appends to
        `<file>.wal` on commit and rewrites the file on checkpoint): the dashboard keys its cached queries on it, so
        a slider move reads nothing from disk unless a job has written meanwhile."""
        token: list[int] = []
        for path in (self.path, self.path.with_name(self.path.name + ".wal")):
            try:
                st = path.stat()
            except FileNotFoundError:
                token += [0, 0]
            else:
                token += [st.st_mtime_ns, st.st_size]
        return tuple(token)

    # models and calibrations

    def put_model(self, model_id: str, spec: str, family: str, config: dict[str, Any]) -> ModelRecord:
        with self._db.transaction() as conn:
            row = {"model_id": model_id, "spec": spec, "family": family, "config_json": canonical_json(config)}
            _insert(conn, "models", {**row, "created_at": _now()}, "OR IGNORE")
            return self._model(conn, model_id)

    def get_model(self, model_id: str) -> ModelRecord | None:
        with self._db.transaction(read_only=True) as conn:
            return self._model(conn, model_id)

    def put_calibration(
        self,
        model_id: str,
        calib_key: str,
        *,
        payload_path: str | os.PathLike[str] | None = None,
        payload: dict[str, Any] | None = None,
    ) -> CalibrationRecord:
        """Small calibration results go inline as JSON; large ones stay in a file the row points to."""
        if (payload_path is None) == (payload is None):
            raise ValueError("give exactly one of payload_path and payload")
        with self._db.transaction() as conn:
            self._require_model(conn, model_id)
            row = {
                "model_id": model_id,
                "calib_key": calib_key,
                "payload_path": None if payload_path is None else str(payload_path),
                "payload_json": None if payload is None else canonical_json(payload),
                "created_at": _now(),
            }
            _insert(conn, "calibrations", row, "OR IGNORE")
            return self._calibration(conn, model_id, calib_key)

    def get_calibration(self, model_id: str, calib_key: str) -> CalibrationRecord | None:
        with self._db.transaction(read_only=True) as conn:
            return self._calibration(conn, model_id, calib_key)

    # plans

    def put_plan(self, draft: PlanDraft) -> PlanRecord:
        return self.put_plans([draft])[0]

    def put_plans(self, drafts: Sequence[PlanDraft]) -> list[PlanRecord]:
        """Store many plans in one transaction (a search emits hundreds; one transaction each would cost seconds).
        A plan already stored keeps its original source and preference."""
        now = _now()
        with self._db.transaction() as conn:
            for model_id in {d.model_id for d in drafts}:
                self._require_model(conn, model_id)
            for d in drafts:
                preference = None if d.preference is None else canonical_json(d.preference)
                row = {"plan_id": d.plan_id, "model_id": d.model_id, "blueprint_json": d.blueprint_json}
                row |= {"source": d.source, "sparsity": d.sparsity, "preference_json": preference, "created_at": now}
                _insert(conn, "plans", row, "OR IGNORE")
            return [self._plan(conn, d.plan_id) for d in drafts]

    def get_plan(self, plan_id: str) -> PlanRecord | None:
        with self._db.transaction(read_only=True) as conn:
            return self._plan(conn, plan_id)

    def list_plans(self, model_id: str) -> list[PlanRecord]:
        with self._db.transaction(read_only=True) as conn:
            rows = conn.execute(
                f"SELECT {_select(_PLAN_COLUMNS)} FROM plans WHERE model_id = ? ORDER BY created_at, plan_id",
                [model_id],
            ).fetchall()
        return [_plan_from_row(row) for row in rows]

    def plans_near_preference(self, model_id: str, w: Preference, k: int) -> list[tuple[PlanRecord, float]]:
        """The `k` plans whose preference is closest to `w` (both on the simplex), nearest first, with distances.
        Plans without a preference (baselines, manual ones) are not candidates."""
        if k < 0:
            raise ValueError(f"k must be non-negative, got {k}")
        distance, params = _preference_distance(normalize_preference(w), "preference_json")
        with self._db.transaction(read_only=True) as conn:
            rows = conn.execute(
                f"SELECT {_select(_PLAN_COLUMNS)}, {distance} AS distance "
                "FROM plans WHERE model_id = ? AND preference_json IS NOT NULL ORDER BY distance, plan_id LIMIT ?",
                [*params, model_id, k],
            ).fetchall()
        return [(_plan_from_row(row[:-1]), row[-1]) for row in rows]

    # evaluations

    def get_evaluation(self, key: EvalKey) -> EvaluationRecord | None:
        with self._db.transaction(read_only=True) as conn:
            return self._evaluation(conn, key)

    def put_evaluation(
        self, key: EvalKey, metrics: dict[str, float], sample_count: int, seconds: float
    ) -> EvaluationRecord:
        """Returns the stored record, which is an earlier one if this key was already evaluated: first result wins."""
        return self.put_evaluations([EvaluationDraft(key, metrics, sample_count, seconds)])[0]

    def put_evaluations(self, results: Sequence[EvaluationDraft]) -> list[EvaluationRecord]:
        now = _now()
        with self._db.transaction() as conn:
            for r in results:
                self._require_model(conn, r.key.model_id)
                if r.key.plan_id != DENSE_PLAN_ID:
                    self._require_plan(conn, r.key.plan_id, r.key.model_id)
                values = [
                    *_key_params(r.key),
                    canonical_json(r.metrics, allow_nan=True),
                    r.sample_count,
                    r.seconds,
                    now,
                ]
                _insert(conn, "evaluations", dict(zip(_EVAL_COLUMNS, values, strict=True)), "OR IGNORE")
            return [self._evaluation(conn, r.key) for r in results]

    def get_or_compute_evaluation(
        self, key: EvalKey, compute: Callable[[], tuple[dict[str, float], int]]
    ) -> tuple[EvaluationRecord, bool]:
        """The stored evaluation for `key` (cached=True), or run `compute` -> (metrics, sample_count) and store it.

        `compute` runs with no connection open, so a minutes-long evaluation never locks other processes out. Two
        processes may then compute the same key at once; the first to commit wins and both return its record.
        """
        cached = self.get_evaluation(key)
        if cached is not None:
            return cached, True
        started = time.perf_counter()
        metrics, sample_count = compute()
        return self.put_evaluation(key, metrics, sample_count, time.perf_counter() - started), False

    def pareto_front(
        self,
        model_id: str,
        objectives: Sequence[tuple[str, bool]],
        sparsity_band: tuple[float, float] | None = None,
        *,
        bench: str | None = None,
        split: str | None = None,
        mode: EvalMode | None = None,
        scoring: Scoring | None = None,
    ) -> list[ParetoPoint]:
        """Non-dominated evaluations of the model's plans under `objectives` [(name, higher_is_better)].

        An objective named `sparsity` is the plan's sparsity; any other name is a metric, and evaluations lacking it
        are not candidates. Each evaluation is one candidate point, so pass bench/split/mode/scoring to compare like
        with like. The dense model is a reference, not a plan, and is left out. The front comes best-first by the
        first objective.
        """
        if not objectives:
            raise StoreError("pareto_front needs at least one objective")
        band: tuple[str, list[Any]] | None = None
        if sparsity_band is not None:
            low, high = sparsity_band
            if not 0.0 <= low <= high <= 1.0:
                raise StoreError(f"sparsity band {sparsity_band} must satisfy 0 <= low <= high <= 1")
            band = ("p.sparsity BETWEEN ? AND ?", [low, high])
        names = [name for name, _ in objectives]
        candidates = []
        for plan, evaluation in self._evaluations_with_plans(model_id, bench, split, mode, scoring, band):
            values = [_objective_value(name, plan, evaluation) for name in names]
            if None not in values:
                candidates.append(ParetoPoint(plan, evaluation, tuple(values)))
        if not candidates:
            return []
        maximize = [higher for _, higher in objectives]
        mask = non_dominated(np.array([c.values for c in candidates]), maximize)
        front = [c for c, keep in zip(candidates, mask, strict=True) if keep]
        front.sort(key=lambda c: (*(-v if up else v for v, up in zip(c.values, maximize, strict=True)), c.plan.plan_id))
        return front

    def list_evaluations(
        self,
        model_id: str,
        *,
        bench: str | None = None,
        split: str | None = None,
        mode: EvalMode | None = None,
        scoring: Scoring | None = None,
    ) -> list[tuple[PlanRecord, EvaluationRecord]]:
        """Every evaluation of the model's plans with its plan, oldest first: the whole cloud the dashboard plots,
        where `pareto_front` returns only its non-dominated part. The dense model has no plan row and is left out."""
        return self._evaluations_with_plans(model_id, bench, split, mode, scoring)

    def _evaluations_with_plans(
        self,
        model_id: str,
        bench: str | None,
        split: str | None,
        mode: EvalMode | None,
        scoring: Scoring | None,
        extra: tuple[str, list[Any]] | None = None,
    ) -> list[tuple[PlanRecord, EvaluationRecord]]:
        """The model's plan evaluations (dense left out) matching the given key fields and an `extra` SQL condition
        on `p` (plans) / `e` (evaluations) with its parameters, oldest first."""
        conditions, params = ["e.model_id = ?", "e.plan_id <> ?"], [model_id, DENSE_PLAN_ID]
        for column, value in (("bench", bench), ("split", split), ("mode", mode), ("scoring", scoring)):
            if value is not None:
                conditions.append(f"e.{column} = ?")
                params.append(value)
        if extra is not None:
            conditions.append(extra[0])
            params += extra[1]
        with self._db.transaction(read_only=True) as conn:
            rows = conn.execute(
                f"SELECT {_select(_PLAN_COLUMNS, 'p')}, {_select(_EVAL_COLUMNS, 'e')} "
                "FROM evaluations e JOIN plans p ON p.plan_id = e.plan_id "
                f"WHERE {' AND '.join(conditions)} ORDER BY e.created_at, e.plan_id, e.bench, e.split, e.mode",
                params,
            ).fetchall()
        split_at = len(_PLAN_COLUMNS)
        return [(_plan_from_row(row[:split_at]), _evaluation_from_row(row[split_at:])) for row in rows]

    def nearest_evaluated(
        self, model_id: str, w: Preference, k: int | None
    ) -> list[tuple[PlanRecord, EvaluationRecord, float]]:
        """The `k` evaluated plans (all with `k=None`) whose preference is nearest `w`, each with its largest
        evaluation and the distance. Ranked inside DuckDB: reading every plan's blueprint to rank them in Python took
        a third of a second once GRPO had stored a few hundred plans."""
        if k is not None and k < 0:
            raise ValueError(f"k must be non-negative, got {k}")
        distance, params = _preference_distance(normalize_preference(w), "p.preference_json")
        with self._db.transaction(read_only=True) as conn:
            rows = conn.execute(
                f"WITH ranked AS (SELECT p.plan_id, e.bench, e.split, e.mode, e.scoring, e.sample_limit, "
                f"{distance} AS distance, "
                "row_number() OVER (PARTITION BY p.plan_id ORDER BY e.sample_count DESC, e.created_at DESC) AS rn "
                "FROM plans p JOIN evaluations e ON e.plan_id = p.plan_id "
                "WHERE p.model_id = ? AND p.preference_json IS NOT NULL) "
                f"SELECT {_select(_PLAN_COLUMNS, 'p')}, {_select(_EVAL_COLUMNS, 'e')}, r.distance FROM ranked r "
                "JOIN plans p ON p.plan_id = r.plan_id JOIN evaluations e ON e.plan_id = r.plan_id "
                "AND e.bench = r.bench AND e.split = r.split AND e.mode = r.mode AND e.scoring = r.scoring "
                "AND e.sample_limit = r.sample_limit "
                "WHERE r.rn = 1 ORDER BY r.distance, r.plan_id" + ("" if k is None else f" LIMIT {int(k)}"),
                [*params, model_id],
            ).fetchall()
        split_at = len(_PLAN_COLUMNS)
        return [(_plan_from_row(row[:split_at]), _evaluation_from_row(row[split_at:-1]), row[-1]) for row in rows]

    def plan_evaluations(self, plan_id: str) -> list[EvaluationRecord]:
        """All stored measurements of one plan (splits, limits, masked / physical / recovered), oldest first."""
        with self._db.transaction(read_only=True) as conn:
            rows = conn.execute(
                f"SELECT {_select(_EVAL_COLUMNS)} FROM evaluations WHERE plan_id = ? "
                "ORDER BY created_at, bench, split, mode",
                [plan_id],
            ).fetchall()
        return [_evaluation_from_row(row) for row in rows]

    # policies and artifacts

    def put_policy(
        self,
        policy_id: str,
        model_id: str,
        config: dict[str, Any],
        checkpoint_path: str | os.PathLike[str] | None = None,
        curve: Sequence[dict[str, float]] = (),
    ) -> PolicyRecord:
        """Insert or replace: a policy is rewritten as it trains (new checkpoint, longer curve)."""
        with self._db.transaction() as conn:
            self._require_model(conn, model_id)
            row = {
                "policy_id": policy_id,
                "model_id": model_id,
                "config_json": canonical_json(config),
                "checkpoint_path": None if checkpoint_path is None else str(checkpoint_path),
                "curve_json": canonical_json(list(curve), allow_nan=True),
                "updated_at": _now(),
            }
            _insert(conn, "policies", row, "OR REPLACE")
            return self._policy(conn, policy_id)

    def get_policy(self, policy_id: str) -> PolicyRecord | None:
        with self._db.transaction(read_only=True) as conn:
            return self._policy(conn, policy_id)

    def latest_policy(self, model_id: str) -> PolicyRecord | None:
        """The policy of `model_id` written most recently (the one `hipp blueprint` and the dashboard use)."""
        with self._db.transaction(read_only=True) as conn:
            row = conn.execute(
                "SELECT policy_id FROM policies WHERE model_id = ? ORDER BY updated_at DESC, policy_id LIMIT 1",
                [model_id],
            ).fetchone()
            return None if row is None else self._policy(conn, row[0])

    def list_calibrations(self, model_id: str) -> list[CalibrationRecord]:
        """The model's calibration results under every key, oldest first."""
        with self._db.transaction(read_only=True) as conn:
            keys = conn.execute(
                "SELECT calib_key FROM calibrations WHERE model_id = ? ORDER BY created_at, calib_key", [model_id]
            ).fetchall()
            return [self._calibration(conn, model_id, key) for (key,) in keys]

    def put_artifact(self, plan_id: str, kind: ArtifactKind, path: str | os.PathLike[str]) -> ArtifactRecord:
        if kind not in ARTIFACT_KINDS:
            raise StoreError(f"artifact kind {kind!r} is not one of {', '.join(ARTIFACT_KINDS)}")
        artifact_id = digest(plan_id, kind, str(path))
        with self._db.transaction() as conn:
            self._require_plan(conn, plan_id)
            row = {
                "artifact_id": artifact_id,
                "plan_id": plan_id,
                "kind": kind,
                "path": str(path),
                "created_at": _now(),
            }
            _insert(conn, "artifacts", row, "OR IGNORE")
            return self._artifacts(conn, "artifact_id = ?", [artifact_id])[0]

    def list_artifacts(self, plan_id: str) -> list[ArtifactRecord]:
        with self._db.transaction(read_only=True) as conn:
            return self._artifacts(conn, "plan_id = ?", [plan_id])

    # jobs

    def create_job(self, kind: str, params: dict[str, Any]) -> str:
        job_id = uuid.uuid4().hex
        with self._db.transaction() as conn:
            row = {"job_id": job_id, "kind": kind, "status": "queued", "progress": 0.0, "message": "", "log_tail": ""}
            row |= {"params_json": canonical_json(params), "cancel_requested": False, "created_at": _now()}
            _insert(conn, "jobs", row)
        return job_id

    def start_job(self, job_id: str, pid: int | None = None) -> JobRecord:
        """Mark a queued job running in process `pid` (default: this one), which `reap_dead_jobs` watches."""
        with self._db.transaction() as conn:
            self._require_job_status(conn, job_id, ("queued",), "start")
            conn.execute(
                "UPDATE jobs SET status = 'running', pid = ?, started_at = ? WHERE job_id = ?",
                [os.getpid() if pid is None else pid, _now(), job_id],
            )
            return self._job(conn, job_id)

    def update_job(self, job_id: str, progress: float, message: str, log_line: str | None = None) -> JobRecord:
        """Returns the job, so a worker reporting progress also learns of a cancel request without another call."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress {progress} is outside [0, 1]")
        with self._db.transaction() as conn:
            job = self._require_job_status(conn, job_id, ("running",), "update")
            tail = job.log_tail if log_line is None else append_log(job.log_tail, log_line)
            conn.execute(
                "UPDATE jobs SET progress = ?, message = ?, log_tail = ? WHERE job_id = ?",
                [progress, message, tail, job_id],
            )
            return self._job(conn, job_id)

    def finish_job(self, job_id: str, status: JobStatus, error: str | None = None) -> JobRecord:
        if status not in TERMINAL_JOB_STATUSES:
            raise ValueError(f"a job finishes as one of {', '.join(TERMINAL_JOB_STATUSES)}, not {status!r}")
        with self._db.transaction() as conn:
            job = self._require_job_status(conn, job_id, ("queued", "running"), "finish")
            conn.execute(
                "UPDATE jobs SET status = ?, error = ?, progress = ?, finished_at = ? WHERE job_id = ?",
                [status, error, 1.0 if status == "done" else job.progress, _now(), job_id],
            )
            return self._job(conn, job_id)

    def request_cancel(self, job_id: str) -> JobRecord:
        """Cancellation is cooperative: a running worker sees the flag and stops itself. A queued job has no worker
        to ask, so it is cancelled at once; a finished job is left as it is."""
        with self._db.transaction() as conn:
            job = self._require_job(conn, job_id)
            if job.status == "queued":
                conn.execute(
                    "UPDATE jobs SET status = 'cancelled', cancel_requested = true, finished_at = ? WHERE job_id = ?",
                    [_now(), job_id],
                )
            elif job.status == "running":
                conn.execute("UPDATE jobs SET cancel_requested = true WHERE job_id = ?", [job_id])
            return self._job(conn, job_id)

    def cancel_requested(self, job_id: str) -> bool:
        with self._db.transaction(read_only=True) as conn:
            return self._require_job(conn, job_id).cancel_requested

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._db.transaction(read_only=True) as conn:
            return self._job(conn, job_id)

    def list_jobs(self, status: JobStatus | None = None, limit: int | None = None) -> list[JobRecord]:
        """Newest first."""
        with self._db.transaction(read_only=True) as conn:
            rows = conn.execute(
                f"SELECT {_select(_JOB_COLUMNS)} FROM jobs WHERE ? IS NULL OR status = ? ORDER BY created_at DESC, job_id "
                "LIMIT ?",
                [status, status, limit],
            ).fetchall()
        return [_job_from_row(row) for row in rows]

    def reap_dead_jobs(self) -> list[str]:
        """Fail the running jobs whose process is gone (killed, crashed, machine rebooted); returns their ids."""
        with self._db.transaction() as conn:
            running = conn.execute("SELECT job_id, pid FROM jobs WHERE status = 'running'").fetchall()
            dead = [(job_id, pid) for job_id, pid in running if pid is None or not process_alive(pid)]
            for job_id, pid in dead:
                conn.execute(
                    "UPDATE jobs SET status = 'failed', error = ?, finished_at = ? WHERE job_id = ?",
                    [f"worker process {pid} exited without finishing the job", _now(), job_id],
                )
        return [job_id for job_id, _ in dead]

    # parquet

    def export_parquet(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write models, plans and evaluations as `<table>.parquet` files; returns their paths."""
        with self._db.transaction(read_only=True) as conn:
            return transfer.export_tables(conn, Path(directory))

    def import_parquet(self, directory: str | os.PathLike[str]) -> ImportSummary:
        """Add the rows of an export that this store lacks; rows it already has are skipped, never replaced."""
        with self._db.transaction() as conn:
            return transfer.import_tables(conn, Path(directory))

    # single-row reads inside an open transaction

    def _model(self, conn: duckdb.DuckDBPyConnection, model_id: str) -> ModelRecord | None:
        row = conn.execute(
            "SELECT model_id, spec, family, config_json, created_at FROM models WHERE model_id = ?", [model_id]
        ).fetchone()
        if row is None:
            return None
        return ModelRecord(row[0], row[1], row[2], json.loads(row[3]), utc(row[4]))

    def _calibration(self, conn: duckdb.DuckDBPyConnection, model_id: str, calib_key: str) -> CalibrationRecord | None:
        row = conn.execute(
            "SELECT model_id, calib_key, payload_path, payload_json, created_at FROM calibrations "
            "WHERE model_id = ? AND calib_key = ?",
            [model_id, calib_key],
        ).fetchone()
        if row is None:
            return None
        return CalibrationRecord(row[0], row[1], row[2], None if row[3] is None else json.loads(row[3]), utc(row[4]))

    def _plan(self, conn: duckdb.DuckDBPyConnection, plan_id: str) -> PlanRecord | None:
        row = conn.execute(f"SELECT {_select(_PLAN_COLUMNS)} FROM plans WHERE plan_id = ?", [plan_id]).fetchone()
        return None if row is None else _plan_from_row(row)

    def _evaluation(self, conn: duckdb.DuckDBPyConnection, key: EvalKey) -> EvaluationRecord | None:
        match = " AND ".join(f"{c} = ?" for c in _EVAL_KEY_COLUMNS)
        row = conn.execute(
            f"SELECT {_select(_EVAL_COLUMNS)} FROM evaluations WHERE {match}", _key_params(key)
        ).fetchone()
        return None if row is None else _evaluation_from_row(row)

    def _policy(self, conn: duckdb.DuckDBPyConnection, policy_id: str) -> PolicyRecord | None:
        row = conn.execute(
            "SELECT policy_id, model_id, config_json, checkpoint_path, curve_json, updated_at FROM policies "
            "WHERE policy_id = ?",
            [policy_id],
        ).fetchone()
        if row is None:
            return None
        return PolicyRecord(row[0], row[1], json.loads(row[2]), row[3], json.loads(row[4]), utc(row[5]))

    def _artifacts(self, conn: duckdb.DuckDBPyConnection, where: str, params: list[Any]) -> list[ArtifactRecord]:
        rows = conn.execute(
            f"SELECT artifact_id, plan_id, kind, path, created_at FROM artifacts WHERE {where} "
            "ORDER BY created_at, artifact_id",
            params,
        ).fetchall()
        return [ArtifactRecord(r[0], r[1], r[2], r[3], utc(r[4])) for r in rows]

    def _job(self, conn: duckdb.DuckDBPyConnection, job_id: str) -> JobRecord | None:
        row = conn.execute(f"SELECT {_select(_JOB_COLUMNS)} FROM jobs WHERE job_id = ?", [job_id]).fetchone()
        return None if row is None else _job_from_row(row)

    # existence and state checks

    def _require_model(self, conn: duckdb.DuckDBPyConnection, model_id: str) -> None:
        if self._model(conn, model_id) is None:
            raise StoreError(f"model {model_id!r} is not in plan store {self.path}; register it with put_model first")

    def _require_plan(self, conn: duckdb.DuckDBPyConnection, plan_id: str, model_id: str | None = None) -> None:
        plan = self._plan(conn, plan_id)
        if plan is None:
            raise StoreError(f"plan {plan_id!r} is not in plan store {self.path}; store it with put_plan first")
        if model_id is not None and plan.model_id != model_id:
            raise StoreError(f"plan {plan_id!r} belongs to model {plan.model_id!r}, not {model_id!r}")

    def _require_job(self, conn: duckdb.DuckDBPyConnection, job_id: str) -> JobRecord:
        job = self._job(conn, job_id)
        if job is None:
            raise StoreError(f"no job {job_id!r} in plan store {self.path}")
        return job

    def _require_job_status(
        self, conn: duckdb.DuckDBPyConnection, job_id: str, allowed: tuple[str, ...], action: str
    ) -> JobRecord:
        job = self._require_job(conn, job_id)
        if job.status not in allowed:
            raise StoreError(f"cannot {action} job {job_id}: it is {job.status}")
        return job
