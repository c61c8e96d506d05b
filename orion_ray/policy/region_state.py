"""Regions' state at the control plane: heartbeats, loss, fencing, sequenced status (pure).

A region's *state* is what an operator set (``active``/``draining``/``inactive``) unless it is
*lost* (silent past ``region_lost_timeout``), then ``inactive``; when it heartbeats again it returns
to the operator's state, so a region drained before it was lost comes back draining. Everything is a
function of records and ``now``: a restarted control plane reloads the records and decides the same
way (it only waits one timeout from its own start before declaring anyone lost, since a region
cannot heartbeat to a control plane that is down).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional, Sequence

from .regions import REGION_STATES, RegionState, RegionView

# Assignment states that have not started running: safe to run elsewhere after a loss.
NOT_STARTED = ("dispatched", "submitted", "queued", "starting")
TERMINAL = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class Heartbeat:
    """What a region reports each ``heartbeat_s``."""

    labels: Mapping[str, str] = field(default_factory=dict)
    free_gpus: Mapping[str, float] = field(default_factory=dict)
    gpu_types: frozenset[str] = frozenset()
    free_cpus: float = 0.0
    queue_depth: int = 0
    launch_failures: int = 0
    applied_config_version: int = 0
    applied_config_sha256: str = ""
    status_seq: int = 0  # the last status change it has sent
    launch_p95_s: Optional[float] = None  # launch_health.p95_launch_s: submit→running P95, recent


@dataclass(frozen=True)
class RegionRecord:
    """The control plane's row for one region."""

    name: str
    operator_state: RegionState = "active"
    lost: bool = False
    registered_at: float = 0.0
    last_heartbeat: Optional[float] = None
    heartbeat: Heartbeat = Heartbeat()
    status_seq: int = 0  # the last status change applied here

    @property
    def state(self) -> RegionState:
        """The state dispatch sees: inactive while lost, else the operator's."""
        return "inactive" if self.lost else self.operator_state


def register(name: str, *, now: float) -> RegionRecord:
    """A new region, active, with no heartbeat yet."""
    if not name or len(name) > 63:
        raise ValueError("region: a name of 1 to 63 characters")
    return RegionRecord(name=name, registered_at=now)


def on_heartbeat(rec: RegionRecord, hb: Heartbeat, *, now: float) -> tuple[RegionRecord, bool]:
    """The record after a heartbeat, and whether the region returned from being lost."""
    returned = rec.lost
    return replace(rec, lost=False, last_heartbeat=now, heartbeat=hb), returned


def set_state(rec: RegionRecord, wanted: str) -> RegionRecord:
    """An operator's ``drain`` / ``activate`` / ``deactivate``; a lost region stays inactive until
    it heartbeats, then takes this state."""
    if wanted not in REGION_STATES:
        raise ValueError(f"state: one of {', '.join(REGION_STATES)}, not {wanted!r}")
    return replace(rec, operator_state=wanted)


def sweep(
    records: Sequence[RegionRecord], *, now: float, lost_timeout_s: float, started_at: float
) -> tuple[list[RegionRecord], list[str]]:
    """Records with the silent ones marked lost, and the names newly lost.

    Silence counts from the last heartbeat (else registration), but never from before the control
    plane's own start.
    """
    out, newly = [], []
    for r in records:
        since = max(r.last_heartbeat if r.last_heartbeat is not None else r.registered_at, started_at)
        if not r.lost and now - since > lost_timeout_s:
            r = replace(r, lost=True)
            newly.append(r.name)
        out.append(r)
    return out, newly


def view(
    rec: RegionRecord,
    *,
    gpu_price: Optional[Mapping[str, float]] = None,
    cpu_price: float = 0.0,
    allowed_tenants: frozenset[str] = frozenset(),
) -> RegionView:
    """What dispatch sees of a region: its state, its last heartbeat, and its config's prices."""
    hb = rec.heartbeat
    return RegionView(
        name=rec.name,
        state=rec.state,
        labels=hb.labels,
        free_gpus=hb.free_gpus,
        gpu_types=hb.gpu_types,
        free_cpus=hb.free_cpus,
        queue_depth=hb.queue_depth,
        launch_failures=hb.launch_failures,
        gpu_price=gpu_price or {},
        cpu_price=cpu_price,
        allowed_tenants=allowed_tenants,
    )


# -- assignments: loss and fencing ---------------------------------------------------------------
@dataclass(frozen=True)
class Assignment:
    """A run's current placement: its region and generation (fencing token), and its state there."""

    run_id: str
    region: Optional[str]
    generation: int
    status: str = "dispatched"
    retries_left: int = 0
    restartable: bool = False  # a running run may start over elsewhere (checkpoints, idempotent)
    started_at: Optional[float] = None  # when it last began running (GPU-hours are charged from it)


@dataclass(frozen=True)
class LossPlan:
    """What to do with a lost region's runs."""

    redispatch: list[Assignment]  # generation + 1, region None: to dispatch again
    fail: list[tuple[str, str]]  # (run_id, reason)


def plan_region_loss(assignments: Sequence[Assignment], region: str) -> LossPlan:
    """Runs not started, or running but restartable with retries left, go elsewhere with a new
    generation; the rest fail with ``region_lost``. Ended runs are left alone."""
    redo: list[Assignment] = []
    fail: list[tuple[str, str]] = []
    for a in assignments:
        if a.region != region or a.status in TERMINAL:
            continue
        if a.status in NOT_STARTED:
            redo.append(
                replace(a, region=None, generation=a.generation + 1, status="dispatched", started_at=None)
            )
        elif a.restartable and a.retries_left > 0:
            redo.append(
                replace(
                    a,
                    region=None,
                    generation=a.generation + 1,
                    status="dispatched",
                    retries_left=a.retries_left - 1,
                    started_at=None,
                )
            )
        else:
            fail.append((a.run_id, f"region_lost: {region} went silent while the run was {a.status}"))
    return LossPlan(redo, fail)


def fence(
    current: Mapping[str, Assignment], region: str, reported: Sequence[tuple[str, int]]
) -> list[tuple[str, int]]:
    """The ``(run_id, generation)`` a region reports that it must cancel: an older generation than
    the current one, or a run now assigned elsewhere. Runs the control plane never assigned (direct
    submissions) are never fenced."""
    stale = []
    for run_id, gen in reported:
        a = current.get(run_id)
        if a is None:
            continue
        if gen < a.generation or (gen == a.generation and a.region != region):
            stale.append((run_id, gen))
    return stale


# -- sequenced status changes --------------------------------------------------------------------
@dataclass(frozen=True)
class StatusBatch:
    """The outcome of a batch: changes to apply, the new last sequence, a resync point on a gap,
    duplicates skipped and stale changes (an old generation) kept apart."""

    apply: list[Mapping[str, Any]]
    last_seq: int
    resync_from: Optional[int]
    duplicates: int
    stale: list[Mapping[str, Any]]


def apply_status_batch(
    last_seq: int, changes: Sequence[Mapping[str, Any]], generations: Mapping[str, int]
) -> StatusBatch:
    """Apply ``changes`` (each with ``seq``, ``workload_id``, optional ``generation``) after
    ``last_seq``: resends are skipped, the contiguous run is applied, a gap stops it and asks for a
    resend from the first missing sequence."""
    apply: list[Mapping[str, Any]] = []
    stale: list[Mapping[str, Any]] = []
    dup = 0
    last = last_seq
    resync: Optional[int] = None
    for c in sorted(changes, key=lambda c: int(c["seq"])):
        seq = int(c["seq"])
        if seq <= last:
            dup += 1
            continue
        if seq != last + 1:
            resync = last + 1
            break
        last = seq
        gen = c.get("generation")
        cur = generations.get(str(c["workload_id"]))
        if gen is not None and cur is not None and int(gen) < cur:
            stale.append(c)
        else:
            apply.append(c)
    return StatusBatch(apply, last, resync, dup, stale)
