"""Versioned DDL: the store file records which migrations it has, and opening it applies the missing ones in order.

A migration is never edited once released; a schema change is a new entry at the end of `MIGRATIONS`, so every file
(whichever version wrote it) reaches the same schema by replaying the tail it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from .records import ARTIFACT_KINDS, EVAL_MODES, JOB_STATUSES, PLAN_SOURCES, SCORINGS


def _one_of(column: str, allowed: tuple[str, ...]) -> str:
    return f"CHECK ({column} IN ({', '.join(repr(v) for v in allowed)}))"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


_INITIAL = (
    """CREATE TABLE schema_version (
        version INTEGER PRIMARY KEY,
        description VARCHAR NOT NULL,
        applied_at TIMESTAMP NOT NULL
    )""",
    """CREATE TABLE models (
        model_id VARCHAR PRIMARY KEY,
        spec VARCHAR NOT NULL,
        family VARCHAR NOT NULL,
        config_json VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL
    )""",
    """CREATE TABLE calibrations (
        model_id VARCHAR NOT NULL,
        calib_key VARCHAR NOT NULL,
        payload_path VARCHAR,
        payload_json VARCHAR,
        created_at TIMESTAMP NOT NULL,
        PRIMARY KEY (model_id, calib_key),
        CHECK ((payload_path IS NULL) <> (payload_json IS NULL))
    )""",
    f"""CREATE TABLE plans (
        plan_id VARCHAR PRIMARY KEY,
        model_id VARCHAR NOT NULL,
        blueprint_json VARCHAR NOT NULL,
        source VARCHAR NOT NULL {_one_of("source", PLAN_SOURCES)},
        w0 DOUBLE,
        w1 DOUBLE,
        w2 DOUBLE,
        sparsity DOUBLE NOT NULL CHECK (sparsity BETWEEN 0 AND 1),
        created_at TIMESTAMP NOT NULL,
        CHECK ((w0 IS NULL) = (w1 IS NULL) AND (w1 IS NULL) = (w2 IS NULL))
    )""",
    f"""CREATE TABLE evaluations (
        model_id VARCHAR NOT NULL,
        plan_id VARCHAR NOT NULL,
        bench VARCHAR NOT NULL,
        split VARCHAR NOT NULL,
        mode VARCHAR NOT NULL {_one_of("mode", EVAL_MODES)},
        scoring VARCHAR NOT NULL {_one_of("scoring", SCORINGS)},
        sample_limit INTEGER NOT NULL CHECK (sample_limit >= 0),
        metrics_json VARCHAR NOT NULL,
        sample_count INTEGER NOT NULL CHECK (sample_count >= 0),
        seconds DOUBLE NOT NULL CHECK (seconds >= 0),
        created_at TIMESTAMP NOT NULL,
        PRIMARY KEY (model_id, plan_id, bench, split, mode, scoring, sample_limit),
        CHECK ((mode = 'dense') = (plan_id = 'dense'))
    )""",
    """CREATE TABLE policies (
        policy_id VARCHAR PRIMARY KEY,
        model_id VARCHAR NOT NULL,
        config_json VARCHAR NOT NULL,
        checkpoint_path VARCHAR,
        curve_json VARCHAR NOT NULL,
        updated_at TIMESTAMP NOT NULL
    )""",
    f"""CREATE TABLE artifacts (
        artifact_id VARCHAR PRIMARY KEY,
        plan_id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL {_one_of("kind", ARTIFACT_KINDS)},
        path VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL
    )""",
    f"""CREATE TABLE jobs (
        job_id VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,
        status VARCHAR NOT NULL {_one_of("status", JOB_STATUSES)},
        progress DOUBLE NOT NULL CHECK (progress BETWEEN 0 AND 1),
        message VARCHAR NOT NULL,
        log_tail VARCHAR NOT NULL,
        error VARCHAR,
        pid INTEGER,
        params_json VARCHAR NOT NULL,
        cancel_requested BOOLEAN NOT NULL,
        created_at TIMESTAMP NOT NULL,
        started_at TIMESTAMP,
        finished_at TIMESTAMP
    )""",
)

# Preferences keyed by objective name instead of three positional weights, so an objective can be added without a
# schema change. The table is rebuilt (DuckDB cannot drop columns a CHECK constraint names); the old columns meant
# (utility, robustness, compression), the only objectives there were when they were written.
_PREFERENCES_BY_NAME = (
    f"""CREATE TABLE plans_v2 (
        plan_id VARCHAR PRIMARY KEY,
        model_id VARCHAR NOT NULL,
        blueprint_json VARCHAR NOT NULL,
        source VARCHAR NOT NULL {_one_of("source", PLAN_SOURCES)},
        preference_json VARCHAR,
        sparsity DOUBLE NOT NULL CHECK (sparsity BETWEEN 0 AND 1),
        created_at TIMESTAMP NOT NULL
    )""",
    """INSERT INTO plans_v2 SELECT plan_id, model_id, blueprint_json, source,
        CASE WHEN w0 IS NULL THEN NULL
             ELSE json_object('compression', w2, 'robustness', w1, 'utility', w0)::VARCHAR END,
        sparsity, created_at FROM plans""",
    "DROP TABLE plans",
    "ALTER TABLE plans_v2 RENAME TO plans",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create all tables", _INITIAL),
    Migration(2, "plan preferences keyed by objective name", _PREFERENCES_BY_NAME),
)


def latest_version() -> int:
    return MIGRATIONS[-1].version


def read_version(conn: duckdb.DuckDBPyConnection) -> int | None:
    """The file's schema version, or None when it has no `schema_version` table (a database that is not ours)."""
    (has_table,) = conn.execute(
        "SELECT count(*) FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = 'main' AND table_name = 'schema_version'"
    ).fetchone()
    if not has_table:
        return None
    (version,) = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(version)


def migrate(conn: duckdb.DuckDBPyConnection, current: int) -> None:
    """Apply every migration newer than `current`; the caller owns the transaction, so a failure leaves no half-step."""
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        for statement in migration.statements:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
            [migration.version, migration.description, datetime.now(UTC).replace(tzinfo=None)],
        )
