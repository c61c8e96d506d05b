"""The scheduler's in-memory book of unfinished workloads, and the one place a status changes.

``WorkloadBook`` owns what the cycle, the drivers and the views share: the active workloads, the
bundles Orion holds for each (the live snapshot is the nodes minus these), who was nominated to
preempt whom, the reasons queued work waits, and the per-workload caches (shape, policy candidate)
with a version bumped on every change. ``set`` checks the transition table, updates, persists (or
adds to a batch the caller writes at once) and records the metrics; ``requeue`` and
``fail_or_retry`` are the two ways back to the queue.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ..config import SchedulerConfig
from ..input_limits import MAX_ERROR_CHARS, cap_text
from ..metrics import OrionMetrics
from ..models import Workload
from ..policy import retry_delay
from ..policy.live_placement import Held
from ..status import Status, check_transition
from . import workload_spans
from .policy_bridge import RunTimes

Shape = tuple  # (bundles, gpu types, strategy, hashable shape)


class WorkloadBook:
    """Active workloads and everything held for them; every status change goes through ``set``."""

    def __init__(
        self,
        *,
        store: Any,
        clock: Callable[[], float],
        metrics: OrionMetrics,
        config: SchedulerConfig,
        wake: Callable[[], None],
    ):
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.config = config
        self.wake = wake
        self.active: dict[str, Workload] = {}
        # Every bundle Orion holds, per workload: the live snapshot is the nodes minus these.
        self.reservations: dict[str, list[Held]] = {}
        self.nominated: dict[str, set[str]] = {}  # preemptor → victims still stopping
        self.stopping: set[str] = set()  # victims being stopped
        self.wait_reasons: dict[str, list[dict]] = {}
        self.runtimes = RunTimes()
        self.shapes: dict[str, Shape] = {}
        self.candidates: dict[str, Any] = {}  # policy candidates, dropped on any change
        self.version = 0  # bumped on every status change (the forecast's cache key)

    # -- reading ---------------------------------------------------------------------------------
    def queued(self) -> list[Workload]:
        """Active workloads waiting in the queue (backing off included)."""
        return [w for w in self.active.values() if w.status == Status.QUEUED]

    def shape(self, w: Workload) -> Shape:
        """(bundles, gpu types, strategy, hashable shape) of a workload, computed once."""
        got = self.shapes.get(w.workload_id)
        if got is None:
            gang = w.spec.gang()
            bundles = [b.ray_bundle() for b in gang]
            types = [b.gpu_type for b in gang]
            strategy = w.spec.placement.ray_strategy
            got = self.shapes[w.workload_id] = (
                bundles,
                types,
                strategy,
                (strategy, tuple(types), tuple(tuple(sorted(b.items())) for b in bundles)),
            )
        return got

    def clear(self) -> None:
        """Forget every workload and hold (a recovery attempt starts over)."""
        self.active.clear()
        self.reservations.clear()

    # -- preemption bookkeeping -------------------------------------------------------------------
    def nominate(self, victim: str, for_wid: str) -> None:
        """``victim`` is being stopped so that ``for_wid`` can start."""
        self.stopping.add(victim)
        self.nominated.setdefault(for_wid, set()).add(victim)

    def stopped(self, victim: str) -> None:
        """``victim`` is no longer running: no preemptor waits for it any more."""
        self.stopping.discard(victim)
        for victims in self.nominated.values():
            victims.discard(victim)
        for k in [k for k, v in self.nominated.items() if not v]:
            del self.nominated[k]

    # -- the one place a status changes ------------------------------------------------------------
    def set(
        self, w: Workload, status: Status, note: str = "", batch: Optional[list] = None, **fields: Any
    ) -> None:
        """Check the table, persist, then update memory and record the metrics; with ``batch``
        the change is only prepared there (``commit`` writes a batch at once, then applies it).

        Memory changes only after the store has the change: a failed write (``StoreUnavailable``)
        raises with ``w`` exactly as it was, so the step that asked for it can be retried."""
        check_transition(w.status, status)
        for k in ("error", "reason"):  # tenant-made text: capped before it is stored or shown
            if isinstance(fields.get(k), str):
                fields[k] = cap_text(fields[k], MAX_ERROR_CHARS)
        change = Pending(w, status, note, self.clock(), fields)
        if batch is not None:
            batch.append(change)
            return
        self.store.update(*change.record())
        self._apply(change)

    def commit(self, batch: list) -> None:
        """Write the prepared changes of ``batch`` in one transaction, then apply them to memory
        (none of them when the write fails)."""
        if not batch:
            return
        self.store.update_many([p.record() for p in batch])
        for p in batch:
            self._apply(p)

    def _apply(self, p: "Pending") -> None:
        w, status, now = p.w, p.status, p.at
        wid = w.workload_id  # its spans are made from where it was and where it goes
        workload_spans.transition(
            w,
            status,
            now,
            p.note,
            p.fields,
            waits=self.wait_reasons.get(wid),
            victims=self.nominated.get(wid),
        )
        for k, v in p.values().items():
            setattr(w, k, v)
        self.version += 1
        self.candidates.pop(w.workload_id, None)  # queued_since / expected run time may change
        if status == Status.COMPLETED and w.started_at is not None:
            self.runtimes.record(w, now - w.started_at)
        if status.terminal:
            self.active.pop(w.workload_id, None)
            self.shapes.pop(w.workload_id, None)
            self.reservations.pop(w.workload_id, None)
            self.nominated.pop(w.workload_id, None)
            self.wait_reasons.pop(w.workload_id, None)
        self.metrics.transition(w.tenant_id, w.priority.value, status.value)
        if status == Status.RUNNING and w.started_at is not None:
            self.metrics.wait_time(w.tenant_id, w.started_at - w.submitted_at)
        if status.terminal and w.started_at is not None:
            self.metrics.run_time(w.tenant_id, status.value, now - w.started_at)

    def requeue(self, w: Workload, why: str, *, new_attempt: bool = False, backoff: bool = True) -> None:
        """Back to ``queued`` with backoff; a new attempt when a run was lost or is retried."""
        requeues = w.requeues + 1
        delay = (
            retry_delay(requeues, self.config.retry_backoff_base_s, self.config.retry_backoff_max_s)
            if backoff
            else 0.0
        )
        self.set(
            w,
            Status.QUEUED,
            why,
            requeues=requeues,
            attempt=w.attempt + 1 if new_attempt else w.attempt,
            not_before=self.clock() + delay,
            reason=why,
            worker_id=None,
            placement=None,
        )
        self.reservations.pop(w.workload_id, None)
        self.wake()

    def fail_or_retry(self, w: Workload, error: str) -> None:
        """The run failed: retry as a new attempt after a backoff while retries remain."""
        if w.attempt <= w.spec.max_retries:
            delay = retry_delay(w.attempt, self.config.retry_backoff_base_s, self.config.retry_backoff_max_s)
            self.set(
                w,
                Status.QUEUED,
                f"retry after failure: {error}"[:2000],
                attempt=w.attempt + 1,
                not_before=self.clock() + delay,
                error=error,
                reason="retry backoff",
                worker_id=None,
                placement=None,
            )
            self.metrics.retry(w.tenant_id)
            self.reservations.pop(w.workload_id, None)
            self.wake()
        else:
            self.set(w, Status.FAILED, "failed", error=error)


class Pending:
    """One status change, prepared but not yet applied: what ``set`` writes, then applies."""

    __slots__ = ("w", "status", "note", "at", "fields")

    def __init__(self, w: Workload, status: Status, note: str, at: float, fields: dict[str, Any]):
        self.w, self.status, self.note, self.at, self.fields = w, status, note, at, fields

    def values(self) -> dict[str, Any]:
        """The workload's fields after the change."""
        out = {"status": self.status, "updated_at": self.at, **self.fields}
        if self.status.terminal:
            out["finished_at"] = self.at
        return out

    def record(self) -> tuple[Workload, tuple[str, float, str]]:
        """``(the workload as it will be, its transition)``: the store's ``update`` arguments,
        on a copy, so the in-memory workload is untouched until the write succeeded."""
        return self.w.model_copy(update=self.values()), (self.status.value, self.at, self.note)
