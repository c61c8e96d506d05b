"""The scheduler's entry point to admission: engine state kept across cycles, passes in slices.

The scheduler keeps one ``CyclePlanner``. It holds the placement engine's view of the free capacity
(the cluster minus every bundle Orion holds and what others use there), updated by deltas —
``apply`` what a plan admitted, ``released`` what ended — instead of rebuilt every cycle, so the
engine's per-shape score caches stay warm from one cycle to the next. ``sync`` rebuilds it from a
snapshot of the cluster (nodes joined or left, outside usage moved, a periodic consistency check)
and still keeps the caches of the nodes whose state did not change.

A pass (``admission.CyclePass``) runs in slices of about ``slice_s`` of work: ``plan_slice`` returns
what the slice admitted, preempted and why the rest waits, and the caller applies it (and creates
the placement groups, and yields to its event loop) before asking for the next slice. The slices of
a pass together decide exactly what one uninterrupted pass over the same inputs would.

Which pass to run:

- ``full``: every queued workload. Needed when waiting work may fit now or its order changed:
  capacity freed (``released``), nodes or outside usage changed (``sync``), configuration, quota,
  tenants or the serving usage counted against quotas changed (``invalidate``), and at least every
  ``full_every_s`` (a gang's reservation comes with waiting time; deadlines approach).
  ``needs_full(now)`` says so.
- ``delta``: only newly arrived workloads, against the current free capacity. Enough when nothing
  but arrivals happened since the last pass: the work already waiting met at least as much free
  capacity and as much quota then as now, so a full pass would leave it waiting again and admit
  exactly what the delta admits (the one difference: the preemption search budget is the delta's
  own). The reservation the last full pass made is honoured.

The scheduler's loop, one step per turn of its event loop::

    if planner.busy:
        part = planner.plan_slice()
    elif planner.needs_full(now):
        planner.full(queued, running, settings, fair, capacity, now, nominated=...)
        part = planner.plan_slice()
    elif arrivals:
        planner.delta(arrivals, running, settings, fair, capacity, now)
        part = planner.plan_slice()
    planner.apply(part, fair)   # then: STARTING, placement groups, preemptions, wait reasons

Pure: the clock that measures a slice is passed in, like ``now``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from .admission import Candidate, CyclePass, Plan, PolicySettings, Running
from .fairshare import FairShare
from .fit import NodeView
from .live_placement import Held, LivePlacer
from .placement import Policy

SLICE_S = 0.08  # work per slice: well under the 100 ms an API call may wait behind it
FULL_EVERY_S = 10.0  # the longest a queue goes without a full pass while only arrivals happen


class CyclePlanner:
    """Admission planning that the scheduler keeps between cycles (see the module docstring)."""

    def __init__(
        self, *, clock: Callable[[], float], slice_s: float = SLICE_S, full_every_s: float = FULL_EVERY_S
    ) -> None:
        """``clock`` measures work (e.g. ``time.perf_counter``; a fake one in tests): a slice
        ends once it has moved ``slice_s``."""
        self.clock, self.slice_s, self.full_every_s = clock, slice_s, full_every_s
        self.state: Optional[LivePlacer] = None  # free capacity as of the applied plans
        self.current: Optional[CyclePass] = None  # the pass in progress
        self.reservation: Optional[dict[str, Any]] = None  # made by the last full pass
        self._full_due = True
        self._last_full = -math.inf

    # -- the engine state ------------------------------------------------------------------------
    def sync(self, policy: Policy, nodes: Sequence[NodeView], held: Iterable[Held]) -> LivePlacer:
        """Rebuild the free capacity from ``nodes`` (their ``free`` already net of ``held``, as
        ``LivePlacer`` takes them) and every bundle held on them; see ``adopt``."""
        return self.adopt(LivePlacer(policy, nodes, held))

    def adopt(self, placer: LivePlacer) -> LivePlacer:
        """Take a freshly built ``placer`` as the free capacity, keeping the score caches of
        every node whose state did not change. A full pass is due if anything changed."""
        old = self.state
        if old is not None and old.policy is placer.policy:
            placer.cache = old.cache
            changed = placer.arr.adopt_versions(old.arr)
            if changed != 0:
                self._full_due = True
        else:
            self._full_due = True
        self.state = placer
        return placer

    def apply(self, plan: Plan, fair: Optional[FairShare] = None) -> None:
        """Carry out ``plan`` in the planner's state: its admissions take their capacity, and
        their entry penalties go to ``fair`` (the scheduler's long-lived fair share)."""
        self._require_state().commit([h for _, placed in plan.admitted for h in placed])
        if fair is not None:
            plan.apply_fair_share(fair)

    def placed(self, held: Sequence[Held]) -> None:
        """Bundles now held that no plan of this planner admitted (e.g. capacity claimed for a
        serving replica): they take their capacity."""
        self._require_state().commit(held)

    def released(self, held: Sequence[Held]) -> None:
        """Bundles given back (work ended, was preempted, or an admission was not carried out):
        capacity is free again, so waiting work may fit and a full pass is due."""
        self._require_state().release(held)
        self._full_due = True

    def invalidate(self) -> None:
        """Something the order or the quotas depend on changed (configuration, tenants): a full
        pass is due."""
        self._full_due = True

    # -- passes ----------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A pass is in progress (``plan_slice`` continues it)."""
        return self.current is not None

    def needs_full(self, now: float) -> bool:
        """Whether the next pass must be a full one (see the module docstring)."""
        return self._full_due or now - self._last_full >= self.full_every_s

    def full(
        self,
        candidates: Sequence[Candidate],
        running: Sequence[Running],
        settings: PolicySettings,
        fair: FairShare,
        capacity: Mapping[str, float],
        now: float,
        *,
        nominated: Mapping[str, set[str]] | None = None,
        extra_usage: Mapping[str, Mapping[str, float]] | None = None,
        allow_preemption: bool = True,
        allow_reservation: bool = True,
    ) -> CyclePass:
        """Start a pass over every queued candidate (it replaces a pass in progress). Its
        reservation, if it makes one, replaces the one in effect."""
        self.current = CyclePass(
            self._require_state(),
            candidates,
            running,
            settings,
            fair,
            capacity,
            now,
            nominated=nominated,
            allow_preemption=allow_preemption,
            allow_reservation=allow_reservation,
            extra_usage=extra_usage,
        )
        self.reservation = None
        self._full_due = False
        self._last_full = now
        return self.current

    def delta(
        self,
        arrivals: Sequence[Candidate],
        running: Sequence[Running],
        settings: PolicySettings,
        fair: FairShare,
        capacity: Mapping[str, float],
        now: float,
        *,
        extra_usage: Mapping[str, Mapping[str, float]] | None = None,
        allow_preemption: bool = True,
    ) -> CyclePass:
        """Start a pass over newly arrived candidates only, against the current free capacity
        and the reservation in effect (it replaces a pass in progress). Valid when only
        arrivals happened since the last pass (``needs_full`` is false)."""
        self.current = CyclePass(
            self._require_state(),
            arrivals,
            running,
            settings,
            fair,
            capacity,
            now,
            allow_preemption=allow_preemption,
            allow_reservation=True,
            extra_usage=extra_usage,
            reservation=self.reservation,
        )
        return self.current

    def plan_slice(self) -> Plan:
        """The next slice of the pass in progress: what it admitted, preempted and why the rest
        waits (``complete`` on the last slice). Apply it before asking for the next one."""
        if self.current is None:
            raise RuntimeError("no pass in progress: start one with full() or delta()")
        part = self.current.advance(self.clock, self.slice_s)
        if part.complete:
            self.reservation = self.current.reservation
            self.current = None
        return part

    def plan_rest(self) -> Plan:
        """The rest of the pass in progress in one go, unsliced (all of it if no slice was
        taken yet)."""
        if self.current is None:
            raise RuntimeError("no pass in progress: start one with full() or delta()")
        part = self.current.advance()
        self.reservation = self.current.reservation
        self.current = None
        return part

    def _require_state(self) -> LivePlacer:
        if self.state is None:
            raise RuntimeError("no cluster state yet: call sync() or adopt() first")
        return self.state
