"""Durable, multi-process store of pruning plans and their evaluations (a DuckDB file under `$HIPP_HOME`)."""

from .errors import StoreError
from .jobs import LOG_TAIL_LINES
from .pareto import non_dominated
from .records import (
    DENSE_PLAN_ID,
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
    PlanSource,
    PolicyRecord,
    Preference,
    Scoring,
)
from .store import PlanStore, default_store_path, home_dir

__all__ = [
    "DENSE_PLAN_ID",
    "LOG_TAIL_LINES",
    "ArtifactKind",
    "ArtifactRecord",
    "CalibrationRecord",
    "EvalKey",
    "EvalMode",
    "EvaluationDraft",
    "EvaluationRecord",
    "ImportSummary",
    "JobRecord",
    "JobStatus",
    "ModelRecord",
    "ParetoPoint",
    "PlanDraft",
    "PlanRecord",
    "PlanSource",
    "PlanStore",
    "PolicyRecord",
    "Preference",
    "Scoring",
    "StoreError",
    "default_store_path",
    "home_dir",
    "non_dominated",
]
