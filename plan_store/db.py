"""Short-lived, retried DuckDB connections to one store file.

DuckDB locks the database file for as long as a connection is open, and a read-write connection shuts out every other
process, readers included. The training CLI and the dashboard share the store, so no connection outlives a single
transaction, and a lock conflict is retried with jittered backoff until a deadline. Within one process DuckDB shares a
single database instance per file and refuses to mix read-only and read-write configurations on it, so connections
to a file are also serialised by a per-process lock (the dashboard serves sessions from threads).
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb

from . import schema
from .errors import StoreError

# The store runs next to training jobs on small machines; its queries are tiny, so one DuckDB thread is plenty.
_CONFIG = {"threads": 1}
_FIRST_BACKOFF_S = 0.005
_MAX_BACKOFF_S = 0.1

_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def _process_lock(path: Path) -> threading.Lock:
    with _process_locks_guard:
        return _process_locks.setdefault(str(path), threading.Lock())


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


class Database:
    """A store file that has been checked to be ours and brought up to the current schema."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._lock = _process_lock(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            self._create()
        self._check_and_migrate()

    @contextmanager
    def transaction(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open, run one transaction, close. Read-only ones take a shared file lock: readers in other processes coexist."""
        deadline = time.monotonic() + self.timeout
        if not self._lock.acquire(timeout=self.timeout):
            raise self._busy_error()
        try:
            conn = self._connect(read_only, deadline)
            try:
                conn.begin()
                yield conn
                conn.commit()
                if not read_only:
                    # Into the database file before the lock is let go, rather than left to the close: with several
                    # writer processes a committed row was occasionally missing later (docs/design.md, Store and jobs).
                    conn.execute("CHECKPOINT")
            except BaseException:
                with suppress(duckdb.Error):
                    conn.rollback()
                raise
            finally:
                conn.close()
        finally:
            self._lock.release()

    def _connect(self, read_only: bool, deadline: float) -> duckdb.DuckDBPyConnection:
        attempt = 0
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only, config=_CONFIG)
            except duckdb.Error as exc:
                if not _is_lock_conflict(exc):
                    raise StoreError(
                        f"cannot open plan store {self.path}: {_first_line(exc)}; move the file away or set "
                        "HIPP_HOME to another directory"
                    ) from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._busy_error()
            backoff = min(_MAX_BACKOFF_S, _FIRST_BACKOFF_S * 2**attempt)
            time.sleep(min(remaining, random.uniform(0, backoff)))
            attempt += 1

    def _busy_error(self) -> StoreError:
        return StoreError(
            f"plan store {self.path} stayed locked by another process for {self.timeout:g} s; "
            "wait for it to finish or stop it, then retry"
        )

    def _create(self) -> None:
        """Build the schema in a private file and link it into place, so no half-initialised store is ever visible
        and a file another process created meanwhile is never overwritten."""
        scratch = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        try:
            conn = duckdb.connect(str(scratch), config=_CONFIG)
            try:
                conn.begin()
                schema.migrate(conn, 0)
                conn.commit()
            finally:
                conn.close()
            with suppress(FileExistsError):
                os.link(scratch, self.path)
        finally:
            scratch.unlink(missing_ok=True)
            scratch.with_name(scratch.name + ".wal").unlink(missing_ok=True)

    def _check_and_migrate(self) -> None:
        """Inspect the file read-only first: a foreign or newer database must come out of this byte-for-byte intact."""
        with self.transaction(read_only=True) as conn:
            version = self._version(conn)
        if version < schema.latest_version():
            with self.transaction() as conn:
                schema.migrate(conn, self._version(conn))

    def _version(self, conn: duckdb.DuckDBPyConnection) -> int:
        try:
            version = schema.read_version(conn)
        except duckdb.Error:
            version = None
        if version is None:
            raise StoreError(
                f"{self.path} is a DuckDB database but not a HiPP plan store (no usable schema_version table); "
                "pass another path or set HIPP_HOME to another directory"
            )
        if version > schema.latest_version():
            raise StoreError(
                f"plan store {self.path} has schema version {version}, newer than this HiPP-Prune understands "
                f"({schema.latest_version()}); upgrade HiPP-Prune"
            )
        return version
