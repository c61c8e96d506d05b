"""The control plane's runs and its view of every region's workloads (schema 10), and the regions'
endpoints.

``cp_runs`` keeps the body each run was submitted with, so a redispatch (after a loss, a refusal or
a restart) sends the same workload; ``region_runs`` is what regions reported, one row per region
workload, the runs submitted straight to a region included. A row only moves forward in its
region's status sequence, so a resent or reordered batch changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from ..store.sqlite import SQLiteStore

_ENDPOINT = "region_endpoint:"  # settings rows: the URL and dispatch key a region joined with
_VIEW = (
    "INSERT INTO region_runs(region, workload_id, run_id, generation, tenant_id, status, reason, seq, at)"
    " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(region, workload_id) DO UPDATE SET"
    " run_id=excluded.run_id, generation=excluded.generation, tenant_id=excluded.tenant_id,"
    " status=excluded.status, reason=excluded.reason, seq=excluded.seq, at=excluded.at"
    " WHERE excluded.seq > region_runs.seq"
)


@dataclass(frozen=True)
class CpRun:
    """A run submitted to the control plane."""

    run_id: str
    tenant_id: str
    request_id: Optional[str]
    spec: dict[str, Any]
    submitted_at: float
    reason: Optional[str] = None


@dataclass(frozen=True)
class Endpoint:
    """Where the control plane submits to a region, and with which key."""

    url: str
    key: str


class RunBook:
    """``cp_runs``, ``region_runs`` and the regions' endpoints over an open store."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    # -- runs submitted here ---------------------------------------------------------------------
    def add(self, run: CpRun) -> CpRun:
        """Record ``run``; the same ``(tenant, request_id)`` again returns the first run."""
        if run.request_id is not None:
            prior = self.by_request(run.tenant_id, run.request_id)
            if prior is not None:
                return prior
        with self.store._lock, self.store._tx():
            self.store._db.execute(
                "INSERT INTO cp_runs(run_id, tenant_id, request_id, spec, submitted_at) VALUES (?,?,?,?,?)",
                (run.run_id, run.tenant_id, run.request_id, json.dumps(run.spec), run.submitted_at),
            )
        return run

    def remove(self, run_id: str) -> None:
        """Forget a run that was never accepted (no region could take it: answered 429)."""
        with self.store._lock, self.store._tx():
            self.store._db.execute("DELETE FROM cp_runs WHERE run_id=?", (run_id,))

    def set_reason(self, run_id: str, reason: str) -> None:
        """Why a run ended here (a lost region, every region refusing its body)."""
        with self.store._lock, self.store._tx():
            self.store._db.execute("UPDATE cp_runs SET reason=? WHERE run_id=?", (reason, run_id))

    def get(self, run_id: str) -> Optional[CpRun]:
        """The run, or None."""
        rows = self.store._query(_RUN + " WHERE run_id=?", (run_id,))
        return _run(rows[0]) if rows else None

    def by_request(self, tenant_id: str, request_id: str) -> Optional[CpRun]:
        """The run a tenant submitted under ``request_id``, if any."""
        rows = self.store._query(_RUN + " WHERE tenant_id=? AND request_id=?", (tenant_id, request_id))
        return _run(rows[0]) if rows else None

    def all(self, tenant_id: Optional[str] = None, limit: int = 1000) -> list[CpRun]:
        """Runs, newest first (one tenant's when given)."""
        if tenant_id is None:
            rows = self.store._query(_RUN + " ORDER BY submitted_at DESC LIMIT ?", (limit,))
        else:
            rows = self.store._query(
                _RUN + " WHERE tenant_id=? ORDER BY submitted_at DESC LIMIT ?", (tenant_id, limit)
            )
        return [_run(r) for r in rows]

    # -- the regions' view -----------------------------------------------------------------------
    def record(self, region: str, changes: Sequence[Mapping[str, Any]]) -> None:
        """The region's status changes into the view (a row only moves forward in sequence)."""
        rows = [
            (
                region,
                str(c.get("region_workload_id") or c["workload_id"]),
                str(c["workload_id"]) if c.get("generation") is not None else None,
                c.get("generation"),
                c.get("tenant_id"),
                str(c["status"]),
                c.get("reason") or None,
                int(c["seq"]),
                float(c["at"]),
            )
            for c in changes
        ]
        if rows:
            with self.store._lock, self.store._tx():
                self.store._db.executemany(_VIEW, rows)

    def accepted(
        self, region: str, region_workload_id: str, run_id: str, generation: int, *, now: float
    ) -> None:
        """A region's 202 to a dispatch: which of its workloads is this run's generation (seq 0:
        the region's own reports win)."""
        with self.store._lock, self.store._tx():
            self.store._db.execute(
                _VIEW.split(" ON CONFLICT")[0] + " ON CONFLICT(region, workload_id) DO NOTHING",
                (region, region_workload_id, run_id, generation, None, "submitted", None, 0, now),
            )

    def copies(self, run_id: str) -> list[dict[str, Any]]:
        """Every region's workload for ``run_id`` (one per generation that reached a region)."""
        rows = self.store._query(_COPY + " WHERE run_id=? ORDER BY generation", (run_id,))
        return [_copy(r) for r in rows]

    def direct(self, tenant_id: Optional[str] = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Workloads submitted straight to a region (no control-plane run), newest first."""
        sql = _COPY + " WHERE run_id IS NULL"
        args: tuple[Any, ...] = ()
        if tenant_id is not None:
            sql += " AND tenant_id=?"
            args = (tenant_id,)
        rows = self.store._query(sql + " ORDER BY at DESC LIMIT ?", args + (limit,))
        return [_copy(r) for r in rows]

    # -- endpoints -------------------------------------------------------------------------------
    def set_endpoint(self, region: str, ep: Endpoint) -> None:
        """Where ``region`` takes dispatches (it says so when it joins)."""
        self.store.put_setting(f"{_ENDPOINT}{region}", {"url": ep.url, "key": ep.key})

    def endpoint(self, region: str) -> Optional[Endpoint]:
        """The region's endpoint, if it joined."""
        v = self.store.get_setting(f"{_ENDPOINT}{region}")
        return Endpoint(str(v["url"]), str(v["key"])) if v else None


_RUN = "SELECT run_id, tenant_id, request_id, spec, submitted_at, reason FROM cp_runs"
_COPY = "SELECT region, workload_id, run_id, generation, tenant_id, status, reason, seq, at FROM region_runs"


def _run(r: tuple[Any, ...]) -> CpRun:
    return CpRun(r[0], r[1], r[2], json.loads(r[3]), float(r[4]), r[5])


def _copy(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "region": r[0],
        "region_workload_id": r[1],
        "run_id": r[2],
        "generation": r[3],
        "tenant_id": r[4],
        "status": r[5],
        "reason": r[6],
        "seq": r[7],
        "at": r[8],
    }
