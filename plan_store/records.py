"""Typed records the store accepts and returns.

Inputs (`PlanDraft`, `EvalKey`, `EvaluationDraft`) validate themselves on construction so a bad value fails where the caller
made it, with a `StoreError`, instead of later as an opaque DuckDB constraint error. Outputs (`*Record`) are frozen
snapshots of committed rows; timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from .errors import StoreError
from .identity import canonical_json, digest

PlanSource = Literal["policy", "baseline", "manual", "search"]
EvalMode = Literal["masked", "physical", "recovered", "dense"]
Scoring = Literal["logits", "generate"]
ArtifactKind = Literal["materialized", "recovered", "exported"]
JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]

PLAN_SOURCES: tuple[str, ...] = get_args(PlanSource)
EVAL_MODES: tuple[str, ...] = get_args(EvalMode)
SCORINGS: tuple[str, ...] = get_args(Scoring)
ARTIFACT_KINDS: tuple[str, ...] = get_args(ArtifactKind)
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
TERMINAL_JOB_STATUSES: tuple[str, ...] = ("done", "failed", "cancelled")

# The dense model is evaluated like a plan so it can sit on the same charts; a sentinel id (never a hex digest) keeps
# it inside the evaluations primary key, where NULL would defeat uniqueness.
DENSE_PLAN_ID = "dense"

Preference = dict[str, float]  # objective name -> weight, on the simplex


def utc(ts: datetime | None) -> datetime | None:
    """DuckDB TIMESTAMP columns hold naive UTC; records hand out aware datetimes so callers cannot mistake the zone."""
    return None if ts is None else ts.replace(tzinfo=UTC)


OBJECTIVE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def normalize_preference(w: Mapping[str, float]) -> Preference:
    """Preferences are weights keyed by objective name, scaled onto the simplex so that distances between them mean
    something. The store does not know which objectives exist: the library names them."""
    if not isinstance(w, Mapping) or not w:
        raise StoreError(f"preference {w!r} must map objective names to weights, e.g. {{'utility': 0.5, ...}}")
    bad = [name for name in w if not (isinstance(name, str) and OBJECTIVE_NAME.match(name))]
    if bad:
        raise StoreError(f"preference objective names must be lower-case identifiers, got {bad}")
    values = list(w.values())
    if not all(isinstance(x, int | float) and math.isfinite(x) and x >= 0 for x in values) or sum(values) <= 0:
        raise StoreError(f"preference {dict(w)} must have non-negative finite weights with a positive sum")
    total = float(sum(values))
    return {name: float(x) / total for name, x in w.items()}


def _check_choice(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise StoreError(f"{what} {value!r} is not one of {', '.join(allowed)}")


@dataclass(frozen=True)
class ModelRecord:
    model_id: str
    spec: str
    family: str
    config: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class CalibrationRecord:
    model_id: str
    calib_key: str
    payload_path: str | None
    payload: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True)
class PlanDraft:
    """A plan before it is stored; its id is derived from model and blueprint, so drafting the same plan twice is
    harmless."""

    model_id: str
    blueprint: dict[str, Any]
    source: PlanSource
    sparsity: float
    preference: Preference | None = None

    def __post_init__(self) -> None:
        _check_choice(self.source, PLAN_SOURCES, "plan source")
        if not (math.isfinite(self.sparsity) and 0.0 <= self.sparsity <= 1.0):
            raise StoreError(f"plan sparsity {self.sparsity} must be within [0, 1]")
        if self.preference is not None:
            object.__setattr__(self, "preference", normalize_preference(self.preference))
        try:
            canonical_json(self.blueprint)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"plan blueprint is not plain JSON data: {exc}") from None

    @property
    def blueprint_json(self) -> str:
        return canonical_json(self.blueprint)

    @property
    def plan_id(self) -> str:
        """The blueprint's own id (`hipp_core.blueprint.Blueprint.plan_id`): model plus kept units, so the same
        plan reached from another budget, source or preference is one plan."""
        return digest(self.model_id, canonical_json(self.blueprint.get("layers", self.blueprint)))


@dataclass(frozen=True)
class PlanRecord:
    plan_id: str
    model_id: str
    blueprint: dict[str, Any]
    source: PlanSource
    sparsity: float
    preference: Preference | None
    created_at: datetime


@dataclass(frozen=True)
class EvalKey:
    """Everything that makes two evaluations the same measurement; `limit=None` means the whole split."""

    model_id: str
    plan_id: str
    bench: str
    split: str
    mode: EvalMode
    scoring: Scoring
    limit: int | None = None

    def __post_init__(self) -> None:
        _check_choice(self.mode, EVAL_MODES, "evaluation mode")
        _check_choice(self.scoring, SCORINGS, "scoring")
        if (self.mode == "dense") != (self.plan_id == DENSE_PLAN_ID):
            raise StoreError(
                f"mode 'dense' goes with plan_id {DENSE_PLAN_ID!r} and only with it (got {self.plan_id!r})"
            )
        if self.limit is not None and self.limit < 1:
            raise StoreError(
                f"evaluation limit {self.limit} must be a positive sample count or None for the full split"
            )

    @property
    def sample_limit(self) -> int:
        """Stored form of `limit`: 0 stands for the full split because NULL cannot take part in a unique key."""
        return self.limit or 0


@dataclass(frozen=True)
class EvaluationDraft:
    """One computed evaluation, for writing many in a single transaction."""

    key: EvalKey
    metrics: dict[str, float]
    sample_count: int
    seconds: float


@dataclass(frozen=True)
class EvaluationRecord:
    key: EvalKey
    metrics: dict[str, float]
    sample_count: int
    seconds: float
    created_at: datetime


@dataclass(frozen=True)
class ParetoPoint:
    """A non-dominated evaluation; `values` are its objective values in the order they were asked for."""

    plan: PlanRecord
    evaluation: EvaluationRecord
    values: tuple[float, ...]


@dataclass(frozen=True)
class PolicyRecord:
    policy_id: str
    model_id: str
    config: dict[str, Any]
    checkpoint_path: str | None
    curve: list[dict[str, float]]
    updated_at: datetime


@dataclass(frozen=True)
class ArtifactRecord:
    artifact_id: str
    plan_id: str
    kind: ArtifactKind
    path: str
    created_at: datetime


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    kind: str
    status: JobStatus
    progress: float
    message: str
    log_tail: str
    error: str | None
    pid: int | None
    params: dict[str, Any]
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class ImportSummary:
    models_added: int
    plans_added: int
    evaluations_added: int
    skipped: int
