"""The scheduler: the loop, one scheduling cycle with numbered, timed phases, and the service
interface the actor exposes.

Runs on an asyncio loop (inside the ``orion-scheduler`` actor, or a test's loop). Its parts:
``transitions.WorkloadBook`` (the active workloads, what is held for them, and ``set``, the one
place a status changes, which persists before anything is acknowledged), ``driver.WorkloadDriver``
(one workload's run), ``intake`` (submission checks), ``ingest`` (new rows from the store, by
``seq``, and what readers need written back), ``recovery`` (start-up reconciliation), ``liveness``
(what ``/health`` reports) and ``admin`` (views, node operations, administration). Every Ray
call goes through the ``runtime`` (``runtime.base.Runtime``).

Cycle phases (see ARCHITECTURE.md): 1 snapshot · 2 order · 3 fit · 4 preempt · 5 reserve ·
6 launch · 7 requeue. Phases 2–4 are pure (``policy.cycle.CyclePlanner``), timed as ``plan``, and
run in slices of about 80 ms: the loop applies each slice's admissions (5, 7) and answers the
actor's other calls before the next slice, so a fill of thousands of admissions never holds the
API up; the drivers launch (6).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any, Awaitable, Callable, Mapping, Optional

from ..config import PolicyConfig, RetentionConfig, SchedulerConfig
from ..errors import StoreUnavailable
from ..input_limits import cap_text
from ..metrics import OrionMetrics, workload_counts
from ..models import Workload
from ..pipelines.progress import items_body
from ..policy.cycle import CyclePlanner
from ..policy.fairshare import FairShare
from ..policy.live_placement import LivePlacer, bundle_request, outside_orion, placement_record
from ..policy.placement import get_policy
from ..runtime.base import Runtime
from ..runtime.conventions import clean_job_logs
from ..status import Status
from ..store.base import quarantined_count
from . import estimates, ingest, intake, node_ops, outside, views, workers_view
from . import policy_bridge as bridge
from .admin import AdminMixin
from .config_apply import ConfigApplyMixin
from .cost_host import COST_TICK_S, CostHost, refresh_budget_use
from .driver import WorkloadDriver, pinnable
from .every import Every
from .housekeeping import Housekeeping
from .lease_host import DEFAULT_HOLDER, LeaseHost
from .liveness import Liveness
from .pipelines_host import PipelineHost
from .recovery import recover
from .tenants import TenantRegistry
from .transitions import WorkloadBook

log = logging.getLogger("orion.scheduler")

GAUGE_REFRESH_S = 5.0
SERVING_REFRESH_S = 5.0
FULL_CYCLE_S = 1.0


class Scheduler(AdminMixin, ConfigApplyMixin):
    """Admits, places, runs and tracks workloads. ``store`` and ``runtime`` are passed in."""

    def __init__(
        self,
        store: Any,
        runtime: Runtime,
        config: Optional[SchedulerConfig] = None,
        policy: Optional[PolicyConfig] = None,
        clock: Callable[[], float] = time.time,
        metrics: Optional[OrionMetrics] = None,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        retention: Optional[RetentionConfig] = None,
        lease_holder: str = DEFAULT_HOLDER,
        lease_ttl_s: float = 15.0,
        on_lease_lost: Optional[Callable[[], None]] = None,
    ):
        self.store = store
        self.runtime = runtime
        self.config = config or SchedulerConfig()
        self.clock = clock
        self.metrics = metrics or OrionMetrics(ray_mirror=False)
        self.tenants = TenantRegistry(store)
        self.book = WorkloadBook(
            store=store, clock=clock, metrics=self.metrics, config=self.config, wake=self.wake
        )
        self.driver = WorkloadDriver(
            runtime=runtime,
            store=store,
            book=self.book,
            clock=clock,
            metrics=self.metrics,
            config=self.config,
            policy=lambda: self.policy_config,
            wake=self.wake,
            sleep=sleep,
            tenant_modules=lambda tenant: intake.allowed_modules(self.tenants.get(tenant)),
            node_labels=lambda: self.node_labels,
        )
        self.node_labels: dict[str, Mapping[str, str]] = {}  # of the last pass's nodes (cost records)
        self.placement_policy = get_policy(self.config.placement_policy)
        saved = store.get_setting("policy", None)
        self.policy_config = (
            PolicyConfig.model_validate(saved) if saved is not None else policy or PolicyConfig()
        )
        self.policy = bridge.settings_from(self.tenants.tenants.values(), self.policy_config)
        self.fair = FairShare(self.policy_config.fair_share_half_life_s)
        self.forecasts = estimates.ForecastCache()
        # keeps the engine's score caches warm from cycle to cycle (see policy/cycle.py)
        self.planner = CyclePlanner(clock=time.perf_counter)
        self.arrivals: set[str] = set()  # workloads taken in since the last pass started
        self.reservation: Optional[dict] = None
        # GPUs tenants hold in serving replicas (counted against quotas), refreshed by the loop
        self.serving_usage: dict[str, dict[str, float]] = {}
        # capacity preempted for work outside Orion (a Serve replica): (expiry, node, resources)
        self.claims: list[tuple[float, str, dict[str, float]]] = []
        self.cycles = 0
        self.last_cycle: dict[str, Any] = {}
        self.started_at: Optional[float] = None
        self._wake: Optional[asyncio.Event] = None
        self._loop_task: Optional[asyncio.Task] = None
        self._stopping = False
        self._next_due = 0.0  # earliest backoff expiry among queued workloads
        # every node seen, with operator cordons and drains (persisted)
        self.nodebook = node_ops.load_book(store)
        self.autoscaler_status: dict[str, Any] = {}
        self.ingest = ingest.Ingest(self)  # new rows from the store, by seq (see ingest.py)
        self.liveness = Liveness()  # recovery state and cycle age, for /health
        self.housekeeping = Housekeeping(store, clock, retention)  # file check, retention
        self.pipelines = PipelineHost(self)  # pipeline runs reconciled in this loop (issue 16)
        # the single-writer lease: taken before recovery, renewed by the loop (lease_host.py)
        self.lease = LeaseHost(
            store, clock=clock, metrics=self.metrics, holder=lease_holder, ttl_s=lease_ttl_s, sleep=sleep
        )
        self.on_lease_lost = on_lease_lost  # the actor exits then, and Ray restarts it to wait
        self.cost = CostHost(self)  # capacity records, price versions, budgets' use (docs/cost.md)

    @property
    def active(self) -> dict[str, Workload]:
        """Unfinished workloads by id (the book's)."""
        return self.book.active

    @property
    def reservations(self) -> dict[str, list]:
        """The bundles Orion holds, per workload (the book's)."""
        return self.book.reservations

    # == lifecycle ================================================================================
    async def start(self) -> None:
        """Rebuild state from the store, reconcile with Ray, then run the cycle loop."""
        if self._loop_task is not None:
            return
        self._wake = asyncio.Event()
        self._loop_task = asyncio.current_task()  # mark as starting (idempotent start)
        delay = 0.2
        self.liveness.recovering()
        await self.lease.acquire()  # another scheduler's live lease: wait it out before acting
        while True:
            try:
                await recover(
                    store=self.store,
                    runtime=self.runtime,
                    book=self.book,
                    driver=self.driver,
                    observe=self.observe,
                    clock=self.clock,
                )
                break
            except Exception as exc:  # e.g. the executor is itself restarting: never give up
                self.liveness.failed(exc)
                log.exception("recovery failed; retrying in %.1fs", delay)
                self.driver.stop_all()
                self.book.clear()
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
        self.started_at = self.clock()
        self.liveness.recovered()
        # What recovery loaded lives as long as the scheduler: out of the collector's way, so a
        # full collection does not walk every queued workload in the middle of a slice.
        gc.freeze()
        self._loop_task = asyncio.create_task(self._loop())
        self.wake()

    async def stop(self) -> None:
        """Stop the loop and every driver (runs in Ray are left alone: recovery adopts them)."""
        self._stopping = True
        self.wake()
        for t in list(self.driver.tasks.values()):
            t.cancel()
        if self._loop_task is not None and self._loop_task is not asyncio.current_task():
            self._loop_task.cancel()
            # returns once the loop has ended, so the caller may close the store after it
            await asyncio.wait([self._loop_task])

    def _deposed(self) -> None:
        """The lease is lost: stop acting at once. The drivers stop (the runs in Ray are left to
        the holder, whose recovery adopts them); nothing more is written."""
        self._stopping = True
        self.driver.stop_all()
        self.metrics.scheduler_up(False)
        if self.on_lease_lost is not None:
            self.on_lease_lost()

    def wake(self) -> None:
        """Run a cycle now rather than at the next tick (a submission should not wait)."""
        if self._wake is not None:
            self._wake.set()

    async def _loop(self) -> None:
        interval = self.config.cycle_interval_ms / 1000
        full_cycle = Every(FULL_CYCLE_S, self.clock)
        serving = Every(SERVING_REFRESH_S, self.clock)
        node_check = Every(node_ops.NODE_CHECK_S, self.clock)
        gauges = Every(GAUGE_REFRESH_S, self.clock)
        cost = Every(COST_TICK_S, self.clock)
        while not self._stopping:
            woken = True
            if self.planner.busy:
                await asyncio.sleep(0)  # a pass in progress: calls are answered between slices
            else:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=interval)
                except asyncio.TimeoutError:
                    woken = False
                self._wake.clear()
            if not self.lease.tick():
                self._deposed()
                return
            try:
                self.housekeeping.tick()  # a deleted or replaced store file; retention
            except Exception:  # e.g. the store is locked: the next tick tries again
                log.exception("store housekeeping failed")
            try:  # before the intake below: the node workloads it writes are taken in this tick
                woken = self.pipelines.tick(woken) > 0 or woken
            except Exception:  # one bad reconcile never stops the loop; the next tick retries
                log.exception("pipeline reconcile failed")
            try:
                # A tick with nothing new (no submission, no release, no backoff expired) cannot
                # admit more than the last cycle did, except when nodes joined: check each second.
                woken = self.ingest.pull() > 0 or woken  # rows written by API replicas
                if self.planner.busy or full_cycle.due(force=woken or self.clock() >= self._next_due):
                    self.run_slice()
                    if not self.planner.busy:
                        self.ingest.after_cycle()  # wait reasons and order, for the readers
                if serving.due():
                    asyncio.create_task(outside.refresh_serving_usage(self))
                if node_check.due():
                    node_ops.check_nodes(self)  # lost nodes, drains
                if gauges.due():
                    self.refresh_gauges()  # Ray's metrics pipeline sees gauges without a scrape
                if cost.due():
                    self.cost.tick()  # capacity records, price version, cost gauges
            except Exception:  # the loop never dies: one bad cycle is logged and the next one runs
                log.exception("scheduling cycle %d failed", self.cycles)

    # == the scheduling cycle =====================================================================
    def run_cycle(self) -> dict[str, Any]:
        """One whole pass over the queue (every slice of it, applied one after the other); admits
        as many workloads as fit, not one per cycle."""
        out = self.run_slice()
        while self.planner.busy:
            out = self.run_slice()
        return out

    def run_slice(self) -> dict[str, Any]:
        """The next slice of the pass in progress, or the first slice of a new pass: about
        ``policy.cycle.SLICE_S`` of planning, then what it admitted is applied (reserved,
        persisted, placement groups asked for) before the loop answers anyone else."""
        timings: dict[str, float] = {}
        t = time.perf_counter()  # a stopwatch for the phase metrics, not a scheduling clock
        now = self.clock()

        def phase(name: str) -> None:
            nonlocal t
            t2 = time.perf_counter()
            timings[name] = round((t2 - t) * 1000, 3)
            t = t2

        book = self.book
        if not self.planner.busy:  # a new pass
            arrivals, self.arrivals = self.arrivals, set()
            queued = book.queued()
            if not queued:
                self.cycles += 1
                self.last_cycle = {"cycle": self.cycles, "at": now, "admitted": 0, "phases_ms": {}}
                self.metrics.cycle({}, 0)
                return self.last_cycle
            # 1 snapshot: capacity per node minus what Orion holds, GPU by GPU (the planner
            # keeps the score caches of the nodes that did not change, and notes any change)
            placer = self.planner.adopt(self.placer())
            self.node_labels = {n.node_id: n.labels for n in placer.nodes}
            refresh_budget_use(self, now)
            backoff_ended = now >= self._next_due
            full = backoff_ended or self.planner.needs_full(now)
            if not (full or arrivals):
                # nothing new (no capacity freed, no config changed, no arrival, no backoff
                # ended): a pass could not admit more than the last one did
                return self.last_cycle
            self.cycles += 1
            running = bridge.running_items(book, now)
            self.fair.advance(now, bridge.allocated(running))
            phase("snapshot")
            # the candidates' static data (cached per workload) for those past their backoff
            eligible = [bridge.candidate(book, w) for w in queued if w.not_before <= now]
            self._next_due = min((w.not_before for w in queued if w.not_before > now), default=float("inf"))
            phase("candidates")
            capacity = bridge.capacity(placer.nodes)
            if full:  # work already waiting may fit now, or its order or quotas changed
                self.planner.full(
                    eligible,
                    running,
                    self.policy,
                    self.fair,
                    capacity,
                    now,
                    nominated=book.nominated,
                    extra_usage=self.serving_usage,
                )
            else:
                # a delta over the arrivals alone: what waited met as much capacity and quota at
                # the last pass as now, so a full pass would leave it waiting again
                new = [c for c in eligible if c.workload_id in arrivals]
                self.planner.delta(
                    new, running, self.policy, self.fair, capacity, now, extra_usage=self.serving_usage
                )
        # 2 order · 3 fit · 4 preempt: a time-budgeted slice of one pure pass over the queue
        # (quota, fair share, placement, victims); the slices of a pass decide what one
        # uninterrupted pass would. Its admissions take their capacity in the planner's state
        # and their fair-share entry penalties now.
        plan = self.planner.plan_slice()
        self.planner.apply(plan, self.fair)
        phase("plan")
        for victim, for_wid in plan.preempt:
            v = book.active.get(victim)
            if v is not None and v.status == Status.RUNNING:  # it may have ended between slices
                try:
                    self.driver.preempt(v, for_wid)
                except StoreUnavailable as exc:  # it runs on; the next full pass decides again
                    log.warning("preemption of %s not stored: %s", victim, exc.message)
                    self.planner.invalidate()
        if plan.complete:
            self.reservation = self.planner.reservation
        phase("preempt")
        admitted = []
        for c, placed in plan.admitted:
            w = book.active.get(c.workload_id)
            if w is None or w.status != Status.QUEUED:  # cancelled between slices
                self.planner.released(placed)
                continue
            admitted.append((w, placed))
        # 5 reserve: persist, record in memory, then create the placement group
        batch: list = []
        pins = {w.workload_id for w, _ in admitted if pinnable(w, self.config.pin_single_bundle_tasks)}
        for w, placed in admitted:
            if w.workload_id in pins:
                # no group will say where it runs: the node goes in the record now, so a restarted
                # scheduler adopts a launched run with its reservation
                book.set(
                    w,
                    Status.STARTING,
                    "pinned to its node",
                    batch=batch,
                    reason=None,
                    placement=placement_record(placed),
                )
            else:
                book.set(w, Status.STARTING, "placement group requested", batch=batch, reason=None)
        try:
            book.commit(batch)
        except StoreUnavailable:
            # nothing changed in memory: give the capacity back and let the next pass admit
            # them again (the write is the step retried, not lost)
            for _w, placed in admitted:
                self.planner.released(placed)
            self.arrivals |= {w.workload_id for w, _ in admitted}
            raise
        self.driver.pinned |= pins
        for w, placed in admitted:
            book.reservations[w.workload_id] = placed
            book.nominated.pop(w.workload_id, None)
            book.wait_reasons.pop(w.workload_id, None)
        for w, placed in admitted:
            bundles, types, strategy, _ = book.shape(w)
            try:
                # Each bundle pinned to the node the engine chose: Ray realises Orion's decision.
                pg = self.runtime.create_pg(
                    w.workload_id,
                    bundles,
                    strategy,
                    nodes=[h.node_id for h in placed],
                    gpu_types=types,
                    pinned=w.workload_id in pins,
                )
            except Exception as exc:  # e.g. Ray refused the group: requeue with backoff
                self.driver.pinned.discard(w.workload_id)
                book.requeue(w, f"placement group creation failed: {exc}")
                continue
            # 6 launch happens in the driver once the group is ready
            self.driver.start(w, pg)
        phase("reserve")
        # 7 requeue: what did not fit keeps its reasons (they feed explain)
        for wid, why in plan.reasons.items():
            book.wait_reasons[wid] = why
            w = book.active.get(wid)
            if w is not None and w.status == Status.QUEUED:
                w.reason = bridge.explain_reasons(why)
        phase("requeue")
        self.last_cycle = {
            "cycle": self.cycles,
            "at": now,
            "admitted": len(admitted),
            "preempted": len(plan.preempt),
            "considered": len(plan.order),
            "complete": plan.complete,
            "phases_ms": timings,
        }
        self.metrics.cycle(timings, len(admitted))
        return self.last_cycle

    def schedulable_nodes(self) -> list:
        """The schedulable nodes with their totals, as the runtime reports them (cordoned,
        draining and drained nodes left out)."""
        off = self.nodebook.unschedulable()
        return [n for n in self.runtime.nodes() if n.schedulable and n.node_id not in off]

    def placer(self, nodes: Optional[list] = None) -> LivePlacer:
        """The live cluster as the placement engine sees it: nodes (default: the schedulable
        ones) minus every held bundle."""
        nodes = self.schedulable_nodes() if nodes is None else nodes
        held = [h for hs in self.book.reservations.values() for h in hs]
        # what pinned tasks just gave back may still look used in the snapshot: not outside work
        seen = held + self.driver.released_recently()
        held += outside_orion(nodes, seen, outside.live_claims(self))
        by_id = {n.node_id: n for n in nodes}
        for h in held:
            n = by_id.get(h.node_id)
            if n is not None:
                for k, v in h.bundle.items():
                    n.free[k] = n.free.get(k, 0.0) - v
        return LivePlacer(self.placement_policy, nodes, held)

    def observe(self, w: Workload) -> None:
        """Let the placement policy learn the request mix from a workload's bundles."""
        for b in w.spec.gang():
            try:
                self.placement_policy.observe(bundle_request(b.ray_bundle(), b.gpu_type))
            except ValueError:  # a shape the engine cannot express (e.g. 1.5 GPUs): no lesson
                pass

    async def make_room(
        self,
        bundles: list[dict[str, float]],
        tenant_id: Optional[str] = None,
        priority: str = "high",
        who: str = "serving",
        hold_s: float = 120.0,
    ) -> dict[str, Any]:
        """Make room for work Orion does not launch itself (see ``outside.make_room``)."""
        return outside.make_room(
            self, bundles, tenant_id=tenant_id, priority=priority, who=who, hold_s=hold_s
        )

    async def record_scaling_events(self, events: list[dict[str, Any]]) -> int:
        """Store serving's scaling events (see ``serving/scaling_events.py``)."""
        from ..serving.scaling_events import store_events

        return store_events(self.store, events)

    async def record_usage(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Store the serving manager's usage records (see ``cost.serving_rows``)."""
        from ..cost.serving_rows import add_replica_records

        return {"written": add_replica_records(self.store, records)}

    # == the interface the API (and the actor) expose =============================================
    async def submit(
        self, spec: dict[str, Any], tenant_id: str = "default", who: Optional[str] = None
    ) -> dict[str, Any]:
        """Validate, persist and enqueue in one store transaction; answers only after the store
        has the workload (see ``ingest.submit``)."""
        return ingest.submit(self, spec, tenant_id, who)

    async def notify(self) -> int:
        """New rows were written (by an API replica): take them in now, not at the next tick."""
        if self.started_at is None:  # recovery loads every row; the tail dedupes after it
            return 0
        return self.ingest.pull()

    async def ack(self, workload_id: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """The acknowledgement of a workload an API replica wrote (see ``ingest.ack``)."""
        return ingest.ack(self, workload_id, tenant_id)

    async def get(self, workload_id: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """One workload with its history and queue position."""
        w = self.lookup(workload_id, tenant_id)
        out = w.public(history=self.store.history(workload_id))
        out["queue_position"] = intake.position(self, w)
        return out

    async def list(
        self,
        status: Optional[str] = None,
        tenant_id: Optional[str] = None,
        limit: int = 50,
        cursor: Optional[int] = None,
    ) -> dict[str, Any]:
        """Workloads newest first, a page at a time (``cursor``: a page's ``next_cursor``)."""
        rows = self.store.list(status=status, tenant_id=tenant_id, limit=limit + 1, before_seq=cursor)
        items = [self.book.active.get(w.workload_id, w) for w in rows[:limit]]
        next_cursor = rows[limit - 1].seq if len(rows) > limit else None
        return {"items": [w.public() for w in items], "next_cursor": next_cursor}

    async def cancel(
        self, workload_id: str, tenant_id: Optional[str] = None, who: Optional[str] = None
    ) -> dict[str, Any]:
        """Stop the workload wherever it is; idempotent (a finished one answers its final state)."""
        w = self.lookup(workload_id, tenant_id)
        if w.status.terminal:
            return w.public()
        self.store.audit(
            who or tenant_id or "admin", "cancel", workload_id, {"status": w.status.value}, self.clock()
        )
        was = w.status
        # stored first: when the store refuses (503), the run and its driver go on untouched
        self.book.set(w, Status.CANCELLED, "cancelled by user")
        self.driver.stop(workload_id)
        await self.driver.cancel_run(w, was)
        return w.public()

    async def logs(self, workload_id: str, tenant_id: Optional[str] = None) -> str:
        """The run's output: live for a running job, else what the store kept."""
        w = self.lookup(workload_id, tenant_id)
        if w.spec.workload_type == "job" and w.status == Status.RUNNING:
            live = await self.runtime.job_logs(workload_id, w.attempt)
            if live is not None:  # a job's output can be any size: its tail, marked
                return cap_text(clean_job_logs(live), self.config.max_log_bytes, keep="tail") or ""
        return self.store.get_logs(workload_id) or ""

    async def pipeline_submit(
        self, body: dict[str, Any], tenant_id: str = "default", who: Optional[str] = None
    ) -> dict[str, Any]:
        """A pipeline run stored (see ``pipelines_host.py``)."""
        return self.pipelines.submit(body, tenant_id, who)

    async def pipeline_status(self, submission_id: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """A run and its nodes."""
        return self.pipelines.status(submission_id, tenant_id)

    async def pipeline_cancel(
        self, submission_id: str, tenant_id: Optional[str] = None, who: Optional[str] = None
    ) -> dict[str, Any]:
        """Cancel a run (idempotent)."""
        return self.pipelines.cancel(submission_id, tenant_id, who)

    async def pipeline_retry(
        self, submission_id: str, tenant_id: Optional[str] = None, who: Optional[str] = None
    ) -> dict[str, Any]:
        """Run a failed or cancelled run again from its failed nodes (409 otherwise)."""
        return self.pipelines.retry(submission_id, tenant_id, who)

    async def pipeline_logs(
        self, submission_id: str, node: str, attempt: Optional[int] = None, tenant_id: Optional[str] = None
    ) -> dict[str, Any]:
        """A node's logs (its current or last attempt, or ``attempt``)."""
        return await self.pipelines.logs(submission_id, node, attempt, tenant_id)

    async def pipeline_lineage(self, submission_id: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """The run's OpenLineage RunEvents."""
        return self.pipelines.lineage(submission_id, tenant_id)

    async def workers(self) -> dict[str, Any]:
        """Each node with its current tasks, tasks completed, resources in use, last activity."""
        return workers_view.workers(self)

    async def pipeline_output(
        self, submission_id: str, node: str, name: str, tenant_id: Optional[str] = None, max_bytes: int = 0
    ) -> dict[str, Any]:
        """One output of a run, ``{"uri", "data"}`` (the artifact store is read off the loop)."""
        kw = {"max_bytes": max_bytes} if max_bytes else {}
        return await self.pipelines.output(submission_id, tenant_id, node=node, name=name, **kw)

    async def pipeline_items(
        self,
        submission_id: str,
        node_id: str,
        after: int = -1,
        limit: int = 100,
        state: Optional[str] = None,
        tenant_id: Optional[str] = None,
    ) -> dict[str, Any]:
        """A page of a map node's items."""
        run = self.pipelines.run_of(submission_id, tenant_id)
        return items_body(self.store, run, node_id, after=after, limit=limit, state=state)

    async def schedule_call(
        self, op: str, args: dict[str, Any], tenant_id: Optional[str] = None, who: Optional[str] = None
    ) -> dict[str, Any]:
        """Schedules, triggers and events (see ``schedules_host.py``)."""
        return self.pipelines.schedules.call(op, args, tenant_id, who)

    async def metrics_text(self) -> str:
        """This scheduler's metrics in Prometheus text (gauges refreshed now)."""
        self.refresh_gauges()
        return self.metrics.render()

    def refresh_gauges(self) -> None:
        """Set the workload, queue, liveness and fragmentation gauges from the current state."""
        by_status, queued = workload_counts(self.book.active.values())
        self.metrics.set_workloads(by_status)
        self.metrics.set_queue_depth(queued)
        self.metrics.scheduler_up(self._loop_task is not None and not self._loop_task.done())
        self.pipelines.refresh_metrics()
        try:
            views.fragmentation(self)  # sets the orion_gpu_free / orion_gpu_stranded gauges
        except Exception:  # the cluster view may be briefly unavailable; the next refresh retries
            log.debug("fragmentation gauges not refreshed", exc_info=True)

    async def health(self) -> dict[str, Any]:
        """Whether the loop runs and the store answers, with the last cycle."""
        store_ok, store_error = True, None
        try:
            self.store.ping()
        except Exception as exc:
            store_ok, store_error = False, getattr(exc, "message", str(exc))
        loop_ok = self._loop_task is not None and not self._loop_task.done()
        live = self.liveness.report(
            self.ingest.cycle_done_at,
            stall_after_s=self.config.stall_after_s,
            stuck_after_s=self.config.recovery_stuck_after_s,
        )
        verdict = live.pop("verdict")
        state = "down" if not loop_ok else "ok" if verdict in ("ok", "recovering") else verdict
        return {
            "scheduler": state,
            "store": "ok" if store_ok else "down",
            "store_error": store_error,
            # how long the loop may wait for another process's write lock (short: never a freeze)
            "store_busy_timeout_ms": getattr(self.store, "busy_timeout_ms", None),
            "active": len(self.book.active),
            # rows that could not be read back (skipped, never blocking; see store._quarantine)
            "quarantined": quarantined_count(self.store),
            "cycles": self.cycles,
            "last_cycle": self.last_cycle,
            "pipelines": self.pipelines.stats(),  # the pipeline controller's counters
            "lease": self.lease.report(),  # the single-writer lease (docs/high-availability.md)
            **live,
        }
