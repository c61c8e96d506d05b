"""One admission pass of the scheduling cycle, pure: order, quota, fit, preempt, reserve.

``plan_cycle`` takes the live placer (the cluster minus what Orion holds), the queued candidates and
the running workloads, and returns what to admit (with the engine's placement), what to preempt, and
why everything else waits. The live scheduler, the forecast behind ``estimated_start`` and the
``policy`` benchmark all call it, so they make the same decisions.

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
from typing import Iterable, Iterator, Mapping, Optional, Sequence

from .fairshare import FairShare
from .live_placement import Held, LivePlacer
from .quota import QuotaBook, TenantQuota

RANKS = ("critical", "high", "normal", "low", "best_effort")
# Candidates per cycle that may look for victims: the search is the costly part of a cycle, and the
# best-ordered candidates get it first; the others try again next cycle.
MAX_PREEMPTION_ATTEMPTS = 8


@dataclass
class Candidate:
    """A queued workload as the policy sees it."""

    workload_id: str
    tenant: str
    rank: int                         # 0 = critical … 4 = best_effort
    seq: int
    bundles: Sequence[Mapping[str, float]]
    gpu_types: Sequence[Optional[str]]
    strategy: str
    demand: Mapping[str, float]       # quota units (quota.demand_of)
    queued_since: float
    deadline: Optional[float] = None
    runtime_s: Optional[float] = None  # expected run time (timeout_s or history); None: unknown

    @property
    def shape(self) -> tuple:
        return (self.strategy, tuple(self.gpu_types),
                tuple(tuple(sorted(b.items())) for b in self.bundles))


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
    stopping: bool = False            # preempted or cancelled: its capacity frees soon


@dataclass
class PolicySettings:
    """The policy's configuration (``orion.yaml``'s ``policy`` section and the tenants)."""

    tenants: Mapping[str, TenantQuota] = field(default_factory=dict)
    preemption: bool = True
    min_runtime_s: float = 0.0
    # ranks whose ``preemptible: false`` is honoured (critical and high by default)
    protected_ranks: frozenset = frozenset({0, 1})
    reserve_after_s: float = 300.0
    half_life_s: float = 300.0

    def weight(self, tenant: str) -> float:
        q = self.tenants.get(tenant)
        return q.weight if q else 1.0


@dataclass
class Plan:
    """What one pass decided."""

    admitted: list[tuple[Candidate, list[Held]]] = field(default_factory=list)
    preempt: list[tuple[str, str]] = field(default_factory=list)  # (victim, for whom)
    reasons: dict[str, list[dict]] = field(default_factory=dict)
    reservation: Optional[dict] = None
    order: list[str] = field(default_factory=list)  # workload ids in the order considered


def reason(code: str, message: str) -> dict:
    return {"code": code, "message": message}


# == 1 order =======================================================================================
class FairOrder:
    """Candidates best first, re-ranking tenants by share as admissions happen (``admitted``)."""

    def __init__(self, candidates: Iterable[Candidate], fair: FairShare,
                 settings: PolicySettings, capacity: Mapping[str, float]) -> None:
        self.fair, self.settings, self.capacity = fair, settings, capacity
        self.classes: dict[int, tuple[list, dict]] = {}
        for c in candidates:
            dl, per_tenant = self.classes.setdefault(c.rank, ([], {}))
            if c.deadline is not None:
                dl.append(c)
            else:
                per_tenant.setdefault(c.tenant, []).append(c)
        self._heap: list = []

    def _share(self, tenant: str) -> float:
        return self.fair.share(tenant, self.settings.weight(tenant), self.capacity)

    def __iter__(self) -> Iterator[Candidate]:
        for rank in sorted(self.classes):
            dl, per_tenant = self.classes[rank]
            yield from sorted(dl, key=lambda c: (c.deadline, c.seq))
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


def static_order(candidates: Sequence[Candidate], fair: FairShare, settings: PolicySettings,
                 capacity: Mapping[str, float]) -> list[Candidate]:
    """The order with no admissions in between (for positions and the forecast)."""
    return list(FairOrder(candidates, fair, settings, capacity))


# == the pass ======================================================================================
def plan_cycle(placer: LivePlacer, candidates: Sequence[Candidate], running: Sequence[Running],
               settings: PolicySettings, fair: FairShare, capacity: Mapping[str, float],
               now: float, nominated: Mapping[str, set] | None = None,
               allow_preemption: bool = True, allow_reservation: bool = True,
               extra_usage: Mapping[str, Mapping[str, float]] | None = None) -> Plan:
    """Admit, preempt and reserve for one cycle. ``placer`` and ``fair`` are updated with what is
    admitted; ``nominated`` maps a candidate to victims still stopping for it; ``extra_usage``
    (tenant → resources) is what tenants hold outside the batch queue (serving replicas) and
    counts against their quotas."""
    nominated = dict(nominated or {})
    plan = Plan()
    quota = QuotaBook(settings.tenants, _usage(running, extra_usage))
    pool = [r for r in running if not r.stopping]
    masked: Optional[LivePlacer] = None
    until = math.inf
    no_fit: dict[tuple, dict] = {}
    attempts = MAX_PREEMPTION_ATTEMPTS
    for c in FairOrder(candidates, fair, settings, capacity):
        plan.order.append(c.workload_id)
        why: list[dict] = []
        if c.deadline is not None and now + (c.runtime_s or 0.0) > c.deadline:
            why.append(reason("deadline_at_risk", "it can no longer finish before its deadline"
                              + (" (expected run time %.0fs)" % c.runtime_s if c.runtime_s else "")))
        blocked = quota.check(c.tenant, c.demand)
        if blocked:
            plan.reasons[c.workload_id] = why + [reason("quota", blocked["message"])]
            continue
        backfill_ok = c.runtime_s is not None and now + c.runtime_s <= until
        use = masked if masked is not None and not backfill_ok else placer
        key = (c.shape, use is masked)
        placed = None if key in no_fit else use.place(c.bundles, c.gpu_types, c.strategy)
        if placed is not None:
            placer.commit(placed)
            if masked is not None:
                masked.commit(placed)
            quota.add(c.tenant, c.demand)
            fair.penalise(c.tenant, c.demand)
            plan.admitted.append((c, placed))
            if why:
                plan.reasons[c.workload_id] = why
            continue
        if key not in no_fit:  # why this shape waits, worked out once per cycle
            if use is masked and placer.place(c.bundles, c.gpu_types, c.strategy) is not None:
                no_fit[key] = reason(
                    "reserved", f"free capacity is held for {plan.reservation['workload_id']} "
                                "(a gang that waited longest); it would not finish first")
            elif placer.could_ever_fit(c.bundles, c.gpu_types, c.strategy):
                no_fit[key] = reason("capacity", "no node has the free resources for its bundles")
            else:
                no_fit[key] = reason("no_fit", "no node in the cluster could ever hold its "
                                               "bundles; it waits for larger or differently "
                                               "labelled nodes")
        wait = no_fit[key]
        if wait["code"] in ("no_fit", "reserved"):  # nothing to preempt for: it fits, or never
            plan.reasons[c.workload_id] = why + [wait]
            continue
        pending = nominated.get(c.workload_id)
        if pending:
            plan.reasons[c.workload_id] = why + [reason(
                "preempting", f"waiting for {len(pending)} preempted workload(s) to stop")]
            continue
        if allow_preemption and settings.preemption and attempts > 0:
            attempts -= 1
            victims = choose_victims(placer, c, pool, quota, settings, now)
            if victims:
                ids = {v.workload_id for v in victims}
                pool = [r for r in pool if r.workload_id not in ids]
                plan.preempt += [(v.workload_id, c.workload_id) for v in victims]
                plan.reasons[c.workload_id] = why + [reason(
                    "preempting", f"preempting {len(victims)} workload(s) to make room")]
                continue
        plan.reasons[c.workload_id] = why + [wait]
        if (allow_reservation and plan.reservation is None and wait["code"] == "capacity"
                and now - c.queued_since >= settings.reserve_after_s):
            got = reserve_for(placer, c, running, now)
            if got is not None:
                nodes, until = got
                plan.reservation = {"workload_id": c.workload_id, "nodes": sorted(nodes),
                                    "expected_at": until}
                masked = placer.masked(nodes)
                plan.reasons[c.workload_id].append(reason(
                    "reservation", f"capacity on {len(nodes)} node(s) is held for it as running "
                                   "work ends; smaller work may use it only if it ends first"))
    return plan


def _usage(running: Iterable[Running],
           extra: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {t: dict(u) for t, u in (extra or {}).items()}
    for r in running:
        u = out.setdefault(r.tenant, {})
        for k, v in r.demand.items():
            u[k] = u.get(k, 0.0) + v
    return out


# == 4 preempt =====================================================================================
def may_preempt(c: Candidate, r: Running, quota: QuotaBook, settings: PolicySettings,
                now: float) -> bool:
    """May ``c`` displace ``r``? Never a higher class; a lower class always; the same class only
    to reclaim nominal quota from a borrower of its cohort."""
    if r.stopping or now - r.started_at < settings.min_runtime_s:
        return False
    if not r.preemptible and r.rank in settings.protected_ranks:
        return False
    if r.rank > c.rank:
        return True
    return (r.rank >= c.rank and r.tenant != c.tenant
            and quota.cohort_of(r.tenant) == quota.cohort_of(c.tenant)
            and quota.is_borrowing(r.tenant) and quota.within_nominal(c.tenant, c.demand))


def choose_victims(placer: LivePlacer, c: Candidate, pool: Sequence[Running], quota: QuotaBook,
                   settings: PolicySettings, now: float) -> Optional[list[Running]]:
    """The fewest, cheapest running workloads whose removal lets ``c`` fit, or ``None``.

    Cheapest first: the lowest class, then borrowers, then the least work lost (run time times
    size). A one-node candidate looks node by node for the cheapest set on one node; a gang takes
    victims in cost order until it fits, then puts back each one it does not need.
    """
    eligible = [r for r in pool if may_preempt(c, r, quota, settings, now)]
    if not eligible:
        return None
    borrowing = {t: quota.is_borrowing(t) for t in {r.tenant for r in eligible}}
    eligible.sort(key=lambda r: (-r.rank, not borrowing[r.tenant],
                                 (now - r.started_at) * _size(r), r.workload_id))
    if len(c.bundles) == 1 or c.strategy == "STRICT_PACK":
        return _victims_on_one_node(placer, c, eligible)
    def fits_without(k: int) -> Optional[LivePlacer]:
        trial = placer.copy()
        for r in eligible[:k]:
            trial.release(r.held)
        return trial if trial.place(c.bundles, c.gpu_types, c.strategy) is not None else None

    # The shortest prefix (in cost order) that makes room: doubling, then bisection.
    if fits_without(len(eligible)) is None:
        return None
    lo, hi = 0, 1
    while hi < len(eligible) and fits_without(hi) is None:
        lo, hi = hi, min(len(eligible), hi * 2)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits_without(mid) is not None else (mid, hi)
    chosen = list(eligible[:hi])
    trial = fits_without(hi)
    # Put back any victim the gang does not need after all (most expensive first).
    for r in list(reversed(chosen[:-1]))[:16]:
        test = trial.copy()
        test.commit(r.held)
        if test.place(c.bundles, c.gpu_types, c.strategy) is not None:
            trial = test
            chosen.remove(r)
    return chosen


def _victims_on_one_node(placer: LivePlacer, c: Candidate,
                         eligible: Sequence[Running]) -> Optional[list[Running]]:
    """The cheapest prefix of ``eligible`` (already in cost order) on any single node that makes
    room for ``c``'s bundle(s) there, checked on array rows, then confirmed with the engine."""
    from .live_placement import bundle_request
    from .placement.arrays import Req

    req = Req.from_bundle(bundle_request(
        {k: sum(b.get(k, 0.0) for b in c.bundles) for k in ("CPU", "memory")}
        | ({"GPU": c.bundles[0]["GPU"] * len(c.bundles)} if c.bundles[0].get("GPU") else {}),
        c.gpu_types[0]))
    arr = placer.arr
    on_node: dict[int, list[Running]] = {}
    for r in eligible:
        for i in {arr.index[h.node_id] for h in r.held if h.node_id in arr.index}:
            on_node.setdefault(i, []).append(r)
    best: Optional[tuple] = None
    for i, victims in on_node.items():
        cpu, mem, gpu = int(arr.cpu[i]), float(arr.mem[i]), arr.gpu[i].copy()
        for k, r in enumerate(victims):
            for h in r.held:
                if arr.index.get(h.node_id) != i:
                    continue
                hr = Req.from_bundle(bundle_request(h.bundle))
                cpu, mem = cpu + hr.cpu, mem + hr.mem
                for g in (h.gpu_indices or ()):
                    gpu[g] = min(1000, gpu[g] + hr.milli)
            if placer.fits_node(i, req, cpu, mem, gpu):
                cost = (k + 1, max(-v.rank for v in victims[:k + 1]))
                if best is None or cost < best[0]:
                    best = (cost, victims[:k + 1])
                break
    if best is None:
        return None
    trial = placer.copy()
    for r in best[1]:
        trial.release(r.held)
    return list(best[1]) if trial.place(c.bundles, c.gpu_types, c.strategy) is not None else None


def _size(r: Running) -> float:
    return 1.0 + r.demand.get("gpu", 0.0) * 10 + r.demand.get("cpu", 0.0)


# == 5 reserve =====================================================================================
def reserve_for(placer: LivePlacer, c: Candidate, running: Sequence[Running],
                now: float) -> Optional[tuple[set, float]]:
    """The nodes ``c`` would get as running work ends (soonest first), and when; ``None`` if the
    expected ends are unknown or never free enough."""
    trial = placer.copy()
    ends = sorted((now if r.stopping else r.expected_end, r.workload_id, r) for r in running
                  if r.stopping or r.expected_end is not None)
    until = now
    for end, _, r in ends:
        trial.release(r.held)
        until = max(until, end)
        placed = trial.place(c.bundles, c.gpu_types, c.strategy)
        if placed is not None:
            return {h.node_id for h in placed}, until
    return None
