"""The launch budget of a dispatch (pure; docs/regions.md, "Launch budget").

A region that took a run (202) but cannot start it — its pool must launch capacity and the launch
fails or hangs, its queue does not move — must not keep the run past the launch SLO: once a
generation has been at its region for ``budget_s`` without a ``running`` report, the control plane
treats it as a failed launch (``launch_failed``): it releases the hold, blocks the region for the
run's GPU type, and dispatches the run elsewhere with the next generation; the region's copy is
cancelled by the heartbeat's fencing. Only runs that never started are concerned: a run that ran
and was preempted is the region's to restart.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from .region_state import Assignment

# at a region, waiting to start (a run still "dispatched" has no answer yet: the dispatcher's timeout)
WAITING = ("submitted", "queued", "starting")


def overdue(
    assignments: Sequence[Assignment], since: Mapping[str, float], *, now: float, budget_s: float
) -> list[Assignment]:
    """Assignments at a region, not started, whose generation was dispatched (``since``: run id →
    time of its reservation) more than ``budget_s`` ago, by run id."""
    if budget_s <= 0:
        return []
    out = []
    for a in assignments:
        t = since.get(a.run_id)
        if a.region is None or a.status not in WAITING or a.started_at is not None or t is None:
            continue
        if now - t > budget_s:
            out.append(a)
    return sorted(out, key=lambda a: a.run_id)
