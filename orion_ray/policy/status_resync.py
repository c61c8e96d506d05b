"""A region's full listing, reconciled at the control plane (pure; docs/regions.md, "Resync").

When a region's status outbox overflowed (it dropped changes the control plane never acknowledged)
or a gap cannot be filled from what it still holds, its agent sends a *listing* instead of changes:
every workload it holds that has not ended, with its state and generation, plus the ones that
ended recently, as of its sequence ``through_seq``. The control plane turns the listing into
changes and applies them like a batch, then takes ``through_seq`` as the region's last sequence:

- a listing at or below what the control plane already applied is a replay: nothing changes;
- a control-plane run listed with an older generation than its assignment is stale (recorded,
  never applied: the heartbeat's fencing cancels that copy); an assignment that has ended here
  never moves back; one whose status is the listed one needs no change;
- a direct run is applied as its change (``direct_usage.on_change`` is idempotent); a direct run
  the control plane holds that the region no longer lists ended unseen: its hold is released and
  its GPU-hours charged up to now (over, never under);
- a control-plane run this region reported as started but does not list is reported as
  ``missing``, and left alone: it may have ended before the listing's terminal window, and a lost
  region's runs are the loss handling's, not the listing's (acting on absence could run it twice).

Nothing is redispatched or failed by a listing, so a resync can neither lose a run nor run one
twice; it only brings the view, the assignments' states and the ledger's holds up to date.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .direct_usage import is_direct
from .region_state import TERMINAL, Assignment

ENDED_UNSEEN = "resync: no longer listed by the region (ended while its changes were dropped)"


@dataclass(frozen=True)
class ResyncPlan:
    """Changes to apply (each carrying ``seq = through_seq``), stale ones, control-plane runs not
    listed, and whether the listing was a replay."""

    apply: list[Mapping[str, Any]] = field(default_factory=list)
    stale: list[Mapping[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    replay: bool = False


def plan_resync(
    *,
    region: str,
    last_seq: int,
    through_seq: int,
    items: Sequence[Mapping[str, Any]],
    assignments: Mapping[str, Assignment],
    direct_open: Iterable[str],
    now: float,
) -> ResyncPlan:
    """What a listing ``items`` of ``region`` as of ``through_seq`` changes, given the control
    plane's ``assignments`` and the region's open direct runs (``direct_open``: workload ids)."""
    if through_seq <= last_seq:
        return ResyncPlan(replay=True)
    apply: list[Mapping[str, Any]] = []
    stale: list[Mapping[str, Any]] = []
    listed_runs: set[str] = set()
    listed_direct: set[str] = set()
    for it in items:
        c = {**it, "seq": through_seq}
        if is_direct(c):
            listed_direct.add(str(c.get("region_workload_id") or c["workload_id"]))
            apply.append(c)
            continue
        run_id = str(c["workload_id"])
        listed_runs.add(run_id)
        a = assignments.get(run_id)
        if a is None:
            apply.append(c)  # not ours (any more): the view keeps it, the assignments ignore it
            continue
        gen = int(c["generation"])
        if gen < a.generation or (gen == a.generation and a.region != region):
            stale.append(c)
        elif gen == a.generation and a.status not in TERMINAL and a.status != c.get("status"):
            apply.append(c)
    for wid in sorted(set(direct_open) - listed_direct):
        apply.append(_ended_unseen(wid, through_seq, now))
    missing = sorted(
        run_id
        for run_id, a in assignments.items()
        if a.region == region
        and a.status in ("queued", "starting", "running", "preempted")
        and run_id not in listed_runs
    )
    return ResyncPlan(apply, stale, missing)


def _ended_unseen(workload_id: str, seq: int, now: float) -> dict[str, Any]:
    return {
        "seq": seq,
        "workload_id": workload_id,
        "region_workload_id": workload_id,
        "generation": None,
        "status": "cancelled",
        "at": now,
        "reason": ENDED_UNSEEN,
        "unseen": True,
    }
