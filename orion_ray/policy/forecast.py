"""Estimated start and completion: a forward simulation of the queue with the same policy code.

Running workloads end at their expected time (``timeout_s`` or history); at each end the freed
capacity is offered to the queue in policy order (quota and placement exactly as the cycle checks
them; no preemption, no reservation). Pure; it works on copies and mutates nothing it is given.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Mapping, Optional, Sequence

from .admission import Candidate, Running, usage_of
from .live_placement import LivePlacer
from .quota import QuotaBook, TenantQuota

MAX_EVENTS = 5_000


def forecast(
    placer: LivePlacer,
    ordered: Sequence[Candidate],
    running: Sequence[Running],
    tenants: Mapping[str, TenantQuota],
    now: float,
    default_runtime_s: float,
    horizon: int = 500,
    extra_usage: Optional[Mapping[str, Mapping[str, float]]] = None,
) -> dict[str, tuple[Optional[float], Optional[float]]]:
    """``{workload_id: (estimated_start, estimated_completion)}`` for the first ``horizon``
    candidates of ``ordered`` (policy order). ``(None, None)`` when nothing that is expected to end
    frees enough for it (e.g. it needs nodes the cluster does not have)."""
    sim = placer.copy()
    quota = QuotaBook(tenants, usage_of(running, extra_usage))
    tie = itertools.count()
    events: list[Any] = []
    for r in running:
        end = (
            now
            if r.stopping
            else max(now, r.expected_end if r.expected_end is not None else now + default_runtime_s)
        )
        heapq.heappush(events, (end, next(tie), r.held, r.tenant, r.demand))
    pending = list(ordered[:horizon])
    out: dict[str, tuple[Optional[float], Optional[float]]] = {}
    t = now
    for _ in range(MAX_EVENTS):
        still: list[Candidate] = []
        no_fit: set[Any] = set()
        for c in pending:
            if c.shape in no_fit or quota.check(c.tenant, c.demand):
                still.append(c)
                continue
            placed = sim.place(c.bundles, c.gpu_types, c.strategy)
            if placed is None:
                no_fit.add(c.shape)
                still.append(c)
                continue
            sim.commit(placed)
            quota.add(c.tenant, c.demand)
            end = t + (c.runtime_s if c.runtime_s is not None else default_runtime_s)
            out[c.workload_id] = (t, end)
            heapq.heappush(events, (end, next(tie), placed, c.tenant, c.demand))
        pending = still
        if not pending or not events:
            break
        t = events[0][0]
        while events and events[0][0] <= t:  # everything that ends at this instant
            _, _, held, tenant, demand = heapq.heappop(events)
            sim.release(held)
            quota.remove(tenant, demand)
    for c in pending:
        out[c.workload_id] = (None, None)
    return out
