"""Quotas with borrowing and lending inside cohorts (Kueue's ClusterQueue/Cohort model, simplified).

Resources are named ``cpu``, ``gpu``, ``memory`` (bytes) and ``gpu:<type>`` for a GPU model. For each
resource a tenant lists in ``quota`` (its nominal quota):

- usage up to nominal is always allowed (physical capacity permitting);
- usage above nominal is *borrowed*: at most ``borrowing_limit`` (absent: no limit) and only from
  the idle nominal quota of the other tenants of its cohort (each lends at most its
  ``lending_limit``, absent: all of its idle quota);
- a tenant borrowing is a *borrower*: a tenant of the cohort that needs its own nominal back may
  preempt the borrower's work (reclaim).

A resource a tenant has no quota for is bounded only by fair share. Tenants without a cohort share
the cluster-wide cohort. Pure; the numbers are the caller's.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

CLUSTER_COHORT = ""
EPS = 1e-9


@dataclass(frozen=True)
class TenantQuota:
    """One tenant's policy data: weight, nominal quota, borrowing and lending limits, cohort."""

    tenant_id: str
    weight: float = 1.0
    quota: Mapping[str, float] = field(default_factory=dict)
    borrowing_limit: Mapping[str, float] = field(default_factory=dict)
    lending_limit: Mapping[str, float] = field(default_factory=dict)
    cohort: Optional[str] = None


def demand_of(bundles: Sequence[Mapping[str, float]], gpu_types: Sequence[Optional[str]]) -> dict[str, float]:
    """Quota units of a gang: ``{"cpu", "gpu", "memory", "gpu:<type>"}`` summed over bundles."""
    out: dict[str, float] = defaultdict(float)
    for b, t in zip(bundles, gpu_types):
        out["cpu"] += b.get("CPU", 0.0)
        gpu = b.get("GPU", 0.0)
        out["gpu"] += gpu
        if gpu and t:
            out[f"gpu:{t}"] += gpu
        out["memory"] += b.get("memory", 0.0)
    return {k: v for k, v in out.items() if v}


class QuotaBook:
    """Usage per tenant against quotas; ``check`` a demand, ``add``/``remove`` usage."""

    def __init__(
        self, tenants: Mapping[str, TenantQuota], usage: Optional[Mapping[str, Mapping[str, float]]] = None
    ) -> None:
        self.tenants = dict(tenants)
        self.usage: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for t, u in (usage or {}).items():
            for k, v in u.items():
                self.usage[t][k] += v
        self.members: dict[str, list[str]] = defaultdict(list)
        for q in self.tenants.values():
            self.members[q.cohort or CLUSTER_COHORT].append(q.tenant_id)

    def copy(self) -> "QuotaBook":
        return QuotaBook(self.tenants, self.usage)

    def add(self, tenant: str, demand: Mapping[str, float], sign: float = 1.0) -> None:
        u = self.usage[tenant]
        for k, v in demand.items():
            u[k] += sign * v

    def remove(self, tenant: str, demand: Mapping[str, float]) -> None:
        self.add(tenant, demand, -1.0)

    # -- questions -----------------------------------------------------------------------------
    def borrowed(self, tenant: str, resource: str) -> float:
        """How much of ``resource`` the tenant uses above its nominal quota now."""
        q = self.tenants.get(tenant)
        if q is None or resource not in q.quota:
            return 0.0
        return max(0.0, self.usage[tenant][resource] - q.quota[resource])

    def is_borrowing(self, tenant: str) -> bool:
        q = self.tenants.get(tenant)
        return q is not None and any(self.borrowed(tenant, r) > EPS for r in q.quota)

    def within_nominal(self, tenant: str, demand: Mapping[str, float]) -> bool:
        """Would the tenant stay within its nominal quota with ``demand`` added?"""
        q = self.tenants.get(tenant)
        if q is None or not q.quota:
            return False  # no quota: nothing to reclaim
        return all(
            self.usage[tenant][r] + demand.get(r, 0.0) <= q.quota[r] + EPS
            for r in q.quota
            if demand.get(r, 0.0) > 0
        )

    def cohort_of(self, tenant: str) -> str:
        q = self.tenants.get(tenant)
        return (q.cohort or CLUSTER_COHORT) if q else CLUSTER_COHORT

    def check(self, tenant: str, demand: Mapping[str, float]) -> Optional[dict[str, Any]]:
        """``None`` if ``demand`` may be admitted by quota, else the first blocking resource as
        ``{"resource", "message"}``."""
        q = self.tenants.get(tenant)
        if q is None:
            return None
        for r, nominal in q.quota.items():
            need = demand.get(r, 0.0)
            if need <= 0:
                continue
            after = self.usage[tenant][r] + need
            over = after - nominal
            if over <= EPS:
                continue
            limit = q.borrowing_limit.get(r)
            if limit is not None and over > limit + EPS:
                return {
                    "resource": r,
                    "message": (
                        f"quota: {r} would reach {after:g}, above nominal {nominal:g} plus borrowing "
                        f"limit {limit:g}"
                    ),
                }
            pool, lent = self._cohort_pool(tenant, r)
            extra = over - self.borrowed(tenant, r)
            if lent + extra > pool + EPS:
                return {
                    "resource": r,
                    "message": (
                        f"quota: {r} would reach {after:g}, above nominal {nominal:g}, and the cohort "
                        f"has {max(0.0, pool - lent):g} idle quota to lend"
                    ),
                }
        return None

    def _cohort_pool(self, tenant: str, r: str) -> tuple[float, float]:
        """(idle nominal quota the cohort's tenants lend, quota already borrowed) for ``r``."""
        pool = lent = 0.0
        for s in self.members[self.cohort_of(tenant)]:
            q = self.tenants[s]
            if r not in q.quota:
                continue
            used = self.usage[s][r]
            idle = max(0.0, q.quota[r] - used)
            if s != tenant:
                cap = q.lending_limit.get(r)
                pool += idle if cap is None else min(idle, cap)
            lent += max(0.0, used - q.quota[r]) if s != tenant else self.borrowed(s, r)
        return pool, lent
