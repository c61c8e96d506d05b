"""Direct runs' holds in the control plane's ledger (schema 12; the pure rules: ``policy/direct_usage.py``).

A direct run's row and its hold are written inside the caller's transaction (``ControlPlaneTables
.write``), with the status batch that moved it, so a crash leaves both or neither. The hold is an
ordinary ``quota_reservations`` row in state ``committed`` under ``rg-<region>-<workload>``, so the
tenant's usage (``ControlPlaneTables.usage``) counts it with no other change; its release and its
GPU-hour charges go through the same ``release`` and ``charges`` lists as a dispatched run's.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Sequence

from ..policy.direct_usage import DirectRun
from .sqlite import SQLiteStore

_SAVE = (
    "INSERT INTO region_direct_runs(region, workload_id, tenant_id, demand, status, started_at, ended_at,"
    " updated_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(region, workload_id) DO UPDATE SET"
    " status=excluded.status, started_at=excluded.started_at, ended_at=excluded.ended_at,"
    " updated_at=excluded.updated_at"
)
# a hold is taken once: a replayed first change finds the row and leaves its state alone
_HOLD = (
    "INSERT INTO quota_reservations(key, tenant_id, demand, state, at, updated_at)"
    " VALUES (?,?,?,'committed',?,?) ON CONFLICT(key) DO NOTHING"
)


def write_direct(
    db: sqlite3.Connection, runs: Sequence[DirectRun], holds: Sequence[DirectRun], now: float
) -> None:
    """Store ``runs`` and take the holds of ``holds`` (inside the caller's write transaction)."""
    for r in runs:
        db.execute(
            _SAVE,
            (
                r.region,
                r.workload_id,
                r.tenant_id,
                json.dumps(dict(sorted(r.demand.items())), separators=(",", ":")),
                r.status,
                r.started_at,
                r.ended_at,
                now,
            ),
        )
    for r in holds:
        demand = json.dumps({k: float(v) for k, v in sorted(r.demand.items())}, separators=(",", ":"))
        db.execute(_HOLD, (r.key, r.tenant_id, demand, now, now))


def open_direct_runs(store: SQLiteStore) -> list[DirectRun]:
    """Every direct run not ended (what a restarted control plane holds and charges)."""
    rows = store._query(
        "SELECT region, workload_id, tenant_id, demand, status, started_at, ended_at"
        " FROM region_direct_runs WHERE ended_at IS NULL ORDER BY region, workload_id",
        (),
    )
    return [_run(r) for r in rows]


def _run(r: tuple[Any, ...]) -> DirectRun:
    return DirectRun(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6])
