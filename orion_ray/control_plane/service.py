"""The control plane's state and its operations, over the pure core (docs/regions.md).

``ControlPlane`` keeps the region records, global quota ledger and config snapshots in the store
(schema 8 and the settings table), and in memory what is rebuilt from them or cheap to lose: the
blocklist (a restart forgets blocks, which only makes the next dispatch try a region once more).
Each operation's rows are written in one transaction before it answers. Every method takes its
time from ``clock`` so tests drive it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Mapping, Optional, Sequence

from ..errors import Conflict, NotFound, QueueFull, ValidationError
from ..policy import config_snapshot as cfg
from ..policy.direct_usage import DirectRun, is_direct, on_change
from ..policy.global_quota import GlobalQuota, LedgerConflict, split_gpu_hours
from ..policy.launch_budget import WAITING, overdue
from ..policy.region_state import (
    TERMINAL,
    Assignment,
    Heartbeat,
    RegionRecord,
    apply_status_batch,
    fence,
    on_heartbeat,
    plan_region_loss,
    register,
    set_state,
    sweep,
    view,
)
from ..policy.regions import Blocklist, Decision, DispatchWeights, FailureKind, RunRequest, decide
from ..policy.status_resync import plan_resync
from ..store.direct_runs import open_direct_runs
from ..store.ledger import ControlPlaneTables
from ..store.sqlite import SQLiteStore
from .observability import status_audit

_SNAPSHOT = "config_snapshot:"  # settings rows: one per version, plus the latest's number
_LATEST = "config_snapshot_latest"
_ASSIGNED = {"code": "assigned", "message": "dispatched already; the same assignment"}


@dataclass(frozen=True)
class Dispatched:
    """A dispatch decision with the run's assignment: where, under which key and generation."""

    decision: Decision
    assignment: Assignment
    key: str


def request_json(run: RunRequest, expected_gpu_hours: Optional[Mapping[str, float]]) -> dict[str, Any]:
    """A run's dispatch request as stored with its assignment."""
    d = asdict(run)
    d["preference"] = list(run.preference)
    d["region_selector"] = dict(run.region_selector)
    d["expected_gpu_hours"] = dict(expected_gpu_hours) if expected_gpu_hours else None
    return d


def request_from_json(d: Mapping[str, Any]) -> tuple[RunRequest, Optional[dict[str, float]]]:
    """The request ``request_json`` stored, and its expected GPU-hours."""
    fields = dict(d)
    expected = fields.pop("expected_gpu_hours", None)
    fields["preference"] = tuple(fields.get("preference", ()))
    return RunRequest(**fields), expected


def dispatch_key(run_id: str, generation: int) -> str:
    """The idempotency key of one dispatch: the region's ``request_id`` and the ledger's key."""
    return f"cp-{run_id}-g{generation}"


class ControlPlane:
    """Regions, dispatch, global quotas and config snapshots of one control plane."""

    def __init__(
        self,
        store: SQLiteStore,
        *,
        quotas: Optional[Mapping[str, GlobalQuota]] = None,
        weights: DispatchWeights = DispatchWeights(),
        lost_timeout_s: float = 60.0,
        launch_budget_s: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tables = ControlPlaneTables(store)
        self.store = store
        self.quotas = dict(quotas or {})
        self.weights = weights
        self.lost_timeout_s = lost_timeout_s
        self.launch_budget_s = launch_budget_s  # a placed run not running by then: a failed launch
        self._placed_at: dict[str, float] = {}  # dispatch key → when reserved (from the ledger)
        self.clock = clock
        self.started_at = clock()
        self.regions: dict[str, RegionRecord] = {r.name: r for r in self.tables.regions()}
        self.blocklist = Blocklist()
        self.assignments: dict[str, Assignment] = {a.run_id: a for a in self.tables.assignments()}
        self.requests: dict[str, dict[str, Any]] = self.tables.requests()
        # runs submitted straight to a region that have not ended: held in the global quota
        self.direct: dict[tuple[str, str], DirectRun] = {
            (r.region, r.workload_id): r for r in open_direct_runs(store)
        }

    # -- regions ---------------------------------------------------------------------------------
    def region(self, name: str) -> RegionRecord:
        """The record of ``name`` (404 if unknown)."""
        rec = self.regions.get(name)
        if rec is None:
            raise NotFound(f"no region {name!r}")
        return rec

    def add_region(self, name: str) -> RegionRecord:
        """Register ``name`` (idempotent: an existing region is returned as it is)."""
        if name in self.regions:
            return self.regions[name]
        try:
            rec = register(name, now=self.clock())
        except ValueError as exc:
            raise ValidationError(str(exc), [{"field": "name", "problem": str(exc)}]) from exc
        return self._save(rec)

    def set_region_state(self, name: str, state: str) -> RegionRecord:
        """An operator's drain / activate / deactivate."""
        try:
            rec = set_state(self.region(name), state)
        except ValueError as exc:
            raise ValidationError(str(exc), [{"field": "state", "problem": str(exc)}]) from exc
        return self._save(rec)

    def heartbeat(self, name: str, hb: Heartbeat, reported: Sequence[tuple[str, int]] = ()) -> dict[str, Any]:
        """Record a heartbeat; answer the region's state, the wanted config and what to cancel."""
        rec, returned = on_heartbeat(self.region(name), hb, now=self.clock())
        self._save(rec)
        latest = self.latest_snapshot()
        return {
            "region": name,
            "state": rec.state,
            "returned": returned,
            "wanted_config": {"version": latest.version, "sha256": latest.sha256} if latest else None,
            "cancel": [
                {"workload_id": w, "generation": g} for w, g in fence(self.assignments, name, reported)
            ],
        }

    def tick(self) -> dict[str, Any]:
        """Mark silent regions lost; their runs are redispatched or failed (the loop's step)."""
        recs, newly = sweep(
            list(self.regions.values()),
            now=self.clock(),
            lost_timeout_s=self.lost_timeout_s,
            started_at=self.started_at,
        )
        redo: list[Assignment] = []
        failed: list[tuple[str, str]] = []
        for rec in recs:
            if rec.name not in newly:
                continue
            plan = plan_region_loss(list(self.assignments.values()), rec.name)
            ended = [replace(self.assignments[r], status="failed") for r, _ in plan.fail]
            # the lost generation's hold goes back; a redispatch reserves anew under its new key
            gone = [dispatch_key(a.run_id, self.assignments[a.run_id].generation) for a in plan.redispatch]
            gone += [dispatch_key(a.run_id, a.generation) for a in ended]
            # what ran there until now is charged to the generation that ran it
            olds = [self.assignments[a.run_id] for a in plan.redispatch] + ended
            used = [self._charge(a, until=self.clock()) for a in olds if a.started_at is not None]
            self.tables.write(
                now=self.clock(),
                regions=[rec],
                assignments=plan.redispatch + ended,
                release=gone,
                charges=[ch for ch in used if ch is not None],
            )
            self.regions[rec.name] = rec
            for a in plan.redispatch + ended:
                self.assignments[a.run_id] = a
            redo += plan.redispatch
            failed += plan.fail
        overran = self._launch_overdue()
        now = self.clock()
        running = [self._charge(a, until=now) for a in self.assignments.values() if a.status == "running"]
        running += [self._charge_direct(r, now) for r in self.direct.values() if r.status == "running"]
        charges = [ch for ch in running if ch is not None]
        if charges:
            self.tables.write(now=now, charges=charges)  # totals so far: the window's budget is live
        return {
            "lost": newly,
            "redispatch": [a.run_id for a in redo] + overran,
            "failed": failed,
            "launch_overdue": overran,
        }

    def _launch_overdue(self) -> list[str]:
        """Runs placed but not started within ``launch_budget_s``: a failed launch each (the
        region blocked for the run's GPU type, the run back to waiting for a region)."""
        waiting = [a for a in self.assignments.values() if a.region is not None and a.status in WAITING]
        since: dict[str, float] = {}
        for a in waiting:
            key = dispatch_key(a.run_id, a.generation)
            if key not in self._placed_at:
                r = self.tables.get(key)
                if r is None:
                    continue
                self._placed_at[key] = r.at
            since[a.run_id] = self._placed_at[key]
        out = []
        for a in overdue(waiting, since, now=self.clock(), budget_s=self.launch_budget_s):
            gtype = (self.requests.get(a.run_id) or {}).get("gpu_type")
            why = f"not running {self.launch_budget_s:g} s after its dispatch to {a.region}"
            self.outcome(a.run_id, accepted=False, kind="launch_failed", detail=why, gpu_type=gtype)
            out.append(a.run_id)
        return out

    def _save(self, rec: RegionRecord) -> RegionRecord:
        self.tables.save_region(rec, now=self.clock())
        self.regions[rec.name] = rec
        return rec

    # -- dispatch --------------------------------------------------------------------------------
    def dispatch(
        self, run: RunRequest, *, expected_gpu_hours: Optional[Mapping[str, float]] = None
    ) -> Dispatched:
        """Choose a region for ``run`` and reserve its global quota; 429 with the reasons when no
        region can take it or the tenant's global quota is spent (backpressure, not a stall)."""
        now = self.clock()
        prev = self.assignments.get(run.run_id)
        if prev is not None and prev.region is not None and prev.status not in TERMINAL:
            # dispatched already: the same answer again (a retried call must not place it twice)
            same = Decision(run.run_id, prev.region, False, (), {prev.region: [_ASSIGNED]})
            return Dispatched(same, prev, dispatch_key(run.run_id, prev.generation))
        views = [view(r) for r in sorted(self.regions.values(), key=lambda r: r.name)]
        d = decide(run, views, blocklist=self.blocklist, weights=self.weights, now=now)
        if d.region is None:
            details = [
                {"field": f"region:{n}", "problem": r[0]["message"]} for n, r in sorted(d.reasons.items())
            ]
            raise QueueFull("no region can take the run now", details, retry_after=5)
        gen = prev.generation if prev is not None and prev.region is None else 1
        key = dispatch_key(run.run_id, gen)
        demand = {"gpu": run.gpus, "cpu": run.cpus}
        if run.gpu_type and run.gpus:
            demand[f"gpu:{run.gpu_type}"] = run.gpus
        demand = {k: v for k, v in demand.items() if v}
        a = Assignment(run.run_id, d.region, gen, "dispatched")
        try:
            res = self.tables.reserve(
                key,
                run.tenant_id,
                demand,
                quota=self.quotas.get(run.tenant_id),
                now=now,
                expected_gpu_hours=expected_gpu_hours,
                assignment=a,
                request=request_json(run, expected_gpu_hours),
            )
        except LedgerConflict as exc:
            raise Conflict(str(exc)) from exc
        if not res.ok:
            why = res.reason or {"code": "global_quota", "message": "released"}
            raise QueueFull(why["message"], [{"field": "tenant_id", "problem": why["code"]}], retry_after=30)
        self.assignments[run.run_id] = a
        self.requests.setdefault(run.run_id, request_json(run, expected_gpu_hours))
        return Dispatched(d, a, key)

    def redispatch(self) -> dict[str, Any]:
        """Dispatch again every run waiting for a region (after a loss or a failed attempt) from its
        stored request; what still finds no region stays waiting for the next tick."""
        placed: dict[str, str] = {}
        waiting: dict[str, str] = {}
        for run_id, a in sorted(self.assignments.items()):
            req = self.requests.get(run_id)
            if a.region is not None or a.status != "dispatched" or req is None:
                continue
            run, expected = request_from_json(req)
            try:
                placed[run_id] = str(self.dispatch(run, expected_gpu_hours=expected).assignment.region)
            except QueueFull as exc:
                waiting[run_id] = exc.message
        return {"placed": placed, "waiting": waiting}

    def outcome(
        self,
        run_id: str,
        *,
        accepted: bool,
        kind: Optional[FailureKind] = None,
        detail: str = "",
        gpu_type: Optional[str] = None,
    ) -> Assignment:
        """What the region answered: accepted commits the reservation; a failure releases it and
        blocks the region (its GPU type for capacity failures), so the next dispatch goes elsewhere."""
        a = self.assignments.get(run_id)
        if a is None or a.region is None:
            raise NotFound(f"no dispatched run {run_id!r}")
        key = dispatch_key(run_id, a.generation)
        now = self.clock()
        if accepted:
            try:
                self.tables.commit(key, now=now, assignment=replace(a, status="submitted"))
            except LedgerConflict as exc:
                raise Conflict(str(exc)) from exc
            a = replace(a, status="submitted")
        else:
            if kind is None:
                raise ValidationError(
                    "kind: required when not accepted", [{"field": "kind", "problem": "required"}]
                )
            self.blocklist = self.blocklist.block(
                a.region, kind=kind, now=now, gpu_type=gpu_type, weights=self.weights, detail=detail
            )
            a = replace(a, region=None, generation=a.generation + 1, status="dispatched")
            self.tables.write(now=now, assignments=[a], release=[key])
        self.assignments[run_id] = a
        return a

    # -- status ----------------------------------------------------------------------------------
    def status(self, name: str, changes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Apply a region's sequenced status changes; a gap answers 409 with where to resend from."""
        rec = self.region(name)
        gens = {k: a.generation for k, a in self.assignments.items()}
        batch = apply_status_batch(rec.status_seq, changes, gens)
        out = self._apply(rec, batch.apply, batch.stale, batch.last_seq)
        out["duplicates"] = batch.duplicates
        if batch.resync_from is not None:
            raise Conflict(
                f"status sequence gap: resend from {batch.resync_from}",
                [{"field": "changes", "problem": "gap", "resync_from": batch.resync_from, **out}],
            )
        return out

    def resync(self, name: str, through_seq: int, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """A region's full listing as of ``through_seq`` (its outbox overflowed): reconciled into
        changes (``policy/status_resync.py``) and applied in one transaction; a replay is a no-op."""
        rec = self.region(name)
        plan = plan_resync(
            region=name,
            last_seq=rec.status_seq,
            through_seq=through_seq,
            items=items,
            assignments=self.assignments,
            direct_open=[w for (r, w) in self.direct if r == name],
            now=self.clock(),
        )
        if plan.replay:
            return {"applied": 0, "last_seq": rec.status_seq, "stale": [], "missing": [], "replay": True}
        out = self._apply(rec, plan.apply, plan.stale, through_seq, action="resync")
        return {**out, "missing": plan.missing, "replay": False}

    def _apply(
        self,
        rec: RegionRecord,
        apply: Sequence[Mapping[str, Any]],
        stale: Sequence[Mapping[str, Any]],
        last_seq: int,
        action: str = "status",
    ) -> dict[str, Any]:
        """Apply changes of ``rec``'s region (assignments, direct holds, releases, charges, audit)
        and take ``last_seq`` as its last sequence, all in one transaction."""
        moved: dict[str, Assignment] = {}
        release = []
        charges = []
        now = self.clock()
        direct: dict[tuple[str, str], DirectRun] = {}
        holds: list[DirectRun] = []
        for c in apply:
            if is_direct(c):
                wid = str(c.get("region_workload_id") or c["workload_id"])
                prev = direct.get((rec.name, wid)) or self.direct.get((rec.name, wid))
                step = on_change(prev, rec.name, c)
                if step.run is None:
                    continue
                direct[(rec.name, wid)] = step.run
                holds += [step.run] if step.hold else []
                release += [step.run.key] if step.release else []
                dch = self._charge_direct(step.run, step.charge_until) if step.charge_until else None
                charges += [dch] if dch is not None else []
                continue
            a = moved.get(str(c["workload_id"])) or self.assignments.get(str(c["workload_id"]))
            if a is None or not c.get("status"):
                continue
            st, at = str(c["status"]), float(c.get("at") or now)
            # GPU-hours count from the first start of this generation to its end: a preempted run
            # that restarts in the same region is charged for the gap too (over, never under)
            a = replace(
                a, status=st, started_at=at if st == "running" and a.started_at is None else a.started_at
            )
            moved[a.run_id] = a
            if st in TERMINAL:
                release.append(dispatch_key(a.run_id, a.generation))
                ch = self._charge(a, until=at)
                if ch is not None:
                    charges.append(ch)
        rec = replace(rec, status_seq=last_seq)
        audit = status_audit(rec.name, apply, stale)  # the aggregated audit view
        if action != "status":
            audit = [(at, who, f"{action}_{act}", tgt, det) for at, who, act, tgt, det in audit]
        self.tables.write(
            now=now,
            regions=[rec],
            assignments=list(moved.values()),
            release=release,
            charges=charges,
            audit=audit,
            direct=list(direct.values()),
            direct_holds=holds,
        )
        self.regions[rec.name] = rec
        self.assignments.update(moved)
        for k, run in direct.items():
            if run.ended_at is None:
                self.direct[k] = run
            else:
                self.direct.pop(k, None)
        return {
            "applied": len(apply),
            "last_seq": last_seq,
            "stale": [{"workload_id": c["workload_id"], "generation": c.get("generation")} for c in stale],
        }

    def _charge_direct(
        self, run: DirectRun, until: float
    ) -> Optional[tuple[str, str, dict[float, dict[str, float]]]]:
        """A direct run's GPU-hours from its first start to ``until``, per window."""
        gpus = {k: float(v) for k, v in run.demand.items() if k == "gpu" or k.startswith("gpu:")}
        if run.started_at is None or not gpus:
            return None
        quota = self.quotas.get(run.tenant_id)
        window = quota.window_s if quota else 86_400.0
        return run.key, run.tenant_id, split_gpu_hours(gpus, run.started_at, until, window)

    def _charge(
        self, a: Assignment, *, until: float
    ) -> Optional[tuple[str, str, dict[float, dict[str, float]]]]:
        """The GPU-hours of ``a`` from its start to ``until``, per window, as a ledger charge."""
        req = self.requests.get(a.run_id)
        if req is None or a.started_at is None or not req.get("gpus"):
            return None
        gpus = {"gpu": float(req["gpus"])}
        if req.get("gpu_type"):
            gpus[f"gpu:{req['gpu_type']}"] = float(req["gpus"])
        quota = self.quotas.get(str(req["tenant_id"]))
        window = quota.window_s if quota else 86_400.0
        per_window = split_gpu_hours(gpus, a.started_at, until, window)
        return dispatch_key(a.run_id, a.generation), str(req["tenant_id"]), per_window

    # -- config ----------------------------------------------------------------------------------
    def latest_snapshot(self) -> Optional[cfg.Snapshot]:
        """The newest published snapshot, if any."""
        v = self.store.get_setting(_LATEST)
        return self.snapshot(int(v)) if v else None

    def snapshot(self, version: int) -> cfg.Snapshot:
        """Snapshot ``version`` (404 if never published)."""
        row = self.store.get_setting(f"{_SNAPSHOT}{version}")
        if row is None:
            raise NotFound(f"no config snapshot {version}")
        return cfg.verify(version, row["sha256"], row["text"])

    def publish(self, sections: Mapping[str, Any]) -> cfg.Snapshot:
        """Publish ``sections`` as the next snapshot (the same one when nothing changed)."""
        prev = self.latest_snapshot()
        try:
            snap = cfg.publish(prev, sections)
        except cfg.SnapshotError as exc:
            field = str(exc).split(":", 1)[0]
            raise ValidationError(str(exc), [{"field": field, "problem": str(exc)}]) from exc
        if prev is None or snap.version != prev.version:
            self.store.put_setting(f"{_SNAPSHOT}{snap.version}", {"sha256": snap.sha256, "text": snap.text()})
            self.store.put_setting(_LATEST, snap.version)
        return snap
