"""Preemption and reservation for the admission pass: which running work a blocked candidate may
displace, the cheapest set that makes room, and the nodes a long-waiting gang gets as work ends.

Pure; the pass (``admission``) calls these on copies of its placer, so nothing here changes what it
is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

from .live_placement import LivePlacer, bundle_request
from .placement.arrays import Req
from .quota import QuotaBook

if TYPE_CHECKING:
    from .admission import Candidate, PolicySettings, Running


# == 4 preempt =====================================================================================
def may_preempt(c: Candidate, r: Running, quota: QuotaBook, settings: PolicySettings, now: float) -> bool:
    """May ``c`` displace ``r``? Never a higher class; a lower class always; the same class only
    to reclaim nominal quota from a borrower of its cohort."""
    if r.stopping or now - r.started_at < settings.min_runtime_s:
        return False
    if not r.preemptible and r.rank in settings.protected_ranks:
        return False
    if r.rank > c.rank:
        return True
    return (
        r.rank >= c.rank
        and r.tenant != c.tenant
        and quota.cohort_of(r.tenant) == quota.cohort_of(c.tenant)
        and quota.is_borrowing(r.tenant)
        and quota.within_nominal(c.tenant, c.demand)
    )


class VictimIndex:
    """The running work a pass may preempt, sorted once per pass: by class, and within a class by
    the work a preemption loses (run time times size). ``eligible`` then gives a candidate's
    victims in ``choose_victims``' order without filtering and sorting everything each time."""

    def __init__(self, pool: Sequence[Running], settings: PolicySettings, now: float) -> None:
        self.by_rank: dict[int, list[Running]] = {}
        for r in pool:
            if r.stopping or now - r.started_at < settings.min_runtime_s:
                continue
            if not r.preemptible and r.rank in settings.protected_ranks:
                continue
            self.by_rank.setdefault(r.rank, []).append(r)
        for rs in self.by_rank.values():
            rs.sort(key=lambda r: ((now - r.started_at) * _size(r), r.workload_id))
        self.taken: set[str] = set()

    def take(self, ids: set[str]) -> None:
        """These are preempted already: not victims again in this pass."""
        self.taken |= ids

    def eligible(self, c: Candidate, quota: QuotaBook) -> list[Running]:
        """What ``c`` may displace (``may_preempt``), cheapest first: the lowest class, then
        borrowers, then the least work lost."""
        out: list[Running] = []
        borrowing: dict[str, bool] = {}
        for rank in sorted(self.by_rank, reverse=True):
            if rank < c.rank:
                break
            rs = self.by_rank[rank]
            if self.taken:
                rs = [r for r in rs if r.workload_id not in self.taken]
            for t in {r.tenant for r in rs}.difference(borrowing):
                borrowing[t] = quota.is_borrowing(t)
            if rank == c.rank:  # the same class only to reclaim nominal quota from a borrower
                if not quota.within_nominal(c.tenant, c.demand):
                    break
                cohort = quota.cohort_of(c.tenant)
                rs = [
                    r
                    for r in rs
                    if r.tenant != c.tenant and borrowing[r.tenant] and quota.cohort_of(r.tenant) == cohort
                ]
            out += [r for r in rs if borrowing[r.tenant]]
            out += [r for r in rs if not borrowing[r.tenant]]
        return out


def choose_victims(
    placer: LivePlacer,
    c: Candidate,
    pool: Sequence[Running],
    quota: QuotaBook,
    settings: PolicySettings,
    now: float,
    index: Optional[VictimIndex] = None,
) -> Optional[list[Running]]:
    """The fewest, cheapest running workloads whose removal lets ``c`` fit, or ``None``.

    Cheapest first: the lowest class, then borrowers, then the least work lost (run time times
    size). A one-node candidate looks node by node for the cheapest set on one node; a gang takes
    victims in cost order until it fits, then puts back each one it does not need. ``index``
    (built from ``pool`` once per pass) saves sorting ``pool`` again.
    """
    eligible = (index or VictimIndex(pool, settings, now)).eligible(c, quota)
    if not eligible:
        return None
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
    assert trial is not None  # ``hi`` is the shortest prefix that fits
    # Put back any victim the gang does not need after all (most expensive first).
    for r in list(reversed(chosen[:-1]))[:16]:
        test = trial.copy()
        test.commit(r.held)
        if test.place(c.bundles, c.gpu_types, c.strategy) is not None:
            trial = test
            chosen.remove(r)
    return chosen


def _victims_on_one_node(
    placer: LivePlacer, c: Candidate, eligible: Sequence[Running]
) -> Optional[list[Running]]:
    """The cheapest prefix of ``eligible`` (already in cost order) on any single node that makes
    room for ``c``'s bundle(s) there, checked on array rows, then confirmed with the engine."""
    req = Req.from_bundle(
        bundle_request(
            {k: sum(b.get(k, 0.0) for b in c.bundles) for k in ("CPU", "memory")}
            | ({"GPU": c.bundles[0]["GPU"] * len(c.bundles)} if c.bundles[0].get("GPU") else {}),
            c.gpu_types[0],
        )
    )
    arr = placer.arr
    on_node: dict[int, list[Running]] = {}
    for r in eligible:
        if len(r.held) == 1:  # most work holds one bundle
            i = arr.index.get(r.held[0].node_id)
            if i is not None:
                on_node.setdefault(i, []).append(r)
            continue
        for i in {arr.index[h.node_id] for h in r.held if h.node_id in arr.index}:
            on_node.setdefault(i, []).append(r)
    type_ok = arr.type_mask(req.types) if req.num_gpu else None
    need_gpu = req.num_gpu * req.milli
    best: Optional[tuple[tuple[int, int], list[Running]]] = None
    for i, victims in on_node.items():
        if type_ok is not None and not type_ok[i]:
            continue  # no victim makes a node of another GPU model fit
        cpu, mem, gpu = int(arr.cpu[i]), float(arr.mem[i]), arr.gpu[i].copy()
        gpu_total = int(gpu.sum())  # an upper bound as victims are added (a cheap first check)
        # A prefix longer than the best found so far could only cost more: stop there.
        for k, r in enumerate(victims if best is None else victims[: best[0][0]]):
            for h in r.held:
                if arr.index.get(h.node_id) != i:
                    continue
                hr = h.req
                cpu, mem = cpu + hr.cpu, mem + hr.mem
                for g in h.gpu_indices or ():
                    gpu[g] = min(1000, gpu[g] + hr.milli)
                    gpu_total += hr.milli
            if cpu < req.cpu or mem + 1e-9 < req.mem or gpu_total < need_gpu:
                continue  # fits_node would say no
            if placer.fits_node(i, req, cpu, mem, gpu):
                cost = (k + 1, max(-v.rank for v in victims[: k + 1]))
                if best is None or cost < best[0]:
                    best = (cost, list(victims[: k + 1]))
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
def reserve_for(
    placer: LivePlacer, c: Candidate, running: Sequence[Running], now: float
) -> Optional[tuple[set[Any], float]]:
    """The nodes ``c`` would get as running work ends (soonest first), and when; ``None`` if the
    expected ends are unknown or never free enough."""
    trial = placer.copy()
    ends = sorted(
        (now if r.stopping or r.expected_end is None else r.expected_end, r.workload_id, r)
        for r in running
        if r.stopping or r.expected_end is not None
    )
    until = now
    for end, _, r in ends:
        trial.release(r.held)
        until = max(until, end)
        placed = trial.place(c.bundles, c.gpu_types, c.strategy)
        if placed is not None:
            return {h.node_id for h in placed}, until
    return None
