"""From the scheduler's workloads to the pure policy's inputs, and its settings from configuration.

The policy (``policy/admission.py``) sees plain candidates and running items; this module builds them
from ``Workload`` records (caching what does not change while a workload waits) and keeps the
per-workload expected run times (``timeout_s``, else the median of recent runs of the same function or
entrypoint, else the configured default).
"""

from __future__ import annotations

import statistics
from collections import defaultdict, deque
from datetime import timezone
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

from ..config import PolicyConfig, TenantConfig
from ..models import Workload
from ..policy.admission import RANKS, Candidate, PolicySettings, Running
from ..policy.budget import Budget, BudgetBook
from ..policy.quota import TenantQuota, demand_of
from ..status import Status

if TYPE_CHECKING:
    from .transitions import WorkloadBook

HISTORY = 20  # recent run times kept per function / entrypoint


def settings_from(tenants: Iterable[TenantConfig], pc: PolicyConfig) -> PolicySettings:
    """The pure policy's settings from the configured tenants and ``policy`` section."""
    quotas = {
        t.id: TenantQuota(
            t.id,
            t.weight,
            _quota_units(t.quota),
            _quota_units(t.borrowing_limit),
            _quota_units(t.lending_limit),
            t.cohort,
        )
        for t in tenants
    }
    return PolicySettings(
        tenants=quotas,
        preemption=pc.preemption.enabled,
        min_runtime_s=pc.preemption.min_runtime_s,
        protected_ranks=frozenset(RANKS.index(c) for c in pc.preemption.protected_classes),
        reserve_after_s=pc.reserve_after_s,
        half_life_s=pc.fair_share_half_life_s,
        budgets=_budgets(tenants),
    )


def _budgets(tenants: Iterable[TenantConfig]) -> Optional[BudgetBook]:
    # None without any budget: the pass then skips the check (and the scheduler the usage query)
    limits = {
        t.id: Budget(t.budget.gpu_hours_per_day, t.budget.per_month)
        for t in tenants
        if t.budget is not None and (t.budget.gpu_hours_per_day is not None or t.budget.per_month is not None)
    }
    return BudgetBook(limits) if limits else None


def _quota_units(q: Mapping[str, float]) -> dict[str, float]:
    # ``gpu_H100`` is accepted as a spelling of ``gpu:H100`` (YAML keys with a colon need quotes)
    return {(k.replace("gpu_", "gpu:", 1) if k.startswith("gpu_") else k): float(v) for k, v in q.items()}


class RunTimes:
    """Recent run times per function or entrypoint (for expected ends and estimates)."""

    def __init__(self) -> None:
        self._runs: dict[str, deque] = defaultdict(lambda: deque(maxlen=HISTORY))

    @staticmethod
    def key(w: Workload) -> str:
        return f"{w.tenant_id}|{w.spec.function or w.spec.entrypoint}"

    def record(self, w: Workload, seconds: float) -> None:
        self._runs[self.key(w)].append(max(0.0, seconds))

    def expected(self, w: Workload) -> Optional[float]:
        """``timeout_s`` if set (the most it can run), else the median of recent runs."""
        if w.spec.timeout_s is not None:
            return float(w.spec.timeout_s)
        runs = self._runs.get(self.key(w))
        return statistics.median(runs) if runs else None


def candidate(book: "WorkloadBook", w: Workload) -> Candidate:
    """The policy's view of a queued workload (the static part is cached in the book)."""
    c = book.candidates.get(w.workload_id)
    if c is None:
        bundles, types, strategy, _ = book.shape(w)
        deadline = w.spec.deadline
        if deadline is not None:
            deadline = (deadline if deadline.tzinfo else deadline.replace(tzinfo=timezone.utc)).timestamp()
        c = book.candidates[w.workload_id] = Candidate(
            w.workload_id,
            w.tenant_id,
            w.priority.rank,
            w.seq,
            bundles,
            types,
            strategy,
            demand_of(bundles, types),
            queued_since=w.updated_at or w.submitted_at,
            deadline=deadline,
            runtime_s=book.runtimes.expected(w),
            spot_ok=w.spec.qos == "spot_ok",
        )
    return c


def running_items(book: "WorkloadBook", now: float) -> list[Running]:
    """Every workload that holds capacity, with its expected end."""
    out = []
    for wid, held in book.reservations.items():
        w = book.active.get(wid)
        if w is None:
            continue
        bundles, types, _, _ = book.shape(w)
        started = w.started_at or now
        runtime = book.runtimes.expected(w)
        out.append(
            Running(
                wid,
                w.tenant_id,
                w.priority.rank,
                demand_of(bundles, types),
                held,
                started,
                expected_end=(started + runtime) if runtime is not None else None,
                preemptible=w.spec.preemptible and w.status == Status.RUNNING,
                stopping=w.status == Status.PREEMPTED or wid in book.stopping,
            )
        )
    return out


def allocated(running: Iterable[Running]) -> dict[str, dict[str, float]]:
    """Resources held per tenant (the fair-share input)."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in running:
        for k, v in r.demand.items():
            out[r.tenant][k] += v
    return out


def capacity(nodes) -> dict[str, float]:
    """Cluster totals in quota units (shares are fractions of these)."""
    out: dict[str, float] = defaultdict(float)
    for n in nodes:
        out["cpu"] += n.total.get("CPU", 0.0)
        out["memory"] += n.total.get("memory", 0.0)
        gpu = n.total.get("GPU", 0.0)
        out["gpu"] += gpu
        t = n.labels.get("ray.io/accelerator-type")
        if gpu and t:
            out[f"gpu:{t}"] += gpu
    return dict(out)


def explain_reasons(reasons: list[dict[str, Any]]) -> str:
    """One line for ``Workload.reason`` (the full list is kept for explain)."""
    return "; ".join(r["message"] for r in reasons)[:500]
