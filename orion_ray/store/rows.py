"""How a workload is laid out in a row (the spec, and the lifecycle as one JSON column), and the
write transaction every store write goes through."""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any, Optional

from ..input_limits import strict_json_problem
from ..models import Workload, WorkloadSpec
from ..status import Status
from .guard import FileIdentity, is_fault, unavailable

log = logging.getLogger("orion.store")

# Lifecycle fields live in one JSON column so adding a field needs no migration.
STATE_FIELDS = (
    "attempt",
    "submitted_at",
    "started_at",
    "finished_at",
    "updated_at",
    "not_before",
    "requeues",
    "worker_id",
    "placement",
    "result",
    "error",
    "reason",
    "traceparent",
)


class Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, or ``ROLLBACK`` on any error. Before committing, the
    file is checked to be the one the connection opened (a commit into a deleted or replaced
    file would be acknowledged and lost), and SQLite's faults leave as ``StoreUnavailable``."""

    def __init__(self, db: sqlite3.Connection, identity: FileIdentity, fence: Optional[Any] = None):
        self.db = db
        self.identity = identity
        # a single writer's fencing check (``store/lease.Fence``), run under the write lock
        self.fence = fence

    def __enter__(self) -> None:
        self.identity.check()  # before anything is read for the write (a submission's checks)
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if is_fault(exc):
                raise unavailable(exc) from exc
            raise
        if self.fence is not None:
            try:
                self.fence.check(self.db)
            except BaseException:
                self._rollback()
                raise

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self.identity.check()
                self.db.execute("COMMIT")
                return False
        except sqlite3.Error as err:  # the commit itself failed (busy, I/O)
            self._rollback()
            if is_fault(err):
                raise unavailable(err) from err
            raise
        except BaseException:
            self._rollback()
            raise
        self._rollback()
        if isinstance(exc, sqlite3.Error) and is_fault(exc):
            raise unavailable(exc) from exc
        return False

    def _rollback(self) -> None:
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:  # no transaction left (SQLite rolled it back itself)
            pass


def state_json(w: Workload) -> str:
    """The lifecycle JSON. Strict: a value JSON cannot carry (a NaN result) would be written,
    then break every read of the row; such a result is stored as a failure with its reason."""
    state = {f: getattr(w, f) for f in STATE_FIELDS}
    try:
        return json.dumps(state, default=str, allow_nan=False)
    except (ValueError, RecursionError) as exc:
        problem = strict_json_problem(w.result) or f"not valid JSON ({exc})"
        log.warning("workload %s: result not stored: %s", w.workload_id, problem)
        state.update(result=None, error=problem)
        w.result, w.error = None, problem  # memory says what a reader of the row will find
        return json.dumps(state, default=str)


def workload_of(row: tuple) -> Workload:
    seq, workload_id, tenant_id, _request_id, status, spec, state = row
    # "stored" on the Workload too: validating it re-runs the spec's checks (a passed deadline).
    stored = {"stored": True}
    return Workload.model_validate(
        dict(
            workload_id=workload_id,
            tenant_id=tenant_id,
            seq=seq,
            status=Status(status),
            spec=WorkloadSpec.model_validate_json(spec, context=stored),
            **json.loads(state),
        ),
        context=stored,
    )
