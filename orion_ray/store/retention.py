"""Retention: what ended long enough ago is deleted, a small batch at a time.

Each step deletes at most ``limit`` rows older than ``cutoff`` (epoch seconds) inside the
caller's write transaction and returns how many it deleted, so the scheduler can run one batch
per kind per tick and come back at once while a kind has more (never one long write that a
submission would wait behind). Unfinished workloads are never touched: only ended ones
(completed, failed, cancelled) go, with their transitions and logs; audit records and scaling
events go by their own time. The indexes these walk are schema 3's (``schema.SCHEMA_3``).
"""

from __future__ import annotations

import sqlite3
from typing import Callable

from .schema import ENDED

_ENDED_BEFORE = (
    f"SELECT workload_id FROM workloads WHERE {ENDED} AND json_extract(state, '$.finished_at') < ? LIMIT ?"
)


def _delete_ids(db: sqlite3.Connection, table: str, ids: list[str]) -> None:
    marks = ",".join("?" * len(ids))
    db.execute(f"DELETE FROM {table} WHERE workload_id IN ({marks})", ids)


def ended_workloads(db: sqlite3.Connection, cutoff: float, limit: int) -> int:
    """Ended workloads that finished before ``cutoff``, with their transitions and logs."""
    ids = [r[0] for r in db.execute(_ENDED_BEFORE, (cutoff, int(limit)))]
    if ids:
        for table in ("transitions", "logs", "workloads"):
            _delete_ids(db, table, ids)
    return len(ids)


def ended_logs(db: sqlite3.Connection, cutoff: float, limit: int) -> int:
    """Logs of ended workloads that finished before ``cutoff`` (the workload itself stays)."""
    ids = [
        r[0]
        for r in db.execute(
            "SELECT l.workload_id FROM logs l JOIN workloads w ON w.workload_id = l.workload_id "
            f"WHERE w.{ENDED} AND json_extract(w.state, '$.finished_at') < ? LIMIT ?",
            (cutoff, int(limit)),
        )
    ]
    if ids:
        _delete_ids(db, "logs", ids)
    return len(ids)


def _by_time(table: str) -> Callable[[sqlite3.Connection, float, int], int]:
    def step(db: sqlite3.Connection, cutoff: float, limit: int) -> int:
        return db.execute(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE at < ? ORDER BY at LIMIT ?)",
            (cutoff, int(limit)),
        ).rowcount

    step.__doc__ = f"Rows of ``{table}`` recorded before ``cutoff``."
    return step


_RUN_TABLES = ("node_runs", "map_items", "map_nodes", "pipeline_runs")
_RUNS_DUE = """
SELECT run_id FROM pipeline_runs
WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at IS NOT NULL
  AND CASE WHEN json_extract(body, '$.runtime_params.ttl_days') IS NOT NULL
           THEN finished_at + json_extract(body, '$.runtime_params.ttl_days') * 86400.0 < ?
           ELSE ? > 0 AND finished_at + ? < ? END
LIMIT ?
"""


def ended_pipeline_runs(db: sqlite3.Connection, *, now: float, default_s: float, limit: int) -> int:
    """Ended pipeline runs past their window, with their node runs and map items: a run's own
    ``runtime_params.ttl_days`` when it gave one, else ``default_s`` (0: kept for ever). Their
    node workloads go by the workloads' window; schedules keep only a run's id."""
    ids = [r[0] for r in db.execute(_RUNS_DUE, (now, default_s, default_s, now, int(limit)))]
    if ids:
        marks = ",".join("?" * len(ids))
        for table in _RUN_TABLES:
            db.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", ids)
    return len(ids)


# kind (as in ``store.retention``: ``<kind>_days``) → its step
STEPS: dict[str, Callable[[sqlite3.Connection, float, int], int]] = {
    "logs": ended_logs,
    "workloads": ended_workloads,
    "audit": _by_time("audit"),
    "scaling_events": _by_time("scaling_events"),
}
