"""One admission pass of the scheduling cycle, pure: order, quota, fit, preempt, reserve.

``plan_cycle`` takes the live placer (the cluster minus what Orion holds), the queued candidates and
the running workloads, and returns what to admit (with the engine's placement), what to preempt, and
why everything else waits. The live scheduler, the forecast behind ``estimated_start`` and the
``policy`` benchmark all call it, so they make the same decisions. It plans, nothing more: the placer
and the fair-share state it is given are unchanged; the plan carries the entry penalties
(``Plan.fair_delta``) for the caller to apply with what it admits. ``CyclePass`` is the same pass,
resumable in time-budgeted slices (``cycle.CyclePlanner`` is the scheduler's entry point).

Rules, in the order they apply to each candidate:

1. order — priority class first; within a class, workloads with a deadline earliest-deadline-first,
   then the tenant with the smallest weighted dominant share (``fairshare``), first come first
   served within a tenant. The share is updated after every admission, so one cycle admits many
   workloads and still interleaves tenants fairly.
2. quota — nominal quota, borrowing within the cohort (``quota``).
3. fit — the placement engine, all-or-nothing per gang. A gang that does not fit is skipped and
   smaller work behind it goes on (no head-of-line blocking) ...
4. preempt — ... unless it may displace work: a lower class, or (reclaim) a borrower of its cohort
   when it is itself within its nominal quota. Victims free exactly what is needed with the least
   lost work; it then waits for them to stop (it is *nominated*).
5. reserve — ... and once the first blocked gang has waited ``reserve_after_s``, the nodes it would
   get when running work ends are held for it: later workloads may use them only if they are
   expected to finish before then (backfill with a reservation, as Slurm does).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

from .budget import BudgetBook
from .fairshare import FairShare
from .live_placement import Held, LivePlacer, requests
from .markets import avoid_first
from .placement.arrays import Req
from .preemption import VictimIndex, _size, _victims_on_one_node, choose_victims, may_preempt, reserve_for  # noqa: F401
from .quota import QuotaBook, TenantQuota

RANKS = ("critical", "high", "normal", "low", "best_effort")
# Candidates per cycle that may look for victims: the search is the costly part of a cycle, and the
# best-ordered candidates get it first; the others try again next cycle.
MAX_PREEMPTION_ATTEMPTS = 8

Reason = dict[str, str]
Usage = dict[str, dict[str, float]]


@dataclass
class Candidate:
    """A queued workload as the policy sees it."""

    workload_id: str
    tenant: str
    rank: int  # 0 = critical … 4 = best_effort
    seq: int
    bundles: Sequence[Mapping[str, float]]
    gpu_types: Sequence[Optional[str]]
    strategy: str
    demand: Mapping[str, float]  # quota units (quota.demand_of)
    queued_since: float
    deadline: Optional[float] = None
    runtime_s: Optional[float] = None  # expected run time (timeout_s or history); None: unknown
    spot_ok: bool = False  # ``qos: spot_ok``: tries spot nodes first (policy/markets.py)

    @cached_property
    def shape(self) -> tuple[Any, ...]:
        """What placement depends on (equal shapes fit or fail alike); computed once."""
        return (self.strategy, tuple(self.gpu_types), tuple(tuple(sorted(b.items())) for b in self.bundles))


@dataclass
class Running:
    """A workload holding capacity (starting or running, or being stopped)."""

    workload_id: str
    tenant: str
    rank: int
    demand: Mapping[str, float]
    held: Sequence[Held]
    started_at: float
    expected_end: Optional[float] = None
    preemptible: bool = True
    stopping: bool = False  # preempted or cancelled: its capacity frees soon


@dataclass
class PolicySettings:
    """The policy's configuration (``orion.yaml``'s ``policy`` section and the tenants)."""

    tenants: Mapping[str, TenantQuota] = field(default_factory=dict)
    preemption: bool = True
    min_runtime_s: float = 0.0
    # ranks whose ``preemptible: false`` is honoured (critical and high by default)
    protected_ranks: frozenset[int] = frozenset({0, 1})
    reserve_after_s: float = 300.0
    half_life_s: float = 300.0
    budgets: Optional[BudgetBook] = None  # GPU-hour budgets and use (policy/budget.py)

    def weight(self, tenant: str) -> float:
        """The tenant's fair-share weight (1 for a tenant without configuration)."""
        q = self.tenants.get(tenant)
        return q.weight if q else 1.0


@dataclass
class Plan:
    """What one pass decided (or, for a slice of a pass, what that slice decided)."""

    admitted: list[tuple[Candidate, list[Held]]] = field(default_factory=list)
    preempt: list[tuple[str, str]] = field(default_factory=list)  # (victim, for whom)
    reasons: dict[str, list[Reason]] = field(default_factory=dict)
    reservation: Optional[dict[str, Any]] = None
    order: list[str] = field(default_factory=list)  # workload ids in the order considered
    # Entry penalties of the admissions (tenant → resources): the caller adds them to its
    # long-lived fair share with what it admits (``apply_fair_share``); planning never does.
    fair_delta: Usage = field(default_factory=dict)
    complete: bool = True  # False: a slice, and its pass goes on (``CyclePass.advance``)

    def apply_fair_share(self, fair: FairShare) -> None:
        """Charge the admissions' entry penalties to ``fair`` (once, when the plan is applied)."""
        for tenant, demand in self.fair_delta.items():
            fair.penalise(tenant, demand)

    def merge(self, part: "Plan") -> None:
        """Add a later slice of the same pass (its reservation, if any, is the pass's)."""
        self.admitted += part.admitted
        self.preempt += part.preempt
        self.reasons.update(part.reasons)
        self.order += part.order
        for tenant, demand in part.fair_delta.items():
            _add(self.fair_delta.setdefault(tenant, {}), demand)
        self.reservation = part.reservation or self.reservation
        self.complete = part.complete


def reason(code: str, message: str) -> Reason:
    """One wait reason (``code`` is stable, ``message`` is for people)."""
    return {"code": code, "message": message}


def _add(into: dict[str, float], demand: Mapping[str, float]) -> None:
    for k, v in demand.items():
        into[k] = into.get(k, 0.0) + v


def usage_of(running: Iterable[Running], extra: Mapping[str, Mapping[str, float]] | None = None) -> Usage:
    """What each tenant holds, in quota units: running work plus ``extra`` (e.g. serving)."""
    out: Usage = {t: dict(u) for t, u in (extra or {}).items()}
    for r in running:
        _add(out.setdefault(r.tenant, {}), r.demand)
    return out


_usage = usage_of  # the old private name


# == 1 order =======================================================================================
class FairOrder:
    """Candidates best first, re-ranking tenants by share as admissions happen (``admitted``)."""

    def __init__(
        self,
        candidates: Iterable[Candidate],
        fair: FairShare,
        settings: PolicySettings,
        capacity: Mapping[str, float],
    ) -> None:
        self.fair, self.settings, self.capacity = fair, settings, capacity
        self.classes: dict[int, tuple[list[Candidate], dict[str, list[Candidate]]]] = {}
        for c in candidates:
            dl, per_tenant = self.classes.setdefault(c.rank, ([], {}))
            if c.deadline is not None:
                dl.append(c)
            else:
                per_tenant.setdefault(c.tenant, []).append(c)
        self._heap: list[tuple[float, int, str]] = []

    def _share(self, tenant: str) -> float:
        return self.fair.share(tenant, self.settings.weight(tenant), self.capacity)

    def __iter__(self) -> Iterator[Candidate]:
        for rank in sorted(self.classes):
            dl, per_tenant = self.classes[rank]
            yield from sorted(dl, key=lambda c: (c.deadline or 0.0, c.seq))
            queues = {t: sorted(q, key=lambda c: c.seq) for t, q in per_tenant.items()}
            pos = dict.fromkeys(queues, 0)
            self._heap = [(self._share(t), q[0].seq, t) for t, q in queues.items()]
            heapq.heapify(self._heap)
            while self._heap:
                _, _, t = heapq.heappop(self._heap)
                c = queues[t][pos[t]]
                pos[t] += 1
                yield c  # the caller may penalise the tenant before the next pull
                if pos[t] < len(queues[t]):
                    heapq.heappush(self._heap, (self._share(t), queues[t][pos[t]].seq, t))


def static_order(
    candidates: Sequence[Candidate], fair: FairShare, settings: PolicySettings, capacity: Mapping[str, float]
) -> list[Candidate]:
    """The order with no admissions in between (for positions and the forecast)."""
    return list(FairOrder(candidates, fair, settings, capacity))


# == the pass ======================================================================================
class CyclePass:
    """One admission pass over a queue that can stop and resume: ``advance`` considers candidates
    in policy order until the queue is done or a time budget is spent, and returns what it decided
    in that call (a slice). The slices of a pass, merged, are exactly the plan of one uninterrupted
    pass over the same inputs: the pass keeps its own copy of the placer and the fair share (with
    its own admissions in them) and its place in the order between calls.

    Nothing given is changed. ``reservation`` is one already in effect (a delta pass over new
    arrivals honours the one the last full pass made).
    """

    def __init__(
        self,
        placer: LivePlacer,
        candidates: Sequence[Candidate],
        running: Sequence[Running],
        settings: PolicySettings,
        fair: FairShare,
        capacity: Mapping[str, float],
        now: float,
        *,
        nominated: Mapping[str, set[str]] | None = None,
        allow_preemption: bool = True,
        allow_reservation: bool = True,
        extra_usage: Mapping[str, Mapping[str, float]] | None = None,
        reservation: Optional[dict[str, Any]] = None,
    ) -> None:
        self.placer = placer.copy()
        self.fair = fair.copy()
        self.settings, self.now, self.running = settings, now, list(running)
        self.nominated = dict(nominated or {})
        self.allow_preemption, self.allow_reservation = allow_preemption, allow_reservation
        # Built in the first slice, not here: setting a pass up over a deep queue and much running
        # work is itself tens of milliseconds, and it belongs inside a slice's budget.
        self._quota: Optional[QuotaBook] = None
        self._extra_usage = extra_usage
        self._victims: Optional[VictimIndex] = None  # built at the first preemption search
        self.masked: Optional[LivePlacer] = None
        self.until = math.inf
        self.reservation = reservation
        if reservation is not None:
            self.masked = self.placer.masked(reservation["nodes"])
            self.until = float(reservation["expected_at"])
        self.no_fit: dict[tuple[Any, ...], Reason] = {}
        self._reqs: dict[tuple[Any, ...], Optional[list[Req]]] = {}
        self.attempts = MAX_PREEMPTION_ATTEMPTS
        self.plan = Plan(reservation=reservation)  # everything decided so far
        self.done = False
        self._order = self._ordered(candidates, capacity)
        self._paused: Optional[Candidate] = None
        self._late: Optional[Callable[[], bool]] = None
        self.budgets = settings.budgets.copy() if settings.budgets is not None else None

    @property
    def quota(self) -> QuotaBook:
        """Quota use of running work (plus ``extra_usage``) and of this pass's admissions."""
        if self._quota is None:
            self._quota = QuotaBook(self.settings.tenants, usage_of(self.running, self._extra_usage))
        return self._quota

    def _ordered(self, candidates: Sequence[Candidate], capacity: Mapping[str, float]) -> Iterator[Candidate]:
        # a generator: the order is set up at the first pull, inside the first slice
        yield from FairOrder(candidates, self.fair, self.settings, capacity)

    def advance(self, clock: Optional[Callable[[], float]] = None, budget_s: float = math.inf) -> Plan:
        """Consider candidates until the pass ends or ``clock()`` has moved ``budget_s`` past its
        value at the call (at least one candidate per call); the slice decided. Without a clock
        the pass runs to its end."""
        part = Plan(reservation=self.plan.reservation, complete=False)
        start = clock() if clock is not None else 0.0
        # Past half the budget a slice does not start a search for victims or a reservation (the
        # costly steps): it ends before that candidate, which the next slice takes first. The
        # decisions are the same; the slice stays near its budget.
        # (never the slice's first candidate: every slice makes progress)
        self._late = None
        while True:
            c = self._next()
            if c is None:
                self.done = True
                break
            if not self._consider(c, part):
                self._paused = c
                break
            if clock is not None:
                if clock() - start >= budget_s:
                    break
                self._late = lambda: clock() - start >= budget_s / 2
        part.complete = self.done
        self.plan.merge(part)
        return part

    def _next(self) -> Optional[Candidate]:
        """The candidate a slice paused on (if any), else the next in policy order (``None``: the
        queue is done). The order's generator is never closed between slices."""
        if self._paused is not None:
            c, self._paused = self._paused, None
            return c
        return next(self._order, None)

    def _consider(self, c: Candidate, plan: Plan) -> bool:
        """Admit ``c``, or find why it waits (and preempt or reserve for it); the rules of the
        module docstring, in order. ``False``: paused before a costly search, nothing recorded
        (the slice is late); consider ``c`` again first in the next slice."""
        settings, now, placer, masked = self.settings, self.now, self.placer, self.masked
        plan.order.append(c.workload_id)
        why: list[Reason] = []
        if c.deadline is not None and now + (c.runtime_s or 0.0) > c.deadline:
            why.append(
                reason(
                    "deadline_at_risk",
                    "it can no longer finish before its deadline"
                    + (" (expected run time %.0fs)" % c.runtime_s if c.runtime_s else ""),
                )
            )
        blocked = self.quota.check(c.tenant, c.demand)
        if blocked:
            plan.reasons[c.workload_id] = why + [reason("quota", blocked["message"])]
            return True
        gpus = c.demand.get("gpu", 0.0)
        over = self.budgets.check(c.tenant, gpus, c.runtime_s) if self.budgets is not None else None
        if over:
            plan.reasons[c.workload_id] = why + [over]
            return True
        backfill_ok = c.runtime_s is not None and now + c.runtime_s <= self.until
        use = masked if masked is not None and not backfill_ok else placer
        key = (c.shape, use is masked)
        placed = None
        if key not in self.no_fit:
            if c.shape not in self._reqs:  # the engine's requests, once per shape and pass
                self._reqs[c.shape] = requests(c.bundles, c.gpu_types)
            placed = self._place(use, c)
        if placed is not None:
            placer.commit(placed)
            if masked is not None:
                masked.commit(placed)
            self.quota.add(c.tenant, c.demand)
            self.fair.penalise(c.tenant, c.demand)
            if self.budgets is not None:
                self.budgets.add(c.tenant, gpus * (c.runtime_s or 0.0) / 3600.0)
            _add(plan.fair_delta.setdefault(c.tenant, {}), c.demand)
            plan.admitted.append((c, placed))
            if why:
                plan.reasons[c.workload_id] = why
            return True
        if key not in self.no_fit:  # why this shape waits, worked out once per pass
            self.no_fit[key] = self._why_not(c, use is masked)
        wait = self.no_fit[key]
        if wait["code"] in ("no_fit", "reserved"):  # nothing to preempt for: it fits, or never
            plan.reasons[c.workload_id] = why + [wait]
            return True
        pending = self.nominated.get(c.workload_id)
        if pending:
            plan.reasons[c.workload_id] = why + [
                reason("preempting", f"waiting for {len(pending)} preempted workload(s) to stop")
            ]
            return True
        if (
            self._late is not None
            and self._late()
            and (
                (self.allow_preemption and settings.preemption and self.attempts > 0)
                or (
                    self.allow_reservation
                    and self.reservation is None
                    and wait["code"] == "capacity"
                    and now - c.queued_since >= settings.reserve_after_s
                )
            )
        ):
            plan.order.pop()  # as if not reached: the next slice starts with it
            return False
        if self.allow_preemption and settings.preemption and self.attempts > 0:
            self.attempts -= 1
            if self._victims is None:
                self._victims = VictimIndex([r for r in self.running if not r.stopping], settings, now)
            victims = choose_victims(placer, c, (), self.quota, settings, now, self._victims)
            if victims:
                self._victims.take({v.workload_id for v in victims})
                plan.preempt += [(v.workload_id, c.workload_id) for v in victims]
                plan.reasons[c.workload_id] = why + [
                    reason("preempting", f"preempting {len(victims)} workload(s) to make room")
                ]
                return True
        plan.reasons[c.workload_id] = why + [wait]
        if (
            self.allow_reservation
            and self.reservation is None
            and wait["code"] == "capacity"
            and now - c.queued_since >= settings.reserve_after_s
        ):
            got = reserve_for(placer, c, self.running, now)
            if got is not None:
                nodes, self.until = got
                self.reservation = plan.reservation = {
                    "workload_id": c.workload_id,
                    "nodes": sorted(nodes),
                    "expected_at": self.until,
                }
                self.masked = placer.masked(nodes)
                plan.reasons[c.workload_id].append(
                    reason(
                        "reservation",
                        f"capacity on {len(nodes)} node(s) is held for it as running "
                        "work ends; smaller work may use it only if it ends first",
                    )
                )
        return True

    def _place(self, use: LivePlacer, c: Candidate) -> Optional[list[Held]]:
        """Place on the preferred market first (spot for ``spot_ok``, else on-demand), then
        anywhere; one try when the cluster is all one market."""
        reqs = self._reqs[c.shape]
        spot = getattr(use, "spot_nodes", None)  # None: a placer without markets (a test double)
        avoid = avoid_first(c.spot_ok, spot, use.arr.node_ids) if spot else frozenset()
        if avoid:
            got = use.masked(avoid).place(c.bundles, c.gpu_types, c.strategy, reqs)
            if got is not None:
                return got
        return use.place(c.bundles, c.gpu_types, c.strategy, reqs)

    def _why_not(self, c: Candidate, on_masked: bool) -> Reason:
        """Why a shape does not fit now: held for the reservation, no free capacity, or never."""
        if (
            on_masked
            and self.reservation is not None
            and self.placer.place(c.bundles, c.gpu_types, c.strategy) is not None
        ):
            # cached per shape and shown to every tenant: names no workload (no leak of ids)
            return reason(
                "reserved",
                "free capacity is held for a gang that waited longest; it would not finish first",
            )
        if self.placer.could_ever_fit(c.bundles, c.gpu_types, c.strategy):
            return reason("capacity", "no node has the free resources for its bundles")
        return reason(
            "no_fit",
            "no node in the cluster could ever hold its bundles; it waits "
            "for larger or differently labelled nodes",
        )


def plan_cycle(
    placer: LivePlacer,
    candidates: Sequence[Candidate],
    running: Sequence[Running],
    settings: PolicySettings,
    fair: FairShare,
    capacity: Mapping[str, float],
    now: float,
    nominated: Mapping[str, set[str]] | None = None,
    allow_preemption: bool = True,
    allow_reservation: bool = True,
    extra_usage: Mapping[str, Mapping[str, float]] | None = None,
) -> Plan:
    """Admit, preempt and reserve for one cycle, in one uninterrupted pass. ``nominated`` maps a
    candidate to victims still stopping for it; ``extra_usage`` (tenant → resources) is what
    tenants hold outside the batch queue (serving replicas) and counts against their quotas.

    ``placer`` and ``fair`` are not changed: apply ``plan.admitted`` to the cluster and
    ``plan.apply_fair_share(fair)`` to the fair share when the plan is carried out."""
    return CyclePass(
        placer,
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
    ).advance()
