"""The scheduler: one scheduling cycle with numbered, timed phases, and one driver per admitted workload.

Runs on an asyncio loop (inside the ``orion-scheduler`` actor, or a test's loop). Every Ray call goes
through the ``runtime`` adapter and every state change through ``_set``, which checks the transition
table and writes the store before anything is acknowledged.

Cycle phases (see ARCHITECTURE.md): 1 snapshot · 2 order · 3 fit · 5 reserve · 6 launch · 7 requeue.
Phase 4 (preempt) belongs to the multi-tenant policy and is not done here yet.
"""
from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
import uuid
from typing import Any, Callable, Optional

from ..config import SchedulerConfig
from ..metrics import OrionMetrics, workload_counts
from ..errors import Conflict, NotFound, QueueFull, ValidationError
from ..models import Workload, WorkloadSpec
from ..policy import NodeView, PriorityFifoOrder, QueueItem, QueueOrder, fit_gang, retry_delay
from ..policy.fit import could_ever_fit
from ..status import Status, check_transition
from .recovery import recover
from .tenants import TenantRegistry
from . import views

log = logging.getLogger("orion.scheduler")

PHASES = ("snapshot", "order", "fit", "reserve", "requeue")
GAUGE_REFRESH_S = 5.0
FULL_CYCLE_S = 1.0
MAX_LAUNCH_REQUEUES = 5  # launch errors are retried this often before the workload fails


class Scheduler:
    """Admits, places, runs and tracks workloads. ``store`` and ``runtime`` are passed in."""

    def __init__(self, store, runtime, config: Optional[SchedulerConfig] = None,
                 order: Optional[QueueOrder] = None, clock: Callable[[], float] = time.time,
                 metrics: Optional[OrionMetrics] = None):
        self.store = store
        self.runtime = runtime
        self.config = config or SchedulerConfig()
        self.order = order or PriorityFifoOrder()
        self.clock = clock
        self.metrics = metrics or OrionMetrics(ray_mirror=False)
        self.tenants = TenantRegistry(store)
        self.active: dict[str, Workload] = {}
        self.drivers: dict[str, asyncio.Task] = {}
        self.reservations: dict[str, list[tuple[str, dict[str, float]]]] = {}
        self.cycles = 0
        self.last_cycle: dict[str, Any] = {}
        self.started_at: Optional[float] = None
        self._wake: Optional[asyncio.Event] = None
        self._loop_task: Optional[asyncio.Task] = None
        self._stopping = False
        self._gauges_at = 0.0
        self._full_cycle_at = 0.0
        self._next_due = 0.0  # earliest backoff expiry among queued workloads
        self._shapes: dict[str, tuple] = {}

    # == lifecycle ================================================================================
    async def start(self) -> None:
        """Rebuild state from the store, reconcile with Ray, then run the cycle loop."""
        if self._loop_task is not None:
            return
        self._wake = asyncio.Event()
        self._loop_task = asyncio.current_task()  # mark as starting (idempotent start)
        delay = 0.2
        while True:
            try:
                await recover(self)
                break
            except Exception:  # e.g. the executor is itself restarting: never give up
                log.exception("recovery failed; retrying in %.1fs", delay)
                for t in self.drivers.values():
                    t.cancel()
                self.drivers.clear()
                self.active.clear()
                self.reservations.clear()
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
        self.started_at = self.clock()
        self._loop_task = asyncio.create_task(self._loop())
        self.wake()

    async def stop(self) -> None:
        self._stopping = True
        self.wake()
        for t in list(self.drivers.values()):
            t.cancel()
        if self._loop_task is not None and self._loop_task is not asyncio.current_task():
            self._loop_task.cancel()

    def wake(self) -> None:
        """Run a cycle now rather than at the next tick (a submission should not wait)."""
        if self._wake is not None:
            self._wake.set()

    async def _loop(self) -> None:
        interval = self.config.cycle_interval_ms / 1000
        while not self._stopping:
            woken = True
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=interval)
            except asyncio.TimeoutError:
                woken = False
            self._wake.clear()
            try:
                # A tick with nothing new (no submission, no release, no backoff expired) cannot
                # admit more than the last cycle did, except when nodes joined: check each second.
                now = self.clock()
                if (woken or now >= self._next_due
                        or time.monotonic() - self._full_cycle_at > FULL_CYCLE_S):
                    self._full_cycle_at = time.monotonic()
                    self.run_cycle()
                if time.monotonic() - self._gauges_at > GAUGE_REFRESH_S:
                    self._gauges_at = time.monotonic()
                    self.refresh_gauges()  # Ray's metrics pipeline sees gauges without a scrape
            except Exception:  # the loop never dies: one bad cycle is logged and the next one runs
                log.exception("scheduling cycle %d failed", self.cycles)

    # == the scheduling cycle =====================================================================
    def run_cycle(self) -> dict[str, Any]:
        """One pass over the queue; admits as many workloads as fit, not one per cycle."""
        self.cycles += 1
        timings: dict[str, float] = {}
        t = time.perf_counter()
        now = self.clock()

        def phase(name: str) -> None:
            nonlocal t
            t2 = time.perf_counter()
            timings[name] = round((t2 - t) * 1000, 3)
            t = t2

        queued = [w for w in self.active.values() if w.status == Status.QUEUED]
        if not queued:
            self.last_cycle = {"cycle": self.cycles, "at": now, "admitted": 0, "phases_ms": {}}
            self.metrics.cycle({}, 0)
            return self.last_cycle
        # 1 snapshot: capacity per node minus what Orion has reserved
        nodes = self._snapshot()
        phase("snapshot")
        # 2 order
        items = [QueueItem(w.workload_id, w.priority.rank, w.seq, w.tenant_id, w.not_before)
                 for w in queued]
        ordered = self.order.order(items, now)
        self._next_due = min((w.not_before for w in queued if w.not_before > now),
                             default=float("inf"))
        phase("order")
        # 3 fit: all-or-nothing per gang; what does not fit is skipped, smaller work goes on
        admitted: list[tuple[Workload, list[str]]] = []
        # Free capacity only shrinks within a cycle, so a shape that did not fit once will not fit
        # again this cycle: a deep queue of similar work costs one fit per shape, not per workload.
        no_fit: dict[tuple, str] = {}
        for item in ordered:
            w = self.active[item.workload_id]
            bundles, types, strategy, shape = self._shape(w)
            if shape in no_fit:
                w.reason = no_fit[shape]
                continue
            chosen = fit_gang(bundles, strategy, nodes, types)
            if chosen is None:
                w.reason = no_fit[shape] = (
                    "waiting for capacity" if could_ever_fit(bundles, strategy, nodes, types)
                    else "no node in the cluster is large enough (waiting for new nodes)")
                continue
            _take(nodes, chosen, bundles)
            admitted.append((w, chosen))
        phase("fit")
        # 5 reserve: record in memory, persist, then create the placement group
        batch: list = []
        for w, chosen in admitted:
            bundles = [b.ray_bundle() for b in w.spec.gang()]
            self.reservations[w.workload_id] = list(zip(chosen, bundles))
            self._set(w, Status.STARTING, "placement group requested", batch=batch, reason=None)
        self.store.update_many(batch)
        for w, chosen in admitted:
            try:
                pg = self.runtime.create_pg(w.workload_id, [b.ray_bundle() for b in w.spec.gang()],
                                            w.spec.placement.ray_strategy, chosen,
                                            [b.gpu_type for b in w.spec.gang()])
            except Exception as exc:  # e.g. Ray refused the group: requeue with backoff
                self._requeue(w, f"placement group creation failed: {exc}")
                continue
            # 6 launch happens in the driver once the group is ready
            self.drivers[w.workload_id] = asyncio.create_task(self._drive(w, pg))
        phase("reserve")
        # 7 requeue: what did not fit keeps its reason (feeds explain)
        phase("requeue")
        self.last_cycle = {"cycle": self.cycles, "at": now, "admitted": len(admitted),
                           "considered": len(ordered), "phases_ms": timings}
        self.metrics.cycle(timings, len(admitted))
        return self.last_cycle

    def _shape(self, w: Workload) -> tuple:
        """(bundles, gpu types, strategy, hashable shape) of a workload, computed once."""
        got = self._shapes.get(w.workload_id)
        if got is None:
            gang = w.spec.gang()
            bundles = [b.ray_bundle() for b in gang]
            types = [b.gpu_type for b in gang]
            strategy = w.spec.placement.ray_strategy
            got = self._shapes[w.workload_id] = (
                bundles, types, strategy,
                (strategy, tuple(types), tuple(tuple(sorted(b.items())) for b in bundles)))
        return got

    def _snapshot(self) -> list[NodeView]:
        nodes = self.runtime.nodes()
        by_id = {n.node_id: n for n in nodes}
        for reserved in self.reservations.values():
            for node_id, bundle in reserved:
                n = by_id.get(node_id)
                if n is not None:
                    for k, v in bundle.items():
                        n.free[k] = n.free.get(k, 0.0) - v
        return nodes

    # == one workload's run =======================================================================
    async def _drive(self, w: Workload, pg, adopt_running: bool = False) -> None:
        """Wait for the reservation, launch, watch to the end, release. Never raises."""
        wid = w.workload_id
        try:
            if not adopt_running:
                asked = self.clock()
                ready = await self.runtime.wait_pg_ready(pg, self.config.placement_ready_timeout_s)
                if w.status != Status.STARTING:
                    return
                if ready:
                    self.metrics.placement_ready(self.clock() - asked)
                else:
                    self.metrics.readiness_timeout()
                    self.runtime.remove_pg(wid)
                    self._requeue(w, f"placement group not ready within "
                                     f"{self.config.placement_ready_timeout_s:g}s")
                    return
                await self._launch(w, pg)
                if w.status != Status.RUNNING:
                    return
            await self._watch(w)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one bad workload never stops the scheduler
            log.warning("driver of %s: %s: %s", wid, type(exc).__name__, exc)
            if not w.status.terminal:
                await self._release(w)
                error = f"{type(exc).__name__}: {exc}"[:2000]
                if w.status == Status.STARTING and w.requeues < MAX_LAUNCH_REQUEUES:
                    # the launch itself failed (e.g. the Jobs agent is still starting): try again
                    self._requeue(w, f"launch failed, will retry: {error}")
                else:
                    self._fail_or_retry(w, f"orion error: {error}")
        finally:
            if self.drivers.get(wid) is asyncio.current_task():
                self.drivers.pop(wid, None)

    async def _launch(self, w: Workload, pg) -> None:
        spec = w.spec
        bundle = spec.gang()[0].ray_bundle()
        nodes = self.runtime.pg_nodes(pg)
        self.reservations[w.workload_id] = list(zip(nodes, [b.ray_bundle() for b in spec.gang()]))
        if spec.workload_type == "task":
            await self.runtime.start_task(w.workload_id, w.attempt, spec.function, spec.args,
                                          spec.kwargs, bundle, spec.runtime_env,
                                          self.config.max_result_bytes, self.config.max_log_bytes)
        else:
            metadata = {"orion_workload_id": w.workload_id, "orion_tenant": w.tenant_id,
                        "orion_tenant_id": w.tenant_id,
                        "orion_attempt": str(w.attempt)}
            await self.runtime.submit_job(w.workload_id, w.attempt, spec.entrypoint, bundle,
                                          spec.runtime_env, metadata)
        if w.status != Status.STARTING:  # cancelled while launching: cancel() cleans up
            return
        placement = [{"bundle": i, "node_id": n} for i, n in enumerate(nodes)]
        self._set(w, Status.RUNNING, "launched", started_at=self.clock(), worker_id=nodes[0],
                  placement=placement)

    async def _watch(self, w: Workload) -> None:
        timeout = w.spec.timeout_s
        deadline = None if timeout is None else (w.started_at or self.clock()) + timeout
        if w.spec.workload_type == "task":
            await self._watch_task(w, deadline)
        else:
            await self._watch_job(w, deadline)

    async def _watch_task(self, w: Workload, deadline: Optional[float]) -> None:
        wid, attempt = w.workload_id, w.attempt
        wait = self.runtime.wait_task(wid, attempt)
        try:
            remaining = None if deadline is None else max(0.0, deadline - self.clock())
            envelope = await asyncio.wait_for(wait, timeout=remaining)
        except asyncio.TimeoutError:
            await self.runtime.cancel_task(wid, attempt)
            await self._release(w)
            self._set(w, Status.FAILED, "timeout", error=f"timed out after {w.spec.timeout_s:g}s")
            return
        if w.status != Status.RUNNING:
            return
        await self.runtime.forget_task(wid, attempt)
        await self._release(w)
        if envelope.get("logs"):
            self.store.set_logs(wid, envelope["logs"])
        if envelope.get("lost"):
            self._requeue(w, "run lost with its Ray objects", new_attempt=True)
        elif envelope.get("ok"):
            self._set(w, Status.COMPLETED, "completed", result=envelope.get("result"), error=None)
        else:
            self._fail_or_retry(w, envelope.get("error") or "failed")

    async def _watch_job(self, w: Workload, deadline: Optional[float]) -> None:
        wid, attempt = w.workload_id, w.attempt
        while True:
            state = await self.runtime.job_state(wid, attempt)
            if w.status != Status.RUNNING:
                return
            if state is None:
                await self._release(w)
                self._requeue(w, "Ray job lost", new_attempt=True)
                return
            if state.terminal:
                break
            if deadline is not None and self.clock() >= deadline:
                await self.runtime.stop_job(wid, attempt)
                await self._save_job_logs(w)
                await self._release(w)
                self._set(w, Status.FAILED, "timeout", error=f"timed out after {w.spec.timeout_s:g}s")
                return
            await asyncio.sleep(self.config.job_poll_interval_s)
        await self._save_job_logs(w)
        await self._release(w)
        if state.status == "SUCCEEDED":
            self._set(w, Status.COMPLETED, "completed", result=None, error=None)
        else:
            code = f" (exit code {state.exit_code})" if state.exit_code is not None else ""
            self._fail_or_retry(w, f"job {state.status.lower()}{code}: {state.message}"[:4000])

    async def _save_job_logs(self, w: Workload) -> None:
        logs = await self.runtime.job_logs(w.workload_id, w.attempt)
        if logs is not None:
            self.store.set_logs(w.workload_id, clean_job_logs(logs)[-self.config.max_log_bytes:])

    async def _release(self, w: Workload) -> None:
        """Give the reservation back (removing the group also stops anything left inside it)."""
        self.reservations.pop(w.workload_id, None)
        self.runtime.remove_pg(w.workload_id)
        self.wake()

    # == state changes ============================================================================
    def _set(self, w: Workload, status: Status, note: str = "", batch: Optional[list] = None,
             **fields: Any) -> None:
        """The one place a status changes: check the table, update, persist (or add to ``batch``)."""
        check_transition(w.status, status)
        now = self.clock()
        w.status = status
        w.updated_at = now
        for k, v in fields.items():
            setattr(w, k, v)
        if status.terminal:
            w.finished_at = now
            self.active.pop(w.workload_id, None)
            self._shapes.pop(w.workload_id, None)
            self.reservations.pop(w.workload_id, None)
        self.metrics.transition(w.tenant_id, w.priority.value, status.value)
        if status == Status.RUNNING and w.started_at is not None:
            self.metrics.wait_time(w.tenant_id, w.started_at - w.submitted_at)
        if status.terminal and w.started_at is not None:
            self.metrics.run_time(w.tenant_id, status.value, now - w.started_at)
        change = (w, (status.value, now, note))
        if batch is not None:
            batch.append(change)
        else:
            self.store.update(*change)

    def _requeue(self, w: Workload, why: str, new_attempt: bool = False) -> None:
        """Back to ``queued`` with backoff; a new attempt when a run was lost or is retried."""
        w.requeues += 1
        if new_attempt:
            w.attempt += 1
        delay = retry_delay(w.requeues, self.config.retry_backoff_base_s,
                            self.config.retry_backoff_max_s)
        self.reservations.pop(w.workload_id, None)
        self._set(w, Status.QUEUED, why, not_before=self.clock() + delay, reason=why,
                  worker_id=None, placement=None)
        self.wake()

    def _fail_or_retry(self, w: Workload, error: str) -> None:
        if w.attempt <= w.spec.max_retries:
            self.metrics.retry(w.tenant_id)
            w.attempt += 1
            delay = retry_delay(w.attempt - 1, self.config.retry_backoff_base_s,
                                self.config.retry_backoff_max_s)
            self.reservations.pop(w.workload_id, None)
            self._set(w, Status.QUEUED, f"retry after failure: {error}"[:2000],
                      not_before=self.clock() + delay, error=error, reason="retry backoff",
                      worker_id=None, placement=None)
            self.wake()
        else:
            self._set(w, Status.FAILED, "failed", error=error)

    # == the interface the API (and the actor) expose =============================================
    async def submit(self, spec: dict[str, Any], tenant_id: str = "default",
                     who: Optional[str] = None) -> dict[str, Any]:
        """Validate, persist and enqueue; answers only after the store has the workload."""
        try:
            parsed = WorkloadSpec.model_validate(spec)
        except Exception as exc:  # pydantic's error → the contract's error
            raise ValidationError("invalid workload spec", _pydantic_details(exc)) from None
        _check_importable(parsed)
        if not self.tenants.known(tenant_id):
            raise ValidationError(f"unknown tenant {tenant_id!r}", [
                {"field": "metadata.tenant_id", "problem": "no such tenant is configured"}])
        rid = parsed.metadata.request_id
        if rid:
            existing = self.store.find_by_request_id(tenant_id, rid)
            if existing is not None:
                if existing.spec.fingerprint() != parsed.fingerprint():
                    raise Conflict(f"request_id {rid!r} was already used with a different spec",
                                   [{"field": "metadata.request_id", "problem": "reused"}])
                return self._ack(self.active.get(existing.workload_id, existing))
        if len(self.active) >= self.config.max_queue_size:
            raise QueueFull(f"the queue is full ({self.config.max_queue_size} workloads)",
                            retry_after=5)
        limit = getattr(self.tenants.get(tenant_id), "max_queued", None)
        if limit is not None and sum(1 for w in self.active.values()
                                     if w.tenant_id == tenant_id) >= limit:
            raise QueueFull(f"tenant {tenant_id!r} has {limit} unfinished workloads (its limit)",
                            retry_after=5)
        now = self.clock()
        w = Workload(workload_id=f"wl-{uuid.uuid4().hex[:16]}", tenant_id=tenant_id, spec=parsed,
                     status=Status.QUEUED, submitted_at=now, updated_at=now)
        self.store.insert(w, [(Status.SUBMITTED.value, now, "accepted"),
                              (Status.QUEUED.value, now, "")])
        self.active[w.workload_id] = w
        for status in (Status.SUBMITTED, Status.QUEUED):
            self.metrics.transition(tenant_id, parsed.priority.value, status.value)
        self.store.audit(who or tenant_id, "submit", w.workload_id,
                         {"tenant_id": tenant_id, "workload_type": parsed.workload_type,
                          "priority": parsed.priority.value}, now)
        self.wake()
        return self._ack(w)

    def _ack(self, w: Workload) -> dict[str, Any]:
        return {"workload_id": w.workload_id, "status": w.status.value,
                "queue_position": self._position(w), "estimated_start": None,
                "estimated_completion": None}

    def _position(self, w: Workload) -> Optional[int]:
        if w.status != Status.QUEUED:
            return None
        ahead = [x for x in self.active.values() if x.status == Status.QUEUED
                 and (x.priority.rank, x.seq) < (w.priority.rank, w.seq)]
        return len(ahead) + 1

    def _lookup(self, workload_id: str, tenant_id: Optional[str]) -> Workload:
        w = self.active.get(workload_id) or self.store.get(workload_id)
        if w is None or (tenant_id is not None and w.tenant_id != tenant_id):
            raise NotFound(f"no workload {workload_id!r}")
        return w

    async def get(self, workload_id: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        w = self._lookup(workload_id, tenant_id)
        out = w.public(history=self.store.history(workload_id))
        out["queue_position"] = self._position(w)
        return out

    async def list(self, status: Optional[str] = None, tenant_id: Optional[str] = None,
                   limit: int = 50, cursor: Optional[int] = None) -> dict[str, Any]:
        rows = self.store.list(status=status, tenant_id=tenant_id, limit=limit + 1,
                               before_seq=cursor)
        items = [self.active.get(w.workload_id, w) for w in rows[:limit]]
        next_cursor = rows[limit - 1].seq if len(rows) > limit else None
        return {"items": [w.public() for w in items], "next_cursor": next_cursor}

    async def cancel(self, workload_id: str, tenant_id: Optional[str] = None,
                     who: Optional[str] = None) -> dict[str, Any]:
        """Stop the workload wherever it is; idempotent (a finished one answers its final state)."""
        w = self._lookup(workload_id, tenant_id)
        if w.status.terminal:
            return w.public()
        self.store.audit(who or tenant_id or "admin", "cancel", workload_id,
                         {"status": w.status.value}, self.clock())
        driver = self.drivers.pop(workload_id, None)
        if driver is not None:
            driver.cancel()
        was = w.status
        self._set(w, Status.CANCELLED, "cancelled by user")
        if was in (Status.STARTING, Status.RUNNING):  # a launch may be in flight when starting
            if w.spec.workload_type == "task":
                await self.runtime.cancel_task(workload_id, w.attempt)
            else:
                await self.runtime.stop_job(workload_id, w.attempt)
        if was in (Status.STARTING, Status.RUNNING):
            await self._release(w)
        if was == Status.RUNNING and w.spec.workload_type == "job":
            await self._save_job_logs(w)
        return w.public()

    async def logs(self, workload_id: str, tenant_id: Optional[str] = None) -> str:
        w = self._lookup(workload_id, tenant_id)
        if w.spec.workload_type == "job" and w.status == Status.RUNNING:
            live = await self.runtime.job_logs(workload_id, w.attempt)
            if live is not None:
                return clean_job_logs(live)
        return self.store.get_logs(workload_id) or ""

    async def explain(self, workload_id: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """Why the workload is not running yet (position, reasons)."""
        return views.explain(self, self._lookup(workload_id, tenant_id), self.clock())

    async def queue(self, tenant_id: Optional[str] = None) -> dict[str, Any]:
        return views.queue_summary(self, tenant_id)

    async def tenant_list(self) -> dict[str, Any]:
        return views.tenant_list(self)

    async def configure_tenants(self, tenants: list[dict], keys: dict[str, str],
                                admins: Optional[list[str]] = None,
                                who: str = "admin") -> dict[str, Any]:
        """Replace the tenants and their key hashes (validated first; all or nothing)."""
        summary = self.tenants.configure(tenants, keys, admins)
        self.store.audit(who, "configure_tenants", None,
                         {"tenants": summary["tenants"], "keys": summary["keys"],
                          "version": summary["version"]}, self.clock())
        return summary

    async def metrics_text(self) -> str:
        """This scheduler's metrics in Prometheus text (gauges refreshed now)."""
        self.refresh_gauges()
        return self.metrics.render()

    def refresh_gauges(self) -> None:
        by_status, queued = workload_counts(self.active.values())
        self.metrics.set_workloads(by_status)
        self.metrics.set_queue_depth(queued)
        self.metrics.scheduler_up(self._loop_task is not None and not self._loop_task.done())

    async def keyring(self) -> dict[str, Any]:
        return self.tenants.keyring()

    async def audit_log(self, limit: int = 100, cursor: Optional[int] = None) -> dict[str, Any]:
        rows = self.store.audit_log(limit + 1, cursor)
        return {"items": rows[:limit], "next_cursor": rows[limit - 1]["id"] if len(rows) > limit
                else None}

    async def health(self) -> dict[str, Any]:
        store_ok, store_error = True, None
        try:
            self.store.ping()
        except Exception as exc:
            store_ok, store_error = False, str(exc)
        loop_ok = self._loop_task is not None and not self._loop_task.done()
        return {"scheduler": "ok" if loop_ok else "down", "store": "ok" if store_ok else "down",
                "store_error": store_error, "active": len(self.active), "cycles": self.cycles,
                "last_cycle": self.last_cycle}


# runtime_env keys that bring code the scheduler's own process cannot see
_CODE_CARRIERS = ("working_dir", "py_modules", "pip", "conda", "uv", "container", "image_uri")


def _check_importable(spec: WorkloadSpec) -> None:
    """Refuse a task whose module cannot be found, unless its runtime_env brings the code.

    Only the module is located (``find_spec``, which imports parent packages but not the module
    itself), so no user code runs in the scheduler.
    """
    if spec.workload_type != "task" or not spec.function:
        return
    env = spec.runtime_env or {}
    if any(env.get(k) for k in _CODE_CARRIERS) or "PYTHONPATH" in (env.get("env_vars") or {}):
        return
    module = spec.function.partition(":")[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ValidationError(f"cannot import module {module!r} of {spec.function!r}", [
            {"field": "function", "problem": "module not importable on the cluster (install it "
                                             "or ship it with runtime_env working_dir/py_modules)"}])


def _take(nodes: list[NodeView], chosen: list[str], bundles: list[dict[str, float]]) -> None:
    by_id = {n.node_id: n for n in nodes}
    for node_id, bundle in zip(chosen, bundles):
        for k, v in bundle.items():
            by_id[node_id].free[k] = by_id[node_id].free.get(k, 0.0) - v


_RAY_JOB_NOISE = ("Runtime env is setting up.", "Running entrypoint for job ")


def clean_job_logs(text: str) -> str:
    """The job's own output, without the lines Ray's job manager adds."""
    lines = text.splitlines(keepends=True)
    return "".join(l for l in lines if not any(n in l for n in _RAY_JOB_NOISE))


def _pydantic_details(exc: Exception) -> list[dict[str, str]]:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return [{"field": "", "problem": str(exc)}]
    return [{"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
            for e in errors()]
