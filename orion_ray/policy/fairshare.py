"""Weighted dominant-resource fair share with decaying usage and an entry penalty.

A tenant's share is its dominant resource share — the largest fraction of any cluster resource it
uses — divided by its weight; the cycle serves the tenant with the smallest share first. Usage is an
exponentially decaying average of what the tenant held (half-life configurable), so a tenant that was
idle is not punished for long, and every admission adds its full demand at once (the entry penalty),
so a tenant with a burst of submissions cannot take a whole cycle's capacity before the others get
their turn. Under saturation each tenant's share of the contended resource converges to its weight's
share. Pure; the state is a plain object the scheduler keeps.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Mapping


class FairShare:
    """Decayed usage per tenant (resources as in ``quota.demand_of``)."""

    def __init__(self, half_life_s: float = 300.0) -> None:
        self.half_life_s = half_life_s
        self.usage: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.at: float | None = None

    def copy(self) -> "FairShare":
        """An independent copy (a pass plans on one; the scheduler's own changes only when it
        applies a plan)."""
        new = FairShare(self.half_life_s)
        for t, u in self.usage.items():
            new.usage[t].update(u)
        new.at = self.at
        return new

    def advance(self, now: float, allocated: Mapping[str, Mapping[str, float]]) -> None:
        """Decay towards what each tenant holds now (``allocated``), over the time since the last
        call. With a half-life of 0 usage is simply the current allocation."""
        if self.at is None or self.half_life_s <= 0:
            keep = 0.0
        else:
            keep = 0.5 ** (max(0.0, now - self.at) / self.half_life_s)
        self.at = now
        tenants = set(self.usage) | set(allocated)
        for t in tenants:
            u = self.usage[t]
            alloc = allocated.get(t, {})
            for r in set(u) | set(alloc):
                u[r] = keep * u[r] + (1.0 - keep) * alloc.get(r, 0.0)
                # a tenant's usage can never be below what it holds right now
                u[r] = max(u[r], alloc.get(r, 0.0))

    def penalise(self, tenant: str, demand: Mapping[str, float]) -> None:
        """Entry penalty: an admitted workload counts in full at once."""
        u = self.usage[tenant]
        for r, v in demand.items():
            u[r] += v

    def share(self, tenant: str, weight: float, capacity: Mapping[str, float]) -> float:
        """Dominant share divided by weight (0 for a tenant that uses nothing)."""
        u = self.usage.get(tenant)
        if not u:
            return 0.0
        dom = max((v / capacity[r] for r, v in u.items() if capacity.get(r, 0.0) > 0), default=0.0)
        return dom / max(weight, 1e-9)
