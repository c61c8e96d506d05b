"""Intake: how new workloads reach the scheduler, and what it leaves in the store for readers.

A submission is written to the store in one transaction wherever it arrives (an API replica, or
``Scheduler.submit`` in-process), then the scheduler is told without waiting. The scheduler takes
new rows in order of ``seq`` (``pull``): on a notification, and on every tick of its loop, so a
lost notification costs at most one tick and a crash between the commit and the notification
loses nothing. ``pull`` is idempotent (rows already held are skipped), so a crash half-way
through it, or a row both recovered and pulled, never makes a second copy.

After each cycle the scheduler stores what readers need and only it knows (``after_cycle``): each
queued workload's wait reasons when they change, and, for a shallow queue, the policy's order
(the position the scheduler's own ``get`` reports), so the API reads them without a round trip.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Optional

from .. import tracing
from ..models import Workload
from ..models import new_workload as new_workload  # where the other intakes have it
from ..status import Status
from . import capacity_signal, estimates, intake

if TYPE_CHECKING:
    from .core import Scheduler

log = logging.getLogger("orion.ingest")

BATCH = 1000  # rows taken per query (a tick takes every batch there is)
ORDER_SETTING = "queue_order"
# the queue depth up to which positions follow the policy's order (the ack's own rule)
SHALLOW_QUEUE = intake.ACK_FORECAST_MAX_QUEUED


class Ingest:
    """The scheduler's intake from the store, and its write-back of what readers need."""

    def __init__(self, s: "Scheduler"):
        self.s = s
        # Rows up to here are the recovery's to load (``store.active()``); anything written
        # later is pulled, and a row both recovered and pulled is taken once.
        self.last_seq = s.store.max_seq()
        self.taken = 0
        self.cycle_done_at: Optional[float] = None  # monotonic, for /health
        self._reasons: dict[str, Optional[str]] = {}  # what the store has, per queued workload
        self._order: Optional[list] = None

    def pull(self) -> int:
        """Take every unfinished row written after the last one seen, in ``seq`` order; returns
        how many were new to the scheduler (and wakes it when any was)."""
        s, new = self.s, 0
        while True:
            rows = s.store.after_seq(self.last_seq, BATCH)
            for w in rows:
                if w.workload_id not in s.active:
                    self._take(w)
                    new += 1
                self.last_seq = max(self.last_seq, w.seq)  # after the take: a crash retakes it
            if len(rows) < BATCH:
                break
        if new:
            self.taken += new
            s.wake()
        return new

    def _take(self, w: Workload) -> None:
        s = self.s
        s.active[w.workload_id] = w
        s.book.version += 1  # the forecast cache is keyed by it
        s.observe(w)
        s.arrivals.add(w.workload_id)  # the next pass may be a delta over the arrivals alone
        for status in (Status.SUBMITTED, Status.QUEUED):
            s.metrics.transition(w.tenant_id, w.priority.value, status.value)
        self._reasons[w.workload_id] = w.reason

    def after_cycle(self) -> None:
        """Persist what changed for readers: wait reasons, and a shallow queue's order."""
        s = self.s
        self.cycle_done_at = time.monotonic()
        queued = [w for w in s.active.values() if w.status == Status.QUEUED]
        changed = [
            (w, s.book.wait_reasons.get(w.workload_id))
            for w in queued
            if self._reasons.get(w.workload_id, "\0") != w.reason
        ]
        if changed:
            s.store.set_waits(changed)
        self._reasons = {w.workload_id: w.reason for w in queued}
        order: list = []
        if len(queued) <= SHALLOW_QUEUE:
            order = [[c.workload_id, c.tenant] for c in estimates.ordered(s)]
        if order != self._order:
            s.store.put_setting(ORDER_SETTING, order)
            self._order = order


def submit(s: "Scheduler", spec: dict[str, Any], tenant_id: str, who: Optional[str]) -> dict[str, Any]:
    """``Scheduler.submit``: validate, then the same one-transaction write an API replica does,
    with the checks only the scheduler can make (deadline forecast, capacity back-pressure)
    inside it; then take the row in and answer the acknowledgement."""
    parsed = intake.parse(spec, tenant_id=tenant_id, sched=s, by_admin=who == "admin")
    with tracing.span("orion.submit", tenant_id=tenant_id, workload_type=parsed.workload_type):
        w = new_workload(parsed, tenant_id, s.clock())  # keeps the submit span's traceparent

        def scheduler_checks(w: Workload) -> None:
            if parsed.deadline is not None and s.policy_config.refuse_infeasible_deadlines:
                intake.refuse_if_deadline_unreachable(s, w)
            capacity_signal.check_backpressure(s, w)  # 429 if policy says and its pool can't grow

        got, _created = s.store.submit(
            w,
            who=who or tenant_id,
            max_queue_size=s.config.max_queue_size,
            tenant_limit=s.policy_config.tenant_queue_limit(
                s.tenants.get(tenant_id), s.config.max_queue_size
            ),
            check=scheduler_checks,
        )
    s.ingest.pull()
    return intake.ack(s, s.active.get(got.workload_id, got))


def ack(s: "Scheduler", workload_id: str, tenant_id: Optional[str]) -> dict[str, Any]:
    """The acknowledgement of a workload an API replica wrote (position and, for a shallow
    queue, the forecast), once the scheduler has taken it in."""
    s.ingest.pull()
    return intake.ack(s, s.lookup(workload_id, tenant_id))
