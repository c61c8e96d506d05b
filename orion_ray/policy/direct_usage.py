"""Runs submitted straight to a region, in the global quota (pure; docs/regions.md, "Global quotas").

A tenant can bypass the control plane and submit to a region; its run must still count against the
tenant's global quota, or two regions would together let it run twice its limit. The region's
status stream carries every workload (``origin: region`` in the view); for one that is not a
control-plane dispatch the control plane keeps a *direct hold*: a committed reservation under
``rg-<region>-<workload>`` for the run's demand from the first non-terminal change it sees,
released at its first terminal change, and GPU-hours charged from its first ``running`` to its end
(live while it runs, like a dispatched run's). A direct run is never refused here — the region
already took it; it only narrows what the control plane grants next. Each step is a function of the
held record and the change, so a resend or a resync listing changes nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional

TERMINAL = ("completed", "failed", "cancelled")


def direct_key(region: str, workload_id: str) -> str:
    """The ledger key of a direct run's hold (never a dispatch key: those start with ``cp-``)."""
    return f"rg-{region}-{workload_id}"


def demand_of(spec: Mapping[str, Any]) -> dict[str, float]:
    """What a workload spec holds while it runs: ``gpu``, ``gpu:<type>`` and ``cpu`` over every
    bundle of a gang (the same sum the control plane's dispatch reserves); zeros left out."""
    bundles = spec.get("bundles") or [spec.get("resources") or {}]
    gpus = cpus = 0.0
    gpu_type: Optional[str] = None
    for b in bundles:
        if not isinstance(b, Mapping):
            continue
        gpus += float(b.get("gpu") or 0.0)
        cpus += float(b.get("cpu", 1.0) if b.get("cpu") is not None else 1.0)
        gpu_type = gpu_type or (str(b["gpu_type"]) if b.get("gpu_type") else None)
    out = {"gpu": gpus, "cpu": cpus}
    if gpu_type and gpus:
        out[f"gpu:{gpu_type}"] = gpus
    return {k: v for k, v in out.items() if v > 0}


@dataclass(frozen=True)
class DirectRun:
    """The control plane's record of one direct run (a row of ``region_direct_runs``)."""

    region: str
    workload_id: str
    tenant_id: str
    demand: Mapping[str, float] = field(default_factory=dict)
    status: str = "submitted"
    started_at: Optional[float] = None
    ended_at: Optional[float] = None

    @property
    def key(self) -> str:
        return direct_key(self.region, self.workload_id)


@dataclass(frozen=True)
class DirectStep:
    """What one change does: the record to store (None: nothing), whether its hold is taken now,
    released now, and until when its GPU-hours are charged (None: no charge)."""

    run: Optional[DirectRun]
    hold: bool = False
    release: bool = False
    charge_until: Optional[float] = None


def on_change(prev: Optional[DirectRun], region: str, change: Mapping[str, Any]) -> DirectStep:
    """The step for a direct run's status ``change`` given what is held (``prev``)."""
    status = str(change.get("status") or "")
    at = float(change.get("at") or 0.0)
    if prev is not None and prev.status in TERMINAL:
        return DirectStep(None)  # ended: a late or resent change moves nothing back
    if prev is None:
        if status in TERMINAL:
            return DirectStep(None)  # never seen running here: nothing was held
        tenant = str(change.get("tenant_id") or "")
        demand = {str(k): float(v) for k, v in (change.get("demand") or {}).items() if float(v) > 0}
        run = DirectRun(
            region, str(change.get("region_workload_id") or change["workload_id"]), tenant, demand
        )
        run = replace(run, status=status, started_at=at if status == "running" else None)
        return DirectStep(run, hold=bool(tenant))
    started = prev.started_at if prev.started_at is not None else (at if status == "running" else None)
    if status in TERMINAL:
        done = replace(prev, status=status, started_at=started, ended_at=at)
        return DirectStep(done, release=True, charge_until=at if started is not None else None)
    return DirectStep(replace(prev, status=status, started_at=started))


def is_direct(change: Mapping[str, Any]) -> bool:
    """A change about a workload the control plane did not dispatch (no generation)."""
    return change.get("generation") is None
