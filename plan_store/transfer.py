"""Parquet export and import of models, plans and evaluations, for moving results between machines and stores.

Models travel with the plans because a plan is meaningless without its model row. Import only ever adds rows: a key
the store already holds keeps its stored values, so importing the same export twice, or an export of an overlapping
store, is safe.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from .errors import StoreError
from .records import ImportSummary

# table -> (primary key, every column in a fixed order)
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "models": (("model_id",), ("model_id", "spec", "family", "config_json", "created_at")),
    "plans": (
        ("plan_id",),
        ("plan_id", "model_id", "blueprint_json", "source", "preference_json", "sparsity", "created_at"),
    ),
    "evaluations": (
        ("model_id", "plan_id", "bench", "split", "mode", "scoring", "sample_limit"),
        (
            "model_id",
            "plan_id",
            "bench",
            "split",
            "mode",
            "scoring",
            "sample_limit",
            "metrics_json",
            "sample_count",
            "seconds",
            "created_at",
        ),
    ),
}


# Columns that exports written before a schema migration lack, and how to rebuild them from what those exports hold
# (see schema.py, migration 2: three positional weights meant utility, robustness, compression).
OLD_FORMS = {
    "preference_json": "CASE WHEN w0 IS NULL THEN NULL "
    "ELSE json_object('compression', w2, 'robustness', w1, 'utility', w0)::VARCHAR END",
}


def _sql_string(path: Path) -> str:
    """COPY ... TO takes no bound parameters, so the file name is quoted as an SQL literal."""
    return "'" + str(path).replace("'", "''") + "'"


def export_tables(conn: duckdb.DuckDBPyConnection, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for table, (key, columns) in TABLES.items():
        target = directory / f"{table}.parquet"
        conn.execute(
            f"COPY (SELECT {', '.join(columns)} FROM {table} ORDER BY {', '.join(key)}) "
            f"TO {_sql_string(target)} (FORMAT parquet)"
        )
        written.append(target)
    return written


def import_tables(conn: duckdb.DuckDBPyConnection, directory: Path) -> ImportSummary:
    missing = [f"{table}.parquet" for table in TABLES if not (directory / f"{table}.parquet").is_file()]
    if missing:
        raise StoreError(f"{directory} is not a plan store export: {', '.join(missing)} missing")
    added: dict[str, int] = {}
    offered = 0
    for table, (key, columns) in TABLES.items():
        source = directory / f"{table}.parquet"
        column_list = ", ".join(columns)
        (before,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        try:
            (rows,) = conn.execute("SELECT count(*) FROM read_parquet(?)", [str(source)]).fetchone()
            described = conn.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(source)]).fetchall()
            offered_columns = {row[0] for row in described}
            selected = ", ".join(OLD_FORMS.get(c, c) if c not in offered_columns else c for c in columns)
            conn.execute(
                f"INSERT INTO {table} ({column_list}) SELECT {selected} FROM read_parquet(?) "
                f"ON CONFLICT ({', '.join(key)}) DO NOTHING",
                [str(source)],
            )
        except duckdb.Error as exc:
            raise StoreError(f"{source} does not hold plan store {table}: {str(exc).splitlines()[0]}") from None
        (after,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        added[table] = after - before
        offered += rows
    return ImportSummary(
        models_added=added["models"],
        plans_added=added["plans"],
        evaluations_added=added["evaluations"],
        skipped=offered - sum(added.values()),
    )
