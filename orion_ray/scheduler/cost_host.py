"""The scheduler's cost duties (docs/cost.md), once a minute from its loop: the node-hours each
pool offered (capacity records, what idle cost is measured against), the price table's version,
the tenants' GPU-hour use for the budgets, and the cost gauges.

Everything here reads or writes the store in short statements; a failure is logged by the loop
and the next tick tries again (a missed capacity interval is covered by the next one, which
starts where the last recorded one ended).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Iterable, Optional

from ..config import CostConfig
from ..cost import store_rows as cost_store
from ..cost.allocation import PoolShape, aggregate, allocate, ratio_to_baseline, spot_share
from ..cost.prices import PriceTable
from ..cost.telemetry import Sampler
from ..cost.usage import GIB, CapacityRecord
from ..policy.budget import DAY_S, BudgetUse, day_start, month_start
from ..policy.markets import POOL_LABEL, market_of

if TYPE_CHECKING:
    from .core import Scheduler

log = logging.getLogger("orion.scheduler")

COST_TICK_S = 60.0
BUDGET_REFRESH_S = 30.0
BUDGET_MIN_S = 1.0
GAUGE_REFRESH_S = 300.0
MAX_GAP_S = 600.0  # a longer gap between ticks (the scheduler was down) is not charged as capacity


class CostHost:
    """Cost state of one scheduler."""

    def __init__(self, sched: "Scheduler") -> None:
        self.sched = sched
        self.config = CostConfig()
        self.pools: dict[str, PoolShape] = {}
        self.last_at: Optional[float] = None
        self.budget_at = float("-inf")
        self.budget_for: Any = None  # the BudgetBook last filled (a reload makes a new one)
        self.budget_version = -1  # the workload book's version at that fill
        self.gauges_at = float("-inf")
        self.recorded: Optional[str] = None  # the price version and defaults stored
        self.failing = False
        self.telemetry: Optional[Sampler] = None  # "used" figures of running work (cost/telemetry.py)

    def configure(self, cost: CostConfig, pools: Iterable[Any] = ()) -> None:
        """The configured prices and pools (``orion.cost``, ``orion.worker_pools``)."""
        self.config = cost
        for p in pools:
            resources, _ = p.node_shape()
            self.pools[p.name] = PoolShape(
                p.instance_type, resources.get("GPU", 0.0), resources.get("CPU", 0.0)
            )

    @property
    def table(self) -> PriceTable:
        """The configured price table."""
        return PriceTable.from_config(self.config.prices, self.config.currency)

    def tick(self) -> None:
        """Record capacity since the last tick, the price version, and refresh the gauges; a
        failure is logged once and retried at the next tick."""
        try:
            self._tick()
            self.failing = False
        except Exception:
            if not self.failing:
                log.warning("cost bookkeeping failed; retrying each minute", exc_info=True)
            self.failing = True

    def _tick(self) -> None:
        if not self.config.enabled:  # cost_tracking.enabled: false (the original's block)
            return
        sched = self.sched
        now = sched.clock()
        mark = f"{self.table.version}/{self.config.share_idle}"
        if self.recorded != mark:
            cost_store.record_prices(sched.store, self.table, now=now)
            defaults = {"currency": self.config.currency, "share_idle": self.config.share_idle}
            sched.store.put_setting(cost_store.COST_SETTING, defaults)
            self.recorded = mark
        if self.last_at is not None and 0 < now - self.last_at <= MAX_GAP_S:
            cost_store.add_records(sched.store, capacity_records(sched.runtime.nodes(), self.last_at, now))
            if self.telemetry is not None:
                self.telemetry.tick(sched.store, start=self.last_at, end=now)
        self.last_at = now
        if now - self.gauges_at >= GAUGE_REFRESH_S:
            self.gauges_at = now
            ratios, share = cost_gauges(sched.store, self.table, now=now, pools=self.pools)
            sched.metrics.set_cost(ratios, share)


def capacity_records(nodes: Iterable[Any], start: float, end: float) -> list[CapacityRecord]:
    """One record per (pool, market, shape) of the alive nodes over [start, end)."""
    groups: dict[tuple, int] = defaultdict(int)
    for n in nodes:
        labels = n.labels or {}
        key = (
            labels.get(POOL_LABEL) or cost_store.UNKNOWN_POOL,
            market_of(labels),
            float(n.total.get("GPU", 0.0)),
            float(n.total.get("CPU", 0.0)),
            float(n.total.get("memory", 0.0)) / GIB,
            labels.get("ray.io/accelerator-type"),
        )
        groups[key] += 1
    return [
        CapacityRecord(pool, market, start, end, g, c, m, count, gt)
        for (pool, market, g, c, m, gt), count in sorted(groups.items(), key=lambda kv: str(kv[0]))
    ]


def refresh_budget_use(sched: "Scheduler", now: float) -> None:
    """Fill the policy's budget book with each tenant's GPU-hours this UTC day and month, from the
    store: after any status change (at most every ``BUDGET_MIN_S``), else every
    ``BUDGET_REFRESH_S`` (running work keeps adding), and at once when budgets were reloaded."""
    book = sched.policy.budgets
    host = sched.cost
    if book is None:
        return
    age = now - host.budget_at
    changed = sched.book.version != host.budget_version
    if book is host.budget_for and age < BUDGET_REFRESH_S and not (changed and age >= BUDGET_MIN_S):
        return
    host.budget_for, host.budget_at, host.budget_version = book, now, sched.book.version
    try:
        book.use = budget_use(sched.store, now=now)
    except Exception:  # a store hiccup must not stop the cycle: the last figures stand until the next try
        log.warning("could not refresh the GPU-hour budgets' use; keeping the last figures", exc_info=True)


def budget_use(store: Any, *, now: float) -> dict[str, BudgetUse]:
    """GPU-hours per tenant in the current UTC day and month (batch and serving)."""
    m0, d0 = month_start(now), day_start(now)
    records = cost_store.workload_usage(store, since=m0, until=now, now=now)
    records += cost_store.stored_records(store, since=m0, until=now)[0]
    out: dict[str, BudgetUse] = {}
    for r in records:
        u = out.setdefault(r.tenant, BudgetUse())
        month = r.clip(m0, now)
        day = r.clip(d0, now)
        u.month += month.charged()[0] * month.hours if month else 0.0
        u.day += day.charged()[0] * day.hours if day else 0.0
    return out


def cost_gauges(
    store: Any, table: PriceTable, *, now: float, pools: Optional[dict[str, PoolShape]] = None
) -> tuple[dict[str, float], Optional[float]]:
    """(tenant → today's cost over its trailing 7-day median, spot share of batch GPU-hours over
    the last 7 days). Today is compared so far, against whole days."""
    from ..cost.prices import PriceBook

    d0 = day_start(now)
    since = d0 - 7 * DAY_S
    book = cost_store.price_book(store, table) if store is not None else PriceBook([(0.0, table)])
    usage = cost_store.workload_usage(store, since=since, until=now, now=now)
    replicas, _caps = cost_store.stored_records(store, since=since, until=now)
    rows = allocate(usage + replicas, (), book, start=since, end=d0 + DAY_S, step=DAY_S, pools=pools)
    daily: dict[str, list[float]] = defaultdict(lambda: [0.0] * 8)
    for r in aggregate(rows, ["tenant"]):
        daily[r["tenant"]][int((r["start"] - since) // DAY_S)] += r["cost"]
    ratios = {t: v for t, days in daily.items() if (v := ratio_to_baseline(days)) is not None}
    return ratios, spot_share(rows)
