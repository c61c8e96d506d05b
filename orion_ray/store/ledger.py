"""The control plane's durable rows (schema 8): the global quota ledger and the region records.

Each call is one write transaction on the store's connection (``BEGIN IMMEDIATE``), so a reserve
reads the tenant's usage and writes its reservation with no other writer between: two control-plane
replicas sharing the file cannot both grant the last GPU. The decision itself is the pure
``policy.global_quota.check``; what is stored is what ``LedgerBook`` keeps in memory, so a
restarted control plane sees the same usage (docs/regions.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Mapping, Optional, Sequence

from ..policy.direct_usage import DirectRun
from ..policy.global_quota import (
    GlobalQuota,
    LedgerConflict,
    Reservation,
    ReserveResult,
    Usage,
    check,
    window_start,
)
from ..policy.region_state import Assignment, Heartbeat, RegionRecord
from .direct_runs import write_direct
from .sqlite import SQLiteStore

_HOLDING = "state IN ('reserved', 'committed')"
_SAVE_ASSIGNMENT = (
    "INSERT INTO assignments(run_id, region, generation, status, retries_left, restartable, updated_at,"
    " started_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(run_id) DO UPDATE SET region=excluded.region,"
    " generation=excluded.generation, status=excluded.status, retries_left=excluded.retries_left,"
    " restartable=excluded.restartable, updated_at=excluded.updated_at, started_at=excluded.started_at"
)
_CHARGE = (
    "INSERT INTO quota_charges(key, window_start, resource, tenant_id, hours) VALUES (?,?,?,?,?)"
    " ON CONFLICT(key, window_start, resource) DO UPDATE SET hours=excluded.hours"
)
_SAVE_REGION = (
    "INSERT INTO regions(name, record, updated_at) VALUES (?,?,?)"
    " ON CONFLICT(name) DO UPDATE SET record=excluded.record, updated_at=excluded.updated_at"
)


def _demand_json(demand: Mapping[str, float]) -> str:
    return json.dumps({k: float(v) for k, v in sorted(demand.items())}, separators=(",", ":"))


def _row(r: tuple[Any, ...]) -> Reservation:
    return Reservation(key=r[0], tenant_id=r[1], demand=json.loads(r[2]), state=r[3], at=float(r[4]))


class ControlPlaneTables:
    """Reservations, GPU-hour charges and region records over an open ``SQLiteStore``."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    # -- global quota ledger -------------------------------------------------------------------
    def usage(self, tenant_id: str, *, now: float, window_s: float) -> Usage:
        """What ``tenant_id`` holds now and its GPU-hours in the window of ``now``."""
        with self.store._lock:
            return self._usage(tenant_id, now, window_s)

    def _usage(self, tenant_id: str, now: float, window_s: float) -> Usage:
        db = self.store._db
        held: dict[str, float] = {}
        for (demand,) in db.execute(
            f"SELECT demand FROM quota_reservations WHERE tenant_id=? AND {_HOLDING}", (tenant_id,)
        ):
            for k, v in json.loads(demand).items():
                held[k] = held.get(k, 0.0) + float(v)
        hours = {
            res: float(total)
            for res, total in db.execute(
                "SELECT resource, SUM(hours) FROM quota_charges WHERE tenant_id=? AND window_start=?"
                " GROUP BY resource",
                (tenant_id, window_start(now, window_s)),
            )
        }
        return Usage(concurrent=held, gpu_hours=hours)

    def get(self, key: str) -> Optional[Reservation]:
        """The reservation under ``key``, if any."""
        rows = self.store._query(
            "SELECT key, tenant_id, demand, state, at FROM quota_reservations WHERE key=?", (key,)
        )
        return _row(rows[0]) if rows else None

    def reserve(
        self,
        key: str,
        tenant_id: str,
        demand: Mapping[str, float],
        *,
        quota: Optional[GlobalQuota],
        now: float,
        expected_gpu_hours: Optional[Mapping[str, float]] = None,
        assignment: Optional[Assignment] = None,
        request: Optional[Mapping[str, Any]] = None,
    ) -> ReserveResult:
        """Reserve ``demand`` under ``key`` if the tenant's global quota allows; the same key
        again returns the first grant (``LedgerConflict`` if it was for another tenant or demand).
        ``assignment``, when given, is written in the same transaction as a grant, so a crash never
        leaves a hold without the run it is for; ``request`` (the run as the dispatcher saw it) is
        kept with it, so a run can be dispatched again after its region is lost, even after a
        restart."""
        with self.store._lock, self.store._tx():
            db = self.store._db
            prior = db.execute(
                "SELECT key, tenant_id, demand, state, at FROM quota_reservations WHERE key=?", (key,)
            ).fetchone()
            if prior is not None:
                r = _row(prior)
                if r.tenant_id != tenant_id or _demand_json(r.demand) != _demand_json(demand):
                    raise LedgerConflict(f"key {key!r} was used for another tenant or demand")
                return ReserveResult(ok=r.state != "released", reservation=r, replay=True)
            window = quota.window_s if quota else 86_400.0
            usage = self._usage(tenant_id, now, window)
            why = check(quota, usage, demand, expected_gpu_hours=expected_gpu_hours)
            if why is not None:
                return ReserveResult(ok=False, reason=why)
            db.execute(
                "INSERT INTO quota_reservations(key, tenant_id, demand, state, at, updated_at)"
                " VALUES (?,?,?,?,?,?)",
                (key, tenant_id, _demand_json(demand), "reserved", now, now),
            )
            if assignment is not None:
                db.execute(_SAVE_ASSIGNMENT, _assignment_row(assignment, now))
                if request is not None:
                    db.execute(
                        "UPDATE assignments SET request=? WHERE run_id=?",
                        (json.dumps(request, sort_keys=True), assignment.run_id),
                    )
            return ReserveResult(
                ok=True, reservation=Reservation(key, tenant_id, dict(demand), "reserved", now)
            )

    def commit(self, key: str, *, now: float, assignment: Optional[Assignment] = None) -> Reservation:
        """Mark ``key`` accepted by a region (idempotent; a released key cannot be committed),
        with the run's ``assignment`` in the same transaction."""
        return self._move(key, "committed", now, assignment)

    def release(self, key: str, *, now: float) -> Reservation:
        """Give back what ``key`` holds (idempotent)."""
        return self._move(key, "released", now)

    def _move(self, key: str, to: str, now: float, assignment: Optional[Assignment] = None) -> Reservation:
        with self.store._lock, self.store._tx():
            db = self.store._db
            row = db.execute(
                "SELECT key, tenant_id, demand, state, at FROM quota_reservations WHERE key=?", (key,)
            ).fetchone()
            if row is None:
                raise KeyError(f"no reservation {key!r}")
            r = _row(row)
            if to == "committed" and r.state == "released":
                raise LedgerConflict(f"key {key!r} was released")
            if assignment is not None:
                db.execute(_SAVE_ASSIGNMENT, _assignment_row(assignment, now))
            if r.state == "released" or r.state == to:
                return r
            db.execute("UPDATE quota_reservations SET state=?, updated_at=? WHERE key=?", (to, now, key))
            return Reservation(r.key, r.tenant_id, r.demand, to, r.at)  # type: ignore[arg-type]

    def charge(self, key: str, tenant_id: str, per_window: Mapping[float, Mapping[str, float]]) -> None:
        """Record ``key``'s GPU-hours so far per window; totals replace, so a resend is a no-op."""
        rows = _charge_rows(key, tenant_id, per_window)
        if not rows:
            return
        with self.store._lock, self.store._tx():
            self.store._db.executemany(_CHARGE, rows)

    # -- regions -------------------------------------------------------------------------------
    def save_region(self, rec: RegionRecord, *, now: float) -> None:
        """Write a region's record (insert or replace)."""
        self.write(now=now, regions=[rec])

    def write(
        self,
        *,
        now: float,
        regions: Sequence[RegionRecord] = (),
        assignments: Sequence[Assignment] = (),
        release: Sequence[str] = (),
        charges: Sequence[tuple[str, str, Mapping[float, Mapping[str, float]]]] = (),
        audit: Sequence[tuple[float, str, str, Optional[str], Mapping[str, Any]]] = (),
        direct: Sequence[DirectRun] = (),
        direct_holds: Sequence[DirectRun] = (),
    ) -> None:
        """Region records, assignments, released reservations and GPU-hour charges
        ``(key, tenant, per_window)`` in one transaction: a status batch or a region's loss is
        applied whole or not at all. ``direct`` are direct runs' rows and ``direct_holds`` the ones
        whose hold is taken now (``store/direct_runs.py``)."""
        with self.store._lock, self.store._tx():
            db = self.store._db
            write_direct(db, direct, direct_holds, now)  # before releases: a run seen ended at once
            for rec in regions:
                db.execute(_SAVE_REGION, (rec.name, region_to_json(rec), now))
            for a in assignments:
                db.execute(_SAVE_ASSIGNMENT, _assignment_row(a, now))
            for key, tenant, per_window in charges:
                db.executemany(_CHARGE, _charge_rows(key, tenant, per_window))
            for key in release:
                db.execute(
                    "UPDATE quota_reservations SET state='released', updated_at=?"
                    " WHERE key=? AND state!='released'",
                    (now, key),
                )
            for at, who, action, target, details in audit:  # regions' status changes, with the batch
                db.execute(
                    "INSERT INTO audit(at, who, action, target, details) VALUES (?,?,?,?,?)",
                    (at, who, action, target, json.dumps(details, default=str)),
                )

    def requests(self) -> dict[str, dict[str, Any]]:
        """The dispatch request of every run that has one."""
        rows = self.store._query("SELECT run_id, request FROM assignments WHERE request IS NOT NULL", ())
        return {r[0]: json.loads(r[1]) for r in rows}

    def assignments(self) -> list[Assignment]:
        """Every run's assignment."""
        rows = self.store._query(
            "SELECT run_id, region, generation, status, retries_left, restartable, started_at"
            " FROM assignments ORDER BY run_id",
            (),
        )
        return [Assignment(r[0], r[1], int(r[2]), r[3], int(r[4]), bool(r[5]), r[6]) for r in rows]

    def regions(self) -> list[RegionRecord]:
        """Every region's record, by name."""
        return [
            region_from_json(r[0]) for r in self.store._query("SELECT record FROM regions ORDER BY name", ())
        ]


def _charge_rows(
    key: str, tenant_id: str, per_window: Mapping[float, Mapping[str, float]]
) -> list[tuple[Any, ...]]:
    return [
        (key, float(w), res, tenant_id, float(h)) for w, by in per_window.items() for res, h in by.items()
    ]


def _assignment_row(a: Assignment, now: float) -> tuple[Any, ...]:
    return (a.run_id, a.region, a.generation, a.status, a.retries_left, int(a.restartable), now, a.started_at)


def region_to_json(rec: RegionRecord) -> str:
    """A region record as stored (sets as sorted lists)."""
    d = asdict(rec)
    d["heartbeat"]["gpu_types"] = sorted(rec.heartbeat.gpu_types)
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def region_from_json(text: str) -> RegionRecord:
    """The record ``region_to_json`` wrote."""
    d = json.loads(text)
    hb = d.pop("heartbeat")
    hb["gpu_types"] = frozenset(hb.get("gpu_types", ()))
    return RegionRecord(heartbeat=Heartbeat(**hb), **d)
