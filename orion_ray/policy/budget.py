"""GPU-hour budgets per tenant per day and per month, checked at admission (pure).

Decided as Kueue decides a quota: a workload whose admission would take its tenant past a budget
is not refused but waits in the queue with the reason (``budget``) and the figures, and is admitted
when the window rolls over (a new UTC day or month) or the budget is raised (``orion reload``); a
refusal at submission would lose work a tenant may legitimately run tomorrow. A workload whose own
expected GPU-hours exceed the whole budget waits too, with a message that says it cannot fit
until the budget is raised (Kueue's "inadmissible" workloads likewise stay pending).

"Would exceed": GPU-hours already used in the window (running work counted up to now) + what this
pass already admitted + the candidate's GPUs × its expected run time. With no expected run time
the candidate counts as zero more hours: it is admitted while the tenant is under budget and work
waits once the budget is spent.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping, Optional

DAY_S = 86400.0


@dataclass(frozen=True)
class Budget:
    """A tenant's GPU-hour budgets (``None``: no limit)."""

    gpu_hours_per_day: Optional[float] = None
    gpu_hours_per_month: Optional[float] = None


@dataclass
class BudgetUse:
    """GPU-hours a tenant used in the current UTC day and month (running work up to now)."""

    day: float = 0.0
    month: float = 0.0


def day_start(now: float) -> float:
    """Start of the UTC day holding ``now``."""
    return now - (now % DAY_S)


def month_start(now: float) -> float:
    """Start of the UTC month holding ``now``."""
    d = datetime.fromtimestamp(now, tz=timezone.utc)
    return datetime(d.year, d.month, 1, tzinfo=timezone.utc).timestamp()


def month_end(now: float) -> float:
    """Start of the next UTC month."""
    d = datetime.fromtimestamp(now, tz=timezone.utc)
    days = calendar.monthrange(d.year, d.month)[1]
    return month_start(now) + days * DAY_S


@dataclass
class BudgetBook:
    """Budgets and use, as the admission pass sees them (``settings.budgets``). The scheduler
    refreshes ``use`` from the store; the pass adds its own admissions with ``add``."""

    limits: Mapping[str, Budget] = field(default_factory=dict)
    use: dict[str, BudgetUse] = field(default_factory=dict)

    def copy(self) -> "BudgetBook":
        """An independent copy (a pass charges its admissions to its own copy)."""
        return BudgetBook(self.limits, {t: BudgetUse(u.day, u.month) for t, u in self.use.items()})

    def add(self, tenant: str, gpu_hours: float) -> None:
        """Charge an admission's expected GPU-hours to the current day and month."""
        u = self.use.setdefault(tenant, BudgetUse())
        u.day += gpu_hours
        u.month += gpu_hours

    def check(self, tenant: str, gpus: float, runtime_s: Optional[float]) -> Optional[dict[str, str]]:
        """A ``budget`` wait reason with the figures, or ``None`` when it may be admitted."""
        limit = self.limits.get(tenant)
        if limit is None or gpus <= 0:
            return None
        want = gpus * (runtime_s or 0.0) / 3600.0
        u = self.use.get(tenant, BudgetUse())
        for name, cap, used in (
            ("daily", limit.gpu_hours_per_day, u.day),
            ("monthly", limit.gpu_hours_per_month, u.month),
        ):
            if cap is None:
                continue
            if want > cap and used < cap:
                return {
                    "code": "budget",
                    "message": f"its expected {want:.4g} GPU-hours exceed tenant {tenant}'s whole {name} "
                    f"GPU-hour budget of {cap:g}; it waits until the budget is raised",
                }
            if used + want > cap or (want == 0 and used >= cap):
                return {
                    "code": "budget",
                    "message": f"tenant {tenant} has used {used:.4g} of its {name} budget of {cap:g} "
                    f"GPU-hours; this workload needs {want:.4g} more; it waits for the next "
                    f"{'UTC day' if name == 'daily' else 'month'} or a larger budget",
                }
        return None
